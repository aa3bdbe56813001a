"""Reshape family (Reshape, Flatten, Squeeze, Unsqueeze), Transpose, Identity/Dropout,
Concat and Pad.

Reshapes and Transposes are mostly free: the layout policies turn them into relabelings or
stored-order reshapes, and the lowering only emits a RESHAPE when the stored shape changes.
"""

from __future__ import annotations

import numpy as np

from .. import layout as L
from ..policies import keep_rank, reshaping, same_as_input, transpose_relabel
from ..registry import AttrRule, attr_in, lowering

ANY_TYPE = ("float32", "float16", "int32", "int64", "int8", "uint8", "bool", "int16")


def _reshape_like(ctx):
    x = ctx.input(0)
    out_layout = ctx.out_layout(0)
    stored = out_layout.stored_shape(ctx.out_shape(0))
    if tuple(stored) == tuple(x.shape):
        ctx.alias_output(0, x, out_layout)
        return
    ctx.driver.reshape(x, ctx.output(0))


for _op, _since, _const in (
    ("Reshape", 5, (1,)),
    ("Flatten", 1, ()),
    ("Squeeze", 1, (1,)),
    ("Unsqueeze", 1, (1,)),
):
    lowering(
        _op,
        reshaping,
        since=_since,
        dtypes=ANY_TYPE,
        const_inputs=_const,
        tflite_ops=("RESHAPE",),
        notes="free when the stored order allows; else one TRANSPOSE",
    )(_reshape_like)


@lowering("Transpose", transpose_relabel, dtypes=ANY_TYPE, tflite_ops=(), notes="a relabeling of stored axes")
def lower_transpose(ctx):
    x = ctx.input(0)
    out_layout = ctx.out_layout(0)
    stored = out_layout.stored_shape(ctx.out_shape(0))
    if tuple(stored) == tuple(x.shape):
        ctx.alias_output(0, x, out_layout)
    else:
        ctx.driver.reshape(x, ctx.output(0))


def _identity(ctx):
    ctx.alias_output(0, ctx.input(0), ctx.in_layout(0))


lowering("Identity", same_as_input, dtypes=ANY_TYPE, tflite_ops=())(_identity)


def _dropout_check(node, graph):
    if len(node.outputs) > 1 and graph.used(node.outputs[1]):
        return "unsupported_attribute_value: Dropout's mask output is not supported"
    if len(node.inputs) > 2 and node.inputs[2]:
        mode = graph.values[node.inputs[2]].const
        if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
            return "unsupported_attribute_value: Dropout with training_mode true"
    return None


lowering(
    "Dropout",
    same_as_input,
    tflite_ops=(),
    attrs=(attr_in("is_test", (None, 0, 1)),),
    notes="inference: identity",
    extra_check=_dropout_check,
)(_identity)


@lowering("Concat", keep_rank(data_inputs=tuple(range(64))), dtypes=ANY_TYPE, tflite_ops=("CONCATENATION",))
def lower_concat(ctx):
    rank = len(ctx.out_shape(0))
    axis = int(ctx.attr("axis", 1))
    axis = axis + rank if axis < 0 else axis
    lay = ctx.out_layout(0)
    inputs = [ctx.input(i) for i in range(len(ctx.node.inputs)) if ctx.has_input(i)]
    if len(inputs) == 1:
        ctx.alias_output(0, inputs[0], lay)
        return
    ctx.emit(
        "CONCATENATION",
        inputs,
        [ctx.output(0)],
        axis=lay.stored_axis(axis),
        fused_activation_function="NONE",
    )


def _pads(ctx):
    rank = len(ctx.shape(0))
    if ctx.node.opset < 11:
        pads = ctx.attr("pads", ctx.attr("paddings"))
        value = float(ctx.attr("value", 0.0))
    else:
        pads = [int(p) for p in ctx.const(1).reshape(-1)]
        value = ctx.const(2) if ctx.has_input(2) else None
        value = 0.0 if value is None or value.size == 0 else float(value.reshape(-1)[0])
    axes = list(range(rank))
    if ctx.has_input(3):
        axes = [int(a) + rank if a < 0 else int(a) for a in ctx.const(3).reshape(-1)]
    per_axis = [(0, 0)] * rank
    for k, a in enumerate(axes):
        per_axis[a] = (int(pads[k]), int(pads[k + len(axes)]))
    return per_axis, value


def _pad_check(node, graph):
    if node.opset >= 11 and not graph.values[node.inputs[1]].is_constant:
        return "requires_constant_input: pads must be constant"
    return None


@lowering(
    "Pad",
    keep_rank(),
    since=2,
    dtypes=("float32", "int32", "int64"),
    const_inputs=(1, 2, 3),
    attrs=(attr_in("mode", ("constant", "reflect"), "constant"),),
    tflite_ops=("PAD", "PADV2", "MIRROR_PAD"),
    extra_check=_pad_check,
)
def lower_pad(ctx):
    per_axis, value = _pads(ctx)
    if any(b < 0 or e < 0 for b, e in per_axis):
        ctx.refuse("unsupported_attribute_value", "negative pads (cropping) are not supported")
    lay = ctx.in_layout(0)
    stored = np.array([per_axis[a] for a in lay.perm], dtype=np.int32)
    x = ctx.input(0)
    pads_t = ctx.const_tensor(stored, "paddings")
    mode = ctx.attr("mode", "constant")
    if mode == "reflect":
        ctx.emit("MIRROR_PAD", [x, pads_t], [ctx.output(0)], mode="REFLECT")
    elif value == 0.0:
        ctx.emit("PAD", [x, pads_t], [ctx.output(0)])
    else:
        fill = ctx.const_tensor(np.array(value, dtype=x.dtype), "value")
        ctx.emit("PADV2", [x, pads_t, fill], [ctx.output(0)])


__all__ = ["AttrRule", "L"]
