"""Run-time sizes for the dynamic-shape lowering: shape vectors and small integer operands
whose size-dependent entries are computed in the graph from SHAPE of a tensor.

An entry that differs between the lowerings at sample sizes is expressed as ``c x`` the
product of one or two dims of the tensor the shape follows, else of the symbols' graph
inputs (or data-dependent outputs), else as the size of an earlier tensor that has it in
every lowering; anything else is refused (``dynamic_symbols.refuse``).
"""

from __future__ import annotations

from itertools import combinations
from math import prod

import numpy as np

from . import tfl
from .dynamic_symbols import refuse
from .tfl_edit import Editor


class RuntimeDims:
    """Builds shape vectors whose size-dependent entries are computed at run time, each from
    SHAPE of a tensor: the operand the shape follows, else the graph inputs carrying the
    symbols. The ops go right before the operator that reads the vector."""

    def __init__(self, sub: tfl.Subgraph, symbols, sources):
        # Names as given ("dynamic_shape/dim" many times): the builder numbers them.
        self.ed = Editor(sub, fresh_names=False)
        self.symbols = symbols
        self.sources = sources  # symbol name -> (graph input, stored axis)
        self.pending: list[tfl.Operator] = []
        self._cache: dict[tuple, tfl.Tensor] = {}
        self._reader: tfl.Operator | None = None
        self.others: list[tfl.Subgraph] = []  # the same subgraph in the other lowerings

    def _const(self, name: str, values) -> tfl.Tensor:
        return self.ed.const(f"dynamic_shape/{name}", values, np.int32)

    def _emit(self, key: tuple, opcode: str, inputs, name: str, **options) -> tfl.Tensor:
        if key not in self._cache:
            out = self.ed.temp(f"dynamic_shape/{name}", np.int32, (1,))
            self.pending.append(self.ed.op(opcode, inputs, [out], **options))
            self._cache[key] = out
        return self._cache[key]

    def _dim(self, tensor: tfl.Tensor, axis: int) -> tfl.Tensor:
        """[1] int32: the run-time size of ``tensor``'s stored axis ``axis``."""
        shape_key = ("shape", id(tensor))
        if shape_key not in self._cache:
            out = self.ed.temp(f"dynamic_shape/{tensor.name}/shape", np.int32, (tensor.rank,))
            self.pending.append(self.ed.op("SHAPE", [tensor], [out], out_type="INT32"))
            self._cache[shape_key] = out
        at = self._const(f"at{axis}", [axis])
        one = self._const("one", [1])
        return self._emit(
            ("dim", id(tensor), axis), "SLICE", [self._cache[shape_key], at, one], "dim"
        )

    def _product(self, factor: int, dims: list[tfl.Tensor]) -> tfl.Tensor:
        value = dims[0]
        for d in dims[1:]:
            value = self._emit(("MUL", id(value), id(d)), "MUL", [value, d], "product", **NONE)
        if factor != 1:
            k = self._const(f"k{factor}", [factor])
            value = self._emit(("MUL", id(value), factor), "MUL", [value, k], "scaled", **NONE)
        return value

    def _entry(
        self, values: list[int], follows: list[tfl.Tensor] | None, counts_only: bool = False
    ) -> tfl.Tensor | None:
        """``values``: the entry at the base and each bumped lowering. ``counts_only``: only
        data-dependent sizes may explain it (a value operand, not a shape)."""
        if follows is not None:
            rank = follows[0].rank
            for group in [(j,) for j in range(rank)] + list(combinations(range(rank), 2)):
                sizes = [prod(t.shape[j] for j in group) for t in follows]
                factor = _common_factor(values, sizes)
                if factor is not None:
                    return self._product(factor, [self._dim(follows[0], j) for j in group])
        found = self._explain(values, counts_only)
        if found is None:
            return None if counts_only else self._matching_dim(values)
        factor, used = found
        return self._product(factor, [self._dim(*self.sources[s.name]) for s in used])

    def _explain(self, values: list[int], counts_only: bool = False):
        """(c, symbols) with the entry = c x the product of those symbols at every sample
        size, their sources available; else None (nothing is emitted)."""
        used = [s for s, v in zip(self.symbols, values[1:], strict=True) if v != values[0]]
        sizes = [prod(s.samples[0] for s in used)]
        sizes += [
            prod(t.samples[s is t] for t in used) if s in used else sizes[0] for s in self.symbols
        ]
        factor = _common_factor(values, sizes)
        if factor is None or any(not self._available(s.name) for s in used):
            return None
        if counts_only and not all(s.data_dependent for s in used):
            return None
        return factor, used

    def _matching_dim(self, values: list[int]) -> tfl.Tensor | None:
        """The run-time size of a dim that has the entry's value in every lowering, of the
        nearest tensor computed before the reader (else a graph input): an entry that is no
        multiple of the symbols (an LSTM state's batch that is a conv's width / 8) but is a
        size the graph already has. None when no tensor has it."""
        ops = self.ed.sub.operators
        at = next((i for i, o in enumerate(ops) if o is self._reader), None)
        if at is None or not self.others:
            return None
        candidates = [
            (t, [o.operators[i].outputs[j] for o in self.others])
            for i in range(at - 1, -1, -1)
            for j, t in enumerate(ops[i].outputs)
        ]
        candidates += [
            (t, [o.inputs[j] for o in self.others]) for j, t in enumerate(self.ed.sub.inputs)
        ]
        for t, counterparts in candidates:
            if t is None or t.data is not None or any(c is None for c in counterparts):
                continue
            for k, n in enumerate(t.shape):
                if n == values[0] and all(
                    c.rank == t.rank and c.shape[k] == v
                    for c, v in zip(counterparts, values[1:], strict=True)
                ):
                    return self._dim(t, k)
        return None

    def expressible_values(self, ops, k: int) -> bool:
        """Can :meth:`value_tensor` compute operand ``k``?"""
        self._reader = ops[0]
        rows = [np.asarray(o.inputs[k].data).reshape(-1).tolist() for o in ops]
        for e, v0 in enumerate(rows[0]):
            values = [int(r[e]) for r in rows]
            if any(v != v0 for v in values) and self._explain(values, True) is None:
                return False
        return True

    def _available(self, symbol: str) -> bool:
        """Is the symbol's source computed before the operator being given a shape? (A
        data-dependent size exists only once its op has run.)"""
        if symbol not in self.sources:
            return False
        source = self.sources[symbol][0]
        if any(t is source for t in self.ed.sub.inputs):
            return True
        for op in self.ed.sub.operators:
            if op is self._reader:
                return False
            if any(t is source for t in op.outputs):
                return True
        return False

    def shape_tensor(self, ops, k: int, follows: int | None, where: str, reader=None) -> tfl.Tensor:
        """Operand ``k`` of ``ops`` (the same operator in each lowering), computed at run time
        right before ``reader`` (default ``ops[0]``; given when ``ops`` stand in for rows of
        an operand the graph does not hold yet, e.g. the dims of a FILL being built)."""
        out = self._vector(ops, k, follows, where, reader=reader)
        self.ed.insert_before(reader or ops[0], self.pending)
        self.pending = []
        return out

    def value_tensor(self, ops, k: int, where: str, follows=None) -> tfl.Tensor:
        """A small integer operand (a scalar or vector: a modulus, a TOPK_V2 k) whose
        differing entries are multiples of data-dependent sizes (or of the dims of the
        ``follows`` tensors, one per lowering), computed at run time."""
        x = ops[0].inputs[k]
        out = self._vector(ops, k, follows, where, counts_only=True)
        if ops[0].opcode == "FLOOR_MOD":  # an empty axis (a count of 0) has no valid index:
            one = self._const("one", [1])  # any non-zero modulus, never LiteRT's division by 0
            safe = self.ed.temp(f"dynamic_shape/{x.name}/nonzero", np.int32, out.shape)
            self.pending.append(self.ed.op("MAXIMUM", [out, one], [safe]))
            out = safe
        return self._finish_as(x, ops[0], out)

    def from_the_end(self, ops, offsets: np.ndarray, axis: int) -> tfl.Tensor:
        """GATHER's indices as the run-time size of the gathered axis plus ``offsets``."""
        self._reader = ops[0]
        x = ops[0].inputs[1]
        size = self._dim(ops[0].inputs[0], axis)
        offset = self._const(f"{x.name}/from_end", offsets.reshape(-1).tolist())
        out = self.ed.temp(f"dynamic_shape/{x.name}/index", np.int32, (offsets.size,))
        self.pending.append(self.ed.op("ADD", [offset, size], [out], **NONE))
        return self._finish_as(x, ops[0], out)

    def _finish_as(self, x: tfl.Tensor, reader: tfl.Operator, out: tfl.Tensor) -> tfl.Tensor:
        """``out`` (int32 values) in the shape and dtype of the constant ``x`` it replaces;
        the pending ops go in before ``reader``."""
        if tuple(x.shape) != tuple(out.shape):
            shaped = self.ed.temp(f"dynamic_shape/{x.name}/shaped", np.int32, x.shape)
            target = self._const(f"{x.name}/shape", list(x.shape))
            self.pending.append(self.ed.op("RESHAPE", [out, target], [shaped]))
            out = shaped
        if np.dtype(x.dtype) != np.int32:
            wide = self.ed.temp(f"dynamic_shape/{x.name}/cast", x.dtype, x.shape)
            self.pending.append(self.ed.op("CAST", [out], [wide]))
            out = wide
        self.ed.insert_before(reader, self.pending)
        self.pending = []
        return out

    def _vector(self, ops, k: int, follows, where: str, counts_only: bool = False, reader=None):
        """[n] int32 entries of operand ``k``, run-time where they differ between lowerings
        (the ops are left in ``pending``)."""
        self._reader = reader or ops[0]
        x = ops[0].inputs[k]
        data_inputs = follows if isinstance(follows, list) else None
        if isinstance(follows, int):
            data_inputs = [o.inputs[follows] for o in ops]
        rows = [np.asarray(o.inputs[k].data).reshape(-1).tolist() for o in ops]
        pieces, run = [], []
        for e, v0 in enumerate(rows[0]):
            values = [int(r[e]) for r in rows]
            if all(v == v0 for v in values):
                run.append(v0)
                continue
            piece = self._entry(values, data_inputs, counts_only)
            if piece is None:
                refuse(
                    f"{where}: a shape entry ({v0} at the base sizes) is not a multiple of "
                    "the dynamic dims"
                )
            if run:
                pieces.append(self._const(f"{x.name}/part{len(pieces)}", run))
                run = []
            pieces.append(piece)
        if run:
            pieces.append(self._const(f"{x.name}/part{len(pieces)}", run))
        out = self.ed.temp(f"dynamic_shape/{x.name}/runtime", np.int32, (len(rows[0]),))
        self.pending.append(self.ed.op("CONCATENATION", pieces, [out], axis=0, **NONE))
        return out

    def insert_ops(self) -> None:
        self.ed.commit()


NONE = {"fused_activation_function": "NONE"}


def _common_factor(values: list[int], sizes: list[int]) -> int | None:
    """The positive integer c with values[i] == c * sizes[i] for all i, if any."""
    if sizes[0] <= 0 or values[0] % sizes[0]:
        return None
    factor = values[0] // sizes[0]
    if factor <= 0 or any(v != factor * n for v, n in zip(values, sizes, strict=True)):
        return None
    return factor
