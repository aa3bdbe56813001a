"""The symbols of a dynamic-shape model and the signal that carries them (``dynamic_shapes.py``).

A symbol is an input dimension the model leaves unknown and the user did not pin (dims that
share a ``dim_param`` are one symbol; ``NAME+K`` follows NAME), or the data-dependent size
of an op's output. The front end raises :class:`DynamicShapeModel` with them before any heavy
work; the pipeline then lowers at the symbols' sample sizes. Also here: the refusal every
part of the dynamic-shape lowering raises when a size dependence cannot be expressed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx

BATCH_SAMPLES = (2, 3)
PIN_HINT = "pin the dims with --input-shape NAME:d0,d1,... (or the batch with --batch-size N)"
SIZE_SAMPLES = (64, 96)
# Key prefix of a sample pin on a data-dependent *output* (NonZero, Compress) among the input
# shape pins: the front end gives that output the pinned shape instead of an unknown one.
COUNT_PIN = "data-dependent:"


@dataclass(frozen=True)
class Symbol:
    """One unknown input dimension (shared by every input dim with the same ``dim_param``),
    or the data-dependent size of an op's output (``data_dependent``: the occurrence names
    that output; the size is known only when the op runs, e.g. WHERE's row count)."""

    name: str
    occurrences: tuple[tuple[str, int], ...]  # (graph input or data-dependent output, axis)
    samples: tuple[int, int]
    data_dependent: bool = False


class DynamicShapeModel(Exception):  # noqa: N818 - a signal between front end and pipeline
    """Raised by the front end before any heavy work: these symbols are left unknown (or by
    the lowering, before it starts, for data-dependent output sizes: ``output_dims``)."""

    def __init__(
        self,
        symbols: list[Symbol],
        input_dims: dict[str, list[int | str]],
        output_dims: dict[str, list[int | str]] | None = None,
    ):
        super().__init__(", ".join(s.name for s in symbols))
        self.symbols = symbols
        self.input_dims = input_dims  # per dynamic input: static dims and symbol names
        self.output_dims = output_dims or {}  # per data-dependent output: the same

    def merge(self, other: DynamicShapeModel) -> bool:
        """Add the symbols ``other`` found (data-dependent sizes seen once the sizes before
        them were pinned); False when it brings nothing new."""
        known = {s.name for s in self.symbols}
        new = [s for s in other.symbols if s.name not in known]
        pinned = set(other.output_dims) - set(self.output_dims)  # (a repeat of a known one)
        self.symbols.extend(new)
        self.input_dims.update(other.input_dims)
        self.output_dims.update(other.output_dims)
        return bool(new or pinned)

    def summary(self) -> dict:
        """The report's ``dynamic_shapes`` section."""
        return {
            "symbols": [
                {
                    "name": s.name,
                    "dims": [list(o) for o in s.occurrences],
                    "samples": list(s.samples),
                }
                for s in self.symbols
            ],
            "input_dims": {k: list(v) for k, v in self.input_dims.items()},
            **(
                {"data_dependent": {k: list(v) for k, v in self.output_dims.items()}}
                if self.output_dims
                else {}
            ),
        }

    def shapes(self, values: dict[str, int]) -> dict[str, tuple[int, ...]]:
        """Input shapes with every symbol at ``values[symbol]``; data-dependent outputs get
        theirs under ``COUNT_PIN + name``."""
        pins = {
            name: tuple(_size(d, values) for d in dims) for name, dims in self.input_dims.items()
        }
        for name, dims in self.output_dims.items():
            pins[COUNT_PIN + name] = tuple(_size(d, values) for d in dims)
        return pins


# A declared dim ``NAME+K`` (a decoder's attention mask over the cached and the new tokens,
# ``past+1``) is symbol NAME plus K: sampled with NAME, not a symbol of its own.
_OFFSET = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*\+\s*(\d+)\s*$")
# A dim ``A+B`` of two symbols is their sum (a decoder's attention mask over its cache and the
# new tokens, ``past+sequence``): declared so, or a relation the sample plans found the model
# to require (``dynamic_sample_plans._summed``).
_SUM = re.compile(r"^\s*([A-Za-z_][\w.:]*)\s*\+\s*([A-Za-z_][\w.:]*)\s*$")


def sum_of(name: str, symbols) -> tuple[str, str] | None:
    """The two symbols (names in ``symbols``) that the dim ``name`` adds, or None."""
    found = _SUM.match(name)
    if found is None or found[1] not in symbols or found[2] not in symbols:
        return None
    return found[1], found[2]


def _size(d: int | str, values: dict[str, int]) -> int:
    if not isinstance(d, str) or d in values:
        return values[d] if isinstance(d, str) else d
    offset = _OFFSET.match(d)
    if offset:
        return values[offset[1]] + int(offset[2])
    parts = sum_of(d, values)
    return values[parts[0]] + values[parts[1]] if parts else values[d]  # (KeyError: unknown)


def unpin(model: onnx.ModelProto, input_dims: dict[str, list]) -> onnx.ModelProto:
    """A copy of ``model`` (lowered at a sample size) whose inputs have their symbolic dims
    back: what onnxruntime runs to calibrate on samples of any size."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in out.graph.input:
        dims = input_dims.get(vi.name)
        if dims is None:
            continue
        for d, value in zip(vi.type.tensor_type.shape.dim, dims, strict=True):
            if isinstance(value, str):
                d.Clear()
                d.dim_param = value
    return out


def find_symbols(
    model: onnx.ModelProto, pinned: set[str], batch_size: int | None
) -> tuple[list[Symbol], dict[str, list[int | str]]]:
    """The unknown dims of the model's real inputs that the user's pins leave open
    (``pinned``: inputs given whole shapes; ``batch_size``: pins every leading dim)."""
    initializers = {t.name for t in model.graph.initializer}
    found: dict[str, list[tuple[str, int]]] = {}
    input_dims: dict[str, list[int | str]] = {}
    for vi in model.graph.input:
        if vi.name in initializers or vi.name in pinned or not vi.type.HasField("tensor_type"):
            continue
        if not vi.type.tensor_type.HasField("shape"):
            continue  # unknown rank: setup_inputs refuses it with the pinning hint
        dims: list[int | str] = []
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value >= 0:
                dims.append(d.dim_value)
            elif axis == 0 and batch_size is not None:
                dims.append(batch_size)
            else:
                key = (
                    d.dim_param if d.HasField("dim_param") and d.dim_param else f"{vi.name}:{axis}"
                )
                found.setdefault(key, []).append((vi.name, axis))
                dims.append(key)
        if any(isinstance(d, str) for d in dims):
            input_dims[vi.name] = dims
    for keep, other in _recurrent_batch_ties(model, input_dims):
        if keep != other and other in found and keep in found:
            found[keep].extend(found.pop(other))
            for dims in input_dims.values():
                dims[:] = [keep if d == other else d for d in dims]
    symbols = [
        Symbol(
            key,
            tuple(places),
            BATCH_SAMPLES if all(axis == 0 for _, axis in places) else SIZE_SAMPLES,
        )
        for key, places in found.items()
        if not ((offset := _OFFSET.match(key)) and offset[1] in found)  # NAME+K follows NAME
        and not sum_of(key, found)  # A+B follows A and B
    ]
    return symbols, input_dims


# Operand axes of LSTM/GRU/RNN that are the batch (layout 0; layout 1 puts it first): X,
# sequence_lens, initial_h, initial_c.
_RECURRENT_BATCH_AXES = {0: (1, 0, 1, 1), 1: (0, 0, 0, 0)}


def _recurrent_batch_ties(model: onnx.ModelProto, input_dims: dict[str, list]):
    """Pairs of symbols that a recurrent op's operands require equal: its graph inputs X,
    sequence_lens, initial_h, initial_c share the batch, whatever their dims are called (an
    exporter names X's batch and leaves the states' unnamed). Sampled apart, the model would
    reject every sample (ONNX and onnxruntime require the batch sizes equal): one symbol."""
    producers = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.op_type not in ("LSTM", "GRU", "RNN") or n.domain not in ("", "ai.onnx"):
            continue
        layout = next((a.i for a in n.attribute if a.name == "layout"), 0)
        axes = _RECURRENT_BATCH_AXES.get(layout)
        if axes is None:
            continue
        operands = [n.input[k] if len(n.input) > k else "" for k in (0, 4, 5, 6)]
        keys = []
        for name, axis in zip(operands, axes, strict=True):
            name, axis = _input_axis(name, axis, producers)
            dims = input_dims.get(name) if name else None
            if dims is not None and axis < len(dims) and isinstance(dims[axis], str):
                keys.append(dims[axis])
        for key in keys[1:]:
            yield keys[0], key


# Ops whose output dims are their first input's (the batch axis passes through unchanged).
_SAME_DIMS = frozenset({"Identity", "Cast", "Relu", "Tanh", "Sigmoid", "Neg", "Abs", "Dropout"})


def _input_axis(name: str, axis: int, producers) -> tuple[str, int]:
    """The graph input axis that ``axis`` of ``name`` is, through Transposes (torch's
    batch_first export transposes X before the LSTM) and dim-preserving unary ops."""
    for _ in range(16):
        node = producers.get(name)
        if node is None or not node.input or node.domain not in ("", "ai.onnx"):
            break
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm is None or axis >= len(perm):
                break
            axis = perm[axis]
        elif node.op_type not in _SAME_DIMS:
            break
        name = node.input[0]
    return name, axis


class Inexpressible(Exception):  # noqa: N818 - internal; becomes a refusal naming the dims
    def __init__(self, message: str, node: str | None = None):
        super().__init__(message)
        self.node = node  # the ONNX node the refusal names, when one is to blame


def refuse(message: str):
    raise Inexpressible(message)


def describe(symbols: list[Symbol]) -> str:
    return "; ".join(
        f"{s.name} = " + ", ".join(f"{name}[{axis}]" for name, axis in s.occurrences)
        for s in symbols
    )
