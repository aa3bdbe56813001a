"""Slice and Split against onnxruntime: constant and runtime operands, layouts, dtypes."""

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import TensorProto, helper

RNG = np.random.default_rng(0)
DTYPES = [np.float32, np.int32, np.int64, np.bool_, np.int8, np.uint8]
SPLIT_DTYPES = [d for d in DTYPES if d != np.bool_]


def _data(shape, dtype):
    if dtype == np.bool_:
        return RNG.random(shape) > 0.5
    return (RNG.random(shape) * 100).astype(dtype)


def _onnx_slice(x, starts, ends, axes, steps):
    sl = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        sl[a] = slice(s, e, st)
    return x[tuple(sl)]


CASES = [
    ([1, 0], [3, 10], [0, 1], [1, 1]),
    ([-1, 0], [-1000, 9], [0, -1], [-1, 3]),
    ([0], [-1], [1], [1]),
    ([20, -20], [-20, 20], [0, 1], [-2, 2]),
    ([2], [2**62], [2], [1]),
    ([-1], [-(2**62)], [2], [-1]),
]


@pytest.mark.parametrize("runtime", [(), (1, 2), (1, 2, 3), (1, 2, 3, 4)])
@pytest.mark.parametrize("starts,ends,axes,steps", CASES)
def test_slice(starts, ends, axes, steps, runtime):
    shape = (4, 10, 5)
    x = _data(shape, np.float32)
    y = _onnx_slice(x, starts, ends, axes, steps)
    names = ["x", "starts", "ends", "axes", "steps"]
    values = [None, *(np.array(v, np.int64) for v in (starts, ends, axes, steps))]
    inputs = [("x", np.float32, shape)]
    inits = {}
    feeds = {"x": x}
    for i in range(1, 5):
        if i in runtime:
            inputs.append((names[i], np.int64, values[i].shape))
            feeds[names[i]] = values[i]
        else:
            inits[names[i]] = values[i]
    node = helper.make_node("Slice", names, ["y"])
    model = make_model([node], inputs, [("y", np.float32, y.shape)], inits)
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("dtype", DTYPES)
def test_slice_dtypes_and_channel_last(dtype):
    """A slice between two convs stays channel-last: no TRANSPOSE in between."""
    x = _data((2, 3, 6), dtype)
    node = helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])
    inits = {
        "s": np.array([1], np.int64),
        "e": np.array([5], np.int64),
        "a": np.array([2], np.int64),
    }
    model = make_model([node], [("x", dtype, x.shape)], [("y", dtype, (2, 3, 4))], inits)
    check_conversion(model, feeds={"x": x})


def test_slice_on_channel_last_feature_map_adds_no_transpose():
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Slice", ["c", "s", "e", "a"], ["sl"]),
        helper.make_node("Conv", ["sl", "w2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits = {
        "w": w,
        "w2": RNG.standard_normal((4, 2, 3, 3)).astype(np.float32),
        "s": np.array([1, 2], np.int64),
        "e": np.array([3, 7], np.int64),
        "a": np.array([1, 3], np.int64),
    }
    model = make_model(
        nodes, [("x", np.float32, (1, 3, 8, 8))], [("y", np.float32, (1, 4, 8, 5))], inits
    )
    chk = check_conversion(model)
    assert chk.ops["TRANSPOSE"] <= 2  # only at the graph boundary


def test_slice_empty_result_refused():
    node = helper.make_node("Slice", ["x", "s", "e"], ["y"])
    inits = {"s": np.array([5], np.int64), "e": np.array([7], np.int64)}
    model = make_model([node], [("x", np.float32, (4,))], [("y", np.float32, (0,))], inits)
    expect_refusal(model, "unsupported_attribute_value")


@pytest.mark.parametrize("dtype", SPLIT_DTYPES)
@pytest.mark.parametrize(
    "shape,axis,sizes",
    [((6, 4), 0, [2, 2, 2]), ((6, 4), 1, [1, 3]), ((2, 7, 3), -2, [3, 3, 1]), ((5,), 0, [5])],
)
def test_split(shape, axis, sizes, dtype):
    x = _data(shape, dtype)
    outs = np.split(x, np.cumsum(sizes)[:-1], axis=axis)
    names = [f"y{i}" for i in range(len(sizes))]
    node = helper.make_node("Split", ["x", "split"], names, axis=axis)
    model = make_model(
        [node],
        [("x", dtype, shape), ("split", np.int64, (len(sizes),))],
        [(n, dtype, o.shape) for n, o in zip(names, outs, strict=True)],
    )
    check_conversion(model, feeds={"x": x, "split": np.array(sizes, np.int64)})


def test_split_num_outputs_uneven():
    node = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)
    model = make_model(
        [node],
        [("x", np.float32, (2, 7))],
        [("a", np.float32, (2, 3)), ("b", np.float32, (2, 3)), ("c", np.float32, (2, 1))],
        opset=18,
    )
    check_conversion(model)


def test_split_opset11_attribute():
    node = helper.make_node("Split", ["x"], ["a", "b"], axis=0, split=[1, 3])
    model = make_model(
        [node],
        [("x", TensorProto.FLOAT, (4, 2))],
        [("a", np.float32, (1, 2)), ("b", np.float32, (3, 2))],
        opset=11,
    )
    check_conversion(model)


def test_split_bool_refused():
    node = helper.make_node("Split", ["x"], ["a", "b"], axis=0)
    model = make_model(
        [node], [("x", np.bool_, (4,))], [("a", np.bool_, (2,)), ("b", np.bool_, (2,))], opset=13
    )
    expect_refusal(model, "unsupported_dtype")
