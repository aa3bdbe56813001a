"""The numbers of the int4 weight variant: 4-bit (and int8-row) codes and scales of a weight
array, chosen for the least squared error; no operators, no tensors.

Split from ``int4.py`` so that both its users read one quantizer: the rewrite
(``int4.py``, which wraps these codes in tensors) and the size-budget chooser
(``int4_budget.py``, which measures what a weight's 4-bit rounding costs at the outputs before
anything is rewritten).

Scales: per block (or channel), the scale with the least squared error among 12 candidates
from ``max|w| / 7`` down to ``0.7 max|w| / 8`` (clipping the largest values a little often
rounds the rest better): 0.8 dB of weight SQNR above a fixed ``max|w| / 7.5`` on MiniLM.
Blockwise codes may also carry a float offset per block (:func:`blockwise_int4_offsets`),
kept only where it gains ``OFFSET_GAIN_DB`` of weight SQNR.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

INT4 = np.dtype(ml_dtypes.int4)
# Candidate scales: 12 fractions of max|w| / (top + 1), up to (top + 1) / top (the largest
# value then maps to exactly ``top``).
_CANDIDATES = 12
_CHUNK = 1 << 20  # elements quantized at a time (bounds the search's temporaries)
# A blockwise weight gets per-block offsets when they gain this much weight SQNR (dB).
OFFSET_GAIN_DB = 0.25


def scale_search(
    rows: np.ndarray, top: int, bottom: int, scale_dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Codes in [bottom, top] and one scale per row of ``rows`` (float32 [n, k]), the scale
    chosen for the least squared error (scales rounded to ``scale_dtype`` first)."""
    codes = np.empty(rows.shape, np.int8)
    scales = np.empty(rows.shape[0], scale_dtype)
    step = max(1, _CHUNK // max(rows.shape[1], 1))
    for lo in range(0, rows.shape[0], step):
        r = rows[lo : lo + step]
        peak = np.abs(r).max(axis=1, keepdims=True) / (top + 1)
        best_err = best_s = None
        for f in np.linspace(0.7, (top + 1) / top, _CANDIDATES):
            s = (peak * f).astype(scale_dtype).astype(np.float32)
            s = np.where(s > 0, s, np.float32(1.0))  # all-zero rows: any scale, codes 0
            err = np.square(r - np.clip(np.rint(r / s), bottom, top) * s).sum(axis=1)
            if best_err is None:
                best_err, best_s = err, s[:, 0]
            else:
                better = err < best_err
                best_err = np.where(better, err, best_err)
                best_s = np.where(better, s[:, 0], best_s)
        codes[lo : lo + step] = np.clip(np.rint(r / best_s[:, None]), bottom, top)
        scales[lo : lo + step] = best_s
    return codes, scales


def blockwise_int4(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """2-D ``w`` [rows, cols] as int4 codes in [-8, 7] and float16 scales [rows, cols/block]."""
    rows, cols = w.shape
    codes, scales = scale_search(w.reshape(-1, block).astype(np.float32), 7, -8, np.float16)
    return codes.reshape(rows, cols), scales.reshape(rows, cols // block)


def blockwise_int4_offsets(w: np.ndarray, block: int):
    """2-D ``w`` [rows, cols] as ``codes * scale + offset`` per block: int4 codes in [-8, 7],
    float16 scales and float32 offsets, both [rows, cols/block]; None when the offsets gain
    under ``OFFSET_GAIN_DB`` of weight SQNR over :func:`blockwise_int4` (symmetric blocks).

    Per block, the best of the symmetric codes (offset 0) and 12 spreads of the block's
    [min, max] over the 16 codes, each with the least-squares offset for its codes. The
    kernels read no zero point; the offsets are added by a small float FULLY_CONNECTED on the
    input's block sums (``int4._with_offsets``)."""
    rows = w.reshape(-1, block).astype(np.float32)
    sym_codes, sym_scales = blockwise_int4(w, block)
    codes = sym_codes.reshape(rows.shape).copy()
    scales = sym_scales.reshape(-1).copy()
    offsets = np.zeros(rows.shape[0], np.float32)
    sym_err = np.square(rows - codes * scales.astype(np.float32)[:, None]).sum(axis=1)
    err_all = sym_err.copy()
    step = max(1, _CHUNK // block)
    for a in range(0, rows.shape[0], step):
        r = rows[a : a + step]
        lo, hi = r.min(axis=1, keepdims=True), r.max(axis=1, keepdims=True)
        best = err_all[a : a + step]
        for f in np.linspace(0.8, 1.1, _CANDIDATES):
            sc = ((hi - lo) / 15.0 * f).astype(np.float16).astype(np.float32)
            sc = np.where(sc > 0, sc, np.float32(1.0))
            m = (hi + lo) / 2 + sc / 2  # codes -8..7 centred on the range
            q = np.clip(np.rint((r - m) / sc), -8, 7)
            m = (r - sc * q).mean(axis=1, keepdims=True)
            q = np.clip(np.rint((r - m) / sc), -8, 7)
            err = np.square(r - (sc * q + m)).sum(axis=1)
            better = err < best
            best = np.where(better, err, best)
            codes[a : a + step][better] = q[better]
            scales[a : a + step][better] = sc[better, 0]
            offsets[a : a + step][better] = m[better, 0]
        err_all[a : a + step] = best
    gain = 10 * np.log10(max(float(sym_err.sum()), 1e-30) / max(float(err_all.sum()), 1e-30))
    if gain < OFFSET_GAIN_DB:
        return None
    shape = (w.shape[0], w.shape[1] // block)
    return codes.reshape(w.shape), scales.reshape(shape), offsets.reshape(shape)


def per_channel_int4(w: np.ndarray, axis: int, bottom: int = -7) -> tuple[np.ndarray, np.ndarray]:
    """``w`` as int4 codes in [``bottom``, 7] with one float32 scale per slice along ``axis``
    (-7 for FULLY_CONNECTED, whose CPU 4-bit path reads -8 as +8; -8 for the others)."""
    moved = np.moveaxis(w.astype(np.float32), axis, 0)
    codes, scales = scale_search(moved.reshape(moved.shape[0], -1), 7, bottom, np.float32)
    return np.moveaxis(codes.reshape(moved.shape), 0, axis), scales
