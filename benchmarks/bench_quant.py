"""Accuracy and cost of the quantized variants against onnxruntime's own static quantization.

For every model of ``benchmarks/models.py`` and the real-weight light models (``light_*``):

1. Seeded calibration samples and *separate* evaluation samples from the same distribution
   (images ~N(0, 1); token ids uniform over the embedding table; additive attention masks that
   drop a random tail of the sequence).
2. ``convert(model, quantize=["fp16", "dynamic", "int8", "int16x8"], calibration_data=...)``;
   every variant is loaded and run in LiteRT (default CPU resolver) on the evaluation samples.
   Full-integer variants get their inputs quantized / outputs dequantized with the I/O
   parameters the interpreter reports.
3. SQNR (dB) of each variant's outputs against the float ONNX model in onnxruntime, over all
   evaluation samples together; a model's figure is its worst output.
4. Reference in the same run: ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel
   int8 weights, int8 activations, the same calibration samples, the matching calibration
   method: MinMax for ``minmax``, Percentile for ``percentile``, Entropy for ``mse``) executed in
   onnxruntime.
5. Cost: calibration alone (``calibration.collect_ranges`` on the same samples) and the extra
   conversion time of int8 (``convert(quantize=["int8"])`` minus ``convert(quantize=[])``).

Targets checked (printed and stored under ``targets``): int8 >= reference - 1 dB on every model
and >= reference on the median (median of the per-model differences); int16x8 >= int8 + 15 dB;
fp16 >= 60 dB; dynamic >= int8; on the ResNet-50-like model the int8 conversion overhead is at
most the calibration time + 2 s.

    PYTHONPATH=. python benchmarks/bench_quant.py [--models resnet50 light_squeezenet]

Writes ``benchmarks/results/quant.json`` and ``benchmarks/results/quant.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from benchmarks.models import BENCHMARK_MODELS  # noqa: E402
from benchmarks.weight_bounds import bias_corrected, int8_weights_only  # noqa: E402
from onnx2tflite_direct import ConversionError, convert  # noqa: E402
from onnx2tflite_direct import validate as V  # noqa: E402
from onnx2tflite_direct.quant import calibration as cal  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "quant.json"
TABLE = ROOT / "benchmarks" / "results" / "quant.md"
QUANTIZE = ["fp16", "dynamic", "int8", "int16x8"]
# Variant file kind -> short column label.
VARIANTS = {
    "float16": "fp16",
    "dynamic_range_quant": "dynamic",
    "integer_quant": "int8",
    "full_integer_quant": "int8 io",
    "integer_quant_with_int16_act": "16x8",
    "full_integer_quant_with_int16_act": "16x8 io",
}
# The float model with int8 weights (benchmarks/weight_bounds.py): rounded to nearest; and with
# the rounded weights' average error removed as the variants' bias correction does.
BOUNDS = ("int8_weights_only_bound", "int8_weights_corrected_bound")
ORT_METHOD = {"minmax": "MinMax", "percentile": "Percentile", "mse": "Entropy"}
TIME_BUDGET_MODEL = "resnet50"
TIME_BUDGET_S = 2.0
MASK_DROP = -10000.0
PER_CHANNEL_OPSET = 13  # DequantizeLinear's axis attribute (per-channel QDQ) needs opset 13


# --------------------------------------------------------------------------------------------
# Models and samples
# --------------------------------------------------------------------------------------------


def model_loaders(cache_dir: Path) -> dict[str, Callable[[], onnx.ModelProto]]:
    """Benchmark models by name, then the real-weight light models as ``light_<name>``."""
    from make_real_weight_light_models import cached_model_path, light_model_paths

    loaders: dict[str, Callable[[], onnx.ModelProto]] = dict(BENCHMARK_MODELS)
    for name in light_model_paths():
        loaders[f"light_{name}"] = lambda n=name: onnx.load(cached_model_path(n, cache_dir))
    return loaders


def _gather_rows(model: onnx.ModelProto, name: str) -> int | None:
    """Rows of the constant table a Gather indexes with input ``name`` (token ids), if any."""
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Gather" and node.input[1] == name and node.input[0] in shapes:
            return shapes[node.input[0]][0]
    return None


def make_samples(model: onnx.ModelProto, count: int, seed: int) -> dict[str, np.ndarray]:
    """``count`` model-sized batches per input, stacked on axis 0 (ONNX layout), seeded."""
    rng = np.random.default_rng(seed)
    data = {}
    for vi in V.graph_inputs(model):
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        stacked = [count * shape[0], *shape[1:]]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        if np.dtype(dtype).kind in "iu":
            rows = _gather_rows(model, vi.name) or 4
            data[vi.name] = rng.integers(0, rows, size=stacked).astype(dtype)
        elif "mask" in vi.name:  # additive mask: keep a random prefix of the sequence
            seq = stacked[-1]
            keep = rng.integers(seq // 2, seq + 1, size=stacked[0])
            mask = np.where(np.arange(seq) < keep[:, None], 0.0, MASK_DROP)
            data[vi.name] = mask.reshape([stacked[0], *[1] * (len(stacked) - 2), seq]).astype(dtype)
        else:
            data[vi.name] = rng.standard_normal(stacked).astype(dtype)
    return data


def feed_batches(model: onnx.ModelProto, data: Mapping[str, np.ndarray]) -> Iterator[dict]:
    batches = {vi.name: vi.type.tensor_type.shape.dim[0].dim_value for vi in V.graph_inputs(model)}
    return V.iter_feed_batches(data, batches)


# --------------------------------------------------------------------------------------------
# Running and scoring
# --------------------------------------------------------------------------------------------


def _quantized(detail: Mapping) -> tuple[float, int] | None:
    params = detail.get("quantization_parameters") or {}
    scales = params.get("scales")
    if scales is None or len(scales) != 1 or np.dtype(detail["dtype"]).kind not in "iu":
        return None
    return float(scales[0]), int(params["zero_points"][0])


def run_variant(tflite_bytes: bytes, feeds: Mapping[str, np.ndarray], io_table) -> dict:
    """Outputs (ONNX layout, float) of one LiteRT run; integer I/O is (de)quantized."""
    interp = V.make_interpreter(tflite_bytes)
    runner = interp.get_signature_runner("serving_default")
    perms_in = {r["name"]: r.get("perm") for r in io_table if r["kind"] == "input"}
    perms_out = {r["name"]: r.get("perm") for r in io_table if r["kind"] == "output"}
    kwargs = {}
    for name, detail in runner.get_input_details().items():
        arr = np.asarray(feeds[name])
        if perms_in.get(name) is not None:
            arr = np.transpose(arr, perms_in[name])
        q = _quantized(detail) if np.dtype(arr.dtype).kind == "f" else None
        if q is not None:
            info = np.iinfo(detail["dtype"])
            arr = np.clip(np.round(arr / q[0]) + q[1], info.min, info.max)
        kwargs[name] = np.ascontiguousarray(arr, dtype=detail["dtype"])
    raw = runner(**kwargs)
    out_details = runner.get_output_details()
    outputs = {}
    for name, arr in raw.items():
        arr = np.array(arr, copy=True)
        q = _quantized(out_details[name])
        if q is not None:
            arr = (arr.astype(np.float32) - q[1]) * np.float32(q[0])
        if perms_out.get(name) is not None:
            arr = np.transpose(arr, np.argsort(perms_out[name]))
        outputs[name] = arr
    return outputs


def ort_session(model: onnx.ModelProto | str | Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    content = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(content, opts, providers=["CPUExecutionProvider"])


def run_ort(sess, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(feeds)), strict=True))


def sqnr_db(reference: list[dict], actual: list[dict]) -> dict[str, float]:
    """Per output: 10*log10(sum ref^2 / sum (ref - actual)^2) over all evaluation batches."""
    out = {}
    for name in reference[0]:
        if np.asarray(reference[0][name]).dtype.kind != "f":
            continue
        ref = np.concatenate([np.ravel(r[name]).astype(np.float64) for r in reference])
        act = np.concatenate([np.ravel(a[name]).astype(np.float64) for a in actual])
        noise = float(np.sum((ref - act) ** 2))
        signal = float(np.sum(ref**2))
        out[name] = math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise)
    return out


def worst(per_output: Mapping[str, float]) -> float:
    return min(per_output.values()) if per_output else math.nan


# --------------------------------------------------------------------------------------------
# onnxruntime reference: quantize_static
# --------------------------------------------------------------------------------------------


def _for_ort_quantizer(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The same computation in a form onnxruntime's quantizer accepts.

    Old (IR 3) models list every initializer as a graph input too; the quantizer's calibration
    run then demands feeds for them, so they are dropped from the inputs. Models older than
    ``opset`` are converted up (per-axis QDQ needs opset 13).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name for t in out.graph.initializer}
    kept = [vi for vi in out.graph.input if vi.name not in inits]
    del out.graph.input[:]
    out.graph.input.extend(kept)
    out.ir_version = max(out.ir_version, 7)
    current = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return out
    from onnx import version_converter

    return version_converter.convert_version(out, opset)


def ort_reference(
    model: onnx.ModelProto, calib: Mapping[str, np.ndarray], method: str, workdir: Path
) -> tuple[Path, dict]:
    """QDQ per-channel int8 model from onnxruntime's static quantizer, and how it was made.

    onnxruntime's recommended flow runs ``quant_pre_process`` first (shape inference and graph
    optimization, which folds BatchNorm into Conv); it is used when it succeeds, so the
    reference is the best onnxruntime offers, not a handicapped one.
    """
    import logging

    from onnxruntime import quantization as Q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(Q.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = feed_batches(model, calib)

        def get_next(self):
            return next(self.batches, None)

    src, pre, dst = workdir / "float.onnx", workdir / "pre.onnx", workdir / "ort_qdq.onnx"
    onnx.save(_for_ort_quantizer(model, PER_CHANNEL_OPSET), src)
    info: dict = {}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a warning per rank-1 weight
    try:
        started = time.perf_counter()
        try:
            # Shapes are static here; symbolic inference would only add a sympy dependency.
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            info["preprocessed"] = True
        except Exception as exc:  # the reference still runs, without the optional step
            info["preprocessed"] = False
            info["preprocess_error"] = f"{type(exc).__name__}: {exc}"[:300]
            pre = src
        Q.quantize_static(
            str(pre),
            str(dst),
            Reader(),
            quant_format=Q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=Q.QuantType.QInt8,
            weight_type=Q.QuantType.QInt8,
            calibrate_method=getattr(Q.CalibrationMethod, ORT_METHOD[method]),
        )
        info["seconds"] = time.perf_counter() - started
    finally:
        root.setLevel(level)
    return dst, info


# --------------------------------------------------------------------------------------------
# One model
# --------------------------------------------------------------------------------------------


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def bench_model(model: onnx.ModelProto, args: argparse.Namespace) -> dict:
    calib = make_samples(model, args.calibration_samples, seed=0)
    evals = make_samples(model, args.eval_samples, seed=1)
    row: dict = {}
    try:
        res, row["convert_all_seconds"] = _timed(
            lambda: convert(
                model,
                quantize=QUANTIZE,
                calibration_data=calib,
                calibration_method=args.method,
            )
        )
    except ConversionError as err:
        return {"status": "conversion_failed", "reason_code": err.reason_code, "error": str(err)}
    row["status"] = "converted"
    row["sizes"] = {
        "float32": len(res.tflite_bytes),
        **{k: len(v) for k, v in res.variants.items()},
    }
    front = res.model
    io_table = res.report["io"]
    float_sess = ort_session(front)
    eval_feeds = list(feed_batches(front, evals))
    reference = [run_ort(float_sess, f) for f in eval_feeds]

    row["sqnr_db"], row["sqnr_per_output"], row["errors"] = {}, {}, {}
    for kind in VARIANTS:
        data = res.variants.get(kind)
        if data is None:
            row["errors"][kind] = "variant not produced"
            continue
        try:
            outs = [run_variant(data, f, io_table) for f in eval_feeds]
        except Exception as exc:  # a variant that fails to load or run is a finding, not a crash
            row["errors"][kind] = f"{type(exc).__name__}: {exc}"
            continue
        per_output = sqnr_db(reference, outs)
        row["sqnr_per_output"][kind] = per_output
        row["sqnr_db"][kind] = worst(per_output)

    w8 = int8_weights_only(front)
    bounds = {
        "int8_weights_only_bound": lambda: w8,
        "int8_weights_corrected_bound": lambda: bias_corrected(
            front, w8, feed_batches(front, calib)
        ),
    }
    for key, make in bounds.items():
        sess = ort_session(make())
        per_output = sqnr_db(reference, [run_ort(sess, f) for f in eval_feeds])
        row["sqnr_per_output"][key] = per_output
        row["sqnr_db"][key] = worst(per_output)

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path, row["ort_reference"] = ort_reference(front, calib, args.method, Path(tmp))
            sess = ort_session(path)
            per_output = sqnr_db(reference, [run_ort(sess, f) for f in eval_feeds])
            row["sqnr_per_output"]["ort_qdq_int8"] = per_output
            row["sqnr_db"]["ort_qdq_int8"] = worst(per_output)
        except Exception as exc:
            row["errors"]["ort_qdq_int8"] = f"{type(exc).__name__}: {exc}"

    config = cal.CalibrationConfig(method=args.method, progress=False)
    _, row["calibration_seconds"] = _timed(lambda: cal.collect_ranges(front, calib, config))
    _, row["convert_float_seconds"] = _timed(lambda: convert(model))
    _, row["convert_int8_seconds"] = _timed(
        lambda: convert(
            model, quantize=["int8"], calibration_data=calib, calibration_method=args.method
        )
    )
    row["int8_overhead_seconds"] = row["convert_int8_seconds"] - row["convert_float_seconds"]
    return row


# --------------------------------------------------------------------------------------------
# Targets, table, main
# --------------------------------------------------------------------------------------------


def check_targets(results: Mapping[str, dict]) -> dict:
    """Each target: ok (bool) and the per-model evidence."""
    scored = {n: r["sqnr_db"] for n, r in results.items() if r.get("status") == "converted"}

    def per_model(rule: Callable[[dict], bool | None]) -> dict:
        verdicts = {n: rule(s) for n, s in scored.items()}
        failed = sorted(n for n, v in verdicts.items() if v is False)
        missing = sorted(n for n, v in verdicts.items() if v is None)
        return {
            "ok": not failed and not missing and bool(verdicts),
            "failed": failed,
            "missing": missing,
        }

    def have(s: dict, *keys: str) -> bool:
        return all(k in s and not math.isnan(s[k]) for k in keys)

    targets = {
        "int8_ge_ref_minus_1db": per_model(
            lambda s: (
                s["integer_quant"] >= s["ort_qdq_int8"] - 1.0
                if have(s, "integer_quant", "ort_qdq_int8")
                else None
            )
        ),
        "int16x8_ge_int8_plus_15db": per_model(
            lambda s: (
                s["integer_quant_with_int16_act"] >= s["integer_quant"] + 15.0
                if have(s, "integer_quant_with_int16_act", "integer_quant")
                else None
            )
        ),
        "fp16_ge_60db": per_model(lambda s: s["float16"] >= 60.0 if have(s, "float16") else None),
        "dynamic_ge_int8": per_model(
            lambda s: (
                s["dynamic_range_quant"] >= s["integer_quant"]
                if have(s, "dynamic_range_quant", "integer_quant")
                else None
            )
        ),
    }
    diffs = [
        s["integer_quant"] - s["ort_qdq_int8"]
        for s in scored.values()
        if have(s, "integer_quant", "ort_qdq_int8")
    ]
    median = statistics.median(diffs) if diffs else math.nan
    targets["int8_ge_ref_on_median"] = {"ok": bool(diffs) and median >= 0, "median_diff_db": median}
    budget = results.get(TIME_BUDGET_MODEL, {})
    if "int8_overhead_seconds" in budget:
        limit = budget["calibration_seconds"] + TIME_BUDGET_S
        targets["resnet50_int8_overhead_le_calibration_plus_2s"] = {
            "ok": budget["int8_overhead_seconds"] <= limit,
            "overhead_seconds": budget["int8_overhead_seconds"],
            "limit_seconds": limit,
        }
    return targets


def _cell(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return "inf" if value == math.inf else f"{value:.1f}"


def format_table(results: Mapping[str, dict]) -> str:
    cols = [*VARIANTS.values(), "ORT int8", "w8 nearest", "w8 corrected"]
    head = "| model | " + " | ".join(cols) + " | calib s | int8 extra s |"
    lines = [head, "|" + "---|" * (len(cols) + 3)]
    for name, r in results.items():
        if r.get("status") != "converted":
            lines.append(f"| {name} | conversion failed: {r.get('reason_code')} |")
            continue
        keys = [*VARIANTS, "ort_qdq_int8", *BOUNDS]
        cells = [_cell(r["sqnr_db"].get(k)) for k in keys]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {r['calibration_seconds']:.2f}"
            f" | {r['int8_overhead_seconds']:.2f} |"
        )
    return "\n".join(lines)


def format_targets(targets: Mapping[str, dict]) -> str:
    lines = []
    for name, t in targets.items():
        detail = {k: v for k, v in t.items() if k != "ok" and v not in ([], None)}
        lines.append(f"- {'PASS' if t['ok'] else 'FAIL'} `{name}` {json.dumps(detail)}")
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def _load_results(path: Path) -> dict:
    """Per-model rows of an earlier run (non-finite floats were stored as strings)."""
    if not path.exists():
        return {}

    def revive(obj):
        if isinstance(obj, str) and obj in ("inf", "-inf", "nan"):
            return float(obj)
        if isinstance(obj, dict):
            return {k: revive(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [revive(v) for v in obj]
        return obj

    return revive(json.loads(path.read_text())["models"])


def markdown(args: argparse.Namespace, table: str, targets: Mapping[str, dict]) -> str:
    return (
        "# Quantization accuracy (SQNR dB vs float ONNX) and cost\n\n"
        f"Method `{args.method}`, {args.calibration_samples} calibration / "
        f"{args.eval_samples} evaluation samples (seeded, disjoint). Columns: our variants; "
        "`ORT int8` = onnxruntime quantize_static QDQ per-channel; `calib s` = calibration "
        "alone; `int8 extra s` = convert(int8) - convert(float); `w8 nearest` = the float "
        "model with per-channel int8 weights rounded to nearest and float activations; "
        "`w8 corrected` = the same with each rounded layer's average output error on the "
        "calibration samples removed (the variants' bias correction, done exactly): what int8 "
        "weights allow with exact activations (benchmarks/weight_bounds.py).\n\n"
        f"{table}\n\nTargets:\n\n{format_targets(targets)}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="default: all")
    parser.add_argument("--calibration-samples", type=int, default=16)
    parser.add_argument("--eval-samples", type=int, default=32)
    parser.add_argument("--method", choices=sorted(ORT_METHOD), default="minmax")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "o2t_light")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument(
        "--merge", action="store_true", help="update these models in an existing --out file"
    )
    args = parser.parse_args(argv)
    loaders = model_loaders(args.cache_dir)
    names = args.models if args.models else list(loaders)
    unknown = sorted(set(names) - set(loaders))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {sorted(loaders)}")
    if args.calibration_samples < 1 or args.eval_samples < 1:
        parser.error("--calibration-samples and --eval-samples must be >= 1")

    results = _load_results(args.out) if args.merge else {}
    for name in names:
        started = time.perf_counter()
        results[name] = bench_model(loaders[name](), args)
        print(f"{name}: done in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    targets = check_targets(results)
    table = format_table(results)
    print(table)
    print(format_targets(targets))

    import ai_edge_litert
    import onnxruntime

    meta = {
        "method": args.method,
        "calibration_samples": args.calibration_samples,
        "eval_samples": args.eval_samples,
        "sqnr": "10*log10(sum ref^2 / sum err^2) over all eval samples vs float ONNX (ORT); "
        "a model's figure is its worst output",
        "reference": f"onnxruntime.quantization.quantize_static QDQ per_channel int8, "
        f"CalibrationMethod.{ORT_METHOD[args.method]}",
        "litert": f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}",
        "onnxruntime": onnxruntime.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1_5_15_at_end": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "targets": targets, "models": results}
    args.out.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    args.table.write_text(markdown(args, table, targets))
    print(f"wrote {args.out} and {args.table}")
    return 0 if all(t["ok"] for t in targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
