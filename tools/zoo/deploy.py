"""Which converted file the corpus' headline status and latency ratio describe.

A user deploys the file that runs the model as it was meant to run. For a float model that
is the float32 file. For a model that is already statically quantized (its graph quantizes
activations: QuantizeLinear -> DequantizeLinear pairs on non-constant tensors, QLinear* ops,
or a QuantizeLinear of an activation read by an integer op such as com.microsoft QGemm),
onnxruntime runs it on fused integer kernels, while our float32 file is an exact float
emulation of the Q/DQ graph (every rounding step spelled out in float32 ops): comparing that
file's speed with onnxruntime's integer kernels measures the emulation, not what a user
ships. The converter also writes the model's integer file (``<stem>_integer_quant.tflite``:
float I/O, integer kernels, the model's own scales), and that is the file to deploy.

So, for a statically quantized model, the headline is the integer file, judged by the same
pass rules as the float32 file (strict, else Q/DQ semantics: tools/zoo/pass_rules.py). If the
integer file is missing, fails its check, or could not be run, the headline falls back to the
float32 file and says why; the choice never looks at which file is faster. The float32 file's
status and latency stay in the record and in the report.

Decided from the graph only (never from the model's name or exporter string): weight-only
quantization (DequantizeLinear on constants) and dynamic quantization (DynamicQuantizeLinear,
MatMulInteger, ConvInteger) are not static quantization of activations.
"""

from __future__ import annotations

import onnx

INTEGER_FILE = "integer_quant"  # the converter's variant key / file suffix
FLOAT32_FILE = "float32"
HEADLINE_FIELDS = ("status", "pass_rule", "litert_ms", "ort_ms", "latency_ratio")


def _subgraphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for a in node.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for g in subs:
                yield from _subgraphs(g)


def static_quantization(model: onnx.ModelProto) -> str | None:
    """Why ``model`` is statically quantized (a short evidence string), or None.

    Evidence: QLinear* ops (QOperator format, any domain), DequantizeLinear nodes fed by a
    QuantizeLinear of a non-constant tensor with a constant scale (QDQ format: activations
    quantized with fixed, calibrated scales; a scale computed at run time is dynamic), or such
    a QuantizeLinear read by other ops than DequantizeLinear (QOperator ops not named
    QLinear*: onnxruntime's com.microsoft QGemm).
    A constant is an initializer or a Constant node's output, in the graph itself or in an
    enclosing one."""
    qlinear: dict[str, int] = {}
    pairs = 0
    fed = 0
    constants: set[str] = set()
    for graph in _subgraphs(model.graph):
        constants |= {t.name for t in graph.initializer}
        constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    for graph in _subgraphs(model.graph):
        quantized = {  # (a scale computed at run time quantizes dynamically: not counted)
            n.output[0]: n.input[0]
            for n in graph.node
            if n.op_type == "QuantizeLinear" and len(n.input) > 1 and n.output
            and n.input[1] in constants
        }  # fmt: skip
        readers: dict[str, set[str]] = {}
        for n in graph.node:
            for i in n.input:
                readers.setdefault(i, set()).add(n.op_type)
            if n.op_type.startswith("QLinear"):
                qlinear[n.op_type] = qlinear.get(n.op_type, 0) + 1
            elif n.op_type == "DequantizeLinear" and n.input and n.input[0] in quantized:
                if quantized[n.input[0]] not in constants:
                    pairs += 1
        for n in graph.node:
            if n.op_type != "QuantizeLinear" or len(n.input) < 2 or not n.output:
                continue
            if n.input[0] in constants or n.input[1] not in constants:
                continue  # (a weight, or a scale computed at run time: dynamic)
            others = readers.get(n.output[0], set()) - {"DequantizeLinear"}
            if any(not r.startswith("QLinear") for r in others):  # (those are counted)
                fed += 1
    parts = []
    if pairs:
        parts.append(f"{pairs} QuantizeLinear -> DequantizeLinear pairs on activations")
    if fed:
        parts.append(f"{fed} QuantizeLinear of activations read by integer ops")
    if qlinear:
        parts.append("QLinear ops: " + ", ".join(f"{k} {v}" for k, v in sorted(qlinear.items())))
    return "; ".join(parts) or None


def headline(rec: dict) -> dict:
    """The headline of one corpus record: which file, its status, rule and latency, and a note
    when a statically quantized model falls back to its float32 file.

    ``rec`` is a record of tools/zoo/run.py: its top-level fields describe the float32 file,
    ``static_quantization`` the graph's evidence, ``variants[INTEGER_FILE]`` the integer file
    (judged by the pass rules only for statically quantized models)."""
    f32 = {k: rec[k] for k in HEADLINE_FIELDS if rec.get(k) is not None}
    if not rec.get("static_quantization"):
        return {"file": FLOAT32_FILE, **f32}
    integer = (rec.get("variants") or {}).get(INTEGER_FILE)
    if integer is None:
        why = (
            "the converter wrote no integer file"
            if rec.get("status") in ("pass", "mismatch")
            else f"no integer file was judged (the float32 file: {rec.get('status')})"
        )
        return {"file": FLOAT32_FILE, **f32, "note": f"statically quantized, but {why}"}
    if integer.get("status") != "pass":
        msg = integer.get("message") or ""
        return {
            "file": FLOAT32_FILE,
            **f32,
            "note": f"integer file {integer.get('status')}"
            + (f" ({msg})" if msg else "")
            + ": headline falls back to the float32 file",
        }
    return {"file": INTEGER_FILE, **{k: integer[k] for k in HEADLINE_FIELDS if k in integer}}


def passed_everywhere(rec: dict) -> bool:
    """The headline and the float32 file both pass (``run.py --failed`` re-runs the rest)."""
    return rec.get("status") == "pass" and headline(rec).get("status") == "pass"
