"""EyeLike over a dynamic size (XLNet's ``eye(sequence)`` from ConstantOfShape of its input
length): lowered at a sample size it was a constant of that size, and the unpinned model was
refused (NEG operand 0 changes shape). With its dims dynamic it is now computed at run time
(column - row == k over RANGEs of the input's SHAPE) and matches onnxruntime at every
length; with static dims it stays a constant."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_at_sizes, check_conversion, convert, make_model, op_histogram
from onnx import helper

D = 6


def _masked_scores(k: int, dtype: int = 1):
    """scores [b, s, s] = x x^T, with the eye(s, k) of the sequence length subtracted times
    1e3 (the diagonal masked out, as XLNet's attention does)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "n1"], ["dims"], axis=0),
        helper.make_node(
            "ConstantOfShape", ["dims"], ["filled"], value=helper.make_tensor("v", 1, [1], [0.0])
        ),
        helper.make_node("EyeLike", ["filled"], ["eye"], k=k, dtype=dtype),
        helper.make_node("Cast", ["eye"], ["eyef"], to=1),
        helper.make_node("Neg", ["eyef"], ["neg"]),
        helper.make_node("Mul", ["neg", "big"], ["bias"]),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "xt"], ["scores"]),
        helper.make_node("Add", ["scores", "bias"], ["y"]),
    ]
    inits = {
        "one": np.array(1, np.int64),
        "axes": np.array([0], np.int64),
        "big": np.array(1e3, np.float32),
    }
    return make_model(
        nodes,
        [("x", np.float32, ("batch", "sequence", D))],
        [("y", np.float32, ("batch", "sequence", "sequence"))],
        inits,
    )


@pytest.mark.parametrize("k, dtype", [(0, 1), (1, 1), (-2, 7), (0, 6)])
def test_eye_like_of_a_dynamic_length(k, dtype):
    model = _masked_scores(k, dtype)
    res = convert(model)
    assert op_histogram(res.tflite_bytes)["RANGE"] == 2
    check_at_sizes(res, model, [(2, 1, D), (2, 5, D), (1, 17, D), (3, 64, D), (1, 130, D)])


def test_eye_like_static_stays_a_constant():
    model = _masked_scores(1)
    chk = check_conversion(model, input_shapes={"x": (2, 9, D)})
    assert "RANGE" not in chk.ops and "SHAPE" not in chk.ops


def _causal(upper: int, k: int | None):
    """scores [b, s, s] = x x^T through Trilu (constant k, or a run-time int64 k input)."""
    inputs = [("x", np.float32, ("batch", "sequence", D))]
    trilu_in = ["scores"]
    if k is None:
        inputs.append(("k", np.int64, ()))
        trilu_in.append("k")
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "xt"], ["scores"]),
        helper.make_node("Trilu", trilu_in, ["y"], upper=upper),
    ]
    inits = {}
    if k is not None:
        nodes[-1].input.append("kc")
        inits["kc"] = np.array(k, np.int64)
    return make_model(nodes, inputs, [("y", np.float32, ("batch", "sequence", "sequence"))], inits)


@pytest.mark.parametrize("upper, k", [(1, 0), (0, 0), (1, 2), (0, -1)])
def test_trilu_of_a_dynamic_length(upper, k):
    """Trilu whose last two dims are dynamic: its mask is the run-time grid, not a constant
    of the sample's size (refused unpinned before: SELECT_V2's mask changed shape)."""
    model = _causal(upper, k)
    res = convert(model)
    assert op_histogram(res.tflite_bytes)["RANGE"] == 2
    check_at_sizes(res, model, [(2, 3, D), (2, 5, D), (1, 17, D), (3, 64, D), (1, 130, D)])


@pytest.mark.parametrize("k", [-3, 0, 4, 2**40])
def test_trilu_runtime_k_of_a_dynamic_length(k):
    import onnxruntime as ort

    from onnx2tflite_direct import validate as V

    model = _causal(1, None)
    res = convert(model)
    sess = ort.InferenceSession(model.SerializeToString())
    rng = np.random.default_rng(3)
    for n in (3, 9, 40):
        feeds = {"x": rng.standard_normal((2, n, D)).astype(np.float32), "k": np.array(k)}
        (want,) = sess.run(None, feeds)
        got = V.run_litert(res.tflite_bytes, feeds, res.report["io"])["y"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1, np.abs(want).max()))
