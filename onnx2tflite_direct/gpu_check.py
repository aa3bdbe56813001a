"""GPU delegate compatibility verdict from LiteRT's model analyzer.

Why: whether a converted model will run on the GPU delegate is decided op by op by LiteRT's own
compatibility rules; the analyzer (``tf.lite.experimental.Analyzer`` in TensorFlow) prints them.
ai-edge-litert ships only the native entry point ``_pywrap_analyzer_wrapper.ModelAnalyzer(model,
input_is_filepath, gpu_compatibility) -> str`` (no Python wrapper module), so it is called
directly and its text is parsed into a structured verdict.

Trust: some ai-edge-litert builds compile the analyzer without the GPU rules and declare every
model compatible. Before believing a "compatible", the analyzer is probed once with a model that
cannot be GPU-compatible (a single CUSTOM op); if the probe passes too, the verdict is
``compatible: None`` with ``checker_effective: False`` and a message saying so.
"""

from __future__ import annotations

import functools
import re
from typing import Any

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


@functools.lru_cache(maxsize=1)
def _checker_is_effective() -> bool:
    """True when the analyzer flags a model that cannot run on the GPU (one CUSTOM op)."""
    import onnx
    from onnx import TensorProto, helper

    from .pipeline import convert

    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("GpuProbe", ["x"], ["y"], name="probe", domain="probe.domain")],
        "gpu_probe",
        [vi("x", TensorProto.FLOAT, [1, 4])],
        [vi("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("probe.domain", 1)]
    )
    onnx.checker.check_model(model)
    try:
        probe = convert(model, allow_custom_ops=True, custom_op_allowlist=["GpuProbe"])
        text = analyze_text(probe.tflite_bytes)
    except Exception:  # no probe, no trust: the verdict is reported as unknown
        return False
    return text is not None and not parse_analyzer_text(text)["compatible"]


def check_gpu_compatibility(tflite_bytes: bytes) -> dict[str, Any]:
    """Structured GPU delegate verdict for a .tflite model.

    Keys: ``available`` (analyzer installed), ``checker_effective`` (its GPU rules are compiled
    in, see module docstring), ``compatible`` (True/False, None when unknown),
    ``incompatible_ops`` ([{subgraph, op_index, op, message}]), ``runtime_version``,
    ``message`` and ``raw`` (the analyzer text).
    """
    text = analyze_text(tflite_bytes)
    if text is None:
        return {
            "available": False,
            "checker_effective": False,
            "compatible": None,
            "incompatible_ops": [],
            "runtime_version": None,
            "message": "LiteRT's model analyzer is not available: install ai-edge-litert "
            "(pip install onnx2tflite_direct[validate])",
            "raw": "",
        }
    verdict = parse_analyzer_text(text)
    effective = _checker_is_effective()
    if verdict["incompatible_ops"]:
        ops = ", ".join(f"#{e['op_index']} {e['op'] or '?'}" for e in verdict["incompatible_ops"])
        message = f"not GPU-compatible: {len(verdict['incompatible_ops'])} op(s): {ops}"
    elif effective:
        message = "looks GPU-compatible (runtime incompatibilities are still possible)"
    else:
        verdict["compatible"] = None
        message = (
            "unknown: this ai-edge-litert build's analyzer has no GPU compatibility rules "
            "(it declares even a CUSTOM-op model compatible), so its verdict is not trusted"
        )
    return {
        "available": True,
        "checker_effective": effective,
        **verdict,
        "message": message,
        "raw": text,
    }
