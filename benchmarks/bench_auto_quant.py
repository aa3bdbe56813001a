"""``--quantize auto --target-sqnr DB`` on the quantization benchmark models.

For each model (``benchmarks/bench_quant.py``'s models and samples: seeded calibration samples,
and separate evaluation samples from the same distribution):

1. ``convert(model, quantize=["auto"], target_sqnr=DB, calibration_data=calib)`` (timed: the
   whole conversion, float file included). The auto file holds back the last quarter of the
   calibration samples for its own verification (``quant/auto.py``).
2. From the report: the SQNR on those held-back samples, the all-int8 figure, the float file's
   figure (the ceiling), the int8 / int16x8 / float shares of multiply-accumulates and the nodes
   not left at int8 (promoted), the number of candidate files built.
3. Independently: the written file in LiteRT on fresh samples (bench_quant's evaluation
   samples: seed 1, the calibration and held-back samples are seed 0) against the float ONNX
   model in onnxruntime (worst output), as bench_quant measures every variant.
4. ``--baseline OLD.json`` (an earlier results file) adds its int8 MAC share as the `before`
   column.

    PYTHONPATH=. python benchmarks/bench_auto_quant.py [--models mobilenetv2 vit_small] \
        [--baseline /tmp/auto_quant_before.json] [--results /tmp/part1.json]
    PYTHONPATH=. python benchmarks/bench_auto_quant.py --merge /tmp/part1.json /tmp/part2.json

Writes ``benchmarks/results/auto_quant.json`` and ``.md`` (models measured earlier are kept), or
``--results PATH`` and the ``.md`` beside it; ``--merge`` folds such files into the results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
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
from onnx2tflite_direct import ConversionError, convert  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "auto_quant.json"
QUANT = ROOT / "benchmarks" / "results" / "quant.json"  # bench_quant's: the int8-weight bound
KIND = "auto_quant"
CNNS = {
    "resnet50", "mobilenetv2", "efficientnet_lite", "yolov8n", "unet", "light_bvlc_alexnet",
    "light_densenet121", "light_inception_v1", "light_inception_v2", "light_resnet50",
    "light_shufflenet", "light_squeezenet", "light_vgg19", "light_zfnet512",
}  # fmt: skip


def bench_model(model, args) -> dict:
    calib = make_samples(model, args.calibration_samples, seed=0)
    evals = make_samples(model, args.eval_samples, seed=1)
    started = time.perf_counter()
    try:
        res = convert(model, quantize=["auto"], target_sqnr=args.target, calibration_data=calib)
    except ConversionError as exc:
        return {"refused": exc.reason_code, "message": exc.message}
    seconds = time.perf_counter() - started
    auto = next(s for s in res.report["quantization"] if s["kind"] == KIND)["auto"]
    feeds = list(feed_batches(res.model, evals))
    sess = ort_session(res.model)
    reference = [run_ort(sess, f) for f in feeds]
    outs = [run_variant(res.variants[KIND], f, res.report["io"]) for f in feeds]
    each = [worst(sqnr_db([r], [o])) for r, o in zip(reference, outs, strict=True)]
    promoted = {a["node"]: a["precision"] for a in auto["assignment"] if a["precision"] != "int8"}
    return {
        "target_sqnr_db": args.target,
        "held_back_sqnr_db": auto["sqnr_db"],
        "margin_db": auto["margin_db"],
        "held_back_samples": auto["held_back_samples"],
        "sqnr_lower_bound_db": auto.get("sqnr_lower_bound_db"),
        "eval_sqnr_db": worst(sqnr_db(reference, outs)),
        "eval_per_sample_sd_db": round(statistics.stdev(each), 3) if len(each) > 1 else None,
        "eval_per_sample_min_db": round(min(each), 2),
        "target_met": auto["target_met"],
        "all_int8_held_back_sqnr_db": auto["all_int8_sqnr_db"],
        "float_held_back_sqnr_db": auto["float_sqnr_db"],
        "int8_mac_share": auto["int8_mac_share"],
        "int16x8_mac_share": auto["int16x8_mac_share"],
        "float_mac_share": auto["float_mac_share"],
        "int8_mac_share_bound": auto["int8_mac_share_bound"],
        "candidates": auto["candidates"],
        "conversions": auto["conversions"],
        "auto_seconds": auto["seconds"],
        "convert_seconds": round(seconds, 2),
        "promoted": promoted,
        "rounds": auto["verification_rounds"],
        "activation_ranges": (auto.get("activation_ranges") or {}).get("method"),
        "equalized": (auto.get("equalization") or {}).get("used", False),
        "improved_all_int8_held_back_sqnr_db": auto.get("improved_all_int8_sqnr_db"),
    }


def markdown(results: dict, args) -> str:
    lines = [
        f"# `--quantize auto --target-sqnr {args.target:g}`",
        "",
        f"{args.calibration_samples} calibration samples (the last half held back by the auto "
        f"search for its confirmation) / {args.eval_samples} separate evaluation samples "
        "(bench_quant.py's, seed 1: fresh, the calibration samples are seed 0). SQNR (dB) "
        "against the float ONNX model in onnxruntime, worst output. `ran on` = the commit "
        "the row was measured on (rows marked `previous search` predate the confirmation on "
        "held-back samples: their `held back` is the 4-sample figure the old search verified "
        "and refined on). `held back` = the written "
        "file on the held-back samples, which no choice of the search has seen; `margin` = the "
        "margin measured on them (the one-sided 95% Student t quantile times the jackknife "
        "standard error of the figure, the per-sample variance pooled with the calibration "
        "samples'); `bound` = `held back` - `margin`, the 95% lower confidence bound the file "
        "was confirmed with (`met`: >= target); `fresh` = the written file on the fresh "
        "samples (`fresh met`: >= target there), `fresh sd` = the spread of the per-sample "
        "SQNR over them (dB); `fresh before` / `int8 before` / `s before` = the row of the "
        "`--baseline` file (for rows with `passes`: the search that backed off on the "
        "held-back samples without re-promoting, as committed before, rows of afd3277 / "
        "c01e453; for the others: the search verified and refined on 4 held-back samples); "
        "`all int8` = the default "
        "int8 plan on the held-back samples; `int8 MACs` = share of multiply-accumulates "
        "running int8 activations and weights, `16x8` = int16 activations with int8 weights, "
        "`float` the rest; `integer` = int8 + 16x8; `est. max` = what the sensitivities allow "
        "at best: the largest int8 share whose calibrated one-node-int8 noise fits the "
        "target's noise budget with every other node float (fractional knapsack of the "
        "additive noise model, 100% when all-int8 meets the target); `files` = candidate "
        "integer files built; `s` = whole conversion time (float file included) on this "
        "shared 2-core machine (other jobs ran beside both runs: compare `files` for the "
        "search's own cost). `passes` = back-off + re-promotion passes the search made on the "
        "calibration samples, each confirmed on the held-back samples (a failed confirmation "
        "first undoes the fewest last re-promotions that pass; when none does, the next pass "
        "aims higher on the calibration samples by the shortfall: `aim` = the last aim), "
        "`held-back choices` = yes when the last-resort pass backed off on the held-back "
        "samples themselves (their bound is then not unseen: the fresh figure is the check). `w8 bound` = bench_quant's `w8 corrected`: the float model with "
        "every weight int8 (bias-corrected) and exact activations, i.e. what int8 weights "
        "alone allow. `less int8 noise` = what the search starts from when the all-int8 file "
        "misses the target (quant/auto.py): the activation ranges (`minmax` or `mse`), `eq` = "
        "channel equalization (quant/equalize.py), and the resulting all-int8 figure on the "
        "held-back samples.",
        "",
        "| model | ran on | w8 bound | all int8 | held back | margin | bound | met | fresh | fresh sd | "
        "fresh met | fresh before | int8 MACs | int8 before | est. max | 16x8 | integer | "
        "float | less int8 noise | passes | aim | held-back choices | files | s | s before | "
        "not int8 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        "---|---|---|---|",
    ]
    bounds = {}
    if QUANT.exists():
        for name, row in json.loads(QUANT.read_text()).get("models", {}).items():
            bounds[name] = (row.get("sqnr_db") or {}).get("int8_weights_corrected_bound")
    for name, r in results.items():
        if "refused" in r:
            lines.append(
                f"| {name} | {r.get('ran_on', '-')} | refused: `{r['refused']}` {r['message']} |"
            )
            continue
        promoted = ", ".join(f"{k}={v}" for k, v in list(r["promoted"].items())[:8])
        more = len(r["promoted"]) - 8
        if more > 0:
            promoted += f" (+{more} more)"
        before = r.get("int8_mac_share_before")
        # Rows measured before the search lowered the int8 noise first have no
        # ``activation_ranges``: shown as the previous search's, not re-run.
        old = "" if "sqnr_lower_bound_db" in r else " (previous search, not re-run)"
        lines.append(
            f"| {name}{old} | {r.get('ran_on', '-')} | {_db(bounds.get(name))} | {r['all_int8_held_back_sqnr_db']:.1f} "
            f"| {r['held_back_sqnr_db']:.1f} | {_db(r.get('margin_db'))} "
            f"| {_db(r.get('sqnr_lower_bound_db'))} "
            f"| {'yes' if r['target_met'] else 'NO'} | {r['eval_sqnr_db']:.1f} "
            f"| {_db(r.get('eval_per_sample_sd_db'))} "
            f"| {'yes' if r['eval_sqnr_db'] >= args.target else 'no'} "
            f"| {_db(r.get('eval_sqnr_db_before'))} "
            f"| {r['int8_mac_share']:.0%} | {'-' if before is None else f'{before:.0%}'} "
            f"| {_share(r.get('int8_mac_share_bound'))} "
            f"| {r['int16x8_mac_share']:.0%} "
            f"| {r['int8_mac_share'] + r['int16x8_mac_share']:.0%} "
            f"| {r['float_mac_share']:.0%} | {_less_noise(r)} | {_passes(r)} "
            f"| {r['conversions']} "
            f"| {r['convert_seconds']:.0f} | {_secs(r.get('convert_seconds_before'))} "
            f"| {promoted or '-'} |"
        )
    cnn = {n: r for n, r in results.items() if n in CNNS and "refused" not in r}
    if cnn:
        at80 = [n for n, r in cnn.items() if r["int8_mac_share"] >= 0.8]
        room = [n for n in cnn if (bounds.get(n) or 0) >= args.target]
        allow = [n for n in cnn if (cnn[n].get("int8_mac_share_bound") or 0.0) >= 0.8]
        fresh = [n for n, r in results.items() if "refused" not in r]
        lines += [
            "",
            f"CNNs with int8 MAC share >= 80%: {len(at80)} of {len(cnn)} ({', '.join(at80)}); "
            f"of the {len(room)} whose int8 weights allow the target (w8 bound >= "
            f"{args.target:g} dB: {', '.join(room)}): "
            f"{sum(n in at80 for n in room)}; of the {len(allow)} whose sensitivities allow "
            f">= 80% (est. max: {', '.join(allow)}): {sum(n in at80 for n in allow)}.",
            "",
            f"Target met on the held-back samples: "
            f"{sum(results[n]['target_met'] for n in fresh)} of {len(fresh)}; on the fresh "
            f"samples: {sum(results[n]['eval_sqnr_db'] >= args.target for n in fresh)} of "
            f"{len(fresh)}.",
        ]
        by_commit: dict[str, list[str]] = {}
        for n, r in results.items():
            by_commit.setdefault(r.get("ran_on") or "-", []).append(n)
        lines += [
            "",
            "Rows by the commit they ran on: "
            + "; ".join(f"{c}: {', '.join(ns)}" for c, ns in by_commit.items())
            + ".",
        ]
        new = [n for n in fresh if "sqnr_lower_bound_db" in results[n]]
        if len(new) < len(fresh):
            met = [n for n in new if results[n]["eval_sqnr_db"] >= args.target]
            lines += [
                "",
                f"Of the {len(new)} rows measured with the confirmation on held-back samples: "
                f"{len(met)} meet the target on the fresh samples; "
                f"{', '.join(n for n in new if n not in met) or 'none'} miss it. "
                f"Previous-search rows (old figures): {len(fresh) - len(new)}.",
            ]
    return "\n".join(lines) + "\n"


def _passes(r: dict) -> str:
    """`passes | aim | held-back choices` from the search's rounds (re-promotion passes
    record their ``aim_db``; the last-resort back-off on the held-back samples, ``promoted``);
    ``-`` for rows of the searches before the passes."""
    rounds = r.get("rounds") or []
    aims = [x["aim_db"] for x in rounds if "aim_db" in x]
    if not aims:
        return "- | - | -"
    held = (
        "yes" if any(x.get("samples") == "held_back" and "promoted" in x for x in rounds) else "no"
    )
    return f"{len(aims)} | {max(aims):.1f} | {held}"


def _less_noise(r: dict) -> str:
    if r.get("activation_ranges") is None:
        return "-"
    eq = ", eq" if r.get("equalized") else ""
    return f"{r['activation_ranges']}{eq}: {_db(r.get('improved_all_int8_held_back_sqnr_db'))}"


def _db(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _secs(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _share(v) -> str:
    return "-" if v is None else f"{v:.0%}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--target", type=float, default=40.0)
    parser.add_argument("--calibration-samples", type=int, default=16)
    parser.add_argument("--eval-samples", type=int, default=16)
    parser.add_argument("--baseline", type=Path, default=None, help="earlier results JSON")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="results JSON (the table beside it, .md)"
    )
    parser.add_argument(
        "--merge", type=Path, nargs="*", default=(), help="results JSONs to fold in, then exit"
    )
    parser.add_argument(
        "--commit", default=None, help="the commit the figures run on, per row (default: HEAD)"
    )
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "o2t_light")
    args = parser.parse_args(argv)
    if args.commit is None:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=False)  # fmt: skip
        args.commit = head.stdout.strip() if head.returncode == 0 else None
    out, table = args.results, args.results.with_suffix(".md")
    results = json.loads(out.read_text()).get("models", {}) if out.exists() else {}
    if args.merge:  # runs split over processes, folded into one file
        for path in args.merge:
            results.update(json.loads(path.read_text())["models"])
        out.write_text(json.dumps({"models": results}, indent=2) + "\n")
        table.write_text(markdown(results, args))
        print(table.read_text())
        return 0
    loaders = model_loaders(args.cache_dir)
    baseline = json.loads(args.baseline.read_text())["models"] if args.baseline else {}
    for name in args.models or list(loaders):
        print(name, flush=True)
        results[name] = {**bench_model(loaders[name](), args), "ran_on": args.commit}
        old = baseline.get(name, {})
        if old.get("int8_mac_share") is not None:
            results[name]["int8_mac_share_before"] = old["int8_mac_share"]
        for key in ("convert_seconds", "eval_sqnr_db", "held_back_sqnr_db"):
            if old.get(key) is not None:
                results[name][f"{key}_before"] = old[key]
        print(f"  {json.dumps({k: v for k, v in results[name].items() if k != 'promoted'})}")
        out.write_text(json.dumps({"models": results}, indent=2) + "\n")
        table.write_text(markdown(results, args))
    print(table.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
