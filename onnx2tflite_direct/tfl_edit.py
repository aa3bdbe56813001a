"""The one editor of lowered TFLite graphs: unique names, new tensors and constants, operator
replacement.

Every pass that changes a :class:`tfl.Subgraph` after lowering (``tfl_rewrites``,
``dynamic_shapes``, ``quant/*``, ``gpu_friendly``) reads the graph through
``Subgraph.producers()`` / ``consumers()`` and changes it through an :class:`Editor`, so the
questions "who writes this tensor", "who reads it", "what is this new tensor called" and "where
does the new operator go" have one answer each.

Names: a tensor name is a label (identity connects operators), and the builder makes the names
of a subgraph unique when it writes them (:func:`unique_names`, in graph order). An editor with
``fresh_names=True`` names new tensors uniquely at once (``base``, ``base_1``, ``base_2`` ...,
as the lowering driver does), for passes that look tensors up by name; with
``fresh_names=False`` new tensors keep the name given and the builder settles duplicates.

Operator edits are staged (``insert_before``, ``insert_after``, ``prepend``, ``replace``,
``remove``) and applied by :meth:`Editor.commit` in one pass over the operator list, so a
pass never shifts indices under its own feet and a large graph is rebuilt once.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from . import tfl


class Names:
    """Unique names: :meth:`take` gives ``base`` if free, else the first free ``base_k``."""

    __slots__ = ("_next", "_taken")

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._taken = set(taken)
        # base -> the next suffix to try: every suffix below it is taken (names are never
        # released), so n names alike cost no rescans.
        self._next: dict[str, int] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._taken

    def add(self, name: str) -> None:
        self._taken.add(name)

    def take(self, base: str) -> str:
        if base not in self._taken:
            self._taken.add(base)
            return base
        return self.suffixed(base)

    def suffixed(self, base: str) -> str:
        """The first free ``base_k`` (k >= 1), taken."""
        k = self._next.get(base, 1)
        while f"{base}_{k}" in self._taken:
            k += 1
        self._next[base] = k + 1
        name = f"{base}_{k}"
        self._taken.add(name)
        return name


def unique_names(tensors: list[tfl.Tensor]) -> list[str]:
    """The tensors' names made unique in tensor order: the first of a name keeps it, later
    ones get ``_1``, ``_2``... (a suffix no tensor has). What the builder writes."""
    names = Names(t.name for t in tensors)
    seen: set[str] = set()
    out = []
    for t in tensors:
        name = names.suffixed(t.name) if t.name in seen else t.name
        seen.add(name)
        out.append(name)
    return out


class Editor:
    """New tensors, constants and operators for one subgraph, and staged operator edits."""

    def __init__(self, sub: tfl.Subgraph, *, fresh_names: bool = True) -> None:
        self.sub = sub
        self.fresh_names = fresh_names
        self._names: Names | None = None
        self._before: dict[int, list[tfl.Operator]] = {}
        self._after: dict[int, list[tfl.Operator]] = {}
        self._first: list[tfl.Operator] = []
        self._replaced: dict[int, list[tfl.Operator]] = {}

    # ---- names and new tensors --------------------------------------------------------
    @property
    def names(self) -> Names:
        """The names of the subgraph's tensors and of every tensor named here since."""
        if self._names is None:
            self._names = Names(t.name for t in self.sub.tensors())
        return self._names

    def unique(self, base: str) -> str:
        return self.names.take(base)

    def _name(self, base: str) -> str:
        return self.names.take(base) if self.fresh_names else base

    def temp(self, base: str, dtype, shape, **fields) -> tfl.Tensor:
        """A new activation tensor (``fields``: ``quantization``, ``shape_signature``)."""
        return tfl.Tensor(self._name(base), dtype, tuple(shape), **fields)

    def const(self, base: str, array, dtype=None, **fields) -> tfl.Tensor:
        """A new constant holding ``array`` (C order; 0-d arrays stay 0-d)."""
        array = np.asarray(array, dtype=dtype, order="C")
        return tfl.Tensor(self._name(base), array.dtype, array.shape, data=array, **fields)

    @staticmethod
    def op(
        opcode: str, inputs, outputs, like: tfl.Operator | None = None, **options
    ) -> tfl.Operator:
        """A new operator, attributed to the ONNX node of ``like`` when given."""
        node = like.onnx_node if like is not None else None
        return tfl.Operator(opcode, list(inputs), list(outputs), options, onnx_node=node)

    def reshape(
        self, src: tfl.Tensor, dst: tfl.Tensor, like: tfl.Operator | None = None
    ) -> tfl.Operator:
        """RESHAPE ``src`` into ``dst`` (the target shape as an int32 constant)."""
        shape = self.const(f"{dst.name}/shape", np.array(dst.shape, np.int32))
        return self.op("RESHAPE", [src, shape], [dst], like)

    # ---- the graph's indexes ----------------------------------------------------------
    def producers(self, wanted=None, opcodes=None) -> dict[int, tfl.Operator]:
        return self.sub.producers(wanted, opcodes)

    def consumers(self, wanted=None) -> dict[int, list[tuple[tfl.Operator, int]]]:
        return self.sub.consumers(wanted)

    def io_ids(self) -> set[int]:
        """id() of the subgraph's input and output tensors."""
        return {id(t) for t in (*self.sub.inputs, *self.sub.outputs)}

    # ---- staged operator edits ----------------------------------------------------------
    def insert_before(self, anchor: tfl.Operator, ops: Iterable[tfl.Operator]) -> None:
        self._before.setdefault(id(anchor), []).extend(ops)

    def insert_after(self, anchor: tfl.Operator, ops: Iterable[tfl.Operator]) -> None:
        self._after.setdefault(id(anchor), []).extend(ops)

    def prepend(self, ops: Iterable[tfl.Operator]) -> None:
        """Operators that go before every existing one."""
        self._first.extend(ops)

    def replace(self, op: tfl.Operator, ops: Iterable[tfl.Operator]) -> None:
        """``op`` gives way to ``ops`` (in its place)."""
        self._replaced[id(op)] = list(ops)

    def remove(self, op: tfl.Operator) -> None:
        self._replaced[id(op)] = []

    def removed(self, op: tfl.Operator) -> bool:
        return self._replaced.get(id(op)) == []

    @property
    def pending(self) -> bool:
        return bool(self._before or self._after or self._first or self._replaced)

    def commit(self) -> int:
        """Apply the staged edits in one pass over the operators (in place); returns how many
        operators were removed or replaced."""
        if not self.pending:
            return 0
        before, after, replaced = self._before, self._after, self._replaced
        ops = list(self._first)
        for op in self.sub.operators:
            key = id(op)
            if key in before:
                ops.extend(before[key])
            if key in replaced:
                ops.extend(replaced[key])
            else:
                ops.append(op)
            if key in after:
                ops.extend(after[key])
        self.sub.operators[:] = ops
        count = len(replaced)
        self._before, self._after, self._first, self._replaced = {}, {}, [], {}
        return count
