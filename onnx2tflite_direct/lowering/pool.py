"""MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool in channel-last layout.

Padding TFLite can express (VALID, SAME) maps directly; anything else (asymmetric pads,
ceil_mode, count_include_pad with padding) is made exact with an explicit PAD and, for
averages, a constant per-position divisor correction computed here in numpy. A max pool pads
with -inf (PADV2), or with zeros (PAD) when its input comes from a RELU-like op and every
window holds an input cell: the maximum is the same, and XNNPACK takes PAD but not PADV2
(ResNet's stem max pool after a RELU cut the graph into two delegate partitions).
"""

from __future__ import annotations

import numpy as np

from .. import layout as L
from ..policies import channel_last
from ..registry import attr_in, lowering
from .common import padding_mode, pool_window_geometry
from .dynamic_sizes import any_size_padding, refuse_sample_pads
from .emit import Emitter
from .lattice_moves import dequantized_non_negative
from .pool3d import lower_pool_nd


def _as_2d(ctx, x, shape):
    """[N, W, C] -> [N, 1, W, C] for 1-D pools."""
    return ctx.reshape(x, (shape[0], 1, shape[2], shape[1]), "as_2d")


def _pool(ctx, opcode: str):
    e = Emitter(ctx)
    shape = ctx.shape(0)
    one_d = len(shape) == 3
    spatial = list(shape[2:])
    kernel, strides, dilations, pads, full, outs = pool_window_geometry(ctx, spatial)
    if len(shape) == 5 or any(d != 1 for d in dilations):
        # No 3-D or dilated pool builtin: exact composition from strided slices.
        lower_pool_nd(ctx, "max" if opcode == "MAX_POOL_2D" else "avg")
        return
    if list(outs) != list(ctx.out_shape(0)[2:]):
        ctx.refuse(
            "unsupported_attribute_value",
            f"output size {outs} disagrees with the declared {list(ctx.out_shape(0)[2:])} "
            "(ceil_mode edge cases differ between ONNX shape inference and onnxruntime)",
        )
    x = ctx.input(0)
    if one_d:
        x = _as_2d(ctx, x, shape)
        spatial, kernel, strides = [1] + spatial, [1] + kernel, [1] + strides
        pads, full, outs = [(0, 0)] + pads, [(0, 0)] + full, [1] + outs
    n, c = shape[0], shape[1]
    final = ctx.output(0)
    out = ctx.temp(np.float32, (n, outs[0], outs[1], c), "pool2d") if one_d else final
    count_include_pad = bool(ctx.attr("count_include_pad", 0))
    mode = None
    if full == pads:
        mode = padding_mode(pads, spatial, kernel, strides, [1, 1], any_size_padding(ctx))
        if opcode == "AVERAGE_POOL_2D" and mode == "SAME" and count_include_pad:
            mode = None  # TFLite SAME averages only valid cells
    if mode is None:  # (a 1-D pool's kernel and strides carry a unit height by now)
        refuse_sample_pads(ctx, kernel[-len(dilations) :], strides[-len(dilations) :], dilations)
    options = dict(
        stride_h=strides[0],
        stride_w=strides[1],
        filter_height=kernel[0],
        filter_width=kernel[1],
        fused_activation_function="NONE",
    )
    if mode is not None:
        e.op(opcode, x, out=out, padding=mode, **options)
    elif opcode == "MAX_POOL_2D":
        fill = (
            0.0
            if _non_negative(ctx, x) and _windows_overlap(spatial, full, kernel, strides, outs)
            else float("-inf")
        )
        x = e.pad(x, [(0, 0), full[0], full[1], (0, 0)], value=fill)
        e.op(opcode, x, out=out, padding="VALID", **options)
    else:
        x = e.pad(x, [(0, 0), full[0], full[1], (0, 0)])
        pooled = e.op(
            opcode,
            x,
            shape=out.shape,
            dtype=np.float32,
            hint="avg_padded",
            padding="VALID",
            **options,
        )
        fix = _average_correction(spatial, kernel, strides, pads, outs, count_include_pad)
        fix_t = ctx.const_tensor(fix.reshape(1, outs[0], outs[1], 1), "divisor_fix")
        e.op("MUL", pooled, fix_t, out=out)
    if one_d:
        e.reshape(out, out=final)


# TFLite ops whose float output is never negative (a fused RELU/RELU6 counts as well).
NON_NEGATIVE_OPS = {"RELU", "RELU6", "RELU_0_TO_1", "LOGISTIC"}


# TFLite ops whose output is >= 0 wherever the listed data inputs are (None: every input):
# data movement, maxima, zero padding and concatenation. GoogLeNet's ceil-mode max pools read
# an inception block's Concat of RELU branches (or another max pool of one).
NON_NEGATIVE_KEEPING = {
    "CONCATENATION": None,
    "MAX_POOL_2D": (0,),
    "RESHAPE": (0,),
    "TRANSPOSE": (0,),
    "SQUEEZE": (0,),
    "EXPAND_DIMS": (0,),
    "STRIDED_SLICE": (0,),
    "SLICE": (0,),
    "PAD": (0,),
}


def _non_negative(ctx, x) -> bool:
    """Is ``x`` >= 0 by construction: produced by an op whose output is >= 0, or by one that
    keeps its non-negative inputs so (NON_NEGATIVE_KEEPING, followed back over the ops
    emitted so far), or dequantized from a lattice that starts at 0 (a ReLU's Q/DQ pair:
    lattice_moves.py)?"""
    if dequantized_non_negative(ctx, ctx.node.inputs[0]):
        return True
    producer = {id(t): op for op in ctx.driver.sub.operators for t in op.outputs}

    def non_negative(t, depth: int) -> bool:
        if t is None or depth > 64:
            return False
        if t.data is not None:  # (a float constant: integer codes are not the values)
            return t.dtype.kind == "f" and t.quantization is None and bool(np.all(t.data >= 0))
        op = producer.get(id(t))
        if op is None:
            return False
        if op.opcode in NON_NEGATIVE_OPS or op.options.get("fused_activation_function") in (
            "RELU",
            "RELU6",
        ):
            return True
        if op.opcode not in NON_NEGATIVE_KEEPING or t.dtype.kind != "f":
            return False
        slots = NON_NEGATIVE_KEEPING[op.opcode] or range(len(op.inputs))
        return all(non_negative(op.inputs[i], depth + 1) for i in slots)

    return non_negative(x, 0)


def _windows_overlap(spatial, full, kernel, strides, outs) -> bool:
    """Does every pooling window hold at least one input cell (not only padding)?"""
    for n, (pb, _), k, s, o in zip(spatial, full, kernel, strides, outs, strict=False):
        start = np.arange(o) * s - pb
        if np.any(start + k <= 0) or np.any(start >= n):
            return False
    return True


def _average_correction(spatial, kernel, strides, pads, outs, count_include_pad) -> np.ndarray:
    """kernel area / ONNX divisor, per output position (the padded VALID pool divides by area)."""
    per_axis = []
    for n, k, s, (pb, pe), o in zip(spatial, kernel, strides, pads, outs, strict=False):
        start = np.arange(o) * s - pb
        end = start + k
        lo, hi = (-pb, n + pe) if count_include_pad else (0, n)
        per_axis.append(np.minimum(end, hi) - np.maximum(start, lo))
    count = per_axis[0][:, None] * per_axis[1][None, :]
    return (kernel[0] * kernel[1] / count).astype(np.float32)


POOL_ATTRS = (attr_in("storage_order", (0,), 0),)


def _single_output(node, graph):
    if len(node.outputs) > 1 and graph.used(node.outputs[1]):
        return "unsupported_attribute_value: MaxPool's Indices output has no TFLite builtin"
    return None


@lowering(
    "MaxPool",
    channel_last(),
    nonempty=True,
    ranks=(3, 4, 5),
    attrs=POOL_ATTRS,
    tflite_ops=("MAX_POOL_2D", "PADV2", "PAD"),
    extra_check=_single_output,
)
def lower_maxpool(ctx):
    _pool(ctx, "MAX_POOL_2D")


@lowering(
    "AveragePool",
    channel_last(),
    nonempty=True,
    ranks=(3, 4, 5),
    tflite_ops=("AVERAGE_POOL_2D", "PAD", "MUL"),
)
def lower_avgpool(ctx):
    _pool(ctx, "AVERAGE_POOL_2D")


def _global(ctx, opcode: str):
    e = Emitter(ctx)
    rank = len(ctx.shape(0))
    lay = L.channel_last(rank)
    axes = np.array([lay.stored_axis(a) for a in range(2, rank)], dtype=np.int32)
    e.op(opcode, ctx.input(0), ctx.const_tensor(axes, "axes"), out=ctx.output(0), keep_dims=True)


@lowering("GlobalAveragePool", channel_last(), nonempty=True, ranks=(3, 4, 5), tflite_ops=("MEAN",))
def lower_gap(ctx):
    _global(ctx, "MEAN")


@lowering(
    "GlobalMaxPool", channel_last(), nonempty=True, ranks=(3, 4, 5), tflite_ops=("REDUCE_MAX",)
)
def lower_gmp(ctx):
    _global(ctx, "REDUCE_MAX")
