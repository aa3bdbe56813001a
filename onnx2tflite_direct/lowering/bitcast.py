"""BitCast -> BITCAST: the TFLite kernel copies the bytes and relabels the type, which is the
ONNX definition (little-endian reinterpretation) for same-width types. Only dtypes LiteRT
tensors can hold are accepted; sub-byte and float8 types have no TFLite tensor type.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from .. import errors
from ..policies import same_as_input
from ..registry import lowering
from .emit import Emitter

BITCAST_DTYPES = (
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "float16",
    "int32",
    "uint32",
    "float32",
    "int64",
    "uint64",
    "float64",
)


def _target(node) -> np.dtype | None:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(int(node.attrs.get("to", 0))))
    except (KeyError, TypeError, ValueError):
        return None


def _check(node, graph):
    target = _target(node)
    if target is None or target.name not in BITCAST_DTYPES:
        return (
            f"{errors.UNSUPPORTED_DTYPE}: target type to={node.attrs.get('to')} has no TFLite type"
        )
    source = np.dtype(graph.values[node.inputs[0]].dtype)
    if source.itemsize != target.itemsize:
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: {source.name} and {target.name} differ in width"
        )
    return None


@lowering(
    "BitCast",
    same_as_input,
    since=26,
    dtypes=BITCAST_DTYPES,
    tflite_ops=("BITCAST",),
    notes="same-width types with a TFLite tensor type (no bfloat16, float8, 4-bit, complex)",
    extra_check=_check,
)
def lower_bitcast(ctx):
    e = Emitter(ctx)
    e.op("BITCAST", ctx.input(0), out=ctx.output(0, dtype=_target(ctx.node)))
