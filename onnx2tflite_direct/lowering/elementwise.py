"""Broadcasting arithmetic and activations.

Binary ops follow the layout of their data operands (constants are permuted in numpy, never
at run time); activations are unary and accept any layout.
"""

from __future__ import annotations

import numpy as np

from ..policies import broadcasting, same_as_input
from ..registry import FLOAT, NUMERIC, lowering

BINARY = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL", "Div": "DIV"}


def _binary(opcode: str):
    def lower(ctx):
        ctx.emit(opcode, [ctx.input(0), ctx.input(1)], [ctx.output(0)], fused_activation_function="NONE")

    return lower


for _onnx, _tfl in BINARY.items():
    lowering(
        _onnx,
        broadcasting(),
        since=7,
        dtypes=FLOAT if _onnx == "Div" else NUMERIC,
        dtype_inputs=(0, 1),
        tflite_ops=(_tfl,),
        notes="numpy broadcasting",
    )(_binary(_tfl))


@lowering("Sum", broadcasting(), since=8, dtypes=FLOAT, tflite_ops=("ADD",), notes="chain of ADD")
def lower_sum(ctx):
    n = len(ctx.node.inputs)
    if n == 1:
        ctx.alias_output(0, ctx.input(0), ctx.in_layout(0))
        return
    acc = ctx.input(0)
    for i in range(1, n):
        last = i == n - 1
        out = ctx.output(0) if last else ctx.temp(np.float32, ctx.output(0).shape, f"sum{i}")
        ctx.emit("ADD", [acc, ctx.input(i)], [out], fused_activation_function="NONE")
        acc = out


def _unary(opcode: str, **options):
    def lower(ctx):
        ctx.emit(opcode, [ctx.input(0)], [ctx.output(0)], **options)

    return lower


for _onnx, _tfl in (("Relu", "RELU"), ("Sigmoid", "LOGISTIC"), ("Tanh", "TANH"), ("HardSwish", "HARD_SWISH")):
    lowering(_onnx, same_as_input, tflite_ops=(_tfl,))(_unary(_tfl))


@lowering("LeakyRelu", same_as_input, tflite_ops=("LEAKY_RELU",))
def lower_leaky(ctx):
    ctx.emit("LEAKY_RELU", [ctx.input(0)], [ctx.output(0)], alpha=float(ctx.attr("alpha", 0.01)))


@lowering("HardSigmoid", same_as_input, tflite_ops=("MUL", "ADD", "RELU_0_TO_1"))
def lower_hardsigmoid(ctx):
    x = ctx.input(0)
    alpha = np.array(ctx.attr("alpha", 0.2), np.float32)
    beta = np.array(ctx.attr("beta", 0.5), np.float32)
    scaled = ctx.temp(np.float32, x.shape, "scaled")
    ctx.emit("MUL", [x, ctx.const_tensor(alpha, "alpha")], [scaled], fused_activation_function="NONE")
    shifted = ctx.temp(np.float32, x.shape, "shifted")
    ctx.emit("ADD", [scaled, ctx.const_tensor(beta, "beta")], [shifted], fused_activation_function="NONE")
    ctx.emit("RELU_0_TO_1", [shifted], [ctx.output(0)])


def _clip_bounds(ctx):
    if ctx.node.opset < 11:
        return ctx.attr("min", -np.inf), ctx.attr("max", np.inf)
    lo = ctx.const(1) if ctx.has_input(1) else None
    hi = ctx.const(2) if ctx.has_input(2) else None
    return (
        -np.inf if lo is None else float(np.asarray(lo).reshape(-1)[0]),
        np.inf if hi is None else float(np.asarray(hi).reshape(-1)[0]),
    )


CLIP_ACTIVATIONS = {(0.0, 6.0): "RELU6", (0.0, np.inf): "RELU", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, 1.0): "RELU_0_TO_1"}


@lowering(
    "Clip",
    same_as_input,
    const_inputs=(1, 2),
    tflite_ops=("RELU6", "RELU", "RELU_N1_TO_1", "RELU_0_TO_1", "MAXIMUM", "MINIMUM"),
    notes="min/max must be constant",
)
def lower_clip(ctx):
    lo, hi = _clip_bounds(ctx)
    x = ctx.input(0)
    act = CLIP_ACTIVATIONS.get((float(lo), float(hi)))
    if act is not None:
        ctx.emit(act, [x], [ctx.output(0)])
        return
    if lo > hi:
        lo = hi  # ONNX: min > max yields max everywhere
    cur = x
    if np.isfinite(hi):
        nxt = ctx.output(0) if not np.isfinite(lo) else ctx.temp(x.dtype, x.shape, "clip_hi")
        ctx.emit("MINIMUM", [cur, ctx.const_tensor(np.array(hi, x.dtype), "max")], [nxt])
        cur = nxt
    if np.isfinite(lo):
        ctx.emit("MAXIMUM", [cur, ctx.const_tensor(np.array(lo, x.dtype), "min")], [ctx.output(0)])
    if not np.isfinite(lo) and not np.isfinite(hi):
        ctx.alias_output(0, x, ctx.in_layout(0))


@lowering("PRelu", broadcasting(), dtype_inputs=(0, 1), tflite_ops=("PRELU",), notes="slope broadcast to the input")
def lower_prelu(ctx):
    ctx.emit("PRELU", [ctx.input(0), ctx.input(1)], [ctx.output(0)])
