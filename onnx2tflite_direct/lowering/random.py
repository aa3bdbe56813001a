"""RandomNormal/RandomUniform(+Like) and Bernoulli via TFLite's random builtins.

The generators differ from onnxruntime's, so outputs match in distribution, not in value:
tests compare statistics. A ``seed`` attribute asks for one reproducible sequence, the one the
reference produces; LiteRT cannot reproduce it, so seeded nodes are refused
(unsupported_attribute_value) rather than converted to different numbers. Unseeded nodes use
seeds 0/0, which LiteRT treats as "fresh".
"""

from __future__ import annotations

import numpy as np

from ..policies import onnx_order
from ..registry import lowering
from .emit import Emitter

ANY = ("float32", "float16", "float64", "int32", "int64", "int8", "uint8", "bool", "int16")


def _seed_options(ctx) -> dict:
    return {"seed": 0, "seed2": 0}


def _dtype_check(node, graph):
    if node.attrs.get("seed") is not None:
        return (
            "unsupported_attribute_value: seed: a seeded random op promises the reference "
            "generator's sequence, which LiteRT's generator cannot reproduce; drop the seed to "
            "get the same distribution"
        )
    out = graph.values[node.outputs[0]]
    if np.dtype(out.dtype).name != "float32":
        return f"unsupported_dtype: output dtype {np.dtype(out.dtype).name} (float32 only)"
    return None


def _affine(ctx, x, scale: float, shift: float):
    """x * scale + shift, skipping identities; writes the op output."""
    e = Emitter(ctx)
    out = ctx.output(0)
    if scale != 1.0:
        last = shift == 0.0
        x = e.op("MUL", x, e.const(scale, hint="scale"), hint="scaled", out=out if last else None)
        if last:
            return
    if shift != 0.0:
        e.op("ADD", x, e.const(shift, hint="shift"), out=out, hint="t")
        return
    e.reshape(x, out.shape, out=out)


def _random(ctx, opcode: str):
    e = Emitter(ctx)
    shape = ctx.out_shape(0)
    sample = e.op(
        opcode,
        e.const(shape, np.int32, "shape"),
        shape=shape,
        dtype=np.float32,
        hint="sample",
        **_seed_options(ctx),
    )
    if opcode == "RANDOM_STANDARD_NORMAL":
        _affine(ctx, sample, float(ctx.attr("scale", 1.0)), float(ctx.attr("mean", 0.0)))
    else:
        low, high = float(ctx.attr("low", 0.0)), float(ctx.attr("high", 1.0))
        _affine(ctx, sample, high - low, low)


for _op, _code, _n_in in (
    ("RandomNormal", "RANDOM_STANDARD_NORMAL", 0),
    ("RandomUniform", "RANDOM_UNIFORM", 0),
    ("RandomNormalLike", "RANDOM_STANDARD_NORMAL", 1),
    ("RandomUniformLike", "RANDOM_UNIFORM", 1),
):
    lowering(
        _op,
        onnx_order,
        dtypes=ANY,
        dtype_inputs=tuple(range(_n_in)),
        tflite_ops=(_code, "MUL", "ADD"),
        notes="float32 output; values differ from onnxruntime (same distribution)",
        extra_check=_dtype_check,
    )(lambda ctx, _c=_code: _random(ctx, _c))


@lowering(
    "Bernoulli",
    onnx_order,
    since=15,
    dtypes=("float32",),
    tflite_ops=("RANDOM_UNIFORM", "LESS", "CAST"),
    notes="y = uniform < p; float32 input and output",
    extra_check=_dtype_check,
)
def lower_bernoulli(ctx):
    e = Emitter(ctx)
    p = ctx.input(0)
    shape = ctx.shape(0)
    u = e.op(
        "RANDOM_UNIFORM",
        e.const(shape, np.int32, "shape"),
        shape=shape,
        dtype=np.float32,
        hint="u",
        **_seed_options(ctx),
    )
    hit = e.op("LESS", u, p, hint="hit", dtype=np.bool_)
    e.op("CAST", hit, out=ctx.output(0))
