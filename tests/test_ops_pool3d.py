"""N-d / dilated MaxPool and AveragePool (pool3d.lower_pool_nd) against onnxruntime.

pool.py owns the MaxPool/AveragePool registrations; until it dispatches rank-5 and dilated
pools to ``pool3d.lower_pool_nd``, the ``nd_dispatch`` fixture installs exactly that dispatch.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from onnx2tflite_direct.lowering import pool3d


def _model(op, x_shape, opset=19, **attrs):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    out = ("y", np.float32, [f"d{i}" for i in range(len(x_shape))])
    return make_model([node], [("x", np.float32, x_shape)], [out], opset=opset)


ND_ATTRS = [
    {"kernel_shape": [2, 2, 2]},
    {"kernel_shape": [3, 2, 3], "strides": [2, 1, 2]},
    {"kernel_shape": [3, 3, 3], "pads": [1, 0, 1, 1, 2, 0]},
    {"kernel_shape": [2, 2, 2], "dilations": [2, 1, 2]},
    {"kernel_shape": [3, 3, 2], "strides": [2, 2, 2], "ceil_mode": 1},
    {"kernel_shape": [2, 3, 2], "dilations": [2, 2, 1], "strides": [2, 1, 1], "ceil_mode": 1},
    {"kernel_shape": [3, 3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2, 2]},
    {"kernel_shape": [2, 2, 3], "auto_pad": "SAME_LOWER"},
]


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("attrs", ND_ATTRS)
def test_pool_3d(op, attrs):
    chk = check_conversion(_model(op, (1, 2, 6, 7, 5), **attrs))
    assert "STRIDED_SLICE" in chk.ops and "TRANSPOSE" not in chk.ops


@pytest.mark.parametrize("include_pad", [0, 1])
@pytest.mark.parametrize("ceil_mode", [0, 1])
def test_average_pool_3d_count_include_pad(include_pad, ceil_mode):
    attrs = {"kernel_shape": [3, 2, 3], "pads": [1, 1, 0, 1, 0, 1], "strides": [2, 2, 1]}
    attrs.update(dilations=[1, 2, 2], ceil_mode=ceil_mode, count_include_pad=include_pad)
    check_conversion(_model("AveragePool", (2, 3, 7, 6, 8), **attrs))


DILATED_2D = [
    {"kernel_shape": [2, 2], "dilations": [2, 2]},
    {"kernel_shape": [3, 2], "dilations": [1, 3], "strides": [2, 1], "pads": [1, 0, 1, 1]},
    {"kernel_shape": [2, 3], "dilations": [2, 2], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [2, 1, 2, 2]},
]


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("attrs", DILATED_2D)
@pytest.mark.parametrize("keep_io_layout", [False, True])
def test_dilated_pool_2d(op, attrs, keep_io_layout):
    check_conversion(_model(op, (1, 3, 9, 8), **attrs), keep_io_layout=keep_io_layout)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_dilated_pool_1d(op):
    attrs = {"kernel_shape": [3], "dilations": [2], "strides": [2], "pads": [1, 2]}
    check_conversion(_model(op, (2, 3, 11), **attrs))


@settings(max_examples=8, deadline=None)
@given(
    size=st.tuples(*[st.integers(3, 7)] * 3),
    kernel=st.tuples(*[st.integers(1, 3)] * 3),
    stride=st.tuples(*[st.integers(1, 2)] * 3),
    dilation=st.tuples(*[st.integers(1, 2)] * 3),
    ceil_mode=st.integers(0, 1),
    op=st.sampled_from(["MaxPool", "AveragePool"]),
)
def test_pool_3d_geometry(size, kernel, stride, dilation, ceil_mode, op):
    if any((k - 1) * d + 1 > n for n, k, d in zip(size, kernel, dilation, strict=True)):
        return
    attrs = dict(kernel_shape=list(kernel), strides=list(stride), dilations=list(dilation))
    model = _model(op, (1, 2, *size), ceil_mode=ceil_mode, **attrs)
    if ceil_mode and _last_window_outside(size, kernel, stride, dilation):
        expect_refusal(model, "unsupported_attribute_value")  # ONNX inference != onnxruntime
    else:
        check_conversion(model)


def _last_window_outside(size, kernel, stride, dilation) -> bool:
    for n, k, s, d in zip(size, kernel, stride, dilation, strict=True):
        span = n - ((k - 1) * d + 1)
        if (-(-span // s)) * s >= n:
            return True
    return False


def test_same_auto_pad_with_dilation_is_refused():
    model = _model(
        "MaxPool", (1, 3, 9, 8), kernel_shape=[3, 3], dilations=[2, 2], auto_pad="SAME_UPPER"
    )
    expect_refusal(model, "unsupported_attribute_value")


def test_window_counts_match_bruteforce():
    counts = pool3d.window_counts([5], [3], [2], [2], [(1, 1)], [3], include_pad=False)
    # windows start at -1, 1, 3 with taps every 2: {-1,1,3}, {1,3,5}, {3,5,7} inside [0, 5)
    assert counts.tolist() == [2, 2, 1]
