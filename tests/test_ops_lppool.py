"""LpPool / GlobalLpPool against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper


def _model(op, x_shape, opset=18, **attrs):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    out = ("y", np.float32, [f"d{i}" for i in range(len(x_shape))])
    return make_model([node], [("x", np.float32, x_shape)], [out], opset=opset)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [2, 2]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 1]},
        {"kernel_shape": [3, 2], "auto_pad": "SAME_UPPER"},
        {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER", "strides": [2, 1]},
        {"kernel_shape": [2, 2], "dilations": [2, 2]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    ],
)
def test_lppool_2d(p, attrs):
    chk = check_conversion(_model("LpPool", (1, 3, 7, 8), p=p, **attrs))
    assert "TRANSPOSE" not in chk.ops


@pytest.mark.parametrize("keep_io_layout", [False, True])
@pytest.mark.parametrize(
    "x_shape,attrs",
    [
        ((2, 3, 9), {"kernel_shape": [3], "strides": [2]}),
        ((1, 2, 5, 4, 6), {"kernel_shape": [2, 2, 3], "pads": [1, 0, 0, 0, 1, 1]}),
    ],
)
def test_lppool_1d_3d(x_shape, attrs, keep_io_layout):
    check_conversion(_model("LpPool", x_shape, p=2, **attrs), keep_io_layout=keep_io_layout)


def test_lppool_opset11_default_p():
    check_conversion(_model("LpPool", (1, 2, 6, 6), opset=11, kernel_shape=[3, 3]))


@pytest.mark.parametrize("p", [1, 2, 4])
@pytest.mark.parametrize("x_shape", [(2, 3, 7), (1, 3, 5, 6), (1, 2, 3, 4, 5)])
def test_global_lppool(p, x_shape):
    chk = check_conversion(_model("GlobalLpPool", x_shape, p=p))
    assert chk.ops["SUM"] == 1
