"""Comparing a converted model's outputs with the reference: one verdict for everything.

Why a module of its own: ``--validate``, ``--validate-all-tensors`` (every intermediate
tensor), the HTML chart and the test-suite must all judge "within tolerance" the same way.
The verdict is ``max|a - e| <= atol * max(1, max|expected|)`` (plus ``rtol * |e|`` element-wise
when given, plus one step of a sub-float32 reference, which is only correct to that step);
integers, bools and strings must match exactly; NaN and inf must sit in the same places.
No runtime is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np


def _is_float(dtype: np.dtype) -> bool:
    """True for numpy floats and ml_dtypes floats (bfloat16, float8...; their kind is 'V')."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return True
    if dtype.kind == "V":
        try:
            ml_dtypes.finfo(dtype)
            return True
        except (ValueError, TypeError):
            return False
    return False


def _kind(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if _is_float(dtype):
        return "f"
    if dtype.kind in "OSU":
        return "S"
    return dtype.kind


def reference_ulp(expected: np.ndarray) -> np.ndarray | None:
    """One unit in the last place of each expected value, in the reference's own float dtype,
    for floats narrower than float32 (float16, bfloat16, float8); None otherwise.

    Why: onnxruntime computes a float16 op in float32 and rounds the result once, and how it
    gets there (SIMD approximations of exp/tanh) differs between instruction sets, so its
    float16 answer can sit one float16 step from the correctly rounded one on some CPUs. A
    tolerance below one step of the reference would judge the reference's own rounding. For
    float32 and wider, ``rtol`` is already far above one ulp.
    """
    dtype = np.dtype(expected.dtype)
    if not _is_float(dtype) or dtype.kind == "c" or dtype.itemsize >= 4:
        return None
    info = ml_dtypes.finfo(dtype)
    magnitude = np.abs(np.asarray(expected, dtype=np.float32))
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log2(np.maximum(magnitude, np.float32(info.smallest_normal))))
    return np.exp2(exponent - info.nmant).astype(np.float32)


def tolerance(dtype: np.dtype, max_expected_abs: float, atol: float) -> float | None:
    """The largest absolute error :func:`compare` (``rtol`` None) accepts on a reference of
    ``dtype`` whose largest magnitude is ``max_expected_abs``: ``atol * max(1, max|expected|)``
    for floats (plus one step of a sub-float32 reference at that magnitude, the most
    :func:`reference_ulp` adds), 0 for integers and bools (exact), None for strings.

    Why: charts and tables must draw the threshold each tensor is judged by, which scales
    with the tensor's magnitude, not the bare ``atol``."""
    dtype = np.dtype(dtype)
    if _kind(dtype) == "S":
        return None
    if not _is_float(dtype):
        return 0.0
    if math.isnan(max_expected_abs):  # nothing compared (shape or kind mismatch)
        return None
    if math.isinf(max_expected_abs):
        return math.inf
    tol = atol * max(1.0, max_expected_abs)
    ulp = reference_ulp(np.array([max_expected_abs]).astype(dtype))
    return tol + (float(ulp[0]) if ulp is not None else 0.0)


def _compare_one(
    expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float | None
) -> dict[str, Any]:
    e_arr, a_arr = np.asarray(expected), np.asarray(actual)
    m: dict[str, Any] = {
        "expected_shape": tuple(e_arr.shape),
        "actual_shape": tuple(a_arr.shape),
        "expected_dtype": str(e_arr.dtype),
        "actual_dtype": str(a_arr.dtype),
        # Exact comparison: a permuted shape (NHWC vs NCHW) is never a match.
        "shape_match": tuple(e_arr.shape) == tuple(a_arr.shape),
        "dtype_match": e_arr.dtype == a_arr.dtype,
        "kind_match": _kind(e_arr.dtype) == _kind(a_arr.dtype),
        "nan_mismatch": 0,
        "max_abs": math.inf,
        "max_rel": math.inf,
        "mean_abs": math.inf,
        "cosine": math.nan,
        "sqnr_db": -math.inf,
        "max_expected_abs": math.nan,
        "ok": False,
    }
    if not (m["shape_match"] and m["kind_match"]):
        return m

    if _kind(e_arr.dtype) == "S":  # strings: exact equality only
        equal = bool(np.array_equal(e_arr.astype(str), a_arr.astype(str)))
        m.update(max_abs=0.0 if equal else math.inf, ok=equal)
        return m

    if _finite_real_metrics(e_arr, a_arr, m, atol, rtol):
        return m
    e = e_arr.astype(np.complex128 if e_arr.dtype.kind == "c" else np.float64).ravel()
    a = a_arr.astype(e.dtype).ravel()
    e_nan, a_nan = np.isnan(e), np.isnan(a)
    m["nan_mismatch"] = int(np.count_nonzero(e_nan != a_nan))
    # Infinities must match exactly (same sign, same place); everything else is compared.
    e_inf, a_inf = np.isinf(e), np.isinf(a)
    inf_mismatch = int(np.count_nonzero((e_inf | a_inf) & ~((e == a) & e_inf)))
    finite = ~(e_nan | a_nan | e_inf | a_inf)
    ef, af = e[finite], a[finite]
    diff = np.abs(ef - af)
    eabs = np.abs(ef)
    max_exp = float(eabs.max()) if eabs.size else 0.0
    m["max_expected_abs"] = max_exp
    if m["nan_mismatch"] or inf_mismatch:
        m["max_abs"] = math.inf
    else:
        m["max_abs"] = float(diff.max()) if diff.size else 0.0
    m["mean_abs"] = float(diff.mean()) if diff.size else 0.0
    # Relative error with a floor so exact zeros in `expected` do not produce inf.
    floor = 1e-6 * max(max_exp, 1.0)
    m["max_rel"] = float((diff / np.maximum(eabs, floor)).max()) if diff.size else 0.0
    if m["max_abs"] == math.inf:
        m["max_rel"] = math.inf
    ne, na = float(np.vdot(ef, ef).real), float(np.vdot(af, af).real)
    if ne == 0.0 and na == 0.0:
        m["cosine"] = 1.0
    elif ne == 0.0 or na == 0.0:
        m["cosine"] = 0.0
    else:
        m["cosine"] = float(np.vdot(ef, af).real / math.sqrt(ne * na))
    noise = float(np.sum(diff**2))
    if noise == 0.0:
        m["sqnr_db"] = math.inf
    elif ne == 0.0:
        m["sqnr_db"] = -math.inf
    else:
        m["sqnr_db"] = 10.0 * math.log10(ne / noise)

    if m["max_abs"] == math.inf:
        m["ok"] = False
    elif not _is_float(e_arr.dtype):  # ints and bools must be exact
        m["ok"] = m["max_abs"] == 0.0
    else:
        scaled_atol = atol * max(1.0, max_exp)
        ulp = reference_ulp(e_arr)
        if ulp is None:
            threshold = scaled_atol if rtol is None else scaled_atol + rtol * eabs
        else:  # the reference itself is only correct to one step of its dtype
            threshold = scaled_atol + ulp.ravel()[finite] + (0.0 if rtol is None else rtol * eabs)
        m["ok"] = bool(np.all(diff <= threshold))
    return m


def _finite_real_metrics(
    e_arr: np.ndarray, a_arr: np.ndarray, m: dict[str, Any], atol: float, rtol: float | None
) -> bool:
    """Fill ``m`` for real float arrays without NaN/inf; False (``m`` untouched) otherwise.

    Why: per-tensor diagnostics compare every activation of a network, and the general path
    (float64 copies, NaN/inf masks, boolean indexing) costs ~10x more. Element-wise work stays
    in float32 when both sides fit (an exact difference of two float32 values rounds by at most
    half an ulp of the difference); every sum accumulates in float64. A difference within
    rounding of the tolerance goes to the general path, so ``ok`` never depends on the path.
    """
    if not (_is_float(e_arr.dtype) and _is_float(a_arr.dtype)) or "c" in (
        e_arr.dtype.kind,
        a_arr.dtype.kind,
    ):
        return False
    work = np.float32 if max(e_arr.dtype.itemsize, a_arr.dtype.itemsize) <= 4 else np.float64
    # No ravel: a transposed view would be copied, and every reduction below is over all axes.
    e = np.asarray(e_arr, dtype=work)
    a = np.asarray(a_arr, dtype=work)
    if e.ndim == 0:  # 0-d arithmetic yields numpy scalars, which ``out=`` cannot take
        e, a = e.reshape(1), a.reshape(1)
    if not e.size:
        m.update(max_abs=0.0, max_rel=0.0, mean_abs=0.0, cosine=1.0, sqnr_db=math.inf)
        m.update(max_expected_abs=0.0, ok=True)
        return True

    def dot(x, y):
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf -> general path
            return float(np.add.reduce(x * y, axis=None, dtype=np.float64))

    # The squared norms are finite exactly when every element is (a square overflowing float32
    # also lands on the general path): one pass instead of two isfinite masks.
    ne, na = dot(e, e), dot(a, a)
    if not (math.isfinite(ne) and math.isfinite(na)):
        return False
    diff = e - a
    np.abs(diff, out=diff)
    eabs = np.abs(e)
    max_exp = float(eabs.max())
    max_abs = float(diff.max())
    scaled_atol = atol * max(1.0, max_exp)
    ulp = reference_ulp(e_arr)
    # The verdict must be the general path's: within rounding of the threshold, defer to it.
    if rtol is None and ulp is None:
        if abs(max_abs - scaled_atol) <= 1e-6 * scaled_atol:
            return False
        ok = max_abs <= scaled_atol
    else:
        threshold = scaled_atol + (0.0 if rtol is None else rtol * eabs)
        if ulp is not None:  # the reference itself is only correct to one step of its dtype
            threshold = threshold + ulp.reshape(e.shape)
        if np.any(np.abs(diff - threshold) <= 1e-6 * threshold):
            return False
        ok = bool(np.all(diff <= threshold))
    # Relative error with a floor so exact zeros in `expected` do not produce inf.
    np.maximum(eabs, work(1e-6 * max(max_exp, 1.0)), out=eabs)
    max_rel = float((diff / eabs).max())
    noise = dot(diff, diff)
    if ne == 0.0 and na == 0.0:
        cosine = 1.0
    elif ne == 0.0 or na == 0.0:
        cosine = 0.0
    else:  # e.a = (|e|^2 + |a|^2 - |e - a|^2) / 2: no fourth pass over the data
        cosine = min(1.0, max(-1.0, (ne + na - noise) / (2.0 * math.sqrt(ne * na))))
    if noise == 0.0:
        sqnr = math.inf
    elif ne == 0.0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * math.log10(ne / noise)
    m.update(
        max_abs=max_abs,
        max_rel=max_rel,
        mean_abs=float(np.add.reduce(diff, axis=None, dtype=np.float64)) / diff.size,
        cosine=cosine,
        sqnr_db=sqnr,
        max_expected_abs=max_exp,
        ok=bool(ok),
    )
    return True


def compare(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    *,
    atol: float = 1e-4,
    rtol: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-output metrics for every name in ``expected``.

    Keys: shape_match, dtype_match, kind_match, nan_mismatch, max_abs, max_rel, mean_abs, cosine,
    sqnr_db, max_expected_abs, ok (plus the shapes/dtypes). NaNs are equal only where both sides
    have them; a NaN or inf in one side only makes max_abs inf. Non-float outputs must be exact.
    ``ok`` is ``max_abs <= atol * max(1, max|expected|)``; with ``rtol`` it is the element-wise
    ``|a - e| <= atol * max(1, max|expected|) + rtol * |e|``. A name missing from ``actual`` gets
    ``{"missing": True, "ok": False}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, e in expected.items():
        if name not in actual:
            out[name] = {"missing": True, "ok": False, "shape_match": False}
            continue
        out[name] = _compare_one(e, actual[name], atol, rtol)
    return out
