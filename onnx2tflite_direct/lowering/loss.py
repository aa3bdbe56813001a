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
from .emit import Emitter

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
    e = Emitter(ctx)
    n, classes = x.shape[:2]
    if len(x.shape) == 2:
        return x
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    flat = e.reshape(x, (n, classes, spatial), "flat")
    return e.transpose(flat, [0, 2, 1], "class_last")


def _nll(ctx, logp_last, out):
    """Loss from class-last log-probabilities ``[N, d..., C]`` into ``out``."""
    e = Emitter(ctx)
    classes = logp_last.shape[-1]
    target = e.reshape(ctx.input(1), logp_last.shape[:-1], "target_flat")
    t = e.reshape(target, (*target.shape, 1), "target_col")
    hit = e.op(
        "EQUAL", t, e.const(np.arange(classes), target.dtype, "classes"), hint="hit", dtype=np.bool_
    )
    zero = e.const(0.0, hint="zero")
    picked = e.reduce(
        "SUM", e.op("SELECT_V2", hit, logp_last, zero, hint="picked_all"), [-1], False, "picked"
    )
    ignore = ctx.attr("ignore_index", None)
    weight = None
    if ctx.has_input(2):
        w = e.op("SELECT_V2", hit, e.reshape(ctx.input(2), (classes,), "w"), zero, hint="w_all")
        weight = e.reduce("SUM", w, [-1], False, "w_t")
    if ignore is not None:
        keep = e.op(
            "NOT_EQUAL",
            target,
            e.const(ignore, target.dtype, "ignore"),
            hint="keep",
            dtype=np.bool_,
        )
        keep_f = e.op("SELECT_V2", keep, e.const(1.0, hint="one"), zero, hint="keep_f")
        weight = keep_f if weight is None else e.op("MUL", weight, keep_f, hint="w_kept")
    neg = e.const(-1.0, hint="minus_one")
    per_item = e.op(
        "MUL",
        picked,
        neg if weight is None else e.op("MUL", weight, neg, hint="neg_w"),
        hint="loss_items",
    )
    if weight is not None and ignore is not None:
        # -(x * 0) is -0.0 where the reference has +0.0; SELECT restores the sign.
        per_item = e.op("SELECT_V2", keep, per_item, zero, hint="loss_kept")
    reduction = ctx.attr("reduction", "mean")
    if reduction == "none":
        e.reshape(per_item, out.shape, out=out)
        return
    axes = list(range(len(per_item.shape)))
    if reduction == "sum":
        e.reduce("SUM", per_item, axes, False, out=out)
        return
    total = e.reduce("SUM", per_item, axes, False, "loss_sum")
    if weight is None:
        count = int(np.prod(per_item.shape, dtype=np.int64))
        e.op("DIV", total, e.const(float(count), hint="count"), out=out, hint="t")
        return
    denom = e.reduce("SUM", weight, axes, False, "weight_sum")
    e.op("DIV", total, denom, out=out, hint="t")


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
    e = Emitter(ctx)
    if ctx.has_input(2) and np.dtype(ctx.value(2).dtype).name != "float32":
        ctx.refuse(errors.UNSUPPORTED_DTYPE, "weights must be float32")
    scores = _class_last(ctx, ctx.input(0))
    logp = e.op("LOG_SOFTMAX", scores, hint="log_prob")
    _nll(ctx, logp, ctx.output(0))
    if len(ctx.node.outputs) > 1 and ctx.node.outputs[1]:
        back = logp if len(logp.shape) == 2 else e.transpose(logp, [0, 2, 1], "log_prob_nc")
        e.reshape(back, ctx.out_shape(1), out=ctx.output(1))
