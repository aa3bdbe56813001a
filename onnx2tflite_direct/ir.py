"""Graph IR between the ONNX front end and the lowerings.

Values carry dtype, static shape (``None`` entries are dynamic dims) and, for constants, the
numpy data. Nodes keep attributes as plain Python/numpy values. The graph is topologically
sorted by the front end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(eq=False, slots=True)
class Value:
    name: str
    dtype: np.dtype | None
    shape: tuple[int | None, ...] | None
    const: np.ndarray | None = None

    @property
    def is_constant(self) -> bool:
        return self.const is not None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) and d >= 0 for d in self.shape)


@dataclass(eq=False, slots=True)
class Node:
    name: str
    op_type: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    opset: int = 0  # opset version of the node's domain in this model
    # Outer-scope names read by the node's subgraphs (If/Loop/Scan bodies), as the subgraphs
    # spell them. They are also appended to ``inputs`` so that graph analyses (consumers,
    # dead-value checks, renames by rewrites) see the dependency; ``inputs[-len(k):]`` feeds
    # ``implicit_inputs[k]`` even after a rewrite renamed the producer.
    implicit_inputs: list[str] = field(default_factory=list)

    @property
    def explicit_inputs(self) -> list[str]:
        """The inputs the ONNX node lists itself (without the subgraphs' outer-scope reads)."""
        return self.inputs[: len(self.inputs) - len(self.implicit_inputs)]

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    @property
    def label(self) -> str:
        return self.name or f"{self.op_type}:{self.outputs[0] if self.outputs else '?'}"


def value_dtype(graph: Graph, name: str) -> np.dtype | None:
    """The dtype of value ``name`` (None: no such value, or its dtype is unknown)."""
    v = graph.values.get(name) if name else None
    return None if v is None or v.dtype is None else np.dtype(v.dtype)


def value_const(graph: Graph, name: str) -> np.ndarray | None:
    """The constant array of value ``name`` (None: not a constant, or no such value)."""
    v = graph.values.get(name) if name else None
    return None if v is None else v.const


def fresh_value_name(graph: Graph, base: str) -> str:
    """``base``, or ``base_2``, ``base_3`` ...: the first name no value of ``graph`` has yet
    (graph rewrites add values without clobbering the model's own names)."""
    name, k = base, 1
    while name in graph.values:
        k += 1
        name = f"{base}_{k}"
    return name


def prune_to_fixpoint(
    graph: Graph, roles: dict[int, str], fits: Callable[[Node, str], bool]
) -> dict[int, str]:
    """Drop from ``roles`` ({id(node): role}) every node that ``fits`` rejects, until all that
    remain fit: a rewrite region whose members each need their neighbours to be members, so
    dropping one member can unfit another."""
    changed = True
    while changed:
        changed = False
        for node in graph.nodes:
            role = roles.get(id(node))
            if role is None or fits(node, role):
                continue
            del roles[id(node)]
            changed = True
    return roles


@dataclass(eq=False)
class Graph:
    nodes: list[Node]
    values: dict[str, Value]
    inputs: list[str]
    outputs: list[str]
    opsets: dict[str, int]
    # True when the graph is a model with dynamic input dims pinned at one sample
    # (``dynamic_shapes.py`` lowers it at several and compares): a rewrite must then not bake
    # a size into a constant that cannot follow the dims at run time (e.g. an [L, L] matrix).
    sample_pinned: bool = False
    # With ``sample_pinned``: per value, which dims differ at the front end's probe sizes
    # (every symbol larger), i.e. follow the run-time sizes. A value absent here is unknown.
    varying_dims: dict[str, tuple[bool, ...]] = field(default_factory=dict)

    def consumers(self) -> dict[str, list[tuple[Node, int]]]:
        """Map value name -> [(consuming node, input index)], in node order."""
        out: dict[str, list[tuple[Node, int]]] = {}
        for node in self.nodes:
            for i, name in enumerate(node.inputs):
                if name:
                    out.setdefault(name, []).append((node, i))
        return out

    def used(self, name: str) -> bool:
        """Is ``name`` read by a node or exposed as a graph output?"""
        if not name:
            return False
        if getattr(self, "_used", None) is None:
            self._used = {i for n in self.nodes for i in n.inputs if i} | set(self.outputs)
        return name in self._used

    def invalidate(self) -> None:
        """Call after rewrites change the node list."""
        self._used = None

    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs if o}
