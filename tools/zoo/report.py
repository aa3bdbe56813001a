"""coverage_reports/zoo.{json,md} from the cached per-model results."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections import Counter

from . import deploy, manifest, paths
from .pass_rules import RULE_LABELS


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=paths.REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def _versions() -> dict:
    out = {}
    for mod in ("onnxruntime", "ai_edge_litert", "onnx", "numpy"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception:  # noqa: BLE001
            out[mod] = None
    return out


def collect(index: dict) -> list[dict]:
    from .run import categorize

    rows = []
    for entry in manifest.all_models():
        name = entry["name"]
        p = paths.results_dir() / f"{name}.json"
        built = index.get(name)
        rec = json.loads(p.read_text()) if p.exists() else {"name": name, "status": "not_run"}
        if built is None and rec["status"] == "not_run":
            rec["status"] = "not_built"
        row = {
            "name": name,
            "source": entry["source"],
            "package": entry.get("package"),
            "version": entry.get("version"),
            "generator": entry.get("generator"),
            "seed": entry.get("seed") if entry["source"] == "generator" else None,
            "exporter": entry.get("exporter"),
            "domain": entry.get("domain"),
            "sha256": (built or {}).get("sha256"),
            **{k: v for k, v in rec.items() if k not in ("name", "key")},
        }
        row["category"] = (
            categorize({**rec, "exporter": entry.get("exporter")})
            if rec["status"] not in ("not_run", "not_built")
            else None
        )
        if rec["status"] not in ("not_run", "not_built"):  # records older than the rule
            row["headline"] = rec.get("headline") or deploy.headline(rec)
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def _head(r: dict) -> dict:
    """The row's headline (tools/zoo/deploy.py): the file a user deploys."""
    return r.get("headline") or deploy.headline(r)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarize(rows: list[dict]) -> dict:
    """Corpus figures. Status, pass rate and the median latency ratio describe each model's
    headline file (tools/zoo/deploy.py: the integer file of an already statically quantized
    model, else the float32 file); ``float32_files`` gives the same figures for the float32
    files, so that nothing is hidden."""
    ran = [r for r in rows if r["status"] not in ("not_run", "not_built")]
    heads = {r["name"]: _head(r) for r in ran}
    status = Counter(heads[r["name"]]["status"] for r in ran)
    cats = Counter(
        r["category"] for r in ran if r.get("category") and heads[r["name"]]["status"] != "pass"
    )
    reasons = Counter(r.get("reason_code") for r in ran if r["status"] == "refused")
    ratios = [
        h["latency_ratio"]
        for h in heads.values()
        if h["status"] == "pass" and h.get("latency_ratio")
    ]
    f32_ratios = [
        r["latency_ratio"] for r in ran if r["status"] == "pass" and r.get("latency_ratio")
    ]
    packages = {r["package"] for r in ran if r.get("package")}
    exporters = Counter(r.get("exporter_family") or _family(r.get("exporter", "")) for r in ran)
    static = [r for r in ran if r.get("static_quantization")]
    return {
        "models": len(ran),
        "not_run": len(rows) - len(ran),
        "packages": len(packages),
        "exporter_families": dict(sorted(exporters.items())),
        "by_status": dict(sorted(status.items())),
        "pass_rate": round(status.get("pass", 0) / len(ran), 4) if ran else None,
        # which rule each pass met (tools/zoo/pass_rules.py): never a silent widening
        "pass_by_rule": dict(
            sorted(
                Counter(
                    h.get("pass_rule", "strict") for h in heads.values() if h["status"] == "pass"
                ).items()
            )
        ),
        "failures_by_category": dict(sorted(cats.items())),
        "refusals_by_reason": dict(sorted((k or "?", v) for k, v in reasons.items())),
        "median_latency_ratio_litert_over_ort": _median(ratios),
        "latency_ratio_models": len(ratios),
        # the headline file of already statically quantized models (tools/zoo/deploy.py)
        "statically_quantized": len(static),
        "headline_integer_files": sorted(
            r["name"] for r in static if heads[r["name"]]["file"] == deploy.INTEGER_FILE
        ),
        "headline_fallbacks": {
            r["name"]: heads[r["name"]]["note"] for r in static if heads[r["name"]].get("note")
        },
        "float32_files": {
            "by_status": dict(sorted(Counter(r["status"] for r in ran).items())),
            "pass_by_rule": dict(
                sorted(
                    Counter(
                        r.get("pass_rule", "strict") for r in ran if r["status"] == "pass"
                    ).items()
                )
            ),
            "median_latency_ratio_litert_over_ort": _median(f32_ratios),
            "latency_ratio_models": len(f32_ratios),
        },
        # references whose every float output is nearly constant (a weak test of the model)
        "near_constant_references": sorted(
            r["name"] for r in ran if r.get("output_std") and max(r["output_std"].values()) < 1e-3
        ),
        "variants_by_status": _variant_counts(ran),
        "unpinned_by_status": dict(
            sorted(Counter(r["unpinned"]["status"] for r in ran if r.get("unpinned")).items())
        ),
        "unpinned_applicable": sum(1 for r in ran if r.get("unpinned")),
        "transpose_total": sum(r.get("transpose_count", 0) for r in ran if r["status"] == "pass"),
    }


def _unpinned_cell(r: dict) -> str:
    u = r.get("unpinned")
    if not u:
        return "static" if r.get("status") not in ("not_run", "not_built") else ""
    return u["status"] + (f" `{u['reason_code']}`" if u.get("reason_code") else "")


def _variant_counts(rows: list[dict]) -> dict:
    """Integer / dynamic-range files made from already-quantized models: status counts."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        for kind, v in (r.get("variants") or {}).items():
            counts = out.setdefault(kind, {})
            counts[v["status"]] = counts.get(v["status"], 0) + 1
    return out


def _family(exporter: str) -> str:
    e = exporter.lower()
    for key, fam in (
        ("dynamo", "torch.onnx dynamo"),
        ("torchscript", "torch.onnx TorchScript"),
        ("torch.onnx", "torch.onnx TorchScript"),
        ("paddle2onnx", "paddle2onnx"),
        ("tf2onnx", "tf2onnx"),
        ("keras2onnx", "keras2onnx"),
        ("spox", "spox"),
        ("optimizer", "onnxruntime transformer optimizer"),
        ("quantize_dynamic", "onnxruntime quantize_dynamic"),
        ("quantize_static", "onnxruntime quantize_static"),
        ("skl2onnx", "skl2onnx"),
        ("onnxmltools", "onnxmltools"),
    ):
        if key in e:
            return fam
    return exporter or "?"


def _md(rows: list[dict], summary: dict, meta: dict) -> str:
    lines = [
        "# Real-model corpus (issue 17)",
        "",
        f"Converter commit `{meta['converter_commit']}`, written {meta['written']}; "
        f"onnxruntime {meta['versions'].get('onnxruntime')}, ai-edge-litert "
        f"{meta['versions'].get('ai_edge_litert')}. Rebuild: `python -m tools.zoo.build`; "
        "run: `python -m tools.zoo.run` (one model: `--only NAME`).",
        "",
        "Each model: realistic inputs as its package prepares them, onnxruntime reference, "
        "`convert(..., keep_io_layout=True)` with the feed shapes pinned, LiteRT, comparison by "
        f"ONNX output name and shape with rtol {meta['rtol']} and atol {meta['atol']} "
        "(`|a-e| <= atol*max(1,max|e|) + rtol*|e|`). Latency: median of >= 20 runs after "
        "warm-up, 1 thread (LiteRT with XNNPACK; onnxruntime at its default optimisation level).",
        "",
        "Where onnxruntime itself rounds by more than that tolerance, an output that misses it "
        "may pass by a second rule, named in the status column (tools/zoo/pass_rules.py, "
        "tools/zoo/README.md): **pass (Q/DQ semantics)** / **pass (float64 reference)**: "
        "against the model's semantics evaluated in float64, each op's float32 result correctly "
        "rounded (for a Q/DQ model: dequantize, compute, quantize with round-half-to-even), LiteRT is at least as close as "
        "onnxruntime at its closest optimisation level (SQNR >= onnxruntime's best - 1 dB, and "
        "every element within onnxruntime's max error + one quantum, or + the strict tolerance "
        "for outputs not on a quantization lattice); **pass (within the reference's own "
        "spread)**, only for float models without a float64 evaluation: within "
        "max(strict, 2 x the disagreement between onnxruntime's optimisation levels). Integer "
        "outputs and shapes must always be exact. The figures of every such verdict (and of "
        "every Q/DQ model) are in the last section and in zoo.json (`reference_error`).",
        "",
        HEADLINE_TEXT,
        "",
        "## Summary",
        "",
        f"- models run: **{summary['models']}** from **{summary['packages']}** PyPI packages "
        f"and generators; exporter families: "
        + ", ".join(f"{k} ({v})" for k, v in summary["exporter_families"].items()),
        "- by status (headline file): "
        + ", ".join(f"{k} {v}" for k, v in summary["by_status"].items()),
        "- passes by rule: "
        + ", ".join(f"{k} {v}" for k, v in summary.get("pass_by_rule", {}).items()),
        f"- pass rate (headline file): **{summary['pass_rate']:.1%}**"
        if summary["pass_rate"] is not None
        else "- pass rate: n/a",
        *_headline_summary(summary),
        "- failures by root-cause category: "
        + (", ".join(f"{k} {v}" for k, v in summary["failures_by_category"].items()) or "none"),
        "- refusals by reason code: "
        + (", ".join(f"`{k}` {v}" for k, v in summary["refusals_by_reason"].items()) or "none"),
        f"- unpinned (inputs' dynamic dims left dynamic, as `--keep-io-layout` alone does) on "
        f"the {summary['unpinned_applicable']} models that have dynamic dims: "
        + (", ".join(f"{k} {v}" for k, v in summary["unpinned_by_status"].items()) or "n/a"),
        "- integer / dynamic-range files of already-quantized models (the integer files of "
        "statically quantized models by the pass rules, the others against the strict float "
        "tolerance; SQNR per model in the last table): "
        + (
            "; ".join(
                f"{k}: " + ", ".join(f"{st} {n}" for st, n in v.items())
                for k, v in summary["variants_by_status"].items()
            )
            or "none"
        ),
        f"- median LiteRT/onnxruntime latency ratio (headline file) over "
        f"{summary['latency_ratio_models']} passing models: "
        f"**{summary['median_latency_ratio_litert_over_ort']}**",
        "",
        "## Models",
        "",
        "Status, LiteRT ms and ratio: the headline file (column `file`); TRANSPOSE: the float32 "
        "file's.",
        "",
        "| model | source | exporter | file | status | reason / message | TRANSPOSE | LiteRT ms | ORT ms | ratio | unpinned |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        src = (
            f"{r['package']} {r['version']}"
            if r.get("package")
            else f"gen:{r.get('generator')} seed {r.get('seed', 0)}"
        )
        why = ""
        if r["status"] not in ("pass", "not_run", "not_built"):
            where = f"{r.get('op_type') or ''} `{r.get('node') or ''}`: " if r.get("node") else ""
            code = f"`{r['reason_code']}` " if r.get("reason_code") else ""
            why = f"{code}{where}{r.get('message', '')}"[:220].replace("|", "/")
            if r.get("category"):
                why += f" [{r['category']}]"
        elif r.get("compare"):
            why = r["compare"]

        def f(v):
            return f"{v:.3f}" if isinstance(v, (int, float)) else ""

        head = _head(r) if r["status"] not in ("not_run", "not_built") else {}
        shown = (
            r
            if head.get("file", deploy.FLOAT32_FILE) == deploy.FLOAT32_FILE
            else (r["variants"][deploy.INTEGER_FILE])
        )
        status = shown["status"]
        if status == "pass" and shown.get("pass_rule", "strict") != "strict":
            status = _status_label(shown)
            why = f"strict: {shown.get('strict_message', '')}"[:220].replace("|", "/")
        if head.get("note"):
            why = f"{why} [{head['note']}]".strip().replace("|", "/")
        elif shown is not r and r["status"] != "pass":  # never hide the float32 file's failure
            why = f"{why} [float32 file: {r['status']}: {r.get('message', '')}]"
            why = why.strip()[:300].replace("|", "/")
        lines.append(
            f"| {r['name']} | {src} | {r.get('exporter', '')} | {_file_cell(head)} | "
            f"{status} | {why} | "
            f"{r.get('transpose_count', '') if r['status'] == 'pass' else ''} | "
            f"{f(head.get('litert_ms'))} | {f(head.get('ort_ms'))} | "
            f"{f(head.get('latency_ratio'))} | {_unpinned_cell(r)} |"
        )
    lines += _static_table(rows)
    lines += _reference_error_table(rows)
    variant_rows = [(r, k, v) for r in rows for k, v in (r.get("variants") or {}).items()]
    if variant_rows:
        lines += [
            "",
            "## Variants of already-quantized models",
            "",
            "Next to the float32 file (which keeps the exact Q/DQ or integer-op semantics), the "
            "converter writes an integer or dynamic-range file from the model's own scales. "
            "Compared with onnxruntime on the same feeds (SQNR of the worst output); status: the "
            "integer file of a statically quantized model by the pass rules (it is that model's "
            "headline file), the others against the strict float tolerance.",
            "",
            "| model | variant | status | min SQNR dB | max abs | note |",
            "|---|---|---|---:|---:|---|",
        ]
        for r, k, v in variant_rows:
            sq = v.get("min_sqnr_db")
            sq = f"{sq:.1f}" if isinstance(sq, (int, float)) else str(sq or "")
            ma = v.get("max_abs")
            ma = f"{ma:.3g}" if isinstance(ma, (int, float)) else str(ma or "")
            note = v.get("message") or (
                f"strict: {v['strict_message']}" if v.get("strict_message") else ""
            )
            note = note.replace("|", "/")
            lines.append(f"| {r['name']} | {k} | {_status_label(v)} | {sq} | {ma} | {note[:220]} |")
    return "\n".join(lines) + "\n"


HEADLINE_TEXT = (
    "**Headline file.** A model that is already statically quantized (decided from its graph, "
    "tools/zoo/deploy.py: QuantizeLinear -> DequantizeLinear pairs on activations, or QLinear* "
    "ops) runs in onnxruntime on fused integer kernels, while our float32 file is an exact "
    "float emulation of its Q/DQ graph; what a user deploys is the integer file the converter "
    "writes from the model's own scales (`<stem>_integer_quant.tflite`: float I/O, integer "
    "kernels). For such a model the status, pass rate and latency ratio shown are the integer "
    "file's (column `file`), judged by the same pass rules as a float32 file (strict, else Q/DQ "
    "semantics). If its integer file is missing or fails its check, the row shows the float32 "
    "file and says why; the choice never looks at which file is faster. The float32 files' "
    "status and latency stay in the section 'Already statically quantized models' and in "
    "zoo.json (per model: top-level fields = float32 file, `headline` = the file shown)."
)


def _status_label(v: dict) -> str:
    """A file's status, naming the rule of a pass beyond strict."""
    if v.get("status") == "pass" and v.get("pass_rule", "strict") != "strict":
        return RULE_LABELS.get(v["pass_rule"], f"pass ({v['pass_rule']})")
    return str(v.get("status", ""))


def _file_cell(head: dict) -> str:
    if not head:
        return ""
    return "integer" if head["file"] == deploy.INTEGER_FILE else "float32"


def _headline_summary(summary: dict) -> list[str]:
    n = summary.get("statically_quantized", 0)
    if not n:
        return []
    f32 = summary.get("float32_files", {})
    lines = [
        f"- headline file: the integer file for {len(summary['headline_integer_files'])} of the "
        f"{n} already statically quantized models"
        + (
            "; falls back to the float32 file for "
            + "; ".join(f"{k} ({v})" for k, v in summary["headline_fallbacks"].items())
            if summary.get("headline_fallbacks")
            else ""
        ),
    ]
    if f32:
        lines.append(
            "- float32 files: "
            + ", ".join(f"{k} {v}" for k, v in f32["by_status"].items())
            + " (by rule: "
            + ", ".join(f"{k} {v}" for k, v in f32["pass_by_rule"].items())
            + f"); median latency ratio {f32['median_latency_ratio_litert_over_ort']} over "
            f"{f32['latency_ratio_models']} passing models"
        )
    return lines


def _static_table(rows: list[dict]) -> list[str]:
    """Already statically quantized models: both files side by side, so that nothing is hidden."""

    def f(v, fmt="{:.3f}"):
        return fmt.format(v) if isinstance(v, (int, float)) else ""

    out = []
    for r in rows:
        if not r.get("static_quantization"):
            continue
        head = _head(r)
        integer = (r.get("variants") or {}).get(deploy.INTEGER_FILE) or {}
        note = (head.get("note") or "").replace("|", "/")
        out.append(
            f"| {r['name']} | {r['static_quantization']} | {_file_cell(head)} | "
            f"{_status_label(integer) if integer else 'absent'} | {f(integer.get('litert_ms'))} | "
            f"{f(integer.get('latency_ratio'))} | {_status_label(r)} | {f(r.get('litert_ms'))} | "
            f"{f(r.get('latency_ratio'))} | {f(r.get('ort_ms'))} | {note} |"
        )
    if not out:
        return []
    return [
        "",
        "## Already statically quantized models: integer file (headline) and float32 file",
        "",
        "Both files of each model, timed in one interleaved loop with onnxruntime (1 thread); "
        "status by the same pass rules.",
        "",
        "| model | static quantization (graph) | headline | integer status | integer LiteRT ms | "
        "integer ratio | float32 status | float32 LiteRT ms | float32 ratio | ORT ms | note |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---|",
        *out,
    ]


def _fig(f: dict | None, key: str = "sqnr_db") -> str:
    if not f:
        return ""
    v = f.get(key)
    if isinstance(v, (int, float)):
        return f"{v:.1f}" if key == "sqnr_db" else (f"{v:g}" if key == "max_quanta" else f"{v:.3g}")
    return str(v or "")


def _reference_error_table(rows: list[dict]) -> list[str]:
    """Per output judged beyond strict (and every Q/DQ model's output): how far LiteRT and
    onnxruntime's levels are from the float64 evaluation of the model's semantics."""
    out = []
    files = []  # (label, judged, the file's strict comparison per output)
    for r in rows:
        files.append((r["name"], r.get("reference_error") or {}, r.get("outputs") or {}))
        integer = (r.get("variants") or {}).get(deploy.INTEGER_FILE) or {}
        if integer.get("reference_error"):  # a statically quantized model's integer file
            label = f"{r['name']} (integer file)"
            files.append((label, integer["reference_error"], integer.get("outputs") or {}))
    for name, ev, compared in files:
        for k, v in (ev.get("outputs") or {}).items():
            if "litert_vs_exact" in v:
                levels = v.get("ort_vs_exact", {})
                unit = "max_quanta" if v.get("step") else "max_abs"
                ort = "; ".join(
                    f"{lv.replace('ORT_', '').lower()} {_fig(f)} dB / {_fig(f, unit)}"
                    for lv, f in levels.items()
                )
                mine = f"{_fig(v['litert_vs_exact'])} dB / {_fig(v['litert_vs_exact'], unit)}"
                basis = (
                    "Q/DQ semantics"
                    if ev.get("rule") == "qdq_semantics" or v.get("step")
                    else "float64"
                )
            elif "litert_vs_ort" in v:
                unit = "max_abs"
                ort = "; ".join(
                    f"{lv.replace('ORT_', '').lower()} {_fig(f)} dB / {_fig(f, unit)}"
                    for lv, f in v.get("ort_levels_vs_ort", {}).items()
                )
                mine = f"{_fig(v['litert_vs_ort'])} dB / {_fig(v['litert_vs_ort'], unit)}"
                basis = "onnxruntime basic (spread)"
            else:
                continue
            q = compared.get(k) or {}
            vs_ort = f"{_fig(q)} dB / " + (
                f"{q['max_quanta']:g} q"
                if isinstance(q.get("max_quanta"), (int, float))
                else _fig(q, "max_abs")
            )
            if q.get("ok"):  # met the strict rule: the figures are evidence, not the verdict
                verdict = "strict" + ("" if v.get("ok") else f" (this rule alone: {v.get('why')})")
            else:
                verdict = "ok" if v.get("ok") else v.get("why", "fails")
            out.append(
                f"| {name} | {k} | {basis} | {unit.replace('max_', 'max ')} | {mine} | "
                f"{ort} | {vs_ort} | {verdict} |"
            )
    if not out:
        return []
    return [
        "",
        "## The reference's own error",
        "",
        "Outputs judged beyond the strict rule, and every output of a Q/DQ model: SQNR (dB) and "
        "max error (in quanta of the output's DequantizeLinear for lattice outputs, else "
        "absolute) against the model's semantics evaluated in float64, for LiteRT and for "
        "onnxruntime at each optimisation level; LiteRT against the corpus reference "
        "(onnxruntime basic); the verdict of the rule (see the header). Rows marked "
        "'(integer file)': a statically quantized model's integer file, its headline file.",
        "",
        "| model | output | exact answer | unit | LiteRT vs exact | onnxruntime levels vs exact | "
        "LiteRT vs onnxruntime | verdict |",
        "|---|---|---|---|---|---|---|---|",
        *out,
    ]


def write_reports(index: dict):
    from .run import ATOL, RTOL, converter_commit

    rows = collect(index)
    summary = summarize(rows)
    commits = sorted({r.get("converter_commit") for r in rows if r.get("converter_commit")})
    meta = {
        "converter_commit": ", ".join(commits) or converter_commit(),
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": _versions(),
        "rtol": RTOL,
        "atol": ATOL,
        # what the generated models were exported with (tools/zoo/build.py's index)
        "exporter_versions": next(
            (v["library_versions"] for v in index.values() if v.get("library_versions")), {}
        ),
    }
    paths.REPORT_JSON.parent.mkdir(parents=True, exist_ok=True)
    paths.REPORT_JSON.write_text(
        json.dumps({**meta, "summary": summary, "models": rows}, indent=1, default=str) + "\n"
    )
    paths.REPORT_MD.write_text(_md(rows, summary, meta))
    return paths.REPORT_JSON, paths.REPORT_MD
