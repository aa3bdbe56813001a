"""Resize / Upsample: builtin RESIZE_* where exact, constant GATHER taps otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model, op_histogram
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
        ("nearest", "asymmetric", ("CONCATENATION", "DEPTH_TO_SPACE")),  # XNNPACK takes them
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
    assert chk.ops == {op: 1 for op in ((opcode,) if isinstance(opcode, str) else opcode)}


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


def _runtime_model(x_shape, out_shape, runtime, opset=19, axes=None, **attrs):
    """Resize whose ``scales`` and/or ``roi`` (names in ``runtime``) are graph inputs."""
    names = ["x", "roi", "scales"] + (["sizes"] if "sizes" in runtime else [])
    n = len(axes) if axes is not None else len(x_shape)
    dims = {"roi": (2 * n,), "scales": (n,), "sizes": (n,)}
    inputs = [("x", np.float32, x_shape)]
    inputs += [(k, np.int64 if k == "sizes" else np.float32, dims[k]) for k in runtime]
    inits = {k: np.zeros(0, np.float32) for k in ("roi", "scales") if k not in runtime}
    if axes is not None:
        attrs["axes"] = axes
    node = helper.make_node("Resize", names, ["y"], **attrs)
    return make_model([node], inputs, [("y", np.float32, out_shape)], inits, opset=opset)


def _feeds(x_shape, **vectors):
    rng = np.random.default_rng(0)
    feeds = {"x": rng.uniform(-2, 2, x_shape).astype(np.float32)}
    feeds.update({k: np.asarray(v, np.float32) for k, v in vectors.items()})
    return feeds


RUNTIME_SCALES = [(1, 1, 2.0, 3.0), (1, 1, 0.6, 0.8), (1, 1, 1.7, 2.5), (1, 1, 0.75, 1.0)]


@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric", "half_pixel_symmetric"])
@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("scales", RUNTIME_SCALES)
def test_runtime_scales(coord, mode, scales):
    out = tuple(int(np.floor(d * s)) for d, s in zip(X_SHAPE, scales, strict=True))
    model = _runtime_model(
        X_SHAPE, out, ["scales"], mode=mode, coordinate_transformation_mode=coord
    )
    check_conversion(model, feeds=_feeds(X_SHAPE, scales=scales))


@pytest.mark.parametrize("a,exclude", [(-0.5, 1), (-0.75, 1), (-0.5, 0)])
def test_runtime_scales_cubic_coefficients(a, exclude):
    model = _runtime_model(
        X_SHAPE, (1, 2, 3, 9), ["scales"], mode="cubic", cubic_coeff_a=a, exclude_outside=exclude
    )
    check_conversion(model, feeds=_feeds(X_SHAPE, scales=(1, 1, 0.8, 1.8)))


def test_runtime_scales_with_axes_and_channels():
    """Scales on the channel axis and a partial ``axes`` list are resized too (onnxruntime
    allows any linear axes only for 3-D inputs)."""
    x_shape = (3, 4, 5)
    model = _runtime_model(x_shape, (5, 6, 5), ["scales"], axes=[1, 0], mode="linear")
    check_conversion(model, feeds=_feeds(x_shape, scales=(1.5, 1.9)))


@pytest.mark.parametrize("rank_shape", [(2, 7), (1, 3, 7), (1, 2, 3, 4, 5)])
def test_runtime_scales_other_ranks(rank_shape):
    scales = [1.0] * (len(rank_shape) - 1) + [1.5]
    out = tuple(int(np.floor(d * s)) for d, s in zip(rank_shape, scales, strict=True))
    model = _runtime_model(rank_shape, out, ["scales"], mode="linear")
    check_conversion(model, feeds=_feeds(rank_shape, scales=scales))


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("extrapolation", [0.0, 10.0])
@pytest.mark.parametrize(
    "roi",
    [(0, 0, 0.4, 0.6, 1, 1, 0.6, 0.8), (0, 0, -0.2, 0.4, 1, 1, 0.6, 1.3), (0, 0, 0, 0, 1, 1, 1, 1)],
)
def test_runtime_roi(mode, extrapolation, roi):
    model = _runtime_model(
        X_SHAPE,
        (1, 2, 3, 4),
        ["roi", "sizes"],
        mode=mode,
        coordinate_transformation_mode="tf_crop_and_resize",
        extrapolation_value=extrapolation,
    )
    feeds = _feeds(X_SHAPE, roi=roi)
    feeds["sizes"] = np.array([1, 2, 3, 4], np.int64)
    check_conversion(model, feeds=feeds)


def test_runtime_roi_with_axes():
    model = _runtime_model(
        X_SHAPE,
        (1, 2, 3, 3),
        ["roi", "sizes"],
        axes=[3, 2],
        mode="linear",
        coordinate_transformation_mode="tf_crop_and_resize",
    )
    feeds = _feeds(X_SHAPE, roi=(0.2, 0.1, 1.1, 0.7))
    feeds["sizes"] = np.array([3, 3], np.int64)
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("op,opset", [("Upsample", 9), ("Resize", 10)])
def test_runtime_scales_legacy_linear(op, opset):
    node = helper.make_node(op, ["x", "s"], ["y"], mode="linear")
    model = make_model(
        [node],
        [("x", np.float32, X_SHAPE), ("s", np.float32, (4,))],
        [("y", np.float32, (1, 2, 8, 12))],
        opset=opset,
    )
    check_conversion(model, feeds=_feeds(X_SHAPE, s=(1, 1, 2.0, 2.5)))


def _litert_vs_reference(model, feeds):
    """Exact comparison of LiteRT (with and without XNNPACK) with the ONNX reference, which
    rounds exactly where float32 onnxruntime can land on a tie (e.g. i / float32(0.8))."""
    from harness import convert
    from onnx.reference import ReferenceEvaluator

    from onnx2tflite_direct import validate

    res = convert(model)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    for xnnpack in (True, False):
        got = validate.run_litert(
            res.tflite_bytes, feeds, res.report.get("io"), use_xnnpack=xnnpack
        )
        np.testing.assert_array_equal(got["y"], expected, err_msg=str(feeds["scales"]))
    return res


@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric", "pytorch_half_pixel"])
@pytest.mark.parametrize("nearest_mode", NEAREST)
@pytest.mark.parametrize("scales", RUNTIME_SCALES)
def test_runtime_scales_nearest(coord, nearest_mode, scales):
    out = tuple(int(np.floor(d * s)) for d, s in zip(X_SHAPE, scales, strict=True))
    model = _runtime_model(
        X_SHAPE,
        out,
        ["scales"],
        mode="nearest",
        coordinate_transformation_mode=coord,
        nearest_mode=nearest_mode,
    )
    res = _litert_vs_reference(model, _feeds(X_SHAPE, scales=scales))
    assert "RESIZE_NEAREST_NEIGHBOR" not in op_histogram(res.tflite_bytes)


def _near_tie_scales():
    """float32 scales next to p/k: a float32 quotient i/s lands on a rounding boundary that the
    exact (and float64) quotient misses, e.g. nextafter(16/7) for round_prefer_ceil."""
    out = {np.float32(16 / 7), np.nextafter(np.float32(16 / 7), np.float32(0))}
    for num in range(2, 24):
        for den in range(3, 12):
            v = np.float32(num / 2 / den)
            if 0.5 <= v <= 3:
                out.update({v, np.nextafter(v, np.float32(0)), np.nextafter(v, np.float32(9))})
    rng = np.random.default_rng(1)
    return rng.choice(sorted(out), 40, replace=False)


@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric"])
@pytest.mark.parametrize("nearest_mode", NEAREST)
def test_runtime_scales_nearest_near_ties_match_reference(coord, nearest_mode):
    """Index-valued input: LiteRT (with and without XNNPACK) picks exactly the ONNX reference's
    source index for scales whose float32 quotients sit on or next to rounding boundaries."""
    n = 9
    x = np.arange(n, dtype=np.float32).reshape(1, 1, 1, n)
    scales = (*_near_tie_scales(), np.nextafter(np.float32(16 / 7), np.float32(0)))
    for width in sorted({int(np.floor(n * np.float64(s))) for s in scales}):
        model = _runtime_model(
            (1, 1, 1, n),
            (1, 1, 1, width),
            ["scales"],
            mode="nearest",
            coordinate_transformation_mode=coord,
            nearest_mode=nearest_mode,
        )
        for s in scales:
            if int(np.floor(n * np.float64(s))) == width:
                _litert_vs_reference(model, {"x": x, "scales": np.float32([1, 1, 1, s])})


@pytest.mark.parametrize(
    "policy,sizes,out",
    [
        ("not_larger", (9, 2), (2, 2)),
        ("not_smaller", (5, 20), (16, 20)),
        ("not_smaller", (3, 9), (7, 9)),
        ("not_larger", (6, 6), (5, 6)),
    ],
)
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_runtime_sizes_keep_aspect_ratio(policy, sizes, out, mode):
    """The common scale is recovered from the static shapes, or the case is refused when the
    candidate scales would resize differently."""
    from harness import convert

    from onnx2tflite_direct import ConversionError

    model = _runtime_model(
        X_SHAPE,
        (1, 2, *out),
        ["sizes"],
        axes=[2, 3],
        mode=mode,
        keep_aspect_ratio_policy=policy,
    )
    feeds = _feeds(X_SHAPE)
    feeds["sizes"] = np.array(sizes, np.int64)
    try:
        convert(model)
    except ConversionError as err:
        assert err.reason_code == "requires_constant_input", err
        return
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize(
    "attrs",
    [
        dict(mode="nearest", coordinate_transformation_mode="half_pixel_symmetric"),
        dict(mode="linear", coordinate_transformation_mode="align_corners"),
        dict(mode="cubic", coordinate_transformation_mode="tf_crop_and_resize"),
    ],
)
def test_runtime_scales_refusals(attrs):
    expect_refusal(
        _runtime_model(X_SHAPE, (1, 2, 8, 10), ["scales"], **attrs), "requires_constant_input"
    )


def test_runtime_roi_nearest_refused():
    model = _runtime_model(
        X_SHAPE,
        (1, 2, 3, 4),
        ["roi", "sizes"],
        mode="nearest",
        coordinate_transformation_mode="tf_crop_and_resize",
    )
    expect_refusal(model, "requires_constant_input")


def test_refusals():
    model = _resize_model((1, 2, 2, 2), scales=(1, 1, 0.5, 0.5), mode="linear", antialias=1)
    expect_refusal(model, "unsupported_attribute_value")
