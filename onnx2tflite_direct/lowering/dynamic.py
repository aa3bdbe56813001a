"""Ops whose output size depends on the input *values*: NonZero, Compress (and Unique).

LiteRT has dynamic tensors: WHERE's output has one row per true element, sized when it runs,
and the ops after it (TRANSPOSE, GATHER) resize their outputs from it at run time. So:

- NonZero(x) = TRANSPOSE(WHERE(x != 0)): WHERE gives the ``[n, rank]`` coordinates in
  row-major order (ONNX's order), NonZero wants ``[rank, n]``;
- Compress(x, c, axis) = GATHER(x, WHERE(c) as ``[n]``, axis); without ``axis`` x is
  flattened first. ONNX allows a condition shorter than the axis (the rest is dropped), and
  WHERE's indices are then all in range.

The data-dependent dimension is -1 in the tensor's shape signature (stored as 1). When other
nodes read such an output, its size becomes a symbol of ``dynamic_shapes.py`` like an unknown
input dim (:func:`count_signal`): the model is lowered with the output pinned at two sample
sizes, the graphs are compared, dims that follow the size become -1 and size-dependent
constants are computed at run time (SHAPE of the WHERE output), or the model is refused
naming the operator. Shape arithmetic over the size is never folded at a sample. Unique stays
refused: LiteRT's UNIQUE neither sorts (ONNX's default) nor counts.
Constant inputs are folded by the front end before lowering.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from .. import layout as L
from ..dynamic_shapes import DynamicShapeModel, Symbol
from ..policies import onnx_order
from ..registry import lowering
from .emit import Emitter

DATA_DEPENDENT = {
    "Unique": "the number of unique elements",
    "NonZero": "the number of non-zero elements",
    "Compress": "the number of true entries of the condition",
}
# Sample sizes of a data-dependent count (``count_signal``): small, and above 1 (at 1 some
# lowering decisions legitimately differ, as for a batch).
COUNT_SAMPLES = (2, 3)
ANY_DTYPE = (
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
)
# Input dtypes of NonZero (x != 0 by NOT_EQUAL) and Compress (GATHER) in LiteRT. NOT_EQUAL
# over 8-bit integers takes the quantized path, which aborts without quantization parameters
# (measured): those and int16 are widened to int32 first.
NONZERO_DTYPES = ("bool", "int8", "uint8", "int16", "int32", "int64", "float32")
WIDENED = ("int8", "uint8", "int16")
COMPRESS_DTYPES = ("bool", "int8", "uint8", "int16", "int32", "int64", "float32", "float16")


def _size(node) -> str:
    return f"output size is {DATA_DEPENDENT[node.op_type]} of a runtime input"


def _data_dependent(node, graph) -> str:
    """Unique: always a refusal, declared as a check so planning reports every node at once."""
    return (
        f"{errors.DYNAMIC_SHAPE_UNSUPPORTED}: {_size(node)} (data-dependent shape); LiteRT's "
        "UNIQUE neither sorts nor counts like ONNX (it converts only when the input is "
        "constant)"
    )


def _read_by_nodes(node, graph) -> str | None:
    """A data-dependent output read by other nodes needs its sample size pinned first (the
    main graph gets one from :func:`count_signal`); until then, and in bodies, it is refused."""
    for name in node.outputs:
        reader = next((n for n in graph.nodes if name and name in n.inputs), None)
        if reader is not None and not graph.values[name].is_static:
            return (
                f"{errors.DYNAMIC_SHAPE_UNSUPPORTED}: {_size(node)}; the output {name!r} is "
                f"read by {reader.label!r} ({reader.op_type}); a size that follows the data "
                "is lowered at sample sizes only in the main graph (not in an If/Loop body) "
                "and when it can take at least two sizes"
            )
    return None


def _nonzero_check(node, graph) -> str | None:
    x = graph.values[node.inputs[0]]
    if not x.shape:
        return f"{errors.UNSUPPORTED_RANK}: NonZero of a scalar"
    return _read_by_nodes(node, graph)


def _compress_check(node, graph) -> str | None:
    cond = graph.values[node.inputs[1]]
    if cond.shape is None or len(cond.shape) != 1:
        return f"{errors.UNSUPPORTED_RANK}: the condition must be 1-D"
    return _read_by_nodes(node, graph)


def _sample_count(ctx) -> int | None:
    """The pinned sample size of the output (``count_signal``), or None: a graph output read by
    nothing, sized only at run time."""
    value = ctx.driver.graph.values[ctx.node.outputs[0]]
    if not value.is_static:
        return None
    axis = 1 if ctx.node.op_type == "NonZero" else _compress_axis(ctx.node, ctx.driver.graph)
    return value.shape[axis]


def _compress_axis(node, graph) -> int:
    axis = node.attrs.get("axis")
    if axis is None:
        return 0
    return axis + len(graph.values[node.inputs[0]].shape) if axis < 0 else axis


def _dynamic_output(ctx, dtype, shape, dynamic_axis: int, count: int | None):
    """Output 0, ``count`` rows along ``dynamic_axis`` when lowered at a sample size (the
    comparison of samples in ``dynamic_shapes`` makes that dim -1), else stored at size 1
    with -1 in its shape signature."""
    if count is not None:
        stored = tuple(count if k == dynamic_axis else d for k, d in enumerate(shape))
        out = ctx.driver.new_tensor(ctx.node.outputs[0], dtype, stored)
    else:
        stored = tuple(1 if k == dynamic_axis else d for k, d in enumerate(shape))
        out = ctx.driver.new_tensor(ctx.node.outputs[0], dtype, stored)
        out.shape_signature = tuple(-1 if k == dynamic_axis else d for k, d in enumerate(shape))
    ctx.alias_output(0, out, L.identity(len(shape)))
    return out


def _true_positions(ctx, mask, hint: str, count: int | None):
    """WHERE over a bool tensor: ``[n, rank]`` int64 coordinates of its true entries."""
    e = Emitter(ctx)
    rows = ctx.temp(np.int64, (count or 1, len(mask.shape)), hint)
    if count is None:
        rows.shape_signature = (-1, len(mask.shape))
    e.op("WHERE", mask, out=rows)
    return rows


def _max_count(node, graph) -> tuple[int, list, int] | None:
    """(largest possible size, output dims with None for the size, its axis), or None while
    the input's own size is unknown."""
    x = graph.values[node.inputs[0]].shape
    if x is None or not all(isinstance(d, int) for d in x):
        return None
    if node.op_type == "NonMaxSuppression":  # at most every box of every (batch, class)
        scores = graph.values[node.inputs[1]].shape
        if scores is None or len(scores) != 3 or not all(isinstance(d, int) for d in scores):
            return None
        return int(np.prod(scores)), [None, 3], 0
    if node.op_type == "NonZero":
        return int(np.prod(x)), [len(x), None], 1
    cond = graph.values[node.inputs[1]].shape
    if cond is None or len(cond) != 1 or not isinstance(cond[0], int):
        return None
    axis = _compress_axis(node, graph)
    if node.attrs.get("axis") is None:
        return min(cond[0], int(np.prod(x))), [None], 0
    dims = [None if k == axis else d for k, d in enumerate(x)]
    return min(cond[0], x[axis]), dims, axis


def data_dependent_values(graph) -> set[str]:
    """Values computed from a data-dependent output pinned at a sample size (everything
    downstream of it, conservatively: their sizes may follow the count)."""
    tainted = {
        node.outputs[0]
        for node in graph.nodes
        if not node.domain
        and node.op_type in ("NonZero", "Compress", "NonMaxSuppression")
        and node.outputs
        and node.outputs[0]
        and graph.values[node.outputs[0]].is_static
    }
    if not tainted:
        return tainted
    for node in graph.nodes:  # topological order
        if any(i in tainted for i in node.inputs):
            tainted.update(o for o in node.outputs if o)
    return tainted


def count_signal(graph, padded_nms: bool = False) -> DynamicShapeModel | None:
    """The data-dependent sizes of NonZero/Compress outputs that other nodes read and that
    have no sample size yet: each becomes a symbol of ``dynamic_shapes`` (sampled at 2 and 3,
    never above the largest possible count), so the model is lowered at both sizes and what
    follows the size is made dynamic or computed at run time, like an input dim. A size
    whose op reads another unknown size is found once that one is pinned. NonMaxSuppression's
    selection counts too, unless ``padded_nms`` (--nms-padded-output: a fixed size).
    Nodes computing the same op of the same inputs (exporters repeat ``nonzero(mask)``) share
    one symbol: their counts are equal at run time, and sampled apart they would contradict
    each other (a TopK k from one, its input from the other)."""
    found_symbols: dict[str, tuple[list, tuple]] = {}  # symbol -> (occurrences, samples)
    by_key: dict[tuple, str] = {}
    dims = {}
    read = {i for n in graph.nodes for i in n.inputs if i}
    counted = ("NonZero", "Compress") + (() if padded_nms else ("NonMaxSuppression",))
    for node in graph.nodes:
        if node.domain or node.op_type not in counted or not node.outputs:
            continue
        name = node.outputs[0]
        key = (node.op_type, tuple(node.inputs), repr(sorted(node.attrs.items())))
        if name and graph.values[name].is_static:  # pinned in an earlier round
            by_key.setdefault(key, f"{node.label}:rows")
            continue
        if not name or name not in read:
            continue
        found = _max_count(node, graph)
        if found is None or found[0] < 2:
            continue  # refused by the node's check (its size cannot be sampled twice)
        most, out_dims, axis = found
        symbol = by_key.setdefault(key, f"{node.label}:rows")
        samples = COUNT_SAMPLES if most >= COUNT_SAMPLES[1] else (most - 1, most)
        places, _ = found_symbols.setdefault(symbol, ([], samples))
        places.append((name, axis))
        dims[name] = [symbol if d is None else d for d in out_dims]
    if not dims:
        return None
    symbols = [
        Symbol(symbol, tuple(places), samples, data_dependent=True)
        for symbol, (places, samples) in found_symbols.items()
    ]
    return DynamicShapeModel(symbols, {}, dims)


@lowering(
    "NonZero",
    onnx_order,
    since=9,
    dtypes=NONZERO_DTYPES,
    dynamic_outputs=True,
    extra_check=_nonzero_check,
    tflite_ops=("CAST", "NOT_EQUAL", "WHERE", "TRANSPOSE"),
    notes="WHERE then TRANSPOSE: [rank, n] with n known at run time (-1 in the shape "
    "signature); what reads it is lowered at sample sizes and made dynamic",
)
def lower_nonzero(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    if np.dtype(x.dtype).name in WIDENED:
        wide = e.op("CAST", x, dtype=np.int32, hint="widened")
        x = wide
    mask = x
    if np.dtype(x.dtype) != np.bool_:
        zero = ctx.const_tensor(np.zeros((), x.dtype), "zero")
        mask = e.op("NOT_EQUAL", x, zero, dtype=np.bool_, hint="nonzero_mask")
    rank = len(x.shape)
    count = _sample_count(ctx)
    rows = _true_positions(ctx, mask, "coordinates", count)
    out = _dynamic_output(ctx, np.int64, (rank, 1), 1, count)
    e.op("TRANSPOSE", rows, ctx.const_tensor(np.array([1, 0], np.int32), "perm"), out=out)


@lowering(
    "Compress",
    onnx_order,
    since=9,
    dtypes=COMPRESS_DTYPES,
    dynamic_outputs=True,
    extra_check=_compress_check,
    tflite_ops=("WHERE", "RESHAPE", "GATHER"),
    notes="WHERE over the condition, then GATHER along the axis (the flattened input without "
    "one); the output size is known at run time (-1 in the shape signature); what reads it is "
    "lowered at sample sizes and made dynamic",
)
def lower_compress(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    axis = ctx.attr("axis")
    if axis is None:
        size = int(np.prod(x.shape))
        x = ctx.reshape(x, (size,), "flat")
        axis = 0
    elif axis < 0:
        axis += len(x.shape)
    if ctx.shape(1)[0] > x.shape[axis]:
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE,
            f"condition of length {ctx.shape(1)[0]} is longer than axis {axis} "
            f"({x.shape[axis]}); onnxruntime rejects it too",
        )
    count = _sample_count(ctx)
    rows = _true_positions(ctx, ctx.input(1), "selected", count)
    picks = ctx.temp(np.int64, (count or 1,), "indices")
    if count is None:
        picks.shape_signature = (-1,)
    e.op("RESHAPE", rows, ctx.const_tensor(np.array([-1], np.int32), "flat_shape"), out=picks)
    out = _dynamic_output(ctx, x.dtype, x.shape, axis, count)
    e.gather(x, picks, axis, out=out)


@lowering(
    "Unique",
    onnx_order,
    dtypes=ANY_DTYPE,
    tflite_ops=(),
    notes="refused: data-dependent output size (folded when the input is constant)",
    dynamic_outputs=True,
    extra_check=_data_dependent,
)
def _never_lowered(ctx):
    raise AssertionError("unreachable: the declared check refuses every node")
