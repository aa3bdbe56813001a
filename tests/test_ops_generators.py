"""Range, ConstantOfShape, EyeLike, Trilu (generators.py) against onnxruntime; Expand and Tile:
tests/test_ops_expand.py."""

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper, numpy_helper

RNG = np.random.default_rng(2)
DTYPES = [np.float32, np.int32, np.int64, np.bool_, np.int8, np.uint8]


def _data(shape, dtype=np.float32):
    if dtype == np.bool_:
        return RNG.random(shape) > 0.5
    return (RNG.random(shape) * 100).astype(dtype)


@pytest.mark.parametrize(
    "dtype,start,limit,delta",
    [(np.float32, 1.5, 7.0, 0.7), (np.int32, 10, -3, -4), (np.int64, 0, 9, 2)],
)
def test_range_runtime(dtype, start, limit, delta):
    n = int(max(np.ceil((limit - start) / delta), 0))
    node = helper.make_node("Range", ["s", "l", "d"], ["y"])
    model = make_model(
        [node],
        [("s", dtype, ()), ("l", dtype, ()), ("d", dtype, ())],
        [("y", dtype, (n,))],
        opset=11,
    )
    feeds = {k: np.array(v, dtype) for k, v in zip("sld", (start, limit, delta), strict=True)}
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize(
    "value", [None, np.array([3.5], np.float32), np.array([7], np.int64), np.array([1], np.int32)]
)
def test_constant_of_shape_runtime_shape(value):
    kwargs = {} if value is None else {"value": numpy_helper.from_array(value)}
    dtype = np.float32 if value is None else value.dtype
    node = helper.make_node("ConstantOfShape", ["s"], ["y"], **kwargs)
    model = make_model([node], [("s", np.int64, (3,))], [("y", dtype, (2, 3, 4))], opset=12)
    check_conversion(model, feeds={"s": np.array([2, 3, 4], np.int64)})


@pytest.mark.parametrize("k", [0, 1, -2, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int32])
def test_eye_like(k, dtype):
    node = helper.make_node("EyeLike", ["x"], ["y"], k=k)
    model = make_model([node], [("x", dtype, (3, 4))], [("y", dtype, (3, 4))], opset=9)
    check_conversion(model)


@pytest.mark.parametrize("runtime_k", [False, True])
@pytest.mark.parametrize("k", [0, 1, -1, 4, -5])
@pytest.mark.parametrize("upper", [0, 1])
def test_trilu(upper, k, runtime_k):
    x = _data((2, 3, 4))
    inputs = [("x", np.float32, x.shape)]
    feeds = {"x": x}
    inits = {}
    if runtime_k:
        inputs.append(("k", np.int64, ()))
        feeds["k"] = np.array(k, np.int64)
    else:
        inits["k"] = np.array(k, np.int64)
    node = helper.make_node("Trilu", ["x", "k"], ["y"], upper=upper)
    model = make_model([node], inputs, [("y", np.float32, x.shape)], inits, opset=14)
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.bool_])
def test_trilu_dtypes(dtype):  # onnxruntime lacks int8/uint8 Trilu
    node = helper.make_node("Trilu", ["x"], ["y"])
    model = make_model([node], [("x", dtype, (4, 3))], [("y", dtype, (4, 3))], opset=14)
    check_conversion(model, feeds={"x": _data((4, 3), dtype)})


def test_trilu_empty_refused():
    node = helper.make_node("Trilu", ["x"], ["y"])
    model = make_model([node], [("x", np.float32, (0, 3))], [("y", np.float32, (0, 3))], opset=14)
    expect_refusal(model, "unsupported_attribute_value")
