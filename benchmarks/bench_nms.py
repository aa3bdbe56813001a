"""NonMaxSuppression alone: LiteRT's NON_MAX_SUPPRESSION_V4 kernel vs onnxruntime's, 1 thread.

Why: the corpus' SSDlite detector (torchvision ``ssdlite320_mobilenet_v3_large``, TorchScript
export) runs at ~2x onnxruntime's latency, and both runtimes spend almost all of that model's
time in one NonMaxSuppression call (onnxruntime's profiler: ~94% of its kernel time). This
script isolates that call so the ratio of the two kernels can be read without the rest of the
model. The workload is the one torchvision's ``batched_nms`` builds: per class up to
``--per-class`` candidate boxes, shifted by a per-class offset so that boxes of different
classes never overlap, all passed to ONE class-agnostic NMS with ``max_output = N``, IoU 0.55
and score threshold 0 (the SSDlite call: 90 classes x 300 boxes = 27,000 boxes, about half of
them kept).

Two workloads:

- ``kernel`` (rows ``CxP``): the ONNX model is one NonMaxSuppression node fed the already
  shifted boxes; the .tflite is our conversion of it (the exact mode of ``lowering/nms.py``:
  one TOPK_V2 to fix ONNX's tie order, ONE kernel over all boxes, the index bookkeeping).
- ``batched`` (rows ``batched_CxP``): the graph torchvision exports, which computes the shift
  itself: ``NMS(boxes + Cast(labels) * (ReduceMax(boxes) + 1), scores)`` with labels 1..C in
  runs (the corpus model's layout), boxes clipped to the 320 x 320 image as torchvision's
  detectors clip them. Rule ``batched_nms_groups`` then runs one kernel per label
  (``lowering/nms_groups.py``); ``litert_single_ms`` is the same file converted with
  ``disable_rewrites=["batched_nms_groups"]`` (one kernel), ``ratio`` is the grouped file
  against onnxruntime, ``speedup`` single / grouped.
- ``fallback`` (row ``batched_unclipped_CxP``, largest C): the same boxes unclipped, reaching
  below 0: the offsets no longer separate the labels, the run-time check sees it and the file
  runs its one-kernel fallback (exact; ``speedup`` ~1 is the expected figure).

Outputs are compared exactly (selected indices), then every runtime is timed, interleaved run
by run, median of ``--runs``.

    python benchmarks/bench_nms.py [--classes 10 30 90 --per-class 300 --runs 9]
        [--workload kernel batched]

Writes ``benchmarks/results/nms.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct import validate as V  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "nms.json"


def workload(classes: int, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [1, N, 4] (y1, x1, y2, x2 corners) and scores [1, 1, N] as batched_nms builds
    them: clustered detections per class, offset per class so classes never overlap."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 320, size=(classes, per_class, 2))
    # Detections cluster around a few objects per class: many overlapping candidates.
    objects = rng.uniform(20, 300, size=(classes, 4, 2))
    pick = rng.integers(0, 4, size=(classes, per_class))
    centres = 0.7 * np.take_along_axis(objects, pick[..., None], axis=1) + 0.3 * centres
    sizes = rng.uniform(10, 80, size=(classes, per_class, 2))
    lo, hi = centres - sizes / 2, centres + sizes / 2
    offset = (np.arange(classes) * 321.0)[:, None, None]
    boxes = np.concatenate([lo + offset, hi + offset], axis=-1).reshape(1, -1, 4)
    scores = rng.uniform(0.05, 1.0, size=(1, 1, classes * per_class))
    return boxes.astype(np.float32), scores.astype(np.float32)


def nms_model(n: int, iou: float) -> onnx.ModelProto:
    node = h.make_node("NonMaxSuppression", ["boxes", "scores", "k", "iou", "thr"], ["selected"])
    graph = h.make_graph(
        [node],
        "nms",
        [
            h.make_tensor_value_info("boxes", T.FLOAT, [1, n, 4]),
            h.make_tensor_value_info("scores", T.FLOAT, [1, 1, n]),
        ],
        [h.make_tensor_value_info("selected", T.INT64, None)],
        [
            h.make_tensor("k", T.INT64, [1], [n]),
            h.make_tensor("iou", T.FLOAT, [1], [iou]),
            h.make_tensor("thr", T.FLOAT, [1], [0.0]),
        ],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def batched_model(n: int, labels: np.ndarray, iou: float) -> onnx.ModelProto:
    """torchvision's batched_nms as exported: the per-label shift is computed in the graph."""
    nodes = [
        h.make_node("ReduceMax", ["boxes"], ["max_coordinate"], keepdims=0),
        h.make_node("Add", ["max_coordinate", "one"], ["span"]),
        h.make_node("Cast", ["labels"], ["labels_f"], to=T.FLOAT),
        h.make_node("Mul", ["labels_f", "span"], ["offsets"]),
        h.make_node("Unsqueeze", ["offsets", "axis1"], ["offsets_col"]),
        h.make_node("Add", ["boxes", "offsets_col"], ["boxes_for_nms"]),
        h.make_node("Unsqueeze", ["boxes_for_nms", "axis0"], ["nms_boxes"]),
        h.make_node("Unsqueeze", ["scores", "axes01"], ["nms_scores"]),
        h.make_node("NonMaxSuppression", ["nms_boxes", "nms_scores", "k", "iou"], ["selected"]),
    ]
    graph = h.make_graph(
        nodes,
        "batched_nms",
        [
            h.make_tensor_value_info("boxes", T.FLOAT, [n, 4]),
            h.make_tensor_value_info("scores", T.FLOAT, [n]),
        ],
        [h.make_tensor_value_info("selected", T.INT64, None)],
        [
            h.make_tensor("one", T.FLOAT, [], [1.0]),
            h.make_tensor("axis0", T.INT64, [1], [0]),
            h.make_tensor("axis1", T.INT64, [1], [1]),
            h.make_tensor("axes01", T.INT64, [2], [0, 1]),
            h.make_tensor("k", T.INT64, [1], [n]),
            h.make_tensor("iou", T.FLOAT, [1], [iou]),
            onnx.numpy_helper.from_array(labels.astype(np.int64), "labels"),
        ],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def _interpreter(model, **options):
    with tempfile.TemporaryDirectory() as tmp:
        res = convert(model, output_dir=tmp, keep_io_layout=True, **options)
    interp = V.make_interpreter(res.tflite_bytes, num_threads=1)
    interp.allocate_tensors()
    inputs = {d["name"]: d["index"] for d in interp.get_input_details()}
    out = interp.get_output_details()[0]["index"]

    def run(feeds):
        for name, arr in feeds.items():
            interp.set_tensor(inputs[name], arr)
        interp.invoke()
        return interp.get_tensor(out)

    return run


def bench_batched(classes: int, per_class: int, iou: float, runs: int, clip: bool = True) -> dict:
    """``clip``: boxes clipped to the 320 x 320 image, as torchvision's detectors do before
    batched_nms (the groups are then separated); unclipped boxes reach below 0, the offsets
    (max + 1) no longer separate the labels and the file takes its one-kernel fallback."""
    import onnxruntime as ort

    shifted, scores = workload(classes, per_class)
    offsets = np.repeat(np.arange(classes) * 321.0, per_class)[:, None]
    boxes = (shifted[0] - offsets).astype(np.float32)
    if clip:
        boxes = np.clip(boxes, 0, 320).astype(np.float32)
    labels = np.repeat(np.arange(1, classes + 1), per_class)
    model = batched_model(boxes.shape[0], labels, iou)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {"boxes": boxes, "scores": scores.reshape(-1)}
    expected = sess.run(None, feeds)[0]
    runners = {
        "litert": _interpreter(model),
        "litert_single": _interpreter(model, disable_rewrites=["batched_nms_groups"]),
    }
    match = True
    for run in runners.values():
        actual = run(feeds)
        match = match and actual.shape == expected.shape and bool(np.array_equal(actual, expected))
    times = {name: [] for name in ("ort", *runners)}
    for _ in range(runs):
        s = time.perf_counter()
        sess.run(None, feeds)
        times["ort"].append(time.perf_counter() - s)
        for name, run in runners.items():
            s = time.perf_counter()
            run(feeds)
            times[name].append(time.perf_counter() - s)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    return {
        "boxes": int(boxes.shape[0]),
        "groups": classes,
        "selected": int(expected.shape[0]),
        "match": match,
        "litert_ms": round(ms["litert"], 2),
        "litert_single_ms": round(ms["litert_single"], 2),
        "ort_ms": round(ms["ort"], 2),
        "ratio": round(ms["litert"] / ms["ort"], 3),
        "single_ratio": round(ms["litert_single"] / ms["ort"], 3),
        "speedup": round(ms["litert_single"] / ms["litert"], 2),
    }


def bench(classes: int, per_class: int, iou: float, runs: int) -> dict:
    import onnxruntime as ort

    boxes, scores = workload(classes, per_class)
    model = nms_model(boxes.shape[1], iou)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {"boxes": boxes, "scores": scores}
    expected = sess.run(None, feeds)[0]
    with tempfile.TemporaryDirectory() as tmp:
        res = convert(model, output_dir=tmp, keep_io_layout=True)
    interp = V.make_interpreter(res.tflite_bytes, num_threads=1)
    interp.allocate_tensors()
    inputs = {d["name"]: d["index"] for d in interp.get_input_details()}
    out = interp.get_output_details()[0]["index"]

    def litert():
        for name, arr in feeds.items():
            interp.set_tensor(inputs[name], arr)
        interp.invoke()
        return interp.get_tensor(out)

    actual = litert()
    match = actual.shape == expected.shape and bool(np.array_equal(actual, expected))
    tl, to = [], []
    for _ in range(runs):
        s = time.perf_counter()
        litert()
        tl.append(time.perf_counter() - s)
        s = time.perf_counter()
        sess.run(None, feeds)
        to.append(time.perf_counter() - s)
    lt, ot = 1e3 * statistics.median(tl), 1e3 * statistics.median(to)
    return {
        "boxes": int(boxes.shape[1]),
        "selected": int(expected.shape[0]),
        "match": match,
        "litert_ms": round(lt, 2),
        "ort_ms": round(ot, 2),
        "ratio": round(lt / ot, 3),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, nargs="*", default=[10, 30, 90])
    p.add_argument("--per-class", type=int, default=300)
    p.add_argument("--iou", type=float, default=0.55)
    p.add_argument("--runs", type=int, default=9)
    p.add_argument("--workload", nargs="*", default=["kernel", "batched", "fallback"])
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    import ai_edge_litert
    import onnxruntime

    rows = {}
    for c in args.classes:
        if "kernel" in args.workload:
            rows[f"{c}x{args.per_class}"] = row = bench(c, args.per_class, args.iou, args.runs)
            print(f"{c:>3} classes x {args.per_class}: {row}", flush=True)
        if "batched" in args.workload:
            key = f"batched_{c}x{args.per_class}"
            rows[key] = row = bench_batched(c, args.per_class, args.iou, args.runs)
            print(f"{c:>3} classes x {args.per_class} batched: {row}", flush=True)
    if "fallback" in args.workload:
        c = max(args.classes)
        key = f"batched_unclipped_{c}x{args.per_class}"
        rows[key] = row = bench_batched(c, args.per_class, args.iou, args.runs, clip=False)
        print(f"{c:>3} classes x {args.per_class} unclipped (fallback): {row}", flush=True)
    data = {
        "meta": {
            "what": "NonMaxSuppression, batched_nms workload: one node on shifted boxes (CxP) "
            "and the exported batched_nms graph (batched_CxP, rule batched_nms_groups vs one "
            "kernel); median ms, interleaved",
            "runs": args.runs,
            "threads": 1,
            "iou_threshold": args.iou,
            "litert": getattr(ai_edge_litert, "__version__", "?"),
            "onnxruntime": onnxruntime.__version__,
            "machine": platform.machine(),
        },
        "rows": rows,
    }
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    return 0 if all(r["match"] for r in rows.values()) else 4


if __name__ == "__main__":
    sys.exit(main())
