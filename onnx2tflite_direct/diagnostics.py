"""Per-tensor accuracy bisection: which ONNX node is the first whose TFLite result diverges?

Why: ``validate`` only compares graph outputs, so a wrong lowering deep in a network shows up as
"the logits differ". Here both runtimes expose every intermediate tensor -- onnxruntime through
extra graph outputs, LiteRT through ``experimental_preserve_all_tensors`` with the reference
kernels (a delegate would hide the tensors of the partitions it takes) -- and each TFLite tensor
is mapped back to its ONNX tensor with the converter's ``tensor_map`` (stored layout undone,
quantized tensors dequantized). Walking the ONNX nodes in topological order, the *first divergent
node* is the first whose output is off while none of its inputs is: that is the node to debug.

Tensors the TFLite graph does not keep (a Conv output fused with its Relu, a value folded into
a constant) are *unmeasured*: they inherit divergence from their inputs, and the unmeasured
producers just upstream of the first divergent node are listed as ``suspects`` too.

All arrays are compared with :func:`onnx2tflite_direct.validate.compare`, so "within tolerance"
means what it means for ``--validate``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from . import validate as val
from .inspect_tflite import tensor_table
from .layout import Inner, Layout

METRIC_KEYS = ("max_abs", "max_rel", "mean_abs", "cosine", "sqnr_db", "max_expected_abs")
UNMAPPED_LISTED = 50  # how many unmapped TFLite tensor names the result lists


def node_label(node: onnx.NodeProto) -> str:
    """The converter's node label (``ir.Node.label``): name, else ``op_type:first_output``."""
    return node.name or f"{node.op_type}:{node.output[0] if node.output else '?'}"


# --------------------------------------------------------------------------------------------
# onnxruntime with every intermediate exposed
# --------------------------------------------------------------------------------------------


def expose_intermediates(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` whose graph outputs also list every typed node output.

    Types come from ONNX shape inference; outputs without a known tensor element type (and
    non-tensor values) are left out because onnxruntime cannot declare them as outputs.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            typed[vi.name] = vi
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    added = []
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in present and name in typed:
                vi = exposed.graph.output.add()
                vi.name = name
                vi.type.tensor_type.elem_type = typed[name].type.tensor_type.elem_type
                present.add(name)
                added.append(name)
    return exposed, added


def _run_reference(model: onnx.ModelProto, feeds) -> tuple[dict[str, np.ndarray], str | None]:
    """All exposed tensors; falls back to the plain outputs if the session rejects the copy."""
    exposed, _ = expose_intermediates(model)
    try:
        return val.run_onnxruntime(exposed, feeds), None
    except Exception as exc:  # onnxruntime raises its own exception types
        note = f"onnxruntime rejected the exposed intermediates ({type(exc).__name__}: {exc})"
        return val.run_onnxruntime(model, feeds), note


# --------------------------------------------------------------------------------------------
# LiteRT with every tensor preserved
# --------------------------------------------------------------------------------------------


def _run_litert_all(tflite_bytes: bytes, feeds, io_table):
    """Invoke with the reference kernels, keeping every tensor; return (interpreter, inputs)."""
    interp_mod = val._import_litert_interpreter()
    interp = interp_mod.Interpreter(
        model_content=bytes(tflite_bytes),
        num_threads=1,
        experimental_op_resolver_type=interp_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    interp.allocate_tensors()
    perms = {row["name"]: row.get("perm") for row in io_table or () if row["kind"] == "input"}
    for name, detail in _input_details(interp).items():
        if name not in feeds:
            raise ValueError(f"no feed for TFLite input {name!r}")
        arr = np.asarray(feeds[name])
        if perms.get(name) is not None:
            arr = np.transpose(arr, perms[name])
        interp.set_tensor(detail["index"], np.array(arr, dtype=detail["dtype"], order="C"))
    interp.invoke()
    return interp


def _input_details(interp) -> dict[str, dict]:
    """Signature input name -> details (with the tensor ``index``); plain inputs if unsigned."""
    if interp.get_signature_list():
        key = next(iter(interp.get_signature_list()))
        return dict(interp.get_signature_runner(key).get_input_details())
    return {d["name"]: d for d in interp.get_input_details()}


def _layout(entry: Mapping[str, Any]) -> Layout:
    inner = entry.get("inner")
    return Layout(
        tuple(entry["perm"]),
        Inner(tuple(inner["shape"]), tuple(inner["perm"])) if inner else None,
    )


def to_onnx_order(stored: np.ndarray, layout: Layout) -> np.ndarray:
    """Undo :meth:`Layout.apply`: stored-order array -> ONNX-order array."""
    arr = stored
    if layout.perm != tuple(range(arr.ndim)):
        arr = np.transpose(arr, np.argsort(layout.perm))
    if layout.inner is not None and arr.shape and arr.shape[-1] > 1:
        arr = np.take(arr, np.argsort(layout.inner.element_order()), axis=-1)
    return arr


def _dequantize(arr: np.ndarray, quant: Mapping[str, Any] | None):
    """(real values, per-element scale or None) of a stored tensor."""
    if quant is None or not quant["scale"]:
        return arr, None
    scale = np.asarray(quant["scale"], np.float64)
    zero = np.asarray(quant["zero_point"] or [0] * len(scale), np.float64)
    if scale.size > 1:  # per-channel along quantized_dimension
        shape = [1] * arr.ndim
        shape[quant["quantized_dimension"]] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    real = (arr.astype(np.float64) - zero) * scale
    return real.astype(np.float32), np.broadcast_to(scale, arr.shape)


# --------------------------------------------------------------------------------------------
# Comparison and bisection
# --------------------------------------------------------------------------------------------


def _json_metrics(m: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key in ("ok", *METRIC_KEYS, "shape_match"):
        v = m.get(key)
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)
        out[key] = v
    return out


def _measure(expected: np.ndarray, actual: np.ndarray, scale, atol: float) -> dict[str, Any]:
    if actual.shape != expected.shape and actual.size == expected.size:
        actual = actual.reshape(expected.shape)  # e.g. a scalar stored as [1]
        scale = None if scale is None else np.asarray(scale).reshape(expected.shape)
    if val._kind(actual.dtype) != val._kind(expected.dtype) and val._kind(actual.dtype) != "S":
        actual = actual.astype(expected.dtype)
    m = val.compare({"t": expected}, {"t": actual}, atol=atol)["t"]
    res = _json_metrics(m)
    if scale is not None and m["shape_match"]:
        diff = np.abs(expected.astype(np.float64) - actual.astype(np.float64))
        res["quant_steps"] = float(np.max(diff / scale)) if diff.size else 0.0
    return res


def _coverage(rows: list[dict], tensor_map: Mapping[str, Mapping]) -> dict[str, Any]:
    mapped_names = {entry["tensor"] for entry in tensor_map.values()}
    dynamic = [r for r in rows if not r["constant"]]
    mapped = [r for r in dynamic if r["name"] in mapped_names]
    unmapped = [r["name"] for r in dynamic if r["name"] not in mapped_names]
    return {
        "tflite_nonconstant_tensors": len(dynamic),
        "mapped": len(mapped),
        "fraction": len(mapped) / len(dynamic) if dynamic else 1.0,
        "unmapped_examples": unmapped[:UNMAPPED_LISTED],
    }


def _bisect(graph: onnx.GraphProto, status: Mapping[str, bool]) -> dict[str, Any]:
    """First divergent node, its unmeasured suspects and the chain to the outputs.

    ``status[tensor]`` is True when measured within tolerance, False when measured off;
    missing tensors are unmeasured and inherit "off" from any off input of their producer.
    """
    tainted: set[str] = set()
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    first = None
    for i, node in enumerate(graph.node):
        inputs_off = any(name in tainted for name in node.input if name)
        measured_off = any(status.get(o) is False for o in node.output if o)
        if measured_off and not inputs_off and first is None:
            first = i
        for o in node.output:
            if o and (status.get(o) is False or (o not in status and inputs_off)):
                tainted.add(o)
    if first is None:
        return {"first_divergent_node": None, "suspects": [], "chain": []}

    suspects, stack = [], [n for n in graph.node[first].input if n]
    seen: set[str] = set()
    while stack:  # unmeasured producers feeding the first divergent node
        name = stack.pop()
        if name in seen or name in status or name not in producer:
            continue
        seen.add(name)
        suspect = graph.node[producer[name]]
        suspects.append(node_label(suspect))
        stack.extend(n for n in suspect.input if n)

    reach = set(graph.node[first].output)
    downstream = [first]
    for i in range(first + 1, len(graph.node)):
        node = graph.node[i]
        if any(n in reach for n in node.input):
            reach.update(o for o in node.output if o)
            downstream.append(i)
    outputs = {o.name for o in graph.output}
    needed = set(outputs)
    chain = []
    for i in reversed(downstream):  # keep only the nodes that lead to a graph output
        node = graph.node[i]
        if any(o in needed for o in node.output):
            chain.append(node_label(node))
            needed.update(n for n in node.input if n)
    return {
        "first_divergent_node": node_label(graph.node[first]),
        "first_divergent_index": first,
        "suspects": sorted(set(suspects)),
        "chain": list(reversed(chain)),
    }


def validate_all_tensors(result, feeds=None, seed: int = 0, atol: float = 1e-4) -> dict[str, Any]:
    """Compare every intermediate tensor of a :class:`ConversionResult` (JSON-friendly dict).

    Keys: ``nodes`` (topological order: name, op_type, index, outputs with metrics and
    ``divergent``), ``first_divergent_node``, ``suspects``, ``chain``, ``outputs_ok``,
    ``coverage`` (non-constant TFLite tensors mapped to ONNX tensors), ``measured``
    (ONNX node outputs compared), ``notes`` and ``timing`` (seconds).
    """
    started = time.perf_counter()
    model = result.model
    io_table = result.report.get("io") or []
    feeds = dict(feeds) if feeds is not None else val.seeded_inputs(model, seed)
    notes: list[str] = []

    t0 = time.perf_counter()
    reference, note = _run_reference(model, feeds)
    if note:
        notes.append(note)
    t_ort = time.perf_counter() - t0

    t0 = time.perf_counter()
    interp = _run_litert_all(result.tflite_bytes, feeds, io_table)
    t_litert = time.perf_counter() - t0

    t0 = time.perf_counter()
    rows = tensor_table(result.tflite_bytes)
    by_name: dict[str, dict] = {}
    for row in rows:
        by_name.setdefault(row["name"], row)
    metrics: dict[str, dict[str, Any]] = {}
    for onnx_name, entry in result.tensor_map.items():
        row = by_name.get(entry["tensor"])
        if onnx_name not in reference or row is None or row["constant"]:
            continue
        try:
            stored = np.array(interp.get_tensor(row["index"]), copy=True)
        except ValueError:  # a tensor the runtime did not allocate
            continue
        real, scale = _dequantize(stored, row["quantization"])
        layout = _layout(entry)
        if real.ndim != layout.rank:
            if real.size != reference[onnx_name].size:
                continue
            real = real.reshape(layout.stored_shape(reference[onnx_name].shape))
            scale = None if scale is None else scale.reshape(real.shape)
        actual = np.ascontiguousarray(to_onnx_order(real, layout))
        scale = None if scale is None else to_onnx_order(np.asarray(scale), layout)
        m = _measure(reference[onnx_name], actual, scale, atol)
        m["tflite_tensor"] = entry["tensor"]
        m["shape"] = list(reference[onnx_name].shape)
        metrics[onnx_name] = m
    status = {name: bool(m["ok"]) for name, m in metrics.items()}

    graph = model.graph
    nodes = []
    for i, node in enumerate(graph.node):
        outs = [{"name": o, **metrics[o]} for o in node.output if o in metrics]
        nodes.append(
            {
                "index": i,
                "name": node_label(node),
                "op_type": node.op_type,
                "outputs": outs,
                "measured": bool(outs),
                "divergent": any(not o["ok"] for o in outs),
            }
        )
    verdict = _bisect(graph, status)
    t_compare = time.perf_counter() - t0

    all_outputs = [o for n in graph.node for o in n.output if o]
    return {
        "atol": atol,
        "seed": seed,
        "nodes": nodes,
        **verdict,
        "outputs_ok": all(status.get(o.name, False) for o in graph.output),
        "coverage": _coverage(rows, result.tensor_map),
        "measured": {
            "onnx_node_outputs": len(all_outputs),
            "compared": sum(1 for o in all_outputs if o in metrics),
        },
        "notes": notes,
        "timing": {
            "onnxruntime": t_ort,
            "litert": t_litert,
            "compare": t_compare,
            "total": time.perf_counter() - started,
        },
    }
