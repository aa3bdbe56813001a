"""Cast a constant before the data movement that reads it, not after (rule
``cast_constant_before_moves`` of ``onnx_rewrites.RULES``).

scikit-learn's k-nearest-neighbours regressor, as skl2onnx writes it, keeps the training
targets as a float64 table and reads them with ``ArrayFeatureExtractor(table, neighbour
indices) -> Reshape -> Cast(float32) -> ReduceMean``. TFLite's GATHER has no float64 kernel,
so the literal graph was refused (``unsupported_dtype``) although its answer is float32.

A Cast is element-wise and data movement only copies elements, so
``Cast(move(c)) == move(Cast(c))`` for every element and every cast (a move never computes
with its elements: which elements it copies depends only on shapes and index inputs). When
a constant reaches a Cast through a chain of moves, each value of the chain read only by the
next link, the constant is cast once at conversion time (a new constant; the original keeps
its other readers) and the chain carries the target dtype; the Cast, now casting to the
dtype it already has, is removed by ``remove_noop_cast``. Exact, and it also saves the
run-time CAST and the wider table.
"""

from __future__ import annotations

import numpy as np

from . import op_classes
from .ir import Graph, Node, fresh_value_name

# (domain, op) of the copies: each output element is an element of input 0, every other
# input is shape or index information (op_classes.COPIES, and skl2onnx's table lookup)
_MOVES = {("", op) for op in op_classes.COPIES} | {("ai.onnx.ml", "ArrayFeatureExtractor")}


def _chain(graph: Graph, cast: Node, producers, consumers) -> list[Node] | None:
    """The moves from a constant to ``cast`` (first move first), or None."""
    chain: list[Node] = []
    name = cast.inputs[0]
    while True:
        value = graph.values.get(name)
        if value is None:
            return None
        if value.const is not None:
            return chain[::-1] if chain else None
        node = producers.get(name)
        if node is None or (node.domain, node.op_type) not in _MOVES:
            return None
        readers = consumers.get(name, [])
        if len(readers) != 1 or name in graph.outputs or len(node.outputs) != 1:
            return None
        chain.append(node)
        name = node.inputs[0]


def cast_constant_before_moves(graph: Graph) -> list[str]:
    producers = graph.producers()
    consumers = graph.consumers()
    changed = []
    for cast in graph.nodes:
        if cast.op_type != "Cast" or cast.domain != "" or not cast.inputs:
            continue
        out = graph.values.get(cast.outputs[0])
        if out is None or out.dtype is None:
            continue
        target = np.dtype(out.dtype)
        # float targets only: numpy rounds to nearest as CAST does (float -> int differs
        # out of range: numpy wraps, TFLite saturates)
        if target.kind != "f" or graph.values[cast.inputs[0]].dtype == target:
            continue
        chain = _chain(graph, cast, producers, consumers)
        if chain is None:
            continue
        first = chain[0]
        src = graph.values[first.inputs[0]]
        if src.const.dtype.kind not in "fiu":
            continue
        name = fresh_value_name(graph, f"{first.inputs[0]}_as_{target.name}")
        graph.values[name] = type(src)(name, target, src.shape, src.const.astype(target))
        first.inputs[0] = name
        for node in chain:
            graph.values[node.outputs[0]].dtype = target
        changed.append(cast.label)
    graph.invalidate()
    return changed


TRIGGERS = {"cast_constant_before_moves": {"Cast"}}
RULES = [("cast_constant_before_moves", cast_constant_before_moves)]
