"""Ops whose output size depends on the input *values*: Unique, NonZero, Compress.

TFLite tensors have shapes fixed at conversion time, so these are refused with a precise
reason (dynamic_shape_unsupported, naming the data-dependent size) unless their inputs are
constant (then folding removes them before lowering).
"""

from __future__ import annotations

from .. import errors
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


def _data_dependent(node, graph) -> str:
    """Always a refusal: declared as a check so planning reports every such node at once."""
    return (
        f"{errors.DYNAMIC_SHAPE_UNSUPPORTED}: output size is {DATA_DEPENDENT[node.op_type]} of "
        "a runtime input (data-dependent shape); TFLite needs static shapes (it converts only "
        "when the input is constant)"
    )


def _never_lowered(ctx):
    raise AssertionError("unreachable: the declared check refuses every node")


for _op in DATA_DEPENDENT:
    lowering(
        _op,
        onnx_order,
        dtypes=ANY_DTYPE,
        tflite_ops=(),
        notes="refused: data-dependent output size (folded when the input is constant)",
        dynamic_outputs=True,
        extra_check=_data_dependent,
    )(_never_lowered)
