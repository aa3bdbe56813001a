"""Graph comparison of the dynamic-shape lowering: lower at the base and bumped sample sizes,
pair the TFLite graphs tensor by tensor, and mark the dims that change dynamic.

The operators must match with the same options (else the sizes change a decision: refused);
an activation dim that differs with a symbol becomes -1 in ``shape_signature`` with a size
extrapolated to 1 where linear; differing constants go to ``dynamic_constants``. A sample
size the model itself rejects raises :class:`SampleRejected` for the sample plans to retry;
a strided window whose output size is the same at both samples raises
:class:`FixedBySamples` (with the finished lowering) for them to widen the step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import errors, tfl
from .dynamic_constants import relax_constants, same_constant
from .dynamic_symbols import BATCH_SAMPLES, PIN_HINT, DynamicShapeModel, Inexpressible, refuse
from .errors import UnsupportedError
from .static_shapes import keep_static

Lowering = Callable[[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]], bool], tuple]
# Refusals a sample size can cause (an empty slice or fill, a shape inference error).
_SIZE_SENSITIVE = (errors.UNSUPPORTED_ATTRIBUTE_VALUE, errors.EMPTY_TENSOR_UNSUPPORTED)


class SampleRejected(Exception):  # noqa: N818 - internal: retry at other sample sizes
    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def lower_and_compare(signal: DynamicShapeModel, lower: Lowering) -> tuple:
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
            raise SampleRejected(Inexpressible(message)) from None
        except UnsupportedError as err:
            unequal = _unequal_batches(err, values, symbols)  # (a merged plan is tried)
            if err.reason_code not in _SIZE_SENSITIVE and not unequal:
                raise
            raise SampleRejected(err) from None

    base = at(base_values, bumped_values, True)
    driver, model, _ = base
    variants = []
    for s in symbols:
        values = {**base_values, s.name: s.samples[1]}
        variants.append(_variant(at, values, bumped_values, s)[1])
    pairings = [_pair_tensors(model, other) for other in variants]
    fixed = _fixed_windows(model, pairings, symbols)  # (before the shapes are made dynamic)
    # (warned by the caller for the plan it keeps: dynamic_shapes.size_warnings)
    clipped, driver.clipped = _clipped_by_samples(model, pairings, symbols)
    driver.size_warnings = _overhanging_windows(model, pairings, symbols) + clipped
    dynamic_dims = _dynamic_dims(pairings)
    sources = _symbol_sources(model.subgraphs[0], pairings, symbols)
    relax_constants(model, variants, symbols, sources)
    for tensor, dims in dynamic_dims.values():
        _make_dynamic(tensor, dims, [p[id(tensor)][1] for p in pairings], symbols)
    keep_static(model.subgraphs[0])  # run-time shape targets -> constants (static_shapes.py)
    _finish_io_table(driver, model.subgraphs[0])
    if fixed:
        raise FixedBySamples(fixed, base)  # the sample plans widen the step, or judge it
    return base


def _unequal_batches(err: UnsupportedError, values: dict[str, int], symbols) -> bool:
    """Is ``err`` a shape left unknown (``dynamic_shape_unsupported``) at samples where
    batch symbols differ? Unnamed batch dims that the model requires equal (columns
    concatenated side by side, one input each: sklearn-onnx's column pipelines) give an
    unknown shape where they disagree: the model rejects those samples, and the sample plans
    try the batch symbols as one (where they agree, the same refusal stands)."""
    if err.reason_code != errors.DYNAMIC_SHAPE_UNSUPPORTED:
        return False
    batch = [s.name for s in symbols if not s.data_dependent and s.samples == BATCH_SAMPLES]
    return len({values[name] for name in batch if name in values}) > 1


def _variant(at, values: dict[str, int], bumped: dict[str, int], s) -> tuple:
    """The lowering with symbol ``s`` bumped. Its probe (the sizes that keep shape arithmetic
    over the dynamic dims from folding) has every symbol larger than in ``values``: the
    others at their second sample, ``s`` one step past it. The complement (``s`` back at its
    first sample) would make sums symmetric in two symbols coincide (a decoder's
    ``past + sequence`` is 96 + 64 lowered and 64 + 96 probed): such a size would fold here
    and stay a SHAPE op in the base lowering. When the model rejects the larger size (it
    takes a narrow range only), the complement is the probe."""
    lo, hi = s.samples
    try:
        return at(values, {**bumped, s.name: 2 * hi - lo}, False)
    except SampleRejected:
        return at(values, {**bumped, s.name: lo}, False)


# Window operators whose output size is a floor/ceil of the input size over the strides.
_WINDOWS = frozenset(
    {"CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_POOL_2D"}
)


@dataclass(frozen=True)
class FixedWindow:
    """A strided window whose output size along ``axis`` (of its TFLite input, NHWC) is
    ``out`` at both samples of ``symbol`` although its input size differs (``sizes``): the
    step between the samples is below ``stride``; ``step`` is the smallest step of the
    symbol that moves its input by a whole stride (so its output size differs)."""

    where: str
    axis: int
    symbol: str
    samples: tuple[int, int]
    sizes: tuple[int, int]
    out: int
    stride: int
    step: int
    node: str | None = None  # the ONNX node

    def describe(self) -> str:
        lo, hi = self.samples
        axis = _AXIS_NAMES.get(self.axis, f"axis {self.axis}")
        return (
            f"{self.where} gives {self.out} along its {axis} (stride {self.stride}) at both "
            f"samples {self.symbol}={lo} and {hi} (its input: {self.sizes[0]} and "
            f"{self.sizes[1]})"
        )


class FixedBySamples(Inexpressible):
    """Windows whose output size the samples left equal (``_fixed_windows``). Carries the
    finished lowering (``result``): the sample plans take it when the model accepts no size
    that changes those outputs, else they retry with a wider step (``FixedWindow.step``)."""

    def __init__(self, windows: list[FixedWindow], result: tuple):
        self.windows = windows
        self.result = result
        super().__init__(
            "; ".join(w.describe() for w in windows)
            + ": that size would be fixed in the file, which would be wrong or fail at the "
            "run-time sizes that change it",
            windows[0].node,
        )


_AXIS_NAMES = {1: "height", 2: "width"}
_STRIDES = {1: "stride_h", 2: "stride_w"}
_STRIDES_3D = {1: "stride_d", 2: "stride_h", 3: "stride_w"}


def _fixed_windows(model: tfl.Model, pairings, symbols) -> list[FixedWindow]:
    """Window operators whose spatial output size is the same in a bumped lowering while
    their input's differs. Two samples within one stride step (silero VAD's encoder: 512 and
    576 samples both give 2 frames after a total stride of 512) make that size look static:
    other sizes the model takes (256 samples: 1 frame) would then fail in LiteRT, or be wrong
    when an element count happens to match. Only the first such window on a path shows (its
    equal output makes the windows after it equal too): the plans widen until none is left."""
    found: dict[tuple[str, int, str], FixedWindow] = {}
    for sub in model.subgraphs:
        for op in sub.operators:
            if op.opcode not in _WINDOWS or not op.inputs or not op.outputs:
                continue
            x, y = op.inputs[0], op.outputs[0]
            names = _STRIDES_3D if op.opcode == "CONV_3D" else _STRIDES
            for pairs, s in zip(pairings, symbols, strict=True):
                if id(x) not in pairs or id(y) not in pairs:
                    continue
                bx, by = pairs[id(x)][1], pairs[id(y)][1]
                for ax in range(1, x.rank - 1):
                    if x.shape[ax] == bx.shape[ax] or y.shape[ax] != by.shape[ax]:
                        continue
                    lo, hi = s.samples
                    moved = abs(bx.shape[ax] - x.shape[ax])
                    stride = int(op.options.get(names.get(ax, ""), 1) or 1)
                    # a whole stride of its input if linear (more than the samples' step)
                    step = max(-(-stride * (hi - lo) // moved), hi - lo + 1)
                    where = f"{op.opcode} (from ONNX node {op.onnx_node!r})"
                    found.setdefault(
                        (where, ax, s.name),
                        FixedWindow(
                            where,
                            ax,
                            s.name,
                            (lo, hi),
                            (x.shape[ax], bx.shape[ax]),
                            y.shape[ax],
                            stride,
                            step,
                            op.onnx_node,
                        ),
                    )
    return list(found.values())


# Pools whose VALID window may overhang a small run-time input: below one window, onnxruntime
# pools a partial window (its output size truncates toward zero), returns an empty output or
# fails, and LiteRT's kernels neither: XNNPACK pools one window padded with zeros (an average
# divided by the whole window), the builtin kernels give no output. (A conv fails in both.)
_POOLS = frozenset({"MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_POOL_2D"})
_FILTERS = {1: "filter_height", 2: "filter_width"}


def _overhanging_windows(model: tfl.Model, pairings, symbols) -> list[str]:
    """One warning per VALID pool over a dynamic axis whose window is wider than one cell:
    the file matches onnxruntime where that input is at least a window long, so the sizes
    below are named (as the pool's input size, and about as each symbol that moves it, from
    the slope between the samples: strides before it make that a bound within a stride)."""
    lines = []
    for sub in model.subgraphs:
        for op in sub.operators:
            if op.opcode not in _POOLS or op.options.get("padding") != "VALID" or not op.inputs:
                continue
            x, sizes, below = op.inputs[0], [], []
            for ax, name in _FILTERS.items():
                k = int(op.options.get(name, 1) or 1)
                if k <= 1 or ax >= x.rank - 1:
                    continue
                for pairs, s in zip(pairings, symbols, strict=True):
                    if id(x) not in pairs:
                        continue
                    (lo, hi), a, b = s.samples, x.shape[ax], pairs[id(x)][1].shape[ax]
                    least = lo + (k - a) * (hi - lo) / (b - a) if b > a else 0
                    if least > 1:
                        below.append(f"{s.name} below about {-int(-least // 1)}")
                        sizes.append(f"{k} cells in its {_AXIS_NAMES.get(ax, f'axis {ax}')}")
            if below:
                lines.append(
                    f"dynamic shape: {op.opcode} (from ONNX node {op.onnx_node!r}) matches "
                    f"onnxruntime where its input is at least {' and '.join(dict.fromkeys(sizes))} "
                    f"({', '.join(dict.fromkeys(below))} are not): a smaller input is narrower "
                    "than the window, which onnxruntime pools partially, as an empty output or "
                    "as an error, and LiteRT's kernels otherwise; do not run the file at such "
                    f"sizes ({PIN_HINT}: a file converted for one size is checked at it)"
                )
    return lines


def _clipped_by_samples(model: tfl.Model, pairings, symbols) -> tuple[list[str], dict]:
    """One warning per slice whose constant end cuts a dynamic axis at both samples (x[...,
    :100] sampled at 192 and 320): the length after it is the same at both, so the file
    fixes it (shapes, reshape targets), which holds where the run-time input reaches the end
    only; shorter inputs may fail. Also, per symbol, the size below which its input stops
    reaching the clip (the sample plans try a sample below it: ``_below_clips``). (Samples on
    either side of the clip keep the length a run-time value: STRIDED_SLICE clamps the end.)"""
    lines, clips = [], {}
    for sub in model.subgraphs:
        for op in sub.operators:
            if op.opcode != "STRIDED_SLICE" or len(op.inputs) < 3 or not op.outputs:
                continue
            x, end, y = op.inputs[0], op.inputs[2], op.outputs[0]
            if end is None or end.data is None or x.rank != y.rank or op.options.get("offset"):
                continue
            ends = np.asarray(end.data).reshape(-1)
            below = []
            for ax in range(min(x.rank, ends.size)):
                e = int(ends[ax])
                if op.options.get("end_mask", 0) >> ax & 1 or not 0 < e < x.shape[ax]:
                    continue
                for pairs, s in zip(pairings, symbols, strict=True):
                    if id(x) not in pairs or id(y) not in pairs:
                        continue
                    a, b = x.shape[ax], pairs[id(x)][1].shape[ax]
                    if b == a or y.shape[ax] != pairs[id(y)][1].shape[ax] or e >= b:
                        continue
                    (lo, hi) = s.samples
                    least = lo + (e - a) * (hi - lo) / (b - a)
                    below.append(f"{s.name} below about {max(-int(-least // 1), 1)}")
                    clips[s.name] = min(clips.get(s.name, least), least)
            if below:
                lines.append(
                    f"dynamic shape: {op.opcode} (from ONNX node {op.onnx_node!r}) cuts a "
                    "dynamic axis at its constant end at both sample sizes, so the length "
                    f"after it is fixed in the file: it holds where the input reaches the end "
                    f"only ({', '.join(dict.fromkeys(below))} may fail); {PIN_HINT}"
                )
    return lines, clips


def _pair_tensors(a: tfl.Model, b: tfl.Model) -> dict[int, tuple[tfl.Tensor, tfl.Tensor]]:
    """Tensor of ``a`` -> its counterpart in ``b``, checking that the graphs match op by op."""
    if len(a.subgraphs) != len(b.subgraphs):
        refuse("the graph structure depends on the input sizes")
    pairs: dict[int, tuple[tfl.Tensor, tfl.Tensor]] = {}

    def pair(x: tfl.Tensor | None, y: tfl.Tensor | None, where: str) -> None:
        if (x is None) != (y is None):
            refuse(f"{where}: an operand exists at one input size only")
        if x is None:
            return
        known = pairs.get(id(x))
        if known is not None and known[1] is not y and not same_constant(known[1], y):
            refuse(f"{where}: tensor {x.name!r} pairs inconsistently")
        if x.dtype != y.dtype or x.rank != y.rank:
            refuse(f"{where}: tensor {x.name!r} changes dtype or rank with the input sizes")
        pairs[id(x)] = (x, y)

    for sa, sb in zip(a.subgraphs, b.subgraphs, strict=True):
        if len(sa.operators) != len(sb.operators):
            refuse(f"the number of operators depends on the input sizes{_first_difference(sa, sb)}")
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
                refuse(f"{where}: the operator differs between input sizes")
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


def _dynamic_dims(pairings) -> dict[int, tuple[tfl.Tensor, list[bool]]]:
    """Activation tensor -> per dim, whether any symbol changes it."""
    result: dict[int, tuple[tfl.Tensor, list[bool]]] = {}
    for pairs in pairings:
        for key, (a, b) in pairs.items():
            if a.data is not None or a.shape == b.shape:
                continue  # constants are judged by relax_constants
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
