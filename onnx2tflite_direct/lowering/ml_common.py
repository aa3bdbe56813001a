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
from .emit import Emitter

ML_DOMAIN = "ai.onnx.ml"
TRANSFORMS = ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT")


def as_text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def float_input(ctx, i: int = 0, hint: str = "x"):
    """Input ``i`` as float32 (int32/int64 features are converted as onnxruntime does:
    ``static_cast<float>``, round to nearest)."""
    e = Emitter(ctx)
    x = ctx.input(i)
    if np.dtype(x.dtype) != np.float32:
        x = e.op("CAST", x, dtype=np.float32, hint=hint)
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
    e = Emitter(ctx)
    return e.op("LOGISTIC", x, hint=hint)


def softmax(ctx, x, hint: str = "softmax"):
    e = Emitter(ctx)
    if len(x.shape) == 1:
        x2 = ctx.reshape(x, (1, x.shape[0]), f"{hint}_2d")
        y = e.op("SOFTMAX", x2, dtype=np.float32, hint=hint, beta=1.0)
        return ctx.reshape(y, x.shape, f"{hint}_1d")
    return e.op("SOFTMAX", x, hint=hint, beta=1.0)


def softmax_zero(ctx, x, hint: str = "softmax_zero"):
    """onnxruntime's ComputeSoftmaxZero over the last axis."""
    e = Emitter(ctx)
    m = e.reduce("REDUCE_MAX", x, [-1], True, f"{hint}_max")
    exps = e.op("EXP", e.op("SUB", x, m, hint=f"{hint}_shift"), hint=f"{hint}_exp")
    a = e.op("ABS", x, hint=f"{hint}_abs")
    nonzero = e.op("GREATER", a, e.const(1e-7), hint=f"{hint}_nz", dtype=np.bool_)
    zero = e.const(0.0)
    kept = e.op("SELECT_V2", nonzero, exps, zero, hint=f"{hint}_kept")
    total = e.reduce("SUM", kept, [-1], True, f"{hint}_sum")
    neg_m = e.op("NEG", m, hint=f"{hint}_negmax")
    small = e.op("MUL", x, e.op("EXP", neg_m, hint=f"{hint}_expneg"), hint=f"{hint}_small")
    num = e.op("SELECT_V2", nonzero, exps, small, hint=f"{hint}_num")
    return e.op("DIV", num, total, hint=hint)


def probit(ctx, x, hint: str = "probit"):
    """``sqrt(2) * ErfInv(2x - 1)`` with onnxruntime's ErfInv approximation."""
    e = Emitter(ctx)
    t = e.op("SUB", e.op("MUL", x, e.const(2.0), hint=f"{hint}_2x"), e.const(1.0), hint="t")
    sgn = e.op("SIGN", t, hint=f"{hint}_sgn")
    one = e.const(1.0)
    u = e.op(
        "MUL",
        e.op("SUB", one, t, hint=f"{hint}_1mt"),
        e.op("ADD", one, t, hint=f"{hint}_1pt"),
        hint=f"{hint}_u",
    )
    lg = e.op("LOG", u, hint=f"{hint}_log")
    v = e.op(
        "ADD",
        e.op("MUL", lg, e.const(0.5), hint=f"{hint}_half"),
        e.const(np.float32(2) / (np.float32(3.14159) * np.float32(0.147))),
        hint=f"{hint}_v",
    )
    v2 = e.op("MUL", lg, e.const(np.float32(1) / np.float32(0.147)), hint=f"{hint}_v2")
    disc = e.op("SUB", e.op("MUL", v, v, hint=f"{hint}_vv"), v2, hint=f"{hint}_disc")
    v3 = e.op("SUB", e.op("SQRT", disc, hint=f"{hint}_sq"), v, hint=f"{hint}_v3")
    r = e.op("SQRT", v3, hint=f"{hint}_root")
    # SIGN(0) is 0 where onnxruntime uses +1; the root is 0 there anyway.
    erfinv = e.op("MUL", sgn, r, hint=f"{hint}_erfinv")
    return e.op("MUL", erfinv, e.const(np.float32(1.41421356)), hint=hint)


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
    e = Emitter(ctx)
    if table.dtype == np.int64 and np.array_equal(table, np.arange(len(table))):
        lab = e.op("CAST", idx, dtype=np.int64, hint="label")
    else:
        lab = e.gather(ctx.const_tensor(table, "labels"), idx, 0, hint="label")
    set_output(ctx, lab, index)


def set_output(ctx, t, index: int = 0):
    """Output ``index`` of the node is ``t``: the same tensor when the shapes agree (no copy),
    else ``t`` reshaped to the ONNX output shape (the lowerings compute on [N, K] rows)."""
    e = Emitter(ctx)
    shape = ctx.out_shape(index)
    if tuple(t.shape) == tuple(shape):
        ctx.alias_output(index, t, L.identity(len(shape)))
    else:
        e.reshape(t, out=ctx.output(index))


def argmax_rows(ctx, scores, hint: str = "argmax"):
    """int32 ``[N]``: the column of each row's largest score (the first one on ties)."""
    e = Emitter(ctx)
    axis = e.const(np.array([1], np.int32), np.int32, "axis")
    n = scores.shape[0]
    return e.op("ARG_MAX", scores, axis, shape=(n,), dtype=np.int32, hint=hint, output_type="INT32")


def index_where(ctx, cond, hint: str = "index"):
    """int32 ``[N]``: 1 where ``cond`` ([N] or [N, 1] bool) else 0."""
    e = Emitter(ctx)
    n = cond.shape[0]
    if len(cond.shape) != 1:
        cond = ctx.reshape(cond, (n,), f"{hint}_cond")
    one = e.const(np.array([1], np.int32), np.int32, "one")
    zero = e.const(np.array([0], np.int32), np.int32, "zero")
    return e.op("SELECT_V2", cond, one, zero, hint=hint)
