"""BatchNormalization (inference; folded into a preceding Conv by a rewrite when possible,
otherwise MUL+ADD with per-channel constants) and LRN."""

from __future__ import annotations

import numpy as np

from ..policies import channel_last, same_as_input
from ..registry import AttrRule, attr_in, lowering
from .emit import Emitter


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


def _per_channel_tensor(ctx, tensor, hint: str):
    """A runtime [C] tensor reshaped to broadcast against input 0 in its stored layout (an
    inner element order on the channel axis, as a flattened feature map has, is gathered)."""
    e = Emitter(ctx)
    rank = len(ctx.shape(0))
    inner = ctx.in_layout(0).inner
    if inner is not None and rank == 2:
        order = ctx.const_tensor(inner.element_order().astype(np.int32), "inner_order")
        gathered = e.op(
            "GATHER",
            tensor,
            order,
            shape=tensor.shape,
            dtype=tensor.dtype,
            hint=f"{hint}_ordered",
            axis=0,
            batch_dims=0,
        )
        tensor = gathered
    onnx_shape = (1, tensor.shape[0]) + (1,) * (rank - 2)
    return ctx.reshape(tensor, ctx.in_layout(0).stored_shape(onnx_shape), hint)


@lowering(
    "BatchNormalization",
    same_as_input,
    dtype_inputs=(0, 1, 2, 3, 4),
    attrs=(attr_in("training_mode", (0,), 0),),
    tflite_ops=("MUL", "ADD", "SUB", "RSQRT", "RESHAPE"),
    notes="folded into a preceding Conv when it is the conv's only consumer; runtime "
    "statistics are combined at run time",
    extra_check=_bn_check,
    accepts_inner=None,
)
def lower_batchnorm(ctx):
    e = Emitter(ctx)
    eps = float(ctx.attr("epsilon", 1e-5))
    x = ctx.input(0)
    consts = [ctx.const(i) for i in range(1, 5)]
    if all(c is not None for c in consts):
        # The constants as onnxruntime's CPU kernel rounds them, each step in float32:
        # 1/sqrt(var+eps), times scale, bias - mean*that; then x*a + b rounded twice. Bit
        # for bit onnxruntime's outputs (float64 constants differ by an ulp in a third of
        # them, which a DynamicQuantizeLinear downstream turns into whole steps).
        f32 = np.float32
        scale, bias, mean, var = (np.asarray(c, f32) for c in consts)
        a = (f32(1) / np.sqrt(var + f32(eps))).astype(f32) * scale
        mul = _per_channel(ctx, a, "bn_mul")
        add = _per_channel(ctx, (bias - mean * a).astype(f32), "bn_add")
    else:
        scale, bias, mean, var = (ctx.input(i) for i in range(1, 5))
        var_eps = e.op("ADD", var, e.const(eps, hint="epsilon"), hint="var_eps")
        a = e.op("MUL", scale, e.op("RSQRT", var_eps, hint="inv_std"), hint="a")
        b = e.op("SUB", bias, e.op("MUL", mean, a, hint="mean_a"), hint="b")
        mul, add = _per_channel_tensor(ctx, a, "bn_mul"), _per_channel_tensor(ctx, b, "bn_add")
    mid = e.op("MUL", x, mul, hint="scaled")
    e.op("ADD", mid, add, out=ctx.output(0))


@lowering(
    "LRN",
    channel_last(),
    ranks=(4,),
    attrs=(AttrRule("size", lambda v: v is not None and int(v) % 2 == 1, "size odd"),),
    tflite_ops=("LOCAL_RESPONSE_NORMALIZATION",),
)
def lower_lrn(ctx):
    e = Emitter(ctx)
    size = int(ctx.attr("size"))
    e.op(
        "LOCAL_RESPONSE_NORMALIZATION",
        ctx.input(0),
        out=ctx.output(0),
        radius=(size - 1) // 2,
        bias=float(ctx.attr("bias", 1.0)),
        alpha=float(ctx.attr("alpha", 1e-4)) / size,
        beta=float(ctx.attr("beta", 0.75)),
    )
