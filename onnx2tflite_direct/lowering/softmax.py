"""Softmax, LogSoftmax and Hardmax with every opset's semantics, in any stored layout.

Opsets < 13 coerce the input to 2-D at ``axis``: the op normalizes over *all* axes from
``axis`` on; opset 13+ over the one axis. For Softmax/LogSoftmax the normalized set is all
that matters (the result does not depend on the order inside it), so:

* when the normalized axes are the trailing stored axes, one SOFTMAX/LOG_SOFTMAX does it
  (after a RESHAPE to 2-D when there are several);
* otherwise the op is composed from reductions over the stored axes (max, subtract, exp, sum),
  as onnxruntime computes it, instead of transposing the data there and back.

Hardmax is ARG_MAX + ONE_HOT; its index does depend on element order, so the coerced 2-D form
needs the flattened axes in ONNX order.
"""

from __future__ import annotations

import numpy as np

from ..policies import PASSTHROUGH, onnx_order
from ..registry import lowering
from .axis_layouts import XNNPACK_RANKS
from .emit import Emitter


def _norm_axes(node, graph) -> tuple[int, ...]:
    rank = len(graph.values[node.inputs[0]].shape)
    axis = int(node.attrs.get("axis", 1 if node.opset < 13 else -1))
    axis = axis + rank if axis < 0 else axis
    return (axis,) if node.opset >= 13 else tuple(range(axis, rank))


def _axis_in_range(node, graph) -> str | None:
    """ONNX allows -rank <= axis < rank (<= rank before opset 13, where an axis equal to the
    rank coerces to an empty trailing block); anything else is a malformed attribute."""
    rank = len(graph.values[node.inputs[0]].shape)
    axis = int(node.attrs.get("axis", 1 if node.opset < 13 else -1))
    top = rank if node.opset < 13 else rank - 1
    if not -rank <= axis <= top:
        return f"unsupported_attribute_value: axis={axis} is outside [{-rank}, {top}]"
    return None


def _any_layout(node, ins, graph, drv=None):
    """Input layout passes through (inner element orders are materialized away)."""
    lay = ins[0]
    if lay is None or lay.inner is not None:
        return onnx_order(node, ins, graph, drv)
    return [lay], [lay]


_any_layout.hint = PASSTHROUGH


def _hardmax_policy(node, ins, graph, drv=None):
    if len(_norm_axes(node, graph)) > 1:
        return onnx_order(node, ins, graph, drv)
    return _any_layout(node, ins, graph, drv)


_hardmax_policy.hint = PASSTHROUGH


def _stored_norm_axes(ctx) -> list[int]:
    lay = ctx.in_layout(0)
    return sorted(lay.stored_axis(a) for a in _norm_axes(ctx.node, ctx.driver.graph))


def _trailing(stored: list[int], rank: int) -> bool:
    return stored == list(range(rank - len(stored), rank))


def _lower_normalizer(opcode: str, log: bool):
    options = {} if log else {"beta": 1.0}

    def lower(ctx):
        e = Emitter(ctx)
        x = ctx.input(0)
        out = ctx.output(0)
        stored = _stored_norm_axes(ctx)
        if not _trailing(stored, len(x.shape)):
            _composed(ctx, x, stored, out, log)
            return
        if len(stored) == 1:
            e.op(opcode, x, out=out, **options)
            return
        inner = int(np.prod([x.shape[a] for a in stored], dtype=np.int64))
        flat = ctx.reshape(
            x, (int(np.prod(x.shape, dtype=np.int64)) // max(inner, 1), inner), "as_2d"
        )
        y = e.op(opcode, flat, shape=flat.shape, dtype=x.dtype, hint="normalized", **options)
        e.reshape(y, out=out)

    return lower


def _composed(ctx, x, stored, out, log: bool):
    """exp(x - max) / sum(exp(x - max)), or its log, reducing over ``stored`` axes."""
    e = Emitter(ctx)
    axes = ctx.const_tensor(np.array(stored, np.int32), "axes")
    kept = tuple(1 if i in stored else d for i, d in enumerate(x.shape))

    def step(opcode, inputs, shape, hint, **opts):
        t = out if hint == "out" else ctx.temp(x.dtype, shape, hint)
        e.op(opcode, *inputs, out=t, **opts)
        return t

    none = {"fused_activation_function": "NONE"}
    peak = step("REDUCE_MAX", [x, axes], kept, "max", keep_dims=True)
    shifted = step("SUB", [x, peak], x.shape, "shifted", **none)
    exp = step("EXP", [shifted], x.shape, "exp")
    total = step("SUM", [exp, axes], kept, "sum", keep_dims=True)
    if log:
        step("SUB", [shifted, step("LOG", [total], kept, "log_sum")], x.shape, "out", **none)
    else:
        step("DIV", [exp, total], x.shape, "out", **none)


NOTES = "any axis and opset (< 13: coerced 2-D); non-trailing axes composed from reductions"
lowering(
    "Softmax",
    _any_layout,
    ranks=XNNPACK_RANKS,
    extra_check=_axis_in_range,
    tflite_ops=("SOFTMAX", "RESHAPE", "REDUCE_MAX", "SUB", "EXP", "SUM", "DIV"),
    notes=NOTES,
)(_lower_normalizer("SOFTMAX", log=False))
lowering(
    "LogSoftmax",
    _any_layout,
    ranks=XNNPACK_RANKS,
    extra_check=_axis_in_range,
    tflite_ops=("LOG_SOFTMAX", "RESHAPE", "REDUCE_MAX", "SUB", "EXP", "SUM", "LOG"),
    notes=NOTES,
)(_lower_normalizer("LOG_SOFTMAX", log=True))


@lowering(
    "Hardmax",
    _hardmax_policy,
    extra_check=_axis_in_range,
    tflite_ops=("ARG_MAX", "ONE_HOT", "RESHAPE"),
    notes="first maximum wins, as in ONNX; opset < 13 flattens in ONNX order",
)
def lower_hardmax(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    out = ctx.output(0)
    stored = _stored_norm_axes(ctx)
    if len(stored) > 1:  # ONNX order (policy): flatten the trailing axes
        depth = int(np.prod([x.shape[a] for a in stored], dtype=np.int64))
        x = ctx.reshape(x, (int(np.prod(x.shape, dtype=np.int64)) // max(depth, 1), depth), "as_2d")
        axis = 1
    else:
        axis = stored[0]
        depth = x.shape[axis]
    idx = e.op(
        "ARG_MAX",
        x,
        ctx.const_tensor(np.array([axis], np.int32), "axis"),
        shape=tuple(d for i, d in enumerate(x.shape) if i != axis),
        dtype=np.int32,
        hint="argmax",
        output_type="INT32",
    )
    hot = out if len(stored) == 1 else ctx.temp(x.dtype, x.shape, "one_hot")
    e.op(
        "ONE_HOT",
        idx,
        ctx.const_tensor(np.array(depth, np.int32), "depth"),
        ctx.const_tensor(np.array(1, x.dtype), "on"),
        ctx.const_tensor(np.array(0, x.dtype), "off"),
        out=hot,
        axis=axis,
    )
    if hot is not out:
        e.reshape(hot, out=out)
