"""Unary math: direct builtins where TFLite has an exact one, short exact compositions otherwise.

Compositions are chosen for accuracy, not brevity: asin/acos go through ATAN2 with
sqrt((1-x)(1+x)) (no cancellation near |x| = 1), asinh uses the odd symmetry so negative inputs
do not cancel, and Erf is the Abramowitz-Stegun 7.1.26 rational approximation (absolute error
below 1.5e-7, inside the float tolerance). Float16/bfloat16 inputs of transcendental functions
are computed in float32 and rounded back: LiteRT's native float16 EXP/LOG/SIN/... are off by
more than 1e-3 relative; exact ones (Abs, Neg, Floor, Ceil, Round, IsNaN) run natively.
float64 is refused (no exact path).
"""

from __future__ import annotations

import numpy as np

from ..policies import same_as_input
from ..registry import lowering
from .elementwise import (
    FLOATS,
    INTEGER,
    SIGNED,
    dtype_name,
    native_check,
    node_compute_dtype,
    unary_lowering,
)
from .emit import Emitter

F32 = ("float32",)
F32_F16 = ("float32", "float16")


def _direct(opcode: str, native):
    def lower(ctx):
        e = Emitter(ctx, node_compute_dtype(ctx, native))
        e.result(e.op(opcode, e.input(0)))

    return lower


# ONNX op -> (builtin, kernel dtypes, allowed ONNX dtypes)
DIRECT = {
    "Exp": ("EXP", F32, FLOATS),
    "Log": ("LOG", F32, FLOATS),
    "Sqrt": ("SQRT", F32, FLOATS),
    "Floor": ("FLOOR", F32_F16, FLOATS),
    "Ceil": ("CEIL", F32_F16, FLOATS),
    "Round": ("ROUND", F32_F16, FLOATS),  # TFLite ROUND rounds half to even, as ONNX does
    "Sin": ("SIN", F32, FLOATS),
    "Cos": ("COS", F32, FLOATS),
    "Tanh": ("TANH", F32, FLOATS),
    "Sigmoid": ("LOGISTIC", F32, FLOATS),
    "Neg": ("NEG", ("float32", "float16", "int8", "int16", "int32", "int64"), FLOATS + SIGNED),
}

for _onnx, (_tfl, _native, _allowed) in DIRECT.items():
    lowering(
        _onnx,
        same_as_input,
        dtypes=_allowed,
        tflite_ops=(_tfl, "CAST"),
        extra_check=native_check(_native),
        notes=f"kernel {'/'.join(_native)}; other dtypes widened with CAST; float64 refused",
    )(_direct(_tfl, _native))


@unary_lowering(
    "Abs",
    ("float32", "float16", "int16", "int32", "int64"),
    FLOATS + INTEGER,
    ("ABS", "MAXIMUM", "NEG"),
)
def _abs(e, x):
    if dtype_name(x.dtype) == "int64":  # no int64 ABS kernel
        return e.op("MAXIMUM", x, e.op("NEG", x))
    return e.op("ABS", x)


@unary_lowering("Reciprocal", F32_F16, tflite_ops=("DIV",))
def _reciprocal(e, x):
    return e.op("DIV", e.const(1), x)


@unary_lowering(
    "Sign", ("float32", "int32", "int64"), FLOATS + INTEGER, ("SIGN", "GREATER", "LESS", "SUB")
)
def _sign(e, x):
    if dtype_name(x.dtype) != "int64":
        return e.op("SIGN", x)
    pos = e.cast(e.op("GREATER", x, e.const(0), dtype=np.bool_), x.dtype)
    neg = e.cast(e.op("LESS", x, e.const(0), dtype=np.bool_), x.dtype)
    return e.op("SUB", pos, neg)


@unary_lowering("Tan", F32, tflite_ops=("SIN", "COS", "DIV"))
def _tan(e, x):
    return e.op("DIV", e.op("SIN", x), e.op("COS", x))


def _one_minus_square(e, x):
    """1 - x^2 as (1 - x)(1 + x): exact near |x| = 1."""
    one = e.const(1)
    return e.op("MUL", e.op("SUB", one, x), e.op("ADD", one, x))


@unary_lowering("Atan", F32, tflite_ops=("ATAN2",))
def _atan(e, x):
    return e.op("ATAN2", x, e.const(np.ones(x.shape)))  # ATAN2 does not broadcast


@unary_lowering("Asin", F32, tflite_ops=("ATAN2", "SQRT", "SUB", "ADD", "MUL"))
def _asin(e, x):
    return e.op("ATAN2", x, e.op("SQRT", _one_minus_square(e, x)))


@unary_lowering("Acos", F32, tflite_ops=("ATAN2", "SQRT", "SUB", "ADD", "MUL"))
def _acos(e, x):
    return e.op("ATAN2", e.op("SQRT", _one_minus_square(e, x)), x)


@unary_lowering("Sinh", F32, tflite_ops=("EXP", "NEG", "SUB", "MUL"))
def _sinh(e, x):
    return e.op("MUL", e.op("SUB", e.op("EXP", x), e.op("EXP", e.op("NEG", x))), e.const(0.5))


@unary_lowering("Cosh", F32, tflite_ops=("EXP", "NEG", "ADD", "MUL"))
def _cosh(e, x):
    return e.op("MUL", e.op("ADD", e.op("EXP", x), e.op("EXP", e.op("NEG", x))), e.const(0.5))


@unary_lowering("Asinh", F32, tflite_ops=("ABS", "MUL", "ADD", "SQRT", "LOG", "SIGN"))
def _asinh(e, x):
    ax = e.op("ABS", x)
    root = e.op("SQRT", e.op("ADD", e.op("MUL", x, x), e.const(1)))
    return e.op("MUL", e.op("SIGN", x), e.op("LOG", e.op("ADD", ax, root)))


@unary_lowering("Acosh", F32, tflite_ops=("SUB", "ADD", "MUL", "SQRT", "LOG"))
def _acosh(e, x):
    one = e.const(1)
    root = e.op("SQRT", e.op("MUL", e.op("SUB", x, one), e.op("ADD", x, one)))
    return e.op("LOG", e.op("ADD", x, root))


@unary_lowering("Atanh", F32, tflite_ops=("ADD", "SUB", "DIV", "LOG", "MUL"))
def _atanh(e, x):
    one = e.const(1)
    ratio = e.op("DIV", e.op("ADD", one, x), e.op("SUB", one, x))
    return e.op("MUL", e.op("LOG", ratio), e.const(0.5))


ERF_P = 0.3275911
ERF_SIGN_GAIN = 1e30
ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


@unary_lowering(
    "Erf",
    F32,
    tflite_ops=("ABS", "MUL", "ADD", "DIV", "EXP", "NEG", "SUB", "RELU_N1_TO_1"),
    notes="Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7); float64 refused",
)
def _erf(e, x):
    ax = e.op("ABS", x)
    t = e.op("DIV", e.const(1), e.op("ADD", e.op("MUL", ax, e.const(ERF_P)), e.const(1)))
    poly = e.const(ERF_A[-1])
    for coeff in reversed(ERF_A[:-1]):
        poly = e.op("ADD", e.op("MUL", poly, t), e.const(coeff))
    poly = e.op("MUL", poly, t)
    gauss = e.op("EXP", e.op("NEG", e.op("MUL", x, x)))
    magnitude = e.op("SUB", e.const(1), e.op("MUL", poly, gauss))
    # sign(x) as clamp(x * 1e30, -1, 1): exactly +-1 from |x| = 1e-30 on, infinities
    # included (below, the product stays within 1e-30 of erf(x); NaN stays NaN through the
    # magnitude). Not SIGN: XNNPACK has no kernel for it, so an Erf (an unfused GELU in a
    # quantized encoder) cut the graph into another delegate partition.
    sign = e.op("RELU_N1_TO_1", e.op("MUL", x, e.const(ERF_SIGN_GAIN)))
    return e.op("MUL", sign, magnitude)


@unary_lowering("IsNaN", F32_F16, tflite_ops=("NOT_EQUAL",))
def _isnan(e, x):
    return e.op("NOT_EQUAL", x, x, dtype=np.bool_)


@unary_lowering("IsInf", F32_F16, tflite_ops=("EQUAL", "ABS", "LESS"))
def _isinf(e, x):
    pos = e.ctx.attr("detect_positive", 1)
    neg = e.ctx.attr("detect_negative", 1)
    if pos and neg:
        return e.op("EQUAL", e.op("ABS", x), e.const(np.inf), dtype=np.bool_)
    if pos or neg:
        return e.op("EQUAL", x, e.const(np.inf if pos else -np.inf), dtype=np.bool_)
    return e.op("LESS", x, e.const(-np.inf), dtype=np.bool_)  # always false
