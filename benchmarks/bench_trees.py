"""Tree-ensemble latency: LiteRT (our .tflite) vs onnxruntime, 1 thread, batch 1 and 256.

Models (built by ``tools/ml_models.py``, exported with skl2onnx / onnxmltools): a 100-tree
depth-8 random forest (3 classes), a 500-tree LightGBM binary classifier and scikit-learn's
GradientBoostingRegressor (100 trees, depth 3). Each is converted at the benchmark batch size,
checked against onnxruntime on the benchmark rows (labels identical, scores within
``1e-4 * max(1, max|expected|)``), then timed: median of ``--runs`` runs after ``--warmup``,
the runtimes taking turns in blocks of 10 runs so machine load hits all alike. One run is a full
inference as a caller sees it: LiteRT set_tensor + invoke + get_tensor of every output,
onnxruntime ``session.run``. The target is LiteRT <= 2x onnxruntime at batch 1.

Needs the exporters (not project dependencies); run it in the environment of
``tools/ml_models.py``:

    /work/ml-venv/bin/python benchmarks/bench_trees.py [--runs 300] [--strategy all] \
        [--baseline DIR --baseline-label COMMIT] [--kernels]

Writes ``benchmarks/results/trees.json`` and prints a table. ``--strategy`` forces one of the
tree strategies of ``lowering/ml_trees.py`` (``path``, ``grid``, ``traverse``, ``all_splits``;
the default lets the converter's cost model choose), which is how the choice was measured:
``--strategy all`` converts each model with every strategy and times them all interleaved
with onnxruntime in one run (rows ``strategies``).

Before/after in one run: ``--save DIR`` writes each converted file as
``DIR/<model>_b<batch>.tflite``; ``--baseline DIR`` times such files (made by an earlier
converter, e.g. this script run with ``--save`` from a ``git archive`` of an older commit)
interleaved with the current conversion and onnxruntime (``baseline_ms``, ``baseline_ratio``).

``--kernels`` measures instead the per-element costs of the LiteRT kernels the cost model is
built from (a walk GATHER, a traversal level, a grid slot, a tail copy, a BATCH_MATMUL
multiply-add, an operator; the path strategy's decision row, level row pick, indicator level
and leaf-sum multiply-add): ``benchmarks/results/trees_kernels.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))

import ml_models  # noqa: E402

from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct import validate as V  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "trees.json"
MODELS = {
    "random_forest_100x8": ml_models.random_forest,
    "lightgbm_classifier_500": ml_models.lightgbm_classifier,
    "gradient_boosting_regressor": ml_models.gradient_boosting_regressor,
}
BATCHES = (1, 256)
STRATEGIES = ("path", "grid", "traverse", "all_splits")
TARGET_RATIO_BATCH1 = 2.0


def _ort_runner(onx, feeds):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(onx.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, feeds)


def _litert_runner(tflite_bytes, feeds):
    interp = V.make_interpreter(tflite_bytes, num_threads=1)
    interp.allocate_tensors()
    by_name = {d["name"]: d for d in interp.get_input_details()}
    staged = [
        (by_name[name]["index"], np.ascontiguousarray(arr, dtype=by_name[name]["dtype"]))
        for name, arr in feeds.items()
    ]
    outs = [d["index"] for d in interp.get_output_details()]

    def litert():
        for index, arr in staged:
            interp.set_tensor(index, arr)
        interp.invoke()
        return [interp.get_tensor(i) for i in outs]

    return litert


def _interleaved_medians(fns, warmup: int, runs: int, block: int = 10) -> list[float]:
    """Median ms of each callable over ``runs`` runs, the callables taking turns in blocks of
    ``block`` runs (so machine load hits all alike, and each runs with its own data in cache,
    as it would in an application: one callable's tables do not evict the next one's)."""
    for _ in range(warmup):
        for f in fns:
            f()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(-(-runs // block)):
        for f, t in zip(fns, times, strict=True):
            for _ in range(block):
                s = time.perf_counter()
                f()
                t.append(time.perf_counter() - s)
    return [1e3 * statistics.median(t) for t in times]


def _convert(onx, data, feeds, batch: int, strategy: str | None) -> tuple[dict, bytes]:
    """Convert with ``strategy`` forced (None: the cost model), check against onnxruntime."""
    import onnxruntime as ort
    from harness import op_histogram

    from onnx2tflite_direct.lowering import ml_trees

    ml_trees.STRATEGY = strategy
    started = time.perf_counter()
    res = convert(onx, batch_size=batch)
    row: dict = {"convert_seconds": round(time.perf_counter() - started, 3)}
    notes = [n for r in res.report.get("nodes", []) for n in r.get("notes", [])]
    walked = [n.split("by the ")[1].split(" ")[0] for n in notes if "trees walked by" in n]
    if walked:
        row["strategy"] = walked[0]
    ops = op_histogram(res.tflite_bytes)
    row.update(tflite_ops=sum(ops.values()), op_histogram=dict(ops.most_common()))
    row["tflite_bytes"] = len(res.tflite_bytes)
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    val = V.validate(res.model, res.tflite_bytes, res.report.get("io"), feeds)
    match = True
    for out, e in expected.items():
        a = val.actual[out]
        if e.dtype.kind in "iub":
            row[f"{out}_agreement"] = float(np.mean(a == e))
            match &= bool(np.array_equal(a, e))
        else:
            err = float(np.max(np.abs(a.astype(np.float64) - e)))
            row[f"{out}_max_abs"] = err
            match &= err <= ml_models.ATOL * max(1.0, float(np.max(np.abs(e))))
    row["match"] = bool(match)
    return row, res.tflite_bytes


def bench(
    name: str,
    batch: int,
    warmup: int,
    runs: int,
    strategies: list[str | None],
    save: Path | None = None,
    baseline: Path | None = None,
) -> dict:
    """One model at one batch: the first of ``strategies`` is the row, the others (``--strategy
    all``) go under ``strategies``; all timed in one interleaved loop with onnxruntime and the
    ``baseline`` file if given."""
    onx, data = MODELS[name]()
    feeds = ml_models.feeds_for(onx, data, slice(0, batch))
    converted = [_convert(onx, data, feeds, batch, st) for st in strategies]
    row, tflite = converted[0]
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        (save / f"{name}_b{batch}.tflite").write_bytes(tflite)
    fns = [_ort_runner(onx, feeds)] + [_litert_runner(b, feeds) for _, b in converted]
    base_file = baseline / f"{name}_b{batch}.tflite" if baseline is not None else None
    if base_file is not None:
        fns.append(_litert_runner(base_file.read_bytes(), feeds))
    ms = _interleaved_medians(fns, warmup, runs)
    ot = ms[0]
    row.update(litert_ms=round(ms[1], 4), ort_ms=round(ot, 4), ratio=round(ms[1] / ot, 3))
    if len(strategies) > 1:
        row["strategies"] = {
            st or "auto": {
                "litert_ms": round(t, 4),
                "ratio": round(t / ot, 3),
                "tflite_ops": r["tflite_ops"],
                "match": r["match"],
            }
            for st, (r, _), t in zip(strategies, converted, ms[1:], strict=False)
        }
    if base_file is not None:
        row.update(baseline_ms=round(ms[-1], 4), baseline_ratio=round(ms[-1] / ot, 3))
    return row


# ---------------------------------------------------------------------------------------------
# --kernels: per-element costs of the LiteRT kernels the tree cost model is built from
# ---------------------------------------------------------------------------------------------

KERNELS_RESULTS = ROOT / "benchmarks" / "results" / "trees_kernels.json"


def _kernel_model(k: int, build):
    """A one-subgraph model: ``build(k)`` returns (operators, inputs, outputs) with the
    measured unit repeated ``k`` times."""
    from onnx2tflite_direct import tfl
    from onnx2tflite_direct.builder import build_flatbuffer

    ops, inputs, outputs = build(k)
    sg = tfl.Subgraph(
        operators=ops,
        inputs=inputs,
        outputs=outputs,
        input_names=[t.name for t in inputs],
        output_names=[t.name for t in outputs],
    )
    return build_flatbuffer(tfl.Model([sg]))


def _kernel_units(rng):
    """name -> (elements per unit, build(k), feeds): each unit is what one tree strategy pays
    per element (a tree and level, a grid slot, a multiply-add)."""
    from onnx2tflite_direct import tfl

    i32, f32 = np.dtype(np.int32), np.dtype(np.float32)

    def t(name, dtype, shape):
        return tfl.Tensor(name, dtype, tuple(shape))

    def c(name, data):
        return tfl.Tensor(name, data.dtype, data.shape, data=data)

    slots, trees, rows, width = 27000, 500, 40, 340

    def walk(k):  # s = GATHER(next, s): one element per tree and level
        nxt = t("next", i32, (1, slots))
        s = c("s0", rng.integers(0, slots, (1, trees)).astype(np.int32))
        ops = []
        for j in range(k):
            o = t(f"s{j + 1}", i32, (1, trees))
            ops.append(tfl.Operator("GATHER", [nxt, s], [o], {"axis": 1, "batch_dims": 1}))
            s = o
        return ops, [nxt], [s]

    def traverse(k):  # one traversal level: record GATHER, TRANSPOSE, UNPACK, feature GATHER,
        # BITCAST, LESS_EQUAL, SELECT_V2 (per tree)
        x = t("x", f32, (1, 20))
        rec = np.stack(
            [
                rng.integers(0, 20, slots),
                rng.standard_normal(slots).astype(np.float32).view(np.int32),
                rng.integers(0, slots, slots),
                rng.integers(0, slots, slots),
            ],
            1,
        ).astype(np.int32)
        rec_c, perm = c("rec", rec), c("perm", np.array([2, 0, 1], np.int32))
        s = c("s0", rng.integers(0, slots, (1, trees)).astype(np.int32))
        ops = []
        for j in range(k):
            r = t(f"r{j}", i32, (1, trees, 4))
            fl = t(f"fl{j}", i32, (4, 1, trees))
            f, tb, tc, fc = (t(f"{n}{j}", i32, (1, trees)) for n in "ftab")
            thr, v = t(f"thr{j}", f32, (1, trees)), t(f"v{j}", f32, (1, trees))
            cond, o = t(f"c{j}", np.dtype(np.bool_), (1, trees)), t(f"s{j + 1}", i32, (1, trees))
            ops += [
                tfl.Operator("GATHER", [rec_c, s], [r], {"axis": 0, "batch_dims": 0}),
                tfl.Operator("TRANSPOSE", [r, perm], [fl]),
                tfl.Operator("UNPACK", [fl], [f, tb, tc, fc], {"num": 4, "axis": 0}),
                tfl.Operator("BITCAST", [tb], [thr]),
                tfl.Operator("GATHER", [x, f], [v], {"axis": 1, "batch_dims": 1}),
                tfl.Operator("LESS_EQUAL", [v, thr], [cond]),
                tfl.Operator("SELECT_V2", [cond, tc, fc], [o]),
            ]
            s = o
        return ops, [x], [s]

    def grid(k, n=1, width=width):  # one grid slot: broadcast LESS_EQUAL, RESHAPE, SELECT_V2
        x3 = t("x3", f32, (n, rows, 1))
        shape = c("shape", np.array([n, rows * width], np.int32))
        tc = c("tc", rng.integers(0, slots, rows * width).astype(np.int32))
        fc = c("fc", rng.integers(0, slots, rows * width).astype(np.int32))
        ops, outs = [], []
        for j in range(k):
            thr = c(f"thr{j}", rng.standard_normal((rows, width)).astype(np.float32))
            cond = t(f"c{j}", np.dtype(np.bool_), (n, rows, width))
            flat = t(f"cf{j}", np.dtype(np.bool_), (n, rows * width))
            o = t(f"n{j}", i32, (n, rows * width))
            ops += [
                tfl.Operator("LESS_EQUAL", [x3, thr], [cond]),
                tfl.Operator("RESHAPE", [cond, shape], [flat]),
                tfl.Operator("SELECT_V2", [flat, tc, fc], [o]),
            ]
            outs.append(o)
        return ops, [x3], outs[-1:]

    def grid_arith(k, n=1, width=width):  # one grid slot by arithmetic (ml_tree_grid's
        # arithmetic table): SUB from nextafter(t), MUL (RELU) by 2^127, MINIMUM with 1,
        # RESHAPE, MUL by the slot step, ADD the false slot (XNNPACK)
        x3 = t("x3", f32, (n, rows, 1))
        shape = c("shape", np.array([n, rows * width], np.int32))
        huge = c("huge", np.array(2.0**127, np.float32))
        one = c("one", np.array(1.0, np.float32))
        tc = rng.integers(0, slots, rows * width).astype(np.float32)
        fc = rng.integers(0, slots, rows * width).astype(np.float32)
        step, fc = c("step", tc - fc), c("fc", fc)
        ops, outs = [], []
        none = {"fused_activation_function": "NONE"}
        for j in range(k):
            up = c(f"up{j}", rng.standard_normal((rows, width)).astype(np.float32))
            a, d, e = (t(f"{v}{j}", f32, (n, rows, width)) for v in "ade")
            flat, st, o = (t(f"{v}{j}", f32, (n, rows * width)) for v in ("f", "s", "n"))
            ops += [
                tfl.Operator("SUB", [up, x3], [a], none),
                tfl.Operator("MUL", [a, huge], [d], {"fused_activation_function": "RELU"}),
                tfl.Operator("MINIMUM", [d, one], [e]),
                tfl.Operator("RESHAPE", [e, shape], [flat]),
                tfl.Operator("MUL", [flat, step], [st], none),
                tfl.Operator("ADD", [st, fc], [o], none),
            ]
            outs.append(o)
        return ops, [x3], outs

    def walk_cast(k):  # the arithmetic table's walk: a level's float slots CAST to int32
        s = t("s", f32, (1, trees))
        ops, outs = [], []
        for j in range(k):
            o = t(f"i{j}", i32, (1, trees))
            ops.append(tfl.Operator("CAST", [s], [o]))
            outs.append(o)
        return ops, [s], outs

    def tail(k):  # a leaf slot after the grid: CONCATENATION copy
        a = t("a", i32, (1, slots // 2))
        loops = c("loops", np.arange(slots // 2, dtype=np.int32).reshape(1, -1))
        ops, o = [], None
        for j in range(k):
            o = t(f"o{j}", i32, (1, slots))
            ops.append(
                tfl.Operator(
                    "CONCATENATION",
                    [a, loops],
                    [o],
                    {"axis": 1, "fused_activation_function": "NONE"},
                )
            )
        return ops, [a], [o]

    def bmm(k):  # the GEMM formulation's path-matrix product: 500 trees [1, 30] x [30, 30]
        a = t("a", f32, (trees, 1, 30))
        ops = []
        for j in range(k):
            w = c(f"w{j}", (rng.random((trees, 30, 30)) < 0.1).astype(np.float32))
            o = t(f"o{j}", f32, (trees, 1, 30))
            ops.append(tfl.Operator("BATCH_MATMUL", [a, w], [o], {"adj_x": False, "adj_y": False}))
            a = o
        return ops, [ops[0].inputs[0]], [a]

    def op_cost(k):  # the fixed cost of an operator: a one-element GATHER and SELECT_V2
        a = t("a", i32, (1, 1))
        zero = c("zero", np.zeros((1, 1), np.int32))
        yes = c("yes", np.ones((1, 1), np.bool_))
        ops = []
        for j in range(k):
            g, o = t(f"g{j}", i32, (1, 1)), t(f"o{j}", i32, (1, 1))
            ops.append(tfl.Operator("GATHER", [a, zero], [g], {"axis": 1, "batch_dims": 1}))
            ops.append(tfl.Operator("SELECT_V2", [yes, g, zero], [o]))
            a = o
        return ops, [ops[0].inputs[0]], [a]

    p_rows, p_samples, p_views = 420, 16, 20

    def path_decide(k, samples=p_samples):  # the path strategy's decisions: feature-row
        # GATHER (samples innermost), broadcast LESS_EQUAL against a threshold column, CAST
        x = t("xv", f32, (p_views, samples))
        ops, outs = [], []
        for j in range(k):
            idx = c(f"src{j}", rng.integers(0, p_views, p_rows).astype(np.int32))
            thr = c(f"thr{j}", rng.standard_normal((p_rows, 1)).astype(np.float32))
            rows_t = t(f"r{j}", f32, (p_rows, samples))
            holds = t(f"h{j}", np.dtype(np.bool_), (p_rows, samples))
            o = t(f"d{j}", f32, (p_rows, samples))
            ops += [
                tfl.Operator("GATHER", [x, idx], [rows_t], {"axis": 0, "batch_dims": 0}),
                tfl.Operator("LESS_EQUAL", [rows_t, thr], [holds]),
                tfl.Operator("CAST", [holds], [o]),
            ]
            outs.append(o)
        return ops, [x], outs

    def path_decide1(k):
        return path_decide(k, 1)

    def path_arith(k, samples=p_samples):  # the same decisions without a comparison: row
        # GATHER, SUB from nextafter(t), MUL and MUL (RELU) by 2^127, MINIMUM with 1
        x = t("xv", f32, (p_views, samples))
        huge = c("huge", np.array(2.0**127, np.float32))
        one = c("one", np.array(1.0, np.float32))
        ops, outs = [], []
        for j in range(k):
            idx = c(f"src{j}", rng.integers(0, p_views, p_rows).astype(np.int32))
            up = c(f"up{j}", rng.standard_normal((p_rows, 1)).astype(np.float32))
            rows_t = t(f"r{j}", f32, (p_rows, samples))
            d, m1, m2, o = (t(f"{n}{j}", f32, (p_rows, samples)) for n in ("df", "m1", "m2", "d"))
            ops += [
                tfl.Operator("GATHER", [x, idx], [rows_t], {"axis": 0, "batch_dims": 0}),
                tfl.Operator("SUB", [up, rows_t], [d], {"fused_activation_function": "NONE"}),
                tfl.Operator("MUL", [d, huge], [m1], {"fused_activation_function": "NONE"}),
                tfl.Operator("MUL", [m1, huge], [m2], {"fused_activation_function": "RELU"}),
                tfl.Operator("MINIMUM", [m2, one], [o]),
            ]
            outs.append(o)
        return ops, [x], outs

    def path_arith1(k):
        return path_arith(k, 1)

    def path_pick(k, samples=p_samples):  # a level's rows GATHERed from the distinct decisions
        dec = t("dec", f32, (p_rows, samples))
        ops, outs = [], []
        for j in range(k):
            idx = c(f"pick{j}", rng.integers(0, p_rows, p_rows).astype(np.int32))
            o = t(f"l{j}", f32, (p_rows, samples))
            ops.append(tfl.Operator("GATHER", [dec, idx], [o], {"axis": 0, "batch_dims": 0}))
            outs.append(o)
        return ops, [dec], outs

    def path_pick1(k):
        return path_pick(k, 1)

    p_trees, p_half = 30, 4

    def path_level(k):  # one indicator level: a = I * c, b = I - a, CONCATENATION(a, b)
        # (XNNPACK takes all three and drops unused results: every level is an output)
        ind = t("ind", f32, (p_trees * p_half, p_samples))
        ops, outs = [], []
        for j in range(k):
            d = c(f"dk{j}", (rng.random((p_trees * p_half, p_samples)) < 0.5).astype(np.float32))
            a = t(f"a{j}", f32, (p_trees * p_half, p_samples))
            b = t(f"b{j}", f32, (p_trees * p_half, p_samples))
            o = t(f"i{j}", f32, (p_trees * p_half * 2, p_samples))
            ops += [
                tfl.Operator("MUL", [ind, d], [a], {"fused_activation_function": "NONE"}),
                tfl.Operator("SUB", [ind, a], [b], {"fused_activation_function": "NONE"}),
                tfl.Operator(
                    "CONCATENATION", [a, b], [o], {"axis": 0, "fused_activation_function": "NONE"}
                ),
            ]
            outs.append(o)
        return ops, [ind], outs

    p_leaves = p_trees * 2 * p_half * 2

    def path_mac(k, targets=3):  # the leaf sums: BATCH_MATMUL [K, leaves] x [leaves, N]
        ind = t("leaf_ind", f32, (p_leaves, p_samples))
        ops, outs = [], []
        for j in range(k):
            w = c(f"lw{j}", rng.standard_normal((targets, p_leaves)).astype(np.float32))
            o = t(f"s{j}", f32, (targets, p_samples))
            ops.append(
                tfl.Operator("BATCH_MATMUL", [w, ind], [o], {"adj_x": False, "adj_y": False})
            )
            outs.append(o)
        return ops, [ind], outs

    def path_mac1(k):
        return path_mac(k, 1)

    feeds = {
        "walk": {"next": rng.integers(0, slots, (1, slots)).astype(np.int32)},
        "traverse": {"x": rng.standard_normal((1, 20)).astype(np.float32)},
        "grid": {"x3": rng.standard_normal((1, rows, 1)).astype(np.float32)},
        "grid16": {"x3": rng.standard_normal((16, rows, 1)).astype(np.float32)},
        "tail": {"a": np.zeros((1, slots // 2), np.int32)},
        "bmm": {"a": rng.standard_normal((trees, 1, 30)).astype(np.float32)},
        "op": {"a": np.zeros((1, 1), np.int32)},
    }
    return {
        "walk": (trees, walk, feeds["walk"]),
        "traverse": (trees, traverse, feeds["traverse"]),
        "grid": (rows * width, grid, feeds["grid"]),
        "grid_arith": (rows * width, grid_arith, feeds["grid"]),
        # the same at 16 samples (the corpus's batch), rows of 84 slots (the corpus forest's)
        "grid16": (16 * rows * 84, lambda k: grid(k, 16, 84), feeds["grid16"]),
        "grid_arith16": (16 * rows * 84, lambda k: grid_arith(k, 16, 84), feeds["grid16"]),
        "walk_cast": (
            trees,
            walk_cast,
            {"s": rng.integers(0, slots, (1, trees)).astype(np.float32)},
        ),
        "tail": (slots // 2, tail, feeds["tail"]),
        "bmm": (trees * 30 * 30, bmm, feeds["bmm"]),
        "op": (2, op_cost, feeds["op"]),
        "path_decide": (
            p_rows * p_samples,
            path_decide,
            {"xv": rng.standard_normal((p_views, p_samples)).astype(np.float32)},
        ),
        "path_decide1": (
            p_rows,
            path_decide1,
            {"xv": rng.standard_normal((p_views, 1)).astype(np.float32)},
        ),
        "path_arith": (
            p_rows * p_samples,
            path_arith,
            {"xv": rng.standard_normal((p_views, p_samples)).astype(np.float32)},
        ),
        "path_arith1": (
            p_rows,
            path_arith1,
            {"xv": rng.standard_normal((p_views, 1)).astype(np.float32)},
        ),
        "path_pick": (
            p_rows * p_samples,
            path_pick,
            {"dec": (rng.random((p_rows, p_samples)) < 0.5).astype(np.float32)},
        ),
        "path_pick1": (
            p_rows,
            path_pick1,
            {"dec": (rng.random((p_rows, 1)) < 0.5).astype(np.float32)},
        ),
        "path_level": (
            p_trees * p_half * p_samples,
            path_level,
            {"ind": (rng.random((p_trees * p_half, p_samples)) < 0.5).astype(np.float32)},
        ),
        "path_mac": (
            3 * p_leaves * p_samples,
            path_mac,
            {"leaf_ind": (rng.random((p_leaves, p_samples)) < 0.1).astype(np.float32)},
        ),
        "path_mac1": (
            p_leaves * p_samples,
            path_mac1,
            {"leaf_ind": (rng.random((p_leaves, p_samples)) < 0.1).astype(np.float32)},
        ),
    }


def kernels(runs: int, reps: int = 11) -> dict:
    """ns per element of each unit: (time with ``reps`` units - time with 1) / (reps - 1)."""
    rng = np.random.default_rng(0)
    out = {}
    for name, (elements, build, feed) in _kernel_units(rng).items():
        runners = []
        for k in (1, reps):
            interp = V.make_interpreter(_kernel_model(k, build), num_threads=1)
            interp.allocate_tensors()
            for d in interp.get_input_details():
                interp.set_tensor(d["index"], feed[d["name"]])
            runners.append(interp.invoke)
        one, many = _interleaved_medians(runners, 20, runs)
        per_unit_us = 1e3 * (many - one) / (reps - 1)
        out[name] = {
            "elements_per_unit": elements,
            "us_per_unit": round(per_unit_us, 4),
            "ns_per_element": round(1e3 * per_unit_us / elements, 4),
        }
        print(f"{name:<13}{out[name]['ns_per_element']:>10.4f} ns/element", flush=True)
    # the path strategy's decision row: a per-row part (the GATHER's per-index cost, seen at
    # one sample) and a per-sample part (16 samples against 1)
    one, many = out["path_decide1"]["us_per_unit"], out["path_decide"]["us_per_unit"]
    rows = out["path_decide1"]["elements_per_unit"]
    per_sample = 1e3 * (many - one) / (rows * 15)
    out["path_row"] = {
        "derived": "path_decide1 - path_decide's per-sample cost, per row",
        "ns_per_element": round(1e3 * one / rows - per_sample, 4),
    }
    out["path_decision"] = {
        "derived": "(path_decide - path_decide1) per row and added sample",
        "ns_per_element": round(per_sample, 4),
    }
    one, many = out["path_arith1"]["us_per_unit"], out["path_arith"]["us_per_unit"]
    per_sample = 1e3 * (many - one) / (rows * 15)
    out["path_arith_row"] = {
        "derived": "path_arith1 - path_arith's per-sample cost, per row",
        "ns_per_element": round(1e3 * one / rows - per_sample, 4),
    }
    out["path_arith_decision"] = {
        "derived": "(path_arith - path_arith1) per row and added sample",
        "ns_per_element": round(per_sample, 4),
    }
    one, many = out["path_pick1"]["us_per_unit"], out["path_pick"]["us_per_unit"]
    per_sample = 1e3 * (many - one) / (rows * 15)
    out["path_pick_row"] = {
        "derived": "path_pick1 - path_pick's per-sample cost, per row",
        "ns_per_element": round(1e3 * one / rows - per_sample, 4),
    }
    out["path_pick_sample"] = {
        "derived": "(path_pick - path_pick1) per row and added sample",
        "ns_per_element": round(per_sample, 4),
    }
    # the leaf sums: a part per leaf slot and sample (reading the indicator), whatever the
    # number of targets, and a part per target (the multiply-add)
    one_t, three_t = out["path_mac1"]["us_per_unit"], out["path_mac"]["us_per_unit"]
    slots = out["path_mac1"]["elements_per_unit"]
    per_target = 1e3 * (three_t - one_t) / (2 * slots)
    out["path_leaf"] = {
        "derived": "path_mac1 minus one target's multiply-add, per leaf slot and sample",
        "ns_per_element": round(1e3 * one_t / slots - per_target, 4),
    }
    out["path_target_mac"] = {
        "derived": "(path_mac - path_mac1) per added target, leaf slot and sample",
        "ns_per_element": round(per_target, 4),
    }
    return out


# ---------------------------------------------------------------------------------------------
# --floor: what the corpus's walked forests cannot go below on LiteRT's kernels
# ---------------------------------------------------------------------------------------------

FLOOR_RESULTS = ROOT / "benchmarks" / "results" / "trees_floor.json"
FLOOR_MODELS = ("skl_random_forest", "lightgbm_classifier")


def _floor_parts(onx, n: int) -> dict:
    """Hand-built files at the shapes the cost model's walk has for the corpus model ``onx``
    at ``n`` rows (its grid plan, its walk schedule): ``walk`` its GATHERs alone (one a
    level, widths as trees leave, by SLICE where the file has SPLIT_V and CONCATENATION),
    ``leaf`` the leaf-weight GATHER, ``grid`` the one LESS_EQUAL that decides every slot."""
    from onnx import helper

    from onnx2tflite_direct import tfl
    from onnx2tflite_direct.lowering import ml_forest, ml_tree_grid
    from onnx2tflite_direct.lowering.ml_trees import choose_strategy

    node = next(nd for nd in onx.graph.node if nd.op_type.startswith("TreeEnsemble"))
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    labels = attrs.get("classlabels_int64s") or attrs.get("classlabels_strings")
    k = len(labels) if labels is not None else int(attrs.get("n_targets", 1))
    prefix = "class" if labels is not None else "target"
    forest = ml_forest.parse_legacy(attrs, prefix, k, "SUM")
    n_feat = int(onx.graph.input[0].type.tensor_type.shape.dim[1].dim_value)
    strategy, plan = choose_strategy(forest, n, n_feat)
    if strategy != "grid":
        return {"strategy": strategy}
    depths = sorted(forest.tree_depths())
    walked = ml_tree_grid.walked_levels(depths, plan.cuts)
    r, m = plan.thresholds.shape
    table = plan.slots + plan.leaf_slots
    t_all = len(depths)
    i32, f32, b8 = np.dtype(np.int32), np.dtype(np.float32), np.dtype(np.bool_)
    rng = np.random.default_rng(0)

    def t(name, dtype, shape):
        return tfl.Tensor(name, dtype, tuple(shape))

    def c(name, data):
        return tfl.Tensor(name, data.dtype, data.shape, data=data)

    def walk_ops(nxt):
        roots = c("roots", rng.integers(0, 2, t_all).astype(np.int32))
        s = t("l1", i32, (n, t_all))
        ops = [tfl.Operator("GATHER", [nxt, roots], [s], {"axis": 1, "batch_dims": 0})]
        for level in range(2, max(depths) + 1):
            width = sum(1 for w in walked if w >= level)
            if width < s.shape[1]:  # trees leave (the file: SPLIT_V, then a CONCATENATION)
                rest = t(f"rest{level}", i32, (n, width))
                begin = c(f"begin{level}", np.array([0, s.shape[1] - width], np.int32))
                size = c(f"size{level}", np.array([n, width], np.int32))
                ops.append(tfl.Operator("SLICE", [s, begin, size], [rest]))
                s = rest
            o = t(f"l{level}", i32, (n, s.shape[1]))
            ops.append(tfl.Operator("GATHER", [nxt, s], [o], {"axis": 1, "batch_dims": 1}))
            s = o
        return ops, s

    def leaf_ops(s):
        w = c("leaf_w", rng.standard_normal((table, k)).astype(np.float32))
        g = t("leaf_g", f32, (n, s.shape[1], k))
        return [tfl.Operator("GATHER", [w, s], [g], {"axis": 0, "batch_dims": 0})], g

    def grid_ops(x3):
        thr = c("thr", plan.thresholds)
        cond = t("cond", b8, (n, r, m))
        flat = t("flat", b8, (n, r * m))
        shape = c("shape", np.array([n, r * m], np.int32))
        return [
            tfl.Operator("LESS_EQUAL", [x3, thr], [cond]),
            tfl.Operator("RESHAPE", [cond, shape], [flat]),
        ], flat

    def build_walk(_k):
        nxt = t("next", i32, (n, table))
        ops, s = walk_ops(nxt)
        return ops, [nxt], [s]

    def build_leaf(_k):
        s = t("reached", i32, (n, t_all))
        ops, g = leaf_ops(s)
        return ops, [s], [g]

    def build_grid(_k):
        x3 = t("x3", f32, (n, r, 1))
        ops, flat = grid_ops(x3)
        return ops, [x3], [flat]

    x3 = rng.standard_normal((n, r, 1)).astype(np.float32)
    return {
        "strategy": strategy,
        "shapes": {
            "grid": [r, m],
            "next_table": [n, table],
            "trees": t_all,
            "walked_tree_levels": int(sum(walked)),
            "gathered_elements": int(n * (sum(walked) + t_all)),
        },
        "files": {
            "walk": (build_walk, {"next": rng.integers(0, table, (n, table)).astype(np.int32)}),
            "leaf": (build_leaf, {"reached": rng.integers(0, table, (n, t_all)).astype(np.int32)}),
            "grid": (build_grid, {"x3": x3}),
        },
    }


class _NextTable:
    """While active, the grid's next-node table (``SELECT_V2(decisions, true_slot,
    false_slot)``) is emitted as ``cast``: a CAST of the decisions to int32 (0/1: wrong
    slots, timing only; no exact table can cost less than this one op, so the file then
    times the floor of the grid walk with everything else it needs), or ``cast_mul_add``:
    ``false_slot + CAST(decisions) * (true_slot - false_slot)`` (exact, the other form)."""

    def __init__(self, form: str):
        self.form = form

    def __enter__(self):
        from onnx2tflite_direct.lowering.emit import Emitter

        self.saved = Emitter.op
        saved, form = self.saved, self.form

        def op(em, opcode, *inputs, **kw):
            if opcode != "SELECT_V2" or not str(kw.get("hint", "")).startswith("next"):
                return saved(em, opcode, *inputs, **kw)
            cond, tc, fc = inputs
            d = saved(em, "CAST", cond, dtype=np.int32, hint="next_cast")
            if form == "cast":
                return d
            delta = np.asarray(tc.data, np.int32) - np.asarray(fc.data, np.int32)
            step = saved(em, "MUL", d, em.const(delta, np.int32, "delta"), hint="next_step")
            return saved(em, "ADD", step, fc, hint="next_add")

        Emitter.op = op
        return self

    def __exit__(self, *exc):
        from onnx2tflite_direct.lowering.emit import Emitter

        Emitter.op = self.saved


def floor(runs: int, warmup: int) -> dict:
    """Per corpus model: onnxruntime, the converted file, the path and traverse strategies
    forced, the grid with the comparison's table (``table_select``) and that table built as
    ``_NextTable`` forms (``no_table``: the floor of the grid walk), and ``_floor_parts``'
    hand-built files, all timed interleaved in one loop (median us, 1 thread)."""
    import onnx

    from onnx2tflite_direct.lowering import ml_trees
    from tools.zoo.paths import models_dir

    out = {}
    for name in FLOOR_MODELS:
        folder = models_dir() / name
        if not (folder / "model.onnx").exists():
            print(f"{name}: not in the corpus cache ({folder}), skipped")
            continue
        onx = onnx.load(folder / "model.onnx")
        feeds = dict(np.load(folder / "feeds.npz"))
        n = next(iter(feeds.values())).shape[0]
        parts = _floor_parts(onx, n)
        names, fns = ["onnxruntime"], [_ort_runner(onx, feeds)]
        row: dict = {"rows": n, "strategy": parts["strategy"], "shapes": parts.get("shapes")}
        shapes = {k: v.shape for k, v in feeds.items()}
        for st in (None, "path", "traverse"):
            ml_trees.STRATEGY = st
            try:
                res = convert(onx, input_shapes=shapes)
            finally:
                ml_trees.STRATEGY = None
            names.append("file" if st is None else f"forced_{st}")
            fns.append(_litert_runner(res.tflite_bytes, feeds))
        if parts["strategy"] == "grid":
            from onnx2tflite_direct.lowering import ml_tree_grid

            forms = (
                (None, "table_select"),
                ("cast_mul_add", "table_cast_mul_add"),
                ("cast", "no_table"),
            )
            ml_tree_grid.TABLE = "select"  # the comparison's table, then stand-ins for it
            try:
                for form, label in forms:
                    if form is None:
                        res = convert(onx, input_shapes=shapes)
                    else:
                        with _NextTable(form):
                            res = convert(onx, input_shapes=shapes)
                    names.append(label)
                    fns.append(_litert_runner(res.tflite_bytes, feeds))
            finally:
                ml_tree_grid.TABLE = None
        for part, (build, feed) in parts.get("files", {}).items():
            interp = V.make_interpreter(_kernel_model(1, build), num_threads=1)
            interp.allocate_tensors()
            for d in interp.get_input_details():
                interp.set_tensor(d["index"], feed[d["name"]])
            names.append(part)
            fns.append(interp.invoke)
        ms = _interleaved_medians(fns, warmup, runs)
        ort_ms = ms[0]
        row["us"] = {k: round(1e3 * v, 2) for k, v in zip(names, ms, strict=True)}
        row["ratio"] = {k: round(v / ort_ms, 3) for k, v in zip(names, ms, strict=True)}
        out[name] = row
        print(name, json.dumps(row["us"]), json.dumps(row["ratio"]), flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--strategy",
        choices=("auto", "all", *STRATEGIES),
        default="auto",
        help="force one tree-walking strategy of lowering/ml_trees.py (default: its cost "
        "model); 'all': the cost model's file plus each strategy forced, timed together",
    )
    parser.add_argument("--save", type=Path, help="write each converted file into this folder")
    parser.add_argument(
        "--baseline", type=Path, help="time the files a --save run wrote here alongside"
    )
    parser.add_argument(
        "--baseline-label", help="what made the --baseline files (recorded in meta.baseline)"
    )
    parser.add_argument(
        "--kernels",
        action="store_true",
        help="measure the per-element kernel costs behind the cost model instead "
        "(writes benchmarks/results/trees_kernels.json)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="time the corpus's walked forests against hand-built lower-bound files instead "
        "(writes benchmarks/results/trees_floor.json)",
    )
    args = parser.parse_args(argv)
    if args.floor:
        table = floor(args.runs, args.warmup)
        meta = {"runs": args.runs, "threads": 1, "machine": platform.machine()}
        meta["loadavg_1_5_15_at_end"] = list(os.getloadavg())
        FLOOR_RESULTS.write_text(json.dumps({"meta": meta, "models": table}, indent=2) + "\n")
        print(f"wrote {FLOOR_RESULTS}")
        return 0
    if args.kernels:
        table = kernels(args.runs)
        meta = {"runs": args.runs, "threads": 1, "machine": platform.machine()}
        meta["loadavg_1_5_15_at_end"] = list(os.getloadavg())
        KERNELS_RESULTS.write_text(json.dumps({"meta": meta, "kernels": table}, indent=2) + "\n")
        print(f"wrote {KERNELS_RESULTS}")
        return 0
    if args.strategy == "all":
        strategies: list[str | None] = [None, *STRATEGIES]
    else:
        strategies = [None if args.strategy == "auto" else args.strategy]
    results: dict = {}
    head = f"{'model':<30}{'batch':>6}{'litert ms':>11}{'ort ms':>9}{'ratio':>7}{'ops':>6}"
    print(head + ("  before" if args.baseline else "") + "  strategy  match")
    for name in args.models:
        for batch in BATCHES:
            r = bench(name, batch, args.warmup, args.runs, strategies, args.save, args.baseline)
            results.setdefault(name, {})[f"batch_{batch}"] = r
            before = f"{r['baseline_ratio']:>8.2f}" if "baseline_ratio" in r else ""
            print(
                f"{name:<30}{batch:>6}{r['litert_ms']:>11.4f}{r['ort_ms']:>9.4f}"
                f"{r['ratio']:>7.2f}{r['tflite_ops']:>6}{before}  {r.get('strategy', '?'):<9} "
                f"{r['match']}",
                flush=True,
            )
            for st, sr in r.get("strategies", {}).items():
                label = "  cost model" if st == "auto" else f"  forced {st}"
                print(f"{label:<36}{sr['litert_ms']:>11.4f}{'':>9}{sr['ratio']:>7.2f}")
    import ai_edge_litert
    import onnxruntime

    meta = {
        "runs": args.runs,
        "warmup": args.warmup,
        "threads": 1,
        "statistic": "median ms, runtimes taking turns in blocks of 10 runs",
        "timed": "LiteRT set_tensor+invoke+get_tensor; onnxruntime session.run",
        "litert": f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}",
        "onnxruntime": onnxruntime.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1_5_15_at_end": list(os.getloadavg()),
        "target": f"LiteRT <= {TARGET_RATIO_BATCH1}x onnxruntime at batch 1",
        "strategy": args.strategy,
        "baseline": args.baseline_label or (str(args.baseline) if args.baseline else None),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "models": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    matched = [r["match"] for m in results.values() for r in m.values()]
    matched += [
        sr["match"]
        for m in results.values()
        for r in m.values()
        for sr in r.get("strategies", {}).values()
    ]
    return 0 if all(matched) else 1


if __name__ == "__main__":
    sys.exit(main())
