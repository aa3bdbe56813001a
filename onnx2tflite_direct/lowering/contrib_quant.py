"""onnxruntime's dynamic-quantization contrib ops: MatMulIntegerToFloat and
DynamicQuantizeMatMul (what onnxruntime's optimizer makes of quantize_dynamic's
DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul chains).

Both compute ``float(int32 accumulator) * (a_scale * b_scale) + bias`` like onnxruntime's CPU
kernels. The accumulator is exact: the shifted operands are exact float32 integers and long
reductions are split into digits whose float32 partial sums stay below 2**24, then combined in
int32 (``qlinear.split_plan``), so the only rounding is the conversion to float and the
scaling, which onnxruntime performs identically. DynamicQuantizeMatMul first quantizes A as
DynamicQuantizeLinear does (uint8, scale over [min(0, min A), max(0, max A)] / 255,
round-half-even).

In a graph these run as float ops (rewrite ``float_carried_integers``, ``float_carried.py``):
the same quantization, bit for bit, and a float32 accumulation of the exact integer products;
the exact lowerings below remain for ``--disable-rewrite float_carried_integers``.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import onnx_order
from ..registry import FLOAT, lowering
from .contrib import MS
from .emit import Emitter
from .qlinear import (
    INT8_TYPES,
    _as_float,
    _integer_matmul,
    _matmul_check,
    _max_shift,
    _param,
    _same_rank,
    _shifted,
    combine_digits,
    digit_plan,
    split_digits,
)
from .quantize import nonzero_range


def _scaled(ctx, acc, scale, bias_idx: int):
    """float(acc) * scale (+ bias) written into output 0."""
    e = Emitter(ctx)
    out = ctx.output(0)
    value = e.op("MUL", _as_float(ctx, acc), scale, hint="scaled")
    if ctx.has_input(bias_idx):
        value = e.op("ADD", value, ctx.input(bias_idx), hint="biased")
    e.reshape(value, out.shape, out=out)


@lowering(
    "MatMulIntegerToFloat",
    onnx_order,
    domain=MS,
    dtypes=INT8_TYPES,
    dtype_inputs=(0, 1, 4, 5),
    tflite_ops=("CAST", "SUB", "BATCH_MATMUL", "FLOOR", "MUL", "ADD"),
    notes="float(acc) * (a_scale * b_scale) + bias like onnxruntime; per-tensor A, "
    "per-column B; by default (rewrite float_carried_integers) a float32 accumulation of the "
    "exact integer products: error vs onnxruntime <= gamma_K * a_scale * b_scale * "
    "sum |a - a_zp| |b - b_zp| (gamma_K = K u / (1 - K u), u = 2**-24; 0 while partial sums "
    "stay below 2**24) plus the output's "
    "float32 roundings; with the rewrite off: exact int32 accumulation (digit split beyond "
    "2**24), accumulator error 0",
    extra_check=_matmul_check(0, 4, 1, 5, per_tensor=(2, 4), per_column=(3, 5), scales=(2, 3)),
)
def lower_matmul_integer_to_float(ctx):
    e = Emitter(ctx)
    acc = _integer_matmul(ctx, 0, 4, 1, 5)
    n = ctx.shape(1)[-1]
    scale = e.op("MUL", _param(ctx, 2, ()), _param(ctx, 3, (n,)), hint="scale_ab")
    _scaled(ctx, acc, scale, 6)


def _dqmm_check(node, graph):
    a, b = graph.values[node.inputs[0]], graph.values[node.inputs[1]]
    if a.rank < 2 or b.rank < 2:
        return f"{errors.UNSUPPORTED_RANK}: 1-D operands (ranks {a.rank}, {b.rank})"
    b_type = np.dtype(b.dtype).name
    if b_type not in INT8_TYPES:
        return f"{errors.UNSUPPORTED_DTYPE}: B has dtype {b_type} (int8/uint8)"
    n = b.shape[-1]
    for i in (2, 3):
        if i < len(node.inputs) and node.inputs[i]:
            v = graph.values[node.inputs[i]]
            size = int(np.prod(v.shape, dtype=np.int64))
            if size != 1 and tuple(v.shape) != (n,):
                return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: parameter {i} shape {tuple(v.shape)}"
    b_max = _max_shift(node, graph, 1, 3)
    if digit_plan(a.shape[-1], 255, b_max) is None:
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: a reduction of {a.shape[-1]} products "
            "cannot be split into exact float32 partial sums"
        )
    return None


def _dynamic_quantize(ctx, x, per_row: bool = False):
    """(q - zp as exact float32 integers, scale): DynamicQuantizeLinear's uint8 lattice, over
    the whole tensor or (``per_row``) over each row of a 2-D tensor (scale shape [rows, 1])."""
    e = Emitter(ctx)
    axes = [1] if per_row else list(range(len(x.shape)))
    zero = e.const(0.0, hint="zero")
    hi = e.reduce("REDUCE_MAX", x, axes, per_row, "max")
    lo = e.reduce("REDUCE_MIN", x, axes, per_row, "min")
    hi = e.op("MAXIMUM", hi, zero, hint="hi")
    lo = e.op("MINIMUM", lo, zero, hint="lo")
    spread = nonzero_range(ctx, e.op("SUB", hi, lo, hint="range"))
    scale = e.op("DIV", spread, e.const(255.0, hint="q_span"), hint="a_scale")
    initial = e.op("SUB", zero, e.op("DIV", lo, scale, hint="min_scaled"), hint="zp0")
    zp = e.op(
        "MINIMUM",
        e.op("MAXIMUM", initial, zero, hint="zp_lo"),
        e.const(255.0, hint="zp_max"),
        hint="zp_hi",
    )
    zp = e.op("ROUND", zp, dtype=np.float32, hint="zp_round")
    q = e.op(
        "ROUND",
        e.op("DIV", x, scale, hint="a_div"),
        shape=x.shape,
        dtype=np.float32,
        hint="a_round",
    )
    q = e.op("ADD", q, zp, hint="a_zp")
    q = e.op("MAXIMUM", q, zero, hint="a_lo")
    q = e.op("MINIMUM", q, e.const(255.0, hint="qmax"), hint="a_hi")
    return e.op("SUB", q, zp, hint="a_shifted"), scale


@lowering(
    "DynamicQuantizeMatMul",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0,),
    tflite_ops=(
        "REDUCE_MAX",
        "REDUCE_MIN",
        "DIV",
        "ROUND",
        "SUB",
        "BATCH_MATMUL",
        "FLOOR",
        "CAST",
        "MUL",
    ),
    notes="A quantized as onnxruntime does (uint8, bit-identical: x / scale rounded half to "
    "even), float(acc) * (a_scale * b_scale) + bias; by default (rewrite "
    "float_carried_integers) a float32 accumulation: error vs onnxruntime <= gamma_K * "
    "a_scale * b_scale * sum |a - a_zp| |b - b_zp| (gamma_K = K u / (1 - K u), u = 2**-24) "
    "plus the output's float32 "
    "roundings; with the rewrite off: exact int32 accumulation (digit split beyond 2**24)",
    extra_check=_dqmm_check,
)
def lower_dynamic_quantize_matmul(ctx):
    e = Emitter(ctx)
    a, a_scale = _dynamic_quantize(ctx, ctx.input(0))
    n = ctx.shape(1)[-1]
    b = _shifted(ctx, 1, _param(ctx, 3, (n,)), hint="b_shifted")
    k = ctx.shape(0)[-1]
    digits, bits = digit_plan(k, 255, _max_shift(ctx.node, ctx.driver.graph, 1, 3))
    if digits == 1:
        acc = e.matmul(*_same_rank(ctx, a, b), hint="acc")
    else:
        parts = [
            e.matmul(*_same_rank(ctx, d, b), hint=f"acc_digit{i}")
            for i, d in enumerate(split_digits(ctx, a, digits, bits))
        ]
        acc = combine_digits(ctx, parts, bits)
    scale = e.op("MUL", a_scale, _param(ctx, 2, (n,)), hint="scale_ab")
    _scaled(ctx, acc, scale, 4)
