"""CumSum: exclusive/reverse, constant and runtime axis, dtypes, channel-last inputs."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

SHAPE = (2, 3, 4)


def _model(axis, form, exclusive=0, reverse=0, dtype=np.float32, axis_dtype=np.int64):
    inputs = [("x", dtype, SHAPE)]
    inits = {}
    if form == "const":
        inits["axis"] = np.array(axis, axis_dtype)
    else:
        inputs.append(("axis", axis_dtype, ()))
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse)
    return make_model([node], inputs, [("y", dtype, SHAPE)], initializers=inits, opset=14)


def _feeds(axis, form, dtype=np.float32, axis_dtype=np.int64):
    rng = np.random.default_rng(0)
    x = (
        rng.integers(-9, 10, SHAPE).astype(dtype)
        if dtype != np.float32
        else rng.standard_normal(SHAPE).astype(dtype)
    )
    feeds = {"x": x}
    if form == "runtime":
        feeds["axis"] = np.array(axis, axis_dtype)
    return feeds


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("form", ["const", "runtime"])
@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
def test_cumsum_options(axis, form, exclusive, reverse):
    model = _model(axis, form, exclusive, reverse)
    check_conversion(model, feeds=_feeds(axis, form))


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("axis_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("form", ["const", "runtime"])
def test_cumsum_int(dtype, axis_dtype, form):
    model = _model(1, form, dtype=dtype, axis_dtype=axis_dtype)
    check_conversion(model, feeds=_feeds(1, form, dtype, axis_dtype))


@pytest.mark.parametrize("axis", [1, 2])
def test_cumsum_nhwc_data_constant_axis_needs_no_transpose(axis):
    w = np.random.default_rng(2).standard_normal((4, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("CumSum", ["c", "axis"], ["y"], reverse=1),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, (1, 3, 5, 6))],
        [("y", np.float32, (1, 4, 5, 6))],
        initializers={"w": w, "axis": np.array(axis, np.int64)},
        opset=14,
    )
    chk = check_conversion(model)
    assert chk.ops["TRANSPOSE"] == 0, chk.ops


def test_cumsum_float64_refused():
    expect_refusal(_model(0, "const", dtype=np.float64), "unsupported_dtype")
