"""Expand and Tile.

Expand: the output shape is static, so it is one BROADCAST_TO to that (stored) shape whatever
the ``shape`` input holds. Tile keeps rank and follows its input's layout: constant repeats are
permuted in numpy, runtime ones with one GATHER when the layout is not the identity.
"""

from __future__ import annotations

import numpy as np

from ..policies import keep_rank, onnx_order
from ..registry import lowering

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
    if tuple(x.shape) == tuple(out_shape):
        ctx.alias_output(0, x, ctx.out_layout(0))
        return
    shape_t = ctx.const_tensor(np.array(out_shape, np.int32), "shape")
    ctx.emit("BROADCAST_TO", [x, shape_t], [ctx.output(0)])


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
