"""CumSum -> CUMSUM (exclusive/reverse are CUMSUM options).

A constant axis is mapped through the input's stored layout (any layout works); a runtime axis
goes to CUMSUM as an int32 tensor, which needs the data in ONNX order.
"""

from __future__ import annotations

import numpy as np

from ..policies import PASSTHROUGH, onnx_order
from ..registry import lowering
from .axis_layouts import runtime_int32, with_data_layout

CUMSUM_DTYPES = ("float32", "int32", "int64")


def _constant_axis(node, graph) -> int | None:
    value = graph.values[node.inputs[1]]
    if not value.is_constant:
        return None
    rank = len(graph.values[node.inputs[0]].shape)
    axis = int(np.asarray(value.const).reshape(-1)[0])
    return axis + rank if axis < 0 else axis


def _policy(node, ins, graph, drv=None):
    lay = ins[0]
    if lay is None or lay.inner is not None or _constant_axis(node, graph) is None:
        return onnx_order(node, ins, graph, drv)
    return with_data_layout(node, ins, graph, lay), [lay]


_policy.hint = PASSTHROUGH


@lowering(
    "CumSum",
    _policy,
    since=11,
    dtypes=CUMSUM_DTYPES,
    tflite_ops=("CUMSUM", "CAST"),
    notes="exclusive, reverse; runtime axis needs ONNX-order data",
)
def lower_cumsum(ctx):
    axis = _constant_axis(ctx.node, ctx.driver.graph)
    if axis is None:
        axis_t = runtime_int32(ctx, scalar=True)
    else:
        axis_t = ctx.const_tensor(np.array(ctx.in_layout(0).stored_axis(axis), np.int32), "axis")
    ctx.emit(
        "CUMSUM",
        [ctx.input(0), axis_t],
        [ctx.output(0)],
        exclusive=bool(ctx.attr("exclusive", 0)),
        reverse=bool(ctx.attr("reverse", 0)),
    )
