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
