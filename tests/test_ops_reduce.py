"""Reduce* lowerings: LiteRT vs onnxruntime over axes forms, keepdims, dtypes and layouts."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

REDUCE_OPS = [
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSum",
    "ReduceLogSumExp",
]
SHAPE = (2, 3, 4)


def _out_shape(shape, axes, keepdims):
    axes = [a % len(shape) for a in (axes if axes else range(len(shape)))]
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _positive(shape, dtype=np.float32, seed=0):
    """Positive data keeps LogSum defined and products small."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 1.5, shape).astype(dtype)


def _reduce_model(op, axes, keepdims, form, shape=SHAPE, dtype=np.float32, opset=None, **attrs):
    """``form``: 'attr' (opset 17 attribute; ReduceSum opset 11), 'const' or 'runtime' input."""
    out = ("y", dtype, _out_shape(shape, axes, keepdims))
    inputs = [("x", dtype, shape)]
    inits = {}
    if form == "attr":
        opset = opset or (11 if op == "ReduceSum" else 17)
        if axes is not None:
            attrs["axes"] = list(axes)
        node = helper.make_node(op, ["x"], ["y"], keepdims=keepdims, **attrs)
    else:
        opset = opset or 18
        axes_arr = np.array(axes if axes is not None else [], np.int64)
        if form == "const":
            inits["axes"] = axes_arr
        else:
            inputs.append(("axes", np.int64, axes_arr.shape))
        node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims, **attrs)
    return make_model([node], inputs, [out], initializers=inits, opset=opset), axes


def _check(model, axes, form, shape=SHAPE, dtype=np.float32, data=None):
    feeds = {"x": _positive(shape, dtype) if data is None else data}
    if form == "runtime":
        feeds["axes"] = np.array(axes if axes is not None else [], np.int64)
    return check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("form", ["attr", "const", "runtime"])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axes", [(1,), (0, 2), (-1,), None])
def test_reduce_axes_forms(op, form, keepdims, axes):
    model, axes = _reduce_model(op, axes, keepdims, form)
    if op == "ReduceLogSumExp" and form == "runtime" and not keepdims and axes:
        expect_refusal(model, "requires_constant_input")
        return
    _check(model, axes, form)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_int(op, dtype, keepdims):
    model, axes = _reduce_model(op, (1,), keepdims, "const", dtype=dtype)
    if op == "ReduceL1" and dtype == np.int64:  # ABS has no int64 kernel
        expect_refusal(model, "unsupported_dtype")
        return
    data = np.random.default_rng(1).integers(-5, 6, SHAPE).astype(dtype)
    _check(model, axes, "const", dtype=dtype, data=data)


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_bool(op, keepdims):
    model, axes = _reduce_model(op, (1,), keepdims, "const", shape=(4, 3), dtype=np.bool_, opset=20)
    data = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 1], [0, 1, 0]], bool)
    chk = _check(model, axes, "const", shape=(4, 3), dtype=np.bool_, data=data)
    assert chk.ops[{"ReduceMax": "REDUCE_ANY", "ReduceMin": "REDUCE_ALL"}[op]] == 1


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_empty_set(op):
    """Reducing zero elements gives the reduction's identity (0, 1, -inf, inf ...)."""
    model, axes = _reduce_model(op, (1,), 1, "const", shape=(2, 0, 4))
    if op == "ReduceMean":  # undefined: onnxruntime says 0, the reference implementation NaN
        expect_refusal(model, "unsupported_attribute_value")
        return
    _check(model, axes, "const", shape=(2, 0, 4), data=np.zeros((2, 0, 4), np.float32))


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("form", ["const", "runtime"])
def test_reduce_noop_with_empty_axes(op, form):
    """Nothing reduced: each element alone (|x| for L1/L2, x*x, log x), as onnxruntime does."""
    inputs = [("x", np.float32, SHAPE)]
    inits = {"axes": np.zeros(0, np.int64)} if form == "const" else {}
    if form == "runtime":
        inputs.append(("axes", np.int64, (0,)))
    node = helper.make_node(op, ["x", "axes"], ["y"], noop_with_empty_axes=1)
    model = make_model([node], inputs, [("y", np.float32, SHAPE)], initializers=inits, opset=18)
    data = _positive(SHAPE) * np.array([1, -1], np.float32).repeat(2)  # mixed signs
    if op == "ReduceLogSum":
        data = np.abs(data)
    _check(model, [], form, data=data)


@pytest.mark.parametrize("op", ["ReduceL1", "ReduceSumSquare", "ReduceLogSum", "ReduceSum"])
def test_reduce_scalar_input(op):
    node = helper.make_node(op, ["x"], ["y"], keepdims=0)
    model = make_model([node], [("x", np.float32, ())], [("y", np.float32, ())], opset=18)
    check_conversion(
        model, feeds={"x": np.array(0.75 if op == "ReduceLogSum" else -2.5, np.float32)}
    )


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("noop", [0, 1])
def test_reduce_sum_square_int(dtype, noop):
    axes = [] if noop else [1]
    out = SHAPE if noop else _out_shape(SHAPE, axes, 1)
    node = helper.make_node("ReduceSumSquare", ["x", "axes"], ["y"], noop_with_empty_axes=noop)
    model = make_model(
        [node],
        [("x", dtype, SHAPE)],
        [("y", dtype, out)],
        initializers={"axes": np.array(axes, np.int64)},
        opset=18,
    )
    data = np.random.default_rng(3).integers(-7, 8, SHAPE).astype(dtype)
    chk = check_conversion(model, feeds={"x": data})
    assert chk.ops["MUL"] == 1


def test_reduce_runtime_axes_after_channel_last_producer():
    """Runtime axes address ONNX axes: NHWC data is put back in ONNX order first."""
    w = np.random.default_rng(2).standard_normal((4, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("ReduceSum", ["c", "axes"], ["y"], keepdims=0),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, (1, 3, 5, 6)), ("axes", np.int64, (1,))],
        [("y", np.float32, (1, 5, 6))],
        initializers={"w": w},
        opset=13,
    )
    feeds = {"x": _positive((1, 3, 5, 6)), "axes": np.array([1], np.int64)}
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax", "ReduceL2"])
@pytest.mark.parametrize("axes", [(2, 3), (1,), (1, 2, 3)])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_channel_last_input_needs_no_transpose(op, axes, keepdims):
    """After a Conv the data is NHWC; constant axes map through the layout, no TRANSPOSE."""
    w = np.random.default_rng(2).standard_normal((4, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node(op, ["c"], ["y"], axes=list(axes), keepdims=keepdims),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, (1, 3, 5, 6))],
        [("y", np.float32, _out_shape((1, 4, 5, 6), axes, keepdims))],
        initializers={"w": w},
    )
    chk = check_conversion(model)
    assert chk.ops["TRANSPOSE"] == 0, chk.ops


def test_reduce_log_sum_exp_large_values():
    """Stable log-sum-exp: exp(100) overflows float32, the result must not."""
    model, axes = _reduce_model("ReduceLogSumExp", (1,), 0, "const")
    data = np.full(SHAPE, 100.0, np.float32) + _positive(SHAPE)
    _check(model, axes, "const", data=data)


def test_reduce_mean_int_refused():
    model, _ = _reduce_model("ReduceMean", (1,), 1, "const", dtype=np.int32)
    expect_refusal(model, "unsupported_dtype")


@settings(max_examples=15, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    data=st.data(),
    keepdims=st.sampled_from([0, 1]),
    op=st.sampled_from(["ReduceSum", "ReduceMax", "ReduceMean"]),
)
def test_reduce_random_shapes(shape, data, keepdims, op):
    rank = len(shape)
    axes = data.draw(
        st.lists(
            st.integers(-rank, rank - 1), min_size=1, max_size=rank, unique_by=lambda a: a % rank
        )
    )
    model, axes = _reduce_model(op, axes, keepdims, "attr", shape=tuple(shape))
    _check(model, axes, "attr", shape=tuple(shape))


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceLogSumExp"])
@pytest.mark.parametrize("shape", [(5,), (2, 3, 2, 2, 3), (2, 1, 3, 2, 2, 3)])
def test_reduce_ranks(op, shape):
    model, axes = _reduce_model(op, (0,), 0, "attr", shape=shape)
    _check(model, axes, "attr", shape=shape)


def test_reduce_rank_7_refused():
    """XNNPACK cannot prepare SUM/MEAN on rank-7 tensors: the model would not load."""
    model, _ = _reduce_model("ReduceMean", (0,), 0, "attr", shape=(2, 1, 2, 3, 1, 2, 3))
    expect_refusal(model, "unsupported_rank")
