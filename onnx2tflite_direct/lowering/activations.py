"""Activations: the dedicated builtin where it is exact, otherwise a short exact composition.

RELU/RELU6/... kernels read int8/uint8 as *quantized* data, so integer Relu and Clip use
MAXIMUM/MINIMUM. ELU has no alpha: Elu/Selu/Celu scale around it. Softplus uses the stable
form max(x, 0) + log(1 + exp(-|x|)) so large inputs do not overflow. Float16/bfloat16 are
computed in float32 (LiteRT's native float16 transcendental kernels miss the 1e-3 tolerance).
"""

from __future__ import annotations

import numpy as np

from ..policies import broadcasting, same_as_input
from ..registry import attr_in, lowering
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

F32_F16 = ("float32", "float16")
MINMAX_NATIVE = ("float32", "float16", "int8", "int16", "int32", "int64", "uint8")


def _select_negative(e, x, negative_branch):
    """x where x >= 0 (ONNX: x > 0), else ``negative_branch``."""
    is_pos = e.op("GREATER", x, e.const(0), dtype=np.bool_)
    return e.op("SELECT_V2", is_pos, x, negative_branch)


@unary_lowering("Relu", MINMAX_NATIVE, FLOATS + SIGNED, ("RELU", "MAXIMUM"))
def _relu(e, x):
    if dtype_name(x.dtype) in F32_F16:
        return e.op("RELU", x)
    return e.op("MAXIMUM", x, e.const(0))


@unary_lowering("LeakyRelu", tflite_ops=("LEAKY_RELU",))
def _leaky(e, x):
    return e.op("LEAKY_RELU", x, alpha=float(e.ctx.attr("alpha", 0.01)))


@unary_lowering("HardSwish", tflite_ops=("HARD_SWISH",))
def _hardswish(e, x):
    return e.op("HARD_SWISH", x)


def clamp_0_1(e, x):
    """min(max(x, 0), 1) as RELU(RELU_N1_TO_1(x)), exact. Not RELU_0_TO_1: XNNPACK rejects
    that builtin, so each one split the graph into another delegate partition (10 in a 169-op
    mobile classifier). Not MAXIMUM/MINIMUM with constants: both activations take no operand,
    fuse into a producer's clamp, and quantize without requantizing constants."""
    return e.op("RELU", e.op("RELU_N1_TO_1", x))


@unary_lowering("HardSigmoid", tflite_ops=("MUL", "ADD", "RELU_N1_TO_1", "RELU"))
def _hardsigmoid(e, x):
    alpha, beta = e.ctx.attr("alpha", 0.2), e.ctx.attr("beta", 0.5)
    x = e.cast(x, np.float32)
    return clamp_0_1(
        e, e.op("ADD", e.op("MUL", x, e.const(alpha, np.float32)), e.const(beta, np.float32))
    )


@unary_lowering("Elu", tflite_ops=("ELU", "GREATER", "MUL", "SELECT_V2"))
def _elu(e, x):
    alpha = float(e.ctx.attr("alpha", 1.0))
    elu = e.op("ELU", x)
    return elu if alpha == 1.0 else _select_negative(e, x, e.op("MUL", elu, e.const(alpha)))


SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


@unary_lowering("Selu", tflite_ops=("ELU", "GREATER", "MUL", "SELECT_V2"))
def _selu(e, x):
    alpha = float(e.ctx.attr("alpha", SELU_ALPHA))
    gamma = float(e.ctx.attr("gamma", SELU_GAMMA))
    neg = e.op("MUL", e.op("ELU", x), e.const(alpha))
    return e.op("MUL", _select_negative(e, x, neg), e.const(gamma))


@unary_lowering("Celu", tflite_ops=("ELU", "MUL"), notes="alpha * ELU(x / alpha)")
def _celu(e, x):
    alpha = float(e.ctx.attr("alpha", 1.0))
    if alpha == 1.0:
        return e.op("ELU", x)
    return e.op("MUL", e.op("ELU", e.op("MUL", x, e.const(1.0 / alpha))), e.const(alpha))


@unary_lowering(
    "Gelu",
    since=20,
    attrs=(attr_in("approximate", ("none", "tanh"), "none"),),
    tflite_ops=("GELU",),
    notes="approximate none/tanh -> GELU approximate flag",
)
def _gelu(e, x):
    return e.op("GELU", x, approximate=e.ctx.attr("approximate", "none") == "tanh")


def _softplus(e, x):
    relu = e.op("MAXIMUM", x, e.const(0))
    tail = e.op("LOG", e.op("ADD", e.op("EXP", e.op("NEG", e.op("ABS", x))), e.const(1)))
    return e.op("ADD", relu, tail)


unary_lowering("Softplus", tflite_ops=("MAXIMUM", "ABS", "NEG", "EXP", "ADD", "LOG"))(_softplus)


@unary_lowering("Mish", tflite_ops=("MAXIMUM", "ABS", "NEG", "EXP", "ADD", "LOG", "TANH", "MUL"))
def _mish(e, x):
    return e.op("MUL", x, e.op("TANH", _softplus(e, x)))


@unary_lowering("Softsign", tflite_ops=("ABS", "ADD", "DIV"))
def _softsign(e, x):
    return e.op("DIV", x, e.op("ADD", e.op("ABS", x), e.const(1)))


@unary_lowering("ThresholdedRelu", tflite_ops=("GREATER", "SELECT_V2"))
def _thresholded(e, x):
    above = e.op("GREATER", x, e.const(e.ctx.attr("alpha", 1.0)), dtype=np.bool_)
    return e.op("SELECT_V2", above, x, e.const(0))


@unary_lowering("Shrink", tflite_ops=("GREATER", "LESS", "SUB", "ADD", "SELECT_V2"))
def _shrink(e, x):
    lambd, bias = e.ctx.attr("lambd", 0.5), e.ctx.attr("bias", 0.0)
    low = e.op(
        "SELECT_V2",
        e.op("LESS", x, e.const(-lambd), dtype=np.bool_),
        e.op("ADD", x, e.const(bias)),
        e.const(0),
    )
    high = e.op("GREATER", x, e.const(lambd), dtype=np.bool_)
    return e.op("SELECT_V2", high, e.op("SUB", x, e.const(bias)), low)


def swish(e, x, alpha: float = 1.0):
    """x * sigmoid(alpha * x)."""
    scaled = x if alpha == 1.0 else e.op("MUL", x, e.const(alpha))
    return e.op("MUL", x, e.op("LOGISTIC", scaled))


@unary_lowering("Swish", since=24, tflite_ops=("MUL", "LOGISTIC"))
def _swish(e, x):
    return swish(e, x, float(e.ctx.attr("alpha", 1.0)))


@lowering(
    "SwiGLU",
    broadcasting(),
    since=28,
    dtypes=FLOATS,
    dtype_inputs=(0, 1),
    tflite_ops=("LOGISTIC", "MUL", "CAST"),
    notes="Swish_alpha(A) * B; float16/bfloat16 computed in float32",
)
def lower_swiglu(ctx):
    e = Emitter(ctx, np.float32)
    gate = swish(e, e.input(0), float(ctx.attr("alpha", 1.0)))
    e.result(e.op("MUL", gate, e.input(1)))


# ---- Clip ---------------------------------------------------------------------------------


def _clip_bound(e, ctx, i: int, attr: str):
    """The bound tensor (constant or runtime), or None when absent/infinite."""
    if ctx.node.opset < 11:
        value = ctx.attr(attr)
        return None if value is None else e.const(value)
    if not ctx.has_input(i):
        return None
    value = ctx.const(i)
    if value is None:
        return e.input(i)
    return e.const(np.asarray(value).reshape(()))


# Clip(0, 1) is not RELU_0_TO_1 (XNNPACK rejects it) but clamp_0_1.
CLIP_ACTIVATIONS = {
    (0.0, 6.0): "RELU6",
    (0.0, None): "RELU",
    (-1.0, 1.0): "RELU_N1_TO_1",
    (0.0, 1.0): clamp_0_1,
}


def _const_bounds(ctx):
    if ctx.node.opset < 11:
        return ctx.attr("min"), ctx.attr("max")
    vals = [ctx.const(i) if ctx.has_input(i) else None for i in (1, 2)]
    if any(ctx.has_input(i) and v is None for i, v in zip((1, 2), vals, strict=True)):
        return "runtime", "runtime"
    return tuple(None if v is None else float(np.asarray(v).reshape(())) for v in vals)


@lowering(
    "Clip",
    same_as_input,
    dtypes=FLOATS + INTEGER,
    dtype_inputs=(0, 1, 2),
    tflite_ops=("RELU6", "RELU", "RELU_N1_TO_1", "MAXIMUM", "MINIMUM", "CAST"),
    extra_check=native_check(MINMAX_NATIVE),
    notes="min/max constant or runtime; MAXIMUM then MINIMUM (min > max yields max)",
)
def lower_clip(ctx):
    e = Emitter(ctx, node_compute_dtype(ctx, MINMAX_NATIVE))
    x = e.input(0)
    fused = CLIP_ACTIVATIONS.get(_const_bounds(ctx)) if x.dtype == np.float32 else None
    if fused is not None:
        e.result(fused(e, x) if callable(fused) else e.op(fused, x))
        return
    out = x
    lo, hi = _clip_bound(e, ctx, 1, "min"), _clip_bound(e, ctx, 2, "max")
    if lo is not None:
        out = e.op("MAXIMUM", out, e.cast(lo, e.dtype))
    if hi is not None:
        out = e.op("MINIMUM", out, e.cast(hi, e.dtype))
    if out is ctx.input(0):
        ctx.alias_output(0, out, ctx.in_layout(0))
        return
    e.result(out)


# ---- PRelu --------------------------------------------------------------------------------


@lowering(
    "PRelu",
    broadcasting(),
    dtypes=FLOATS + ("int32", "int64"),
    dtype_inputs=(0, 1),
    tflite_ops=("PRELU", "GREATER", "MUL", "SELECT_V2", "CAST"),
    extra_check=native_check(("float32", "int32", "int64")),
    notes="float32 up to rank 4: PRELU (XNNPACK takes it with a constant slope); otherwise "
    "slope broadcast to the input (select(x > 0, x, slope * x))",
)
def lower_prelu(ctx):
    e = Emitter(ctx, node_compute_dtype(ctx, ("float32", "int32", "int64")))
    x = e.input(0)
    if x.dtype == np.float32 and len(ctx.shape(0)) <= PRELU_MAX_RANK:
        e.result(e.op("PRELU", x, e.input(1)))
    else:
        e.result(_select_negative(e, x, e.op("MUL", x, e.input(1))))


# LiteRT's float PRELU kernel broadcasts through its 4-D reference path.
PRELU_MAX_RANK = 4


def prelu_by_select(ctx):
    """``--decompose``: PRelu with primitive builtins only (GREATER, MUL, SELECT_V2)."""
    e = Emitter(ctx, node_compute_dtype(ctx, ("float32", "int32", "int64")))
    x = e.input(0)
    e.result(_select_negative(e, x, e.op("MUL", x, e.input(1))))
