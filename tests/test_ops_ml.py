"""ai.onnx.ml ops against onnxruntime, built node by node with onnx.helper (no sklearn needed).

Tree ensembles are random forests drawn here: random shapes and depths, every branch mode,
missing-value tracks, NaN inputs, every aggregate function, post transform and base-value
count, and onnxruntime's two-class conventions.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import TensorProto, helper, numpy_helper

ML = "ai.onnx.ml"
OPSETS = {"": 17, ML: 3}
N, F = 16, 6


def _ml_model(nodes, inputs, outputs, ml_opset=3, inits=()):
    return make_model(nodes, inputs, outputs, opset={"": 17, ML: ml_opset}, initializers=inits)


def _seed(*parts) -> int:
    """A seed from test parameters that is stable across processes (``hash`` of str is not)."""
    return zlib.crc32(repr(parts).encode()) % 10_000


def _features(n=N, f=F, seed=0, nan=0.0, ints=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, f)).astype(np.float32)
    if ints:
        return np.round(x * 3).astype(np.float32)
    if nan:
        x[rng.random(x.shape) < nan] = np.nan
    return x


# ---------------------------------------------------------------------------------------------
# Random trees
# ---------------------------------------------------------------------------------------------


def random_trees(
    rng,
    n_trees,
    depth,
    n_features=F,
    modes=("BRANCH_LEQ",),
    tracks=False,
    n_out=1,
    weights="dense",
    ints=False,
    positive=False,
):
    """Legacy-format node lists: one dict of parallel lists (nodes_*, w_*)."""
    a = {k: [] for k in ("tree", "node", "feat", "mode", "val", "true", "false", "track")}
    w = {k: [] for k in ("tree", "node", "id", "w")}
    for t in range(n_trees):
        counter = [0]

        def build(d, t=t, counter=counter):
            me = counter[0]
            counter[0] += 1
            slot = len(a["tree"])
            for k in a:
                a[k].append(0)
            a["tree"][slot], a["node"][slot] = t, me
            if d == 0 or (d < depth and rng.random() < 0.25):
                a["mode"][slot] = "LEAF"
                targets = range(n_out) if weights == "dense" else [int(rng.integers(n_out))]
                if weights == "class_tree":
                    targets = [t % n_out]
                for k in targets:
                    val = rng.random() if positive else rng.standard_normal()
                    w["tree"].append(t), w["node"].append(me), w["id"].append(k)
                    w["w"].append(float(np.float32(val)))
                return me
            mode = modes[int(rng.integers(len(modes)))]
            a["mode"][slot] = mode
            a["feat"][slot] = int(rng.integers(n_features))
            thr = float(np.round(rng.standard_normal() * 3)) if ints else rng.standard_normal()
            a["val"][slot] = float(np.float32(thr))
            a["track"][slot] = int(rng.random() < 0.5) if tracks else 0
            a["true"][slot] = build(d - 1)
            a["false"][slot] = build(d - 1)
            return me

        build(depth)
    return a, w


def _legacy_attrs(a, w, prefix, tracks):
    attrs = dict(
        nodes_treeids=a["tree"],
        nodes_nodeids=a["node"],
        nodes_featureids=a["feat"],
        nodes_modes=a["mode"],
        nodes_values=a["val"],
        nodes_truenodeids=a["true"],
        nodes_falsenodeids=a["false"],
    )
    attrs[f"{prefix}_treeids"] = w["tree"]
    attrs[f"{prefix}_nodeids"] = w["node"]
    attrs[f"{prefix}_ids"] = w["id"]
    attrs[f"{prefix}_weights"] = w["w"]
    if tracks:
        attrs["nodes_missing_value_tracks_true"] = a["track"]
    return attrs


def regressor_model(a, w, n_targets, tracks=False, **extra):
    attrs = _legacy_attrs(a, w, "target", tracks)
    node = helper.make_node(
        "TreeEnsembleRegressor", ["x"], ["y"], domain=ML, n_targets=n_targets, **attrs, **extra
    )
    return _ml_model([node], [("x", np.float32, (N, F))], [("y", np.float32, (N, n_targets))])


def classifier_model(a, w, labels, tracks=False, **extra):
    attrs = _legacy_attrs(a, w, "class", tracks)
    node = helper.make_node(
        "TreeEnsembleClassifier",
        ["x"],
        ["label", "probabilities"],
        domain=ML,
        classlabels_int64s=list(labels),
        **attrs,
        **extra,
    )
    return _ml_model(
        [node],
        [("x", np.float32, (N, F))],
        [("label", np.int64, (N,)), ("probabilities", np.float32, (N, len(labels)))],
    )


ALL_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ")


@pytest.fixture(params=["traverse", "grid", "all_splits", "path"])
def strategy(request, monkeypatch):
    """Run a tree test with each walking strategy forced (the cost model picks one; a strategy
    that does not apply to the forest falls back to one that does)."""
    from onnx2tflite_direct.lowering import ml_trees

    monkeypatch.setattr(ml_trees, "STRATEGY", request.param)
    return request.param


@pytest.mark.parametrize("aggregate", ["SUM", "AVERAGE", "MIN", "MAX"])
@pytest.mark.parametrize("n_targets", [1, 3])
@pytest.mark.parametrize("weights", ["dense", "sparse"])
def test_tree_regressor_aggregates(aggregate, n_targets, weights, strategy):
    rng = np.random.default_rng(_seed(aggregate, n_targets, weights))
    a, w = random_trees(rng, 7, 4, n_out=n_targets, weights=weights)
    base = [0.5, -0.25, 1.0][:n_targets]
    model = regressor_model(a, w, n_targets, aggregate_function=aggregate, base_values=base)
    check_conversion(model, feeds={"x": _features()})


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("tracks", [False, True])
def test_tree_regressor_branch_modes_and_nan(mode, tracks, strategy):
    rng = np.random.default_rng(ALL_MODES.index(mode))
    ints = mode in ("BRANCH_EQ", "BRANCH_NEQ")
    a, w = random_trees(rng, 5, 4, modes=(mode,), tracks=tracks, ints=ints)
    x = _features(ints=ints, nan=0.0 if ints else 0.2)
    if ints:
        x[np.random.default_rng(1).random(x.shape) < 0.2] = np.nan
    check_conversion(regressor_model(a, w, 1, tracks=tracks), feeds={"x": x})


def test_tree_regressor_mixed_modes():
    rng = np.random.default_rng(5)
    a, w = random_trees(rng, 9, 5, modes=ALL_MODES, tracks=True, ints=True, n_out=2)
    x = _features(ints=True)
    x[np.random.default_rng(2).random(x.shape) < 0.1] = np.nan
    check_conversion(regressor_model(a, w, 2, tracks=True), feeds={"x": x})


@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"])
@pytest.mark.parametrize("n_targets", [1, 3])
def test_tree_regressor_post_transforms(transform, n_targets):
    rng = np.random.default_rng(11)
    positive = transform == "PROBIT"
    a, w = random_trees(rng, 4, 3, n_out=n_targets, weights="sparse", positive=positive)
    if transform == "PROBIT":  # probit needs scores in (0, 1)
        w["w"] = [v / 8 for v in w["w"]]
    model = regressor_model(a, w, n_targets, post_transform=transform)
    check_conversion(model, feeds={"x": _features()}, atol=1e-4)


@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
@pytest.mark.parametrize("n_classes", [3, 5])
@pytest.mark.parametrize("weights", ["dense", "sparse", "class_tree"])
@pytest.mark.parametrize("base", [False, True])
def test_tree_classifier_multiclass(transform, n_classes, weights, base):
    rng = np.random.default_rng(n_classes * 7 + len(transform))
    a, w = random_trees(rng, 6, 4, n_out=n_classes, weights=weights)
    extra = {"post_transform": transform}
    if base:
        extra["base_values"] = list(np.linspace(-0.5, 0.5, n_classes))
    labels = [10 * k + 3 for k in range(n_classes)]
    check_conversion(classifier_model(a, w, labels, **extra), feeds={"x": _features()})


@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
@pytest.mark.parametrize("weights", ["dense", "one_class", "one_class_positive"])
@pytest.mark.parametrize("n_base", [0, 1, 2])
@pytest.mark.parametrize("labels", [(0, 1), (4, 9)])
def test_tree_classifier_binary_conventions(transform, weights, n_base, labels, strategy):
    rng = np.random.default_rng(n_base * 13 + len(weights))
    positive = weights == "one_class_positive"
    a, w = random_trees(rng, 5, 3, n_out=2, weights="dense", positive=positive)
    if weights != "dense":  # only class 1 carries weights (the binary case)
        keep = [i for i, k in enumerate(w["id"]) if k == 1]
        w = {k: [v[i] for i in keep] for k, v in w.items()}
        if positive:
            w["w"] = [v / 5 for v in w["w"]]
    extra = {"post_transform": transform}
    if n_base:
        extra["base_values"] = [0.1, -0.2][:n_base]
    model = classifier_model(a, w, labels, **extra)
    check_conversion(model, feeds={"x": _features()})


def test_tree_classifier_deep_trees_and_int_input(strategy):
    rng = np.random.default_rng(3)
    a, w = random_trees(rng, 12, 8, n_out=3)
    node = helper.make_node(
        "TreeEnsembleClassifier",
        ["x"],
        ["label", "probabilities"],
        domain=ML,
        classlabels_int64s=[0, 1, 2],
        **_legacy_attrs(a, w, "class", False),
    )
    model = _ml_model(
        [node],
        [("x", np.int64, (N, F))],
        [("label", np.int64, (N,)), ("probabilities", np.float32, (N, 3))],
    )
    x = np.random.default_rng(0).integers(-3, 4, (N, F)).astype(np.int64)
    check_conversion(model, feeds={"x": x})


ORDER_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT")


def _tie_features(n, seed):
    """Integer features (ties with the integer thresholds) with NaN, +-inf and -0.0 mixed in."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 5, (n, F)).astype(np.float32)
    special = np.array([np.nan, np.inf, -np.inf, -0.0], np.float32)
    mask = rng.random(x.shape) < 0.2
    x[mask] = rng.choice(special, int(mask.sum()))
    return x


def _rows_regressor(a, w, n_targets, rows, tracks=True):
    attrs = _legacy_attrs(a, w, "target", tracks)
    node = helper.make_node(
        "TreeEnsembleRegressor", ["x"], ["y"], domain=ML, n_targets=n_targets, **attrs
    )
    return _ml_model([node], [("x", np.float32, (rows, F))], [("y", np.float32, (rows, n_targets))])


@pytest.mark.parametrize("rows", [1, 16])
@pytest.mark.parametrize("infinite_thresholds", [False, True])
def test_tree_mixed_order_modes_ties_nan_inf(rows, infinite_thresholds, strategy):
    """LEQ/LT/GTE/GT mixed in one forest, inputs equal to thresholds, NaN with and without
    missing-value tracks, +-inf and -0.0 inputs, +-inf thresholds: the grid's one LESS_EQUAL on
    x / -x views (children swapped for LT/GT) decides exactly as onnxruntime. At batch 1 the
    leaves that do not fit the grid go after it (a CONCATENATION), at 16 into extra rows."""
    rng = np.random.default_rng(_seed(rows, infinite_thresholds))
    a, w = random_trees(rng, 9, 5, modes=ORDER_MODES, tracks=True, ints=True, n_out=2)
    if infinite_thresholds:
        splits = [i for i, m in enumerate(a["mode"]) if m != "LEAF"]
        for i in splits[::4]:
            a["val"][i] = float(rng.choice([np.inf, -np.inf]))
    x = np.concatenate([_tie_features(16, rows) for _ in range(1)])[:rows]
    chk = check_conversion(_rows_regressor(a, w, 2, rows), feeds={"x": x})
    if strategy == "grid" or (strategy == "traverse" and infinite_thresholds):
        assert chk.ops["LESS_EQUAL"] == 1 and "UNPACK" not in chk.ops, chk.ops


@pytest.mark.parametrize("mode", ORDER_MODES)
@pytest.mark.parametrize("tracks", [False, True])
def test_tree_grid_each_order_mode_on_ties(mode, tracks, monkeypatch):
    """One mode per forest on integer inputs and thresholds (every comparison meets ties), NaN
    and infinities in the input, every row a different sample: the grid strategy."""
    from onnx2tflite_direct.lowering import ml_trees

    monkeypatch.setattr(ml_trees, "STRATEGY", "grid")
    rng = np.random.default_rng(_seed(mode, tracks))
    a, w = random_trees(rng, 6, 4, modes=(mode,), tracks=tracks, ints=True)
    x = _tie_features(N, ORDER_MODES.index(mode))
    chk = check_conversion(regressor_model(a, w, 1, tracks=tracks), feeds={"x": x})
    assert chk.ops.get("GATHER", 0) >= 2 and "UNPACK" not in chk.ops, chk.ops


@pytest.mark.parametrize("block", [1, 5])
def test_tree_grid_row_blocks(block, monkeypatch):
    """A batch in row blocks (5, 5, 5, 1 rows; or 16 blocks of one row, whose leaves go after
    the grid): one grid and walk per block, the reached slots concatenated in row order."""
    from onnx2tflite_direct.lowering import ml_tree_grid, ml_trees

    monkeypatch.setattr(ml_trees, "STRATEGY", "grid")
    monkeypatch.setattr(ml_tree_grid, "BLOCK", block)
    rng = np.random.default_rng(_seed("blocks", block))
    a, w = random_trees(rng, 8, 5, modes=ORDER_MODES, tracks=True, ints=True, n_out=3)
    x = _tie_features(N, block)
    chk = check_conversion(classifier_model(a, w, [0, 1, 2], tracks=True), feeds={"x": x})
    assert chk.ops["LESS_EQUAL"] == -(-N // block), chk.ops


@pytest.mark.parametrize("rows", [1, 16])
@pytest.mark.parametrize("only_leaves", [False, True])
def test_tree_single_leaf_trees(rows, only_leaves, strategy):
    """Trees that are one leaf (depth 0) next to deep ones, or a forest of nothing else: the
    walk's first level reads the leaf's self loop."""
    rng = np.random.default_rng(_seed("stumps", rows, only_leaves))
    a, w = random_trees(rng, 0 if only_leaves else 4, 4, modes=ORDER_MODES, n_out=2)
    first = max(a["tree"], default=-1) + 1
    for t in range(first, first + 3):  # single-leaf trees
        for k in a:
            a[k].append(0)
        a["tree"][-1], a["node"][-1], a["mode"][-1], a["val"][-1] = t, 0, "LEAF", 0.0
        for k in range(2):
            w["tree"].append(t), w["node"].append(0), w["id"].append(k)
            w["w"].append(float(np.float32(rng.standard_normal())))
    x = _features(rows, seed=rows, nan=0.1)
    check_conversion(_rows_regressor(a, w, 2, rows, tracks=False), feeds={"x": x})


def _full_trees(rng, n_trees, depth, n_out=1):
    """Complete binary trees (every leaf at ``depth``), BRANCH_LEQ."""
    a = {k: [] for k in ("tree", "node", "feat", "mode", "val", "true", "false", "track")}
    w = {k: [] for k in ("tree", "node", "id", "w")}
    for t in range(n_trees):
        for i in range(2 ** (depth + 1) - 1):
            leaf = i >= 2**depth - 1
            vals = (t, i, int(rng.integers(F)), "LEAF" if leaf else "BRANCH_LEQ")
            for k, v in zip(("tree", "node", "feat", "mode"), vals, strict=True):
                a[k].append(v)
            a["val"].append(0.0 if leaf else float(np.float32(rng.standard_normal())))
            a["true"].append(0 if leaf else 2 * i + 1)
            a["false"].append(0 if leaf else 2 * i + 2)
            a["track"].append(0)
            if leaf:
                for k in range(n_out):
                    w["tree"].append(t), w["node"].append(i), w["id"].append(k)
                    w["w"].append(float(np.float32(rng.standard_normal())))
    return a, w


@pytest.mark.parametrize(
    ("n_trees", "depth", "expected"),
    [(12, 8, "traverse"), (40, 3, "path"), (200, 2, "path")],
)
def test_tree_strategy_rule(n_trees, depth, expected):
    """The cost model's rule: deep full trees (many nodes for their depth: 511 at depth 8) are
    traversed, shallow boosted-style trees (16 rows) take the path strategy. Checked on the
    written ops (the traversal UNPACKs node records, the path strategy sums leaves with a
    BATCH_MATMULs) and against onnxruntime; the grid's choice: test_tree_grid_* and
    test_ml_tree_path.py."""
    rng = np.random.default_rng(_seed("rule", n_trees, depth))
    a, w = _full_trees(rng, n_trees, depth, n_out=2)
    chk = check_conversion(regressor_model(a, w, 2), feeds={"x": _features(seed=depth)})
    if expected == "traverse":
        assert chk.ops["UNPACK"] == depth - 1, chk.ops
    else:
        assert "UNPACK" not in chk.ops and chk.ops["BATCH_MATMUL"] == 2, chk.ops


def test_tree_grid_runs_at_any_batch():
    """A dynamic batch: the strategy and layout decided at the two sample sizes agree, and the
    file runs at 1, 3 and 8 rows."""
    import onnxruntime as ort

    from onnx2tflite_direct import convert
    from onnx2tflite_direct import validate as V

    rng = np.random.default_rng(9)
    a, w = random_trees(rng, 20, 6, modes=("BRANCH_LEQ",), tracks=True, n_out=3)
    attrs = _legacy_attrs(a, w, "class", True)
    node = helper.make_node(
        "TreeEnsembleClassifier",
        ["x"],
        ["label", "probabilities"],
        domain=ML,
        classlabels_int64s=[0, 1, 2],
        **attrs,
    )
    model = _ml_model(
        [node],
        [("x", np.float32, ("n", F))],
        [("label", np.int64, ("n",)), ("probabilities", np.float32, ("n", 3))],
    )
    res = convert(model)
    sess = ort.InferenceSession(model.SerializeToString())
    for batch in (1, 3, 8):
        x = _features(batch, seed=batch, nan=0.1)
        expected = sess.run(None, {"x": x})
        actual = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"])
        np.testing.assert_array_equal(actual["label"], expected[0])
        np.testing.assert_allclose(actual["probabilities"], expected[1], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# TreeEnsemble (ai.onnx.ml opset 5)
# ---------------------------------------------------------------------------------------------


def v5_from_legacy(a, w, n_targets, member_sets=None):
    """Convert the legacy lists to TreeEnsemble v5 attributes (leaves become leaf_* entries;
    BRANCH_MEMBER nodes take their set from ``member_sets``)."""
    index = {(t, n): i for i, (t, n) in enumerate(zip(a["tree"], a["node"], strict=True))}
    interior = [i for i, m in enumerate(a["mode"]) if m != "LEAF"]
    pos = {i: p for p, i in enumerate(interior)}
    leaf_of: dict[int, int] = {}
    leaf_t, leaf_w = [], []
    weights = {}
    for t, n, k, v in zip(w["tree"], w["node"], w["id"], w["w"], strict=True):
        weights.setdefault(index[(t, n)], []).append((k, v))
    for i, m in enumerate(a["mode"]):
        if m == "LEAF":
            k, v = weights.get(i, [(0, 0.0)])[0]
            leaf_of[i] = len(leaf_t)
            leaf_t.append(k)
            leaf_w.append(v)
    codes = {m: c for c, m in enumerate(ALL_MODES + ("BRANCH_MEMBER",))}
    feats, splits, modes, tr, tl, fa, fl, members = [], [], [], [], [], [], [], []
    for i in interior:
        t = a["tree"][i]
        feats.append(a["feat"][i])
        splits.append(a["val"][i])
        modes.append(codes[a["mode"][i]])
        if a["mode"][i] == "BRANCH_MEMBER":
            members += list(member_sets[len([m for m in modes if m == 6]) - 1]) + [np.nan]
        for child, ids, leafs in ((a["true"][i], tr, tl), (a["false"][i], fa, fl)):
            j = index[(t, child)]
            if a["mode"][j] == "LEAF":
                ids.append(leaf_of[j])
                leafs.append(1)
            else:
                ids.append(pos[j])
                leafs.append(0)
    roots = sorted({pos[index[(t, 0)]] for t in set(a["tree"])})
    attrs = dict(
        n_targets=n_targets,
        nodes_featureids=feats,
        nodes_splits=numpy_helper.from_array(np.array(splits, np.float32)),
        nodes_modes=numpy_helper.from_array(np.array(modes, np.uint8)),
        nodes_truenodeids=tr,
        nodes_trueleafs=tl,
        nodes_falsenodeids=fa,
        nodes_falseleafs=fl,
        leaf_targetids=leaf_t,
        leaf_weights=numpy_helper.from_array(np.array(leaf_w, np.float32)),
        tree_roots=roots,
    )
    if members:
        attrs["membership_values"] = numpy_helper.from_array(np.array(members, np.float32))
    return attrs


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3])
@pytest.mark.parametrize("transform", [0, 1, 2, 3])
def test_tree_ensemble_v5(aggregate, transform, strategy):
    rng = np.random.default_rng(aggregate * 5 + transform)
    a, w = random_trees(rng, 6, 4, n_out=3, weights="sparse")
    attrs = v5_from_legacy(a, w, 3)
    node = helper.make_node(
        "TreeEnsemble",
        ["x"],
        ["y"],
        domain=ML,
        aggregate_function=aggregate,
        post_transform=transform,
        **attrs,
    )
    model = _ml_model([node], [("x", np.float32, (N, F))], [("y", np.float32, (N, 3))], 5)
    check_conversion(model, feeds={"x": _features()})


def test_tree_ensemble_v5_member_and_tracks():
    rng = np.random.default_rng(21)
    a, w = random_trees(rng, 6, 4, modes=("BRANCH_MEMBER", "BRANCH_LEQ"), ints=True, n_out=1)
    n_member = sum(m == "BRANCH_MEMBER" for m in a["mode"])
    sets = [
        tuple(float(v) for v in rng.choice(np.arange(-4, 5), 3, replace=False))
        for _ in range(n_member)
    ]
    attrs = v5_from_legacy(a, w, 1, sets)
    attrs["nodes_missing_value_tracks_true"] = [
        int(v) for v in rng.integers(0, 2, len(attrs["nodes_featureids"]))
    ]
    node = helper.make_node("TreeEnsemble", ["x"], ["y"], domain=ML, **attrs)
    model = _ml_model([node], [("x", np.float32, (N, F))], [("y", np.float32, (N, 1))], 5)
    x = _features(ints=True)
    x[np.random.default_rng(3).random(x.shape) < 0.1] = np.nan
    check_conversion(model, feeds={"x": x})


@pytest.mark.parametrize("mode", ALL_MODES)
def test_threshold32_gives_float32_inputs_the_float64_branch(mode):
    """float64 thresholds (``*_as_tensor``) rounded per comparison decide like float64 would."""
    from onnx2tflite_direct.lowering.ml_trees import _CMP, threshold32

    ops = {
        "LESS_EQUAL": np.less_equal,
        "LESS": np.less,
        "GREATER_EQUAL": np.greater_equal,
        "GREATER": np.greater,
        "EQUAL": np.equal,
        "NOT_EQUAL": np.not_equal,
    }
    cmp = ops[_CMP[mode]]
    for t in (1.0 + 2.0**-30, 1.0 - 2.0**-30, 1.0, -3.0 - 2.0**-40, 0.1):
        x = np.float32(t)
        xs = np.array([np.nextafter(x, -np.inf), x, np.nextafter(x, np.inf)], np.float32)
        expected = cmp(xs.astype(np.float64), t)
        assert np.array_equal(cmp(xs, threshold32(mode, t)), expected), (mode, t)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_tree_classifier_string_labels(n_classes):
    """String labels: a GATHER from a string constant (LiteRT's GATHER reads strings)."""
    rng = np.random.default_rng(n_classes)
    a, w = random_trees(rng, 4, 3, n_out=n_classes)
    names = ["cat", "dog", "bird"][:n_classes]
    node = helper.make_node(
        "TreeEnsembleClassifier",
        ["x"],
        ["label", "probabilities"],
        domain=ML,
        classlabels_strings=names,
        **_legacy_attrs(a, w, "class", False),
    )
    model = _ml_model(
        [node],
        [("x", np.float32, (N, F))],
        [("label", TensorProto.STRING, (N,)), ("probabilities", np.float32, (N, n_classes))],
    )
    chk = check_conversion(model, feeds={"x": _features()})
    got = {v.decode() if isinstance(v, bytes) else v for v in chk.actual["label"]}
    assert got <= set(names), got  # strings out of LiteRT (compared with onnxruntime above)


# ---------------------------------------------------------------------------------------------
# Linear models and SVMs
# ---------------------------------------------------------------------------------------------

TRANSFORMS = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]


def _linear_classifier(k, labels, transform, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    node = helper.make_node(
        "LinearClassifier",
        ["x"],
        ["label", "scores"],
        domain=ML,
        coefficients=[float(v) for v in rng.standard_normal(k * F).astype(np.float32)],
        intercepts=[float(v) for v in rng.standard_normal(k).astype(np.float32)],
        classlabels_ints=list(labels),
        post_transform=transform,
    )
    cols = 2 if k == 1 and len(labels) == 2 else k
    return _ml_model(
        [node],
        [("x", dtype, (N, F))],
        [("label", np.int64, (N,)), ("scores", np.float32, (N, cols))],
    )


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("k,labels", [(3, (0, 1, 2)), (4, (7, 3, 9, 1)), (1, (4, 8))])
def test_linear_classifier(transform, k, labels):
    model = _linear_classifier(k, labels, transform)
    x = _features() * 0.2 if transform == "PROBIT" else _features()
    if transform == "PROBIT" and k == 1 and len(labels) == 2:
        expect_refusal(model, "unsupported_attribute_value")
        return
    if transform == "PROBIT":
        # probit needs scores in (0, 1); keep them there
        node = model.graph.node[0]
        for a in node.attribute:
            if a.name in ("coefficients", "intercepts"):
                vals = [abs(v) * 0.02 + (0.3 if a.name == "intercepts" else 0) for v in a.floats]
                del a.floats[:]
                a.floats.extend(vals)
        x = np.abs(x)
    check_conversion(model, feeds={"x": x}, atol=1e-4)


def test_linear_classifier_int64_input():
    model = _linear_classifier(3, (0, 1, 2), "SOFTMAX", dtype=np.int64)
    x = np.random.default_rng(0).integers(-5, 6, (N, F)).astype(np.int64)
    check_conversion(model, feeds={"x": x})


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("targets", [1, 3])
@pytest.mark.parametrize("intercepts", [False, True])
def test_linear_regressor(transform, targets, intercepts):
    rng = np.random.default_rng(targets)
    coef = rng.standard_normal(targets * F).astype(np.float32) * (
        0.05 if transform == "PROBIT" else 1
    )
    extra = {}
    if intercepts:
        extra["intercepts"] = [float(v) for v in (rng.random(targets) * 0.2 + 0.4)]
    node = helper.make_node(
        "LinearRegressor",
        ["x"],
        ["y"],
        domain=ML,
        coefficients=[float(v) for v in coef],
        targets=targets,
        post_transform=transform,
        **extra,
    )
    model = _ml_model([node], [("x", np.float32, (N, F))], [("y", np.float32, (N, targets))])
    check_conversion(model, feeds={"x": _features()}, atol=1e-4)


KERNEL_PARAMS = {
    "LINEAR": [0.0, 0.0, 0.0],
    "POLY": [0.3, 0.5, 3.0],
    "RBF": [0.2, 0.0, 0.0],
    "SIGMOID": [0.1, 0.2, 0.0],
}


@pytest.mark.parametrize("kernel", list(KERNEL_PARAMS))
@pytest.mark.parametrize("one_class", [0, 1])
@pytest.mark.parametrize("mode", ["svc", "linear"])
def test_svm_regressor(kernel, one_class, mode):
    rng = np.random.default_rng(len(kernel) + one_class)
    if mode == "svc":
        n_sv = 7
        attrs = dict(
            n_supports=n_sv,
            support_vectors=[float(v) for v in rng.standard_normal(n_sv * F).astype(np.float32)],
            coefficients=[float(v) for v in rng.standard_normal(n_sv).astype(np.float32)],
            kernel_type=kernel,
            kernel_params=KERNEL_PARAMS[kernel],
        )
    else:
        if kernel != "LINEAR":
            pytest.skip("linear mode has no kernel")
        attrs = dict(
            coefficients=[float(v) for v in rng.standard_normal(F).astype(np.float32)],
            kernel_params=[0.0, 0.0, 0.0],
        )
    node = helper.make_node(
        "SVMRegressor", ["x"], ["y"], domain=ML, rho=[0.25], one_class=one_class, **attrs
    )
    model = _ml_model([node], [("x", np.float32, (N, F))], [("y", np.float32, (N, 1))])
    check_conversion(model, feeds={"x": _features()}, atol=1e-4)


def _svc(kernel, c, transform, per_class=(3, 2, 4, 2), linear=False, labels=None, seed=0):
    rng = np.random.default_rng(seed)
    labels = list(labels or [3 * k + 1 for k in range(c)])
    attrs = dict(classlabels_ints=labels, post_transform=transform)
    if linear:
        attrs.update(
            coefficients=[float(v) for v in rng.standard_normal(c * F).astype(np.float32)],
            rho=[0.1],
            kernel_type="LINEAR",
            kernel_params=[0.0, 0.0, 0.0],
        )
        cols = c
    else:
        per_class = list(per_class[:c])
        v = sum(per_class)
        attrs.update(
            vectors_per_class=per_class,
            support_vectors=[float(x) for x in rng.standard_normal(v * F).astype(np.float32)],
            coefficients=[float(x) for x in rng.standard_normal((c - 1) * v).astype(np.float32)],
            rho=[float(x) for x in rng.standard_normal(c * (c - 1) // 2).astype(np.float32)],
            kernel_type=kernel,
            kernel_params=KERNEL_PARAMS[kernel],
        )
        cols = c * (c - 1) // 2 if c > 2 else 2
    node = helper.make_node("SVMClassifier", ["x"], ["label", "scores"], domain=ML, **attrs)
    return _ml_model(
        [node],
        [("x", np.float32, (N, F))],
        [("label", np.int64, (N,)), ("scores", np.float32, (N, cols))],
    )


@pytest.mark.parametrize("kernel", list(KERNEL_PARAMS))
@pytest.mark.parametrize("c", [2, 3, 4])
@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_svm_classifier_support_vectors(kernel, c, transform):
    model = _svc(kernel, c, transform, seed=c)
    check_conversion(model, feeds={"x": _features()}, atol=1e-4)


@pytest.mark.parametrize("c", [2, 3])
@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX_ZERO"])
@pytest.mark.parametrize("seed", [0, 1])
def test_svm_classifier_linear_mode(c, transform, seed):
    check_conversion(
        _svc("LINEAR", c, transform, linear=True, seed=seed), feeds={"x": _features()}, atol=1e-4
    )


@pytest.mark.parametrize("c", [2, 3, 4])
@pytest.mark.parametrize("transform", ["NONE", "SOFTMAX"])
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_svm_classifier_probabilities(c, transform, scale):
    """prob_a/prob_b: Platt sigmoids and onnxruntime's iterative pairwise coupling."""
    model = _svc("RBF", c, transform, seed=c + 10)
    node = model.graph.node[0]
    rng = np.random.default_rng(c)
    pairs = c * (c - 1) // 2
    prob_a = [float(v) for v in -scale * (0.5 + rng.random(pairs))]
    prob_b = [float(v) for v in rng.normal(0, 0.3, pairs)]
    node.attribute.extend(
        [helper.make_attribute("prob_a", prob_a), helper.make_attribute("prob_b", prob_b)]
    )
    model.graph.output[1].type.tensor_type.shape.dim[1].dim_value = c
    chk = check_conversion(model, feeds={"x": _features(n=64)[:N]}, atol=1e-4)
    assert np.ptp(chk.expected["scores"]) > 0.05  # not a near-constant output


# ---------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int32])
@pytest.mark.parametrize("per_column", [False, True])
def test_scaler(dtype, per_column):
    offset = [0.5, -1.0, 2.0, 0.0, 1.5, -0.5] if per_column else [0.25]
    scale = [2.0, 0.5, -1.0, 3.0, 1.0, 0.1] if per_column else [1.5]
    node = helper.make_node("Scaler", ["x"], ["y"], domain=ML, offset=offset, scale=scale)
    model = _ml_model([node], [("x", dtype, (N, F))], [("y", np.float32, (N, F))])
    x = (_features() * 4).astype(dtype)
    check_conversion(model, feeds={"x": x})


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_normalizer(norm, dtype):
    node = helper.make_node("Normalizer", ["x"], ["y"], domain=ML, norm=norm)
    model = _ml_model([node], [("x", dtype, (N, F))], [("y", np.float32, (N, F))])
    x = (_features() * 4).astype(dtype)
    x[2] = 0  # a zero row stays as it is
    x[3] = -np.abs(x[3]) - 1  # all negative: MAX divides by a negative maximum
    check_conversion(model, feeds={"x": x})


def test_binarizer():
    node = helper.make_node("Binarizer", ["x"], ["y"], domain=ML, threshold=0.3)
    model = _ml_model([node], [("x", np.float32, (N, F))], [("y", np.float32, (N, F))])
    x = _features()
    x[0, 0] = 0.3
    check_conversion(model, feeds={"x": x})


@pytest.mark.parametrize("replaced", [float("nan"), 0.0, 2.0])
@pytest.mark.parametrize("per_column", [False, True])
def test_imputer_float(replaced, per_column):
    imputed = [float(v) for v in np.arange(F) * 1.5] if per_column else [-7.0]
    node = helper.make_node(
        "Imputer",
        ["x"],
        ["y"],
        domain=ML,
        imputed_value_floats=imputed,
        replaced_value_float=replaced,
    )
    model = _ml_model([node], [("x", np.float32, (N, F))], [("y", np.float32, (N, F))])
    x = np.round(_features())
    x[np.random.default_rng(4).random(x.shape) < 0.2] = np.nan
    check_conversion(model, feeds={"x": x})


def test_imputer_int64():
    node = helper.make_node(
        "Imputer",
        ["x"],
        ["y"],
        domain=ML,
        imputed_value_int64s=list(range(10, 10 + F)),
        replaced_value_int64=-1,
    )
    model = _ml_model([node], [("x", np.int64, (N, F))], [("y", np.int64, (N, F))])
    x = np.random.default_rng(0).integers(-2, 3, (N, F)).astype(np.int64)
    check_conversion(model, feeds={"x": x})


@pytest.mark.parametrize("form", ["const", "runtime"])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_array_feature_extractor(form, dtype):
    idx = np.array([4, 0, 0, 2], np.int64)
    inputs = [("x", dtype, (N, F))]
    inits = {}
    if form == "const":
        inits["idx"] = idx
    else:
        inputs.append(("idx", np.int64, (4,)))
    node = helper.make_node("ArrayFeatureExtractor", ["x", "idx"], ["y"], domain=ML)
    model = make_model([node], inputs, [("y", dtype, (N, 4))], opset=OPSETS, initializers=inits)
    feeds = {"x": (_features() * 5).astype(dtype)}
    if form == "runtime":
        feeds["idx"] = idx
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("dims", [(2, 3), (4, 1), (3, 5)])
def test_feature_vectorizer(dims):
    """Inputs cut or zero-padded to inputdimensions, cast to float, concatenated."""
    node = helper.make_node(
        "FeatureVectorizer", ["a", "b"], ["y"], domain=ML, inputdimensions=list(dims)
    )
    model = _ml_model(
        [node],
        [("a", np.int64, (N, 3)), ("b", np.int64, (N, 2))],
        [("y", np.float32, (N, sum(dims)))],
    )
    rng = np.random.default_rng(0)
    feeds = {
        "a": rng.integers(-9, 9, (N, 3)).astype(np.int64),
        "b": rng.integers(-9, 9, (N, 2)).astype(np.int64),
    }
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
@pytest.mark.parametrize("cats", [(1, 4, 7, 2), (3, 5, 3, 0)])
def test_one_hot_encoder(dtype, cats):
    node = helper.make_node("OneHotEncoder", ["x"], ["y"], domain=ML, cats_int64s=list(cats))
    model = _ml_model([node], [("x", dtype, (N, 2))], [("y", np.float32, (N, 2, len(cats)))])
    x = np.random.default_rng(1).integers(0, 9, (N, 2)).astype(dtype)
    if dtype == np.float32:
        x = x + np.float32(0.5)  # truncated to int64 as onnxruntime does
    check_conversion(model, feeds={"x": x})


@pytest.mark.parametrize(
    "keys,values,ml_opset",
    [
        ("keys_int64s", "values_int64s", 2),
        ("keys_int64s", "values_floats", 2),
        ("keys_floats", "values_int64s", 2),
        ("keys_floats", "values_floats", 2),
        ("keys_floats", "values_floats", 4),
    ],
)
def test_label_encoder(keys, values, ml_opset):
    key_vals = [3, -1, 7, 3, 0]  # a duplicate key: the first wins
    if keys == "keys_floats" and ml_opset >= 4:
        key_vals = [3.0, float("nan"), 7.5, 3.0, 0.0]
    out_vals = [10, 20, 30, 40, 50]
    attrs = {keys: [float(k) for k in key_vals] if keys == "keys_floats" else key_vals}
    attrs[values] = [float(v) for v in out_vals] if values == "values_floats" else out_vals
    if values == "values_floats":
        attrs["default_float"] = -2.5
    else:
        attrs["default_int64"] = -9
    in_dtype = np.float32 if keys == "keys_floats" else np.int64
    out_dtype = np.float32 if values == "values_floats" else np.int64
    node = helper.make_node("LabelEncoder", ["x"], ["y"], domain=ML, **attrs)
    model = _ml_model([node], [("x", in_dtype, (N, 3))], [("y", out_dtype, (N, 3))], ml_opset)
    rng = np.random.default_rng(0)
    x = rng.choice(np.array(key_vals + [5, 8], np.float64), (N, 3)).astype(in_dtype)
    if in_dtype == np.float32:
        x[0, 0] = np.nan
    check_conversion(model, feeds={"x": x})


# ---------------------------------------------------------------------------------------------
# ZipMap
# ---------------------------------------------------------------------------------------------


def _zipmap_model():
    rng = np.random.default_rng(0)
    a, w = random_trees(rng, 3, 3, n_out=3)
    attrs = _legacy_attrs(a, w, "class", False)
    nodes = [
        helper.make_node(
            "TreeEnsembleClassifier",
            ["x"],
            ["label", "probabilities"],
            domain=ML,
            classlabels_int64s=[0, 1, 2],
            **attrs,
        ),
        helper.make_node(
            "ZipMap",
            ["probabilities"],
            ["output_probability"],
            domain=ML,
            classlabels_int64s=[0, 1, 2],
        ),
    ]
    seq = (
        helper.make_sequence_value_info(
            "output_probability",
            helper.make_map_type_proto(
                TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
            ),
        )
        if False
        else helper.make_value_info(
            "output_probability",
            helper.make_sequence_type_proto(
                helper.make_map_type_proto(
                    TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
                )
            ),
        )
    )
    return _ml_model(nodes, [("x", np.float32, (N, F))], [("label", np.int64, (N,)), seq])


def test_zipmap_refused_with_the_exporter_option():
    err = expect_refusal(_zipmap_model(), "unsupported_dtype")
    assert "zipmap" in str(err) and "drop_zipmap=True" in str(err), str(err)


def test_drop_zipmap_outputs_the_probabilities():
    from onnx2tflite_direct.frontend.zipmap import drop_zipmap

    model = _zipmap_model()
    chk = check_conversion(drop_zipmap(model), feeds={"x": _features()})
    res = chk.result
    again = check_conversion(model, feeds={"x": _features()}, drop_zipmap=True)
    assert again.tflite_bytes == res.tflite_bytes
    assert list(model.graph.output[1].type.WhichOneof("value")) and (
        model.graph.output[1].type.WhichOneof("value") == "sequence_type"
    )  # the caller's model is untouched


@pytest.mark.parametrize("op", ["LinearClassifier", "SVMClassifier"])
@pytest.mark.parametrize("k", [1, 3])
def test_linear_and_svm_string_labels(op, k):
    names = ["no", "yes"] if k == 1 else ["a", "bb", "ccc"]
    if op == "LinearClassifier":
        model = _linear_classifier(k, range(len(names)), "NONE", seed=3)
    else:
        model = _svc("RBF", len(names), "NONE", seed=3)
    node = model.graph.node[0]
    keep = [a for a in node.attribute if a.name not in ("classlabels_ints",)]
    del node.attribute[:]
    node.attribute.extend(keep + [helper.make_attribute("classlabels_strings", names)])
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.STRING
    check_conversion(model, feeds={"x": _features()}, atol=1e-4)


def test_cli_drop_zipmap(tmp_path, capsys):
    """Without the flag: exit 3 naming the exporter option and --drop-zipmap; with it: the
    file is written and validates against onnxruntime."""
    import onnx

    from onnx2tflite_direct import cli, errors

    path = tmp_path / "clf.onnx"
    onnx.save(_zipmap_model(), path)
    out = tmp_path / "out"
    assert cli.main([str(path), "-o", str(out)]) == errors.EXIT_UNSUPPORTED
    err = capsys.readouterr().err
    assert "--drop-zipmap" in err and "zipmap" in err, err
    assert not (out / "clf_float32.tflite").exists()
    code = cli.main([str(path), "-o", str(out), "--drop-zipmap", "--validate"])
    assert code == 0 and (out / "clf_float32.tflite").exists()


def test_one_row_input_of_rank_1():
    """A ``[F]`` input is one row (onnxruntime: N = 1)."""
    model = _linear_classifier(3, (0, 1, 2), "SOFTMAX")
    model.graph.input[0].type.tensor_type.shape.dim.pop(0)
    for o in model.graph.output:
        o.type.tensor_type.shape.dim[0].dim_value = 1
    check_conversion(model, feeds={"x": _features()[0]})


WORDS = np.array(["cat", "dog", "", "bird", "dog ", "Cat"], dtype=object)


@pytest.mark.parametrize(
    "keys,values",
    [
        ("keys_strings", "values_int64s"),
        ("keys_strings", "values_floats"),
        ("keys_int64s", "values_strings"),
        ("keys_strings", "values_strings"),
    ],
)
def test_label_encoder_strings(keys, values):
    """String keys or values: EQUAL and GATHER on LiteRT string tensors."""
    key_vals = ["cat", "dog", "bird", "cat"] if keys == "keys_strings" else [3, -1, 7, 3]
    out_vals = {
        "values_int64s": [10, 20, 30, 40],
        "values_floats": [0.5, 1.5, 2.5, 3.5],
        "values_strings": ["x", "y", "z", "w"],
    }[values]
    attrs = {keys: key_vals, values: out_vals}
    default = {
        "values_int64s": ("default_int64", -7),
        "values_floats": ("default_float", -1.0),
        "values_strings": ("default_string", "none"),
    }[values]
    attrs[default[0]] = default[1]
    out_type = {
        "values_int64s": np.int64,
        "values_floats": np.float32,
        "values_strings": TensorProto.STRING,
    }[values]
    in_type = TensorProto.STRING if keys == "keys_strings" else np.int64
    node = helper.make_node("LabelEncoder", ["x"], ["y"], domain=ML, **attrs)
    model = _ml_model([node], [("x", in_type, (N, 2))], [("y", out_type, (N, 2))], 2)
    rng = np.random.default_rng(1)
    if keys == "keys_strings":
        x = rng.choice(WORDS, (N, 2))
    else:
        x = rng.choice(np.array([3, -1, 7, 5]), (N, 2)).astype(np.int64)
    check_conversion(model, feeds={"x": x})


@pytest.mark.parametrize("direction", ["string_to_int", "int_to_string"])
def test_label_encoder_opset1_classes(direction):
    classes = ["cat", "dog", "bird"]
    if direction == "string_to_int":
        node = helper.make_node(
            "LabelEncoder", ["x"], ["y"], domain=ML, classes_strings=classes, default_int64=-5
        )
        io = (TensorProto.STRING, np.int64)
        x = np.random.default_rng(2).choice(WORDS, (N, 2))
    else:
        node = helper.make_node(
            "LabelEncoder", ["x"], ["y"], domain=ML, classes_strings=classes, default_string="?"
        )
        io = (np.int64, TensorProto.STRING)
        x = np.random.default_rng(2).integers(-1, 5, (N, 2)).astype(np.int64)
    model = _ml_model([node], [("x", io[0], (N, 2))], [("y", io[1], (N, 2))], 1)
    check_conversion(model, feeds={"x": x})


def test_one_hot_encoder_strings():
    node = helper.make_node(
        "OneHotEncoder", ["x"], ["y"], domain=ML, cats_strings=["cat", "dog", "bird", "cat"]
    )
    model = _ml_model([node], [("x", TensorProto.STRING, (N, 2))], [("y", np.float32, (N, 2, 4))])
    check_conversion(model, feeds={"x": np.random.default_rng(3).choice(WORDS, (N, 2))})


@pytest.mark.parametrize("direction", ["string_to_int", "int_to_string"])
def test_category_mapper(direction):
    """Duplicate categories: the last one wins (onnxruntime fills its maps with map[k] = v)."""
    attrs = dict(cats_strings=["cat", "dog", "bird", "cat"], cats_int64s=[1, 2, 3, 2])
    if direction == "string_to_int":
        attrs["default_int64"] = -3
        io = (TensorProto.STRING, np.int64)
        x = np.random.default_rng(4).choice(WORDS, (N, 3))
    else:
        attrs["default_string"] = "none"
        io = (np.int64, TensorProto.STRING)
        x = np.random.default_rng(4).integers(0, 5, (N, 3)).astype(np.int64)
    node = helper.make_node("CategoryMapper", ["x"], ["y"], domain=ML, **attrs)
    model = _ml_model([node], [("x", io[0], (N, 3))], [("y", io[1], (N, 3))])
    check_conversion(model, feeds={"x": x})


def test_label_encoder_opset1_duplicate_classes_last_wins():
    node = helper.make_node(
        "LabelEncoder",
        ["x"],
        ["y"],
        domain=ML,
        classes_strings=["cat", "dog", "cat"],
        default_int64=-1,
    )
    model = _ml_model([node], [("x", TensorProto.STRING, (N, 2))], [("y", np.int64, (N, 2))], 1)
    check_conversion(model, feeds={"x": np.random.default_rng(5).choice(WORDS, (N, 2))})
