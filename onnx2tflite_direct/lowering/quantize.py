"""QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear as exact float32 compositions.

Why compositions: node-test models feed scales and zero points as runtime tensors, which a
quantized tensor's static parameters cannot express, and the QUANTIZE builtin's tie rounding is
not known to match ONNX's half-to-even (not relied upon; the composition is exact by
construction). Every step below is one correctly rounded IEEE operation
with the same operands ONNX uses: ``x / scale`` (DIV, not a multiply by 1/scale), ROUND (half
to even), ``+ zero_point`` (exact: both are small integers in float32), a clamp to the target
range and a CAST. Dequantization is ``(q - zp) * scale`` with ``q - zp`` exact in float32
(int32 inputs subtract in int32 first, as onnxruntime does). A constant quantized tensor with
constant 8/16-bit parameters becomes a quantized constant feeding the DEQUANTIZE builtin,
which computes the same single product, so weights stay int8 in the file.

float16 x / scale / output (opset 19+): computed as onnxruntime computes them, measured bit for
bit on onnxruntime 1.32. QuantizeLinear divides in float32 below opset 23 (x and scale widened
exactly), and from opset 23 in the ``precision`` attribute's type, which defaults to the
scale's: a float16 division there is x and scale rounded to float16, their float32 quotient
rounded to float16 (exact: a float32 quotient of two float16 values rounds to the correctly
rounded float16 one, 24 >= 2 * 11 + 2 bits), then the same ROUND / zero point / clamp / CAST.
DequantizeLinear into float16 is the float32 product ``(q - zp) * scale`` rounded once to
float16 (a CAST), as onnxruntime's ``static_cast<MLFloat16>(float)`` does. These forms skip the
lattice shortcuts below (they register nothing for a reader to reuse): those assume float32
values throughout. bfloat16 is refused: onnxruntime has no CPU kernel for it, so nothing could
prove a lowering.

Scales and zero points broadcast along ``axis`` (mapped to the stored axis of ``x``); blocked
quantization repeats them ``block_size`` times along the axis (numpy for constants, one GATHER
for runtime tensors). int4/int2/float8/float4 have no TFLite arithmetic and are refused.

What keeps an already-quantized model's float32 file as fast as its float model (resnet18 QDQ
ran at 13.5x onnxruntime's latency before): the weights' DEQUANTIZE output is registered with
the driver, which stores the int8 constant in the order a consumer wants instead of
transposing or reshaping at run time; small constants the builtin cannot hold (int32 biases)
are computed at conversion time; and an activation pair ``DQ(Q(x))`` on one constant lattice
is ``clamp(round(x / s), qmin - zp, qmax - zp) * s`` (the integer tensor and its casts are dead
ops unless something else reads it). Each keeps the values exactly: a convolution then sees
static operands, which XNNPACK needs.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from .. import errors, tfl
from .. import layout as L
from ..policies import PASSTHROUGH, keep_rank
from ..registry import FLOAT, lowering
from .elementwise import dtype_name
from .emit import Emitter
from .lattice_moves import on_lattice

# Integer ranges of the quantized types TFLite can compute with.
QUANT_RANGES = {
    "uint8": (0, 255),
    "int8": (-128, 127),
    "uint16": (0, 65535),
    "int16": (-32768, 32767),
}
DEQUANT_INPUTS = (*QUANT_RANGES, "int32")
# A QuantizeLinear of a constant is computed at conversion time (_quantize_constant); the
# switch is for benchmarks/bench_qdq_lattice.py.
QUANTIZE_CONSTANTS = True
# DEQUANTIZE builtin input types (int16 needs zero point 0).
DEQUANTIZE_BUILTIN = ("uint8", "int8", "int16")
# x / scale / DequantizeLinear output types (float16 through float32, see the module docstring).
FLOAT_PARAMS = ("float32", "float16")


# ---- shared checks and operands (also used by qlinear.py) ---------------------------------


def _dtype_of(graph, name) -> str:
    return dtype_name(graph.values[name].dtype)


def _has(node, i) -> bool:
    return i < len(node.inputs) and bool(node.inputs[i])


def scale_layout_problem(node, graph, x_idx: int, param_idxs) -> str | None:
    """Scales/zero points must be per-tensor, per-axis (1-D along ``axis``) or blocked."""
    x_shape = graph.values[node.inputs[x_idx]].shape
    rank = len(x_shape)
    axis = int(node.attrs.get("axis", 1))
    block = int(node.attrs.get("block_size", 0) or 0)
    for i in param_idxs:
        if not _has(node, i):
            continue
        shape = tuple(graph.values[node.inputs[i]].shape)
        size = int(np.prod(shape, dtype=np.int64))
        if size == 1 and block <= 0:
            continue  # per-tensor: axis is irrelevant
        if not -rank <= axis < rank:
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: axis {axis} out of range for rank {rank}"
        axis %= rank
        if block > 0:
            want = list(x_shape)
            want[axis] = -(-x_shape[axis] // block)
            if shape != tuple(want):
                return (
                    f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: blocked parameter shape {shape} "
                    f"!= {tuple(want)}"
                )
        elif size != 1 and (len(shape) != 1 or rank == 0 or shape[0] != x_shape[axis]):
            return (
                f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: parameter shape {shape} is neither "
                f"per-tensor nor per-axis along axis {axis}"
            )
    return None


def broadcast_param(ctx, i: int, x_idx: int, dtype=np.float32) -> tfl.Tensor:
    """Input ``i`` (a scale or zero point) as ``dtype``, broadcastable against stored x.

    Per-tensor -> a scalar; per-axis -> unit dims except the stored axis; blocked -> repeated
    along the axis to x's shape, then stored in x's layout.
    """
    e = Emitter(ctx)
    lay = ctx.in_layout(x_idx)
    x_shape = ctx.shape(x_idx)
    rank = len(x_shape)
    axis = int(ctx.attr("axis", 1)) % max(rank, 1)
    block = int(ctx.attr("block_size", 0) or 0)
    shape = ctx.shape(i)
    size = int(np.prod(shape, dtype=np.int64))
    if block > 0:
        index = np.arange(x_shape[axis]) // block
        target = None
    elif size == 1:
        target = ()
    else:
        target = [1] * rank
        target[lay.stored_axis(axis)] = size
    value = ctx.const(i)
    if value is not None:
        return ctx.const_tensor(_param_array(ctx, np.asarray(value), x_idx, dtype), f"param{i}")
    t = e.cast(ctx.input(i, L.identity(len(shape))), dtype, f"param{i}_f")
    if block > 0:
        t = e.gather(t, index.astype(np.int32), axis, f"param{i}_blocks")
        return e.transpose(t, lay.perm, f"param{i}_stored")
    return e.reshape(t, tuple(target), f"param{i}_b")


def _param_array(ctx, value: np.ndarray, x_idx: int, dtype) -> np.ndarray:
    """A constant scale or zero point as ``dtype``, shaped to broadcast against stored x
    (:func:`broadcast_param`'s constant case)."""
    lay = ctx.in_layout(x_idx)
    rank = len(ctx.shape(x_idx))
    axis = int(ctx.attr("axis", 1)) % max(rank, 1)
    block = int(ctx.attr("block_size", 0) or 0)
    arr = np.asarray(value).astype(dtype)
    if block > 0:
        return lay.apply(np.take(arr, np.arange(ctx.shape(x_idx)[axis]) // block, axis=axis))
    if arr.size == 1:
        return arr.reshape(())
    target = [1] * rank
    target[lay.stored_axis(axis)] = arr.size
    return arr.reshape(target)


def requantize(ctx, value: tfl.Tensor, zp: tfl.Tensor | None, out: tfl.Tensor, scale_hint: str):
    """out = saturate(ROUND(value) + zp) cast to out.dtype; ``value`` is float32 (already
    divided or multiplied by the scale)."""
    e = Emitter(ctx)
    lo, hi = QUANT_RANGES[dtype_name(out.dtype)]
    t = e.op("ROUND", value, dtype=np.float32, hint=f"{scale_hint}_round")
    if zp is not None:
        t = e.op("ADD", t, zp, hint=f"{scale_hint}_zp")
    t = e.op("MAXIMUM", t, e.const(lo, hint="qmin"), hint=f"{scale_hint}_lo")
    t = e.op("MINIMUM", t, e.const(hi, hint="qmax"), hint=f"{scale_hint}_hi")
    if tuple(t.shape) != tuple(out.shape):
        t = e.reshape(t, out.shape, f"{scale_hint}_shaped")
    e.op("CAST", t, out=out)


# ---- QuantizeLinear ----------------------------------------------------------------------


def _quant_target(node, graph) -> str:
    if _has(node, 2):
        return _dtype_of(graph, node.inputs[2])
    out_dtype = int(node.attrs.get("output_dtype", 0) or 0)
    if out_dtype:
        return dtype_name(helper.tensor_dtype_to_np_dtype(out_dtype))
    return "uint8"


def _precision_problem(node) -> str | None:
    precision = int(node.attrs.get("precision", 0) or 0)
    if precision not in (0, onnx_float(), onnx_float("float16")):
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: precision {precision} (only float32 or float16)"
        )
    out_dtype = int(node.attrs.get("output_dtype", 0) or 0)
    if node.op_type == "DequantizeLinear" and out_dtype not in (
        0,
        onnx_float(),
        onnx_float("float16"),
    ):
        return f"{errors.UNSUPPORTED_DTYPE}: output_dtype {out_dtype} (only float32 or float16)"
    return None


def onnx_float(name: str = "float32") -> int:
    return int(helper.np_dtype_to_tensor_dtype(np.dtype(name)))


def division_dtype(node, graph) -> str:
    """The type QuantizeLinear divides in, as onnxruntime does: float32 below opset 23 (x and
    scale share one type there, widened exactly); from opset 23 the ``precision`` attribute,
    else the scale's type."""
    if node.opset < 23:
        return "float32"
    precision = int(node.attrs.get("precision", 0) or 0)
    if precision:
        return dtype_name(helper.tensor_dtype_to_np_dtype(precision))
    return _dtype_of(graph, node.inputs[1])


def _out_dtype(ctx) -> str:
    """Output 0's dtype name, read without creating its tensor (it may become an alias)."""
    return dtype_name(ctx.driver.value(ctx.node.outputs[0]).dtype)


def _all_float32(ctx) -> bool:
    """Is every float of this Q/DQ node float32 (the form the lattice shortcuts assume)?"""
    node, graph = ctx.node, ctx.driver.graph
    floats = [_dtype_of(graph, node.inputs[1])]
    if node.op_type == "QuantizeLinear":
        floats += [_dtype_of(graph, node.inputs[0]), division_dtype(node, graph)]
    else:
        floats.append(_out_dtype(ctx))
    return all(f == "float32" for f in floats)


def _quantize_check(node, graph):
    try:
        target = _quant_target(node, graph)
    except (TypeError, ValueError, KeyError):
        target = "unknown"
    if target not in QUANT_RANGES:
        return f"{errors.UNSUPPORTED_DTYPE}: quantizing to {target} (TFLite computes only " + (
            "uint8/int8/uint16/int16)"
        )
    return _precision_problem(node) or scale_layout_problem(node, graph, 0, (1, 2))


@lowering(
    "QuantizeLinear",
    keep_rank((0,)),
    since=10,
    dtypes=FLOAT_PARAMS,
    dtype_inputs=(0, 1),
    tflite_ops=("DIV", "MUL", "ROUND", "ADD", "MAXIMUM", "MINIMUM", "CAST", "GATHER", "RESHAPE"),
    notes="uint8/int8/uint16/int16 targets; per-tensor, per-axis or blocked; float32 or "
    "float16 x and scale (float16: divided in float32, or from opset 23 in the precision "
    "attribute's type, default the scale's, as onnxruntime does); exact: x / scale rounded half to even, + zero point, saturated (after a Conv on "
    "a Q/DQ lattice: its integer sums times QLinearConv's multiplier; of a value already on "
    "the lattice, moved by Reshape/Transpose/MaxPool...: no clamp, its DequantizeLinear is "
    "that value)",
    extra_check=_quantize_check,
)
def lower_quantize_linear(ctx):
    e = Emitter(ctx)
    if not _all_float32(ctx):
        _quantize_half(ctx)
        return
    zp_value = ctx.const(2) if ctx.has_input(2) else np.zeros((), np.int64)
    known = ctx.const(0) is not None and zp_value is not None and ctx.const(1) is not None
    known = known and QUANTIZE_CONSTANTS
    if known and ctx.node.outputs[0] not in ctx.driver.graph.outputs:
        _quantize_constant(ctx, zp_value)
        return
    scaled = _integer_sums_scaled(ctx)
    if scaled is None:
        scaled = e.op("DIV", ctx.input(0), broadcast_param(ctx, 1, 0), hint="scaled")
    if zp_value is None or ctx.const(1) is None:  # run-time parameters
        zp = broadcast_param(ctx, 2, 0) if ctx.has_input(2) else None
        requantize(ctx, scaled, zp, ctx.output(0), "q")
        return
    # With constant parameters the clamp runs around zero, before the zero point is added
    # (the same integers: every step is exact): a DequantizeLinear reading this Q with the
    # same parameters then needs only ``centred * scale`` (_dequantize_twin), and the ADD and
    # CASTs of the integer tensor nobody else reads are dead ops.
    out = ctx.output(0)
    lo, hi = QUANT_RANGES[dtype_name(out.dtype)]
    zp = _param_array(ctx, zp_value, 0, np.float32)
    key = _params_key(ctx)
    t = e.op("ROUND", scaled, dtype=np.float32, hint="q_round")
    if on_lattice(ctx, key, dtype_name(out.dtype)):
        # x is already on this lattice (lowering/lattice_moves.py): nothing to saturate, and
        # a DequantizeLinear on it gives x back
        centred = t
        ctx.driver.lattice_values[id(out)] = ctx.input(0)
    else:
        t = e.op("MAXIMUM", t, ctx.const_tensor(lo - zp, "qmin_centred"), hint="q_lo")
        centred = e.op("MINIMUM", t, ctx.const_tensor(hi - zp, "qmax_centred"), hint="q_hi")
    t = e.op("ADD", centred, ctx.const_tensor(zp, "zp"), hint="q_zp") if zp.any() else centred
    if tuple(t.shape) != tuple(out.shape):
        t = e.reshape(t, out.shape, "q_shaped")
    e.op("CAST", t, out=out)
    ctx.driver.lattice_twins[id(out)] = (centred, ctx.in_layout(0), key)


def _quantize_half(ctx) -> None:
    """QuantizeLinear with a float16 x, scale or division type: the operands widened to
    float32 (exact), or rounded to float16 first when the division is float16, one DIV, the
    quotient rounded to float16 when the division is (module docstring), then requantize."""
    e = Emitter(ctx)
    half = division_dtype(ctx.node, ctx.driver.graph) == "float16"
    x = ctx.input(0)
    if half:
        x = e.cast(x, np.float16, "x_f16")
    x = e.cast(x, np.float32, "x_f")
    if half and ctx.const(1) is None:
        scale = e.cast(broadcast_param(ctx, 1, 0, np.float16), np.float32, "scale_f")
    elif half:  # constant scale: rounded to float16 at conversion time
        value = _param_array(ctx, np.asarray(ctx.const(1)), 0, np.float16)
        scale = ctx.const_tensor(value.astype(np.float32), "scale_f")
    else:
        scale = broadcast_param(ctx, 1, 0)
    scaled = e.op("DIV", x, scale, hint="scaled")
    if half:
        scaled = e.cast(e.cast(scaled, np.float16, "scaled_f16"), np.float32, "scaled_f")
    zp = broadcast_param(ctx, 2, 0) if ctx.has_input(2) else None
    requantize(ctx, scaled, zp, ctx.output(0), "q")


def _quantize_constant(ctx, zp_value) -> None:
    """A constant x (quantize_static quantizes Constant-node scalars as activations: MiniLM's
    attention scale and Erf constants, 18 of them, 7 run-time ops each) quantized at conversion
    time with the same float32 steps as the run-time form (x / scale correctly rounded,
    rounded half to even, saturated); its DequantizeLinear on the same lattice is a constant
    too (lattice_values), as is the integer twin a lattice Conv/MatMul would read."""
    lay = ctx.in_layout(0)
    out_dtype = ctx.driver.value(ctx.node.outputs[0]).dtype
    lo, hi = QUANT_RANGES[dtype_name(out_dtype)]
    scale = _param_array(ctx, ctx.const(1), 0, np.float32)
    zp = _param_array(ctx, zp_value, 0, np.float32)
    x = lay.apply(np.asarray(ctx.const(0), np.float32))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        centred = np.clip(np.rint(x / scale), lo - zp, hi - zp).astype(np.float32)
    quantized = ctx.const_tensor((centred + zp).astype(out_dtype), "quantized")
    ctx.alias_output(0, quantized, lay)
    twin = ctx.const_tensor(centred, "centred")
    ctx.driver.lattice_twins[id(quantized)] = (twin, lay, _params_key(ctx))
    value = (centred * scale).astype(np.float32)
    ctx.driver.lattice_values[id(quantized)] = ctx.const_tensor(value, "dequantized")


def _integer_sums_scaled(ctx):
    """x / y_scale of a Conv computed on integers (lowering/conv_lattice.py) as onnxruntime's
    QLinearConv computes it: the exact integer sums times one multiplier fl(fl(sx*sw) / sy)
    per output channel (a product then a quotient would round twice, off a tie)."""
    e = Emitter(ctx)
    src = ctx.driver.tensor_of.get(ctx.node.inputs[0])
    sums = ctx.driver.integer_sums.get(id(src)) if src is not None else None
    y_scale = ctx.const(1)
    if sums is None or y_scale is None or np.size(y_scale) != 1:
        return None
    acc, sum_scale, layout = sums
    if layout != ctx.in_layout(0) or tuple(acc.shape) != tuple(src.shape):
        return None
    multiplier = (sum_scale / np.asarray(y_scale, np.float32).reshape(())).astype(np.float32)
    return e.op("MUL", acc, ctx.const_tensor(multiplier, "requant_scale"), hint="scaled")


def _params_key(ctx) -> tuple:
    """What makes two Q/DQ lattices the same: scale and zero point values, axis, block size."""
    scale = np.asarray(ctx.const(1), np.float32)
    zp = ctx.const(2) if ctx.has_input(2) else np.zeros((), np.int64)
    zp = np.asarray(zp).astype(np.int64)
    axis = int(ctx.attr("axis", 1)) if scale.size > 1 or zp.size > 1 else None
    block = int(ctx.attr("block_size", 0) or 0)
    return (scale.tobytes(), scale.shape, zp.tobytes(), zp.shape, axis, block)


# ---- DequantizeLinear --------------------------------------------------------------------


def _dequantize_check(node, graph):
    x_dtype = _dtype_of(graph, node.inputs[0])
    if x_dtype not in DEQUANT_INPUTS:
        return (
            f"{errors.UNSUPPORTED_DTYPE}: dequantizing {x_dtype} (TFLite has no arithmetic for it)"
        )
    if _has(node, 2) and _dtype_of(graph, node.inputs[2]) != x_dtype:
        return f"{errors.UNSUPPORTED_DTYPE}: zero point dtype differs from x ({x_dtype})"
    if _dtype_of(graph, node.inputs[1]) not in FLOAT_PARAMS:
        return f"{errors.UNSUPPORTED_DTYPE}: scale dtype {_dtype_of(graph, node.inputs[1])}"
    out = graph.values.get(node.outputs[0])
    if out is not None and out.dtype is not None and dtype_name(out.dtype) not in FLOAT_PARAMS:
        return f"{errors.UNSUPPORTED_DTYPE}: output dtype {dtype_name(out.dtype)}"
    return _precision_problem(node) or scale_layout_problem(node, graph, 0, (1, 2))


def _dequantize_builtin(ctx) -> bool:
    """Constant x and parameters of a DEQUANTIZE-able type: a quantized constant + DEQUANTIZE."""
    e = Emitter(ctx)
    x, scale = ctx.const(0), ctx.const(1)
    zp = ctx.const(2) if ctx.has_input(2) else np.zeros((), np.int64)
    if x is None or scale is None or zp is None or int(ctx.attr("block_size", 0) or 0) > 0:
        return False
    if _out_dtype(ctx) != "float32":
        return False  # the builtin writes float32
    if dtype_name(x.dtype) not in DEQUANTIZE_BUILTIN or x.ndim == 0:
        return False
    scale = np.asarray(scale, np.float32).reshape(-1)
    zp = np.broadcast_to(np.asarray(zp, np.int64).reshape(-1), scale.shape)
    if dtype_name(x.dtype) == "int16" and np.any(zp != 0):
        return False
    if scale.size > 1 and dtype_name(x.dtype) == "uint8":
        return False  # per-channel uint8 is not a valid TFLite quantization
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        return False
    lay = ctx.in_layout(0)
    axis = lay.stored_axis(int(ctx.attr("axis", 1)) % x.ndim) if scale.size > 1 else 0
    q = ctx.const_tensor(lay.apply(np.asarray(x)), "quantized")
    q.quantization = tfl.Quantization(scale, zp.copy(), axis)
    out = ctx.output(0)
    e.op("DEQUANTIZE", q, out=out)
    # A reader wanting another layout (a Conv's weights) gets the constant stored permuted.
    ctx.driver.dequantized_constants[id(out)] = q
    return True


# Constant DequantizeLinear outputs up to this size (and every int32 one: biases) are computed
# at conversion time instead of by a run-time composition.
FOLDED_DEQUANTIZE_ELEMENTS = 4096


def _dequantize_folded(ctx) -> bool:
    """A constant the DEQUANTIZE builtin cannot hold (an int32 bias, per-axis uint8) and that
    is small (blocked weights excepted: they stay compressed) becomes a float constant, computed exactly as the run-time composition
    would (``q - zp`` exact, one float32 product). Why: a convolution whose bias is computed
    at run time has no static bias, and XNNPACK leaves it to the reference kernels
    (resnet18 QDQ: every Conv's int32 bias)."""
    x, scale = ctx.const(0), ctx.const(1)
    zp = ctx.const(2) if ctx.has_input(2) else None
    if x is None or scale is None or (ctx.has_input(2) and zp is None):
        return False
    x = np.asarray(x)
    if x.ndim == 0 or ctx.node.outputs[0] in ctx.driver.graph.outputs:
        return False
    if dtype_name(x.dtype) != "int32" and x.size > FOLDED_DEQUANTIZE_ELEMENTS:
        return False
    axis = int(ctx.attr("axis", 1)) % x.ndim
    block = int(ctx.attr("block_size", 0) or 0)
    if block > 0 and dtype_name(x.dtype) != "int32":
        return False  # blocked weights stay compressed behind their exact composition

    def along_axis(p, dtype):
        p = np.asarray(p).astype(dtype)
        if block > 0:  # blocked: the parameter has x's rank, one entry per block
            return np.repeat(p, block, axis=axis).take(np.arange(x.shape[axis]), axis=axis)
        if p.size == 1:
            return p.reshape(())
        shape = [1] * x.ndim
        shape[axis] = -1
        return p.reshape(shape)

    if dtype_name(x.dtype) == "int32":
        shifted = x if zp is None else x - along_axis(zp, np.int32)  # wraps as int32
        shifted = shifted.astype(np.float32)
    else:
        shifted = x.astype(np.float32)
        if zp is not None:
            shifted = shifted - along_axis(zp, np.float32)
    value = (shifted * along_axis(scale, np.float32)).astype(np.float32)
    value = value.astype(_out_dtype(ctx))  # float16: the product rounded once
    lay = ctx.outs[0]
    ctx.alias_output(0, ctx.const_tensor(lay.apply(value), "dequantized"), lay)
    return True


def _dequantize_twin(ctx) -> bool:
    """DequantizeLinear(QuantizeLinear(x)) with the same constant parameters: the Q's clamped
    value before its zero point (``q - zp`` exactly) times the scale, one MUL (9 elementwise
    ops per activation pair -> 5: a QDQ model's float32 file spends most of its time there)."""
    e = Emitter(ctx)
    if not _all_float32(ctx):
        return False
    src = ctx.driver.tensor_of.get(ctx.node.inputs[0])
    twin = ctx.driver.lattice_twins.get(id(src)) if src is not None else None
    if twin is None or ctx.const(1) is None or (ctx.has_input(2) and ctx.const(2) is None):
        return False
    centred, layout, key = twin
    if layout != ctx.in_layout(0) or key != _params_key(ctx):
        return False
    value = ctx.driver.lattice_values.get(id(src))
    if value is not None and ctx.node.outputs[0] not in ctx.driver.graph.outputs:
        ctx.alias_output(0, value, layout)  # the Q's input, already on the lattice
        return True
    product = e.op("MUL", centred, broadcast_param(ctx, 1, 0), hint="dequantized")
    out = ctx.output(0)
    e.reshape(product, out.shape, out=out)
    return True


@lowering(
    "DequantizeLinear",
    keep_rank((0,)),
    since=10,
    dtypes=DEQUANT_INPUTS,
    tflite_ops=("DEQUANTIZE", "CAST", "SUB", "MUL", "GATHER", "RESHAPE"),
    notes="uint8/int8/uint16/int16/int32 inputs, float32 or float16 scale and output (float16: "
    "the float32 product rounded once, as onnxruntime); per-tensor, per-axis or "
    "blocked; constant 8/16-bit x with constant parameters -> DEQUANTIZE",
    extra_check=_dequantize_check,
)
def lower_dequantize_linear(ctx):
    e = Emitter(ctx)
    if _dequantize_builtin(ctx) or _dequantize_folded(ctx) or _dequantize_twin(ctx):
        return
    x = ctx.input(0)
    scale = broadcast_param(ctx, 1, 0)
    if dtype_name(x.dtype) == "int32":
        shifted = x
        if ctx.has_input(2):
            shifted = e.op("SUB", x, broadcast_param(ctx, 2, 0, np.int32), hint="shifted")
        shifted = e.cast(shifted, np.float32, "shifted_f")
    else:
        shifted = e.cast(x, np.float32, "x_f")
        if ctx.has_input(2):
            shifted = e.op("SUB", shifted, broadcast_param(ctx, 2, 0), hint="shifted")
    product = e.op("MUL", shifted, scale, hint="dequantized")
    out = ctx.output(0)
    e.reshape(e.cast(product, out.dtype, "dequantized_out"), out.shape, out=out)


# ---- DynamicQuantizeLinear ---------------------------------------------------------------


def _dynamic_policy(node, ins, graph, drv=None):
    """x passes its layout through to y; y_scale and y_zero_point are scalars."""
    lay = ins[0] if ins[0] is not None else L.identity(len(graph.values[node.inputs[0]].shape))
    outs = [lay, L.identity(0), L.identity(0)]
    return [lay], outs[: len(node.outputs)]


_dynamic_policy.hint = PASSTHROUGH


# 2**127, the largest power of two in float32: ``r * 2**127 >= 1`` for every ``r >= 2**-127``.
ZERO_RANGE_GAIN = float(2.0**127)


def nonzero_range(ctx, spread: tfl.Tensor, hint: str = "range") -> tfl.Tensor:
    """``spread``, or 255 where it is 0, so that ``spread / 255`` is onnxruntime's scale
    (``GetQuantizationParameter``: 1.0 when max == min). Arithmetic instead of EQUAL +
    SELECT_V2, which XNNPACK does not take (each cut the graph into another partition):
    ``max(1 - spread * 2**127, 0)`` is 1 for 0 and 0 for every spread >= 2**-127 (a range
    below that, ~5.9e-39, would get a scale between the two)."""
    e = Emitter(ctx)
    zero = e.const(0.0, hint="zero")
    lifted = e.op("MUL", spread, e.const(ZERO_RANGE_GAIN, hint="gain"), hint="lifted")
    empty = e.op("SUB", e.const(1.0, hint="one"), lifted, hint=f"{hint}_empty_raw")
    empty = e.op("MAXIMUM", empty, zero, hint=f"{hint}_empty")
    pad = e.op("MUL", empty, e.const(255.0, hint="q_span"), hint=f"{hint}_pad")
    return e.op("ADD", spread, pad, hint=f"{hint}_nz")


@lowering(
    "DynamicQuantizeLinear",
    _dynamic_policy,
    since=11,
    dtypes=FLOAT,
    tflite_ops=(
        "REDUCE_MAX",
        "REDUCE_MIN",
        "MAXIMUM",
        "MINIMUM",
        "SUB",
        "MUL",
        "DIV",
        "ROUND",
        "ADD",
        "CAST",
    ),
    notes="uint8, computed as onnxruntime does: scale = (max(0, max x) - min(0, min x)) / 255 "
    "(1.0 when the range is 0), zero point round(clamp(-min / scale, 0, 255)), "
    "y = saturate(round_half_even(x / scale) + zp), bit-identical; read by MatMulInteger / "
    "ConvInteger, y and the zero point are carried as float32 (rule float_carried_integers)",
)
def lower_dynamic_quantize_linear(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    axes = list(range(len(x.shape)))
    zero = e.const(0.0, hint="zero")
    hi = e.op("MAXIMUM", e.reduce("REDUCE_MAX", x, axes, False, "max"), zero, hint="hi")
    lo = e.op("MINIMUM", e.reduce("REDUCE_MIN", x, axes, False, "min"), zero, hint="lo")
    spread = nonzero_range(ctx, e.op("SUB", hi, lo, hint="range"))
    scale_out = ctx.output(1) if len(ctx.node.outputs) > 1 and ctx.node.outputs[1] else None
    scale = e.op("DIV", spread, e.const(255.0, hint="q_span"), hint="scale", out=scale_out)
    # zero point = saturate(round(0 - min / scale)); min <= 0 so the clamp is [0, 255].
    initial = e.op("SUB", zero, e.op("DIV", lo, scale, hint="min_scaled"), hint="zp0")
    zp_f = e.op(
        "MINIMUM",
        e.op("MAXIMUM", initial, zero, hint="zp_lo"),
        e.const(255.0, hint="zp_max"),
        hint="zp_hi",
    )
    zp_f = e.op("ROUND", zp_f, shape=(), dtype=np.float32, hint="zp_round")
    if len(ctx.node.outputs) > 2 and ctx.node.outputs[2]:
        e.op("CAST", zp_f, out=ctx.output(2))
    scaled = e.op("DIV", x, scale, hint="scaled")
    requantize(ctx, scaled, zp_f, ctx.output(0), "y")
