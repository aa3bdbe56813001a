"""QDQ (quantize_static) corpus models: exactness and latency of each Q/DQ-lattice form (issue 17).

For each quantize_static model of the real-model corpus (cache of tools/zoo): convert it as
tools/zoo/run.py does (``keep_io_layout=True``, inputs pinned to the feeds) once per
configuration of the lowering/conv_lattice.py switches, run each file in LiteRT (XNNPACK, and
the reference kernels for the exactness columns) and compare with onnxruntime at
ORT_ENABLE_BASIC (the model's Q/DQ written out: float Conv/MatMul between Q/DQ pairs, the
corpus reference) and at ORT_ENABLE_ALL (onnxruntime's default: QLinearConv / QLinearMatMul /
QGemm integer kernels, plus its QLinearAdd/Mul/Softmax/... approximations). Then every file and
onnxruntime's default session are timed in rotation at 1 thread (median of >= ``--runs``
rounds after 3 warm-up rounds), so all see the same load on a shared machine. Both runtimes
compute on the calling thread at 1 thread, so its CPU time (``time.thread_time``) is recorded
next to the wall time: on a loaded machine (other processes preempting this one) the CPU-time
ratio is the stable figure, and the one printed. The float model the QDQ file was quantized
from (the corpus name without ``_qstatic``) is timed in the same rotation, in onnxruntime and
as our float32 file: onnxruntime's QDQ speed-up over its own float model is what its integer
(VNNI) kernels bring, which a float32 file cannot.

Configurations (cumulative):
- ``float_over_bound``: 67bfb4f's state: a lattice Conv whose sum bound reaches 2**24 keeps the
  float form; MatMul/Gemm float (BATCH_MATMUL on DEQUANTIZE'd weights).
- ``digits``: such a Conv splits its int8 weights into two digits (two convs, all channels).
- ``shift_subset``: + the x - middle shift and the high digit over only the channels needing it.
- ``dense``: + MatMul/Gemm on the integers (FULLY_CONNECTED for constant weights,
  BATCH_MATMUL of two activations).
- ``moves``: + a Q/DQ pair after Reshape/Transpose/MaxPool... of a value already on its lattice
  costs nothing (lowering/lattice_moves.py).
- ``constants``: + a QuantizeLinear of a constant computed at conversion time
  (lowering/quantize.py): what the converter ships.
Changes without a switch are in every configuration: a MaxPool of a lattice starting at 0
pads with zeros (PAD, not PADV2: resnet18's stem), lattice Conv sums not mapped as the conv's
value by diagnostics, constants rank-expanded at conversion time.

    PYTHONPATH=. python benchmarks/bench_qdq_lattice.py [--models NAME ...] [--runs 20]

Writes ``benchmarks/results/qdq_lattice.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct.lowering import conv_lattice, lattice_moves, quantize  # noqa: E402
from onnx2tflite_direct.validate import run_litert  # noqa: E402
from tools.zoo import manifest  # noqa: E402
from tools.zoo import run as zoo  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "qdq_lattice.json"
MODELS = (
    "tv_resnet18_ts_qstatic",
    "tv_lraspp_mobilenet_v3_large_ts_qstatic",
    "tv_mobilenet_v3_small_ts_qstatic",
    "minilm_l6_ts_qstatic",
    "hf_bert_ts_qstatic",
    "hf_vit_ts_qstatic",
)
# (module, attribute) of each switch
SWITCHES = {
    "WEIGHT_DIGITS": conv_lattice,
    "SHIFTED_INPUT": conv_lattice,
    "HIGH_DIGIT_SUBSET": conv_lattice,
    "INTEGER_DENSE": conv_lattice,
    "INTEGER_PRODUCT": conv_lattice,
    "SKIP_MOVED_PAIRS": lattice_moves,
    "QUANTIZE_CONSTANTS": quantize,
}
CONFIGS = {
    "float_over_bound": (),
    "digits": ("WEIGHT_DIGITS",),
    "shift_subset": ("WEIGHT_DIGITS", "SHIFTED_INPUT", "HIGH_DIGIT_SUBSET"),
    "dense": (
        "WEIGHT_DIGITS",
        "SHIFTED_INPUT",
        "HIGH_DIGIT_SUBSET",
        "INTEGER_DENSE",
        "INTEGER_PRODUCT",
    ),
    "moves": tuple(s for s in SWITCHES if s != "QUANTIZE_CONSTANTS"),
    "constants": tuple(SWITCHES),
}


@contextlib.contextmanager
def switches(on):
    saved = {s: getattr(m, s) for s, m in SWITCHES.items()}
    for s, m in SWITCHES.items():
        setattr(m, s, s in on)
    try:
        yield
    finally:
        for s, v in saved.items():
            setattr(SWITCHES[s], s, v)


def rotate(fns, runs: int, budget_s: float = 60.0):
    """Median wall and thread-CPU milliseconds of each of ``fns``, called in rotation."""
    for _ in range(3):
        for f in fns:
            f()
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    start = time.perf_counter()
    while len(wall[0]) < runs or (time.perf_counter() - start < 1.0 and len(wall[0]) < 200):
        for f, w, c in zip(fns, wall, cpu, strict=True):
            t0, c0 = time.perf_counter(), time.thread_time()
            f()
            c.append(time.thread_time() - c0)
            w.append(time.perf_counter() - t0)
        if len(wall[0]) >= runs and time.perf_counter() - start > budget_s:
            break
    med = [statistics.median(t) * 1e3 for t in wall]
    return med, [statistics.median(t) * 1e3 for t in cpu], len(wall[0])


def sqnr_db(ref, x) -> float:
    ref, x = np.asarray(ref, np.float64), np.asarray(x, np.float64)
    noise = float(np.sum((ref - x) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref**2)) / noise)


def _ort(path, feeds, level) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def _worst(refs: dict, got: dict) -> float:
    return min(sqnr_db(refs[k], got[k]) for k in refs)


def _json_db(v: float):
    return "inf" if v == float("inf") else round(v, 1)


def bench(name: str, runs: int, configs) -> dict:
    import onnxruntime as ort

    entry = manifest.by_name(name)
    path = zoo.model_path(name)
    feeds = zoo.load_feeds(entry, onnx.load(str(path)))
    pins = {k: tuple(v.shape) for k, v in feeds.items()}
    basic = _ort(path, feeds, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    full = _ort(path, feeds, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    row: dict = {"model": name, "ort_basic_vs_all_db": _json_db(_worst(basic, full))}
    runners = []
    for config in configs:
        with switches(CONFIGS[config]):
            res = convert(str(path), keep_io_layout=True, input_shapes=pins, stem="m")
        blob, io = bytes(res.tflite_bytes), res.report.get("io")
        xnn = run_litert(blob, feeds, io)
        ref = run_litert(blob, feeds, io, use_xnnpack=False)
        ops = {k: v["count"] for k, v in res.report["tflite_ops"].items()}
        row[config] = {
            "xnnpack_vs_basic_db": _json_db(_worst(basic, xnn)),
            "xnnpack_vs_all_db": _json_db(_worst(full, xnn)),
            "reference_kernels_vs_basic_db": _json_db(_worst(basic, ref)),
            "reference_kernels_vs_all_db": _json_db(_worst(full, ref)),
            "xnnpack_vs_reference_kernels_db": _json_db(_worst(ref, xnn)),
            "ops": sum(ops.values()),
            "conv_fc_bmm": {
                k: ops[k] for k in ("CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL") if k in ops
            },
        }
        runners.append(zoo._litert_runner(blob, feeds, io))
    float_name = name.removesuffix("_qstatic")
    float_path = zoo.model_path(float_name)
    timed_float = float_path.exists()
    if timed_float:
        res = convert(str(float_path), keep_io_layout=True, input_shapes=pins, stem="m")
        runners.append(zoo._litert_runner(bytes(res.tflite_bytes), feeds, res.report.get("io")))
        runners.append(zoo._ort_runner(float_path, feeds))
    runners.append(zoo._ort_runner(path, feeds))
    wall, cpu, n = rotate(runners, runs)
    row.update(ort_ms=round(wall[-1], 3), ort_cpu_ms=round(cpu[-1], 3), rounds=n)
    if timed_float:
        row["float_model"] = {
            "name": float_name,
            "litert_cpu_ms": round(cpu[-3], 3),
            "ort_cpu_ms": round(cpu[-2], 3),
            "ort_float_over_ort_qdq": round(cpu[-2] / cpu[-1], 3),
        }
    for config, ms, cms in zip(configs, wall, cpu, strict=False):  # the files come first
        row[config].update(
            litert_ms=round(ms, 3),
            ratio_wall=round(ms / wall[-1], 3),
            litert_cpu_ms=round(cms, 3),
            ratio=round(cms / cpu[-1], 3),
        )
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows = []
    for name in args.models:
        row = bench(name, args.runs, args.configs)
        rows.append(row)
        cells = "  ".join(
            f"{c} {row[c]['ratio']:.2f}x {row[c]['xnnpack_vs_basic_db']}/"
            f"{row[c]['xnnpack_vs_all_db']} dB"
            for c in args.configs
        )
        print(
            f"{name:42s} ort {row['ort_cpu_ms']:.2f} ms cpu (basic/all "
            f"{row['ort_basic_vs_all_db']} dB)  {cells}",
            flush=True,
        )
    import ai_edge_litert
    import onnxruntime

    out = {
        "description": "quantize_static corpus models: SQNR of the float32 file (XNNPACK and "
        "reference kernels) against onnxruntime ORT_ENABLE_BASIC and ORT_ENABLE_ALL, and "
        "LiteRT/onnxruntime latency at 1 thread, per conv_lattice configuration (issue 17); "
        "files and onnxruntime timed in rotation in one process; ratio = thread CPU time "
        "ratio (ratio_wall: wall time)",
        "configs": {k: list(v) for k, v in CONFIGS.items()},
        "machine": platform.machine(),
        "onnxruntime": onnxruntime.__version__,
        "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
        "rows": rows,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
