"""GridSample (runtime grid) and AffineGrid against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper


def _gridsample(x_shape, out_sp, opset=16, **attrs):
    rank = len(x_shape) - 2
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], **attrs)
    return make_model(
        [node],
        [("x", np.float32, x_shape), ("grid", np.float32, (x_shape[0], *out_sp, rank))],
        [("y", np.float32, (x_shape[0], x_shape[1], *out_sp))],
        opset=opset,
    )


def _feeds(x_shape, out_sp, seed=0, spread=1.3):
    rng = np.random.default_rng(seed)
    rank = len(x_shape) - 2
    return {
        "x": rng.standard_normal(x_shape).astype(np.float32),
        "grid": rng.uniform(-spread, spread, (x_shape[0], *out_sp, rank)).astype(np.float32),
    }


@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize(
    "mode,padding",
    [
        (m, p)
        for m in ("bilinear", "nearest", "bicubic")
        for p in ("zeros", "border", "reflection")
        if (m, p) != ("bicubic", "border")  # refused: onnxruntime and the reference disagree
    ],
)
def test_gridsample_2d(mode, padding, align):
    x_shape, out_sp = (2, 3, 5, 6), (4, 7)
    model = _gridsample(x_shape, out_sp, mode=mode, padding_mode=padding, align_corners=align)
    chk = check_conversion(model, feeds=_feeds(x_shape, out_sp, spread=2.5))
    assert "GATHER_ND" in chk.ops and "TRANSPOSE" not in chk.ops


@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
def test_gridsample_opset20_names(mode):
    x_shape, out_sp = (1, 2, 4, 5), (3, 3)
    model = _gridsample(x_shape, out_sp, opset=20, mode=mode, padding_mode="reflection")
    check_conversion(model, feeds=_feeds(x_shape, out_sp, seed=1))


@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("mode", ["linear", "nearest"])
def test_gridsample_3d(mode, padding, align):
    x_shape, out_sp = (1, 2, 3, 4, 5), (2, 3, 2)
    model = _gridsample(
        x_shape, out_sp, opset=20, mode=mode, padding_mode=padding, align_corners=align
    )
    check_conversion(model, feeds=_feeds(x_shape, out_sp, seed=2))


def test_gridsample_nearest_ties_round_half_even():
    x_shape, out_sp = (1, 1, 4, 4), (1, 5)
    feeds = _feeds(x_shape, out_sp)
    # not aligned, W = 4: x = ((g + 1) * 4 - 1) / 2 -> 0.5, 1.5, 2.5 are exact ties
    feeds["grid"][0, 0, :, 0] = [-0.5, 0.0, 0.5, -1.0, 1.0]
    feeds["grid"][0, 0, :, 1] = [0.0, -0.5, 0.5, 1.0, -1.0]
    model = _gridsample(x_shape, out_sp, mode="nearest")
    check_conversion(model, feeds=feeds)


def test_gridsample_keep_io_layout():
    x_shape, out_sp = (1, 3, 4, 4), (2, 2)
    model = _gridsample(x_shape, out_sp, mode="bilinear")
    check_conversion(model, feeds=_feeds(x_shape, out_sp), keep_io_layout=True)


def test_gridsample_refusals():
    expect_refusal(_gridsample((1, 1, 4, 4), (2, 2), mode="bicubic", padding_mode="border"))
    expect_refusal(_gridsample((1, 1, 4, 4), (2, 2), padding_mode="wrap"))
    model = _gridsample((1, 1, 1, 4), (2, 2), padding_mode="reflection", align_corners=1)
    expect_refusal(model, "unsupported_attribute_value")


def _affine_grid(n, sizes, **attrs):
    rank = len(sizes)
    node = helper.make_node("AffineGrid", ["theta", "size"], ["grid"], **attrs)
    return make_model(
        [node],
        [("theta", np.float32, (n, rank, rank + 1))],
        [("grid", np.float32, (n, *sizes, rank))],
        initializers={"size": np.array([n, 3, *sizes], np.int64)},
        opset=20,
    )


@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("sizes", [(4, 5), (1, 3), (2, 3, 4), (3, 1, 2)])
def test_affine_grid(sizes, align):
    model = _affine_grid(2, sizes, align_corners=align)
    if align and 1 in sizes:
        # onnxruntime and the ONNX reference put a single aligned sample at different places
        expect_refusal(model, "unsupported_attribute_value")
        return
    chk = check_conversion(model)
    assert chk.ops["BATCH_MATMUL"] == 1


def test_affine_grid_feeds_gridsample():
    theta = helper.make_node("AffineGrid", ["theta", "size"], ["grid"], align_corners=0)
    sample = helper.make_node("GridSample", ["x", "grid"], ["y"], mode="linear")
    model = make_model(
        [theta, sample],
        [("theta", np.float32, (1, 2, 3)), ("x", np.float32, (1, 3, 6, 6))],
        [("y", np.float32, (1, 3, 4, 4))],
        initializers={"size": np.array([1, 3, 4, 4], np.int64)},
        opset=20,
    )
    check_conversion(model)
