"""Reshape family (Reshape, Flatten, Squeeze, Unsqueeze), Transpose, Identity/Dropout,
Concat and Pad.

Reshapes and Transposes are mostly free: the layout policies turn them into relabelings or
stored-order reshapes, and the lowering only emits a RESHAPE when the stored shape changes.
"""

from __future__ import annotations

import numpy as np

from ..policies import keep_rank, reshaping, same_as_input, transpose_relabel
from ..registry import attr_in, lowering
from . import reflect_pad
from .emit import Emitter

ANY_TYPE = ("float32", "float16", "int32", "int64", "int8", "uint8", "bool", "int16")


def _reshape_like(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    out_layout = ctx.out_layout(0)
    stored = out_layout.stored_shape(ctx.out_shape(0))
    if tuple(stored) == tuple(x.shape):
        ctx.alias_output(0, x, out_layout)
        return
    e.reshape(x, out=ctx.output(0))


# The output shape is static, so a runtime ``shape``/``axes`` input cannot change the result:
# it is not read at all.
for _op, _since in (("Reshape", 1), ("Flatten", 1), ("Squeeze", 1), ("Unsqueeze", 1)):
    lowering(
        _op,
        reshaping,
        since=_since,
        dtypes=ANY_TYPE,
        tflite_ops=("RESHAPE",),
        notes="free when the stored order allows; else one TRANSPOSE",
    )(_reshape_like)


@lowering(
    "Transpose",
    transpose_relabel,
    dtypes=ANY_TYPE,
    tflite_ops=(),
    notes="a relabeling of stored axes",
)
def lower_transpose(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    out_layout = ctx.out_layout(0)
    stored = out_layout.stored_shape(ctx.out_shape(0))
    if tuple(stored) == tuple(x.shape):
        ctx.alias_output(0, x, out_layout)
    else:
        e.reshape(x, out=ctx.output(0))


def _identity(ctx):
    ctx.alias_output(0, ctx.input(0), ctx.in_layout(0))


lowering("Identity", same_as_input, dtypes=ANY_TYPE, tflite_ops=())(_identity)


def _dropout_check(node, graph):
    if len(node.inputs) > 2 and node.inputs[2]:
        mode = graph.values[node.inputs[2]].const
        if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
            return "unsupported_attribute_value: Dropout with training_mode true"
    return None


def _dropout(ctx):
    """Inference Dropout: identity; the mask (if used) is all true, one FILL."""
    e = Emitter(ctx)
    _identity(ctx)
    if len(ctx.node.outputs) > 1 and ctx.driver.graph.used(ctx.node.outputs[1]):
        mask = ctx.output(1)
        dims = ctx.const_tensor(np.array(mask.shape, np.int32), "mask_shape")
        e.op("FILL", dims, ctx.const_tensor(np.array(True), "true"), out=mask)


lowering(
    "Dropout",
    same_as_input,
    tflite_ops=("FILL",),
    attrs=(attr_in("is_test", (None, 0, 1)),),
    notes="inference: identity; mask output is all true",
    extra_check=_dropout_check,
)(_dropout)


@lowering(
    "Concat",
    keep_rank(data_inputs=tuple(range(64))),
    dtypes=ANY_TYPE,
    tflite_ops=("CONCATENATION",),
)
def lower_concat(ctx):
    e = Emitter(ctx)
    rank = len(ctx.out_shape(0))
    axis = int(ctx.attr("axis", 1))
    axis = axis + rank if axis < 0 else axis
    lay = ctx.out_layout(0)
    inputs = [ctx.input(i) for i in range(len(ctx.node.inputs)) if ctx.has_input(i)]
    if len(inputs) == 1:
        ctx.alias_output(0, inputs[0], lay)
        return
    stored = lay.stored_axis(axis)
    if inputs[0].dtype == np.float32 and all(t.shape_signature is None for t in inputs):
        while len(inputs) > MAX_XNNPACK_CONCAT:  # groups of at most 5, then their concat
            groups = [
                inputs[i : i + MAX_XNNPACK_CONCAT]
                for i in range(0, len(inputs), MAX_XNNPACK_CONCAT)
            ]
            inputs = [_concat_group(ctx, g, stored) if len(g) > 1 else g[0] for g in groups]
    e.concat(inputs, stored, out=ctx.output(0))


# XNNPACK's CONCATENATION takes at most 5 inputs (more stayed outside the delegate: an
# unrolled 20-step RNN's output concat split its graph); a longer float32 concat is a tree.
MAX_XNNPACK_CONCAT = 5


def _concat_group(ctx, group, axis: int):
    e = Emitter(ctx)
    shape = list(group[0].shape)
    shape[axis] = sum(t.shape[axis] for t in group)
    return e.concat(group, axis, hint="concat_part")


PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_axes(ctx, rank: int) -> list[int]:
    if ctx.node.opset < 18 or not ctx.has_input(3):
        return list(range(rank))
    return [int(a) + rank if a < 0 else int(a) for a in ctx.const(3).reshape(-1)]


def _const_pads(ctx, rank: int) -> list[tuple[int, int]]:
    """Per ONNX axis (begin, end) from the ``pads`` attribute (opset < 11) or constant input."""
    if ctx.node.opset < 11:
        pads = list(ctx.attr("pads", ctx.attr("paddings")))
        return [(int(pads[a]), int(pads[a + rank])) for a in range(rank)]
    pads = [int(p) for p in ctx.const(1).reshape(-1)]
    axes = _pad_axes(ctx, rank)
    per_axis = [(0, 0)] * rank
    for k, a in enumerate(axes):
        per_axis[a] = (pads[k], pads[k + len(axes)])
    return per_axis


def _pad_value(ctx, dtype):
    """The constant fill as a TFLite tensor (runtime input allowed), or None for zero."""
    if ctx.node.opset < 11:
        value = float(ctx.attr("value", 0.0))
        return None if value == 0.0 else ctx.const_tensor(np.array(value, dtype), "value")
    if not ctx.has_input(2):
        return None
    const = ctx.const(2)
    if const is None:
        return ctx.input(2)
    if const.size == 0 or float(const.reshape(-1)[0]) == 0.0:
        return None
    return ctx.const_tensor(np.array(const.reshape(-1)[0], dtype), "value")


def _pad_check(node, graph):
    if node.opset >= 18 and len(node.inputs) > 3 and node.inputs[3]:
        if not graph.values[node.inputs[3]].is_constant:
            return "requires_constant_input: Pad axes must be constant"
    mode = node.attrs.get("mode", "constant")
    if node.opset >= 11 and not graph.values[node.inputs[1]].is_constant:
        if mode in ("edge", "wrap"):
            return f"requires_constant_input: Pad mode {mode} needs constant pads"
        shape_in = graph.values[node.inputs[0]].shape
        shape_out = graph.values[node.outputs[0]].shape
        if any(o < i for i, o in zip(shape_in, shape_out, strict=True)):
            return "requires_constant_input: cropping (negative) pads must be constant"
    return None


def _stored_crop(ctx, x, per_axis):
    """Negative pads crop: one STRIDED_SLICE over the stored axes."""
    e = Emitter(ctx)
    lay = ctx.in_layout(0)
    shape = ctx.shape(0)
    begin = [max(0, -per_axis[a][0]) for a in lay.perm]
    end = [shape[a] - max(0, -per_axis[a][1]) for a in lay.perm]
    return e.crop(x, begin, end)


def _index_table(mode: str, size: int, before: int, after: int) -> np.ndarray:
    """Source index of every output position of an edge/wrap pad along one axis."""
    pos = np.arange(-before, size + after)
    if mode == "edge":
        return np.clip(pos, 0, size - 1).astype(np.int32)
    return np.mod(pos, size).astype(np.int32)


def _gather_pad(ctx, x, per_axis, mode):
    """Edge/wrap padding has no builtin: one GATHER per padded axis with a constant table."""
    e = Emitter(ctx)
    lay = ctx.in_layout(0)
    cur = x
    padded = [a for a in lay.perm if per_axis[a] != (0, 0)]
    for n, a in enumerate(padded):
        k = lay.stored_axis(a)
        table = _index_table(mode, cur.shape[k], *per_axis[a])
        last = n == len(padded) - 1
        shape = list(cur.shape)
        shape[k] = len(table)
        out = ctx.output(0) if last else ctx.temp(x.dtype, shape, f"pad{a}")
        e.gather(cur, ctx.const_tensor(table, f"pad_index{a}"), k, out=out)
        cur = out


def _runtime_paddings(ctx):
    """ONNX pads [b0..bn-1, e0..en-1] -> stored (rank, 2) paddings with one GATHER."""
    e = Emitter(ctx)
    rank = len(ctx.shape(0))
    lay = ctx.in_layout(0)
    axes = _pad_axes(ctx, rank)
    n = len(axes)
    pads = ctx.input(1)
    table = np.full((rank, 2), 2 * n, np.int32)
    for j, a in enumerate(axes):
        table[lay.stored_axis(a)] = (j, j + n)
    if len(axes) < rank:
        zero = ctx.const_tensor(np.zeros(1, pads.dtype), "zero")
        padded = e.concat([pads, zero], 0, hint="pads_ext")
        pads = padded
    return e.gather(pads, ctx.const_tensor(table, "pads_index"), 0, hint="paddings")


@lowering(
    "Pad",
    keep_rank(),
    since=2,
    dtypes=("float32", "int32", "int64", "int8", "uint8", "bool"),
    const_inputs=(3,),
    attrs=(attr_in("mode", PAD_MODES, "constant"),),
    tflite_ops=("PAD", "PADV2", "MIRROR_PAD", "GATHER", "STRIDED_SLICE", "CONCATENATION"),
    notes="pads may be runtime for constant/reflect (non-cropping); edge/wrap use GATHER tables; "
    "negative pads crop with STRIDED_SLICE; float32 reflect by constant pads of at most 8: "
    "one-element slices + CONCATENATION (lowering/reflect_pad.py)",
    extra_check=_pad_check,
)
def lower_pad(ctx):
    e = Emitter(ctx)
    rank = len(ctx.shape(0))
    mode = ctx.attr("mode", "constant")
    lay = ctx.in_layout(0)
    x = ctx.input(0)
    if ctx.node.opset >= 11 and ctx.const(1) is None:
        paddings = _runtime_paddings(ctx)
    else:
        per_axis = _const_pads(ctx, rank)
        if any(b < 0 or end < 0 for b, end in per_axis):
            x = _stored_crop(ctx, x, per_axis)
            per_axis = [(max(b, 0), max(end, 0)) for b, end in per_axis]
        if all(p == (0, 0) for p in per_axis):
            if x is ctx.input(0):
                ctx.alias_output(0, x, lay)
            else:
                e.reshape(x, out=ctx.output(0))
            return
        if mode in ("edge", "wrap"):
            _gather_pad(ctx, x, per_axis, mode)
            return
        stored = [per_axis[a] for a in lay.perm]
        if mode == "reflect" and reflect_pad.reflect_as_slices(ctx, x, stored, ctx.output(0)):
            return  # slices + CONCATENATION (XNNPACK), not MIRROR_PAD: reflect_pad.py
        paddings = ctx.const_tensor(np.array(stored, np.int32), "paddings")
    if mode == "reflect":
        e.op("MIRROR_PAD", x, paddings, out=ctx.output(0), mode="REFLECT")
        return
    value = _pad_value(ctx, x.dtype)
    if value is None:
        e.op("PAD", x, paddings, out=ctx.output(0))
    else:
        e.op("PADV2", x, paddings, value, out=ctx.output(0))
