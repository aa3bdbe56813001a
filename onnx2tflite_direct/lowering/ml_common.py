"""Shared pieces of the ai.onnx.ml lowerings: the post transforms and the 2-D input contract.

onnxruntime's ai.onnx.ml kernels (``core/providers/cpu/ml/ml_common.h``) apply their post
transforms with their own formulas; these helpers reproduce those formulas with builtins:

* LOGISTIC: ``1 / (1 + exp(-x))`` (LOGISTIC).
* SOFTMAX: max-subtracted softmax over the last axis (SOFTMAX).
* SOFTMAX_ZERO: like SOFTMAX, but entries with ``|v| <= 1e-7`` are left out of the sum and come
  out as ``v * exp(-max)`` (about 0).
* PROBIT: ``sqrt(2) * erfinv(2x - 1)`` with onnxruntime's closed-form erfinv approximation
  (Winitzki, a = 0.147), not the exact inverse: the reference *is* the approximation.

The ml ops read ``[N, F]`` (or ``[F]``) rows and produce rows, so every lowering here works in
ONNX order (``policies.onnx_order``).
"""

from __future__ import annotations

import numpy as np

from .. import layout as L
from .compose import binary, const, op, reduce, select, unary

ML_DOMAIN = "ai.onnx.ml"
TRANSFORMS = ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT")


def as_text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def float_input(ctx, i: int = 0, hint: str = "x"):
    """Input ``i`` as float32 (int32/int64 features are converted as onnxruntime does:
    ``static_cast<float>``, round to nearest)."""
    x = ctx.input(i)
    if np.dtype(x.dtype) != np.float32:
        x = op(ctx, "CAST", [x], x.shape, np.float32, hint)
    return x


def as_rows(ctx, x, hint: str = "rows"):
    """``[F]`` -> ``[1, F]``; ``[N, F]`` unchanged. ``[N, ...]`` with more axes flattens them."""
    shape = tuple(x.shape)
    if len(shape) == 2:
        return x
    if len(shape) == 1:
        return ctx.reshape(x, (1, shape[0]), hint)
    return ctx.reshape(x, (shape[0], int(np.prod(shape[1:]))), hint)


def logistic(ctx, x, hint: str = "logistic"):
    return op(ctx, "LOGISTIC", [x], x.shape, np.float32, hint)


def softmax(ctx, x, hint: str = "softmax"):
    if len(x.shape) == 1:
        x2 = ctx.reshape(x, (1, x.shape[0]), f"{hint}_2d")
        y = op(ctx, "SOFTMAX", [x2], x2.shape, np.float32, hint, beta=1.0)
        return ctx.reshape(y, x.shape, f"{hint}_1d")
    return op(ctx, "SOFTMAX", [x], x.shape, np.float32, hint, beta=1.0)


def softmax_zero(ctx, x, hint: str = "softmax_zero"):
    """onnxruntime's ComputeSoftmaxZero over the last axis."""
    m = reduce(ctx, "REDUCE_MAX", x, [-1], True, f"{hint}_max")
    e = unary(ctx, "EXP", binary(ctx, "SUB", x, m, f"{hint}_shift"), f"{hint}_exp")
    a = unary(ctx, "ABS", x, f"{hint}_abs")
    nonzero = binary(ctx, "GREATER", a, const(ctx, 1e-7), f"{hint}_nz", dtype=np.bool_)
    zero = const(ctx, 0.0)
    kept = select(ctx, nonzero, e, zero, f"{hint}_kept")
    total = reduce(ctx, "SUM", kept, [-1], True, f"{hint}_sum")
    neg_m = unary(ctx, "NEG", m, f"{hint}_negmax")
    small = binary(ctx, "MUL", x, unary(ctx, "EXP", neg_m, f"{hint}_expneg"), f"{hint}_small")
    num = select(ctx, nonzero, e, small, f"{hint}_num")
    return binary(ctx, "DIV", num, total, hint)


def probit(ctx, x, hint: str = "probit"):
    """``sqrt(2) * ErfInv(2x - 1)`` with onnxruntime's ErfInv approximation."""
    t = binary(ctx, "SUB", binary(ctx, "MUL", x, const(ctx, 2.0), f"{hint}_2x"), const(ctx, 1.0))
    sgn = unary(ctx, "SIGN", t, f"{hint}_sgn")
    one = const(ctx, 1.0)
    u = binary(
        ctx,
        "MUL",
        binary(ctx, "SUB", one, t, f"{hint}_1mt"),
        binary(ctx, "ADD", one, t, f"{hint}_1pt"),
        f"{hint}_u",
    )
    lg = unary(ctx, "LOG", u, f"{hint}_log")
    v = binary(
        ctx,
        "ADD",
        binary(ctx, "MUL", lg, const(ctx, 0.5), f"{hint}_half"),
        const(ctx, np.float32(2) / (np.float32(3.14159) * np.float32(0.147))),
        f"{hint}_v",
    )
    v2 = binary(ctx, "MUL", lg, const(ctx, np.float32(1) / np.float32(0.147)), f"{hint}_v2")
    disc = binary(ctx, "SUB", binary(ctx, "MUL", v, v, f"{hint}_vv"), v2, f"{hint}_disc")
    v3 = binary(ctx, "SUB", unary(ctx, "SQRT", disc, f"{hint}_sq"), v, f"{hint}_v3")
    r = unary(ctx, "SQRT", v3, f"{hint}_root")
    # SIGN(0) is 0 where onnxruntime uses +1; the root is 0 there anyway.
    e = binary(ctx, "MUL", sgn, r, f"{hint}_erfinv")
    return binary(ctx, "MUL", e, const(ctx, np.float32(1.41421356)), hint)


def post_transform(ctx, scores, name: str, hint: str = "post"):
    """Apply onnxruntime's post transform ``name`` to ``[N, C]`` scores (rows of C >= 2)."""
    if name == "NONE":
        return scores
    if name == "LOGISTIC":
        return logistic(ctx, scores, hint)
    if name == "SOFTMAX":
        return softmax(ctx, scores, hint)
    if name == "SOFTMAX_ZERO":
        return softmax_zero(ctx, scores, hint)
    if name == "PROBIT":
        return probit(ctx, scores, hint)
    raise ValueError(name)


def label_table(attrs: dict, int_key: str) -> np.ndarray | None:
    """The class labels: int64, or strings (an object array, written as a TFLite STRING
    constant: LiteRT's GATHER reads string tensors)."""
    ints = attrs.get(int_key)
    strings = attrs.get("classlabels_strings")
    if ints is not None and len(ints):
        return np.asarray(ints, np.int64)
    if strings is not None and len(strings):
        return np.array([str(s) for s in strings], dtype=object)
    return None


def labels_from_index(ctx, idx, table: np.ndarray, index: int):
    """Output ``index`` of the node = ``table[idx]`` (``idx`` int32 ``[N]``)."""
    n = idx.shape[0]
    if table.dtype == np.int64 and np.array_equal(table, np.arange(len(table))):
        lab = op(ctx, "CAST", [idx], (n,), np.int64, "label")
    else:
        lab = op(
            ctx,
            "GATHER",
            [ctx.const_tensor(table, "labels"), idx],
            (n,),
            table.dtype,
            "label",
            axis=0,
            batch_dims=0,
        )
    set_output(ctx, lab, index)


def set_output(ctx, t, index: int = 0):
    """Output ``index`` of the node is ``t``: the same tensor when the shapes agree (no copy),
    else ``t`` reshaped to the ONNX output shape (the lowerings compute on [N, K] rows)."""
    shape = ctx.out_shape(index)
    if tuple(t.shape) == tuple(shape):
        ctx.alias_output(index, t, L.identity(len(shape)))
    else:
        ctx.driver.reshape(t, ctx.output(index))


def argmax_rows(ctx, scores, hint: str = "argmax"):
    """int32 ``[N]``: the column of each row's largest score (the first one on ties)."""
    axis = const(ctx, np.array([1], np.int32), np.int32, "axis")
    n = scores.shape[0]
    return op(ctx, "ARG_MAX", [scores, axis], (n,), np.int32, hint, output_type="INT32")


def index_where(ctx, cond, hint: str = "index"):
    """int32 ``[N]``: 1 where ``cond`` ([N] or [N, 1] bool) else 0."""
    n = cond.shape[0]
    if len(cond.shape) != 1:
        cond = ctx.reshape(cond, (n,), f"{hint}_cond")
    one = const(ctx, np.array([1], np.int32), np.int32, "one")
    zero = const(ctx, np.array([0], np.int32), np.int32, "zero")
    return select(ctx, cond, one, zero, hint)
