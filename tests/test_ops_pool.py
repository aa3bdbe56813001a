"""MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper


def _model(op, x_shape, **attrs):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    out = ("y", np.float32, [f"d{i}" for i in range(len(x_shape))])
    return make_model([node], [("x", np.float32, x_shape)], [out])


POOL_ATTRS = [
    {"kernel_shape": [2, 2]},
    {"kernel_shape": [3, 3], "strides": [2, 2]},
    {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 2], "pads": [0, 1, 2, 0], "strides": [2, 1]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER"},
]


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("attrs", POOL_ATTRS)
def test_pool_2d(op, attrs):
    check_conversion(_model(op, (1, 3, 7, 8), **attrs))


@pytest.mark.parametrize("attrs", POOL_ATTRS[2:4])
def test_average_pool_count_include_pad(attrs):
    check_conversion(_model("AveragePool", (1, 3, 7, 8), count_include_pad=1, **attrs))


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_1d(op):
    check_conversion(_model(op, (2, 3, 9), kernel_shape=[3], strides=[2], pads=[1, 0]))


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("x_shape", [(2, 3, 5), (1, 3, 4, 5), (1, 2, 3, 4, 5)])
def test_global_pools(op, x_shape):
    check_conversion(_model(op, x_shape))


# 3-D and dilated pools are composed in pool3d.py and tested numerically in test_ops_pool3d.py.
