"""Attention head layouts side by side: TRANSPOSE count, partitions, numerics and 1-thread latency.

Issue 22 item 5 asks for <= 2 TRANSPOSE per attention layer, but only in a form that is not
slower. This script converts each attention model of the real-model corpus (``tools/zoo``,
files in the zoo cache) in every form below, in one run, and records per form:

- ``transposes`` and ``per_layer`` (attention layers counted as in bench_transposes.py);
- ``partitions``, ``delegated_share`` and ``outside_xnnpack`` (bench_partitions.count_partitions);
- ``max_abs`` error of every output against onnxruntime (1 thread) on the corpus's stored feeds
  (seeded ones for the generated encoders), and ``max_abs_vs_baseline`` between the forms;
- latency (``cpu``: thread CPU time, which leaves out waiting for a core on a shared machine;
  ``wall``: wall time): every file is loaded in ``--copies`` interpreters (two interpreters of
  one file differ by a few %, the later-created one faster), created in mirrored order so
  that every form has the same mean creation position; ``rounds`` rounds each time every
  interpreter in turn (one call each per pass, the order rotating per round) for ``pairs``
  passes after warm-up, on one thread. Per round a form's time is the mean over its
  interpreters and its ratio is taken to the baseline's; reported: median and min..max over
  rounds. ``baseline_again`` (baseline copy 1 / copy 0: the first and the last interpreter
  created) bounds the creation-order bias; on hf_gpt2_past_ts and the GPT-2/ViT ortopt files,
  where no form changes the file, the forms' ratios are the A/A floor of the averaged
  procedure.

Forms (onnx2tflite_direct/head_projection.py, lowering/contrib_attention.py), the baseline
first:

- ``four_transposes`` (``--disable-rewrite fused_head_projection``): a FULLY_CONNECTED and a
  TRANSPOSE per Q/K/V projection (K^T stored by its TRANSPOSE), one TRANSPOSE for the merge: 4
  per layer on BERT/ViT/MiniLM (the default before the rule);
- ``fused_qkv`` (the default, rule ``fused_head_projection``): one FULLY_CONNECTED for Q/K/V,
  one TRANSPOSE to head-major, one SPLIT, K^T read through adj_y, the merge: 2 per layer;
- ``head_major`` (opt-in rule ``head_major_projection``, the fused rule off): Q/K/V each a
  BATCH_MATMUL of the rows by per-head constant weights [1, H, K, d] writing [B, H, S, d], the
  merge: 1 per layer.

onnxruntime-optimized exports (``*_ortopt``: one com.microsoft Attention per layer, its QKV
projection already one FULLY_CONNECTED):

- ``split_first`` (``contrib_attention.split_first_heads``, rule ``fused_head_projection``
  off): SPLIT of the packed projection, then a TRANSPOSE per part, plus the merge: 4 per layer;
- ``one_transpose`` (the default: ``head_major_heads``, and the fused rule for onnxruntime's
  Reshape -> Gemm -> Reshape projections, hf_vit_ts_ortopt): the packed projection moved to
  head-major with one TRANSPOSE and SPLIT there, plus the merge: 2 per layer.

A form became the default only with <= 2 TRANSPOSE per layer and a ratio <= 1.0 within the
noise of the procedure on every corpus model.

    PYTHONPATH=. python benchmarks/bench_attention_forms.py [--only NAME ...] [--rounds 7]

Writes ``benchmarks/results/attention_forms.json`` and ``.md`` (``--table-only`` rewrites the
table from the json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from onnx2tflite_direct.lowering import contrib_attention  # noqa: E402
from onnx2tflite_direct.onnx_rewrites import opt_in  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "attention_forms.json"
# Larger generated encoders (benchmarks/models.py, 2 layers each to keep the run short): the
# corpus's are small (hidden 64-384, sequence 16-65); these show how the forms scale.
SYNTHETIC = {
    "bench_bert_base_2l": ("bert_base_like", 2),
    "bench_vit_small_2l": ("vit_small_like", 2),
}


# onnxruntime-optimized exports: one com.microsoft Attention per layer (packed QKV weights)
ORT_FUSED = [
    "hf_bert_ts_ortopt",
    "hf_distilbert_ts_ortopt",
    "hf_vit_ts_ortopt",
    "minilm_l6_ts_ortopt",
    "hf_gpt2_past_ts_ortopt",
]


MODELS = [
    "hf_bert_ts",
    "hf_bert_dynamo",
    "hf_distilbert_ts",
    "hf_roberta_ts",
    "hf_vit_ts",
    "hf_vit_dynamo",
    "minilm_l6_ts",
    "minilm_l6_dynamo",
    "hf_gpt2_past_ts",
    *SYNTHETIC,
    *ORT_FUSED,
]


@contextlib.contextmanager
def split_first():
    """contrib_attention's packed Q/K/V split first, then a TRANSPOSE per part."""
    saved = contrib_attention.packed_heads
    contrib_attention.packed_heads = contrib_attention.split_first_heads
    try:
        yield
    finally:
        contrib_attention.packed_heads = saved


# form -> (context its conversion runs in, rewrite rules disabled)
FORMS = {
    "four_transposes": (contextlib.nullcontext, ("fused_head_projection",)),
    "fused_qkv": (contextlib.nullcontext, ()),
    "head_major": (lambda: opt_in("head_major_projection"), ("fused_head_projection",)),
    "split_first": (split_first, ("fused_head_projection",)),
    "one_transpose": (contextlib.nullcontext, ()),
}


def forms_of(name: str) -> list[str]:
    """The forms measured for a model, the baseline (the exporter's 4-TRANSPOSE form) first."""
    if name in ORT_FUSED:
        return ["split_first", "one_transpose"]
    return ["four_transposes", "fused_qkv", "head_major"]


def load(name: str):
    """(model, path or serialized model for onnxruntime, feeds, convert options)."""
    if name in SYNTHETIC:
        import models as bench_models

        from onnx2tflite_direct import validate

        fn, layers = SYNTHETIC[name]
        model = getattr(bench_models, fn)(layers)
        return model, model.SerializeToString(), validate.seeded_inputs(model, 0), {}
    from tools.zoo import manifest
    from tools.zoo.run import load_feeds, model_path

    entry = manifest.by_name(name)
    path = model_path(name)
    model = onnx.load(str(path))
    feeds = load_feeds(entry, model)
    pins = {k: tuple(np.asarray(v).shape) for k, v in feeds.items()}
    opts = dict(entry.get("convert_options", {}))
    return model, str(path), feeds, {"keep_io_layout": True, "input_shapes": pins, **opts}


def convert_form(name: str, form: str):
    from onnx2tflite_direct import convert

    model, source, feeds, opts = load(name)
    context, disabled = FORMS[form]
    disabled = tuple(opts.pop("disable_rewrites", ())) + disabled
    with context():
        res = convert(model, disable_rewrites=disabled, **opts)
    return bytes(res.tflite_bytes), res.report.get("io"), model, source, feeds


def structure(blob: bytes) -> dict:
    from bench_partitions import count_partitions

    from onnx2tflite_direct.validate import make_interpreter

    plain = make_interpreter(blob, num_threads=1, use_xnnpack=False)
    plain.allocate_tensors()
    ops = Counter(d["op_name"] for d in plain._get_ops_details())
    parts = count_partitions(blob)
    return {
        "ops": sum(ops.values()),
        "transposes": ops.get("TRANSPOSE", 0),
        "batch_matmul": ops.get("BATCH_MATMUL", 0),
        "fully_connected": ops.get("FULLY_CONNECTED", 0),
        "split": ops.get("SPLIT", 0),
        "partitions": parts["partitions"],
        "delegated_share": parts["delegated_share"],
        "outside_xnnpack": parts["outside"],
    }


def outputs(blob: bytes, io_table, feeds) -> dict[str, np.ndarray]:
    from onnx2tflite_direct.validate import run_litert

    return run_litert(blob, feeds, io_table)


def ort_outputs(source, feeds) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))


def max_abs(a: dict, b: dict) -> float:
    worst = 0.0
    for k, v in b.items():
        x, y = np.asarray(a[k], np.float64), np.asarray(v, np.float64)
        if x.shape != y.shape:
            return float("inf")
        if x.size:
            worst = max(worst, float(np.max(np.abs(x - y))))
    return worst


def interleaved(runners: dict, pairs: int, order: list, clock) -> dict:
    """Median ms of each runner by ``clock``, timed in turn (one call each per pass) after
    warm-up."""
    for _ in range(5):
        for k in order:
            runners[k]()
    times: dict[str, list[float]] = {k: [] for k in order}
    for _ in range(pairs):
        for k in order:
            t0 = clock()
            runners[k]()
            times[k].append(clock() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def summarize(per_round: list[dict], forms: list[str], copies: int) -> dict:
    """Per form: median ms (copy 0) and the ratio to the baseline per round, each form timed as
    the mean of its ``copies`` interpreters (two interpreters of one file differ by a few %:
    memory placement), median and min..max over rounds; ``baseline_again`` is copy 1 of the
    baseline against copy 0 (the creation-order extreme, not averaged)."""

    def mean(m, form):
        return statistics.fmean(m[(form, c)] for c in range(copies))

    out = {"ms": {f: round(statistics.median(mean(m, f) for m in per_round), 4) for f in forms}}
    ratios = {}
    base = forms[0]
    series = {f: [mean(m, f) / mean(m, base) for m in per_round] for f in forms[1:]}
    if copies > 1:
        series["baseline_again"] = [m[(base, 1)] / m[(base, 0)] for m in per_round]
    for k, rs in series.items():
        ratios[k] = {
            "median": round(statistics.median(rs), 3),
            "min": round(min(rs), 3),
            "max": round(max(rs), 3),
        }
    out["ratio_vs_baseline"] = ratios
    return out


def bench(name: str, rounds: int, pairs: int, copies: int = 2) -> dict:
    from bench_transposes import attention_layers

    from tools.zoo.run import _litert_runner

    rec: dict = {"forms": {}}
    files = {}
    model = path = feeds = None
    for form in forms_of(name):
        blob, io_table, model, path, feeds = convert_form(name, form)
        files[form] = (blob, io_table)
    layers = attention_layers(model)
    rec["attention_layers"] = layers
    expected = ort_outputs(path, feeds)
    got = {form: outputs(blob, io, feeds) for form, (blob, io) in files.items()}
    for form, (blob, _io) in files.items():
        row = structure(blob)
        row["per_layer"] = round(row["transposes"] / layers, 2) if layers else None
        row["max_abs_vs_onnxruntime"] = max_abs(got[form], expected)
        row["max_abs_vs_baseline"] = max_abs(got[form], got[next(iter(files))])
        rec["forms"][form] = row
    rec["max_abs_expected"] = max(float(np.max(np.abs(v))) for v in expected.values() if v.size)
    # Interpreters created later ran a few % faster (two copies of one file: baseline_again;
    # identical files of different forms on GPT-2), so the copies are created in mirrored order
    # (forms a b c, then c b a, ...): every form gets the same mean creation position.
    created = [
        (form, c)
        for c in range(copies)
        for form in (list(files) if c % 2 == 0 else list(reversed(files)))
    ]
    runners = {key: _litert_runner(files[key[0]][0], feeds, files[key[0]][1]) for key in created}
    keys = list(runners)
    # Thread CPU time (the interpreter runs on this thread at num_threads=1) leaves out the
    # time the process waits for a core on a shared machine; wall time is recorded too.
    clocks = {"cpu": time.thread_time, "wall": time.perf_counter}
    per_round: dict[str, list] = {c: [] for c in clocks}
    for r in range(rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for c, clock in clocks.items():
            per_round[c].append(interleaved(runners, pairs, order, clock))
    forms = list(files)
    rec["latency"] = {c: summarize(per_round[c], forms, copies) for c in clocks}
    rec["rounds"], rec["pairs"], rec["interpreters_per_form"] = rounds, pairs, copies
    return rec


def table(data: dict) -> str:
    """Markdown: per model and form, TRANSPOSE per layer, partitions, error, CPU-time ratio."""
    lines = [
        "# Attention head forms: TRANSPOSE per layer, partitions, numerics, 1-thread latency",
        "",
        data.get("note", ""),
        "",
        "| model | form | TRANSPOSE (per layer) | partitions | max abs vs onnxruntime "
        "| CPU-time ratio to the 4-TRANSPOSE form (min..max) | A/A |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rec in data["models"].items():
        if "error" in rec:
            lines.append(f"| {name} | error | {rec['error']} | | | | |")
            continue
        cpu = rec["latency"]["cpu"]["ratio_vs_baseline"]
        aa = cpu.get("baseline_again", {})
        base = next(f for f in rec["forms"] if f not in cpu)  # the one without a ratio
        for form, row in rec["forms"].items():
            r = cpu.get(form)
            ratio = "1" if form == base else f"{r['median']} ({r['min']}..{r['max']})"
            lines.append(
                f"| {name} | {form} | {row['transposes']} ({row['per_layer']}) "
                f"| {row['partitions']} | {row['max_abs_vs_onnxruntime']:.2g} | {ratio} "
                f"| {aa.get('median', '')} |"
            )
    if data.get("decision"):
        lines += ["", data["decision"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--copies", type=int, default=2, help="interpreters per form")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--table-only", action="store_true", help="rewrite the .md from the .json")
    args = ap.parse_args(argv)
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.table_only:
        args.out.with_suffix(".md").write_text(table(data))
        return 0
    data.setdefault("models", {})
    for name in args.only or MODELS:
        try:
            rec = bench(name, args.rounds, args.pairs, args.copies)
        except Exception as exc:  # noqa: BLE001 - one model's failure is recorded, not fatal
            rec = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        data["models"][name] = rec
        forms = rec.get("forms", {})
        print(
            name,
            {f: (r["transposes"], r["per_layer"], r["partitions"]) for f, r in forms.items()},
            rec.get("latency", {}).get("cpu"),
            rec.get("latency", {}).get("wall", {}).get("ratio_vs_baseline"),
            {f: r["max_abs_vs_onnxruntime"] for f, r in forms.items()},
            rec.get("error", ""),
            flush=True,
        )
    data["note"] = (
        "Per model and head-layout form: TRANSPOSE count and per attention layer, XNNPACK "
        "partitions, max abs error vs onnxruntime, and 1-thread LiteRT latency interleaved, by "
        "thread CPU time and wall time "
        "(per round: median per interpreter, mean over a form's interpreters, ratio to the baseline; "
        "median and min..max over rounds; baseline_again = baseline copy 1 / copy 0, the A/A "
        "noise floor). Written by "
        "benchmarks/bench_attention_forms.py."
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    args.out.with_suffix(".md").write_text(table(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
