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
the same quantization, bit for bit, and, with constant weights, the exact int32 accumulator on
LiteRT's int8 FULLY_CONNECTED (:func:`exact_dense`, the converter's ExactIntegerDense /
ExactIntegerConv), else a float32 accumulation of the exact integer products; the exact
lowerings below remain for ``--disable-rewrite float_carried_integers``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import errors
from ..float_carried import EXACT_CONV, EXACT_DENSE, INTERNAL, conv_rows_weights, int8_codes
from ..policies import channel_last, onnx_order
from ..registry import FLOAT, lowering
from .contrib import MS
from .dynamic_sizes import sizes_vary
from .emit import Emitter
from .int8_kernel import im2col_rows, int8_dense
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
    "per-column B; by default (rewrite float_carried_integers) with constant B the exact int32 "
    "accumulator on LiteRT's int8 FULLY_CONNECTED (error 0), else a float32 accumulation of the "
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
    shifted, _, scale = dynamic_quantize_parts(ctx, x, per_row)
    return shifted, scale


def _range_ends(ctx, x, per_row: bool, shared=None):
    """(hi, lo) = (max(0, max x), min(0, min x)) over the whole tensor or (``per_row``) each
    row of a 2-D tensor ([rows, 1]). ``shared`` (per_row only): a float32 [1] tensor, 1.0
    where the rows are to share one range after all, else 0.0, known at run time only (a
    quantized LSTM's state with a dynamic batch: ``contrib_rnn.state_grouping``). The shared
    range is the rows' extremes widened to all rows': ``max(hi_row, shared * max(hi_row))``
    (hi >= 0, lo <= 0, so ``0 * extreme`` never binds), the same floats as a per-tensor
    reduction."""
    e = Emitter(ctx)
    axes = [1] if per_row else list(range(len(x.shape)))
    zero = e.const(0.0, hint="zero")
    hi = e.op("MAXIMUM", e.reduce("REDUCE_MAX", x, axes, per_row, "max"), zero, hint="hi")
    lo = e.op("MINIMUM", e.reduce("REDUCE_MIN", x, axes, per_row, "min"), zero, hint="lo")
    if shared is not None:
        if not per_row:
            raise errors.InternalError(errors.INTERNAL_ERROR, "shared rows without per_row")
        hi_all = e.op("MUL", e.reduce("REDUCE_MAX", hi, [0], True, "max_all"), shared)
        lo_all = e.op("MUL", e.reduce("REDUCE_MIN", lo, [0], True, "min_all"), shared)
        hi = e.op("MAXIMUM", hi, hi_all, hint="hi_shared")
        lo = e.op("MINIMUM", lo, lo_all, hint="lo_shared")
    return hi, lo


def dynamic_quantize_parts(ctx, x, per_row: bool = False, shared=None):
    """(q - zp, zp, scale) of DynamicQuantizeLinear as float32 tensors (exact integers; zp in
    [0, 255]); see :func:`_dynamic_quantize`. ``q - zp`` is ``clamp(round(x / scale), -zp,
    255 - zp)``, the same integers as ``clamp(round(x / scale) + zp, 0, 255) - zp``.
    ``shared``: see :func:`_range_ends`."""
    e = Emitter(ctx)
    zero = e.const(0.0, hint="zero")
    hi, lo = _range_ends(ctx, x, per_row, shared)
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
    # (no lower clamp: round(x / scale) >= round(lo / scale) = -zp, see product_quantize)
    q = e.op("MINIMUM", q, e.op("SUB", e.const(255.0, hint="qmax"), zp, hint="hi_shifted"))
    return q, zp, scale


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
    "float_carried_integers) the exact int32 accumulator on LiteRT's int8 FULLY_CONNECTED "
    "(error 0) where B fits it, else a float32 accumulation: error vs onnxruntime <= gamma_K * "
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


# ---- the exact integer product on LiteRT's dynamically quantized FULLY_CONNECTED -------------


# 255 * FLT_MIN: the smallest range product_quantize keeps as it is (see there)
MIN_PRODUCT_RANGE = float(255 * np.finfo(np.float32).tiny)


def product_quantize(ctx, x, per_row: bool = False, shared=None):
    """(q - zp, -zp, scale) of DynamicQuantizeLinear for a value that only feeds a quantized
    product (the scale only multiplies the product's accumulator): :func:`dynamic_quantize_parts`
    in 14 ops instead of 21, the same numbers.

    * ``-zp = round(max(lo / scale, -255))``: lo <= 0, so onnxruntime's ``clamp(0 - lo / scale,
      0, 255)`` needs only the upper bound, and rounding half to even is odd-symmetric; the
      clamp bounds of ``q - zp`` are then ``-zp`` itself and ``-zp + 255``, and the lower one
      never binds: x >= lo, so ``round(x / scale) >= round(lo / scale) >= -zp`` (division by a
      positive scale and rounding are monotonic).
    * ``scale = max(range, 255 * FLT_MIN) / 255``: onnxruntime uses 1.0 for an empty range (all
      values 0); any positive scale quantizes zeros to the same codes (0) and zero point (0),
      and the accumulator is then 0 whatever it is multiplied by. A nonzero range below 3e-36
      (float32's subnormal territory) would get scale FLT_MIN instead of range / 255: a
      difference far below the product's own rounding.

    ``shared``: see :func:`_range_ends`."""
    e = Emitter(ctx)
    span = e.const(255.0, hint="q_span")
    hi, lo = _range_ends(ctx, x, per_row, shared)
    spread = e.op("SUB", hi, lo, hint="range")
    spread = e.op("MAXIMUM", spread, e.const(MIN_PRODUCT_RANGE, hint="min_range"), hint="range_nz")
    scale = e.op("DIV", spread, span, hint="a_scale")
    lo_q = e.op("DIV", lo, scale, hint="min_scaled")
    neg_zp = e.op("MAXIMUM", lo_q, e.const(-255.0, hint="neg_span"), hint="neg_zp_lo")
    neg_zp = e.op("ROUND", neg_zp, dtype=np.float32, hint="neg_zp")
    r = e.op("ROUND", e.op("DIV", x, scale, hint="a_div"), shape=x.shape, dtype=np.float32)
    shifted = e.op("MINIMUM", r, e.op("ADD", neg_zp, span, hint="hi_shifted"), hint="a_hi")
    return shifted, neg_zp, scale


def exact_dense(
    ctx,
    q,
    zp,
    w_shift: np.ndarray,
    low: int = 0,
    hint: str = "exact",
    ends=None,
    shifted=False,
    negated=False,
    weights=None,
):
    """``float(sum_k (q[r, k] - zp) * w_shift[k, n])`` for float32 ``q`` holding integers on an
    8-bit lattice ``[low, low + 255]`` (``zp`` one value, or one per row: [rows, 1]) and a
    constant integer ``w_shift`` [K, N]: the exact int32 accumulator, converted to float32 once,
    as onnxruntime's MatMulInteger / DynamicQuantizeMatMul and its quantized LSTM compute it.

    How: FULLY_CONNECTED with float32 input and int8 per-channel weights of scale 1 (a hybrid
    FC; XNNPACK runs it as its dynamically quantized GEMM, int8 x int8 -> int32). Such a kernel
    re-quantizes each input row over the row's own [min(0, min), max(0, max)] range, which would
    not reproduce onnxruntime's per-tensor lattice -- so each row gets two more columns holding
    the lattice's ends ``low - zp`` and ``low + 255 - zp`` (weight 0): every row's range is then
    exactly 255 wide and contains 0, the kernel's scale is 255 / 255 = 1 and its zero point
    ``zp - low - 128`` an integer, and the int8 codes are ``q - low - 128``, exact. The int32
    sum is exact and scaled by 1 * 1. Checked bit-exact under XNNPACK (asymmetric_quantize_inputs
    ignored) and on the builtin hybrid kernel (which needs ``asymmetric_quantize_inputs``; its
    symmetric mode would quantize by max|x| / 127): tests/test_exact_dense.py.

    Weights beyond [-127, 127] (uint8 weights with a zero point reach [-255, 255]) are split
    into int8 parts ``w = w_1 + w_2 + ...`` (each clipped to +-127) stacked along K, with the
    input repeated: one FC whose int32 sum is the same exact accumulator
    (``float_carried.int8_codes``). None (nothing emitted) where a kernel could not sum the
    weight codes exactly (``float_carried.ROW_SUM_LANE_MAX``): the caller keeps a float form.
    ``ends``: the two end columns' codes (default ``(low, low + 255)``; tests plant others).
    ``shifted``: ``q`` is given as ``q - zp`` already (only the end columns are shifted);
    ``negated``: that, and ``zp`` is given as ``-zp`` (:func:`product_quantize`). ``weights``:
    the :func:`int8_weights` tensor of these codes, made once for repeated products."""
    e = Emitter(ctx)
    k, n = w_shift.shape
    rows = math.prod(q.shape) // k
    codes = int8_codes(w_shift)
    if codes is None:
        return None
    copies = (codes.shape[1] - 2) // k
    q2 = e.reshape(q, (rows, k), f"{hint}_rows")
    wide = lattice_rows(ctx, q2, zp, copies, low, hint, ends, shifted, negated)
    return int8_dense(ctx, wide, codes if weights is None else weights, hint)


def lattice_rows(
    ctx, q2, zp, copies: int, low: int, hint: str, ends=None, shifted=False, negated=False
):
    """``[q2 - zp] * copies`` followed by the lattice's two ends ``low - zp``, ``low + 255 -
    zp`` in every row: the input of :func:`int8_dense` (see :func:`exact_dense`).
    ``shifted``: q2 is ``q - zp`` already; ``negated``: ``zp`` is given as ``-zp``.

    The end columns get their row count from the data (``0 * q2[:, :2]`` plus the ends, or a
    per-row ``zp``), not from a [rows, 2] constant: a file with a dynamic batch or sequence
    (``dynamic_shapes.py``) then resizes them with the input (a constant sized by the rows was
    refused as size-dependent)."""
    e = Emitter(ctx)
    rows = q2.shape[0]
    row = e.const(np.asarray([ends or (low, low + 255)], np.float32), hint=f"{hint}_lattice_ends")
    if negated:
        row = e.op("ADD", row, zp, hint=f"{hint}_ends_shifted")
    elif shifted:
        row = e.op("SUB", row, zp, hint=f"{hint}_ends_shifted")
    if tuple(row.shape) != (rows, 2):  # one zero point: rows from the data
        begin = e.const(np.zeros(2, np.int32), np.int32, "begin")
        size = e.const(np.asarray([rows, 2], np.int32), np.int32, "size")
        first = e.op("SLICE", q2, begin, size, shape=(rows, 2), hint=f"{hint}_first")
        row = e.op("ADD", e.op("MUL", first, e.const(0.0, hint="zero")), row, hint=f"{hint}_ends")
    wide = e.concat([q2] * copies + [row], 1, hint)
    if shifted or negated:
        return wide
    return e.op("SUB", wide, zp, hint=f"{hint}_shifted")


def _exact_dense_check(node, graph):
    w = graph.values[node.inputs[2]]
    if w.const is None or len(w.shape) != 2:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: weights must be a constant 2-D integer"
    return None


@lowering(
    EXACT_DENSE,
    onnx_order,
    domain=INTERNAL,
    dtypes=FLOAT,
    dtype_inputs=(0, 1),
    const_inputs=(2,),
    tflite_ops=("RESHAPE", "CONCATENATION", "SUB", "FULLY_CONNECTED"),
    notes="internal (written by the float_carried_integers rewrite): an 8-bit lattice "
    "activation times constant integer weights, the exact int32 accumulator converted to "
    "float32 once, on LiteRT's dynamically quantized FULLY_CONNECTED (int8 weights, scale 1)",
    extra_check=_exact_dense_check,
)
def lower_exact_integer_dense(ctx):
    e = Emitter(ctx)
    w = np.asarray(ctx.const(2))
    low, shifted = int(ctx.attr("low", 0)), bool(ctx.attr("shifted", 0))
    acc = exact_dense(ctx, ctx.input(0), ctx.input(1), w, low, "exact", shifted=shifted)
    if acc is None:  # the rewrite checked int8_codes before writing the node
        raise errors.InternalError(
            errors.INTERNAL_ERROR, "weights the int8 kernel cannot sum", ctx.node.label
        )
    e.reshape(acc, ctx.output(0).shape, out=ctx.output(0))


@lowering(
    EXACT_CONV,
    channel_last(data_inputs=(0,)),
    domain=INTERNAL,
    dtypes=FLOAT,
    dtype_inputs=(0, 1),
    const_inputs=(2,),
    tflite_ops=("PAD", "SLICE", "CONCATENATION", "RESHAPE", "SUB", "FULLY_CONNECTED"),
    notes="internal (written by the float_carried_integers rewrite): a ConvInteger (2-D, "
    "group 1, stride and dilation 1) on an 8-bit lattice activation as im2col rows times the "
    "int8 filter on LiteRT's dynamically quantized FULLY_CONNECTED: the exact int32 "
    "accumulator, converted to float32 once",
)
def lower_exact_integer_conv(ctx):
    """im2col: the zero-padded (shifted: ConvInteger's zero-point padding) input, one SLICE per
    filter tap, CONCATENATIONs of at most 3 inputs (XNNPACK's limit), rows times the filter."""
    e = Emitter(ctx)
    x = ctx.input(0)  # NHWC
    n, h, w, c = x.shape
    w_shift = np.asarray(ctx.const(2), np.int64)
    o, _, kh, kw = w_shift.shape
    top, left, bottom, right = (int(v) for v in ctx.attr("pads", [0, 0, 0, 0]))
    if top or left or bottom or right:
        pads = np.asarray([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32)
        x = e.op(
            "PAD",
            x,
            e.const(pads, np.int32, "pads"),
            shape=(n, h + top + bottom, w + left + right, c),
            hint="padded",
        )
    rows = im2col_rows(e, x, (kh, kw), "rows", any_size=sizes_vary(ctx))
    codes = int8_codes(conv_rows_weights(w_shift))
    if codes is None:  # the rewrite checked int8_codes before writing the node
        raise errors.InternalError(
            errors.INTERNAL_ERROR, "weights the int8 kernel cannot sum", ctx.node.label
        )
    copies = (codes.shape[1] - 2) // (kh * kw * c)
    low, shifted = int(ctx.attr("low", 0)), bool(ctx.attr("shifted", 0))
    wide = lattice_rows(ctx, rows, ctx.input(1), copies, low, "exact", shifted=shifted)
    acc = int8_dense(ctx, wide, codes, "exact")
    e.reshape(acc, ctx.output(0).shape, out=ctx.output(0))
