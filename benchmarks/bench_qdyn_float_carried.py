"""quantize_dynamic models of the real-model corpus: integer-exact vs float-carried lowering.

For every corpus model that onnxruntime's ``quantize_dynamic`` wrote (manifest exporter
"onnxruntime quantize_dynamic": the ``*_qdyn`` models and ddddocr_common_old), the float32
file is converted twice on the same converter, as the corpus runner converts it
(``keep_io_layout=True``, the feed shapes as pins):

* ``integer``: ``--disable-rewrite float_carried_integers``, the int32-exact lowering
  (uint8/int32 tensors, CASTs, digit-split accumulations);
* ``float_carried``: the default, rule ``float_carried_integers`` (``float_carried.py``), whose
  products with constant weights run on LiteRT's int8 FULLY_CONNECTED made exact
  (``lowering/contrib_quant.exact_dense``; kernel-level figures: bench_exact_int8_kernel.py).

Each file is compared with onnxruntime under the corpus rule (rtol 1e-3, atol 1e-5 of the
output's scale), its XNNPACK partitions are counted (``bench_partitions.count_partitions``)
and its latency is measured against onnxruntime at 1 thread, both timed alternately on the
same feeds (``tools.zoo.run._paired_latency``: median of >= 20 pairs after warm-up).

    PYTHONPATH=. python benchmarks/bench_qdyn_float_carried.py [--only NAME ...] [--runs 20]
        [--out benchmarks/results/qdyn_float_carried.json]

Each model runs in a forked child (LiteRT aborts the process on a few files). The .md next
to the JSON is written from it. ``--baseline-zoo ZOO_JSON --baseline-partitions JSON LABEL``
(also with ``--report-only``) records an earlier converter's corpus status, latency ratio
and partitions (``tools.zoo.run`` / ``bench_partitions.py`` output) as a ``baseline``
column, e.g. the commit before the rule existed.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULTS = ROOT / "benchmarks" / "results" / "qdyn_float_carried.json"
RULE = "float_carried_integers"
EXPORTER = "onnxruntime quantize_dynamic"
VARIANTS = {"integer": (RULE,), "float_carried": ()}


def qdyn_models() -> list[str]:
    from tools.zoo import manifest, run

    return [
        m["name"]
        for m in manifest.all_models()
        if m.get("exporter") == EXPORTER and run.model_path(m["name"]).exists()
    ]


def _measure(name: str, runs: int) -> dict:
    import onnx
    from bench_partitions import count_partitions

    from onnx2tflite_direct import convert
    from onnx2tflite_direct.validate import compare, run_litert, run_onnxruntime
    from tools.zoo import manifest, run

    entry = manifest.by_name(name)
    path = run.model_path(name)
    model = onnx.load(str(path))
    feeds = run.load_feeds(entry, model)
    pins = None if entry.get("dynamic") else {k: tuple(v.shape) for k, v in feeds.items()}
    expected = run_onnxruntime(path, feeds)
    row: dict = {}
    for variant, disabled in VARIANTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            res = convert(
                str(path),
                tmp,
                keep_io_layout=True,
                input_shapes=pins,
                stem="m",
                disable_rewrites=disabled,
                **entry.get("convert_options", {}),
            )
            tflite, io = bytes(res.tflite_bytes), res.report.get("io")
            rewrites = {r["rule"]: r["matched"] for r in res.report.get("rewrites", [])}
        parts = count_partitions(tflite)
        metrics = compare(expected, run_litert(tflite, feeds, io), atol=run.ATOL, rtol=run.RTOL)
        ort_ms, litert_ms, n = run._paired_latency(
            run._ort_runner(path, feeds), run._litert_runner(tflite, feeds, io), runs
        )
        row[variant] = {
            "match": all(bool(m.get("ok")) for m in metrics.values()),
            "max_rel": max(float(m.get("max_rel") or 0.0) for m in metrics.values()),
            "min_sqnr_db": min(float(m.get("sqnr_db") or 0.0) for m in metrics.values()),
            "partitions": parts["partitions"],
            "delegated_share": parts["delegated_share"],
            "ops": parts["tflite_ops"],
            "outside": parts["outside"],
            "tflite_bytes": len(tflite),
            "rewritten_nodes": rewrites.get(RULE, 0),
            "ort_ms": round(ort_ms, 4),
            "litert_ms": round(litert_ms, 4),
            "latency_runs": n,
            "latency_ratio": round(litert_ms / ort_ms, 3),
        }
    return row


def _commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "onnx2tflite_direct"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        commit = ROOT / "COMMIT"
        return commit.read_text().strip() if commit.exists() else "unknown"


def write_md(data: dict, path: Path) -> None:
    meta = data["meta"]
    lines = [
        "# quantize_dynamic models: integer-exact vs float-carried float32 files",
        "",
        "Written by `benchmarks/bench_qdyn_float_carried.py` (converter "
        f"{meta['commit']}, {meta['written']}, {meta['litert']}, {meta['machine']}). "
        "`integer` = `--disable-rewrite float_carried_integers` (the int32-exact lowering); "
        "`float_carried` = the default (products with constant weights on the exact int8 "
        "FULLY_CONNECTED). Latency: LiteRT (XNNPACK, 1 thread) over onnxruntime "
        "(1 thread), timed alternately, median. Match: the corpus rule (rtol 1e-3, atol 1e-5).",
        "",
        "| model | partitions | delegated | latency ratio | LiteRT ms | onnxruntime ms | "
        "match | min SQNR dB | file MB | outside XNNPACK (float_carried) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    base = data.get("baseline")
    if base:
        head = [
            "",
            f"Baseline ({base['source']}): status, latency ratio, partitions -> this run's "
            "float_carried file.",
            "",
            "| model | status | latency ratio | partitions |",
            "|---|---|---:|---:|",
        ]
        for name, row in sorted(data["models"].items()):
            b, f = base["models"].get(name, {}), row.get("float_carried", {})
            status = "pass" if f.get("match") else "mismatch"
            head.append(
                f"| {name} | {b.get('status', '?')} -> {status} | "
                f"{b.get('latency_ratio', '?')} -> {f.get('latency_ratio', '?')} | "
                f"{b.get('partitions', '?')} -> {f.get('partitions', '?')} |"
            )
        lines[3:3] = head
    ratios = {"integer": [], "float_carried": []}
    for name, row in sorted(data["models"].items()):
        if "integer" not in row:
            lines.append(f"| {name} | failed: {row.get('error', '?')} |||||||||")
            continue
        a, b = row["integer"], row["float_carried"]
        ratios["integer"].append(a["latency_ratio"])
        ratios["float_carried"].append(b["latency_ratio"])

        def pair(key, fmt="{}"):
            return f"{fmt.format(a[key])} -> {fmt.format(b[key])}"  # noqa: B023

        outside = ", ".join(f"{k} {v}" for k, v in b["outside"].items()) or "-"
        match = f"{'yes' if a['match'] else 'NO'} -> {'yes' if b['match'] else 'NO'}"
        lines.append(
            f"| {name} | {pair('partitions')} | "
            f"{100 * a['delegated_share']:.1f}% -> {100 * b['delegated_share']:.1f}% | "
            f"**{pair('latency_ratio')}** | {pair('litert_ms', '{:.2f}')} | "
            f"{pair('ort_ms', '{:.2f}')} | {match} | {pair('min_sqnr_db', '{:.1f}')} | "
            f"{a['tflite_bytes'] / 1e6:.1f} -> {b['tflite_bytes'] / 1e6:.1f} | {outside} |"
        )
    if ratios["float_carried"]:
        lines += [
            "",
            "Median latency ratio: integer "
            f"{statistics.median(ratios['integer']):.3f}, float_carried "
            f"{statistics.median(ratios['float_carried']):.3f}; worst: "
            f"{max(ratios['integer']):.3f} -> {max(ratios['float_carried']):.3f}.",
        ]
    path.write_text("\n".join(lines) + "\n")


def _baseline(args) -> dict:
    models: dict[str, dict] = {}
    if args.baseline_zoo:
        for rec in json.loads(args.baseline_zoo.read_text())["models"]:
            if rec.get("exporter") == EXPORTER:
                models.setdefault(rec["name"], {}).update(
                    status=rec.get("status"), latency_ratio=rec.get("latency_ratio")
                )
    if args.baseline_partitions:
        path, label = args.baseline_partitions
        rows = json.loads(Path(path).read_text())["runs"][label]["models"]
        for name, row in rows.items():
            if "partitions" in row:
                models.setdefault(name, {})["partitions"] = row["partitions"]
    return {"source": args.baseline_source, "models": models}


def main(argv: list[str] | None = None) -> int:
    from bench_partitions import in_child

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="*", help="model names")
    p.add_argument("--runs", type=int, default=20, help="latency pairs per file (>= 20)")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--report-only", action="store_true", help="rewrite the .md from the JSON")
    p.add_argument("--baseline-zoo", type=Path, help="an earlier zoo.json (status, ratio)")
    p.add_argument(
        "--baseline-partitions", nargs=2, metavar=("JSON", "LABEL"), help="bench_partitions"
    )
    p.add_argument("--baseline-source", default="earlier converter", help="its description")
    args = p.parse_args(argv)
    if args.report_only:
        data = json.loads(args.out.read_text())
        if args.baseline_zoo or args.baseline_partitions:
            data["baseline"] = _baseline(args)
            args.out.write_text(json.dumps(data, indent=1) + "\n")
        write_md(data, args.out.with_suffix(".md"))
        return 0
    import ai_edge_litert

    litert_version = getattr(ai_edge_litert, "__version__", "?")
    names = [n for n in qdyn_models() if not args.only or n in set(args.only)]
    data = json.loads(args.out.read_text()) if args.out.exists() else {"models": {}}
    data["meta"] = {
        "commit": _commit(),
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "litert": f"ai-edge-litert {litert_version}",
        "machine": platform.machine(),
    }
    if args.baseline_zoo or args.baseline_partitions:
        data["baseline"] = _baseline(args)
    for name in names:
        row = in_child(lambda n: _measure(n, args.runs), name, args.timeout)
        data["models"][name] = row
        variants = [k for k in VARIANTS if k in row]
        brief = {
            k: (row[k]["partitions"], row[k]["latency_ratio"], row[k]["match"]) for k in variants
        }
        print(name, brief or row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    write_md(data, args.out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
