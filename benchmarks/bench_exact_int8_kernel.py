"""Kernel-level cost of onnxruntime's dynamically quantized product in LiteRT, per shape.

One ``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul`` chain (onnxruntime's
quantize_dynamic form of a MatMul) at the shapes of the corpus' outliers: MiniLM's projections
(32 tokens x 384 -> 384 / 1536, 1536 -> 384), ddddocr_common_old's 1024 x 8210 classifier
(uint8 weights with a zero point: two int8 parts) and its LSTM's recurrent product (1 x 512 ->
2048). Timed, as CPU time of the calling thread at 1 thread (both runtimes compute there;
robust to other processes on a shared machine), median of ``--runs`` after warm-up, in rotation:

* ``ort``: onnxruntime running the chain (its int8 GEMM, VNNI where the CPU has it);
* ``litert_float``: the float-carried form with a float32 FULLY_CONNECTED of the shifted
  integers (``float_carried.MATMUL_ON_INT8_KERNEL = False``; exact while partial sums stay
  below 2**24);
* ``litert_int8``: the shipped form, LiteRT's dynamically quantized FULLY_CONNECTED made exact
  (``lowering/contrib_quant.exact_dense``: int8 weights of scale 1, two lattice-end columns).

Each LiteRT file is checked against onnxruntime: ``litert_int8`` must be bit-identical.

    PYTHONPATH=. python benchmarks/bench_exact_int8_kernel.py [--runs 50]

Writes ``benchmarks/results/exact_int8_kernel.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnx2tflite_direct import convert, float_carried  # noqa: E402
from onnx2tflite_direct.validate import run_litert, run_onnxruntime  # noqa: E402
from tools.zoo import run as zoo  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "exact_int8_kernel.json"
# name: (rows, K, N, weight dtype)
SHAPES = {
    "minilm_qkv_384x384": (32, 384, 384, np.int8),
    "minilm_ffn_up_384x1536": (32, 384, 1536, np.int8),
    "minilm_ffn_down_1536x384": (32, 1536, 384, np.int8),
    "ddddocr_classifier_1024x8210_u8": (20, 1024, 8210, np.uint8),
    "ddddocr_lstm_recurrent_512x2048": (1, 512, 2048, np.int8),
}


def chain(rows: int, k: int, n: int, wtype, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    if wtype == np.uint8:
        w, w_zp = rng.integers(0, 256, (k, n)).astype(np.uint8), np.asarray(119, np.uint8)
    else:
        w, w_zp = rng.integers(-127, 128, (k, n)).astype(np.int8), np.asarray(0, np.int8)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "zp"]),
        helper.make_node("MatMulInteger", ["q", "w", "zp", "w_zp"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["acc_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["s", "w_scale"], ["sw"]),
        helper.make_node("Mul", ["acc_f", "sw"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(w_zp, "w_zp"),
        numpy_helper.from_array(np.asarray(0.01, np.float32), "w_scale"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def measure(name: str, runs: int) -> dict:
    rows, k, n, wtype = SHAPES[name]
    model = chain(rows, k, n, wtype)
    path = ROOT / "benchmarks" / "results" / f".{name}.onnx"
    onnx.save(model, str(path))
    try:
        feeds = {"x": np.random.default_rng(1).standard_normal((rows, k)).astype(np.float32)}
        expected = run_onnxruntime(path, feeds)["y"]
        runners, row = {"ort": zoo._ort_runner(path, feeds)}, {"shape": [rows, k, n]}
        for label, on in (("litert_float", False), ("litert_int8", True)):
            saved = float_carried.MATMUL_ON_INT8_KERNEL
            float_carried.MATMUL_ON_INT8_KERNEL = on
            try:
                res = convert(str(path), keep_io_layout=True)
            finally:
                float_carried.MATMUL_ON_INT8_KERNEL = saved
            blob, io = bytes(res.tflite_bytes), res.report.get("io_table")
            got = run_litert(blob, feeds, res.report.get("io"))["y"]
            row[f"{label}_bit_identical"] = bool(np.array_equal(got, expected))
            row[f"{label}_max_rel"] = float(
                np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-30))
            )
            runners[label] = zoo._litert_runner(blob, feeds, io)
    finally:
        path.unlink(missing_ok=True)
    for fn in runners.values():
        for _ in range(3):
            fn()
    times = {label: [] for label in runners}
    for _ in range(runs):
        for label, fn in runners.items():
            t0 = time.thread_time()
            fn()
            times[label].append(time.thread_time() - t0)
    ms = {label: statistics.median(t) * 1e3 for label, t in times.items()}
    row.update({f"{label}_cpu_ms": round(v, 4) for label, v in ms.items()})
    row["float_over_ort"] = round(ms["litert_float"] / ms["ort"], 3)
    row["int8_over_ort"] = round(ms["litert_int8"] / ms["ort"], 3)
    row["float_over_int8"] = round(ms["litert_float"] / ms["litert_int8"], 3)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    import ai_edge_litert
    import onnxruntime

    rows = {}
    for name in SHAPES:
        rows[name] = row = measure(name, args.runs)
        print(
            f"{name:34s} ort {row['ort_cpu_ms']:.3f} ms  LiteRT float32 FC "
            f"{row['litert_float_cpu_ms']:.3f} ({row['float_over_ort']:.2f}x)  int8 exact "
            f"{row['litert_int8_cpu_ms']:.3f} ({row['int8_over_ort']:.2f}x)  bit-identical "
            f"{row['litert_int8_bit_identical']}",
            flush=True,
        )
    out = {
        "description": __doc__.splitlines()[0],
        "timing": "thread CPU time, median, 1 thread, runners in rotation",
        "machine": platform.machine(),
        "onnxruntime": onnxruntime.__version__,
        "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "shapes": rows,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
