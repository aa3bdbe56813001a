"""Shape and Size at run time.

The front end folds Shape/Size whenever the queried dims are static; these lowerings only run
for dims that change with a dynamic input size (``dynamic_shapes.py``). The input may be
stored in any layout: SHAPE reads the stored dims, and a GATHER puts them back in ONNX order
(stored axis ``k`` holds ONNX axis ``perm[k]``).
"""

from __future__ import annotations

import numpy as np

from .. import layout as L
from ..registry import lowering
from .emit import Emitter

ANY_TYPE = ("float32", "float16", "int32", "int64", "int8", "uint8", "bool", "int16")


def any_layout_in(node, ins, graph, drv=None):
    """Reads only the dims: the input stays in whatever layout it has; outputs ONNX order."""
    req = [lay if lay is not None else None for lay in ins]
    outs = [L.identity(len(graph.values[o].shape)) if o else None for o in node.outputs]
    return req, outs


def _stored_dims(ctx):
    """int64 [rank] SHAPE of input 0 in stored order, and the ONNX axis of each entry."""
    e = Emitter(ctx)
    x = ctx.input(0)
    dims = e.op("SHAPE", x, shape=(len(x.shape),), dtype=np.int64, hint="dims", out_type="INT64")
    return dims, ctx.in_layout(0).perm


def _rank_check(node, graph):
    if graph.values[node.inputs[0]].rank == 0:
        return "unsupported_rank: Shape/Size of a scalar"
    return None


_RUNTIME_ONLY = {
    "dtypes": ANY_TYPE,
    "extra_check": _rank_check,
    "notes": "run time only when a dim is dynamic; folded otherwise",
}


@lowering("Shape", any_layout_in, tflite_ops=("SHAPE", "GATHER"), **_RUNTIME_ONLY)
def lower_shape(ctx):
    e = Emitter(ctx)
    dims, perm = _stored_dims(ctx)
    rank = len(perm)
    start, end = ctx.attr("start", 0), ctx.attr("end", rank)
    start = max(0, min(rank, start + rank if start < 0 else start))
    end = max(0, min(rank, end + rank if end < 0 else end))
    wanted = [perm.index(axis) for axis in range(start, end)]
    if wanted == list(range(rank)):
        e.reshape(dims, out=ctx.output(0))
        return
    picked = e.gather(dims, np.asarray(wanted, np.int32), 0, "onnx_order_dims")
    e.reshape(picked, out=ctx.output(0))


@lowering("Size", any_layout_in, tflite_ops=("SHAPE", "REDUCE_PROD"), **_RUNTIME_ONLY)
def lower_size(ctx):
    e = Emitter(ctx)
    dims, _ = _stored_dims(ctx)
    e.reduce("REDUCE_PROD", dims, [0], False, "size", out=ctx.output(0))
