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

The ONNX model is one NonMaxSuppression node; the .tflite is our conversion of it (the exact
mode of ``lowering/nms.py``: one TOPK_V2 to fix ONNX's tie order, the kernel, and the index
bookkeeping around it). Outputs are compared exactly (selected indices), then both are timed,
interleaved run by run, median of ``--runs``.

    python benchmarks/bench_nms.py [--classes 90 --per-class 300 --runs 9]

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
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    import ai_edge_litert
    import onnxruntime

    rows = {}
    for c in args.classes:
        rows[f"{c}x{args.per_class}"] = row = bench(c, args.per_class, args.iou, args.runs)
        print(f"{c:>3} classes x {args.per_class}: {row}", flush=True)
    data = {
        "meta": {
            "what": "one NonMaxSuppression node, batched_nms workload; median ms, interleaved",
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
