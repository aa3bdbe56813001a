"""Where ``--quantize auto`` cannot keep more multiply-accumulates in int8: measured sweeps.

The search (``quant/auto.py``) reports the int8 share it reached and what the one-node
sensitivities allow at best (``int8_mac_share_bound``). This script measures, on the same
held-back samples and with the same candidate files the search builds, how the noise of int8
nodes really combines, for the models named:

1. ``every MAC node int8``: every candidate with multiply-accumulates int8 except
   FULLY_CONNECTED, every node without MACs (ADD, MEAN, ...) and every FULLY_CONNECTED
   int16x8: the least noisy assignment with (nearly) every MAC in int8.
2. ``prefix k``: the first k candidates (graph order) int8, the rest int16x8; and
   ``suffix k``: the MAC nodes from k on int8, the rest int16x8: where the noise enters and
   the int8 share each contiguous split reaches at the target.
3. ``single promotions``: from (1), each MAC node alone moved to int16x8: the SQNR change.
   A node between int8 neighbours keeps their int8 tensors, so one promotion removes little
   (often nothing): the gain the one-node sensitivities promise needs contiguous runs.

    PYTHONPATH=. python benchmarks/bench_auto_quant_sweep.py [--models mobilenetv2]

Writes ``benchmarks/results/auto_quant_sweep.json`` and ``.md`` (models measured earlier kept).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from benchmarks.bench_quant import make_samples, model_loaders  # noqa: E402
from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct.quant import auto, auto_measure  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "auto_quant_sweep.json"
TABLE = ROOT / "benchmarks" / "results" / "auto_quant_sweep.md"
STEPS = 12  # prefix / suffix points per model


def sweep(model, args) -> dict:
    """Runs the auto conversion once, capturing the search's file builder, then the sweeps."""
    seen: dict = {}
    search = auto._search

    def capture(bench, nodes, target, sens_feeds, sens_refs, held, refs):
        seen.update(bench=bench, nodes=nodes, held=held, refs=refs)
        return search(bench, nodes, target, sens_feeds, sens_refs, held, refs)

    auto._search = capture
    try:
        calib = make_samples(model, args.calibration_samples, seed=0)
        res = convert(model, quantize=["auto"], target_sqnr=args.target, calibration_data=calib)
    finally:
        auto._search = search
    section = next(s for s in res.report["quantization"] if s["kind"] == "auto_quant")["auto"]
    row = {
        "target_sqnr_db": args.target,
        "search_sqnr_db": section["sqnr_db"],
        "search_int8_mac_share": section["int8_mac_share"],
        "int8_mac_share_bound": section["int8_mac_share_bound"],
    }
    if not seen:
        row["note"] = "the all-int8 file meets the target: nothing to sweep"
        return row
    bench, nodes = seen["bench"], seen["nodes"]
    macs = auto_measure.macs_by_node(bench.model_ir)
    labels = list(nodes)

    def measure(assignment: dict[str, str]) -> tuple[float, float]:
        data, _, ir = bench.file({c: nodes[c].asked(p) for c, p in assignment.items()})
        db = bench.measure(data, seen["held"], seen["refs"]).sqnr_db()
        return db, auto._mac_shares(ir, macs)["int8_mac_share"]

    def heavy(c: str) -> bool:
        return nodes[c].macs > 0 and nodes[c].op_type != "FULLY_CONNECTED"

    base = {c: "int8" if heavy(c) else "int16x8" for c in labels}
    row["every_mac_node_int8"] = measure(base)
    row["all_int16x8"] = measure({c: "int16x8" for c in labels})
    points = sorted({round(k * len(labels) / STEPS) for k in range(STEPS + 1)})
    row["prefix"] = [
        (k, *measure({c: "int8" if i < k else "int16x8" for i, c in enumerate(labels)}))
        for k in points
    ]
    row["suffix"] = [
        (
            k,
            *measure(
                {c: "int8" if i >= k and heavy(c) else "int16x8" for i, c in enumerate(labels)}
            ),
        )  # fmt: skip
        for k in points
    ]
    deltas = {}
    for c in (c for c in labels if heavy(c)):
        deltas[c] = measure({**base, c: "int16x8"})[0] - row["every_mac_node_int8"][0]
    row["single_promotion_db"] = deltas
    meets = [s for _, db, s in row["prefix"] + row["suffix"] if db >= args.target]
    row["best_split_int8_mac_share"] = max(meets, default=0.0)
    return row


def markdown(results: dict, target: float) -> str:
    lines = [
        f"# Where `--quantize auto --target-sqnr {target:g}` stops: measured sweeps",
        "",
        "SQNR (dB) of candidate files on the search's held-back samples (worst output), with "
        "their int8 MAC share (benchmarks/bench_auto_quant_sweep.py). `search` = the share the "
        "auto search reached; `est. max` = what the one-node sensitivities allow at best "
        "(fractional knapsack of the calibrated additive noise model); `every MAC int8` = every "
        "conv int8, nodes without MACs and FULLY_CONNECTED int16x8; `best split` = the largest "
        "int8 share of a prefix / suffix split (int8 on one side, int16x8 on the other) "
        "meeting the target; `single promotions` = from `every MAC int8`, one MAC node moved to "
        "int16x8: min / median / max change (dB) and how many gain more than 0.3 dB.",
        "",
        "| model | search | est. max | every MAC int8 | all int16x8 | best split | single "
        "promotions | prefix (k: dB @ int8 share) | suffix (k: dB @ int8 share) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "note" in r:
            lines.append(f"| {name} | {r['search_int8_mac_share']:.0%} | - | {r['note']} |")
            continue
        d = list(r["single_promotion_db"].values())
        single = (
            f"{min(d):+.2f} / {statistics.median(d):+.2f} / {max(d):+.2f}; "
            f"{sum(v > 0.3 for v in d)} of {len(d)} > 0.3"
            if d
            else "-"
        )
        lines.append(
            f"| {name} | {r['search_int8_mac_share']:.0%} ({r['search_sqnr_db']:.1f} dB) "
            f"| {r['int8_mac_share_bound']:.0%} "
            f"| {r['every_mac_node_int8'][0]:.1f} @ {r['every_mac_node_int8'][1]:.0%} "
            f"| {r['all_int16x8'][0]:.1f} | {r['best_split_int8_mac_share']:.0%} | {single} "
            f"| {_points(r['prefix'])} | {_points(r['suffix'])} |"
        )
    return "\n".join(lines) + "\n"


def _points(points) -> str:
    return ", ".join(f"{k}: {db:.1f} @ {s:.0%}" for k, db, s in points)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["mobilenetv2"])
    parser.add_argument("--target", type=float, default=40.0)
    parser.add_argument("--calibration-samples", type=int, default=16)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "o2t_light")
    args = parser.parse_args(argv)
    loaders = model_loaders(args.cache_dir)
    results = json.loads(RESULTS.read_text()).get("models", {}) if RESULTS.exists() else {}
    for name in args.models:
        print(name, flush=True)
        results[name] = sweep(loaders[name](), args)
        RESULTS.write_text(json.dumps({"models": results}, indent=2) + "\n")
        TABLE.write_text(markdown(results, args.target))
    print(TABLE.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
