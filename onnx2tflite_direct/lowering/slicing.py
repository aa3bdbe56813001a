"""Slice and Split.

Both keep rank, so they follow the layout of their data input (a channel-last feature map is
sliced in place, never transposed); ONNX axes are mapped to stored axes.

Slice: constant starts/ends/axes/steps are normalized in numpy with ONNX's clamping rules and
become one STRIDED_SLICE with constant operands (an end of "before the first element" for a
negative step is expressed with ``end_mask``). Runtime starts/ends/steps are scattered into
full-rank begin/end/strides vectors with one GATHER each; TFLite's STRIDED_SLICE normalizes
negative and out-of-range values exactly like ONNX (Python slice semantics), so no extra
arithmetic is needed beyond saturating int64 to int32. Runtime ``axes`` select each stored
axis' values through an axis-match matrix.

Split: the output shapes are static, so the chunk sizes are known whatever form ``split``
takes (attribute, constant or runtime input, ``num_outputs``): SPLIT for equal chunks, SPLIT_V
otherwise.
"""

from __future__ import annotations

import numpy as np

from ..policies import keep_rank
from ..registry import lowering
from .data_movement import MAX_XNNPACK_CONCAT
from .dynamic_sizes import axes_vary
from .emit import Emitter
from .matmul import split_heads_policy

# dtypes proven by tests/test_ops_slicing.py (SPLIT/SPLIT_V reject bool)
SLICE_TYPES = ("float32", "int32", "int64", "bool", "int8", "uint8")
SPLIT_TYPES = ("float32", "int32", "int64", "int8", "uint8")
INT32_MAX = np.iinfo(np.int32).max
INT32_MIN = np.iinfo(np.int32).min


def _slice_operands(ctx):
    """(starts, ends, axes, steps) as constants or None when runtime; opset < 10 uses attrs."""
    rank = len(ctx.shape(0))
    if ctx.node.opset < 10:
        starts = np.array(ctx.attr("starts"), np.int64)
        ends = np.array(ctx.attr("ends"), np.int64)
        axes = ctx.attr("axes")
        axes = np.arange(len(starts)) if axes is None else np.array(axes, np.int64)
        return starts, ends, axes, np.ones(len(starts), np.int64)
    n = ctx.shape(1)[0]
    axes = ctx.const(3) if ctx.has_input(3) else np.arange(n)
    if axes is None:
        return ctx.const(1), ctx.const(2), None, ctx.const(4)
    steps = ctx.const(4) if ctx.has_input(4) else np.ones(n, np.int64)
    axes = np.array([int(a) + rank if a < 0 else int(a) for a in axes], np.int64)
    return ctx.const(1), ctx.const(2), axes, steps


def _slice_check(node, graph):
    if any(d == 0 for d in graph.values[node.outputs[0]].shape or ()):
        return "unsupported_attribute_value: Slice with an empty result"
    return None


def _const_slice(ctx, starts, ends, axes, steps):
    """Exact ONNX normalization per axis, in stored order, with masks for open ends."""
    shape = ctx.shape(0)
    lay = ctx.in_layout(0)
    # Open ends (end_mask) and in-range negative indices are kept as such rather than resolved
    # against the static dims: the same operands then stay right when a dim is dynamic.
    per_axis = {a: (0, shape[a], 1, True) for a in range(len(shape))}
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        a, s, e, st = int(a), int(s), int(e), int(st)
        b, en, _ = slice(s, e, st).indices(shape[a])
        if st > 0 and -shape[a] <= s < 0:
            b = s
        # An end past this sample's size that is not "to the end" (x[..., :100] sampled at 64
        # and 96) clips larger run-time sizes: kept as the end itself (STRIDED_SLICE clamps it
        # at run time), not as an open end that holds at sizes up to it only.
        clips = st > 0 and shape[a] <= e < INT32_MAX and axes_vary(ctx, [a])
        open_end = en < 0 or (st > 0 and e >= shape[a] and not clips)  # en == -1: before 0
        if clips:
            en = e
        if st > 0 and -shape[a] <= e < 0:
            en = e
        per_axis[a] = (b, en, st, open_end)
    begin, end, strides, end_mask = [], [], [], 0
    for k, a in enumerate(lay.perm):
        b, en, st, open_end = per_axis[a]
        begin.append(b)
        end.append(0 if open_end else en)
        strides.append(st)
        if open_end:
            end_mask |= 1 << k
    return (
        ctx.const_tensor(np.array(begin, np.int32), "begin"),
        ctx.const_tensor(np.array(end, np.int32), "end"),
        ctx.const_tensor(np.array(strides, np.int32), "strides"),
        end_mask,
    )


def _any_size_slice(ctx, starts, ends, axes, steps):
    """The ONNX operands as they are (saturated to int32) when the sizes vary: STRIDED_SLICE
    counts negative begins/ends from the run-time end and clamps them to the axis exactly like
    ONNX (to [0, n] for a positive step, [-1, n - 1] for a negative one), so the same operands
    hold at every size. The sample-size normalization of :func:`_const_slice` (an end past
    this size as an open end, a negative step's begin resolved against this size) would hold
    at some sizes only. Axes not named run whole (end_mask)."""
    lay = ctx.in_layout(0)
    per_axis = {}
    for st_, en_, a, sp in zip(starts, ends, axes, steps, strict=True):
        per_axis[int(a)] = (int(st_), int(en_), int(sp))
    begin, end, strides, end_mask = [], [], [], 0
    for k, a in enumerate(lay.perm):
        b, en, st = per_axis.get(a, (0, 0, 1))
        if a not in per_axis:
            end_mask |= 1 << k
        begin.append(int(np.clip(b, INT32_MIN, INT32_MAX)))
        end.append(int(np.clip(en, INT32_MIN, INT32_MAX)))
        strides.append(st)
    return (
        ctx.const_tensor(np.array(begin, np.int32), "begin"),
        ctx.const_tensor(np.array(end, np.int32), "end"),
        ctx.const_tensor(np.array(strides, np.int32), "strides"),
        end_mask,
    )


def _scatter_runtime(ctx, i, axes, fill, hint):
    """Runtime per-``axes`` values -> stored full-rank vector (``fill`` elsewhere), one GATHER."""
    e = Emitter(ctx)
    lay = ctx.in_layout(0)
    values = ctx.input(i)
    n = len(axes)
    table = np.full(len(lay.perm), n, np.int32)
    for j, a in enumerate(axes):
        table[lay.stored_axis(int(a))] = j
    if n < len(lay.perm):
        ext = ctx.temp(values.dtype, (n + 1,), f"{hint}_ext")
        pad = ctx.const_tensor(np.array([fill], values.dtype), f"{hint}_fill")
        e.concat([values, pad], 0, out=ext)
        values = ext
    return e.gather(values, ctx.const_tensor(table, f"{hint}_index"), 0, hint=hint)


def _const_full(ctx, values, axes, fill, hint):
    lay = ctx.in_layout(0)
    full = np.full(len(lay.perm), fill, np.int64)
    for v, a in zip(values, axes, strict=True):
        full[lay.stored_axis(int(a))] = int(v)
    return ctx.const_tensor(np.clip(full, INT32_MIN, INT32_MAX).astype(np.int32), hint)


def _as_int32(ctx, t, hint):
    """STRIDED_SLICE takes int32 operands: saturate int64 (dims fit in int32, so exact)."""
    e = Emitter(ctx)
    if t.dtype == np.int32:
        return t
    lo = e.op(
        "MAXIMUM", t, ctx.const_tensor(np.array(INT32_MIN, t.dtype), "int32_min"), hint=f"{hint}_lo"
    )
    hi = e.op(
        "MINIMUM",
        lo,
        ctx.const_tensor(np.array(INT32_MAX, t.dtype), "int32_max"),
        hint=f"{hint}_hi",
    )
    return e.op("CAST", hi, dtype=np.int32, hint=f"{hint}_i32")


def _runtime_values(ctx, starts, ends, axes, steps):
    """Constant axes, some runtime starts/ends/steps: GATHER into place, masks elsewhere."""
    shape = ctx.shape(0)
    lay = ctx.in_layout(0)
    operands = []
    for i, const, fill, hint in (
        (1, starts, 0, "begin"),
        (2, ends, 0, "end"),
        (4, steps, 1, "strides"),
    ):
        if const is None:
            operands.append(_as_int32(ctx, _scatter_runtime(ctx, i, axes, fill, hint), hint))
        else:
            operands.append(_const_full(ctx, const, axes, fill, hint))
    untouched = set(range(len(shape))) - {int(a) for a in axes}
    mask = sum(1 << lay.stored_axis(a) for a in untouched)
    return (*operands, mask, mask)


def _runtime_axes(ctx):
    """Runtime axes: a (n, rank) axis-match matrix selects each stored axis' start/end/step.

    Axes not named keep begin 0, end = dim, stride 1; negative axes match ``axis - rank``.
    """
    e = Emitter(ctx)
    lay = ctx.in_layout(0)
    shape = ctx.shape(0)
    rank = len(shape)
    n = ctx.shape(1)[0]
    axes = ctx.reshape(ctx.input(3), (n, 1), "axes_col")
    stored_onnx = np.array(lay.perm, axes.dtype).reshape(1, rank)
    match = ctx.temp(np.bool_, (n, rank), "axis_match")
    eq_pos = ctx.temp(np.bool_, (n, rank), "axis_eq")
    eq_neg = ctx.temp(np.bool_, (n, rank), "axis_eq_neg")
    e.op("EQUAL", axes, ctx.const_tensor(stored_onnx, "stored_axes"), out=eq_pos)
    e.op("EQUAL", axes, ctx.const_tensor(stored_onnx - rank, "stored_axes_neg"), out=eq_neg)
    e.op("LOGICAL_OR", eq_pos, eq_neg, out=match)
    zero_axis = ctx.const_tensor(np.array([0], np.int32), "reduce_axis")
    present = e.op(
        "REDUCE_ANY", match, zero_axis, shape=(rank,), hint="axis_present", keep_dims=False
    )
    dims = np.array([shape[a] for a in lay.perm], np.int64)
    operands = []
    for i, absent, hint in (
        (1, np.zeros(rank), "begin"),
        (2, dims, "end"),
        (4, np.ones(rank), "strides"),
    ):
        if i == 4 and not ctx.has_input(4):
            operands.append(ctx.const_tensor(np.ones(rank, np.int32), hint))
            continue
        src = ctx.input(i)
        col = ctx.reshape(src, (n, 1), f"{hint}_col")
        zeros = ctx.const_tensor(np.zeros((1, 1), src.dtype), "zero")
        picked = e.op("SELECT_V2", match, col, zeros, hint=f"{hint}_picked")
        summed = e.op("SUM", picked, zero_axis, shape=(rank,), hint=f"{hint}_sum", keep_dims=False)
        full = e.op(
            "SELECT_V2",
            present,
            summed,
            ctx.const_tensor(absent.astype(src.dtype), f"{hint}_absent"),
            hint=hint,
        )
        operands.append(_as_int32(ctx, full, hint))
    return (*operands, 0, 0)


# TFLite's reference SLICE takes at most 5 dims (the SLICE of the picked range is at the
# input's rank; the block SLICEs merge axes to stay within it).
MAX_SLICE_RANK = 5


def _strided_by_reshape(ctx, starts, ends, axes, steps) -> bool:
    """A float32 slice with steps > 1 (x[:, ::2], YOLOv5's Focus, Swin's patch merging) as
    SLICE / RESHAPE only: XNNPACK takes STRIDED_SLICE only with unit strides, so each one cut
    the graph into another delegate partition. Along a strided axis the m picked elements
    b, b + s, ... are the element t of each of m consecutive blocks of s: a contiguous SLICE
    of m * s elements, a RESHAPE to [m, s], a SLICE of column t. Exact (pure copies)."""
    e = Emitter(ctx)
    x = ctx.input(0)
    shape = ctx.shape(0)
    if x.dtype != np.float32 or x.shape_signature is not None or len(shape) > MAX_SLICE_RANK:
        return False
    if ctx.driver.options.gpu_friendly:  # the GPU takes 3-D/4-D STRIDED_SLICE, not 5-D views
        return False
    if any(int(st) <= 0 for st in steps) or all(int(st) == 1 for st in steps):
        return False
    per_axis = {a: (0, shape[a], 1) for a in range(len(shape))}
    for s, end, a, st in zip(starts, ends, axes, steps, strict=True):
        b, en, st = slice(int(s), int(end), int(st)).indices(shape[int(a)])
        per_axis[int(a)] = (b, len(range(b, en, st)), st)
    lay = ctx.in_layout(0)
    begin, size, picks = [], [], []  # stored order
    for k, a in enumerate(lay.perm):
        b, m, st = per_axis[a]
        if st == 1:
            begin.append(b)
            size.append(m)
            continue
        if b + m * st <= shape[a]:  # blocks start at b: take element 0 of each
            start, t = b, 0
        elif b - st + 1 >= 0:  # blocks end at the picked element: take element st - 1
            start, t = b - st + 1, st - 1
        else:
            return False
        begin.append(start)
        size.append(m * st)
        picks.append((k, m, st, t))
    stored = list(x.shape)
    if begin != [0] * len(stored) or size != stored:
        x = _slice_op(ctx, x, begin, size, "range")
    for j, (k, m, st, t) in enumerate(picks):
        current = list(x.shape)
        before, after = _block_axes(current, k)
        blocks = ctx.reshape(x, before + [m, st] + after, f"blocks{j}")
        begin = [0] * len(before) + [0, t] + [0] * len(after)
        picked = _slice_op(ctx, blocks, begin, before + [m, 1] + after, f"picked{j}")
        last = j == len(picks) - 1
        out = ctx.output(0) if last else ctx.temp(x.dtype, current[:k] + [m] + current[k + 1 :])
        e.reshape(picked, out=out)
        x = out
    return True


def _block_axes(shape, k) -> tuple[list[int], list[int]]:
    """The axes before and after axis ``k`` for its [m, step] blocks, neighbours merged until
    the blocks fit a SLICE (a 5-D video tensor's [.., m, step, ..] would be 6-D); kept as they
    are otherwise, so a following Unsqueeze of the picked elements collapses with it."""
    before, after = list(shape[:k]), list(shape[k + 1 :])
    while len(before) + len(after) + 2 > MAX_SLICE_RANK:
        if len(before) > 1:
            before[:2] = [before[0] * before[1]]
        else:
            after[-2:] = [after[-2] * after[-1]]
    return before, after


# A negative-step float32 slice is one SLICE per picked element and a CONCATENATION tree up
# to this many elements (XNNPACK takes no STRIDED_SLICE with a negative stride); a longer one
# stays one STRIDED_SLICE (outside XNNPACK) rather than growing the graph without bound.
MAX_REVERSED_ELEMENTS = 64


def _reversed_by_slices(ctx, starts, ends, axes, steps) -> bool:
    """A float32 slice with one negative step (``x[::-1]``: a backward LSTM's time reversal in
    CRNN exports) as SLICEs of one element each along that axis, concatenated in the picked
    order (a tree of at most ``data_movement.MAX_XNNPACK_CONCAT`` inputs per CONCATENATION).
    XNNPACK takes STRIDED_SLICE only with positive unit strides, so the reversal cut a CRNN
    into three delegate partitions; SLICE and CONCATENATION are pure copies (exact)."""
    e = Emitter(ctx)
    x = ctx.input(0)
    shape = ctx.shape(0)
    if x.dtype != np.float32 or x.shape_signature is not None or len(shape) > 4:
        return False
    if ctx.driver.options.gpu_friendly:  # the GPU rewrites take it as one GATHER instead
        return False
    negative = [k for k, st in enumerate(steps) if int(st) < 0]
    if len(negative) != 1 or any(int(st) == 0 for st in steps):
        return False
    per_axis = {a: range(shape[a]) for a in range(len(shape))}
    for s, end, a, st in zip(starts, ends, axes, steps, strict=True):
        per_axis[int(a)] = range(*slice(int(s), int(end), int(st)).indices(shape[int(a)]))
    rev_axis = int(axes[negative[0]])
    picked = per_axis[rev_axis]
    if not 0 < len(picked) <= MAX_REVERSED_ELEMENTS:
        return False
    if any(len(r) == 0 or (r.step != 1 and a != rev_axis) for a, r in per_axis.items()):
        return False
    lay = ctx.in_layout(0)
    k_rev = lay.stored_axis(rev_axis)
    begin = [per_axis[a].start for a in lay.perm]
    size = [len(per_axis[a]) for a in lay.perm]
    parts = []
    for j, i in enumerate(picked):
        begin[k_rev], size[k_rev] = i, 1
        parts.append(_slice_op(ctx, x, list(begin), list(size), f"element{j}"))
    if len(parts) == 1:
        e.reshape(parts[0], out=ctx.output(0))
        return True
    while len(parts) > MAX_XNNPACK_CONCAT:
        groups = [
            parts[i : i + MAX_XNNPACK_CONCAT] for i in range(0, len(parts), MAX_XNNPACK_CONCAT)
        ]
        parts = [e.concat(g, k_rev, hint="reversed_part") if len(g) > 1 else g[0] for g in groups]
    e.concat(parts, k_rev, out=ctx.output(0))
    return True


def _slice_op(ctx, x, begin, size, hint):
    e = Emitter(ctx)
    return e.op(
        "SLICE",
        x,
        ctx.const_tensor(np.array(begin, np.int32), f"{hint}_begin"),
        ctx.const_tensor(np.array(size, np.int32), f"{hint}_size"),
        shape=tuple(size),
        hint=hint,
    )


@lowering(
    "Slice",
    keep_rank(),
    dtypes=SLICE_TYPES,
    tflite_ops=("STRIDED_SLICE", "SLICE", "RESHAPE"),
    notes="starts/ends/axes/steps may be runtime; constant steps > 1 on float32 (rank <= 5) "
    "are SLICE/RESHAPE (XNNPACK takes STRIDED_SLICE only with unit strides)",
    extra_check=_slice_check,
)
def lower_slice(ctx):
    e = Emitter(ctx)
    starts, ends, axes, steps = _slice_operands(ctx)
    if axes is None:
        begin, end, strides, begin_mask, end_mask = _runtime_axes(ctx)
    elif (
        starts is not None
        and ends is not None
        and steps is not None
        and any(int(st) != 1 for st in steps)
        and axes_vary(ctx, axes)
    ):  # the copy forms below and _const_slice's operands follow this sample's sizes
        begin, end, strides, end_mask = _any_size_slice(ctx, starts, ends, axes, steps)
        begin_mask = 0
    elif starts is not None and ends is not None and steps is not None:
        if _strided_by_reshape(ctx, starts, ends, axes, steps):
            return
        if _reversed_by_slices(ctx, starts, ends, axes, steps):
            return
        begin, end, strides, end_mask = _const_slice(ctx, starts, ends, axes, steps)
        begin_mask = 0
    else:
        begin, end, strides, begin_mask, end_mask = _runtime_values(ctx, starts, ends, axes, steps)
    e.op(
        "STRIDED_SLICE",
        ctx.input(0),
        begin,
        end,
        strides,
        out=ctx.output(0),
        begin_mask=begin_mask,
        end_mask=end_mask,
    )


def _split_check(node, graph):
    for o in node.outputs:
        shape = graph.values[o].shape if o else None
        if shape is not None and any(d == 0 for d in shape):
            return "unsupported_attribute_value: Split with an empty output"
    return None


@lowering(
    "Split",
    split_heads_policy(keep_rank()),
    dtypes=SPLIT_TYPES,
    tflite_ops=("SPLIT", "SPLIT_V", "SLICE"),
    notes="chunk sizes come from the static output shapes; unequal float32 chunks are SLICEs "
    "(XNNPACK has no SPLIT_V)",
    extra_check=_split_check,
)
def lower_split(ctx):
    e = Emitter(ctx)
    rank = len(ctx.shape(0))
    axis = int(ctx.attr("axis", 0))
    axis = axis + rank if axis < 0 else axis
    stored_axis = ctx.in_layout(0).stored_axis(axis)
    sizes = [ctx.out_shape(i)[axis] for i in range(len(ctx.node.outputs))]
    outputs = [ctx.output(i) for i in range(len(ctx.node.outputs))]
    if len(outputs) == 1:
        e.reshape(ctx.input(0), out=outputs[0])
        return
    axis_t = ctx.const_tensor(np.array(stored_axis, np.int32), "axis")
    x = ctx.input(0)
    if len(set(sizes)) == 1:
        e.op("SPLIT", axis_t, x, out=outputs, num_splits=len(outputs))
    elif x.dtype == np.float32 and x.shape_signature is None:
        # Unequal float chunks: one SLICE each. XNNPACK has no SPLIT_V, so a SPLIT_V (YOLO
        # heads, CSP blocks) cut the graph into another delegate partition; SLICE it takes.
        begin = 0
        for size, out in zip(sizes, outputs, strict=True):
            start = [0] * len(x.shape)
            extent = list(x.shape)
            start[stored_axis], extent[stored_axis] = begin, size
            begin += size
            e.op(
                "SLICE",
                x,
                ctx.const_tensor(np.array(start, np.int32), "begin"),
                ctx.const_tensor(np.array(extent, np.int32), "size"),
                out=out,
            )
    else:
        size_t = ctx.const_tensor(np.array(sizes, np.int32), "size_splits")
        e.op("SPLIT_V", x, size_t, axis_t, out=outputs, num_splits=len(outputs))
