"""Gather / scatter family: Gather, GatherElements, GatherND, ScatterND, ScatterElements
(and the deprecated Scatter), OneHot, TensorScatter.

All run in ONNX order (the index arithmetic addresses ONNX axes). ONNX allows negative
indices, TFLite kernels do not: constant indices are normalized in numpy, runtime ones with
one FLOOR_MOD by the dimension size (exact for every valid index in [-d, d-1]).

GatherElements/ScatterElements become GATHER_ND/SCATTER_ND over full coordinates built by
concatenating constant coordinate grids with the (normalized) runtime indices.

SCATTER_ND writes updates into zeros and *adds* duplicates. ``reduction="add"`` is therefore
``data + scatter(updates)``; ``"none"`` selects ``scatter(updates)`` where a scattered count
is positive (ONNX leaves duplicate indices undefined for "none"; constant indices with
duplicates are refused). ``mul``/``max``/``min`` have no parallel exact composition: they are
unrolled per update row (gather, combine, write back), up to MAX_REDUCTION_ROWS rows.

TensorScatter (opset 24, a KV-cache update) writes the update into the cache where a per-batch
position mask says so: GATHER of the update at the relative position, then SELECT_V2 against
the past cache, which is exact for every dtype.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import onnx_order
from ..registry import attr_in, lowering
from .emit import Emitter
from .scatter_box import write_box

INDEX_TYPES = ("int32", "int64")
# dtypes proven by tests/test_ops_indexing.py
GATHER_TYPES = ("float32", "int32", "int64", "bool", "int8", "uint8")
# What LiteRT 2.3's GATHER_ND kernel takes, checked by running it (torch's dynamo exporter
# gathers bool attention masks with GatherND; the kernel has taken bool since version 5).
GATHER_ND_TYPES = ("float32", "float16", "int32", "int64", "bool", "int8", "uint8", "int16")
SCATTER_TYPES = ("float32", "int32", "int64")


def _axis(ctx, rank, default=0):
    axis = int(ctx.attr("axis", default))
    return axis + rank if axis < 0 else axis


def normalized_indices(ctx, i, dims, hint="indices"):
    """Input ``i`` with negative indices wrapped; ``dims`` broadcasts against it."""
    e = Emitter(ctx)
    const = ctx.const(i)
    dims = np.asarray(dims, np.int64)
    if const is not None:
        return ctx.const_tensor(np.where(const < 0, const + dims, const).astype(const.dtype), hint)
    idx = ctx.input(i)
    return e.op(
        "FLOOR_MOD",
        idx,
        ctx.const_tensor(dims.astype(idx.dtype), f"{hint}_dims"),
        hint=f"{hint}_wrapped",
    )


@lowering(
    "Gather",
    onnx_order,
    dtypes=GATHER_TYPES,
    tflite_ops=("GATHER", "FLOOR_MOD"),
    notes="negative runtime indices wrapped with FLOOR_MOD",
    extra_check=lambda n, g: (
        None
        if str(g.values[n.inputs[1]].dtype) in INDEX_TYPES
        else "unsupported_dtype: indices must be int32/int64"
    ),
)
def lower_gather(ctx):
    e = Emitter(ctx)
    rank = len(ctx.shape(0))
    axis = _axis(ctx, rank)
    idx = normalized_indices(ctx, 1, ctx.shape(0)[axis])
    e.gather(ctx.input(0), idx, axis, out=ctx.output(0))


def _grid(shape, axis, dtype):
    """(shape..., 1) coordinates of ``axis`` for every position of ``shape``."""
    grid = np.indices(shape, dtype=np.int64)[axis]
    return grid.reshape(*shape, 1).astype(dtype)


def _full_coordinates(ctx, idx, shape, axis):
    """Concatenate coordinate grids of the other axes with ``idx`` into (shape..., rank)."""
    e = Emitter(ctx)
    rank = len(shape)
    column = ctx.reshape(idx, (*shape, 1), "index_col")
    parts = [
        column if d == axis else ctx.const_tensor(_grid(shape, d, idx.dtype), f"grid{d}")
        for d in range(rank)
    ]
    return e.concat(parts, rank, hint="coords")


def _elements_coords(ctx):
    rank = len(ctx.shape(0))
    axis = _axis(ctx, rank)
    idx = normalized_indices(ctx, 1, ctx.shape(0)[axis])
    return _full_coordinates(ctx, idx, ctx.shape(1), axis)


@lowering(
    "GatherElements",
    onnx_order,
    dtypes=GATHER_ND_TYPES,
    tflite_ops=("GATHER_ND", "CONCATENATION", "FLOOR_MOD", "GATHER", "SLICE", "RESHAPE"),
    notes="GATHER_ND over full coordinates; one row of indices is a GATHER",
)
def lower_gather_elements(ctx):
    e = Emitter(ctx)
    rank = len(ctx.shape(0))
    axis = _axis(ctx, rank)
    if all(n == 1 for d, n in enumerate(ctx.shape(1)) if d != axis):
        _gather_one_row(ctx, axis)
        return
    if axis == rank - 1 and tuple(ctx.shape(0))[:-1] == tuple(ctx.shape(1))[:-1]:
        # out[..., m] = data[..., idx[..., m]]: GATHER along the last axis with every other
        # axis a batch dim (no coordinate grid sized by the input dims).
        idx = normalized_indices(ctx, 1, ctx.shape(0)[axis])
        e.op("GATHER", ctx.input(0), idx, out=ctx.output(0), axis=axis, batch_dims=axis)
        return
    e.op("GATHER_ND", ctx.input(0), _elements_coords(ctx), out=ctx.output(0))


def _gather_one_row(ctx, axis):
    """Indices that are one row along ``axis`` (every other dim 1: torch's gather of position
    ids from a buffer) read only the first row of the data: GATHER of that row. No coordinate
    grid sized by the row, so a row length that follows a dynamic input dim stays run-time."""
    e = Emitter(ctx)
    data, shape = ctx.input(0), tuple(ctx.shape(0))
    row_shape = tuple(n if d == axis else 1 for d, n in enumerate(shape))
    if row_shape != shape:
        row = ctx.temp(data.dtype, row_shape, "row")
        begin = ctx.const_tensor(np.zeros(len(shape), np.int32), "row_begin")
        size = ctx.const_tensor(np.array(row_shape, np.int32), "row_size")
        e.op("SLICE", data, begin, size, out=row)
        data = row
    idx = normalized_indices(ctx, 1, shape[axis])
    flat = ctx.reshape(idx, (int(np.prod(idx.shape)),), "index_row")
    e.gather(data, flat, axis, out=ctx.output(0))


def _nd_coords(ctx):
    """GatherND/ScatterND indices, normalized, with batch coordinates prepended."""
    e = Emitter(ctx)
    data_shape = ctx.shape(0)
    ishape = ctx.shape(1)
    b = int(ctx.attr("batch_dims", 0))
    k = ishape[-1]
    idx = normalized_indices(ctx, 1, data_shape[b : b + k])
    if b == 0:
        return idx
    lead = ishape[:-1]
    parts = [ctx.const_tensor(_grid(lead, d, idx.dtype), f"batch{d}") for d in range(b)]
    return e.concat([*parts, idx], len(lead), hint="coords")


@lowering(
    "GatherND",
    onnx_order,
    dtypes=GATHER_ND_TYPES,
    tflite_ops=("GATHER_ND", "FLOOR_MOD"),
    notes="batch_dims via prepended batch coordinates",
)
def lower_gather_nd(ctx):
    e = Emitter(ctx)
    e.op("GATHER_ND", ctx.input(0), _nd_coords(ctx), out=ctx.output(0))


def _int32_coords(ctx, coords):
    e = Emitter(ctx)
    if coords.dtype == np.int32:
        return coords
    return e.op("CAST", coords, dtype=np.int32, hint="coords_i32")


def _write(ctx, base, coords, values, out=None):
    """``base`` with ``values`` written at ``coords`` ("none"): SCATTER_ND adds duplicates,
    so the written positions are selected by a scattered hit count rather than added."""
    e = Emitter(ctx)
    shape = tuple(base.shape)
    shape_t = ctx.const_tensor(np.array(shape, np.int32), "shape")
    scattered = e.op(
        "SCATTER_ND", coords, values, shape_t, shape=shape, dtype=base.dtype, hint="scattered"
    )
    ones = ctx.const_tensor(np.ones(values.shape, np.int32), "ones")
    count = e.op("SCATTER_ND", coords, ones, shape_t, shape=shape, dtype=np.int32, hint="count")
    hit = e.op(
        "GREATER",
        count,
        ctx.const_tensor(np.array(0, np.int32), "zero"),
        dtype=np.bool_,
        hint="hit",
    )
    out = out if out is not None else ctx.temp(base.dtype, shape, "written")
    e.op("SELECT_V2", hit, scattered, base, out=out)
    return out


# reduction -> the binary op combining the current value with an update
COMBINE = {"mul": "MUL", "max": "MAXIMUM", "min": "MINIMUM"}
# mul/max/min are unrolled one update row at a time (9 ops per row): cap the graph size
MAX_REDUCTION_ROWS = 64


def _update_rows(coords_shape) -> int:
    return int(np.prod(coords_shape[:-1], dtype=np.int64))


def _scatter_reduce(ctx, coords, updates):
    """mul/max/min: apply each update row in index order (gather the current value, combine,
    write back), which is exact for duplicate indices too."""
    e = Emitter(ctx)
    k = coords.shape[-1]
    n = _update_rows(coords.shape)
    row_shape = tuple(updates.shape[len(coords.shape) - 1 :])
    rows = ctx.reshape(coords, (n, 1, k), "coord_rows")
    upd_rows = ctx.reshape(updates, (n, 1, *row_shape), "update_rows")
    acc = ctx.input(0)
    dtype = acc.dtype
    for j in range(n):
        pick = ctx.const_tensor(np.array(j, np.int32), f"row{j}")
        coord = e.gather(rows, pick, 0, hint=f"coord{j}")
        update = e.gather(upd_rows, pick, 0, hint=f"update{j}")
        current = e.op("GATHER_ND", acc, coord, shape=(1, *row_shape), hint=f"current{j}")
        combined = ctx.temp(dtype, (1, *row_shape), f"combined{j}")
        opcode = COMBINE[ctx.attr("reduction")]
        options = {"fused_activation_function": "NONE"} if opcode == "MUL" else {}
        e.op(opcode, current, update, out=combined, **options)
        acc = _write(ctx, acc, coord, combined, ctx.output(0) if j == n - 1 else None)
    if n == 0:
        ctx.alias_output(0, acc, ctx.in_layout(0))


def _scatter(ctx, coords, updates):
    """``data`` with ``updates`` scattered at ``coords`` per the reduction attribute."""
    e = Emitter(ctx)
    coords = _int32_coords(ctx, coords)
    reduction = ctx.attr("reduction", "none")
    if reduction in COMBINE:
        _scatter_reduce(ctx, coords, updates)
        return
    data = ctx.input(0)
    if reduction == "add":
        shape_t = ctx.const_tensor(np.array(ctx.shape(0), np.int32), "shape")
        scattered = e.op(
            "SCATTER_ND",
            coords,
            updates,
            shape_t,
            shape=ctx.shape(0),
            dtype=data.dtype,
            hint="scattered",
        )
        e.op("ADD", data, scattered, out=ctx.output(0))
        return
    _write(ctx, data, coords, updates, ctx.output(0))


def _no_duplicates(coords: np.ndarray) -> bool:
    flat = coords.reshape(-1, coords.shape[-1])
    return len({tuple(r) for r in flat.tolist()}) == len(flat)


def _reduction_rows_check(node, rows: int):
    if node.attrs.get("reduction", "none") in COMBINE and rows > MAX_REDUCTION_ROWS:
        return (
            f"unsupported_attribute_value: reduction={node.attrs['reduction']} is unrolled per "
            f"update row; {rows} rows exceed the cap of {MAX_REDUCTION_ROWS}"
        )
    return None


def _scatter_nd_check(node, graph):
    ishape = graph.values[node.inputs[1]].shape
    refusal = _reduction_rows_check(node, _update_rows(ishape))
    if refusal:
        return refusal
    idx = graph.values[node.inputs[1]].const
    if node.attrs.get("reduction", "none") == "none" and idx is not None and idx.ndim >= 1:
        if not _no_duplicates(np.asarray(idx).reshape(-1, idx.shape[-1])):
            return "unsupported_attribute_value: ScatterND with duplicate indices"
    return None


REDUCTIONS = attr_in("reduction", ("none", "add", "mul", "max", "min"), "none")
SCATTER_OPS = ("SCATTER_ND", "ADD", "GREATER", "SELECT_V2", "GATHER", "GATHER_ND")
SCATTER_OPS += ("MUL", "MAXIMUM", "MINIMUM")
REDUCTION_NOTES = (
    "; mul/max/min unrolled per update row in index order (exact with duplicates), "
    f"at most {MAX_REDUCTION_ROWS} rows"
)


@lowering(
    "ScatterND",
    onnx_order,
    dtypes=SCATTER_TYPES,
    attrs=(REDUCTIONS,),
    tflite_ops=(*SCATTER_OPS, "SLICE", "CONCATENATION", "RESHAPE"),
    notes="reduction none/add" + REDUCTION_NOTES + "; constant indices covering a box: SLICE "
    "+ CONCATENATION",
    extra_check=_scatter_nd_check,
)
def lower_scatter_nd(ctx):
    if write_box(ctx):  # constant indices enumerating a box: SLICE + CONCATENATION
        return
    _scatter(ctx, _nd_coords(ctx), ctx.input(2))


def _scatter_elements_check(node, graph):
    ishape = graph.values[node.inputs[1]].shape
    refusal = _reduction_rows_check(node, _update_rows((*ishape, 1)))
    if refusal:
        return refusal
    idx = graph.values[node.inputs[1]].const
    if node.attrs.get("reduction", "none") == "none" and idx is not None:
        rank = idx.ndim
        axis = int(node.attrs.get("axis", 0))
        axis = axis + rank if axis < 0 else axis
        coords = np.stack([np.indices(idx.shape)[d] if d != axis else idx for d in range(rank)], -1)
        if not _no_duplicates(coords):
            return "unsupported_attribute_value: ScatterElements with duplicate indices"
    return None


for _op, _since in (("ScatterElements", 11), ("Scatter", 9)):
    lowering(
        _op,
        onnx_order,
        since=_since,
        dtypes=SCATTER_TYPES,
        attrs=(REDUCTIONS,),
        tflite_ops=SCATTER_OPS + ("CONCATENATION",),
        notes="reduction none/add; SCATTER_ND over full coordinates" + REDUCTION_NOTES,
        extra_check=_scatter_elements_check,
    )(lambda ctx: _scatter(ctx, _elements_coords(ctx), ctx.input(2)))


def _one_hot_check(node, graph):
    if str(graph.values[node.inputs[0]].dtype) not in ("int32", "int64", "float32"):
        return "unsupported_dtype: OneHot indices must be int32/int64/float32"
    return None


@lowering(
    "OneHot",
    onnx_order,
    since=9,
    dtypes=("float32", "int32", "int64", "bool", "int8", "uint8"),
    dtype_inputs=(2,),
    tflite_ops=("ONE_HOT", "SELECT_V2", "ADD", "LESS", "GATHER"),
    notes="depth from the static output shape; negative indices count from depth",
    extra_check=_one_hot_check,
)
def lower_one_hot(ctx):
    e = Emitter(ctx)
    rank_out = len(ctx.out_shape(0))
    axis = _axis(ctx, rank_out, -1)
    depth = ctx.out_shape(0)[axis]
    idx = ctx.input(0)
    if idx.dtype.kind == "f":
        as_int = e.op("CAST", idx, dtype=np.int64, hint="indices_int")
        idx = as_int
    negative = e.op(
        "LESS",
        idx,
        ctx.const_tensor(np.array(0, idx.dtype), "zero"),
        dtype=np.bool_,
        hint="negative",
    )
    shifted = e.op(
        "ADD", idx, ctx.const_tensor(np.array(depth, idx.dtype), "depth"), hint="shifted"
    )
    fixed = e.op("SELECT_V2", negative, shifted, idx, hint="indices_fixed")
    values = ctx.const(2)
    if values is not None:
        off = ctx.const_tensor(np.array(values.reshape(-1)[0]), "off")
        on = ctx.const_tensor(np.array(values.reshape(-1)[1]), "on")
    else:
        vals = ctx.input(2)
        off, on = (ctx.temp(vals.dtype, (), n) for n in ("off", "on"))
        for k, t in enumerate((off, on)):
            e.gather(vals, ctx.const_tensor(np.array(k, np.int32), f"pick{k}"), 0, out=t)
    depth_t = ctx.const_tensor(np.array(depth, np.int32), "depth_i32")
    e.op("ONE_HOT", fixed, depth_t, on, off, out=ctx.output(0), axis=axis)


# ---- TensorScatter ----------------------------------------------------------------------------

TENSOR_SCATTER_TYPES = ("float32", "float16", "int8", "uint8", "int16", "int32", "int64", "bool")


def _scatter_positions(ctx, max_len: int, seq_len: int, circular: bool):
    """(relative index into the update, written?) per (batch, cache position), int32 / bool.

    Constant write indices give numpy constants; runtime ones are computed by the graph.
    """
    e = Emitter(ctx)
    positions = np.arange(max_len, dtype=np.int64)[None, :]
    batch = ctx.shape(0)[0]
    written = ctx.const(2) if ctx.has_input(2) else np.zeros(batch, np.int64)
    if written is not None:
        rel = positions - np.asarray(written, np.int64).reshape(-1, 1)
        if circular:
            rel = np.mod(rel, max_len)
        valid = (rel >= 0) & (rel < seq_len)
        index = np.clip(rel, 0, seq_len - 1).astype(np.int32)
        return e.const(index, np.int32, "index"), e.const(valid, np.bool_, "valid")
    start = e.reshape(e.cast(ctx.input(2), np.int32, "start"), (batch, 1), "start2d")
    rel = e.op("SUB", e.const(positions, np.int32, "pos"), start, hint="rel")
    if circular:
        rel = e.op("FLOOR_MOD", rel, e.const(max_len, np.int32, "m"), hint="wrapped")
    lo = e.op("GREATER_EQUAL", rel, e.const(0, np.int32, "zero"), dtype=np.bool_, hint="t")
    hi = e.op("LESS", rel, e.const(seq_len, np.int32, "s"), dtype=np.bool_, hint="t")
    valid = e.op("LOGICAL_AND", lo, hi, hint="valid")
    clipped = e.op("MAXIMUM", rel, e.const(0, np.int32, "zero"), hint="clip_lo")
    index = e.op("MINIMUM", clipped, e.const(seq_len - 1, np.int32, "last"), hint="index")
    return index, valid


def _scatter_check(node, graph):
    rank = len(graph.values[node.inputs[0]].shape)
    axis = node.attrs.get("axis", -2)
    if axis % rank == 0 or not -rank <= axis < rank:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: axis {axis} (must not be the batch axis)"
    return None


@lowering(
    "TensorScatter",
    onnx_order,
    since=24,
    dtypes=TENSOR_SCATTER_TYPES,
    dtype_inputs=(0, 1),
    attrs=(attr_in("mode", ("linear", "circular"), "linear"),),
    tflite_ops=("GATHER", "SELECT_V2", "SUB", "FLOOR_MOD", "LESS", "GREATER_EQUAL"),
    notes="runtime or constant write_indices; linear writes past the cache end are dropped",
    extra_check=_scatter_check,
)
def lower_tensor_scatter(ctx):
    e = Emitter(ctx)
    past_shape, update_shape = ctx.shape(0), ctx.shape(1)
    rank = len(past_shape)
    axis = ctx.attr("axis", -2) % rank
    max_len, seq_len = past_shape[axis], update_shape[axis]
    if seq_len == 0:
        ctx.alias_output(0, ctx.input(0), ctx.out_layout(0))
        return
    circular = ctx.attr("mode", "linear") == "circular"
    index, valid = _scatter_positions(ctx, max_len, seq_len, circular)
    update = ctx.input(1)
    gathered_shape = list(update_shape)
    gathered_shape[axis] = max_len
    gathered = e.op(
        "GATHER", update, index, shape=gathered_shape, hint="gathered", axis=axis, batch_dims=1
    )
    mask_shape = [past_shape[0]] + [1] * (rank - 1)
    mask_shape[axis] = max_len
    mask = e.reshape(valid, mask_shape, "mask")
    e.op("SELECT_V2", mask, gathered, ctx.input(0), out=ctx.output(0))
