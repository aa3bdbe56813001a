"""Cast and CastLike between the dtypes TFLite's CAST kernel converts.

Measured on LiteRT 2.3.0: CAST handles every pair among float32/float16/bfloat16/float64, the
signed and unsigned 8/16/32-bit integers, int64 and bool; integer narrowing wraps like C and
float -> int truncates toward zero (ONNX leaves out-of-range float -> int undefined; TFLite
saturates).

Sub-byte integers: the kernel converts int4/uint4 only to float32, so other targets go through
float32, which is exact for the sixteen values involved. Casts *to* int4/uint4 are refused:
onnxruntime rounds float -> int4 to nearest while the ONNX reference truncates (the spec leaves
it open), and LiteRT's Python API would hand such an output back as an int8 array. int2 is
refused: that API cannot feed an INT2 input and the builder cannot pack INT2 constants.

Refused: uint64 and strings (no CAST kernel); float8 (the registered CAST v9 kernel rejects
FLOAT8_E4M3FN/E5M2 at invoke time in LiteRT 2.3.0, and its Python API cannot feed float8);
the FNUZ float8 variants, float8_e8m0, float4 and uint2 (no TFLite tensor type).
"""

from __future__ import annotations

from onnx import helper

from .. import errors
from ..policies import same_as_input
from ..registry import lowering
from .elementwise import dtype_name
from .emit import Emitter, np_dtype

FULL_WIDTH = (
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
SUB_BYTE = ("int4", "uint4")
CASTABLE = FULL_WIDTH + SUB_BYTE


def _target_name(node, graph) -> str | None:
    if node.op_type == "CastLike":
        return dtype_name(graph.values[node.inputs[1]].dtype)
    try:
        return dtype_name(helper.tensor_dtype_to_np_dtype(int(node.attrs["to"])))
    except (KeyError, TypeError, ValueError):
        return None


def _check(node, graph):
    target = _target_name(node, graph)
    source = dtype_name(graph.values[node.inputs[0]].dtype)
    if target not in CASTABLE:
        return f"{errors.UNSUPPORTED_DTYPE}: cast to {target or 'this type'} has no TFLite kernel"
    if target in SUB_BYTE and source != target:
        return (
            f"{errors.UNSUPPORTED_DTYPE}: cast {source} -> {target}: ONNX runtimes disagree on "
            "rounding into 4-bit integers"
        )
    return None


def _cast(ctx, x, out):
    """CAST ``x`` into ``out``, through float32 when a sub-byte type is on either side."""
    e = Emitter(ctx)
    via_f32 = {dtype_name(x.dtype), dtype_name(out.dtype)} & set(SUB_BYTE)
    if via_f32 and "float32" not in (dtype_name(x.dtype), dtype_name(out.dtype)):
        mid = e.op("CAST", x, dtype=np_dtype("float32"), hint="as_f32")
        x = mid
    e.op("CAST", x, out=out)


def lower_cast(ctx):
    out = ctx.output(0)
    x = ctx.input(0)
    if x.dtype == out.dtype:
        ctx.alias_output(0, x, ctx.in_layout(0))
        return
    _cast(ctx, x, out)


for _onnx, _since in (("Cast", 6), ("CastLike", 15)):
    lowering(
        _onnx,
        same_as_input,
        since=_since,
        dtypes=CASTABLE,
        tflite_ops=("CAST",),
        extra_check=_check,
        notes="float -> int truncates (out-of-range saturates); int narrowing wraps; "
        "int4/uint4 sources go through float32; casts to int4/uint4 and "
        "int2/uint2/uint64/float8/float4/string refused",
    )(lower_cast)
