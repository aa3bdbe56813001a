"""CausalConvWithState (opset 27): a depthwise causal convolution with a carried state.

Over (batch, channels, length) it is a sum of k shifted slices times the per-channel weight
column (no transposes, runtime weights work), after the past state is concatenated in front;
the new state is the last k - 1 steps. Half-precision inputs are computed in float32 and
rounded back.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import onnx_order
from ..registry import attr_in, lowering
from .activations import swish
from .elementwise import FLOATS
from .emit import Emitter

# CausalConvWithState unrolls one MUL+ADD per kernel tap.
MAX_KERNEL_TAPS = 64


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
    e = Emitter(ctx)
    b, c, _ = x.shape
    begins = e.const([0, 0, begin], np.int32, "begin")
    sizes = e.const([b, c, size], np.int32, "size")
    return e.op("SLICE", x, begins, sizes, shape=(b, c, size), hint=hint, out=out)


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
    e = Emitter(ctx, np.float32)
    x = e.input(0)
    batch, channels, length = ctx.shape(0)
    taps = ctx.shape(1)[2]
    weight = e.reshape(e.input(1), (channels, taps), "weight2d")
    if ctx.has_input(3):
        past = e.input(3)
    else:
        past = e.const(np.zeros((batch, channels, taps - 1), np.float32))
    padded = e.concat([past, x], axis=2, hint="padded") if taps > 1 else x
    acc = None
    for j in range(taps):
        column = e.op(
            "SLICE",
            weight,
            e.const([0, j], np.int32, "wb"),
            e.const([channels, 1], np.int32, "ws"),
            shape=(channels, 1),
            hint="tap",
        )
        term = e.op("MUL", _slice_length(ctx, padded, j, length, "shifted"), column)
        acc = term if acc is None else e.op("ADD", acc, term)
    if ctx.has_input(2):
        acc = e.op("ADD", acc, e.reshape(e.input(2), (channels, 1), "bias"))
    if ctx.attr("activation", "none") != "none":
        acc = swish(e, acc)
    e.result(acc, 0)
    if len(ctx.node.outputs) > 1 and ctx.driver.graph.used(ctx.node.outputs[1]):
        out = ctx.output(1)
        if np.dtype(out.dtype) == np.float32:
            _slice_length(ctx, padded, length, taps - 1, "state", out=out)
        else:
            e.result(_slice_length(ctx, padded, length, taps - 1, "state"), 1)
