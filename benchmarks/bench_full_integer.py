"""How integer the ``*_full_integer_quant.tflite`` files are, and how accurate (issue 21 item 1).

For the 16 models of ``benchmarks/bench_quant.py`` plus a 2-layer LSTM, a GRU (from
``benchmarks/bench_recurrent.py``) and a 2-layer BERT-like encoder:

1. ``convert(model, quantize=["int8"], calibration_data=calib)`` with ``bench_quant``'s seeded
   calibration samples (16) and separate evaluation samples;
2. the full-integer file is read back (every subgraph, WHILE bodies included) and each operator
   counted as *integer* when none of its tensors is float (float32/float16), else as float, by
   opcode: the integer share is integer ops / all ops;
3. SQNR (dB, worst output) of the full-integer file run in LiteRT against the float ONNX model in
   onnxruntime, beside onnxruntime's own ``quantize_static`` QDQ model (per-channel int8, MinMax,
   the same calibration samples), as ``bench_quant`` computes both.

A conversion refused because the full-integer file cannot be all-integer (``--strict-integer``,
the full-integer file's default) is recorded with its message (the refusal names the ops); the
figures are then measured with ``allow_float_ops`` (the opt-out) so the gap stays visible.

    PYTHONPATH=. python benchmarks/bench_full_integer.py [--models lstm2 gru] [--merge]

Writes ``benchmarks/results/full_integer.json`` and ``benchmarks/results/full_integer.md``.
The rows ``lstm2`` and ``gru`` are the converter's default form (a WHILE loop in the float
file at these sizes): their full-integer files swap in the integer forms by themselves (the
LSTM: LiteRT's integer UNIDIRECTIONAL_SEQUENCE_LSTM; the GRU: the unrolled cell);
``*_unrolled`` convert with ``--unroll-rnn``.

    PYTHONPATH=. python benchmarks/bench_full_integer.py --lstm-forms

compares, in one run, the 2-layer LSTM's two full-integer forms: the integer sequence kernel
(default) against the unrolled cells (``--unroll-rnn``): integer share, SQNR against the float
ONNX model, and LiteRT latency (median, 1 thread, with XNNPACK and with the builtin kernels
only); writes ``benchmarks/results/full_integer_lstm_forms.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from benchmarks import bench_quant as BQ  # noqa: E402
from benchmarks.bench_recurrent import build as recurrent_model  # noqa: E402
from benchmarks.models import bert_base_like  # noqa: E402
from onnx2tflite_direct import ConversionError, convert  # noqa: E402
from onnx2tflite_direct import tflite_reader as R  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "full_integer.json"
TABLE = ROOT / "benchmarks" / "results" / "full_integer.md"
FLOAT_TYPES = frozenset({"float32", "float16", "float64"})
SEQ = 16  # time steps of the recurrent models


def extra_models() -> dict:
    return {
        "lstm2": lambda: recurrent_model("lstm2", SEQ),
        "gru": lambda: recurrent_model("gru", SEQ),
        "lstm2_unrolled": lambda: recurrent_model("lstm2", SEQ),
        "gru_unrolled": lambda: recurrent_model("gru", SEQ),
        "bert_2layer": lambda: bert_base_like(layers=2),
    }


# Conversion options of some rows (the recurrent models' unrolled form: --unroll-rnn).
OPTIONS = {"lstm2_unrolled": {"unroll_rnn": True}, "gru_unrolled": {"unroll_rnn": True}}


def op_census(tflite: bytes) -> dict:
    """Integer and float operators of a file, over every subgraph (a WHILE body included)."""
    sch = R.schema()
    model = R.root(tflite, sch)
    codes = R.operator_codes(model, sch)
    integer, floats = 0, Counter()
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        rows = R.tensor_rows(model, sg, sch)
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            name = codes[op.OpcodeIndex()][0]
            idx = [*op.InputsAsNumpy().tolist(), *op.OutputsAsNumpy().tolist()]
            idx = [i for i in idx if i >= 0]
            if any(rows[i]["dtype"] in FLOAT_TYPES for i in idx):
                floats[name] += 1
            else:
                integer += 1
    total = integer + sum(floats.values())
    return {
        "ops": total,
        "integer_ops": integer,
        "float_ops": dict(sorted(floats.items())),
        "integer_share": integer / total if total else math.nan,
    }


def _convert(model, calib, **extra):
    return convert(model, quantize=["int8"], calibration_data=calib, **extra)


def _file_refusal(res) -> dict | None:
    for s in res.report.get("quantization") or []:
        if s.get("kind") == "full_integer_quant" and "refused" in s:
            return s["refused"]
    return None


def bench_model(model: onnx.ModelProto, args, options=None) -> dict:
    calib = BQ.make_samples(model, args.calibration_samples, seed=0)
    evals = BQ.make_samples(model, args.eval_samples, seed=1)
    row: dict = {}
    started = time.perf_counter()
    try:
        res = _convert(model, calib, **(options or {}))
    except ConversionError as err:
        row["refusal"] = {"reason_code": err.reason_code, "message": str(err)[:2000]}
        try:
            res = _convert(model, calib, allow_float_ops=True, **(options or {}))
        except (ConversionError, TypeError) as err2:
            row["status"] = "conversion_failed"
            row["error"] = str(err2)[:500]
            return row
    refused = _file_refusal(res)
    if refused is not None:  # the default: the full-integer file alone is left out
        row["refusal"] = refused
        res = _convert(model, calib, allow_float_ops=True, **(options or {}))
    row["convert_seconds"] = time.perf_counter() - started
    row["status"] = "converted"
    data = res.variants.get("full_integer_quant")
    if data is None:
        row["status"] = "no_full_integer_file"
        return row
    row.update(op_census(data))
    summary = next(
        (s for s in res.report.get("quantization") or [] if s.get("kind") == "full_integer_quant"),
        {},
    )
    row["plan_float_ops"] = [
        {k: f.get(k) for k in ("op", "onnx_node", "reason")} for f in summary.get("float_ops", [])
    ][:40]
    front = res.model
    eval_feeds = list(BQ.feed_batches(front, evals))
    reference = [BQ.run_ort(BQ.ort_session(front), f) for f in eval_feeds]
    row["sqnr_db"] = {}
    try:
        outs = [BQ.run_variant(data, f, res.report["io"]) for f in eval_feeds]
        row["sqnr_db"]["full_integer_quant"] = BQ.worst(BQ.sqnr_db(reference, outs))
    except Exception as exc:  # a file that fails to run is a finding
        row["run_error"] = f"{type(exc).__name__}: {exc}"[:500]
    if "integer_quant" in res.variants:
        outs = [
            BQ.run_variant(res.variants["integer_quant"], f, res.report["io"]) for f in eval_feeds
        ]
        row["sqnr_db"]["integer_quant"] = BQ.worst(BQ.sqnr_db(reference, outs))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path, _ = BQ.ort_reference(front, calib, "minmax", Path(tmp))
            sess = BQ.ort_session(path)
            outs = [BQ.run_ort(sess, f) for f in eval_feeds]
            row["sqnr_db"]["ort_qdq_int8"] = BQ.worst(BQ.sqnr_db(reference, outs))
        except Exception as exc:
            row["ort_error"] = f"{type(exc).__name__}: {exc}"[:500]
    return row


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.1f}"


def verdict(r: dict) -> str:
    s = r.get("sqnr_db", {})
    full, ref = s.get("full_integer_quant"), s.get("ort_qdq_int8")
    integer = r.get("integer_share") == 1.0
    accurate = full is not None and ref is not None and full >= ref - 1.0
    if integer and accurate:
        return "PASS"
    if integer and ref == math.inf:  # quantize_static left the model float (LSTM/GRU)
        return "integer; ORT QDQ keeps it float (no int8 anchor)"
    if "refusal" in r:
        return "refused (documented)"
    return "FAIL"


def format_table(results: dict, before: dict) -> str:
    head = (
        "| model | ops | integer share | float ops (by op) | full-int dB | ORT QDQ dB | "
        "float-I/O int8 dB | before: share / dB | verdict |"
    )
    lines = [head, "|" + "---|" * 9]
    for name, r in results.items():
        if r.get("status") != "converted":
            lines.append(f"| {name} | {r.get('status')}: {r.get('error', '')[:80]} |")
            continue
        floats = ", ".join(f"{k} {v}" for k, v in r["float_ops"].items()) or "-"
        s = r.get("sqnr_db", {})
        b = before.get(name, {})
        was = (
            f"{b['integer_share'] * 100:.1f}% / {_cell(b.get('sqnr_db', {}).get('full_integer_quant'))}"
            if "integer_share" in b
            else "-"
        )
        lines.append(
            f"| {name} | {r['ops']} | {r['integer_share'] * 100:.1f}% | {floats} | "
            f"{_cell(s.get('full_integer_quant'))} | {_cell(s.get('ort_qdq_int8'))} | "
            f"{_cell(s.get('integer_quant'))} | {was} | {verdict(r)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="default: all")
    parser.add_argument("--calibration-samples", type=int, default=16)
    parser.add_argument("--eval-samples", type=int, default=32)  # at 8 one sample set a row
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "o2t_light")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--before", type=Path, default=None, help="an earlier --out to compare")
    parser.add_argument("--merge", action="store_true", help="update these models in --out")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite --table from --out (and --before)"
    )
    parser.add_argument(
        "--lstm-forms",
        action="store_true",
        help="only compare the LSTM's integer-kernel and unrolled full-integer files",
    )
    args = parser.parse_args(argv)
    if args.lstm_forms:
        write_lstm_forms(lstm_forms(args), args)
        print(f"wrote {LSTM_FORMS} and {LSTM_FORMS.with_suffix('.md')}")
        return 0
    if args.render:
        results = BQ._load_results(args.out)
        before = BQ._load_results(args.before) if args.before else {}
        meta = json.loads(args.out.read_text()).get("meta", {})
        args.calibration_samples = meta.get("calibration_samples", args.calibration_samples)
        args.eval_samples = meta.get("eval_samples", args.eval_samples)
        write_table(args, format_table(results, before))
        return 0
    loaders = {**BQ.model_loaders(args.cache_dir), **extra_models()}
    names = args.models or list(loaders)
    unknown = sorted(set(names) - set(loaders))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {sorted(loaders)}")
    results = BQ._load_results(args.out) if args.merge else {}
    for name in names:
        started = time.perf_counter()
        results[name] = bench_model(loaders[name](), args, OPTIONS.get(name))
        r = results[name]
        print(
            f"{name}: {time.perf_counter() - started:.0f}s share={r.get('integer_share')} "
            f"float={r.get('float_ops')} sqnr={r.get('sqnr_db')} refusal={'refusal' in r}",
            file=sys.stderr,
            flush=True,
        )
        args.out.write_text(json.dumps(BQ._jsonable({"models": results}), indent=2) + "\n")
    before = BQ._load_results(args.before) if args.before and args.before.exists() else {}
    table = format_table(results, before)
    print(table)
    import ai_edge_litert
    import onnxruntime

    meta = {
        "calibration_samples": args.calibration_samples,
        "eval_samples": args.eval_samples,
        "integer_op": "an operator none of whose tensors is float32/float16 (all subgraphs)",
        "sqnr": "10*log10(sum ref^2 / sum err^2) over all eval samples vs float ONNX (ORT); "
        "worst output",
        "reference": "onnxruntime.quantization.quantize_static QDQ per_channel int8 MinMax",
        "litert": f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}",
        "onnxruntime": onnxruntime.__version__,
    }
    payload = {"meta": meta, "models": results}
    args.out.write_text(json.dumps(BQ._jsonable(payload), indent=2) + "\n")
    write_table(args, table)
    print(f"wrote {args.out} and {args.table}")
    return 0


LSTM_FORMS = ROOT / "benchmarks" / "results" / "full_integer_lstm_forms.json"
LSTM_FORM_OPTIONS = {"kernel": {}, "unrolled": {"unroll_rnn": True}}


def lstm_forms(args, seqs=(16, 64), rounds=7, warmup=5, runs=40) -> dict:
    """The 2-layer LSTM's full-integer file as the integer sequence kernel and as unrolled
    cells, side by side: share, SQNR vs float ONNX, LiteRT latency and the kernel/unrolled
    latency ratio, per sequence length. The forms' timings interleave (``rounds`` rounds,
    each timing every runner for ``runs`` runs) and each takes its fastest round's median:
    on a shared machine a load change then hits both forms alike."""
    from benchmarks.bench_latency import median_ms

    rows = {}
    for seq in seqs:
        model = recurrent_model("lstm2", seq)
        calib = BQ.make_samples(model, args.calibration_samples, seed=0)
        evals = BQ.make_samples(model, args.eval_samples, seed=1)
        row: dict = {}
        runners = {}
        for form, options in LSTM_FORM_OPTIONS.items():
            res = _convert(model, calib, **options)
            data = res.variants["full_integer_quant"]
            feeds = list(BQ.feed_batches(res.model, evals))
            reference = [BQ.run_ort(BQ.ort_session(res.model), f) for f in feeds]
            outs = [BQ.run_variant(data, f, res.report["io"]) for f in feeds]
            census = op_census(data)
            row[form] = {
                "ops": census["ops"],
                "integer_share": census["integer_share"],
                "sequence_kernels": sum(
                    1 for n in _opcodes(data) if n == "UNIDIRECTIONAL_SEQUENCE_LSTM"
                ),
                "sqnr_db": BQ.worst(BQ.sqnr_db(reference, outs)),
            }
            for label, xnnpack in (("xnnpack", True), ("builtin", False)):
                runners[(form, label)] = _timed_runner(data, feeds[0], res.report["io"], xnnpack)
        best = {key: math.inf for key in runners}
        for _ in range(rounds):
            for key, run in runners.items():
                best[key] = min(best[key], median_ms(run, warmup, runs))
        for (form, label), ms in best.items():
            row[form][f"litert_ms_{label}"] = round(ms, 4)
        for label in ("xnnpack", "builtin"):
            k, u = row["kernel"][f"litert_ms_{label}"], row["unrolled"][f"litert_ms_{label}"]
            row[f"kernel_over_unrolled_{label}"] = round(k / u, 3)
        rows[f"lstm2_seq{seq}"] = row
        print(f"seq {seq}: {row}", file=sys.stderr, flush=True)
    return rows


def _opcodes(data: bytes) -> list[str]:
    sch = R.schema()
    model = R.root(data, sch)
    codes = R.operator_codes(model, sch)
    return [
        codes[model.Subgraphs(s).Operators(k).OpcodeIndex()][0]
        for s in range(model.SubgraphsLength())
        for k in range(model.Subgraphs(s).OperatorsLength())
    ]


def _timed_runner(data, feeds, io, xnnpack: bool):
    """One inference of ``data`` (with XNNPACK, or LiteRT's builtin kernels only), feeds
    quantized and outputs dequantized as for the SQNR (the same for both forms)."""
    from onnx2tflite_direct import validate as V

    run = V.litert_runner(data, io, 1, use_xnnpack=xnnpack)
    return lambda: run(feeds)


def write_lstm_forms(rows: dict, args) -> None:
    import ai_edge_litert

    meta = {
        "calibration_samples": args.calibration_samples,
        "eval_samples": args.eval_samples,
        "latency": "fastest of 7 interleaved rounds' medians (40 runs after 5 each), 1 thread, "
        "batch 1; XNNPACK = the default delegate; builtin = BUILTIN_WITHOUT_DEFAULT_DELEGATES",
        "litert": f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}",
        "load_average_1min_at_end": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
    }
    LSTM_FORMS.write_text(json.dumps(BQ._jsonable({"meta": meta, "rows": rows}), indent=2) + "\n")
    lines = [
        "| model | form | ops | integer share | sequence kernels | full-int dB | "
        "LiteRT ms (XNNPACK) | LiteRT ms (builtin) |",
        "|" + "---|" * 8,
    ]
    for name, row in rows.items():
        for form in LSTM_FORM_OPTIONS:
            e = row[form]
            lines.append(
                f"| {name} | {form} | {e['ops']} | {e['integer_share'] * 100:.1f}% | "
                f"{e['sequence_kernels']} | {_cell(e['sqnr_db'])} | {e['litert_ms_xnnpack']} | "
                f"{e['litert_ms_builtin']} |"
            )
        lines.append(
            f"| {name} | kernel / unrolled latency | | | | | "
            f"{row['kernel_over_unrolled_xnnpack']} | {row['kernel_over_unrolled_builtin']} |"
        )
    LSTM_FORMS.with_suffix(".md").write_text(
        "# 2-layer LSTM full-integer file: integer sequence kernel vs unrolled cells\n\n"
        "`kernel`: the default conversion (the float file loops; the int8 full-integer file "
        "runs LiteRT's integer UNIDIRECTIONAL_SEQUENCE_LSTM, 8x8->16). `unrolled`: "
        "`--unroll-rnn` (int16x8 cells inside the int8 file). SQNR of the full-integer file "
        f"against the float ONNX model (worst output, {args.eval_samples} evaluation samples, "
        f"{args.calibration_samples} calibration samples); {meta['latency']}; "
        f"{meta['litert']}; load average {meta['load_average_1min_at_end']} on "
        f"{meta['cpus']} CPUs at the end (a shared machine: the interleaved rounds make the "
        "ratio robust, the absolute times less so). Written by "
        "`benchmarks/bench_full_integer.py --lstm-forms`.\n\n" + "\n".join(lines) + "\n"
    )


def write_table(args, table: str) -> None:
    args.table.write_text(
        "# Full-integer files: integer share and accuracy (issue 21 item 1)\n\n"
        f"{args.calibration_samples} calibration / {args.eval_samples} evaluation samples "
        "(bench_quant's seeded generators). An op is integer when none of its tensors is "
        "float (every subgraph); `float-I/O int8` is the `*_integer_quant` file (may keep "
        "float islands); `before` is the same measurement on the code before issue 21 item 1. "
        "`verdict`: PASS = 100% integer and SQNR >= ORT QDQ - 1 dB; `refused (documented)` = "
        "the full-integer file is not written by default, the refusal names the op (the row "
        "is then measured with `allow_float_ops`).\n\n"
        f"{table}\n"
    )


if __name__ == "__main__":
    sys.exit(main())
