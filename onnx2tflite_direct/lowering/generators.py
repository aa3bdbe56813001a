"""Tensor generators: Range, ConstantOfShape, EyeLike, Trilu.

Shapes are static, so a runtime ``shape`` input of ConstantOfShape cannot change the result
(FILL with the static output shape), EyeLike's output is a constant (materialized with one
RESHAPE of a constant so it can be a graph output), and Trilu is a SELECT_V2 against a mask
(constant for constant ``k``, a GREATER_EQUAL of a column-minus-row grid against runtime ``k``
otherwise). Shape/Size always fold to constants in the front end (static shapes).
"""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from ..policies import onnx_order
from ..registry import lowering
from .dynamic_sizes import axes_vary
from .emit import Emitter

# dtypes proven by tests/test_ops_generators.py
TRILU_TYPES = ("float32", "int32", "int64", "bool")


def emit_constant_output(ctx, i, array, hint="value"):
    """Output ``i`` is the constant ``array``: one RESHAPE of it (outputs need a producer)."""
    e = Emitter(ctx)
    out = ctx.output(i)
    e.reshape(ctx.const_tensor(np.asarray(array, out.dtype), hint), out=out)


def _nonempty_output(node, graph):
    if any(d == 0 for d in graph.values[node.outputs[0]].shape or ()):
        return "unsupported_attribute_value: empty output"
    return None


@lowering(
    "Range",
    onnx_order,
    since=11,
    dtypes=("float32", "int32", "int64"),
    dtype_inputs=(0, 1, 2),
    tflite_ops=("RANGE",),
    notes="start/limit/delta may be runtime",
    extra_check=_nonempty_output,
)
def lower_range(ctx):
    e = Emitter(ctx)
    e.op("RANGE", ctx.input(0), ctx.input(1), ctx.input(2), out=ctx.output(0))


def _shape_entries(graph, producers, name: str) -> list[int | None] | None:
    """The entries of a 1-D shape vector that are constants (None where computed at run
    time), through Concat of constant and run-time pieces; None when unknown."""
    value = graph.values.get(name)
    if value is None or value.shape is None or len(value.shape) != 1:
        return None
    if value.const is not None:
        return [int(v) for v in np.asarray(value.const).reshape(-1)]
    node = producers.get(name)
    if node is None or node.op_type != "Concat":
        return [None] * value.shape[0]
    entries = []
    for piece in node.inputs:
        part = _shape_entries(graph, producers, piece)
        if part is None:
            return None
        entries += part
    return entries if len(entries) == value.shape[0] else None


def _fill_check(node, graph):
    """An empty output is refused unless its shape is read at run time with a constant 0 in
    each empty dim (a torch ``x.new_full((x.shape[0], 0, 1), v)`` concatenated to nothing):
    FILL then makes the zero-size tensor at every run-time size, and LiteRT's consumers take
    it. A 0 computed from the sizes could be non-zero at other sizes: refused."""
    why = _nonempty_output(node, graph)
    if why is None or graph.values[node.inputs[0]].const is not None:
        return why
    entries = _shape_entries(graph, graph.producers(), node.inputs[0])
    shape = graph.values[node.outputs[0]].shape
    if entries is None or len(entries) != len(shape):
        return why
    if all(entry == 0 for d, entry in zip(shape, entries, strict=True) if d == 0):
        return None
    return why


@lowering(
    "ConstantOfShape",
    onnx_order,
    since=9,
    dtypes=("int64",),
    tflite_ops=("FILL",),
    notes="shape read at run time unless constant",
    extra_check=_fill_check,
)
def lower_constant_of_shape(ctx):
    e = Emitter(ctx)
    value = ctx.attr("value")
    if value is None:
        value = np.zeros(1, np.float32)
    elif not isinstance(value, np.ndarray):
        value = numpy_helper.to_array(value)
    out = ctx.output(0)
    if ctx.const(0) is None:  # a run-time shape (it follows a dynamic input size)
        dims = e.cast(ctx.input(0), np.int32, "dims")
    else:
        dims = ctx.const_tensor(np.array(out.shape, np.int32), "dims")
    fill = ctx.const_tensor(np.array(value.reshape(-1)[0], out.dtype), "value")
    e.op("FILL", dims, fill, out=out)


@lowering(
    "EyeLike",
    onnx_order,
    since=9,
    dtypes=("float32", "float16", "int32", "int64", "int8", "uint8", "int16", "bool", "float64"),
    ranks=(2,),
    tflite_ops=("RESHAPE", "SHAPE", "GATHER", "RANGE", "SUB", "EQUAL", "CAST"),
    notes="a constant (only the input's static shape is read, never its data); computed at "
    "run time from the input's SHAPE when its dims are dynamic",
)
def lower_eye_like(ctx):
    rows, cols = ctx.out_shape(0)
    k = int(ctx.attr("k", 0))
    if ctx.const(0) is not None or not axes_vary(ctx, (0, 1)):
        emit_constant_output(ctx, 0, np.eye(rows, cols, k=k), "eye")
        return
    # Dims that follow the run-time sizes (XLNet's eye(sequence)): a constant would have the
    # sample's size; column - row == k at the input's run-time SHAPE instead.
    e = Emitter(ctx)
    offset = _offset_grid(ctx, e, ctx.input(0), rows, cols)
    kk = ctx.const_tensor(np.array(k, np.int32), "k")
    out = ctx.output(0)
    if np.dtype(out.dtype) == np.bool_:
        e.op("EQUAL", offset, kk, out=out)
        return
    mask = e.op("EQUAL", offset, kk, shape=(rows, cols), dtype=np.bool_, hint="eye_mask")
    e.op("CAST", mask, out=out)


def _offset_grid(ctx, e: Emitter, x, rows: int, cols: int):
    """[rows, cols] int32 column - row over the last two dims of ``x`` at their run-time sizes
    (SHAPE, RANGE): what EyeLike and Trilu compare with k when those dims are dynamic (a
    constant grid would have the sample's size)."""
    rank = len(x.shape)
    dims = e.op("SHAPE", x, shape=(rank,), dtype=np.int32, hint="grid_dims", out_type="INT32")
    zero = ctx.const_tensor(np.array(0, np.int32), "zero")
    one = ctx.const_tensor(np.array(1, np.int32), "one")
    ranges = []
    for axis, (size, target) in enumerate(((rows, (-1, 1)), (cols, (1, -1)))):
        at = ctx.const_tensor(np.array(rank - 2 + axis, np.int32), f"at{axis}")
        n = e.op("GATHER", dims, at, shape=(), dtype=np.int32, hint="grid_size", axis=0)
        r = e.op("RANGE", zero, n, one, shape=(size,), dtype=np.int32, hint="grid_range")
        to = ctx.const_tensor(np.array(target, np.int32), "grid_target")
        shape = (size, 1) if axis == 0 else (1, size)
        ranges.append(e.op("RESHAPE", r, to, shape=shape, dtype=np.int32, hint="grid_axis"))
    return e.op("SUB", ranges[1], ranges[0], shape=(rows, cols), dtype=np.int32)


@lowering(
    "Trilu",
    onnx_order,
    since=14,
    dtypes=TRILU_TYPES,
    tflite_ops=(
        "SELECT_V2",
        "GREATER_EQUAL",
        "LESS_EQUAL",
        "SHAPE",
        "GATHER",
        "RANGE",
        "RESHAPE",
        "SUB",
        "CAST",
        "MINIMUM",
        "MAXIMUM",
    ),
    notes="k may be runtime; the mask is computed at run time when the last two dims are dynamic",
    extra_check=_nonempty_output,
)
def lower_trilu(ctx):
    e = Emitter(ctx)
    rows, cols = ctx.shape(0)[-2:]
    x = ctx.input(0)
    upper = bool(ctx.attr("upper", 1))
    offset = np.arange(cols)[None, :] - np.arange(rows)[:, None]  # column - row
    k = ctx.const(1) if ctx.has_input(1) else np.array(0)
    zeros = ctx.const_tensor(np.zeros((1, 1), x.dtype), "zeros")
    if axes_vary(ctx, (-2, -1)):  # the grid at the run-time sizes (a constant has the sample's)
        grid = _offset_grid(ctx, e, x, rows, cols)
        if k is not None:  # (clamped to int32: |column - row| is far below it)
            k = int(np.clip(int(np.asarray(k).reshape(-1)[0]), -(2**31), 2**31 - 1))
            k_t = ctx.const_tensor(np.array(k, np.int32), "k")
        else:
            k_t = ctx.input(1)
            if np.dtype(k_t.dtype) != np.int32:  # clamped before the cast, never wrapped
                lo = ctx.const_tensor(np.array(-(2**31), k_t.dtype), "k_min")
                hi = ctx.const_tensor(np.array(2**31 - 1, k_t.dtype), "k_max")
                k_t = e.op("MAXIMUM", e.op("MINIMUM", k_t, hi), lo)
            k_t = e.cast(k_t, np.int32, "k")
        compare = "GREATER_EQUAL" if upper else "LESS_EQUAL"
        mask = e.op(compare, grid, k_t, shape=(rows, cols), dtype=np.bool_, hint="mask")
    elif k is not None:
        k = int(np.asarray(k).reshape(-1)[0])
        mask = ctx.const_tensor(offset >= k if upper else offset <= k, "mask")
    else:
        k_t = ctx.input(1)
        mask = ctx.temp(np.bool_, (rows, cols), "mask")
        grid = ctx.const_tensor(offset.astype(k_t.dtype), "offset")
        e.op("GREATER_EQUAL" if upper else "LESS_EQUAL", grid, k_t, out=mask)
    e.op("SELECT_V2", mask, x, zeros, out=ctx.output(0))
