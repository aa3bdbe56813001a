"""CumProd: exclusive/reverse, constant and runtime axis, dtypes, channel-last inputs."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

SHAPE = (2, 3, 4)


def _model(axis, form, exclusive=0, reverse=0, dtype=np.float32, shape=SHAPE):
    inputs, inits = [("x", dtype, shape)], {}
    if form == "const":
        inits["axis"] = np.array(axis, np.int64)
    else:
        inputs.append(("axis", np.int64, ()))
    node = helper.make_node("CumProd", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse)
    return make_model([node], inputs, [("y", dtype, shape)], initializers=inits, opset=26)


def _feeds(axis, form, dtype=np.float32, shape=SHAPE):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        x = rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)
    else:
        x = rng.integers(-3 if np.dtype(dtype).kind == "i" else 0, 4, shape)
    feeds = {"x": x.astype(dtype)}
    if form == "runtime":
        feeds["axis"] = np.array(axis, np.int64)
    return feeds


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("form", ["const", "runtime"])
@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
def test_cumprod_options(axis, form, exclusive, reverse):
    check_conversion(_model(axis, form, exclusive, reverse), feeds=_feeds(axis, form))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.float16])
def test_cumprod_dtypes(dtype):
    check_conversion(_model(2, "const", 1, 0, dtype), feeds=_feeds(2, "const", dtype))


@pytest.mark.parametrize("exclusive", [0, 1])
def test_cumprod_1d_runtime_axis_is_static(exclusive):
    model = _model(0, "runtime", exclusive, shape=(5,))
    chk = check_conversion(model, feeds=_feeds(-1, "runtime", shape=(5,)))
    assert chk.ops["SELECT_V2"] == 0, chk.ops


def test_cumprod_nhwc_data_needs_no_transpose():
    w = np.random.default_rng(2).standard_normal((4, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("CumProd", ["c", "axis"], ["y"], reverse=1),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, (1, 3, 5, 6))],
        [("y", np.float32, (1, 4, 5, 6))],
        initializers={"w": w, "axis": np.array(1, np.int64)},
        opset=26,
    )
    chk = check_conversion(model)
    assert chk.ops["TRANSPOSE"] == 0, chk.ops


def test_cumprod_float64_refused():
    expect_refusal(_model(0, "const", dtype=np.float64), "unsupported_dtype")


def test_cumprod_long_axis_refused():
    expect_refusal(_model(0, "const", shape=(300,)), "unsupported_attribute_value")
