"""ConvTranspose -> TRANSPOSE_CONV (+ SLICE crop, grouped SPLIT/CONCATENATION)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper


def _model(x_shape, w_shape, runtime_w, bias, **attrs):
    rng = np.random.default_rng(2)
    group = attrs.get("group", 1)
    names = ["x", "w"] + (["b"] if bias else [])
    inputs = [("x", np.float32, x_shape)]
    inits = {}
    values = {
        "w": rng.standard_normal(w_shape).astype(np.float32),
        "b": rng.standard_normal(w_shape[1] * group).astype(np.float32),
    }
    for name in names[1:]:
        if runtime_w:
            inputs.append((name, np.float32, values[name].shape))
        else:
            inits[name] = values[name]
    node = helper.make_node("ConvTranspose", names, ["y"], **attrs)
    out = ("y", np.float32, [f"d{i}" for i in range(len(x_shape))])
    return make_model([node], inputs, [out], initializers=inits)


CASES = [
    ((1, 2, 3, 3), (2, 3, 3, 3), {}),
    ((1, 2, 3, 4), (2, 3, 3, 2), {"strides": [2, 3]}),
    ((1, 2, 3, 3), (2, 3, 3, 3), {"strides": [3, 2], "pads": [1, 2, 1, 2]}),
    ((1, 2, 3, 3), (2, 3, 3, 3), {"strides": [3, 2], "output_padding": [1, 1]}),
    ((1, 2, 3, 3), (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 3, 3), (2, 3, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),
    ((2, 4, 3, 3), (4, 2, 3, 3), {"group": 2, "strides": [2, 2], "pads": [1, 1, 0, 0]}),
    ((1, 2, 5), (2, 3, 3), {"strides": [2], "pads": [1, 0]}),
]


@pytest.mark.parametrize("runtime_w", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("x_shape,w_shape,attrs", CASES)
def test_conv_transpose_matches_onnxruntime(x_shape, w_shape, attrs, runtime_w, bias):
    chk = check_conversion(_model(x_shape, w_shape, runtime_w, bias, **attrs))
    assert chk.ops["TRANSPOSE_CONV"] == attrs.get("group", 1)


@pytest.mark.parametrize("x_shape,w_shape", [((1, 1, 3, 3), (1, 2, 2, 2)), ((1, 2, 4), (2, 1, 3))])
def test_dilated_constant_weight(x_shape, w_shape):
    nd = len(x_shape) - 2
    check_conversion(_model(x_shape, w_shape, False, True, dilations=[2] * nd, strides=[2] * nd))


def test_refusals():
    expect_refusal(
        _model((1, 1, 3, 3), (1, 1, 2, 2), True, False, dilations=[2, 2]), "requires_constant_input"
    )
    expect_refusal(_model((1, 1, 3, 3, 3), (1, 1, 2, 2, 2), False, False), "unsupported_rank")
