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
    as_int64,
    dtype_name,
    int64_floor_div,
    is_uint64,
    native_check,
    node_compute_dtype,
)
from .emit import Emitter

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
            e = Emitter(ctx, "int64")
            ordered = opcode != "EQUAL"
            a, b = (as_int64(e, ctx.input(i), ordered) for i in (0, 1))
            e.result(e.op(opcode, a, b, dtype=np.bool_))
            return
        e = Emitter(ctx, node_compute_dtype(ctx, native))
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
        e = Emitter(ctx, np.bool_)
        e.result(e.op(opcode, ctx.input(0), ctx.input(1)))

    return lower


for _onnx, _tfl in LOGICAL.items():
    lowering(_onnx, broadcasting(), since=7, dtypes=BOOL, dtype_inputs=(0, 1), tflite_ops=(_tfl,))(
        _logical(_tfl)
    )


@lowering("Not", same_as_input, dtypes=BOOL, tflite_ops=("LOGICAL_NOT",))
def lower_not(ctx):
    e = Emitter(ctx)
    e.op("LOGICAL_NOT", ctx.input(0), out=ctx.output(0))


# ---- bitwise ------------------------------------------------------------------------------

XOR_NATIVE = ("int8", "int16", "int32", "uint8", "uint16", "uint32")
SMALL_INTS = ("int8", "int16", "uint8", "uint16")


WIDE_64 = ("int64", "uint64")  # BITWISE_XOR lacks them: run on uint32 lanes


def _xor_with(ctx, other) -> None:
    """Output 0 = input 0 ^ ``other`` (a tensor of input 0's dtype, or an all-ones marker)."""
    name = dtype_name(ctx.value(0).dtype)
    e = Emitter(ctx, name)
    if name in WIDE_64:
        a = to_lanes(ctx, ctx.input(0), np.uint32)
        b = e.const(np.iinfo(np.uint32).max, np.uint32) if other is None else other(e, True)
        from_lanes(ctx, e.op("BITWISE_XOR", a, b))
        return
    ones = np.array(-1).astype(e.dtype) if name in SIGNED else np.iinfo(e.dtype).max
    b = e.const(ones) if other is None else other(e, False)
    e.result(e.op("BITWISE_XOR", e.input(0), b))


@lowering(
    "BitwiseXor",
    broadcasting(),
    since=18,
    dtypes=XOR_NATIVE + WIDE_64,
    dtype_inputs=(0, 1),
    tflite_ops=("BITWISE_XOR", "BITCAST"),
    notes="64-bit types on uint32 lanes (BITCAST)",
)
def lower_bitwise_xor(ctx):
    _xor_with(ctx, lambda e, wide: to_lanes(ctx, ctx.input(1), np.uint32) if wide else e.input(1))


@lowering(
    "BitwiseNot",
    broadcasting(),
    since=18,
    dtypes=XOR_NATIVE + WIDE_64,
    tflite_ops=("BITWISE_XOR", "BITCAST"),
    notes="x ^ all-ones; 64-bit types on uint32 lanes (BITCAST)",
)
def lower_bitwise_not(ctx):
    _xor_with(ctx, None)


WIDE_INTS = ("int32", "uint32", "int64", "uint64")  # AND/OR through 16-bit lanes


def to_lanes(ctx, t, lane_dtype):
    """BITCAST ``t`` to narrower ``lane_dtype``: TFLite appends a trailing lanes axis, which
    lines up across broadcast operands (every operand gets the same lane count)."""
    e = Emitter(ctx)
    ratio = t.dtype.itemsize // np.dtype(lane_dtype).itemsize
    return e.op("BITCAST", t, shape=(*t.shape, ratio), dtype=lane_dtype, hint="lanes")


def from_lanes(ctx, lanes) -> None:
    """BITCAST lanes back into output 0 (dropping the trailing lanes axis)."""
    e = Emitter(ctx)
    e.op("BITCAST", lanes, out=ctx.output(0))


def _and_or(sign: str):
    """a & b = (a + b - (a ^ b)) / 2 and a | b = (a + b + (a ^ b)) / 2, exact in int32 for
    16-bit operands; wider types run on their uint16 lanes."""

    def lower(ctx):
        e = Emitter(ctx, "int32")
        wide = dtype_name(ctx.value(0).dtype) in WIDE_INTS
        a, b = (
            e.cast(to_lanes(ctx, ctx.input(i), np.uint16), "int32") if wide else e.input(i)
            for i in (0, 1)
        )
        xor = e.op("BITWISE_XOR", a, b)
        total = e.op(sign, e.op("ADD", a, b), xor)
        half = e.op("DIV", total, e.const(2))
        if wide:
            from_lanes(ctx, e.cast(half, np.uint16))
        else:
            e.result(half)

    return lower


for _onnx, _sign in (("BitwiseAnd", "SUB"), ("BitwiseOr", "ADD")):
    lowering(
        _onnx,
        broadcasting(),
        since=18,
        dtypes=SMALL_INTS + WIDE_INTS,
        dtype_inputs=(0, 1),
        tflite_ops=("CAST", "BITWISE_XOR", "ADD", "SUB", "DIV", "BITCAST"),
        notes="(a + b -/+ (a ^ b)) / 2 in int32 on 16-bit values; 32/64-bit types BITCAST to "
        "uint16 lanes",
    )(_and_or(_sign))


BITSHIFT_TYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "int64", "uint64")


@lowering(
    "BitShift",
    broadcasting(),
    since=11,
    dtypes=BITSHIFT_TYPES,
    dtype_inputs=(0, 1),
    tflite_ops=("RIGHT_SHIFT", "MUL", "POW", "FLOOR_DIV", "SELECT_V2", "MINIMUM", "LESS", "CAST")
    + ("GATHER", "BITCAST", "FLOOR_MOD", "ROUND", "DIV", "ADD", "SUB", "GREATER", "EQUAL")
    + ("LOGICAL_OR",),
    notes="out-of-range shifts give 0 (left) / sign fill (right); 64-bit: left = wrapping "
    "int64 MUL by a gathered 2^s, right = exact int64 floor division by 2^s",
)
def lower_bitshift(ctx):
    name = dtype_name(ctx.value(0).dtype)
    right = ctx.attr("direction", b"LEFT") in (b"RIGHT", "RIGHT")
    if name in ("int64", "uint64"):
        (_right_shift_64 if right else _left_shift_64)(Emitter(ctx, "int64"), name)
        return
    width = np.dtype(name).itemsize * 8
    e = Emitter(ctx, "int32")
    shift = e.input(1)
    negative = e.op("LESS", shift, e.const(0), dtype=np.bool_)
    if right:
        _right_shift(e, name, width, shift, negative)
    else:
        _left_shift(e, name, width, shift, negative)


# POWERS_64[s] = 2^s as wrapping int64 (2^63 is INT64_MIN, 2^64 is 0)
POWERS_64 = np.array([(1 << s) % (1 << 64) for s in range(65)], np.uint64).view(np.int64)


def _int64_operands(e: Emitter, name: str):
    """Both inputs as int64 bit patterns; a uint64 shift >= 2^63 becomes negative, which the
    callers treat as out of range, as they do negative int64 shifts."""
    if name == "uint64":
        return tuple(e.op("BITCAST", e.ctx.input(i), dtype=np.int64) for i in (0, 1))
    return e.input(0), e.input(1)


def _lookup(e: Emitter, table: np.ndarray, index):
    """``table[index]`` (elementwise GATHER from a constant table)."""
    out = e.ctx.temp(table.dtype, index.shape, "table_value")
    e.gather(e.const(table, table.dtype), index, 0, out=out)
    return out


def _finish_64(e: Emitter, name: str, t) -> None:
    e.result(e.op("BITCAST", t, dtype=np.uint64) if name == "uint64" else t)


def _left_shift_64(e: Emitter, name: str) -> None:
    x, shift = _int64_operands(e, name)
    out_of_range = e.op("LESS", shift, e.const(0), dtype=np.bool_)
    amount = e.op("SELECT_V2", out_of_range, e.const(64), e.op("MINIMUM", shift, e.const(64)))
    _finish_64(e, name, e.op("MUL", x, _lookup(e, POWERS_64, amount)))


def _right_shift_64(e: Emitter, name: str) -> None:
    """floor(x / 2^s) for s <= 62 (2^63 is no positive int64); s = 63 is the top bit alone.
    uint64 adds back the 2^(64-s) that the signed image's sign fill subtracted."""
    x, shift = _int64_operands(e, name)
    zero = e.const(0)
    negative_shift = e.op("LESS", shift, zero, dtype=np.bool_)
    amount = e.op("SELECT_V2", negative_shift, e.const(62), e.op("MINIMUM", shift, e.const(62)))
    quotient, _ = int64_floor_div(e, x, _lookup(e, POWERS_64, amount))
    x_negative = e.op("LESS", x, zero, dtype=np.bool_)
    beyond = e.op("GREATER", shift, e.const(62), dtype=np.bool_)
    if name == "int64":  # negative or >= 63: sign fill
        sign_fill = e.op("SELECT_V2", x_negative, e.const(-1), zero)
        big = e.op("LOGICAL_OR", beyond, negative_shift)
        _finish_64(e, name, e.op("SELECT_V2", big, sign_fill, quotient))
        return
    complement = _lookup(e, POWERS_64[::-1][:63], amount)  # 2^(64 - s)
    logical = e.op("ADD", quotient, e.op("SELECT_V2", x_negative, complement, zero))
    top_bit = e.op("SELECT_V2", x_negative, e.const(1), zero)
    exactly_63 = e.op("EQUAL", shift, e.const(63), dtype=np.bool_)
    beyond_result = e.op("SELECT_V2", exactly_63, top_bit, zero)
    big = e.op("LOGICAL_OR", beyond, negative_shift)
    _finish_64(e, name, e.op("SELECT_V2", big, beyond_result, logical))


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
    e = Emitter(ctx)
    e.op("SELECT_V2", ctx.input(0), ctx.input(1), ctx.input(2), out=ctx.output(0))
