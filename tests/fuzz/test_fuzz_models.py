"""Short fuzz run for CI: mutated small models must be refused with a typed error or run.

The long run (thousands of examples, crash-isolated workers) is ``tools/fuzz_long.py``.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.mutators import classify_conversion, mutate, run_litert, seed_models

SEEDS = seed_models()


@pytest.fixture(autouse=True)
def _quiet_converter():
    """Silence the converter's warnings here only (restored: other tests assert on them)."""
    logger = logging.getLogger("onnx2tflite_direct")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed_name=st.sampled_from(sorted(SEEDS)), example_seed=st.integers(0, 2**31 - 1))
def test_mutated_model_is_refused_cleanly_or_runs(seed_name, example_seed):
    model, applied = mutate(SEEDS[seed_name], example_seed)
    outcome, detail, tflite = classify_conversion(model)
    where = f"seed={seed_name} example_seed={example_seed} mutations={applied}"
    assert outcome not in ("internal_error", "raw_exception"), f"{where}: {detail}"
    if tflite is not None:
        try:
            run_litert(tflite)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"{where}: LiteRT rejected the converted model: {exc}")


@pytest.mark.parametrize("seed_name", sorted(SEEDS))
def test_seeds_convert_and_run(seed_name):
    outcome, detail, tflite = classify_conversion(SEEDS[seed_name])
    assert outcome == "converted", detail
    run_litert(tflite)


# Examples of tools/fuzz_long.py that once failed (index -> what went wrong), replayed here:
# the mutator crashing on an already-broken initializer (6617, 8125, 15222), an out-of-range
# Conv stride reaching the builder (15629, 18304), a Softmax axis beyond the rank that shape
# inference let through after an opset change (16547).
LONG_RUN_REGRESSIONS = (6617, 8125, 15222, 15629, 16547, 18304)


@pytest.mark.parametrize("index", LONG_RUN_REGRESSIONS)
def test_long_run_regressions_stay_typed(index):
    names = sorted(SEEDS)
    model, applied = mutate(SEEDS[names[index % len(names)]], index)
    outcome, detail, tflite = classify_conversion(model)
    assert outcome not in ("internal_error", "raw_exception"), f"{index} {applied}: {detail}"
    if tflite is not None:
        run_litert(tflite)
