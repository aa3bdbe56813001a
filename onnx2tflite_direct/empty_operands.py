"""Concat operands with no elements are dropped (rule ``drop_empty_concat_operands`` of
``onnx_rewrites.RULES``).

Partial rotary embeddings as transformers writes them split each head into a rotated part and
a pass-through part and concatenate them back: ``cat(rotate(q[..., :r]), q[..., r:])``. With
``partial_rotary_factor = 1.0`` (Phi-3 and others) ``r`` is the whole head, so the
pass-through slice is empty (a last dim of 0) and TorchScript's exporter keeps it. TFLite has
no zero-size tensors (LiteRT's STRIDED_SLICE is refused for an empty result), so the literal
graph was refused although the empty operand contributes nothing to the Concat.

A Concat operand whose size along the concat axis is 0 adds no element to the result, whatever
its other dims: removing it from the input list is exact. Its producers, then read by nothing,
go too (only the chain the rule disconnected). Every ONNX op of the default domain computes
its outputs and nothing else, so any of them that no one reads can go (an earlier list of the
rotary chain's ops left an empty Slice behind a Sub, Div, Tile or Relu, lowered and refused);
ops of other domains stay. The rule leaves a Concat alone when every operand is empty, and,
for a model lowered at sample sizes (``Graph.sample_pinned``), when the zero is not known to
hold at every size (``Graph.varying_dims``).
"""

from __future__ import annotations

from .ir import Graph

# Ops of these domains have no effect but their outputs: they may go once nothing reads them.
_PURE_DOMAINS = ("", "ai.onnx")


def _empty_along(graph: Graph, name: str, axis: int) -> bool:
    value = graph.values.get(name)
    if value is None or value.shape is None or value.const is not None:
        return False
    rank = len(value.shape)
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank or value.shape[a] != 0:
        return False
    if graph.sample_pinned:
        varying = graph.varying_dims.get(name)
        if varying is None or varying[a]:
            return False
    return True


def drop_empty_concat_operands(graph: Graph) -> list[str]:
    changed: list[str] = []
    disconnected: list[str] = []
    for node in graph.nodes:
        if node.op_type != "Concat" or node.domain not in ("", "ai.onnx"):
            continue
        axis = int(node.attrs.get("axis", 0))
        keep = [i for i in node.inputs if not (i and _empty_along(graph, i, axis))]
        if len(keep) == len(node.inputs) or not keep:
            continue
        disconnected += [i for i in node.inputs if i not in keep]
        node.inputs = keep
        changed.append(node.label)
    if not changed:
        return changed
    graph.invalidate()
    producers = graph.producers()
    pending = list(disconnected)
    removed: set[int] = set()
    while pending:
        name = pending.pop()
        node = producers.get(name)
        if node is None or id(node) in removed or node.domain not in _PURE_DOMAINS:
            continue
        if any(graph.used(o) for o in node.outputs):
            continue
        removed.add(id(node))
        changed.append(node.label)
        graph.nodes = [n for n in graph.nodes if id(n) not in removed]
        graph.invalidate()
        pending += [i for i in node.inputs if i]
    return changed
