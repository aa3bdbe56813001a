"""Inference latency of our .tflite (LiteRT, XNNPACK) against onnxruntime on the benchmark set.

For every model of ``benchmarks/models.py`` (or the ``--models`` subset): convert, check each
output against onnxruntime (max abs error <= 1e-4 * max(1, max|expected|)), then time both
runtimes at 1 and 2 threads: median of ``--runs`` timed runs after ``--warmup`` untimed ones.
LiteRT is timed as set_tensor + invoke; onnxruntime as ``session.run`` (sequential execution,
``inter_op_num_threads=1``). Models that fail to convert are listed with their reason code.

    PYTHONPATH=. python benchmarks/bench_latency.py [--models resnet50 yolov8n] [--runs 30]

Writes ``benchmarks/results/latency.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.models import BENCHMARK_MODELS  # noqa: E402
from onnx2tflite_direct import ConversionError, convert  # noqa: E402
from onnx2tflite_direct import validate as V  # noqa: E402

THREADS = (1, 2)
ATOL = 1e-4
RESULTS = ROOT / "benchmarks" / "results" / "latency.json"


def median_ms(run: Callable[[], object], warmup: int, runs: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def litert_runner(tflite_bytes: bytes, feeds: Mapping[str, np.ndarray], io_table, threads: int):
    """A zero-argument callable doing one inference (inputs in the stored TFLite layout)."""
    interp = V.make_interpreter(tflite_bytes, num_threads=threads)  # XNNPACK by default
    interp.allocate_tensors()
    perms = {row["name"]: row.get("perm") for row in io_table if row["kind"] == "input"}
    by_name = {d["name"]: d for d in interp.get_input_details()}
    staged = []
    for name, arr in feeds.items():
        detail = by_name[name]
        perm = perms.get(name)
        stored = np.transpose(arr, perm) if perm is not None else arr
        staged.append((detail["index"], np.ascontiguousarray(stored, dtype=detail["dtype"])))

    def run() -> None:
        for index, arr in staged:
            interp.set_tensor(index, arr)
        interp.invoke()

    return run


def ort_runner(model_bytes: bytes, feeds: Mapping[str, np.ndarray], threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    feeds = dict(feeds)
    return lambda: sess.run(None, feeds)


def bench_model(name: str, warmup: int, runs: int) -> dict:
    from harness import op_histogram

    model = BENCHMARK_MODELS[name]()
    started = time.perf_counter()
    try:
        res = convert(model)
    except ConversionError as err:
        return {"status": "conversion_failed", "reason_code": err.reason_code, "error": str(err)}
    row: dict = {"status": "converted", "convert_seconds": time.perf_counter() - started}
    ops = op_histogram(res.tflite_bytes)
    row.update(
        tflite_ops=sum(ops.values()),
        transposes=ops.get("TRANSPOSE", 0),
        op_histogram=dict(ops.most_common()),
        tflite_bytes=len(res.tflite_bytes),
    )
    front = res.model
    feeds = V.seeded_inputs(front, seed=0)
    val = V.validate(front, res.tflite_bytes, res.report["io"], feeds, atol=ATOL)
    row["match"] = val.ok
    row["outputs"] = {
        out: {"max_abs": m["max_abs"], "max_expected_abs": m["max_expected_abs"], "ok": m["ok"]}
        for out, m in val.outputs.items()
    }
    model_bytes = front.SerializeToString()
    for threads in THREADS:
        run = litert_runner(res.tflite_bytes, feeds, res.report["io"], threads)
        row[f"litert_ms_{threads}t"] = median_ms(run, warmup, runs)
        run = ort_runner(model_bytes, feeds, threads)
        row[f"ort_ms_{threads}t"] = median_ms(run, warmup, runs)
        row[f"ratio_{threads}t"] = row[f"litert_ms_{threads}t"] / row[f"ort_ms_{threads}t"]
    return row


def format_table(results: Mapping[str, dict]) -> str:
    head = (
        f"{'model':<18}{'ours 1t':>9}{'ours 2t':>9}{'ort 1t':>9}{'ort 2t':>9}"
        f"{'ratio 1t':>10}{'ratio 2t':>10}{'ops':>6}{'TRANSP':>8}  match"
    )
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        if r["status"] != "converted":
            lines.append(f"{name:<18}conversion failed: {r['reason_code']}")
            continue
        lines.append(
            f"{name:<18}{r['litert_ms_1t']:>9.2f}{r['litert_ms_2t']:>9.2f}"
            f"{r['ort_ms_1t']:>9.2f}{r['ort_ms_2t']:>9.2f}{r['ratio_1t']:>10.2f}"
            f"{r['ratio_2t']:>10.2f}{r['tflite_ops']:>6}{r['transposes']:>8}  "
            + ("ok" if r["match"] else "MISMATCH")
            + "  (max abs "
            + ", ".join(f"{m['max_abs']:.2g}" for m in r["outputs"].values())
            + ")"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(BENCHMARK_MODELS))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(BENCHMARK_MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {sorted(BENCHMARK_MODELS)}")
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")

    results = {}
    for name in args.models:
        results[name] = bench_model(name, args.warmup, args.runs)
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(format_table(results))

    import ai_edge_litert
    import onnxruntime

    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "runs": args.runs,
        "warmup": args.warmup,
        "threads": list(THREADS),
        "statistic": "median ms",
        "litert": f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')} (XNNPACK)",
        "onnxruntime": onnxruntime.__version__,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        # The machine may be shared: a load average near the core count inflates 2-thread times.
        "loadavg_1_5_15_at_end": list(os.getloadavg()),
        "match_rule": f"max_abs <= {ATOL:g} * max(1, max|expected|)",
    }
    args.out.write_text(json.dumps({"meta": meta, "models": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r.get("match", True) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
