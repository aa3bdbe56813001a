"""Tree ensembles (ai.onnx.ml TreeEnsembleClassifier, TreeEnsembleRegressor, TreeEnsemble v5).

How the trees run: four strategies, chosen per model by a cost model of LiteRT's CPU kernels
(``choose_strategy``: the estimated time of each, from per-element costs measured on LiteRT;
``benchmarks/bench_trees.py`` has the figures: ``--kernels`` the per-element costs,
``--strategy all`` every strategy on the benchmark models). LiteRT has no pointer-chasing
kernel: its GATHER copies element by element (about 2.1 ns an element), while deciding a split
with a comparison and a SELECT_V2 costs a sixth of that, so the rule is to GATHER as little as
possible.

* Path (``ml_tree_path``; LEQ/LT/GTE/GT, finite thresholds, SUM/AVERAGE): no walk at all.
  Trees padded to complete trees, every split decided at once as 0/1, the reached leaf's
  indicator built level by level with element-wise MUL/SUB (exact for 0/1), the leaf weights
  summed by one BATCH_MATMUL (``forest_scores`` then skips ``aggregate``). Its work grows as
  ``2 ** depth`` a tree: the choice for shallow trees at batches above 1.
* Grid (``ml_tree_grid``; LEQ/LT/GTE/GT in any mix, any thresholds but NaN): every split is
  decided at once by one broadcast LESS_EQUAL of feature views against a threshold grid, a
  SELECT_V2 gives every node's next node, and the walk is one GATHER per tree and level. Its
  cost grows with the node count: the choice for boosted trees (LightGBM, XGBoost, sklearn
  gradient boosting), whose trees have few nodes for their depth.
* Traversal (one mode among LEQ/LT/GTE/GT, finite thresholds): level by level, one int32 record
  per node (feature, threshold bits, children) is GATHERed for every tree (one 16-byte row,
  then TRANSPOSE and UNPACK into four contiguous fields), the feature value GATHERed from the
  ``[N, F]`` input, compared, and the child picked with SELECT_V2: about three times the grid's
  cost per tree and level, but nothing per node, so the choice for deep full trees (random
  forests of depth 8: 200+ nodes a tree against 8 levels). NaN routing
  (``nodes_missing_value_tracks_true``) costs nothing per level: a tracking node reads a copy
  of the input whose NaNs are replaced by the value its comparison sends true.
* All splits at once (EQ/NEQ/MEMBER, NaN thresholds): every node's comparison is evaluated in
  one pass (GATHER of features, one comparison per mode, BRANCH_MEMBER as a padded set
  comparison), SELECT_V2 gives ``next[N, node]``, then one batched GATHER per level walks all
  trees.

In the grid and the traversal, trees sorted by depth leave the working set once they reach
their leaves, so the walk costs the sum of the tree depths, not trees x deepest tree. The GEMM
formulation (node comparisons, path matrix, leaf selection) is not used: its multiply-adds grow
as ``nodes x leaves`` per tree (a depth-8 tree: about 65,000 per sample, 6.5 million for 100
trees; a 31-leaf LightGBM tree about 900, 450,000 for 500 trees, where LiteRT's BATCH_MATMUL
of 500 small matrices costs 0.08 to 0.11 ns a multiply-add: 40 to 50 us, more than the whole
grid strategy's time for that model), and its node values would still need one GATHER per
split to line them up tree by tree.

Leaf weights are GATHERed and reduced over the trees (SUM / REDUCE_MIN / REDUCE_MAX), then base
values, the aggregate's scaling and onnxruntime's post transform and label rules apply.

Thresholds: float32 inputs compared with float64 thresholds (``*_as_tensor``, TreeEnsemble
with double splits) are exact after rounding each threshold in the direction its comparison
needs (``x <= t`` iff ``x <= floor32(t)``). Leaf sums are float32 (onnxruntime sums in the
threshold type).

onnxruntime's classifier conventions (``tree_ensemble_aggregator.h``) are reproduced, including
the two-class rules: which class ids carry weights ("binary case"), whether all weights are
non-negative, how many base values there are, and whether class 1 has a score decide the label
rule and how the second probability column is derived.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import onnx_order
from ..registry import lowering
from . import ml_tree_grid
from .emit import Emitter
from .ml_common import (
    ML_DOMAIN,
    TRANSFORMS,
    argmax_rows,
    as_rows,
    as_text,
    float_input,
    index_where,
    label_table,
    labels_from_index,
    logistic,
    post_transform,
    probit,
    set_output,
)
from .ml_forest import (
    V5_AGGREGATES,
    V5_MODES,
    Forest,
    Leaf,
    Split,
    TreeError,
    parse_legacy,
    parse_v5,
    threshold32,
)
from .ml_tree_grid import (
    GATHER_NS,
    OP_NS,
    cost_rows,
    grid_ns,
    grid_supported,
    plan_grid,
    split_thresholds,
    walk_grid,
)
from .ml_tree_path import (
    F32_MAX,
    arithmetic_decisions,
    best_path_plan,
    decide_arithmetic,
    emit_path,
    path_ns,
    path_supported,
)

_CMP = {
    "BRANCH_LEQ": "LESS_EQUAL",
    "BRANCH_LT": "LESS",
    "BRANCH_GTE": "GREATER_EQUAL",
    "BRANCH_GT": "GREATER",
    "BRANCH_EQ": "EQUAL",
    "BRANCH_NEQ": "NOT_EQUAL",
}
INPUT_DTYPES = ("float32", "int32", "int64")
TREE_OPS = (
    "GATHER",
    "NEG",
    "RESHAPE",
    "TRANSPOSE",
    "UNPACK",
    "BITCAST",
    "LESS_EQUAL",
    "SELECT_V2",
    "SPLIT_V",
    "CONCATENATION",
    "NOT_EQUAL",
    "REDUCE_ANY",
    "SUM",
    "REDUCE_MIN",
    "REDUCE_MAX",
    "CAST",
    "GREATER_EQUAL",
    "BITWISE_XOR",
    "MINIMUM",
    "MUL",
    "SUB",
    "ADD",
    "BATCH_MATMUL",
)
TREE_NOTES = (
    "every aggregate_function, post_transform, branch mode, missing-value track and base "
    "value; 0/1 path products without a walk (shallow trees), a comparison grid + one GATHER "
    "per tree level, a level-by-level traversal, or all splits at once, chosen by a cost model "
    "measured on LiteRT (benchmarks/bench_trees.py)"
)
V5_NOTES = TREE_NOTES + (
    "; BRANCH_MEMBER as a padded set comparison; post_transform 1/2 read as onnxruntime does "
    "(LOGISTIC/SOFTMAX, the spec swaps them)"
)
CLASSIFIER_NOTES = TREE_NOTES + (
    "; int64 or string labels (GATHER from a string constant); onnxruntime's two-class rules"
)
# A walk deeper than this would be a degenerate (chain) tree: refuse rather than emit thousands
# of GATHERs.
MAX_DEPTH = 256


# ---------------------------------------------------------------------------------------------
# Emission
# ---------------------------------------------------------------------------------------------


def _split_conditions(ctx, x, forest: Forest, order: list[int], n_features: int):
    """bool [N, len(order)]: does each node (in ``order``) send the sample to its true child.

    Leaves (at the end of ``order``) ride along in the first group with a dummy comparison."""
    e = Emitter(ctx)
    groups: dict[str, list[int]] = {}
    for pos, i in enumerate(order):
        node = forest.nodes[i]
        key = node.mode if isinstance(node, Split) else None
        groups.setdefault(key, []).append(pos)
    parts = []
    leaf_pos = groups.pop(None, [])
    modes = list(groups)
    if not modes:  # only leaves
        groups, modes = {"BRANCH_LEQ": []}, ["BRANCH_LEQ"]
    groups[modes[-1]] = groups[modes[-1]] + leaf_pos  # leaves ride along with the last group
    for mode in modes:
        positions = groups[mode]
        parts.append((positions, _group_condition(ctx, x, forest, order, positions, mode)))
    flat = [p for positions, _ in parts for p in positions]
    assert flat == list(range(len(order))), "groups must follow the node order"
    conds = [c for _, c in parts]
    return conds[0] if len(conds) == 1 else e.concat(conds, 1, "cond")


def _group_condition(ctx, x, forest, order, positions, mode):
    e = Emitter(ctx)
    nodes = [forest.nodes[order[p]] for p in positions]
    feats = np.array([n.feature if isinstance(n, Split) else 0 for n in nodes], np.int32)
    tracks = np.array([isinstance(n, Split) and n.track_true for n in nodes], bool)
    xg = e.gather(x, e.const(feats, np.int32, "feat"), 1, hint="xg")
    if mode == "BRANCH_MEMBER":
        slots = max(1, max(len(n.members) for n in nodes if isinstance(n, Split)))
        table = np.full((len(nodes), slots), np.nan, np.float32)
        for r, n in enumerate(nodes):
            for c, v in enumerate(n.members if isinstance(n, Split) else ()):
                table[r, c] = threshold32(mode, v)
        x3 = ctx.reshape(xg, (x.shape[0], len(nodes), 1), "xg3")
        eq = e.op("EQUAL", x3, e.const(table), hint="member_eq", dtype=np.bool_)
        cond = e.reduce("REDUCE_ANY", eq, [2], False, "member")
    else:
        thr = np.array(
            [threshold32(mode, n.threshold) if isinstance(n, Split) else 0.0 for n in nodes],
            np.float32,
        )
        cond = e.op(_CMP[mode], xg, e.const(thr), hint="cmp", dtype=np.bool_)
    if tracks.any():
        nan = e.op("NOT_EQUAL", xg, xg, hint="isnan", dtype=np.bool_)
        if not tracks.all():
            nan = e.op("LOGICAL_AND", nan, e.const(tracks, np.bool_), hint="nan_track")
        cond = e.op("LOGICAL_OR", cond, nan, hint="cond_nan")
    return cond


def _check_forest(ctx, forest: Forest, n_feat: int) -> None:
    """Refuse a degenerate depth or a feature id outside the input."""
    depth = forest.depth()
    if depth > MAX_DEPTH:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"tree depth {depth} > {MAX_DEPTH}")
    for node in forest.nodes:
        if isinstance(node, Split) and not 0 <= node.feature < n_feat:
            ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE,
                f"feature id {node.feature} outside the {n_feat} input features",
            )


def forest_scores(ctx, x, forest: Forest, first_only: bool):
    """(scores [N, K], presence, has_t) as ``aggregate`` returns them, by the strategy the cost
    model chooses: the ``path`` strategy (``ml_tree_path``) sums leaf weights itself, the
    others walk the trees (``walk``) and ``aggregate`` reads the leaves reached."""
    _check_forest(ctx, forest, x.shape[1])
    presence = [forest.score_presence(j, first_only) for j in range(forest.n_targets)]
    choice = choose_strategy(forest, x.shape[0], x.shape[1])
    if choice[0] != "path":
        s, order = walk(ctx, x, forest, choice)
        return aggregate(ctx, s, forest, order, first_only)
    ctx.note("trees walked by the path strategy (lowering/ml_tree_path.py)")
    need_has = any(p == "dynamic" for p in presence)
    scores, has_t = emit_path(ctx, x, forest, choice[1], first_only, need_has)
    if forest.aggregate == "AVERAGE":
        e = Emitter(ctx)
        scores = e.op("DIV", scores, e.const(np.float32(len(forest.roots))), hint="avg")
    return scores, presence, has_t


def walk(ctx, x, forest: Forest, choice=None):
    """int32 [N, trees]: the node (in the returned ``order``'s numbering) each tree reaches,
    trees in any order (the aggregation does not depend on it beyond float rounding);
    ``choice``: ``choose_strategy``'s (a walking strategy), None to choose here."""
    e = Emitter(ctx)
    depth = forest.depth()
    _check_forest(ctx, forest, x.shape[1])
    splits = [i for i, n in enumerate(forest.nodes) if isinstance(n, Split)]
    mode_rank = {m: r for r, m in enumerate(V5_MODES)}
    splits.sort(key=lambda i: mode_rank[forest.nodes[i].mode])
    order = splits + [i for i, n in enumerate(forest.nodes) if isinstance(n, Leaf)]
    pos = {i: p for p, i in enumerate(order)}
    n_feat = x.shape[1]

    def child_table(attr):
        return np.array(
            [pos[getattr(forest.nodes[i], attr)] if i in split_set else pos[i] for i in order],
            np.int32,
        )

    split_set = set(splits)
    true_tab, false_tab = child_table("true"), child_table("false")
    if choice is None:
        choice = choose_strategy(forest, x.shape[0], n_feat, with_path=False)
    strategy, plan = choice
    ctx.note(f"trees walked by the {strategy} strategy (lowering/ml_trees.py)")
    if strategy == "grid":
        return walk_grid(ctx, x, forest, plan, arith=decide_arithmetic)
    if strategy == "traverse":
        return _walk_levels(ctx, x, forest, order, pos, true_tab, false_tab), order
    n = x.shape[0]
    cond = _split_conditions(ctx, x, forest, order, n_feat)
    nxt = e.op(
        "SELECT_V2",
        cond,
        e.const(true_tab, np.int32, "true"),
        e.const(false_tab, np.int32, "false"),
        hint="next",
    )
    roots = np.array([pos[r] for r in forest.roots], np.int32)
    t = len(roots)
    s = e.gather(nxt, e.const(roots, np.int32, "roots"), 1, hint="level1")
    for level in range(2, depth + 1):
        s = e.op("GATHER", nxt, s, shape=(n, t), hint=f"level{level}", axis=1, batch_dims=1)
    return s, order


# A SPLIT_V costs about as much as walking this many trees one level (bench_trees.py).
MIN_SAVED_TREE_LEVELS = 24
# Forced strategy for benchmarks and tests ("path" | "grid" | "traverse" | "all_splits", each
# where it applies, else the next that does); None = choose.
STRATEGY: str | None = None
_NAN_TRUE = {"BRANCH_LEQ": -np.inf, "BRANCH_LT": -np.inf, "BRANCH_GTE": np.inf, "BRANCH_GT": np.inf}


def traversable(forest: Forest) -> bool:
    """One comparison mode, and NaN routing expressible by replacing NaN with -inf / +inf
    (not EQ/NEQ/MEMBER, no infinite thresholds)."""
    modes = {n.mode for n in forest.nodes if isinstance(n, Split)}
    if len(modes) != 1 or next(iter(modes)) not in _NAN_TRUE:
        return False
    return all(np.isfinite(n.threshold) for n in forest.nodes if isinstance(n, Split))


# Nanoseconds per tree and level of the traversal on LiteRT's CPU kernels (a 16-byte record
# GATHER, TRANSPOSE and UNPACK, a feature GATHER, a comparison and a SELECT_V2), and its
# operators per level (bench_trees.py --kernels: benchmarks/results/trees_kernels.json).
TRAVERSE_LEVEL_NS = 6.2
TRAVERSE_LEVEL_OPS = 7


def traverse_ns(depths: list[int], rows: int) -> float:
    """Estimated LiteRT time of the traversal for ``rows`` samples (its levels, its leaf
    GATHER, its operators)."""
    per_row = TRAVERSE_LEVEL_NS * sum(depths) + GATHER_NS * len(depths)
    return rows * per_row + OP_NS * TRAVERSE_LEVEL_OPS * max(depths)


def choose_strategy(forest: Forest, rows: int, n_features: int, with_path: bool = True):
    """(strategy, plan or None): the cheapest of ``path``, ``grid`` and ``traverse`` by their
    estimated LiteRT time (``path_ns`` / ``grid_ns`` / ``traverse_ns``: per-element costs
    measured on LiteRT's kernels); ``all_splits`` where none applies (EQ/NEQ/MEMBER, NaN
    thresholds). ``with_path``: consider the path strategy (``walk`` cannot run it: it sums
    the leaf weights itself, so only SUM/AVERAGE).
    The estimate sees only whether ``rows`` is 1 (``cost_rows``), so a model lowered at two
    sample batch sizes (a dynamic batch) makes the same choice at both."""
    path_ok = with_path and path_supported(forest) and STRATEGY in (None, "path")
    if path_ok:
        r = cost_rows(rows)
        first_only = forest.n_targets == 1  # as the lowerings read the leaf weights
        need_has = any(
            forest.score_presence(j, first_only) == "dynamic" for j in range(forest.n_targets)
        )
        path_plan = best_path_plan(forest, n_features, r, first_only, need_has)
        if STRATEGY == "path":
            return "path", path_plan
        best = choose_strategy(forest, rows, n_features, with_path=False)
        depths = forest.tree_depths()
        if best[0] == "grid":
            other = grid_ns(best[1], depths, r)
        elif best[0] == "traverse":
            other = traverse_ns(depths, r)
        else:
            other = float("inf")
        if path_ns(path_plan, forest.n_targets, r, need_has) < other:
            return "path", path_plan
        return best
    grid_ok, traverse_ok = grid_supported(forest), traversable(forest)
    if STRATEGY == "all_splits" or not grid_ok:
        return ("traverse" if traverse_ok and STRATEGY != "all_splits" else "all_splits"), None
    if STRATEGY == "traverse" and traverse_ok:
        return "traverse", None
    plan = plan_grid(forest, n_features, rows)
    plan.arith = arith_table(forest, plan, rows)
    if STRATEGY is None and traverse_ok:
        depths, r = forest.tree_depths(), cost_rows(rows)
        if traverse_ns(depths, r) < grid_ns(plan, depths, r):
            return "traverse", None
    return "grid", plan


def arith_table(forest: Forest, plan, rows: int) -> bool:
    """Build the grid's next-node table by arithmetic (``ml_tree_grid.walk_grid``: the path
    strategy's comparison-free decisions in XNNPACK, then ``false + d * (true - false)``, the
    walk CASTing its float slots) rather than LESS_EQUAL and SELECT_V2: where it decides
    exactly (every split threshold finite, below FLT_MAX in magnitude, none near zero:
    ``arithmetic_decisions``), its table stays in cache (``ARITH_MAX_ELEMENTS``) and
    ``grid_ns`` finds it cheaper (``ml_tree_grid.TABLE`` forces either)."""
    if ml_tree_grid.TABLE == "select":
        return False
    thr = split_thresholds(plan, forest)
    if thr.size and not (np.all(np.abs(thr) < F32_MAX) and arithmetic_decisions(thr)):
        return False
    if ml_tree_grid.TABLE == "arith":
        return True
    depths, r = forest.tree_depths(), cost_rows(rows)
    if r * plan.slots > ml_tree_grid.ARITH_MAX_ELEMENTS:  # out of cache: no saving
        return False
    plan.arith = True
    cheaper = grid_ns(plan, depths, r)
    plan.arith = False
    return cheaper < grid_ns(plan, depths, r)


def _walk_levels(ctx, x, forest: Forest, order, pos, true_tab, false_tab):
    """Level by level: per tree, gather the node's feature and threshold, compare, pick the
    child. Trees sorted by depth leave the working set once they reach their leaves, so the
    work is the sum of the tree depths (as onnxruntime's), not trees x deepest tree."""
    e = Emitter(ctx)
    n, n_feat = x.shape
    mode = next(n.mode for n in forest.nodes if isinstance(n, Split))
    feat = np.zeros(len(order), np.int32)
    thr = np.zeros(len(order), np.float32)
    tracks = False
    for p, i in enumerate(order):
        node = forest.nodes[i]
        if isinstance(node, Split):
            feat[p] = node.feature + (n_feat if node.track_true else 0)
            thr[p] = threshold32(mode, node.threshold)
            tracks |= node.track_true
    if tracks:
        # NaN goes false by itself (every comparison with NaN is false); a node tracking NaN
        # to its true branch reads a copy of x with NaN replaced by the value that is true.
        nan = e.op("NOT_EQUAL", x, x, hint="isnan", dtype=np.bool_)
        xt = e.op("SELECT_V2", nan, e.const(np.float32(_NAN_TRUE[mode])), x, hint="x_nan_true")
        x = e.concat([x, xt], 1, "x_routes")
    depths = forest.tree_depths()
    tree_order = sorted(range(len(forest.roots)), key=lambda t: depths[t])
    sorted_depths = [depths[t] for t in tree_order]
    roots = np.array([pos[forest.roots[t]] for t in tree_order], np.int32)
    t_all = len(roots)
    # level 1: the roots are known, so their features, thresholds and children are constants
    v = e.gather(x, e.const(feat[roots], np.int32, "f1"), 1, hint="v1")
    c = e.op(_CMP[mode], v, e.const(thr[roots]), hint="c1", dtype=np.bool_)
    s = e.op(
        "SELECT_V2",
        c,
        e.const(true_tab[roots], np.int32, "tc1"),
        e.const(false_tab[roots], np.int32, "fc1"),
        hint="s1",
    )
    done = []
    start = 0
    # one int32 record per node: (feature, threshold bits, true child, false child): one
    # GATHER of 16-byte rows and an UNPACK instead of four element-wise GATHERs per level
    record = np.stack([feat, thr.view(np.int32), true_tab, false_tab], axis=1)
    record_c = e.const(record, np.int32, "record")
    perm = e.const(np.array([2, 0, 1], np.int32), np.int32, "perm")
    for level in range(2, max(depths) + 1):
        first_active = next(k for k, d in enumerate(sorted_depths) if d >= level)
        saved = (first_active - start) * (max(depths) - level + 1)  # tree-levels not walked
        if saved >= MIN_SAVED_TREE_LEVELS:  # finished trees leave the working set
            a = t_all - start
            cut = first_active - start
            head, s = _split_cols(ctx, s, [cut, a - cut], level)
            done.append(head)
            start = first_active
        a = t_all - start
        shape = (n, a)
        rec = e.gather(record_c, s, 0, hint=f"rec{level}")
        # fields outermost first: UNPACK along the last axis copies element by element, along
        # the first it copies four contiguous blocks (bench_trees.py: RF batch 1 1.97x ->
        # 1.41x onnxruntime, LightGBM 5.9x -> 3.5x)
        fields = e.op("TRANSPOSE", rec, perm, shape=(4, n, a), hint=f"fields{level}")
        f, tbits, tc, fc = (ctx.temp(np.int32, shape, f"{k}{level}") for k in "ftab")
        e.op("UNPACK", fields, out=[f, tbits, tc, fc], num=4, axis=0)
        t = e.op("BITCAST", tbits, dtype=np.float32, hint=f"thr{level}")
        v = e.op("GATHER", x, f, shape=shape, hint=f"v{level}", axis=1, batch_dims=1)
        c = e.op(_CMP[mode], v, t, hint=f"c{level}", dtype=np.bool_)
        s = e.op("SELECT_V2", c, tc, fc, hint=f"s{level}")
    done.append(s)
    return done[0] if len(done) == 1 else e.concat(done, 1, "reached")


def _split_cols(ctx, s, sizes, level):
    e = Emitter(ctx)
    return e.split(s, sizes, 1, f"part{level}_")


def leaf_tables(forest: Forest, order, first_only: bool):
    """(sum, min, max, has) float32 tables [nodes, targets] in ``order``'s numbering."""
    k = forest.n_targets
    shape = (len(order), k)
    tsum = np.zeros(shape, np.float64)
    tmin = np.full(shape, np.inf)
    tmax = np.full(shape, -np.inf)
    has = np.zeros(shape, bool)
    for p, i in enumerate(order):
        node = forest.nodes[i] if i is not None else None
        if not isinstance(node, Leaf):
            continue
        entries = node.weights[:1] if first_only else node.weights
        for t, w in entries:
            tsum[p, t] += w
            tmin[p, t] = min(tmin[p, t], w)
            tmax[p, t] = max(tmax[p, t], w)
            has[p, t] = True
    return tsum.astype(np.float32), tmin.astype(np.float32), tmax.astype(np.float32), has


def aggregate(ctx, s, forest: Forest, order, first_only: bool):
    """[N, K] raw aggregate over trees (no base values) and a per-target presence description:
    (scores, presence) where presence[k] is 'always' | 'never' | a bool [N, K] tensor."""
    e = Emitter(ctx)
    n, t = s.shape
    k = forest.n_targets
    tsum, tmin, tmax, has = leaf_tables(forest, order, first_only)
    presence = [forest.score_presence(j, first_only) for j in range(k)]
    need_has = any(p == "dynamic" for p in presence)
    has_t = None
    if need_has:
        hg = e.gather(e.const(has.astype(np.float32)), s, 0, hint="leaf_has")
        has_t = e.op(
            "GREATER",
            e.reduce("REDUCE_MAX", hg, [1], False, "has_any"),
            e.const(0.0),
            hint="has",
            dtype=np.bool_,
        )
    agg = forest.aggregate
    table = {"SUM": tsum, "AVERAGE": tsum, "MIN": tmin, "MAX": tmax}[agg]
    if agg in ("MIN", "MAX"):
        # entries without a weight are +-inf: finite stand-ins keep inf out of the arithmetic
        table = np.where(
            has, table, np.float32(np.finfo(np.float32).max * (1 if agg == "MIN" else -1))
        )
    g = e.gather(e.const(table.astype(np.float32)), s, 0, hint="leaf_w")
    opcode = {"SUM": "SUM", "AVERAGE": "SUM", "MIN": "REDUCE_MIN", "MAX": "REDUCE_MAX"}[agg]
    scores = e.reduce(opcode, g, [1], False, "agg")
    if agg == "AVERAGE":
        scores = e.op("DIV", scores, e.const(np.float32(len(forest.roots))), hint="avg")
    if agg in ("MIN", "MAX"):
        scores = mask_unscored(ctx, scores, presence, has_t)
    return scores, presence, has_t


def mask_unscored(ctx, scores, presence, has_t):
    """0 where a target received no weight (onnxruntime writes a score without a weight as 0,
    base value or not)."""
    e = Emitter(ctx)
    if has_t is not None:
        scores = e.op("SELECT_V2", has_t, scores, e.const(0.0), hint="scored")
    never = [j for j, p in enumerate(presence) if p == "never"]
    if never:
        mask = np.ones(len(presence), np.float32)
        mask[never] = 0
        scores = e.op("MUL", scores, e.const(mask), hint="unscored")
    return scores


def _rows_input(ctx):
    x = as_rows(ctx, float_input(ctx, 0))
    return x


def _parse_or_refuse(ctx, fn, *args):
    try:
        return fn(*args)
    except TreeError as err:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, str(err))


def _emit_regression(ctx, forest: Forest, out_index: int = 0):
    e = Emitter(ctx)
    x = _rows_input(ctx)
    k = forest.n_targets
    first_only = k == 1
    scores, presence, has_t = forest_scores(ctx, x, forest, first_only)
    base = np.asarray(forest.base_values, np.float32)
    if k == 1:
        origin = base[0] if len(base) == 1 else np.float32(0)
        if origin != 0:
            scores = e.op("ADD", scores, e.const(np.array([origin], np.float32)), hint="base")
        if forest.transform == "PROBIT":
            scores = probit(ctx, scores)
        elif forest.transform != "NONE":
            ctx.note(
                f"post_transform={forest.transform} with one target: onnxruntime applies only "
                "PROBIT to a single target, and so does this lowering"
            )
    else:
        if len(base) == k and np.any(base != 0):
            scores = e.op("ADD", scores, e.const(base), hint="base")
            scores = mask_unscored(ctx, scores, presence, has_t)
        scores = post_transform(ctx, scores, forest.transform)
    set_output(ctx, scores, out_index)


@lowering(
    "TreeEnsembleRegressor",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=INPUT_DTYPES,
    ranks=(1, 2),
    attrs=(),
    tflite_ops=TREE_OPS,
    notes=TREE_NOTES,
)
def lower_tree_regressor(ctx):
    attrs = ctx.node.attrs
    agg = as_text(attrs.get("aggregate_function"), "SUM")
    if agg not in V5_AGGREGATES:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"aggregate_function={agg!r}")
    k = int(attrs.get("n_targets", 1) or 1)
    forest = _parse_or_refuse(ctx, parse_legacy, attrs, "target", k, agg)
    if forest.transform not in TRANSFORMS:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"post_transform={forest.transform!r}")
    _emit_regression(ctx, forest)


@lowering(
    "TreeEnsemble",
    onnx_order,
    domain=ML_DOMAIN,
    since=5,
    dtypes=INPUT_DTYPES,
    ranks=(2,),
    tflite_ops=TREE_OPS,
    notes=V5_NOTES,
)
def lower_tree_ensemble(ctx):
    forest = _parse_or_refuse(ctx, parse_v5, ctx.node.attrs)
    if forest.transform in ("LOGISTIC", "SOFTMAX"):
        ctx.note(
            f"post_transform={int(ctx.attr('post_transform', 0))} computed as {forest.transform}, "
            "as onnxruntime does (the ONNX spec swaps 1 = SOFTMAX and 2 = LOGISTIC)"
        )
    _emit_regression(ctx, forest)


# ---------------------------------------------------------------------------------------------
# Classifier
# ---------------------------------------------------------------------------------------------


def _classifier_check(node, graph):
    if label_table(node.attrs, "classlabels_int64s") is None:
        return "unsupported_attribute_value: no classlabels_int64s / classlabels_strings"
    return None


def _full(ctx, t, n):
    """``t`` broadcast to ``[n, 1]`` (a constant stand-in is ``[1, 1]``)."""
    e = Emitter(ctx)
    if tuple(t.shape) == (n, 1):
        return t
    return e.op(
        "BROADCAST_TO",
        t,
        e.const(np.array([n, 1], np.int32), np.int32, "shape"),
        shape=(n, 1),
        hint="full",
    )


def _col(ctx, x, j, hint):
    e = Emitter(ctx)
    n = x.shape[0]
    return e.op(
        "SLICE",
        x,
        e.const(np.array([0, j], np.int32), np.int32, "begin"),
        e.const(np.array([n, 1], np.int32), np.int32, "size"),
        shape=(n, 1),
        hint=hint,
    )


@lowering(
    "TreeEnsembleClassifier",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=INPUT_DTYPES,
    ranks=(1, 2),
    tflite_ops=TREE_OPS + ("ARG_MAX", "LOGISTIC", "SOFTMAX"),
    notes=CLASSIFIER_NOTES,
    extra_check=_classifier_check,
)
def lower_tree_classifier(ctx):
    e = Emitter(ctx)
    attrs = ctx.node.attrs
    labels = label_table(attrs, "classlabels_int64s")
    c = len(labels)
    if c < 2:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "a classifier with fewer than 2 classes")
    forest = _parse_or_refuse(ctx, parse_legacy, attrs, "class", c, "SUM")
    if forest.transform not in TRANSFORMS:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"post_transform={forest.transform!r}")
    x = _rows_input(ctx)
    n = x.shape[0]
    scores, presence, has_t = forest_scores(ctx, x, forest, False)
    base = np.asarray(forest.base_values, np.float32)
    y_out = 0 if ctx.driver.graph.used(ctx.node.outputs[0]) else None
    z_name = ctx.node.outputs[1] if len(ctx.node.outputs) > 1 else ""
    z_out = 1 if z_name and ctx.driver.graph.used(z_name) else None
    if c > 2:
        if len(base) > c:
            ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"{len(base)} base_values for {c} classes"
            )
        if len(base):
            b = np.zeros(c, np.float32)
            b[: len(base)] = base
            scores = e.op("ADD", scores, e.const(b), hint="base")
        if y_out is not None:
            ranked = scores
            if has_t is not None or any(p == "never" for p in presence[len(base) :]):
                scored = has_t
                if scored is None:
                    scored = e.const(np.array([p != "never" for p in presence], bool), np.bool_)
                elif len(base):
                    covered = np.zeros(c, bool)
                    covered[: len(base)] = True
                    scored = e.op("LOGICAL_OR", scored, e.const(covered, np.bool_), hint="t")
                lowest = e.const(np.float32(-np.finfo(np.float32).max))
                ranked = e.op("SELECT_V2", scored, scores, lowest, hint="ranked")
            labels_from_index(ctx, argmax_rows(ctx, ranked), labels, y_out)
        if z_out is not None:
            set_output(ctx, post_transform(ctx, scores, forest.transform), z_out)
        return
    _binary_classifier(ctx, forest, scores, presence, base, labels, n, y_out, z_out)


def _binary_classifier(ctx, forest, scores, presence, base, labels, n, y_out, z_out):
    """onnxruntime's two-class FinalizeScores + _set_score_binary + write_scores."""
    e = Emitter(ctx)
    if any(p == "dynamic" for p in presence):
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE,
            "two-class ensemble where only some trees give a class a weight: onnxruntime's "
            "result then depends on per-sample score presence, which is not reproduced",
        )
    h0, h1 = (p == "always" for p in presence)
    p0, p1 = _col(ctx, scores, 0, "p0"), _col(ctx, scores, 1, "p1")
    add = -1
    if len(base) == 2:
        if h1:
            p1 = e.op("ADD", p0, e.const(np.array([base[1]], np.float32)), hint="p1b")
            p0 = e.op("NEG", p1, hint="p0b")
            two = True
        else:
            p1 = e.op("ADD", p1, e.const(np.array([base[1]], np.float32)), hint="p1b")
            p0 = e.op("ADD", p0, e.const(np.array([base[0]], np.float32)), hint="p0b")
            two = True
            h1 = False
    elif len(base) == 1:
        p0 = e.op("ADD", p0, e.const(np.array([base[0]], np.float32)), hint="p0b")
        two = h1
    elif len(base) == 0:
        add = 3
        two = h1
    else:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"{len(base)} base_values for 2 classes")
    # _set_score_binary
    if two and h1:
        pos = p1
    else:
        pos = p0 if h0 else e.const(np.zeros((1, 1), np.float32))
    binary_case = len(forest.class_ids) == 1
    positive = all(w >= 0 for nd in forest.nodes if hasattr(nd, "weights") for _, w in nd.weights)
    if binary_case:
        cut = 0.5 if positive else 0.0
        win = e.op("GREATER", pos, e.const(np.float32(cut)), hint="win", dtype=np.bool_)
        literal = False
        add_rule = "01" if positive else "23"
    else:
        win = e.op("GREATER", pos, e.const(np.float32(0.0)), hint="win", dtype=np.bool_)
        literal = labels.dtype == np.int64  # onnxruntime: 1 / 0, not classlabels
        add_rule = str(add)
    if y_out is not None:
        idx = index_where(ctx, win, "win_index")
        if literal:  # onnxruntime writes the literal 1 / 0 (for string labels: their index)
            labels_from_index(ctx, idx, np.arange(2, dtype=np.int64), y_out)
        else:
            labels_from_index(ctx, idx, labels, y_out)
    if z_out is None:
        return
    tr = forest.transform
    zero = e.const(np.zeros((1, 1), np.float32))
    # write_scores reads a score without a weight as 0
    z0 = p0 if h0 else zero
    if two:
        z1 = p1 if h1 else zero
        z = e.concat([_full(ctx, z0, n), _full(ctx, z1, n)], 1, "z")
        set_output(ctx, post_transform(ctx, z, tr), z_out)
        return
    s = _full(ctx, z0, n)  # one score: the second column is derived
    if tr == "PROBIT" or add_rule == "-1":
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE,
            "two-class ensemble with one score column and "
            + ("post_transform=PROBIT" if tr == "PROBIT" else "one base value")
            + ": onnxruntime writes only the first probability column",
        )
    if add_rule == "01":
        if tr == "LOGISTIC":  # onnxruntime: [1 - logistic(s), logistic(s)] (measured)
            s = logistic(ctx, s)
        z = e.concat([e.op("SUB", e.const(np.ones((1, 1), np.float32)), s, hint="1ms"), s], 1, "z")
    elif tr == "LOGISTIC":
        z = e.concat([logistic(ctx, e.op("NEG", s, hint="ns"), "lneg"), logistic(ctx, s)], 1, "z")
    else:  # mixed weights (2 / 3): [-s, s] whichever class wins
        z = e.concat([e.op("NEG", s, hint="ns"), s], 1, "z")
    set_output(ctx, z, z_out)
