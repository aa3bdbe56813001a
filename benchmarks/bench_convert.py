"""Conversion wall time and peak RSS per model, each conversion in a fresh process.

Also measures the floor for the same model: ``onnx.load`` plus writing as many bytes as the
.tflite has; conversion and floor runs alternate, and the best of ``--repeat`` of each is kept.
Results go to ``benchmarks/results/convert_<set>.json`` and a table on stdout.

    python benchmarks/bench_convert.py [--set light|benchmark] [--models NAME ...] [--repeat 3]

``--set light`` (default) uses the real-weight versions of the nine light models;
``--set benchmark`` the generated benchmark set of benchmarks/models.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "benchmarks"))

CHILD = r"""
import json, os, sys, time, tempfile
mode, path = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if mode == "convert":
    import onnx2tflite_direct as o2t
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        res = o2t.convert(path, out)
    size = len(res.tflite_bytes)
else:
    import onnx
    t = time.perf_counter()
    onnx.load(path)
    size = int(sys.argv[3])
    with tempfile.TemporaryDirectory() as out:
        with open(os.path.join(out, "x.bin"), "wb") as fh:
            fh.write(b"\0" * size)
seconds = time.perf_counter() - t
# VmHWM, not ru_maxrss: on Linux ru_maxrss carries the parent's peak across fork+exec.
with open("/proc/self/status") as fh:
    rss = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_rss": rss, "bytes": size}))
"""


def run_child(*args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # Measure what an installed package costs: pip writes .pyc files at install time, so a
    # sandbox's PYTHONDONTWRITEBYTECODE would only add recompiling every module to each run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def model_files(which: str, names, cache: Path) -> dict[str, Path]:
    """name -> .onnx path for the chosen set (written into ``cache``)."""
    if which == "light":
        from make_real_weight_light_models import cached_model_path, light_model_paths

        return {n: cached_model_path(n, cache) for n in names or sorted(light_model_paths())}
    import onnx
    from models import BENCHMARK_MODELS

    paths = {}
    for name in names or list(BENCHMARK_MODELS):
        paths[name] = cache / f"{name}.onnx"
        onnx.save(BENCHMARK_MODELS[name](), str(paths[name]))
    return paths


# Issue #10's targets: time <= 3x the floor (and <= 1.5 s for ResNet-50), peak RSS <= 2x the
# model's weight bytes + 300 MB (the .onnx size stands in for the weight bytes).
MAX_RATIO, RESNET50_SECONDS, RSS_FACTOR, RSS_SLACK_MB = 3.0, 1.5, 2.0, 300.0


def targets(row: dict, name: str) -> dict:
    rss_limit = RSS_FACTOR * row["onnx_bytes"] / 2**20 + RSS_SLACK_MB
    time_ok = row["ratio_to_floor"] <= MAX_RATIO
    if name.startswith("resnet50"):
        time_ok = time_ok and row["convert_seconds"] <= RESNET50_SECONDS
    return {
        "rss_limit_mb": round(rss_limit, 1),
        "meets_time_target": time_ok,
        "meets_rss_target": row["convert_peak_rss_mb"] <= rss_limit,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", choices=("light", "benchmark"), default="light")
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name, path in model_files(args.set, args.models, Path(cache)).items():
            weights = path.stat().st_size
            conv, floors = [], []
            for _ in range(args.repeat):  # in turn, so both see the same machine load
                conv.append(run_child("convert", path))
                floors.append(run_child("floor", path, conv[-1]["bytes"]))
            best = min(conv, key=lambda r: r["seconds"])
            floor = min(floors, key=lambda r: r["seconds"])
            rows.append(
                {
                    "model": f"{name} (real weights)" if args.set == "light" else name,
                    "onnx_bytes": weights,
                    "convert_seconds": round(best["seconds"], 3),
                    "convert_peak_rss_mb": round(max(r["peak_rss"] for r in conv) / 2**20, 1),
                    "floor_seconds": round(floor["seconds"], 3),
                    "floor_peak_rss_mb": round(floor["peak_rss"] / 2**20, 1),
                    "ratio_to_floor": round(best["seconds"] / max(floor["seconds"], 1e-9), 2),
                }
            )
            rows[-1].update(targets(rows[-1], name))
            r = rows[-1]
            print(
                f"{r['model']:32s} {r['onnx_bytes'] / 2**20:8.1f} MB  convert {r['convert_seconds']:6.3f} s "
                f"rss {r['convert_peak_rss_mb']:7.1f} MB  floor {r['floor_seconds']:6.3f} s  "
                f"ratio {r['ratio_to_floor']:5.2f}  targets: time "
                f"{'ok' if r['meets_time_target'] else 'MISSED'}, rss "
                f"{'ok' if r['meets_rss_target'] else 'MISSED'} (<= {r['rss_limit_mb']} MB)",
                flush=True,
            )
    out = ROOT / "benchmarks" / "results" / f"convert_{args.set}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"machine": f"{os.cpu_count()} cores", "rows": rows}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
