"""GPU delegate verdict on the benchmark models, the onnx wheel's light_* models and (with
``--zoo``) every real-model corpus model that converts (tools/zoo, built locally).

For every model: convert with default options and with ``--gpu-friendly``, and record the
static GPU verdict of each (``report["gpu"]``: the LiteRT GPU delegate's ported rules,
``gpu_rules.py``), the operators that fall back (op, reason codes) and the rewrites made. The
``--gpu-friendly`` file is run in LiteRT and compared with onnxruntime (the rewrites must not
change the answer; corpus: the corpus runner's feeds and tolerance). No GPU is involved: this
measures what the delegate's own rules say about the files we write.

    python benchmarks/bench_gpu_verdict.py [--zoo] [--out benchmarks/results/gpu_verdict.json]

``--gpu-friendly`` declares a model's int64 inputs (token ids, attention masks) int32; its file
is run on the same int64 feeds, which the runner casts to int32. Such a model is also converted
with ``--gpu-friendly --keep-int64-inputs`` (column ``gpu_friendly_keep_int64_inputs``: the
model's own input dtypes). The summary's ``corpus_cnn_transformer`` counts the corpus
CNN/transformer models (``bench_partitions.family``) fully delegable per run and lists what
still falls back with ``--gpu-friendly``. ``--out X.json`` also writes ``X.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tools")]

import onnx  # noqa: E402
from make_real_weight_light_models import light_model_paths  # noqa: E402
from models import BENCHMARK_MODELS  # noqa: E402

from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct import validate as V  # noqa: E402


def _fallbacks(section: dict) -> dict[str, int]:
    """``"OP: reason,reason"`` -> count."""
    return dict(
        sorted(Counter(f"{f['op']}: {','.join(f['rules'])}" for f in section["fall_back"]).items())
    )


def _matches(model, res, feeds, atol, rtol) -> bool:
    """The converted file against onnxruntime on the original model (same inputs)."""
    ref = feeds if feeds is not None else V.seeded_inputs(res.model, 0)
    expected = V.run_onnxruntime(model, ref)
    actual = V.run_litert(res.tflite_bytes, ref, res.report["io"])
    metrics = V.compare(expected, actual, atol=atol, rtol=rtol)
    return all(m.get("ok") for m in metrics.values())


def verdicts(name: str, model, feeds=None, atol=1e-4, rtol=1e-4, **options) -> dict:
    """Both verdicts of one model; the --gpu-friendly file checked against onnxruntime when it
    differs from the default one (rewrites, or int64 inputs declared int32: run on the same
    int64 feeds, which LiteRT receives as int32). A model with an int64 input is also
    converted with --gpu-friendly --keep-int64-inputs."""
    row = {"model": name}
    runs = [("default", False, {}), ("gpu_friendly", True, {})]
    if int64_inputs(model):
        runs.append(("gpu_friendly_keep_int64_inputs", True, {"keep_int64_inputs": True}))
    for label, friendly, extra in runs:
        res = convert(model, gpu_friendly=friendly, **{**options, **extra})
        gpu = res.report["gpu"]
        row[label] = {
            "verdict": gpu["verdict"],
            "operators": gpu["operators"],
            "partitions": gpu["partitions"],
            "delegated_ops": gpu["delegated_ops"],
            "fall_back": _fallbacks(gpu),
        }
        if friendly:
            section = res.report["gpu_friendly"]
            rewrites = Counter(r["rule"] for r in section["rewrites"])
            row[label]["rewrites"] = dict(sorted(rewrites.items()))
            narrowed = res.report.get("int32_inputs")
            if narrowed:
                row[label]["int32_inputs"] = narrowed["inputs"]
                row[label]["kept_int64"] = narrowed["kept_int64"]
            if rewrites or narrowed or label == "gpu_friendly_unroll_rnn":
                # the rewritten file against onnxruntime on the original model
                row[label]["matches_onnxruntime"] = _matches(model, res, feeds, atol, rtol)
            if "WHILE" in {f["op"] for f in gpu["fall_back"]} and label == "gpu_friendly":
                # what --check-gpu suggests for recurrent loops
                runs.append(("gpu_friendly_unroll_rnn", True, {"unroll_rnn": True}))
    return row


def int64_inputs(model) -> list[str]:
    """The model's int64 graph inputs (what --int32-inputs declares int32)."""
    if isinstance(model, (str, Path)):
        model = onnx.load(str(model), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [
        i.name
        for i in model.graph.input
        if i.name not in inits and i.type.tensor_type.elem_type == onnx.TensorProto.INT64
    ]


def keeping_int64(row: dict) -> dict:
    """The row's verdict section with --gpu-friendly --keep-int64-inputs (the --gpu-friendly
    one when the model has no int64 input: the same file)."""
    return row.get("gpu_friendly_keep_int64_inputs") or row["gpu_friendly"]


def zoo_models(only: set[str] | None = None):
    """(name, path, feeds, options, domain) of every corpus model whose last corpus run
    converted it (pass or mismatch), with the corpus runner's pins and options; with ``only``,
    those named corpus models (whatever their last run)."""
    from zoo import manifest, paths, run

    for entry in manifest.all_models():
        cached = paths.results_dir() / f"{entry['name']}.json"
        if only is not None:
            if entry["name"] not in only:
                continue
        elif not cached.exists():
            continue
        elif json.loads(cached.read_text()).get("status") not in ("pass", "mismatch"):
            continue
        path = run.model_path(entry["name"])
        feeds = run.load_feeds(entry, onnx.load(str(path), load_external_data=False))
        pins = None if entry.get("dynamic") else {k: tuple(v.shape) for k, v in feeds.items()}
        options = {"keep_io_layout": True, "input_shapes": pins, **entry.get("convert_options", {})}
        yield entry["name"], str(path), feeds, options, entry.get("domain")


# Graph-input types some ported GPU rule takes as a run-time tensor (gpu_rules: float, the
# quantized int8/uint8, int32 for CAST/GATHER/ONE_HOT, bool for CAST/SELECT).
GPU_INPUT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8,
    onnx.TensorProto.INT32,
    onnx.TensorProto.BOOL,
}


def gpu_floor(model) -> list[str]:
    """The graph inputs that keep a model from being fully delegable whatever is emitted.

    The GPU delegate refuses an operator with any run-time tensor of a type its rules do not
    list (MB IsAllAllowedTensors; gpu_rules ``non_float_tensor``): no rule takes int64, so the
    op that reads an int64 input (token ids, attention masks) falls back in every form the
    converter could write (the file's inputs keep the model's dtypes). Returns
    ``"name (type)"`` for each such input some node reads."""
    if isinstance(model, (str, Path)):
        model = onnx.load(str(model), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    read = {i for n in model.graph.node for i in n.input}
    return [
        f"{i.name} ({onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type).lower()})"
        for i in model.graph.input
        if i.name not in inits
        and i.name in read
        and i.type.tensor_type.elem_type not in GPU_INPUT_TYPES
    ]


def _model_source(row: dict):
    """The ONNX model (proto or path) a result row was measured on."""
    name = row["model"]
    base = name.split(" (")[0]
    if name.endswith("(corpus)"):
        from zoo import run

        return run.model_path(base)
    if name.endswith("(benchmarks/models.py)"):
        return BENCHMARK_MODELS[base]()
    return light_model_paths()[base.removeprefix("light_")]


def add_floors(data: dict) -> dict:
    """Per row ``gpu_floor`` and, per domain and overall, how many models could be fully
    delegable at all and how many of those ``--gpu-friendly`` makes so."""
    rows = [r for r in data["rows"] if "error" not in r]
    for r in rows:
        r["gpu_floor"] = gpu_floor(_model_source(r))
    possible = [r for r in rows if not r["gpu_floor"]]
    data["summary"]["floor"] = {
        "rule": "an input of a type no GPU rule takes (int64) is read: that op falls back "
        "whatever is emitted, unless the input is declared int32 (--gpu-friendly does, "
        "--keep-int64-inputs does not)",
        "blocked_models": len(rows) - len(possible),
        "possible_models": len(possible),
        "possible_fully_delegable_gpu_friendly": sum(
            r["gpu_friendly"]["verdict"] == "fully delegable" for r in possible
        ),
        "by_domain": {
            dom: {
                "models": sum(1 for r in rows if (r.get("domain") or "generated") == dom),
                "blocked_by_floor": sum(
                    1 for r in rows if (r.get("domain") or "generated") == dom and r["gpu_floor"]
                ),
            }
            for dom in sorted({r.get("domain") or "generated" for r in rows})
        },
    }
    return data


def _by_domain(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Corpus domain (``generated`` for the benchmark and light models) -> {models,
    fully_delegable_default, fully_delegable_gpu_friendly}."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        entry = out.setdefault(
            r.get("domain") or "generated",
            {"models": 0, "fully_delegable_default": 0, "fully_delegable_gpu_friendly": 0},
        )
        entry["models"] += 1
        entry["fully_delegable_default"] += r["default"]["verdict"] == "fully delegable"
        entry["fully_delegable_gpu_friendly"] += r["gpu_friendly"]["verdict"] == "fully delegable"
    return dict(sorted(out.items()))


def _commit() -> str:
    """The converter measured: ROOT/COMMIT of a clean export (``git archive``), else the
    working tree's HEAD (plus ``+dirty`` when it has changes)."""
    import subprocess

    stamp = ROOT / "COMMIT"
    if stamp.exists():
        return stamp.read_text().strip()
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + "+dirty"


def _cnn_transformer(rows: list[dict]) -> dict:
    """Corpus models of the CNN/transformer family (``bench_partitions.family``: not
    recurrent, quantized or ai.onnx.ml): how many are fully delegable per run, and what still
    falls back with --gpu-friendly (model -> "OP: reasons" counts)."""
    from bench_partitions import family

    sel = [
        r
        for r in rows
        if r["model"].endswith("(corpus)")
        and family(onnx.load(str(_model_source(r)), load_external_data=False)) == "cnn/transformer"
    ]
    return {
        "models": len(sel),
        "fully_delegable_default": sum(r["default"]["verdict"] == "fully delegable" for r in sel),
        "fully_delegable_gpu_friendly": sum(
            r["gpu_friendly"]["verdict"] == "fully delegable" for r in sel
        ),
        "fully_delegable_gpu_friendly_keep_int64_inputs": sum(
            keeping_int64(r)["verdict"] == "fully delegable" for r in sel
        ),
        "still_falling_back": {
            r["model"]: r["gpu_friendly"]["fall_back"]
            for r in sel
            if r["gpu_friendly"]["verdict"] != "fully delegable"
        },
    }


def write_md(data: dict, path: Path) -> None:
    """The summary and the per-model verdicts as a table."""
    s = data["summary"]
    full = s["fully_delegable"]
    ct = s["corpus_cnn_transformer"]
    lines = [
        "# GPU delegate verdict (static rule check, nothing run on a GPU)",
        "",
        "Written by `benchmarks/bench_gpu_verdict.py` on converter "
        f"`{data.get('converter', 'unknown')}`; the rules: `onnx2tflite_direct/gpu_rules.py` "
        "(docs/gpu_delegate.md).",
        "",
        f"Models with a verdict: {s['with_verdict']} of {s['models']}. Fully delegable: "
        f"{full['default']} by default, {full['gpu_friendly']} with `--gpu-friendly`, "
        f"{full['gpu_friendly_keep_int64_inputs']} with `--gpu-friendly --keep-int64-inputs`.",
        "",
        f"Corpus CNN/transformer models: {ct['models']}; fully delegable "
        f"{ct['fully_delegable_default']} by default, {ct['fully_delegable_gpu_friendly']} with "
        f"`--gpu-friendly`, {ct['fully_delegable_gpu_friendly_keep_int64_inputs']} with "
        "`--gpu-friendly --keep-int64-inputs`.",
        "",
        f"Models with an int64 input (declared int32 by `--gpu-friendly`): "
        f"{s['int32_inputs']['models']}; {s['int32_inputs']['fully_delegable']} fully "
        f"delegable, {s['int32_inputs']['matching_onnxruntime']} matching onnxruntime on int64 "
        "feeds.",
        "",
        "| model | default | --gpu-friendly | matches onnxruntime (--gpu-friendly) | "
        "--gpu-friendly --keep-int64-inputs | still falls back (--gpu-friendly) |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error'][:60]} | | | | |")
            continue
        friendly = r["gpu_friendly"]
        checked = friendly.get("matches_onnxruntime")
        match = "(unchanged file)" if checked is None else ("yes" if checked else "NO")
        kept = r.get("gpu_friendly_keep_int64_inputs")
        left = "; ".join(f"{k} x{v}" for k, v in friendly["fall_back"].items())
        lines.append(
            f"| {r['model']} | {r['default']['verdict']} | {friendly['verdict']} | {match} | "
            f"{kept['verdict'] if kept else '(no int64 input)'} | {left} |"
        )
    path.write_text("\n".join(lines) + "\n")


def _print(row: dict) -> None:
    if "error" in row:
        print(f"{row['model']:44s} error: {row['error'][:80]}")
        return
    match = row["gpu_friendly"].get("matches_onnxruntime")
    note = (
        ""
        if match is None
        else ("  (rewritten file matches onnxruntime)" if match else "  MISMATCH")
    )
    unroll = row.get("gpu_friendly_unroll_rnn")
    if unroll:
        note += f"; with --unroll-rnn: {unroll['verdict']}"
    kept = row.get("gpu_friendly_keep_int64_inputs")
    if kept:
        note += f"; with --keep-int64-inputs: {kept['verdict']}"
    print(
        f"{row['model']:44s} default: {row['default']['verdict']:18s} "
        f"--gpu-friendly: {row['gpu_friendly']['verdict']}{note}"
    )


def _only(names: list[str], out: Path | None) -> int:
    """Both verdicts of the named corpus models (a subset, for a change's before/after)."""
    wanted = set(names)
    rows = []
    for name, path, feeds, options, domain in zoo_models(set(names)):
        wanted.discard(name)
        row = verdicts(f"{name} (corpus)", path, feeds, atol=1e-5, rtol=1e-3, **options)
        row["domain"] = domain
        rows.append(row)
        _print(row)
        friendly = row["gpu_friendly"]
        print(
            f"    fall back: {friendly['fall_back']}  matches: {friendly.get('matches_onnxruntime')}"
        )
    if wanted:
        print(f"not in the corpus manifest: {sorted(wanted)}")
    if out is not None:
        out.write_text(json.dumps({"converter": _commit(), "rows": rows}, indent=2) + "\n")
    return 0 if not wanted else 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gpu_verdict.json")
    ap.add_argument("--zoo", action="store_true", help="also every converting corpus model")
    ap.add_argument(
        "--floors-only", action="store_true", help="add gpu_floor to an existing --out file"
    )
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="measure only these corpus models (printed, and written to --out only when given)",
    )
    args = ap.parse_args(argv)
    if args.only:
        return _only(args.only, args.out if "--out" in (argv or sys.argv) else None)
    if args.floors_only:
        data = add_floors(json.loads(args.out.read_text()))
        args.out.write_text(json.dumps(data, indent=2) + "\n")
        print(json.dumps(data["summary"]["floor"], indent=1))
        return 0
    rows = []
    models = [(f"{name} (benchmarks/models.py)", fn()) for name, fn in BENCHMARK_MODELS.items()]
    models += [(f"light_{name} (onnx wheel)", str(p)) for name, p in light_model_paths().items()]
    for name, model in models:
        rows.append(verdicts(name, model))
        _print(rows[-1])
    if args.zoo:
        for name, path, feeds, options, domain in zoo_models():
            try:
                row = verdicts(f"{name} (corpus)", path, feeds, atol=1e-5, rtol=1e-3, **options)
            except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
                row = {"model": f"{name} (corpus)", "error": f"{type(exc).__name__}: {exc}"[:300]}
            row["domain"] = domain
            rows.append(row)
            _print(row)
    rows_ok = [r for r in rows if "error" not in r]
    full = {
        label: sum(r[label]["verdict"] == "fully delegable" for r in rows_ok)
        for label in ("default", "gpu_friendly")
    }
    full["gpu_friendly_keep_int64_inputs"] = sum(
        keeping_int64(r)["verdict"] == "fully delegable" for r in rows_ok
    )
    summary = {
        "models": len(rows),
        "with_verdict": len(rows_ok),
        "fully_delegable": full,
        "by_domain": _by_domain(rows_ok),
        "recurrent_gpu_friendly_unroll_rnn": {
            "models": sum("gpu_friendly_unroll_rnn" in r for r in rows_ok),
            "fully_delegable": sum(
                r.get("gpu_friendly_unroll_rnn", {}).get("verdict") == "fully delegable"
                for r in rows_ok
            ),
            "matching_onnxruntime": sum(
                r.get("gpu_friendly_unroll_rnn", {}).get("matches_onnxruntime") is True
                for r in rows_ok
            ),
        },
        "corpus_cnn_transformer": _cnn_transformer(rows_ok),
        "int32_inputs": {  # the models whose int64 inputs --gpu-friendly declared int32
            "models": sum("int32_inputs" in r["gpu_friendly"] for r in rows_ok),
            "fully_delegable": sum(
                "int32_inputs" in r["gpu_friendly"]
                and r["gpu_friendly"]["verdict"] == "fully delegable"
                for r in rows_ok
            ),
            "matching_onnxruntime": sum(
                "int32_inputs" in r["gpu_friendly"]
                and r["gpu_friendly"].get("matches_onnxruntime") is True
                for r in rows_ok
            ),
        },
        "gpu_friendly_rewritten_and_matching": sum(
            r["gpu_friendly"].get("matches_onnxruntime") is True for r in rows_ok
        ),
        "gpu_friendly_rewritten_and_differing": sum(
            r["gpu_friendly"].get("matches_onnxruntime") is False for r in rows_ok
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "what": "static GPU delegate verdict (ported LiteRT rules, nothing run on a GPU)",
        "converter": _commit(),
        "summary": summary,
        "rows": rows,
    }
    args.out.write_text(json.dumps(add_floors(data), indent=2) + "\n")
    write_md(data, args.out.with_suffix(".md"))
    print(
        f"fully delegable: {full['default']}/{len(rows_ok)} by default, "
        f"{full['gpu_friendly']}/{len(rows_ok)} with --gpu-friendly, "
        f"{full['gpu_friendly_keep_int64_inputs']}/{len(rows_ok)} with --gpu-friendly "
        f"--keep-int64-inputs -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
