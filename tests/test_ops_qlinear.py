"""MatMulInteger / QLinearMatMul / ConvInteger / QLinearConv against onnxruntime (exact)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, convert, expect_refusal, make_model
from onnx import helper
from onnx.reference import ReferenceEvaluator

from onnx2tflite_direct import validate as V

RNG = np.random.default_rng(1)
RANGES = {np.uint8: (0, 255), np.int8: (-128, 127)}


def _q(qtype, shape):
    lo, hi = RANGES[qtype]
    return RNG.integers(lo, hi + 1, shape).astype(qtype)


def _build(op, names, arrays, out_spec, const_names=(), attrs=None, opset=13):
    """Inputs named in ``const_names`` become initializers; the rest are graph inputs."""
    inputs, inits, feeds = [], {}, {}
    for name, arr in zip(names, arrays, strict=True):
        if arr is None:
            continue
        if name in const_names:
            inits[name] = arr
        else:
            inputs.append((name, arr.dtype, arr.shape))
            feeds[name] = arr
    node_inputs = [n if a is not None else "" for n, a in zip(names, arrays, strict=True)]
    while node_inputs and not node_inputs[-1]:
        node_inputs.pop()
    node = helper.make_node(op, node_inputs, ["y"], **(attrs or {}))
    model = make_model([node], inputs, [out_spec], initializers=inits, opset=opset)
    return model, feeds


def _check(model, feeds, onnxruntime_supports: bool = True):
    """Exact comparison with onnxruntime, or with the ONNX reference implementation for
    variants onnxruntime's CPU kernels reject (per-row/per-column zero points)."""
    if onnxruntime_supports:
        check_conversion(model, feeds)
        return
    res = convert(model)
    actual = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"))
    (expected,) = ReferenceEvaluator(model).run(None, feeds)
    assert actual["y"].dtype == expected.dtype and actual["y"].shape == expected.shape
    np.testing.assert_array_equal(actual["y"], expected)


MATMUL_SHAPES = [((4, 3), (3, 2)), ((2, 5, 7), (2, 7, 3)), ((2, 5, 7), (7, 3))]


@pytest.mark.parametrize("qtype", list(RANGES))
@pytest.mark.parametrize("shapes", MATMUL_SHAPES)
@pytest.mark.parametrize("zp_kind", ["none", "scalar", "vector"])
@pytest.mark.parametrize("const_b", [False, True])
def test_matmul_integer(qtype, shapes, zp_kind, const_b):
    (a_shape, b_shape) = shapes
    a, b = _q(qtype, a_shape), _q(qtype, b_shape)
    m, n = a_shape[-2], b_shape[-1]
    if zp_kind == "none":
        az = bz = None
    elif zp_kind == "scalar":
        az, bz = _q(qtype, ()), _q(qtype, ())
    else:  # per-column B zero point (per-row A zero points are refused, see below)
        az, bz = _q(qtype, ()), _q(qtype, (n,))
    out_shape = np.broadcast_shapes(a_shape[:-2], b_shape[:-2]) + (m, n)
    model, feeds = _build(
        "MatMulInteger",
        ["a", "b", "az", "bz"],
        [a, b, az, bz],
        ("y", np.int32, out_shape),
        const_names=("b", "bz") if const_b else (),
        opset=10,
    )
    _check(model, feeds, onnxruntime_supports=zp_kind != "vector")


def test_matmul_integer_per_row_zero_point_refused():
    """onnxruntime rejects a 1-D A zero point and the ONNX reference broadcasts it along K."""
    a, b = _q(np.uint8, (4, 3)), _q(np.uint8, (3, 2))
    model, _ = _build(
        "MatMulInteger", ["a", "b", "az"], [a, b, _q(np.uint8, (4,))], ("y", np.int32, (4, 2))
    )
    expect_refusal(model, "unsupported_attribute_value")


def test_matmul_integer_long_reduction_split_exactly():
    """255 * 255 * 300 >= 2**24: one float32 reduction could round, so ``a - a_zp`` is split
    into digits whose reductions are exact, combined in int32 (bit-identical to onnxruntime)."""
    a, b = _q(np.uint8, (2, 300)), _q(np.uint8, (300, 2))
    model, feeds = _build(
        "MatMulInteger", ["a", "b", "az"], [a, b, _q(np.uint8, ())], ("y", np.int32, (2, 2))
    )
    chk = check_conversion(model, feeds)
    assert chk.ops["FLOOR"] >= 1 and chk.ops["BATCH_MATMUL"] >= 2


def test_matmul_integer_long_reduction_with_constant_zero_points():
    """Constant zero points at mid-range halve the bound: K = 1000 is exact."""
    a, b = _q(np.uint8, (2, 1000)), _q(np.uint8, (1000, 3))
    zp = np.array(128, np.uint8)
    model, feeds = _build(
        "MatMulInteger",
        ["a", "b", "az", "bz"],
        [a, b, zp, zp.copy()],
        ("y", np.int32, (2, 3)),
        const_names=("az", "bz"),
    )
    check_conversion(model, feeds)


@pytest.mark.parametrize("qtype", list(RANGES))
@pytest.mark.parametrize("shapes", MATMUL_SHAPES[:2])
@pytest.mark.parametrize("per_column", [False, True])
@pytest.mark.parametrize("const_params", [False, True])
def test_qlinear_matmul(qtype, shapes, per_column, const_params):
    a_shape, b_shape = shapes
    n = b_shape[-1]
    out_shape = np.broadcast_shapes(a_shape[:-2], b_shape[:-2]) + (a_shape[-2], n)
    b_param_shape = (n,) if per_column else ()
    arrays = [
        _q(qtype, a_shape),
        np.array(0.02, np.float32),
        _q(qtype, ()),
        _q(qtype, b_shape),
        RNG.uniform(0.005, 0.03, b_param_shape).astype(np.float32),
        _q(qtype, b_param_shape),
        np.array(0.35, np.float32),
        _q(qtype, ()),
    ]
    names = ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]
    model, feeds = _build(
        "QLinearMatMul",
        names,
        arrays,
        ("y", qtype, out_shape),
        const_names=tuple(n for n in names if n not in ("a", "b")) if const_params else (),
        opset=10,
    )
    _check(model, feeds, onnxruntime_supports=not (per_column and len(b_shape) > 2))


CONV_CASES = [
    # x shape, w shape, attrs
    ((1, 2, 5, 5), (3, 2, 3, 3), {}),
    ((1, 2, 5, 5), (3, 2, 2, 2), {"pads": [1, 1, 1, 1]}),
    ((2, 3, 7, 6), (4, 3, 3, 2), {"strides": [2, 1], "pads": [1, 0, 0, 1]}),
    ((1, 4, 6, 6), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),  # depthwise
    ((1, 4, 6, 6), (2, 2, 3, 3), {"group": 2}),  # grouped
    ((1, 3, 9), (2, 3, 3), {"dilations": [2], "pads": [2, 2]}),  # 1-D
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("w_zp_kind", ["scalar", "channel"])
def test_conv_integer(case, w_zp_kind):
    x_shape, w_shape, attrs = case
    if w_zp_kind == "channel" and len(x_shape) == 3:
        pytest.skip("neither onnxruntime nor the ONNX reference takes per-channel 1-D zero points")
    qtype = np.uint8  # onnxruntime's ConvInteger takes uint8 activations and weights
    x, w = _q(qtype, x_shape), _q(qtype, w_shape)
    wz = _q(qtype, () if w_zp_kind == "scalar" else (w_shape[0],))
    out_shape = _conv_out_shape(x_shape, w_shape, attrs)
    model, feeds = _build(
        "ConvInteger",
        ["x", "w", "xz", "wz"],
        [x, w, _q(qtype, ()), wz],
        ("y", np.int32, out_shape),
        attrs=attrs,
        opset=10,
    )
    _check(model, feeds, onnxruntime_supports=w_zp_kind == "scalar")


def _conv_out_shape(x_shape, w_shape, attrs):
    nd = len(x_shape) - 2
    pads = attrs.get("pads", [0] * 2 * nd)
    strides = attrs.get("strides", [1] * nd)
    dil = attrs.get("dilations", [1] * nd)
    spatial = [
        (x_shape[2 + i] + pads[i] + pads[i + nd] - dil[i] * (w_shape[2 + i] - 1) - 1) // strides[i]
        + 1
        for i in range(nd)
    ]
    return (x_shape[0], w_shape[0], *spatial)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("qtype", list(RANGES))
@pytest.mark.parametrize("with_bias", [False, True])
def test_qlinear_conv(case, qtype, with_bias):
    x_shape, w_shape, attrs = case
    o = w_shape[0]
    out_shape = _conv_out_shape(x_shape, w_shape, attrs)
    w_zp = np.zeros((o,), qtype) if qtype is np.int8 else _q(qtype, (o,))
    arrays = [
        _q(qtype, x_shape),
        np.array(0.03, np.float32),
        _q(qtype, ()),
        _q(qtype, w_shape),
        RNG.uniform(0.002, 0.02, (o,)).astype(np.float32),
        w_zp,
        np.array(0.4, np.float32),
        _q(qtype, ()),
        RNG.integers(-2000, 2000, (o,)).astype(np.int32) if with_bias else None,
    ]
    names = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"]
    model, feeds = _build(
        "QLinearConv",
        names,
        arrays,
        ("y", qtype, out_shape),
        const_names=("w", "ws", "wz", "b"),
        attrs=attrs,
        opset=10,
    )
    check_conversion(model, feeds)


def test_qlinear_conv_runtime_bias_refused():
    names = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"]
    arrays = [
        _q(np.uint8, (1, 1, 3, 3)),
        np.array(0.1, np.float32),
        _q(np.uint8, ()),
        _q(np.uint8, (1, 1, 1, 1)),
        np.array(0.1, np.float32),
        _q(np.uint8, ()),
        np.array(0.1, np.float32),
        _q(np.uint8, ()),
        np.array([5], np.int32),
    ]
    model, _ = _build("QLinearConv", names, arrays, ("y", np.uint8, (1, 1, 3, 3)))
    expect_refusal(model, "requires_constant_input")


@pytest.mark.parametrize("qtype", list(RANGES))
def test_qlinear_matmul_float16_scales(qtype):
    """Opset-21 float16 scales: the multiplier is rounded to float16 at each step, as the ONNX
    reference computes it (onnxruntime's CPU kernel takes float32 scales only)."""
    names = ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]
    arrays = [
        _q(qtype, (3, 16)),
        np.array([0.0123], np.float16),
        _q(qtype, (1,)),
        _q(qtype, (16, 4)),
        np.array([0.0071], np.float16),
        _q(qtype, (1,)),
        np.array([0.173], np.float16),
        _q(qtype, (1,)),
    ]
    model, feeds = _build("QLinearMatMul", names, arrays, ("y", qtype, (3, 4)), opset=21)
    _check(model, feeds, onnxruntime_supports=False)
