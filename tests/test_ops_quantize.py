"""QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear against onnxruntime (exact)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import TensorProto, helper

RNG = np.random.default_rng(0)
QTYPES = {
    np.uint8: (0, 255),
    np.int8: (-128, 127),
    np.uint16: (0, 65535),
    np.int16: (-32768, 32767),
}
SHAPE = (2, 3, 4, 5)


def _params(mode: str, qtype, axis: int, block: int = 2):
    """(scale, zero_point) arrays for per-tensor, per-axis or blocked quantization."""
    if mode == "tensor":
        shape = ()
    elif mode == "axis":
        shape = (SHAPE[axis],)
    else:
        shape = list(SHAPE)
        shape[axis] = -(-SHAPE[axis] // block)
    lo, hi = QTYPES[qtype]
    scale = RNG.uniform(0.01, 0.2, shape).astype(np.float32)
    zp = RNG.integers(lo // 2, hi // 2 + 1, shape).astype(qtype)
    return scale, zp


def _model(op, x_spec, out_spec, scale, zp, const_params, attrs, opset, x_init=None):
    inputs, inits = [] if x_init is not None else [x_spec], {}
    if x_init is not None:
        inits["x"] = x_init
    names = ["x", "scale"] + (["zp"] if zp is not None else [])
    for name, arr in (("scale", scale), ("zp", zp)):
        if arr is None:
            continue
        if const_params:
            inits[name] = arr
        else:
            inputs.append((name, arr.dtype, arr.shape))
    node = helper.make_node(op, names, ["y"], **attrs)
    return make_model([node], inputs, [out_spec], initializers=inits, opset=opset)


def _feeds(const_params, scale, zp, **extra):
    feeds = dict(extra)
    if not const_params:
        feeds["scale"] = scale
        if zp is not None:
            feeds["zp"] = zp
    return feeds


@pytest.mark.parametrize("qtype", list(QTYPES))
@pytest.mark.parametrize("mode,axis", [("tensor", 1), ("axis", 1), ("axis", -1), ("block", 3)])
@pytest.mark.parametrize("const_params", [False, True])
def test_quantize_linear(qtype, mode, axis, const_params):
    scale, zp = _params(mode, qtype, axis)
    attrs = {"axis": axis} | ({"block_size": 2} if mode == "block" else {})
    x = RNG.normal(0, 30, SHAPE).astype(np.float32)
    x.flat[:8] = [1e9, -1e9, 0.0, -0.0, 3e4, -3e4, 0.5, -0.5]  # saturation, signed zero
    model = _model(
        "QuantizeLinear",
        ("x", np.float32, SHAPE),
        ("y", qtype, SHAPE),
        scale,
        zp,
        const_params,
        attrs,
        21,
    )
    check_conversion(model, _feeds(const_params, scale, zp, x=x))


@pytest.mark.parametrize("qtype", [np.uint8, np.int8])
def test_quantize_ties_round_half_to_even(qtype):
    """x / scale lands exactly on .5: ONNX (and onnxruntime) round to even."""
    scale = np.array(0.25, np.float32)
    zp = np.array(3, qtype)
    x = ((np.arange(-20, 20) + 0.5) * 0.25).astype(np.float32)
    model = _model(
        "QuantizeLinear", ("x", np.float32, x.shape), ("y", qtype, x.shape), scale, zp, True, {}, 13
    )
    chk = check_conversion(model, {"x": x})
    assert chk.ops["ROUND"] == 1 and "QUANTIZE" not in chk.ops


def test_quantize_without_zero_point_defaults_to_uint8_opset10():
    scale = np.array(0.1, np.float32)
    model = _model(
        "QuantizeLinear",
        ("x", np.float32, (3, 4)),
        ("y", np.uint8, (3, 4)),
        scale,
        None,
        False,
        {},
        10,
    )
    x = RNG.normal(5, 10, (3, 4)).astype(np.float32)
    check_conversion(model, {"x": x, "scale": scale})


def test_quantize_output_dtype_attribute():
    scale = np.full((3, 2), 0.05, np.float32)
    model = _model(
        "QuantizeLinear",
        ("x", np.float32, (3, 4)),
        ("y", np.int8, (3, 4)),
        scale,
        None,
        False,
        {"axis": 1, "block_size": 2, "output_dtype": TensorProto.INT8},
        21,
    )
    x = RNG.normal(0, 5, (3, 4)).astype(np.float32)
    check_conversion(model, {"x": x, "scale": scale})


def test_quantize_per_channel_after_channel_last_conv():
    """The conv output is stored channel-last: axis=1 must map to the stored last axis."""
    w = RNG.normal(0, 1, (3, 2, 1, 1)).astype(np.float32)
    scale = np.array([0.05, 0.1, 0.2], np.float32)
    zp = np.array([-3, 0, 7], np.int8)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("QuantizeLinear", ["c", "scale", "zp"], ["y"], axis=1),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, (1, 2, 4, 4))],
        [("y", np.int8, (1, 3, 4, 4))],
        initializers={"w": w, "scale": scale, "zp": zp},
        opset=13,
    )
    check_conversion(model, {"x": RNG.normal(0, 5, (1, 2, 4, 4)).astype(np.float32)})


@pytest.mark.parametrize("qtype", [*QTYPES, np.int32])
@pytest.mark.parametrize("mode,axis", [("tensor", 1), ("axis", 2), ("block", 1)])
@pytest.mark.parametrize("const_params", [False, True])
def test_dequantize_linear(qtype, mode, axis, const_params):
    lo, hi = QTYPES.get(qtype, (-(2**20), 2**20))
    scale, zp = _params(mode, qtype if qtype in QTYPES else np.int16, axis)
    zp = zp.astype(qtype)
    x = RNG.integers(lo, hi + 1, SHAPE).astype(qtype)
    attrs = {"axis": axis} | ({"block_size": 2} if mode == "block" else {})
    model = _model(
        "DequantizeLinear",
        ("x", qtype, SHAPE),
        ("y", np.float32, SHAPE),
        scale,
        zp,
        const_params,
        attrs,
        21,
    )
    check_conversion(model, _feeds(const_params, scale, zp, x=x))


@pytest.mark.parametrize(
    "qtype,per_axis", [(np.int8, False), (np.int8, True), (np.uint8, False), (np.int16, False)]
)
def test_dequantize_constant_weights_use_builtin(qtype, per_axis):
    lo, hi = QTYPES[qtype]
    shape = (4, 3, 2)
    q = RNG.integers(lo, hi + 1, shape).astype(qtype)
    scale = RNG.uniform(0.01, 0.1, (4,) if per_axis else ()).astype(np.float32)
    zp = np.zeros(scale.shape, qtype) if qtype is np.int16 else np.full(scale.shape, 5, qtype)
    nodes = [
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["w"], axis=0),
        helper.make_node("Add", ["w", "x"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, shape)],
        [("y", np.float32, shape)],
        initializers={"q": q, "scale": scale, "zp": zp},
        opset=21,
    )
    chk = check_conversion(model)
    assert chk.ops["DEQUANTIZE"] == 1


@pytest.mark.parametrize("shape", [(6,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("offset", [0.0, 50.0, -50.0])
def test_dynamic_quantize_linear(shape, offset):
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    model = make_model(
        [node],
        [("x", np.float32, shape)],
        [("y", np.uint8, shape), ("s", np.float32, ()), ("z", np.uint8, ())],
        opset=11,
    )
    x = (RNG.normal(0, 20, shape) + offset).astype(np.float32)
    check_conversion(model, {"x": x})


@pytest.mark.parametrize("zp_type", [TensorProto.INT4, TensorProto.UINT4, TensorProto.FLOAT8E4M3FN])
def test_quantize_unsupported_targets_refused(zp_type):
    zp = helper.make_tensor("zp", zp_type, [], [0])
    node = helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["y"])
    model = make_model(
        [node],
        [("x", np.float32, (4,))],
        [("y", zp_type, (4,))],
        initializers=[("scale", np.array(0.5, np.float32)), zp],
        opset=21,
    )
    expect_refusal(model, "unsupported_dtype")


def test_dequantize_int4_refused():
    x = helper.make_tensor_value_info("x", TensorProto.INT4, (4,))
    node = helper.make_node("DequantizeLinear", ["x", "scale"], ["y"])
    model = make_model(
        [node],
        [x],
        [("y", np.float32, (4,))],
        initializers=[("scale", np.array(0.5, np.float32))],
        opset=21,
    )
    expect_refusal(model, "unsupported_dtype")
