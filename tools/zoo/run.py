"""Run the real-model corpus: onnxruntime reference, conversion, LiteRT, strict comparison.

    python -m tools.zoo.run                  # every built model; cached results are reused
    python -m tools.zoo.run --only NAME      # one model (repeatable), always re-run; the
                                             # report is left alone (--report-only writes it)
    python -m tools.zoo.run --failed         # re-run only models whose last result is not pass
    python -m tools.zoo.run --force          # re-run everything
    python -m tools.zoo.run --report-only    # rewrite coverage_reports/zoo.{json,md}

Per model, in a subprocess with a timeout (a hang or a crash of the converter or of LiteRT
is recorded, not fatal): feeds built as the package builds them (tools/zoo/feeds.py), an
onnxruntime reference (basic graph optimisations, close to the model's own semantics but
not always equal: on Q/DQ graphs its double-Q/DQ-pair removal rounds once where the model
rounds twice), conversion
through the library with ``keep_io_layout=True`` and the feed shapes as pins, LiteRT on the
same feeds, and a comparison strictly by ONNX output name and shape with rtol 1e-3 and
atol 1e-5 (``|a - e| <= atol * max(1, max|e|) + rtol * |e|``, validate.compare); an output
that misses it may pass by a named rule of tools/zoo/pass_rules.py (LiteRT at least as close
to the float64 / exact Q/DQ answer as onnxruntime), recorded as ``pass_rule`` with the
figures under ``reference_error`` (also computed for every Q/DQ model). Latency: the
median of >= 20 timed runs after warm-up, 1 thread, LiteRT (XNNPACK) and onnxruntime (its
default optimisation level).

The record's top-level status and latency describe the float32 file. For a model that is
already statically quantized (decided from its graph, tools/zoo/deploy.py) the integer file
(``<stem>_integer_quant.tflite``) is judged by the same rules, timed in the same interleaved
loop, and is the record's ``headline`` (the file a user deploys; the float32 file if the
integer file is absent or fails its check).

A result is cached in the cache folder's ``results/`` under a key made of the model's sha256,
the converter's source hash and this runner's version: a re-run after a fix recomputes only
what changed (``--keep-stale`` keeps results whose converter hash differs).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from . import deploy, manifest, paths
from .exact_reference import has_qdq

# bump when feeds or the comparison change (4: pass rules; 5: also unpinned; 6: the headline
# file, tools/zoo/deploy.py: a statically quantized model's integer file, judged and timed)
RUNNER_VERSION = 6
RTOL = 1e-3
ATOL = 1e-5

STATUSES = ("pass", "refused", "mismatch", "load_or_run_failed", "error", "reference_failed")

# --------------------------------------------------------------------------------------------
# Failure categories (issue 17's list)
# --------------------------------------------------------------------------------------------
DYNAMIC_QUANT_OPS = {
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "DynamicQuantizeLSTM",
}
DATA_DEPENDENT_OPS = {"NonZero", "NonMaxSuppression", "Compress", "Unique"}
CONTROL_FLOW_OPS = {"If", "Loop", "Scan"}


def categorize(rec: dict) -> str | None:
    """Root-cause category of a failing record (None for a pass)."""
    status = rec.get("status")
    if status == "pass":
        return None
    op = rec.get("op_type") or ""
    domain = rec.get("domain") or ""
    reason = rec.get("reason_code") or ""
    msg = (rec.get("message_full") or rec.get("message") or "").lower()
    ops = {n.get("op_type") for n in rec.get("refused_nodes", [])} | {op}
    if ops & DYNAMIC_QUANT_OPS:
        return "dynamic-quant"
    if domain == "ai.onnx.ml" or any(
        n.get("domain") == "ai.onnx.ml" for n in rec.get("refused_nodes", [])
    ):
        return "ai.onnx.ml op"
    if domain.startswith("com.microsoft") or any(
        (n.get("domain") or "").startswith("com.microsoft") for n in rec.get("refused_nodes", [])
    ):
        return "contrib op"
    if reason == "shape_inference_failed" or "declared" in msg:
        return "declared-shape disagreement"
    if ops & CONTROL_FLOW_OPS or "subgraph" in msg or "branch" in msg:
        return "control flow with changing shapes"
    if (
        ops & DATA_DEPENDENT_OPS
        or "data-dependent" in msg
        or "static shape" in msg
        or "nonzero" in msg
        or "nonmaxsuppression" in msg
    ):
        return "data-dependent shapes"
    if reason == "unsupported_dtype":
        return "dtype without kernel"
    if status == "mismatch" and "quantize_static" in (rec.get("exporter") or ""):
        return "other: QDQ rounding-boundary flips"
    return "other"


# --------------------------------------------------------------------------------------------
# One model (runs in a worker subprocess)
# --------------------------------------------------------------------------------------------


def converter_src() -> Path:
    """Where the converter under test is imported from: ``$ONNX2TFLITE_ZOO_CONVERTER`` (a
    folder holding an ``onnx2tflite_direct`` package, e.g. ``git archive`` of a commit, so a
    run measures a committed state while the working tree changes) or the repository."""
    return Path(os.environ.get("ONNX2TFLITE_ZOO_CONVERTER") or paths.REPO)


def converter_commit() -> str:
    stamp = converter_src() / "COMMIT"
    if stamp.exists():
        return stamp.read_text().strip()
    from .report import _commit

    return _commit() + ("" if converter_src() == paths.REPO else "?")


def converter_fingerprint() -> str:
    h = hashlib.sha256()
    root = converter_src() / "onnx2tflite_direct"
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def model_path(name: str) -> Path:
    """models/NAME/FILE.onnx: one folder per model, so external data files keep their names."""
    folder = paths.models_dir() / name
    found = sorted(folder.glob("*.onnx")) if folder.exists() else []
    return found[0] if found else folder / "model.onnx"


def load_feeds(entry: dict, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    stored = paths.models_dir() / entry["name"] / "feeds.npz"
    if entry.get("feeds") == "stored" or (not entry.get("feeds") and stored.exists()):
        with np.load(stored) as z:
            return {k: z[k] for k in z.files}
    from .feeds import make_feeds

    return make_feeds(model, entry, seed=entry.get("feed_seed", 0))


def _short(text: str, n: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _paired_latency(fa, fb, runs: int, budget_s: float = 30.0) -> tuple[float, float, int]:
    """Median ms of ``fa`` and ``fb`` timed alternately (a, b, a, b, ...) after warm-up, so
    that both see the same load on a shared machine; >= ``runs`` pairs, more (up to 200)
    while under a second."""
    (ta, tb), n = _interleaved_latency([fa, fb], runs, budget_s)
    return ta, tb, n


def _interleaved_latency(fns, runs: int, budget_s: float = 30.0) -> tuple[list[float], int]:
    """Median ms of each of ``fns`` timed in turn (a, b, c, a, b, c, ...) after warm-up: the
    float32 file, the integer file and onnxruntime of one model see the same load on a
    shared machine; >= ``runs`` rounds, more (up to 200) while under a second."""
    for _ in range(3):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    while len(times[0]) < runs or (time.perf_counter() - start < 1.0 and len(times[0]) < 200):
        for fn, t in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
        if len(times[0]) >= runs and time.perf_counter() - start > budget_s:
            break
    return [statistics.median(t) * 1e3 for t in times], len(times[0])


def _ort_runner(path: Path, feeds: dict):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, feeds)


def _litert_runner(tflite: bytes, feeds: dict, io_table):
    """A callable doing set_tensor + invoke + get_tensor (the signature runner's Python overhead would
    dominate small models); falls back to the signature runner if tensor names differ."""
    from onnx2tflite_direct.validate import make_interpreter

    interp = make_interpreter(tflite, num_threads=1)
    perms = {r["name"]: r.get("perm") for r in (io_table or []) if r.get("kind") == "input"}

    def laid_out(name, dtype):
        arr = np.asarray(feeds[name])
        if perms.get(name) is not None:
            arr = np.transpose(arr, perms[name])
        return np.array(arr, dtype=dtype, order="C")

    ins = interp.get_input_details()
    if all(d["name"] in feeds for d in ins):
        for d in ins:
            if tuple(d["shape"]) != feeds[d["name"]].shape and perms.get(d["name"]) is None:
                interp.resize_tensor_input(d["index"], list(feeds[d["name"]].shape))
        interp.allocate_tensors()
        ready = [(d["index"], laid_out(d["name"], d["dtype"])) for d in interp.get_input_details()]
        outs = [d["index"] for d in interp.get_output_details()]

        def once():
            for idx, arr in ready:
                interp.set_tensor(idx, arr)
            interp.invoke()
            for idx in outs:
                interp.get_tensor(idx)

        return once
    runner = interp.get_signature_runner("serving_default")
    kwargs = {n: laid_out(n, d["dtype"]) for n, d in runner.get_input_details().items()}
    return lambda: runner(**kwargs)


def _spread(expected: dict) -> dict:
    out = {}
    for k, v in expected.items():
        v = np.asarray(v)
        if v.dtype.kind == "f" and v.size:
            out[k] = float(np.std(v.astype(np.float64)))
    return out


def _refused_nodes(report_path: Path) -> list[dict]:
    if not report_path.exists():
        return []
    rep = json.loads(report_path.read_text())
    rows = [r for r in rep.get("nodes", []) if r.get("mode") == "unsupported"]
    return [
        {k: r.get(k) for k in ("name", "domain", "op_type", "reason_code", "message")}
        for r in rows[:20]
    ]


def _refused_ops(report_path: Path) -> dict:
    """'OpType reason_code' -> count over every refused node (the list above is cut at 20)."""
    if not report_path.exists():
        return {}
    rep = json.loads(report_path.read_text())
    counts: dict[str, int] = {}
    for r in rep.get("nodes", []):
        if r.get("mode") == "unsupported":
            key = f"{r.get('domain') or ''}{':' if r.get('domain') else ''}{r.get('op_type')} {r.get('reason_code')}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _op_of(model: onnx.ModelProto, node_name: str | None) -> tuple[str | None, str | None]:
    if not node_name:
        return None, None

    def walk(graph):
        for n in graph.node:
            if n.name == node_name or (n.output and n.output[0] == node_name):
                return n
            for a in n.attribute:
                subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
                for g in subs:
                    found = walk(g)
                    if found is not None:
                        return found
        return None

    node = walk(model.graph)
    return (node.op_type, node.domain or "") if node is not None else (None, None)


def run_one(entry: dict, runs: int = 20, latency: bool = True, unpinned: bool = True) -> dict:
    """Everything for one model; returns the record (never raises).

    With ``unpinned``, a model whose inputs have dynamic dims is also converted without pins
    (what a user gets from ``--keep-io-layout`` alone: unknown dims stay dynamic) and run on
    the same feeds; that outcome is recorded under ``unpinned`` (the main status is pinned)."""
    rec = _run_pinned(entry, runs, latency)
    rec.setdefault("headline", deploy.headline(rec))  # also for a refusal or a load failure
    if unpinned and rec.get("status") != "reference_failed":
        try:
            rec["unpinned"] = _run_unpinned(entry)
        except Exception as exc:  # noqa: BLE001
            rec["unpinned"] = {"status": "error", "message": _short(f"runner: {exc!r}")}
    return rec


def _has_dynamic_dims(model: onnx.ModelProto) -> bool:
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value") or d.dim_value <= 0:
                return True
    return False


def _run_unpinned(entry: dict) -> dict | None:
    from onnx2tflite_direct import ConversionError, InternalError, convert
    from onnx2tflite_direct.validate import run_onnxruntime

    path = model_path(entry["name"])
    model = onnx.load(str(path), load_external_data=False)
    if not _has_dynamic_dims(model):
        return None  # the pinned run is the only one
    feeds = load_feeds(entry, onnx.load(str(path)))
    expected = run_onnxruntime(path, feeds)
    try:
        res = convert(str(path), keep_io_layout=True, **entry.get("convert_options", {}))
    except ConversionError as exc:
        op, _ = _op_of(model, exc.node_name)
        return {
            "status": "error" if isinstance(exc, InternalError) else "refused",
            "reason_code": exc.reason_code,
            "node": exc.node_name,
            "op_type": op,
            "message": _short(exc.message, 300),
        }
    except Exception as exc:  # noqa: BLE001
        return {"status": "error", "message": _short(f"untyped {type(exc).__name__}: {exc}", 300)}
    blob, io_table = bytes(res.tflite_bytes), res.report.get("io")
    out = _in_child(_litert_agreement, blob, feeds, io_table, expected)
    if out.get("status") == "mismatch":  # the pinned run's rule beyond strict applies too
        qdq = has_qdq(model)
        judged = _in_child(_unpinned_rule, path, blob, feeds, io_table, expected, qdq, timeout=420)
        if judged.get("passed"):
            out.update(status="pass", pass_rule=judged["rule"], strict_message=out.pop("message"))
        elif judged.get("rule"):
            out["message"] = _short(f"{out['message']}; {judged['rule']} rule: {judged['why']}")
    out["dynamic_inputs"] = (
        sorted(
            r["name"]
            for r in res.report.get("io") or []
            if r.get("kind") == "input" and -1 in (r.get("shape_signature") or [])
        )
        or None
    )
    return {k: v for k, v in out.items() if v is not None}


def _unpinned_rule(path, blob: bytes, feeds, io_table, expected, qdq: bool) -> dict:
    """The verdict of the rule beyond strict (pass_rules.py) for an unpinned file that missed
    the strict tolerance: judged exactly as the pinned run is."""
    from onnx2tflite_direct.validate import compare, run_litert

    actual = run_litert(blob, feeds, io_table)
    outs = {
        k: {
            "ok": bool(m.get("ok")),
            "shape": list(m.get("expected_shape", ())),
            "actual_shape": list(m.get("actual_shape", ())),
        }
        for k, m in compare(expected, actual, atol=ATOL, rtol=RTOL).items()
    }
    return _reference_error(path, feeds, expected, actual, outs, set(), qdq)


def _litert_agreement(blob: bytes, feeds, io_table, expected) -> dict:
    from onnx2tflite_direct.validate import compare, run_litert

    try:
        actual = run_litert(blob, feeds, io_table)
    except Exception as exc:  # noqa: BLE001
        return {
            "status": "load_or_run_failed",
            "message": _short(f"{type(exc).__name__}: {exc}", 300),
        }
    metrics = compare(expected, actual, atol=ATOL, rtol=RTOL)
    bad = {k: m for k, m in metrics.items() if not m.get("ok")}
    if not bad:
        return {"status": "pass"}
    k, m = next(iter(bad.items()))
    if m.get("missing"):
        why = f"{k}: missing"
    elif not m.get("shape_match"):
        why = f"{k}: shape {list(m['actual_shape'])} vs ONNX {list(m['expected_shape'])}"
    else:
        why = f"{k}: max_abs {m['max_abs']:.3g} max_rel {m['max_rel']:.3g}"
    return {"status": "mismatch", "message": why}


def _run_pinned(entry: dict, runs: int, latency: bool) -> dict:
    from onnx2tflite_direct import ConversionError, InternalError, UnsupportedError, convert
    from onnx2tflite_direct.validate import compare, run_litert, run_onnxruntime

    path = model_path(entry["name"])
    rec: dict = {"name": entry["name"]}
    model = onnx.load(str(path))
    rec["onnx_nodes"] = len(model.graph.node)
    # Already statically quantized (decided from the graph, tools/zoo/deploy.py): the integer
    # file is what a user deploys; it is judged by the same pass rules as the float32 file.
    static = deploy.static_quantization(model)
    if static:
        rec["static_quantization"] = static
    domain_ops: dict[str, int] = {}
    for n in model.graph.node:  # ops outside the default domain (contrib, ai.onnx.ml)
        if n.domain not in ("", "ai.onnx"):
            domain_ops[f"{n.domain}:{n.op_type}"] = domain_ops.get(f"{n.domain}:{n.op_type}", 0) + 1
    if domain_ops:
        rec["domain_ops"] = dict(sorted(domain_ops.items()))
    feeds = load_feeds(entry, model)
    rec["input_shapes"] = {k: list(v.shape) for k, v in feeds.items()}
    pins = {k: tuple(v.shape) for k, v in feeds.items()}
    if entry.get("dynamic"):
        pins = None

    t0 = time.perf_counter()
    try:
        expected = run_onnxruntime(path, feeds)
    except Exception as exc:  # noqa: BLE001
        rec.update(status="reference_failed", message=_short(f"{type(exc).__name__}: {exc}"))
        return rec
    rec["reference_seconds"] = round(time.perf_counter() - t0, 3)
    rec["output_std"] = _spread(expected)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        try:
            res = convert(
                str(path),
                tmp,
                keep_io_layout=True,
                input_shapes=pins,
                report_op_coverage=True,
                stem="m",
                **entry.get("convert_options", {}),
            )
        except ConversionError as exc:
            op, domain = _op_of(model, exc.node_name)
            internal = isinstance(exc, InternalError)
            rec.update(
                status="error" if internal else "refused",
                reason_code=exc.reason_code,
                node=exc.node_name,
                op_type=op,
                domain=domain,
                message=_short(exc.message),
                message_full=exc.message[:4000],
                refused_nodes=_refused_nodes(Path(tmp) / "m_op_coverage_report.json"),
                refused_ops=_refused_ops(Path(tmp) / "m_op_coverage_report.json"),
                exception=type(exc).__name__,
            )
            if not internal and not isinstance(exc, UnsupportedError):
                rec["exit_code"] = exc.exit_code
            rec["convert_seconds"] = round(time.perf_counter() - t0, 3)
            return rec
        except Exception as exc:  # noqa: BLE001 - an untyped escape is a converter bug
            rec.update(status="error", message=_short(f"untyped {type(exc).__name__}: {exc}"))
            return rec
        rec["convert_seconds"] = round(time.perf_counter() - t0, 3)
        tflite = bytes(res.tflite_bytes)
        report = res.report
        variants = {k: bytes(v) for k, v in (res.variants or {}).items()}
    rec["tflite_bytes"] = len(tflite)
    rec["transpose_count"] = report.get("transpose_count", 0)
    rec["tflite_ops"] = sum(v["count"] for v in report.get("tflite_ops", {}).values())
    warnings = [r for r in report.get("nodes", []) if r.get("notes")]
    if warnings:
        rec["notes"] = sorted({n for r in warnings for n in r["notes"]})[:10]

    try:
        actual = run_litert(tflite, feeds, report.get("io"))
    except Exception as exc:  # noqa: BLE001
        rec.update(status="load_or_run_failed", message=_short(f"{type(exc).__name__}: {exc}"))
        return rec
    sorted_names = set(entry.get("sorted_outputs", ()))
    if sorted_names:
        rec["compare"] = f"sorted: {sorted(sorted_names)} (ONNX order unstable over near-ties)"
        for k in sorted_names:
            if k in expected and k in actual:
                expected[k] = np.sort(np.asarray(expected[k]), axis=None)
                actual[k] = np.sort(np.asarray(actual[k]), axis=None)
    outs = _output_table(compare(expected, actual, atol=ATOL, rtol=RTOL))
    rec["outputs"] = outs
    qdq = has_qdq(model)
    io_table = report.get("io")
    integer = None
    if static and deploy.INTEGER_FILE in variants:
        integer = _in_child(
            _variant_outputs, variants[deploy.INTEGER_FILE], feeds, io_table, sorted_names
        )
    others = {}
    if integer is not None and "actual" in integer:
        int_outs = _output_table(compare(expected, integer["actual"], atol=ATOL, rtol=RTOL))
        others[deploy.INTEGER_FILE] = (integer["actual"], int_outs)
    bad = [k for k, m in outs.items() if not m["ok"]]
    others_bad = any(not m["ok"] for _, o in others.values() for m in o.values())
    if bad or qdq or others_bad:  # how far onnxruntime is from the exact answer (pass_rules.py)
        judged = _in_child(
            _reference_error,
            path,
            feeds,
            expected,
            actual,
            outs,
            sorted_names,
            qdq,
            others,
            timeout=420 + 120 * len(others),
        )
        if "status" in judged:  # the child died or timed out: no figures, strict rule only
            judged = {"unavailable": "reference-error child: " + judged.get("message", "")}
        judged_others = judged.pop("others", {})
        rec["reference_error"] = judged
        _apply_verdict(rec, outs, judged)
    else:
        judged_others = {}
        _apply_verdict(rec, outs, None)

    if variants:  # already-quantized models also get an integer / dynamic-range file
        rec["variants"] = {
            k: _in_child(_variant_agreement, v, feeds, io_table, expected, sorted_names)
            for k, v in variants.items()
            if not (static and k == deploy.INTEGER_FILE)
        }
        if integer is not None:
            rec["variants"][deploy.INTEGER_FILE] = _judged_variant(
                integer, others.get(deploy.INTEGER_FILE), judged_others.get(deploy.INTEGER_FILE)
            )

    if latency:
        timed_integer = (rec.get("variants") or {}).get(deploy.INTEGER_FILE, {})
        if not (integer is not None and "actual" in integer):
            timed_integer = None  # not run, or LiteRT failed on it: never timed
        try:
            fns = [_ort_runner(path, feeds), _litert_runner(tflite, feeds, io_table)]
            if timed_integer is not None:
                fns.append(_litert_runner(variants[deploy.INTEGER_FILE], feeds, io_table))
            ms, n = _interleaved_latency(fns, runs)
            ort_ms = ms[0]
            rec.update(ort_ms=round(ort_ms, 4), litert_ms=round(ms[1], 4), latency_runs=n)
            rec["latency_ratio"] = round(ms[1] / ort_ms, 3)
            if timed_integer is not None:
                timed_integer.update(
                    ort_ms=round(ort_ms, 4),
                    litert_ms=round(ms[2], 4),
                    latency_ratio=round(ms[2] / ort_ms, 3),
                )
        except Exception as exc:  # noqa: BLE001
            rec["latency_error"] = _short(f"{type(exc).__name__}: {exc}")
    rec["headline"] = deploy.headline(rec)
    return rec


def _output_table(metrics: dict) -> dict:
    """validate.compare's metrics as the record's per-output table."""
    outs = {}
    for k, m in metrics.items():
        outs[k] = {
            "ok": bool(m.get("ok")),
            "shape": list(m.get("expected_shape", ())),
            "actual_shape": list(m.get("actual_shape", ())),
            "max_abs": _num(m.get("max_abs")),
            "max_rel": _num(m.get("max_rel")),
            "sqnr_db": _num(m.get("sqnr_db")),
        }
        if m.get("missing"):
            outs[k]["missing"] = True
    return outs


def _apply_verdict(rec: dict, outs: dict, judged: dict | None) -> None:
    """``rec``'s status from the strict comparison (``outs``) and, for outputs that missed
    it, the verdict of the rule beyond strict (``judged``: _reference_error's answer)."""
    for k, q in ((judged or {}).get("lattice_quanta") or {}).items():
        outs[k]["max_quanta"] = q
    bad = [k for k, m in outs.items() if not m["ok"]]
    if not bad:
        rec.update(status="pass", pass_rule="strict")
        return
    rec["status"] = "mismatch"
    parts = []
    for k in bad:
        m = outs[k]
        if m.get("missing"):
            parts.append(f"{k}: missing from LiteRT outputs")
        elif m["shape"] != m["actual_shape"]:
            parts.append(f"{k}: shape {m['actual_shape']} vs ONNX {m['shape']}")
        else:
            sq = m["sqnr_db"]
            sq = f" SQNR {sq:.1f} dB" if isinstance(sq, float) else ""
            parts.append(f"{k}: max_abs {m['max_abs']:.3g} max_rel {m['max_rel']:.3g}{sq}")
    rec["message"] = _short("; ".join(parts))
    rule = (judged or {}).get("rule")
    if (judged or {}).get("passed"):
        rec.update(status="pass", pass_rule=rule, strict_message=rec.pop("message"))
    elif rule:
        rec["message"] = _short(f"{rec['message']}; {rule} rule: {judged['why']}")


def _variant_outputs(blob: bytes, feeds, io_table, sorted_names) -> dict:
    """A variant file's outputs on the feeds (``{"actual": ...}``), or how LiteRT failed."""
    from onnx2tflite_direct.validate import run_litert

    try:
        actual = run_litert(blob, feeds, io_table)
    except Exception as exc:  # noqa: BLE001
        return {"status": "load_or_run_failed", "message": _short(f"{type(exc).__name__}: {exc}")}
    for k in sorted_names:
        if k in actual:
            actual[k] = np.sort(np.asarray(actual[k]), axis=None)
    return {"actual": actual}


def _judged_variant(ran: dict, compared, judged: dict | None) -> dict:
    """The record of the integer file of a statically quantized model: status by the pass
    rules (as the float32 file's), the rule's figures, and _variant_agreement's summary."""
    if compared is None:  # LiteRT failed on it
        return {k: v for k, v in ran.items() if k != "actual"}
    _, outs = compared
    rec: dict = {}
    _apply_verdict(rec, outs, judged)
    sqnr = [float(m["sqnr_db"]) for m in outs.values() if m.get("sqnr_db") is not None]
    err = [float(m["max_abs"]) for m in outs.values() if m.get("max_abs") is not None]
    rec.update(
        min_sqnr_db=_num(min(sqnr)) if sqnr else None,
        max_abs=_num(max(err)) if err else None,
        shapes_match=all(m["shape"] == m["actual_shape"] for m in outs.values()),
        outputs=outs,
    )
    if judged:
        rec["reference_error"] = judged
    return {k: v for k, v in rec.items() if v is not None}


def _ort_at(path: Path, feeds: dict, level: str) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, (np.asarray(v) for v in sess.run(names, feeds)), strict=True))


FLOAT64_SECONDS = 300  # the float64 evaluation's budget inside the reference-error child


class _time_limit:
    """Raise TimeoutError in the block after ``seconds`` (SIGALRM; onnx.reference runs Python
    between numpy calls, so the signal lands): a slow float64 evaluation falls back to the
    spread rule instead of killing the child and its onnxruntime figures."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def _fire(self, *_):
        raise TimeoutError(f"float64 evaluation over {self.seconds:g} s")

    def __enter__(self):
        import signal

        self.old = signal.signal(signal.SIGALRM, self._fire)
        signal.alarm(int(self.seconds))

    def __exit__(self, *exc):
        import signal

        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)
        return False


def _reference_error(path, feeds, expected, actual, outs, sorted_names, qdq, others=None) -> dict:
    """The reference's own error and the verdict of the rule beyond strict (pass_rules.py).

    onnxruntime at ORT_DISABLE_ALL and ORT_ENABLE_ALL next to the reference (ORT_ENABLE_BASIC),
    and the model's semantics in float64 (tools/zoo/exact_reference.py). For a Q/DQ model the
    figures are recorded even when the strict rule passes (how far each runtime is from the
    exact Q/DQ semantics); the verdict concerns only outputs that missed the strict rule.
    ``others`` (kind -> (actual, outs)): further files of the same model (the integer file of
    a statically quantized model), judged against the same answers, under ``others``."""
    from . import pass_rules as PR
    from .exact_reference import output_steps, run_float64

    def ordered(d):
        return {
            k: np.sort(np.asarray(v), axis=None) if k in sorted_names else np.asarray(v)
            for k, v in d.items()
        }

    model = onnx.load(str(path))
    steps = output_steps(model)
    levels = {"ORT_ENABLE_BASIC": expected}
    for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_ALL"):
        levels[level] = ordered(_ort_at(path, feeds, level))
    out: dict = {
        "ort_levels_vs_reference": {
            lv: {k: PR.figures(expected[k], v[k], steps.get(k)) for k in expected if k in v}
            for lv, v in levels.items()
            if lv != "ORT_ENABLE_BASIC"
        },
    }
    started = time.perf_counter()
    try:
        with _time_limit(FLOAT64_SECONDS):
            exact = ordered(run_float64(model, feeds))
        out["float64"] = {"seconds": round(time.perf_counter() - started, 2)}
    except Exception as exc:  # noqa: BLE001 - an op onnx.reference lacks, or too slow
        exact = None
        out["float64"] = {"unavailable": _short(f"{type(exc).__name__}: {exc}", 200)}
    if exact is not None and not qdq:
        candidates = _rule_candidates(actual, outs, expected)
        closest = PR.closest_level_sqnr(
            {k: {lv: v[k] for lv, v in levels.items()} for k in candidates if k in exact}, exact
        )
        if closest < PR.EXACT_TRUST_DB:  # decision boundaries, or onnx.reference is wrong
            out["float64"]["untrusted"] = (
                f"onnxruntime's closest level is {closest:.1f} dB from it "
                f"(< {PR.EXACT_TRUST_DB:g} dB): judged by the spread rule"
            )
            exact = None
    verdict = functools.partial(
        _file_verdict, expected=expected, levels=levels, exact=exact, steps=steps, qdq=qdq
    )
    out.update(verdict(actual, outs))
    if others:
        out["others"] = {kind: _plain(verdict(a, o)) for kind, (a, o) in others.items()}
    return _plain(out)


def _rule_candidates(actual, outs, expected) -> list[str]:
    """Outputs a rule beyond strict may judge: float, present, of the right shape."""
    from .pass_rules import is_float_output

    return [
        k
        for k, m in outs.items()
        if k in actual and m["shape"] == m["actual_shape"] and is_float_output(expected[k])
    ]


def _file_verdict(actual, outs, *, expected, levels, exact, steps, qdq) -> dict:
    """One converted file's figures and verdict against the answers _reference_error made."""
    from . import pass_rules as PR

    out: dict = {
        "lattice_quanta": {
            k: round(float(np.max(np.abs(actual[k].astype(np.float64) - expected[k]))) / s, 4)
            for k, s in steps.items()
            if k in actual and k in expected and actual[k].shape == expected[k].shape
        },
    }
    candidates = _rule_candidates(actual, outs, expected)
    per_output = {}
    if exact is not None:
        rule = "qdq_semantics" if qdq else "float64"
        for k in (k for k in candidates if k in exact):
            per_output[k] = PR.judge_exact(
                actual[k],
                {lv: v[k] for lv, v in levels.items()},
                exact[k],
                step=steps.get(k),
                atol=ATOL,
                rtol=RTOL,
            )
    elif not qdq:
        rule = "reference_spread"
        for k in candidates:
            per_output[k] = PR.judge_spread(
                actual[k],
                expected[k],
                {lv: v[k] for lv, v in levels.items() if lv != "ORT_ENABLE_BASIC"},
                atol=ATOL,
                rtol=RTOL,
            )
    else:
        rule = None
    out["outputs"] = per_output
    strict_ok = {k: m["ok"] for k, m in outs.items()}
    if rule and not all(strict_ok.values()):
        out["rule"] = rule
        out["passed"] = PR.decide(strict_ok, per_output)
        if not out["passed"]:
            failing = [k for k, ok in strict_ok.items() if not ok]
            k = next((k for k in failing if not per_output.get(k, {}).get("ok")), failing[0])
            out["why"] = f"{k}: " + per_output.get(k, {}).get(
                "why", "no verdict (not a float output)"
            )
    return out


def _plain(v):
    """JSON-ready: numpy scalars to floats, non-finite floats to strings."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return _num(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _in_child(fn, *args, timeout: float = 600):
    """``fn(*args)`` in a forked process: LiteRT aborts the whole process on some files
    (a kernel's Prepare failing a CHECK), which must be recorded, not kill the worker; a
    result not back within ``timeout`` seconds is recorded as a failure too."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def target():
        child.send(fn(*args))

    proc = ctx.Process(target=target)
    proc.start()
    child.close()  # so that the child's death reads as EOF here
    try:
        result = parent.recv() if parent.poll(timeout) else None
    except EOFError:
        result = None
    proc.join(30 if result is not None else 1)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if result is None:
        code = proc.exitcode
        why = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
        return {"status": "load_or_run_failed", "message": f"LiteRT process died ({why})"}
    return result


def _variant_agreement(blob: bytes, feeds, io_table, expected, sorted_names) -> dict:
    """How close a quantized variant comes to onnxruntime on the same feeds: the worst
    output's SQNR and max abs error, and whether it meets the strict float tolerance."""
    from onnx2tflite_direct.validate import compare

    ran = _variant_outputs(blob, feeds, io_table, sorted_names)
    if "actual" not in ran:
        return ran
    actual = ran["actual"]
    metrics = compare(expected, actual, atol=ATOL, rtol=RTOL)
    sqnr = [m.get("sqnr_db") for m in metrics.values() if m.get("sqnr_db") is not None]
    return {
        "status": "pass" if all(m.get("ok") for m in metrics.values()) else "mismatch",
        "min_sqnr_db": _num(min(sqnr)) if sqnr else None,
        "max_abs": _num(max(float(m.get("max_abs", np.inf)) for m in metrics.values())),
        "shapes_match": all(m.get("shape_match") for m in metrics.values()),
    }


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else str(v)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def _worker(name: str, out: str, runs: int) -> int:
    entry = manifest.by_name(name)
    try:
        rec = run_one(entry, runs=runs, unpinned=True)
    except Exception as exc:  # noqa: BLE001 - the runner's own failure, recorded as such
        rec = {
            "name": name,
            "status": "error",
            "message": _short(f"runner: {type(exc).__name__}: {exc}"),
        }
    import onnx2tflite_direct

    rec["converter_path"] = str(Path(onnx2tflite_direct.__file__).parent)
    rec["converter_commit"] = converter_commit()
    Path(out).write_text(json.dumps(rec, indent=1, default=str))
    return 0


def _cached(name: str) -> dict | None:
    p = paths.results_dir() / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def run_in_subprocess(entry: dict, timeout: float, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        src = converter_src()
        pythonpath = str(paths.REPO) if src == paths.REPO else f"{src}{os.pathsep}{paths.REPO}"
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=pythonpath)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tools.zoo.run",
                    "--worker",
                    entry["name"],
                    "--result",
                    str(out),
                    "--runs",
                    str(runs),
                ],
                cwd=tmp,
                env=env,
                timeout=timeout,
                capture_output=True,
                text=True,
            )
        except subprocess.TimeoutExpired:
            return {
                "name": entry["name"],
                "status": "error",
                "message": f"timeout after {timeout:.0f}s",
            }
        if not out.exists():
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            return {
                "name": entry["name"],
                "status": "error",
                "message": _short(f"worker died (exit {proc.returncode}): {' | '.join(tail)}"),
            }
        rec = json.loads(out.read_text())
        rec["wall_seconds"] = round(time.perf_counter() - t0, 2)
        return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="run only this model (repeatable)")
    ap.add_argument("--failed", action="store_true", help="re-run models whose last result failed")
    ap.add_argument("--force", action="store_true")
    ap.add_argument(
        "--keep-stale",
        action="store_true",
        help="reuse cached results even if the converter changed",
    )
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args.worker, args.result, args.runs)

    from .build import load_index

    index = load_index()
    fingerprint = converter_fingerprint()
    paths.results_dir().mkdir(parents=True, exist_ok=True)
    entries = manifest.all_models()
    if args.only:
        unknown = set(args.only) - {e["name"] for e in entries}
        if unknown:
            ap.error(f"unknown model(s): {sorted(unknown)}")
        entries = [e for e in entries if e["name"] in set(args.only)]
    if not args.report_only:
        for entry in entries:
            name = entry["name"]
            built = index.get(name)
            if built is None or not model_path(name).exists():
                print(f"skip {name}: not built (python -m tools.zoo.build --only {name})")
                continue
            key = {
                "model_sha256": built["sha256"],
                "converter": fingerprint,
                "runner": RUNNER_VERSION,
            }
            old = _cached(name)
            if old is not None and not (args.force or args.only):
                same = old.get("key") == key or (
                    args.keep_stale and old.get("key", {}).get("model_sha256") == built["sha256"]
                )
                passed = deploy.passed_everywhere(old)
                if same and not (args.failed and not passed):
                    continue
                if args.failed and passed and same:
                    continue
            rec = run_in_subprocess(entry, args.timeout, args.runs)
            rec["key"] = key
            (paths.results_dir() / f"{name}.json").write_text(
                json.dumps(rec, indent=1, default=str)
            )
            head = deploy.headline(rec)
            extra = (
                rec.get("reason_code") or rec.get("message", "")[:100]
                if rec["status"] != "pass"
                else ""
            )
            if head["file"] != deploy.FLOAT32_FILE or head.get("note"):
                extra = (
                    f"[{head['file']} file; float32 file {rec['status']} "
                    f"{rec.get('latency_ratio', '')}{'; ' + head['note'] if head.get('note') else ''}] "
                    + extra
                )
            ratio = head.get("latency_ratio", "")
            print(f"{head['status']:20s} {name:38s} {ratio!s:7s} {extra}", flush=True)
    if args.only and not args.report_only:
        # One model's run must not rewrite the committed corpus report: with a separate
        # results folder it would hold that model alone.
        print("report not rewritten for an --only run (python -m tools.zoo.run --report-only)")
        return 0
    from .report import write_reports

    j, m = write_reports(index)
    print(f"wrote {j} and {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
