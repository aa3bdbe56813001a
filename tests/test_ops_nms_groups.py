"""NonMaxSuppression over torchvision's batched_nms boxes (``boxes + label * (max + 1)``):
rule ``batched_nms_groups`` runs one kernel per label group. Every case is compared exactly
with onnxruntime: ties, boxes touching at the group borders, empty groups, IoU thresholds at
their edges, and inputs whose offsets do NOT separate the groups (negative coordinates),
which must take the run-time fallback to one kernel over all boxes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import convert, make_model, op_histogram
from onnx import helper

from onnx2tflite_direct.validate import run_litert

RULE = "batched_nms_groups"


def _batched_model(n, classes, max_out=None, iou=0.5, score=None, labels=None):
    """torchvision's batched_nms as exported: inputs ``boxes`` [n, 4] and ``class_scores``
    [n, classes]; scores = ReduceMax, labels = ArgMax (or the constant ``labels``), then
    ``NMS(boxes + Cast(labels) * (ReduceMax(boxes) + 1), scores)``. ``n`` may be a name
    (a dynamic dim)."""
    nodes = [
        helper.make_node("ReduceMax", ["class_scores"], ["scores1"], axes=[1], keepdims=0),
        helper.make_node("ReduceMax", ["boxes"], ["max_coordinate"], keepdims=0),
        helper.make_node("Add", ["max_coordinate", "one"], ["span"]),
        helper.make_node("Cast", ["labels"], ["labels_f"], to=1),
        helper.make_node("Mul", ["labels_f", "span"], ["offsets"]),
        helper.make_node("Unsqueeze", ["offsets", "axis1"], ["offsets_col"]),
        helper.make_node("Add", ["boxes", "offsets_col"], ["boxes_for_nms"]),
        helper.make_node("Unsqueeze", ["boxes_for_nms", "axis0"], ["nms_boxes"]),
        helper.make_node("Unsqueeze", ["scores1", "axes01"], ["nms_scores"]),
    ]
    inits = {
        "one": np.array(1, np.float32),
        "axis0": np.array([0], np.int64),
        "axis1": np.array([1], np.int64),
        "axes01": np.array([0, 1], np.int64),
    }
    if labels is None:
        nodes.insert(
            0, helper.make_node("ArgMax", ["class_scores"], ["labels"], axis=1, keepdims=0)
        )
    else:
        inits["labels"] = np.asarray(labels, np.int64)
    names = ["nms_boxes", "nms_scores"]
    for name, value, dtype in (
        ("max_out", max_out, np.int64),
        ("iou", iou, np.float32),
        ("score", score, np.float32),
    ):
        if value is None:
            names.append("")
        else:
            names.append(name)
            inits[name] = np.array([value], dtype)
    while names[-1] == "":
        names.pop()
    nodes.append(helper.make_node("NonMaxSuppression", names, ["selected"]))
    return make_model(
        nodes,
        [("boxes", np.float32, (n, 4)), ("class_scores", np.float32, (n, classes))],
        [("selected", np.int64, ("num", 3))],
        initializers=inits,
        opset=17,
    )


def _clustered(rng, n, extent=100.0, objects=4):
    """Boxes clustered around a few objects (many overlaps), corners in random order."""
    centres = rng.uniform(0, extent, (objects, 2))[rng.integers(0, objects, n)]
    centres = centres + rng.normal(0, extent / 40, (n, 2))
    size = rng.uniform(extent / 20, extent / 4, (n, 2))
    lo, hi = centres - size / 2, centres + size / 2
    flip = rng.random((n, 1)) < 0.3
    return np.concatenate([np.where(flip, hi, lo), np.where(flip, lo, hi)], 1).astype(np.float32)


def _onnxruntime(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _per_group_reference(feeds, labels, iou):
    """ONNX's NMS run per label group, merged in global score order (what the groups
    decomposition computes; it equals ONNX's answer only when the groups are separated)."""
    boxes, scores = feeds["boxes"], feeds["class_scores"].max(1)
    picked = []
    for g in np.unique(labels):
        idx = np.flatnonzero(labels == g)
        model = _plain_nms_model(len(idx), iou)
        sel = _onnxruntime(model, {"b": boxes[idx][None], "s": scores[idx][None, None]})
        picked += list(idx[sel[:, 2]])
    order = sorted(picked, key=lambda i: (-scores[i], i))
    return np.array(order, np.int64)


def _plain_nms_model(n, iou):
    node = helper.make_node("NonMaxSuppression", ["b", "s", "k", "t"], ["sel"], center_point_box=0)
    return make_model(
        [node],
        [("b", np.float32, (1, n, 4)), ("s", np.float32, (1, 1, n))],
        [("sel", np.int64, ("m", 3))],
        initializers={"k": np.array([n], np.int64), "t": np.array([iou], np.float32)},
    )


def _check(model, feeds, groups, kernels=None, **options):
    """Exact selected rows against onnxruntime; the rule fired (``groups`` > 0) and the file
    has ``kernels`` NMS kernels (default: ``groups``, or 1 when the rule did not fire)."""
    expected = _onnxruntime(model, feeds)
    res = convert(model, **options)
    actual = run_litert(res.tflite_bytes, feeds, res.report.get("io"))["selected"]
    assert actual.dtype == np.int64
    np.testing.assert_array_equal(actual, expected)
    fired = [r for r in res.report["rewrites"] if r["rule"] == RULE]
    found = op_histogram(res.tflite_bytes).get("NON_MAX_SUPPRESSION_V4", 0)
    if groups:
        assert fired and fired[0]["matched"] == 1, res.report["rewrites"]
    else:
        assert not fired or fired[0]["matched"] == 0
    assert found == (kernels if kernels is not None else max(groups, 1))
    return expected


def _feeds(rng, n, classes, boxes=None, score_levels=None):
    scores = rng.random((n, classes)).astype(np.float32)
    if score_levels:
        scores = (np.floor(scores * score_levels) / score_levels).astype(np.float32)
    return {"boxes": _clustered(rng, n) if boxes is None else boxes, "class_scores": scores}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("classes", [2, 5])
def test_random_groups_exact(seed, classes):
    rng = np.random.default_rng(seed)
    n = 60
    feeds = _feeds(rng, n, classes)
    expected = _check(_batched_model(n, classes, max_out=n, iou=0.4), feeds, classes)
    assert len(expected) > classes  # a real selection, not a near-empty one


@pytest.mark.parametrize("levels", [3, 20])
def test_ties_take_the_lower_index_first(levels):
    """Scores on a coarse grid: many ties within and across groups."""
    rng = np.random.default_rng(4)
    n, classes = 80, 4
    feeds = _feeds(rng, n, classes, score_levels=levels)
    _check(_batched_model(n, classes, max_out=n, iou=0.3), feeds, classes)


def test_constant_labels_from_one():
    """torchvision's layout: labels 1..C in contiguous runs (a constant once the shapes are
    known; the Cast folds away): G = C groups based at 1."""
    rng = np.random.default_rng(5)
    classes, per = 6, 15
    labels = np.repeat(np.arange(1, classes + 1), per)
    feeds = _feeds(rng, classes * per, 1)
    model = _batched_model(classes * per, 1, max_out=100, iou=0.5, labels=labels)
    _check(model, feeds, classes)


@pytest.mark.parametrize("iou", [0.0, 0.5])
def test_boxes_touching_at_the_group_border(iou):
    """M = 2**25 - 4: M + 1 rounds back to M in float32, so label 1's box at 0 lands exactly
    on label 0's box edge at M. Touching boxes never suppress in ONNX (empty intersection):
    the groups still count as separated, and the answer is exact."""
    m = np.float32(2**25 - 4)
    assert np.float32(m + np.float32(1)) == m
    boxes = np.array(
        [[m - 8, m - 8, m, m], [m - 8, m - 8, m, m], [0, 0, 8, 8], [0, 0, 8, 8]], np.float32
    )
    scores = np.array([[0.9, 0.1], [0.8, 0.1], [0.1, 0.7], [0.1, 0.6]], np.float32)
    feeds = {"boxes": boxes, "class_scores": scores}
    expected = _check(_batched_model(4, 2, max_out=4, iou=iou), feeds, 2)
    np.testing.assert_array_equal(expected[:, 2], [0, 2])  # one per group: no cross-group


@pytest.mark.parametrize("threshold", [None, 0.75])
def test_empty_groups(threshold):
    """Label 2 of 5 never wins the ArgMax (its scores are 0); with a score threshold more
    groups lose every box."""
    rng = np.random.default_rng(6)
    n, classes = 50, 5
    feeds = _feeds(rng, n, classes)
    feeds["class_scores"][:, 2] = 0
    _check(_batched_model(n, classes, max_out=n, iou=0.4, score=threshold), feeds, classes)


def test_negative_coordinates_take_the_fallback():
    """Coordinates down to -60 with max 10: the offsets (11 per label) do not separate the
    labels, boxes of different labels overlap after the shift and ONNX suppresses across
    them. The run-time check must see it and run one kernel over all boxes."""
    rng = np.random.default_rng(7)
    n, classes = 40, 3
    boxes = _clustered(rng, n, extent=70) - np.float32(60)
    boxes = np.minimum(boxes, np.float32(10))
    boxes[0] = [0, 0, 10, 10]  # label 0 (forced below)
    boxes[1] = [-11, -11, -1, -1]  # label 1: shifted by 11 onto box 0
    scores = rng.random((n, classes)).astype(np.float32)
    scores[0] = [0.99, 0, 0]
    scores[1] = [0, 0.98, 0]
    feeds = {"boxes": boxes, "class_scores": scores}
    expected = _check(_batched_model(n, classes, max_out=n, iou=0.5), feeds, classes)
    labels = scores.argmax(1)
    per_group = _per_group_reference(feeds, labels, 0.5)
    assert not np.array_equal(expected[:, 2], per_group)  # the groups do interact here
    assert 1 not in expected[:, 2]  # box 1 was suppressed by box 0 of another label


@pytest.mark.parametrize("iou", [0.0, 0.5, 0.999, 1.0])
def test_iou_threshold_edges(iou):
    """0 (any overlap suppresses), 1 (nothing is: no kernel at all), and an IoU exactly equal
    to the threshold (ONNX keeps the box: ``iou > threshold``)."""
    rng = np.random.default_rng(8)
    n, classes = 40, 3
    feeds = _feeds(rng, n, classes)
    feeds["boxes"][:2] = [[0, 0, 2, 1], [0, 0, 1, 1]]  # IoU exactly 0.5
    feeds["class_scores"][:2] = [[0.999, 0, 0], [0.998, 0, 0]]
    kernels = 0 if iou >= 1 else classes
    expected = _check(_batched_model(n, classes, max_out=n, iou=iou), feeds, classes, kernels)
    if iou == 0.5:
        assert {0, 1} <= set(expected[:, 2])


@pytest.mark.parametrize("max_out", [1, 3])
def test_max_output_limit(max_out):
    """ONNX's first K selections (greedy order) across all groups."""
    rng = np.random.default_rng(9)
    n, classes = 50, 4
    feeds = _feeds(rng, n, classes)
    expected = _check(_batched_model(n, classes, max_out=max_out, iou=0.5), feeds, classes)
    assert len(expected) == max_out


def test_disabled_rule_gives_one_kernel_and_the_same_answer():
    rng = np.random.default_rng(10)
    n, classes = 60, 5
    feeds = _feeds(rng, n, classes)
    model = _batched_model(n, classes, max_out=n, iou=0.45)
    _check(model, feeds, 0, kernels=1, disable_rewrites=[RULE])


def test_labels_of_unknown_range_are_left_alone():
    """Labels read from a graph input: no static group count, no rewrite."""
    rng = np.random.default_rng(11)
    n = 30
    model = _batched_model(n, 3, max_out=n, iou=0.5)
    model.graph.node.pop(0)  # the ArgMax: labels become a graph input
    model.graph.input.append(helper.make_tensor_value_info("labels", 7, [n]))
    feeds = _feeds(rng, n, 3)
    feeds["labels"] = rng.integers(0, 3, n).astype(np.int64)
    _check(model, feeds, 0)


def _prefiltered(model, threshold):
    """Boxes kept by ``max class score > threshold`` first (NonZero + Gather, as detection
    heads do): the NMS then sees a data-dependent box count."""
    rename = {"boxes": "kept_boxes", "class_scores": "kept_scores"}
    for node in model.graph.node:
        node.input[:] = [rename.get(x, x) for x in node.input]
    front = [
        helper.make_node("ReduceMax", ["class_scores"], ["best"], axes=[1], keepdims=0),
        helper.make_node("Greater", ["best", "keep_above"], ["keep"]),
        helper.make_node("NonZero", ["keep"], ["keep_nz"]),
        helper.make_node("Squeeze", ["keep_nz", "axis0"], ["keep_idx"]),
        helper.make_node("Gather", ["boxes", "keep_idx"], ["kept_boxes"], axis=0),
        helper.make_node("Gather", ["class_scores", "keep_idx"], ["kept_scores"], axis=0),
    ]
    for k, node in enumerate(front):
        model.graph.node.insert(k, node)
    model.graph.initializer.append(helper.make_tensor("keep_above", 1, [], [threshold]))
    return model


def test_data_dependent_box_count():
    """The box count follows a score mask (the corpus' SSDlite): every size is computed at
    run time, the group kernels included."""
    n, classes = 60, 4
    model = _prefiltered(_batched_model(n, classes, max_out=1000, iou=0.5), 0.5)
    res = convert(model)
    assert op_histogram(res.tflite_bytes)["NON_MAX_SUPPRESSION_V4"] == classes
    counts = set()
    for seed in (12, 13, 14):
        feeds = _feeds(np.random.default_rng(seed), n, classes)
        expected = _onnxruntime(model, feeds)
        actual = run_litert(res.tflite_bytes, feeds, res.report.get("io"))["selected"]
        np.testing.assert_array_equal(actual, expected)
        counts.add(len(expected))
    assert len(counts) > 1  # different selection sizes, one file


def test_run_time_thresholds():
    """Output limit, IoU and score thresholds fed at run time."""
    n, classes = 50, 3
    model = _batched_model(n, classes, max_out=n, iou=0.5, score=0.2)
    for name in ("max_out", "iou", "score"):
        init = next(i for i in model.graph.initializer if i.name == name)
        model.graph.initializer.remove(init)
        elem = 7 if name == "max_out" else 1
        model.graph.input.append(helper.make_tensor_value_info(name, elem, [1]))
    res = convert(model)
    for seed, k, iou, score in ((15, 100, 0.0, 0.1), (16, 4, 0.3, 0.5), (17, 7, 1.0, 0.0)):
        feeds = _feeds(np.random.default_rng(seed), n, classes)
        feeds["max_out"] = np.array([k], np.int64)
        feeds["iou"] = np.array([iou], np.float32)
        feeds["score"] = np.array([score], np.float32)
        expected = _onnxruntime(model, feeds)
        actual = run_litert(res.tflite_bytes, feeds, res.report.get("io"))["selected"]
        np.testing.assert_array_equal(actual, expected)


def test_padded_output():
    """--nms-padded-output: ONNX's rows first, then -1 rows; the valid count agrees."""
    rng = np.random.default_rng(18)
    n, classes = 50, 4
    feeds = _feeds(rng, n, classes)
    model = _batched_model(n, classes, max_out=n, iou=0.4)
    expected = _onnxruntime(model, feeds)
    res = convert(model, nms_padded_output=True)
    actual = run_litert(res.tflite_bytes, feeds, res.report.get("io"))
    rows, count = actual["selected"], actual["selected_valid_count"]
    assert int(count) == len(expected)
    np.testing.assert_array_equal(rows[: len(expected)], expected)
    assert (rows[len(expected) :] == -1).all()
    assert op_histogram(res.tflite_bytes)["NON_MAX_SUPPRESSION_V4"] == classes


@pytest.mark.parametrize("seed", range(8))
def test_random_configurations(seed):
    """Random sizes, labels, thresholds and box positions; about half the seeds shift boxes
    below 0, so both the per-group path and the fallback are exercised."""
    rng = np.random.default_rng(100 + seed)
    n, classes = int(rng.integers(5, 70)), int(rng.integers(2, 9))
    boxes = _clustered(rng, n, extent=float(rng.uniform(5, 200)))
    boxes = boxes + np.float32(rng.uniform(-30, 30))
    feeds = _feeds(rng, n, classes, boxes=boxes, score_levels=int(rng.choice([0, 5])))
    iou = float(rng.choice([0.0, 0.3, 0.5, 0.7]))
    score = None if rng.random() < 0.5 else float(rng.uniform(0, 0.8))
    max_out = int(rng.integers(1, n + 5))
    model = _batched_model(n, classes, max_out=max_out, iou=iou, score=score)
    _check(model, feeds, classes)


def test_labels_by_mod_as_retinanet_builds_them():
    """RetinaNet's form: top-k over the flattened [boxes x classes] scores, label = index mod
    C, box = index div C; the rule proves labels in [0, C) from the Mod."""
    n, classes, k = 40, 5, 60
    nodes = [
        helper.make_node("Reshape", ["class_scores", "flat_shape"], ["flat"]),
        helper.make_node("TopK", ["flat", "k"], ["top_scores", "top_idx"]),
        helper.make_node("Mod", ["top_idx", "num_classes"], ["labels"]),
        helper.make_node("Div", ["top_idx", "num_classes"], ["box_idx"]),
        helper.make_node("Gather", ["boxes", "box_idx"], ["top_boxes"], axis=0),
        helper.make_node("ReduceMax", ["top_boxes"], ["max_coordinate"], keepdims=0),
        helper.make_node("Add", ["max_coordinate", "one"], ["span"]),
        helper.make_node("Cast", ["labels"], ["labels_f"], to=1),
        helper.make_node("Mul", ["labels_f", "span"], ["offsets"]),
        helper.make_node("Unsqueeze", ["offsets", "axis1"], ["offsets_col"]),
        helper.make_node("Add", ["top_boxes", "offsets_col"], ["boxes_for_nms"]),
        helper.make_node("Unsqueeze", ["boxes_for_nms", "axis0"], ["nms_boxes"]),
        helper.make_node("Unsqueeze", ["top_scores", "axes01"], ["nms_scores"]),
        helper.make_node(
            "NonMaxSuppression", ["nms_boxes", "nms_scores", "max_out", "iou"], ["selected"]
        ),
    ]
    inits = {
        "flat_shape": np.array([-1], np.int64),
        "k": np.array([k], np.int64),
        "num_classes": np.array(classes, np.int64),
        "one": np.array(1, np.float32),
        "axis0": np.array([0], np.int64),
        "axis1": np.array([1], np.int64),
        "axes01": np.array([0, 1], np.int64),
        "max_out": np.array([k], np.int64),
        "iou": np.array([0.5], np.float32),
    }
    model = make_model(
        nodes,
        [("boxes", np.float32, (n, 4)), ("class_scores", np.float32, (n, classes))],
        [("selected", np.int64, ("num", 3))],
        initializers=inits,
    )
    boxes = np.clip(_clustered(np.random.default_rng(19), n), 0, 100).astype(np.float32)
    feeds = _feeds(np.random.default_rng(20), n, classes, boxes=boxes)
    _check(model, feeds, classes)


def test_center_point_boxes_are_left_alone():
    """Shifting [xc, yc, w, h] by an offset moves the sizes too: not the idiom."""
    rng = np.random.default_rng(21)
    n, classes = 30, 3
    model = _batched_model(n, classes, max_out=n, iou=0.5)
    model.graph.node[-1].attribute.append(helper.make_attribute("center_point_box", 1))
    feeds = _feeds(rng, n, classes)
    _check(model, feeds, 0)
