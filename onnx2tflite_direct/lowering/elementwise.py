"""Broadcasting arithmetic (Add/Sub/Mul/Div, variadic Sum/Max/Min/Mean, Mod, Pow) and the
dtype machinery the other elementwise families share.

TFLite kernels accept fewer dtypes than ONNX, and some accept a dtype only as a *quantized*
type (int8/uint8/int16 ADD, MUL, DIV, ABS): feeding them plain integers gives wrong numbers. So
every lowering here names the dtypes its kernel handles natively and :class:`~.emit.Emitter` widens any
other input exactly (int8/int16/uint8/uint16 -> int32, uint32 -> int64, float16/bfloat16 ->
float32) with CAST, computes, and CASTs the result back (TFLite CAST wraps like C, which is
what ONNX integer arithmetic does on overflow). float64 has no TFLite kernels; ops whose result
is one of their inputs (Max/Min) compute it in float32 (documented per op), others refuse it.

uint64 has no arithmetic kernels either, but two's-complement arithmetic is the same modulo 2^64
for both signednesses: Add/Sub/Mul (and Equal) BITCAST uint64 to int64, compute, and BITCAST
back. Ordering ops (Max/Min, Less/Greater...) additionally add INT64_MIN (a wrapping flip of the
top bit), which maps unsigned order onto signed order; the flip is its own inverse.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import broadcasting, same_as_input
from ..registry import decomposition, dtype_name, lowering
from .emit import Emitter

SIGNED = ("int8", "int16", "int32", "int64")
UNSIGNED = ("uint8", "uint16", "uint32")
INTEGER = SIGNED + UNSIGNED
FLOATS = ("float32", "float16", "bfloat16")
REAL = FLOATS + INTEGER

# Exact widening steps: the next dtype that holds every value of the key.
WIDER = {
    "int8": "int32",
    "int16": "int32",
    "uint8": "int32",
    "uint16": "int32",
    "uint32": "int64",
    "float16": "float32",
    "bfloat16": "float32",
}


def compute_dtype(name: str, native, f64_as_f32: bool = False) -> str | None:
    """The first dtype in ``native`` reachable from ``name`` by exact widening, else None."""
    if name == "float64" and f64_as_f32:
        name = "float32"
    while name is not None and name not in native:
        name = WIDER.get(name)
    return name


def native_check(native, inputs=(0,), f64_as_f32: bool = False, uint64: bool = False):
    """extra_check refusing input dtypes that cannot reach a native dtype exactly
    (``uint64=True``: the op handles uint64 itself through :func:`as_int64`)."""

    def check(node, graph):
        for i in inputs:
            if i < len(node.inputs) and node.inputs[i]:
                name = dtype_name(graph.values[node.inputs[i]].dtype)
                if uint64 and name == "uint64":
                    continue
                if compute_dtype(name, native, f64_as_f32) is None:
                    return f"{errors.UNSUPPORTED_DTYPE}: input {i} has dtype {name}; no exact TFLite kernel"
        return None

    return check


UINT64_SIGN_FLIP = np.iinfo(np.int64).min


def is_uint64(ctx) -> bool:
    return dtype_name(ctx.value(0).dtype) == "uint64"


def as_int64(e: Emitter, t, ordered: bool = False):
    """The int64 bit pattern of a uint64 tensor; ``ordered`` also flips the top bit so that
    signed comparisons of the results order the unsigned inputs."""
    t = e.op("BITCAST", t, dtype=np.int64)
    return e.op("ADD", t, e.const(UINT64_SIGN_FLIP, np.int64)) if ordered else t


def from_int64(e: Emitter, t, ordered: bool = False):
    """Inverse of :func:`as_int64`: back to uint64."""
    if ordered:
        t = e.op("ADD", t, e.const(UINT64_SIGN_FLIP, np.int64))
    return e.op("BITCAST", t, dtype=np.uint64)


def node_compute_dtype(ctx, native, f64_as_f32: bool = False) -> str:
    return compute_dtype(dtype_name(ctx.value(0).dtype), native, f64_as_f32)


def lower_binary_native(ctx, opcode: str, native, f64_as_f32: bool = False) -> None:
    if is_uint64(ctx):  # only reached for the wrapping ops (Add/Sub/Mul)
        e = Emitter(ctx, "int64")
        a, b = (as_int64(e, ctx.input(i)) for i in (0, 1))
        e.result(from_int64(e, e.op(opcode, a, b)))
        return
    e = Emitter(ctx, node_compute_dtype(ctx, native, f64_as_f32))
    e.result(e.op(opcode, e.input(0), e.input(1)))


# ---- Add / Sub / Mul / Div -----------------------------------------------------------------

ADD_NATIVE = ("float32", "float16", "int32", "int64")
DIV_NATIVE = ("float32", "float16", "int32")  # int32 DIV truncates toward zero, as ONNX does
DIV_EXACT = DIV_NATIVE + ("int64",)  # int64 (and uint32 widened to it) via int64_truncating_div
BINARY = {"Add": ("ADD", ADD_NATIVE), "Sub": ("SUB", ADD_NATIVE), "Mul": ("MUL", ADD_NATIVE)}
BINARY["Div"] = ("DIV", DIV_EXACT)
# float32 estimates of an exact int64 quotient n: the first is within |n| * 2^-22 + 1, each
# correction multiplies the error by ~3 * 2^-24 and rounds, so two corrections reach 0 even
# for |n| near 2^63 (2^63 -> 2^41 -> 2^19 -> 0)
QUOTIENT_CORRECTIONS = 2


def int64_floor_div(e: Emitter, a, b):
    """(floor(a / b), FLOOR_MOD(a, b)) for int64, exactly. TFLite has no int64 DIV/FLOOR_DIV
    but has int64 FLOOR_MOD: ``a - FLOOR_MOD(a, b)`` is an exact multiple of b, whose quotient
    a float32 estimate plus wrapping int64 residual corrections finds exactly."""
    i64, f32 = np.dtype(np.int64), np.dtype(np.float32)
    remainder = e.op("FLOOR_MOD", a, b)
    multiple = e.op("SUB", a, remainder)
    b_float = e.cast(b, f32)

    def estimate(x):
        return e.cast(e.op("ROUND", e.op("DIV", e.cast(x, f32), b_float)), i64)

    quotient = estimate(multiple)
    for _ in range(QUOTIENT_CORRECTIONS):
        residual = e.op("SUB", multiple, e.op("MUL", quotient, b))
        quotient = e.op("ADD", quotient, estimate(residual))
    return quotient, remainder


def int64_truncating_div(e: Emitter, a, b):
    """a / b for int64 rounded toward zero (ONNX integer Div), exactly: the floor quotient
    bumped by one where the remainder is nonzero and the signs differ."""
    i64 = np.dtype(np.int64)
    quotient, remainder = int64_floor_div(e, a, b)
    zero = e.const(0, i64)
    inexact = e.op("NOT_EQUAL", remainder, zero, dtype=np.bool_)
    a_neg, b_neg = (e.op("LESS", t, zero, dtype=np.bool_) for t in (a, b))
    bump = e.op("LOGICAL_AND", inexact, e.op("NOT_EQUAL", a_neg, b_neg))
    return e.op("SELECT_V2", bump, e.op("ADD", quotient, e.const(1, i64)), quotient)


def _binary(opcode: str, native):
    def lower(ctx):
        if opcode == "DIV" and node_compute_dtype(ctx, native) == "int64":
            e = Emitter(ctx, "int64")
            e.result(int64_truncating_div(e, e.input(0), e.input(1)))
            return
        lower_binary_native(ctx, opcode, native)

    return lower


DIV_OPS = ("FLOOR_MOD", "SUB", "MUL", "ADD", "ROUND", "NOT_EQUAL", "LESS", "LOGICAL_AND")
for _onnx, (_tfl, _native) in BINARY.items():
    lowering(
        _onnx,
        broadcasting(),
        since=7,
        dtypes=REAL + (() if _onnx == "Div" else ("uint64",)),
        dtype_inputs=(0, 1),
        tflite_ops=(_tfl, "CAST") + (DIV_OPS + ("SELECT_V2",) if _onnx == "Div" else ("BITCAST",)),
        extra_check=native_check(_native, uint64=True),
        notes=f"numpy broadcasting; kernels {'/'.join(_native)}, narrower types widened with CAST"
        + (
            "; int Div truncates; int64 (and uint32) Div exact via FLOOR_MOD + float32 "
            "quotient estimate + int64 residual corrections (uint64 refused)"
            if _onnx == "Div"
            else ""
        )
        + ("" if _onnx == "Div" else "; uint64 computed as wrapping int64 via BITCAST")
        + "; float64 refused",
    )(_binary(_tfl, _native))


# ---- variadic Sum / Max / Min / Mean ------------------------------------------------------------

VARIADIC = {
    "Sum": ("ADD", ADD_NATIVE, False),
    "Mean": ("ADD", ("float32", "float16"), False),
    "Max": ("MAXIMUM", ("float32", "float16", "int8", "int32", "int64", "uint8", "int16"), True),
    "Min": ("MINIMUM", ("float32", "float16", "int8", "int32", "int64", "uint8", "int16"), True),
}


def _variadic_uint64(ctx, opcode: str) -> None:
    """Max/Min of uint64 on order-preserving int64 images."""
    e = Emitter(ctx, "int64")
    acc = as_int64(e, ctx.input(0), ordered=True)
    for i in range(1, len(ctx.node.inputs)):
        acc = e.op(opcode, acc, as_int64(e, ctx.input(i), ordered=True))
    e.result(from_int64(e, acc, ordered=True))


def _variadic(op_type: str, opcode: str, native, f64: bool):
    def lower(ctx):
        if f64 and is_uint64(ctx) and len(ctx.node.inputs) > 1:
            _variadic_uint64(ctx, opcode)
            return
        e = Emitter(ctx, node_compute_dtype(ctx, native, f64))
        acc = e.input(0)
        for i in range(1, len(ctx.node.inputs)):
            acc = e.op(opcode, acc, e.input(i))
        if op_type == "Mean" and len(ctx.node.inputs) > 1:
            acc = e.op("MUL", acc, e.const(1.0 / len(ctx.node.inputs)))
        if acc is ctx.input(0):
            ctx.alias_output(0, acc, ctx.in_layout(0))
            return
        e.result(acc)

    return lower


for _onnx, (_tfl, _native, _f64) in VARIADIC.items():
    lowering(
        _onnx,
        broadcasting(),
        since=8,
        dtypes=REAL + (("float64", "uint64") if _f64 else ()),
        dtype_inputs=tuple(range(64)),
        tflite_ops=(_tfl, "CAST")
        + (("MUL",) if _onnx == "Mean" else ())
        + (("BITCAST", "ADD") if _f64 else ()),
        extra_check=native_check(_native, inputs=tuple(range(64)), f64_as_f32=_f64, uint64=_f64),
        notes="variadic, numpy broadcasting"
        + (
            "; float64 computed in float32 (the result is one of the inputs); uint64 on "
            "order-preserving int64 images (BITCAST + top-bit flip)"
            if _f64
            else ""
        ),
    )(_variadic(_onnx, _tfl, _native, _f64))


# ---- Mod ----------------------------------------------------------------------------------

MOD_NATIVE = ("float32", "int8", "int16", "int32", "int64")


@lowering(
    "Mod",
    broadcasting(),
    since=10,
    dtypes=REAL,
    dtype_inputs=(0, 1),
    tflite_ops=("FLOOR_MOD", "ABS", "NEG", "LESS", "SELECT_V2", "CAST"),
    extra_check=native_check(MOD_NATIVE),
    notes="fmod=0: FLOOR_MOD (sign of divisor); fmod=1: sign(a)*FLOOR_MOD(|a|,|b|); "
    "float64 refused",
)
def lower_mod(ctx):
    dtype = node_compute_dtype(ctx, MOD_NATIVE)
    if ctx.attr("fmod", 0) and dtype in ("int8", "int16"):
        dtype = "int32"  # |x| of the most negative value must not overflow
    e = Emitter(ctx, dtype)
    a, b = e.input(0), e.input(1)
    if not ctx.attr("fmod", 0) or dtype_name(ctx.value(0).dtype) in UNSIGNED:
        e.result(e.op("FLOOR_MOD", a, b))
        return
    magnitude = e.op("FLOOR_MOD", _abs(e, a), _abs(e, b))
    negative = e.op("LESS", a, e.const(0), dtype=np.bool_)
    e.result(e.op("SELECT_V2", negative, e.op("NEG", magnitude), magnitude))


def _abs(e: Emitter, x):
    """|x| for the dtypes ABS lacks (int8 is quantized-only, int64 is missing)."""
    if dtype_name(x.dtype) in ("float32", "float16", "int16", "int32"):
        return e.op("ABS", x)
    return e.op("MAXIMUM", x, e.op("NEG", x))


# ---- Pow ----------------------------------------------------------------------------------


def _pow_check(node, graph):
    base = dtype_name(graph.values[node.inputs[0]].dtype)
    if compute_dtype(base, ("float32", "int32")) is None:
        return f"{errors.UNSUPPORTED_DTYPE}: Pow base dtype {base} has no exact TFLite kernel"
    exp = dtype_name(graph.values[node.inputs[1]].dtype)
    if exp not in REAL + ("int64", "uint64"):
        return f"{errors.UNSUPPORTED_DTYPE}: Pow exponent dtype {exp}"
    return None


@lowering(
    "Pow",
    broadcasting(),
    since=7,
    dtypes=REAL,
    dtype_inputs=(0,),
    tflite_ops=("POW", "CAST", "BITCAST", "LESS", "SELECT_V2", "ADD"),
    extra_check=_pow_check,
    notes="float bases in float32; integer bases with integer exponents in int32 (a negative "
    "exponent fails at run time); integer base with float exponent computed in float32 and "
    "truncated; int64 bases refused",
)
def lower_pow(ctx):
    base = dtype_name(ctx.value(0).dtype)
    exp = dtype_name(ctx.value(1).dtype)
    if base in FLOATS or exp in FLOATS:
        e = Emitter(ctx, "float32")
    else:
        e = Emitter(ctx, "int32")
    exponent = _uint64_as_float(e, ctx.input(1)) if exp == "uint64" else e.input(1)
    e.result(e.op("POW", e.input(0), exponent))


def _uint64_as_float(e: Emitter, t):
    """float32 of a uint64 tensor (CAST lacks uint64): the int64 image, plus 2^64 where it is
    negative (the value was >= 2^63)."""
    signed = e.op("BITCAST", t, dtype=np.int64)
    as_float = e.cast(signed, "float32")
    wrapped = e.op("LESS", signed, e.const(0, np.int64), dtype=np.bool_)
    lift = e.op("SELECT_V2", wrapped, e.const(2.0**64), e.const(0.0))
    return e.op("ADD", as_float, lift)


def unary_lowering(
    op_type: str, native=("float32",), dtypes=FLOATS, tflite_ops=(), notes: str = "", **kw
):
    """Register ``fn(e, x) -> tensor`` as the lowering of a unary op: inputs whose dtype has no
    native kernel are computed in ``compute_dtype`` and cast back by :class:`~.emit.Emitter`."""

    def wrap(fn):
        def lower(ctx):
            e = Emitter(ctx, node_compute_dtype(ctx, native))
            e.result(fn(e, e.input(0)))

        lowering(
            op_type,
            same_as_input,
            dtypes=dtypes,
            tflite_ops=tuple(tflite_ops) + ("CAST",),
            extra_check=native_check(native),
            notes=notes or "float64 refused",
            **kw,
        )(lower)
        return fn

    return wrap


def unary_decomposition(op_type: str, native=("float32",)):
    """Register ``fn(e, x) -> tensor`` as the ``--decompose`` lowering of a unary op."""

    def wrap(fn):
        def lower(ctx):
            e = Emitter(ctx, node_compute_dtype(ctx, native))
            e.result(fn(e, e.input(0)))

        decomposition(op_type)(lower)
        return fn

    return wrap
