"""MaxUnpool against onnxruntime, with indices as MaxPool produces them (fed at runtime)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper


def _maxpool_with_indices(x, kernel, strides):
    """Reference MaxPool values and flat (whole-tensor) argmax indices, no padding."""
    n, c, h, w = x.shape
    oh, ow = (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1
    vals = np.zeros((n, c, oh, ow), np.float32)
    idx = np.zeros((n, c, oh, ow), np.int64)
    for b, ch, i, j in np.ndindex(n, c, oh, ow):
        r0, c0 = i * strides[0], j * strides[1]
        win = x[b, ch, r0 : r0 + kernel[0], c0 : c0 + kernel[1]]
        r, q = np.unravel_index(np.argmax(win), win.shape)
        vals[b, ch, i, j] = win[r, q]
        idx[b, ch, i, j] = np.ravel_multi_index((b, ch, r0 + r, c0 + q), x.shape)
    return vals, idx


def _model(x_shape, out_shape, **attrs):
    node = helper.make_node("MaxUnpool", ["x", "i"], ["y"], **attrs)
    return make_model(
        [node],
        [("x", np.float32, x_shape), ("i", np.int64, x_shape)],
        [("y", np.float32, out_shape)],
        opset=11,
    )


@pytest.mark.parametrize(
    "kernel,strides,in_hw",
    [((2, 2), (2, 2), (6, 8)), ((3, 3), (1, 1), (5, 5)), ((2, 3), (2, 1), (6, 6))],
)
def test_maxunpool(kernel, strides, in_hw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *in_hw)).astype(np.float32)
    vals, idx = _maxpool_with_indices(x, kernel, strides)
    out_hw = [(o - 1) * s + k for o, s, k in zip(vals.shape[2:], strides, kernel, strict=True)]
    model = _model(vals.shape, (2, 3, *out_hw), kernel_shape=list(kernel), strides=list(strides))
    chk = check_conversion(model, feeds={"x": vals, "i": idx})
    assert chk.ops["SCATTER_ND"] == 2


def test_maxunpool_larger_output_shape_is_refused():
    node = helper.make_node(
        "MaxUnpool", ["x", "i", "shape"], ["y"], kernel_shape=[2, 2], strides=[2, 2]
    )
    model = make_model(
        [node],
        [("x", np.float32, (1, 1, 2, 2)), ("i", np.int64, (1, 1, 2, 2))],
        [("y", np.float32, (1, 1, 5, 5))],
        initializers={"shape": np.array([1, 1, 5, 5], np.int64)},
        opset=11,
    )
    expect_refusal(model, "unsupported_attribute_value")
