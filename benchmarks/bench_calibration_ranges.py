"""Full-integer accuracy before/after a change to how the int8 files quantize (issue 21 item 1).

Why this script: ``bench_full_integer.py`` showed two of the 16 quantization benchmark models
below "SQNR >= onnxruntime's QDQ quantize_static - 1 dB" (light_densenet121 14.1 vs 15.4,
light_shufflenet 14.4 vs 15.5 at 8 evaluation samples). The per-tensor comparison with
onnxruntime's QDQ model (same calibration) found:

* densenet: our tensors are 0.5-2 dB cleaner than onnxruntime's all the way down, yet the
  global pool loses it: our error carries a larger *per-channel mean* (systematic) part, which
  averaging does not remove. It enters at the three 2x2 AVERAGE_POOL_2D transitions: the int8
  kernel rounds halfway sums (1/4 of them) half away from zero on raw int8 values, a bias of
  up to 1/8 step per channel (measured: layer-local channel-bias rms 0.0044 vs onnxruntime's
  float pool 0.0002 at equal total error). Ranges are not the lever (mse 14.0, percentile 12.6,
  minmax 14.1 dB).
* shufflenet: its 8-sample figure is evaluation noise (a 1000-way softmax head, a few samples
  dominate): at 32 samples ours 15.7 vs onnxruntime 15.1.

The fix (``quant/integer_widths.ties_in_average_pool``): an average pool with an even window
count runs at int16 inside the int8 files. ``before`` switches it off in the same process, so
both columns share calibration, evaluation samples and library versions.

    PYTHONPATH=. python benchmarks/bench_calibration_ranges.py [--models light_densenet121]

Writes ``benchmarks/results/calibration_ranges.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from benchmarks import bench_quant as BQ  # noqa: E402
from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct.quant import integer_widths  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "calibration_ranges.json"
TABLE = ROOT / "benchmarks" / "results" / "calibration_ranges.md"
EVAL_SIZES = (8, 32)


def _full_integer(model, calib, tie_free_pools: bool) -> tuple[bytes, list, object]:
    """The full-integer file, the I/O table and the front model, with or without the
    even-count pool rule (the default strict file: a float op would raise, not hide)."""
    saved = integer_widths.ties_in_average_pool
    if not tie_free_pools:
        integer_widths.ties_in_average_pool = lambda op: False
    try:
        res = convert(model, quantize=["int8"], calibration_data=calib)
    finally:
        integer_widths.ties_in_average_pool = saved
    return res.variants["full_integer_quant"], res.report["io"], res.model


def bench_model(model, args) -> dict:
    calib = BQ.make_samples(model, args.calibration_samples, seed=0)
    row: dict = {"sqnr_db": {}}
    started = time.perf_counter()
    files = {}
    for label, on in (("before", False), ("after", True)):
        data, io, front = _full_integer(model, calib, on)
        files[label] = (data, io)
    row["convert_seconds"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        ort_path, _ = BQ.ort_reference(front, calib, "minmax", Path(tmp))
        ort_sess = BQ.ort_session(ort_path)
        float_sess = BQ.ort_session(front)
        for n in EVAL_SIZES:
            feeds = list(BQ.feed_batches(front, BQ.make_samples(model, n, seed=1)))
            reference = [BQ.run_ort(float_sess, f) for f in feeds]
            for label, (data, io) in files.items():
                outs = [BQ.run_variant(data, f, io) for f in feeds]
                row["sqnr_db"][f"{label}@{n}"] = BQ.worst(BQ.sqnr_db(reference, outs))
            outs = [BQ.run_ort(ort_sess, f) for f in feeds]
            row["sqnr_db"][f"ort_qdq@{n}"] = BQ.worst(BQ.sqnr_db(reference, outs))
    row["same_file"] = files["before"][0] == files["after"][0]
    return row


def _cell(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def format_table(results: dict) -> str:
    head = "| model | pool rule changes the file | " + " | ".join(
        f"before @{n} | after @{n} | delta @{n} | ORT QDQ @{n} | after - ORT @{n}"
        for n in EVAL_SIZES
    )
    lines = [head + " |", "|" + "---|" * (2 + 5 * len(EVAL_SIZES))]
    for name, r in results.items():
        s = r["sqnr_db"]
        cells = []
        for n in EVAL_SIZES:
            b, a, o = s.get(f"before@{n}"), s.get(f"after@{n}"), s.get(f"ort_qdq@{n}")
            cells += [_cell(b), _cell(a), _cell(a - b), _cell(o), _cell(a - o)]
        lines.append(
            f"| {name} | {'no' if r['same_file'] else 'yes'} | " + " | ".join(cells) + " |"
        )
    others = [
        r["sqnr_db"]["after@8"] - r["sqnr_db"]["before@8"]
        for name, r in results.items()
        if name not in ("light_densenet121", "light_shufflenet")
    ]
    if others:
        lines.append(
            f"\nOther {len(others)} models, after - before @8: min {min(others):+.2f} dB, "
            f"max {max(others):+.2f} dB."
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="default: the 16 of bench_quant")
    parser.add_argument("--calibration-samples", type=int, default=16)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "o2t_light")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--render", action="store_true", help="only rewrite --table from --out")
    args = parser.parse_args(argv)
    if args.render:
        payload = json.loads(args.out.read_text())
        args.calibration_samples = payload["meta"]["calibration_samples"]
        write_table(args, format_table(payload["models"]))
        return 0
    loaders = BQ.model_loaders(args.cache_dir)
    names = args.models or list(loaders)
    unknown = sorted(set(names) - set(loaders))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {sorted(loaders)}")
    results = {}
    for name in names:
        started = time.perf_counter()
        results[name] = bench_model(loaders[name](), args)
        print(
            f"{name}: {time.perf_counter() - started:.0f}s {results[name]['sqnr_db']}",
            file=sys.stderr,
            flush=True,
        )
    table = format_table(results)
    print(table)
    meta = {
        "calibration_samples": args.calibration_samples,
        "eval_samples": list(EVAL_SIZES),
        "before": "int8 AVERAGE_POOL_2D whatever its window count (the code before this change)",
        "after": "an AVERAGE_POOL_2D with an even window count at int16 inside the int8 files",
        "sqnr": "full-integer file vs float ONNX (ORT), worst output, over all eval samples",
        "reference": "onnxruntime.quantization.quantize_static QDQ per_channel int8 MinMax",
    }
    payload = {"meta": meta, "models": results}
    args.out.write_text(json.dumps(BQ._jsonable(payload), indent=2) + "\n")
    write_table(args, table)
    print(f"wrote {args.out} and {args.table}")
    return 0


def write_table(args, table: str) -> None:
    args.table.write_text(
        "# Full-integer accuracy before/after the even-count average-pool rule (issue 21)\n\n"
        f"{args.calibration_samples} calibration samples (seed 0), 8 and 32 evaluation samples "
        "(seed 1) of bench_quant's generators; SQNR in dB of the `*_full_integer_quant` file "
        "against the float model (worst output); `ORT QDQ` is onnxruntime's quantize_static "
        "(per-channel int8, MinMax, same calibration). `before` = every AVERAGE_POOL_2D int8; "
        "`after` = one with an even window count at int16 (quant/integer_widths.py). "
        "Measured by `PYTHONPATH=. python benchmarks/bench_calibration_ranges.py`.\n\n"
        f"{table}\n\n"
        "Findings (per-tensor comparison with onnxruntime's QDQ model, same calibration):\n\n"
        "- light_densenet121: our tensors are 0.5-2 dB cleaner than onnxruntime's down to the "
        "last block (e.g. the last ReLU 6.0 vs 5.5 dB), but the global pool loses it (14.2 vs "
        "15.3 dB): our error holds a larger per-channel mean, which the pool keeps while it "
        "averages the rest away. It enters at the three 2x2 AVERAGE_POOL_2D transitions: the "
        "int8 kernel rounds the halfway sums (measured: 24.9% of windows) away from zero on raw "
        "int8 values, a per-channel bias (layer-local channel-bias rms 0.0044, onnxruntime's "
        "float pool 0.0002, equal total error). Range choice is not the lever: --calibration-"
        "method mse 14.0 dB, percentile 12.6, minmax 14.1 at 8 samples.\n"
        "- light_shufflenet: not a quantization gap. Its 8-sample figure is set by one sample "
        "(the first: squared error 0.0043 ours vs 0.0005 onnxruntime, a top-2 logit gap off by "
        "0.5); over the 32 samples ours is 0.6 dB above onnxruntime. Its pools are odd-count "
        "(unchanged file).\n"
        "- onnxruntime's choices, for comparison: MinMax ranges, per-channel symmetric int8 "
        "weights, the ReLU folded into the producer's Q range as ours; it keeps DenseNet's "
        "pre-activation BatchNormalization (62 of 121) float between Q/DQ, ShuffleNet's "
        "Sum -> Relu -> AveragePool tail float (13 Relu unquantized), and fixes the Softmax "
        "output to [0, 1] (ours: the int16 softmax then the calibrated [0, max p]).\n"
        "- Cost: two QUANTIZE ops per widened pool (bench_full_integer.py: densenet 266 -> 272 "
        "ops, inception_v2 102 -> 116, both still 100% integer ops).\n"
    )


if __name__ == "__main__":
    sys.exit(main())
