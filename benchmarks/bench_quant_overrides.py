"""Selective precision guided by the per-layer debugger, on the quantization benchmark models.

For each model (``benchmarks/bench_quant.py``'s samples: seeded calibration samples and
separate evaluation samples from the same distribution):

1. ``convert(model, quantize=["int8"])``: the int8 file's SQNR (dB) against the float ONNX model
   in onnxruntime over the evaluation samples (the model's worst output), as bench_quant does.
2. Debugger-guided overrides, ``--steps`` times: ``quant_debug.debug_variants`` on the first
   evaluation sample names the node where the error enters (the one adding the most noise over
   its inputs); that node is added as ``<node>=int16x8`` (a node already overridden, or one
   that stays float, is skipped for the next one on the list) and the model is converted
   again. The SQNR after each step and the share of integer operators running 16x8 are kept.
3. The bound of this route: every node at int16x8 in the int8 file (``.*=int16x8``).

    PYTHONPATH=. python benchmarks/bench_quant_overrides.py [--models vit_small mobilenetv2]

Writes ``benchmarks/results/quant_overrides.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from benchmarks.bench_quant import (  # noqa: E402
    feed_batches,
    make_samples,
    model_loaders,
    ort_session,
    run_ort,
    run_variant,
    sqnr_db,
    worst,
)
from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct import quant_debug as QD  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "quant_overrides.json"
TABLE = ROOT / "benchmarks" / "results" / "quant_overrides.md"
DEFAULT_MODELS = ["vit_small", "mobilenetv2", "efficientnet_lite", "unet", "yolov8n"]
KIND = "integer_quant"


def _share_16x8(result) -> float:
    summary = next(s for s in result.report["quantization"] if s["kind"] == KIND)
    rows = summary["precision"]
    integer = [r for r in rows if r["precision"] in ("int8", "int16x8")]
    return sum(r["precision"] == "int16x8" for r in integer) / max(1, len(integer))


def _measure(model, calib, overrides, reference, feeds) -> tuple[object, float, float]:
    started = time.perf_counter()
    res = convert(model, quantize=["int8"], calibration_data=calib, quant_overrides=overrides)
    seconds = time.perf_counter() - started
    outs = [run_variant(res.variants[KIND], f, res.report["io"]) for f in feeds]
    return res, worst(sqnr_db(reference, outs)), seconds


def _next_node(section, taken: set[str]) -> dict | None:
    for row in section["largest_drops"]:
        if row["op_type"] != "input" and row["node"] not in taken:
            return row
    return None


def bench_model(model, args) -> dict:
    calib = make_samples(model, args.calibration_samples, seed=0)
    evals = make_samples(model, args.eval_samples, seed=1)
    base = convert(model, quantize=["int8"], calibration_data=calib)
    front = base.model
    feeds = list(feed_batches(front, evals))
    sess = ort_session(front)
    reference = [run_ort(sess, f) for f in feeds]
    outs = [run_variant(base.variants[KIND], f, base.report["io"]) for f in feeds]
    row = {"int8_sqnr_db": worst(sqnr_db(reference, outs)), "steps": []}
    overrides: list[str] = []
    taken: set[str] = set()
    res = base
    for _ in range(args.steps):
        started = time.perf_counter()
        section = QD.debug_variants(res, feeds=feeds[0], kinds=[KIND])[KIND]
        debug_seconds = time.perf_counter() - started
        named = _next_node(section, taken)
        if named is None:
            break
        taken.add(named["node"])
        overrides.append(f"{re.escape(named['node'])}=int16x8")
        res, db, _ = _measure(model, calib, overrides, reference, feeds)
        row["steps"].append(
            {
                "named": named["node"],
                "op_type": named["op_type"],
                "level_db": named["level_db"],
                "input_level_db": named["input_level_db"],
                "override": overrides[-1],
                "sqnr_db": db,
                "share_16x8": _share_16x8(res),
                "debugger_seconds": debug_seconds,
            }
        )
        print(f"  step {len(row['steps'])}: {named['node']} -> {db:.1f} dB", flush=True)
    every, row["all_16x8_sqnr_db"], _ = _measure(model, calib, [".*=int16x8"], reference, feeds)
    row["all_16x8_share"] = _share_16x8(every)
    return row


def markdown(results: dict, args) -> str:
    lines = [
        "# Selective precision guided by the quantization debugger",
        "",
        f"SQNR (dB) of the `*_integer_quant.tflite` file against the float ONNX model, "
        f"{args.calibration_samples} calibration / {args.eval_samples} evaluation samples "
        "(bench_quant.py's). Each step: `--validate-all-tensors`'s debugger on one evaluation "
        "sample names where the error enters; that node gets `--quant-override <node>=int16x8`. "
        "`share` = integer operators running 16x8 after the step. `all 16x8` = `.*=int16x8` "
        "(the bound of this route).",
        "",
        "| model | int8 | steps: node named -> SQNR (share) | all 16x8 |",
        "|---|---|---|---|",
    ]
    for name, row in results.items():
        steps = "; ".join(
            f"`{s['named']}` ({s['op_type']}) -> {s['sqnr_db']:.1f} ({s['share_16x8']:.0%})"
            for s in row["steps"]
        )
        lines.append(
            f"| {name} | {row['int8_sqnr_db']:.1f} | {steps} | {row['all_16x8_sqnr_db']:.1f} "
            f"({row['all_16x8_share']:.0%}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--calibration-samples", type=int, default=16)
    parser.add_argument("--eval-samples", type=int, default=16)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "o2t_light")
    args = parser.parse_args(argv)
    loaders = model_loaders(args.cache_dir)
    results = json.loads(RESULTS.read_text()).get("models", {}) if RESULTS.exists() else {}
    for name in args.models:
        print(name, flush=True)
        results[name] = bench_model(loaders[name](), args)
    RESULTS.write_text(json.dumps({"models": results}, indent=2) + "\n")
    TABLE.write_text(markdown(results, args))
    print(TABLE.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
