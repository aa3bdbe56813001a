"""GPU delegate verdict: the ported rules of ``gpu_rules`` applied to the in-memory model.

Why: a user choosing a converter wants to know, before deploying, whether the LiteRT GPU
delegate takes the whole model or which operators fall back to the CPU (each fallback splits
the graph and costs a GPU<->CPU copy; by default only the largest partition is delegated). The
delegate decides op by op from static facts (builtin, operator-code version, operand types,
ranks, attributes), so the verdict is computed from the same facts, on the ``tfl.Model`` the
builder writes, with the versions it writes. Nothing is run on a GPU: a driver can still refuse
a kernel at run time (memory, an unsupported GPU), which no static check sees.

LiteRT's own model analyzer (``_pywrap_analyzer_wrapper.ModelAnalyzer``) is a cross-check
only: some ai-edge-litert builds compile it without the GPU rules and declare every model
compatible. It is probed once with a model that cannot be GPU-compatible (a single CUSTOM op);
its findings are attached only when the probe shows its rules are real (``effective``).
"""

from __future__ import annotations

import functools
import heapq
import re
from typing import Any

import numpy as np

from . import builder, gpu_rules, tfl, versioning

# ----------------------------------------------------------------------------------------------
# The verdict from the ported rules
# ----------------------------------------------------------------------------------------------


def operator_version(op: tfl.Operator) -> int:
    """The version of the operator code this operator points to: the builder writes one code
    per (opcode, version) in use, so it is the operator's own version."""
    return 1 if op.opcode == "CUSTOM" else versioning.op_version(op)


def check_ops(model: tfl.Model) -> list[dict[str, Any]]:
    """One record per operator the GPU delegate would not take: ``subgraph``, ``op_index``,
    ``op``, ``version``, ``onnx_node``, ``outputs`` (tensor names), ``rules`` (reason codes,
    see ``gpu_rules.REASONS``) and ``detail``. Every operator not listed is delegable."""
    fallbacks = []
    for s, sub in enumerate(model.subgraphs):
        ctx = gpu_rules.GraphContext(sub)
        for i, op in enumerate(sub.operators):
            version = operator_version(op)
            try:
                findings = gpu_rules.check_op(op, version, ctx)
            except Exception as exc:  # a checker gap must not fail the conversion: say so
                findings = [("unchecked", f"the GPU rules could not judge it ({exc!r})")]
            if findings:
                fallbacks.append(
                    {
                        "subgraph": s,
                        "op_index": i,
                        "op": op.custom_code if op.opcode == "CUSTOM" else op.opcode,
                        "version": version,
                        "onnx_node": op.onnx_node,
                        "outputs": [t.name for t in op.outputs],
                        "rules": [code for code, _ in findings],
                        "detail": "; ".join(detail for _, detail in findings),
                    }
                )
    return fallbacks


def partitions(sub: tfl.Subgraph, falls_back: set[int]) -> list[tuple[bool, int]]:
    """(delegable?, operator count) per node subset, as LiteRT's greedy partitioner
    (``graph_info.cc`` PartitionGraphIntoIndependentNodeSubsets) splits ``sub``: a subset
    grows with every operator of its kind whose inputs are ready; the next subset takes the
    kind of the lowest-index ready operator. The delegate replaces the largest delegable
    subset by default (one partition; ``delegate_options.cc``)."""
    ops = sub.operators
    index = {id(op): i for i, op in enumerate(ops)}
    producers = sub.producers()
    waiting = [0] * len(ops)
    users: dict[int, list[int]] = {}
    for key, readers in sub.consumers().items():
        writer = producers.get(key)
        if writer is None:
            continue  # graph inputs and constants are always ready
        for op, _ in readers:
            waiting[index[id(op)]] += 1
            users.setdefault(index[id(writer)], []).append(index[id(op)])
    ready: dict[bool, list[int]] = {True: [], False: []}
    for i in range(len(ops)):
        if waiting[i] == 0:
            heapq.heappush(ready[i not in falls_back], i)
    subsets: list[tuple[bool, int]] = []
    while ready[True] or ready[False]:
        first = min(q[0] for q in ready.values() if q)
        kind = first not in falls_back
        count = 0
        while ready[kind]:
            i = heapq.heappop(ready[kind])
            count += 1
            for j in users.get(i, ()):
                waiting[j] -= 1
                if waiting[j] == 0:
                    heapq.heappush(ready[j not in falls_back], j)
        subsets.append((kind, count))
    return subsets


def verdict_text(fallbacks: list[dict[str, Any]]) -> str:
    """The verdict line: "fully delegable", "1 op falls back" or "N ops fall back"."""
    n = len(fallbacks)
    if n == 0:
        return "fully delegable"
    return "1 op falls back" if n == 1 else f"{n} ops fall back"


def check_model(model: tfl.Model) -> dict[str, Any]:
    """The report's ``gpu`` section: ``verdict`` (text), ``fully_delegable``, ``operators``
    (count checked), ``partitions`` and ``delegated_ops`` (main subgraph, see
    :func:`partitions`), ``fall_back`` (see :func:`check_ops`), ``by_op`` (opcode -> {count,
    fall_back}) and ``rules`` (what the verdict is judged by)."""
    fallbacks = check_ops(model)
    by_op: dict[str, dict[str, int]] = {}
    total = 0
    for sub in model.subgraphs:
        for op in sub.operators:
            key = op.custom_code if op.opcode == "CUSTOM" else op.opcode
            entry = by_op.get(key)
            if entry is None:
                entry = by_op[key] = {"count": 0, "fall_back": 0}
            entry["count"] += 1
            total += 1
    for f in fallbacks:
        by_op[f["op"]]["fall_back"] += 1
    main_fallbacks = {f["op_index"] for f in fallbacks if f["subgraph"] == 0}
    subsets = partitions(model.subgraphs[0], main_fallbacks) if fallbacks else []
    delegable_sizes = [n for kind, n in subsets if kind]
    mains = [s.subgraph_index for s in model.signatures] if model.signatures else [0]
    int64_inputs = sorted(
        {
            name
            for i in mains
            for name, t in zip(
                model.subgraphs[i].input_names, model.subgraphs[i].inputs, strict=False
            )
            if t.dtype == np.int64
        }
    )
    return {
        "verdict": verdict_text(fallbacks),
        "fully_delegable": not fallbacks,
        "operators": total,
        # Main subgraph: delegable partitions and the ops the default delegate (one partition)
        # takes; without fallbacks, one partition holding every operator.
        "partitions": len(delegable_sizes) if fallbacks else 1,
        "delegated_ops": max(delegable_sizes, default=0)
        if fallbacks
        else len(model.subgraphs[0].operators),
        "fall_back": fallbacks,
        # int64 graph inputs (no GPU rule takes int64; --gpu-friendly / --int32-inputs declare
        # them int32)
        "int64_inputs": int64_inputs,
        "by_op": dict(sorted(by_op.items())),
        "rules": gpu_rules.SOURCE,
    }


def format_verdict(section: dict[str, Any]) -> list[str]:
    """Console lines: the verdict, then one line per operator that falls back."""
    lines = [f"GPU delegate (static rule check, nothing run on a GPU): {section['verdict']}"]
    if not section["fully_delegable"]:
        n = section["delegated_ops"]
        lines.append(
            f"  {section['partitions']} delegable partition(s); the delegate (one partition by "
            f"default) would take {n} op{'s' if n != 1 else ''} of the main graph"
        )
    for f in section["fall_back"]:
        where = f"op #{f['op_index']}"
        if f["subgraph"]:
            where = f"subgraph {f['subgraph']} {where}"
        node = f" (ONNX {f['onnx_node']})" if f.get("onnx_node") else ""
        lines.append(f"  {where} {f['op']}{node}: {', '.join(f['rules'])}: {f['detail']}")
    if any(f["op"] == "WHILE" for f in section["fall_back"]):
        lines.append(
            "  hint: WHILE loops (LSTM/GRU/RNN) have no GPU parser; --unroll-rnn writes their "
            "time steps out as ordinary operators"
        )
    if section.get("int64_inputs"):
        lines.append(
            f"  hint: int64 input(s) {', '.join(section['int64_inputs'])}: no GPU rule takes an "
            "int64 tensor; --gpu-friendly declares them int32 (feed int32 values) and rewrites "
            "the lookups and masks they feed for the GPU (--int32-inputs alone: only declares)"
        )
    cross = section.get("analyzer")
    if cross and cross.get("effective") and cross.get("disagreements"):
        lines.append(f"  LiteRT analyzer disagrees on {len(cross['disagreements'])} op(s)")
    return lines


# ----------------------------------------------------------------------------------------------
# LiteRT's analyzer, a cross-check where its GPU rules are compiled in
# ----------------------------------------------------------------------------------------------

_OP_LINE = re.compile(r"^\s*Op#(\d+)\s+([^(\s]+)\(")
_SUBGRAPH_LINE = re.compile(r"^Subgraph#(\d+)")
_OP_WARNING = re.compile(r"^GPU COMPATIBILITY WARNING:\s*(.*)$")
_SUBGRAPH_WARNING = re.compile(
    r"GPU COMPATIBILITY WARNING: Subgraph#(\d+) has GPU delegate compatibility issues at nodes "
    r"([\d, ]+)"
)
_COMPATIBLE = re.compile(
    r"Your model looks compatible with GPU delegate(?: on TFLite runtime version (\S+?)\.?$)?", re.M
)


def _analyzer():
    try:
        from ai_edge_litert import _pywrap_analyzer_wrapper
    except ImportError:
        return None
    return getattr(_pywrap_analyzer_wrapper, "ModelAnalyzer", None)


def analyze_text(tflite_bytes: bytes, gpu_compatibility: bool = True) -> str | None:
    """The analyzer's report of ``tflite_bytes``; None when the analyzer is not installed."""
    analyzer = _analyzer()
    if analyzer is None:
        return None
    return analyzer(bytes(tflite_bytes), False, gpu_compatibility)


def parse_analyzer_text(text: str) -> dict[str, Any]:
    """Per-op GPU warnings and the overall verdict, as printed by the analyzer."""
    incompatible: list[dict[str, Any]] = []
    subgraph, last_op = 0, None
    for line in text.splitlines():
        if m := _SUBGRAPH_LINE.match(line):
            subgraph = int(m.group(1))
        elif m := _OP_LINE.match(line):
            last_op = {"subgraph": subgraph, "op_index": int(m.group(1)), "op": m.group(2)}
        elif (m := _OP_WARNING.match(line.strip())) and not _SUBGRAPH_WARNING.search(line):
            entry = dict(last_op or {"subgraph": subgraph, "op_index": None, "op": None})
            entry["message"] = m.group(1)
            incompatible.append(entry)
    flagged_nodes = {
        (int(m.group(1)), int(n))
        for m in _SUBGRAPH_WARNING.finditer(text)
        for n in m.group(2).replace(" ", "").split(",")
        if n
    }
    known = {(e["subgraph"], e["op_index"]) for e in incompatible}
    for sub, idx in sorted(flagged_nodes - known):
        incompatible.append({"subgraph": sub, "op_index": idx, "op": None, "message": ""})
    ok = _COMPATIBLE.search(text)
    return {
        "compatible": bool(ok) and not incompatible,
        "incompatible_ops": incompatible,
        "runtime_version": ok.group(1) if ok and ok.group(1) else None,
    }


def _probe_bytes() -> bytes:
    """A one-op model no GPU delegate can take: a CUSTOM op (built here, not converted, so
    this module needs nothing above the builder)."""
    x = tfl.Tensor("x", np.float32, (1, 4))
    y = tfl.Tensor("y", np.float32, (1, 4))
    sub = tfl.Subgraph(
        operators=[tfl.Operator("CUSTOM", [x], [y], custom_code="GpuProbe")],
        inputs=[x],
        outputs=[y],
        input_names=["x"],
        output_names=["y"],
    )
    return builder.build_flatbuffer(tfl.Model([sub]))


@functools.lru_cache(maxsize=1)
def analyzer_is_effective() -> bool:
    """True when the analyzer flags a model that cannot run on the GPU (one CUSTOM op)."""
    try:
        text = analyze_text(_probe_bytes())
    except Exception:  # no probe, no trust: the analyzer is not consulted
        return False
    return text is not None and not parse_analyzer_text(text)["compatible"]


def analyzer_cross_check(tflite_bytes: bytes, fallbacks: list[dict[str, Any]]) -> dict[str, Any]:
    """What LiteRT's analyzer says next to the ported rules: ``available``, ``effective`` and,
    when effective, ``disagreements`` ([{subgraph, op_index, op, rules_say, analyzer_says}]).
    The verdict never depends on it; an ineffective analyzer is not run on the model."""
    if _analyzer() is None:
        return {"available": False, "effective": False, "disagreements": []}
    if not analyzer_is_effective():
        return {
            "available": True,
            "effective": False,
            "disagreements": [],
            "note": "this ai-edge-litert build's analyzer has no GPU rules (it declares even a "
            "CUSTOM-op model compatible); not consulted",
        }
    parsed = parse_analyzer_text(analyze_text(tflite_bytes) or "")
    theirs = {(e["subgraph"], e["op_index"]): e for e in parsed["incompatible_ops"]}
    ours = {(f["subgraph"], f["op_index"]): f for f in fallbacks}
    disagreements = []
    for key in sorted(set(theirs) ^ set(ours), key=lambda k: (k[0], k[1] or 0)):
        entry = theirs.get(key) or {}
        mine = ours.get(key) or {}
        disagreements.append(
            {
                "subgraph": key[0],
                "op_index": key[1],
                "op": mine.get("op") or entry.get("op"),
                "rules_say": "falls back" if mine else "delegable",
                "analyzer_says": entry.get("message") or "compatible",
            }
        )
    return {"available": True, "effective": True, "disagreements": disagreements}
