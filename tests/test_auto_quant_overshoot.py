"""``--quantize auto``: the search ends near a cheap assignment that meets the target, not at
a back-off's overshoot.

The search (``auto._search``) runs on a stub bench whose files' noise is a known function of
the assignment (16 convs, each adding its own noise power per precision, per sample), where
the held-back samples see more int8 noise than the calibration samples (the BERT-like case:
ranges fitted to the calibration samples, rows they never saw): every node 2x (diffuse), or a
quarter of them 6x (concentrated). The file chosen on the calibration samples then misses its
confirmation. The search's file must meet the bound the search confirms with, stay within
1.5 dB of the target on the held-back samples and keep most of the int8 share of a witness
assignment that meets the bound (int8 by least held-back noise per MAC). The search
before the re-promotion passes backed off on the held-back samples, doubling its back-off
each round, with no re-promotion after: 44.6 dB and 28% of the witness's share
(concentrated), 41.9 dB and 81% (diffuse) here; this search 40.9 dB / 55%, 40.5 dB / 98%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from onnx2tflite_direct.quant import auto, auto_measure

TARGET = 40.0
ALLOWED = 10 ** (-TARGET / 10)  # noise power per unit signal at the target
# Per-sample spread of the noise (the same on both sets: the bound has a margin to take).
WEIGHTS = {
    "sens": [1.0, 0.96, 1.04, 1.0],
    "calib": [1.0, 0.96, 1.04, 1.0, 0.98, 1.02, 0.97, 1.03],
    "held": [1.01, 0.95, 1.05, 0.99, 0.98, 1.02, 0.97, 1.03],
}
FLOAT_NOISE = 1e-9 * ALLOWED  # the float model against onnxruntime


@dataclass
class Model:
    """16 convs: MACs, int8 noise and int16x8 noise on the calibration samples (units of
    ALLOWED), and how much more int8 noise each shows on the held-back samples."""

    macs: dict[str, int]
    int8: dict[str, float]
    int16x8: dict[str, float]
    held_factor: dict[str, float]

    @classmethod
    def make(cls, seed: int, factors) -> Model:
        rng = np.random.default_rng(seed)
        names = [f"conv_{i}" for i in range(16)]
        macs = rng.integers(1, 9, len(names)) * 1000
        n8 = rng.uniform(0.03, 0.12, len(names))
        held = rng.choice(factors, len(names))
        return cls(
            dict(zip(names, macs.tolist(), strict=True)),
            dict(zip(names, n8.tolist(), strict=True)),
            {c: v / 200 for c, v in zip(names, n8.tolist(), strict=True)},
            dict(zip(names, held.tolist(), strict=True)),
        )

    def noise(self, assignment: dict[str, str], samples: str) -> float:
        """Noise power of one sample of weight 1 (unit signal)."""
        total = FLOAT_NOISE
        for c in self.macs:
            p = assignment.get(c, "int8")
            if p == "int8":
                total += self.int8[c] * (self.held_factor[c] if samples == "held" else 1.0)
            elif p == "int16x8":
                total += self.int16x8[c]
        return total * ALLOWED

    def measured(self, assignment: dict[str, str], samples: str) -> auto_measure.Measured:
        base = self.noise(assignment, samples)
        per = [({"y": 1.0}, {"y": base * w}) for w in WEIGHTS[samples]]
        return auto_measure.Measured(
            {"y": float(len(per))}, {"y": base * sum(WEIGHTS[samples])}, per
        )

    def held_bound(self, assignment: dict[str, str]) -> auto_measure.Measured:
        """The held-back figure with the margin the search confirms with (the spread pooled
        with the calibration samples')."""
        m = self.measured(assignment, "held")
        m.spread = self.measured(assignment, "calib")
        return m

    def int8_share(self, assignment: dict[str, str]) -> float:
        int8 = sum(self.macs[c] for c in self.macs if assignment.get(c, "int8") == "int8")
        return int8 / sum(self.macs.values())

    def witness(self) -> dict[str, str]:
        """A cheap assignment that meets the target on the held-back samples: int8 for the
        least held-back noise per MAC while the bound holds, int16x8 for the rest."""
        a = {c: "int16x8" for c in self.macs}
        for c in sorted(self.macs, key=lambda c: self.int8[c] * self.held_factor[c] / self.macs[c]):
            a[c] = "int8"
            if self.held_bound(a).lower_db() < TARGET:
                a[c] = "int16x8"
        return a


class Bench:
    """Files are the assignment itself; a measurement is the model's noise."""

    plain = None

    def __init__(self, model: Model):
        self.model, self.conversions = model, 0

    def file(self, assignment):
        self.conversions += 1
        return tuple(sorted(assignment.items())), None, None

    def measure(self, data, feeds, refs):
        return self.model.measured(dict(data), feeds)


def search(model: Model):
    nodes = {c: auto._Node(c, macs, "CONV_2D") for c, macs in model.macs.items()}
    found, rounds = auto._search(
        Bench(model), nodes, TARGET, ("sens", None), ("calib", None), ("held", None)
    )
    return found[3], rounds, {c: n.precision for c, n in nodes.items()}


# diffuse: every node's int8 noise 2x on the held-back samples; concentrated: a quarter of
# the nodes 6x (their rows the calibration ranges missed), the rest as calibrated. Last: the
# share of the witness's int8 MACs the search must keep (concentrated: the calibration
# samples cannot show which nodes, so the search backs off by calibrated noise alone).
CASES = {"diffuse": (5, [2.0], 0.9), "concentrated": (5, [1.0, 1.0, 1.0, 6.0], 0.5)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_search_does_not_overshoot_a_cheaper_assignment_that_meets_the_target(case):
    seed, factors, keep = CASES[case]
    model = Model.make(seed, factors)
    # the premise: all-int8 misses; a choice that meets the target on the calibration
    # samples can miss on the held-back ones; a cheaper assignment than all-float meets it
    assert model.held_bound({}).lower_db() < TARGET
    witness = model.witness()
    assert model.held_bound(witness).lower_db() >= TARGET
    assert model.int8_share(witness) > 0.6
    got, rounds, chosen = search(model)
    assert got.lower_db() >= TARGET  # the file returned is confirmed on held-back samples
    assert model.held_bound(chosen).lower_db() == pytest.approx(got.lower_db())
    # not an overshoot: within 1.5 dB of the target on the held-back samples, and most of
    # the witness's int8 share (the search decides on the calibration samples)
    assert got.sqnr_db() < TARGET + 1.5, (got.sqnr_db(), rounds)
    assert model.int8_share(chosen) >= keep * model.int8_share(witness), (chosen, rounds)
