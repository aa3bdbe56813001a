"""onnxruntime's double-Q/DQ merge: ``Q1 -> DQ1 -> Q2 -> DQ2`` becomes ``Q1' -> DQ2'``.

Why a converter copies an onnxruntime rewrite: onnxruntime applies it at every graph
optimization level but ``ORT_DISABLE_ALL`` (``DoubleQDQPairsRemover`` is a level-1 transformer,
run after ``CastElimination`` has removed a no-op Cast between the pairs), so what every
onnxruntime session computes for such a chain is not the model's literal double rounding but
one rounding onto a merged lattice: the intersection of the two pairs' ranges, spread over the
integer type. ``quantize_static`` writes the pattern into transformer exports (ViT: Softmax ->
Q -> DQ -> Cast(float) -> Q -> DQ, scales differing by orders of magnitude); the literal double
rounding drifts from onnxruntime by 0.13 on a ViT's logits. The rule ``merge_double_qdq``
(``--disable-rewrite merge_double_qdq`` keeps the literal semantics, which
``ORT_DISABLE_ALL`` and onnx's reference evaluator compute) makes the float32 file compute
what onnxruntime computes; ``quant/qdq_strip.py`` merges the same chains before stripping, so
the integer file uses the merged lattice too.

The match is onnxruntime's: every Q/DQ with an explicit, constant, one-element scale and
zero point, each pair with equal parameters, the zero points of both pairs of one type (int8
or uint8), Q1 and Q2 read only by the next node of the chain, DQ1 read once, none of Q1, DQ1,
Q2 a graph output. The merged parameters are computed with onnxruntime's float32 arithmetic
(:func:`merged_lattice`). Pairs with equal parameters merge exactly (``Q(DQ(q)) == q``).
"""

from __future__ import annotations

import math

import numpy as np

from .ir import Graph, Node, Value

# Integer types onnxruntime merges (its zero-point type switch).
MERGED_TYPES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}
# Nodes that are copies in the float domain (onnxruntime's level-1 rules remove them first).
PASSTHROUGH = ("Identity",)


def merged_lattice(s1: float, z1: int, s2: float, z2: int, dtype) -> tuple[float, int] | None:
    """The (scale, zero point) onnxruntime gives the outer Q and DQ, or None when it would not
    merge (a type it skips) or when the result is no lattice (disjoint ranges, a zero point out
    of the type's range: onnxruntime would write garbage there; the chain stays literal).

    Float32 throughout, as onnxruntime computes it: ``real_min = max((qmin - z1) * s1,
    (qmin - z2) * s2)``, ``real_max = min(...)``, ``scale = (real_max - real_min) / (qmax -
    qmin)``, ``zero point = round_half_away(qmin - real_min / scale)``.
    """
    rng = MERGED_TYPES.get(np.dtype(dtype))
    if rng is None:
        return None
    qmin, qmax = rng
    f = np.float32
    s1, s2 = f(s1), f(s2)
    lo = max(f(qmin - z1) * s1, f(qmin - z2) * s2)
    hi = min(f(qmax - z1) * s1, f(qmax - z2) * s2)
    scale = f(f(hi - lo) / f(qmax - qmin))
    if not np.isfinite(scale) or scale <= 0:
        return None
    centre = f(f(qmin) - f(lo / scale))
    zp = math.copysign(math.floor(abs(float(centre)) + 0.5), float(centre))
    if not qmin <= zp <= qmax:
        return None
    return float(scale), int(zp)


def _pair_params(graph: Graph, node: Node) -> tuple[float, int, np.dtype, str, str] | None:
    """(scale, zero point, zero-point dtype, scale name, zp name) of a Q/DQ onnxruntime can
    merge: explicit constant one-element scale (float32) and zero point."""
    if len(node.inputs) < 3 or not node.inputs[1] or not node.inputs[2]:
        return None
    if node.attrs.get("block_size", 0):
        return None
    scale = graph.values.get(node.inputs[1])
    zp = graph.values.get(node.inputs[2])
    if scale is None or zp is None or scale.const is None or zp.const is None:
        return None
    if scale.const.size != 1 or zp.const.size != 1 or scale.const.dtype != np.float32:
        return None
    return (
        float(scale.const.reshape(-1)[0]),
        int(zp.const.reshape(-1)[0]),
        zp.const.dtype,
        node.inputs[1],
        node.inputs[2],
    )


def _same_pair(a, b) -> bool:
    return a is not None and b is not None and a[:3] == b[:3]


def _sole_reader(graph: Graph, readers, name: str) -> Node | None:
    users = readers.get(name, [])
    if len(users) != 1 or name in graph.outputs:
        return None
    return users[0][0]


def _match(graph: Graph, readers, producers, dq1: Node):
    """(q1, dq1, skipped copies, q2, dq2) when ``dq1`` is the inner DQ of a mergeable chain."""
    if dq1.op_type != "DequantizeLinear" or dq1.domain != "":
        return None
    q1 = producers.get(dq1.inputs[0])
    if q1 is None or q1.op_type != "QuantizeLinear" or q1.domain != "":
        return None
    if _sole_reader(graph, readers, q1.outputs[0]) is not dq1:
        return None
    copies = []
    q2 = _sole_reader(graph, readers, dq1.outputs[0])
    while q2 is not None and q2.op_type in PASSTHROUGH and q2.domain == "":
        copies.append(q2)
        q2 = _sole_reader(graph, readers, q2.outputs[0])
    if q2 is None or q2.op_type != "QuantizeLinear" or q2.domain != "":
        return None
    dq2 = _sole_reader(graph, readers, q2.outputs[0])
    if dq2 is None or dq2.op_type != "DequantizeLinear" or dq2.domain != "":
        return None
    p1, p2 = _pair_params(graph, q1), _pair_params(graph, q2)
    if not _same_pair(p1, _pair_params(graph, dq1)) or not _same_pair(p2, _pair_params(graph, dq2)):
        return None
    if p1[2] != p2[2] or p1[2] not in MERGED_TYPES:
        return None
    return q1, dq1, copies, q2, dq2


def merge_double_qdq(graph: Graph) -> list[str]:
    """The front-end rule (``onnx_rewrites.RULES``): merge every matching chain, repeatedly
    (a merged chain may itself be the first pair of the next one)."""
    changed: list[str] = []
    skip: set[int] = set()  # inner DQs of chains whose merged lattice is no lattice
    while True:
        readers, producers = graph.consumers(), graph.producers()
        found = next(
            (
                m
                for n in graph.nodes
                if id(n) not in skip and (m := _match(graph, readers, producers, n))
            ),
            None,
        )
        if found is None:
            graph.invalidate()
            return changed
        q1, dq1, copies, q2, dq2 = found
        p1, p2 = _pair_params(graph, q1), _pair_params(graph, q2)
        if p1[:2] != p2[:2]:
            merged = merged_lattice(p1[0], p1[1], p2[0], p2[1], p1[2])
            if merged is None:
                skip.add(id(dq1))
                continue
            scale_name, zp_name = _add_params(graph, q1, merged, p1[2])
            for node in (q1, dq2):
                node.inputs[1:3] = [scale_name, zp_name]
        dq2.inputs[0] = q1.outputs[0]
        gone = {id(dq1), id(q2), *(id(c) for c in copies)}
        graph.nodes = [n for n in graph.nodes if id(n) not in gone]
        graph.invalidate()
        changed.extend([dq1.label, *(c.label for c in copies), q2.label])


def _add_params(graph: Graph, q1: Node, merged, dtype) -> tuple[str, str]:
    scale = np.array(merged[0], np.float32)
    zp = np.array(merged[1], dtype)
    names = []
    for hint, value in (("scale", scale), ("zero_point", zp)):
        name, k = f"{q1.label}/merged_{hint}", 0
        while name in graph.values:
            k += 1
            name = f"{q1.label}/merged_{hint}_{k}"
        graph.values[name] = Value(name, value.dtype, (), value)
        names.append(name)
    return names[0], names[1]
