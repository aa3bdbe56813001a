"""Softmax with every opset's semantics.

Opsets < 13 coerce the input to 2-D at ``axis`` (softmax over all trailing axes); opset 13+
normalizes along one axis. TFLite's SOFTMAX works on the last stored axis.
"""

from __future__ import annotations

import numpy as np

from .. import layout as L
from ..policies import keep_rank, onnx_order
from ..registry import lowering


def _policy(node, ins, graph, drv=None):
    rank = len(graph.values[node.inputs[0]].shape)
    axis = int(node.attrs.get("axis", 1 if node.opset < 13 else -1))
    axis = axis + rank if axis < 0 else axis
    if node.opset >= 13 and ins[0] is not None and ins[0].inner is None:
        req, outs = keep_rank()(node, ins, graph, drv)
        if req[0].perm[-1] == axis:
            return req, outs
    return onnx_order(node, ins, graph, drv)


_policy.hint = "passthrough"


@lowering("Softmax", _policy, tflite_ops=("SOFTMAX", "RESHAPE", "TRANSPOSE"))
def lower_softmax(ctx):
    shape = ctx.shape(0)
    rank = len(shape)
    axis = int(ctx.attr("axis", 1 if ctx.node.opset < 13 else -1))
    axis = axis + rank if axis < 0 else axis
    x = ctx.input(0)
    lay = ctx.in_layout(0)
    out = ctx.output(0)
    if ctx.node.opset < 13:
        rows = int(np.prod(shape[:axis], dtype=np.int64))
        flat = ctx.reshape(x, (rows, int(np.prod(shape[axis:], dtype=np.int64))), "as_2d")
        y = ctx.temp(np.float32, flat.shape, "softmax")
        ctx.emit("SOFTMAX", [flat], [y], beta=1.0)
        ctx.driver.reshape(y, out)
        return
    if lay.perm[-1] == axis:
        ctx.emit("SOFTMAX", [x], [out], beta=1.0)
        return
    # Move the axis last, normalize, move it back: the data really must be reordered here.
    perm = [a for a in range(rank) if a != axis] + [axis]
    moved = L.Layout(tuple(perm))
    xt = ctx.input(0, moved)
    y = ctx.temp(np.float32, xt.shape, "softmax")
    ctx.emit("SOFTMAX", [xt], [y], beta=1.0)
    back = np.array(L.transpose_perm(moved, lay), np.int32)
    ctx.emit("TRANSPOSE", [y, ctx.const_tensor(back, "perm")], [out])
