"""ArgMax/ArgMin -> ARG_MAX/ARG_MIN (int64 indices), in any stored layout.

TFLite returns the first extreme index, as ONNX does by default. ``select_last_index=1`` is
made exact by reversing the axis first (REVERSE_V2) and mapping the index back: the first
extreme of the reversed data is the last one of the original, at ``n - 1 - i``. Float32/8-bit
data reduced over an axis that is not the last stored one is transposed first (see
``TRANSPOSE_FIRST_DTYPES``): the kernel's fast path is the last axis only.
"""

from __future__ import annotations

import numpy as np

from ..registry import lowering
from .axis_layouts import reduction_policy
from .emit import Emitter

ARG_DTYPES = ("float32", "int32", "uint8", "int8")  # ARG_MAX has no int64-input kernel

# LiteRT's ARG_MAX/ARG_MIN has a fast kernel over the last axis only (float32, uint8, int8);
# any other axis runs a strided reference loop. Moving the axis last with one TRANSPOSE first
# pays off (1x21x256x256 over axis 1, one thread, best of 5: float32 8.1 -> 1.1 ms, uint8
# 6.3 -> 3.8 ms, int8 6.3 -> 4.5 ms); int32 has no fast kernel on any axis, so it gains nothing.
TRANSPOSE_FIRST_DTYPES = ("float32", "uint8", "int8")


def _axis_last(ctx, x, stored):
    """``x`` with stored axis ``stored`` moved last (the other axes keep their order)."""
    e = Emitter(ctx)
    perm = [a for a in range(len(x.shape)) if a != stored] + [stored]
    moved = ctx.temp(x.dtype, tuple(x.shape[a] for a in perm), "axis_last")
    moved.quantization = x.quantization
    e.op("TRANSPOSE", x, ctx.const_tensor(np.array(perm, np.int32), "perm"), out=moved)
    return moved, len(x.shape) - 1


def slow_path_notes(dtype: np.dtype, last: bool) -> list[str]:
    """Report remarks for an ArgMax/ArgMin whose input dtype or attributes force a slow path."""
    notes = []
    if np.dtype(dtype).name not in TRANSPOSE_FIRST_DTYPES:
        notes.append(
            f"{np.dtype(dtype).name} input: LiteRT's ARG_MAX/ARG_MIN has no fast kernel for it "
            "(about 7x slower than float32 over the same data); casting to float32 first is "
            "exact only for |values| <= 2**24"
        )
    if last:
        notes.append(
            "select_last_index=1: adds REVERSE_V2 (a full copy of the input) and an int64 SUB"
        )
    return notes


def arg_axis(node, graph):
    rank = len(graph.values[node.inputs[0]].shape)
    axis = int(node.attrs.get("axis", 0))
    return (axis + rank if axis < 0 else axis,)


def _lower_arg(opcode: str):
    def lower(ctx):
        e = Emitter(ctx)
        (axis,) = arg_axis(ctx.node, ctx.driver.graph)
        stored = ctx.in_layout(0).stored_axis(axis)
        x = ctx.input(0)
        if x.dtype.name in TRANSPOSE_FIRST_DTYPES and int(np.prod(x.shape[stored + 1 :])) > 1:
            x, stored = _axis_last(ctx, x, stored)
        axis_t = ctx.const_tensor(np.array([stored], np.int32), "axis")
        out = ctx.output(0)
        keep = bool(ctx.attr("keepdims", 1))
        last = bool(ctx.attr("select_last_index", 0))
        for text in slow_path_notes(x.dtype, last):
            ctx.note(text)
        if last:
            rev = e.op("REVERSE_V2", x, axis_t, shape=x.shape, hint="reversed")
            x = rev
        dropped = tuple(d for i, d in enumerate(x.shape) if i != stored)
        if keep or last:
            idx = ctx.temp(np.int64, dropped, "index")
        else:
            idx = out
        e.op(opcode, x, axis_t, out=idx, output_type="INT64")
        if last:
            flipped = ctx.temp(np.int64, dropped, "last_index") if keep else out
            n_minus_1 = ctx.const_tensor(np.array(x.shape[stored] - 1, np.int64), "n_minus_1")
            e.op("SUB", n_minus_1, idx, out=flipped)
            idx = flipped
        if keep:
            e.reshape(idx, out=out)

    return lower


for _onnx, _tfl in (("ArgMax", "ARG_MAX"), ("ArgMin", "ARG_MIN")):
    lowering(
        _onnx,
        reduction_policy(arg_axis),
        dtypes=ARG_DTYPES,
        tflite_ops=(_tfl, "TRANSPOSE", "REVERSE_V2", "SUB", "RESHAPE"),
        notes="keepdims; select_last_index via REVERSE_V2; axis moved last first (fast kernel)",
    )(_lower_arg(_tfl))
