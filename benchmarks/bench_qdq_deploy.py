"""Can the integer file be the deployable file of an already-quantized (QDQ) model?

For the corpus's ``quantize_static`` models (tools/zoo: ResNet-18, MiniLM-L6, BERT, ViT,
LRASPP-MobileNetV3): convert as the corpus does (``keep_io_layout=True``, the corpus feeds and
input pins), then against the model's Q/DQ semantics evaluated in float64
(``tools/zoo/exact_reference.py``: dequantize, compute, quantize the real quotient):

- SQNR (dB, worst output) and max error in quanta of the integer file
  (``<stem>_integer_quant.tflite``, LiteRT's int8 kernels), of the float32 file (exact Q/DQ
  lattices in float ops) and of onnxruntime's default session (its fused integer kernels) and
  its ORT_ENABLE_BASIC session (the Q/DQ graph in float32);
- latency at 1 thread, median of paired alternating runs after warm-up (LiteRT with XNNPACK,
  onnxruntime default session): integer file / onnxruntime and float32 file / onnxruntime;
- the integer file's op histogram and how many ops run float.

``deployable`` says whether the integer file meets both: SQNR >= onnxruntime's fused kernels
- 1 dB against the semantics (issue 21's bar) and latency <= 1.25x onnxruntime (issue 22's).

    PYTHONPATH=. python benchmarks/bench_qdq_deploy.py [--models tv_resnet18_ts_qstatic] [--runs 20]

Writes ``benchmarks/results/qdq_deploy.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.zoo import manifest  # noqa: E402
from tools.zoo.exact_reference import output_steps, run_float64  # noqa: E402
from tools.zoo.run import _litert_runner, _ort_runner, _paired_latency, load_feeds, model_path  # noqa: E402

MODELS = (
    "tv_resnet18_ts_qstatic",
    "minilm_l6_ts_qstatic",
    "hf_bert_ts_qstatic",
    "hf_vit_ts_qstatic",
    "tv_lraspp_mobilenet_v3_large_ts_qstatic",
)
MARGIN_DB = 1.0
LATENCY_BAR = 1.25
RESULTS = ROOT / "benchmarks" / "results"


def _floats(outputs: dict) -> dict:
    return {k: np.asarray(v) for k, v in outputs.items() if np.asarray(v).dtype.kind == "f"}


def agreement(reference: dict, actual: dict, steps: dict[str, float]) -> dict:
    """Worst output's SQNR (dB) and the largest error in quanta (outputs made by a per-tensor
    DequantizeLinear) or absolute."""
    worst_db, worst_q, worst_abs = math.inf, 0.0, 0.0
    for name, ref in _floats(reference).items():
        ref = ref.astype(np.float64)
        act = np.asarray(actual[name], np.float64).reshape(ref.shape)
        noise = float(np.sum((ref - act) ** 2))
        db = math.inf if noise == 0 else 10 * math.log10(max(float(np.sum(ref**2)), 1e-300) / noise)
        worst_db = min(worst_db, db)
        err = float(np.max(np.abs(ref - act), initial=0.0))
        worst_abs = max(worst_abs, err)
        if name in steps:
            worst_q = max(worst_q, err / steps[name])
    return {
        "sqnr_db": None if math.isinf(worst_db) else round(worst_db, 2),
        "exact": math.isinf(worst_db),
        "max_quanta": round(worst_q, 2) if steps else None,
        "max_abs": worst_abs,
    }


def _ort(path: Path, feeds: dict, level: str) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    if level == "basic":
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def _ops(tflite: bytes) -> tuple[dict, int]:
    """(op histogram, ops with a float32 activation input or output) of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_content=tflite,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    details = {d["index"]: d for d in interp.get_tensor_details()}
    hist, floats = Counter(), 0
    for op in interp._get_ops_details():  # noqa: SLF001 - the only per-op listing LiteRT offers
        hist[op["op_name"]] += 1
        tensors = [*op["inputs"], *op["outputs"]]
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE") and any(
            i >= 0 and i in details and details[i]["dtype"] == np.float32 for i in tensors
        ):
            floats += 1
    return dict(hist.most_common()), floats


def bench_one(name: str, runs: int) -> dict:
    from onnx2tflite_direct import convert
    from onnx2tflite_direct.validate import run_litert

    entry = manifest.by_name(name)
    path = model_path(name)
    model = onnx.load(str(path))
    feeds = load_feeds(entry, model)
    pins = None if entry.get("dynamic") else {k: tuple(v.shape) for k, v in feeds.items()}
    row: dict = {"model": name}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = convert(str(path), tmp, keep_io_layout=True, input_shapes=pins, stem="m")
        float32 = bytes(res.tflite_bytes)
        variants = {k: bytes(v) for k, v in (res.variants or {}).items()}
        io_table = res.report.get("io")
        prequantized = res.report.get("prequantized") or {}
    row["convert_s"] = round(time.perf_counter() - started, 2)
    integer = variants.get("integer_quant")
    if integer is None:
        row["status"] = "no_integer_file"
        row["variants"] = sorted(variants)
        return row
    row["integer_counts"] = prequantized.get("counts")
    row["integer_float_nodes"] = [
        {"onnx_node": n["onnx_node"], "ops": n["ops"], "reason": n["reason"]}
        for n in prequantized.get("nodes", [])
        if n.get("status") == "float"
    ][:30]
    row["integer_ops"], row["integer_float_ops"] = _ops(integer)
    steps = output_steps(model)
    started = time.perf_counter()
    exact = run_float64(path, feeds)
    row["float64_s"] = round(time.perf_counter() - started, 2)
    fused, basic = _ort(path, feeds, "all"), _ort(path, feeds, "basic")
    exact = {k: exact[k] for k in fused}
    lite_int = run_litert(integer, feeds, io_table)
    lite_f32 = run_litert(float32, feeds, io_table)
    row["vs_semantics"] = {
        "integer_file": agreement(exact, lite_int, steps),
        "float32_file": agreement(exact, lite_f32, steps),
        "ort_fused": agreement(exact, fused, steps),
        "ort_basic": agreement(exact, basic, steps),
    }
    row["integer_vs_ort_fused"] = agreement(fused, lite_int, steps)
    ort_run = _ort_runner(path, feeds)
    for key, blob in (("integer", integer), ("float32", float32)):
        lite_ms, ort_ms, pairs = _paired_latency(
            _litert_runner(blob, feeds, io_table), ort_run, runs
        )
        row[f"{key}_litert_ms"] = round(lite_ms, 3)
        row[f"{key}_ort_ms"] = round(ort_ms, 3)
        row[f"{key}_ratio"] = round(lite_ms / ort_ms, 3)
        row[f"{key}_pairs"] = pairs
    sem = row["vs_semantics"]

    def db(d):
        return math.inf if d["exact"] else d["sqnr_db"]

    row["integer_within_1db_of_ort"] = db(sem["integer_file"]) >= db(sem["ort_fused"]) - MARGIN_DB
    row["deployable"] = row["integer_within_1db_of_ort"] and row["integer_ratio"] <= LATENCY_BAR
    row["status"] = "ok"
    return row


def _fmt_db(d: dict) -> str:
    text = "exact" if d["exact"] else f"{d['sqnr_db']:.1f}"
    return text + (f" / {d['max_quanta']:g} q" if d.get("max_quanta") is not None else "")


def table(rows: list[dict]) -> str:
    lines = [
        "# Already-quantized (QDQ) corpus models: is the integer file deployable?",
        "",
        "SQNR (dB) / max error in quanta against the Q/DQ semantics in float64 "
        "(`tools/zoo/exact_reference.py`); latency at 1 thread, LiteRT (XNNPACK) / onnxruntime "
        "default session, median of paired runs. Written by `benchmarks/bench_qdq_deploy.py`.",
        "",
        "| model | integer file | float32 file | onnxruntime fused | onnxruntime basic "
        "| integer / ort latency | float32 / ort latency | integer ms | ort ms "
        "| ops with float32 tensors (rounding steps included) | deployable |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| {r['model']} | {r.get('status')}: {r.get('error', '')[:120]} |")
            continue
        s = r["vs_semantics"]
        lines.append(
            f"| {r['model']} | {_fmt_db(s['integer_file'])} | {_fmt_db(s['float32_file'])} "
            f"| {_fmt_db(s['ort_fused'])} | {_fmt_db(s['ort_basic'])} | {r['integer_ratio']:.2f} "
            f"| {r['float32_ratio']:.2f} | {r['integer_litert_ms']:.2f} | {r['integer_ort_ms']:.2f} "
            f"| {r['integer_float_ops']} of {sum(r['integer_ops'].values())} "
            f"| {'yes' if r['deployable'] else 'no'} |"
        )
    return "\n".join(lines) + "\n" + KERNEL_NOTES


KERNEL_NOTES = """
## Which LiteRT int8 kernels round as onnxruntime's fused kernels

- CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED (XNNPACK): the int32 sum as float32 times
  `fl(fl(s_in * s_w) / s_out)`, rounded to nearest even (`vcvtnq_s32_f32` on ARMv8,
  `cvtps_epi32` / magic-bias elsewhere), the zero point added with saturation: onnxruntime's
  QLinearConv / QGemm requantization. XNNPACK routes per-tensor int8 convolutions through the
  same per-channel (qc8w, fp32) microkernels on every architecture since its qs8 GEMM config
  (rndnu on ARM NEON) was removed in December 2023; only its uint8 (qu8) kernels still use
  rndnu on ARM, and the integer file is int8. Measured here (x86-64, AVX512-VNNI): the resnet18
  and BERT integer files are bit-identical with onnxruntime's fused session at their outputs
  (`integer_vs_ort_fused`), LRASPP's through every backbone tensor (it differs from the
  classifier's Resize on, which onnxruntime runs on uint8 with its own rounding).
- Not as exact, so the integer file computes them in float between the lattices
  (`quant/qdq_import.py`, `quant/qdq_exact.py`): ADD/SUB (fixed-point rescale), BATCH_MATMUL of
  two activations (builtin kernel: 31-bit multiplier then a rounding shift, double rounding;
  its products stay integer, the requantization is done in float32), HARD_SWISH and
  RESIZE_BILINEAR (fixed-point interpolation), AVERAGE_POOL_2D rounded twice, LOGISTIC /
  SOFTMAX on their fixed output lattices.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", default=str(RESULTS / "qdq_deploy.json"))
    args = parser.parse_args(argv)
    rows = []
    for name in args.models:
        try:
            row = bench_one(name, args.runs)
        except Exception as exc:  # noqa: BLE001 - recorded, the other models still run
            row = {"model": name, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("integer_ops",)}), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "deployable": sum(bool(r.get("deployable")) for r in rows),
        "integer_within_1db_of_ort": sum(bool(r.get("integer_within_1db_of_ort")) for r in rows),
        "models": len(rows),
    }
    out.write_text(json.dumps({"summary": summary, "results": rows}, indent=1) + "\n")
    out.with_suffix(".md").write_text(table(rows))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
