"""--decompose: ops lowered with primitive builtins only, numerically equal to onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

from onnx2tflite_direct import BadInputError, errors

F = np.float32
X = np.linspace(-6, 6, 2 * 3 * 20, dtype=F).reshape(2, 3, 20)

CASES = {
    "LeakyRelu": ({"alpha": 0.1}, "LEAKY_RELU", 17),
    "LeakyRelu_steep": ({"alpha": 2.5}, "LEAKY_RELU", 17),
    "LeakyRelu_negative": ({"alpha": -0.5}, "LEAKY_RELU", 17),
    "HardSwish": ({}, "HARD_SWISH", 17),
    "Gelu": ({}, "GELU", 20),
    "Gelu_tanh": ({"approximate": "tanh"}, "GELU", 20),
    "Abs": ({}, "ABS", 17),
    "Neg": ({}, "NEG", 17),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_decomposed_op_matches_and_avoids_the_dedicated_builtin(case):
    attrs, dedicated, opset = CASES[case]
    op = case.split("_")[0]
    model = make_model(
        [helper.make_node(op, ["x"], ["y"], **attrs)],
        [("x", F, X.shape)],
        [("y", F, X.shape)],
        opset=opset,
    )
    plain = check_conversion(model, feeds={"x": X})
    assert plain.ops.get(dedicated, 0) == 1
    decomposed = check_conversion(model, feeds={"x": X}, decompose=(op,))
    assert dedicated not in decomposed.ops, decomposed.ops


def test_prelu_is_already_primitive_and_accepted():
    model = make_model(
        [helper.make_node("PRelu", ["x", "s"], ["y"])],
        [("x", F, X.shape)],
        [("y", F, X.shape)],
        {"s": np.array([[0.1], [0.2], [0.3]], F)},
    )
    chk = check_conversion(model, feeds={"x": X}, decompose=("PRelu",))
    assert "PRELU" not in chk.ops


def test_unknown_decomposition_is_bad_input():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, (2,))], [("y", F, (2,))])
    with pytest.raises(BadInputError) as info:
        check_conversion(model, decompose=("Conv",))
    assert info.value.reason_code == errors.INVALID_OPTION
    assert "HardSwish" in info.value.message
