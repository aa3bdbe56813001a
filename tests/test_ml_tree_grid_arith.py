"""The grid strategy's arithmetic next-node table (``lowering/ml_tree_grid.py``, chosen by
``ml_trees.arith_table``) against onnxruntime.

The table is ``false_slot + d * (true_slot - false_slot)`` in float32 with the decisions ``d``
from ``min(relu((nextafter(t) - v) * 2^127), 1)`` (SUB, MUL, MINIMUM, MUL, ADD in XNNPACK, no
LESS_EQUAL or SELECT_V2), and the walk CASTs its float slots to int32. Each test forces the
grid and the table form, checks from the written ops that the arithmetic ran (MINIMUM, no
LESS_EQUAL), and compares with onnxruntime: labels exactly, scores within the harness
tolerance. Inputs sit on the thresholds and on their float32 neighbours and carry NaN (by
missing-value track or not), +-inf, +-FLT_MAX, -0.0 and subnormals; every order mode; batch 1
(leaves after the grid), 16 and row blocks. Thresholds at or near zero, or infinite, keep the
comparison.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion
from test_ml_tree_path import F, _model
from test_ops_ml import ORDER_MODES, _full_trees, _legacy_attrs, _seed, random_trees

SPECIAL = np.array(
    [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-45, 1e-39, 3e38, -3e38, 3.4028235e38],
    np.float32,
)


@pytest.fixture
def arith(monkeypatch):
    from onnx2tflite_direct.lowering import ml_tree_grid, ml_trees

    monkeypatch.setattr(ml_trees, "STRATEGY", "grid")
    monkeypatch.setattr(ml_tree_grid, "TABLE", "arith")


def _forest(rng, modes, tracks, n_out, choices):
    a, w = random_trees(rng, 8, 4, modes=modes, tracks=tracks, n_out=n_out)
    for i, m in enumerate(a["mode"]):
        if m != "LEAF":
            a["val"][i] = float(np.float32(rng.choice(choices)))
    return a, w


def _inputs(rng, a, rows):
    thr = np.array(sorted({v for v, m in zip(a["val"], a["mode"], strict=True) if m != "LEAF"}))
    thr = thr.astype(np.float32)
    near = np.concatenate([thr, np.nextafter(thr, np.inf), np.nextafter(thr, -np.inf), SPECIAL])
    return rng.choice(near, (rows, F)).astype(np.float32)


def _ran_arith(chk, arithmetic=True):
    notes = [n for r in chk.result.report["nodes"] for n in r.get("notes", [])]
    assert any("walked by the grid strategy" in n for n in notes), notes
    if arithmetic:
        assert "MINIMUM" in chk.ops and "LESS_EQUAL" not in chk.ops, chk.ops
    else:
        assert "MINIMUM" not in chk.ops and chk.ops.get("LESS_EQUAL", 0) >= 1, chk.ops


CHOICES = [-3.5, -1.0, -(2.0**-90), 2.0**-90, 0.75, 2.0, 1e30, -1e30, 3.4e38, -3.4e38]


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
@pytest.mark.parametrize("mode", [*ORDER_MODES, "mixed"])
@pytest.mark.parametrize("tracks", [False, True])
@pytest.mark.parametrize("rows", [1, 16])
def test_grid_arith_modes_ties_nan_inf(kind, mode, tracks, rows, arith):
    """Each order mode (and all four mixed), NaN sent by its missing-value track or not,
    inputs on every threshold and both its neighbours, infinities, +-FLT_MAX, -0.0 and
    subnormals (XNNPACK flushes them; no threshold is within 2^-100 of zero): decided exactly
    as onnxruntime by the arithmetic table."""
    rng = np.random.default_rng(_seed("grid_arith", kind, mode, tracks, rows))
    modes = ORDER_MODES if mode == "mixed" else (mode,)
    a, w = _forest(rng, modes, tracks, 3, CHOICES)
    x = _inputs(rng, a, 64 if rows == 16 else 1)
    if rows == 16:
        for k in range(4):  # 64 samples, 16 at a time
            part = x[16 * k : 16 * (k + 1)]
            chk = check_conversion(_model(kind, a, w, 3, 16, tracks), feeds={"x": part})
    else:
        chk = check_conversion(_model(kind, a, w, 3, 1, tracks), feeds={"x": x})
    _ran_arith(chk)


@pytest.mark.parametrize("block", [1, 5])
def test_grid_arith_row_blocks(block, arith, monkeypatch):
    """Row blocks (16 of one row, whose leaves go after the grid as float self loops; or 5, 5,
    5, 1 rows): one arithmetic table and walk per block."""
    from onnx2tflite_direct.lowering import ml_tree_grid

    monkeypatch.setattr(ml_tree_grid, "BLOCK", block)
    rng = np.random.default_rng(_seed("grid_arith_blocks", block))
    a, w = _forest(rng, ORDER_MODES, True, 3, CHOICES)
    chk = check_conversion(
        _model("classifier", a, w, 3, 16, True), feeds={"x": _inputs(rng, a, 16)}
    )
    _ran_arith(chk)
    assert chk.ops["MINIMUM"] == -(-16 // block), chk.ops


@pytest.mark.parametrize("threshold", [0.0, -0.0, 1e-39, -(2.0**-101), np.inf, -np.inf])
def test_grid_arith_keeps_the_comparison(threshold, arith):
    """A threshold at or near zero (a subnormal difference could be flushed) or infinite
    (``inf - inf``): the table is LESS_EQUAL and SELECT_V2 even when the arithmetic is forced,
    still exact on the same adversarial inputs."""
    rng = np.random.default_rng(_seed("grid_arith_keep", str(threshold)))
    a, w = _forest(rng, ORDER_MODES, True, 2, CHOICES)
    first = a["mode"].index(next(m for m in a["mode"] if m != "LEAF"))
    a["val"][first] = float(threshold)
    chk = check_conversion(_model("regressor", a, w, 2, 16, True), feeds={"x": _inputs(rng, a, 16)})
    _ran_arith(chk, arithmetic=False)


def test_grid_arith_cost_model_choice():
    """The cost model (measured per-element costs, ``ml_tree_grid.grid_ns``) builds the table
    of a random-forest-like grid (20 full trees of depth 6 at 16 rows) by arithmetic, and keeps
    the comparison where a threshold is zero."""
    from onnx2tflite_direct.lowering.ml_forest import parse_legacy
    from onnx2tflite_direct.lowering.ml_tree_grid import plan_grid
    from onnx2tflite_direct.lowering.ml_trees import arith_table

    a, w = _full_trees(np.random.default_rng(3), 20, 6)
    forest = parse_legacy(_legacy_attrs(a, w, "target", False), "target", 1, "SUM")
    assert arith_table(forest, plan_grid(forest, F, 16), 16)
    a["val"][0] = 0.0
    forest = parse_legacy(_legacy_attrs(a, w, "target", False), "target", 1, "SUM")
    assert not arith_table(forest, plan_grid(forest, F, 16), 16)


def test_grid_rows_are_the_input_columns(arith):
    """When every feature has splits and the leaves fit in the rows' free slots, the grid's
    rows are the input's columns in order (each row one feature, as wide as the most used
    feature needs): no GATHER picks feature rows, one GATHER a tree level and the leaves'."""
    from onnx2tflite_direct.lowering.ml_forest import parse_legacy
    from onnx2tflite_direct.lowering.ml_tree_grid import plan_grid

    rng = np.random.default_rng(_seed("grid_rows_columns"))
    a, w = _forest(rng, ("BRANCH_LEQ",), False, 3, CHOICES)
    forest = parse_legacy(_legacy_attrs(a, w, "class", False), "class", 3, "SUM")
    plan = plan_grid(forest, F, 16)
    assert list(plan.row_src) == list(range(F)), plan.row_src
    chk = check_conversion(
        _model("classifier", a, w, 3, 16, False), feeds={"x": _inputs(rng, a, 16)}
    )
    _ran_arith(chk)
    assert chk.ops["GATHER"] == max(forest.tree_depths()) + 1, chk.ops
