"""ScatterND that overwrites a box: SLICEs of the data around the updates, concatenated.

torch's dynamo exporter writes a slice assignment (``x[:, a:b] = y``; Funnel's relative
shift) as ScatterND with constant indices that enumerate a contiguous block of rows. The
general lowering (``indexing._write``: two SCATTER_NDs, GREATER, SELECT_V2 and a CAST of the
coordinates) has no XNNPACK kernel, so each such write cut the graph into another delegate
partition (seven on a two-layer Funnel). When the constant coordinates, in order, enumerate a
box ``[a_0, a_0 + n_0) x ... x [a_{k-1}, a_{k-1} + n_{k-1})`` of the leading ``k`` axes
row-major, the updates are that box's content, and the result is, axis by axis, the data
before the box, the box, and the data after it: SLICE and CONCATENATION, pure copies
(exact for every dtype), both taken by XNNPACK for float32.
"""

from __future__ import annotations

import numpy as np

from .emit import Emitter

# TFLite's reference SLICE takes at most 5 dims.
MAX_SLICE_RANK = 5


def box_of(coords: np.ndarray, data_shape) -> list[tuple[int, int]] | None:
    """[(start, length)] per addressed axis when the coordinate rows enumerate a box in
    row-major order (negative indices counted from the end), else None."""
    k = coords.shape[-1]
    flat = coords.reshape(-1, k).astype(np.int64)
    if k == 0 or len(flat) == 0 or k > len(data_shape):
        return None
    dims = np.array(data_shape[:k], np.int64)
    flat = np.where(flat < 0, flat + dims, flat)
    lo, hi = flat.min(0), flat.max(0)
    if np.any(lo < 0) or np.any(hi >= dims):
        return None  # out of range: the general lowering's checks apply
    n = hi - lo + 1
    if int(np.prod(n)) != len(flat):
        return None
    ranges = [np.arange(a, a + m) for a, m in zip(lo.tolist(), n.tolist(), strict=True)]
    grid = np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, k)
    if not np.array_equal(flat, grid):
        return None
    return list(zip(lo.tolist(), n.tolist(), strict=True))


def _slice(ctx, x, begin, size, hint):
    e = Emitter(ctx)
    begin_t = ctx.const_tensor(np.array(begin, np.int32), f"{hint}_begin")
    size_t = ctx.const_tensor(np.array(size, np.int32), f"{hint}_size")
    return e.op("SLICE", x, begin_t, size_t, shape=tuple(size), hint=hint)


def _place(ctx, data, block, box, j, out):
    """The region of ``data`` inside the box on axes < j (whole on the others) with ``block``
    written at the box: along axis j, the data before it, the inner region, the data after."""
    e = Emitter(ctx)
    shape = list(data.shape)
    if j == len(box):
        return block
    start, length = box[j]
    inner = _place(ctx, data, block, box, j + 1, None)
    if start == 0 and length == shape[j]:
        if out is not None:
            e.reshape(inner, out=out)
            return out
        return inner
    lead_begin = [a for a, _ in box[:j]]
    lead_size = [m for _, m in box[:j]]
    parts = []
    if start > 0:
        begin = lead_begin + [0] + [0] * (len(shape) - j - 1)
        size = lead_size + [start] + shape[j + 1 :]
        parts.append(_slice(ctx, data, begin, size, f"before{j}"))
    parts.append(inner)
    if start + length < shape[j]:
        begin = lead_begin + [start + length] + [0] * (len(shape) - j - 1)
        size = lead_size + [shape[j] - start - length] + shape[j + 1 :]
        parts.append(_slice(ctx, data, begin, size, f"after{j}"))
    return e.concat(parts, j, hint=f"written{j}", out=out)


def write_box(ctx) -> bool:
    """Lower a ScatterND (reduction "none") as box copies when its indices allow; else False."""
    e = Emitter(ctx)
    if ctx.attr("reduction", "none") != "none":
        return False
    coords = ctx.const(1)
    data, updates = ctx.input(0), ctx.input(2)
    shape = list(ctx.shape(0))
    if coords is None or data.shape_signature is not None or updates.shape_signature is not None:
        return False
    if len(shape) > MAX_SLICE_RANK or list(data.shape) != shape:
        return False
    box = box_of(np.asarray(coords), shape)
    if box is None:
        return False
    block_shape = [m for _, m in box] + shape[len(box) :]
    if int(np.prod(updates.shape)) != int(np.prod(block_shape)):
        return False
    block = e.reshape(updates, block_shape, hint="box")
    _place(ctx, data, block, box, 0, ctx.output(0))
    return True
