"""Strength reduction (onnx2tflite_direct/strength_reduction.py): each rule changes the op
histogram as intended, matches onnxruntime, reports itself and turns off by name."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

RNG = np.random.default_rng(7)
RULE_NAMES = (
    "pow_constant_exponent",
    "div_by_constant",
    "remove_identity_arith",
    "where_constant_condition",
    "gather_as_reshape",
    "gather_as_slice",
)
F = np.float32
X = (2, 3, 8, 8)


def _rules(chk) -> dict[str, int]:
    """Rule -> matched count (rules that matched nothing are absent from the report)."""
    found = {r["rule"]: r["matched"] for r in chk.report["rewrites"]}
    return {k: found.get(k, 0) for k in (*found, *RULE_NAMES)}


def _pow_model(exponent, dtype=F):
    return make_model(
        [helper.make_node("Pow", ["x", "e"], ["p"]), helper.make_node("Add", ["p", "x"], ["y"])],
        [("x", F, X)],
        [("y", F, X)],
        {"e": np.array(exponent, dtype)},
    )


POSITIVE = {"x": RNG.uniform(0.05, 9.0, X).astype(F)}
SIGNED = {"x": RNG.uniform(-4.0, 4.0, X).astype(F)}


@pytest.mark.parametrize(
    "exponent, ops, feeds",
    [
        (2.0, {"MUL": 1, "ADD": 1}, SIGNED),
        (3.0, {"MUL": 2, "ADD": 1}, SIGNED),
        (0.5, {"SQRT": 1, "ADD": 1}, POSITIVE),
        (-0.5, {"SQRT": 1, "DIV": 1, "ADD": 1}, POSITIVE),
        (-1.0, {"DIV": 1, "ADD": 1}, POSITIVE),
        (1.0, {"ADD": 1}, SIGNED),
    ],
)
def test_pow_with_a_constant_exponent_becomes_cheaper_ops(exponent, ops, feeds):
    chk = check_conversion(_pow_model(exponent), feeds=feeds)
    assert dict(chk.ops) == ops
    assert _rules(chk)["pow_constant_exponent"] == 1
    literal = check_conversion(
        _pow_model(exponent), feeds=feeds, disable_rewrites=("pow_constant_exponent",)
    )
    assert literal.ops["POW"] == 1


def test_pow_with_an_integer_exponent_tensor_and_other_exponents():
    chk = check_conversion(_pow_model(2, np.int64), feeds=SIGNED)
    assert dict(chk.ops) == {"MUL": 1, "ADD": 1}
    chk = check_conversion(_pow_model(1.5), feeds=POSITIVE)  # not reduced: stays POW
    assert chk.ops["POW"] == 1 and _rules(chk)["pow_constant_exponent"] == 0
    # a per-element exponent is not one constant: stays POW
    model = make_model(
        [helper.make_node("Pow", ["x", "e"], ["y"])],
        [("x", F, (2, 3))],
        [("y", F, (2, 3))],
        {"e": np.array([2.0, 0.5, 1.0], F)},
    )
    chk = check_conversion(model, feeds={"x": RNG.uniform(0.1, 3, (2, 3)).astype(F)})
    assert chk.ops["POW"] == 1


@pytest.mark.parametrize("exponent", [2.0, 3.0])
def test_integer_powers_are_bit_exact_with_onnxruntime(exponent):
    model = make_model(
        [helper.make_node("Pow", ["x", "e"], ["y"])],
        [("x", F, X)],
        [("y", F, X)],
        {"e": np.array(exponent, F)},
    )
    check_conversion(model, feeds={"x": RNG.uniform(-40, 40, X).astype(F)}, atol=0, rtol=0)


def test_pow_whose_output_is_a_graph_output():
    model = make_model(
        [helper.make_node("Pow", ["x", "e"], ["y"])], [("x", F, X)], [("y", F, X)], {"e": F(2)}
    )
    chk = check_conversion(model, feeds=SIGNED)
    assert dict(chk.ops) == {"MUL": 1}


def _div_model(divisor):
    return make_model(
        [helper.make_node("Div", ["x", "c"], ["y"])],
        [("x", F, X)],
        [("y", F, X)],
        {"c": np.asarray(divisor, F)},
    )


@pytest.mark.parametrize(
    "divisor", [8.0, 0.25, -2.0, np.array([1, 2, 4, 0.5, 2, 1, 1, 16], F), 2.0**-100]
)
def test_div_by_a_power_of_two_becomes_an_exact_mul(divisor):
    # (no subnormal inputs or results: XNNPACK flushes them to zero whichever op it runs)
    x = RNG.standard_normal(X).astype(F) * 30
    x.flat[:3] = [3.0e38 if np.max(np.abs(divisor)) >= 1 else 1e8, -5e-30, 0.0]
    chk = check_conversion(_div_model(divisor), feeds={"x": x}, atol=0, rtol=0)
    assert dict(chk.ops) == {"MUL": 1}
    assert _rules(chk)["div_by_constant"] == 1
    exact = np.asarray(x / np.asarray(divisor, F), F)  # numpy: a true float32 division
    np.testing.assert_array_equal(chk.validation.actual["y"], exact)


@pytest.mark.parametrize("divisor", [3.0, np.sqrt(2.0), 0.1])
def test_div_by_other_constants_stays_a_division(divisor):
    # x * (1/3) rounds twice: up to 1.5 ulp off onnxruntime's true division
    chk = check_conversion(_div_model(divisor), feeds={"x": RNG.standard_normal(X).astype(F)})
    assert dict(chk.ops) == {"DIV": 1}
    assert _rules(chk)["div_by_constant"] == 0


@pytest.mark.parametrize(
    "op, const, pos",
    [("Add", 0.0, 1), ("Add", 0.0, 0), ("Sub", 0.0, 1), ("Mul", 1.0, 0), ("Div", 1.0, 1)],
)
def test_neutral_arithmetic_disappears(op, const, pos):
    inputs = ["x", "k"] if pos == 1 else ["k", "x"]
    model = make_model(
        [helper.make_node(op, inputs, ["a"]), helper.make_node("Tanh", ["a"], ["y"])],
        [("x", F, X)],
        [("y", F, X)],
        {"k": np.full((1, 3, 1, 1), const, F)},
    )
    chk = check_conversion(model, feeds=SIGNED)
    assert dict(chk.ops) == {"TANH": 1}
    assert _rules(chk)["remove_identity_arith"] == 1
    kept = check_conversion(model, feeds=SIGNED, disable_rewrites=("remove_identity_arith",))
    assert sum(kept.ops.values()) == 2


def test_neutral_constant_that_broadcasts_or_sits_on_the_wrong_side_stays():
    nodes = [
        helper.make_node("Add", ["x", "zeros"], ["a"]),  # broadcasts x to [2, 3, 8, 8]
        helper.make_node("Sub", ["zero", "x"], ["b"]),  # 0 - x is a negation
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("x", F, (3, 8, 8))],
        [("y", F, X)],
        {"zeros": np.zeros((2, 1, 1, 1), F), "zero": np.array(0, F)},
    )
    chk = check_conversion(model, feeds={"x": RNG.standard_normal((3, 8, 8)).astype(F)})
    assert _rules(chk)["remove_identity_arith"] == 0
    assert chk.ops["ADD"] + chk.ops["SUB"] >= 2


@pytest.mark.parametrize("value, branch", [(True, "a"), (False, "b")])
def test_where_with_a_constant_condition_is_the_chosen_branch(value, branch):
    model = make_model(
        [
            helper.make_node("Where", ["c", "a", "b"], ["w"]),
            helper.make_node("Mul", ["w", "a"], ["y"]),
        ],
        [("a", F, X), ("b", F, X)],
        [("y", F, X)],
        {"c": np.full((1, 3, 1, 1), value, np.bool_)},
    )
    feeds = {k: RNG.standard_normal(X).astype(F) for k in "ab"}
    chk = check_conversion(model, feeds=feeds)
    assert dict(chk.ops) == {"MUL": 1}
    assert _rules(chk)["where_constant_condition"] == 1
    kept = check_conversion(model, feeds=feeds, disable_rewrites=("where_constant_condition",))
    assert kept.ops["SELECT_V2"] == 1


def test_where_with_a_mixed_constant_condition_stays():
    model = make_model(
        [helper.make_node("Where", ["c", "a", "b"], ["y"])],
        [("a", F, X), ("b", F, X)],
        [("y", F, X)],
        {"c": np.array([True, False, True, True, False, True, False, True])},
    )
    feeds = {k: RNG.standard_normal(X).astype(F) for k in "ab"}
    chk = check_conversion(model, feeds=feeds)
    assert chk.ops["SELECT_V2"] == 1


def test_gather_of_the_whole_axis_in_order_is_a_reshape():
    # torch dynamo's as_strided: a [32] vector gathered by arange(32) shaped [1, 32, 1, 1]
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[0, 2, 3], keepdims=0),
        helper.make_node("Gather", ["m", "idx"], ["g"], axis=0),
        helper.make_node("Mul", ["x", "g"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("x", F, (1, 32, 4, 4))],
        [("y", F, (1, 32, 4, 4))],
        {"idx": np.arange(32, dtype=np.int64).reshape(1, 32, 1, 1)},
        opset=13,
    )
    chk = check_conversion(model, feeds={"x": RNG.standard_normal((1, 32, 4, 4)).astype(F)})
    assert "GATHER" not in chk.ops
    assert _rules(chk)["gather_as_reshape"] == 1
    kept = check_conversion(
        model,
        feeds={"x": RNG.standard_normal((1, 32, 4, 4)).astype(F)},
        disable_rewrites=("gather_as_reshape",),
    )
    assert kept.ops["GATHER"] == 1


@pytest.mark.parametrize(
    "idx, rule",
    [
        ([0, 2, 1, 3], None),  # a permutation stays a GATHER
        ([3, 1], None),
        ([0, 1, 2], "gather_as_slice"),
        ([-3, -2], "gather_as_slice"),
        (2, "gather_as_slice"),  # a scalar index: an unrolled RNN's x[t]
        ([-4, -3, -2, -1], "gather_as_reshape"),
    ],
)
def test_gather_of_a_run_is_a_slice_others_stay(idx, rule):
    idx = np.array(idx, np.int64)
    out = (2, *idx.shape, 5)
    model = make_model(
        [helper.make_node("Gather", ["x", "i"], ["y"], axis=1)],
        [("x", F, (2, 4, 5))],
        [("y", F, out)],
        {"i": idx},
    )
    feeds = {"x": RNG.standard_normal((2, 4, 5)).astype(F)}
    chk = check_conversion(model, feeds=feeds, atol=0, rtol=0)
    assert (chk.ops["GATHER"] == 0) == (rule is not None)
    if rule is not None:
        assert _rules(chk)[rule] == 1
        kept = check_conversion(model, feeds=feeds, disable_rewrites=(rule,))
        assert kept.ops["GATHER"] == 1


def test_gather_of_integer_data_is_left_alone():
    # only float data gains from a slice (XNNPACK); an int64 run stays one GATHER
    model = make_model(
        [helper.make_node("Gather", ["x", "i"], ["y"], axis=0)],
        [("x", np.int64, (6, 3))],
        [("y", np.int64, (2, 3))],
        {"i": np.array([1, 2], np.int64)},
    )
    chk = check_conversion(model, feeds={"x": np.arange(18, dtype=np.int64).reshape(6, 3)})
    assert chk.ops["GATHER"] == 1
