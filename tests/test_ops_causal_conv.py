"""CausalConvWithState: taps, optional bias and past state, activations, the state output.

onnxruntime does not run CausalConvWithState (nor SwiGLU, tests/test_ops_activations.py), so
they are compared with the ONNX reference evaluator on the same feeds (same tolerance as the
harness): :func:`check_against_reference`.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import convert, expect_refusal, make_model
from onnx import helper
from onnx.reference import ReferenceEvaluator

from onnx2tflite_direct import validate as V


def check_against_reference(model, feeds, atol=1e-5, rtol=1e-3):
    """Convert, run LiteRT and the ONNX reference evaluator; outputs must agree."""
    res = convert(model, keep_io_layout=True)
    actual = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"))
    names = [o.name for o in model.graph.output]
    expected = dict(zip(names, ReferenceEvaluator(model).run(None, feeds), strict=True))
    for name in names:
        e, a = expected[name], actual[name]
        assert a.shape == e.shape and a.dtype == e.dtype, (name, a.shape, e.shape, a.dtype, e.dtype)
        e64, a64 = e.astype(np.float64), a.astype(np.float64)
        bound = atol * max(1.0, float(np.abs(e64).max(initial=0))) + rtol * np.abs(e64)
        ulp = V.reference_ulp(e)  # float16: the reference is only correct to one step
        bound = bound if ulp is None else bound + ulp
        assert np.all(np.abs(a64 - e64) <= bound), (name, np.abs(a64 - e64).max())
    return res


def _causal_model(batch, channels, length, taps, bias, past, activation, state_out=True):
    inputs = [("x", np.float32, (batch, channels, length)), ("w", np.float32, (channels, 1, taps))]
    names = ["x", "w", "bias" if bias else "", "past" if past else ""]
    if bias:
        inputs.append(("bias", np.float32, (channels,)))
    if past:
        inputs.append(("past", np.float32, (batch, channels, taps - 1)))
    outputs = [("y", np.float32, (batch, channels, length))]
    if state_out:
        outputs.append(("state", np.float32, (batch, channels, taps - 1)))
    node = helper.make_node(
        "CausalConvWithState",
        [n for n in names if n] if not past else names,
        [o[0] for o in outputs] + ([] if state_out else ["unused_state"]),
        activation=activation,
    )
    return make_model([node], inputs, outputs, opset=27), [i[0] for i in inputs], inputs


@pytest.mark.parametrize("taps", [2, 4])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("past", [False, True])
@pytest.mark.parametrize("activation", ["none", "silu", "swish"])
def test_causal_conv_with_state(taps, bias, past, activation):
    model, _, inputs = _causal_model(2, 3, 5, taps, bias, past, activation)
    rng = np.random.default_rng(2)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, _, s in inputs}
    check_against_reference(model, feeds)


def test_causal_conv_kernel_one_without_state_output():
    model, _, inputs = _causal_model(1, 2, 4, 1, True, False, "none", state_out=False)
    rng = np.random.default_rng(3)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, _, s in inputs}
    check_against_reference(model, feeds)


def test_causal_conv_kernel_one_state_output_refused():
    model, _, _ = _causal_model(1, 2, 4, 1, False, False, "none")
    expect_refusal(model, "unsupported_attribute_value")
