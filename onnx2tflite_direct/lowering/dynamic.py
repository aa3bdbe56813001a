"""Ops whose output size depends on the input *values*: NonZero, Compress (and Unique).

LiteRT has dynamic tensors: WHERE's output has one row per true element, sized when it runs,
and the ops after it (TRANSPOSE, GATHER) resize their outputs from it at run time. So:

- NonZero(x) = TRANSPOSE(WHERE(x != 0)): WHERE gives the ``[n, rank]`` coordinates in
  row-major order (ONNX's order), NonZero wants ``[rank, n]``;
- Compress(x, c, axis) = GATHER(x, WHERE(c) as ``[n]``, axis); without ``axis`` x is
  flattened first. ONNX allows a condition shorter than the axis (the rest is dropped), and
  WHERE's indices are then all in range.

The data-dependent dimension is -1 in the tensor's shape signature (stored as 1). What this
step does not do yet: lower the nodes that *read* such a value. Their shapes would have to be
lowered at sample sizes and compared (``dynamic_shapes.py`` does this for input dims) so that
every size-dependent constant is either relaxed or refused; until then a data-dependent
output read by another node is refused, naming the node, so nothing is lowered at a guessed
size. Unique stays refused: LiteRT's UNIQUE neither sorts (ONNX's default) nor counts.
Constant inputs are folded by the front end before lowering.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from .. import layout as L
from ..policies import onnx_order
from ..registry import lowering

DATA_DEPENDENT = {
    "Unique": "the number of unique elements",
    "NonZero": "the number of non-zero elements",
    "Compress": "the number of true entries of the condition",
}
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
    """Outputs of a data-dependent size may only be graph outputs (see the module docstring)."""
    for name in node.outputs:
        reader = next((n for n in graph.nodes if name and name in n.inputs), None)
        if reader is not None:
            return (
                f"{errors.DYNAMIC_SHAPE_UNSUPPORTED}: {_size(node)}; the output {name!r} is "
                f"read by {reader.label!r} ({reader.op_type}), and nodes after a "
                "data-dependent size are not lowered yet (only a graph output may have one)"
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


def _dynamic_output(ctx, dtype, shape, dynamic_axis: int):
    """Output 0 stored at size 1 along ``dynamic_axis`` (-1 in its shape signature)."""
    stored = tuple(1 if k == dynamic_axis else d for k, d in enumerate(shape))
    out = ctx.driver.new_tensor(ctx.node.outputs[0], dtype, stored)
    out.shape_signature = tuple(-1 if k == dynamic_axis else d for k, d in enumerate(shape))
    ctx.alias_output(0, out, L.identity(len(shape)))
    return out


def _true_positions(ctx, mask, hint: str):
    """WHERE over a bool tensor: ``[n, rank]`` int64 coordinates of its true entries."""
    rows = ctx.temp(np.int64, (1, len(mask.shape)), hint)
    rows.shape_signature = (-1, len(mask.shape))
    ctx.emit("WHERE", [mask], [rows])
    return rows


@lowering(
    "NonZero",
    onnx_order,
    since=9,
    dtypes=NONZERO_DTYPES,
    dynamic_outputs=True,
    extra_check=_nonzero_check,
    tflite_ops=("CAST", "NOT_EQUAL", "WHERE", "TRANSPOSE"),
    notes="WHERE then TRANSPOSE: [rank, n] with n known at run time (-1 in the shape "
    "signature); the output must be a graph output (nodes reading it are not lowered yet)",
)
def lower_nonzero(ctx):
    x = ctx.input(0)
    if np.dtype(x.dtype).name in WIDENED:
        wide = ctx.temp(np.int32, x.shape, "widened")
        ctx.emit("CAST", [x], [wide])
        x = wide
    mask = x
    if np.dtype(x.dtype) != np.bool_:
        zero = ctx.const_tensor(np.zeros((), x.dtype), "zero")
        mask = ctx.temp(np.bool_, x.shape, "nonzero_mask")
        ctx.emit("NOT_EQUAL", [x, zero], [mask])
    rank = len(x.shape)
    rows = _true_positions(ctx, mask, "coordinates")
    out = _dynamic_output(ctx, np.int64, (rank, 1), 1)
    ctx.emit("TRANSPOSE", [rows, ctx.const_tensor(np.array([1, 0], np.int32), "perm")], [out])


@lowering(
    "Compress",
    onnx_order,
    since=9,
    dtypes=COMPRESS_DTYPES,
    dynamic_outputs=True,
    extra_check=_compress_check,
    tflite_ops=("WHERE", "RESHAPE", "GATHER"),
    notes="WHERE over the condition, then GATHER along the axis (the flattened input without "
    "one); the output size is known at run time (-1 in the shape signature); the output must "
    "be a graph output (nodes reading it are not lowered yet)",
)
def lower_compress(ctx):
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
    rows = _true_positions(ctx, ctx.input(1), "selected")
    picks = ctx.temp(np.int64, (1,), "indices")
    picks.shape_signature = (-1,)
    ctx.emit("RESHAPE", [rows, ctx.const_tensor(np.array([-1], np.int32), "flat_shape")], [picks])
    out = _dynamic_output(ctx, x.dtype, x.shape, axis)
    ctx.emit("GATHER", [x, picks], [out], axis=axis, batch_dims=0)


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
