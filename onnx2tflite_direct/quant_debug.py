"""Per-layer quantization debugger: where does a quantized file's error enter?

Why: ``--validate`` gives one SQNR per output of each quantized file, which says *how much*
accuracy was lost but not *where*. Here every intermediate tensor of a quantized variant is
compared with the float ONNX model in onnxruntime, through the same tensor map the float
diagnostics use (``tensor_mapping``; integer tensors are dequantized with their own scale and
zero point), and each ONNX node is charged with the noise it *adds*: its output's relative noise
power minus that of its noisiest input. The node that adds the most is where the error enters;
a node whose SQNR drops by a lot relative to its inputs (an activation with a huge range, a
layer whose int8 weights are coarse) is the one to override (``--quant-override``).

A tensor's noise level is the worst of three SQNRs: over the whole tensor; the median over its
channels of each channel's own SQNR (axis 1 of a 4-D/5-D tensor, the last axis otherwise;
channels without signal left out); and for a [B, T, D] tensor the worst token's
(:func:`token_sqnr`). Why: the whole-tensor figure is dominated by what has the most energy, so
an activation whose range one loud channel widened shows a fine SQNR while every other channel
was crushed onto a few int8 steps, and a ViT's class token, small next to the patch tokens, is
crushed by the range they set without moving the whole-tensor figure; the per-channel and
per-token figures see that where it happens instead of layers later.

Measured, never judged (quantization error is expected): the exit code is not affected.

Names: an integer variant keeps the float model's tensor names where it can, and suffixes its
integer twin (``/int8``, ``/int16``) where a float reader still needs the float value; both hold
the same values, so the map entry is looked up under either. Tensors a variant no longer has (a
BatchNormalization folded into its convolution) are unmeasured: their producers' noise shows at
the next measured node, which lists them as ``unmeasured_upstream``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import diagnostics as D
from . import litert_tensors, op_classes
from . import validate as val

TWIN_SUFFIXES = ("", "/int8", "/int16", "/float")
# ONNX ops whose output elements are copies of input elements: in an integer file they copy
# integers exactly, so they add no noise; a selection can still show a lower SQNR than its
# whole input (the class token of a ViT is noisier than the average token), which is noise
# from upstream, not added here. They are listed but never charged. (Concat is not among them:
# it requantizes its inputs onto one shared scale and quantizes constant inputs.)
MOVES_DATA = op_classes.COPIES | {"Split", "DepthToSpace", "SpaceToDepth", "MaxPool"}
LARGEST_LISTED = 10  # largest drops listed per variant (the JSON also has every tensor)


def debug_variants(
    result, feeds=None, seed: int = 0, atol: float = 1e-4, kinds=None
) -> dict[str, dict[str, Any]]:
    """Per quantized file of a :class:`ConversionResult` (kind -> section, see
    :func:`debug_variant`), every file against one onnxruntime run of the float model."""
    variants = {
        k: v for k, v in (result.variants or {}).items() if kinds is None or k in set(kinds)
    }
    if not variants:
        return {}
    io_table = result.report.get("io") or []
    feeds = dict(feeds) if feeds is not None else val.seeded_inputs(result.model, seed)
    model = val.reference_model(result.model, result.report.get("dynamic_shapes"))
    reference, note = D._run_reference(model, feeds, set(result.tensor_map))
    reference = {**{k: np.asarray(v) for k, v in feeds.items()}, **reference}
    out = {}
    for kind, data in variants.items():
        try:
            section = debug_variant(
                data, model, feeds, io_table, result.tensor_map, reference, atol
            )
        except (RuntimeError, ValueError) as exc:  # LiteRT refused to run it tensor by tensor
            section = {"error": f"{type(exc).__name__}: {exc}", "notes": []}
        if note:
            section["notes"].append(note)
        out[kind] = section
    return out


def debug_variant(data, model, feeds, io_table, tensor_map, reference, atol) -> dict[str, Any]:
    """One file: ``tensors`` (every measured ONNX node output in topological order with its
    SQNRs, its noise level, its inputs' level and the drop), ``error_enters_at`` (the node
    adding the most noise power: the biggest contributor to the outputs' error, what to
    override first), ``steepest_drop`` (the node whose level falls the most in dB below its
    inputs', among nodes whose inputs already carry noise: a first layer after an exact
    float input always "drops" infinitely), ``largest_drops`` (by noise added), ``outputs``
    (SQNR per graph output), ``measured`` and ``notes``."""
    interp = litert_tensors.run_keeping_all_tensors(data, _integer_feeds(data, feeds), io_table)
    rows, _ = litert_tensors.file_tables(data)
    names = {r["name"] for r in rows if not r["constant"]}
    vmap = variant_map(tensor_map, names)
    arrays = D._read_litert(interp, rows, vmap)
    del interp
    metrics, _ = D._measure_all(arrays, vmap, reference, atol)
    logit_side = softmax_logit_side(model.graph)
    masked = sorted(n for n in metrics if _holds_mask(reference[n], n in logit_side))
    sqnr = {
        name: _finite_or_inf(m.get("sqnr_db"))
        for name, m in metrics.items()
        if m.get("shape_match", True) and name not in masked
    }
    channel, token = {}, {}
    for name in sqnr:
        got = arrays.get((name, vmap[name]["tensor"]))
        actual = None if got is None else D._onnx_order(got, vmap[name], reference[name])
        if actual is not None:
            channel[name] = channel_sqnr(reference[name], actual[0])
            token[name] = token_sqnr(reference[name], actual[0])
    level = {n: min(v, channel.get(n, math.inf), token.get(n, math.inf)) for n, v in sqnr.items()}
    tensors = attribute(model.graph, level)
    for row in tensors:
        row["sqnr_db"] = sqnr[row["tensor"]]
        row["channel_sqnr_db"] = channel.get(row["tensor"])
        row["token_sqnr_db"] = token.get(row["tensor"])
    ranked = sorted(
        (t for t in tensors if t["added_noise"] > 0),
        key=lambda t: (-t["added_noise"], t["index"]),
    )
    outputs = {o.name: _json(sqnr.get(o.name)) for o in model.graph.output}
    node_outputs = [o for n in model.graph.node for o in n.output if o]
    steep = [
        t
        for t in tensors
        if t["added_noise"] > 0 and t["drop_db"] is not None and math.isfinite(t["drop_db"])
    ]
    steepest = max(steep, key=lambda t: (t["drop_db"], -t["index"]), default=None)
    notes = []
    if masked:
        notes.append(
            f"not judged, {len(masked)} tensor(s) holding additive-mask values (<= "
            f"{MASK_VALUE:g}, or {MASK_GAP:g} below their row on a softmax's logit side: a "
            "softmax weighs them 0 however they are clamped): "
            f"{', '.join(masked[:5])}" + (" ..." if len(masked) > 5 else "")
        )
    return {
        "error_enters_at": _public(ranked[0]) if ranked else None,
        "steepest_drop": _public(steepest) if steepest else None,
        "largest_drops": [_public(t) for t in ranked[:LARGEST_LISTED]],
        "outputs": outputs,
        "tensors": [_public(t) for t in tensors],
        "measured": {
            "onnx_node_outputs": len(node_outputs),
            "compared": sum(1 for o in node_outputs if o in sqnr),
        },
        "notes": notes,
    }


def variant_map(tensor_map: Mapping[str, dict], names) -> dict[str, dict]:
    """The float model's tensor map re-pointed at the tensors a quantized file holds (the
    same name, or its integer twin); entries the file no longer has are left out."""
    out = {}
    for onnx_name, entry in tensor_map.items():
        held = _held(entry["tensor"], names)
        if held is None:
            continue
        derived = []
        for d in entry.get("derived") or ():
            dh = _held(d["tensor"], names)
            if dh is not None:
                derived.append({**d, "tensor": dh})
        out[onnx_name] = {**entry, "tensor": held, "derived": derived}
    return out


def channel_sqnr(expected: np.ndarray, actual: np.ndarray) -> float:
    """Median over channels of each channel's SQNR (dB): axis 1 of a 4-D/5-D (NCHW) tensor,
    the last axis of others (features of [N, D], [B, T, D]); channels whose reference is all
    zero are left out; a tensor of rank < 2 or of one channel gives its whole SQNR."""
    ref = np.asarray(expected, np.float64)
    act = np.asarray(actual, np.float64).reshape(ref.shape)
    if ref.dtype.kind != "f" or ref.ndim == 0:
        return math.inf
    axis = 1 if ref.ndim in (4, 5) else ref.ndim - 1
    ref, act = np.moveaxis(ref, axis, 0), np.moveaxis(act, axis, 0)
    signal = np.sum(ref.reshape(ref.shape[0], -1) ** 2, axis=1)
    noise = np.sum((ref - act).reshape(ref.shape[0], -1) ** 2, axis=1)
    live = signal > 0
    if not np.any(live):
        return math.inf
    with np.errstate(divide="ignore"):
        per = np.where(noise[live] > 0, 10.0 * np.log10(signal[live] / noise[live]), np.inf)
    return float(np.median(per))


MASK_VALUE = -1e9  # a reference at or below this holds mask sentinels (finfo.min, -1e9, -inf)
MASK_GAP = 1e3  # on a softmax's logit side: this far below the row's maximum is a mask
# Ops through which an additive mask reaches a softmax's logits ((1 - m) * -10000 + scores).
_MASK_PATH = frozenset(
    {"Add", "Sub", "Mul", "Div", "Where", "Cast", "Reshape", "Transpose", "Unsqueeze",
     "Squeeze", "Expand"}
)  # fmt: skip


def softmax_logit_side(graph) -> set[str]:
    """Tensors that reach a Softmax's input through ``_MASK_PATH`` ops: the logits, the mask
    and what the mask is computed from."""
    producer = {o: n for n in graph.node for o in n.output if o}
    stack = [n.input[0] for n in graph.node if n.op_type == "Softmax" and n.input]
    seen: set[str] = set()
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        node = producer.get(t)
        if node is not None and node.op_type in _MASK_PATH:
            stack.extend(x for x in node.input if x)
    return seen


def _holds_mask(ref, logit_side: bool = False) -> bool:
    """Does this reference hold additive-mask values: sentinels (<= ``MASK_VALUE``), or on a
    softmax's logit side, entries ``MASK_GAP`` below their row's maximum (BERT's -10000)? The
    integer files clamp them to a window below the row's logits (``integer_plan``: exact after
    the softmax), so their SQNR would blame a node that changes nothing."""
    arr = np.asarray(ref)
    if arr.dtype.kind != "f" or arr.size == 0:
        return False
    if float(np.min(arr)) <= MASK_VALUE:
        return True
    if not logit_side or arr.ndim == 0:
        return False
    finite = np.where(np.isfinite(arr), arr, 0.0)
    return float(np.max(np.max(finite, axis=-1, keepdims=True) - finite)) >= MASK_GAP


TOKEN_ENERGY_FLOOR = 1e-6  # tokens below this share of the mean token energy are not judged


def token_sqnr(expected: np.ndarray, actual: np.ndarray) -> float:
    """The worst token's SQNR (dB) of a [B, T, D] tensor (axis 1), inf for other ranks. Why
    the worst and not a median: one token can carry the result (a ViT's class token, small
    next to the patch tokens, crushed by a range they set, then rescaled by a LayerNorm), and
    transformer tokens do not go dead as CNN channels do; tokens with next to no energy
    (``TOKEN_ENERGY_FLOOR`` of the mean) are left out."""
    ref = np.asarray(expected, np.float64)
    if ref.dtype.kind != "f" or ref.ndim != 3 or ref.shape[1] < 2:
        return math.inf
    act = np.asarray(actual, np.float64).reshape(ref.shape)
    signal = np.sum(ref**2, axis=(0, 2))
    noise = np.sum((ref - act) ** 2, axis=(0, 2))
    live = signal > TOKEN_ENERGY_FLOOR * max(float(np.mean(signal)), 1e-300)
    if not np.any(live & (noise > 0)):
        return math.inf
    return float(np.min(10.0 * np.log10(signal[live] / np.maximum(noise[live], 1e-300))))


def _held(name: str, names) -> str | None:
    return next((name + s for s in TWIN_SUFFIXES if name + s in names), None)


def attribute(graph, sqnr: Mapping[str, float]) -> list[dict[str, Any]]:
    """Charge each node with the noise it adds, from each tensor's noise level ``sqnr``
    (dB; the rows' ``level_db``). A tensor's relative noise is 10^(-level/10);
    a node's input noise is its noisiest input's (an unmeasured tensor inherits its
    producer's input noise, so a fused Conv's noise shows at the Relu after it); the noise it
    adds is its worst output's minus that. Graph inputs count as nodes of their own (an
    integer input is quantized on the way in)."""
    noise: dict[str, float] = {}  # tensor -> relative noise power (0: exact)
    unmeasured_from: dict[str, set[str]] = {}  # unmeasured tensor -> the nodes behind it
    rows = []
    for k, vi in enumerate(graph.input):
        if vi.name in sqnr:
            n = _noise(sqnr[vi.name])
            noise[vi.name] = n
            rows.append(_row(-1 - k, f"input:{vi.name}", "input", vi.name, sqnr[vi.name], 0.0))
    for i, node in enumerate(graph.node):
        ins = [x for x in node.input if x]
        in_noise = max((noise.get(x, 0.0) for x in ins), default=0.0)
        upstream = set().union(*(unmeasured_from.get(x, set()) for x in ins)) if ins else set()
        measured = [o for o in node.output if o in sqnr]
        for o in node.output:
            if not o:
                continue
            if o in sqnr:
                noise[o] = _noise(sqnr[o])
            else:
                noise[o] = in_noise
                unmeasured_from[o] = upstream | {D.node_label(node)}
        if not measured:
            continue
        worst = min(measured, key=lambda o: sqnr[o])
        row = _row(i, D.node_label(node), node.op_type, worst, sqnr[worst], in_noise)
        if node.op_type in MOVES_DATA:
            row["added_noise"] = 0.0
            row["moves_data"] = True
        if upstream:
            row["unmeasured_upstream"] = sorted(upstream)
        rows.append(row)
    return rows


def _row(index, node, op_type, tensor, sqnr_db, in_noise) -> dict[str, Any]:
    out_noise = _noise(sqnr_db)
    in_sqnr = _sqnr(in_noise)
    drop = None if math.isinf(in_sqnr) and math.isinf(sqnr_db) else in_sqnr - sqnr_db
    return {
        "index": index,
        "node": node,
        "op_type": op_type,
        "tensor": tensor,
        "level_db": sqnr_db,
        "input_level_db": in_sqnr,
        "drop_db": drop,
        "added_noise": max(0.0, out_noise - in_noise),
    }


def _noise(sqnr_db: float) -> float:
    return 0.0 if sqnr_db == math.inf else 10.0 ** (-sqnr_db / 10.0)


def _sqnr(noise: float) -> float:
    return math.inf if noise <= 0.0 else -10.0 * math.log10(noise)


def _finite_or_inf(v) -> float:
    v = float(v) if v is not None else math.nan
    return v if not math.isnan(v) else -math.inf


def _json(v):
    if v is None:
        return None
    return v if math.isfinite(v) else str(v)


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: _json(v) if isinstance(v, float) else v for k, v in row.items()}
    out["added_noise_db"] = _json(_sqnr(row["added_noise"]))  # the added noise as an SQNR
    del out["added_noise"]
    return out


def _integer_feeds(data: bytes, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float feeds quantized for a file whose inputs are integers (the full-integer files),
    with each input's own scale and zero point; other inputs unchanged."""
    interp = val._import_litert_interpreter().Interpreter(model_content=bytes(data))
    out = dict(feeds)
    for name, detail in litert_tensors.input_details(interp).items():
        scale, zero = val._io_quantization(detail)
        arr = feeds.get(name)
        if scale is None or arr is None or np.asarray(arr).dtype.kind != "f":
            continue
        info = np.iinfo(detail["dtype"])
        q = np.rint(np.asarray(arr, np.float64) / scale) + zero
        out[name] = np.clip(q, info.min, info.max).astype(detail["dtype"])
    return out


def format_table(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """The stdout table: per quantized file, where the error enters and the largest drops."""
    lines = []
    for kind, s in sections.items():
        lines.append(f"quantized file {kind}: per-tensor SQNR vs onnxruntime's float model")
        entry = s.get("error_enters_at")
        if s.get("error"):
            lines.append(f"  not measured: {s['error']}")
            continue
        if entry is None:
            lines.append("  no compared tensor adds noise")
        else:
            lines.append(
                f"  error enters at {entry['node']} ({entry['op_type']}): noise level "
                f"{_fmt(entry['level_db'])} dB from inputs at {_fmt(entry['input_level_db'])} dB"
            )
        steep = s.get("steepest_drop")
        if steep is not None and steep["node"] != (entry or {}).get("node"):
            lines.append(
                f"  steepest drop at {steep['node']} ({steep['op_type']}): "
                f"{_fmt(steep['drop_db'])} dB below its inputs"
            )
        header = (
            "node", "op_type", "tensor", "sqnr_db", "channel_sqnr_db", "token_sqnr_db",
            "level_db", "input_level_db", "drop_db",
        )  # fmt: skip
        table = [header] + [
            (r["node"], r["op_type"], r["tensor"], *(_fmt(r[k]) for k in header[3:]))
            for r in s.get("largest_drops") or []
        ]
        widths = [max(len(str(row[c])) for row in table) for c in range(len(header))]
        for row in table if len(table) > 1 else ():
            cells = (str(v).ljust(w) for v, w in zip(row, widths, strict=True))
            lines.append(("  " + "  ".join(cells)).rstrip())
        outs = ", ".join(f"{k} {_fmt(v)} dB" for k, v in (s.get("outputs") or {}).items())
        lines.append(f"  outputs: {outs}")
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.1f}"
