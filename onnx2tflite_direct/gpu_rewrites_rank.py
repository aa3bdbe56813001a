"""``--gpu-friendly`` rules ``region_rank_reduction`` (a connected region of >4-D tensors done
at rank <= 4) and ``transpose_split`` (a TRANSPOSE of more than 4 groups of axes as block moves).

Why: the GPU delegate refuses every operator touching a tensor of rank >= 5 (``gpu_rules``,
``rank_above_4``). Exporters build such tensors for a few operators at a time: a rotary
embedding interleaves two halves by stacking them on a new 5th axis, windowed attention adds a
mask to a [batch, windows, heads, n, n] score tensor and takes its softmax, a grouped sum splits
a channel axis in two. The per-operator rank rules (``gpu_rewrites``) fix one operator between
two RESHAPEs; a chain RESHAPE -> ADD -> SOFTMAX -> RESHAPE needs every operator of the chain
rewritten with one consistent view.

The rule takes the *region* of an operator touching a >4-D runtime tensor: every operator
reachable through >4-D runtime tensors. Its RESHAPEs bound it (a RESHAPE takes any view of the
same elements in row-major order). Inside, each tensor axis belongs to an axis *class*: the
axes an operator treats as the same axis (an elementwise op's aligned operand axes, a
TRANSPOSE's permuted axes, the kept axes of a reduction...). Then

- a class of size 1 in every tensor is dropped (unless an operator works along it),
- two classes are merged when, in every tensor holding either, the second directly follows the
  first, and no operator tells them apart: a concatenation / softmax / slice / pad axis stays
  its own class, a reduction merges reduced axes only with reduced axes, a broadcast operand
  merges axes it broadcasts only with axes it also broadcasts.

Merging adjacent axes keeps every tensor's row-major order, so each tensor is replaced by a
view of the same bytes and the operators by the same operators on the views (new axis,
permutation, reduction axes, slice bounds; constants reshaped). An elementwise op the rules
refuse on that view (a 4-D constant operand with batch != 1 where a softmax keeps the last axis
apart) runs on a coarser view of its own between two RESHAPEs. A >4-D graph input or output
keeps its shape: one RESHAPE views it. The rewrite is kept only when every other tensor ends up
at most 4-D, the GPU rules (``gpu_rules``, the one source of truth) accept every new operator
and fewer operators touch >4-D tensors; otherwise nothing changes. It only moves data:
bit-exact. It is tried after every per-operator rule (the driver's ORDER), from an operator
inside the region, and replaces all of the region's operators at once (the driver skips them,
:func:`planned`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import tfl
from .gpu_rewrites import (
    _ELEMENTWISE,
    MAX_GPU_RANK,
    Editor,
    _fewer_high_rank_ops,
    _merged_transpose,
    _plain_slice,
    _slice_ranges,
    delegable,
    static,
)

_REDUCE = frozenset({"SUM", "MEAN", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"})
_SLICES = frozenset({"SLICE", "STRIDED_SLICE"})
_PADS = frozenset({"PAD", "PADV2"})
_OTHERS = frozenset({"CONCATENATION", "SOFTMAX", "TRANSPOSE", "FULLY_CONNECTED"})
_INTERIOR = _ELEMENTWISE | _REDUCE | _SLICES | _PADS | _OTHERS


@dataclass
class _Plans:
    """The regions met so far in one pass (``Editor.memo``): a region is planned when the
    driver meets the first of its operators no other rule took; all its operators are
    replaced then."""

    ops: dict[int, list[tfl.Operator]] = field(default_factory=dict)  # id(op) -> replacement
    failed: set[int] = field(default_factory=set)  # id(op) of operators of refused regions


def _high(t: tfl.Tensor | None) -> bool:
    return t is not None and t.data is None and t.rank > MAX_GPU_RANK


def _region(ed: Editor, op: tfl.Operator) -> tuple[list[tfl.Operator], list[tfl.Tensor]]:
    """The operators and >4-D runtime tensors reachable from ``op`` through such tensors
    (operators in graph order)."""
    ops: dict[int, tfl.Operator] = {}
    tensors: dict[int, tfl.Tensor] = {}
    todo = [op]
    while todo:
        cur = todo.pop()
        if id(cur) in ops:
            continue
        ops[id(cur)] = cur
        for t in (*cur.inputs, *cur.outputs):
            if not _high(t) or id(t) in tensors:
                continue
            tensors[id(t)] = t
            prod = ed.producer.get(id(t))
            if prod is not None:
                todo.append(prod)
            todo.extend(ed.uses.get(id(t), []))
    order = {id(o): k for k, o in enumerate(ed.sub.operators)}
    return sorted(ops.values(), key=lambda o: order.get(id(o), -1)), list(tensors.values())


class _Classes:
    """Union-find over axis keys; each key carries the size it has in its tensor."""

    def __init__(self) -> None:
        self.parent: dict = {}
        self.size: dict = {}

    def add(self, key, size: int) -> None:
        if key not in self.parent:
            self.parent[key] = key
            self.size[key] = size

    def find(self, key):
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


@dataclass
class _Use:
    """One operand or result of an interior operator as the operator sees it: its axis keys
    (a broadcast operand padded with leading unit axes to the result's rank)."""

    op: tfl.Operator
    slot: int  # input index, or -1 - output index
    tensor: tfl.Tensor
    keys: list
    pad: int = 0  # leading unit axes added


class _Plan:
    """Axis classes, their merge constraints and the merged view of every use."""

    def __init__(self, high: list[tfl.Tensor]) -> None:
        self.cls = _Classes()
        self.high = {id(t): t for t in high}
        self.uses: list[_Use] = []
        self.pinned: set = set()  # keys whose class stays alone
        self.colors: list[dict] = []  # per constraint: key -> token (classes must agree)
        for t in high:
            for a, n in enumerate(t.shape):
                self.cls.add((id(t), a), n)

    def use(self, op, slot, t, rank=None) -> _Use:
        """The keys of ``t`` as operand ``slot`` of ``op`` (right-aligned to ``rank``)."""
        pad = 0 if rank is None else rank - t.rank
        keys = []
        for a in range(pad):
            key = ("pad", id(op), slot, a)
            self.cls.add(key, 1)
            keys.append(key)
        for a, n in enumerate(t.shape):
            key = (id(t), a) if id(t) in self.high else ("use", id(op), slot, a)
            self.cls.add(key, n)
            keys.append(key)
        u = _Use(op, slot, t, keys, pad)
        self.uses.append(u)
        return u

    def unify(self, a: list, b: list) -> None:
        for x, y in zip(a, b, strict=True):
            self.cls.union(x, y)


def _axis(value, rank: int) -> int:
    value = int(value)
    return value + rank if value < 0 else value


def _constrain(plan: _Plan, op: tfl.Operator) -> dict | None:
    """Record ``op``'s axis identities and merge limits; returns what the rewrite needs to
    know about it, or None when the rule cannot treat it."""
    if op.opcode == "RESHAPE":
        return {}
    if op.opcode not in _INTERIOR or len(op.outputs) != 1 or not op.inputs:
        return None
    out = op.outputs[0]
    if not static(out) or out.data is not None:
        return None
    o = plan.use(op, -1, out)
    info: dict = {"out": o, "ins": []}
    if op.opcode in _ELEMENTWISE:
        for slot, t in enumerate(op.inputs):
            if t is None:
                continue
            if t.rank > out.rank or not static(t):
                return None
            u = plan.use(op, slot, t, out.rank)
            plan.unify(u.keys, o.keys)
            info["ins"].append(u)
            size = plan.cls.size
            plan.colors.append({k: size[k] == size[j] for k, j in zip(u.keys, o.keys, strict=True)})
        return info
    src = op.inputs[0]
    if src is None or src.data is not None or not static(src):
        return None
    if op.opcode == "CONCATENATION":
        axis = _axis(op.options.get("axis", 0), out.rank)
        for slot, t in enumerate(op.inputs):
            if t is None or t.rank != out.rank or not static(t):
                return None
            u = plan.use(op, slot, t)
            plan.unify(u.keys, o.keys)
            info["ins"].append(u)
        plan.pinned.add(o.keys[axis])
        info["axis"] = o.keys[axis]
        return info
    u = plan.use(op, 0, src)
    info["ins"].append(u)
    if any(t is not None and t.data is None for t in op.inputs[1:]):
        return None
    if op.opcode == "FULLY_CONNECTED":  # over the last axis; the others kept as they are
        if not op.options.get("keep_num_dims") or src.rank != out.rank:
            return None
        plan.unify(u.keys[:-1], o.keys[:-1])
        plan.pinned.update((u.keys[-1], o.keys[-1]))
    elif op.opcode == "SOFTMAX":
        plan.unify(u.keys, o.keys)
        plan.pinned.add(o.keys[-1])
    elif op.opcode == "TRANSPOSE":
        perm = [_axis(p, src.rank) for p in op.inputs[1].data.reshape(-1)]
        plan.unify([u.keys[p] for p in perm], o.keys)
    elif op.opcode in _REDUCE:
        axes = {_axis(a, src.rank) for a in op.inputs[1].data.reshape(-1)}
        kept = [k for a, k in enumerate(u.keys) if a not in axes]
        keep = bool(op.options.get("keep_dims"))
        plan.unify(u.keys if keep else kept, o.keys)
        plan.colors.append({k: a in axes for a, k in enumerate(u.keys)})
        info["reduced"] = [u.keys[a] for a in sorted(axes)]
    elif op.opcode in _SLICES:
        ranges = _slice_ranges(op, src.shape) if _plain_slice(op) else None
        if ranges is None or [len(r) for r in ranges] != list(out.shape):
            return None
        plan.unify(u.keys, o.keys)
        info["ranges"] = dict(zip(u.keys, ranges, strict=True))
        for k, r, n in zip(u.keys, ranges, src.shape, strict=True):
            if not (r.start == 0 and r.step == 1 and len(r) == n):
                plan.pinned.add(k)
    elif op.opcode in _PADS:
        pads = op.inputs[1].data.reshape(-1, 2)
        if len(pads) != src.rank:
            return None
        plan.unify(u.keys, o.keys)
        info["pads"] = {k: tuple(int(v) for v in p) for k, p in zip(u.keys, pads, strict=True)}
        for k, p in zip(u.keys, pads, strict=True):
            if p.any():
                plan.pinned.add(k)
    else:
        return None
    return info


def _groups(plan: _Plan, seqs: list[list]) -> dict | None:
    """class -> (group id, position in group) after dropping unit classes and merging
    neighbours; None where a tensor names a class twice. ``seqs``: each tensor's classes."""
    find, size = plan.cls.find, plan.cls.size
    members: dict = {}
    for key in plan.cls.parent:
        members.setdefault(find(key), []).append(key)
    pinned = {find(k) for k in plan.pinned}
    dropped = {
        c for c, keys in members.items() if c not in pinned and all(size[k] == 1 for k in keys)
    }
    colors: dict = {}
    for n, table in enumerate(plan.colors):
        for key, token in table.items():
            c = find(key)
            if colors.setdefault(c, {}).setdefault(n, token) != token:
                pinned.add(c)  # one class, two behaviours under one operator: keep it alone
    nxt: dict = {}
    prv: dict = {}
    for seq in seqs:
        seq = [c for c in seq if c not in dropped]
        if len(set(seq)) != len(seq):
            return None
        for a, c in enumerate(seq):
            nxt.setdefault(c, set()).add(seq[a + 1] if a + 1 < len(seq) else None)
            prv.setdefault(c, set()).add(seq[a - 1] if a > 0 else None)

    def joins(c) -> object | None:
        """The class merged after ``c``, if any."""
        (after,) = nxt[c] if len(nxt[c]) == 1 else (None,)
        if after is None or c in pinned or after in pinned or prv[after] != {c}:
            return None
        return after if colors.get(c, {}) == colors.get(after, {}) else None

    group: dict = {c: None for c in dropped}
    for c in nxt:
        if c in group or any(p is not None and joins(p) == c for p in prv[c]):
            continue  # a group starts at a class nothing merges into
        pos, cur = 0, c
        while cur is not None:
            group[cur] = (c, pos)
            pos += 1
            cur = joins(cur)
    return group


def _merged(plan: _Plan, group: dict, keys: list) -> tuple[list, tuple[int, ...]]:
    """(group ids in order, merged shape) of one tensor's axis keys."""
    ids: list = []
    shape: list[int] = []
    for key in keys:
        g = group[plan.cls.find(key)]
        if g is None:
            continue
        if ids and ids[-1] == g[0]:
            shape[-1] *= plan.cls.size[key]
        else:
            ids.append(g[0])
            shape.append(plan.cls.size[key])
    return ids, tuple(shape)


def _plan_region(ed: Editor, ops: list[tfl.Operator], high: list[tfl.Tensor]):
    """Replacement operators for every operator of the region, or None."""
    if not all(static(t) for t in high):
        return None
    if any(
        t.quantization is not None and np.size(t.quantization.scale) > 1
        for o in ops
        for t in (*o.inputs, *o.outputs)
        if t is not None
    ):
        return None  # per-axis scales follow an axis: left alone
    plan = _Plan(high)
    infos = {}
    for o in ops:
        info = _constrain(plan, o)
        if info is None:
            return None
        infos[id(o)] = info
    seqs = [[plan.cls.find((id(t), a)) for a in range(t.rank)] for t in high]
    seqs += [[plan.cls.find(k) for k in u.keys] for u in plan.uses]
    group = _groups(plan, seqs)
    if group is None:
        return None
    views = {}  # a graph input or output keeps its shape: its readers and writer use a view
    for t in high:
        if id(t) in ed.io:
            continue
        ids, shape = _merged(plan, group, [(id(t), a) for a in range(t.rank)])
        if len(shape) > MAX_GPU_RANK:
            return None
        views[id(t)] = ed.temp(
            f"{t.name}/r{len(shape)}", t.dtype, shape, quantization=t.quantization
        )
    out: dict[int, list[tfl.Operator]] = {}
    for o in ops:
        new = _rewrite(ed, plan, group, views, o, infos[id(o)])
        if new is None:
            return None
        out[id(o)] = new
    return out


def _rewrite(ed: Editor, plan: _Plan, group, views, op, info) -> list[tfl.Operator] | None:
    """``op`` on the merged views (input views and output reshapes included)."""
    if op.opcode == "RESHAPE":
        src = views.get(id(op.inputs[0]), op.inputs[0])
        dst = views.get(id(op.outputs[0]), op.outputs[0])
        return [ed.reshape(src, dst, op)]
    pre: list[tfl.Operator] = []
    post: list[tfl.Operator] = []

    def bind(u: _Use):
        ids, shape = _merged(plan, group, u.keys)
        if len(shape) > MAX_GPU_RANK:
            return None, ids
        t = u.tensor
        if id(t) in views and u.pad == 0:
            return views[id(t)], ids
        if t.data is not None:
            data = t.data.reshape(shape)
            return ed.const(f"{t.name}/r{len(shape)}", data, quantization=t.quantization), ids
        if u.slot >= 0:
            view, made = ed.shared_view(views.get(id(t), t), shape, op)
            pre.extend(made)
            return view, ids
        view = ed.temp(f"{t.name}/r{len(shape)}", t.dtype, shape, quantization=t.quantization)
        post.append(ed.reshape(view, t, op))
        return view, ids

    o, out_ids = bind(info["out"])
    bound = [bind(u) for u in info["ins"]]
    if o is None or any(b[0] is None for b in bound):
        return None
    in_ids = bound[0][1]
    inputs = list(op.inputs)
    for u, (t, _) in zip(info["ins"], bound, strict=True):
        inputs[u.slot] = t
    options = dict(op.options)
    group_of = {}
    for key in plan.cls.parent:
        g = group[plan.cls.find(key)]
        group_of[key] = None if g is None else g[0]
    if op.opcode == "CONCATENATION":
        options["axis"] = out_ids.index(group_of[info["axis"]])
    elif op.opcode == "TRANSPOSE":
        perm = [in_ids.index(g) for g in out_ids]
        if perm == sorted(perm):
            return [*pre, ed.reshape(inputs[0], o, op), *post]
        inputs[1] = ed.const(f"{o.name}/perm", np.array(perm, np.int32))
    elif op.opcode in _REDUCE:
        axes = sorted(
            {in_ids.index(group_of[k]) for k in info["reduced"] if group_of[k] is not None}
        )
        if not axes:
            return None
        inputs[1] = ed.const(f"{o.name}/axes", np.array(axes, np.int32))
    elif op.opcode in _SLICES or op.opcode in _PADS:
        if op.opcode in _SLICES and len(in_ids) < 3:
            return None  # the GPU slices 3-D or 4-D tensors
        per_group = _per_group(plan, group_of, info)
        if per_group is None:
            return None
        inputs[1:], options = _slice_or_pad(ed, op, o, in_ids, per_group, options)
    new = ed.op(op.opcode, inputs, [o], op, **options)
    if not delegable(new) and op.opcode in _ELEMENTWISE:
        new = _coarser_elementwise(ed, op, inputs, o, options)
        if new is None:
            return None
        return [*pre, *new, *post]
    return [*pre, new, *post] if delegable(new) else None


def _coarser_elementwise(ed: Editor, op, inputs, o, options) -> list[tfl.Operator] | None:
    """An elementwise op the rules refuse on the region's view (a 4-D constant operand with
    batch != 1, where a softmax keeps the last axis apart) on a coarser view of its own:
    neighbouring axes its operands all keep, or all broadcast, merged; RESHAPEs around it."""
    shapes = [tuple(t.shape) for t in inputs if t is not None]
    if any(len(sh) != o.rank for sh in shapes):
        return None
    groups: list[list[int]] = []
    for a in range(o.rank):
        flags = [sh[a] == o.shape[a] for sh in shapes]
        if groups and [sh[groups[-1][-1]] == o.shape[groups[-1][-1]] for sh in shapes] == flags:
            groups[-1].append(a)
        else:
            groups.append([a])
    if len(groups) == o.rank:
        return None

    def coarse(shape):
        return tuple(int(np.prod([shape[a] for a in g])) for g in groups)

    ops: list[tfl.Operator] = []
    new_inputs = []
    for t in inputs:
        if t is None or t.data is not None:
            new_inputs.append(
                t
                if t is None
                else ed.const(
                    f"{t.name}/c", t.data.reshape(coarse(t.shape)), quantization=t.quantization
                )
            )
            continue
        view, made = ed.shared_view(t, coarse(t.shape), op)
        ops.extend(made)
        new_inputs.append(view)
    result = ed.temp(f"{o.name}/c", o.dtype, coarse(o.shape), quantization=o.quantization)
    new = ed.op(op.opcode, new_inputs, [result], op, **options)
    if not delegable(new):
        return None
    return [*ops, new, ed.reshape(result, o, op)]


def _per_group(plan: _Plan, group_of, info) -> dict | None:
    """Group id -> (range taken, whole size) for a slice, or (before, after, size) for a pad:
    a group holding a sliced/padded axis holds only that axis (it is pinned)."""
    found: dict = {}
    key_info = info.get("ranges") or info.get("pads")
    for key, value in key_info.items():
        g = group_of[key]
        if g is None:
            continue
        n = plan.cls.size[key]
        if g in found:  # merged whole axes: one whole range / no padding over the product
            whole = found[g][-1] * n
            found[g] = (range(whole), whole) if "ranges" in info else (0, 0, whole)
        else:
            found[g] = (value, n) if "ranges" in info else (*value, n)
    return found


def _slice_or_pad(ed: Editor, op, o, in_ids, per_group, options):
    """The constant inputs of a SLICE / STRIDED_SLICE / PAD(V2) on the merged view."""
    if op.opcode in _PADS:
        pads = np.array([per_group[g][:2] for g in in_ids], op.inputs[1].data.dtype)
        return [ed.const(f"{o.name}/paddings", pads), *op.inputs[2:]], options
    ranges = [per_group[g][0] for g in in_ids]
    begin = np.array([r.start for r in ranges], np.int32)
    if op.opcode == "SLICE":
        size = np.array([len(r) for r in ranges], np.int32)
        return [ed.const(f"{o.name}/begin", begin), ed.const(f"{o.name}/size", size)], options
    end = np.array([r.start + len(r) * r.step for r in ranges], np.int64)
    end = np.minimum(end, [per_group[g][1] for g in in_ids]).astype(np.int32)
    strides = np.array([r.step for r in ranges], np.int32)
    options.update(begin_mask=0, end_mask=0)
    consts = [
        ed.const(f"{o.name}/{name}", arr)
        for name, arr in (("begin", begin), ("end", end), ("strides", strides))
    ]
    return consts, options


def _region_rank_reduction(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """An operator touching a >4-D runtime tensor -> its part of the region's <=4-D form (see
    the module docstring), when the whole region can be done at rank <= 4."""
    plans = ed.memo("rank_plans", _Plans)
    if op.opcode == "RESHAPE" or id(op) in plans.failed:
        return None  # a region is taken from an operator inside it, after the per-op rules
    if not any(_high(t) for t in (*op.inputs, *op.outputs)):
        return None
    ops, high = _region(ed, op)
    planned = None
    if all(o.opcode == "RESHAPE" for o in ops):
        pass  # only views of a >4-D graph input/output: nothing left to do at rank <= 4
    elif not any(id(o) in ed._replaced for o in ops):  # another rule changed it this pass
        planned = _plan_region(ed, ops, high)
    if planned is not None:  # kept only where fewer operators touch >4-D tensors
        left = sum(
            any(_high(t) for t in (*o.inputs, *o.outputs)) for new in planned.values() for o in new
        )
        planned = planned if left < len(ops) else None
    if planned is None:
        plans.failed.update(id(o) for o in ops)
        return None
    plans.ops.update(planned)
    for other in ops:  # the driver skips them (``planned``): one region, one rewrite
        if other is not op:
            ed.replace(other, planned[id(other)])
    return planned[id(op)]


def planned(ed: Editor, op: tfl.Operator) -> bool:
    """Was ``op`` replaced by a region rewrite this pass? (The driver then leaves it alone: a
    per-operator rule must not undo one part of a region.)"""
    return id(op) in ed.memo("rank_plans", _Plans).ops


def _block_moves(perm: list[int]) -> list[list[int]]:
    """``perm`` as a sequence of block moves (insertion sort: bring the axis that belongs at
    position i forward past the block before it), each a permutation of the axes as they
    stand after the previous one; merged, each moves at most 4 groups of axes."""
    cur = list(range(len(perm)))
    steps = []
    for i, want in enumerate(perm):
        j = cur.index(want)
        if j == i:
            continue
        step = list(range(i)) + [j] + list(range(i, j)) + list(range(j + 1, len(cur)))
        cur = [cur[k] for k in step]
        steps.append(step)
    return steps


def _transpose_split(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """A TRANSPOSE that still moves more than 4 groups of axes after unit axes are dropped and
    neighbours that move together are merged (a window partition of a 6-D view) -> a chain of
    block moves, each a <=4-D TRANSPOSE of a view, between RESHAPEs (which then merge with
    their neighbours)."""
    if op.opcode != "TRANSPOSE" or op.inputs[1] is None or op.inputs[1].data is None:
        return None
    src, out = op.inputs[0], op.outputs[0]
    if not static(src, out) or src.rank <= MAX_GPU_RANK or src.data is not None:
        return None
    perm = [_axis(p, src.rank) for p in op.inputs[1].data.reshape(-1)]
    merged_in, merged_perm = _merged_transpose(src.shape, perm)
    if len(merged_in) <= MAX_GPU_RANK:
        return None  # transpose_rank_reduction's case
    if not _fewer_high_rank_ops(ed, src, out, merged_in):
        return None
    ops: list[tfl.Operator] = []
    shape, cur = list(merged_in), src
    for n, step in enumerate(_block_moves(merged_perm)):
        view_in, moved_perm = _merged_transpose(tuple(shape), step)
        if len(view_in) > MAX_GPU_RANK:
            return None
        view, made = ed.shared_view(cur, view_in, op) if n == 0 else (cur, [])
        if n > 0:
            view = ed.temp(f"{out.name}/step{n}_in", out.dtype, view_in)
            made = [ed.reshape(cur, view, op)]
        shape = [shape[k] for k in step]
        moved = ed.temp(f"{out.name}/step{n}", out.dtype, tuple(view_in[k] for k in moved_perm))
        perm_t = ed.const(f"{moved.name}/perm", np.array(moved_perm, np.int32))
        ops += [*made, ed.op("TRANSPOSE", [view, perm_t], [moved], op)]
        cur = moved
    ops.append(ed.reshape(cur, out, op))
    return ops if all(delegable(o) for o in ops if o.opcode != "RESHAPE") else None


RULES = {"region_rank_reduction": _region_rank_reduction, "transpose_split": _transpose_split}
