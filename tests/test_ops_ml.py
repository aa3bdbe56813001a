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


@pytest.fixture(params=["traverse", "all_splits"])
def strategy(request, monkeypatch):
    """Run a tree test with each walking strategy forced (the cost model picks one)."""
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


def test_tree_classifier_string_labels_refused_when_label_used():
    rng = np.random.default_rng(0)
    a, w = random_trees(rng, 2, 2, n_out=2)
    node = helper.make_node(
        "TreeEnsembleClassifier",
        ["x"],
        ["label", "probabilities"],
        domain=ML,
        classlabels_strings=["a", "b"],
        **_legacy_attrs(a, w, "class", False),
    )
    model = _ml_model(
        [node],
        [("x", np.float32, (N, F))],
        [("label", TensorProto.STRING, (N,)), ("probabilities", np.float32, (N, 2))],
    )
    expect_refusal(model, "unsupported_dtype")
