"""CumProd -> unrolled running products (TFLite has CUMSUM but no cumulative product).

The axis is split into unit slices (SPLIT), each slice is multiplied into a running product
and the partial products are concatenated back: exact (same multiplication order as a
sequential scan). A constant axis is mapped through the input's stored layout; a runtime axis
is handled by computing the scan along every axis and selecting the right one at run time,
which is only allowed while the total unrolled length stays small.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..registry import lowering
from .axis_layouts import axis_input_policy, constant_axis, runtime_int32
from .elementwise import compute_dtype, dtype_name, native_check
from .emit import Emitter

MUL_NATIVE = ("float32", "int32", "int64")
CUMPROD_DTYPES = ("float32", "float16", "bfloat16", "int32", "int64", "uint32")
MAX_UNROLL = 256  # total slices over all unrolled axes


def _check(node, graph):
    shape = graph.values[node.inputs[0]].shape
    axis = constant_axis(node, graph)
    length = shape[axis] if axis is not None else sum(shape)
    if length > MAX_UNROLL:
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: unrolling {length} slices exceeds "
            f"{MAX_UNROLL} (a runtime axis unrolls every axis)"
        )
    return native_check(MUL_NATIVE)(node, graph)


def _scan(e: Emitter, x, axis: int, exclusive: bool, reverse: bool):
    """Cumulative product of ``x`` along stored ``axis``."""
    n = x.shape[axis]
    parts = e.split(x, [1] * n, axis, "slice") if n > 1 else [x]
    order = list(reversed(range(n))) if reverse else list(range(n))
    running, result = None, [None] * n
    for k in order:
        if exclusive:
            result[k] = running if running is not None else e.const(np.ones(parts[k].shape))
            running = parts[k] if running is None else e.op("MUL", running, parts[k])
        else:
            running = parts[k] if running is None else e.op("MUL", running, parts[k])
            result[k] = running
    if exclusive and n > 0:
        shape = parts[0].shape
        result = [
            r if tuple(r.shape) == tuple(shape) else e.reshape(r, shape, "ones") for r in result
        ]
    return e.concat(result, axis, "scan") if n > 1 else result[0]


@lowering(
    "CumProd",
    axis_input_policy,
    since=26,
    dtypes=CUMPROD_DTYPES,
    tflite_ops=("SPLIT_V", "MUL", "CONCATENATION", "SELECT_V2", "EQUAL", "CAST"),
    notes=f"unrolled; axis length <= {MAX_UNROLL}; a runtime axis (rank > 1) unrolls every "
    "axis and selects at run time; uint32 is computed in int64 (wraps like ONNX)",
    extra_check=_check,
)
def lower_cumprod(ctx):
    e = Emitter(ctx, compute_dtype(dtype_name(ctx.value(0).dtype), MUL_NATIVE))
    x = e.input(0)
    exclusive, reverse = bool(ctx.attr("exclusive", 0)), bool(ctx.attr("reverse", 0))
    axis = constant_axis(ctx.node, ctx.driver.graph)
    if axis is not None:
        # copy=True: the output is a copy of the scan, as it was before the emitters merged
        # (retargeting the last op would save a RESHAPE, but change the converted bytes).
        e.result(_scan(e, x, ctx.in_layout(0).stored_axis(axis), exclusive, reverse), copy=True)
        return
    rank = len(ctx.shape(0))
    axis_t = runtime_int32(ctx, scalar=True)
    wrapped = e.op("FLOOR_MOD", axis_t, e.const(rank, np.int32, "rank"), hint="axis")
    chosen = None
    for k in range(rank):
        scanned = _scan(e, x, k, exclusive, reverse)
        if chosen is None:
            chosen = scanned
            continue
        is_k = e.op("EQUAL", wrapped, e.const(k, np.int32, "k"), dtype=np.bool_, hint="t")
        chosen = e.op("SELECT_V2", is_k, scanned, chosen, hint="select")
    e.result(chosen, copy=True)
