"""ArgMax/ArgMin: first/last index on ties, keepdims, axes, dtypes and channel-last inputs."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

SHAPE = (3, 4, 5)


def _out_shape(shape, axis, keepdims):
    axis %= len(shape)
    return tuple(1 if i == axis else d for i, d in enumerate(shape) if keepdims or i != axis)


def _arg_model(op, axis, keepdims, last, dtype=np.float32, shape=SHAPE):
    node = helper.make_node(op, ["x"], ["y"], axis=axis, keepdims=keepdims, select_last_index=last)
    out = ("y", np.int64, _out_shape(shape, axis, keepdims))
    return make_model([node], [("x", dtype, shape)], [out], opset=13)


def _ties(dtype, shape=SHAPE):
    """Few distinct values: many ties, so first-vs-last index is exercised."""
    return np.random.default_rng(0).integers(0, 3, shape).astype(dtype)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("last", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint8, np.int8])
def test_arg_ties(op, axis, keepdims, last, dtype):
    model = _arg_model(op, axis, keepdims, last, dtype)
    chk = check_conversion(model, feeds={"x": _ties(dtype)})
    assert chk.ops["REVERSE_V2"] == last


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_arg_random_floats(op, keepdims):
    check_conversion(_arg_model(op, 1, keepdims, 0))


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("last", [0, 1])
def test_argmax_over_channels_of_nhwc_data_needs_no_transpose(keepdims, last):
    w = np.random.default_rng(2).integers(-1, 2, (4, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("ArgMax", ["c"], ["y"], axis=1, keepdims=keepdims, select_last_index=last),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, (1, 3, 5, 6))],
        [("y", np.int64, _out_shape((1, 4, 5, 6), 1, keepdims))],
        initializers={"w": w},
        opset=13,
    )
    chk = check_conversion(model, feeds={"x": _ties(np.float32, (1, 3, 5, 6))})
    assert chk.ops["TRANSPOSE"] == 0, chk.ops


def test_arg_int64_refused():
    """LiteRT's ARG_MAX has no int64-input kernel."""
    expect_refusal(_arg_model("ArgMax", 0, 1, 0, np.int64), "unsupported_dtype")


@pytest.mark.parametrize("dtype, slow", [(np.float32, False), (np.int32, True)])
def test_slow_path_dtype_is_noted_on_the_report_row(dtype, slow):
    model = make_model(
        [helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0)],
        inputs=[("x", dtype, (2, 5, 3))],
        outputs=[("y", np.int64, (2, 3))],
    )
    chk = check_conversion(model)
    row = next(r for r in chk.report["nodes"] if r["op_type"] == "ArgMax")
    assert ("notes" in row) == slow
    if slow:
        assert "int32 input" in row["notes"][0]
