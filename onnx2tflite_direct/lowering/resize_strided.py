"""Resize downscaling by a power of two when the input sizes vary at run time.

RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR place their taps with the ratio in / out of the
run-time sizes, ONNX with the node's scale: at a size that is no multiple of the factor
(``out = floor(in / k)``) they disagree, so a builtin picked at the converter's sample sizes
would be wrong at others. When the scale is exactly ``1 / k`` (k a power of two: exact in
float) and the coordinate transformation is affine in the output index (half_pixel,
asymmetric; not pytorch_half_pixel, whose size-1 output reads cell 0), output ``x`` reads input ``k x + c`` for a few constant
offsets ``c`` with constant weights: one STRIDED_SLICE per tap (begin ``c``, stride ``k``, end
counted back from the run-time end so that it yields ``floor(in / k)`` cells at every size),
scaled and summed. The pattern is checked against the ONNX taps over a range of sizes (small
ones included: the edge clamps and the size-1 special cases show there), else not used.
"""

from __future__ import annotations

import numpy as np

from .emit import Emitter
from .resize_reference import interpolation_matrix, source_coords

PERIODIC_COORDS = ("half_pixel", "asymmetric")
# Output sizes at which the periodic taps are compared with the ONNX definition.
CHECKED_OUT_SIZES = range(1, 41)


def periodic_taps(spec, a) -> tuple[int, list[tuple[int, float]]] | None:
    """(k, [(offset, weight)]) when output ``x`` along ONNX axis ``a`` is
    ``sum_j weight_j * in[k x + offset_j]`` at every checked size; else None."""
    scale = float(np.float32(spec.scales[a]))
    if not spec.scale_given:  # sizes: ONNX's taps follow sizes / in, which varies with in
        return None
    if not 0.0 < scale < 1.0 or spec.coord not in PERIODIC_COORDS or spec.mode == "cubic":
        return None
    k = round(1.0 / scale)
    if k < 2 or k & (k - 1) or scale * k != 1.0 or spec.roi[a] != (0.0, 1.0):
        return None
    taps = None
    for n_out in CHECKED_OUT_SIZES:
        for n_in in (k * n_out, k * n_out + k - 1):
            m = _onnx_matrix(spec, n_in, n_out, scale)
            row_taps = [
                sorted((int(j) - k * x, float(m[x, j])) for j in np.flatnonzero(m[x]))
                for x in range(n_out)
            ]
            if taps is None:
                taps = row_taps[0]
            if any(r != taps for r in row_taps):
                return None
    if not taps or any(c < 0 or c > k - 1 for c, _ in taps):
        return None
    return k, taps


def _onnx_matrix(spec, n_in, n_out, scale):
    x = source_coords(spec.coord, n_in, n_out, scale)
    return interpolation_matrix(
        x, n_in, spec.mode, spec.nearest_mode, spec.cubic_a, spec.exclude_outside
    )


def try_strided_downscale(ctx, spec, axes, lay) -> bool:
    """Emit every resized axis as strided taps (see the module docstring); False (nothing
    emitted) unless every resized axis is a periodic power-of-two downscale."""
    plans = {a: periodic_taps(spec, a) for a in axes}
    if not axes or any(p is None for p in plans.values()):
        return False
    if _as_average_pool(ctx, spec, plans, lay):
        return True
    e = Emitter(ctx)
    x = ctx.input(0)
    for i, a in enumerate(axes):
        k, taps = plans[a]
        stored = lay.stored_axis(a)
        shape = list(x.shape)
        shape[stored] = spec.out_shape[a]
        out = ctx.output(0) if i == len(axes) - 1 else None
        acc = None
        for j, (c, w) in enumerate(taps):
            last = j == len(taps) - 1
            begin = [0] * len(shape)
            end = [0] * len(shape)
            strides = [1] * len(shape)
            begin[stored], strides[stored] = c, k
            end_pad = k - 1 - c
            end[stored] = -end_pad
            end_mask = sum(1 << d for d in range(len(shape)) if d != stored or not end_pad)
            direct = out if last and acc is None and w == 1.0 else None
            tap = e.op(
                "STRIDED_SLICE",
                x,
                ctx.const_tensor(np.array(begin, np.int32), "begin"),
                ctx.const_tensor(np.array(end, np.int32), "end"),
                ctx.const_tensor(np.array(strides, np.int32), "strides"),
                shape=shape,
                out=direct,
                hint=f"tap{j}",
                end_mask=end_mask,
            )
            if w != 1.0:
                weight = ctx.const_tensor(np.array(w, np.float32), "weight")
                tap = e.op("MUL", tap, weight, out=out if last and acc is None else None)
            if acc is None:
                acc = tap
            else:
                acc = e.op("ADD", acc, tap, out=out if last else None, hint=f"sum{j}")
        x = acc
    return True


HALVING_MEAN = [(0, 0.5), (1, 0.5)]


def _as_average_pool(ctx, spec, plans, lay) -> bool:
    """Linear half_pixel halving of H and/or W (output x = the mean of input 2x and 2x + 1 on
    each halved axis) as one AVERAGE_POOL_2D, VALID, window and stride 2 on those axes:
    ``floor(in / 2)`` outputs at every size, and one op XNNPACK takes where the strided slices
    are not (the same weighted sum, in another summation order)."""
    x = ctx.input(0)
    stored = {lay.stored_axis(a): p for a, p in plans.items()}
    if len(spec.in_shape) != 4 or x.dtype != np.float32 or not set(stored) <= {1, 2}:
        return False
    if any(p != (2, HALVING_MEAN) for p in stored.values()):
        return False
    h, w = (2 if axis in stored else 1 for axis in (1, 2))
    Emitter(ctx).op(
        "AVERAGE_POOL_2D",
        x,
        out=ctx.output(0),
        padding="VALID",
        stride_h=h,
        stride_w=w,
        filter_height=h,
        filter_width=w,
        fused_activation_function="NONE",
    )
    return True
