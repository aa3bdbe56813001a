"""CumSum -> CUMSUM (exclusive/reverse are CUMSUM options).

A constant axis is mapped through the input's stored layout (any layout works); a runtime axis
goes to CUMSUM as an int32 tensor, which needs the data in ONNX order.
"""

from __future__ import annotations

import numpy as np

from ..registry import lowering
from .axis_layouts import axis_input_policy, constant_axis, runtime_int32
from .emit import Emitter

CUMSUM_DTYPES = ("float32", "int32", "int64")


@lowering(
    "CumSum",
    axis_input_policy,
    since=11,
    dtypes=CUMSUM_DTYPES,
    tflite_ops=("CUMSUM", "CAST"),
    notes="exclusive, reverse; runtime axis needs ONNX-order data",
)
def lower_cumsum(ctx):
    e = Emitter(ctx)
    axis = constant_axis(ctx.node, ctx.driver.graph)
    if axis is None:
        axis_t = runtime_int32(ctx, scalar=True)
    else:
        axis_t = ctx.const_tensor(np.array(ctx.in_layout(0).stored_axis(axis), np.int32), "axis")
    e.op(
        "CUMSUM",
        ctx.input(0),
        axis_t,
        out=ctx.output(0),
        exclusive=bool(ctx.attr("exclusive", 0)),
        reverse=bool(ctx.attr("reverse", 0)),
    )
