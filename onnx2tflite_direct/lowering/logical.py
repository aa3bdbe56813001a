"""Comparisons, boolean logic, bitwise ops, BitShift and Where.

Comparison kernels read int8/uint8 as quantized data, and lack uint16/uint32: those inputs are
widened exactly first; uint64 is compared on int64 images (BITCAST, plus a top-bit flip for
ordering, see elementwise.as_int64). TFLite has BITWISE_XOR and RIGHT_SHIFT but no bitwise AND/OR or left
shift: for 8/16-bit integers AND/OR use a + b = (a ^ b) + 2 (a & b) in int32, and left shift is
a wrapping multiply by two powers of two (each at most 2^16, so int32 POW never overflows).
Shift amounts that are negative or not below the bit width follow ONNX opset 28 (0 for left
shifts, sign fill for right shifts).
"""

from __future__ import annotations

import numpy as np

from ..policies import broadcasting, same_as_input
from ..registry import lowering
from .elementwise import (
    FLOATS,
    INTEGER,
    SIGNED,
    Emit,
    as_int64,
    dtype_name,
    is_uint64,
    native_check,
    node_compute_dtype,
)

BOOL = ("bool",)
EQ_NATIVE = ("bool", "float32", "float16", "int16", "int32", "int64")
ORDER_NATIVE = ("float32", "float16", "int16", "int32", "int64")
COMPARISONS = {
    "Equal": ("EQUAL", EQ_NATIVE, 7),
    "Less": ("LESS", ORDER_NATIVE, 7),
    "Greater": ("GREATER", ORDER_NATIVE, 7),
    "LessOrEqual": ("LESS_EQUAL", ORDER_NATIVE, 12),
    "GreaterOrEqual": ("GREATER_EQUAL", ORDER_NATIVE, 12),
}


def _comparison(opcode: str, native):
    def lower(ctx):
        if is_uint64(ctx):
            e = Emit(ctx, "int64")
            ordered = opcode != "EQUAL"
            a, b = (as_int64(e, ctx.input(i), ordered) for i in (0, 1))
            e.result(e.op(opcode, a, b, dtype=np.bool_))
            return
        e = Emit(ctx, node_compute_dtype(ctx, native))
        e.result(e.op(opcode, e.input(0), e.input(1), dtype=np.bool_))

    return lower


for _onnx, (_tfl, _native, _since) in COMPARISONS.items():
    lowering(
        _onnx,
        broadcasting(),
        since=_since,
        dtypes=FLOATS + INTEGER + ("uint64",) + (BOOL if _onnx == "Equal" else ()),
        dtype_inputs=(0, 1),
        tflite_ops=(_tfl, "CAST", "BITCAST", "ADD"),
        extra_check=native_check(_native, uint64=True),
        notes="int8/uint8/uint16/uint32 widened with CAST; uint64 compared on int64 images "
        "(BITCAST, top-bit flip for ordering); float64 and strings refused",
    )(_comparison(_tfl, _native))


LOGICAL = {"And": "LOGICAL_AND", "Or": "LOGICAL_OR", "Xor": "NOT_EQUAL"}


def _logical(opcode: str):
    def lower(ctx):
        e = Emit(ctx, np.bool_)
        e.result(e.op(opcode, ctx.input(0), ctx.input(1)))

    return lower


for _onnx, _tfl in LOGICAL.items():
    lowering(_onnx, broadcasting(), since=7, dtypes=BOOL, dtype_inputs=(0, 1), tflite_ops=(_tfl,))(
        _logical(_tfl)
    )


@lowering("Not", same_as_input, dtypes=BOOL, tflite_ops=("LOGICAL_NOT",))
def lower_not(ctx):
    ctx.emit("LOGICAL_NOT", [ctx.input(0)], [ctx.output(0)])


# ---- bitwise ------------------------------------------------------------------------------

XOR_NATIVE = ("int8", "int16", "int32", "uint8", "uint16", "uint32")
SMALL_INTS = ("int8", "int16", "uint8", "uint16")


@lowering(
    "BitwiseXor",
    broadcasting(),
    since=18,
    dtypes=XOR_NATIVE,
    dtype_inputs=(0, 1),
    tflite_ops=("BITWISE_XOR",),
    notes="64-bit refused",
)
def lower_bitwise_xor(ctx):
    e = Emit(ctx, dtype_name(ctx.value(0).dtype))
    e.result(e.op("BITWISE_XOR", e.input(0), e.input(1)))


@lowering(
    "BitwiseNot",
    broadcasting(),
    since=18,
    dtypes=XOR_NATIVE,
    tflite_ops=("BITWISE_XOR",),
    notes="x ^ all-ones; 64-bit refused",
)
def lower_bitwise_not(ctx):
    e = Emit(ctx, dtype_name(ctx.value(0).dtype))
    ones = np.array(-1).astype(e.dtype) if dtype_name(e.dtype) in SIGNED else np.iinfo(e.dtype).max
    e.result(e.op("BITWISE_XOR", e.input(0), e.const(ones)))


def _and_or(sign: str):
    def lower(ctx):
        e = Emit(ctx, "int32")
        a, b = e.input(0), e.input(1)
        xor = e.op("BITWISE_XOR", a, b)
        total = e.op(sign, e.op("ADD", a, b), xor)
        e.result(e.op("DIV", total, e.const(2)))

    return lower


for _onnx, _sign in (("BitwiseAnd", "SUB"), ("BitwiseOr", "ADD")):
    lowering(
        _onnx,
        broadcasting(),
        since=18,
        dtypes=SMALL_INTS,
        dtype_inputs=(0, 1),
        tflite_ops=("CAST", "BITWISE_XOR", "ADD", "SUB", "DIV"),
        notes="8/16-bit only: (a + b -/+ (a ^ b)) / 2 in int32",
    )(_and_or(_sign))


BITSHIFT_TYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32")


@lowering(
    "BitShift",
    broadcasting(),
    since=11,
    dtypes=BITSHIFT_TYPES,
    dtype_inputs=(0, 1),
    tflite_ops=("RIGHT_SHIFT", "MUL", "POW", "FLOOR_DIV", "SELECT_V2", "MINIMUM", "LESS", "CAST"),
    notes="64-bit refused; out-of-range shifts give 0 (left) / sign fill (right)",
)
def lower_bitshift(ctx):
    name = dtype_name(ctx.value(0).dtype)
    width = np.dtype(name).itemsize * 8
    e = Emit(ctx, "int32")
    shift = e.input(1)
    negative = e.op("LESS", shift, e.const(0), dtype=np.bool_)
    if ctx.attr("direction", b"LEFT") in (b"RIGHT", "RIGHT"):
        _right_shift(e, name, width, shift, negative)
    else:
        _left_shift(e, name, width, shift, negative)


def _right_shift(e, name, width, shift, negative):
    x = e.input(0, name)
    clamped = e.op("MINIMUM", shift, e.const(width - 1))
    if name in SIGNED:  # shifting by width-1 is the sign fill
        amount = e.op("SELECT_V2", negative, e.const(width - 1), clamped)
        e.result(e.op("RIGHT_SHIFT", x, e.cast(amount, name)))
        return
    safe = e.op("SELECT_V2", negative, e.const(0), clamped)
    shifted = e.op("RIGHT_SHIFT", x, e.cast(safe, name))
    too_far = e.op("GREATER", shift, e.const(width - 1), dtype=np.bool_)
    out_of_range = e.op("LOGICAL_OR", too_far, negative)
    e.result(e.op("SELECT_V2", out_of_range, e.const(0, name), shifted))


def _left_shift(e, name, width, shift, negative):
    amount = e.op("SELECT_V2", negative, e.const(width), e.op("MINIMUM", shift, e.const(width)))
    half = e.op("FLOOR_DIV", amount, e.const(2))
    rest = e.op("SUB", amount, half)
    two = e.const(2)
    compute = "uint32" if name == "uint32" else "int32"
    x = e.input(0, compute)
    for part in (half, rest):
        x = e.op("MUL", x, e.cast(e.op("POW", two, part), compute))
    e.result(x)


WHERE_TYPES = FLOATS + INTEGER + BOOL + ("float64", "uint64")


@lowering(
    "Where",
    broadcasting(),
    since=9,
    dtypes=WHERE_TYPES,
    dtype_inputs=(1, 2),
    tflite_ops=("SELECT_V2",),
    notes="SELECT_V2 broadcasts all three operands",
)
def lower_where(ctx):
    ctx.emit("SELECT_V2", [ctx.input(0), ctx.input(1), ctx.input(2)], [ctx.output(0)])
