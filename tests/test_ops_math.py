"""Unary math: direct builtins and exact compositions, over float32/float16 and the integer
types that apply, on inputs inside each function's domain."""

from __future__ import annotations

import numpy as np
import pytest
from harness import expect_refusal, make_model, run_node
from onnx import helper

RNG = np.random.default_rng(1)

# op -> (low, high) of the sampled domain
DOMAINS = {
    "Abs": (-5, 5),
    "Neg": (-5, 5),
    "Exp": (-5, 5),
    "Log": (0.01, 10),
    "Sqrt": (0, 10),
    "Reciprocal": (0.5, 5),
    "Floor": (-5, 5),
    "Ceil": (-5, 5),
    "Sign": (-5, 5),
    "Sin": (-6, 6),
    "Cos": (-6, 6),
    "Tan": (-1.4, 1.4),
    "Asin": (-1, 1),
    "Acos": (-1, 1),
    "Atan": (-10, 10),
    "Sinh": (-4, 4),
    "Cosh": (-4, 4),
    "Asinh": (-10, 10),
    "Acosh": (1, 10),
    "Atanh": (-0.99, 0.99),
    "Erf": (-4, 4),
    "Tanh": (-4, 4),
    "Sigmoid": (-8, 8),
}


def sample(op, dtype, shape=(2, 3, 5)):
    low, high = DOMAINS[op]
    return RNG.uniform(low, high, size=shape).astype(dtype)


@pytest.mark.parametrize("op", sorted(DOMAINS))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_unary_float(op, dtype):
    if dtype == "float16" and op in (
        "Asin",
        "Acos",
        "Atan",
        "Erf",
        "Sinh",
        "Cosh",
        "Tan",
        "Asinh",
        "Acosh",
        "Atanh",
    ):
        pytest.skip("onnxruntime has no float16 kernel")
    run_node(op, {"x": sample(op, dtype)}, opset=13)


def test_erf_edges():
    x = np.array([0.0, 1e-6, -1e-6, 0.5, -0.5, 3.0, -3.0, 6.0, -6.0, np.inf, -np.inf], np.float32)
    run_node("Erf", {"x": x})


def test_round_half_to_even():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49, -3.7], np.float32)
    chk = run_node("Round", {"x": x})
    assert chk.ops == {"ROUND": 1}


@pytest.mark.parametrize("op", ["Abs", "Neg", "Sign"])
@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64"])
def test_unary_int(op, dtype):
    x = np.array([-100, -3, -1, 0, 1, 7, 100], dtype)
    run_node(op, {"x": x})


@pytest.mark.parametrize("dtype", ["uint8", "uint32"])
def test_abs_unsigned(dtype):
    run_node("Abs", {"x": np.array([0, 1, 200, 255], dtype)})


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_isnan(dtype):
    x = np.array([1.0, np.nan, -np.inf, np.inf, 0.0, -np.nan], dtype)
    run_node("IsNaN", {"x": x}, out_dtype=np.bool_, opset=20)


@pytest.mark.parametrize("pos, neg", [(1, 1), (1, 0), (0, 1), (0, 0)])
def test_isinf(pos, neg):
    x = np.array([1.0, np.nan, -np.inf, np.inf, 0.0, 3e38], np.float32)
    run_node("IsInf", {"x": x}, out_dtype=np.bool_, detect_positive=pos, detect_negative=neg)


@pytest.mark.parametrize("op", ["Exp", "Sin", "Erf"])
def test_float64_refused(op):
    model = make_model(
        [helper.make_node(op, ["x"], ["y"])],
        inputs=[("x", np.float64, (3,))],
        outputs=[("y", np.float64, (3,))],
    )
    expect_refusal(model, "unsupported_dtype")
