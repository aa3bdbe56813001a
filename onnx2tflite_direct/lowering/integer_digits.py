"""Exact integer sums in float32 by digits (shared by the integer-op and Q/DQ-lattice lowerings).

A float32 sum of integer products is exact while every partial sum stays below 2**24
(EXACT_FLOAT_SUM). A reduction whose bound exceeds it splits one operand into base-2**s digits,
``a = sum_k d_k 2**(s k)``, small enough that each digit's reduction is exact, and combines the
per-digit sums exactly in int32. lowering/qlinear.py explains the bounds (MatMulInteger,
QLinearConv ...); lowering/conv_lattice.py splits constant weights the same way.
"""

from __future__ import annotations

import numpy as np

from .emit import Emitter

EXACT_FLOAT_SUM = 2**24


def digit_plan(k: int, a_max: int, b_max: int, bias_max: int = 0) -> tuple[int, int] | None:
    """(digits, bits) from the bounds (qlinear.split_plan): K products of |a| <= a_max and
    |b| <= b_max; (1, 0) when one float32 reduction is exact, None when 1-bit digits are not."""
    if k * a_max * b_max + bias_max < EXACT_FLOAT_SUM:
        return 1, 0
    for bits in range(7, 0, -1):
        if k * (1 << bits) * b_max < EXACT_FLOAT_SUM:
            digits = 1
            while (1 << (bits * digits)) <= a_max:
                digits += 1
            return max(digits, 2), bits  # (a bias alone can push one reduction over)
    return None


def split_digits(ctx, a, digits: int, bits: int):
    """Exact base-2**bits digits of the float32 integer tensor ``a`` (lowest first; the top
    digit keeps the sign): ``a = sum_k d_k * 2**(bits * k)``."""
    e = Emitter(ctx)
    out = []
    step = e.const(float(1 << bits), hint="digit_base")
    inv = e.const(1.0 / (1 << bits), hint="digit_inv")
    for k in range(digits - 1):
        high = e.op(
            "FLOOR",
            e.op("MUL", a, inv, hint=f"a_div{k}"),
            shape=a.shape,
            dtype=np.float32,
            hint=f"a_high{k}",
        )
        out.append(e.op("SUB", a, e.op("MUL", high, step, hint=f"a_up{k}"), hint=f"a_digit{k}"))
        a = high
    out.append(a)
    return out


def combine_digits(ctx, partials, bits: int, bias=None):
    """Exact int32 sum of ``partial_k * 2**(bits * k)`` (+ an int32 bias): each partial is an
    exact float32 integer below 2**24."""
    e = Emitter(ctx)
    acc = None
    for k, p in enumerate(partials):
        t = e.cast(p, np.int32, f"partial{k}")
        if k:
            t = e.op("MUL", t, e.const(1 << (bits * k), np.int32, "weight"), hint=f"partial{k}_w")
        acc = t if acc is None else e.op("ADD", acc, t, hint=f"acc{k}")
    if bias is not None:
        acc = e.op("ADD", acc, bias, hint="acc_bias")
    return acc


def constant_digits(rows: np.ndarray, reach: int, bias_max=0):
    """Balanced base-2**bits digits of a constant integer matrix, for exact reductions.

    ``rows`` is [channels, K] (one row per output channel's products), every product taken
    with an operand of magnitude <= ``reach``; ``bias_max`` (scalar or per channel) is added
    to digit 0's reduction. Returns ``(digits, bits)`` with ``rows = sum_k digits[k] *
    2**(bits*k)`` and every digit's per-channel bound ``sum|d_k| * reach (+ |bias|)`` below
    2**24, the fewest digits first (then the lowest peak bound); ``([rows], 0)`` when no split
    is needed, None when 8 digits of 1 bit do not suffice. A row whose own reduction is exact
    stays whole in digit 0 (zeros in the others), so a caller can reduce only the rows a
    higher digit needs (:func:`split_rows`). Splitting a constant (rather than the run-time
    operand, :func:`split_digits`) costs nothing at run time but the extra reductions, and
    the bound is the exact per-channel one rather than K * max|d|."""
    rows = np.asarray(rows, np.int64)
    bias_max = np.broadcast_to(np.asarray(bias_max, np.int64), rows.shape[:1])
    whole = np.abs(rows).sum(axis=1) * reach + bias_max < EXACT_FLOAT_SUM

    def peak(digits):
        sums = [np.abs(d).sum(axis=1) * reach for d in digits]
        sums[0] = sums[0] + bias_max
        return max(int(np.max(s, initial=0)) for s in sums)

    if whole.all():
        return [rows], 0
    for count in range(2, 9):
        best = None
        for bits in range(1, 8):
            digits, rest = [], rows
            for _ in range(count - 1):
                low = ((rest + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))
                digits.append(np.where(whole[:, None], 0, low))
                rest = (rest - digits[-1]) >> bits
            digits[0] = np.where(whole[:, None], rows, digits[0])
            digits.append(np.where(whole[:, None], 0, rest))
            p = peak(digits)
            if p < EXACT_FLOAT_SUM and (best is None or p < best[0]):
                best = (p, digits, bits)
        if best is not None:
            return best[1], best[2]
    return None


def split_rows(digits) -> int:
    """How many row reductions the higher digits need (rows of zeros are skipped)."""
    return sum(int(np.any(d.reshape(d.shape[0], -1) != 0, axis=1).sum()) for d in digits[1:])
