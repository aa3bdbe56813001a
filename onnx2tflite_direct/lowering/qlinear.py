"""MatMulInteger, ConvInteger, QLinearMatMul and QLinearConv as exact float32 integer math.

Why float32: TFLite's integer matmul/conv kernels need static quantization parameters (and
int8 weights with zero point 0), while these ONNX ops take arbitrary, often runtime, zero
points. Shifted operands ``q - zp`` are small integers, and a float32 sum of integer products
is exact while every partial sum stays below 2**24. The bound ``K * max|a - a_zp| *
max|b - b_zp|`` (plus |bias|) is computed statically, from the dtype ranges and any constant
zero point. Real reductions exceed it (K = 768 with uint8 activations and int8 weights reaches
2.5e7), so the left operand is then split into base-2**s digits, ``a = sum_k d_k 2**(s k)``
with ``|d_k| <= 2**s`` (FLOOR of an exact power-of-two scaling), s chosen so that each
digit's reduction ``K * 2**s * max|b - b_zp|`` stays below 2**24: every partial product is an
exact float32 integer, CAST to int32 and combined with exact int32 MUL/ADD. The int32
accumulator is therefore exact (bit-identical to onnxruntime's) for K up to 2**16 with int8
weights, at the cost of one matmul/conv per digit (2 for K <= 8192 with int8 weights);
beyond that the reduction is refused.

This exact path is what an integer result needs (an int32 graph output, an integer reader).
When the accumulator is only converted to float (quantize_dynamic's ``MatMulInteger -> Cast ->
Mul``), the rewrite ``float_carried_integers`` (``float_carried.py``) runs the chain as float
ops instead and these lowerings see no such node: "an int32 product that becomes float right
after needs no bit-exact float32 accumulation" (error bound in ``docs/ops.md``).

Requantization follows onnxruntime (MlasRequantizeOutput): ``multiplier = a_scale * b_scale /
y_scale`` in float32 (float16 scales: each step rounded to float16, as the ONNX reference
computes it), ``y = saturate(round_half_even(float(acc) * multiplier) + y_zp)``.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from .. import layout as L
from ..policies import channel_last, onnx_order
from ..registry import lowering
from .common import conv2d_options, padding_mode, spatial_pads
from .conv import DEPTHWISE_2D
from .dynamic_sizes import any_size_padding, refuse_sample_pads
from .elementwise import dtype_name
from .emit import Emitter
from .integer_digits import combine_digits, digit_plan, split_digits
from .quantize import QUANT_RANGES, requantize

INT8_TYPES = ("uint8", "int8")
SCALE_TYPES = ("float32", "float16")


# ---- static exactness bounds ---------------------------------------------------------------


def _values(node, graph, i):
    if i < len(node.inputs) and node.inputs[i]:
        return graph.values[node.inputs[i]]
    return None


def _max_shift(node, graph, q_idx: int, zp_idx: int) -> int:
    """Largest possible |q - zp| given q's dtype and (if constant) its zero point."""
    lo, hi = QUANT_RANGES[dtype_name(graph.values[node.inputs[q_idx]].dtype)]
    zp = _values(node, graph, zp_idx)
    if zp is None:
        return max(-lo, hi)
    if not zp.is_constant:
        return hi - lo
    z = np.asarray(zp.const, np.int64)
    return int(max(np.max(np.abs(lo - z)), np.max(np.abs(hi - z))))


def _sum_bound_problem(node, graph, k: int, pairs, bias_idx: int | None = None) -> str | None:
    if split_plan(node, graph, k, pairs, bias_idx) is None:
        (a, az), (b, bz) = pairs
        b_max = _max_shift(node, graph, b, bz)
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: a reduction of {k} products with "
            f"|b - b_zp| up to {b_max} cannot be split into exact float32 partial sums "
            "(K * |b - b_zp| >= 2**23)"
        )
    return None


def split_plan(node, graph, k: int, pairs, bias_idx: int | None = None) -> tuple[int, int] | None:
    """(digits, bits per digit) for the left operand: (1, 0) when one float32 reduction is
    exact, (n, s) when ``a`` must be split into n base-2**s digits, None when even 1-bit
    digits would overflow 2**24 (see the module docstring)."""
    (a, az), (b, bz) = pairs
    a_max, b_max = _max_shift(node, graph, a, az), _max_shift(node, graph, b, bz)
    bias = _values(node, graph, bias_idx) if bias_idx is not None else None
    bias_max = 0
    if bias is not None:
        bias_max = int(np.max(np.abs(np.asarray(bias.const, np.int64)), initial=0))
    return digit_plan(k, a_max, b_max, bias_max)


def _dtype_problem(node, graph, quantized, scales=()) -> str | None:
    for i in quantized:
        v = _values(node, graph, i)
        if v is not None and dtype_name(v.dtype) not in INT8_TYPES:
            return f"{errors.UNSUPPORTED_DTYPE}: input {i} has dtype {dtype_name(v.dtype)}"
    for i in scales:
        v = _values(node, graph, i)
        if v is not None and dtype_name(v.dtype) not in SCALE_TYPES:
            return f"{errors.UNSUPPORTED_DTYPE}: scale input {i} has dtype {dtype_name(v.dtype)}"
    return None


# ---- operands ------------------------------------------------------------------------------


def _shifted(ctx, q_idx: int, zp, layout=None, hint: str = "shifted"):
    """float32(q) - zp (zp a broadcastable float32 tensor or None)."""
    e = Emitter(ctx)
    q = e.cast(ctx.input(q_idx, layout), np.float32, f"{hint}_f")
    return q if zp is None else e.op("SUB", q, zp, hint=hint)


def _param(ctx, i: int, vector_shape, dtype=np.float32):
    """Input ``i`` as float32: a scalar if it has one element, ``vector_shape`` if 1-D, else
    as is (an N-D parameter already broadcastable in ONNX order)."""
    e = Emitter(ctx)
    if not ctx.has_input(i):
        return None
    shape = ctx.shape(i)
    size = int(np.prod(shape, dtype=np.int64))
    target = () if size == 1 else tuple(vector_shape) if len(shape) == 1 else tuple(shape)
    value = ctx.const(i)
    if value is not None:
        return ctx.const_tensor(np.asarray(value).astype(dtype).reshape(target), f"param{i}")
    t = e.cast(ctx.input(i, L.identity(len(shape))), dtype, f"param{i}_f")
    return e.reshape(t, target, f"param{i}_b")


def _f16_round(ctx, t, is_f16: bool):
    """Round a float32 value to float16 precision (exact emulation of one float16 op)."""
    e = Emitter(ctx)
    if not is_f16:
        return t
    half = e.cast(t, np.float16, "as_f16")
    return e.cast(half, np.float32, "from_f16")


def _multiplier(ctx, a_scale, b_scale, y_scale, is_f16: bool):
    """a_scale * b_scale / y_scale, evaluated like the ONNX reference / onnxruntime."""
    e = Emitter(ctx)
    prod = _f16_round(ctx, e.op("MUL", a_scale, b_scale, hint="scale_ab"), is_f16)
    return _f16_round(ctx, e.op("DIV", prod, y_scale, hint="multiplier"), is_f16)


def _is_f16(ctx, i: int) -> bool:
    return dtype_name(ctx.value(i).dtype) == "float16"


# ---- MatMulInteger / QLinearMatMul ---------------------------------------------------------


def _matmul_param_problem(node, graph, b_idx, per_tensor, per_column) -> str | None:
    """Per-tensor parameters, and per-column ones (1-D [N]) on the B side.

    A 1-D per-row A parameter is ambiguous (onnxruntime rejects it, the ONNX reference
    broadcasts it along K), so it is refused like every other shape.
    """
    n = graph.values[node.inputs[b_idx]].shape[-1]
    for i in (*per_tensor, *per_column):
        v = _values(node, graph, i)
        if v is None or int(np.prod(v.shape, dtype=np.int64)) == 1:
            continue
        if not (i in per_column and tuple(v.shape) == (n,)):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: parameter {i} shape {tuple(v.shape)}"
    return None


def _matmul_check(a, az, b, bz, per_tensor, per_column, scales=()):
    def check(node, graph):
        a_shape = graph.values[node.inputs[a]].shape
        b_shape = graph.values[node.inputs[b]].shape
        if len(a_shape) < 2 or len(b_shape) < 2:
            return f"{errors.UNSUPPORTED_RANK}: 1-D operands (ranks {len(a_shape)}, {len(b_shape)})"
        return (
            _dtype_problem(node, graph, (), scales)
            or _matmul_param_problem(node, graph, b, per_tensor, per_column)
            or _sum_bound_problem(node, graph, a_shape[-1], ((a, az), (b, bz)))
        )

    return check


def _same_rank(ctx, a, b):
    e = Emitter(ctx)
    rank = max(len(a.shape), len(b.shape))
    a = e.reshape(a, (1,) * (rank - len(a.shape)) + tuple(a.shape), "a_ranked")
    b = e.reshape(b, (1,) * (rank - len(b.shape)) + tuple(b.shape), "b_ranked")
    return a, b


def _integer_matmul(ctx, a_idx, az_idx, b_idx, bz_idx):
    """Exact matmul of (a - a_zp) and (b - b_zp), ONNX order: a float32 tensor when one float32
    reduction is exact, else the int32 sum of the per-digit reductions."""
    e = Emitter(ctx)
    n = ctx.shape(b_idx)[-1]
    a = _shifted(ctx, a_idx, _param(ctx, az_idx, ()), hint="a_shifted")
    b = _shifted(ctx, b_idx, _param(ctx, bz_idx, (n,)), hint="b_shifted")
    k = ctx.shape(a_idx)[-1]
    digits, bits = split_plan(ctx.node, ctx.driver.graph, k, ((a_idx, az_idx), (b_idx, bz_idx)))
    if digits == 1:
        return e.matmul(*_same_rank(ctx, a, b), hint="acc")
    parts = [
        e.matmul(*_same_rank(ctx, d, b), hint=f"acc_digit{i}")
        for i, d in enumerate(split_digits(ctx, a, digits, bits))
    ]
    return combine_digits(ctx, parts, bits)


def _as_float(ctx, acc):
    """The accumulator as float32 (onnxruntime converts its int32 accumulator the same way)."""
    e = Emitter(ctx)
    return e.cast(acc, np.float32, "acc_f")


@lowering(
    "MatMulInteger",
    onnx_order,
    since=10,
    dtypes=INT8_TYPES,
    dtype_inputs=(0, 1, 2, 3),
    tflite_ops=("CAST", "SUB", "BATCH_MATMUL", "RESHAPE", "FLOOR", "MUL", "ADD"),
    notes="exact (int32-identical) accumulation: float32 partial sums below 2**24, splitting a "
    "into digits when K * max|a - a_zp| * max|b - b_zp| >= 2**24"
    "; read only as float (a Cast to float32: quantize_dynamic's chains), float32 "
    "accumulation by the rewrite float_carried_integers: error vs onnxruntime <= "
    "gamma_K * sum |a - a_zp| |b - b_zp| (gamma_K = K u / (1 - K u), u = 2**-24), "
    "0 while partial sums stay below 2**24",
    extra_check=_matmul_check(0, 2, 1, 3, per_tensor=(2,), per_column=(3,)),
)
def lower_matmul_integer(ctx):
    acc = _integer_matmul(ctx, 0, 2, 1, 3)
    _write_int32(ctx, acc)


def _write_int32(ctx, acc):
    """The accumulator (float32 exact integers, or already int32) into the int32 output."""
    e = Emitter(ctx)
    out = ctx.output(0)
    if np.dtype(acc.dtype) == np.dtype(out.dtype):
        e.reshape(acc, out.shape, out=out)
        return
    e.op("CAST", e.reshape(acc, out.shape, "acc_shaped"), out=out)


@lowering(
    "QLinearMatMul",
    onnx_order,
    since=10,
    dtypes=INT8_TYPES,
    dtype_inputs=(0, 2, 3, 5, 7),
    tflite_ops=("CAST", "SUB", "BATCH_MATMUL", "MUL", "DIV", "ROUND", "ADD", "MAXIMUM", "MINIMUM"),
    notes="exact accumulation (digit split beyond 2**24); requantized like onnxruntime: "
    "round_half_even(acc * (a_scale * b_scale / y_scale)) + y_zp, saturated",
    extra_check=_matmul_check(0, 2, 3, 5, (1, 2, 6, 7), (4, 5), scales=(1, 4, 6)),
)
def lower_qlinear_matmul(ctx):
    e = Emitter(ctx)
    acc = _as_float(ctx, _integer_matmul(ctx, 0, 2, 3, 5))
    n = ctx.shape(3)[-1]
    scales = (_param(ctx, 1, ()), _param(ctx, 4, (n,)), _param(ctx, 6, ()))
    mult = _multiplier(ctx, *scales, _is_f16(ctx, 1))
    value = e.op("MUL", acc, mult, hint="rescaled")
    requantize(ctx, value, _param(ctx, 7, ()), ctx.output(0), "y")


# ---- ConvInteger / QLinearConv -------------------------------------------------------------


def _conv_check(x, xz, w, wz, scales, per_tensor, per_channel, bias=None):
    def check(node, graph):
        x_shape = graph.values[node.inputs[x]].shape
        w_shape = graph.values[node.inputs[w]].shape
        if len(x_shape) not in (3, 4) or len(w_shape) != len(x_shape):
            return f"{errors.UNSUPPORTED_RANK}: input rank {len(x_shape)} (1-D and 2-D convs only)"
        for i, allowed in [(i, (1,)) for i in per_tensor] + [
            (i, (1, w_shape[0])) for i in per_channel
        ]:
            v = _values(node, graph, i)
            if v is not None and int(np.prod(v.shape, dtype=np.int64)) not in allowed:
                return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: parameter {i} shape {v.shape}"
        k = int(np.prod(w_shape[1:], dtype=np.int64))
        return _dtype_problem(node, graph, (), scales) or _sum_bound_problem(
            node, graph, k, ((x, xz), (w, wz)), bias
        )

    return check


def _integer_conv(ctx, x_idx, xz_idx, w_idx, wz_idx, bias=None):
    """Exact float32 conv of (x - x_zp) and (w - w_zp) in channel-last layout.

    Padding after the shift pads with real zero, which is ONNX's pad-with-zero-point.
    Returns the stored [N, (1,) W(, H), O] result (1-D convs run as 2-D with unit height).
    """
    e = Emitter(ctx)
    x_shape, w_shape = ctx.shape(x_idx), ctx.shape(w_idx)
    one_d = len(x_shape) == 3
    n, c, o = x_shape[0], x_shape[1], w_shape[0]
    kernel = [int(k) for k in w_shape[2:]]
    dims = len(kernel)
    strides = [int(s) for s in ctx.attr("strides", [1] * dims)]
    dilations = [int(d) for d in ctx.attr("dilations", [1] * dims)]
    spatial = list(x_shape[2:])
    pads = spatial_pads(ctx, spatial, kernel, strides, dilations)
    group = int(ctx.attr("group", 1))
    depthwise = group == c and group > 1 and w_shape[1] == 1
    if depthwise:
        w_layout = L.Layout((1, 2, 0)) if one_d else DEPTHWISE_2D
        wz_shape = (o,)
    else:
        w_layout = L.channel_last(len(w_shape))
        wz_shape = (o,) + (1,) * (len(w_shape) - 1)
    x = _shifted(ctx, x_idx, _param(ctx, xz_idx, ()), hint="x_shifted")
    filt = _shifted(ctx, w_idx, _param(ctx, wz_idx, wz_shape), w_layout, "w_shifted")
    k = int(np.prod(w_shape[1:], dtype=np.int64))
    pairs = ((x_idx, xz_idx), (w_idx, wz_idx))
    bias_idx = 8 if bias is not None else None
    digits, bits = split_plan(ctx.node, ctx.driver.graph, k, pairs, bias_idx)
    if one_d:
        spatial, kernel, strides = [1] + spatial, [1] + kernel, [1] + strides
        dilations, pads = [1] + dilations, [(0, 0)] + pads
        filt = e.reshape(filt, (filt.shape[0], 1, *filt.shape[1:]), "filter_2d")
    mode = padding_mode(pads, spatial, kernel, strides, dilations, any_size_padding(ctx))
    if mode is None:
        refuse_sample_pads(ctx, kernel, strides, dilations)
    out_hw = (1, ctx.out_shape(0)[2]) if one_d else tuple(ctx.out_shape(0)[2:])
    options = conv2d_options(mode or "VALID", strides, dilations)
    if depthwise:
        options["depth_multiplier"] = o // c
    opcode = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"

    def conv(operand, bias_values, hint):
        if one_d:
            operand = e.reshape(operand, (n, 1, x_shape[2], c), f"{hint}_2d")
        if mode is None:
            operand = e.pad(operand, [(0, 0), pads[0], pads[1], (0, 0)])
        bias_t = ctx.const_tensor(np.asarray(bias_values, np.float32).reshape(o), "bias")
        return e.op(
            opcode,
            operand,
            filt,
            bias_t,
            shape=(n, *out_hw, o),
            dtype=np.float32,
            hint=hint,
            **options,
        )

    if digits == 1:
        return conv(x, np.zeros(o) if bias is None else bias, "acc")
    parts = [
        conv(d, np.zeros(o), f"acc_digit{i}")
        for i, d in enumerate(split_digits(ctx, x, digits, bits))
    ]
    bias_t = (
        None
        if bias is None
        else ctx.const_tensor(np.asarray(bias, np.int32).reshape(o), "bias_i32")
    )
    return combine_digits(ctx, parts, bits, bias_t)


@lowering(
    "ConvInteger",
    channel_last(data_inputs=(0, 1)),
    since=10,
    dtypes=INT8_TYPES,
    dtype_inputs=(0, 1, 2, 3),
    tflite_ops=(
        "CAST",
        "SUB",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "PAD",
        "RESHAPE",
        "TRANSPOSE",
        "FLOOR",
        "MUL",
        "ADD",
    ),
    notes="1-D/2-D; exact accumulation (digit split when the reduction can reach 2**24)"
    "; read only as float (a Cast to float32: quantize_dynamic's chains), float32 "
    "accumulation by the rewrite float_carried_integers: error vs onnxruntime <= "
    "gamma_K * sum |a - a_zp| |b - b_zp| (gamma_K = K u / (1 - K u), u = 2**-24, "
    "K = C / group * kernel size), "
    "0 while partial sums stay below 2**24",
    extra_check=_conv_check(0, 2, 1, 3, (), (2,), (3,)),
)
def lower_conv_integer(ctx):
    _write_int32(ctx, _integer_conv(ctx, 0, 2, 1, 3))


@lowering(
    "QLinearConv",
    channel_last(data_inputs=(0, 3)),
    since=10,
    dtypes=INT8_TYPES,
    dtype_inputs=(0, 2, 3, 5, 7),
    const_inputs=(8,),
    tflite_ops=(
        "CAST",
        "SUB",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "PAD",
        "MUL",
        "DIV",
        "ROUND",
        "ADD",
        "MAXIMUM",
        "MINIMUM",
    ),
    notes="1-D/2-D; constant bias; exact accumulation (digit split beyond 2**24); "
    "requantized like onnxruntime (float32 multiplier x_scale * w_scale / y_scale)",
    extra_check=_conv_check(0, 2, 3, 5, (1, 4, 6), (1, 2, 6, 7), (4, 5), 8),
)
def lower_qlinear_conv(ctx):
    e = Emitter(ctx)
    acc = _as_float(ctx, _integer_conv(ctx, 0, 2, 3, 5, ctx.const(8) if ctx.has_input(8) else None))
    o = ctx.shape(3)[0]
    scales = (_param(ctx, 1, ()), _param(ctx, 4, (o,)), _param(ctx, 6, ()))
    mult = _multiplier(ctx, *scales, _is_f16(ctx, 1))
    value = e.op("MUL", acc, mult, hint="rescaled")
    requantize(ctx, value, _param(ctx, 7, ()), ctx.output(0), "y")
