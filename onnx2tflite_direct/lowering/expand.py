"""Expand and Tile.

Expand: one BROADCAST_TO, to the static output shape when ``shape`` is a constant, else to the
shape computed at run time (it changes with a dynamic input size). Tile keeps rank and follows its input's layout: constant repeats are
permuted in numpy, runtime ones with one GATHER when the layout is not the identity.
"""

from __future__ import annotations

import numpy as np

from ..policies import keep_rank, onnx_order
from ..registry import lowering
from . import compose as C

# dtypes proven by tests/test_ops_generators.py
EXPAND_TYPES = ("float32", "int32", "int64", "bool", "int8", "uint8")


@lowering(
    "Expand",
    onnx_order,
    since=8,
    dtypes=EXPAND_TYPES,
    tflite_ops=("BROADCAST_TO",),
    notes="target shape from the static output shape",
)
def lower_expand(ctx):
    x = ctx.input(0)
    out_shape = ctx.out_shape(0)
    if ctx.const(1) is None:
        ctx.emit("BROADCAST_TO", [x, _runtime_target(ctx, x, len(out_shape))], [ctx.output(0)])
        return
    if tuple(x.shape) == tuple(out_shape):
        ctx.alias_output(0, x, ctx.out_layout(0))
        return
    shape_t = ctx.const_tensor(np.array(out_shape, np.int32), "shape")
    ctx.emit("BROADCAST_TO", [x, shape_t], [ctx.output(0)])


def _runtime_target(ctx, x, rank: int):
    """ONNX Expand's result shape from a run-time ``shape``: the elementwise maximum of the
    input's dims and ``shape`` (both left-padded with 1s to the output rank), which is the
    broadcast of the two for every valid pair. Used when the shape changes with a dynamic
    input size, so the static output shape cannot be baked in."""

    def padded(dims, hint):
        if dims.shape[0] == rank:
            return dims
        ones = C.const(ctx, np.ones(rank - dims.shape[0]), np.int32, f"{hint}_ones")
        return C.concat(ctx, [ones, dims], 0, f"{hint}_padded")

    wanted = C.cast(ctx, ctx.input(1), np.int32, "shape_i32")
    have = C.op(ctx, "SHAPE", [x], (len(x.shape),), np.int32, "input_dims", out_type="INT32")
    return C.binary(ctx, "MAXIMUM", padded(wanted, "shape"), padded(have, "input"), "target")


@lowering(
    "Tile",
    keep_rank(),
    since=6,
    dtypes=EXPAND_TYPES,
    tflite_ops=("TILE", "GATHER"),
    notes="repeats may be runtime",
)
def lower_tile(ctx):
    lay = ctx.in_layout(0)
    repeats = ctx.const(1)
    if repeats is not None:
        multiples = ctx.const_tensor(
            np.array([repeats[a] for a in lay.perm], np.int32), "multiples"
        )
    else:
        multiples = ctx.input(1)
        if not lay.is_identity:
            stored = ctx.temp(multiples.dtype, multiples.shape, "multiples")
            perm = ctx.const_tensor(np.array(lay.perm, np.int32), "perm")
            ctx.emit("GATHER", [multiples, perm], [stored], axis=0, batch_dims=0)
            multiples = stored
    ctx.emit("TILE", [ctx.input(0), multiples], [ctx.output(0)])
