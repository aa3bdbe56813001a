"""Loss ops no other family covers: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

The target-class pick is a SELECT of the class-last input under ``target == class`` followed
by a SUM over classes: exactly one term survives, so the pick is exact even when other
log-probabilities are -inf (a one-hot multiply would turn those into NaN).
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import onnx_order
from ..registry import FLOAT, attr_in, lowering
from . import compose as C

REDUCTIONS = attr_in("reduction", ("none", "sum", "mean"), "mean")


def _loss_check(node, graph):
    target = graph.values[node.inputs[1]]
    if np.dtype(target.dtype).name not in ("int32", "int64"):
        return f"{errors.UNSUPPORTED_DTYPE}: target dtype {np.dtype(target.dtype).name}"
    if graph.values[node.inputs[0]].rank < 2:
        return f"{errors.UNSUPPORTED_RANK}: input needs a class axis"
    return None


def _class_last(ctx, x):
    """[N, C, d1..dk] -> [N, d1*..*dk, C]: spatial axes flattened so every op stays rank <= 3."""
    n, classes = x.shape[:2]
    if len(x.shape) == 2:
        return x
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    flat = C.reshape(ctx, x, (n, classes, spatial), "flat")
    return C.transpose(ctx, flat, [0, 2, 1], "class_last")


def _nll(ctx, logp_last, out):
    """Loss from class-last log-probabilities ``[N, d..., C]`` into ``out``."""
    classes = logp_last.shape[-1]
    target = C.reshape(ctx, ctx.input(1), logp_last.shape[:-1], "target_flat")
    t = C.reshape(ctx, target, (*target.shape, 1), "target_col")
    hit = C.binary(
        ctx,
        "EQUAL",
        t,
        C.const(ctx, np.arange(classes), target.dtype, "classes"),
        "hit",
        dtype=np.bool_,
    )
    zero = C.const(ctx, 0.0, hint="zero")
    picked = C.reduce(
        ctx, "SUM", C.select(ctx, hit, logp_last, zero, "picked_all"), [-1], False, "picked"
    )
    ignore = ctx.attr("ignore_index", None)
    weight = None
    if ctx.has_input(2):
        w = C.select(ctx, hit, C.reshape(ctx, ctx.input(2), (classes,), "w"), zero, "w_all")
        weight = C.reduce(ctx, "SUM", w, [-1], False, "w_t")
    if ignore is not None:
        keep = C.binary(
            ctx,
            "NOT_EQUAL",
            target,
            C.const(ctx, ignore, target.dtype, "ignore"),
            "keep",
            dtype=np.bool_,
        )
        keep_f = C.select(ctx, keep, C.const(ctx, 1.0, hint="one"), zero, "keep_f")
        weight = keep_f if weight is None else C.binary(ctx, "MUL", weight, keep_f, "w_kept")
    neg = C.const(ctx, -1.0, hint="minus_one")
    per_item = C.binary(
        ctx,
        "MUL",
        picked,
        neg if weight is None else C.binary(ctx, "MUL", weight, neg, "neg_w"),
        "loss_items",
    )
    if weight is not None and ignore is not None:
        # -(x * 0) is -0.0 where the reference has +0.0; SELECT restores the sign.
        per_item = C.select(ctx, keep, per_item, zero, "loss_kept")
    reduction = ctx.attr("reduction", "mean")
    if reduction == "none":
        C.reshape(ctx, per_item, out.shape, out=out)
        return
    axes = list(range(len(per_item.shape)))
    if reduction == "sum":
        C.reduce(ctx, "SUM", per_item, axes, False, out=out)
        return
    total = C.reduce(ctx, "SUM", per_item, axes, False, "loss_sum")
    if weight is None:
        count = int(np.prod(per_item.shape, dtype=np.int64))
        C.binary(ctx, "DIV", total, C.const(ctx, float(count), hint="count"), out=out)
        return
    denom = C.reduce(ctx, "SUM", weight, axes, False, "weight_sum")
    C.binary(ctx, "DIV", total, denom, out=out)


@lowering(
    "NegativeLogLikelihoodLoss",
    onnx_order,
    since=12,
    dtypes=FLOAT,
    dtype_inputs=(0,),
    attrs=(REDUCTIONS,),
    tflite_ops=("EQUAL", "SELECT_V2", "SUM", "MUL", "DIV", "TRANSPOSE"),
    notes="runtime target and weight; ignore_index",
    extra_check=_loss_check,
)
def lower_nll(ctx):
    if ctx.has_input(2) and np.dtype(ctx.value(2).dtype).name != "float32":
        ctx.refuse(errors.UNSUPPORTED_DTYPE, "weight must be float32")
    _nll(ctx, _class_last(ctx, ctx.input(0)), ctx.output(0))


@lowering(
    "SoftmaxCrossEntropyLoss",
    onnx_order,
    since=12,
    dtypes=FLOAT,
    dtype_inputs=(0,),
    attrs=(REDUCTIONS,),
    tflite_ops=("LOG_SOFTMAX", "EQUAL", "SELECT_V2", "SUM", "MUL", "DIV", "TRANSPOSE"),
    notes="LOG_SOFTMAX over the class axis, then the NegativeLogLikelihoodLoss composition",
    extra_check=_loss_check,
)
def lower_sce(ctx):
    if ctx.has_input(2) and np.dtype(ctx.value(2).dtype).name != "float32":
        ctx.refuse(errors.UNSUPPORTED_DTYPE, "weights must be float32")
    scores = _class_last(ctx, ctx.input(0))
    logp = C.op(ctx, "LOG_SOFTMAX", [scores], scores.shape, hint="log_prob")
    _nll(ctx, logp, ctx.output(0))
    if len(ctx.node.outputs) > 1 and ctx.node.outputs[1]:
        back = logp if len(logp.shape) == 2 else C.transpose(ctx, logp, [0, 2, 1], "log_prob_nc")
        C.reshape(ctx, back, ctx.out_shape(1), out=ctx.output(1))
