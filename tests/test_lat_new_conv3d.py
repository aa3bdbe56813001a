"""3-D Conv with a constant float32 filter as CONV_2D over frames (lowering/conv3d_frames.py)
against onnxruntime: kernels with kt=1 and kt>1, 1x1-in-space temporal kernels, strides,
dilations, asymmetric and SAME pads, groups and depthwise; no CONV_3D left; the runtime-filter
form keeps CONV_3D."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

from benchmarks.bench_partitions import count_partitions


def _model(x_shape, w_shape, bias=True, runtime_w=False, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    names = ["x", "w"] + (["b"] if bias else [])
    inits = {}
    inputs = [("x", np.float32, x_shape)]
    rank = len(x_shape)
    w = rng.standard_normal(w_shape).astype(np.float32)
    if runtime_w:
        inputs.append(("w", np.float32, w_shape))
    else:
        inits["w"] = w
    if bias:
        inits["b"] = rng.standard_normal(w_shape[0]).astype(np.float32)
    node = helper.make_node("Conv", names, ["y"], **attrs)
    return make_model(
        [node], inputs, [("y", np.float32, ["n", "o", "d", "h", "w"][-rank:])], initializers=inits
    )


CASES = [
    # x_shape (N, C, D, H, W), w_shape (O, C/g, kt, kh, kw), attrs, expected 2-D op
    ((1, 3, 6, 8, 8), (4, 3, 3, 3, 3), {"pads": [1, 1, 1, 1, 1, 1]}, "CONV_2D"),
    (
        (2, 3, 7, 9, 8),
        (5, 3, 3, 3, 3),
        {"strides": [2, 2, 2], "pads": [1, 1, 1, 1, 1, 1]},
        "CONV_2D",
    ),
    (
        (1, 3, 8, 14, 14),
        (4, 3, 3, 7, 7),
        {"strides": [1, 2, 2], "pads": [1, 3, 3, 1, 3, 3]},
        "CONV_2D",
    ),
    ((1, 3, 5, 8, 8), (4, 3, 1, 3, 3), {"pads": [0, 1, 1, 0, 1, 1]}, "CONV_2D"),  # kt = 1
    ((1, 4, 9, 6, 6), (6, 4, 1, 1, 1), {"strides": [2, 2, 2]}, "CONV_2D"),  # r3d downsample
    ((1, 4, 8, 5, 6), (6, 4, 3, 1, 1), {"pads": [1, 0, 0, 1, 0, 0]}, "CONV_2D"),  # temporal
    (
        (1, 4, 9, 5, 6),
        (6, 4, 3, 1, 1),
        {"strides": [2, 1, 1], "pads": [1, 0, 0, 2, 0, 0]},
        "CONV_2D",
    ),
    (
        (1, 3, 9, 8, 7),
        (4, 3, 2, 3, 2),
        {"dilations": [3, 2, 1], "pads": [2, 1, 0, 1, 2, 1]},
        "CONV_2D",
    ),
    ((1, 3, 9, 7, 7), (4, 3, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2, 2]}, "CONV_2D"),
    ((1, 3, 6, 7, 8), (4, 3, 2, 3, 3), {"auto_pad": "VALID"}, "CONV_2D"),
    ((1, 6, 5, 6, 6), (4, 3, 3, 3, 3), {"group": 2, "pads": [1, 1, 1, 1, 1, 1]}, "CONV_2D"),
    (
        (1, 4, 6, 6, 6),
        (4, 1, 3, 3, 3),
        {"group": 4, "pads": [1, 1, 1, 1, 1, 1]},
        "DEPTHWISE_CONV_2D",
    ),
    ((1, 4, 6, 6, 6), (8, 1, 3, 1, 1), {"group": 4, "dilations": [2, 1, 1]}, "DEPTHWISE_CONV_2D"),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape,w_shape,attrs,op", CASES)
def test_conv3d_as_2d_matches_onnxruntime(x_shape, w_shape, attrs, op, bias):
    chk = check_conversion(_model(x_shape, w_shape, bias, **attrs))
    assert "CONV_3D" not in chk.ops
    assert chk.ops[op] >= 1


def test_conv3d_runtime_filter_keeps_conv3d():
    chk = check_conversion(_model((1, 2, 5, 6, 6), (3, 2, 3, 3, 3), runtime_w=True, pads=[1] * 6))
    assert chk.ops["CONV_3D"] == 1


def test_grouped_conv3d_runtime_filter_is_refused():
    model = _model((1, 4, 4, 4, 4), (4, 2, 1, 1, 1), runtime_w=True, group=2)
    expect_refusal(model, "unsupported_attribute_value")


def test_conv3d_chain_one_partition():
    """Two 3x3x3 convs (the second with time stride 2) with a ReLU between them: every op is
    XNNPACK's (one partition; a strided STRIDED_SLICE would not be)."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1] * 6),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1] * 6, strides=[2, 2, 2]),
    ]
    inits = {
        "w1": rng.standard_normal((4, 3, 3, 3, 3)).astype(np.float32),
        "w2": rng.standard_normal((5, 4, 3, 3, 3)).astype(np.float32),
    }
    model = make_model(
        nodes,
        [("x", np.float32, (1, 3, 6, 8, 8))],
        [("y", np.float32, ["n", "o", "d", "h", "w"])],
        inits,
    )
    chk = check_conversion(model)
    parts = count_partitions(chk.tflite_bytes)
    assert parts["partitions"] == 1 and parts["outside"] == {}, parts


@pytest.mark.parametrize(
    "x_shape,w_shape,attrs,bias",
    [
        ((1, 640, 6, 6), (520, 640, 3, 3), {"pads": [1, 1, 1, 1]}, True),
        ((1, 640, 7, 5), (330, 640, 3, 3), {"strides": [2, 2], "dilations": [2, 1]}, False),
    ],
)
def test_large_filter_split_by_output_channels(x_shape, w_shape, attrs, bias, monkeypatch):
    """A filter past conv_split.MAX_FILTER_BYTES (lowered to 1 MiB here) runs as CONV_2Ds
    over output-channel slices joined by CONCATENATION, same sums as one conv."""
    from onnx2tflite_direct.lowering import conv_split

    monkeypatch.setattr(conv_split, "MAX_FILTER_BYTES", 2**20)
    parts = -(-int(np.prod(w_shape)) * 4 // 2**20)
    chk = check_conversion(_model(x_shape, w_shape, bias, **attrs))
    assert chk.ops["CONV_2D"] == parts and chk.ops["CONCATENATION"] == 1
    assert count_partitions(chk.tflite_bytes)["partitions"] == 1


def _gridsample(x_shape, out_sp, align):
    node = helper.make_node(
        "GridSample",
        ["x", "grid"],
        ["y"],
        mode="bilinear",
        padding_mode="zeros",
        align_corners=align,
    )
    return make_model(
        [node],
        [("x", np.float32, x_shape), ("grid", np.float32, (x_shape[0], *out_sp, 2))],
        [("y", np.float32, (x_shape[0], x_shape[1], *out_sp))],
        opset=16,
    )


@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize(
    "x_shape,out_sp",
    [
        ((6, 1, 16, 16), (7, 7)),
        ((3, 1, 2, 2), (7, 7)),
        ((2, 1, 9, 7), (4, 6)),
        ((1, 1, 1, 8), (3, 2)),
        ((2, 1, 12, 20), (5, 9)),
    ],
)
def test_gridsample_tent_form(x_shape, out_sp, align):
    """Bilinear GridSample with zero padding over a small one-channel input (grid_tent.py):
    every op XNNPACK's, one partition; grid points inside, on and well outside the borders
    (spread 1.6), and exactly on input pixels (integer positions), against onnxruntime."""
    rng = np.random.default_rng(3)
    grid = rng.uniform(-1.6, 1.6, (x_shape[0], *out_sp, 2)).astype(np.float32)
    grid[0, 0, :, :] = np.linspace(-1, 1, out_sp[1] * 2).reshape(out_sp[1], 2)
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32), "grid": grid}
    chk = check_conversion(_gridsample(x_shape, out_sp, align), feeds=feeds)
    assert "GATHER_ND" not in chk.ops and chk.ops["BATCH_MATMUL"] == 1
    parts = count_partitions(chk.tflite_bytes)
    assert parts["partitions"] == 1 and parts["outside"] == {}, parts


@pytest.mark.parametrize("x_shape", [(1, 1, 20, 20), (1, 3, 8, 8)])
def test_gridsample_large_or_multichannel_keeps_gathers(x_shape):
    out_sp = (3, 4)
    rng = np.random.default_rng(4)
    feeds = {
        "x": rng.standard_normal(x_shape).astype(np.float32),
        "grid": rng.uniform(-1.2, 1.2, (1, *out_sp, 2)).astype(np.float32),
    }
    chk = check_conversion(_gridsample(x_shape, out_sp, 0), feeds=feeds)
    assert "GATHER_ND" in chk.ops


def _reflect_model(x_shape, pads):
    node = helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")
    inits = {"p": np.array(pads, np.int64)}
    out_shape = [d + pads[i] + pads[i + len(x_shape)] for i, d in enumerate(x_shape)]
    return make_model(
        [node], [("x", np.float32, x_shape)], [("y", np.float32, out_shape)], initializers=inits
    )


@pytest.mark.parametrize(
    "x_shape,pads",
    [
        ((1, 32, 50), [0, 0, 3, 0, 0, 3]),  # EnCodec's 1-D conv pads
        ((1, 8, 40), [0, 0, 6, 0, 0, 0]),
        ((2, 4, 12), [0, 0, 8, 0, 0, 7]),  # nested joins past 5 inputs
        ((1, 3, 9, 10), [0, 0, 2, 1, 0, 0, 1, 3]),  # two spatial axes, channel-last stored
        ((2, 5, 6, 7), [0, 1, 0, 0, 0, 2, 0, 0]),  # the channel axis
        ((1, 2, 3), [0, 0, 2, 0, 0, 2]),  # pad = size - 1
    ],
)
def test_reflect_pad_as_slices(x_shape, pads):
    """Reflect Pad with small constant pads: one-element slices + CONCATENATION
    (reflect_pad.py), no MIRROR_PAD, one XNNPACK partition, exact against onnxruntime."""
    chk = check_conversion(_reflect_model(x_shape, pads), atol=0.0, rtol=0.0)
    assert "MIRROR_PAD" not in chk.ops and chk.ops["CONCATENATION"] >= 1
    parts = count_partitions(chk.tflite_bytes)
    assert parts["partitions"] == 1 and parts["outside"] == {}, parts


def test_reflect_pad_large_keeps_mirror_pad():
    chk = check_conversion(_reflect_model((1, 4, 30), [0, 0, 9, 0, 0, 1]), atol=0.0, rtol=0.0)
    assert chk.ops["MIRROR_PAD"] == 1
