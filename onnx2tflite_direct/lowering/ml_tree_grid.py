"""Tree ensembles as one comparison grid and a walk of one GATHER per level: the ``grid``
strategy of ``ml_trees`` (which chooses between its strategies by a measured cost model).

Why this shape: LiteRT's GATHER copies element by element (about 2.1 ns an element on x86-64,
``benchmarks/bench_trees.py --kernels``), while deciding a split with a broadcast LESS_EQUAL
and a SELECT_V2 costs a sixth of that. So the splits are all decided with element-wise ops,
and the walk is left with the one GATHER per tree and level that pointer chasing needs
(``s = next[s]``), where the level-by-level traversal GATHERs a node record and a feature
value per tree and level.

* One comparison for four branch modes, exactly: every split becomes ``v <= t`` on one of four
  views of its feature: ``x`` or ``-x``, with NaN kept or replaced by ``-inf``. BRANCH_GTE reads
  ``-x <= -t``; BRANCH_GT and BRANCH_LT take their children swapped (``x > t`` is "not
  ``x <= t``", ``x < t`` is "not ``-x <= -t``"). Negation is exact, so no threshold moves.
  NaN: every comparison with NaN is false, and the ``-inf`` view makes it true; a node reads the
  view that sends NaN where onnxruntime does (its missing-value track: true branch or not).
* The grid ``[R, M]``: row ``r`` compares one view of one feature (``x_rows [N, R, 1]`` against
  the thresholds ``[R, M]``, broadcast); a feature with many splits takes several rows.
  ``SELECT_V2(cond, true_child, false_child)`` gives ``next [N, R * M]``.
* The arithmetic table (``ml_trees.arith_table`` chooses it by ``grid_ns``): where every split
  threshold is finite, below FLT_MAX in magnitude and not near zero, the slots are decided
  without a comparison, ``d = min(relu((nextafter(t) - v) * 2^127), 1)`` (the path strategy's
  ``decide_arithmetic``: exact 0/1 for any ``v`` but NaN, infinities included, so the views
  only replace NaN, by +inf or -inf as the node's track says), and ``next = false_slot + d *
  (true_slot - false_slot)`` in float32 (slots are below 2^24: exact); SUB, MUL, MINIMUM, MUL,
  ADD all run in XNNPACK, 0.16 ns a slot less than LESS_EQUAL and SELECT_V2 at 16 rows. The
  walk CASTs each level's float slots to int32 (0.3 ns a tree and level). Its float tables
  must stay in cache (``ARITH_MAX_ELEMENTS`` a block).
* Leaves: a leaf the walk goes on from (its tree is walked deeper than the leaf) needs a self
  loop in ``next``: it fills a free grid slot (both children of a leaf slot are the slot itself,
  so its comparison is ignored), else an extra row, or at batch 1 the tail (one constant row of
  self loops after the grid, a CONCATENATION). A leaf at its tree's last walked level has no
  slot in ``next``: only the leaf tables read it.
* The walk: roots are constants, then ``s = GATHER(next, s)`` per level; trees sorted by depth
  leave the working set once they reach their leaves (``SPLIT_V``) when that saves enough
  (``walk_schedule``). Batches beyond ``block_rows`` run block by block, so the per-sample
  tables the walk reads stay in cache.

The result is the slot each tree reaches (``[N, trees]``) and the node in each slot, which is
what ``ml_trees.aggregate`` reads leaf weights by. ``grid_ns`` estimates its LiteRT time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .emit import Emitter
from .ml_forest import Forest, Split, threshold32

# mode -> (reads -x, children swapped)
_FORM = {
    "BRANCH_LEQ": (False, False),
    "BRANCH_GT": (False, True),
    "BRANCH_GTE": (True, False),
    "BRANCH_LT": (True, True),
}
MIN_WIDTH = 8
# A SPLIT_V (and its share of the final CONCATENATION) costs about as much as this many
# GATHERed tree-levels of the walk.
MIN_SAVED_TREE_LEVELS = 24
# Row blocks (``block_rows``): the per-sample tables of one block stay within this many bytes.
BLOCK_BYTES = 1024 * 1024
MIN_BLOCK = 4
BLOCK: int | None = None  # forced rows per block (benchmarks); None = BLOCK_BYTES


def grid_supported(forest: Forest) -> bool:
    """Every split is LEQ/LT/GTE/GT with a non-NaN threshold (a NaN threshold would need the
    missing-value track applied after the comparison)."""
    return all(
        n.mode in _FORM and not np.isnan(n.threshold) for n in forest.nodes if isinstance(n, Split)
    )


@dataclass
class GridPlan:
    """Where every node sits in the grid and what the grid's constants are."""

    views: list[tuple[bool, bool]]  # (negated, NaN -> -inf) views, in concatenation order
    row_src: np.ndarray  # int32 [R]: the column of the concatenated views a row compares
    thresholds: np.ndarray  # float32 [R, M]
    true_child: np.ndarray  # int32 [R * M + leaf_slots]: the next slot if the split holds
    false_child: np.ndarray  # int32 [R * M + leaf_slots]
    slot_node: list  # node index in each slot, None where empty
    pos: dict  # node index -> slot
    leaf_slots: int = 0  # leaves after the grid (self loops, not compared)
    cuts: list = field(default_factory=list)  # walk_schedule: where finished trees leave
    arith: bool = False  # the next-node table by arithmetic (``arith_table``), not SELECT_V2

    @property
    def slots(self) -> int:
        """Compared slots (the grid)."""
        return int(self.thresholds.size)

    @property
    def rows(self) -> int:
        return int(self.thresholds.shape[0])


def _view(node: Split) -> tuple[bool, bool, bool]:
    """(negated, NaN -> -inf, swapped) for a split: NaN must make the LESS_EQUAL true when it
    should take the branch the comparison's true result takes."""
    neg, swap = _FORM[node.mode]
    # unswapped: true result -> true child; swapped: true result -> false child
    nan_low = node.track_true != swap
    return neg, nan_low, swap


def _width(counts: list[int], leaves: int, leaves_in_grid: bool, full: bool = False) -> int:
    """Row width M minimising the estimated time of the grid: SLOT_NS a slot, GATHER_NS a row
    (its feature view; none when the rows are the views' columns in order: ``full``, every
    column has splits, and each takes one row, leaves included), and with a tail (leaves
    beyond the free slots, at batch 1) TAIL_NS for every slot the CONCATENATION copies."""
    if not counts:
        return max(MIN_WIDTH, min(leaves, 64))
    c = np.asarray(counts)
    best, best_m = None, MIN_WIDTH
    for m in range(
        MIN_WIDTH, max(MIN_WIDTH, int(c.max()), -(-(int(c.sum()) + leaves) // len(c))) + 1
    ):
        rows = int(np.sum(-(-c // m)))
        over = max(0, leaves - (rows * m - int(c.sum())))
        tail = 0
        if leaves_in_grid:
            rows += -(-over // m)
        else:
            tail = over
        picked = 0 if full and rows == len(c) else GATHER_NS * rows
        cost = SLOT_NS * rows * m + picked + (TAIL_NS * (rows * m + tail) if tail else 0)
        if best is None or cost < best:
            best, best_m = cost, m
    return best_m


def walk_schedule(sorted_depths: list[int], rows: int) -> list[tuple[int, int]]:
    """The levels where finished trees leave the walk: (level, first tree still walking), trees
    sorted by depth. They leave when that saves at least MIN_SAVED_TREE_LEVELS GATHERed
    elements (at the batch ``cost_rows`` assumes)."""
    cuts, start = [], 0
    deepest = max(sorted_depths)
    for level in range(2, deepest + 1):
        first_active = next(k for k, d in enumerate(sorted_depths) if d >= level)
        saved = (first_active - start) * (deepest - level + 1)
        if first_active > start and saved * cost_rows(rows) >= MIN_SAVED_TREE_LEVELS:
            cuts.append((level, first_active))
            start = first_active
    return cuts


def walked_levels(sorted_depths: list[int], cuts) -> list[int]:
    """Levels each tree (sorted by depth) is walked: up to the cut it leaves at, else all (and
    at least the first, which every tree takes, even a single leaf)."""
    walked = [max(1, *sorted_depths)] * len(sorted_depths)
    start = 0
    for level, first_active in cuts:
        walked[start:first_active] = [level - 1] * (first_active - start)
        start = first_active
    return walked


def _revisited_leaves(forest: Forest, walked: dict[int, int]) -> set[int]:
    """Leaves some path reaches before its tree's last walked level (``walked``: tree ->
    levels); a leaf shared by several paths or trees counts if any of them does."""
    out: set[int] = set()
    for t, root in enumerate(forest.roots):
        stack = [(root, 0)]
        while stack:
            i, d = stack.pop()
            node = forest.nodes[i]
            if isinstance(node, Split):
                stack += [(node.true, d + 1), (node.false, d + 1)]
            elif d < walked[t]:
                out.add(i)
    return out


def plan_grid(forest: Forest, n_features: int, rows: int = 1) -> GridPlan:
    """The grid for ``rows`` samples. Leaves need a slot in the next-node table (a self loop)
    only when the walk goes on after reaching them: a leaf at its tree's walked depth is read
    by the leaf tables only and goes after every table. The others fill the rows' free slots,
    then extra rows, or at batch 1 the tail (``leaf_slots``: one constant row of self loops
    that a CONCATENATION copies, a fifth of a compared slot's cost)."""
    splits = [i for i, n in enumerate(forest.nodes) if isinstance(n, Split)]
    depths = forest.tree_depths()
    tree_order = sorted(range(len(forest.roots)), key=lambda t: depths[t])
    sorted_depths = [depths[t] for t in tree_order]
    cuts = walk_schedule(sorted_depths, rows)
    walked = dict(zip(tree_order, walked_levels(sorted_depths, cuts), strict=True))
    revisited = _revisited_leaves(forest, walked)
    all_leaves = [i for i, n in enumerate(forest.nodes) if not isinstance(n, Split)]
    leaves = [i for i in all_leaves if i in revisited]
    final = [i for i in all_leaves if i not in revisited]
    leaves_in_grid = rows != 1
    tail: list[int] = []
    forms = {i: _view(forest.nodes[i]) for i in splits}
    views = sorted({f[:2] for f in forms.values()}) or [(False, False)]
    view_index = {v: k for k, v in enumerate(views)}
    by_src: dict[int, list[int]] = {}
    for i in splits:
        src = view_index[forms[i][:2]] * n_features + forest.nodes[i].feature
        by_src.setdefault(src, []).append(i)
    sources = sorted(by_src)
    full = sources == list(range(len(views) * n_features))
    m = _width([len(by_src[s]) for s in sources], len(leaves), leaves_in_grid, full)
    row_src: list[int] = []
    slot_node: list = []
    for src in sources:
        nodes = by_src[src]
        for r in range(0, len(nodes), m):
            chunk = nodes[r : r + m]
            row_src.append(src)
            slot_node += chunk + [None] * (m - len(chunk))
    free = [p for p, i in enumerate(slot_node) if i is None]
    for p, i in zip(free, leaves, strict=False):
        slot_node[p] = i
    rest = leaves[len(free) :]
    if not leaves_in_grid:
        tail, rest = rest, []
    for r in range(0, len(rest), m):
        chunk = rest[r : r + m]
        row_src.append(sources[0] if sources else 0)
        slot_node += chunk + [None] * (m - len(chunk))
    if not row_src:  # no splits and no leaves in the grid: one empty row
        row_src, slot_node = [0], [None] * m
    grid = len(slot_node)
    slot_node += tail
    g = len(slot_node)
    slot_node += final
    pos = {i: p for p, i in enumerate(slot_node) if i is not None}
    thr = np.zeros(grid, np.float32)
    tc = np.arange(g, dtype=np.int32)
    fc = np.arange(g, dtype=np.int32)
    for i in splits:
        node, p = forest.nodes[i], pos[i]
        neg, _, swap = forms[i]
        t = threshold32(node.mode, node.threshold)
        thr[p] = -t if neg else t
        a, b = pos[node.true], pos[node.false]
        tc[p], fc[p] = (b, a) if swap else (a, b)
    return GridPlan(
        views,
        np.asarray(row_src, np.int32),
        thr.reshape(len(row_src), m),
        tc,
        fc,
        slot_node,
        pos,
        len(tail),
        cuts,
    )


# Nanoseconds on LiteRT's CPU kernels at 1 thread (x86-64; ``bench_trees.py --kernels``,
# benchmarks/results/trees_kernels.json): a walk GATHER per element, a grid slot (broadcast
# LESS_EQUAL + SELECT_V2), a tail slot (CONCATENATION copy), and the fixed cost of an operator.
GATHER_NS = 2.1
SLOT_NS = 0.34
TAIL_NS = 0.08
OP_NS = 40.0
# The arithmetic table (``ml_trees.arith_table``): what a grid slot costs less when decided
# and turned into its next slot by SUB, MUL, MINIMUM, MUL, ADD in XNNPACK than by LESS_EQUAL and
# SELECT_V2, at one sample (``grid`` - ``grid_arith``: 0.386 - 0.277) and at 16 in rows of 84
# slots (``grid16`` - ``grid_arith16``: 0.385 - 0.223), and the CAST of the walk's float slots
# to int32 per tree and level (``walk_cast``).
ARITH_SAVED_1_NS = 0.11
ARITH_SAVED_NS = 0.16
WALK_CAST_NS = 0.3
# Elements (rows x slots) of one block's arithmetic table: its float tensors (four bytes an
# element, several alive at once) stay in cache up to about the size the saving was measured
# at (``grid_arith16``: 53,760); beyond, they stream from memory and the saving is gone (a
# 100-tree depth-8 forest at 16 rows, 262,000 elements: the per-slot figures would have
# preferred the grid to the traversal, which runs faster).
ARITH_MAX_ELEMENTS = 65536
# Forced next-node table ("select" | "arith" where it applies; benchmarks and tests); None: the
# cheaper by ``grid_ns``.
TABLE: str | None = None


def cost_rows(rows: int) -> int:
    """The batch size the cost estimates assume: 1, or a typical batch for any other (so a
    dynamic batch, lowered at two sample sizes, gets the same decisions at both)."""
    return 1 if rows == 1 else 16


def grid_ns(plan: GridPlan, depths: list[int], rows: int) -> float:
    """Estimated LiteRT time of ``walk_grid`` for ``rows`` samples: the grid, the copy that
    appends the tail (grid and tail), the GATHERs (row features, then per tree one per level
    it is walked, and its leaf), and the operators."""
    walked = walked_levels(sorted(depths), plan.cuts)
    copied = plan.slots + plan.leaf_slots if plan.leaf_slots else 0
    per_row = (
        SLOT_NS * plan.slots
        + TAIL_NS * copied
        + GATHER_NS * (plan.rows + sum(walked) + len(depths))
    )
    ops = 8 + max(depths) + 2 * len(plan.cuts)
    if plan.arith:  # the views' NaN select, the table's extra ops, a CAST a level
        per_row -= (ARITH_SAVED_1_NS if rows == 1 else ARITH_SAVED_NS) * plan.slots
        per_row += WALK_CAST_NS * sum(walked)
        ops += 4 + max(depths)
    return rows * per_row + OP_NS * ops


def split_thresholds(plan: GridPlan, forest: Forest) -> np.ndarray:
    """The thresholds of the grid slots that hold a split (the others compare nothing)."""
    keep = [
        p
        for p, i in enumerate(plan.slot_node[: plan.slots])
        if i is not None and isinstance(forest.nodes[i], Split)
    ]
    return plan.thresholds.reshape(-1)[keep]


def negate_bits(ctx, v):
    """``-v`` bit for bit: BITCAST, BITWISE_XOR of the sign bit, BITCAST. Not NEG: XNNPACK
    takes NEG and runs with denormals flushed, so a subnormal input became 0 and decided a
    split against a threshold between them the wrong way (onnxruntime keeps it)."""
    e = Emitter(ctx)
    bits = e.op("BITCAST", v, shape=v.shape, dtype=np.int32, hint="x_bits")
    sign = e.const(np.array(-(2**31), np.int32), np.int32, "sign_bit")
    flipped = e.op("BITWISE_XOR", bits, sign, hint="x_neg_bits")
    return e.op("BITCAST", flipped, shape=v.shape, dtype=np.float32, hint="x_neg")


def _views(ctx, x, views, nan_high: bool = False):
    """The concatenated feature views ``[N, len(views) * F]`` (no XNNPACK arithmetic on
    them: ``negate_bits``). ``nan_high``: NaN becomes +inf in the views that keep it (for the
    arithmetic table, which decides ``v <= t`` exactly for every ``v`` but NaN)."""
    e = Emitter(ctx)
    made = {}
    isnan = None
    for neg, low in views:
        v = x
        if neg:
            if "neg" not in made:
                made["neg"] = negate_bits(ctx, x)
            v = made["neg"]
        if low or nan_high:
            if isnan is None:
                isnan = e.op("NOT_EQUAL", x, x, hint="x_isnan", dtype=np.bool_)
            sub = np.float32(-np.inf if low else np.inf)
            v = e.op("SELECT_V2", isnan, e.const(sub), v, hint="x_nan_low" if low else "x_nan")
        made[(neg, low)] = v
    parts = [made[v] for v in views]
    return parts[0] if len(parts) == 1 else e.concat(parts, 1, "x_views")


def block_rows(plan: GridPlan, rows: int) -> int:
    """Rows per block: the per-sample tables (decisions and next slots, 5 bytes a slot) of one
    block stay within ``BLOCK_BYTES``, so the walk's GATHERs hit the cache; at least
    ``MIN_BLOCK`` rows (a dynamic batch, lowered at 2 and 3 rows, then makes one block at both)
    unless the batch is 1."""
    if rows == 1 or BLOCK is not None:
        return min(rows, BLOCK or 1)
    if plan.arith:  # its float tables: ARITH_MAX_ELEMENTS a block
        return min(rows, max(MIN_BLOCK, ARITH_MAX_ELEMENTS // (plan.slots + plan.leaf_slots)))
    per_row = 5 * (plan.slots + plan.leaf_slots)
    return min(rows, max(MIN_BLOCK, BLOCK_BYTES // per_row))


def walk_grid(ctx, x, forest: Forest, plan: GridPlan, arith=None):
    """int32 ``[N, trees]``: the slot each tree reaches (trees in depth order), and the node in
    each slot (``plan.slot_node``). Batches beyond ``block_rows`` run block by block (SPLIT_V of
    the feature rows, one grid and walk per block, CONCATENATION of the reached slots).
    ``arith``: ``ml_tree_path.decide_arithmetic``, for a plan whose table is built by
    arithmetic (``ml_trees.arith_table``)."""
    e = Emitter(ctx)
    n, n_feat = x.shape
    xv = _views(ctx, x, plan.views, nan_high=plan.arith)
    r, m = plan.thresholds.shape
    if list(plan.row_src) != list(range(xv.shape[1])):
        src = e.const(plan.row_src, np.int32, "row_src")
        xv = e.op(
            "GATHER", xv, src, shape=(n, r), dtype=np.float32, hint="x_rows", axis=1, batch_dims=0
        )
    g = r * m
    depths = forest.tree_depths()
    tree_order = sorted(range(len(forest.roots)), key=lambda t: depths[t])
    shared = {
        "roots": e.const(
            np.array([plan.pos[forest.roots[t]] for t in tree_order], np.int32), np.int32
        ),
    }
    if plan.arith:
        # slots without a split compare against 1 (any threshold the arithmetic decides
        # exactly: their two next slots are the same)
        thr = np.ones(g, np.float32)
        keep = [
            p
            for p, i in enumerate(plan.slot_node[:g])
            if i is not None and isinstance(forest.nodes[i], Split)
        ]
        thr[keep] = plan.thresholds.reshape(-1)[keep]
        arith_thr = thr.reshape(r, m)
        tc, fc = plan.true_child.astype(np.float32), plan.false_child.astype(np.float32)
        shared["step"] = e.const(tc[:g] - fc[:g], np.float32, "slot_step")
        shared["fc"] = e.const(fc[:g], np.float32, "false_slot")
    else:
        shared["thr"] = e.const(plan.thresholds)
        shared["tc"] = e.const(plan.true_child[:g], np.int32, "true_slot")
        shared["fc"] = e.const(plan.false_child[:g], np.int32, "false_slot")
    b = block_rows(plan, n)
    sizes = [b] * (n // b) + ([n % b] if n % b else [])
    parts = e.split(xv, sizes, 0, "x_block") if len(sizes) > 1 else [xv]
    reached = []
    for k, part in enumerate(parts):
        rows = part.shape[0]
        x3 = ctx.reshape(part, (rows, r, 1), f"x_rows3_{k}")
        if plan.arith:  # 0/1 floats, then false_slot + d * (true_slot - false_slot): exact
            d = arith(ctx, x3, arith_thr, arith_thr.shape, once=True)
            d = ctx.reshape(d, (rows, g), f"decisions{k}")
            step = e.op("MUL", d, shared["step"], hint=f"step{k}")
            nxt = e.op("ADD", step, shared["fc"], hint=f"next{k}")
        else:
            cond = e.op("LESS_EQUAL", x3, shared["thr"], hint=f"decide{k}", dtype=np.bool_)
            cond = ctx.reshape(cond, (rows, g), f"decisions{k}")
            nxt = e.op("SELECT_V2", cond, shared["tc"], shared["fc"], hint=f"next{k}")
        if plan.leaf_slots:
            key = f"loops{rows}"
            if key not in shared:
                loops = np.tile(plan.true_child[g:], (rows, 1))
                shared[key] = e.const(loops, nxt.dtype, "leaf_slot")
            nxt = e.concat([nxt, shared[key]], 1, f"next_all{k}")
        sorted_depths = [depths[t] for t in tree_order]
        reached.append(walk_next(ctx, nxt, sorted_depths, shared["roots"], plan.cuts))
    s = reached[0] if len(reached) == 1 else e.concat(reached, 0, "reached_rows")
    return s, plan.slot_node


def walk_next(ctx, nxt, sorted_depths: list[int], roots, cuts):
    """Follow ``next [N, slots]`` from every root (``roots``: their slots, trees sorted by
    depth) for as many levels as the tree is deep, finished trees leaving at ``cuts``
    (``walk_schedule``; the plan counted on them: leaves past a tree's last level have no
    slot in ``next``)."""
    e = Emitter(ctx)
    n = nxt.shape[0]
    t_all = roots.shape[0]
    dtype = nxt.dtype  # float32: the arithmetic table, its slots CAST to int32 to walk on
    s = e.op(
        "GATHER", nxt, roots, shape=(n, t_all), dtype=dtype, hint="level1", axis=1, batch_dims=0
    )
    cuts = dict(cuts)
    done, start = [], 0
    for level in range(2, max(sorted_depths) + 1):
        if level in cuts:
            a, cut = t_all - start, cuts[level] - start
            head, s = e.split(s, [cut, a - cut], 1, f"part{level}_")
            done.append(head)
            start = cuts[level]
        a = t_all - start
        if s.dtype != np.int32:
            s = e.cast(s, np.int32, hint=f"slot{level}")
        s = e.op(
            "GATHER",
            nxt,
            s,
            shape=(n, a),
            dtype=dtype,
            hint=f"level{level}",
            axis=1,
            batch_dims=1,
        )
    done.append(s)
    s = done[0] if len(done) == 1 else e.concat(done, 1, "reached")
    return s if s.dtype == np.int32 else e.cast(s, np.int32, hint="reached_slot")
