"""Dynamic shapes: accuracy at several sizes and the cost of staying dynamic.

Usage: ``PYTHONPATH=. python benchmarks/bench_dynamic.py [--repeats 50]``

For each dynamic model (the torch-exported fixtures of tests/test_dynamic_shapes.py and a
dynamic-batch CNN): convert once without pins, run LiteRT at every listed size through the
signature runner and compare with onnxruntime (max abs error / max(1, max |expected|)). Then,
at one size, convert the same model pinned to that size and time both files side by side
(median of ``--repeats`` invocations, one thread): the ratio is what the run-time shape
arithmetic costs. Results: ``benchmarks/results/dynamic_shapes.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnx2tflite_direct import convert, inspect_tflite  # noqa: E402
from onnx2tflite_direct import validate as V  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
RNG = np.random.default_rng(0)


def _tokens(batch, seq):
    ids = RNG.integers(0, 100, (batch, seq)).astype(np.int64)
    mask = np.ones((batch, seq), np.int64)
    mask[:, seq - seq // 4 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _images(batch, h, w):
    return {"images": RNG.standard_normal((batch, 3, h, w)).astype(np.float32)}


CASES = [
    (
        "bert_tiny (batch, sequence)",
        FIXTURES / "bert_tiny_dynamic.onnx",
        _tokens,
        [(1, 8), (1, 16), (1, 128), (4, 64)],
        (1, 128),
    ),
    (
        "yolo_like detector (batch, height, width)",
        FIXTURES / "det_dynamic.onnx",
        _images,
        [(1, 64, 64), (1, 320, 320), (2, 256, 416), (1, 640, 640)],
        (1, 640, 640),
    ),
]


def _ops(tflite: bytes) -> int:
    return inspect_tflite.inspect(bytes(tflite))["operator_count"]


def _latency_ms(tflite: bytes, feeds, io, repeats: int) -> float:
    """Median invoke time through the signature runner (inputs already in stored layout)."""
    from ai_edge_litert.interpreter import Interpreter

    perms = {r["name"]: r["perm"] for r in io if r["kind"] == "input"}
    stored = {k: np.ascontiguousarray(np.transpose(v, perms[k])) for k, v in feeds.items()}
    runner = Interpreter(model_content=bytes(tflite), num_threads=1).get_signature_runner()
    runner(**stored)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(**stored)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for label, path, feeds_at, sizes, timed in CASES:
        model = onnx.load(str(path))
        dynamic = convert(model)
        sess = ort.InferenceSession(str(path))
        runs = []
        for size in sizes:
            feeds = feeds_at(*size)
            names = [o.name for o in sess.get_outputs()]
            expected = dict(zip(names, sess.run(None, feeds), strict=True))
            actual = V.run_litert(dynamic.tflite_bytes, feeds, dynamic.report["io"])
            err = max(
                float(np.abs(actual[n] - e).max()) / max(1.0, float(np.abs(e).max()))
                for n, e in expected.items()
            )
            runs.append({"size": list(size), "max_rel_err": err, "ok": err <= 1e-4})
        feeds = feeds_at(*timed)
        pins = {k: v.shape for k, v in feeds.items()}
        static = convert(model, input_shapes=pins)
        t_dyn = _latency_ms(dynamic.tflite_bytes, feeds, dynamic.report["io"], args.repeats)
        t_static = _latency_ms(static.tflite_bytes, feeds, static.report["io"], args.repeats)
        rows.append(
            {
                "model": label,
                "signatures": {r["name"]: r["shape_signature"] for r in dynamic.report["io"]},
                "runs": runs,
                "ops_dynamic": _ops(dynamic.tflite_bytes),
                "ops_static": _ops(static.tflite_bytes),
                "timed_size": list(timed),
                "latency_ms_dynamic": round(t_dyn, 3),
                "latency_ms_static": round(t_static, 3),
                "latency_ratio_dynamic_to_static": round(t_dyn / t_static, 3),
            }
        )
        print(json.dumps(rows[-1]))
    out = ROOT / "benchmarks" / "results" / "dynamic_shapes.json"
    ok = all(r["ok"] for row in rows for r in row["runs"])
    out.write_text(json.dumps({"rows": rows, "all_sizes_match": ok}, indent=1) + "\n")
    print(f"all sizes within 1e-4 relative: {ok} -> {out}")


if __name__ == "__main__":
    main()
