"""Resize / Upsample: builtin RESIZE_* where exact, constant GATHER taps otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

X_SHAPE = (1, 2, 4, 5)


def _resize_model(out_shape, scales=None, sizes=None, roi=None, opset=19, x_shape=X_SHAPE, **attrs):
    inits = {"roi": np.asarray(roi if roi is not None else [], np.float32)}
    inits["scales"] = np.asarray(scales if scales is not None else [], np.float32)
    names = ["x", "roi", "scales"]
    if sizes is not None:
        inits["sizes"] = np.asarray(sizes, np.int64)
        names.append("sizes")
    node = helper.make_node("Resize", names, ["y"], **attrs)
    return make_model(
        [node], [("x", np.float32, x_shape)], [("y", np.float32, out_shape)], inits, opset=opset
    )


def _check_unless_tie(model) -> bool:
    """Numeric check; an exact nearest-rounding tie must instead be refused (and is reported)."""
    from onnx2tflite_direct import ConversionError

    try:
        check_conversion(model)
    except ConversionError as err:
        assert err.reason_code == "unsupported_attribute_value" and "rounding tie" in str(err), err
        return False
    return True


COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
SIZES = [(1, 2, 8, 10), (1, 2, 7, 3), (1, 2, 2, 9), (1, 2, 12, 15)]


@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("nearest_mode", NEAREST)
@pytest.mark.parametrize("sizes", SIZES)
def test_nearest_sizes(coord, nearest_mode, sizes):
    model = _resize_model(
        sizes,
        sizes=sizes,
        mode="nearest",
        coordinate_transformation_mode=coord,
        nearest_mode=nearest_mode,
    )
    _check_unless_tie(model)


def test_most_nearest_cases_convert():
    converted = 0
    for coord in COORDS:
        for nearest_mode in NEAREST:
            for sizes in SIZES[:2]:
                kw = dict(
                    mode="nearest", coordinate_transformation_mode=coord, nearest_mode=nearest_mode
                )
                converted += _check_unless_tie(_resize_model(sizes, sizes=sizes, **kw))
    assert converted >= 30, converted


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("sizes", SIZES)
def test_linear_and_cubic_sizes(mode, coord, sizes):
    check_conversion(
        _resize_model(sizes, sizes=sizes, mode=mode, coordinate_transformation_mode=coord)
    )


@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric", "half_pixel_symmetric"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("scales", [(1, 1, 2.0, 2.0), (1, 1, 0.6, 0.8), (1, 1, 1.7, 2.5)])
def test_constant_scales(coord, mode, scales):
    out = tuple(int(np.floor(d * s)) for d, s in zip(X_SHAPE, scales, strict=False))
    _check_unless_tie(
        _resize_model(out, scales=scales, mode=mode, coordinate_transformation_mode=coord)
    )


@pytest.mark.parametrize("a,exclude", [(-0.5, 1), (-0.75, 0), (-0.5, 0)])
def test_cubic_coefficients(a, exclude):
    model = _resize_model(
        (1, 2, 7, 9), sizes=(1, 2, 7, 9), mode="cubic", cubic_coeff_a=a, exclude_outside=exclude
    )
    check_conversion(model)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("extrapolation", [0.0, 10.0])
def test_tf_crop_and_resize(mode, extrapolation):
    model = _resize_model(
        (1, 2, 3, 4),
        sizes=(1, 2, 3, 4),
        roi=[0, 0, -0.2, 0.4, 1, 1, 0.6, 1.3],
        mode=mode,
        coordinate_transformation_mode="tf_crop_and_resize",
        extrapolation_value=extrapolation,
    )
    check_conversion(model)


def test_axes_and_keep_aspect_ratio():
    model = _resize_model(
        (1, 2, 6, 8),
        sizes=(8, 6),
        axes=[3, 2],
        mode="nearest",
        keep_aspect_ratio_policy="not_larger",
    )
    assert _check_unless_tie(model)


@pytest.mark.parametrize(
    "mode,coord,opcode",
    [
        ("nearest", "asymmetric", "RESIZE_NEAREST_NEIGHBOR"),
        ("linear", "half_pixel", "RESIZE_BILINEAR"),
        ("linear", "align_corners", "RESIZE_BILINEAR"),
        ("linear", "asymmetric", "RESIZE_BILINEAR"),
    ],
)
def test_builtin_used_for_cnn_upsampling(mode, coord, opcode):
    model = _resize_model(
        (1, 2, 8, 10),
        scales=(1, 1, 2, 2),
        mode=mode,
        coordinate_transformation_mode=coord,
        nearest_mode="floor",
    )
    chk = check_conversion(model)
    assert chk.ops == {opcode: 1}


@pytest.mark.parametrize("rank_shape", [(2, 6), (1, 3, 7), (1, 2, 3, 4, 5)])
def test_other_ranks_use_gather(rank_shape):
    sizes = tuple(d * 2 if i >= len(rank_shape) - 2 else d for i, d in enumerate(rank_shape))
    model = _resize_model(sizes, sizes=sizes, x_shape=rank_shape, mode="linear")
    chk = check_conversion(model)
    assert "GATHER" in chk.ops


@pytest.mark.parametrize("opset", [7, 9])
def test_upsample(opset):
    attrs = {"mode": "nearest"}
    names = ["x"]
    inits = {}
    if opset == 7:
        attrs["scales"] = [1.0, 1.0, 2.0, 3.0]
    else:
        names.append("scales")
        inits["scales"] = np.array([1, 1, 2, 3], np.float32)
    node = helper.make_node("Upsample", names, ["y"], **attrs)
    model = make_model(
        [node], [("x", np.float32, X_SHAPE)], [("y", np.float32, (1, 2, 8, 15))], inits, opset=opset
    )
    check_conversion(model)


def test_refusals():
    model = _resize_model((1, 2, 2, 2), scales=(1, 1, 0.5, 0.5), mode="linear", antialias=1)
    expect_refusal(model, "unsupported_attribute_value")
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear")
    model = make_model(
        [node],
        [("x", np.float32, X_SHAPE), ("s", np.float32, (4,))],
        [("y", np.float32, (1, 2, 8, 10))],
        opset=19,
    )
    expect_refusal(model, "requires_constant_input")
