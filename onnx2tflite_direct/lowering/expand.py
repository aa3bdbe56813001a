"""Expand and Tile.

Expand: one BROADCAST_TO, to the static output shape when ``shape`` is a constant, else to the
shape computed at run time (it changes with a dynamic input size); a static float32 Expand is
a MUL by ones instead (XNNPACK takes it). Tile keeps rank and follows its input's layout: constant repeats are
permuted in numpy, runtime ones with one GATHER when the layout is not the identity.
"""

from __future__ import annotations

import numpy as np

from ..policies import keep_rank, onnx_order
from ..registry import lowering
from .data_movement import MAX_XNNPACK_CONCAT
from .emit import Emitter

# dtypes proven by tests/test_ops_generators.py
EXPAND_TYPES = ("float32", "int32", "int64", "bool", "int8", "uint8")


@lowering(
    "Expand",
    onnx_order,
    since=8,
    dtypes=EXPAND_TYPES,
    tflite_ops=("BROADCAST_TO", "MUL"),
    notes="target shape from the static output shape; float32 as MUL by ones over the "
    "broadcast axes (XNNPACK has no BROADCAST_TO)",
)
def lower_expand(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    out_shape = ctx.out_shape(0)
    if ctx.const(1) is None:
        e.op("BROADCAST_TO", x, _runtime_target(ctx, x, len(out_shape)), out=ctx.output(0))
        return
    if tuple(x.shape) == tuple(out_shape):
        ctx.alias_output(0, x, ctx.out_layout(0))
        return
    ones = None if ctx.driver.options.gpu_friendly else _broadcast_ones(x, out_shape)
    if ones is not None:
        e.op("MUL", x, ctx.const_tensor(ones, "ones"), out=ctx.output(0))
        return
    shape_t = ctx.const_tensor(np.array(out_shape, np.int32), "shape")
    e.op("BROADCAST_TO", x, shape_t, out=ctx.output(0))


# Largest constant of ones a float Expand multiplies by (larger ones stay BROADCAST_TO).
MAX_BROADCAST_ONES = 1 << 16


def _broadcast_ones(x, out_shape) -> np.ndarray | None:
    """For a static float32 Expand, the ones whose product with x broadcasts it to the output:
    x * 1 is x exactly (-0, inf and NaN included) and XNNPACK takes MUL, while it has no
    BROADCAST_TO (each one, e.g. Llama's grouped-query K/V repeat, cut the graph into another
    delegate partition). The ones span only the broadcast axes, so the constant stays small."""
    if x.dtype != np.float32 or x.shape_signature is not None or len(out_shape) > 6:
        return None
    have = (1,) * (len(out_shape) - len(x.shape)) + tuple(x.shape)
    ones_shape = tuple(o if h != o else 1 for h, o in zip(have, out_shape, strict=True))
    if int(np.prod(ones_shape)) > MAX_BROADCAST_ONES:
        return None
    return np.ones(ones_shape, np.float32)


def _runtime_target(ctx, x, rank: int):
    """ONNX Expand's result shape from a run-time ``shape``: the elementwise maximum of the
    input's dims and ``shape`` (both left-padded with 1s to the output rank), which is the
    broadcast of the two for every valid pair. Used when the shape changes with a dynamic
    input size, so the static output shape cannot be baked in."""
    e = Emitter(ctx)

    def padded(dims, hint):
        if dims.shape[0] == rank:
            return dims
        ones = e.const(np.ones(rank - dims.shape[0]), np.int32, f"{hint}_ones")
        return e.concat([ones, dims], 0, f"{hint}_padded")

    wanted = e.cast(ctx.input(1), np.int32, "shape_i32")
    have = e.op(
        "SHAPE", x, shape=(len(x.shape),), dtype=np.int32, hint="input_dims", out_type="INT32"
    )
    return e.op("MAXIMUM", padded(wanted, "shape"), padded(have, "input"), hint="target")


@lowering(
    "Tile",
    keep_rank(),
    since=6,
    dtypes=EXPAND_TYPES,
    tflite_ops=("TILE", "GATHER", "CONCATENATION", "MUL"),
    notes="repeats may be runtime; static float32 with constant repeats: CONCATENATION of "
    "copies and MUL by ones over size-1 axes (XNNPACK has no TILE)",
)
def lower_tile(ctx):
    e = Emitter(ctx)
    lay = ctx.in_layout(0)
    repeats = ctx.const(1)
    if repeats is not None and _tile_as_copies(ctx, [int(repeats[a]) for a in lay.perm]):
        return
    if repeats is not None:
        multiples = ctx.const_tensor(
            np.array([repeats[a] for a in lay.perm], np.int32), "multiples"
        )
    else:
        multiples = ctx.input(1)
        if not lay.is_identity:
            stored = ctx.temp(multiples.dtype, multiples.shape, "multiples")
            perm = ctx.const_tensor(np.array(lay.perm, np.int32), "perm")
            e.gather(multiples, perm, 0, out=stored)
            multiples = stored
    e.op("TILE", ctx.input(0), multiples, out=ctx.output(0))


# A Tile repeating an axis of size > 1 more than this many times stays one TILE.
MAX_TILE_COPIES = 16


def _tile_as_copies(ctx, reps) -> bool:
    """A static float32 Tile with constant repeats (``reps`` in stored order) as ops XNNPACK
    takes, which has no TILE (Funnel's decoder repeat cut the graph into two partitions): an
    axis of size 1 repeated is a broadcast, the MUL by ones of Expand (x * 1 is x exactly); an
    axis of size n > 1 repeated r times is the CONCATENATION of r copies (a tree of at most
    ``MAX_XNNPACK_CONCAT`` inputs each). Pure copies: exact."""
    e = Emitter(ctx)
    x = ctx.input(0)
    shape = list(x.shape)
    if x.dtype != np.float32 or x.shape_signature is not None or ctx.driver.options.gpu_friendly:
        return False
    if len(shape) > 6 or len(reps) != len(shape) or any(r < 1 for r in reps):
        return False
    wide = [a for a, r in enumerate(reps) if r > 1 and shape[a] != 1]
    if any(reps[a] > MAX_TILE_COPIES for a in wide):
        return False
    ones_shape = [r if shape[a] == 1 else 1 for a, r in enumerate(reps)]
    if int(np.prod(ones_shape)) > MAX_BROADCAST_ONES:
        return False
    y = x
    for a in wide:
        parts = [y] * reps[a]
        while len(parts) > MAX_XNNPACK_CONCAT:
            groups = [
                parts[i : i + MAX_XNNPACK_CONCAT] for i in range(0, len(parts), MAX_XNNPACK_CONCAT)
            ]
            parts = [e.concat(g, a, hint="copies") if len(g) > 1 else g[0] for g in groups]
        y = e.concat(parts, a, hint="copies")
    if int(np.prod(ones_shape)) > 1:
        y = e.op("MUL", y, ctx.const_tensor(np.ones(ones_shape, np.float32), "ones"))
    if y is x:
        ctx.alias_output(0, x, ctx.out_layout(0))
    else:
        e.result(y)
    return True
