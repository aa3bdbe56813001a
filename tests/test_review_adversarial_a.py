"""Adversarial review of this session's exact rules (``batched_nms_groups``, the tree ``path``
strategy, ``--int32-inputs``): each case converts, runs in LiteRT (XNNPACK on and off) and is
compared exactly with onnxruntime on seeded inputs."""

from __future__ import annotations

import re

import numpy as np
import onnxruntime as ort
import pytest
from harness import convert, make_model
from onnx import helper

from onnx2tflite_direct.validate import run_litert

I64 = np.int64
FM = float(np.finfo(np.float32).max)


def _exact(model, feeds, litert_feeds=None, **options):
    """Every output exactly onnxruntime's (dtype, shape, values; NaN where NaN), on both
    kernel sets."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, feeds)
    res = convert(model, **options)
    for xnnpack in (True, False):
        got = run_litert(
            res.tflite_bytes, litert_feeds or feeds, res.report.get("io"), use_xnnpack=xnnpack
        )
        for out, e in zip(model.graph.output, expected, strict=True):
            a = got[out.name]
            assert a.dtype == e.dtype and a.shape == e.shape, (out.name, a.dtype, e.dtype)
            np.testing.assert_array_equal(a, e)
    return res


# --int32-inputs ---------------------------------------------------------------------------
IDS = np.array([[2**31 - 1, -(2**31), 5, -1, 0, 2**30]], I64)


def _narrow_feeds(feeds):
    return {k: v.astype(np.int32) if v.dtype == I64 else v for k, v in feeds.items()}


@pytest.mark.parametrize("extra", [False, True])
def test_int32_input_that_is_itself_an_output_stays_int64(extra):
    """An int64 input passed through to an output (Identity, dropped by the lowering) was
    declared int32 and the OUTPUT became int32 too: the file's output type changed. It now
    stays int64 (one CAST after the graph)."""
    nodes = [helper.make_node("Identity", ["ids"], ["y"])]
    outs = [("y", I64, [1, 6])]
    if extra:  # also read by an operator that takes the narrowed value
        nodes.append(helper.make_node("Cast", ["ids"], ["z"], to=1))
        outs.append(("z", np.float32, [1, 6]))
    model = make_model(nodes, [("ids", I64, [1, 6])], outs, {})
    feeds = {"ids": IDS}
    res = _exact(model, feeds, _narrow_feeds(feeds), int32_inputs=True)
    assert [r["dtype"] for r in res.report["io"] if r["kind"] == "input"] == ["int32"]


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater"])
@pytest.mark.parametrize("c", [2**31, -(2**31) - 1, 2**40, -1])
def test_int32_input_compared_with_constants_beyond_int32(op, c):
    """A comparison with an int64 constant int32 cannot hold keeps int64 (held)."""
    model = make_model(
        [helper.make_node(op, ["ids", "c"], ["y"])],
        [("ids", I64, [1, 6])],
        [("y", np.bool_, [1, 6])],
        {"c": np.array(c, I64)},
    )
    _exact(model, {"ids": IDS}, _narrow_feeds({"ids": IDS}), int32_inputs=True)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
def test_int32_input_arithmetic_at_the_ends_of_int32(op):
    """ids op ids at +-2^31 (could leave int32): kept int64, exact (held)."""
    model = make_model(
        [helper.make_node(op, ["ids", "ids"], ["t"]), helper.make_node("Cast", ["t"], ["y"], to=1)],
        [("ids", I64, [1, 6])],
        [("y", np.float32, [1, 6])],
        {},
    )
    _exact(model, {"ids": IDS}, _narrow_feeds({"ids": IDS}), int32_inputs=True)


@pytest.mark.parametrize("op", ["Div", "Mod"])
@pytest.mark.parametrize("divisor", ["minus_one", "input"])
def test_int32_input_int_min_divided_by_minus_one(op, divisor):
    """INT32_MIN / -1 and INT32_MIN mod -1: int64 computes them (2^31, 0), int32's division
    traps (the process died of SIGFPE: the remainder was proven to fit in int32, so
    FLOOR_MOD ran on int32). A divisor that may be -1 now keeps int64 when the dividend may
    be INT32_MIN."""
    inits, inputs = {}, [("ids", I64, [1, 6])]
    feeds = {"ids": IDS}
    if divisor == "input":
        inputs.append(("d", I64, [1, 6]))
        feeds["d"] = np.array([[-1, -1, 3, -(2**31), 7, -1]], I64)
    else:
        inits["d"] = np.array(-1, I64)
    model = make_model(
        [helper.make_node(op, ["ids", "d"], ["t"]), helper.make_node("Cast", ["t"], ["y"], to=1)],
        inputs,
        [("y", np.float32, [1, 6])],
        inits,
    )
    _exact(model, feeds, _narrow_feeds(feeds), int32_inputs=True)


def test_int32_named_input_where_with_a_wide_int64_input():
    """Where(ids > 0, ids, w) with only ``ids`` narrowed and ``w`` beyond int32 (held)."""
    model = make_model(
        [
            helper.make_node("Greater", ["ids", "z"], ["m"]),
            helper.make_node("Where", ["m", "ids", "w"], ["y"]),
        ],
        [("ids", I64, [1, 6]), ("w", I64, [1, 6])],
        [("y", I64, [1, 6])],
        {"z": np.array(0, I64)},
    )
    feeds = {"ids": IDS, "w": np.array([[2**40, -(2**40), 1, 2, 3, 4]], I64)}
    lite = {"ids": IDS.astype(np.int32), "w": feeds["w"]}
    _exact(model, feeds, lite, int32_inputs=["ids"])


@pytest.mark.parametrize("move", [False, True])
@pytest.mark.parametrize("ids_type", ["own_int32", "int32_inputs"])
def test_gpu_friendly_hashed_ids_beyond_2_24(move, ids_type):
    """A model's own Mod of the ids before its Gather (hashed embeddings): every int32 id is
    valid, so float32 rounding of one beyond 2^24 picks another row. With a move before the
    Mod (``int32_moves_in_float`` saw the Mod as the Gather's wrap) 16777217 mod 1000 read
    row 216; only the Gather's own wrap (its lowering's FLOOR_MOD) lets the ids through
    float32 now. Without --int32-inputs on a model with int32 ids too."""
    dt = np.int32 if ids_type == "own_int32" else I64
    v = 1000
    table = np.random.default_rng(3).standard_normal((v, 4)).astype(np.float32)
    nodes = [helper.make_node("Mod", ["r" if move else "ids", "v"], ["m"])]
    nodes.append(helper.make_node("Gather", ["table", "m"], ["y"]))
    inits = {"table": table, "v": np.array(v, dt)}
    if move:
        nodes.insert(0, helper.make_node("Reshape", ["ids", "shape"], ["r"]))
        inits["shape"] = np.array([3, 2], I64)
    out_shape = [3, 2, 4] if move else [2, 3, 4]
    model = make_model(nodes, [("ids", dt, [2, 3])], [("y", np.float32, out_shape)], inits)
    ids = np.array([[16777217, 2**30 + 3, 123], [-16777219, 5, 2**31 - 1]], dt)
    options = {"gpu_friendly": True}
    if ids_type == "int32_inputs":
        options["int32_inputs"] = True
    _exact(model, {"ids": ids}, {"ids": ids.astype(np.int32)}, **options)


_EXTREMES = [2**31 - 1, -(2**31), -1, 0, 1, 2**30, -(2**30), 7, 46341, -46341, 65536]


def _random_int_graph(rng):
    """A few int64 operators over two inputs (arithmetic, Max/Min, Concat + Slice, CumSum,
    ReduceSum, Mod/Div by constants including -1, Where, Equal), constants inside and beyond
    int32; the last value as a float (and sometimes as an int64 output)."""
    vals, nodes = ["a", "b"], []
    inits = {
        "s0": np.array([0], I64),
        "s6": np.array([6], I64),
        "ax1": np.array([1], I64),
        "axs": np.array(1, I64),
    }
    ops = ["Add", "Sub", "Mul", "Neg", "Max", "Min", "Concat", "CumSum", "ReduceSum", "Mod"]
    ops += ["Div", "Abs", "Where", "Equal"]
    for k in range(int(rng.integers(2, 6))):
        op = str(rng.choice(ops))
        x, y = (vals[int(rng.integers(len(vals)))] for _ in range(2))
        if rng.random() < 0.4:
            y = f"c{k}"
            inits[y] = np.array(int(rng.choice([*_EXTREMES, 3, -5, 2**32])), I64)
        out = f"v{k}"
        if op in ("Neg", "Abs"):
            nodes.append(helper.make_node(op, [x], [out]))
        elif op == "Concat":
            nodes.append(helper.make_node("Concat", [x, x], [f"{out}c"], axis=1))
            nodes.append(helper.make_node("Slice", [f"{out}c", "s0", "s6", "ax1"], [out]))
        elif op == "CumSum":
            nodes.append(helper.make_node("CumSum", [x, "axs"], [out]))
        elif op == "ReduceSum":
            nodes.append(helper.make_node("ReduceSum", [x, "ax1"], [f"{out}r"], keepdims=1))
            nodes.append(helper.make_node("Add", [x, f"{out}r"], [out]))
        elif op in ("Mod", "Div"):
            inits[f"d{k}"] = np.array(int(rng.choice([-1, 3, -7, 1000, 2**31 - 1])), I64)
            nodes.append(helper.make_node(op, [x, f"d{k}"], [out]))
        elif op == "Where":
            nodes.append(helper.make_node("Greater", [x, y], [f"{out}m"]))
            nodes.append(helper.make_node("Where", [f"{out}m", x, y], [out]))
        elif op == "Equal":
            nodes.append(helper.make_node("Equal", [x, y], [f"{out}m"]))
            nodes.append(helper.make_node("Cast", [f"{out}m"], [out], to=7))
        else:
            nodes.append(helper.make_node(op, [x, y], [out]))
        vals.append(out)
    nodes.append(helper.make_node("Cast", [vals[-1]], ["yf"], to=1))
    outs = [("yf", np.float32, [2, 6])]
    if rng.random() < 0.5:
        outs.append((vals[-1], I64, [2, 6]))
    return make_model(nodes, [("a", I64, [2, 6]), ("b", I64, [2, 6])], outs, inits)


def _stated_bound(model) -> int | None:
    """The magnitude bound --gpu-friendly states for its int32 inputs (report
    ``gpu_friendly.assumptions``: ``int_region_in_float`` carries bounded integer arithmetic in
    float32), or None when it takes every int32 value."""
    stated = convert(model, int32_inputs=True, gpu_friendly=True).report["gpu_friendly"]
    bounds = [int(b) for a in stated["assumptions"] for b in re.findall(r"<= (\d+)", a)]
    return min(bounds) if bounds else None


@pytest.mark.parametrize("gpu", [False, True])
def test_int32_inputs_random_integer_graphs(gpu):
    """60 random integer graphs on values at the ends of int32 (no int64 overflow in these
    seeds: int64 wrap-around is not what is tested), with and without --gpu-friendly. The
    contract: exact on every int32 feed, except that --gpu-friendly may state a bound for the
    integer arithmetic it carries in float32; then exact on the feeds within it."""
    stated = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        model = _random_int_graph(rng)
        feeds = {k: rng.choice(_EXTREMES, (2, 6)).astype(I64) for k in "ab"}
        bound = _stated_bound(model) if gpu else None
        if bound is not None:
            stated += 1
            feeds = {k: np.clip(v, -bound, bound) for k, v in feeds.items()}
        _exact(model, feeds, _narrow_feeds(feeds), int32_inputs=True, gpu_friendly=gpu)
    assert stated < 30  # most graphs stay exact on every int32 value


# batched_nms_groups ---------------------------------------------------------------------
@pytest.mark.parametrize("case", ["zero_area", "subnormal", "identical", "offset_rounding"])
def test_batched_nms_degenerate_boxes(case):
    """Zero-area boxes, subnormal coordinates, all boxes identical, offsets that round in
    float32 (held)."""
    from test_ops_nms_groups import _batched_model, _feeds

    n, c = 40, 4
    feeds = _feeds(np.random.default_rng(5), n, c)
    boxes = feeds["boxes"]
    if case == "zero_area":
        boxes[::3, 2] = boxes[::3, 0]
    elif case == "subnormal":
        boxes[:] = (boxes * np.float32(1e-40)).astype(np.float32)
    elif case == "identical":
        boxes[:] = 0
        boxes[:, 2:] = 1
    else:
        boxes[:] = boxes + np.float32(1e7)
    model = _batched_model(n, c, max_out=n, iou=0.5)
    res = _exact(model, feeds)
    assert any(r["rule"] == "batched_nms_groups" and r["matched"] for r in res.report["rewrites"])


@pytest.mark.parametrize("case", ["area_overflow", "minus_inf_corner"])
@pytest.mark.parametrize("rule", [True, False])
def test_nms_boxes_of_infinite_area(case, rule):
    """Boxes whose area is infinite (coordinates ~1e30: the product overflows; a corner at
    -inf): onnxruntime's IoU with them is 0 or NaN, so they are always selected and suppress
    nothing. The kernel re-selected them (its IoU of the box with itself is NaN, never the
    threshold): one box instead of 40, or repeated indices. They now bypass the kernel."""
    from test_ops_nms_groups import _batched_model, _feeds

    n, c = 40, 4
    feeds = _feeds(np.random.default_rng(5), n, c)
    if case == "area_overflow":
        feeds["boxes"] = (feeds["boxes"] * np.float32(1e30)).astype(np.float32)
    else:
        feeds["boxes"][4, :2] = -np.inf
    options = {} if rule else {"disable_rewrites": ["batched_nms_groups"]}
    _exact(_batched_model(n, c, max_out=n, iou=0.5), feeds, **options)


@pytest.mark.parametrize("iou", [-0.0, 0.0, 1e-40])
@pytest.mark.parametrize("rule", [True, False])
def test_nms_run_time_iou_threshold_negative_zero(iou, rule):
    """A run-time IoU threshold of -0.0 (onnxruntime: IoU > -0.0, as for 0): its float
    MAXIMUM with 0 stayed -0.0 in XNNPACK, whose bits + 1 is -1.4e-45, so the kernel
    suppressed touching boxes too (1 row of 12). max(t, 0) is now taken on the bits."""
    from test_ops_nms_groups import _batched_model, _feeds

    n, classes = 50, 3
    model = _batched_model(n, classes, max_out=n, iou=0.5, score=0.2)
    for name in ("max_out", "iou", "score"):
        init = next(i for i in model.graph.initializer if i.name == name)
        model.graph.initializer.remove(init)
        elem = 7 if name == "max_out" else 1
        model.graph.input.append(helper.make_tensor_value_info(name, elem, [1]))
    feeds = _feeds(np.random.default_rng(1), n, classes)
    feeds["max_out"] = np.array([n], I64)
    feeds["iou"] = np.array([iou], np.float32)
    feeds["score"] = np.array([0.0], np.float32)
    options = {} if rule else {"disable_rewrites": ["batched_nms_groups"]}
    _exact(model, feeds, **options)


# tree path strategy ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_path_thresholds_near_flt_max_and_the_arithmetic_bound(seed, monkeypatch):
    """Thresholds next to +-FLT_MAX and at the arithmetic decision's bound 2^-100, inputs on
    and beside each, +-inf, NaN, -0.0, subnormals, every order mode with tracks (held)."""
    from test_ml_tree_path import F, _model
    from test_ops_ml import ORDER_MODES, random_trees

    from onnx2tflite_direct.lowering import ml_trees

    monkeypatch.setattr(ml_trees, "STRATEGY", "path")
    rng = np.random.default_rng(seed)
    below_max = float(np.nextafter(np.float32(FM), np.float32(0)))
    pool = [FM * 0.999, -FM * 0.999, below_max, -below_max, 2.0**-100, 2.0**-99, -(2.0**-99)]
    pool += [float(np.nextafter(np.float32(-(2.0**-100)), np.float32(-1))), 1.0, -1.0, 1e30]
    a, w = random_trees(rng, 6, 3, modes=ORDER_MODES, tracks=True, n_out=2)
    for i, m in enumerate(a["mode"]):
        if m != "LEAF":
            a["val"][i] = float(np.float32(rng.choice(pool)))
    thr = np.array(sorted(set(a["val"])), np.float32)
    special = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-45, FM, -FM, 1e-39, -1e-39]
    near = np.concatenate(
        [thr, np.nextafter(thr, np.float32(np.inf)), np.nextafter(thr, np.float32(-np.inf))]
    )
    x = rng.choice(np.concatenate([near, np.array(special, np.float32)]), (64, F))
    x = x.astype(np.float32)
    model = _model("regressor", a, w, 2, 64, True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {"x": x})[0]
    res = convert(model)
    notes = [n for r in res.report["nodes"] for n in r.get("notes", [])]
    assert any("path strategy" in n for n in notes), notes
    for xnnpack in (True, False):
        got = run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"), use_xnnpack=xnnpack)
        # leaf sums in another order than onnxruntime's: within float32 rounding of the sum
        np.testing.assert_allclose(got["y"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", ["path", "grid", "traverse"])
@pytest.mark.parametrize("n_base", [0, 1])
def test_binary_classifier_class0_weights_logistic(strategy, n_base, monkeypatch):
    """Two classes, positive weights on class 0 only (one score column, onnxruntime's add
    rule 0/1), LOGISTIC: onnxruntime writes [1 - logistic(s), logistic(s)]; the file wrote
    [1 - s, s] (probabilities above 1 and below 0) with every strategy."""
    from test_ops_ml import _features, classifier_model, random_trees

    from onnx2tflite_direct.lowering import ml_trees

    monkeypatch.setattr(ml_trees, "STRATEGY", strategy)
    rng = np.random.default_rng(3)
    a, w = random_trees(rng, 3, 2, n_out=2, positive=True)
    keep = [i for i, k in enumerate(w["id"]) if k == 0]
    w = {k: [v[i] for i in keep] for k, v in w.items()}
    extra = {"post_transform": "LOGISTIC"}
    if n_base:
        extra["base_values"] = [0.3]
    model = classifier_model(a, w, [0, 1], **extra)
    x = _features()
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {"x": x})
    res = convert(model)
    for xnnpack in (True, False):
        got = run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"), use_xnnpack=xnnpack)
        np.testing.assert_array_equal(got["label"], label)
        # float32 logistic: within a few ulp of onnxruntime's
        np.testing.assert_allclose(got["probabilities"], proba, rtol=1e-6, atol=1e-6)
