"""A QDQ Conv computed on integers, as onnxruntime's QLinearConv does (issue 17).

Conv(DequantizeLinear(activation on a Q->DQ lattice), DequantizeLinear(int8 weights, zero
point 0), DequantizeLinear(int32 bias, scale sx*sw)) computed as a float conv sums float32
products in the kernel's own order; where the exact value lies within one float32 step of a
rounding tie of the QuantizeLinear that follows, XNNPACK and onnxruntime land on different
sides, one quantum apart, and it cascades (tv_mobilenet_v3_small_ts_qstatic: 26 dB).

Here the conv reads the centred activation integers (x_q - x_zp, kept by the QuantizeLinear
lowering as ``lattice_twins``), the weight integers (int8 behind a DEQUANTIZE of scale 1, so
the file keeps int8 weights and XNNPACK static filters) and the bias integers: every product
and partial sum is an integer below 2**24 (bounded per output channel from the weights and the
activation range), exact in float32 in any order. Where the bound reaches 2**24 (resnet18's
3x3 convs over 256-512 channels: K = 2304-4608, up to 3.8e7), the constant weights are split
into base-2**bits digits (integer_digits.constant_digits), one exact conv per digit, combined
into onnxruntime's float(int32 sum). One MUL by sx*sw per output channel gives the dequantized
sum, rounded once; a QuantizeLinear reading it instead multiplies the sums by QLinearConv's
fl(fl(sx*sw) / sy) (lowering/quantize.py), so exact ties stay ties. Anything else (other
parameters, 1-D, depthwise over 25 taps) keeps the float form.

Where a sum bound reaches 2**24 with uint8 activations after a ReLU (0..255), the conv reads
x - 127 instead (reach 128, 127 * sum(w) moved into the bias) when that saves weight digits or
high-digit channels; the high digit is reduced only over the channels whose bound needs it.

MatMul/Gemm take the same route (:func:`integer_dense`: FULLY_CONNECTED over the centred
integers and the int8 weight digits, as QLinearMatMul / QGemm), and so does a MatMul of two
quantized activations (:func:`integer_product`: BATCH_MATMUL over both integer twins, the
run-time operand split into digits by integer_digits.split_digits past the bound).
"""

from __future__ import annotations

import numpy as np

from .. import layout as L
from .. import tfl
from . import lattice_int8
from .common import conv2d_options, padding_mode
from .dynamic_sizes import any_size_padding, refuse_sample_pads
from .elementwise import dtype_name
from .emit import Emitter
from .integer_digits import combine_digits, constant_digits, digit_plan, split_digits, split_rows
from .lattice_moves import dq_params as _dq_params
from .lattice_moves import lattice_key as _lattice_key
from .lattice_moves import producer as _producer
from .quantize import QUANT_RANGES

# Switches (benchmarks/bench_qdq_lattice.py turns them off to time each form): weights split
# into digits past 2**24 (off: such a conv keeps the float form), the x - middle shift, the
# high digit over only the channels that need it, MatMul/Gemm on the integers (constant
# weights; two activations).
WEIGHT_DIGITS = True
SHIFTED_INPUT = True
HIGH_DIGIT_SUBSET = True
INTEGER_DENSE = True
INTEGER_PRODUCT = True
INTEGER_RESIZE = True


def _plan(rows, reach, bias):
    """constant_digits, or None when it needs digits and WEIGHT_DIGITS is off."""
    plan = constant_digits(rows, reach, bias)
    return plan if plan is None or WEIGHT_DIGITS or len(plan[0]) == 1 else None


class IntegerConv:
    """The integer operands of a lattice Conv: centred activation tensor, the weights as
    base-2**bits digits (one array when one exact reduction suffices; ONNX layout), the bias
    integers and the per-output-channel scale sx*sw."""

    def __init__(self, centred, digits, bits, bias, scale, offset: int = 0):
        self.centred = centred
        self.digits = digits
        self.bits = bits
        self.bias = bias  # includes offset * sum(w) per channel
        self.scale = scale
        self.offset = offset  # the conv reads centred - offset (see integer_conv)

    def filter(self, ctx, layout, k: int = 0, rows=None) -> tfl.Tensor:
        """Weight digit k (only ``rows`` if given) stored int8 in the conv's filter layout,
        DEQUANTIZE'd with scale 1."""
        e = Emitter(ctx)
        w = np.asarray(self.digits[k] if rows is None else self.digits[k][rows], np.int8)
        q = ctx.const_tensor(np.ascontiguousarray(np.transpose(w, layout.perm)), "w_q")
        q.quantization = tfl.Quantization(np.ones(1, np.float32), np.zeros(1, np.int64), 0)
        out = e.op("DEQUANTIZE", q, dtype=np.float32, hint="w_integers")
        return out

    def accumulate(self, ctx, layout, conv, subset: bool = True) -> tfl.Tensor:
        """The integer sums as float32, as onnxruntime's float(int32 accumulator): one
        ``conv(filter, bias, hint, channels)`` per weight digit, each exact. Two digits
        combine as lo + hi * 2**bits (the MUL is exact, the ADD rounds once, as the int32 ->
        float conversion does); when only some channels need the high digit (``subset``: not
        for a depthwise conv, whose channels are its inputs) it reduces those alone and one
        FULLY_CONNECTED with a 0 / 2**bits matrix puts them in place (one nonzero product
        per output: exact). More digits combine through int32 (combine_digits)."""
        e = Emitter(ctx)
        channels = len(self.bias)
        bias = ctx.const_tensor(self.bias.astype(np.float32), "bias_integers")
        low = conv(self.filter(ctx, layout), bias, "integer_sum0", channels)
        if len(self.digits) == 1:
            return low
        if len(self.digits) == 2:
            live = np.flatnonzero(np.any(self.digits[1].reshape(channels, -1) != 0, axis=1))
            if not (subset and HIGH_DIGIT_SUBSET) or live.size == channels:
                live = np.arange(channels)
            zeros = ctx.const_tensor(np.zeros(live.size, np.float32), "bias_zero")
            high = conv(self.filter(ctx, layout, 1, live), zeros, "integer_sum1", live.size)
            if live.size == channels:
                step = e.const(float(1 << self.bits))
                high = e.op("MUL", high, step, hint="high_sum")
            else:
                place = np.zeros((channels, live.size), np.float32)
                place[live, np.arange(live.size)] = float(1 << self.bits)
                high = e.op(
                    "FULLY_CONNECTED",
                    high,
                    ctx.const_tensor(place, "high_place"),
                    None,
                    shape=(*high.shape[:-1], channels),
                    dtype=np.float32,
                    hint="high_sum",
                    fused_activation_function="NONE",
                    keep_num_dims=True,
                )
            return e.op("ADD", low, high, hint="integer_sum")
        zeros = ctx.const_tensor(np.zeros(channels, np.float32), "bias_zero")
        parts = [low] + [
            conv(self.filter(ctx, layout, k), zeros, f"integer_sum{k}", channels)
            for k in range(1, len(self.digits))
        ]
        return e.cast(combine_digits(ctx, parts, self.bits), np.float32, "integer_sum")

    def emit_2d(self, ctx, w_layout, geometry, depthwise: bool) -> None:
        """The 2-D (depthwise) conv on the integers, then one MUL by sx*sw per output channel;
        the sums are registered for a QuantizeLinear reading the output. Zero padding is the
        centred value of the real zero; with an offset the input is padded first, then
        shifted (its padding must stay the real zero)."""
        e = Emitter(ctx)
        kernel, strides, dilations, pads = geometry
        x_shape, o = ctx.shape(0), ctx.shape(1)[0]
        n, c = x_shape[0], x_shape[1]
        x = self.centred
        out_hw = tuple(ctx.out_shape(0)[2:])  # 2-D only: a 1-D view would reshape the filter
        acc = None if depthwise else lattice_int8.conv_sums(ctx, self, geometry, out_hw)
        if acc is not None:  # one exact int8 GEMM where it costs less (lattice_int8.py)
            self.rescale(ctx, acc, ctx.output(0))
            ctx.driver.integer_sums[id(ctx.output(0))] = (acc, self.scale, ctx.out_layout(0))
            return
        spatial = list(x_shape[2:])
        mode = padding_mode(pads, spatial, kernel, strides, dilations, any_size_padding(ctx))
        if mode is None or (self.offset and mode != "VALID"):
            refuse_sample_pads(ctx, kernel, strides, dilations)
            x = e.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
            mode = "VALID"
        if self.offset:
            x = e.op("SUB", x, e.const(float(self.offset)), hint="shifted")
        options = conv2d_options(mode, strides, dilations)
        if depthwise:
            options["depth_multiplier"] = o // c
        opcode = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"

        def conv(filt, bias, hint, channels):  # one exact reduction per weight digit
            return e.op(
                opcode,
                x,
                filt,
                bias,
                shape=(n, *out_hw, channels),
                dtype=np.float32,
                hint=hint,
                **options,
            )

        acc = self.accumulate(ctx, w_layout, conv, subset=not depthwise)
        final = ctx.output(0)
        self.rescale(ctx, acc, final)
        ctx.driver.integer_sums[id(final)] = (acc, self.scale, ctx.out_layout(0))

    def rescale(self, ctx, acc: tfl.Tensor, out: tfl.Tensor) -> None:
        """acc (channel-last integer sums) times sx*sw per output channel into out."""
        e = Emitter(ctx)
        e.op("MUL", acc, ctx.const_tensor(self.scale, "sum_scale"), out=out)


def _activation(ctx, idx: int):
    """(centred integers, their layout, sx, their range (lo, hi)) of input ``idx`` when it is
    DequantizeLinear(QuantizeLinear(...)) on one per-tensor constant lattice, else None."""
    drv = ctx.driver
    dq_x = _producer(ctx, ctx.node.inputs[idx])
    px = _dq_params(drv, dq_x)
    if px is None or px[0] is not None or px[1].size != 1 or px[2].size > 1:
        return None
    src = drv.tensor_of.get(dq_x.inputs[0])
    twin = drv.lattice_twins.get(id(src)) if src is not None else None
    if twin is None:
        return None
    centred, layout, key = twin
    if tuple(centred.shape) != tuple(layout.stored_shape(ctx.shape(idx))):
        return None
    q_dtype = dtype_name(drv.value(dq_x.inputs[0]).dtype)
    if q_dtype not in QUANT_RANGES or key != _lattice_key(px):
        return None
    sx, zx = px[1].reshape(()), int(px[2].reshape(()))
    lo, hi = QUANT_RANGES[q_dtype]
    return centred, layout, sx, (lo - zx, hi - zx)


def _weights(ctx, idx: int, channel_axis: int):
    """(int64 weights, per-channel scale) of input ``idx`` = DequantizeLinear(constant int8,
    zero point 0) with a per-tensor scale or one along ``channel_axis``, else None."""
    dq_w = _producer(ctx, ctx.node.inputs[idx])
    pw = _dq_params(ctx.driver, dq_w)
    if pw is None or pw[0] is None or dtype_name(pw[0].dtype) != "int8" or np.any(pw[2] != 0):
        return None
    w = np.asarray(pw[0]).astype(np.int64)
    sw = pw[1].reshape(-1)
    channels = w.shape[channel_axis]
    if sw.size not in (1, channels):
        return None
    if sw.size > 1 and int(dq_w.attrs.get("axis", 1)) % w.ndim != channel_axis % w.ndim:
        return None
    return w, np.broadcast_to(sw, (channels,))


def _bias(ctx, idx: int, scale: np.ndarray):
    """The int32 bias integers of input ``idx`` (DequantizeLinear of scale sx*sw, zero point
    0), zeros without one, None when it is something else."""
    channels = scale.size
    if not ctx.has_input(idx):
        return np.zeros(channels, np.int64)
    pb = _dq_params(ctx.driver, _producer(ctx, ctx.node.inputs[idx]))
    if pb is None or pb[0] is None or dtype_name(pb[0].dtype) != "int32":
        return None
    if np.any(pb[2] != 0) or pb[0].shape != (channels,):
        return None
    if not np.array_equal(np.broadcast_to(pb[1].reshape(-1), (channels,)), scale):
        return None
    return np.asarray(pb[0]).astype(np.int64)


def _relaid(ctx, centred, layout, target, shape):
    """The centred integers stored as ``target`` (one TRANSPOSE when the lattice lives in
    another layout than its reader wants)."""
    e = Emitter(ctx)
    if layout == target:
        return centred
    perm = np.array(L.transpose_perm(layout, target), np.int32)
    moved = e.op(
        "TRANSPOSE",
        centred,
        ctx.const_tensor(perm, "centred_perm"),
        shape=target.stored_shape(shape),
        dtype=np.float32,
        hint="centred",
    )
    return moved


def integer_conv(ctx, channels: int) -> IntegerConv | None:
    """The integer form of this Conv when its operands are a QDQ lattice (module docstring)."""
    act = _activation(ctx, 0)
    if act is None:
        return None
    centred, layout, sx, (lo, hi) = act
    target = ctx.in_layout(0)
    if layout != target and (layout.inner is not None or target.inner is not None):
        return None
    weights = _weights(ctx, 1, 0)
    if weights is None or weights[0].shape[0] != channels:
        return None
    w, sw = weights
    scale = (sx * sw).astype(np.float32)
    bias = _bias(ctx, 2, scale)
    if bias is None:
        return None
    rows = w.reshape(channels, -1)
    offset, plan = 0, _plan(rows, max(-lo, hi), np.abs(bias))
    middle = (lo + hi) // 2
    if (plan is None or len(plan[0]) > 1) and middle and SHIFTED_INPUT:
        # Read x - middle (reach halved: uint8 after a ReLU spans 0..255), with middle *
        # sum(w) moved into the bias: fewer digits, or fewer channels needing the high one.
        shifted = bias + middle * rows.sum(axis=1)
        alt = _plan(rows, max(middle - lo, hi - middle), np.abs(shifted))
        if alt is not None and (plan is None or _cost(alt) < _cost(plan)):
            offset, plan, bias = middle, alt, shifted
    if plan is None:
        return None
    centred = _relaid(ctx, centred, layout, target, ctx.shape(0))  # e.g. an NCHW model input
    digits, bits = plan
    shape = w.shape
    lattice = IntegerConv(centred, [d.reshape(shape) for d in digits], bits, bias, scale, offset)
    lattice.span = (lo, hi)  # the unshifted integers' range (lattice_int8.conv_sums)
    return lattice


def _cost(plan) -> tuple:
    """Digits, then row reductions beyond the first digit (integer_digits.split_rows)."""
    return len(plan[0]), split_rows(plan[0])


def integer_dense(ctx) -> bool:
    """MatMul(A, B) / Gemm(A, B, C) with A on a per-tensor Q/DQ lattice and B constant int8
    weights (per-tensor or per-output-column scale), C an int32 bias of scale sx*sw: computed
    as onnxruntime's QLinearMatMul / QGemm do, the exact integer sums (FULLY_CONNECTED over
    the centred integers and the int8 weight digits), then one MUL by sx*sw per column; a
    QuantizeLinear reading the result multiplies the sums by fl(fl(sx*sw) / sy). Returns
    False (nothing emitted) for any other form."""
    e = Emitter(ctx)
    node = ctx.node
    if not INTEGER_DENSE:
        return False
    if node.op_type == "Gemm":
        attrs = node.attrs
        if attrs.get("transA", 0) or float(attrs.get("alpha", 1.0)) != 1.0:
            return False
        if ctx.has_input(2) and float(attrs.get("beta", 1.0)) != 1.0:
            return False
        trans_b = bool(attrs.get("transB", 0))
    elif len(ctx.shape(0)) < 2 or len(ctx.shape(1)) != 2:
        return False
    else:
        trans_b = False
    act = _activation(ctx, 0)
    if act is None or not act[1].is_identity or not ctx.in_layout(0).is_identity:
        return False
    if not ctx.out_layout(0).is_identity:
        return False
    centred, _, sx, (lo, hi) = act
    reach = max(-lo, hi)
    weights = _weights(ctx, 1, 0 if trans_b else 1)
    if weights is None:
        return False
    w, sw = weights
    rows = w if trans_b else w.T  # [N, K]
    scale = (sx * sw).astype(np.float32)
    bias = _bias(ctx, 2, scale) if node.op_type == "Gemm" else np.zeros(scale.size, np.int64)
    if bias is None:
        return False
    plan = _plan(rows, reach, np.abs(bias))
    if plan is None:
        return False
    digits, bits = plan
    lattice = IntegerConv(centred, digits, bits, bias, scale)
    final = ctx.output(0)
    keep = len(ctx.shape(0)) > 2

    def dense(filt, bias_t, hint, channels):  # one exact reduction per weight digit
        acc = e.op(
            "FULLY_CONNECTED",
            centred,
            filt,
            bias_t,
            shape=(*final.shape[:-1], channels),
            dtype=np.float32,
            hint=hint,
            fused_activation_function="NONE",
            keep_num_dims=keep,
        )
        return acc

    acc = lattice_int8.dense_sums(ctx, lattice, (lo, hi), (*final.shape[:-1], scale.size))
    if acc is None:  # the float form (lattice_int8.py: int8 GEMM where it costs less)
        acc = lattice.accumulate(ctx, L.identity(2), dense)
    lattice.rescale(ctx, acc, final)
    ctx.driver.integer_sums[id(final)] = (acc, scale, ctx.out_layout(0))
    return True


def integer_product(ctx) -> bool:
    """MatMul(A, B) of two activations on per-tensor Q/DQ lattices (attention's Q K^T and
    P V in a QDQ transformer), computed as onnxruntime's QLinearMatMul does: BATCH_MATMUL over
    the centred integers, exact in any summation order while K * reach_a * reach_b < 2**24
    (else A is split into run-time digits, integer_digits.split_digits, and the per-digit
    products combined in int32), then one MUL by sa * sb. B may arrive stored transposed
    (read through adj_y). Returns False (nothing emitted) for any other form."""
    e = Emitter(ctx)
    if not INTEGER_PRODUCT or ctx.node.op_type != "MatMul":
        return False
    a_shape, b_shape = ctx.shape(0), ctx.shape(1)
    rank = len(ctx.out_shape(0))
    if len(a_shape) < 3 or len(a_shape) != len(b_shape) or not ctx.out_layout(0).is_identity:
        return False
    a, b = _activation(ctx, 0), _activation(ctx, 1)
    if a is None or b is None or any(t[1].inner is not None for t in (a, b)):
        return False
    plan = digit_plan(a_shape[-1], max(-a[3][0], a[3][1]), max(-b[3][0], b[3][1]))
    if plan is None:
        return False
    turned = L.Layout((*range(rank - 2), rank - 1, rank - 2))
    adj_y = b[1] == turned  # B stored transposed: read through adj_y, as the float form does
    a_int = _relaid(ctx, a[0], a[1], L.identity(rank), a_shape)
    b_int = _relaid(ctx, b[0], b[1], turned if adj_y else L.identity(rank), b_shape)
    if plan[0] == 1:
        acc = e.matmul(a_int, b_int, adj_y=adj_y, hint="integer_sum")
    else:
        digits, bits = plan
        parts = [
            e.matmul(d, b_int, adj_y=adj_y, hint=f"integer_sum{k}")
            for k, d in enumerate(split_digits(ctx, a_int, digits, bits))
        ]
        acc = e.cast(combine_digits(ctx, parts, bits), np.float32, "integer_sum")
    rescale_integer_sums(ctx, acc, a[2] * b[2])
    return True


def integer_resize_operand(ctx, matrices):
    """(centred integers stored as the Resize reads them, sx) when this linear Resize reads a
    per-tensor Q/DQ lattice and every tap weight of ``matrices`` ([out, in] per resized axis)
    is a multiple of 2**-8 (2x, 4x, 8x half-pixel upsampling: 1/4, 3/4, 1/16 ...): the float32
    resize of the integers is then exact in any order (|q| * 2**-16 granularity < 2**24), so
    the QuantizeLinear after it rounds the exact weighted sum (quantize_static's LRASPP: 3876 of
    100352 upsampled values are exact ties, which a resize of the dequantized floats misses by
    an ulp either way: onnxruntime 1531 of them, XNNPACK 1862). None otherwise."""
    if not INTEGER_RESIZE:
        return None
    act = _activation(ctx, 0)
    target = ctx.in_layout(0)
    if act is None or act[1].inner is not None or target.inner is not None:
        return None
    if not all(np.all(np.mod(np.asarray(m, np.float64) * 256, 1) == 0) for m in matrices):
        return None
    return _relaid(ctx, act[0], act[1], target, ctx.shape(0)), act[2]


def rescale_integer_sums(ctx, acc, scale) -> None:
    """The output ``acc`` * scale (one MUL), registered so a QuantizeLinear reads the sums."""
    e = Emitter(ctx)
    scale = np.asarray(scale, np.float32).reshape(1)
    final = ctx.output(0)
    e.op("MUL", acc, ctx.const_tensor(scale, "sum_scale"), out=final)
    ctx.driver.integer_sums[id(final)] = (acc, scale, ctx.out_layout(0))
