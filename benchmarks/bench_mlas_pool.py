"""What onnxruntime's pooling order costs in the float32 file of a quantize_dynamic model.

``onnx2tflite_direct/mlas_pool.py`` writes GlobalAveragePool / AveragePool of a dynamically
quantized graph as the sum onnxruntime's MLAS kernels compute (CUMSUM over groups of four
lanes, SLICE, ADD, DIV; PAD and strided SLICE/ADD for windows) instead of LiteRT's MEAN /
AVERAGE_POOL_2D: exact against onnxruntime, at the price of more ops and, for the CUMSUM
XNNPACK does not take, more delegate partitions. For each model both forms are converted on
the same converter (``mlas_pool.ENABLED`` on / off), their partitions counted and their
latencies timed alternately at one thread (``tools.zoo.run._paired_latency``: median of
>= 20 pairs after warm-up), with each form's SQNR against onnxruntime (the model's own
quantized outputs).

Models: the corpus's quantize_dynamic models with pools (``*_qdyn`` CNNs) and the
benchmark models of ``bench_prequantized.py`` quantized with quantize_dynamic there.

    PYTHONPATH=. python benchmarks/bench_mlas_pool.py [--only NAME ...] [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tools"))

RESULTS = ROOT / "benchmarks" / "results" / "mlas_pool.json"
CORPUS = ("tv_resnet18_ts_qdyn", "tv_mobilenet_v3_small_ts_qdyn")
BENCH = ("resnet50", "mobilenetv2", "efficientnet_lite", "light_densenet121", "light_inception_v2")


def _corpus_case(name: str):
    from tools.zoo import manifest, run

    entry = manifest.by_name(name)
    path = run.model_path(name)
    feeds = run.load_feeds(entry, onnx.load(str(path)))
    return path, feeds


def _bench_case(name: str, work: Path):
    import bench_prequantized as B

    loaders = B.model_loaders(Path(tempfile.gettempdir()) / "o2t_light_cache")
    model = B.at_least_opset13(loaders[name]())
    src, dst = work / f"{name}.onnx", work / f"{name}_dynamic.onnx"
    onnx.save(model, str(src))
    B.quantize(src, dst, None, B.make_samples(model, B.CALIBRATION_SAMPLES, seed=0))
    return dst, B.make_samples(model, 1, seed=1)[0]


def _sqnr(expected: dict, actual: dict) -> float:
    worst = float("inf")
    for k, want in expected.items():
        got = np.asarray(actual[k], np.float64).reshape(want.shape)
        noise = float(np.sum((want.astype(np.float64) - got) ** 2))
        if noise:
            worst = min(worst, 10 * np.log10(float(np.sum(want.astype(np.float64) ** 2)) / noise))
    return worst


def measure(path: Path, feeds: dict, runs: int) -> dict:
    from bench_partitions import count_partitions

    from onnx2tflite_direct import convert, mlas_pool
    from onnx2tflite_direct.validate import run_litert, run_onnxruntime
    from tools.zoo import run

    expected = run_onnxruntime(path, feeds)
    files = {}
    row: dict = {}
    for form, enabled in (("onnxruntime_order", True), ("litert_pool", False)):
        mlas_pool.ENABLED = enabled
        try:
            pins = {k: tuple(np.shape(v)) for k, v in feeds.items()}
            res = convert(str(path), keep_io_layout=True, input_shapes=pins)
        finally:
            mlas_pool.ENABLED = True
        data, io = bytes(res.tflite_bytes), res.report.get("io")
        parts = count_partitions(data)
        files[form] = (data, io)
        row[form] = {
            "sqnr_vs_onnxruntime_db": round(_sqnr(expected, run_litert(data, feeds, io)), 2),
            "partitions": parts["partitions"],
            "ops": parts["tflite_ops"],
            "outside": parts["outside"],
        }
    (a, a_io), (b, b_io) = files["onnxruntime_order"], files["litert_pool"]
    ms_a, ms_b, n = run._paired_latency(
        run._litert_runner(a, feeds, a_io), run._litert_runner(b, feeds, b_io), runs
    )
    row["onnxruntime_order"]["ms"] = round(ms_a, 3)
    row["litert_pool"]["ms"] = round(ms_b, 3)
    row["latency_ratio_order_vs_pool"] = round(ms_a / ms_b, 3)
    row["latency_pairs"] = n
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    names = args.only or [*CORPUS, *BENCH]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path, feeds = _corpus_case(name) if name in CORPUS else _bench_case(name, Path(tmp))
            rows[name] = measure(path, feeds, args.runs)
            print(name, json.dumps(rows[name]), flush=True)
    meta = {"machine": platform.machine(), "processor": platform.processor() or ""}
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
