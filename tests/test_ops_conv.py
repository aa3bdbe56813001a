"""Conv lowering: CONV_2D / DEPTHWISE_CONV_2D / CONV_3D against onnxruntime.

Covers constant and runtime (graph-input) weights and bias, 1-D/2-D/3-D, regular, depthwise
and grouped convs, strides, dilations and every padding mode.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper


def _conv_model(x_shape, w_shape, runtime_w, bias, **attrs):
    rng = np.random.default_rng(1)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    names = ["x", "w"] + (["b"] if bias else [])
    inputs = [("x", np.float32, x_shape)]
    inits = {}
    if runtime_w:
        inputs.append(("w", np.float32, w_shape))
        if bias:
            inputs.append(("b", np.float32, (w_shape[0],)))
    else:
        inits["w"] = w
        if bias:
            inits["b"] = b
    node = helper.make_node("Conv", names, ["y"], **attrs)
    out = ("y", np.float32, [f"d{i}" for i in range(len(x_shape))])
    return make_model([node], inputs, [out], initializers=inits)


CASES = [
    # x_shape, w_shape, attrs
    ((1, 3, 8, 8), (4, 3, 3, 3), {}),
    ((1, 3, 8, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 3, 9, 7), (4, 3, 3, 2), {"strides": [2, 2], "pads": [1, 0, 0, 1]}),
    ((1, 3, 8, 8), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 8, 8), (4, 3, 3, 3), {"auto_pad": "SAME_LOWER"}),
    ((1, 3, 9, 9), (2, 3, 3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    ((2, 4, 6, 6), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),  # depthwise
    ((1, 4, 6, 6), (8, 1, 3, 3), {"group": 4}),  # depthwise, multiplier 2
    ((1, 6, 6, 6), (9, 2, 1, 1), {"group": 3}),  # grouped (ShuffleNet)
    ((1, 6, 6, 6), (6, 3, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ((1, 3, 10), (4, 3, 3), {"pads": [1, 2], "strides": [2]}),  # 1-D
    ((1, 4, 10), (4, 1, 3), {"group": 4, "dilations": [2]}),  # 1-D depthwise
    ((1, 2, 5, 6, 6), (3, 2, 3, 3, 3), {"pads": [1, 1, 1, 1, 1, 1]}),  # 3-D
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 3), {"strides": [1, 2, 2], "auto_pad": "SAME_UPPER"}),
]


@pytest.mark.parametrize("runtime_w", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("x_shape,w_shape,attrs", CASES)
def test_conv_matches_onnxruntime(x_shape, w_shape, attrs, runtime_w, bias):
    chk = check_conversion(_conv_model(x_shape, w_shape, runtime_w, bias, **attrs))
    if not runtime_w:
        assert "TRANSPOSE" not in chk.ops  # constant filters are permuted in numpy


def test_conv_keeps_activations_channel_last():
    """A conv chain converts without any TRANSPOSE between the convs."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["h", "w2"], ["y"], group=4),
    ]
    inits = {
        "w1": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "w2": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
    }
    model = make_model(
        nodes, [("x", np.float32, (1, 3, 8, 8))], [("y", np.float32, ["n", "c", "h", "w"])], inits
    )
    chk = check_conversion(model)
    assert chk.ops == {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1}


def test_grouped_3d_conv_is_refused():
    # runtime filter: a constant float32 one runs as grouped 2-D convs (conv3d_frames.py)
    model = _conv_model((1, 4, 4, 4, 4), (4, 2, 1, 1, 1), True, False, group=2)
    expect_refusal(model, "unsupported_attribute_value")
