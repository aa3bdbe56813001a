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
activation range), exact in float32 in any order. One MUL by sx*sw per output channel gives
the dequantized sum, rounded once; a QuantizeLinear reading it instead multiplies the sums by
QLinearConv's fl(fl(sx*sw) / sy) (lowering/quantize.py), so exact ties stay ties. Anything
else (bound exceeded, other parameters, 1-D, depthwise over 25 taps) keeps the float form.
"""

from __future__ import annotations

import numpy as np

from .. import layout as L
from .. import tfl
from .elementwise import dtype_name
from .emit import Emitter
from .quantize import QUANT_RANGES

EXACT_FLOAT32_INTEGER = 2**24


class IntegerConv:
    """The integer operands of a lattice Conv: centred activation tensor, weights and bias as
    integer arrays (ONNX layout), and the per-output-channel scale sx*sw."""

    def __init__(self, centred, weights, bias, scale):
        self.centred = centred
        self.weights = weights
        self.bias = bias
        self.scale = scale

    def filter(self, ctx, layout) -> tfl.Tensor:
        """The int8 weights stored in the conv's filter layout, DEQUANTIZE'd with scale 1."""
        e = Emitter(ctx)
        q = ctx.const_tensor(np.ascontiguousarray(np.transpose(self.weights, layout.perm)), "w_q")
        q.quantization = tfl.Quantization(np.ones(1, np.float32), np.zeros(1, np.int64), 0)
        return e.op("DEQUANTIZE", q, dtype=np.float32, hint="w_integers")

    def bias_tensor(self, ctx) -> tfl.Tensor:
        return ctx.const_tensor(self.bias.astype(np.float32), "bias_integers")

    def rescale(self, ctx, acc: tfl.Tensor, out: tfl.Tensor) -> None:
        """acc (channel-last integer sums) times sx*sw per output channel into out."""
        e = Emitter(ctx)
        e.op(
            "MUL",
            acc,
            ctx.const_tensor(self.scale, "sum_scale"),
            out=out,
            fused_activation_function="NONE",
        )


def _producer(ctx, name):
    drv = ctx.driver
    cache = drv.__dict__.setdefault("_lattice_producers", {})
    if not cache:
        cache.update(drv.graph.producers())
    return cache.get(name)


def _dq_params(drv, node):
    """(x, scale, zero point) constants of a DequantizeLinear, or None."""
    if node is None or node.op_type != "DequantizeLinear" or node.attrs.get("block_size"):
        return None
    scale = drv.value(node.inputs[1]).const
    zp_name = node.inputs[2] if len(node.inputs) > 2 else ""
    zp = drv.value(zp_name).const if zp_name else np.zeros((), np.int64)
    if scale is None or zp is None:
        return None
    x = drv.value(node.inputs[0]).const
    return x, np.asarray(scale, np.float32), np.asarray(zp)


def integer_conv(ctx, channels: int) -> IntegerConv | None:
    """The integer form of this Conv when its operands are a QDQ lattice (module docstring)."""
    e = Emitter(ctx)
    drv = ctx.driver
    # activation: DequantizeLinear(QuantizeLinear(...)) with the same constant parameters
    dq_x = _producer(ctx, ctx.node.inputs[0])
    px = _dq_params(drv, dq_x)
    if px is None or px[0] is not None or px[1].size != 1 or px[2].size > 1:
        return None
    src = drv.tensor_of.get(dq_x.inputs[0])
    twin = drv.lattice_twins.get(id(src)) if src is not None else None
    if twin is None:
        return None
    centred, layout, key = twin
    target = ctx.in_layout(0)
    if tuple(centred.shape) != tuple(layout.stored_shape(ctx.shape(0))):
        return None
    if layout != target and (layout.inner is not None or target.inner is not None):
        return None
    q_dtype = dtype_name(drv.value(dq_x.inputs[0]).dtype)
    if q_dtype not in QUANT_RANGES or key != _lattice_key(px):
        return None
    sx, zx = px[1].reshape(()), int(px[2].reshape(()))
    lo, hi = QUANT_RANGES[q_dtype]
    reach = max(abs(lo - zx), abs(hi - zx))
    # weights: constant int8, zero point 0, per-tensor or per-output-channel scale
    pw = _dq_params(drv, _producer(ctx, ctx.node.inputs[1]))
    if pw is None or pw[0] is None or dtype_name(pw[0].dtype) != "int8" or np.any(pw[2] != 0):
        return None
    w = np.asarray(pw[0]).astype(np.int64)
    sw = pw[1].reshape(-1)
    if w.shape[0] != channels or sw.size not in (1, channels):
        return None
    dq_w = _producer(ctx, ctx.node.inputs[1])
    if sw.size > 1 and int(dq_w.attrs.get("axis", 1)) % w.ndim != 0:
        return None
    scale = (sx * np.broadcast_to(sw, (channels,))).astype(np.float32)
    bias = np.zeros(channels, np.int64)
    if ctx.has_input(2):
        pb = _dq_params(drv, _producer(ctx, ctx.node.inputs[2]))
        if pb is None or pb[0] is None or dtype_name(pb[0].dtype) != "int32":
            return None
        if np.any(pb[2] != 0) or pb[0].shape != (channels,):
            return None
        if not np.array_equal(np.broadcast_to(pb[1].reshape(-1), (channels,)), scale):
            return None
        bias = np.asarray(pb[0]).astype(np.int64)
    bound = np.abs(w).reshape(channels, -1).sum(axis=1) * reach + np.abs(bias)
    if np.any(bound >= EXACT_FLOAT32_INTEGER):
        return None
    if layout != target:  # the lattice lives in another layout (an NCHW model input)
        perm = np.array(L.transpose_perm(layout, target), np.int32)
        moved = e.op(
            "TRANSPOSE",
            centred,
            ctx.const_tensor(perm, "centred_perm"),
            shape=target.stored_shape(ctx.shape(0)),
            hint="centred",
        )
        centred = moved
    return IntegerConv(centred, np.asarray(pw[0]), bias, scale)


def _lattice_key(params) -> tuple:
    """_params_key of a per-tensor DequantizeLinear's parameters (scale, zero point)."""
    _, scale, zp = params
    zp = zp.astype(np.int64)
    return (scale.tobytes(), scale.shape, zp.tobytes(), zp.shape, None, 0)
