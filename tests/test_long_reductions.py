"""Long float reductions are split per axis so that LiteRT's sequential float32 sums stay
accurate (rule ``split_long_reductions``).

LiteRT adds a channel-last tensor's H*W values per channel one after another: over 80x80
positions the mean came out ~4e-5 off (relative), 20x onnxruntime's own error, enough to push a
240-layer OCR detector past tolerance. These tests compare against float64 means of the same
float32 input, the correctly rounded reference, not against onnxruntime (whose own error at this
size is ~1e-5).
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, convert, make_model, op_histogram
from onnx import helper

from onnx2tflite_direct import validate as V
from onnx2tflite_direct.tfl_rewrites import MAX_SEQUENTIAL_REDUCTION

RNG = np.random.default_rng(11)


def _mean_model(op, shape, **attrs):
    """x -> 1x1 depthwise Conv (a per-channel scale) -> op. The convolution stores its output
    channel-last, as in a squeeze-excite block: that is where the kernels sum H*W values per
    channel one after another (a reduction over a tensor in ONNX order reads contiguous rows)."""
    rank = len(shape)
    channels = shape[1]
    scale = (RNG.random(channels) + 0.5).astype(np.float32)
    weight = scale.reshape((channels, 1) + (1,) * (rank - 2))
    keep = attrs.get("keepdims", 1)
    axes = attrs.get("axes", list(range(2, rank)))
    out_shape = [1 if (i in axes) else d for i, d in enumerate(shape)]
    if op == "ReduceMean" and not keep:
        out_shape = [d for i, d in enumerate(shape) if i not in axes]
    conv = helper.make_node(
        "Conv", ["x", "w"], ["h"], group=channels, kernel_shape=[1] * (rank - 2)
    )
    model = make_model(
        [conv, helper.make_node(op, ["h"], ["y"], **attrs)],
        inputs=[("x", np.float32, shape)],
        outputs=[("y", np.float32, out_shape)],
        initializers=[("w", weight)],
        opset=17,
    )
    return model, scale.reshape((1, channels) + (1,) * (rank - 2))


def _signal(shape):
    """Spatially varying values of both signs around a channel offset: a mean with cancellation,
    as after a convolution."""
    return (RNG.standard_normal(shape) * 4 + RNG.standard_normal((1, shape[1], 1, 1))).astype(
        np.float32
    )


@pytest.mark.parametrize(
    "op, attrs",
    [
        ("GlobalAveragePool", {}),
        ("ReduceMean", {"axes": [2, 3]}),
        ("ReduceMean", {"axes": [2, 3], "keepdims": 0}),
    ],
)
def test_long_mean_is_split_and_accurate(op, attrs):
    shape = (1, 32, 96, 96)
    model, scale = _mean_model(op, shape, **attrs)
    x = _signal(shape)
    chk = check_conversion(model, feeds={"x": x}, keep_io_layout=True)
    assert chk.ops["MEAN"] == 2, chk.ops  # one per axis
    exact = (x.astype(np.float64) * scale).mean(
        axis=(2, 3), keepdims=bool(attrs.get("keepdims", 1))
    )
    err = np.abs(chk.actual["y"].astype(np.float64) - exact)
    # a few float32 ulps of the largest mean, far below the ~4e-5 relative error of one long sum
    assert err.max() <= 8 * np.spacing(np.float32(np.abs(exact).max())), err.max()


def test_rule_is_reported_and_switchable():
    model, _ = _mean_model("GlobalAveragePool", (1, 8, 64, 64))
    on = convert(model)
    assert {r["rule"]: r["matched"] for r in on.report["rewrites"]}["split_long_reductions"] == 1
    off = convert(model, disable_rewrites=["split_long_reductions"])
    assert op_histogram(off.tflite_bytes)["MEAN"] == 1


def test_short_reductions_are_untouched():
    side = int(np.sqrt(MAX_SEQUENTIAL_REDUCTION))  # side*side <= the bound
    model, _ = _mean_model("GlobalAveragePool", (1, 8, side, side))
    assert op_histogram(convert(model).tflite_bytes)["MEAN"] == 1


def test_dynamic_spatial_dims_convert_at_both_samples():
    """The split decision must be the same at the dynamic-shape samples (64 and 96)."""
    model, scale = _mean_model("GlobalAveragePool", (1, 8, 64, 64))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "h", "w"
    res = convert(model)
    for side in (40, 120):
        x = _signal((1, 8, side, side))
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"))["y"]
        exact = (x.astype(np.float64) * scale).mean(axis=(2, 3), keepdims=True)
        assert np.abs(got - exact).max() <= 1e-5 * max(1.0, np.abs(exact).max())
