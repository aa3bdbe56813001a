"""int4 weights (``--quantize int4``) on the corpus's transformers, against onnxruntime's 4-bit
MatMul quantizer (issue 21 item 2).

Per model (``tools/zoo``: the BERT-like ``hf_bert_ts``, the GPT-2-like ``hf_gpt2_past_ts``,
``minilm_l6_ts``; their stored feeds are the inputs), SQNR (dB) against the float ONNX model run
in onnxruntime on the same inputs, a model's figure being its worst float output:

* ``ours``: ``<stem>_int4_weight_quant.tflite`` (default ``--int4-size-budget 0.3``) in the
  stock LiteRT CPU interpreter (its default XNNPACK delegate, and the built-in kernels alone:
  both must run it);
* ``ours_budgets``: the same at other budgets (0: 4-bit wherever a kernel takes it);
* ``tables_alone``: per int8 embedding table of the default file, the SQNR with only it
  rounded (4-bit blocks, int8 rows), every other weight float;
* ``ours_without_offsets``, ``ours_block128``: the 4-bit forms (budget 0) with plain symmetric
  blocks only, or blocks of 128;
* ``ort_matmul``: onnxruntime's ``MatMulNBitsQuantizer`` (4 bits, block size 32, its defaults
  otherwise: asymmetric, MatMul nodes only) run in onnxruntime: the anchor;
* ``ort_matmul_gather``: the same quantizer also given ``Gather`` (``GatherBlockQuantized``):
  the anchor quantizing the same weights as ours (embedding tables included).

File sizes are relative to the float32 file of the same converter (ours) or to the float ONNX
file (onnxruntime's). Done when (issue 21): ours <= 0.3x float32, SQNR >= ``ort_matmul`` - 1 dB,
runs in the stock LiteRT CPU interpreter.

onnxruntime's quantizer needs the ``onnx-ir`` package (``pip install onnx-ir``).

    PYTHONPATH=. python benchmarks/bench_int4.py

Writes ``benchmarks/results/int4.json`` and ``int4.md``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct.quant import int4_codes  # noqa: E402
from onnx2tflite_direct.validate import run_litert, run_onnxruntime  # noqa: E402
from tools.zoo import paths  # noqa: E402

MODELS = ("hf_bert_ts", "hf_gpt2_past_ts", "minilm_l6_ts")
# The size/SQNR frontier: the file at other ``--int4-size-budget`` values (0: 4-bit wherever
# a kernel takes it, the file before the budget existed).
BUDGETS = (0.0, 0.2, 0.25, 0.35)
# Beyond the done-when models: ours only (does it run, what does 4-bit cost elsewhere).
OTHER_MODELS = (
    "hf_distilbert_ts",
    "hf_vit_ts",
    "hf_whisper_encoder_ts",
    "tv_resnet18_ts",
    "tv_mobilenet_v3_small_ts",
)
BLOCK = 32
SIZE_TARGET = 0.3
MARGIN_DB = 1.0


def sqnr(actual: np.ndarray, expected: np.ndarray) -> float:
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    noise = max(float(np.sum((a - e) ** 2)), 1e-30)
    return round(float(10 * np.log10(np.sum(e**2) / noise)), 2)


def worst(actual: dict, expected: dict) -> float:
    return min(sqnr(actual[k], v) for k, v in expected.items() if v.dtype.kind == "f")


EXTRA_INPUTS = 7


def extra_feeds(path: Path, feeds: dict, count: int = EXTRA_INPUTS) -> list[dict]:
    """More inputs like the stored ones (the stored GPT-2 feed is one token: one figure is
    noisy): token ids drawn over the largest embedding table, float inputs (past keys and
    values) drawn with the stored ones' spread, masks kept."""
    model = onnx.load(str(path), load_external_data=False)
    sizes = {i.name: i.dims[0] for i in model.graph.initializer if len(i.dims) == 2}
    vocab = max(
        (sizes.get(n.input[0], 0) for n in model.graph.node if n.op_type == "Gather"), default=0
    )
    rng = np.random.default_rng(1)
    out = []
    for _ in range(count):
        f = {}
        for name, v in feeds.items():
            if name.endswith("input_ids") and v.dtype.kind in "iu" and vocab:
                f[name] = rng.integers(0, vocab, v.shape).astype(v.dtype)
            elif v.dtype.kind == "f":
                f[name] = (rng.standard_normal(v.shape) * v.std()).astype(v.dtype)
            else:
                f[name] = v
        out.append(f)
    return out


def mean_worst(run, inputs: list[dict], references: list[dict]) -> float:
    return round(
        float(np.mean([worst(run(f), r) for f, r in zip(inputs, references, strict=True)])), 2
    )


def ort_4bit(path: Path, feeds: dict, expected: dict, ops: tuple[str, ...], more=()) -> dict:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.disable(logging.WARNING)  # (its per-node INFO lines)
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(path)), bits=4, block_size=BLOCK, op_types_to_quantize=ops
    )
    with np.errstate(invalid="ignore", divide="ignore"):  # (all-zero blocks)
        quantizer.process()
    logging.disable(logging.NOTSET)
    model = quantizer.model.model
    blob = model.SerializeToString()
    with tempfile.TemporaryDirectory() as tmp:
        qpath = Path(tmp) / "q.onnx"
        qpath.write_bytes(blob)
        got = run_onnxruntime(qpath, feeds)
        inputs, refs = more or ([], [])
        mean = mean_worst(lambda f: run_onnxruntime(qpath, f), [feeds, *inputs], [expected, *refs])
    kinds = {}
    for n in model.graph.node:
        if n.op_type in ("MatMulNBits", "GatherBlockQuantized"):
            kinds[n.op_type] = kinds.get(n.op_type, 0) + 1
    return {
        "sqnr_db": worst(got, expected),
        "sqnr_db_mean_8_inputs": mean,
        "size_ratio": round(len(blob) / path.stat().st_size, 3),
        "quantized_nodes": kinds,
    }


def ours(
    path: Path, feeds: dict, expected: dict, overrides=(), more=(), block=BLOCK, budget=0.3
) -> dict:
    pins = {k: tuple(v.shape) for k, v in feeds.items()}
    with tempfile.TemporaryDirectory() as tmp:
        res = convert(
            str(path),
            tmp,
            keep_io_layout=True,
            input_shapes=pins,
            quantize=("int4",),
            quant_overrides=list(overrides),
            int4_block_size=block,
            int4_size_budget=budget,
            stem="m",
        )
        f32 = len(res.tflite_bytes)
        blob = res.variants["int4_weight_quant"]
        (entry,) = [s for s in res.report["quantization"] if s["kind"] == "int4_weight_quant"]
        io = res.report.get("io")
        runs = {}
        for label, xnnpack in (("xnnpack", True), ("builtin_kernels", False)):
            try:
                runs[label] = worst(run_litert(blob, feeds, io, use_xnnpack=xnnpack), expected)
            except Exception as exc:  # noqa: BLE001  (a file the interpreter refuses: recorded)
                runs[label] = f"error: {type(exc).__name__}: {exc}"[:300]
        inputs, refs = more or ([], [])
        every, refs = [feeds, *inputs], [expected, *refs]
        mean = mean_worst(lambda f: run_litert(blob, f, io), every, refs)
        builtin = mean_worst(lambda f: run_litert(blob, f, io, use_xnnpack=False), every, refs)
    return {
        "sqnr_db": runs["xnnpack"],
        "sqnr_db_builtin_kernels": runs["builtin_kernels"],
        "sqnr_db_mean_8_inputs": mean,
        "sqnr_db_mean_8_inputs_builtin_kernels": builtin,
        "runs_in_stock_litert": all(isinstance(v, float) for v in runs.values()),
        "size_ratio": round(len(blob) / f32, 3),
        "bytes": len(blob),
        "float32_bytes": f32,
        "weights": entry["weights"],
        "ops": entry["ops"],
        "weight_formats": entry["weight_formats"],
        "int8_chooser": entry.get("int8_chooser"),
    }


def tables_alone(path: Path, feeds: dict, expected: dict, formats: dict) -> dict:
    """Per embedding table (and tied output projection) of the default file: the SQNR with
    only it rounded, as 4-bit blocks and as int8, every other weight float."""
    out = {}
    for node, form in formats.items():
        if not form.startswith(("int8-rows", "int8-tied")):
            continue
        pattern = re.escape(node)
        four = ours(path, feeds, expected, [".*=float", f"{pattern}=int4-weights"])
        eight = ours(path, feeds, expected, [".*=float", f"{pattern}=int8"])
        out[node] = {"int4": four["sqnr_db"], "int8": eight["sqnr_db"]}
    return out


def measure(name: str, anchors: bool = True) -> dict | None:
    folder = paths.models_dir() / name
    path = folder / "model.onnx"
    if not path.exists() or not (folder / "feeds.npz").exists():
        return None
    feeds = dict(np.load(folder / "feeds.npz"))
    expected = run_onnxruntime(path, feeds)
    row = {"name": name}
    if not anchors:
        row["ours"] = ours(path, feeds, expected)
        return row
    inputs = extra_feeds(path, feeds)
    more = (inputs, [run_onnxruntime(path, f) for f in inputs])
    row["ours"] = ours(path, feeds, expected, more=more)
    row["ours_budgets"] = {
        str(b): ours(path, feeds, expected, more=more, budget=b) for b in BUDGETS
    }
    with mock.patch.object(int4_codes, "OFFSET_GAIN_DB", float("inf")):  # plain blocks only
        row["ours_without_offsets"] = ours(path, feeds, expected, more=more, budget=0.0)
    row["ours_block128"] = ours(path, feeds, expected, more=more, block=128, budget=0.0)
    row["tables_alone"] = tables_alone(path, feeds, expected, row["ours"]["weight_formats"])
    row["ort_matmul"] = ort_4bit(path, feeds, expected, ("MatMul",), more=more)
    row["ort_matmul_gather"] = ort_4bit(path, feeds, expected, ("MatMul", "Gather"), more=more)
    o, anchor = row["ours"], row["ort_matmul"]["sqnr_db"]
    row["done"] = {
        "size_ok": o["size_ratio"] <= SIZE_TARGET,
        "sqnr_vs_ort_matmul_db": round(o["sqnr_db"] - anchor, 2),
        "sqnr_ok": o["sqnr_db"] >= anchor - MARGIN_DB,
        "sqnr_vs_ort_matmul_gather_db": round(
            o["sqnr_db"] - row["ort_matmul_gather"]["sqnr_db"], 2
        ),
        "runs_ok": o["runs_in_stock_litert"],
        "mean_8_inputs_vs_ort_matmul_db": round(
            o["sqnr_db_mean_8_inputs"] - row["ort_matmul"]["sqnr_db_mean_8_inputs"], 2
        ),
    }
    return row


def markdown(rows: list[dict]) -> str:
    lines = [
        "# int4 weights vs onnxruntime's 4-bit MatMul quantizer",
        "",
        "Written by `benchmarks/bench_int4.py`. SQNR (dB, worst float output) against the",
        "float ONNX model in onnxruntime on the corpus's stored feeds, then (after the `|`) the",
        f"mean over those and {EXTRA_INPUTS} more inputs like them; sizes relative to each",
        "tool's float file. `ort MatMul`: MatMulNBitsQuantizer, 4 bits, block 32, asymmetric,",
        "MatMul only (its default); `ort +Gather`: also the embedding tables.",
        "",
        "| model | ours: size | ours: SQNR XNNPACK / built-in \\| means | ours, budget 0: "
        "size / SQNR \\| mean | ort MatMul: size / SQNR \\| mean | ort +Gather: size / SQNR "
        "\\| mean | ours - ort MatMul |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        o, g = r["ours"], r["ours_budgets"]["0.0"]
        a, b = r["ort_matmul"], r["ort_matmul_gather"]
        lines.append(
            f"| {r['name']} | {o['size_ratio']:.3f} | {o['sqnr_db']} / "
            f"{o['sqnr_db_builtin_kernels']} \\| {o['sqnr_db_mean_8_inputs']} / "
            f"{o['sqnr_db_mean_8_inputs_builtin_kernels']} | "
            f"{g['size_ratio']:.3f} / {g['sqnr_db']} \\| {g['sqnr_db_mean_8_inputs']} | "
            f"{a['size_ratio']:.3f} / {a['sqnr_db']} \\| {a['sqnr_db_mean_8_inputs']} | "
            f"{b['size_ratio']:.3f} / {b['sqnr_db']} \\| {b['sqnr_db_mean_8_inputs']} | "
            f"{r['done']['sqnr_vs_ort_matmul_db']:+.2f} \\| "
            f"{r['done']['mean_8_inputs_vs_ort_matmul_db']:+.2f} |"
        )
    lines += [
        "",
        "Ours by `--int4-size-budget` (the default 0.3 above): size / SQNR \\| mean; "
        "0 = 4-bit wherever a kernel takes it:",
        "",
        "| model | " + " | ".join(str(b) for b in BUDGETS) + " |",
        "|---|" + "---:|" * len(BUDGETS),
    ]
    for r in rows:
        cells = [
            f"{o['size_ratio']:.3f} / {o['sqnr_db']} \\| {o['sqnr_db_mean_8_inputs']}"
            for o in (r["ours_budgets"][str(b)] for b in BUDGETS)
        ]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Default file's weights, and the chooser's measurement (output SQNR, dB, with "
        "only that weight 4-bit, on seeded random inputs):",
        "",
    ]
    for r in rows:
        o = r["ours"]
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(o["weights"].items()))
        chooser = o.get("int8_chooser") or {}
        heard = chooser.get("output_sqnr_db_one_weight_int4", {})
        picked = {n for n, f in o["weight_formats"].items() if f.startswith("int8-channel")}
        shown = ", ".join(
            f"{n.strip('/').replace('/MatMul', '')} {v}{' (int8)' if n in picked else ''}"
            for n, v in heard.items()
        )
        lines.append(f"- {r['name']}: {kinds}; room {chooser.get('room_bytes', 0)} B; {shown}")
    lines += [
        "",
        "Tables alone (only that weight rounded, every other float; SQNR on the stored "
        "feed): 4-bit blocks / int8 rows:",
        "",
    ]
    for r in rows:
        for node, t in r["tables_alone"].items():
            lines.append(f"- {r['name']} {node}: {t['int4']} / {t['int8']}")
    lines += ["", "Ours with `--int4-block-size 128` (budget 0): size / SQNR \\| mean:", ""]
    for r in rows:
        n = r["ours_block128"]
        lines.append(
            f"- {r['name']}: {n['size_ratio']:.3f} / {n['sqnr_db']} \\| {n['sqnr_db_mean_8_inputs']}"
        )
    lines += [
        "",
        "Ours with plain blocks only (no per-block offsets; budget 0): size / SQNR \\| mean:",
        "",
    ]
    for r in rows:
        n = r["ours_without_offsets"]
        lines.append(
            f"- {r['name']}: {n['size_ratio']:.3f} / {n['sqnr_db']} \\| {n['sqnr_db_mean_8_inputs']}"
        )
    return "\n".join(lines) + "\n"


def markdown_others(rows: list[dict]) -> str:
    lines = [
        "",
        "Other corpus models (ours only; no anchor):",
        "",
        "| model | size | SQNR (XNNPACK / built-in) | weight tensors |",
        "|---|---:|---:|---|",
    ]
    for r in rows:
        o = r["ours"]
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(o["weights"].items()))
        lines.append(
            f"| {r['name']} | {o['size_ratio']:.3f} | {o['sqnr_db']} / "
            f"{o['sqnr_db_builtin_kernels']} | {kinds} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    rows = [r for r in (measure(n) for n in MODELS) if r is not None]
    others = [r for r in (measure(n, anchors=False) for n in OTHER_MODELS) if r is not None]
    for r in rows:
        print(json.dumps({"name": r["name"], **r["done"]}))
    out = ROOT / "benchmarks" / "results" / "int4.json"
    results = {"block_size": BLOCK, "models": rows, "other_models": others}
    out.write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(rows) + markdown_others(others))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
