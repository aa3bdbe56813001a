"""``--gpu-friendly`` rewrites that move data: ranks, layouts, gathers, slices and shapes.

Why a module of its own: these rules only move elements (or fold a constant once), so each is
bit-exact, and they share the :class:`Editor` that every GPU rewrite uses. Each rule takes an
operator the GPU rules (``gpu_rules``) reject and returns replacement operators, or None; the
driver (``gpu_friendly``) keeps a replacement only if the same rules accept it.

- ``gather_to_slices``: GATHER the delegate rejects (scalar or N-D constant indices, ...)
  becomes one forward STRIDED_SLICE when the indices step evenly, else one SLICE per
  contiguous run when there are few (+ CONCATENATION); + RESHAPE for scalar or N-D indices.
- ``gather_flat_indices``: GATHER by N-D constant indices with too many runs for slices
  becomes GATHER by the flattened indices + RESHAPE.
- ``fold_constant_reshape``: RESHAPE of a constant (a Conv1D filter) becomes the reshaped
  constant.
- ``reshape_static_shape``: RESHAPE whose target shape is computed at run time in a static
  graph takes its static output shape as a constant (the shape arithmetic becomes dead).
- ``transpose_rank_reduction``: a >4-D TRANSPOSE whose size-1 axes can be dropped and whose
  axes that move together can be merged is done in at most 4-D between two RESHAPEs (or
  becomes a single RESHAPE when only size-1 axes move); RESHAPE chains are then collapsed so
  >4-D intermediates of channel-shuffle style patterns disappear.
- ``broadcast_to_tile``: BROADCAST_TO (no GPU parser) becomes TILE, after a RESHAPE when the
  rank grows.
- ``broadcast_mul_to_tile``: a MUL by ones that only broadcasts (the Expand lowering) becomes
  that TILE where the GPU refuses the MUL.
- ``slice_rank_lift``: a 1-D/2-D SLICE or STRIDED_SLICE runs on a 3-D view.
- ``slice_rank_reduction``: a >4-D slice (5-D q/k/v split) runs on one shared <=4-D view.
- ``reverse_slice_to_gather``: a flip (negative stride) becomes GATHER by reversed indices.
- ``reverse_to_gather``: REVERSE_V2 becomes one GATHER by reversed indices per axis.
- ``pad_rank_lift``: a 1-D/2-D PAD/PADV2/MIRROR_PAD runs on a 3-D view.
- ``unit_axes_to_reshape``: SQUEEZE / EXPAND_DIMS become RESHAPE.
- ``elementwise_rank_reduction``: a >4-D elementwise op with single-value constants runs on
  the <=4-D tensor it was reshaped from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import gpu_rules, tfl, tfl_edit, versioning

MAX_GPU_RANK = gpu_rules.MAX_RANK

# A GATHER becomes at most this many SLICEs; more runs are left to GATHER.
MAX_GATHER_RUNS = 4


# Fused activations some kernels take only at a version above the GPU cap, and the standalone
# builtin that computes the same function.
def delegable(op: tfl.Operator) -> bool:
    """Would the GPU rules take this new operator (at the version it needs by itself)?"""
    version = 1 if op.opcode == "CUSTOM" else versioning.op_version(op)
    return not gpu_rules.check_op(op, version)


class Editor(tfl_edit.Editor):
    """The shared editor plus the snapshots the rules read: who writes and who reads each
    tensor (taken once per pass) and the reshaped views several rewrites share."""

    def __init__(self, sub: tfl.Subgraph) -> None:
        super().__init__(sub, fresh_names=True)
        self.producer = sub.producers()
        self.uses = {k: [op for op, _ in v] for k, v in sub.consumers().items()}
        self.io = self.io_ids()
        # (id(tensor), shape) -> a reshaped view several rewrites share (one RESHAPE for all)
        self.views: dict[tuple[int, tuple[int, ...]], tfl.Tensor] = {}
        self._fixed: dict[int, bool] = {}  # id(tensor) -> fixed_value()
        # What a rewrite takes for granted about the values the model is fed (a bound on an
        # input it cannot read from the graph): reported, and printed by the CLI.
        self.assumptions: list[str] = []
        self._memo: dict[str, Any] = {}

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """State a family of rules computes once per pass (a plan over the subgraph, the float
        twins of int32 tensors): kept with this editor, which lives for one pass, so it is
        never stale after the pass's edits are committed."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def shared_view(self, src: tfl.Tensor, shape: tuple[int, ...], like: tfl.Operator):
        """``src`` reshaped to ``shape``: (view, [the RESHAPE making it, the first time])."""
        key = (id(src), tuple(shape))
        if key in self.views:
            return self.views[key], []
        view = self.views[key] = self.temp(f"{src.name}/view", src.dtype, shape)
        return view, [self.reshape(src, view, like)]

    def fixed_value(self, t: tfl.Tensor | None, depth: int = 64) -> bool:
        """Is ``t`` the same on every run: a constant, the SHAPE of a static tensor, or
        computed from such values only (not from what the model's inputs hold)?"""
        if t is None or t.data is not None:
            return True
        known = self._fixed.get(id(t))
        if known is not None:
            return known
        op = self.producer.get(id(t))
        if op is None or depth == 0:
            found = False  # a graph input (or too deep to tell)
        elif op.opcode == "SHAPE":
            found = static(op.inputs[0])
        else:
            found = all(self.fixed_value(x, depth - 1) for x in op.inputs)
        self._fixed[id(t)] = found
        return found

    def sole_reshape_neighbours(self, src: tfl.Tensor, out: tfl.Tensor):
        """(RESHAPE producing ``src``, RESHAPE consuming ``out``) where ``collapse_reshapes``
        would merge them with RESHAPEs written next to them; None where it would not."""
        prev = self.producer.get(id(src))
        if prev is None or prev.opcode != "RESHAPE" or len(self.uses.get(id(src), [])) != 1:
            prev = None
        nxt = self.uses.get(id(out), [])
        after = nxt[0] if len(nxt) == 1 and nxt[0].opcode == "RESHAPE" else None
        if id(src) in self.io:
            prev = None
        if id(out) in self.io:
            after = None
        return prev, after


def static(*tensors: tfl.Tensor | None) -> bool:
    return all(t is not None and t.shape_signature is None for t in tensors)


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each maximal run of consecutive increasing indices, in order."""
    runs: list[tuple[int, int]] = []
    for i in indices.tolist():
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def _constant_gather(op: tfl.Operator) -> tuple[tfl.Tensor, tfl.Tensor, tfl.Tensor] | None:
    """(data, indices, output) of a GATHER by constant indices without batch dims between
    static shapes (what the GATHER rewrites below start from), else None."""
    if op.opcode != "GATHER" or len(op.inputs) < 2:
        return None
    data, idx, out = op.inputs[0], op.inputs[1], op.outputs[0]
    if (
        idx is None
        or idx.data is None
        or op.options.get("batch_dims", 0) not in (0, None)
        or not static(data, out)
    ):
        return None
    return data, idx, out


def _gather_axis_shape(op, data, out, flat: np.ndarray) -> tuple[int, tuple] | None:
    """(axis, shape gathered along it) for the flat constant indices ``flat`` of GATHER ``op``,
    or None when an index is out of range (a runtime error for GATHER: leave it to say so) or
    the output holds another element count."""
    axis = int(op.options.get("axis", 0) or 0)
    axis = axis + data.rank if axis < 0 else axis
    n = data.shape[axis]
    if flat.size == 0 or flat.min() < -n or flat.max() >= n:
        return None
    gathered = data.shape[:axis] + (flat.size,) + data.shape[axis + 1 :]
    if int(np.prod(gathered)) != int(np.prod(out.shape)):
        return None
    return axis, gathered


def _gather_to_slices(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """GATHER by constant in-range indices -> a forward STRIDED_SLICE or SLICE runs, the first
    of them the GPU rules take whole."""
    found = _constant_gather(op)
    if found is None:
        return None
    data, idx, out = found
    if (
        data.data is not None
        or not 1 <= data.rank <= MAX_GPU_RANK
        or out.rank == 0  # a scalar result needs SQUEEZE, which the delegate lacks
    ):
        return None
    flat = idx.data.astype(np.int64).reshape(-1)
    planned = _gather_axis_shape(op, data, out, flat)
    if planned is None:
        return None
    axis, gathered = planned
    flat = np.where(flat < 0, flat + data.shape[axis], flat)
    joined = (
        out
        if tuple(out.shape) == gathered
        else ed.temp(f"{out.name}/gathered", out.dtype, gathered)
    )
    candidates = []
    step = _progression_step(flat)
    if step is not None and step > 0:  # the delegate refuses reverse slices
        candidates.append(lambda: [_strided_take(ed, op, data, joined, axis, int(flat[0]), step)])
    runs = _runs(flat)
    if len(runs) <= MAX_GATHER_RUNS:
        candidates.append(lambda: _slice_runs(ed, op, data, joined, axis, runs))
    for make in candidates:
        ops = make()
        if joined is not out:
            ops.append(ed.reshape(joined, out, op))
        if all(delegable(o) for o in ops):
            return ops
    return None


def _progression_step(flat: np.ndarray) -> int | None:
    """The step of indices forming an arithmetic progression other than a plain run."""
    if flat.size < 2:
        return None
    steps = np.diff(flat)
    step = int(steps[0])
    return step if step not in (0, 1) and bool(np.all(steps == step)) else None


def _strided_take(ed: Editor, op, data, joined, axis: int, first: int, step: int):
    """One STRIDED_SLICE taking ``joined.shape[axis]`` elements from ``first`` by ``step``."""
    count = joined.shape[axis]
    begin = np.zeros(data.rank, np.int32)
    end = np.array(data.shape, np.int32)
    strides = np.ones(data.rank, np.int32)
    begin[axis], strides[axis] = first, step
    stop = first + step * count  # -1 for a reversal down to 0: "to the start" needs end_mask
    end[axis] = min(stop, data.shape[axis]) if stop >= 0 else 0
    end_mask = (1 << axis) if stop < 0 else 0
    consts = [
        ed.const(f"{joined.name}/{name}", arr)
        for name, arr in (("begin", begin), ("end", end), ("strides", strides))
    ]
    return ed.op("STRIDED_SLICE", [data, *consts], [joined], op, begin_mask=0, end_mask=end_mask)


def _slice_runs(ed: Editor, op, data, joined, axis: int, runs) -> list[tfl.Operator]:
    """One SLICE per run, joined by a CONCATENATION when there are several."""
    ops: list[tfl.Operator] = []
    pieces = []
    for k, (start, length) in enumerate(runs):
        shape = data.shape[:axis] + (length,) + data.shape[axis + 1 :]
        piece = joined if len(runs) == 1 else ed.temp(f"{joined.name}/run{k}", joined.dtype, shape)
        begin = np.zeros(data.rank, np.int32)
        begin[axis] = start
        begin_t = ed.const(f"{piece.name}/begin", begin)
        size_t = ed.const(f"{piece.name}/size", np.array(shape, np.int32))
        ops.append(ed.op("SLICE", [data, begin_t, size_t], [piece], op))
        pieces.append(piece)
    if len(runs) > 1:
        ops.append(
            ed.op(
                "CONCATENATION", pieces, [joined], op, axis=axis, fused_activation_function="NONE"
            )
        )
    return ops


def _high(*tensors: tfl.Tensor) -> bool:
    return any(t.rank > MAX_GPU_RANK for t in tensors)


def _fewer_high_rank_ops(ed: Editor, src, out, merged_in) -> bool:
    """Does doing a >4-D op in merged (<= 4-D) form leave fewer operators touching >4-D
    tensors?

    The RESHAPEs put around it merge with neighbouring RESHAPEs; where there is none (a >4-D
    graph input, a >4-D consumer) the new RESHAPE itself still touches the >4-D tensor.
    """
    prev, after = ed.sole_reshape_neighbours(src, out)
    before = (
        int(_high(src, out))
        + int(prev is not None and _high(prev.inputs[0], src))
        + int(after is not None and _high(out, after.outputs[0]))
    )
    lead = _high(prev.inputs[0]) if prev else _high(src) and tuple(merged_in) != tuple(src.shape)
    trail = _high(after.outputs[0]) if after else _high(out)
    return int(lead) + int(trail) < before


def _merged_transpose(shape: tuple[int, ...], perm: list[int]):
    """Drop size-1 axes and merge axes that stay adjacent: (merged input shape, merged perm)."""
    kept = [a for a in range(len(shape)) if shape[a] != 1]
    pos = {a: k for k, a in enumerate(kept)}
    order = [pos[a] for a in perm if shape[a] != 1]  # output order over kept axes
    groups: list[list[int]] = []
    for k in order:
        if groups and groups[-1][-1] + 1 == k:
            groups[-1].append(k)
        else:
            groups.append([k])
    by_input = sorted(range(len(groups)), key=lambda g: groups[g][0])
    merged_in = tuple(int(np.prod([shape[kept[k]] for k in groups[g]])) for g in by_input)
    rank_of = {g: r for r, g in enumerate(by_input)}
    merged_perm = [rank_of[g] for g in range(len(groups))]
    return merged_in, merged_perm


def _reduce_transpose(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """TRANSPOSE moving only unit axes -> RESHAPE; >4-D TRANSPOSE -> 4-D one between RESHAPEs."""
    if op.opcode != "TRANSPOSE" or op.inputs[1] is None or op.inputs[1].data is None:
        return None
    src, out = op.inputs[0], op.outputs[0]
    if not static(src, out) or src.rank == 0:
        return None
    perm = [int(p) + src.rank if int(p) < 0 else int(p) for p in op.inputs[1].data.reshape(-1)]
    merged_in, merged_perm = _merged_transpose(src.shape, perm)
    pure_reshape = merged_perm == sorted(merged_perm)
    if not pure_reshape and (src.rank <= MAX_GPU_RANK or len(merged_in) > MAX_GPU_RANK):
        return None  # already GPU-sized, or cannot be brought down to 4-D
    if pure_reshape:
        return [ed.reshape(src, out, op)]
    if not _fewer_high_rank_ops(ed, src, out, merged_in):
        return None
    ops = []
    if merged_in != src.shape:
        flat_in = ed.temp(f"{src.name}/merged", src.dtype, merged_in)
        ops.append(ed.reshape(src, flat_in, op))
        src = flat_in
    merged_out = tuple(merged_in[p] for p in merged_perm)
    moved = out if merged_out == out.shape else ed.temp(f"{out.name}/merged", out.dtype, merged_out)
    perm_t = ed.const(f"{moved.name}/perm", np.array(merged_perm, np.int32))
    ops.append(ed.op("TRANSPOSE", [src, perm_t], [moved], op))
    if moved is not out:
        ops.append(ed.reshape(moved, out, op))
    return ops


def _merged_broadcast(padded: tuple[int, ...], target: tuple[int, ...]):
    """Drop unit target axes and merge neighbours that are all kept or all repeated:
    (merged input shape, merged output shape)."""
    groups: list[list] = []  # [kept?, input size, output size]
    for p, d in zip(padded, target, strict=True):
        if d == 1:
            continue
        if groups and groups[-1][0] == (p == d):
            groups[-1][1] *= p
            groups[-1][2] *= d
        else:
            groups.append([p == d, p, d])
    return tuple(g[1] for g in groups), tuple(g[2] for g in groups)


def _broadcast_to_tile(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """BROADCAST_TO (no GPU parser) -> TILE (ungated), with RESHAPEs where the rank changes.

    Up to 4-D the TILE has the target's rank; a >4-D target is tiled in merged form (e.g. the
    5-D key/value repeat of grouped-query attention) when that leaves fewer >4-D operators.
    """
    if op.opcode != "BROADCAST_TO":
        return None
    src, out = op.inputs[0], op.outputs[0]
    if src.data is not None or not static(src, out) or out.rank == 0 or 0 in out.shape:
        return None
    if len(op.inputs) > 1 and not ed.fixed_value(op.inputs[1]):
        return None  # a target shape read from the model's inputs may differ at run time
    padded = (1,) * (out.rank - src.rank) + tuple(src.shape)
    if any(p not in (1, d) for p, d in zip(padded, out.shape, strict=True)):
        return None
    if out.rank <= MAX_GPU_RANK:
        tile_in, tile_out = padded, tuple(out.shape)
    else:
        tile_in, tile_out = _merged_broadcast(padded, tuple(out.shape))
        if not 1 <= len(tile_in) <= MAX_GPU_RANK or not _fewer_high_rank_ops(ed, src, out, tile_in):
            return None
    ops = []
    if tile_in != tuple(src.shape):
        lifted = ed.temp(f"{src.name}/tile_in", src.dtype, tile_in)
        ops.append(ed.reshape(src, lifted, op))
        src = lifted
    tiled = (
        out if tile_out == tuple(out.shape) else ed.temp(f"{out.name}/tiled", out.dtype, tile_out)
    )
    multiples = np.array([d // p for p, d in zip(tile_in, tile_out, strict=True)], np.int32)
    ops.append(ed.op("TILE", [src, ed.const(f"{tiled.name}/multiples", multiples)], [tiled], op))
    if tiled is not out:
        ops.append(ed.reshape(tiled, out, op))
    return ops


def _broadcast_mul_to_tile(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """MUL by a constant of ones that only broadcasts (the lowering's Expand for XNNPACK) where
    the GPU refuses it (a rank change ADD/MUL do not broadcast, a >4-D repeat) -> the TILE of
    ``broadcast_to_tile``: x * 1 is x exactly, so both move the same values."""
    if op.opcode != "MUL" or len(op.inputs) != 2 or len(op.outputs) != 1:
        return None
    if op.options.get("fused_activation_function", "NONE") not in ("NONE", None):
        return None
    a, b = op.inputs
    x, ones = (a, b) if b is not None and b.data is not None else (b, a)
    out = op.outputs[0]
    if x is None or ones is None or x.data is not None or ones.data is None:
        return None
    if x.dtype != np.float32 or ones.dtype != np.float32 or x.quantization is not None:
        return None
    if ones.data.size == 0 or not (ones.data == 1).all():
        return None
    padded = (1,) * (out.rank - x.rank) + tuple(x.shape)
    if out.rank < x.rank or any(p not in (1, d) for p, d in zip(padded, out.shape, strict=True)):
        return None
    target = ed.const(f"{out.name}/target", np.array(out.shape, np.int32))
    fake = tfl.Operator("BROADCAST_TO", [x, target], [out], onnx_node=op.onnx_node)
    return _broadcast_to_tile(ed, fake)


def _slice_rank_lift(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """1-D/2-D SLICE or STRIDED_SLICE (the GPU slices only 3-D/4-D) -> the same slice on a
    3-D view between two RESHAPEs: leading unit axes, begin 0, size 1 / end 1, stride 1, and
    the begin/end masks shifted past them."""
    if op.opcode not in ("SLICE", "STRIDED_SLICE"):
        return None
    src, out = op.inputs[0], op.outputs[0]
    params = op.inputs[1:]
    if (
        src.data is not None
        or not static(src, out)
        or not 1 <= src.rank <= 2
        or out.rank != src.rank
        or any(t is None or t.data is None for t in params)
        or any(op.options.get(m) for m in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask"))
        or op.options.get("offset")
    ):
        return None
    lift = 3 - src.rank
    lifted_in = ed.temp(f"{src.name}/3d", src.dtype, (1,) * lift + tuple(src.shape))
    lifted_out = ed.temp(f"{out.name}/3d", out.dtype, (1,) * lift + tuple(out.shape))
    # What the new leading axes get: SLICE (begin, size), STRIDED_SLICE (begin, end, strides).
    fills = (
        (("begin", 0), ("size", 1))
        if op.opcode == "SLICE"
        else (("begin", 0), ("end", 1), ("strides", 1))
    )
    consts = [
        ed.const(
            f"{lifted_out.name}/{name}",
            np.concatenate([np.full(lift, fill, t.data.dtype), t.data.reshape(-1)]),
        )
        for t, (name, fill) in zip(params, fills, strict=True)
    ]
    options = dict(op.options)
    for mask in ("begin_mask", "end_mask"):
        if options.get(mask):
            options[mask] = int(options[mask]) << lift
    sliced = tfl.Operator(
        op.opcode, [lifted_in, *consts], [lifted_out], options, onnx_node=op.onnx_node
    )
    return [ed.reshape(src, lifted_in, op), sliced, ed.reshape(lifted_out, out, op)]


def _gather_flat_indices(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """GATHER by N-D constant indices (the GPU takes 1-D ones) -> GATHER by the flattened
    indices, then a RESHAPE to the N-D result (torch dynamo's ``as_strided`` pooling)."""
    found = _constant_gather(op)
    if found is None or found[1].rank == 1:
        return None
    data, idx, out = found
    flat = np.ascontiguousarray(idx.data.reshape(-1)).astype(np.int32)
    planned = _gather_axis_shape(op, data, out, flat)
    if planned is None:
        return None
    axis, gathered = planned
    flat_t = ed.const(f"{idx.name}/flat", flat)
    joined = ed.temp(f"{out.name}/flat", out.dtype, gathered)
    gather = ed.op("GATHER", [data, flat_t], [joined], op, axis=axis, batch_dims=0)
    return [gather, ed.reshape(joined, out, op)]


def _fold_constant_reshape(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """RESHAPE of a constant (the GPU RESHAPE needs a runtime input) -> the reshaped constant
    itself: its consumers read the same values from a constant tensor (a view, no copy)."""
    if op.opcode != "RESHAPE":
        return None
    src, out = op.inputs[0], op.outputs[0]
    if src is None or src.data is None or not static(out) or id(out) in ed.io:
        return None
    if src.quantization is not None or src.data.size != int(np.prod(out.shape)):
        return None
    out.data = src.data.reshape(out.shape)
    return []


def _reshape_static_shape(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """RESHAPE whose target shape is computed at run time (the GPU RESHAPE takes one runtime
    input) in a fully static graph -> the same RESHAPE with its static output shape as a
    constant; the integer shape arithmetic feeding it becomes dead and is removed."""
    if op.opcode != "RESHAPE" or len(op.inputs) < 2:
        return None
    src, shape, out = op.inputs[0], op.inputs[1], op.outputs[0]
    if src is None or src.data is not None or shape is None or shape.data is not None:
        return None
    if not static(src, out, shape) or not ed.fixed_value(shape):
        return None  # a shape read from the model's inputs may differ at run time
    target = ed.const(f"{out.name}/static_shape", np.array(out.shape, np.int32))
    return [tfl.Operator("RESHAPE", [src, target], [out], dict(op.options), onnx_node=op.onnx_node)]


def _plain_slice(op: tfl.Operator) -> bool:
    """A SLICE / STRIDED_SLICE of a runtime tensor by constant parameters between static
    shapes of one rank, without ellipsis / new-axis / shrink masks or an offset: the slices
    whose indices ``_slice_ranges`` can list."""
    src, out = op.inputs[0], op.outputs[0]
    return not (
        src.data is not None
        or out.rank != src.rank
        or not static(src, out)
        or any(t is None or t.data is None for t in op.inputs[1:])
        or any(op.options.get(m) for m in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask"))
        or op.options.get("offset")
    )


def _slice_ranges(
    op: tfl.Operator, shape: tuple[int, ...], backward: bool = False
) -> list[range] | None:
    """The indices a constant SLICE / STRIDED_SLICE takes along each axis; None for a
    negative stride unless ``backward``."""
    params = [t.data.reshape(-1).tolist() for t in op.inputs[1:]]
    ranges = []
    for a, n in enumerate(shape):
        if op.opcode == "SLICE":
            begin, size = params[0][a], params[1][a]
            ranges.append(range(begin, n if size < 0 else begin + size))
            continue
        begin = None if op.options.get("begin_mask", 0) >> a & 1 else params[0][a]
        end = None if op.options.get("end_mask", 0) >> a & 1 else params[1][a]
        step = params[2][a]
        if step == 0 or (step < 0 and not backward):
            return None
        ranges.append(range(*slice(begin, end, step).indices(n)))
    return ranges


def _slice_rank_reduction(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """A >4-D SLICE / STRIDED_SLICE (the q/k/v split of a 5-D attention tensor) -> a 3-D/4-D
    STRIDED_SLICE of a view whose untouched neighbouring axes are merged, between RESHAPEs.

    Taken only where the RESHAPEs disappear into their neighbours: the sliced tensor comes from
    a RESHAPE of a <=4-D tensor and is read only by slices (they share one view), and the
    result goes to a single RESHAPE back to <=4-D."""
    if op.opcode not in ("SLICE", "STRIDED_SLICE") or len(op.inputs) < 3:
        return None
    src, out = op.inputs[0], op.outputs[0]
    if src.rank <= MAX_GPU_RANK or not _plain_slice(op):
        return None
    if (
        id(src) in ed.io
        or id(out) in ed.io
        or any(u.opcode not in ("SLICE", "STRIDED_SLICE") for u in ed.uses.get(id(src), []))
        or not _between_low_rank_reshapes(ed, src, out)
    ):
        return None
    ranges = _slice_ranges(op, src.shape)
    if ranges is None or [len(r) for r in ranges] != list(out.shape):
        return None
    groups: list[list] = []  # [whole?, size, range]
    for n, r in zip(src.shape, ranges, strict=True):
        whole = r.start == 0 and r.step == 1 and len(r) == n
        if whole and groups and groups[-1][0]:
            groups[-1][1] *= n
        elif whole:
            groups.append([True, n, None])
        else:
            groups.append([False, n, r])
    if len(groups) > MAX_GPU_RANK:
        return None
    groups = [[True, 1, None]] * (3 - len(groups)) + groups  # the GPU slices 3-D or 4-D
    merged_in = tuple(g[1] for g in groups)
    begin = np.array([0 if g[0] else g[2].start for g in groups], np.int32)
    end = np.array([g[1] if g[0] else g[2].start + len(g[2]) * g[2].step for g in groups])
    end = np.minimum(end, merged_in).astype(np.int32)
    strides = np.array([1 if g[0] else g[2].step for g in groups], np.int32)
    merged_out = tuple(g[1] if g[0] else len(g[2]) for g in groups)
    view, ops = ed.shared_view(src, merged_in, op)
    sliced = ed.temp(f"{out.name}/merged", out.dtype, merged_out)
    consts = [
        ed.const(f"{sliced.name}/{name}", arr)
        for name, arr in (("begin", begin), ("end", end), ("strides", strides))
    ]
    ops.append(ed.op("STRIDED_SLICE", [view, *consts], [sliced], op, begin_mask=0, end_mask=0))
    ops.append(ed.reshape(sliced, out, op))
    return ops


def _reverse_slice_to_gather(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """STRIDED_SLICE with a negative stride on one axis, all others whole (a flip, as
    bidirectional RNN exports write it; the GPU refuses reverse slices) -> GATHER of that axis
    by the constant indices it takes."""
    if op.opcode != "STRIDED_SLICE" or len(op.inputs) != 4:
        return None
    src, out = op.inputs[0], op.outputs[0]
    taken = _slice_ranges(op, src.shape, backward=True) if _plain_slice(op) else None
    if taken is None:
        return None
    flipped = [a for a, r in enumerate(taken) if r.step < 0]
    whole = [
        r.start == 0 and r.step == 1 and len(r) == n for r, n in zip(taken, src.shape, strict=True)
    ]
    if len(flipped) != 1 or sum(whole) != src.rank - 1:
        return None
    axis = flipped[0]
    if len(taken[axis]) != out.shape[axis]:
        return None
    indices = ed.const(f"{out.name}/indices", np.array(list(taken[axis]), np.int32))
    return [ed.op("GATHER", [src, indices], [out], op, axis=axis, batch_dims=0)]


def _reverse_to_gather(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """REVERSE_V2 (no GPU parser) over constant axes -> one GATHER by reversed indices per
    axis."""
    if op.opcode != "REVERSE_V2" or len(op.inputs) != 2:
        return None
    src, axes, out = op.inputs[0], op.inputs[1], op.outputs[0]
    if src.data is not None or axes is None or axes.data is None or not static(src, out):
        return None
    dims = sorted({int(a) % src.rank for a in axes.data.reshape(-1)}) if src.rank else []
    ops: list[tfl.Operator] = []
    cur = src
    for k, axis in enumerate(dims):
        nxt = out if k == len(dims) - 1 else ed.temp(f"{out.name}/rev{axis}", out.dtype, out.shape)
        n = src.shape[axis]
        indices = ed.const(f"{nxt.name}/indices", np.arange(n - 1, -1, -1, dtype=np.int32))
        ops.append(ed.op("GATHER", [cur, indices], [nxt], op, axis=axis, batch_dims=0))
        cur = nxt
    return ops or None


def _pad_rank_lift(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """1-D/2-D PAD, PADV2 or MIRROR_PAD (the GPU pads 3-D/4-D tensors) -> the same padding of a
    3-D view (no padding on the new leading unit axes), between two RESHAPEs."""
    if op.opcode not in ("PAD", "PADV2", "MIRROR_PAD") or len(op.inputs) < 2:
        return None
    src, pads, out = op.inputs[0], op.inputs[1], op.outputs[0]
    if (
        src.data is not None
        or pads is None
        or pads.data is None
        or not 1 <= src.rank <= 2
        or not static(src, out)
        or any(t is not None and t.data is None for t in op.inputs[2:])
    ):
        return None
    lift = 3 - src.rank
    lifted_in = ed.temp(f"{src.name}/3d", src.dtype, (1,) * lift + tuple(src.shape))
    lifted_out = ed.temp(f"{out.name}/3d", out.dtype, (1,) * lift + tuple(out.shape))
    rows = np.concatenate([np.zeros((lift, 2), pads.data.dtype), pads.data.reshape(-1, 2)])
    padded = tfl.Operator(
        op.opcode,
        [lifted_in, ed.const(f"{lifted_out.name}/paddings", rows), *op.inputs[2:]],
        [lifted_out],
        dict(op.options),
        onnx_node=op.onnx_node,
    )
    return [ed.reshape(src, lifted_in, op), padded, ed.reshape(lifted_out, out, op)]


def _unit_axes_to_reshape(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """SQUEEZE / EXPAND_DIMS (no GPU parser) with static shapes -> RESHAPE: dropping or adding
    unit axes moves no element."""
    if op.opcode not in ("SQUEEZE", "EXPAND_DIMS"):
        return None
    src, out = op.inputs[0], op.outputs[0]
    if src is None or src.data is not None or not static(src, out) or out.rank == 0:
        return None  # (a RESHAPE to an empty shape yields [1] in LiteRT, not a scalar)
    reshape = ed.reshape(src, out, op)
    return [reshape] if delegable(reshape) else None  # integer data stays off the GPU


# Elementwise builtins that compute each element alone: any shape of view gives the same values.
_ELEMENTWISE = frozenset(
    """ABS COS ELU EXP FLOOR GELU LOG LOGISTIC NEG RSQRT SIGN SIN SQRT SQUARE TANH RELU RELU6
    RELU_N1_TO_1 RELU_0_TO_1 LEAKY_RELU HARD_SWISH ADD SUB MUL DIV MAXIMUM MINIMUM POW
    SQUARED_DIFFERENCE""".split()
)


def _elementwise_rank_reduction(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """A >4-D elementwise op whose other operands are single constants (an exporter's
    unsqueeze -> add scalar -> squeeze) -> the same op on the <=4-D tensor the 5-D one was
    reshaped from, the constants as scalars; the RESHAPEs around it then cancel out."""
    if op.opcode not in _ELEMENTWISE or not op.inputs or len(op.outputs) != 1:
        return None
    runtime = [t for t in op.inputs if t is not None and t.data is None]
    if len(runtime) != 1 or runtime[0].rank <= MAX_GPU_RANK:
        return None
    src, out = runtime[0], op.outputs[0]
    others = [t for t in op.inputs if t is not None and t is not src]
    if any(t.data.size != 1 for t in others) or tuple(src.shape) != tuple(out.shape):
        return None
    if any(t.quantization is not None for t in (*others, src, out)):
        return None  # float graphs only: the scalar constants carry no quantization
    if not static(src, out) or id(src) in ed.io or id(out) in ed.io:
        return None
    if not _between_low_rank_reshapes(ed, src, out):
        return None
    prev = ed.producer[id(src)]
    shape = tuple(prev.inputs[0].shape)  # the view the RESHAPE before it cancels into
    view, ops = ed.shared_view(src, shape, op)
    result = ed.temp(f"{out.name}/view", out.dtype, shape)
    inputs = [
        view
        if t is src
        else (None if t is None else ed.const(f"{t.name}/scalar", t.data.reshape(())))
        for t in op.inputs
    ]
    ops.append(tfl.Operator(op.opcode, inputs, [result], dict(op.options), onnx_node=op.onnx_node))
    ops.append(ed.reshape(result, out, op))
    return ops


Rule = Callable[[Editor, tfl.Operator], "list[tfl.Operator] | None"]
RULES: dict[str, Rule] = {
    "gather_to_slices": _gather_to_slices,
    "gather_flat_indices": _gather_flat_indices,
    "fold_constant_reshape": _fold_constant_reshape,
    "reshape_static_shape": _reshape_static_shape,
    "transpose_rank_reduction": _reduce_transpose,
    "broadcast_to_tile": _broadcast_to_tile,
    "broadcast_mul_to_tile": _broadcast_mul_to_tile,
    "slice_rank_lift": _slice_rank_lift,
    "slice_rank_reduction": _slice_rank_reduction,
    "reverse_slice_to_gather": _reverse_slice_to_gather,
    "reverse_to_gather": _reverse_to_gather,
    "pad_rank_lift": _pad_rank_lift,
    "unit_axes_to_reshape": _unit_axes_to_reshape,
    "elementwise_rank_reduction": _elementwise_rank_reduction,
}


def _between_low_rank_reshapes(ed, src, out) -> bool:
    """``src`` comes from a RESHAPE of a <=4-D tensor and ``out`` goes only to a RESHAPE back
    to <=4-D: an op between them can run on the low-rank view, and both RESHAPEs cancel."""
    prev = ed.producer.get(id(src))
    users = ed.uses.get(id(out), [])
    return (
        prev is not None
        and prev.opcode == "RESHAPE"
        and prev.inputs[0].rank <= MAX_GPU_RANK
        and len(users) == 1
        and users[0].opcode == "RESHAPE"
        and users[0].outputs[0].rank <= MAX_GPU_RANK
    )
