"""What TFLite's RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR compute, as [out, in] tap
matrices (their index and weight formulas with ``align_corners`` / ``half_pixel_centers``),
so that ``resize.py`` uses a builtin only where it equals the ONNX taps of
``resize_reference.py``.
"""

from __future__ import annotations

import numpy as np


def tfl_scale(in_size, out_size, align_corners):
    if align_corners and out_size > 1:
        return np.float32(in_size - 1) / np.float32(out_size - 1)
    return np.float32(in_size) / np.float32(out_size)


def tfl_nearest(in_size, out_size, align_corners, half_pixel) -> np.ndarray:
    """Index formula of RESIZE_NEAREST_NEIGHBOR (float32 arithmetic like the kernel)."""
    scale = tfl_scale(in_size, out_size, align_corners)
    v = (np.arange(out_size, dtype=np.float32) + np.float32(0.5 if half_pixel else 0)) * scale
    idx = np.round(v) if align_corners else np.floor(v)  # TfLiteRound: half away from zero
    if align_corners:
        idx = np.where(v - np.floor(v) == 0.5, np.floor(v) + 1, idx)
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    return np.maximum(idx, 0) if half_pixel else idx


def tfl_bilinear(in_size, out_size, align_corners, half_pixel) -> np.ndarray:
    """[out, in] matrix of RESIZE_BILINEAR."""
    scale = tfl_scale(in_size, out_size, align_corners)
    x = np.arange(out_size, dtype=np.float32)
    v = (x + np.float32(0.5)) * scale - np.float32(0.5) if half_pixel else x * scale
    lower = np.maximum(np.floor(v), 0).astype(np.int64)
    upper = np.minimum(np.ceil(v), in_size - 1).astype(np.int64)
    frac = v.astype(np.float64) - lower
    m = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    np.add.at(m, (rows, lower), 1 - frac)
    np.add.at(m, (rows, upper), frac)
    return m


def nearest_index(m: np.ndarray) -> np.ndarray | None:
    """The source index per row when every row of ``m`` is one-hot, else None."""
    if not np.all(np.isclose(m, 0) | np.isclose(m, 1)) or not np.allclose(m.sum(1), 1):
        return None
    return np.argmax(m, axis=1)


def builtin_flags(opcode, mats, in_sizes, out_sizes):
    """(align_corners, half_pixel_centers) under which ``opcode`` equals ``mats``, or None."""
    for align, half in ((False, False), (False, True), (True, False)):
        ok = True
        for m, n_in, n_out in zip(mats, in_sizes, out_sizes, strict=False):
            if opcode == "RESIZE_NEAREST_NEIGHBOR":
                idx = nearest_index(m)
                ok = idx is not None and np.array_equal(idx, tfl_nearest(n_in, n_out, align, half))
                # the optimized kernel's fixed-point index agrees only for these plain cases
                if ok and not (align or half):
                    fixed = (np.arange(n_out) * ((n_in << 16) // n_out + 1)) >> 16
                    ok = np.array_equal(idx, np.minimum(fixed, n_in - 1))
            else:
                ok = np.allclose(m, tfl_bilinear(n_in, n_out, align, half), atol=1e-6)
            if not ok:
                break
        if ok:
            return align, half
    return None
