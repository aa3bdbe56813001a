"""The ``path`` tree strategy (``lowering/ml_tree_path.py``) against onnxruntime: every split
decided at once, the reached leaf found as a product of 0/1 decisions, no walk.

Each test forces the strategy (``ml_trees.STRATEGY = "path"``) and checks from the written ops
that it ran (its report note and the BATCH_MATMULs of the leaf weights),
then compares with onnxruntime: labels exactly, scores within the harness tolerance. Inputs
sit on the thresholds (ties), carry NaN, +-inf and -0.0; every order mode with and without
missing-value tracks; classifier and regressor; batch 1, 16 and a dynamic batch.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from harness import check_conversion
from onnx import helper
from test_ops_ml import (
    ML,
    ORDER_MODES,
    _features,
    _full_trees,
    _legacy_attrs,
    _ml_model,
    _seed,
    _tie_features,
    classifier_model,
    random_trees,
    regressor_model,
)

F = 6


@pytest.fixture
def path(monkeypatch):
    from onnx2tflite_direct.lowering import ml_trees

    monkeypatch.setattr(ml_trees, "STRATEGY", "path")


def _ran_path(chk):
    notes = [n for r in chk.result.report["nodes"] for n in r.get("notes", [])]
    assert any("walked by the path strategy" in n for n in notes), notes
    assert chk.ops.get("BATCH_MATMUL", 0) >= 1 and "UNPACK" not in chk.ops, chk.ops


def _model(kind, a, w, k, rows, tracks, **extra):
    if kind == "regressor":
        attrs = _legacy_attrs(a, w, "target", tracks)
        node = helper.make_node(
            "TreeEnsembleRegressor", ["x"], ["y"], domain=ML, n_targets=k, **attrs, **extra
        )
        return _ml_model([node], [("x", np.float32, (rows, F))], [("y", np.float32, (rows, k))])
    attrs = _legacy_attrs(a, w, "class", tracks)
    node = helper.make_node(
        "TreeEnsembleClassifier",
        ["x"],
        ["label", "probabilities"],
        domain=ML,
        classlabels_int64s=list(range(k)),
        **attrs,
        **extra,
    )
    return _ml_model(
        [node],
        [("x", np.float32, (rows, F))],
        [("label", np.int64, (rows,)), ("probabilities", np.float32, (rows, k))],
    )


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
@pytest.mark.parametrize("mode", [*ORDER_MODES, "mixed"])
@pytest.mark.parametrize("tracks", [False, True])
@pytest.mark.parametrize("rows", [1, 16])
def test_path_modes_ties_nan_inf(kind, mode, tracks, rows, path):
    """Each order mode (and all four mixed) on integer inputs equal to the thresholds, with NaN
    (sent by the missing-value track or not), +-inf and -0.0: the clamped, NaN-replaced views
    and the ``-v <= -nextafter(t)`` second branch decide exactly as onnxruntime."""
    rng = np.random.default_rng(_seed("path", kind, mode, tracks, rows))
    modes = ORDER_MODES if mode == "mixed" else (mode,)
    k = 3 if kind == "classifier" else 2
    a, w = random_trees(rng, 7, 4, modes=modes, tracks=tracks, ints=True, n_out=k)
    x = np.concatenate([_tie_features(16, _seed(mode, rows)), _features(16, seed=rows, nan=0.2)])
    x = x[np.random.default_rng(rows).permutation(len(x))[:rows]] if rows < 16 else x[:16]
    chk = check_conversion(_model(kind, a, w, k, rows, tracks), feeds={"x": x})
    _ran_path(chk)


@pytest.mark.parametrize("rows", [1, 16])
def test_path_mixed_depths_and_single_leaves(rows, path):
    """Trees of depth 0 (one leaf) to 5, many leaves above the last level (padded: a leaf
    carries its indicator down its first branch): one group of trees per depth."""
    rng = np.random.default_rng(_seed("depths", rows))
    parts = [random_trees(rng, 3, d, modes=ORDER_MODES, tracks=True, n_out=3) for d in (1, 3, 5)]
    a = {key: [] for key in parts[0][0]}
    w = {key: [] for key in parts[0][1]}
    offset = 0
    for pa, pw in parts:
        for key in a:
            a[key] += [v + offset for v in pa[key]] if key == "tree" else pa[key]
        for key in w:
            w[key] += [v + offset for v in pw[key]] if key == "tree" else pw[key]
        offset = max(a["tree"]) + 1
    for t in (offset, offset + 1):  # single-leaf trees
        for key in a:
            a[key].append(0)
        a["tree"][-1], a["mode"][-1] = t, "LEAF"
        w["tree"].append(t), w["node"].append(0), w["id"].append(t % 3), w["w"].append(0.5)
    x = _tie_features(16, 3)[:rows]
    chk = check_conversion(_model("classifier", a, w, 3, rows, True), feeds={"x": x})
    _ran_path(chk)
    from onnx2tflite_direct.lowering.ml_forest import parse_legacy
    from onnx2tflite_direct.lowering.ml_tree_path import plan_path

    forest = parse_legacy(_legacy_attrs(a, w, "class", True), "class", 3, "SUM")
    groups = plan_path(forest, F).groups
    assert len(groups) >= 3 and 1 in [g.depth for g in groups]
    decide_muls = 2 if "MINIMUM" in chk.ops else 0  # arithmetic decisions: 2 MULs
    assert chk.ops["MUL"] - decide_muls == sum(g.depth - 1 for g in groups), chk.ops


@pytest.mark.parametrize("aggregate", ["SUM", "AVERAGE"])
@pytest.mark.parametrize("weights", ["dense", "sparse"])
def test_path_regressor_aggregates_and_base(aggregate, weights, path):
    """SUM and AVERAGE over several targets, sparse weights (targets some trees never score),
    base values."""
    rng = np.random.default_rng(_seed("agg", aggregate, weights))
    a, w = random_trees(rng, 9, 4, n_out=3, weights=weights)
    model = regressor_model(a, w, 3, aggregate_function=aggregate, base_values=[0.5, -0.25, 1.0])
    chk = check_conversion(model, feeds={"x": _features(nan=0.1)})
    _ran_path(chk)


@pytest.mark.parametrize("rows", [1, 16])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("by_target", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_path_trees_per_class(rows, sparse, by_target, shared, path, monkeypatch):
    """Gradient-boosting-style classifiers (each tree scores one class), trees in one group
    or split by class (``by_target``, which the cost model picks for many trees: one leaf sum
    per class, concatenated in class order, or placed by a 0/1 product with presence counts),
    also with a class some samples get no weight for; every decision row decided, or the
    distinct ones decided once and GATHERed by each level (``shared``)."""
    from onnx2tflite_direct.lowering import ml_tree_path, ml_trees

    def plan(forest, n_features, rows, first_only, need_has):
        return replace(
            ml_tree_path.plan_path(forest, n_features, first_only, by_target), shared=shared
        )

    monkeypatch.setattr(ml_trees, "best_path_plan", plan)
    rng = np.random.default_rng(_seed("per_class", rows, sparse))
    a, w = random_trees(rng, 12, 3, modes=ORDER_MODES, tracks=True, n_out=3, weights="class_tree")
    if sparse:  # class 2 loses its weights on some leaves: its presence depends on the sample
        drop = [i for i, k in enumerate(w["id"]) if k == 2][::2]
        w = {key: [v for i, v in enumerate(vals) if i not in drop] for key, vals in w.items()}
    x = np.concatenate([_tie_features(8, rows), _features(8, seed=rows, nan=0.2)])[:rows]
    chk = check_conversion(_model("classifier", a, w, 3, rows, True), feeds={"x": x})
    _ran_path(chk)
    from onnx2tflite_direct.lowering.ml_forest import parse_legacy

    forest = parse_legacy(_legacy_attrs(a, w, "class", True), "class", 3, "SUM")
    groups = len(ml_tree_path.plan_path(forest, F, False, by_target).groups)
    assert not by_target or groups >= 3
    assert chk.ops["BATCH_MATMUL"] in (2 * groups, 2 * groups + 1), chk.ops  # (+ the placing)


@pytest.mark.parametrize("weights", ["dense", "one_class"])
@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC"])
def test_path_binary_classifier(weights, transform, path):
    """onnxruntime's two-class conventions on top of the path sums."""
    rng = np.random.default_rng(_seed("binary", weights, transform))
    a, w = random_trees(rng, 8, 3, n_out=2)
    if weights == "one_class":
        keep = [i for i, k in enumerate(w["id"]) if k == 1]
        w = {k: [v[i] for i in keep] for k, v in w.items()}
    model = classifier_model(a, w, [4, 9], post_transform=transform)
    _ran_path(check_conversion(model, feeds={"x": _features(nan=0.1)}))


_PY_CMP = {
    "BRANCH_LEQ": np.less_equal,
    "BRANCH_LT": np.less,
    "BRANCH_GTE": np.greater_equal,
    "BRANCH_GT": np.greater,
}


def _walk_float64(forest, x):
    """Reference: every tree walked in float64 (x widened), NaN by its missing-value track."""
    out = np.zeros((len(x), forest.n_targets))
    for r, row in enumerate(x.astype(np.float64)):
        for root in forest.roots:
            i = root
            while hasattr(forest.nodes[i], "mode"):
                n = forest.nodes[i]
                v = row[n.feature]
                goes = n.track_true if np.isnan(v) else _PY_CMP[n.mode](v, n.threshold)
                i = n.true if goes else n.false
            for k, w in forest.nodes[i].weights:
                out[r, k] += w
    return out


def _path_numpy(forest, plan, x):
    """The path strategy's arithmetic in numpy (views, rows, decisions, indicator products)."""
    from onnx2tflite_direct.lowering.ml_tree_path import (
        F32_MAX,
        arithmetic_decisions,
        leaf_weight_table,
    )

    xt = np.clip(x.T, -F32_MAX, F32_MAX)
    views = []
    for neg, low in plan.views:
        base = np.where(np.isnan(xt), F32_MAX if neg == low else -F32_MAX, xt)
        views.append(-base if neg else base)
    table = np.concatenate(views).astype(np.float32)

    def decide(rows, thr):
        if not arithmetic_decisions(thr):
            return (rows <= thr[:, None]).astype(np.float32)
        huge = np.float32(2.0**127)  # _decide_arithmetic's float32 steps
        with np.errstate(over="ignore"):
            up = np.nextafter(thr, np.float32(np.inf))[:, None]
            scaled = np.maximum((up - rows) * huge * huge, np.float32(0))
        return np.minimum(scaled, np.float32(1))

    total = np.zeros((len(x), forest.n_targets))
    distinct = decide(table[plan.unique_src], plan.unique_thr)
    for g, pick in zip(plan.groups, plan.pick, strict=True):
        dec = decide(table[g.row_src], g.thresholds)
        if plan.shared:
            dec = distinct[pick]
        ind = np.ones((len(g.trees), len(x)), np.float32)
        for _ in range(g.depth):
            first = ind * dec[: len(ind)]
            dec = dec[len(ind) :]
            ind = np.concatenate([first, ind - first])
        assert set(np.unique(ind)) <= {0.0, 1.0}
        assert np.all(ind.reshape(-1, len(g.trees), len(x)).sum(axis=0) == 1)
        weights, _ = leaf_weight_table(forest, g, False)
        total[:, g.targets] += (weights.astype(np.float64) @ ind).T
    return total


def test_path_float64_thresholds_decide_as_float64():
    """float64 thresholds that float32 cannot hold (``*_as_tensor``; onnxruntime has no
    float32-input kernel for them, so the reference is a float64 walk), float32 inputs on both
    neighbours of each, NaN by track, +-inf: every threshold rounded in the direction its
    comparison needs decides as float64 does; each tree reaches exactly one leaf."""
    from onnx2tflite_direct.lowering.ml_forest import parse_legacy
    from onnx2tflite_direct.lowering.ml_tree_path import plan_path

    rng = np.random.default_rng(17)
    a, w = random_trees(rng, 12, 4, modes=ORDER_MODES, tracks=True, ints=True, n_out=2)
    a2, w2 = random_trees(rng, 12, 3, modes=ORDER_MODES, tracks=True, n_out=2, weights="class_tree")
    for key in a:  # one-target trees too (their groups per target: by_target)
        a[key] += [v + 12 for v in a2[key]] if key == "tree" else a2[key]
    for key in w:
        w[key] += [v + 12 for v in w2[key]] if key == "tree" else w2[key]
    attrs = _legacy_attrs(a, w, "target", True)
    vals = np.asarray(attrs["nodes_values"], np.float64)
    attrs["nodes_values"] = list(vals + rng.choice([2.0**-30, -(2.0**-30), 0.0], len(vals)))
    forest = parse_legacy(attrs, "target", 2, "SUM")
    base = np.round(rng.standard_normal((400, F)) * 3).astype(np.float32)
    side = rng.integers(-1, 2, base.shape).astype(np.float32)
    x = np.nextafter(base, base + side)
    x[rng.random(x.shape) < 0.1] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32))
    for by_target in (False, True):
        for shared in (False, True):
            plan = replace(plan_path(forest, F, by_target=by_target), shared=shared)
            got = _path_numpy(forest, plan, x)
            np.testing.assert_allclose(got, _walk_float64(forest, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("near_zero", [False, True])
@pytest.mark.parametrize("rows", [1, 16])
def test_path_arithmetic_decisions(near_zero, rows, path):
    """Decisions as ``min(relu((nextafter(t) - v) * 2^127 * 2^127), 1)`` (SUB, MUL, MINIMUM in
    XNNPACK, no comparison) where no threshold is near zero: inputs on the thresholds and on
    their float32 neighbours, +-FLT_MAX, +-inf, NaN, -0.0 and subnormals (the differences
    overflow or are exact). With thresholds at or near 0 (``near_zero``), where a subnormal
    difference could be flushed, the comparison decides instead. Subnormal inputs reach the
    decisions unflushed (XNNPACK flushes them in its float ops)."""
    rng = np.random.default_rng(_seed("arith", near_zero, rows))
    a, w = random_trees(rng, 8, 3, modes=ORDER_MODES, tracks=True, n_out=2)
    splits = [i for i, m in enumerate(a["mode"]) if m != "LEAF"]
    choices = [-3.5, -1.0, -(2.0**-90), 2.0**-90, 0.75, 2.0, 1e30, -1e30]
    if near_zero:
        choices += [0.0, -0.0, 1e-39, -1e-30]
    for i in splits:
        a["val"][i] = float(np.float32(rng.choice(choices)))
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, -1e-45, 3e38, -3e38], np.float32)
    thr = np.array(sorted({a["val"][i] for i in splits}), np.float32)
    near = np.concatenate([thr, np.nextafter(thr, np.inf), np.nextafter(thr, -np.inf), special])
    x = rng.choice(near, (16, F)).astype(np.float32)[:rows]
    chk = check_conversion(_model("regressor", a, w, 2, rows, True), feeds={"x": x})
    _ran_path(chk)
    assert ("MINIMUM" in chk.ops) != near_zero, chk.ops  # only the arithmetic has MINIMUM


@pytest.mark.parametrize("strategy", ["path", "grid", "traverse"])
@pytest.mark.parametrize("mode", ["BRANCH_GTE", "mixed"])
def test_subnormal_inputs_decide_as_onnxruntime(strategy, mode, monkeypatch):
    """Subnormal inputs against zero, -0.0 and subnormal thresholds: XNNPACK runs its float
    ops with denormals flushed, so no strategy lets one (NEG included: negated views flip
    the sign bit) touch the input before it is compared."""
    from onnx2tflite_direct.lowering import ml_trees

    monkeypatch.setattr(ml_trees, "STRATEGY", strategy)
    rng = np.random.default_rng(_seed("subnormal", strategy, mode))
    modes = ORDER_MODES if mode == "mixed" else (mode,)
    a, w = random_trees(rng, 8, 3, modes=modes, tracks=True, n_out=2)
    tiny = [0.0, -0.0, 1e-39, -1e-39, 1e-45, -3e-45, 2.0**-126]
    for i, m in enumerate(a["mode"]):
        if m != "LEAF":
            a["val"][i] = float(np.float32(rng.choice(tiny)))
    pool = np.array([*tiny, 2e-45, -1e-45, 5e-40, -5e-40, np.nan, 1.0], np.float32)
    x = rng.choice(pool, (16, F)).astype(np.float32)
    check_conversion(_model("regressor", a, w, 2, 16, True), feeds={"x": x})


def test_path_runs_at_any_batch(path):
    """A dynamic batch: one file, lowered at two sample sizes, runs at 1, 3 and 8 rows."""
    import onnxruntime as ort

    from onnx2tflite_direct import convert
    from onnx2tflite_direct import validate as V

    rng = np.random.default_rng(9)
    a, w = random_trees(rng, 20, 3, modes=ORDER_MODES, tracks=True, n_out=3)
    node = helper.make_node(
        "TreeEnsembleClassifier",
        ["x"],
        ["label", "probabilities"],
        domain=ML,
        classlabels_int64s=[0, 1, 2],
        **_legacy_attrs(a, w, "class", True),
    )
    model = _ml_model(
        [node],
        [("x", np.float32, ("n", F))],
        [("label", np.int64, ("n",)), ("probabilities", np.float32, ("n", 3))],
    )
    res = convert(model)
    assert any("path strategy" in n for r in res.report["nodes"] for n in r.get("notes", []))
    sess = ort.InferenceSession(model.SerializeToString())
    for batch in (1, 3, 8):
        x = _features(batch, seed=batch, nan=0.1)
        expected = sess.run(None, {"x": x})
        actual = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"])
        np.testing.assert_array_equal(actual["label"], expected[0])
        np.testing.assert_allclose(actual["probabilities"], expected[1], rtol=1e-5, atol=1e-6)


def test_path_not_applicable_falls_back(path):
    """An infinite threshold (clamping the input could change its decision) or a MIN aggregate
    (the path strategy sums): another strategy runs, still exact."""
    rng = np.random.default_rng(4)
    a, w = random_trees(rng, 5, 3, n_out=2)
    first_split = a["mode"].index("BRANCH_LEQ")
    a["val"][first_split] = float("inf")
    chk = check_conversion(regressor_model(a, w, 2), feeds={"x": _tie_features(16, 1)})
    assert "BATCH_MATMUL" not in chk.ops, chk.ops
    a, w = random_trees(rng, 5, 3, n_out=2)
    chk = check_conversion(
        regressor_model(a, w, 2, aggregate_function="MIN"), feeds={"x": _features()}
    )
    assert "BATCH_MATMUL" not in chk.ops, chk.ops


@pytest.mark.parametrize(
    ("n_trees", "depth", "rows", "expected"),
    [(30, 3, 16, "path"), (150, 4, 16, "path"), (30, 3, 1, "grid"), (100, 8, 16, "traverse")],
)
def test_path_cost_model_choice(n_trees, depth, rows, expected):
    """The cost model (measured per-element costs) picks the path strategy for shallow
    boosted-style trees and keeps walking deep full trees."""
    from onnx2tflite_direct.lowering.ml_forest import parse_legacy
    from onnx2tflite_direct.lowering.ml_trees import choose_strategy

    a, w = _full_trees(np.random.default_rng(0), n_trees, depth)
    forest = parse_legacy(_legacy_attrs(a, w, "target", False), "target", 1, "SUM")
    assert choose_strategy(forest, rows, F)[0] == expected
