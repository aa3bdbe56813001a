"""Dynamic shapes: one .tflite whose symbolic input dimensions are resizable at run time.

The lowering works on static shapes. Every input dimension the model leaves unknown (and the
user did not pin) is a *symbol*; dims that share a ``dim_param`` name are one symbol (the
``batch`` of ``input_ids`` and ``attention_mask``, say). The model is then lowered several
times at sample sizes, and the TFLite graphs are compared element by element:

* a base lowering with every symbol at its first sample value, and one more per symbol with
  that symbol at its second value. The front end is told another sample's input shapes
  (``probe_shapes``), so it never folds shape arithmetic that reads a dynamic dim: Shape/Size
  over such a dim become SHAPE ops, and what is computed from them (Range position ids,
  attention masks, anchor grids) runs at run time;
* the operators must be the same, with the same options: the sizes then change no decision;
* a tensor dimension that differs between the base and a bumped lowering depends on that
  symbol: it becomes -1 in ``shape_signature`` (graph inputs store 1 there; other tensors
  their size extrapolated to 1 when that is linear, else the base sample's size: LiteRT
  recomputes every non-constant shape when inputs are resized);
* constants must be equal, except operands that hold output shapes or slice extents:
  a RESHAPE target with one differing entry gets -1 (LiteRT infers it from the element
  count); a SLICE size that runs to the end of its input gets -1; other differing shape entries
  of the form ``c x product of symbols`` are computed at run time from SHAPE of the inputs
  that carry the symbols; the modulus wrapping a run-time GATHER index is the gathered axis'
  run-time size; a GATHER index or STRIDED_SLICE bound at the same distance from the end of
  its axis in every lowering (``x[:, -1]``) counts from the run-time end; an entry no multiple
  of the symbols takes the size of an earlier tensor that has it in every lowering. Any
  other size-dependent constant cannot be expressed: the model is
  refused with the operator named and the pinning flags suggested.

A dim declared ``NAME+K`` (a decoder's attention mask over its cache and the new token,
``past+1``) is symbol NAME plus K, sampled with it.

Sample sizes: a symbol used only as a leading (batch) dimension is sampled at 2 and 3 (at 1
some decisions legitimately differ, e.g. a transpose that only moves a unit axis is a
reshape); any other symbol at 64 and 96, sizes valid for strided image backbones (multiples
of 32) and for sequence models. When the model rejects those (shape inference fails, a slice
is empty: an audio front end wants longer inputs; unnamed batch dims that must agree) or the
graphs differ between them, other plans are tried before refusing: the batch symbols as one,
then larger sizes (``SIZE_RETRY_SAMPLES``); the report lists the samples used.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from math import prod

import numpy as np
import onnx

from . import errors, tfl
from .errors import UnsupportedError
from .static_shapes import keep_static
from .tfl_edit import Editor

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


def _size(d: int | str, values: dict[str, int]) -> int:
    if not isinstance(d, str):
        return d
    offset = _OFFSET.match(d) if d not in values else None
    return values[offset[1]] + int(offset[2]) if offset else values[d]


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
    symbols = [
        Symbol(
            key,
            tuple(places),
            BATCH_SAMPLES if all(axis == 0 for _, axis in places) else SIZE_SAMPLES,
        )
        for key, places in found.items()
        if not ((offset := _OFFSET.match(key)) and offset[1] in found)  # NAME+K follows NAME
    ]
    return symbols, input_dims


class _Inexpressible(Exception):  # noqa: N818 - internal; becomes a refusal naming the dims
    pass


def _refuse(message: str):
    raise _Inexpressible(message)


Lowering = Callable[[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]], bool], tuple]


def lower_with_dynamic_shapes(signal: DynamicShapeModel, lower: Lowering) -> tuple:
    """``lower(shapes, probe_shapes, is_base)`` -> (driver, tfl.Model, loader); returns the base
    result with its size-dependent dimensions made dynamic (see the module docstring)."""
    symbols = signal.symbols
    try:
        while True:
            try:
                return _with_sample_retries(signal, lower)
            except DynamicShapeModel as more:  # data-dependent sizes after the pinned ones
                if not signal.merge(more):
                    _refuse(f"the data-dependent sizes {more} are found again")
    except _Inexpressible as err:
        raise UnsupportedError(
            errors.DYNAMIC_SHAPE_UNSUPPORTED,
            f"dynamic shape ({_describe(symbols)}): {err}; {PIN_HINT}",
        ) from None


# Sample retries. A model may reject the first sample sizes without its dims being fixed: an
# audio front end needs a window's worth of samples (a slice past 64 is empty), and inputs
# whose unnamed dims must agree (two batch dims concatenated) reject different values. The
# sizes are then tried with the batch symbols merged, and larger (a step of 64 keeps them
# multiples of 32 for strided backbones and inside the narrow range a one-frame model takes).
SIZE_RETRY_SAMPLES = ((512, 576), (2048, 2112))
# Refusals a sample size can cause (an empty slice or fill, a shape inference error).
_SIZE_SENSITIVE = (errors.UNSUPPORTED_ATTRIBUTE_VALUE, errors.EMPTY_TENSOR_UNSUPPORTED)


class _SampleRejected(Exception):  # noqa: N818 - internal: retry at other sample sizes
    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def _with_sample_retries(signal: DynamicShapeModel, lower: Lowering) -> tuple:
    """The first sample plan that gives a dynamic model (see ``SIZE_RETRY_SAMPLES``);
    ``signal`` is updated to it (the report lists the samples used). Retried when the
    declared samples are rejected, or give graphs that differ between sizes (a decision a
    small size changes, e.g. a pool over a 1x1 map). When none works: the declared samples'
    refusal, or if the model rejected them, the first refusal at accepted sizes."""
    first, accepted = None, None
    for plan, whole in _sample_plans(signal):
        if isinstance(first, _Inexpressible) and not whole:
            continue
        if getattr(plan, "single_batch", False) and not _model_rejected(first):
            continue  # only when the model itself refused other batches, not our lowering
        try:
            result = _lower_and_compare(plan, lower)
        except DynamicShapeModel:
            raise  # data-dependent sizes: handled by the caller
        except Exception as err:
            if first is None:
                if not isinstance(err, (_SampleRejected, _Inexpressible)):
                    raise  # the declared samples were accepted: this is the answer
                first = err
            elif isinstance(err, (_Inexpressible, UnsupportedError)):
                accepted = accepted or err  # samples accepted, graphs not comparable
            # else a failure only at retried sizes: the declared samples' answer stands
            continue
        if plan is not signal:
            kept = {p for t in plan.symbols for p in t.occurrences}
            fixed = [s for s in signal.symbols if not kept.intersection(s.occurrences)]
            if fixed and getattr(result[0], "report", None) is not None:
                result[0].report.warn(
                    f"dynamic shape: the model rejects every batch size tried but 1 "
                    f"({_describe(fixed)}); it is converted with a batch of 1"
                )
            signal.symbols[:] = plan.symbols
            signal.input_dims.clear()
            signal.input_dims.update(plan.input_dims)
        return result
    if not isinstance(first, _SampleRejected):
        raise first
    if accepted is None and isinstance(first.error, errors.ConversionError):
        raise first.error.reworded(
            f"{first.error.message} (at every sample size tried for the dynamic dims "
            f"{_describe(signal.symbols)}); {PIN_HINT}"
        )
    raise accepted or first.error


def _sample_plans(signal: DynamicShapeModel):
    """The declared samples; then the batch symbols merged into one; then each size symbol
    alone, and all of them, at each of ``SIZE_RETRY_SAMPLES``. Each plan comes with whether
    it changes every symbol it may (only those are tried when the declared samples were
    accepted but gave differing graphs: each plan is a full lowering)."""
    yield signal, True
    merged = _merged(signal)
    if merged is not None:
        yield merged, True
    sizes = [s.name for s in signal.symbols if _scalable(s)]
    groups = [{name} for name in sizes] + ([set(sizes)] if len(sizes) > 1 else [])
    for samples in SIZE_RETRY_SAMPLES:
        for group in groups:
            yield _resampled(merged or signal, samples, group), len(group) == len(sizes)
    single = _single_batch(merged or signal)
    if single is not None:  # an exporter baked batch 1 into a Reshape: the model takes no other
        single.single_batch = True
        yield single, False


def _model_rejected(first) -> bool:
    """Did the model itself (shape inference, a Reshape's element count) reject the declared
    samples, rather than a lowering refusing them?"""
    return isinstance(first, _SampleRejected) and isinstance(first.error, _Inexpressible)


def _single_batch(signal: DynamicShapeModel) -> DynamicShapeModel | None:
    """The batch symbols fixed at 1 (the report then shows a static batch of 1), the other
    symbols still sampled; None when there is no batch symbol."""
    batch = {s.name for s in signal.symbols if not s.data_dependent and s.samples == BATCH_SAMPLES}
    if not batch:
        return None
    dims = {k: [1 if d in batch else d for d in v] for k, v in signal.input_dims.items()}
    symbols = [s for s in signal.symbols if s.name not in batch]
    return DynamicShapeModel(symbols, dims, dict(signal.output_dims))


def _scalable(s: Symbol) -> bool:
    return not s.data_dependent and s.samples != BATCH_SAMPLES


def _merged(signal: DynamicShapeModel) -> DynamicShapeModel | None:
    """The batch symbols (leading dims only) as one symbol named by the first; None when
    there are fewer than two."""
    group = [s for s in signal.symbols if not s.data_dependent and s.samples == BATCH_SAMPLES]
    if len(group) < 2:
        return None
    rename = {t.name: group[0].name for t in group}
    places = tuple(p for t in group for p in t.occurrences)
    symbols = [
        Symbol(s.name, places, s.samples) if s is group[0] else s
        for s in signal.symbols
        if s.name not in rename or s is group[0]
    ]
    dims = {
        k: [rename.get(d, d) if isinstance(d, str) else d for d in v]
        for k, v in signal.input_dims.items()
    }
    return DynamicShapeModel(symbols, dims, dict(signal.output_dims))


def _resampled(signal: DynamicShapeModel, samples: tuple[int, int], names: set[str]):
    symbols = [
        Symbol(s.name, s.occurrences, samples) if s.name in names else s for s in signal.symbols
    ]
    return DynamicShapeModel(symbols, dict(signal.input_dims), dict(signal.output_dims))


def _lower_and_compare(signal: DynamicShapeModel, lower: Lowering) -> tuple:
    symbols = signal.symbols
    base_values = {s.name: s.samples[0] for s in symbols}
    bumped_values = {s.name: s.samples[1] for s in symbols}

    def at(values: dict[str, int], probe: dict[str, int], is_base: bool) -> tuple:
        shapes = signal.shapes(values)
        try:
            return lower(shapes, signal.shapes(probe), is_base)
        except errors.BadInputError as err:
            if err.reason_code not in (errors.INVALID_MODEL, errors.SHAPE_INFERENCE_FAILED):
                raise
            sizes = ", ".join(f"{k}={v}" for k, v in values.items())
            message = f"the model does not accept the sample sizes {sizes} ({err.message})"
            raise _SampleRejected(_Inexpressible(message)) from None
        except UnsupportedError as err:
            if err.reason_code not in _SIZE_SENSITIVE:
                raise
            raise _SampleRejected(err) from None

    base = at(base_values, bumped_values, True)
    driver, model, _ = base
    variants = []
    for s in symbols:
        values = {**base_values, s.name: s.samples[1]}
        variants.append(at(values, {**bumped_values, s.name: s.samples[0]}, False)[1])
    pairings = [_pair_tensors(model, other) for other in variants]
    dynamic_dims = _dynamic_dims(pairings)
    sources = _symbol_sources(model.subgraphs[0], pairings, symbols)
    _relax_constants(model, variants, symbols, sources)
    for tensor, dims in dynamic_dims.values():
        _make_dynamic(tensor, dims, [p[id(tensor)][1] for p in pairings], symbols)
    keep_static(model.subgraphs[0])  # run-time shape targets -> constants (static_shapes.py)
    _finish_io_table(driver, model.subgraphs[0])
    return base


def _describe(symbols: list[Symbol]) -> str:
    return "; ".join(
        f"{s.name} = " + ", ".join(f"{name}[{axis}]" for name, axis in s.occurrences)
        for s in symbols
    )


def _pair_tensors(a: tfl.Model, b: tfl.Model) -> dict[int, tuple[tfl.Tensor, tfl.Tensor]]:
    """Tensor of ``a`` -> its counterpart in ``b``, checking that the graphs match op by op."""
    if len(a.subgraphs) != len(b.subgraphs):
        _refuse("the graph structure depends on the input sizes")
    pairs: dict[int, tuple[tfl.Tensor, tfl.Tensor]] = {}

    def pair(x: tfl.Tensor | None, y: tfl.Tensor | None, where: str) -> None:
        if (x is None) != (y is None):
            _refuse(f"{where}: an operand exists at one input size only")
        if x is None:
            return
        known = pairs.get(id(x))
        if known is not None and known[1] is not y and not _same_constant(known[1], y):
            _refuse(f"{where}: tensor {x.name!r} pairs inconsistently")
        if x.dtype != y.dtype or x.rank != y.rank:
            _refuse(f"{where}: tensor {x.name!r} changes dtype or rank with the input sizes")
        pairs[id(x)] = (x, y)

    for sa, sb in zip(a.subgraphs, b.subgraphs, strict=True):
        if len(sa.operators) != len(sb.operators):
            _refuse(
                f"the number of operators depends on the input sizes{_first_difference(sa, sb)}"
            )
        for x, y in zip(sa.inputs + sa.outputs, sb.inputs + sb.outputs, strict=False):
            pair(x, y, f"subgraph {sa.name!r} I/O")
        for oa, ob in zip(sa.operators, sb.operators, strict=True):
            where = f"{oa.opcode} (from ONNX node {oa.onnx_node!r})"
            if (
                oa.opcode != ob.opcode
                or len(oa.inputs) != len(ob.inputs)
                or len(oa.outputs) != len(ob.outputs)
                or not _same_options(oa.options, ob.options)
            ):
                _refuse(f"{where}: the operator differs between input sizes")
            for x, y in zip(oa.inputs + oa.outputs, ob.inputs + ob.outputs, strict=True):
                pair(x, y, where)
    return pairs


def _first_difference(sa: tfl.Subgraph, sb: tfl.Subgraph) -> str:
    """Where two lowerings' operator lists part: the ONNX node whose lowering differs."""
    for oa, ob in zip(sa.operators, sb.operators, strict=False):
        if oa.opcode != ob.opcode or oa.onnx_node != ob.onnx_node:
            here, there = f"{oa.opcode} from {oa.onnx_node!r}", f"{ob.opcode} from {ob.onnx_node!r}"
            return f" ({here} at one size, {there} at another)"
    return ""


def _same_options(x: dict, y: dict) -> bool:
    if x.keys() != y.keys():
        return False
    return all(np.array_equal(np.asarray(x[k]), np.asarray(y[k])) for k in x)


def _same_constant(x: tfl.Tensor, y: tfl.Tensor) -> bool:
    return x.data is not None and y.data is not None and np.array_equal(x.data, y.data)


def _dynamic_dims(pairings) -> dict[int, tuple[tfl.Tensor, list[bool]]]:
    """Activation tensor -> per dim, whether any symbol changes it."""
    result: dict[int, tuple[tfl.Tensor, list[bool]]] = {}
    for pairs in pairings:
        for key, (a, b) in pairs.items():
            if a.data is not None or a.shape == b.shape:
                continue  # constants are judged by _relax_constants
            _, dims = result.setdefault(key, (a, [False] * a.rank))
            for k, (da, db) in enumerate(zip(a.shape, b.shape, strict=True)):
                dims[k] = dims[k] or da != db
    return result


def _make_dynamic(tensor: tfl.Tensor, dims: list[bool], others, symbols) -> None:
    """Mark ``dims`` of ``tensor`` dynamic; store a size valid at every symbol = 1 if linear."""
    shape, signature = list(tensor.shape), []
    for k, dynamic in enumerate(dims):
        if not dynamic:
            signature.append(shape[k])
            continue
        signature.append(-1)
        at_one = shape[k]
        for other, s in zip(others, symbols, strict=True):
            lo, hi = s.samples
            delta = other.shape[k] - tensor.shape[k]
            if delta and delta % (hi - lo) == 0:
                at_one -= delta // (hi - lo) * (lo - 1)
        shape[k] = at_one if at_one > 0 else shape[k]
    tensor.shape = tuple(shape)
    tensor.shape_signature = tuple(signature)


def _symbol_sources(sub: tfl.Subgraph, pairings, symbols) -> dict[str, tuple[tfl.Tensor, int]]:
    """Symbol -> (graph input tensor, stored axis) holding exactly the symbol's value; for a
    data-dependent size, the op output of that name (WHERE's rows, sized when it runs)."""
    sources = {}
    for pairs, s in zip(pairings, symbols, strict=True):
        candidates = sub.inputs
        if s.data_dependent:
            names = {name for name, _ in s.occurrences}
            candidates = [t for op in sub.operators for t in op.outputs if t.name in names]
        for t in candidates:
            other = pairs.get(id(t))
            if other is None:
                continue
            for k, (da, db) in enumerate(zip(t.shape, other[1].shape, strict=True)):
                if (da, db) == s.samples and s.name not in sources:
                    sources[s.name] = (t, k)
    return sources


def _finish_io_table(driver, sub: tfl.Subgraph) -> None:
    """Report rows: dynamic dims are -1 in the signature and 1 in the stored shapes."""
    tensors = dict(zip(sub.input_names, sub.inputs, strict=True))
    tensors.update(zip(sub.output_names, sub.outputs, strict=True))
    for t in sub.inputs:  # graph inputs store 1 in every dynamic dim (the TFLite convention)
        if t.shape_signature:
            t.shape = tuple(
                1 if s == -1 else d for d, s in zip(t.shape, t.shape_signature, strict=True)
            )
    for row in driver.io_table:
        t = tensors.get(row["name"])
        if t is None or not t.shape_signature:
            continue
        row["shape_signature"] = list(t.shape_signature)
        for k, s in enumerate(t.shape_signature):
            if s == -1:
                row["tflite_shape"][k] = 1
                if row["onnx_shape"]:
                    row["onnx_shape"][row["perm"][k] if row.get("perm") else k] = 1


# (op, operand) pairs that hold an output shape -> the operand whose dims the shape follows
# (None: none). A size-dependent entry is computed at run time from those dims when it is an
# integer multiple of one or two of them (exact at every size), else from the input symbols;
# RESHAPE prefers a single -1 entry, which needs no extra ops.
SHAPE_OPERANDS = {
    ("RESHAPE", 1): 0,
    ("BROADCAST_TO", 1): 0,
    ("RESIZE_BILINEAR", 1): 0,
    ("RESIZE_NEAREST_NEIGHBOR", 1): 0,
    ("TRANSPOSE_CONV", 0): 2,
    ("FILL", 0): None,
}


def _relax_constants(model: tfl.Model, variants, symbols, sources) -> None:
    """Constants that differ: only shape operands and slice extents are expressible."""
    for index, sa in enumerate(model.subgraphs):
        runtime = _RuntimeDims(sa, symbols, sources if index == 0 else {})
        others = [v.subgraphs[index] for v in variants]
        runtime.others = others
        for n, oa in enumerate(sa.operators):
            for k, x in enumerate(oa.inputs):
                if x is None or x.data is None:
                    continue
                other_ops = [o.operators[n] for o in others]
                ys = [o.inputs[k] for o in other_ops]
                if all(_same_constant(x, y) for y in ys):
                    continue
                where = f"{oa.opcode} (from ONNX node {oa.onnx_node!r})"
                if any(x.data.shape != y.data.shape for y in ys):
                    _refuse(f"{where}: operand {k} changes shape with the input sizes")
                oa.inputs[k] = _relaxed([oa, *other_ops], k, runtime, where, [sa, *others])
        runtime.insert_ops()


def _relaxed(ops: list[tfl.Operator], k: int, runtime, where: str, subs=()) -> tfl.Tensor:
    """The replacement for operand ``k`` of ``ops[0]`` (``ops[1:]``: the same operator in the
    lowerings at other sizes; ``subs``: their subgraphs)."""
    op, x, ys = ops[0], ops[0].inputs[k], [o.inputs[k] for o in ops[1:]]
    if op.opcode == "FLOOR_MOD" and k == 1 and x.data.size == 1:
        gathered = _gathered(ops, subs)
        if gathered is not None:  # a runtime GATHER index wrapped by its (dynamic) axis size
            return runtime.value_tensor(ops, k, where, follows=gathered)
    if op.opcode == "GATHER" and k == 1:
        tail = _from_the_end(ops)
        if tail is not None:  # a negative index (the last token) into a run-time axis
            return runtime.from_the_end(ops, *tail)
    differ = sorted({int(i) for y in ys for i in np.flatnonzero(x.data != y.data)})
    if op.opcode == "RESHAPE" and k == 1 and len(differ) == 1 and not np.any(x.data == -1):
        return _with_entries(x, differ, -1)
    if op.opcode == "SLICE" and k == 2 and all(_slices_to_end(o, differ) for o in ops):
        return _with_entries(x, differ, -1)
    if op.opcode == "STRIDED_SLICE" and k in (1, 2):
        counted = _counted_from_end(ops, k, differ)
        if counted is not None:  # x[:, -1] folded to length - 1: negative bounds instead
            return counted
    if (op.opcode, k) in SHAPE_OPERANDS and x.dtype == np.int32 and x.data.ndim == 1:
        return runtime.shape_tensor(ops, k, SHAPE_OPERANDS[op.opcode, k], where)
    if (
        np.dtype(x.dtype) in (np.int32, np.int64)
        and x.data.ndim <= 1
        and x.data.size <= 8
        and runtime.expressible_values(ops, k)  # multiples of data-dependent sizes only
    ):
        return runtime.value_tensor(ops, k, where)
    _refuse(f"{where}: operand {k} holds values that depend on the input sizes")


def _from_the_end(ops: list[tfl.Operator]) -> tuple[np.ndarray, int] | None:
    """(offsets, axis) when GATHER's constant indices are the gathered axis' size minus the
    same offsets in every lowering (``x[:, -1]`` folded at each sample size); else None."""
    params = ops[0].inputs[0]
    axis = int(ops[0].options.get("axis", 0)) % max(params.rank, 1)
    offsets = [
        np.asarray(o.inputs[1].data, np.int64) - o.inputs[0].shape[axis]
        for o in ops
        if o.inputs[0].rank == params.rank
    ]
    if len(offsets) != len(ops) or not np.all(offsets[0] < 0):
        return None
    if any(not np.array_equal(offsets[0], f) for f in offsets[1:]):
        return None
    return offsets[0], axis


def _counted_from_end(ops: list[tfl.Operator], k: int, differ: list[int]) -> tfl.Tensor | None:
    """STRIDED_SLICE begin (``k`` 1) or end (2) entries that are the input's size plus the
    same offset in every lowering, with a positive stride: begins become that negative offset
    (counted from the end at run time), ends the offset or, at 0, past the end (clamped)."""
    op, x = ops[0], ops[0].inputs[k]
    strides = op.inputs[3] if len(op.inputs) > 3 else None
    if op.options.get("offset") or strides is None or strides.data is None or x.data.ndim != 1:
        return None
    if op.options.get("new_axis_mask") or op.options.get("ellipsis_mask"):
        return None  # entries would not index the input's dims one to one
    data = x.data.copy()
    for e in differ:
        if strides.data[e] <= 0:
            return None
        offsets = {int(o.inputs[k].data[e]) - o.inputs[0].shape[e] for o in ops}
        if len(offsets) != 1 or offsets.pop() > (-1 if k == 1 else 0):
            return None
    for e in differ:
        off = int(x.data[e]) - op.inputs[0].shape[e]
        data[e] = off if off < 0 else np.iinfo(np.int32).max
    return tfl.Tensor(f"{x.name}/from_end", x.dtype, x.shape, data=data)


def _gathered(ops: list[tfl.Operator], subs) -> list[tfl.Tensor] | None:
    """Per lowering, the tensor a GATHER reads with the FLOOR_MOD ``ops`` output as its
    indices (negative indices wrapped by the gathered axis' size: a dynamic axis makes the
    modulus that axis' run-time size); None when the indices go elsewhere."""
    found = []
    for op, sub in zip(ops, subs, strict=False):
        reader = next(
            (
                o
                for o in sub.operators
                if o.opcode == "GATHER" and len(o.inputs) > 1 and o.inputs[1] is op.outputs[0]
            ),
            None,
        )
        if reader is None:
            return None
        found.append(reader.inputs[0])
    return found if len(found) == len(ops) else None


def _with_entries(x: tfl.Tensor, entries: list[int], value: int) -> tfl.Tensor:
    data = x.data.copy()
    data[entries] = value
    return tfl.Tensor(f"{x.name}/dynamic", x.dtype, x.shape, data=data)


def _slices_to_end(op: tfl.Operator, entries: list[int]) -> bool:
    """Does every differing SLICE size run from its begin to the end of the input?"""
    source, begin, size = op.inputs[0], op.inputs[1], op.inputs[2]
    if begin.data is None:
        return False
    return all(begin.data[e] + size.data[e] == source.shape[e] for e in entries)


class _RuntimeDims:
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

    def shape_tensor(self, ops, k: int, follows: int | None, where: str) -> tfl.Tensor:
        out = self._vector(ops, k, follows, where)
        self.ed.insert_before(ops[0], self.pending)
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
        if tuple(x.shape) != tuple(out.shape):
            shaped = self.ed.temp(f"dynamic_shape/{x.name}/shaped", np.int32, x.shape)
            target = self._const(f"{x.name}/shape", list(x.shape))
            self.pending.append(self.ed.op("RESHAPE", [out, target], [shaped]))
            out = shaped
        if np.dtype(x.dtype) != np.int32:
            wide = self.ed.temp(f"dynamic_shape/{x.name}/cast", x.dtype, x.shape)
            self.pending.append(self.ed.op("CAST", [out], [wide]))
            out = wide
        self.ed.insert_before(ops[0], self.pending)
        self.pending = []
        return out

    def from_the_end(self, ops, offsets: np.ndarray, axis: int) -> tfl.Tensor:
        """GATHER's indices as the run-time size of the gathered axis plus ``offsets``."""
        self._reader = ops[0]
        x = ops[0].inputs[1]
        size = self._dim(ops[0].inputs[0], axis)
        offset = self._const(f"{x.name}/from_end", offsets.reshape(-1).tolist())
        out = self.ed.temp(f"dynamic_shape/{x.name}/index", np.int32, (offsets.size,))
        self.pending.append(self.ed.op("ADD", [offset, size], [out], **NONE))
        if tuple(x.shape) != (offsets.size,):
            shaped = self.ed.temp(f"dynamic_shape/{x.name}/shaped", np.int32, x.shape)
            target = self._const(f"{x.name}/shape", list(x.shape))
            self.pending.append(self.ed.op("RESHAPE", [out, target], [shaped]))
            out = shaped
        if np.dtype(x.dtype) != np.int32:
            wide = self.ed.temp(f"dynamic_shape/{x.name}/cast", x.dtype, x.shape)
            self.pending.append(self.ed.op("CAST", [out], [wide]))
            out = wide
        self.ed.insert_before(ops[0], self.pending)
        self.pending = []
        return out

    def _vector(self, ops, k: int, follows, where: str, counts_only: bool = False):
        """[n] int32 entries of operand ``k``, run-time where they differ between lowerings
        (the ops are left in ``pending``)."""
        self._reader = ops[0]
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
                _refuse(
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
