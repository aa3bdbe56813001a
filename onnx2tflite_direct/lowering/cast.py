"""Cast and CastLike between the dtypes TFLite's CAST kernel converts.

Measured on LiteRT: CAST handles every pair among float32/float16/bfloat16/float64, the signed
and unsigned 8/16/32-bit integers, int64 and bool; integer narrowing wraps like C and
float -> int truncates toward zero (ONNX leaves out-of-range float -> int undefined; TFLite
saturates). uint64, float8, 4/2-bit integers and strings have no CAST kernel and are refused;
``saturate`` only concerns float8 targets, which are refused anyway.
"""

from __future__ import annotations

from onnx import helper

from .. import errors
from ..policies import same_as_input
from ..registry import lowering
from .elementwise import dtype_name

CASTABLE = (
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "bool",
)


def _target_name(node, graph) -> str | None:
    if node.op_type == "CastLike":
        return dtype_name(graph.values[node.inputs[1]].dtype)
    try:
        return dtype_name(helper.tensor_dtype_to_np_dtype(int(node.attrs["to"])))
    except (KeyError, TypeError, ValueError):
        return None


def _check(node, graph):
    target = _target_name(node, graph)
    if target not in CASTABLE:
        return f"{errors.UNSUPPORTED_DTYPE}: cast to {target or 'this type'} has no TFLite kernel"
    return None


def lower_cast(ctx):
    out = ctx.output(0)
    x = ctx.input(0)
    if x.dtype == out.dtype:
        ctx.alias_output(0, x, ctx.in_layout(0))
        return
    ctx.emit("CAST", [x], [out])


for _onnx, _since in (("Cast", 6), ("CastLike", 15)):
    lowering(
        _onnx,
        same_as_input,
        since=_since,
        dtypes=CASTABLE,
        tflite_ops=("CAST",),
        extra_check=_check,
        notes="float -> int truncates (out-of-range saturates); int narrowing wraps; "
        "uint64/float8/int4/string refused",
    )(lower_cast)
