"""XNNPACK partitions per model: how many DELEGATE nodes, and which ops stay outside XNNPACK.

On CPU, LiteRT hands the ops XNNPACK accepts to it as partitions (one DELEGATE node each) and
runs everything else on its reference kernels; every partition boundary costs a hand-over. For
every model of the real-model corpus that converts (``coverage_reports/zoo.json`` status
``pass`` or ``mismatch``; ``--all`` tries every built model) and for the generated benchmark
models (``benchmarks/models.py``): convert the float32 file as the corpus runner does
(``keep_io_layout=True``, the feed shapes as pins), build the interpreter with XNNPACK
(``validate.make_interpreter``), ``allocate_tensors()``, and read ``_get_ops_details()``.

Which original node a DELEGATE node replaced is not exposed, so it is recovered from the
dataflow: a partition's node owns every node that produces one of its outputs, and, walking
backwards, every producer of an input of an owned node unless that tensor is one of the
partition's own inputs. Nodes owned by no partition are the ops left outside XNNPACK (named in
the table). Only the primary subgraph is counted (XNNPACK does not enter WHILE/IF bodies;
the control-flow op itself is listed as outside).

    PYTHONPATH=. python benchmarks/bench_partitions.py [--only NAME ...] [--all] [--no-bench]
        [--label after] [--out benchmarks/results/partitions.json]

Each model runs in a forked child with a timeout (LiteRT aborts the process on a few files).
Results are merged into the JSON under ``--label`` (``before`` / ``after``), so one file keeps
both measurements; the .md table next to it is rewritten from the whole JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "partitions.json"
CHECK = False  # --check: also compare every output with onnxruntime
ZOO_JSON = ROOT / "coverage_reports" / "zoo.json"
CONVERTED = ("pass", "mismatch")
RECURRENT_ONNX = {"LSTM", "GRU", "RNN", "Scan", "Loop", "If"}
QUANT_ONNX = {
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "QLinearConv",
    "QLinearMatMul",
}


def owned_nodes(ops: list[dict]) -> tuple[dict[int, int], list[int]]:
    """(original node index -> delegate node index, delegate node indices) from the dataflow."""
    producer: dict[int, int] = {}
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    for o in originals:
        for t in o["outputs"]:
            producer[int(t)] = o["index"]
    by_index = {o["index"]: o for o in originals}
    owner: dict[int, int] = {}
    for d in delegates:
        inputs = {int(t) for t in d["inputs"]}
        stack = [producer[int(t)] for t in d["outputs"] if int(t) in producer]
        while stack:
            n = stack.pop()
            if n in owner:
                continue
            owner[n] = d["index"]
            for t in by_index[n]["inputs"]:
                t = int(t)
                if t >= 0 and t not in inputs and t in producer:
                    stack.append(producer[t])
    return owner, [d["index"] for d in delegates]


def count_partitions(tflite: bytes) -> dict:
    """Partitions and the ops outside XNNPACK for one .tflite file."""
    from onnx2tflite_direct.validate import make_interpreter

    interp = make_interpreter(tflite, num_threads=1)
    interp.allocate_tensors()
    ops = interp._get_ops_details()
    owner, delegates = owned_nodes(ops)
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    outside = Counter(o["op_name"] for o in originals if o["index"] not in owner)
    total = len(originals)
    delegated = total - sum(outside.values())
    return {
        "tflite_ops": total,
        "partitions": len(delegates),
        "delegated_ops": delegated,
        "delegated_share": round(delegated / total, 4) if total else 1.0,
        "outside": dict(outside.most_common()),
    }


def integer_inputs(model) -> bool:
    """Does the model take integer inputs (token ids, masks)? Their GATHER / index arithmetic
    has no XNNPACK kernel in any form, so such models are also counted apart."""
    inits = {i.name for i in model.graph.initializer}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    return any(
        i.type.tensor_type.elem_type not in floats for i in model.graph.input if i.name not in inits
    )


INT_MOVERS = {"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Transpose", "Expand"}
LOOKUPS = {"Gather", "GatherElements", "GatherND"}
SHAPE_ONLY = {"Shape", "Size"}  # read only the (pinned) shape, not the values


def floor_ops(model, input_shapes: dict | None = None) -> dict:
    """A lower bound on the ops outside XNNPACK whatever the converter emits (ONNX graph).

    XNNPACK's delegate takes only float32/float16 (and quantized int8/uint8) tensors and has
    no GATHER/GATHER_ND kernel (tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc: no
    case for kTfLiteBuiltinGather/GatherNd, and every node's tensors are checked for a float
    or quantized type). Hence, per integer/bool graph input that some node reads:

    * each embedding lookup indexed by it (a Gather of a constant table whose indices are the
      input, through data movement only): the GATHER and the wrap of negative indices
      (FLOOR_MOD: ONNX lets Gather indices be negative, and a raw user input may be): 2 ops;
      ``com.microsoft`` EmbedLayerNormalization counts as the lookups it holds;
    * any other use of its values (a mask): the one op that reads it (a CAST to float32);
    * each lookup whose indices are computed from it by arithmetic (RoBERTa's position ids):
      none when the table is within ``gather_one_hot``'s bounds (``mask_integers.MAX_ROWS``
      rows, ``MAX_MACS`` multiply-adds for the index count, taken as the largest integer
      input's, from ``input_shapes`` or the static dims): the index is carried in float and
      the lookup is an exact one-hot product that XNNPACK takes (RoBERTa-base's 514 positions
      qualify); else the GATHER and a CAST of the float-carried index back to int32: 2 ops.

    A one-hot matrix product would replace a GATHER exactly, at S x V x D multiply-adds (a
    30k-word vocabulary: hundreds of times the encoder's own cost), so lookups of integer
    inputs are counted; ids fed as floats (Keras exports) have floor 0 here.
    """
    inits = {i.name for i in model.graph.initializer}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    ints = {
        i.name
        for i in model.graph.input
        if i.name not in inits and i.type.tensor_type.elem_type not in floats
    }
    nodes = _live_nodes(model)
    one_hot = _one_hot_tables(model, nodes, ints, input_shapes or {})
    uniform = set()  # constant tables whose elements are all equal (torch's zero buffers)
    tensors = _constant_tensors(model, nodes)
    for name, t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            continue  # weights (the model was read without its external data)
        arr = onnx.numpy_helper.to_array(t)
        if arr.size and arr.size < 1 << 20 and np.all(arr == arr.reshape(-1)[0]):
            uniform.add(name)
    consts = set(inits)  # values known at conversion time (constants, shapes and their math)
    for node in nodes:
        if node.op_type in SHAPE_ONLY or all(i in consts for i in node.input if i):
            consts.update(o for o in node.output if o)
            copies = node.op_type in INT_MOVERS | {"Tile", "Slice"} and node.input[0] in uniform
            if copies or node.op_type == "ConstantOfShape":
                uniform.update(node.output)
    raw = {n: n for n in ints}  # value -> the input it moves unchanged
    derived = set(ints)  # values computed from an integer input
    lookups: Counter = Counter()
    other_use: set[str] = set()
    computed = 0
    for node in nodes:
        if node.op_type in SHAPE_ONLY:
            continue
        if node.op_type == "EmbedLayerNormalization":
            for idx in node.input[:2]:
                if idx in raw:
                    lookups[raw[idx]] += 1
            for idx in node.input[7:8]:
                if idx in raw:
                    other_use.add(raw[idx])
            continue
        if node.op_type in LOOKUPS and len(node.input) > 1 and node.input[0] in uniform:
            consts.update(node.output)  # every element of the table is one value
            continue
        if node.op_type in LOOKUPS and len(node.input) > 1 and node.input[0] in consts:
            idx = node.input[1]
            if idx in raw:
                lookups[raw[idx]] += 1
                continue
            if idx in derived:
                computed += node.input[0] not in one_hot
                continue
        ins = [i for i in node.input if i in derived]
        if not ins:
            continue
        derived.update(o for o in node.output if o)
        const_rest = all(i in consts or not i for i in node.input[1:])
        moves = node.op_type in INT_MOVERS | {"Gather", "Slice", "Split"} and const_rest
        if node.op_type == "Cast":  # int64 -> int32 of ids: the same values
            to = next((a.i for a in node.attribute if a.name == "to"), 0)
            moves = to in (onnx.TensorProto.INT32, onnx.TensorProto.INT64)
        if moves and node.input[0] in raw:
            for o in node.output:
                raw[o] = raw[node.input[0]]
        else:
            other_use.update(raw[i] for i in ins if i in raw)
    count = sum(2 * lookups[n] + (n in other_use) for n in ints) + 2 * computed
    return {"floor_ops": count, "integer_input_count": len(ints)}


def _constant_tensors(model, nodes) -> list:
    """(name, TensorProto) of every initializer and every live Constant node's value."""
    return [(t.name, t) for t in model.graph.initializer] + [
        (n.output[0], a.t)
        for n in nodes
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    ]


def _one_hot_tables(model, nodes, ints: set, input_shapes: dict) -> set:
    """Constant tables that gather_one_hot looks up as a one-hot product (float_indices.py),
    for an index count of the largest integer input (None: an unknown dim, no table)."""
    from onnx2tflite_direct.mask_integers import MAX_MACS, MAX_ROWS

    counts = []
    for i in model.graph.input:
        if i.name in ints:
            dims = input_shapes.get(i.name)
            if dims is None:
                dims = [
                    d.dim_value if d.HasField("dim_value") else 0
                    for d in i.type.tensor_type.shape.dim
                ]
            counts.append(int(np.prod(dims)) if all(int(d) > 0 for d in dims) else None)
    if not counts or None in counts:
        return set()
    rows = max(counts)
    tensors = _constant_tensors(model, nodes)
    shapes = {k: list(t.dims) for k, t in tensors if t.data_type == onnx.TensorProto.FLOAT}
    small = set()
    for name, dims in shapes.items():
        if len(dims) == 2 and 0 < dims[0] <= MAX_ROWS and rows * dims[0] * dims[1] <= MAX_MACS:
            small.add(name)
    return small


def _live_nodes(model) -> list:
    """The nodes some graph output depends on by value (exporters leave lookups behind whose
    output only a Shape reads: the shapes are pinned, the lookup is dead)."""
    needed = {o.name for o in model.graph.output}
    live = []
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output):
            live.append(node)
            if node.op_type not in SHAPE_ONLY:
                needed.update(i for i in node.input if i)
    return live[::-1]


def family(model) -> str:
    """cnn/transformer, recurrent (RNN or control flow), quantized, or ml (ai.onnx.ml)."""
    ops = {n.op_type for n in model.graph.node}
    domains = {n.domain for n in model.graph.node}
    if "ai.onnx.ml" in domains:
        return "ml"
    if ops & QUANT_ONNX or any(op.startswith("QLinear") for op in ops):
        return "quantized"
    if ops & RECURRENT_ONNX:
        return "recurrent"
    return "cnn/transformer"


def _source_model(name: str, row: dict):
    """The ONNX model a row was measured on (corpus file or generated benchmark model)."""
    if row.get("source") == "zoo":
        from tools.zoo import run

        return onnx.load(str(run.model_path(name)), load_external_data=False)
    from benchmarks.models import BENCHMARK_MODELS

    return BENCHMARK_MODELS[name]()


def _feed_shapes(name: str, row: dict) -> dict | None:
    """The corpus feeds' shapes of a zoo row (the pins its conversion used)."""
    if row.get("source") != "zoo":
        return None
    from tools.zoo import manifest, run

    model = onnx.load(str(run.model_path(name)), load_external_data=False)
    return {k: v.shape for k, v in run.load_feeds(manifest.by_name(name), model).items()}


def _zoo_one(name: str) -> dict:
    import onnx

    from onnx2tflite_direct import convert
    from tools.zoo import manifest, run

    entry = manifest.by_name(name)
    path = run.model_path(name)
    model = onnx.load(str(path))
    feeds = run.load_feeds(entry, model)
    pins = None if entry.get("dynamic") else {k: tuple(v.shape) for k, v in feeds.items()}
    with tempfile.TemporaryDirectory() as tmp:
        res = convert(
            str(path),
            tmp,
            keep_io_layout=True,
            input_shapes=pins,
            stem="m",
            **entry.get("convert_options", {}),
        )
        tflite = bytes(res.tflite_bytes)
    row = {"source": "zoo", "domain": entry.get("domain"), "family": family(model)}
    row["integer_inputs"] = integer_inputs(model)
    row.update(count_partitions(tflite))
    row.update(floor_ops(model, {k: v.shape for k, v in feeds.items()}))
    if CHECK:
        row.update(_zoo_agreement(entry, path, feeds, tflite, res.report.get("io")))
    return row


def _zoo_agreement(entry, path, feeds, tflite, io) -> dict:
    """Outputs against onnxruntime with the corpus runner's rule (rtol 1e-3, atol 1e-5)."""
    from onnx2tflite_direct.validate import compare, run_litert, run_onnxruntime
    from tools.zoo import run

    expected = run_onnxruntime(path, feeds)
    actual = run_litert(tflite, feeds, io)
    for k in entry.get("sorted_outputs", ()):
        if k in expected and k in actual:
            expected[k] = np.sort(np.asarray(expected[k]), axis=None)
            actual[k] = np.sort(np.asarray(actual[k]), axis=None)
    metrics = compare(expected, actual, atol=run.ATOL, rtol=run.RTOL)
    worst = max((m.get("max_rel") or 0.0 for m in metrics.values()), default=0.0)
    return {"match": all(bool(m.get("ok")) for m in metrics.values()), "max_rel": float(worst)}


def _bench_one(name: str) -> dict:
    from benchmarks.models import BENCHMARK_MODELS
    from onnx2tflite_direct import convert

    model = BENCHMARK_MODELS[name]()
    res = convert(model)
    row = {"source": "benchmarks/models.py", "domain": "generated", "family": family(model)}
    row["integer_inputs"] = integer_inputs(model)
    row.update(count_partitions(bytes(res.tflite_bytes)))
    row.update(floor_ops(model))
    if CHECK:
        from onnx2tflite_direct import validate as V

        feeds = V.seeded_inputs(res.model, seed=0)
        val = V.validate(res.model, res.tflite_bytes, res.report["io"], feeds, atol=1e-4)
        row["match"] = bool(val.ok)
    return row


def _child(conn, fn, name):
    try:
        conn.send(fn(name))
    except Exception as exc:  # noqa: BLE001 - recorded per model, not fatal
        conn.send({"status": "failed", "error": f"{type(exc).__name__}: {str(exc)[:300]}"})


def in_child(fn, name: str, timeout: float) -> dict:
    """``fn(name)`` in a forked process: a LiteRT abort or a hang is recorded, not fatal."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, name))
    proc.start()
    child.close()
    row = None
    if parent.poll(timeout):
        try:
            row = parent.recv()
        except EOFError:
            row = None
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return {"status": "failed", "error": f"timeout after {timeout:.0f} s"}
    if row is None:
        return {"status": "failed", "error": f"child died (exit code {proc.exitcode})"}
    row.setdefault("status", "ok")
    return row


def zoo_names(all_models: bool) -> list[str]:
    from tools.zoo import manifest, run

    built = [m["name"] for m in manifest.all_models() if run.model_path(m["name"]).exists()]
    if all_models or not ZOO_JSON.exists():
        return built
    status = {r["name"]: r.get("status") for r in json.loads(ZOO_JSON.read_text())["models"]}
    return [n for n in built if status.get(n) in CONVERTED]


def one_partition(r: dict) -> bool:
    return r.get("partitions") == 1 and r.get("delegated_share", 0) >= 0.99


def summarize(rows: dict[str, dict]) -> dict:
    ok = {k: r for k, r in rows.items() if r.get("status") == "ok"}
    out: dict = {"models": len(ok), "failed": sorted(k for k in rows if k not in ok)}
    for fam in sorted({r["family"] for r in ok.values()}) + ["all"]:
        sel = [r for r in ok.values() if fam == "all" or r["family"] == fam]
        good = sum(one_partition(r) for r in sel)
        out[fam] = {
            "models": len(sel),
            "one_partition_99pct": good,
            "share": round(good / len(sel), 3) if sel else None,
        }
    sel = [
        r
        for r in ok.values()
        if r["family"] == "cnn/transformer" and r.get("integer_inputs") is False
    ]
    if sel:
        good = sum(one_partition(r) for r in sel)
        out["cnn/transformer, float inputs"] = {
            "models": len(sel),
            "one_partition_99pct": good,
            "share": round(good / len(sel), 3),
        }
    splitters: Counter = Counter()
    for r in ok.values():
        if not one_partition(r):
            splitters.update({op: 1 for op in r["outside"]})
    out["ops_outside_by_models"] = dict(splitters.most_common())
    checked = [k for k, r in ok.items() if "match" in r]
    if checked:
        out["outputs_checked"] = len(checked)
        out["output_mismatches"] = sorted(k for k in checked if not ok[k]["match"])
    return out


def write_md(data: dict, path: Path) -> None:
    labels = list(data["runs"])
    names = sorted({n for lab in labels for n in data["runs"][lab]["models"]})
    lines = [
        "# XNNPACK partitions per model",
        "",
        "Written by `benchmarks/bench_partitions.py` (float32 files; a partition is a DELEGATE",
        "node after `allocate_tensors()`; *outside* = ops XNNPACK did not take). Goal: one",
        "partition with >= 99% of the ops delegated.",
        "",
    ]
    for lab in labels:
        s = data["runs"][lab]["summary"]
        meta = data["runs"][lab]["meta"]
        lines.append(f"**{lab}** (converter {meta.get('commit', '?')}, {meta.get('written')}): ")
        parts = [
            f"{k}: {v['one_partition_99pct']}/{v['models']}"
            for k, v in s.items()
            if isinstance(v, dict) and "models" in v
        ]
        lines.append("one partition with >= 99% delegated: " + "; ".join(parts) + ".")
        if meta.get("note"):
            lines.append(meta["note"])
        if s.get("outputs_checked"):
            bad = ", ".join(s["output_mismatches"]) or "none"
            lines.append(
                f"Outputs against onnxruntime: {s['outputs_checked']} checked, mismatches: {bad}."
            )
        lines.append("")
    lines += _comparison(data)
    if "previous" in data["runs"]:
        lines += _comparison(data, first="previous", listing=False)
    head = "| model | family | ops |"
    sep = "|---|---|---:|"
    for lab in labels:
        head += f" partitions {lab} | delegated {lab} | outside {lab} |"
        sep += "---:|---:|---|"
    lines += [head, sep]
    for n in names:
        first = next(
            data["runs"][lab]["models"][n] for lab in labels if n in data["runs"][lab]["models"]
        )
        row = f"| {n} | {first.get('family', '')} | {first.get('tflite_ops', '')} |"
        for lab in labels:
            r = data["runs"][lab]["models"].get(n)
            if r is None:
                row += " | | |"
            elif r.get("status") != "ok":
                row += f" failed | | {r.get('error', '')[:60]} |"
            else:
                outside = ", ".join(f"{k} {v}" for k, v in r["outside"].items())
                if r.get("match") is False:
                    outside += " (outputs MISMATCH onnxruntime)"
                row += f" {r['partitions']} | {100 * r['delegated_share']:.1f}% | {outside} |"
        lines.append(row)
    path.write_text("\n".join(lines) + "\n")


def _comparison(data: dict, first: str = "before", listing: bool = True) -> list[str]:
    """``first`` -> after over the models both runs measured (per family), and (``rest``)
    what still splits the float32 CNN/transformer models, with each one's floor."""
    runs = data["runs"]
    if not {first, "after"} <= set(runs):
        return []
    both = sorted(
        n
        for n in set(runs[first]["models"]) & set(runs["after"]["models"])
        if runs[first]["models"][n].get("status") == "ok"
        and runs["after"]["models"][n].get("status") == "ok"
    )
    lines = [
        f"**{first.capitalize()} -> after** over the {len(both)} models measured in both runs:",
        "",
    ]
    lines += ["| family | models | one partition | one partition, >= 99% | partitions (sum) |"]
    lines += ["|---|---:|---:|---:|---:|"]
    fams = sorted({runs["after"]["models"][n]["family"] for n in both})
    floats = "cnn/transformer, float inputs"

    def member(n, fam):
        r = runs["after"]["models"][n]
        if fam == floats:
            return r["family"] == "cnn/transformer" and r.get("integer_inputs") is False
        return fam == "all" or r["family"] == fam

    for fam in [*fams, floats, "all"]:
        sel = [n for n in both if member(n, fam)]
        b = [runs[first]["models"][n] for n in sel]
        a = [runs["after"]["models"][n] for n in sel]
        one_b, one_a = (sum(r["partitions"] == 1 for r in x) for x in (b, a))
        good_b, good_a = (sum(one_partition(r) for r in x) for x in (b, a))
        part_b, part_a = (sum(r["partitions"] for r in x) for x in (b, a))
        lines.append(
            f"| {fam} | {len(sel)} | {one_b} -> {one_a} | {good_b} -> {good_a} | "
            f"{part_b} -> {part_a} |"
        )
    lines.append("")
    if not listing:
        return lines
    rest = [
        (n, r)
        for n, r in sorted(runs["after"]["models"].items())
        if r.get("status") == "ok" and r["family"] == "cnn/transformer" and not one_partition(r)
    ]
    if rest:
        lines.append(
            "Float32 CNN/transformer models still short of one partition with >= 99% (after), "
            "with the ops left outside XNNPACK:"
        )
        lines.append("")
        for n, r in rest:
            outside = ", ".join(f"{k} {v}" for k, v in r["outside"].items())
            floor = ""
            if "floor_ops" in r:
                best = 1 - r["floor_ops"] / r["tflite_ops"] if r["tflite_ops"] else 1.0
                floor = f"; floor {r['floor_ops']} op(s), best share {100 * best:.1f}%"
                if r["tflite_ops"] - r["delegated_ops"] <= r["floor_ops"]:
                    floor += " (at the floor)"
            lines.append(
                f"- {n}: {r['partitions']} partition(s), {100 * r['delegated_share']:.1f}% "
                f"of {r['tflite_ops']} ops; outside: {outside}{floor}"
            )
        lines.append("")
        floored = [(n, r) for n, r in rest if "floor_ops" in r]
        if floored:
            unreachable = [
                n
                for n, r in floored
                if r["tflite_ops"] and 1 - r["floor_ops"] / r["tflite_ops"] < 0.99
            ]
            at_floor = [
                n for n, r in floored if r["tflite_ops"] - r["delegated_ops"] <= r["floor_ops"]
            ]
            lines += [
                "*Floor* (`floor_ops` in the JSON, see `floor_ops()`): the ops that stay outside "
                "XNNPACK whatever is emitted -- per integer/bool input, the op reading it (a "
                "CAST), 2 per embedding lookup it indexes (the negative-index wrap and the "
                "GATHER: XNNPACK has no GATHER and takes no integer tensor), 2 per lookup of "
                "indices computed from it. "
                f"Of these {len(rest)} models, {len(unreachable)} cannot reach 99% whatever is "
                f"emitted (floor share < 99%); {len(at_floor)} are at their floor.",
                "",
            ]
    return lines


def _commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "onnx2tflite_direct"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.models import BENCHMARK_MODELS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", help="model names (zoo or benchmark)")
    p.add_argument(
        "--all", action="store_true", help="every built zoo model, not only converted ones"
    )
    p.add_argument("--no-bench", action="store_true", help="skip the generated benchmark models")
    p.add_argument("--no-zoo", action="store_true", help="skip the real-model corpus")
    p.add_argument("--check", action="store_true", help="compare outputs with onnxruntime")
    p.add_argument("--label", default="before")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--report-only", action="store_true", help="rewrite the .md from the JSON")
    p.add_argument(
        "--floors",
        action="store_true",
        help="recompute floor_ops of --label's rows (no conversion)",
    )
    args = p.parse_args(argv)
    global CHECK
    CHECK = args.check
    if args.floors:
        data = json.loads(args.out.read_text())
        for name, row in data["runs"][args.label]["models"].items():
            if row.get("status") == "ok":
                row.update(floor_ops(_source_model(name, row), _feed_shapes(name, row)))
                row["integer_inputs"] = bool(row["integer_input_count"])
        args.out.write_text(json.dumps(data, indent=1, default=_np_default) + "\n")
        args.report_only = True
    if args.report_only:
        data = json.loads(args.out.read_text())
        for run in data["runs"].values():
            run["summary"] = summarize(run["models"])
        args.out.write_text(json.dumps(data, indent=1, default=_np_default) + "\n")
        write_md(data, args.out.with_suffix(".md"))
        return 0

    jobs = []
    if not args.no_zoo:
        jobs += [(n, _zoo_one) for n in zoo_names(args.all)]
    if not args.no_bench:
        jobs += [(n, _bench_one) for n in BENCHMARK_MODELS]
    if args.only:
        jobs = [j for j in jobs if j[0] in set(args.only)]

    data = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    run = data["runs"].setdefault(args.label, {"models": {}})
    for name, fn in jobs:
        t0 = time.perf_counter()
        row = in_child(fn, name, args.timeout)
        row["seconds"] = round(time.perf_counter() - t0, 2)
        run["models"][name] = row
        brief = (
            f"{row['partitions']} partitions, {100 * row['delegated_share']:.1f}% delegated, "
            f"outside {row['outside']}"
            + ("" if "match" not in row else "" if row["match"] else "  OUTPUT MISMATCH")
            if row.get("status") == "ok"
            else row.get("error")
        )
        print(f"{name}: {brief}", flush=True)
    import ai_edge_litert

    run["meta"] = {
        "commit": _commit(),
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "litert": f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}",
        "machine": platform.machine(),
        "rule": "one partition and >= 99% of the ops delegated",
    }
    run["summary"] = summarize(run["models"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, default=_np_default) + "\n")
    write_md(data, args.out.with_suffix(".md"))
    print(json.dumps(run["summary"], indent=1))
    return 0


def _np_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))


if __name__ == "__main__":
    sys.exit(main())
