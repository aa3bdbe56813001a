"""TopK -> TOPK_V2 on the last stored axis, indices cast to int64.

TOPK_V2 works on the innermost axis and returns the largest values, sorted, ties broken by the
lower index -- ONNX's order. The policy stores the data with the TopK axis last (the driver
materializes one TRANSPOSE only when it is not already there). ``largest=0`` ranks a
monotonically decreasing image of the data: ``-x`` for floats, ``-1 - x`` (bitwise NOT, no
overflow) for integers; equal values stay equal, so the tie order is kept.
"""

from __future__ import annotations

import numpy as np

from .. import layout as L
from ..policies import PASSTHROUGH
from ..registry import attr_in, lowering
from .axis_layouts import runtime_int32, with_data_layout
from .emit import Emitter

TOPK_DTYPES = ("float32", "int32", "int64")


def _axis(node, graph) -> int:
    rank = len(graph.values[node.inputs[0]].shape)
    axis = int(node.attrs.get("axis", -1))
    return axis + rank if axis < 0 else axis


def _policy(node, ins, graph, drv=None):
    """Input and both outputs stored with the TopK axis last; other axes keep their order."""
    rank = len(graph.values[node.inputs[0]].shape)
    axis = _axis(node, graph)
    lay = ins[0]
    if lay is None or lay.inner is not None:
        lay = L.identity(rank)
    if lay.perm[-1] != axis:
        lay = L.Layout(tuple(p for p in lay.perm if p != axis) + (axis,))
    return with_data_layout(node, ins, graph, lay), [lay if o else None for o in node.outputs]


_policy.hint = PASSTHROUGH


def _mirror(ctx, x, out=None):
    """A decreasing bijection of ``x`` (its own inverse): -x, or -1 - x for integers."""
    e = Emitter(ctx)
    out = out if out is not None else ctx.temp(x.dtype, x.shape, "mirrored")
    if np.dtype(x.dtype).kind == "f":
        e.op("NEG", x, out=out)
    else:
        minus_one = ctx.const_tensor(np.array(-1, x.dtype), "minus_one")
        e.op("SUB", minus_one, x, out=out)
    return out


@lowering(
    "TopK",
    _policy,
    dtypes=TOPK_DTYPES,
    attrs=(attr_in("sorted", (1,), 1),),
    tflite_ops=("TOPK_V2", "CAST", "NEG", "SUB", "TRANSPOSE"),
    notes="k constant or runtime; largest 0/1; sorted=1 only (sorted=0 order is unspecified)",
)
def lower_topk(ctx):
    e = Emitter(ctx)
    largest = bool(ctx.attr("largest", 1))
    if ctx.node.opset < 10:
        k_t = ctx.const_tensor(np.array(int(ctx.attr("k")), np.int32), "k")
    elif ctx.value(1).is_constant:
        k_t = ctx.const_tensor(
            np.array(int(np.asarray(ctx.const(1)).reshape(-1)[0]), np.int32), "k"
        )
    else:
        k_t = runtime_int32(ctx, scalar=True)
    x = ctx.input(0)
    if not largest:
        x = _mirror(ctx, x)
    values = ctx.output(0)
    ranked = values if largest else ctx.temp(x.dtype, values.shape, "top_mirrored")
    want_indices = len(ctx.node.outputs) > 1 and ctx.node.outputs[1]
    idx = ctx.temp(np.int32, values.shape, "indices_i32")
    e.op("TOPK_V2", x, k_t, out=[ranked, idx])
    if not largest:
        _mirror(ctx, ranked, values)
    if want_indices:
        e.op("CAST", idx, out=ctx.output(1))
