"""Statistics normalizations composed from MEAN/SUM, arithmetic and RSQRT.

TFLite has no builtin for LayerNormalization, RMSNormalization, InstanceNormalization,
GroupNormalization, MeanVarianceNormalization or LpNormalization, so each is the textbook
formula over the stored axes that correspond to the ONNX axes (inputs may arrive
channel-last; every axis goes through ``ctx.in_layout``). Scale/bias may be runtime tensors.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import channel_last, keep_rank
from ..registry import FLOAT, attr_in, lowering
from .emit import Emitter

FLT_MIN = float(np.finfo(np.float32).tiny)


def _stored_axes(ctx, onnx_axes) -> list[int]:
    rank = len(ctx.shape(0))
    lay = ctx.in_layout(0)
    return sorted(lay.stored_axis(int(a) % rank) for a in onnx_axes)


def normalize(ctx, x, axes, eps: float, center=True, mean_out=None, inv_out=None, out=None):
    """(x - mean) * rsqrt(var + eps) over stored ``axes``; without ``center`` the RMS form."""
    e = Emitter(ctx)
    if center:
        mean = e.reduce("MEAN", x, axes, True, "mean", out=mean_out)
        x = e.op("SUB", x, mean, hint="centered")
    square = e.op("MUL", x, x, hint="square")
    var = e.reduce("MEAN", square, axes, True, "variance")
    var_eps = e.op("ADD", var, e.const(eps, hint="epsilon"), hint="var_eps")
    inv = e.op("RSQRT", var_eps, hint="inv_std", out=inv_out)
    return e.op("MUL", x, inv, hint="normalized", out=out)


def _affine(ctx, y, scale, bias):
    """y * scale (+ bias), the last op writing output 0."""
    e = Emitter(ctx)
    out = ctx.output(0)
    if bias is None:
        return e.op("MUL", y, scale, out=out, hint="t")
    scaled = e.op("MUL", y, scale, hint="scaled")
    return e.op("ADD", scaled, bias, out=out, hint="t")


def _trailing_input(ctx, i):
    """Scale/bias of the trailing axes, broadcast into input 0's stored layout."""
    return ctx.input(i, ctx.in_layout(0)) if ctx.has_input(i) else None


def _used(ctx, i) -> bool:
    return i < len(ctx.node.outputs) and bool(ctx.node.outputs[i])


@lowering(
    "LayerNormalization",
    keep_rank(),
    since=17,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2),
    attrs=(attr_in("stash_type", (1,), 1),),
    tflite_ops=("MEAN", "SUB", "MUL", "ADD", "RSQRT"),
    notes="Mean/InvStdDev outputs supported",
)
def lower_layer_norm(ctx):
    rank = len(ctx.shape(0))
    axis = int(ctx.attr("axis", -1)) % rank
    axes = _stored_axes(ctx, range(axis, rank))
    mean_out = ctx.output(1) if _used(ctx, 1) else None
    inv_out = ctx.output(2) if _used(ctx, 2) else None
    y = normalize(
        ctx, ctx.input(0), axes, float(ctx.attr("epsilon", 1e-5)), True, mean_out, inv_out
    )
    _affine(ctx, y, _trailing_input(ctx, 1), _trailing_input(ctx, 2))


@lowering(
    "RMSNormalization",
    keep_rank(),
    since=23,
    dtypes=FLOAT,
    dtype_inputs=(0, 1),
    attrs=(attr_in("stash_type", (1,), 1),),
    tflite_ops=("MUL", "MEAN", "ADD", "RSQRT"),
)
def lower_rms_norm(ctx):
    rank = len(ctx.shape(0))
    axis = int(ctx.attr("axis", -1)) % rank
    axes = _stored_axes(ctx, range(axis, rank))
    y = normalize(ctx, ctx.input(0), axes, float(ctx.attr("epsilon", 1e-5)), center=False)
    _affine(ctx, y, _trailing_input(ctx, 1), None)


@lowering(
    "MeanVarianceNormalization",
    keep_rank(),
    since=9,
    dtypes=FLOAT,
    tflite_ops=("MEAN", "SUB", "MUL", "ADD", "RSQRT"),
    notes="epsilon 1e-9 as in the ONNX function body",
)
def lower_mvn(ctx):
    axes = _stored_axes(ctx, ctx.attr("axes", [0, 2, 3]))
    normalize(ctx, ctx.input(0), axes, 1e-9, out=ctx.output(0))


@lowering(
    "InstanceNormalization",
    channel_last(),
    since=6,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2),
    ranks=(3, 4, 5),
    tflite_ops=("MEAN", "SUB", "MUL", "ADD", "RSQRT"),
)
def lower_instance_norm(ctx):
    rank = len(ctx.shape(0))
    axes = list(range(1, rank - 1))  # channel-last: spatial axes sit between N and C
    y = normalize(ctx, ctx.input(0), axes, float(ctx.attr("epsilon", 1e-5)))
    _affine(ctx, y, ctx.input(1), ctx.input(2))  # [C] broadcasts over the last (C) axis


def _group_check(node, graph):
    c = graph.values[node.inputs[0]].shape[1]
    g = int(node.attrs.get("num_groups", 0))
    if g <= 0 or c % g:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: num_groups={g} does not divide C={c}"
    return None


@lowering(
    "GroupNormalization",
    channel_last(),
    since=18,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2),
    ranks=(3, 4, 5),
    attrs=(attr_in("stash_type", (1,), 1),),
    tflite_ops=("RESHAPE", "MEAN", "SUB", "MUL", "ADD", "RSQRT"),
    notes="opset 18 per-group and opset 21 per-channel scale/bias",
    extra_check=_group_check,
)
def lower_group_norm(ctx):
    e = Emitter(ctx)
    shape = ctx.shape(0)
    n, c = shape[0], shape[1]
    g = int(ctx.attr("num_groups"))
    spatial = int(np.prod(shape[2:]))
    x = ctx.reshape(ctx.input(0), (n, spatial, g, c // g), "grouped")
    y = normalize(ctx, x, [1, 3], float(ctx.attr("epsilon", 1e-5)))
    per_group = ctx.node.opset < 21
    affine_shape = (g, 1) if per_group else (g, c // g)
    scale = ctx.reshape(ctx.input(1), affine_shape, "scale")
    bias = ctx.reshape(ctx.input(2), affine_shape, "bias")
    scaled = e.op("MUL", y, scale, hint="scaled")
    shifted = e.op("ADD", scaled, bias, hint="shifted")
    e.reshape(shifted, out=ctx.output(0))


@lowering(
    "LpNormalization",
    keep_rank(),
    dtypes=FLOAT,
    attrs=(attr_in("p", (1, 2), 2),),
    tflite_ops=("MUL", "ABS", "SUM", "SQRT", "MAXIMUM", "DIV"),
    notes="x / max(norm, FLT_MIN): zero vectors give 0 like the ONNX reference",
)
def lower_lp_norm(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    axes = _stored_axes(ctx, [ctx.attr("axis", -1)])
    if int(ctx.attr("p", 2)) == 2:
        sumsq = e.reduce("SUM", e.op("MUL", x, x, hint="square"), axes, True, "sumsq")
        norm = e.op("SQRT", sumsq, hint="norm")
    else:
        norm = e.reduce("SUM", e.op("ABS", x, hint="abs"), axes, True, "norm")
    safe = e.op("MAXIMUM", norm, e.const(FLT_MIN, hint="flt_min"), hint="safe_norm")
    e.op("DIV", x, safe, out=ctx.output(0))
