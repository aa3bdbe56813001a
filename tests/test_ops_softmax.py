"""Softmax, LogSoftmax, Hardmax: every axis, both opset semantics, layouts, ties."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

SHAPE = (2, 3, 4, 5)


def _model(op, axis, opset, shape=SHAPE):
    attrs = {} if axis is None else {"axis": axis}
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    return make_model([node], [("x", np.float32, shape)], [("y", np.float32, shape)], opset=opset)


def _after_conv(op, axis, opset, channels=4):
    """x -> Conv -> op: the op sees channel-last (NHWC) data."""
    w = np.random.default_rng(2).standard_normal((channels, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node(op, ["c"], ["y"], axis=axis),
    ]
    return make_model(
        nodes,
        [("x", np.float32, (1, 3, 5, 6))],
        [("y", np.float32, (1, channels, 5, 6))],
        initializers={"w": w},
        opset=opset,
    )


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, -3])
@pytest.mark.parametrize("opset", [11, 13])
def test_normalizers_every_axis_and_opset(op, axis, opset):
    check_conversion(_model(op, axis, opset))


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset", [11, 13])
def test_normalizers_large_numbers(op, opset):
    x = np.array([[0, 1, 2, 3], [10000, 10001, 10002, 10003]], np.float32)
    check_conversion(_model(op, -1, opset, x.shape), feeds={"x": x})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize(
    ("axis", "opset", "expect"),
    [
        (1, 13, {"SOFTMAX": 1}),  # channels are stored last
        (1, 11, {"SOFTMAX": 1, "RESHAPE": 2}),  # C, H, W are the trailing stored axes
        (2, 13, {"REDUCE_MAX": 1, "SUM": 1}),  # H is not stored last: composed, no transpose
        (3, 11, {"REDUCE_MAX": 1, "SUM": 1}),  # W alone (opset 11 last axis) is not stored last
    ],
)
def test_normalizers_on_nhwc_data_need_no_transpose(op, axis, opset, expect):
    chk = check_conversion(_after_conv(op, axis, opset))
    assert chk.ops["TRANSPOSE"] == 0, chk.ops
    for name, count in expect.items():
        name = "LOG_SOFTMAX" if name == "SOFTMAX" and op == "LogSoftmax" else name
        assert chk.ops[name] == count, chk.ops


def _ties(shape=SHAPE):
    return np.random.default_rng(0).integers(0, 3, shape).astype(np.float32)


@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1])
@pytest.mark.parametrize("opset", [11, 13])
def test_hardmax_first_maximum_wins(axis, opset):
    check_conversion(_model("Hardmax", axis, opset), feeds={"x": _ties()})


@pytest.mark.parametrize("axis", [1, 2])
def test_hardmax_on_nhwc_data_needs_no_transpose(axis):
    model = _after_conv("Hardmax", axis, 13)
    chk = check_conversion(model, feeds={"x": _ties((1, 3, 5, 6))})
    assert chk.ops["TRANSPOSE"] == 0, chk.ops
    assert chk.ops["ONE_HOT"] == 1


RANK_SHAPES = {1: (5,), 2: (3, 4), 3: (2, 3, 4), 5: (2, 3, 2, 2, 3), 6: (2, 1, 3, 2, 2, 3)}


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("rank", sorted(RANK_SHAPES))
@pytest.mark.parametrize("axis", [0, -1])
def test_ranks_1_to_6(op, rank, axis):
    check_conversion(_model(op, axis, 13, RANK_SHAPES[rank]))


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_rank_7_refused(op):
    """XNNPACK cannot prepare SOFTMAX/SUM on rank-7 tensors: the model would not load."""
    expect_refusal(_model(op, -1, 13, (2, 1, 2, 3, 1, 2, 3)), "unsupported_rank")
