"""GPU delegate verdict on the benchmark models and the onnx wheel's light_* models.

For every model: convert with default options and with ``--gpu-friendly``, and record the
static GPU verdict of each (``report["gpu"]``: the LiteRT GPU delegate's ported rules,
``gpu_rules.py``), the operators that fall back (op, reason codes) and the rewrites made. No GPU
is involved: this measures what the delegate's own rules say about the files we write.

    python benchmarks/bench_gpu_verdict.py [--out benchmarks/results/gpu_verdict.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tools")]

from make_real_weight_light_models import light_model_paths  # noqa: E402
from models import BENCHMARK_MODELS  # noqa: E402

from onnx2tflite_direct import convert  # noqa: E402


def _fallbacks(section: dict) -> dict[str, int]:
    """``"OP: reason,reason"`` -> count."""
    return dict(
        sorted(Counter(f"{f['op']}: {','.join(f['rules'])}" for f in section["fall_back"]).items())
    )


def verdicts(name: str, model) -> dict:
    row = {"model": name}
    for label, friendly in (("default", False), ("gpu_friendly", True)):
        report = convert(model, gpu_friendly=friendly).report
        gpu = report["gpu"]
        row[label] = {
            "verdict": gpu["verdict"],
            "operators": gpu["operators"],
            "fall_back": _fallbacks(gpu),
        }
        if friendly:
            rewrites = Counter(r["rule"] for r in report["gpu_friendly"]["rewrites"])
            row[label]["rewrites"] = dict(sorted(rewrites.items()))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gpu_verdict.json")
    args = ap.parse_args(argv)
    rows = []
    models = [(f"{name} (benchmarks/models.py)", fn()) for name, fn in BENCHMARK_MODELS.items()]
    models += [(f"light_{name} (onnx wheel)", str(p)) for name, p in light_model_paths().items()]
    for name, model in models:
        row = verdicts(name, model)
        rows.append(row)
        print(
            f"{name:40s} default: {row['default']['verdict']:22s} "
            f"--gpu-friendly: {row['gpu_friendly']['verdict']}"
        )
    full = {
        label: sum(r[label]["verdict"] == "fully delegable" for r in rows)
        for label in ("default", "gpu_friendly")
    }
    summary = {"models": len(rows), "fully_delegable": full}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "what": "static GPU delegate verdict (ported LiteRT rules, nothing run on a GPU)",
                "summary": summary,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(
        f"fully delegable: {full['default']}/{len(rows)} by default, "
        f"{full['gpu_friendly']}/{len(rows)} with --gpu-friendly -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
