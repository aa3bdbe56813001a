"""Recent (opset 24+) fused ops rebuilt from builtins: SwiGLU, CausalConvWithState, TensorScatter.

These ops fuse short chains that TFLite expresses directly: SwiGLU is Swish(A) * B;
CausalConvWithState is a depthwise causal convolution over (batch, channels, length), done as a
sum of k shifted slices times the per-channel weight column (no transposes, runtime weights
work); TensorScatter writes the update into the cache where a per-batch position mask says so
(GATHER of the update at the relative position, then SELECT_V2 against the past cache), which
is exact for every dtype. Half-precision inputs are computed in float32 and rounded back.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import broadcasting, onnx_order
from ..registry import attr_in, lowering
from . import compose as C
from .elementwise import FLOATS, Emit

# CausalConvWithState unrolls one MUL+ADD per kernel tap.
MAX_KERNEL_TAPS = 64


def _swish(e: Emit, x, alpha: float):
    scaled = x if alpha == 1.0 else e.op("MUL", x, e.const(alpha))
    return e.op("MUL", x, e.op("LOGISTIC", scaled))


@lowering(
    "SwiGLU",
    broadcasting(),
    since=28,
    dtypes=FLOATS,
    dtype_inputs=(0, 1),
    tflite_ops=("LOGISTIC", "MUL", "CAST"),
    notes="Swish_alpha(A) * B; float16/bfloat16 computed in float32",
)
def lower_swiglu(ctx):
    e = Emit(ctx, np.float32)
    gate = _swish(e, e.input(0), float(ctx.attr("alpha", 1.0)))
    e.result(e.op("MUL", gate, e.input(1)))


# ---- CausalConvWithState ----------------------------------------------------------------------


def _causal_conv_check(node, graph):
    weight = graph.values[node.inputs[1]].shape
    if len(weight) != 3 or weight[1] != 1:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: weight shape {weight} is not (C, 1, k)"
    if weight[2] > MAX_KERNEL_TAPS:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: kernel size {weight[2]} > {MAX_KERNEL_TAPS}"
    if weight[2] == 1 and len(node.outputs) > 1 and graph.used(node.outputs[1]):
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: kernel size 1 makes present_state empty; "
            "LiteRT cannot hold zero-element tensors"
        )
    return None


def _slice_length(ctx, x, begin: int, size: int, hint: str, out=None):
    """x[:, :, begin:begin+size] of a (B, C, L) tensor."""
    b, c, _ = x.shape
    begins = C.const(ctx, [0, 0, begin], np.int32, "begin")
    sizes = C.const(ctx, [b, c, size], np.int32, "size")
    return C.op(ctx, "SLICE", [x, begins, sizes], (b, c, size), x.dtype, hint, out)


@lowering(
    "CausalConvWithState",
    onnx_order,
    since=27,
    dtypes=FLOATS,
    dtype_inputs=(0, 1, 2, 3),
    ranks=(3,),
    attrs=(attr_in("activation", ("none", "silu", "swish"), "none"),),
    tflite_ops=("CONCATENATION", "SLICE", "MUL", "ADD", "LOGISTIC", "CAST"),
    notes=f"kernel size <= {MAX_KERNEL_TAPS} (unrolled taps); runtime weights, bias and state",
    extra_check=_causal_conv_check,
)
def lower_causal_conv_with_state(ctx):
    e = Emit(ctx, np.float32)
    x = e.input(0)
    batch, channels, length = ctx.shape(0)
    taps = ctx.shape(1)[2]
    weight = C.reshape(ctx, e.input(1), (channels, taps), "weight2d")
    if ctx.has_input(3):
        past = e.input(3)
    else:
        past = e.const(np.zeros((batch, channels, taps - 1), np.float32))
    padded = C.concat(ctx, [past, x], axis=2, hint="padded") if taps > 1 else x
    acc = None
    for j in range(taps):
        column = C.op(
            ctx,
            "SLICE",
            [
                weight,
                C.const(ctx, [0, j], np.int32, "wb"),
                C.const(ctx, [channels, 1], np.int32, "ws"),
            ],
            (channels, 1),
            np.float32,
            "tap",
        )
        term = e.op("MUL", _slice_length(ctx, padded, j, length, "shifted"), column)
        acc = term if acc is None else e.op("ADD", acc, term)
    if ctx.has_input(2):
        acc = e.op("ADD", acc, C.reshape(ctx, e.input(2), (channels, 1), "bias"))
    if ctx.attr("activation", "none") != "none":
        acc = _swish(e, acc, 1.0)
    e.result(acc, 0)
    if len(ctx.node.outputs) > 1 and ctx.driver.graph.used(ctx.node.outputs[1]):
        out = ctx.output(1)
        if np.dtype(out.dtype) == np.float32:
            _slice_length(ctx, padded, length, taps - 1, "state", out=out)
        else:
            e.result(_slice_length(ctx, padded, length, taps - 1, "state"), 1)


# ---- TensorScatter ----------------------------------------------------------------------------

SCATTER_DTYPES = ("float32", "float16", "int8", "uint8", "int16", "int32", "int64", "bool")


def _scatter_positions(ctx, max_len: int, seq_len: int, circular: bool):
    """(relative index into the update, written?) per (batch, cache position), int32 / bool.

    Constant write indices give numpy constants; runtime ones are computed by the graph.
    """
    positions = np.arange(max_len, dtype=np.int64)[None, :]
    batch = ctx.shape(0)[0]
    written = ctx.const(2) if ctx.has_input(2) else np.zeros(batch, np.int64)
    if written is not None:
        rel = positions - np.asarray(written, np.int64).reshape(-1, 1)
        if circular:
            rel = np.mod(rel, max_len)
        valid = (rel >= 0) & (rel < seq_len)
        index = np.clip(rel, 0, seq_len - 1).astype(np.int32)
        return C.const(ctx, index, np.int32, "index"), C.const(ctx, valid, np.bool_, "valid")
    start = C.reshape(ctx, C.cast(ctx, ctx.input(2), np.int32, "start"), (batch, 1), "start2d")
    rel = C.binary(ctx, "SUB", C.const(ctx, positions, np.int32, "pos"), start, "rel")
    if circular:
        rel = C.binary(ctx, "FLOOR_MOD", rel, C.const(ctx, max_len, np.int32, "m"), "wrapped")
    lo = C.binary(ctx, "GREATER_EQUAL", rel, C.const(ctx, 0, np.int32, "zero"), dtype=np.bool_)
    hi = C.binary(ctx, "LESS", rel, C.const(ctx, seq_len, np.int32, "s"), dtype=np.bool_)
    valid = C.binary(ctx, "LOGICAL_AND", lo, hi, "valid")
    clipped = C.binary(ctx, "MAXIMUM", rel, C.const(ctx, 0, np.int32, "zero"), "clip_lo")
    index = C.binary(ctx, "MINIMUM", clipped, C.const(ctx, seq_len - 1, np.int32, "last"), "index")
    return index, valid


def _scatter_check(node, graph):
    rank = len(graph.values[node.inputs[0]].shape)
    axis = node.attrs.get("axis", -2)
    if axis % rank == 0 or not -rank <= axis < rank:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: axis {axis} (must not be the batch axis)"
    return None


@lowering(
    "TensorScatter",
    onnx_order,
    since=24,
    dtypes=SCATTER_DTYPES,
    dtype_inputs=(0, 1),
    attrs=(attr_in("mode", ("linear", "circular"), "linear"),),
    tflite_ops=("GATHER", "SELECT_V2", "SUB", "FLOOR_MOD", "LESS", "GREATER_EQUAL"),
    notes="runtime or constant write_indices; linear writes past the cache end are dropped",
    extra_check=_scatter_check,
)
def lower_tensor_scatter(ctx):
    past_shape, update_shape = ctx.shape(0), ctx.shape(1)
    rank = len(past_shape)
    axis = ctx.attr("axis", -2) % rank
    max_len, seq_len = past_shape[axis], update_shape[axis]
    if seq_len == 0:
        ctx.alias_output(0, ctx.input(0), ctx.out_layout(0))
        return
    circular = ctx.attr("mode", "linear") == "circular"
    index, valid = _scatter_positions(ctx, max_len, seq_len, circular)
    update = ctx.input(1)
    gathered_shape = list(update_shape)
    gathered_shape[axis] = max_len
    gathered = C.op(
        ctx,
        "GATHER",
        [update, index],
        gathered_shape,
        update.dtype,
        "gathered",
        axis=axis,
        batch_dims=1,
    )
    mask_shape = [past_shape[0]] + [1] * (rank - 1)
    mask_shape[axis] = max_len
    mask = C.reshape(ctx, valid, mask_shape, "mask")
    C.select(ctx, mask, gathered, ctx.input(0), out=ctx.output(0))
