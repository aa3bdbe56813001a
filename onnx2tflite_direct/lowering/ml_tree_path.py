"""Tree ensembles without a walk: the ``path`` strategy of ``ml_trees`` (which chooses between
its strategies by a measured cost model), for shallow trees.

Why: every other strategy follows each tree with one GATHER per level (``s = next[s]``), and
LiteRT's GATHER copies element by element (about 2.1 ns an element). Here no GATHER depends on
the sample: each tree is padded to a complete tree of its depth, every split is decided at
once, and the leaf each sample reaches is found as a product of 0/1 decisions, level by level,
with element-wise MUL. Its work grows as ``2 ** depth`` a tree, so the cost model picks it for
shallow trees (scikit-learn gradient boosting at depth 3, XGBoost at depth 4 to 6).

* Layout: samples are the innermost axis (``[rows, N]``), so the one GATHER, which picks each
  node's feature row from the transposed input, copies ``N`` contiguous values an index.
* Feature views, exactly: ``x`` is clamped to ``[-FLT_MAX, FLT_MAX]`` and NaN replaced by
  ``FLT_MAX`` (``x_hi``) or ``-FLT_MAX`` (``x_lo``); ``-x_hi`` and ``-x_lo`` are the negated
  views. A split reads the view that decides as onnxruntime does (``ml_tree_grid``'s forms:
  ``x <= t`` or ``-x <= -t``, children swapped for LT/GT, NaN sent where its missing-value
  track says). Every threshold is finite with ``|t| < FLT_MAX`` (else this strategy does
  not apply), so clamping changes no decision: ``+inf <= t`` and ``FLT_MAX <= t`` are both
  false, ``-inf <= t`` and ``-FLT_MAX <= t`` both true. No XNNPACK float op touches the
  input before it is decided (``_views``): XNNPACK flushes subnormals.
* Decisions: each node's 0/1 "comparison holds" ``c [rows, N]``, from the GATHERed rows by
  ``_decide_arithmetic`` (SUB, MUL, MINIMUM in XNNPACK) where no threshold is near zero,
  else by one LESS_EQUAL against a constant threshold column and a CAST. Boosted trees
  repeat their (feature, threshold) pairs (histogram bins; padded leaves all decide "holds"):
  with ``shared`` each distinct pair is decided once and every level GATHERs its rows from
  those decisions (a row copy, 2.3 ns, against 2.55 ns + 0.19 ns a sample to decide it;
  XGBoost's 150 depth-4 trees: 2,250 rows, 656 distinct).
* Level by level: ``I_k [T * 2^k, N]`` is the indicator of the node each sample is at on
  level ``k`` (one 1 per tree and sample); ``a = I_k * c_k`` and ``b = I_k - a`` are the
  indicators of its two children, and ``I_{k+1} = CONCATENATION(a, b)``: node ``j`` of level
  ``k`` has children ``j`` and ``j + T * 2^k``. Products and differences of 0/1 are exact. A
  leaf above its tree's last level is padded: its threshold ``FLT_MAX`` always holds, so it
  carries its indicator down its first branch unchanged.
* Leaf values: ``scores [K, N] = W [K, T * 2^d] x I_d``, as two BATCH_MATMULs of the last
  level's halves ``a`` and ``b`` (no copy of the largest level) and an ADD. Every product but
  one per tree is an exact zero, so the sum is that of the reached leaves (in another order
  than onnxruntime's, as every strategy's SUM is). Trees of different depths form groups, each
  padded to its own depth only; trees that score one target (gradient boosting's one tree per
  class and round) can form a group per target, whose leaf sum multiplies only that target's
  weights. Group sums land in their target rows by CONCATENATION, or by one 0/1 product where
  several groups share a target.
* Choices (``best_path_plan``): grouping by target or not, shared decisions or not, by
  ``path_ns``; the strategy against the walks by ``ml_trees.choose_strategy``.

``path_ns`` estimates its LiteRT time for the cost model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .emit import Emitter
from .ml_forest import Forest, Leaf, Split, threshold32
from .ml_tree_grid import _FORM, OP_NS, _view, negate_bits

F32_MAX = np.float32(np.finfo(np.float32).max)
# Deepest tree this strategy pads: 2 ** depth leaves a tree (the cost model decides long before)
MAX_PATH_DEPTH = 10
# view rows: (negated, NaN -> -FLT_MAX); the order of the concatenated views
_VIEWS = ((False, False), (False, True), (True, False), (True, True))


def path_supported(forest: Forest) -> bool:
    """LEQ/LT/GTE/GT splits with finite thresholds below FLT_MAX in magnitude (clamping the
    input must not change a decision), finite leaf weights (a padded leaf's 0 times its
    weight must be 0), trees at most MAX_PATH_DEPTH deep, an aggregate that sums."""
    if forest.aggregate not in ("SUM", "AVERAGE"):
        return False
    for n in forest.nodes:
        if isinstance(n, Split):
            if n.mode not in _FORM:
                return False
            t = threshold32(n.mode, n.threshold)
            if not (np.isfinite(t) and abs(t) < F32_MAX):
                return False
        elif not all(np.isfinite(w) and abs(w) <= F32_MAX for _, w in n.weights):
            return False
    return max(forest.tree_depths()) <= MAX_PATH_DEPTH


@dataclass
class PathGroup:
    """Trees of one depth (and, split by target, one target): their decision rows and their
    leaves."""

    depth: int
    trees: list[int]
    row_src: np.ndarray  # int32 [T * (2^d - 1)]: the view row each decision row reads
    thresholds: np.ndarray  # float32 [same]
    leaves: list  # node index at each of the T * 2^d leaf positions (None: never reached)
    targets: list[int]  # the targets its leaves give weights to (its leaf table's rows)

    @property
    def decisions(self) -> int:
        return int(self.row_src.size)


@dataclass
class PathPlan:
    groups: list[PathGroup]
    views: list[tuple[bool, bool]]  # the views the rows read, in concatenation order
    # Distinct decisions: with ``shared``, each distinct (view row, threshold) is decided once
    # (``unique_src`` / ``unique_thr``) and every level GATHERs its rows from them (``pick``:
    # per group, per decision row, in level order).
    unique_src: np.ndarray
    unique_thr: np.ndarray
    pick: list[np.ndarray]
    shared: bool = False

    @property
    def decisions(self) -> int:
        return sum(g.decisions for g in self.groups)

    @property
    def decided(self) -> int:
        """Rows the decisions are computed for."""
        return int(self.unique_src.size) if self.shared else self.decisions

    def decided_sources(self) -> np.ndarray:
        if self.shared:
            return self.unique_src
        return np.concatenate([g.row_src for g in self.groups])

    def decided_thresholds(self) -> np.ndarray:
        if self.shared:
            return self.unique_thr
        return np.concatenate([g.thresholds for g in self.groups])

    @property
    def leaf_slots(self) -> int:
        return sum(len(g.leaves) for g in self.groups)


def _below(forest: Forest, level: list) -> list:
    """The next level of padded trees: every node's "comparison holds" child, then every
    node's other child (a leaf goes on as itself down the first; None: a copy no sample
    reaches)."""
    first, second = [], []
    for i in level:
        node = forest.nodes[i] if i is not None else None
        if isinstance(node, Split):
            swap = _view(node)[2]
            holds, fails = (node.false, node.true) if swap else (node.true, node.false)
            first.append(holds)
            second.append(fails)
        else:
            first.append(i)
            second.append(None)
    return first + second


def _tree_targets(forest: Forest, first_only: bool) -> list[tuple[int, ...]]:
    """Per tree, the targets its leaves give a weight to."""
    out = []
    for root in forest.roots:
        seen: set[int] = set()
        for i in forest.reachable_leaves(root):
            weights = forest.nodes[i].weights
            seen.update(k for k, _ in (weights[:1] if first_only else weights))
        out.append(tuple(sorted(seen)))
    return out


def plan_path(
    forest: Forest, n_features: int, first_only: bool = False, by_target: bool = False
) -> PathPlan:
    """The decision rows and leaves of every group of trees: one group per depth, or with
    ``by_target`` per depth and target for trees that score one target only (gradient
    boosting's one tree per class and round): each group's leaf sums then multiply only its
    own target's weights, ``1 / K`` of the multiply-adds, at the price of more operators."""
    depths = forest.tree_depths()
    tree_targets = _tree_targets(forest, first_only)
    by_depth: dict[tuple, list[int]] = {}
    for t, d in enumerate(depths):
        key = tree_targets[t] if by_target and len(tree_targets[t]) == 1 else None
        by_depth.setdefault((max(1, d), key), []).append(t)
    used = {_view(n)[:2] for n in forest.nodes if isinstance(n, Split)} or {(False, False)}
    views = [v for v in _VIEWS if v in used]
    index = {v: k for k, v in enumerate(views)}
    groups = []
    for d, key in sorted(by_depth, key=lambda dk: (dk[0], dk[1] or ())):
        trees = by_depth[(d, key)]
        targets = sorted({k for t in trees for k in tree_targets[t]}) or [0]
        level = [forest.roots[t] for t in trees]
        src: list[int] = []
        thr: list[np.float32] = []
        for _ in range(d):
            for i in level:
                node = forest.nodes[i] if i is not None else None
                if isinstance(node, Split):
                    neg, low, _ = _view(node)
                    t32 = threshold32(node.mode, node.threshold)
                    src.append(index[(neg, low)] * n_features + node.feature)
                    thr.append(np.float32(-t32 if neg else t32))
                else:  # padded: always the first branch (every view value is <= FLT_MAX)
                    src.append(0)
                    thr.append(F32_MAX)
            level = _below(forest, level)
        groups.append(
            PathGroup(
                d, trees, np.asarray(src, np.int32), np.asarray(thr, np.float32), level, targets
            )
        )
    index: dict[tuple[int, int], int] = {}
    pick = []
    for g in groups:
        keys = zip(g.row_src.tolist(), g.thresholds.view(np.int32).tolist(), strict=True)
        pick.append(np.array([index.setdefault(key, len(index)) for key in keys], np.int32))
    unique = np.array(list(index), np.int32).reshape(-1, 2)
    return PathPlan(groups, views, unique[:, 0], unique[:, 1].view(np.float32), pick)


def best_path_plan(forest: Forest, n_features: int, rows: int, first_only: bool, need_has):
    """The cheapest (``path_ns``) of the plans with and without groups per target, each with
    every decision row decided or the distinct ones decided once (``shared``)."""
    plans = []
    for by_target in (False, True) if forest.n_targets > 1 else (False,):
        plan = plan_path(forest, n_features, first_only, by_target)
        plans += [plan, replace(plan, shared=True)]
    return min(plans, key=lambda p: path_ns(p, forest.n_targets, rows, need_has))


def leaf_weight_table(forest: Forest, group: PathGroup, first_only: bool):
    """float32 [targets, leaf slots] of ``group``: the summed weights of the leaf at each slot
    for each of ``group.targets`` (0 where none), and 1 where that leaf gives the target a
    weight."""
    row = {k: r for r, k in enumerate(group.targets)}
    table = np.zeros((len(row), len(group.leaves)), np.float64)
    has = np.zeros((len(row), len(group.leaves)), np.float32)
    for p, i in enumerate(group.leaves):
        node = forest.nodes[i] if i is not None else None
        if isinstance(node, Leaf):
            for tgt, w in node.weights[:1] if first_only else node.weights:
                table[row[tgt], p] += w
                has[row[tgt], p] = 1
    return table.astype(np.float32), has


# Nanoseconds on LiteRT's CPU kernels at 1 thread (``bench_trees.py --kernels``,
# benchmarks/results/trees_kernels.json): a decision per row and sample (the row GATHER's copy,
# LESS_EQUAL, CAST: ``path_decision``), the row GATHER's per-index cost (``path_row``), an
# indicator element per level (MUL, SUB and the CONCATENATION of both branches:
# ``path_level``), the leaf sums' BATCH_MATMUL per leaf slot and sample, whatever the number of
# targets (it reads the indicator: ``path_leaf``), and per target (``path_target_mac``).
PATH_DECISION_NS = 0.32
PATH_ROW_NS = 2.4
# the same decided without a comparison (``_decide_arithmetic``: path_arith_decision,
# path_arith_row)
PATH_ARITH_NS = 0.19
PATH_ARITH_ROW_NS = 2.55
PATH_LEVEL_NS = 0.16
PATH_LEAF_NS = 0.145
PATH_MAC_NS = 0.025
# A level's row GATHER from the distinct decisions: per row and per row and sample
# (``path_pick``).
PATH_PICK_ROW_NS = 2.3
PATH_PICK_NS = 0.01


def path_ns(plan: PathPlan, k: int, rows: int, need_has: bool = False) -> float:
    """Estimated LiteRT time of ``emit_path`` for ``rows`` samples and ``k`` targets (``2k``
    sums with the presence counts)."""
    decisions = plan.decisions  # one a node of the padded trees, = indicator elements
    decided = plan.decided
    if arithmetic_decisions(plan.decided_thresholds()):
        per_row = PATH_ARITH_NS * decided + PATH_LEVEL_NS * decisions
        fixed = PATH_ARITH_ROW_NS * decided
    else:
        per_row = PATH_DECISION_NS * decided + PATH_LEVEL_NS * decisions
        fixed = PATH_ROW_NS * decided
    if plan.shared:  # the levels' row GATHERs
        per_row += PATH_PICK_NS * decisions
        fixed += PATH_PICK_ROW_NS * decisions
    for g in plan.groups:
        sums = len(g.targets) * (2 if need_has else 1)
        per_row += (PATH_LEAF_NS + PATH_MAC_NS * sums) * len(g.leaves)
    ops = 12 + 3 * len(plan.groups) + sum(3 * g.depth for g in plan.groups)
    if plan.shared:
        ops += sum(g.depth for g in plan.groups)
    return rows * per_row + fixed + OP_NS * ops


# No threshold this close to zero: a difference ``nextafter(t) - v`` is then 0 or at least
# 2 ** -123 in magnitude, a normal float, so flushing subnormals (FTZ/DAZ, ARMv7 NEON) cannot
# change it.
SAFE_MIN = np.float32(2.0**-100)
_HUGE = np.float32(2.0**127)


def _next_up(thr: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # FLT_MAX (a padded leaf's threshold) -> inf, wanted
        return np.nextafter(thr.astype(np.float32), np.float32(np.inf))


def arithmetic_decisions(thr: np.ndarray) -> bool:
    """Can ``_decide_arithmetic`` decide against these thresholds exactly on any float mode."""
    up = _next_up(thr)
    return bool(np.all(np.isposinf(up) | (np.abs(up) >= SAFE_MIN)))


def _decide_arithmetic(ctx, rows, thr, shape=(-1, 1), once: bool = False):
    """0/1 float ``rows <= thr`` without a comparison, in ops XNNPACK takes (SUB, MUL, MUL with
    RELU, MINIMUM: 0.2 ns an element against 0.36 for LESS_EQUAL and CAST): ``v <= t`` iff
    ``u - v > 0`` with ``u = nextafter(t, +inf)`` (``v`` is finite: clamped, NaN replaced);
    the sign of a float difference is exact, and two multiplications by 2 ** 127 carry any
    positive difference (at least 2 ** -123 here: ``arithmetic_decisions``) to at least 1,
    which MINIMUM makes exactly 1, while RELU makes 0 of a zero or negative one. Overflow
    (``u = inf`` for a padded leaf, or ``|u - v| > FLT_MAX``) stays on the right side.
    ``shape``: the thresholds' shape against ``rows`` (a column here; the grid's ``[R, M]``
    against its ``[N, R, 1]`` rows in ``ml_tree_grid``). ``once``: one multiplication, which
    already carries 2 ** -124 to 8 (the smallest positive difference: |u| >= 2 ** -100;
    the grid's table, where each op is an element pass)."""
    e = Emitter(ctx)
    up = _next_up(thr).reshape(shape)
    diff = e.op("SUB", e.const(up), rows, hint="margin")
    big = e.const(_HUGE)
    up_once = diff if once else e.op("MUL", diff, big, hint="margin_up")
    scaled = e.op("MUL", up_once, big, hint="margin_relu", fused_activation_function="RELU")
    return e.op("MINIMUM", scaled, e.const(np.float32(1)), hint="decisions")


def _views(ctx, xt, views):
    """``[len(views) * F, N]``: the clamped, NaN-replaced views of the transposed input.

    Clamped with comparisons and SELECT_V2, not MAXIMUM/MINIMUM: XNNPACK runs its float
    operators with denormals flushed (a subnormal input would become 0, and decide a split
    against a threshold between them the other way), and it takes neither op, so the
    input's values reach the decisions as given (negation flips the sign bit:
    ``ml_tree_grid.negate_bits``)."""
    e = Emitter(ctx)
    low_bound = e.const(np.float32(-F32_MAX))
    above = e.op("GREATER_EQUAL", xt, low_bound, hint="x_above", dtype=np.bool_)
    below = e.op("LESS_EQUAL", xt, e.const(F32_MAX), hint="x_below", dtype=np.bool_)
    made = {}
    for neg, low in views:
        nan_value = F32_MAX if neg == low else -F32_MAX  # NaN in x before the negation
        key = ("base", nan_value)
        if key not in made:
            # NaN fails both tests; +inf only ``below``, -inf only ``above``
            if nan_value > 0:
                inner = e.op("SELECT_V2", above, xt, e.const(np.float32(-F32_MAX)), hint="x_lo")
                made[key] = e.op("SELECT_V2", below, inner, e.const(F32_MAX), hint="x_view")
            else:
                inner = e.op("SELECT_V2", below, xt, e.const(F32_MAX), hint="x_hi")
                made[key] = e.op("SELECT_V2", above, inner, e.const(-F32_MAX), hint="x_view")
        v = made[key]
        made[(neg, low)] = negate_bits(ctx, v) if neg else v
    parts = [made[v] for v in views]
    return parts[0] if len(parts) == 1 else e.concat(parts, 0, "x_views")


# The grid strategy's arithmetic next-node table (``ml_tree_grid.walk_grid``, handed it by
# ``ml_trees``: the grid module cannot import this one, which imports it).
decide_arithmetic = _decide_arithmetic


def emit_path(ctx, x, forest: Forest, plan: PathPlan, first_only: bool, need_has: bool):
    """float32 ``[N, K]``: the leaf weights summed over the trees (no base values, no
    averaging), and with ``need_has`` a bool ``[N, K]``: does some reached leaf give the
    target a weight (``ml_trees.aggregate``'s ``has_t``; counted by the same BATCH_MATMUL,
    sums of 0/1 are exact)."""
    e = Emitter(ctx)
    n, _ = x.shape
    xt = e.transpose(x, [1, 0], hint="x_t")
    table = _views(ctx, xt, plan.views)
    src, thr = plan.decided_sources(), plan.decided_thresholds()
    rows = e.gather(table, src, 0, hint="x_rows")
    if arithmetic_decisions(thr):
        dec = _decide_arithmetic(ctx, rows, thr)
    else:
        holds = e.op("LESS_EQUAL", rows, e.const(thr.reshape(-1, 1)), hint="decide", dtype=np.bool_)
        dec = e.cast(holds, np.float32, hint="decisions")
    sizes = [len(g.trees) * 2**k for g in plan.groups for k in range(g.depth)]
    if plan.shared:  # each level's rows GATHERed from the distinct decisions
        picks = np.concatenate(plan.pick)
        bounds = np.cumsum([0, *sizes])
        parts = [
            e.gather(dec, picks[a:b], 0, hint="level")
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
    else:
        parts = e.split(dec, sizes, 0, "level") if len(sizes) > 1 else [dec]
    one = e.const(np.float32(1))
    sums, rows_of = [], []  # per group its [targets (+ presence counts), N] sums
    p = 0
    k = forest.n_targets
    for g in plan.groups:
        ind = None
        for level in range(g.depth):
            holds = parts[p]
            p += 1
            tag = f"{g.depth}_{len(sums)}_{level}"
            first = holds if ind is None else e.op("MUL", ind, holds, hint=f"i{tag}")
            other = e.op("SUB", one if ind is None else ind, first, hint=f"o{tag}")
            if level + 1 < g.depth:
                ind = e.concat([first, other], 0, f"ind{tag}")
        table, has = leaf_weight_table(forest, g, first_only)
        rows = list(g.targets)
        if need_has:
            table = np.concatenate([table, has])
            rows += [k + j for j in g.targets]
        # the last level's two halves summed apart (no CONCATENATION of the largest level)
        half = table.shape[1] // 2
        a = e.matmul(e.const(table[:, :half]), first, hint="leaf_sum_a")
        b = e.matmul(e.const(np.ascontiguousarray(table[:, half:])), other, hint="leaf_sum_b")
        sums.append(e.op("ADD", a, b, hint="leaf_sum"))
        rows_of += rows
    width = 2 * k if need_has else k
    stacked = sums[0] if len(sums) == 1 else e.concat(sums, 0, "group_sums")
    if rows_of == list(range(width)):  # every target's sum in its own row already
        total = stacked
    else:  # add each group's sums into their targets' rows (one 0/1 product)
        place = np.zeros((width, len(rows_of)), np.float32)
        place[rows_of, np.arange(len(rows_of))] = 1
        total = e.matmul(e.const(place), stacked, hint="target_sums")
    total = e.transpose(total, [1, 0], hint="sums")
    if not need_has:
        return total, None
    scores, counts = e.split(total, [k, k], 1, "sum_part")
    has_t = e.op("GREATER", counts, e.const(np.float32(0)), hint="has", dtype=np.bool_)
    return scores, has_t
