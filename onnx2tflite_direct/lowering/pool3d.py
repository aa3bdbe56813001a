"""N-d pooling (1-D to 3-D spatial, any dilation) composed exactly from slices.

TFLite has only 2-D, undilated pool builtins. Max, sum (and so average and Lp) over a box are
separable, so an N-d pool is one 1-D pool per spatial axis, and a 1-D pool with kernel ``k``,
stride ``s`` and dilation ``d`` is the elementwise MAXIMUM/ADD of ``k`` STRIDED_SLICEs (tap
``j`` starts at ``j * d`` and steps by ``s``). Padding (ONNX pads, auto_pad and the extra end
cells ceil_mode needs) is one PAD/PADV2 up front; average divisors are a constant computed here.

``pool.py`` owns the MaxPool/AveragePool registrations and calls :func:`lower_pool_nd` for
inputs its 2-D builtin path cannot express (rank 5, dilations); LpPool registers in lppool.py.
The lowering works in whatever layout the policy delivered (axes go through ``in_layout``).
"""

from __future__ import annotations

import numpy as np

from .common import pool_window_geometry
from .dynamic_sizes import refuse_sample_pads, sizes_vary
from .emit import Emitter

COMBINE = {"max": "MAXIMUM", "sum": "ADD"}

# Taps per spatial axis summed over axes; beyond this the op count is unreasonable.
MAX_TAPS = 256


def pool_geometry(ctx):
    """kernel, strides, dilations, (begin, end) pads and output sizes per spatial axis."""
    kernel, strides, dilations, pads, _full, outs = pool_window_geometry(
        ctx, list(ctx.shape(0)[2:])
    )
    return kernel, strides, dilations, pads, outs


def _slice_taps(ctx, x, axis: int, k: int, s: int, d: int, o: int, combine: str, to_end=False):
    """1-D pool of stored ``axis``: combine the ``k`` strided slices ``x[j*d :: s][:o]``.

    ``to_end`` (the sizes vary at run time): tap ``j`` ends ``(k - 1 - j) * d`` cells before
    the padded axis' end, which holds ``o`` windows at every size; its last window's end,
    ``j*d + (o-1)*s + 1``, is a fixed distance from the end only for sizes congruent to this
    one modulo the stride (one window short at the others)."""
    e = Emitter(ctx)
    if k == 1 and s == 1 and x.shape[axis] == o:
        return x
    rank = len(x.shape)
    acc = None
    for j in range(k):
        begin = [0] * rank
        end = list(x.shape)
        step = [1] * rank
        last = x.shape[axis] - (k - 1 - j) * d if to_end else j * d + (o - 1) * s + 1
        begin[axis], end[axis], step[axis] = j * d, last, s
        shape = list(x.shape)
        shape[axis] = o
        inputs = [x] + [e.const(v, np.int32, n) for v, n in ((begin, "b"), (end, "e"), (step, "s"))]
        tap = e.op("STRIDED_SLICE", *inputs, shape=shape, hint="tap")
        acc = tap if acc is None else e.op(COMBINE[combine], acc, tap, hint="acc")
    return acc


def window_counts(spatial, kernel, strides, dilations, pads, outs, include_pad: bool):
    """Per output position, how many taps of its window fall inside the counted region."""
    per_axis = []
    for n, k, s, d, (pb, pe), o in zip(
        spatial, kernel, strides, dilations, pads, outs, strict=True
    ):
        lo, hi = (-pb, n + pe) if include_pad else (0, n)
        taps = np.arange(o)[:, None] * s - pb + np.arange(k)[None, :] * d
        per_axis.append(((taps >= lo) & (taps < hi)).sum(axis=1))
    count = np.ones((), dtype=np.int64)
    for c in per_axis:
        count = np.multiply.outer(count, c)
    return count


def pooled_sum_or_max(ctx, x, combine: str):
    """Pool the stored tensor ``x`` (ONNX shape ``ctx.shape(0)``) with ``combine`` per window."""
    e = Emitter(ctx)
    shape = ctx.shape(0)
    lay = ctx.in_layout(0)
    kernel, strides, dilations, pads, full, outs = pool_window_geometry(ctx, list(shape[2:]))
    refuse_sample_pads(ctx, kernel, strides, dilations)  # the PAD below is explicit
    if ctx.attr("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER") and any(
        d != 1 for d in dilations
    ):
        ctx.refuse(
            "unsupported_attribute_value",
            "auto_pad SAME with dilations: onnxruntime's output size ignores the dilation",
        )
    if list(ctx.out_shape(0)[2:]) != list(outs):
        ctx.refuse(
            "unsupported_attribute_value",
            f"ceil_mode output size {outs} (last window must start inside the input, as "
            f"onnxruntime computes) differs from the inferred shape {ctx.out_shape(0)[2:]}",
        )
    if sum(kernel) > MAX_TAPS:
        ctx.refuse("unsupported_attribute_value", f"kernel {kernel} needs too many slices")
    stored_pads = [(0, 0)] * len(shape)
    # Sizes varying at run time: end pads that hold at every size (``pool_window_geometry``)
    # and taps counted from the end.
    to_end = sizes_vary(ctx)
    for a, (n, k, s, d, (pb, _pe), (_, pe_any), o) in enumerate(
        zip(shape[2:], kernel, strides, dilations, pads, full, outs, strict=True)
    ):
        need = (o - 1) * s + (k - 1) * d + 1 - (n + pb)
        stored_pads[lay.stored_axis(2 + a)] = (pb, pe_any if to_end else max(need, 0))
    if any(p != (0, 0) for p in stored_pads):
        value = float("-inf") if combine == "max" else 0.0
        x = e.pad(x, stored_pads, value=value)
    for a, (k, s, d, o) in enumerate(zip(kernel, strides, dilations, outs, strict=True)):
        x = _slice_taps(ctx, x, lay.stored_axis(2 + a), k, s, d, o, combine, to_end)
    return x


def finish(ctx, result, out) -> None:
    """Make ``out`` the graph tensor holding ``result`` (retarget the producing op if we can)."""
    e = Emitter(ctx)
    ops = ctx.driver.sub.operators
    if ops and ops[-1].outputs == [result] and result.data is None and result is not out:
        if tuple(result.shape) == tuple(out.shape) and result.name.startswith(ctx.node.label):
            ops[-1].outputs[0] = out
            return
    e.reshape(result, out=out)


def average_divisor(ctx):
    """1 / ONNX divisor per output position, in the stored layout of the output."""
    kernel, strides, dilations, pads, outs = pool_geometry(ctx)
    include = bool(ctx.attr("count_include_pad", 0))
    count = window_counts(ctx.shape(0)[2:], kernel, strides, dilations, pads, outs, include)
    inv = (1.0 / np.maximum(count, 1)).astype(np.float32)
    return ctx.in_layout(0).apply(inv.reshape((1, 1) + inv.shape))


def lower_pool_nd(ctx, kind: str) -> None:
    """MaxPool (``kind="max"``) or AveragePool (``"avg"``) of any spatial rank and dilation."""
    e = Emitter(ctx)
    x = ctx.input(0)
    out = ctx.output(0)
    if kind == "max":
        finish(ctx, pooled_sum_or_max(ctx, x, "max"), out)
        return
    summed = pooled_sum_or_max(ctx, x, "sum")
    inv = ctx.const_tensor(average_divisor(ctx), "inv_count")
    e.op("MUL", summed, inv, out=out, hint="t")
