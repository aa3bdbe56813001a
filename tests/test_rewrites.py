"""Graph rewrites: each rule changes the op histogram as intended and keeps the numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

from onnx2tflite_direct import BadInputError, errors

RNG = np.random.default_rng(0)
F = np.float32


def _rules(chk) -> dict[str, int]:
    return {r["rule"]: r["matched"] for r in chk.report["rewrites"]}


def _gelu_nodes(form: str):
    if form == "div_then_half":
        return [
            helper.make_node("Div", ["x", "sqrt2"], ["d"]),
            helper.make_node("Erf", ["d"], ["e"]),
            helper.make_node("Add", ["e", "one"], ["a"]),
            helper.make_node("Mul", ["x", "a"], ["m"]),
            helper.make_node("Mul", ["m", "half"], ["y"]),
        ]
    return [
        helper.make_node("Mul", ["inv_sqrt2", "x"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["one", "e"], ["a"]),
        helper.make_node("Mul", ["x", "half"], ["h"]),
        helper.make_node("Mul", ["h", "a"], ["y"]),
    ]


@pytest.mark.parametrize("form", ["div_then_half", "half_first"])
def test_erf_gelu_chain_becomes_one_gelu(form):
    consts = {
        "sqrt2": np.array(math.sqrt(2), F),
        "inv_sqrt2": np.array(1 / math.sqrt(2), F),
        "one": np.array(1, F),
        "half": np.array(0.5, F),
    }
    model = make_model(_gelu_nodes(form), [("x", F, (2, 16))], [("y", F, (2, 16))], consts)
    chk = check_conversion(model)
    assert chk.ops == {"GELU": 1}
    assert _rules(chk)["fuse_gelu"] == 5
    unfused = check_conversion(model, disable_rewrites=("fuse_gelu",))
    assert "GELU" not in unfused.ops


@pytest.mark.parametrize("form", ["hardsigmoid", "relu6_div"])
def test_hardswish_chains_become_hard_swish(form):
    if form == "hardsigmoid":
        nodes = [
            helper.make_node("HardSigmoid", ["x"], ["g"], alpha=1 / 6, beta=0.5),
            helper.make_node("Mul", ["x", "g"], ["y"]),
        ]
        consts = {}
    else:
        nodes = [
            helper.make_node("Add", ["x", "three"], ["a"]),
            helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
            helper.make_node("Div", ["c", "six"], ["g"]),
            helper.make_node("Mul", ["g", "x"], ["y"]),
        ]
        consts = {"three": np.array(3, F), "zero": np.array(0, F), "six": np.array(6, F)}
    model = make_model(nodes, [("x", F, (3, 8))], [("y", F, (3, 8))], consts)
    chk = check_conversion(model, feeds={"x": RNG.uniform(-5, 5, (3, 8)).astype(F)})
    assert chk.ops == {"HARD_SWISH": 1}


def test_common_subexpressions_are_merged():
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["a"]),
        helper.make_node("Sigmoid", ["x"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    model = make_model(nodes, [("x", F, (4,))], [("y", F, (4,))])
    chk = check_conversion(model)
    assert chk.ops == {"LOGISTIC": 1, "ADD": 1}
    assert _rules(chk)["merge_common_subexpressions"] == 1


def test_noop_cast_disappears():
    nodes = [
        helper.make_node("Cast", ["x"], ["c"], to=1),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    model = make_model(nodes, [("x", F, (4,))], [("y", F, (4,))])
    chk = check_conversion(model)
    assert chk.ops == {"RELU": 1}


def test_matmul_plus_bias_becomes_one_fully_connected():
    consts = {
        "w": RNG.standard_normal((8, 5)).astype(F),
        "b": RNG.standard_normal(5).astype(F),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    model = make_model(nodes, [("x", F, (3, 8))], [("y", F, (3, 5))], consts)
    chk = check_conversion(model)
    assert chk.ops == {"FULLY_CONNECTED": 1}
    assert _rules(chk)["fuse_bias_add"] == 1 and _rules(chk)["fuse_activation"] == 1
    assert check_conversion(model, fuse=False).ops == {"FULLY_CONNECTED": 1, "ADD": 1, "RELU": 1}


def test_reshape_chain_collapses():
    consts = {"s1": np.array([6, 4], np.int64), "s2": np.array([2, 12], np.int64)}
    nodes = [
        helper.make_node("Reshape", ["x", "s1"], ["r1"]),
        helper.make_node("Reshape", ["r1", "s2"], ["r2"]),
        helper.make_node("Relu", ["r2"], ["y"]),
    ]
    model = make_model(nodes, [("x", F, (2, 3, 4))], [("y", F, (2, 12))], consts)
    chk = check_conversion(model)
    assert chk.ops == {"RESHAPE": 1, "RELU": 1}


def test_unknown_rewrite_rule_is_bad_input():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, (2,))], [("y", F, (2,))])
    with pytest.raises(BadInputError) as info:
        check_conversion(model, disable_rewrites=("no_such_rule",))
    assert info.value.reason_code == errors.INVALID_OPTION


@pytest.mark.parametrize("op", ["Conv", "AveragePool"])
@pytest.mark.parametrize("opset", [9, 17])
def test_zero_pad_merges_into_conv_and_counting_avgpool(op, opset):
    pads = [0, 0, 1, 2, 0, 0, 1, 0]
    if opset < 11:
        pad = helper.make_node("Pad", ["x"], ["p"], pads=pads, mode="constant")
        consts = {}
    else:
        pad = helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant")
        consts = {"pads": np.array(pads, np.int64)}
    if op == "Conv":
        consts["w"] = RNG.standard_normal((4, 3, 3, 3)).astype(F)
        node = helper.make_node("Conv", ["p", "w"], ["y"])
        out = (1, 4, 5, 4)
    else:
        node = helper.make_node(
            "AveragePool", ["p"], ["y"], kernel_shape=[3, 3], count_include_pad=1
        )
        out = (1, 3, 5, 4)
    model = make_model([pad, node], [("x", F, (1, 3, 5, 4))], [("y", F, out)], consts, opset=opset)
    chk = check_conversion(model)
    assert _rules(chk)["merge_pad_into_conv"] == 1
    assert chk.ops.get("PAD", 0) <= 1  # the op's own (asymmetric) padding, never two pads


def test_pad_before_maxpool_is_not_merged():
    """Zero padding is not neutral for max pooling: the rule must leave it alone."""
    pad = helper.make_node("Pad", ["x", "pads"], ["p"])
    node = helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[2, 2])
    consts = {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}
    model = make_model([pad, node], [("x", F, (1, 2, 4, 4))], [("y", F, (1, 2, 5, 5))], consts)
    chk = check_conversion(model, feeds={"x": -np.ones((1, 2, 4, 4), F)})
    assert "merge_pad_into_conv" not in _rules(chk)


@pytest.mark.parametrize("half_first", [False, True])
def test_tanh_gelu_chain_becomes_one_tanh_gelu(half_first):
    consts = {
        "three": np.array(3, F),
        "coef": np.array(0.044715, F),
        "k": np.array(math.sqrt(2 / math.pi), F),
        "one": np.array(1, F),
        "half": np.array(0.5, F),
    }
    nodes = [
        helper.make_node("Pow", ["x", "three"], ["x3"]),
        helper.make_node("Mul", ["x3", "coef"], ["c"]),
        helper.make_node("Add", ["x", "c"], ["s"]),
        helper.make_node("Mul", ["s", "k"], ["t_in"]),
        helper.make_node("Tanh", ["t_in"], ["t"]),
        helper.make_node("Add", ["t", "one"], ["a"]),
    ]
    if half_first:
        nodes += [
            helper.make_node("Mul", ["x", "half"], ["h"]),
            helper.make_node("Mul", ["h", "a"], ["y"]),
        ]
    else:
        nodes += [
            helper.make_node("Mul", ["x", "a"], ["m"]),
            helper.make_node("Mul", ["m", "half"], ["y"]),
        ]
    model = make_model(nodes, [("x", F, (2, 16))], [("y", F, (2, 16))], consts)
    chk = check_conversion(model, feeds={"x": RNG.uniform(-4, 4, (2, 16)).astype(F)})
    assert chk.ops == {"GELU": 1}
    assert _rules(chk)["fuse_gelu_tanh"] == 8
