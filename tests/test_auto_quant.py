"""``--quantize auto``: the verification bound, the refinement, the confirmation and the share
bound, with numbers.

The bound (``auto_measure.Measured.lower_db``) is the figure less the one-sided 95% Student t quantile
times its jackknife standard error, the per-sample spread pooled over the held-back and the
calibration samples when both are measured: checked against a direct computation on
hand-made per-sample powers. The confirmation (``auto._confirm``) measures the chosen file on
the held-back half of the samples, which no choice has seen, and undoes the fewest refinement
steps that make the *bound* (not the mean) meet the target: checked on a stub whose files'
figures are known. End to end, on a transformer block (test_quant_overrides'), the written
file, run in LiteRT, meets the target on the held-back samples *less the margin the report
states*, and on 64 fresh samples of another seed. The share bound
(``auto._int8_share_bound``) is a fractional knapsack: checked on hand-made nodes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_quant_auto import auto_section, held_back, not_held_back, sqnr
from test_quant_overrides import bn_cnn, tokens, transformer_block

from onnx2tflite_direct import convert
from onnx2tflite_direct.quant import auto, auto_measure


def gaussian(count: int, seed: int) -> dict[str, np.ndarray]:
    """Images ~N(0, 1) without test_quant_overrides' rare bright pixels: with those, 12
    calibration samples miss the ranges fresh samples reach (even the int16x8 file falls
    from 46 to 29 dB on new samples), which no precision choice can make up for."""
    x = np.random.default_rng(seed).standard_normal((count, 3, 16, 16)).astype(np.float32)
    return {"x": x}


CALIB = gaussian(64, seed=1)  # 32 for ranges and sensitivities, the last 32 held back
TOKENS = {"x": tokens(16, seed=5)}  # 8 for ranges and choices, the last 8 held back
FRESH_TOKENS = {"x": tokens(64, seed=9)}  # neither calibration nor held back


def measured(pairs: list[tuple[float, float]]) -> auto_measure.Measured:
    """One output ``y``: per-sample (signal power, noise power)."""
    per = [({"y": s}, {"y": n}) for s, n in pairs]
    return auto_measure.Measured(
        {"y": sum(s for s, _ in pairs)}, {"y": sum(n for _, n in pairs)}, per
    )


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
    assert measured([(50.0, 0.01)]).margin_db() == auto_measure.MIN_MARGIN_DB  # one sample: none
    wild = measured([(1.0, 1e-9), (1.0, 0.5)])
    assert wild.margin_db() == auto_measure.MAX_MARGIN_DB


def test_t_quantiles():
    assert auto_measure.margin_z(2) == 6.314 and auto_measure.margin_z(4) == 2.353
    assert auto_measure.margin_z(12) == 1.812  # df 11: the tabulated df 10 (conservative)
    assert auto_measure.margin_z(1000) == 1.645
    zs = [auto_measure.margin_z(k) for k in range(2, 40)]
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
    res = convert(cnn, quantize=["int8"], calibration_data=not_held_back(CALIB))
    return sqnr(cnn, res.variants["integer_quant"], res.report["io"], held_back(CALIB))


@pytest.fixture(scope="module")
def block():
    model = transformer_block()
    res = convert(model, quantize=["int8"], calibration_data=not_held_back(TOKENS))
    return model, sqnr(model, res.variants["integer_quant"], res.report["io"], held_back(TOKENS))


def test_the_file_meets_the_bound_on_held_back_and_fresh_samples(block):
    model, int8_db = block
    target = round(int8_db + 3.0)
    res = convert(model, quantize=["auto"], target_sqnr=target, calibration_data=TOKENS)
    a = auto_section(res)["auto"]
    data, io = res.variants["auto_quant"], res.report["io"]
    assert a["verification_samples"] == a["held_back_samples"] == 8
    on_held = sqnr(model, data, io, held_back(TOKENS))
    assert abs(on_held - a["sqnr_db"]) < 0.05
    assert a["margin_db"] > 0.0
    assert a["sqnr_lower_bound_db"] == pytest.approx(on_held - a["margin_db"], abs=0.05)
    assert a["sqnr_lower_bound_db"] >= target and a["target_met"]
    on_fresh = sqnr(model, data, io, FRESH_TOKENS)
    assert on_fresh >= target, (on_fresh, on_held, a["margin_db"])
    assert a["int8_mac_share"] + a["int16x8_mac_share"] + a["float_mac_share"] == (
        pytest.approx(1.0)
    )
    assert a["float_mac_share"] < 1.0  # something stayed integer
    # the last record: the held-back samples, on which the file met the target
    last = a["verification_rounds"][-1]
    assert last["samples"] == "held_back"
    assert last.get("held_back_sqnr_db", last.get("sqnr_db")) == pytest.approx(a["sqnr_db"])


def test_refinement_tries_are_budgeted(block, monkeypatch):
    """With no refinement budget the search stops at its verified assignment; with one, the
    tries it makes are counted in the files built and never lose the target."""
    model, int8_db = block
    target = round(int8_db + 3.0)

    def run():
        res = convert(model, quantize=["auto"], target_sqnr=target, calibration_data=TOKENS)
        return auto_section(res)["auto"]

    monkeypatch.setattr(auto, "MIN_REFINE", 0)
    monkeypatch.setattr(auto, "REFINE_SHARE", 0.0)
    a0 = run()
    monkeypatch.setattr(auto, "MIN_REFINE", 16)
    monkeypatch.setattr(auto, "REFINE_SHARE", 0.5)
    a1 = run()
    refines0 = [r for r in a0["verification_rounds"] if "back_to_int8" in r]
    refines1 = [r for r in a1["verification_rounds"] if "back_to_int8" in r]
    assert refines0 and all(r["back_to_int8"] == r["back_to_int16x8"] == [] for r in refines0)
    assert a1["sqnr_lower_bound_db"] >= target and a0["sqnr_lower_bound_db"] >= target
    assert a1["conversions"] >= a0["conversions"]
    # every node the file has back from a promotion was kept by one of the refinement passes
    kept = {n for r in refines1 for n in r["back_to_int8"] + r["back_to_int16x8"]}
    refined = [r for r in a1["assignment"] if r["why"].startswith(("int8: back", "int16x8: back"))]
    assert {r["node"] for r in refined} <= kept
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


def spread_of(per_sample_db: list[float]) -> auto_measure.Measured:
    """A file's measurement whose per-sample SQNRs are ``per_sample_db`` (unit signal)."""
    return measured([(1.0, 10 ** (-db / 10)) for db in per_sample_db])


def test_margin_pools_the_spread_of_both_sample_sets():
    held = spread_of([40.4, 40.6, 40.5, 40.5])  # steady on the held-back samples
    calib = spread_of([39.0, 42.0, 40.0, 41.5, 40.5, 39.5])  # wide on the others
    k, se = held._jackknife()
    k2, se2 = calib._jackknife()
    var = ((k - 1) * k * se**2 + (k2 - 1) * k2 * se2**2) / (k + k2 - 2)
    alone = held.margin_db()
    held.spread = calib
    assert held.margin_db() == pytest.approx(auto_measure.margin_z(k + k2 - 1) * math.sqrt(var / k))
    assert held.margin_db() > 3 * alone  # a steady held-back set alone would trust luck


def test_held_back_half_of_the_samples():
    """``_split``: half the samples (at most ``MAX_HELD_BACK``, at least one, never all)."""
    model = bn_cnn()
    for count, held in ((2, 1), (3, 2), (16, 8), (64, 32), (100, auto.MAX_HELD_BACK)):
        calib, back = auto._split(model, gaussian(count, seed=3))
        assert (len(calib), len(back)) == (count - held, held)


class StubBench:
    """Files are tuples of the assignment; each file's figures per sample set are given by
    the number of refinement steps undone (``k``): ``held[k]`` / ``calib[k]`` per-sample
    SQNRs."""

    def __init__(self, held, calib):
        self.held, self.calib, self.conversions, self.measured_on = held, calib, 0, []

    def file(self, assignment):
        self.conversions += 1
        return tuple(sorted(assignment.items())), None, None

    def measure(self, data, feeds, refs):
        self.measured_on.append(feeds)
        k = sum(p == "float" for _, p in data)  # each undone step is back to float
        return spread_of((self.held if feeds == "held" else self.calib)[k])


def confirm_with(held, calib, steps=4):
    nodes = {f"n{i}": auto._Node(f"n{i}", 1000, noise={"int8": 0.1}) for i in range(steps)}
    kept = [(n, "float", "float: promoted") for n in nodes.values()]
    for n in nodes.values():
        n.refined = True
    bench = StubBench(held, calib)
    rounds: list = []
    start = (tuple(sorted({c: "int8" for c in nodes}.items())), None, None, spread_of(calib[0]))
    found = auto._confirm(bench, nodes, 40.0, ("held", None), ("calib", None), kept, rounds, start)
    return found, nodes, rounds, bench


def test_confirmation_undoes_the_fewest_steps_whose_bound_meets_the_target():
    """Held-back means 39.8, 40.2, 40.25, 40.9, 41.6 dB for 0..4 steps undone, steady
    (+-0.1 dB per sample); the same files on the calibration samples spread +-1 dB. The mean
    meets 40 dB from one step undone, and so does the bound of the held-back spread alone;
    the bound of the pooled spread (~0.8 dB) only from three. The file confirmed is the one
    with three undone, measured on the held-back samples; the node left refined is the one
    the refinement kept first."""
    means = [39.8, 40.2, 40.25, 40.9, 41.6]
    held = [[m - 0.1, m + 0.1, m - 0.1, m + 0.1] for m in means]
    calib = [[m + 0.5 - 1.0, m + 0.5 + 1.0] * 2 for m in means]
    assert spread_of(held[1]).lower_db() >= 40.0  # a weaker bound would stop at one step
    found, nodes, rounds, bench = confirm_with(held, calib)
    m = found[3]
    assert m.sqnr_db() == pytest.approx(40.9, abs=0.05)
    assert m.lower_db() >= 40.0 and 0.6 < m.margin_db() < 1.0
    assert [n.precision for n in nodes.values()] == ["int8", "float", "float", "float"]
    assert nodes["n0"].refined and not nodes["n3"].refined
    assert rounds[-1]["met"] and len(rounds[-1]["undone"]) == 3
    assert [len(r["undone"]) for r in rounds] == [0, 4, 2, 3]  # bisection
    assert "held" in bench.measured_on  # the confirmation measured the held-back samples


def test_confirmation_keeps_the_refined_file_that_meets_the_bound():
    held = [[41.0, 41.2, 40.9, 41.1]] * 5
    found, nodes, rounds, _ = confirm_with(held, held)
    assert all(n.precision == "int8" and n.refined for n in nodes.values())
    assert len(rounds) == 1 and rounds[0]["undone"] == [] and rounds[0]["met"]


def test_confirmation_gives_up_when_even_every_step_undone_misses():
    held = [[38.0, 39.0, 38.5, 39.5]] * 5
    found, nodes, rounds, _ = confirm_with(held, held)
    assert found is None
    assert all(n.precision == "float" and not n.refined for n in nodes.values())
