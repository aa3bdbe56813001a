"""LogSoftmax as the ops it is made of, which XNNPACK takes (its delegate has no LOG_SOFTMAX).

Why: a decoder's last op is often ``LogSoftmax`` over the vocabulary. LiteRT's XNNPACK
delegate has no LOG_SOFTMAX kernel (checked by running), so it ran on the reference kernels
after the delegate partition. Its parts do run in XNNPACK: REDUCE_MAX, SUB, EXP, SUM, LOG.

Rule ``log_softmax_decomposed``, opt-in (``onnx_rewrites.OPT_IN`` / ``opt_in``; the default
keeps LOG_SOFTMAX, because of the gaps below): ``d = x - max(x)``, ``y = d - log(sum(exp(d)))``
over the axis, the order of operations of onnxruntime's own kernel (MLAS: the row maximum
subtracted, the sum of exponentials, its logarithm subtracted). The result differs from
onnxruntime's only by the exp/log approximations and the summation order: within onnxruntime's
own distance from the float64 result (tests/test_xnnpack_forms.py measures both).

Infinities: on XNNPACK a -inf logit gives -inf and a +inf logit a NaN row, as onnxruntime.
LiteRT's builtin SUB clamps its result to +-FLT_MAX, so there a -inf logit would come out
-FLT_MAX; the rule therefore only takes an input computed by an op whose builtin kernel already
clamps (FULLY_CONNECTED from Gemm or MatMul by a constant, ADD/SUB/MUL/DIV), which cannot hold
an infinity on those kernels. Known gap (tests/test_review_adversarial_b.py, strict xfail): the
builtin FULLY_CONNECTED / BATCH_MATMUL do not clamp an *overflow* (a logit beyond FLT_MAX comes
out -inf, as in onnxruntime), nor does any kernel stop ``x - max`` overflowing for logits more
than FLT_MAX apart; there, on the builtin kernels only, -inf comes out -FLT_MAX. And a NaN logit
on XNNPACK leaves numbers in the rest of its row, where onnxruntime gives a NaN row. Axes: opset >= 13 (one axis), or the last axis below 13 (where
LogSoftmax flattens from the axis on).
"""

from __future__ import annotations

import numpy as np

from .float_masks import FloatFormBuilder, static_default_node
from .ir import Graph, Node, Value, fresh_value_name, value_const, value_dtype

F32 = np.dtype(np.float32)
CLAMPING = {"Add", "Sub", "Mul", "Div", "Gemm"}  # builtin kernels clamp float results
SPLIT_SUM = 768  # longer sums are split in two (see _sum)
TRIGGERS = {"log_softmax_decomposed": {"LogSoftmax"}}


def _clamped_input(graph: Graph, name: str, producers) -> bool:
    p = producers.get(name)
    if p is None or p.domain != "":
        return False
    if p.op_type == "MatMul":  # a constant right operand: FULLY_CONNECTED
        return value_const(graph, p.inputs[1]) is not None
    return p.op_type in CLAMPING


def _axis(graph: Graph, node: Node) -> int | None:
    x = graph.values.get(node.inputs[0])
    if x is None or not x.is_static or not x.shape:
        return None
    rank = len(x.shape)
    axis = int(node.attrs.get("axis", -1 if node.opset >= 13 else 1)) % rank
    if node.opset < 13 and axis != rank - 1:
        return None
    return axis


def _axes_const(graph: Graph, label: str, axis: int) -> str:
    name = fresh_value_name(graph, f"{label}/axes")
    arr = np.array([axis], np.int64)
    graph.values[name] = Value(name, arr.dtype, arr.shape, arr)
    return name


def _reduce_sum(b: FloatFormBuilder, x: str, axis: int, out_shape, hint: str, keepdims: int) -> str:
    if b.opset >= 13:
        axes = _axes_const(b.graph, b.label, axis)
        return b.op("ReduceSum", [x, axes], out_shape, hint, keepdims=keepdims)
    return b.op("ReduceSum", [x], out_shape, hint, axes=[axis], keepdims=keepdims)


def _sum(b: FloatFormBuilder, e: str, shape, axis: int, axes: str, row) -> str:
    """Sum over ``axis``; a long last axis (n > SPLIT_SUM) as two sums over [n / c, c] with c
    the divisor of n nearest sqrt(n) (no divisor: c = floor(sqrt(n)) and the rest summed apart): LiteRT's builtin SUM adds one element after the other,
    whose error grows with n (3x onnxruntime's at 32k values), two short sums stay as close
    to the float64 result as onnxruntime's vectorized one."""
    n = shape[axis]
    if axis != len(shape) - 1 or n <= SPLIT_SUM:
        return _reduce_sum(b, e, axis, row, "sum", 1)
    divisors = [c for c in range(16, int(np.sqrt(n)) + 1) if n % c == 0]
    if divisors:
        return _split_sum(b, e, shape, divisors[-1], row)
    # no divisor (a prime length): the first c * (n // c) values as two short sums, the
    # remaining (fewer than c) as a third, so no sum runs over more than ~sqrt(n) values
    c = int(np.sqrt(n))
    head_n = c * (n // c)
    head = _slice_last(b, e, shape, 0, head_n, "head")
    tail = _slice_last(b, e, shape, head_n, n, "tail")
    head_sum = _split_sum(b, head, (*shape[:-1], head_n), c, row)
    tail_sum = _reduce_sum(b, tail, axis, row, "tail_sum", 1)
    return b.op("Add", [head_sum, tail_sum], row, "sum")


def _int64_const(b: FloatFormBuilder, hint: str, values) -> str:
    arr = np.array(values, np.int64)
    name = fresh_value_name(b.graph, f"{b.label}/{hint}")
    b.graph.values[name] = Value(name, arr.dtype, arr.shape, arr)
    return name


def _slice_last(b: FloatFormBuilder, e: str, shape, start: int, end: int, hint: str) -> str:
    args = [_int64_const(b, f"{hint}_{k}", [v]) for k, v in (("start", start), ("end", end))]
    axes = _int64_const(b, f"{hint}_axis", [len(shape) - 1])
    return b.op("Slice", [e, *args, axes], (*shape[:-1], end - start), hint)


def _split_sum(b: FloatFormBuilder, e: str, shape, c: int, row) -> str:
    """Sum over the last axis (length a multiple of c) as sums over [n / c, c]."""
    split = (*shape[:-1], shape[-1] // c, c)
    tname = _int64_const(b, "split_shape", split)
    parts = b.op("Reshape", [e, tname], split, "split")
    partial = _reduce_sum(b, parts, len(split) - 1, split[:-1], "partial_sum", 0)
    return _reduce_sum(b, partial, len(split) - 2, row, "sum", 1)


def log_softmax_decomposed(graph: Graph) -> list[str]:
    producers = graph.producers()
    b = FloatFormBuilder(graph)
    kept: list[Node] = []
    changed = []
    for node in graph.nodes:
        axis = None
        if (
            node.op_type == "LogSoftmax"
            and static_default_node(graph, node)
            and value_dtype(graph, node.inputs[0]) == F32
            and _clamped_input(graph, node.inputs[0], producers)
        ):
            axis = _axis(graph, node)
        if axis is None:
            kept.append(node)
            continue
        b.label = node.label
        x = node.inputs[0]
        shape = b.shape(x)
        row = tuple(1 if i == axis else d for i, d in enumerate(shape))
        axes = _axes_const(graph, node.label, axis)
        if b.opset >= 18:
            peak = b.op("ReduceMax", [x, axes], row, "max", keepdims=1)
        else:
            peak = b.op("ReduceMax", [x], row, "max", axes=[axis], keepdims=1)
        d = b.op("Sub", [x, peak], shape, "shifted")
        e = b.op("Exp", [d], shape, "exp")
        total = _sum(b, e, shape, axis, axes, row)
        log = b.op("Log", [total], row, "log_sum")
        b.op("Sub", [d, log], shape, "log_softmax", out=node.outputs[0])
        kept.extend(b.nodes)
        b.nodes = []
        changed.append(node.label)
    if changed:
        graph.nodes = kept
        graph.invalidate()
    return changed


# Opt-in (onnx_rewrites.OPT_IN / opt_in), not default: a NaN logit (XNNPACK) and an overflowed
# logit (builtin kernels) give other answers than onnxruntime's (the known gaps above), for a
# small gain (one op moved into the delegate partition).
OPT_IN = {"log_softmax_decomposed": log_softmax_decomposed}
