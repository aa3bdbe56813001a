"""Reductions (every ONNX Reduce*): TFLite reducers plus elementwise pre/post steps.

Axes come from the ``axes`` attribute (older opsets) or the ``axes`` input (ReduceSum 13+,
the others 18+). Constant axes are mapped through the input's stored layout, so a reduction
never forces a transpose; with ``keepdims=0`` the output layout is the input layout with the
reduced axes dropped (see ``axis_layouts.reduced_layout``). Runtime axes are fed to the reducer as a
tensor (TFLite reducers take one), which needs the input in ONNX order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import errors
from ..registry import FLOAT, lowering
from .axis_layouts import XNNPACK_RANKS, rank_of, reduction_policy, runtime_int32, stored_axes
from .emit import Emitter

FLOAT_INT = ("float32", "int32", "int64")


# ----------------------------------------------------------------------------------------------
# Axes
# ----------------------------------------------------------------------------------------------


def static_axes(node, graph):
    """The normalized, sorted reduced axes; ``()`` for a no-op; ``None`` when axes are runtime.

    Empty axes mean "all axes" unless ``noop_with_empty_axes`` is set.
    """
    rank = rank_of(graph, node.inputs[0])
    if len(node.inputs) > 1 and node.inputs[1]:
        value = graph.values[node.inputs[1]]
        if value.is_constant:
            axes = [int(a) for a in np.asarray(value.const).reshape(-1)]
        elif value.shape and 0 in value.shape:
            axes = []
        else:
            return None
    elif node.attrs.get("axes") is not None:
        axes = [int(a) for a in node.attrs["axes"]]
    else:
        axes = []
    if not axes:
        return () if node.attrs.get("noop_with_empty_axes", 0) else tuple(range(rank))
    return tuple(sorted({a + rank if a < 0 else a for a in axes}))


# ----------------------------------------------------------------------------------------------
# The Reduce* family
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reduction:
    reducer: str  # TFLite reducer
    pre: str | None = None  # elementwise op applied to the input
    post: str | None = None  # elementwise op applied to the reduced value
    dtypes: tuple[str, ...] = FLOAT
    empty: float = 0.0  # value of a reduction over zero elements
    each: str | None = None  # the reduction of one element (reducing over no axes at all)


REDUCTIONS = {
    "ReduceSum": Reduction("SUM", dtypes=FLOAT_INT),
    "ReduceMean": Reduction("MEAN", empty=np.nan),
    "ReduceMax": Reduction("REDUCE_MAX", dtypes=(*FLOAT_INT, "bool"), empty=-np.inf),
    "ReduceMin": Reduction("REDUCE_MIN", dtypes=(*FLOAT_INT, "bool"), empty=np.inf),
    "ReduceProd": Reduction("REDUCE_PROD", dtypes=FLOAT_INT, empty=1.0),
    "ReduceL1": Reduction("SUM", pre="ABS", dtypes=("float32", "int32"), each="ABS"),
    "ReduceL2": Reduction("SUM", pre="SQUARE", post="SQRT", each="ABS"),
    "ReduceSumSquare": Reduction("SUM", pre="SQUARE", dtypes=FLOAT_INT, each="SQUARE"),
    "ReduceLogSum": Reduction("SUM", post="LOG", empty=-np.inf, each="LOG"),
    "ReduceLogSumExp": Reduction("SUM", pre="EXP", post="LOG", empty=-np.inf),
}
BOOL_REDUCERS = {"REDUCE_MAX": "REDUCE_ANY", "REDUCE_MIN": "REDUCE_ALL"}


def _empty_value(spec: Reduction, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.array(spec.reducer == "REDUCE_MIN")
    if dtype.kind in "iu" and not np.isfinite(spec.empty):
        info = np.iinfo(dtype)
        return np.array(info.min if spec.empty < 0 else info.max, dtype)
    return np.array(spec.empty, dtype)


def _reduce_check(node, graph) -> str | None:
    axes = static_axes(node, graph)
    if node.op_type == "ReduceMean" and 0 in graph.values[node.inputs[0]].shape and axes != ():
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: mean over an empty set is undefined "
            "(onnxruntime gives 0, the ONNX reference NaN)"
        )
    if axes is None and node.op_type == "ReduceLogSumExp" and not node.attrs.get("keepdims", 1):
        return (
            f"{errors.REQUIRES_CONSTANT_INPUT}: runtime axes with keepdims=0 (stable log-sum-exp)"
        )
    return None


def _unary(ctx, opcode, x, out=None, hint="y"):
    """One elementwise op; SQUARE of integers is MUL (TFLite's SQUARE is float-only)."""
    e = Emitter(ctx)
    out = out if out is not None else ctx.temp(x.dtype, x.shape, hint)
    if opcode == "SQUARE" and np.dtype(x.dtype).kind != "f":
        e.op("MUL", x, x, out=out)
    else:
        e.op(opcode, x, out=out)
    return out


def _reduce_nothing(ctx, spec: Reduction, x, out):
    """No axes reduced: each element is reduced alone (|x| for L1/L2, x*x, log x, or x)."""
    e = Emitter(ctx)
    y = x if spec.each is None else _unary(ctx, spec.each, x, hint=spec.each.lower())
    e.reshape(y, out=out)


def _lower_reduction(spec: Reduction):
    def lower(ctx):
        e = Emitter(ctx)
        axes = static_axes(ctx.node, ctx.driver.graph)
        x = ctx.input(0)
        out = ctx.output(0)
        keep = bool(ctx.attr("keepdims", 1))
        if axes == ():
            _reduce_nothing(ctx, spec, x, out)
            return
        if 0 in ctx.shape(0):  # every output element reduces zero elements: a constant
            dims = ctx.const_tensor(np.array(out.shape, np.int32), "dims")
            e.op("FILL", dims, ctx.const_tensor(_empty_value(spec, x.dtype), "empty"), out=out)
            return
        axes_t = (
            runtime_int32(ctx) if axes is None else ctx.const_tensor(stored_axes(ctx, axes), "axes")
        )
        reducer = spec.reducer
        if np.dtype(x.dtype) == np.bool_:
            reducer = BOOL_REDUCERS[reducer]
        if ctx.node.op_type == "ReduceLogSumExp":
            _log_sum_exp(ctx, x, axes_t, out, keep)
            return
        if spec.pre:
            x = _unary(ctx, spec.pre, x, hint=spec.pre.lower())
        red = out if spec.post is None else ctx.temp(out.dtype, out.shape, "reduced")
        e.op(reducer, x, axes_t, out=red, keep_dims=keep)
        if spec.post:
            _unary(ctx, spec.post, red, out)

    return lower


def _log_sum_exp(ctx, x, axes_t, out, keep):
    """log(sum(exp(x - max))) + max, as onnxruntime computes it (no overflow for large x)."""
    e = Emitter(ctx)
    kept_shape = out.shape if keep else _keepdims_stored_shape(ctx)
    peak = e.op("REDUCE_MAX", x, axes_t, shape=kept_shape, hint="max", keep_dims=True)
    shifted = e.op("SUB", x, peak, hint="shifted")
    total = e.op(
        "SUM",
        _unary(ctx, "EXP", shifted, hint="exp"),
        axes_t,
        shape=kept_shape,
        hint="sum",
        keep_dims=True,
    )
    logged = _unary(ctx, "LOG", total, hint="log")
    if keep:
        e.op("ADD", logged, peak, out=out)
        return
    summed = e.op("ADD", logged, peak, hint="lse")
    e.reshape(summed, out=out)


def _keepdims_stored_shape(ctx):
    axes = static_axes(ctx.node, ctx.driver.graph)
    shape = [1 if i in axes else d for i, d in enumerate(ctx.shape(0))]
    return ctx.in_layout(0).stored_shape(shape)


def _tflite_ops(op: str, spec: Reduction) -> tuple[str, ...]:
    """Every builtin the lowering of ``op`` may emit (for docs/ops.md)."""
    if op == "ReduceLogSumExp":
        main = ["REDUCE_MAX", "SUB", "EXP", "SUM", "LOG", "ADD"]
    else:
        main = [o for o in (spec.pre, spec.reducer, spec.post, spec.each) if o]
    if "SQUARE" in main and set(spec.dtypes) - set(FLOAT):
        main.append("MUL")
    if "bool" in spec.dtypes:
        main.append(BOOL_REDUCERS[spec.reducer])
    return tuple(dict.fromkeys([*main, "RESHAPE", "CAST", "FILL"]))


for _op, _spec in REDUCTIONS.items():
    lowering(
        _op,
        reduction_policy(static_axes),
        dtypes=_spec.dtypes,
        ranks=XNNPACK_RANKS,
        tflite_ops=_tflite_ops(_op, _spec),
        notes="axes attribute or input (runtime axes need ONNX-order data); keepdims; "
        "noop_with_empty_axes; zero-size inputs give the reduction's identity",
        extra_check=_reduce_check,
    )(_lower_reduction(_spec))
