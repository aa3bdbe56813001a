"""Cost of ``--validate-all-tensors`` over ``--validate``, and how much of the graph it maps.

Per model of the benchmark set (benchmarks/models.py), in one process: ``convert(validate=True)``
(the baseline: conversion plus the output comparison) and then, on its result,
``diagnostics.validate_all_tensors`` exactly as the CLI's ``_diagnose`` runs it (default seed
and tolerance, no test data). The two are timed alternately ``--repeat`` times after one warm-up
of each, so machine load hits both alike; the figures are medians. ``ratio`` is
``(convert_validate + diagnostics) / convert_validate``: the time of the
``--validate-all-tensors`` run relative to a ``--validate`` run.

The mapping figures are the diagnostics' own ``mapping`` block (its ``definition`` field says
what is counted). Results go to ``benchmarks/results/diagnostics.json`` and a table on stdout.

    python benchmarks/bench_diagnostics.py [--models NAME ...] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from models import BENCHMARK_MODELS  # noqa: E402

import onnx2tflite_direct as o2t  # noqa: E402
from onnx2tflite_direct import diagnostics  # noqa: E402

TARGET_RATIO = 3.0
TARGET_MAPPED = 0.95


def _time(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def measure(name: str, repeat: int) -> dict:
    """Median times, the per-phase split of the diagnostics, and its mapping block."""
    model = BENCHMARK_MODELS[name]()
    result = o2t.convert(model, validate=True)  # warm-up: imports, allocator, caches
    diagnostics.validate_all_tensors(result)
    base, diag_s, phases = [], [], []
    diag = None
    for _ in range(repeat):
        result, seconds = _time(lambda: o2t.convert(model, validate=True))
        base.append(seconds)
        diag, seconds = _time(lambda r=result: diagnostics.validate_all_tensors(r))
        diag_s.append(seconds)
        phases.append(diag["timing"])
    t_base, t_diag = statistics.median(base), statistics.median(diag_s)
    mapping = {k: v for k, v in diag["mapping"].items() if k != "definition"}
    return {
        "convert_validate_s": round(t_base, 4),
        "diagnostics_s": round(t_diag, 4),
        "ratio": round((t_base + t_diag) / t_base, 3),
        "ratio_per_repeat": [round((b + d) / b, 3) for b, d in zip(base, diag_s, strict=True)],
        "diagnostics_phases_s": {
            k: round(statistics.median(p[k] for p in phases), 4) for k in phases[0]
        },
        "mapping": mapping,
        "derived_compared": diag["derived"],
        "first_divergent_node": diag["first_divergent_node"],
        "outputs_ok": diag["outputs_ok"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(BENCHMARK_MODELS))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "diagnostics.json"))
    args = parser.parse_args(argv)

    rows = {}
    for name in args.models:
        rows[name] = measure(name, args.repeat)
        r = rows[name]
        print(
            f"{name:18s} validate {r['convert_validate_s']:7.3f}s  diag {r['diagnostics_s']:7.3f}s"
            f"  ratio {r['ratio']:5.2f}  mapped {r['mapping']['ratio']:6.1%}"
            f"  internal {r['mapping']['internal_ratio']:6.1%}"
            f"  unmapped {r['mapping']['unmapped_count']}",
            flush=True,
        )
    some = next(iter(rows.values()))
    doc = {
        "what": "time of convert(validate=True) then diagnostics.validate_all_tensors (as the "
        "CLI runs --validate-all-tensors), medians over alternating repeats; ratio = "
        "(convert_validate + diagnostics) / convert_validate",
        "targets": {"ratio_below": TARGET_RATIO, "mapped_at_least": TARGET_MAPPED},
        "mapping_definition": diagnostics.MAPPING_DEFINITION,
        "repeat": args.repeat,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
        "models": rows,
        "summary": {
            "ratio_max": max(r["ratio"] for r in rows.values()),
            "ratio_below_target": sum(r["ratio"] < TARGET_RATIO for r in rows.values()),
            "mapped_at_least_target": sum(
                r["mapping"]["ratio"] >= TARGET_MAPPED for r in rows.values()
            ),
            "models": len(rows),
        },
    }
    assert some  # at least one model measured
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
