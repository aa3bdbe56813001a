"""uint64 through int64 images (BITCAST, plus a top-bit flip for ordering), proven against
onnxruntime on values that straddle 2^63 and wrap around 2^64."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

BIG = np.array(
    [0, 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1, 12345678901234567890, 7, 2**32], np.uint64
)
OTHER = np.array([2**64 - 1, 0, 2**63, 2**63 - 1, 5, 2**64 - 1, 3, 2**63 + 7, 2**32 + 1], np.uint64)


def _binary_model(op: str, out_dtype, shape_b=(9,)):
    return make_model(
        [helper.make_node(op, ["a", "b"], ["y"])],
        inputs=[("a", np.uint64, (9,)), ("b", np.uint64, shape_b)],
        outputs=[("y", out_dtype, (9,))],
        opset=13,
    )


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Max", "Min"])
def test_uint64_arithmetic_wraps_and_orders(op):
    chk = check_conversion(_binary_model(op, np.uint64), feeds={"a": BIG, "b": OTHER})
    assert "BITCAST" in chk.ops


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
def test_uint64_comparisons(op):
    check_conversion(_binary_model(op, np.bool_), feeds={"a": BIG, "b": OTHER})


def test_uint64_broadcast_scalar():
    feeds = {"a": BIG, "b": np.array([2**63], np.uint64)}
    check_conversion(_binary_model("Less", np.bool_, shape_b=(1,)), feeds=feeds)
    check_conversion(_binary_model("Add", np.uint64, shape_b=(1,)), feeds=feeds)


@pytest.mark.parametrize("op", ["Div", "Mod"])
def test_uint64_division_refused(op):
    expect_refusal(_binary_model(op, np.uint64), "unsupported_dtype")
