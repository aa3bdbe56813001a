"""Comparisons (with widened int types), boolean logic, bitwise ops, BitShift, Where."""

from __future__ import annotations

import numpy as np
import pytest
from harness import convert, make_model, run_node, values
from onnx import helper

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
@pytest.mark.parametrize(
    "dtype", ["float32", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"]
)
def test_comparisons(op, dtype):
    if dtype == "uint16" and op != "Equal":
        pytest.skip("onnxruntime has no uint16 kernel")
    a = values(dtype, (2, 3, 4), -4, 4)
    b = values(dtype, (3, 1), -4, 4)
    run_node(op, {"a": a, "b": b}, out_dtype=np.bool_)


def test_equal_bool():
    a = RNG.integers(0, 2, (3, 4)).astype(bool)
    run_node("Equal", {"a": a, "b": a[:1]}, out_dtype=np.bool_)


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
@pytest.mark.parametrize("shape_b", [(3, 4), (4,), (1, 1)])
def test_logical(op, shape_b):
    a = RNG.integers(0, 2, (2, 3, 4)).astype(bool)
    b = RNG.integers(0, 2, shape_b).astype(bool)
    run_node(op, {"a": a, "b": b})


def test_not():
    run_node("Not", {"a": RNG.integers(0, 2, (2, 3)).astype(bool)})


SMALL = ["int8", "int16", "uint8", "uint16"]


@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
@pytest.mark.parametrize("dtype", SMALL)
def test_bitwise_small(op, dtype):
    info = np.iinfo(dtype)
    a = RNG.integers(info.min, info.max, (3, 4), endpoint=True).astype(dtype)
    b = RNG.integers(info.min, info.max, (4,), endpoint=True).astype(dtype)
    run_node(op, {"a": a, "b": b}, opset=18)


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint8", "uint16", "uint32"])
def test_bitwise_not_and_xor(dtype):
    info = np.iinfo(dtype)
    a = RNG.integers(info.min, info.max, (3, 4), endpoint=True).astype(dtype)
    run_node("BitwiseNot", {"a": a}, opset=18)
    run_node("BitwiseXor", {"a": a, "b": a[::-1]}, opset=18)


def full_range(dtype, shape):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
@pytest.mark.parametrize("dtype", ["int32", "uint32", "int64", "uint64"])
@pytest.mark.parametrize("shapes", [((3, 4), (4,)), ((2, 3), ()), ((5,), (5,))])
def test_bitwise_wide_on_lanes(op, dtype, shapes):
    a, b = (full_range(dtype, s) for s in shapes)
    run_node(op, {"a": a, "b": b}, opset=18)


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_bitwise_not_64(dtype):
    run_node("BitwiseNot", {"a": full_range(dtype, (2, 5))}, opset=18)


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32"])
def test_bitshift(direction, dtype):
    width = np.dtype(dtype).itemsize * 8
    info = np.iinfo(dtype)
    x = RNG.integers(0, info.max, (2, 8), endpoint=True).astype(dtype)
    s = RNG.integers(0, width - 1, (8,), endpoint=True).astype(dtype)
    run_node("BitShift", {"x": x, "s": s}, direction=direction, opset=11)


def _shift_reference(x, s, direction, dtype):
    """ONNX opset-28 BitShift on Python ints: out-of-range (or negative) shifts give 0, or the
    sign fill for signed right shifts."""
    width = np.dtype(dtype).itemsize * 8
    signed = np.dtype(dtype).kind == "i"

    def one(xi, si):
        if direction == "LEFT":
            v = (xi << si) % 2**width if 0 <= si < width else 0
            return v - 2**width if signed and v >= 2 ** (width - 1) else v
        if 0 <= si < width:
            return xi >> si
        return -1 if signed and xi < 0 else 0

    xs, ss = np.broadcast_arrays(x, s)
    out = [one(a, b) for a, b in zip(xs.ravel().tolist(), ss.ravel().tolist(), strict=True)]
    return np.array(out, dtype).reshape(xs.shape)


def convert_and_run(model, feeds):
    """LiteRT outputs of the converted model (for kernels onnxruntime lacks)."""
    from ai_edge_litert.interpreter import Interpreter

    res = convert(model)
    return Interpreter(model_content=res.tflite_bytes).get_signature_runner()(**feeds)


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_bitshift_64(direction, dtype):
    x = full_range(dtype, (3, 70))
    x[0, :3] = [np.iinfo(dtype).max, np.iinfo(dtype).min, 1]
    s = np.arange(70).astype(dtype)
    if dtype == "int64":
        s[-4:] = [-1, -64, -70, 2**62]
    else:
        s[-3:] = [2**63, 2**64 - 1, 2**63 + 5]
    model = make_model(
        [helper.make_node("BitShift", ["x", "s"], ["y"], direction=direction)],
        inputs=[("x", dtype, x.shape), ("s", dtype, s.shape)],
        outputs=[("y", dtype, x.shape)],
        opset=11,
    )
    got = convert_and_run(model, {"x": x, "s": s})["y"]
    np.testing.assert_array_equal(got, _shift_reference(x, s, direction, dtype))


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8", "int64", "uint16", "float64"])
def test_where(dtype):
    cond = RNG.integers(0, 2, (2, 3, 4)).astype(bool)
    x = values(dtype, (3, 4))
    y = values(dtype, (4,))
    if dtype == "uint16":
        pytest.skip("onnxruntime has no uint16 Where")
    run_node("Where", {"c": cond, "t": x, "f": y}, out_dtype=x.dtype)
