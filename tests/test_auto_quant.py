"""``--quantize auto``: the verification margin, the refinement and the share bound, with numbers.

The margin (``auto._Measured.margin_db``) is the one-sided 95% Student t quantile times the
jackknife standard error of the held-back figure: checked against a direct computation on
hand-made per-sample powers, and end to end on a real small CNN (test_quant_overrides' BN CNN)
where the written file, run in LiteRT, must meet the target on the held-back samples *less
the margin the report states*, and on fresh samples of another seed. The share bound
(``auto._int8_share_bound``) is a fractional knapsack: checked on hand-made nodes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_quant_auto import auto_section, held_back, sqnr
from test_quant_overrides import bn_cnn

from onnx2tflite_direct import convert
from onnx2tflite_direct.quant import auto


def gaussian(count: int, seed: int) -> dict[str, np.ndarray]:
    """Images ~N(0, 1) without test_quant_overrides' rare bright pixels: with those, 12
    calibration samples miss the ranges fresh samples reach (even the int16x8 file falls
    from 46 to 29 dB on new samples), which no precision choice can make up for."""
    x = np.random.default_rng(seed).standard_normal((count, 3, 16, 16)).astype(np.float32)
    return {"x": x}


CALIB = gaussian(16, seed=1)  # 12 for ranges and sensitivities, the last 4 held back
FRESH = gaussian(16, seed=7)  # neither calibration nor held back


def measured(pairs: list[tuple[float, float]]) -> auto._Measured:
    """One output ``y``: per-sample (signal power, noise power)."""
    per = [({"y": s}, {"y": n}) for s, n in pairs]
    return auto._Measured({"y": sum(s for s, _ in pairs)}, {"y": sum(n for _, n in pairs)}, per)


def test_margin_is_t_quantile_times_jackknife_standard_error():
    pairs = [(100.0, 0.010), (120.0, 0.020), (90.0, 0.004), (110.0, 0.015)]
    m = measured(pairs)
    s_all, n_all = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    assert m.sqnr_db() == pytest.approx(10 * math.log10(s_all / n_all))
    loo = [10 * math.log10((s_all - s) / (n_all - n)) for s, n in pairs]
    mean = sum(loo) / 4
    se = math.sqrt(3 / 4 * sum((v - mean) ** 2 for v in loo))
    assert m.margin_db() == pytest.approx(2.353 * se)  # t(0.95, df=3)
    assert m.lower_db() == pytest.approx(m.sqnr_db() - 2.353 * se)
    assert 0.3 < m.margin_db() < 3.0  # a spread of 4 dB per sample: a dB-sized margin


def test_margin_is_zero_for_identical_samples_and_capped():
    assert measured([(50.0, 0.01)] * 5).margin_db() == pytest.approx(0.0, abs=1e-9)
    assert measured([(50.0, 0.01)]).margin_db() == auto.MIN_MARGIN_DB  # one sample: none
    wild = measured([(1.0, 1e-9), (1.0, 0.5)])
    assert wild.margin_db() == auto.MAX_MARGIN_DB


def test_t_quantiles():
    assert auto.margin_z(2) == 6.314 and auto.margin_z(4) == 2.353
    assert auto.margin_z(12) == 1.812  # df 11: the tabulated df 10 (conservative)
    assert auto.margin_z(1000) == 1.645
    zs = [auto.margin_z(k) for k in range(2, 40)]
    assert all(a >= b for a, b in zip(zs, zs[1:], strict=False))


def test_share_bound_is_a_fractional_knapsack():
    room = 10 ** (auto.MARGIN_DB / 10)  # the noise budget at the target itself
    nodes = {
        "a": auto._Node("a", 600, noise={"int8": 0.2 * room}),  # 3000 MACs per budget
        "b": auto._Node("b", 300, noise={"int8": 0.6 * room}),  # 500
        "c": auto._Node("c", 100, noise={"int8": 0.4 * room}),  # 250
        "add": auto._Node("add", 0, noise={"int8": 5.0}),  # no MACs: float in the bound
    }
    # a whole (0.2), b whole (0.8), c for the remaining 0.2 of 0.4: half its 100 MACs
    assert auto._int8_share_bound(nodes, 40.0) == pytest.approx((600 + 300 + 50) / 1000)
    quiet = {k: auto._Node(k, n.macs, noise={"int8": 0.01}) for k, n in nodes.items()}
    assert auto._int8_share_bound(quiet, 40.0) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def cnn():
    return bn_cnn()


@pytest.fixture(scope="module")
def cnn_int8(cnn):
    res = convert(cnn, quantize=["int8"], calibration_data=CALIB)
    return sqnr(cnn, res.variants["integer_quant"], res.report["io"], held_back(CALIB))


def test_the_file_meets_target_plus_margin_on_held_back_and_fresh_samples(cnn, cnn_int8):
    target = round(cnn_int8 + 3.0)
    res = convert(cnn, quantize=["auto"], target_sqnr=target, calibration_data=CALIB)
    a = auto_section(res)["auto"]
    data, io = res.variants["auto_quant"], res.report["io"]
    on_held = sqnr(cnn, data, io, held_back(CALIB))
    assert abs(on_held - a["sqnr_db"]) < 0.05
    assert a["margin_db"] >= 0.0
    assert on_held - a["margin_db"] >= target  # the verification counted the margin
    on_fresh = sqnr(cnn, data, io, FRESH)
    assert on_fresh >= target, (on_fresh, on_held, a["margin_db"])
    # the search's shares: int8 no larger than what the sensitivities allow (+ the
    # refinement's measured gains), all shares sum to one
    assert 0.0 <= a["int8_mac_share_bound"] <= 1.0
    assert a["int8_mac_share"] + a["int16x8_mac_share"] + a["float_mac_share"] == (
        pytest.approx(1.0)
    )
    rounds = a["verification_rounds"]
    assert "back_to_int8" in rounds[-1] and rounds[-1]["sqnr_db"] == pytest.approx(a["sqnr_db"])


def test_refinement_tries_are_budgeted(cnn, cnn_int8, monkeypatch):
    """With no refinement budget the search stops at its verified assignment; with one, the
    tries it makes are counted in the files built and never lose the target."""
    target = round(cnn_int8 + 3.0)
    monkeypatch.setattr(auto, "MIN_REFINE", 0)
    monkeypatch.setattr(auto, "REFINE_SHARE", 0.0)
    none = auto_section(convert(cnn, quantize=["auto"], target_sqnr=target, calibration_data=CALIB))
    monkeypatch.setattr(auto, "MIN_REFINE", 16)
    monkeypatch.setattr(auto, "REFINE_SHARE", 0.5)
    some = auto_section(convert(cnn, quantize=["auto"], target_sqnr=target, calibration_data=CALIB))
    a0, a1 = none["auto"], some["auto"]
    last0, last1 = a0["verification_rounds"][-1], a1["verification_rounds"][-1]
    assert last0["back_to_int8"] == [] and last0["back_to_int16x8"] == []
    assert a1["int8_mac_share"] + a1["int16x8_mac_share"] >= (
        a0["int8_mac_share"] + a0["int16x8_mac_share"] - 1e-12
    )
    assert a1["int8_mac_share"] >= a0["int8_mac_share"] - 1e-12
    assert a1["sqnr_db"] - a1["margin_db"] >= target
    refined = [r for r in a1["assignment"] if r["why"].startswith(("int8: back", "int16x8: back"))]
    assert len(refined) == len(last1["back_to_int8"]) + len(last1["back_to_int16x8"])
    assert np.isfinite(a1["sqnr_db"])


def test_back_off_promotes_the_most_noise_per_mac_first():
    """A node without MACs (an ADD) goes up before a conv with more noise: it removes noise
    without costing int8 MACs. The conv follows only when the ADD alone cannot cover the
    shortfall; an int16x8 step is taken where it is 4x quieter than int8."""

    def fresh():
        return {
            "conv": auto._Node("conv", 1_000_000, noise={"int8": 0.6, "int16x8": 0.01}),
            "add": auto._Node("add", 0, noise={"int8": 0.4, "int16x8": 0.001}),
            "dw": auto._Node("dw", 10_000, noise={"int8": 0.3, "int16x8": 0.2}),
        }

    def alone(label, precision):  # every int16x8 noise is known here
        raise AssertionError(label)

    nodes = fresh()
    # shortfall: 1.3 estimated, need ~25% less -> the ADD alone (0.399 removed) covers it
    promoted = auto._back_off(nodes, 40.0 + auto.MARGIN_DB - 1.25, 40.0, alone, 1)
    assert promoted == ["add=int16x8"]
    assert nodes["conv"].precision == "int8" and nodes["dw"].precision == "int8"
    nodes = fresh()
    # a 6 dB shortfall (75% of 1.3 = 0.975): ADD (0.399), then dw (30 per MAC-unit: 0.3 /
    # 10k beats 0.6 / 1M): float (int16x8 not 4x quieter), then the conv
    promoted = auto._back_off(nodes, 40.0 + auto.MARGIN_DB - 6.0, 40.0, alone, 1)
    assert promoted == ["add=int16x8", "dw=float", "conv=int16x8"]


def test_refinement_keeps_a_step_only_when_both_sample_sets_accept_it():
    """``_refine``: a step down that the held-back samples accept but the sensitivity
    samples reject (a figure their noise happened to favour) is not kept."""

    class Bench:
        conversions = 0

        def file(self, assignment):
            self.conversions += 1
            return tuple(sorted(assignment.items())), None, None

        def measure(self, data, feeds, refs):
            db = 39.0 if feeds == "sens" and dict(data)["b"] == "int8" else 45.0
            return measured([(10 ** (db / 10), 1.0)] * 4)  # identical samples: no margin

    nodes = {
        label: auto._Node(label, 1000, noise={"int8": 0.1}, precision="int16x8")
        for label in ("a", "b")
    }
    start = (None, None, None, measured([(10**4.5, 1.0)] * 4))
    auto._refine(Bench(), nodes, 40.0, ("held", None), ("sens", None), start)
    assert nodes["a"].precision == "int8" and nodes["a"].refined
    assert nodes["b"].precision == "int16x8" and not nodes["b"].refined
