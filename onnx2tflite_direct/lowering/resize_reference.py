"""Resize in numpy, from the ONNX definition: per axis, which input elements (taps) and
weights make every output element.

``source_coords`` follows the ONNX coordinate transformations in float64 as the reference does
(``exact_coords`` in rational arithmetic, to find nearest-rounding ties the float reference may
break either way); ``interpolation_matrix`` turns coordinates into an [out, in] matrix of tap
weights (nearest rounding modes, linear, cubic with ``cubic_coeff_a`` and
``exclude_outside``). ``resize.py`` lowers with these matrices; ``resize_builtins.py`` checks
whether a TFLite builtin computes the same ones.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

MODES = ("nearest", "linear", "cubic")
COORD_MODES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
)
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def source_coords(mode, in_size, out_size, scale, roi=(0.0, 1.0), dt=np.float64) -> np.ndarray:
    """Input coordinate of every output index along one axis, computed in ``dt`` (float64 like
    the ONNX reference, or float32 like onnxruntime, to detect rounding ties)."""
    x = np.arange(out_size, dtype=dt)
    scale, n_in, n_out, half = dt(scale), dt(in_size), dt(out_size), dt(0.5)
    if mode == "half_pixel":
        return (x + half) / scale - half
    if mode == "half_pixel_symmetric":
        adjustment = n_out / (scale * n_in)
        offset = n_in / dt(2) * (dt(1) - adjustment)
        return offset + (x + half) / scale - half
    if mode == "pytorch_half_pixel":
        return (x + half) / scale - half if out_size > 1 else np.zeros(out_size, dt)
    if mode == "align_corners":
        return x * (n_in - 1) / (n_out - 1) if out_size > 1 else np.zeros(out_size, dt)
    if mode == "asymmetric":
        return x / scale
    start, end = dt(roi[0]), dt(roi[1])  # tf_crop_and_resize
    if out_size > 1:
        return start * (n_in - 1) + x * (end - start) * (n_in - 1) / (n_out - 1)
    return np.full(out_size, half * (start + end) * (n_in - 1), dt)


def exact_coords(mode, in_size, out_size, scale, roi) -> list[Fraction]:
    """The coordinates in exact rational arithmetic (scale taken as its float32 value)."""
    s, n_in, n_out, half = (
        Fraction(float(np.float32(scale))),
        Fraction(in_size),
        Fraction(out_size),
        Fraction(1, 2),
    )
    out = []
    for i in range(out_size):
        x = Fraction(i)
        if mode == "half_pixel" or (mode == "pytorch_half_pixel" and out_size > 1):
            v = (x + half) / s - half
        elif mode == "half_pixel_symmetric":
            v = n_in / 2 * (1 - n_out / (s * n_in)) + (x + half) / s - half
        elif mode == "align_corners":
            v = x * (n_in - 1) / (n_out - 1) if out_size > 1 else Fraction(0)
        elif mode == "asymmetric":
            v = x / s
        elif mode == "tf_crop_and_resize":
            a, b = Fraction(float(roi[0])), Fraction(float(roi[1]))
            v = (
                a * (n_in - 1) + x * (b - a) * (n_in - 1) / (n_out - 1)
                if out_size > 1
                else (a + b) / 2 * (n_in - 1)
            )
        else:
            v = Fraction(0)
        out.append(v)
    return out


def ambiguous_tie(mode, in_size, out_size, scale, roi, nearest_mode) -> bool:
    """Does an exact rounding tie occur where float implementations may land on either side?

    Ties are harmless when the formula is one correctly rounded division of exact operands
    (then float32 and float64 both hit the tie exactly): align_corners always, asymmetric and
    (pytorch_)half_pixel when the scale is exactly representable in float32.
    """
    if mode == "align_corners":
        return False
    if (
        mode in ("asymmetric", "half_pixel", "pytorch_half_pixel")
        and float(np.float32(scale)) == scale
    ):
        return False
    boundary = Fraction(0) if nearest_mode in ("floor", "ceil") else Fraction(1, 2)
    return any(
        v - (v.numerator // v.denominator) == boundary
        for v in exact_coords(mode, in_size, out_size, scale, roi)
    )


def round_nearest(x, nearest_mode):
    if nearest_mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if nearest_mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    return np.floor(x) if nearest_mode == "floor" else np.ceil(x)


def cubic_kernel(t, a):
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def interpolation_matrix(x, in_size, mode, nearest_mode, cubic_a, exclude_outside) -> np.ndarray:
    """[out, in] weights: output i = sum_j M[i, j] * input j (edge taps clamp to the border)."""
    out = np.zeros((x.size, in_size))
    rows = np.arange(x.size)
    if mode == "nearest":
        idx = np.clip(round_nearest(x, nearest_mode), 0, in_size - 1).astype(np.int64)
        out[rows, idx] = 1.0
        return out
    base = np.floor(x)
    frac = x - base
    if mode == "linear":
        offsets, weights = (0, 1), (1 - frac, frac)
    else:
        offsets = (-1, 0, 1, 2)
        weights = tuple(cubic_kernel(frac - k, cubic_a) for k in offsets)
    raw = [base + k for k in offsets]
    if exclude_outside:
        weights = [
            np.where((r >= 0) & (r <= in_size - 1), w, 0.0)
            for r, w in zip(raw, weights, strict=False)
        ]
        total = np.sum(weights, axis=0)
        weights = [w / total for w in weights]
    for r, w in zip(raw, weights, strict=False):
        np.add.at(out, (rows, np.clip(r, 0, in_size - 1).astype(np.int64)), w)
    return out
