"""ArgMax/ArgMin -> ARG_MAX/ARG_MIN (int64 indices), in any stored layout.

TFLite returns the first extreme index, as ONNX does by default. ``select_last_index=1`` is
made exact by reversing the axis first (REVERSE_V2) and mapping the index back: the first
extreme of the reversed data is the last one of the original, at ``n - 1 - i``.
"""

from __future__ import annotations

import numpy as np

from ..registry import lowering
from .axis_layouts import reduction_policy

ARG_DTYPES = ("float32", "int32", "uint8", "int8")  # ARG_MAX has no int64-input kernel


def arg_axis(node, graph):
    rank = len(graph.values[node.inputs[0]].shape)
    axis = int(node.attrs.get("axis", 0))
    return (axis + rank if axis < 0 else axis,)


def _lower_arg(opcode: str):
    def lower(ctx):
        (axis,) = arg_axis(ctx.node, ctx.driver.graph)
        stored = ctx.in_layout(0).stored_axis(axis)
        axis_t = ctx.const_tensor(np.array([stored], np.int32), "axis")
        x = ctx.input(0)
        out = ctx.output(0)
        keep = bool(ctx.attr("keepdims", 1))
        last = bool(ctx.attr("select_last_index", 0))
        if last:
            rev = ctx.temp(x.dtype, x.shape, "reversed")
            ctx.emit("REVERSE_V2", [x, axis_t], [rev])
            x = rev
        dropped = tuple(d for i, d in enumerate(x.shape) if i != stored)
        if keep or last:
            idx = ctx.temp(np.int64, dropped, "index")
        else:
            idx = out
        ctx.emit(opcode, [x, axis_t], [idx], output_type="INT64")
        if last:
            flipped = ctx.temp(np.int64, dropped, "last_index") if keep else out
            n_minus_1 = ctx.const_tensor(np.array(x.shape[stored] - 1, np.int64), "n_minus_1")
            ctx.emit("SUB", [n_minus_1, idx], [flipped], fused_activation_function="NONE")
            idx = flipped
        if keep:
            ctx.driver.reshape(idx, out)

    return lower


for _onnx, _tfl in (("ArgMax", "ARG_MAX"), ("ArgMin", "ARG_MIN")):
    lowering(
        _onnx,
        reduction_policy(arg_axis),
        dtypes=ARG_DTYPES,
        tflite_ops=(_tfl, "REVERSE_V2", "SUB", "RESHAPE"),
        notes="keepdims; select_last_index via REVERSE_V2",
    )(_lower_arg(_tfl))
