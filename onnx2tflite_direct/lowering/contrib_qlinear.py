"""com.microsoft QOperator ops (QLinearAdd, QLinearMul, QLinearGlobalAveragePool, QLinearConcat,
QLinearSigmoid, QLinearLeakyRelu) in the float32 file, with onnxruntime's arithmetic.

A QOperator model (quantize_static with QuantFormat.QOperator, the int8 models of the ONNX
model zoo) has these next to the default-domain QLinearConv/QLinearMatMul. The integer
variant is built from the QDQ rewrite (``quant/qoperator_expand.py``); the float32 file
computes each node on its uint8/int8 tensors as onnxruntime's MLAS kernels do, in exact
float32 steps:

* QLinearMul: ``round_half_even(((a - za) * (b - zb)) * (sa * sb / sc) + zc)``, saturated;
* QLinearGlobalAveragePool: ``round_half_even((sum(x) - zx * N) * (sx / (sy * N))) + zy``;
* QLinearConcat, QLinearSigmoid, QLinearLeakyRelu: onnxruntime's lookup tables, i.e.
  ``quantize(f(dequantize(x)))`` with ``x / scale`` rounded half to even;
* QLinearAdd: ``a * (sa / sc) + (b * (sb / sc) + (zc - (sa / sc * za + sb / sc * zb)))``.
  onnxruntime's x86 AVX2 kernel fuses these multiply-adds (FMA), its SSE2 and NEON kernels use
  fixed-point multipliers. A value within about 1e-6 of a rounding tie can therefore land one
  step apart on different CPUs, in onnxruntime itself as against this lowering.

Scales and zero points must be constant per-tensor scalars (what the quantizers write);
``channels_last`` pooling is refused.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import broadcasting, channel_last, keep_rank, onnx_order, same_as_input
from ..registry import lowering
from .contrib import MS
from .contrib_attention import _batch_problem, _mask_problem, attention_from_qkv
from .emit import Emitter
from .pool import _pool
from .qlinear import combine_digits, digit_plan, split_digits
from .quantize import QUANT_RANGES

Q8 = ("uint8", "int8")


def _scalar(ctx, i: int, dtype=np.float32):
    return np.asarray(ctx.const(i)).astype(dtype).reshape(())


def _params_check(params, quantized):
    """Constant per-tensor parameters (inputs ``params``) and 8-bit data (``quantized``)."""

    def check(node, graph):
        for i in params:
            if i < len(node.inputs) and node.inputs[i]:
                v = graph.values[node.inputs[i]]
                if not v.is_constant or np.asarray(v.const).size != 1:
                    return (
                        f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: input {i} must be a constant "
                        "per-tensor scale / zero point"
                    )
        for i in quantized:
            if i < len(node.inputs) and node.inputs[i]:
                dt = np.dtype(graph.values[node.inputs[i]].dtype).name
                if dt not in Q8:
                    return f"{errors.UNSUPPORTED_DTYPE}: input {i} has dtype {dt} (uint8/int8)"
        if node.attrs.get("channels_last", 0):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: channels_last=1"
        return None

    return check


def _as_float(ctx, i: int, hint: str):
    e = Emitter(ctx)
    return e.cast(ctx.input(i), np.float32, hint)


def _saturate(ctx, value, out, already_rounded: bool = False):
    """CAST(clamp(ROUND(value))) into ``out`` (round half to even)."""
    e = Emitter(ctx)
    lo, hi = QUANT_RANGES[np.dtype(out.dtype).name]
    if not already_rounded:
        value = e.op("ROUND", value, hint="rounded")
    value = e.op("MAXIMUM", value, e.const(float(lo), hint="qmin"), hint="lo")
    value = e.op("MINIMUM", value, e.const(float(hi), hint="qmax"), hint="hi")
    if tuple(value.shape) != tuple(out.shape):
        value = e.reshape(value, out.shape, "shaped")
    e.op("CAST", value, out=out)


def _requantize_float(ctx, real, scale: np.float32, zp: np.float32, out):
    """onnxruntime's MlasQuantizeLinear: round_half_even(real / scale) + zp, saturated."""
    e = Emitter(ctx)
    q = e.op("ROUND", e.op("DIV", real, e.const(scale), hint="scaled"), hint="q_round")
    _saturate(ctx, e.op("ADD", q, e.const(zp), hint="q_zp"), out, already_rounded=True)


_BINARY_PARAMS = (1, 2, 4, 5, 6, 7)


@lowering(
    "QLinearAdd",
    broadcasting(data_inputs=(0, 3)),
    domain=MS,
    dtypes=Q8,
    dtype_inputs=(0, 3),
    tflite_ops=("CAST", "MUL", "ADD", "ROUND", "MAXIMUM", "MINIMUM"),
    notes="onnxruntime's float formula; within one quantization step of onnxruntime at "
    "rounding ties (its own x86 FMA / SSE2 / NEON kernels differ there too)",
    extra_check=_params_check(_BINARY_PARAMS, (0, 3)),
)
def lower_qlinear_add(ctx):
    e = Emitter(ctx)
    sa, za, sb, zb = (_scalar(ctx, i) for i in (1, 2, 4, 5))
    sc, zc = _scalar(ctx, 6), _scalar(ctx, 7) if ctx.has_input(7) else np.float32(0)
    r_ac, r_bc = np.float32(sa / sc), np.float32(sb / sc)
    fixed = np.float32(zc - np.float32(np.float32(r_ac * za) + np.float32(r_bc * zb)))
    b_part = e.op("MUL", _as_float(ctx, 3, "b_f"), e.const(r_bc), hint="b_scaled")
    b_part = e.op("ADD", b_part, e.const(fixed), hint="b_fixed")
    a_part = e.op("MUL", _as_float(ctx, 0, "a_f"), e.const(r_ac), hint="a_scaled")
    _saturate(ctx, e.op("ADD", a_part, b_part, hint="sum"), ctx.output(0))


@lowering(
    "QLinearMul",
    broadcasting(data_inputs=(0, 3)),
    domain=MS,
    dtypes=Q8,
    dtype_inputs=(0, 3),
    tflite_ops=("CAST", "SUB", "MUL", "ADD", "ROUND", "MAXIMUM", "MINIMUM"),
    notes="round_half_even(((a - za) * (b - zb)) * (sa * sb / sc) + zc) like onnxruntime",
    extra_check=_params_check(_BINARY_PARAMS, (0, 3)),
)
def lower_qlinear_mul(ctx):
    e = Emitter(ctx)
    sa, za, sb, zb = (_scalar(ctx, i) for i in (1, 2, 4, 5))
    sc, zc = _scalar(ctx, 6), _scalar(ctx, 7) if ctx.has_input(7) else np.float32(0)
    ratio = np.float32(np.float32(sa * sb) / sc)
    a = e.op("SUB", _as_float(ctx, 0, "a_f"), e.const(za), hint="a_shift")
    b = e.op("SUB", _as_float(ctx, 3, "b_f"), e.const(zb), hint="b_shift")
    prod = e.op("MUL", e.op("MUL", a, b, hint="prod"), e.const(ratio), hint="scaled")
    _saturate(ctx, e.op("ADD", prod, e.const(zc), hint="with_zp"), ctx.output(0))


def _gap_check(node, graph):
    problem = _params_check((1, 2, 3, 4), (0,))(node, graph)
    if problem:
        return problem
    shape = graph.values[node.inputs[0]].shape
    size = int(np.prod(shape[2:], dtype=np.int64))
    if len(shape) < 3 or size * 255 >= 2**24:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: image size {size} (exact sums need < 65793)"
    return None


@lowering(
    "QLinearGlobalAveragePool",
    channel_last(),
    domain=MS,
    dtypes=Q8,
    tflite_ops=("CAST", "SUM", "SUB", "MUL", "ROUND", "ADD", "MAXIMUM", "MINIMUM"),
    notes="round_half_even((sum(x) - zx * N) * (sx / (sy * N))) + zy like onnxruntime; "
    "NCHW only (channels_last refused)",
    extra_check=_gap_check,
)
def lower_qlinear_global_average_pool(ctx):
    e = Emitter(ctx)
    shape = ctx.shape(0)
    n = int(np.prod(shape[2:], dtype=np.int64))
    sx, zx, sy = _scalar(ctx, 1), _scalar(ctx, 2), _scalar(ctx, 3)
    zy = _scalar(ctx, 4) if ctx.has_input(4) else np.float32(0)
    x = _as_float(ctx, 0, "x_f")  # channel-last: spatial axes 1 .. rank-2
    total = e.reduce("SUM", x, list(range(1, len(shape) - 1)), True, "sum")
    acc = e.op("SUB", total, e.const(np.float32(zx * n)), hint="acc")
    scale = np.float32(sx / np.float32(sy * np.float32(n)))
    q = e.op("ROUND", e.op("MUL", acc, e.const(scale), hint="scaled"), hint="q_round")
    _saturate(ctx, e.op("ADD", q, e.const(zy), hint="q_zp"), ctx.output(0), already_rounded=True)


def _concat_check(node, graph):
    params = (
        [0, 1]
        + [i for i in range(3, len(node.inputs), 3)]
        + [i for i in range(4, len(node.inputs), 3)]
    )
    data = tuple(range(2, len(node.inputs), 3))
    return _params_check(tuple(params), data)(node, graph)


@lowering(
    "QLinearConcat",
    keep_rank(data_inputs=tuple(range(2, 3 * 64, 3))),
    domain=MS,
    dtypes=Q8,
    dtype_inputs=(2,),
    tflite_ops=("CAST", "SUB", "MUL", "DIV", "ROUND", "ADD", "CONCATENATION"),
    notes="inputs on the output's lattice are copied, others requantized as onnxruntime's "
    "lookup table does: round_half_even((x - zx) * sx / sy) + zy",
    extra_check=_concat_check,
)
def lower_qlinear_concat(ctx):
    e = Emitter(ctx)
    sy = _scalar(ctx, 0)
    zy = _scalar(ctx, 1) if ctx.has_input(1) else np.float32(0)
    out = ctx.output(0)
    parts = []
    for k, i in enumerate(range(2, len(ctx.node.inputs), 3)):
        sx, zx = _scalar(ctx, i + 1), _scalar(ctx, i + 2)
        x = ctx.input(i)
        if sx == sy and zx == zy and np.dtype(x.dtype) == np.dtype(out.dtype):
            parts.append(x)
            continue
        real = e.op(
            "MUL",
            e.op("SUB", e.cast(x, np.float32, f"x{k}_f"), e.const(zx), hint=f"x{k}_shift"),
            e.const(sx),
            hint=f"x{k}_real",
        )
        q = ctx.temp(out.dtype, tuple(x.shape), f"x{k}_requantized")
        _requantize_float(ctx, real, sy, zy, q)
        parts.append(q)
    rank = len(ctx.shape(2))
    axis = ctx.in_layout(2).stored_axis(int(ctx.attr("axis")) % rank)
    e.concat(parts, axis, out=out)


def _table_lowering(op_type: str, fn, tflite_op: str, notes: str):
    @lowering(
        op_type,
        same_as_input,
        domain=MS,
        dtypes=Q8,
        tflite_ops=("CAST", "SUB", "MUL", tflite_op, "DIV", "ROUND", "ADD"),
        notes=notes,
        extra_check=_params_check((1, 2, 3, 4), (0,)),
    )
    def lower(ctx):
        e = Emitter(ctx)
        sx, zx, sy = _scalar(ctx, 1), _scalar(ctx, 2), _scalar(ctx, 3)
        zy = _scalar(ctx, 4) if ctx.has_input(4) else np.float32(0)
        shifted = e.op("SUB", _as_float(ctx, 0, "x_f"), e.const(zx), hint="x_shift")
        real = e.op("MUL", shifted, e.const(sx), hint="x_real")
        _requantize_float(ctx, fn(ctx, real), sy, zy, ctx.output(0))

    return lower


def _sigmoid(ctx, x):
    e = Emitter(ctx)
    return e.op("LOGISTIC", x, hint="sigmoid")


def _leaky(ctx, x):
    e = Emitter(ctx)
    alpha = float(ctx.attr("alpha", 0.01))
    return e.op("LEAKY_RELU", x, hint="leaky", alpha=alpha)


_table_lowering(
    "QLinearSigmoid",
    _sigmoid,
    "LOGISTIC",
    "quantize(sigmoid(dequantize(x))) like onnxruntime's lookup table (TFLite's LOGISTIC: a "
    "value within an ulp of a rounding tie may land one step apart)",
)
_table_lowering(
    "QLinearLeakyRelu",
    _leaky,
    "LEAKY_RELU",
    "quantize(leaky_relu(dequantize(x))) like onnxruntime's lookup table",
)


# ---- QGemm -------------------------------------------------------------------------------------


def _qgemm_plan(node, graph, k: int):
    """digit_plan for A - a_zp (its dtype's range) times the constant B - b_zp."""
    vals = graph.values
    lo, hi = QUANT_RANGES[np.dtype(vals[node.inputs[0]].dtype).name]
    za = 0
    if len(node.inputs) > 2 and node.inputs[2]:
        za = int(np.asarray(vals[node.inputs[2]].const).reshape(-1)[0])
    zb = 0
    if len(node.inputs) > 5 and node.inputs[5]:
        zb = np.asarray(vals[node.inputs[5]].const, np.int64).reshape(-1)
        zb = zb[None, :] if node.attrs.get("transB", 0) == 0 else zb[:, None]
    b = np.asarray(vals[node.inputs[3]].const, np.int64)
    b_max = int(np.max(np.abs(b - zb), initial=0))
    return digit_plan(k, max(abs(lo - za), abs(hi - za)), b_max)


def _qgemm_check(node, graph):
    vals = graph.values
    a, b = vals[node.inputs[0]], vals[node.inputs[3]]
    if a.rank != 2 or b.rank != 2:
        return f"{errors.UNSUPPORTED_RANK}: QGemm operands must be 2-D"
    if not b.is_constant:
        return f"{errors.REQUIRES_CONSTANT_INPUT}: input 3 (B) must be constant"
    n = b.shape[0] if node.attrs.get("transB", 0) else b.shape[1]
    for i in (1, 2, 7, 8):
        if i < len(node.inputs) and node.inputs[i]:
            v = vals[node.inputs[i]]
            if not v.is_constant or np.asarray(v.const).size != 1:
                return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: input {i} must be a constant scalar"
    for i in (4, 5):
        if i < len(node.inputs) and node.inputs[i]:
            v = vals[node.inputs[i]]
            if not v.is_constant or np.asarray(v.const).size not in (1, n):
                return (
                    f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: input {i} must be constant [1] or [N]"
                )
    if len(node.inputs) > 6 and node.inputs[6] and not vals[node.inputs[6]].is_constant:
        return f"{errors.REQUIRES_CONSTANT_INPUT}: input 6 (C) must be constant"
    for i in (0, 3):
        dt = np.dtype(vals[node.inputs[i]].dtype).name
        if dt not in Q8:
            return f"{errors.UNSUPPORTED_DTYPE}: input {i} has dtype {dt} (uint8/int8)"
    k = a.shape[0] if node.attrs.get("transA", 0) else a.shape[1]
    if _qgemm_plan(node, graph, k) is None:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: reduction of {k} products too long"
    return None


@lowering(
    "QGemm",
    onnx_order,
    domain=MS,
    dtypes=Q8,
    dtype_inputs=(0, 3),
    tflite_ops=("CAST", "SUB", "TRANSPOSE", "FULLY_CONNECTED", "FLOOR", "MUL", "ADD", "ROUND"),
    notes="exact int32 accumulator (+ int32 C), then float(acc) * alpha * a_scale * b_scale "
    "(/ y_scale, round half to even, + y_zp, saturated) like onnxruntime; float output "
    "without y_scale; constant B and C",
    extra_check=_qgemm_check,
)
def lower_qgemm(ctx):
    e = Emitter(ctx)
    za = _scalar(ctx, 2) if ctx.has_input(2) else np.float32(0)
    a = e.op("SUB", _as_float(ctx, 0, "a_f"), e.const(za), hint="a_shift")
    if ctx.attr("transA", 0):
        a = e.transpose(a, (1, 0), "a_t")
    b = np.asarray(ctx.const(3), np.float64)
    b = b.T if ctx.attr("transB", 0) else b  # [K, N]
    n = b.shape[1]
    zb = np.asarray(ctx.const(5), np.float64).reshape(-1) if ctx.has_input(5) else np.zeros(1)
    b_shift = (b - zb[None, :]).astype(np.float32)
    digits, bits = _qgemm_plan(ctx.node, ctx.driver.graph, b_shift.shape[0])
    weights = ctx.const_tensor(np.ascontiguousarray(b_shift.T), "b_shift")
    rows = a.shape[0]

    def fc(operand, tag):
        return e.dense(operand, weights, None, tag)

    if digits == 1:
        acc = e.cast(fc(a, "acc"), np.int32, "acc_i")
    else:
        parts = [fc(d, f"acc{i}") for i, d in enumerate(split_digits(ctx, a, digits, bits))]
        acc = combine_digits(ctx, parts, bits)
    if ctx.has_input(6):
        bias = np.asarray(ctx.const(6), np.int32)
        acc = e.op(
            "ADD",
            acc,
            ctx.const_tensor(np.broadcast_to(bias, (rows, n)).copy(), "c_i32"),
            hint="acc_c",
        )
    value = e.cast(acc, np.float32, "acc_f")
    alpha = np.float32(ctx.attr("alpha", 1.0))
    b_scale = np.asarray(ctx.const(4), np.float32).reshape(-1)
    scale = np.float32(alpha * _scalar(ctx, 1)) * b_scale
    out = ctx.output(0)
    if ctx.has_input(7):
        scale = (scale / _scalar(ctx, 7)).astype(np.float32)
        zy = _scalar(ctx, 8) if ctx.has_input(8) else np.float32(0)
        scaled = e.op("MUL", value, e.const(scale.reshape(-1)), hint="scaled")
        q = e.op("ROUND", scaled, hint="q_round")
        _saturate(ctx, e.op("ADD", q, e.const(zy), hint="q_zp"), out, already_rounded=True)
    else:
        e.op("MUL", value, e.const(scale.astype(np.float32).reshape(-1)), out=out, hint="t")


# ---- QLinearAveragePool ------------------------------------------------------------------------


class _FloatPoolView:
    """The node seen as a float AveragePool: input 0 is the dequantized tensor, output 0 a float
    temporary (``pool._pool`` does the windowing, padding and divisor corrections)."""

    def __init__(self, ctx, x_float):
        self._ctx, self._x = ctx, x_float
        real = ctx.output(0)
        self.result = ctx.temp(np.float32, tuple(real.shape), "pooled")

    def input(self, i: int, layout=None):
        return self._x if i == 0 else self._ctx.input(i, layout)

    def output(self, i: int = 0, dtype=None):
        return self.result

    def __getattr__(self, name):
        return getattr(self._ctx, name)


@lowering(
    "QLinearAveragePool",
    channel_last(),
    domain=MS,
    nonempty=True,
    ranks=(3, 4, 5),
    dtypes=Q8,
    tflite_ops=("CAST", "SUB", "MUL", "AVERAGE_POOL_2D", "PAD", "DIV", "ROUND", "ADD"),
    notes="dequantize, the AveragePool lowering in float, quantize (round half to even) like "
    "onnxruntime; a value within a float rounding of a tie may land one step apart; "
    "channels_last refused",
    extra_check=_params_check((1, 2, 3, 4), (0,)),
)
def lower_qlinear_average_pool(ctx):
    e = Emitter(ctx)
    sx, zx, sy = _scalar(ctx, 1), _scalar(ctx, 2), _scalar(ctx, 3)
    zy = _scalar(ctx, 4) if ctx.has_input(4) else np.float32(0)
    shifted = e.op("SUB", _as_float(ctx, 0, "x_f"), e.const(zx), hint="x_shift")
    view = _FloatPoolView(ctx, e.op("MUL", shifted, e.const(sx), hint="x_real"))
    _pool(view, "AVERAGE_POOL_2D")
    _requantize_float(ctx, view.result, sy, zy, ctx.output(0))


# ---- QLinearSoftmax ----------------------------------------------------------------------------

FLT_MAX = float(np.finfo(np.float32).max)


def _softmax_rows(node, graph) -> tuple[int, int] | None:
    """(rows, reduced length) of the softmax, or None when the axis is not the last one
    (opset >= 13) / the trailing block (opset < 13)."""
    shape = graph.values[node.inputs[0]].shape
    rank = len(shape)
    opset = int(node.attrs.get("opset", 13))
    axis = node.attrs.get("axis", 1 if opset < 13 else -1) % rank
    if opset >= 13 and axis != rank - 1:
        return None
    d = int(np.prod(shape[axis:], dtype=np.int64))
    return int(np.prod(shape[:axis], dtype=np.int64)), d


def _qsoftmax_check(node, graph):
    problem = _params_check((1, 2, 3, 4), ())(node, graph)
    if problem:
        return problem
    dt = np.dtype(graph.values[node.inputs[0]].dtype).name
    if dt != "uint8":
        return f"{errors.UNSUPPORTED_DTYPE}: input has dtype {dt} (uint8 only)"
    if "opset" not in node.attrs:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: the opset attribute is required"
    if _softmax_rows(node, graph) is None:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: axis={node.attrs.get('axis')} is not the last axis"
    return None


@lowering(
    "QLinearSoftmax",
    onnx_order,
    domain=MS,
    dtypes=Q8,
    tflite_ops=("CAST", "REDUCE_MAX", "SUB", "GATHER", "SUM", "MUL", "DIV", "ROUND", "ADD"),
    notes="uint8; onnxruntime's arithmetic: its exp lookup table (float32 values of "
    "exp((x - max + shift) * x_scale), computed here in numpy as it does), the row sum, "
    "round(e * floor(1 / y_scale) / sum) + y_zp; a sum rounded in another order may move a "
    "tie by one step; last axis (opset >= 13) or trailing block (opset < 13)",
    extra_check=_qsoftmax_check,
)
def lower_qlinear_softmax(ctx):
    e = Emitter(ctx)
    shape = ctx.shape(0)
    rows, d = _softmax_rows(ctx.node, ctx.driver.graph)
    x_scale = float(_scalar(ctx, 1))
    shift = max(0.0, np.log(FLT_MAX / d) - 5.0) / x_scale
    table = np.exp((np.arange(256, dtype=np.float64) - 255 + shift) * x_scale).astype(np.float32)
    y_eff = np.float32(np.floor(np.float32(1.0) / _scalar(ctx, 3)))
    zy = _scalar(ctx, 4) if ctx.has_input(4) else np.float32(0)
    x = e.reshape(_as_float(ctx, 0, "x_f"), (rows, d), "rows")
    xmax = e.reduce("REDUCE_MAX", x, [1], True, "row_max")
    index = e.op(
        "ADD",
        e.op("SUB", x, xmax, hint="x_minus_max"),
        e.const(255.0, hint="offset"),
        hint="table_index",
    )
    index = e.cast(index, np.int32, "table_index_i")
    exps = e.gather(e.const(table, hint="exp_table"), index, 0, "exp")
    total = e.reduce("SUM", exps, [1], True, "row_sum")
    scaled = e.op("MUL", exps, e.const(y_eff), hint="scaled")
    q = e.op("ROUND", e.op("DIV", scaled, total, hint="ratio"), hint="q_round")
    q = e.op("ADD", q, e.const(zy), hint="q_zp")
    out = ctx.output(0)
    q = e.reshape(q, shape, "q_shaped")
    _saturate(ctx, q, out, already_rounded=True)


# ---- QAttention ----------------------------------------------------------------------------------


def _qattention_check(node, graph):
    vals = graph.values
    x, w = vals[node.inputs[0]], vals[node.inputs[1]]
    if x.rank != 3 or w.rank != 2:
        return f"{errors.UNSUPPORTED_RANK}: input rank {x.rank}, weight rank {w.rank}"
    if not w.is_constant:
        return f"{errors.REQUIRES_CONSTANT_INPUT}: input 1 (weight) must be constant"
    for name in ("do_rotary", "past_present_share_buffer"):
        if node.attrs.get(name, 0):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: {name}={node.attrs[name]}"
    for i, allowed in ((4, (1, w.shape[1])), (7, (1, w.shape[1]))):
        if i < len(node.inputs) and node.inputs[i]:
            v = vals[node.inputs[i]]
            if not v.is_constant or np.asarray(v.const).size not in allowed:
                return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: input {i} must be constant {allowed}"
    for i in (3, 6):  # input scale / zero point: scalars, run-time ones from DynamicQuantizeLinear
        if i < len(node.inputs) and node.inputs[i]:
            if int(np.prod(vals[node.inputs[i]].shape, dtype=np.int64)) != 1:
                return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: input {i} must be a scalar"
    heads = int(node.attrs.get("num_heads", 0))
    if heads <= 0 or w.shape[1] % (3 * heads):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: num_heads={heads}"
    batch = _batch_problem(node, graph, x.shape[0], ((8, 1, lambda b: (b,)),))
    return batch or _mask_problem(node, graph, 5, x.shape[0], "mask_index")


@lowering(
    "QAttention",
    onnx_order,
    domain=MS,
    dtypes=Q8,
    dtype_inputs=(0, 1),
    tflite_ops=("CAST", "SUB", "FULLY_CONNECTED", "FLOOR", "MUL", "ADD", "BATCH_MATMUL", "SOFTMAX"),
    notes="the quantized QKV projection with an exact int32 accumulator (digit split for long "
    "K), float(acc) * input_scale * weight_scale + bias like onnxruntime, then the "
    "com.microsoft Attention composition (masks, unidirectional, past/present)",
    extra_check=_qattention_check,
)
def lower_qattention(ctx):
    e = Emitter(ctx)
    b, s, d_in = ctx.shape(0)
    w = np.asarray(ctx.const(1), np.int64)
    width = w.shape[1]
    zw = np.asarray(ctx.const(7), np.int64).reshape(-1) if ctx.has_input(7) else np.zeros(1)
    w_shift = (w - zw[None, :]).astype(np.float32)
    lo, hi = QUANT_RANGES[np.dtype(ctx.value(0).dtype).name]
    x = _as_float(ctx, 0, "x_f")
    if not ctx.has_input(6):
        a_max = max(abs(lo), abs(hi))
    elif ctx.const(6) is not None:
        zx = _scalar(ctx, 6)
        a_max = int(max(abs(lo - zx), abs(hi - zx)))
        x = e.op("SUB", x, e.const(zx), hint="x_shift")
    else:
        a_max = hi - lo
        zx = e.reshape(e.cast(ctx.input(6), np.float32, "zx_f"), (), "zx")
        x = e.op("SUB", x, zx, hint="x_shift")
    x = e.reshape(x, (b * s, d_in), "x_rows")
    digits, bits = digit_plan(d_in, a_max, int(np.max(np.abs(w_shift), initial=0)))
    weights = ctx.const_tensor(np.ascontiguousarray(w_shift.T), "w_shift")

    def fc(operand, tag):
        return e.dense(operand, weights, None, tag)

    if digits == 1:
        acc = fc(x, "acc")
    else:
        parts = [fc(d, f"acc{i}") for i, d in enumerate(split_digits(ctx, x, digits, bits))]
        acc = e.cast(combine_digits(ctx, parts, bits), np.float32, "acc_f")
    w_scale = e.const(np.asarray(ctx.const(4), np.float32).reshape(-1))
    x_scale = e.reshape(ctx.input(3), (), "x_scale")
    scale = e.op("MUL", x_scale, w_scale, hint="scale")
    qkv = e.op("MUL", acc, scale, hint="qkv_scaled")
    qkv = e.op("ADD", qkv, ctx.input(2), hint="qkv_biased")
    qkv = e.reshape(qkv, (b, s, width), "qkv")
    third = width // 3
    attention_from_qkv(ctx, qkv, (third, third, third), mask_idx=5, past_idx=8, bias_idx=None)
