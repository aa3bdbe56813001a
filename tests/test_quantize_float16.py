"""QuantizeLinear / DequantizeLinear with float16 x, scale or output, against onnxruntime.

onnxruntime 1.32 (measured, lowering/quantize.py's docstring): QuantizeLinear divides in
float32 below opset 23 and, from opset 23, in the ``precision`` attribute's type (default: the
scale's), so a float16 scale there rounds the quotient to float16 before ROUND;
DequantizeLinear rounds the float32 product ``(q - zp) * scale`` once into a float16 output.
Every comparison is exact (integers, and float16 outputs with atol = rtol = 0). The feeds hold
ties (x / scale exactly k + 0.5), values that saturate, negative zero and, where the division
type matters, values whose float16 and float32 quotients round to different integers -- the
tests assert those exist, so a lowering dividing in the wrong type fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import TensorProto, helper

RANGES = {np.int8: (-128, 127), np.uint8: (0, 255), np.int16: (-32768, 32767)}
RANGES[np.uint16] = (0, 65535)
TARGETS = list(RANGES)
RNG = np.random.default_rng(20261207)


def _feeds_x(shape, scale: float, qmin: int, qmax: int, dtype=np.float16) -> np.ndarray:
    """x of ``shape``: ties, saturating values, -0.0, and seeded values spread over the range."""
    n = int(np.prod(shape))
    span = max(abs(qmin), abs(qmax), 64)
    k = RNG.integers(-min(span, 900), min(span, 900), n)
    x = (k + 0.5) * scale  # ties: exact in float16 for the power-of-two scales used
    x[::5] = RNG.uniform(-1.2, 1.2, x[::5].shape) * span * scale
    x[1::7] = np.sign(RNG.standard_normal(x[1::7].shape)) * 3 * span * scale  # saturate
    x[2::11] = -0.0
    x[3::13] = 60000.0 if dtype == np.float16 else 1e6
    return x.astype(dtype).reshape(shape)


def _q_model(x, scale, zp, opset, *, axis=None, block=None, const_params=False, **attrs):
    nodes_attrs = dict(attrs)
    if axis is not None:
        nodes_attrs["axis"] = axis
    if block is not None:
        nodes_attrs["block_size"] = block
    names = ["x", "s"] + (["z"] if zp is not None else [])
    node = helper.make_node("QuantizeLinear", names, ["y"], **nodes_attrs)
    params = {"s": scale} | ({"z": zp} if zp is not None else {})
    out_dtype = zp.dtype if zp is not None else np.uint8
    inputs = [("x", x.dtype, x.shape)]
    inits = {}
    feeds = {"x": x}
    if const_params:
        inits = params
    else:
        inputs += [(k, v.dtype, v.shape) for k, v in params.items()]
        feeds |= params
    model = make_model([node], inputs, [("y", out_dtype, x.shape)], initializers=inits, opset=opset)
    return model, feeds


def _expected_q(x, scale, zp, half: bool, lo, hi):
    """The numpy model of onnxruntime's QuantizeLinear (float32 or float16 division)."""
    xf = x.astype(np.float16 if half else np.float32).astype(np.float32)
    sf = scale.astype(np.float16 if half else np.float32).astype(np.float32)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        q = xf / sf
        if half:
            q = q.astype(np.float16).astype(np.float32)
    return np.clip(np.rint(q) + zp.astype(np.float32), lo, hi)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("opset", [21, 25])
@pytest.mark.parametrize("const_params", [False, True], ids=["runtime", "const"])
def test_quantize_float16_per_tensor(target, opset, const_params):
    lo, hi = RANGES[target]
    scale = np.asarray(0.125, np.float16)
    zp = np.asarray(3 if lo < 0 else 7, target)
    x = _feeds_x((2, 3, 6, 5), 0.125, lo, hi)
    model, feeds = _q_model(x, scale, zp, opset, const_params=const_params)
    chk = check_conversion(model, feeds=feeds, atol=0, rtol=0)
    y = chk.expected["y"]
    np.testing.assert_array_equal(y, _expected_q(x, scale, zp, opset >= 23, lo, hi))
    assert (y == hi).any() and (y == lo).any()  # saturation exercised
    assert "DIV" in chk.ops and "CAST" in chk.ops


def _division_witnesses(scale: np.ndarray, n: int, span: float) -> np.ndarray:
    """float16 x whose float16 and float32 quotients by ``scale`` round to different integers
    (plus ordinary values), per element of a broadcast ``scale``."""
    found = []
    s32 = np.broadcast_to(scale, (n,)).astype(np.float32)
    while sum(len(f) for f in found) < n:
        cand = (RNG.uniform(-span, span, 200_000)).astype(np.float16)
        idx = np.arange(cand.size) % n
        q32 = np.rint(cand.astype(np.float32) / s32[idx])
        q16 = np.rint((cand.astype(np.float32) / s32[idx]).astype(np.float16).astype(np.float32))
        found.append(np.stack([idx[q32 != q16], cand[q32 != q16].astype(np.float32)], 1))
    pairs = np.concatenate(found)
    out = np.empty(n, np.float16)
    for i in range(n):
        out[i] = pairs[pairs[:, 0] == i][0, 1]
    return out


@pytest.mark.parametrize(
    "opset,precision,half",
    [(21, None, False), (23, None, True), (25, None, True), (25, TensorProto.FLOAT, False)],
    ids=["op21_f32", "op23_f16", "op25_f16", "op25_precision_f32"],
)
def test_quantize_float16_division_type(opset, precision, half):
    """Which type the division runs in decides ties: inputs where float16 and float32 differ."""
    scale = np.asarray([0.3, 1.7, 0.0371], np.float16)  # not powers of two
    n = 3 * 40
    x = _division_witnesses(np.tile(scale, 40), n, 150.0).reshape(40, 3)
    zp = np.asarray([0, -5, 9], np.int16)
    attrs = {"precision": precision} if precision is not None else {}
    model, feeds = _q_model(x, scale, zp, opset, axis=1, **attrs)
    chk = check_conversion(model, feeds=feeds, atol=0, rtol=0)
    expected = _expected_q(x, scale, zp, half, -32768, 32767)
    other = _expected_q(x, scale, zp, not half, -32768, 32767)
    np.testing.assert_array_equal(chk.expected["y"], expected)
    assert (expected != other).all()  # every element tells the two division types apart


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("opset", [21, 23])
def test_quantize_float16_per_axis(target, axis, opset):
    lo, hi = RANGES[target]
    shape = (4, 6, 5)
    n = shape[axis]
    scale = np.asarray([0.25, 0.5, 2.0, 0.0625, 1.0, 0.125][:n], np.float16)
    zp = RNG.integers(max(lo, -20), min(hi, 20) + 1, n).astype(target)
    x = _feeds_x(shape, 0.25, lo, hi)
    model, feeds = _q_model(x, scale, zp, opset, axis=axis)
    chk = check_conversion(model, feeds=feeds, atol=0, rtol=0)
    bshape = [1] * 3
    bshape[axis] = n
    want = _expected_q(x, scale.reshape(bshape), zp.reshape(bshape), opset >= 23, lo, hi)
    np.testing.assert_array_equal(chk.expected["y"], want)


@pytest.mark.parametrize("target", [np.int8, np.uint8, np.int16], ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("axis,block", [(1, 2), (2, 4), (0, 3)])
@pytest.mark.parametrize("const_params", [False, True], ids=["runtime", "const"])
def test_quantize_float16_blocked(target, axis, block, const_params):
    lo, hi = RANGES[target]
    shape = (3, 6, 8)
    pshape = list(shape)
    pshape[axis] = -(-shape[axis] // block)
    scale = RNG.choice(np.asarray([0.125, 0.25, 0.5, 1.0], np.float16), pshape)
    zp = RNG.integers(max(lo, -9), min(hi, 9) + 1, pshape).astype(target)
    x = _feeds_x(shape, 0.125, lo, hi)
    model, feeds = _q_model(x, scale, zp, 21, axis=axis, block=block, const_params=const_params)
    chk = check_conversion(model, feeds=feeds, atol=0, rtol=0)
    rep = np.repeat(scale, block, axis=axis).take(np.arange(shape[axis]), axis=axis)
    rzp = np.repeat(zp, block, axis=axis).take(np.arange(shape[axis]), axis=axis)
    np.testing.assert_array_equal(chk.expected["y"], _expected_q(x, rep, rzp, False, lo, hi))


@pytest.mark.parametrize(
    "xdt,sdt,half",
    [(np.float16, np.float32, False), (np.float32, np.float16, True)],
    ids=["x16_s32", "x32_s16"],
)
def test_quantize_mixed_types_opset23(xdt, sdt, half):
    """Opset 23 lets x and scale differ; the division runs in the scale's type (a float32 x
    is rounded to float16 first)."""
    scale = np.asarray(0.3, sdt)
    x = RNG.uniform(-300, 300, (8, 64)).astype(xdt)
    x.flat[::9] = -0.0
    zp = np.asarray(-2, np.int16)
    model, feeds = _q_model(x, scale, zp, 23)
    chk = check_conversion(model, feeds=feeds, atol=0, rtol=0)
    want = _expected_q(x, scale, zp, half, -32768, 32767)
    np.testing.assert_array_equal(chk.expected["y"], want)
    assert (want != _expected_q(x, scale, zp, not half, -32768, 32767)).any()


def _dq_model(q, scale, zp, opset, *, axis=None, block=None, const=False, out=None, **attrs):
    node_attrs = dict(attrs)
    if axis is not None:
        node_attrs["axis"] = axis
    if block is not None:
        node_attrs["block_size"] = block
    names = ["x", "s"] + (["z"] if zp is not None else [])
    tensors = {"x": q, "s": scale} | ({"z": zp} if zp is not None else {})
    out = out or scale.dtype
    if const:  # constant x and parameters, read by an Add so the DQ is not a graph output
        nodes = [
            helper.make_node("DequantizeLinear", names, ["d"], **node_attrs),
            helper.make_node("Add", ["d", "b"], ["y"]),
        ]
        b = RNG.standard_normal(q.shape).astype(out)
        return (
            make_model(nodes, [("b", out, q.shape)], [("y", out, q.shape)], tensors, opset),
            {"b": b},
        )
    node = helper.make_node("DequantizeLinear", names, ["y"], **node_attrs)
    inputs = [(k, v.dtype, v.shape) for k, v in tensors.items()]
    return make_model([node], inputs, [("y", out, q.shape)], opset=opset), tensors


@pytest.mark.parametrize("qtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32])
@pytest.mark.parametrize("mode", ["tensor", "axis", "blocked", "const"])
def test_dequantize_to_float16(qtype, mode):
    shape = (4, 6, 8)
    info = np.iinfo(qtype)
    lo, hi = max(info.min, -40000), min(info.max, 40000)
    q = RNG.integers(lo, hi, shape, endpoint=True).astype(qtype)
    q.flat[:2] = (info.min, info.max) if qtype != np.int32 else (lo, hi)
    kw = {}
    if mode == "axis":
        kw["axis"] = 1
        pshape = (6,)
    elif mode == "blocked":
        kw.update(axis=2, block=3)
        pshape = (4, 6, 3)
    else:
        pshape = ()
    # scales with full float16 mantissas: products of 16-bit q need more than float16 holds
    scale = RNG.uniform(0.0007, 0.9, pshape).astype(np.float16)
    zp = None if qtype == np.int32 else RNG.integers(lo // 4, hi // 4, pshape).astype(qtype)
    opset = 21 if qtype in (np.int16, np.uint16) or mode == "blocked" else 19
    model, feeds = _dq_model(q, scale, zp, opset, const=mode == "const", **kw)
    chk = check_conversion(model, feeds=feeds, atol=0, rtol=0)
    if mode != "const":
        s = scale.astype(np.float32)
        z = np.zeros((), np.int64) if zp is None else zp.astype(np.int64)
        if mode == "axis":
            s, z = s.reshape(1, 6, 1), np.reshape(z, (1, 6, 1)) if zp is not None else z
        if mode == "blocked":
            s = np.repeat(s, 3, axis=2)[:, :, :8]
            z = np.repeat(z, 3, axis=2)[:, :, :8] if zp is not None else z
        want = ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float16)
        np.testing.assert_array_equal(chk.expected["y"], want)


@pytest.mark.parametrize(
    "sdt,out", [(np.float32, np.float16), (np.float16, np.float32)], ids=["s32_o16", "s16_o32"]
)
@pytest.mark.parametrize("const", [False, True], ids=["runtime", "const"])
def test_dequantize_output_dtype_opset23(sdt, out, const):
    q = RNG.integers(-32768, 32767, (5, 7), endpoint=True).astype(np.int16)
    scale = np.asarray(RNG.uniform(0.001, 0.5), sdt)
    zp = np.asarray(-17, np.int16)
    to = helper.np_dtype_to_tensor_dtype(np.dtype(out))
    model, feeds = _dq_model(q, scale, zp, 23, const=const, out=out, output_dtype=to)
    check_conversion(model, feeds=feeds, atol=0, rtol=0)


def test_quantize_dequantize_float16_pair():
    """Q then DQ, both float16, on the same constant lattice: no float32 shortcut is taken."""
    x = _feeds_x((2, 4, 8), 0.0625, -128, 127)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
    ]
    inits = {"s": np.asarray(0.0625, np.float16), "z": np.asarray(-3, np.int8)}
    model = make_model(nodes, [("x", np.float16, x.shape)], [("y", np.float16, x.shape)], inits, 21)
    check_conversion(model, feeds={"x": x}, atol=0, rtol=0)


def test_bfloat16_still_refused():
    """onnxruntime has no bfloat16 QuantizeLinear kernel: nothing to prove a lowering against."""
    model = make_model(
        [helper.make_node("QuantizeLinear", ["x", "s"], ["y"])],
        [("x", TensorProto.BFLOAT16, (2, 3)), ("s", TensorProto.BFLOAT16, ())],
        [("y", np.uint8, (2, 3))],
        opset=21,
    )
    expect_refusal(model, "unsupported_dtype")


def test_precision_bfloat16_refused():
    model = make_model(
        [helper.make_node("QuantizeLinear", ["x", "s"], ["y"], precision=TensorProto.BFLOAT16)],
        [("x", np.float16, (2, 3)), ("s", np.float16, ())],
        [("y", np.uint8, (2, 3))],
        opset=23,
    )
    expect_refusal(model, "unsupported_attribute_value")


@pytest.mark.parametrize("opset", [21, 25])
def test_quantize_float16_constant_x(opset):
    """A constant float16 x (quantize_static quantizes constants too) through Q, DQ and an
    Add: the division type still decides (opset 25: float16), checked exactly."""
    c = _division_witnesses(np.asarray(0.37, np.float16), 32, 40.0).reshape(4, 8)
    nodes = [
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("Add", ["d", "x"], ["y"]),
    ]
    inits = {"c": c, "s": np.asarray(0.37, np.float16), "z": np.asarray(3, np.int8)}
    model = make_model(
        nodes, [("x", np.float16, (4, 8))], [("y", np.float16, (4, 8))], inits, opset
    )
    chk = check_conversion(model, feeds={"x": np.zeros((4, 8), np.float16)}, atol=0, rtol=0)
    s, z = np.asarray(0.37, np.float16), np.asarray(3, np.int8)
    q = _expected_q(c, s, z, opset >= 23, -128, 127)
    want = ((q - 3).astype(np.float32) * np.float32(s)).astype(np.float16)
    np.testing.assert_array_equal(chk.expected["y"], want)
    other = _expected_q(c, s, z, opset < 23, -128, 127)
    assert (q != other).all()
