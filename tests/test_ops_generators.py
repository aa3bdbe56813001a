"""Range, ConstantOfShape, EyeLike, Trilu, Expand and Tile against onnxruntime."""

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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "in_shape,shape,out_shape",
    [((3, 1), (2, 1, 6), (2, 3, 6)), ((4,), (4,), (4,)), ((1, 2, 1), (3, 1, 1, 2), (3, 1, 2, 2))],
)
def test_expand_runtime_shape(in_shape, shape, out_shape, dtype):
    node = helper.make_node("Expand", ["x", "s"], ["y"])
    model = make_model(
        [node],
        [("x", dtype, in_shape), ("s", np.int64, (len(shape),))],
        [("y", dtype, out_shape)],
        opset=13,
    )
    check_conversion(model, feeds={"x": _data(in_shape, dtype), "s": np.array(shape, np.int64)})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("runtime", [False, True])
def test_tile(runtime, dtype):
    x = _data((2, 3, 1), dtype)
    reps = np.array([2, 1, 3], np.int64)
    inputs = [("x", dtype, x.shape)]
    feeds = {"x": x}
    inits = {}
    if runtime:
        inputs.append(("r", np.int64, (3,)))
        feeds["r"] = reps
    else:
        inits["r"] = reps
    node = helper.make_node("Tile", ["x", "r"], ["y"])
    model = make_model([node], inputs, [("y", dtype, (4, 3, 3))], inits, opset=13)
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("runtime", [False, True])
def test_tile_channel_last_input(runtime):
    """Tile of a conv output (stored NHWC): repeats are permuted to the stored order."""
    w = RNG.standard_normal((2, 3, 1, 1)).astype(np.float32)
    reps = np.array([1, 2, 3, 1], np.int64)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Tile", ["c", "r"], ["y"]),
    ]
    inputs = [("x", np.float32, (1, 3, 2, 4))]
    inits = {"w": w}
    feeds = {"x": _data((1, 3, 2, 4))}
    if runtime:
        inputs.append(("r", np.int64, (4,)))
        feeds["r"] = reps
    else:
        inits["r"] = reps
    model = make_model(nodes, inputs, [("y", np.float32, (1, 4, 6, 4))], inits, opset=13)
    check_conversion(model, feeds=feeds)
