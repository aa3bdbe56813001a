"""LpPool / GlobalLpPool: ``(sum |x|^p over the window) ^ (1/p)``.

TFLite has no Lp pool. The window sum reuses the exact separable slice composition of
pool3d.py (any spatial rank, pads, auto_pad, ceil_mode, dilations); the global form is one SUM
over the stored spatial axes. p = 1 and p = 2 avoid POW (ABS; MUL and SQRT).
"""

from __future__ import annotations

from ..policies import channel_last
from ..registry import AttrRule, lowering
from .emit import Emitter
from .pool3d import finish, pooled_sum_or_max

P_RULE = AttrRule("p", lambda v: v is None or float(v) > 0, "p > 0", 2)


def _abs_pow(ctx, x, p: float):
    e = Emitter(ctx)
    if p == 2:
        return e.op("MUL", x, x, hint="squared")
    mag = e.op("ABS", x, hint="abs")
    if p == 1:
        return mag
    return e.op("POW", mag, e.const(p), hint="powered")


def _root(ctx, summed, p: float, out):
    e = Emitter(ctx)
    if p == 1:
        finish(ctx, summed, out)
    elif p == 2:
        e.op("SQRT", summed, dtype=summed.dtype, hint="t", out=out)
    else:
        e.op("POW", summed, e.const(1.0 / p), out=out, hint="t")


def _p(ctx) -> float:
    return float(ctx.attr("p", 2))


@lowering(
    "LpPool",
    channel_last(),
    since=2,
    ranks=(3, 4, 5),
    attrs=(P_RULE,),
    tflite_ops=("ABS", "MUL", "POW", "PAD", "STRIDED_SLICE", "ADD", "SQRT"),
    notes="exact composition: one STRIDED_SLICE per kernel tap and axis, then a root",
)
def lower_lppool(ctx):
    p = _p(ctx)
    summed = pooled_sum_or_max(ctx, _abs_pow(ctx, ctx.input(0), p), "sum")
    _root(ctx, summed, p, ctx.output(0))


@lowering(
    "GlobalLpPool",
    channel_last(),
    since=2,
    ranks=(3, 4, 5),
    attrs=(P_RULE,),
    tflite_ops=("ABS", "MUL", "POW", "SUM", "SQRT"),
)
def lower_global_lppool(ctx):
    e = Emitter(ctx)
    p = _p(ctx)
    rank = len(ctx.shape(0))
    lay = ctx.in_layout(0)
    axes = [lay.stored_axis(a) for a in range(2, rank)]
    powered = _abs_pow(ctx, ctx.input(0), p)
    summed = e.reduce("SUM", powered, axes, keep_dims=True, hint="summed")
    _root(ctx, summed, p, ctx.output(0))
