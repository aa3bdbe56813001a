"""What float16 weights can reach: our fp16 variant next to the float model with its weights
rounded to float16 (the ceiling of any file that stores the ONNX weights as float16).

Usage: ``PYTHONPATH=. python benchmarks/bench_fp16_bound.py [--models resnet50 light_resnet50]``

Per model (the set of bench_quant.py, its evaluation samples): SQNR (dB) against the float
ONNX model in onnxruntime of

* ``fp16_variant``: our ``<stem>_float16.tflite`` in LiteRT;
* ``fp16_weights_bound``: the ONNX model with every float32 initializer of at least
  ``fp16.MIN_ELEMENTS`` elements rounded to float16 and back, run in onnxruntime in float32.

If the two agree, the variant loses nothing beyond storing the weights in float16, and an
``fp16 >= 60 dB`` target below the bound cannot be met by a float16-weight file. Results:
``benchmarks/results/fp16_bound.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
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

from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct.quant.fp16 import MIN_ELEMENTS  # noqa: E402

TARGET_DB = 60.0


def fp16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for tensor in out.graph.initializer:
        w = onnx.numpy_helper.to_array(tensor)
        if w.dtype == np.float32 and w.size >= MIN_ELEMENTS:
            rounded = w.astype(np.float16).astype(np.float32)
            tensor.CopyFrom(onnx.numpy_helper.from_array(rounded, tensor.name))
    return out


def bench(model: onnx.ModelProto, eval_samples: int) -> dict:
    res = convert(model, quantize=["fp16"])
    front = res.model
    feeds = list(feed_batches(front, make_samples(model, eval_samples, seed=1)))
    reference = [run_ort(ort_session(front), f) for f in feeds]
    ours = [run_variant(res.variants["float16"], f, res.report["io"]) for f in feeds]
    bound_sess = ort_session(fp16_weights(front))
    bound = [run_ort(bound_sess, f) for f in feeds]
    row = {
        "fp16_variant_db": round(worst(sqnr_db(reference, ours)), 2),
        "fp16_weights_bound_db": round(worst(sqnr_db(reference, bound)), 2),
    }
    row["variant_minus_bound_db"] = round(row["fp16_variant_db"] - row["fp16_weights_bound_db"], 2)
    row["bound_below_target"] = row["fp16_weights_bound_db"] < TARGET_DB
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--eval-samples", type=int, default=8)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "o2t_light")
    args = parser.parse_args()
    loaders = model_loaders(args.cache_dir)
    rows = {}
    for name in args.models or list(loaders):
        rows[name] = bench(loaders[name](), args.eval_samples)
        print(name, json.dumps(rows[name]), flush=True)
    out = ROOT / "benchmarks" / "results" / "fp16_bound.json"
    out.write_text(json.dumps({"target_db": TARGET_DB, "models": rows}, indent=1) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
