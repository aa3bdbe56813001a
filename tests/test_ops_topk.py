"""TopK: any axis, largest/smallest, constant/runtime k, ties, integer extremes, layouts."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

SHAPE = (3, 4, 6)


def _shape_k(shape, axis, k):
    return tuple(k if i == axis % len(shape) else d for i, d in enumerate(shape))


def _model(axis, k, form="const", largest=1, dtype=np.float32, shape=SHAPE, opset=11):
    inputs = [("x", dtype, shape)]
    inits = {}
    if form == "const":
        inits["k"] = np.array([k], np.int64)
    else:
        inputs.append(("k", np.int64, (1,)))
    attrs = {"largest": largest} if opset >= 11 else {}
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, **attrs)
    out = _shape_k(shape, axis, k)
    return make_model(
        [node], inputs, [("v", dtype, out), ("i", np.int64, out)], initializers=inits, opset=opset
    )


def _data(dtype, shape=SHAPE, ties=True):
    rng = np.random.default_rng(0)
    if ties:  # few distinct values: the index order of equal values matters
        return rng.integers(-2, 3, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("largest", [0, 1])
@pytest.mark.parametrize("form", ["const", "runtime"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
def test_topk_ties(axis, largest, form, dtype):
    k = 2
    feeds = {"x": _data(dtype)}
    if form == "runtime":
        feeds["k"] = np.array([k], np.int64)
    check_conversion(_model(axis, k, form, largest, dtype), feeds=feeds)


@pytest.mark.parametrize("largest", [0, 1])
def test_topk_distinct_floats_full_sort(largest):
    check_conversion(
        _model(-1, SHAPE[-1], largest=largest), feeds={"x": _data(np.float32, ties=False)}
    )


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_topk_smallest_integer_extremes(dtype):
    """-1 - x mirrors the integers without overflow (plain negation would wrap INT_MIN)."""
    info = np.iinfo(dtype)
    x = np.array([[info.min, info.max, 0, -1, info.min, 5]], dtype)
    model = _model(1, 4, largest=0, dtype=dtype, shape=x.shape)
    check_conversion(model, feeds={"x": x})


def test_topk_opset10_runtime_k():
    feeds = {"x": _data(np.float32), "k": np.array([3], np.int64)}
    check_conversion(_model(1, 3, "runtime", opset=10), feeds=feeds)


def test_topk_opset1_k_attribute():
    node = helper.make_node("TopK", ["x"], ["v", "i"], axis=-1, k=3)
    out = _shape_k(SHAPE, -1, 3)
    model = make_model(
        [node], [("x", np.float32, SHAPE)], [("v", np.float32, out), ("i", np.int64, out)], opset=9
    )
    check_conversion(model, feeds={"x": _data(np.float32)})


def test_topk_over_channels_of_nhwc_data_needs_no_transpose():
    w = np.random.default_rng(2).standard_normal((6, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("TopK", ["c", "k"], ["v", "i"], axis=1),
    ]
    out = (1, 2, 5, 4)
    model = make_model(
        nodes,
        [("x", np.float32, (1, 3, 5, 4))],
        [("v", np.float32, out), ("i", np.int64, out)],
        initializers={"w": w, "k": np.array([2], np.int64)},
        opset=11,
    )
    chk = check_conversion(model)
    assert chk.ops["TRANSPOSE"] == 0, chk.ops


def test_topk_unsorted_refused():
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], sorted=0)
    out = _shape_k(SHAPE, -1, 2)
    model = make_model(
        [node],
        [("x", np.float32, SHAPE)],
        [("v", np.float32, out), ("i", np.int64, out)],
        initializers={"k": np.array([2], np.int64)},
        opset=11,
    )
    expect_refusal(model, "unsupported_attribute_value")
