"""When does a converted model pass where onnxruntime itself rounds? The corpus' pass rules.

The developer guide: never set a tolerance tighter than the reference's own error. The strict
rule (``|a - e| <= atol * max(1, max|e|) + rtol * |e|`` against onnxruntime) assumes
onnxruntime's answer is exact to well within that tolerance. Two kinds of model break that:

- Q/DQ models: one float32 rounding that lands on the other side of a quantization boundary
  moves a value by a whole quantum, and the network carries it on. onnxruntime's own
  optimisation levels then disagree with each other by many quanta (25 dB SQNR on
  LRASPP-MobileNetV3), so "agree with onnxruntime" cannot be the bar.
- deep float networks whose outputs magnify float32 accumulation order (detection boxes
  decoded through ``exp`` of regression deltas).

So an output that misses the strict rule is judged against a reference that rounds far less
than either runtime: the model's own semantics evaluated in float64, each op's float32 result
correctly rounded (:mod:`tools.zoo.exact_reference`; for a Q/DQ model: dequantize, compute,
quantize with round-half-to-even, as the operators are specified). Rule ``exact`` (recorded as
``qdq_semantics`` for Q/DQ models, ``float64`` for float models): LiteRT is at least as close
to that reference as onnxruntime is, at its closest optimisation level:

- ``SQNR(litert, exact) >= max_level SQNR(ort_level, exact) - 1 dB``, and
- ``|litert - exact| <= min_level max|ort_level - exact| + grain`` element-wise, where the
  grain is one quantum (the step of the DequantizeLinear producing the output) for outputs on
  a quantization lattice, else the strict tolerance at that element
  (``atol * max(1, max|exact|) + rtol * |exact|``): the unit below which no runtime is judged.

For a float model the float64 answer is trusted only where onnxruntime's closest level agrees
with it to ``EXACT_TRUST_DB`` (60 dB): the corpus' float models agree to 82-158 dB, and a
wrong "exact" answer (onnx.reference has computed something else) would widen the bar.

Where no trusted float64 evaluation exists (an op ``onnx.reference`` lacks, over its time
budget, or untrusted), a float model may pass by rule ``reference_spread``: onnxruntime's optimisation levels disagree with each other by
``s = max_level max|ort_level - ort_ref|``; since two runtimes that each err by up to E can
differ by up to 2E, and ``s`` is our only (lower-bound) estimate of E, LiteRT may differ from
``ort_ref`` by ``max(strict, K * s)`` element-wise with K = 2, and its SQNR against ``ort_ref``
may sit at most ``20 log10 K`` (6 dB) below the levels' own. Q/DQ models do not get this rule
(their levels differ by whole quanta: the spread would hide too much).

Integer, bool and string outputs, shape disagreements and missing outputs never pass by these
rules: they must be exact. Every function here is pure (arrays in, figures out), so a test can
plant an error and watch it fail (tests/test_zoo_pass_rule.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

SQNR_MARGIN_DB = 1.0  # LiteRT's SQNR against the exact answer may trail onnxruntime's by this
QUANTUM_SLACK = 1e-3  # float32 images of lattice values (q - zp) * scale are not exact
SPREAD_K = 2.0  # LiteRT may differ from onnxruntime by K times onnxruntime's own spread
# A float model's float64 answer is trusted only if onnxruntime's closest level agrees with it
# to this SQNR (the corpus' float models: 82-158 dB). Below it the model rounds at run time
# (quantize_dynamic CNNs: 28-41 dB) or onnx.reference computes something else (skl_svc's
# SVMClassifier: 18 dB), and a wrong "exact" answer would widen the bar: the spread rule
# judges instead.
EXACT_TRUST_DB = 60.0

RULE_LABELS = {
    "strict": "pass",
    "qdq_semantics": "pass (Q/DQ semantics)",
    "float64": "pass (float64 reference)",
    "reference_spread": "pass (within the reference's own spread)",
}


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def is_float_output(a) -> bool:
    return np.asarray(a).dtype.kind == "f"


def sqnr_db(reference, actual) -> float:
    """10 log10(sum ref^2 / sum (ref - actual)^2); inf when equal, -inf for a zero reference."""
    ref, act = _f64(reference).ravel(), _f64(actual).ravel()
    noise = float(np.sum((ref - act) ** 2))
    if noise == 0.0:
        return math.inf
    signal = float(np.sum(ref**2))
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def figures(reference, actual, step: float | None = None) -> dict:
    """SQNR (dB), max |difference| and, for lattice outputs, that max in quanta."""
    d = np.abs(_f64(actual) - _f64(reference))
    out = {"sqnr_db": _r(sqnr_db(reference, actual)), "max_abs": float(d.max()) if d.size else 0.0}
    if step:
        out["max_quanta"] = round(out["max_abs"] / step, 4)
    return out


def _r(v: float) -> float | str:
    return round(v, 2) if math.isfinite(v) else str(v)


def strict_threshold(reference, atol: float, rtol: float) -> np.ndarray:
    ref = np.abs(_f64(reference))
    scale = float(ref.max()) if ref.size else 0.0
    return atol * max(1.0, scale) + rtol * ref


def judge_exact(
    litert,
    ort_levels: Mapping[str, np.ndarray],
    exact,
    *,
    step: float | None,
    atol: float,
    rtol: float,
) -> dict:
    """Rule ``exact`` for one float output: is LiteRT at least as close to ``exact`` (the
    float64 evaluation of the model's semantics) as onnxruntime at its closest level?"""
    shapes = {np.shape(litert), np.shape(exact), *(np.shape(v) for v in ort_levels.values())}
    if len(shapes) != 1:
        return {"ok": False, "why": f"shapes differ: {sorted(map(list, shapes))}"}
    if not all(is_float_output(v) for v in (litert, *ort_levels.values())):
        return {"ok": False, "why": "not a float output (must be exact)"}
    out = {
        "litert_vs_exact": figures(exact, litert, step),
        "ort_vs_exact": {k: figures(exact, v, step) for k, v in ort_levels.items()},
    }
    if step:
        out["step"] = step
    best_sqnr = max(sqnr_db(exact, v) for v in ort_levels.values())
    best_max = min(float(np.max(np.abs(_f64(v) - _f64(exact)))) for v in ort_levels.values())
    ours = sqnr_db(exact, litert)
    diff = np.abs(_f64(litert) - _f64(exact))
    if step:
        bound = best_max + step * (1.0 + QUANTUM_SLACK)
        within = bool(np.all(diff <= bound))
    else:
        within = bool(np.all(diff <= best_max + strict_threshold(exact, atol, rtol)))
    sqnr_ok = ours >= best_sqnr - SQNR_MARGIN_DB
    out["ok"] = bool(sqnr_ok and within)
    if not out["ok"]:
        out["why"] = (
            f"SQNR {ours:.1f} dB vs onnxruntime's best {best_sqnr:.1f} dB"
            if not sqnr_ok
            else f"max |litert - exact| {float(diff.max()):.3g} above onnxruntime's "
            f"{best_max:.3g} + one {'quantum' if step else 'strict tolerance'}"
        )
    return out


def closest_level_sqnr(
    levels_by_output: Mapping[str, Mapping[str, np.ndarray]], exact: Mapping[str, np.ndarray]
) -> float:
    """The worst output's SQNR of onnxruntime's closest level against the float64 answer."""
    worst = math.inf
    for k, levels in levels_by_output.items():
        shaped = [v for v in levels.values() if np.shape(v) == np.shape(exact[k])]
        if shaped and is_float_output(exact[k]):
            worst = min(worst, max(sqnr_db(exact[k], v) for v in shaped))
    return worst


def judge_spread(
    litert,
    ort_ref,
    ort_others: Mapping[str, np.ndarray],
    *,
    atol: float,
    rtol: float,
    k: float = SPREAD_K,
) -> dict:
    """Rule ``reference_spread`` for one float output: does LiteRT stay within K times the
    disagreement between onnxruntime's optimisation levels (``ort_others`` vs ``ort_ref``)?"""
    shapes = {np.shape(litert), np.shape(ort_ref), *(np.shape(v) for v in ort_others.values())}
    if len(shapes) != 1:
        return {"ok": False, "why": f"shapes differ: {sorted(map(list, shapes))}"}
    if not all(is_float_output(v) for v in (litert, ort_ref, *ort_others.values())):
        return {"ok": False, "why": "not a float output (must be exact)"}
    spread = max(float(np.max(np.abs(_f64(v) - _f64(ort_ref)))) for v in ort_others.values())
    spread_sqnr = min(sqnr_db(ort_ref, v) for v in ort_others.values())
    diff = np.abs(_f64(litert) - _f64(ort_ref))
    bound = np.maximum(strict_threshold(ort_ref, atol, rtol), k * spread)
    ours = sqnr_db(ort_ref, litert)
    sqnr_ok = ours >= spread_sqnr - 20.0 * math.log10(k)
    within = bool(np.all(diff <= bound))
    out = {
        "litert_vs_ort": figures(ort_ref, litert),
        "ort_levels_vs_ort": {k_: figures(ort_ref, v) for k_, v in ort_others.items()},
        "spread_max_abs": spread,
        "k": k,
        "ok": bool(sqnr_ok and within),
    }
    if not out["ok"]:
        out["why"] = (
            f"SQNR {ours:.1f} dB vs the levels' own {spread_sqnr:.1f} dB"
            if not sqnr_ok
            else f"max |litert - ort| {float(diff.max()):.3g} above {k:g} x spread {spread:.3g}"
        )
    return out


def decide(strict_ok: Mapping[str, bool], per_output: Mapping[str, dict]) -> bool:
    """A model passes by a rule when every output either meets the strict rule or has an ok
    verdict of that rule (an output without a verdict fails)."""
    return all(ok or per_output.get(name, {}).get("ok", False) for name, ok in strict_ok.items())
