"""Gather/scatter family, OneHot and TensorScatter against onnxruntime, with negative and runtime
indices."""

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

RNG = np.random.default_rng(1)
DTYPES = [np.float32, np.int32, np.int64, np.bool_, np.int8, np.uint8]


def _data(shape, dtype=np.float32):
    if dtype == np.bool_:
        return RNG.random(shape) > 0.5
    return (RNG.random(shape) * 100).astype(dtype)


def _indices(shape, dim, idx_dtype=np.int64):
    """Valid ONNX indices in [-dim, dim-1] (negative ones included)."""
    return RNG.integers(-dim, dim, size=shape).astype(idx_dtype)


def _run(node, data, idx, out_shape, out_dtype=None, const_idx=False, extra=(), opset=18):
    inputs = [("x", data.dtype, data.shape)]
    feeds = {"x": data}
    inits = {}
    if const_idx:
        inits["i"] = idx
    else:
        inputs.append(("i", idx.dtype, idx.shape))
        feeds["i"] = idx
    for name, arr in extra:
        inputs.append((name, arr.dtype, arr.shape))
        feeds[name] = arr
    dtype = out_dtype or data.dtype
    model = make_model([node], inputs, [("y", dtype, out_shape)], inits, opset=opset)
    return check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("const_idx", [False, True])
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("axis,ishape", [(0, (3,)), (1, (2, 2)), (-1, ()), (2, (4,))])
def test_gather(axis, ishape, idx_dtype, const_idx):
    data = _data((3, 4, 5))
    idx = _indices(ishape, data.shape[axis], idx_dtype)
    expected = np.take(data, idx, axis=axis)
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    _run(node, data, idx, expected.shape, const_idx=const_idx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_dtypes(dtype):
    data = _data((4, 3), dtype)
    idx = _indices((5,), 4)
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=0)
    _run(node, data, idx, (5, 3))


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize(
    "dtype", [np.float32, np.float16, np.int32, np.int64, np.bool_, np.int8, np.uint8, np.int16]
)
def test_gather_elements(axis, dtype):
    data = _data((3, 4, 2), dtype)
    ishape = list(data.shape)
    ishape[axis] = 2
    idx = _indices(tuple(ishape), data.shape[axis])
    node = helper.make_node("GatherElements", ["x", "i"], ["y"], axis=axis)
    _run(node, data, idx, tuple(ishape))


@pytest.mark.parametrize(
    "dshape,ishape,batch_dims",
    [((3, 4, 2), (5, 2), 0), ((3, 4, 2), (2, 1), 0), ((2, 4, 3), (2, 3, 1), 1)],
)
@pytest.mark.parametrize(
    "dtype", [np.float32, np.float16, np.int32, np.int64, np.bool_, np.int8, np.uint8, np.int16]
)
def test_gather_nd(dshape, ishape, batch_dims, dtype):
    data = _data(dshape, dtype)
    k = ishape[-1]
    dims = np.array(dshape[batch_dims : batch_dims + k])
    idx = (RNG.integers(0, 1 << 20, size=ishape) % dims - dims * (RNG.random(ishape) > 0.5)).astype(
        np.int64
    )
    out = ishape[:-1] + dshape[batch_dims + k :]
    node = helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=batch_dims)
    _run(node, data, idx, out)


@pytest.mark.parametrize("reduction", ["none", "add"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
def test_scatter_nd(reduction, dtype):
    data = _data((4, 3, 2), dtype)
    idx = np.array([[[1], [-1]], [[0], [2]]], np.int64)  # distinct rows, one negative
    upd = _data((2, 2, 3, 2), dtype)
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction=reduction)
    _run(node, data, idx, data.shape, extra=[("u", upd)])


def test_scatter_nd_add_duplicates():
    data = _data((5,))
    idx = np.array([[1], [1], [3]], np.int64)
    upd = _data((3,))
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction="add")
    _run(node, data, idx, data.shape, extra=[("u", upd)])


@pytest.mark.parametrize("reduction", ["mul", "max", "min"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
@pytest.mark.parametrize(
    "dshape,idx",
    [
        ((5,), [[1], [1], [3], [-4]]),  # duplicates, including a negative alias of 1
        ((4, 3), [[[0], [2]], [[0], [-2]]]),  # row slices, duplicate row 2
        ((3, 4), [[1, 2], [1, 2], [0, 0]]),  # element indices with a duplicate
    ],
)
def test_scatter_nd_unrolled_reductions(reduction, dtype, dshape, idx):
    data = _data(dshape, dtype) - (50 if dtype != np.uint8 else 0)
    idx = np.array(idx, np.int64)
    upd = _data(idx.shape[:-1] + dshape[idx.shape[-1] :], dtype) - 50
    if reduction == "mul":
        data, upd = data % 7 - 3, upd % 5 - 2  # small factors: exact products
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction=reduction)
    _run(node, data.astype(dtype), idx, dshape, extra=[("u", upd.astype(dtype))])


@pytest.mark.parametrize("reduction", ["mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, -1])
def test_scatter_elements_unrolled_reductions(reduction, axis):
    data = _data((3, 4)) - 50
    idx = np.array([[1, -1], [1, 3], [0, 3]], np.int64)  # duplicates along the last axis
    if axis == 0:
        idx = np.array([[1, 0, -1, 2], [1, 0, 2, 2]], np.int64)
    upd = _data(idx.shape) - 50
    node = helper.make_node(
        "ScatterElements", ["x", "i", "u"], ["y"], axis=axis, reduction=reduction
    )
    _run(node, data, idx, data.shape, extra=[("u", upd)])


@pytest.mark.parametrize("op", ["ScatterND", "ScatterElements"])
def test_scatter_reduction_unroll_cap_refused(op):
    node = helper.make_node(op, ["x", "i", "u"], ["y"], reduction="max")
    ishape = (65, 1) if op == "ScatterND" else (65,)
    model = make_model(
        [node],
        [("x", np.float32, (4,)), ("i", np.int64, ishape), ("u", np.float32, (65,))],
        [("y", np.float32, (4,))],
        opset=18,
    )
    expect_refusal(model, "unsupported_attribute_value")


def test_scatter_nd_constant_duplicates_refused():
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"])
    model = make_model(
        [node],
        [("x", np.float32, (4,)), ("u", np.float32, (2,))],
        [("y", np.float32, (4,))],
        {"i": np.array([[1], [1]], np.int64)},
        opset=18,
    )
    expect_refusal(model, "unsupported_attribute_value")


@pytest.mark.parametrize("reduction", ["none", "add"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_scatter_elements(axis, reduction):
    data = _data((3, 4))
    ishape = (2, 4) if axis == 0 else (3, 2)
    dim = data.shape[axis]
    # distinct targets along ``axis`` for "none": a random permutation per line
    perm = np.argsort(RNG.random((dim, *ishape)), axis=0)[0]
    idx = np.stack([np.argsort(RNG.random(dim))[: ishape[axis]] for _ in range(8)])
    if axis == 0:
        idx = idx[:4].T
    else:
        idx = idx[:3]
    idx = (idx - dim * (RNG.random(idx.shape) > 0.5)).astype(np.int64)
    del perm
    upd = _data(ishape)
    node = helper.make_node(
        "ScatterElements", ["x", "i", "u"], ["y"], axis=axis, reduction=reduction
    )
    _run(node, data, idx, data.shape, extra=[("u", upd)])


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("idx_dtype", [np.int64])  # onnxruntime implements only these
@pytest.mark.parametrize("vdtype", [np.float32, np.int64])
def test_one_hot(axis, idx_dtype, vdtype):
    depth = 5
    idx = np.array([[0, -1, 4], [7, -6, 2]]).astype(idx_dtype)  # includes out-of-range
    values = np.array([2, 9], vdtype)
    out_shape = list(idx.shape)
    out_shape.insert(axis if axis >= 0 else len(out_shape) + 1 + axis, depth)
    node = helper.make_node("OneHot", ["x", "d", "v"], ["y"], axis=axis)
    model = make_model(
        [node],
        [("x", idx_dtype, idx.shape), ("d", np.int64, ()), ("v", vdtype, (2,))],
        [("y", vdtype, tuple(out_shape))],
        opset=11,
    )
    check_conversion(model, feeds={"x": idx, "d": np.array(depth, np.int64), "v": values})


def _scatter_model(cache, update, mode, axis, dtype, indices):
    inputs = [("past", dtype, cache), ("update", dtype, update)]
    inits, names = {}, ["past", "update"]
    if indices == "runtime":
        inputs.append(("idx", np.int64, (cache[0],)))
        names.append("idx")
    elif indices is not None:
        inits["idx"] = np.asarray(indices, np.int64)
        names.append("idx")
    node = helper.make_node("TensorScatter", names, ["y"], mode=mode, axis=axis)
    return make_model([node], inputs, [("y", dtype, cache)], initializers=inits, opset=24)


@pytest.mark.parametrize("mode", ["linear", "circular"])
@pytest.mark.parametrize("indices", [None, [1, 0], "runtime"])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_tensor_scatter_rank4(mode, indices, dtype):
    cache, update = (2, 3, 5, 4), (2, 3, 3, 4)
    model = _scatter_model(cache, update, mode, -2, dtype, indices)
    rng = np.random.default_rng(4)
    feeds = {
        "past": rng.integers(-9, 9, cache).astype(dtype),
        "update": rng.integers(-9, 9, update).astype(dtype),
    }
    if indices == "runtime":
        feeds["idx"] = np.array([2, 0] if mode == "linear" else [4, 3], np.int64)
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("axis", [1, 2])
def test_tensor_scatter_axis(axis):
    cache = [2, 6, 6]
    update = list(cache)
    update[axis] = 2
    model = _scatter_model(tuple(cache), tuple(update), "circular", axis, np.float32, [5, 2])
    check_conversion(model)


def test_tensor_scatter_float64_refused():
    model = _scatter_model((2, 4, 3), (2, 1, 3), "linear", 1, np.float64, None)
    expect_refusal(model, "unsupported_dtype")
