"""The op registry: the single source of truth for what converts and under which constraints.

Each entry maps (domain, op type, opset range) to a lowering function, a layout policy and the
constraints checked *before* lowering. ``docs/ops.md`` and the coverage report's policy table
are generated from these entries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import errors
from .errors import UnsupportedError
from .ir import Graph, Node

FLOAT = ("float32",)
FLOATS = ("float32", "float16")
INTS = ("int32", "int64")


@dataclass(frozen=True)
class AttrRule:
    """An attribute constraint: ``check(value) -> bool`` plus the text the docs show."""

    name: str
    check: Callable[[Any], bool]
    describe: str
    default: Any = None


def attr_in(name: str, allowed, default=None) -> AttrRule:
    allowed = tuple(allowed)
    return AttrRule(name, lambda v: v in allowed, f"{name} in {list(allowed)}", default)


@dataclass
class OpSpec:
    op_type: str
    lower: Callable
    layout: Callable
    domain: str = ""
    since: int = 1
    until: int | None = None
    dtypes: tuple[str, ...] = FLOAT  # allowed dtypes of the inputs listed in ``dtype_inputs``
    dtype_inputs: tuple[int, ...] = (0,)
    ranks: tuple[int, ...] | None = None  # allowed ranks of input 0
    const_inputs: tuple[int, ...] = ()  # inputs that must be constant when present
    nonempty: bool = False  # input 0 may not have a zero-size dim (the kernel rejects it)
    # Output sizes depend on the data (Unique, NonZero ...): the static-shape check skips the
    # outputs so that ``extra_check`` can refuse with the precise reason.
    dynamic_outputs: bool = False
    attrs: tuple[AttrRule, ...] = ()
    tflite_ops: tuple[str, ...] = ()
    notes: str = ""
    accepts_inner: Callable[[Node, int, Graph], bool] | None = None
    extra_check: Callable[[Node, Graph], str | None] | None = field(default=None, repr=False)

    def describe_constraints(self) -> str:
        parts = [f"dtypes {'/'.join(self.dtypes)}"]
        if self.ranks:
            parts.append(f"rank {'/'.join(map(str, self.ranks))}")
        if self.const_inputs:
            parts.append(f"constant inputs {list(self.const_inputs)}")
        if self.nonempty:
            parts.append("no zero-size dims")
        parts.extend(r.describe for r in self.attrs)
        if self.notes:
            parts.append(self.notes)
        if REGISTRY.decomposition((self.domain, self.op_type)) is not None:
            parts.append("--decompose available (primitive builtins only)")
        return "; ".join(parts)


class Registry:
    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], list[OpSpec]] = {}
        # (domain, op type) -> lowering using only primitive builtins (``--decompose OP``),
        # for runtimes or delegates whose dedicated kernel is missing or wrong.
        self._decompositions: dict[tuple[str, str], Callable] = {}

    def add_decomposition(self, domain: str, op_type: str, fn: Callable) -> None:
        if (domain, op_type) in self._decompositions:
            raise ValueError(f"{_op_name(domain, op_type)}: a decomposition is registered already")
        self._decompositions[(domain, op_type)] = fn

    def decomposition(self, key: tuple[str, str]) -> Callable | None:
        return self._decompositions.get(key)

    def decomposable_ops(self) -> list[str]:
        return sorted(op for _, op in self._decompositions)

    def add(self, spec: OpSpec) -> OpSpec:
        """Register ``spec``; refuses an opset range that overlaps one registered for the same
        op and domain (lookup would then depend on the order modules are imported in)."""
        specs = self._specs.setdefault((spec.domain, spec.op_type), [])
        for other in specs:
            if _overlap(spec, other):
                raise ValueError(
                    f"{_op_name(spec.domain, spec.op_type)}: opsets {_range(spec)} "
                    f"({spec.lower.__module__}) overlap opsets {_range(other)} "
                    f"({other.lower.__module__}) registered already"
                )
        specs.append(spec)
        return spec

    def lookup(self, domain: str, op_type: str, opset: int) -> OpSpec | None:
        for spec in self._specs.get((domain, op_type), []):
            if spec.since <= opset and (spec.until is None or opset <= spec.until):
                return spec
        return None

    def specs(self) -> list[OpSpec]:
        return [s for key in sorted(self._specs) for s in self._specs[key]]

    def known_op(self, domain: str, op_type: str) -> bool:
        return (domain, op_type) in self._specs


def _op_name(domain: str, op_type: str) -> str:
    return f"{domain}::{op_type}" if domain else op_type


def _range(spec: OpSpec) -> str:
    return f"{spec.since}..{spec.until if spec.until is not None else ''}"


def _overlap(a: OpSpec, b: OpSpec) -> bool:
    a_until = a.until if a.until is not None else float("inf")
    b_until = b.until if b.until is not None else float("inf")
    return a.since <= b_until and b.since <= a_until


REGISTRY = Registry()


def lowering(op_type: str, layout: Callable, **kwargs) -> Callable:
    """Decorator registering ``fn`` as the lowering of ``op_type``."""

    def wrap(fn: Callable) -> Callable:
        REGISTRY.add(OpSpec(op_type=op_type, lower=fn, layout=layout, **kwargs))
        return fn

    return wrap


def decomposition(op_type: str, domain: str = "") -> Callable:
    """Decorator registering ``fn`` as the primitive-builtin lowering of ``op_type`` (used instead
    of the op's regular lowering when the user asks with ``--decompose``)."""

    def wrap(fn: Callable) -> Callable:
        REGISTRY.add_decomposition(domain, op_type, fn)
        return fn

    return wrap


def decomposable_ops() -> list[str]:
    return REGISTRY.decomposable_ops()


@functools.lru_cache(maxsize=256)
def dtype_name(dtype) -> str:
    """``np.dtype(dtype).name``, cached: numpy builds the name string on every access, and
    lowering asks for it thousands of times per model."""
    return np.dtype(dtype).name


def _dtype_name(dtype) -> str:
    return "none" if dtype is None else dtype_name(dtype)


def check_node(spec: OpSpec, node: Node, graph: Graph) -> None:
    """Raise :class:`UnsupportedError` with a reason code when ``node`` breaks a constraint."""

    def refuse(code: str, msg: str):
        raise UnsupportedError(code, f"{node.op_type}: {msg}", node.label)

    values = graph.values
    for i in spec.const_inputs:
        if i < len(node.inputs) and node.inputs[i] and not values[node.inputs[i]].is_constant:
            refuse(
                errors.REQUIRES_CONSTANT_INPUT, f"input {i} ({node.inputs[i]!r}) must be constant"
            )
    for i in spec.dtype_inputs:
        if i < len(node.inputs) and node.inputs[i]:
            name = _dtype_name(values[node.inputs[i]].dtype)
            if name not in spec.dtypes:
                refuse(
                    errors.UNSUPPORTED_DTYPE,
                    f"input {i} has dtype {name}; supported: {', '.join(spec.dtypes)}",
                )
    outputs = [] if spec.dynamic_outputs else [o for o in node.outputs if graph.used(o)]
    for name in [n for n in node.inputs if n] + outputs:
        v = values[name]
        if not v.is_constant and not v.is_static:
            refuse(
                errors.DYNAMIC_SHAPE_UNSUPPORTED,
                f"tensor {name!r} has no static shape ({v.shape}); pin input dims with "
                "--input-shape NAME:d0,d1,... or --batch-size N",
            )
    if spec.nonempty and node.inputs and node.inputs[0]:
        shape = values[node.inputs[0]].shape or ()
        if any(d == 0 for d in shape):
            refuse(errors.EMPTY_TENSOR_UNSUPPORTED, f"input shape {list(shape)} is empty")
    if spec.ranks is not None and node.inputs and node.inputs[0]:
        rank = values[node.inputs[0]].rank
        if rank not in spec.ranks:
            refuse(errors.UNSUPPORTED_RANK, f"input rank {rank}; supported: {list(spec.ranks)}")
    for rule in spec.attrs:
        value = node.attrs.get(rule.name, rule.default)
        if not rule.check(value):
            refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE,
                f"attribute {rule.name}={value!r} is not supported ({rule.describe})",
            )
    if spec.extra_check is not None:
        problem = spec.extra_check(node, graph)
        if problem:
            code, _, msg = problem.partition(":")
            refuse(code, msg.strip())
