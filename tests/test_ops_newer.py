"""SwiGLU, CausalConvWithState, TensorScatter: attributes, optional inputs, dtypes.

onnxruntime does not run SwiGLU (its Swish-24 body) or CausalConvWithState, so those are
compared with the ONNX reference evaluator on the same feeds (same tolerance as the harness).
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, convert, expect_refusal, make_model
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


@pytest.mark.parametrize("alpha", [None, 1.702])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(6,), (2, 3, 4)])
def test_swiglu(alpha, dtype, shape):
    attrs = {} if alpha is None else {"alpha": alpha}
    model = make_model(
        [helper.make_node("SwiGLU", ["a", "b"], ["y"], **attrs)],
        [("a", dtype, shape), ("b", dtype, shape)],
        [("y", dtype, shape)],
        opset=28,
    )
    rng = np.random.default_rng(1)
    feeds = {n: rng.standard_normal(shape).astype(dtype) for n in "ab"}
    check_against_reference(model, feeds)


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


def _scatter_model(cache, update, mode, axis, dtype, indices):
    inputs = [("past", dtype, cache), ("update", dtype, update)]
    inits, names = {}, ["past", "update"]
    if indices == "runtime":
        inputs.append(("idx", np.int64, (cache[0],)))
        names.append("idx")
    elif indices is not None:
        inits["idx"] = np.asarray(indices, np.int64)
        names.append("idx")
    node = helper.make_node("TensorScatter", names, ["y"], mode=mode, axis=axis)
    return make_model([node], inputs, [("y", dtype, cache)], initializers=inits, opset=24)


@pytest.mark.parametrize("mode", ["linear", "circular"])
@pytest.mark.parametrize("indices", [None, [1, 0], "runtime"])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_tensor_scatter_rank4(mode, indices, dtype):
    cache, update = (2, 3, 5, 4), (2, 3, 3, 4)
    model = _scatter_model(cache, update, mode, -2, dtype, indices)
    rng = np.random.default_rng(4)
    feeds = {
        "past": rng.integers(-9, 9, cache).astype(dtype),
        "update": rng.integers(-9, 9, update).astype(dtype),
    }
    if indices == "runtime":
        feeds["idx"] = np.array([2, 0] if mode == "linear" else [4, 3], np.int64)
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("axis", [1, 2])
def test_tensor_scatter_axis(axis):
    cache = [2, 6, 6]
    update = list(cache)
    update[axis] = 2
    model = _scatter_model(tuple(cache), tuple(update), "circular", axis, np.float32, [5, 2])
    check_conversion(model)


def test_tensor_scatter_float64_refused():
    model = _scatter_model((2, 4, 3), (2, 1, 3), "linear", 1, np.float64, None)
    expect_refusal(model, "unsupported_dtype")
