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

TFLite-only tensors are accounted for too (``mapping``): a PAD before a convolution or a
TRANSPOSE materializing a value in another layout is a *derived* copy of an ONNX tensor (see
``tensor_mapping``) and is compared on its own, so a wrong copy is reported as such
(``derived_divergent``); temporaries of a multi-operator lowering are *internal* to their node.

All arrays are compared with :func:`onnx2tflite_direct.validate.compare`, so "within tolerance"
means what it means for ``--validate``. Cost: onnxruntime and LiteRT run concurrently (both
release the GIL), onnxruntime only exposes the tensors TFLite keeps, and the comparison takes
the finite-float fast path of ``compare``; ``timing`` reports the two runs' own wall times, so
they overlap and ``total`` is less than the sum.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import onnx

from . import contrib_schemas
from . import validate as val
from .layout import Inner, Layout
from .litert_tensors import (
    file_tables,
    run_keeping_all_tensors,
    stored_real,
)

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
    inferred = contrib_schemas.infer_shapes(model)
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


def exposed_model_bytes(model: onnx.ModelProto, only=None) -> bytes:
    """Serialized ``model`` whose graph outputs also list every node output, by name only.

    ``only``: expose just these names (the tensors TFLite keeps; onnxruntime can then still
    fuse away the ones nobody compares, e.g. a Conv output that a Relu consumes).

    Why bytes and no types: copying a large model and running shape inference on it costs more
    than the onnxruntime run itself; onnxruntime infers the types of untyped graph outputs.
    Serialized protobuf messages merge on concatenation (repeated fields append), so the extra
    outputs are a tiny ``ModelProto`` appended to the model's own bytes.
    """
    present = {o.name for o in model.graph.output}
    extra = onnx.ModelProto()
    for node in model.graph.node:
        for name in node.output:
            if name and name not in present and (only is None or name in only):
                extra.graph.output.add().name = name
                present.add(name)
    return model.SerializeToString() + extra.SerializeToString()


def _run_session(content: bytes, feeds) -> dict[str, np.ndarray]:
    """One onnxruntime run of every graph output, single-threaded with basic optimizations.

    Why these options: the higher levels' fusions find little to fuse when most tensors are
    graph outputs, yet double the session set-up, which is most of the cost on small models;
    and a reference is best computed by the plain ONNX ops rather than by fused kernels. One
    thread: LiteRT runs at the same time on another core.
    """
    ort = val._import_onnxruntime()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(content, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, dict(feeds))
    return {n: np.asarray(v) for n, v in zip(names, outs, strict=True)}


def _timed(fn, *args):
    t0 = time.perf_counter()
    return fn(*args), time.perf_counter() - t0


def _run_reference(
    model: onnx.ModelProto, feeds, only=None
) -> tuple[dict[str, np.ndarray], str | None]:
    """Node outputs (those in ``only``, if given); falls back to typed outputs, then to the
    plain graph outputs, if onnxruntime rejects the exposed copy."""
    try:
        return _run_session(exposed_model_bytes(model, only), feeds), None
    except Exception:  # onnxruntime raises its own exception types; retry with types
        pass
    exposed, _ = expose_intermediates(model)
    try:
        return _run_session(exposed.SerializeToString(), feeds), None
    except Exception as exc:  # onnxruntime raises its own exception types
        note = f"onnxruntime rejected the exposed intermediates ({type(exc).__name__}: {exc})"
        return val.run_onnxruntime(model, feeds), note


# --------------------------------------------------------------------------------------------
# LiteRT with every tensor preserved
# --------------------------------------------------------------------------------------------


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
    # The threshold this tensor is judged by (it scales with the tensor's magnitude): what
    # the HTML chart draws next to each error.
    tol = val.tolerance(expected.dtype, m.get("max_expected_abs", math.nan), atol)
    res["tolerance"] = tol if tol is None or math.isfinite(tol) else str(tol)
    if scale is not None and m["shape_match"]:
        diff = np.abs(expected.astype(np.float64) - actual.astype(np.float64))
        res["quant_steps"] = float(np.max(diff / scale)) if diff.size else 0.0
    return res


MAPPING_DEFINITION = (
    "denominator: activation tensors of the main TFLite subgraph, i.e. every tensor without a "
    "constant buffer (graph inputs included; weights, biases and other constants excluded). "
    "mapped = 'same' (the tensor holding an ONNX value, in its stored layout) + derived copies of "
    "one, each compared with it ('padded': PAD output, compared on the ONNX window; 'contains': "
    "a larger computed tensor a slice crops to the ONNX value, e.g. an uncropped TRANSPOSE_CONV, "
    "compared on the window; 'permuted': TRANSPOSE materialization; 'reshaped': "
    "RESHAPE/SQUEEZE/EXPAND_DIMS). internal = "
    "temporaries of a multi-operator lowering, attributed to their ONNX node, never compared and "
    "not counted as mapped. unmapped = the rest, listed with the operator that produced them."
)


def _mapping(rows: list[dict], tensor_map: Mapping[str, Mapping], producers) -> dict:
    """How the TFLite activation tensors relate to ONNX tensors (see ``MAPPING_DEFINITION``)."""
    relation: dict[str, str] = {}
    internal: dict[str, str] = {}
    owner_node = {}
    for entry in tensor_map.values():
        relation.setdefault(entry["tensor"], "same")
        for d in entry.get("derived") or ():
            relation.setdefault(d["tensor"], d["relation"])
        for t in entry.get("internal") or ():
            owner_node.setdefault(t["tensor"], t["node"])
    activations = [r for r in rows if not r["constant"]]
    by_relation: dict[str, int] = {}
    unmapped = []
    for r in activations:
        rel = relation.get(r["name"])
        if rel is not None:
            by_relation[rel] = by_relation.get(rel, 0) + 1
        elif r["name"] in owner_node:
            internal[r["name"]] = owner_node[r["name"]]
        else:
            unmapped.append({"tensor": r["name"], "op": producers.get(r["index"], "input")})
    mapped = sum(by_relation.values())
    n = len(activations)
    return {
        "definition": MAPPING_DEFINITION,
        "activation_tensors": n,
        "mapped": mapped,
        "ratio": mapped / n if n else 1.0,
        "by_relation": dict(sorted(by_relation.items())),
        "internal": len(internal),
        "internal_ratio": len(internal) / n if n else 0.0,
        "unmapped_count": len(unmapped),
        "unmapped": unmapped[:UNMAPPED_LISTED],
        "internal_examples": [
            {"tensor": t, "node": node} for t, node in list(internal.items())[:UNMAPPED_LISTED]
        ],
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


def _onnx_order(stored, entry, reference: np.ndarray) -> tuple[np.ndarray, Any] | None:
    """Undo the stored layout of ``stored_real``'s result (rank fixed up by the reference)."""
    real, scale = stored
    layout = _layout(entry)
    if real.ndim != layout.rank:
        if real.size != reference.size:
            return None
        real = real.reshape(layout.stored_shape(reference.shape))
        scale = None if scale is None else np.reshape(scale, real.shape)
    actual = to_onnx_order(real, layout)
    scale = None if scale is None else to_onnx_order(np.asarray(scale), layout)
    return actual, scale


def _read_litert(interp, rows, tensor_map) -> dict[tuple[str, str], tuple]:
    """(ONNX name, TFLite tensor) -> ``stored_real`` for every mapped activation.

    Runs while onnxruntime is still computing (it needs no reference values).
    """
    by_name: dict[str, dict] = {}
    for row in rows:
        by_name.setdefault(row["name"], row)
    out: dict[tuple[str, str], tuple] = {}
    for onnx_name, entry in tensor_map.items():
        row = by_name.get(entry["tensor"])
        if row is None or row["constant"]:
            continue
        got = stored_real(interp, row)
        if got is None:
            continue
        out[onnx_name, entry["tensor"]] = got
        for d in entry.get("derived") or ():
            drow = by_name.get(d["tensor"])
            got = None if drow is None else stored_real(interp, drow, d["steps"])
            if got is not None:
                out[onnx_name, d["tensor"]] = got
    return out


def _measure_entry(arrays, onnx_name, entry, reference, atol):
    """(metrics or None, derived-copy records) of one ONNX tensor."""
    stored = arrays.get((onnx_name, entry["tensor"]))
    if onnx_name not in reference or stored is None:
        return None, []
    expected = reference[onnx_name]
    got = _onnx_order(stored, entry, expected)
    if got is None:
        return None, []
    m = _measure(expected, *got, atol)
    m["tflite_tensor"] = entry["tensor"]
    m["shape"] = list(expected.shape)
    derived = []
    for d in entry.get("derived") or ():
        stored = arrays.get((onnx_name, d["tensor"]))
        got = None if stored is None else _onnx_order(stored, entry, expected)
        if got is None:
            continue
        dm = _measure(expected, *got, atol)
        derived.append(
            {
                "tensor": d["tensor"],
                "onnx_tensor": onnx_name,
                "relation": d["relation"],
                "ok": dm["ok"],
                "max_abs": dm["max_abs"],
            }
        )
    return m, derived


def _measure_all(arrays, tensor_map, reference, atol, workers: int = 2):
    """Metrics per ONNX tensor (its primary TFLite tensor) and per compared derived copy.

    ``workers`` threads: numpy releases the GIL on whole-array work, which is most of it.
    """
    names = list(tensor_map)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(
            lambda n: _measure_entry(arrays, n, tensor_map[n], reference, atol), names
        )
        metrics: dict[str, dict[str, Any]] = {}
        derived: list[dict[str, Any]] = []
        for name, (m, copies) in zip(names, results, strict=True):
            if m is not None:
                metrics[name] = m
            derived.extend(copies)
    return metrics, derived


def validate_all_tensors(result, feeds=None, seed: int = 0, atol: float = 1e-4) -> dict[str, Any]:
    """Compare every intermediate tensor of a :class:`ConversionResult` (JSON-friendly dict).

    Keys: ``nodes`` (topological order: name, op_type, index, outputs with metrics, among
    them ``tolerance``, the threshold that output is judged by, and ``divergent``),
    ``first_divergent_node``, ``suspects``, ``chain``, ``outputs_ok``,
    ``mapping`` (TFLite activation tensors mapped to ONNX tensors; its ``definition`` says what
    is counted), ``derived`` (TFLite-only copies of ONNX tensors compared on their own;
    ``derived_divergent`` names the ones off while their ONNX tensor is fine), ``measured``
    (ONNX node outputs compared), ``notes`` and ``timing`` (seconds; ``onnxruntime`` overlaps
    ``litert`` and the reading part of ``compare``, so ``total`` is less than the sum).
    """
    started = time.perf_counter()
    io_table = result.report.get("io") or []
    feeds = dict(feeds) if feeds is not None else val.seeded_inputs(result.model, seed)
    # Dynamic dims symbolic again, so onnxruntime takes feeds of any size the file takes.
    model = val.reference_model(result.model, result.report.get("dynamic_shapes"))
    notes: list[str] = []

    # Both runtimes release the GIL while they compute: run them side by side, and read the
    # LiteRT side (file tables, tensor copies) while onnxruntime is still busy.
    with ThreadPoolExecutor(max_workers=1) as pool:
        ort_job = pool.submit(_timed, _run_reference, model, feeds, set(result.tensor_map))
        interp, t_litert = _timed(run_keeping_all_tensors, result.tflite_bytes, feeds, io_table)
        t0 = time.perf_counter()
        rows, producers = file_tables(result.tflite_bytes)
        mapping = _mapping(rows, result.tensor_map, producers)
        arrays = _read_litert(interp, rows, result.tensor_map)
        del interp
        t_read = time.perf_counter() - t0
        (reference, note), t_ort = ort_job.result()
    if note:
        notes.append(note)
    reference = {**{k: np.asarray(v) for k, v in feeds.items()}, **reference}

    t0 = time.perf_counter()
    metrics, derived = _measure_all(arrays, result.tensor_map, reference, atol)
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
    t_compare = time.perf_counter() - t0 + t_read

    all_outputs = [o for n in graph.node for o in n.output if o]
    return {
        "atol": atol,
        "seed": seed,
        "nodes": nodes,
        **verdict,
        "outputs_ok": all(status.get(o.name, False) for o in graph.output),
        "mapping": mapping,
        "derived": {"compared": len(derived), "ok": sum(1 for d in derived if d["ok"])},
        "derived_divergent": [
            d for d in derived if not d["ok"] and status.get(d["onnx_tensor"], False)
        ][:UNMAPPED_LISTED],
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
