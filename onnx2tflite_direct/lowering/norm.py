"""BatchNormalization (inference; folded into a preceding Conv by a rewrite when possible,
otherwise MUL+ADD with per-channel constants) and LRN."""

from __future__ import annotations

import numpy as np

from ..policies import channel_last, same_as_input
from ..registry import AttrRule, attr_in, lowering


def _per_channel(ctx, vec: np.ndarray, hint: str):
    """A [C] vector shaped to broadcast against input 0 in its stored layout."""
    rank = len(ctx.shape(0))
    onnx_shape = (1, vec.size) + (1,) * (rank - 2)
    return ctx.const_tensor(ctx.in_layout(0).apply(vec.reshape(onnx_shape)), hint)


def _bn_check(node, graph):
    if node.opset < 9 and node.attrs.get("spatial", 1) != 1:
        return "unsupported_attribute_value: spatial=0 BatchNormalization"
    if any(graph.used(o) for o in node.outputs[1:]):
        return "unsupported_attribute_value: training outputs (running mean/var) are not supported"
    return None


@lowering(
    "BatchNormalization",
    same_as_input,
    const_inputs=(1, 2, 3, 4),
    attrs=(attr_in("training_mode", (0,), 0),),
    tflite_ops=("MUL", "ADD"),
    notes="folded into a preceding Conv when it is the conv's only consumer",
    extra_check=_bn_check,
    accepts_inner=None,
)
def lower_batchnorm(ctx):
    scale, bias, mean, var = (ctx.const(i).astype(np.float64) for i in range(1, 5))
    eps = float(ctx.attr("epsilon", 1e-5))
    a = scale / np.sqrt(var + eps)
    b = bias - mean * a
    x = ctx.input(0)
    mid = ctx.temp(np.float32, x.shape, "scaled")
    ctx.emit("MUL", [x, _per_channel(ctx, a.astype(np.float32), "bn_mul")], [mid], fused_activation_function="NONE")
    ctx.emit("ADD", [mid, _per_channel(ctx, b.astype(np.float32), "bn_add")], [ctx.output(0)], fused_activation_function="NONE")


@lowering(
    "LRN",
    channel_last(),
    ranks=(4,),
    attrs=(AttrRule("size", lambda v: v is not None and int(v) % 2 == 1, "size odd"),),
    tflite_ops=("LOCAL_RESPONSE_NORMALIZATION",),
)
def lower_lrn(ctx):
    size = int(ctx.attr("size"))
    ctx.emit(
        "LOCAL_RESPONSE_NORMALIZATION",
        [ctx.input(0)],
        [ctx.output(0)],
        radius=(size - 1) // 2,
        bias=float(ctx.attr("bias", 1.0)),
        alpha=float(ctx.attr("alpha", 1e-4)) / size,
        beta=float(ctx.attr("beta", 0.75)),
    )
