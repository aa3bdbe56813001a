"""What float16 weights can reach: our fp16 variant next to the float model with the same
weights rounded to float16 (the ceiling of any file that stores those weights as float16).

Usage: ``PYTHONPATH=. python benchmarks/bench_fp16_bound.py [--models resnet50 light_resnet50]``

Per model (the set and the calibration / evaluation samples of bench_quant.py): SQNR (dB)
against the float ONNX model in onnxruntime of

* ``fp16_variant``: our ``<stem>_float16.tflite`` in LiteRT, converted with the calibration
  samples (its biases absorb the weights' average rounding error);
* ``fp16_weights``: the ONNX model with the weights the variant stores as float16 (two or
  more non-unit dims, ``fp16.MIN_ELEMENTS`` values) rounded to float16, run in float32;
* ``fp16_weights_corrected_bound``: the same with each Conv/Gemm/MatMul's measured average
  rounding error removed (``weight_bounds.bias_corrected``): what float16 weights allow.

If the variant reaches the bound, it loses nothing beyond storing the weights in float16, and
an ``fp16 >= 60 dB`` target above the bound cannot be met by a float16-weight file. Results:
``benchmarks/results/fp16_bound.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_quant import (  # noqa: E402
    feed_batches,
    make_samples,
    model_loaders,
    ort_session,
    run_ort,
    run_variant,
    sqnr_db,
    worst,
)
from weight_bounds import bias_corrected, float16_weights  # noqa: E402

from onnx2tflite_direct import convert  # noqa: E402

TARGET_DB = 60.0


def bench(model: onnx.ModelProto, calibration_samples: int, eval_samples: int) -> dict:
    calib = make_samples(model, calibration_samples, seed=0)
    res = convert(model, quantize=["fp16"], calibration_data=calib)
    front = res.model
    feeds = list(feed_batches(front, make_samples(model, eval_samples, seed=1)))
    reference = [run_ort(ort_session(front), f) for f in feeds]

    def score(outputs) -> float:
        return round(worst(sqnr_db(reference, outputs)), 2)

    def score_onnx(candidate: onnx.ModelProto) -> float:
        sess = ort_session(candidate)
        return score([run_ort(sess, f) for f in feeds])

    rounded = float16_weights(front)
    row = {
        "fp16_variant_db": score(
            [run_variant(res.variants["float16"], f, res.report["io"]) for f in feeds]
        ),
        "fp16_weights_db": score_onnx(rounded),
        "fp16_weights_corrected_bound_db": score_onnx(
            bias_corrected(front, rounded, feed_batches(front, calib))
        ),
    }
    bound = row["fp16_weights_corrected_bound_db"]
    row["variant_minus_bound_db"] = round(row["fp16_variant_db"] - bound, 2)
    row["bound_below_target"] = bound < TARGET_DB
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--calibration-samples", type=int, default=16)
    parser.add_argument("--eval-samples", type=int, default=32)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "o2t_light")
    args = parser.parse_args()
    loaders = model_loaders(args.cache_dir)
    rows = {}
    for name in args.models or list(loaders):
        rows[name] = bench(loaders[name](), args.calibration_samples, args.eval_samples)
        print(name, json.dumps(rows[name]), flush=True)
    out = ROOT / "benchmarks" / "results" / "fp16_bound.json"
    out.write_text(json.dumps({"target_db": TARGET_DB, "models": rows}, indent=1) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
