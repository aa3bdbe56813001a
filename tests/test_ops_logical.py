"""Comparisons (with widened int types), boolean logic, bitwise ops, BitShift, Where."""

from __future__ import annotations

import numpy as np
import pytest
from harness import expect_refusal, make_model
from onnx import helper

from tests.test_ops_elementwise import run_node, values

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
@pytest.mark.parametrize(
    "dtype", ["float32", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"]
)
def test_comparisons(op, dtype):
    if dtype == "uint16" and op != "Equal":
        pytest.skip("onnxruntime has no uint16 kernel")
    a = values(dtype, (2, 3, 4), -4, 4)
    b = values(dtype, (3, 1), -4, 4)
    run_node(op, {"a": a, "b": b}, out_dtype=np.bool_)


def test_equal_bool():
    a = RNG.integers(0, 2, (3, 4)).astype(bool)
    run_node("Equal", {"a": a, "b": a[:1]}, out_dtype=np.bool_)


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
@pytest.mark.parametrize("shape_b", [(3, 4), (4,), (1, 1)])
def test_logical(op, shape_b):
    a = RNG.integers(0, 2, (2, 3, 4)).astype(bool)
    b = RNG.integers(0, 2, shape_b).astype(bool)
    run_node(op, {"a": a, "b": b})


def test_not():
    run_node("Not", {"a": RNG.integers(0, 2, (2, 3)).astype(bool)})


SMALL = ["int8", "int16", "uint8", "uint16"]


@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
@pytest.mark.parametrize("dtype", SMALL)
def test_bitwise_small(op, dtype):
    info = np.iinfo(dtype)
    a = RNG.integers(info.min, info.max, (3, 4), endpoint=True).astype(dtype)
    b = RNG.integers(info.min, info.max, (4,), endpoint=True).astype(dtype)
    run_node(op, {"a": a, "b": b}, opset=18)


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint8", "uint16", "uint32"])
def test_bitwise_not_and_xor(dtype):
    info = np.iinfo(dtype)
    a = RNG.integers(info.min, info.max, (3, 4), endpoint=True).astype(dtype)
    run_node("BitwiseNot", {"a": a}, opset=18)
    run_node("BitwiseXor", {"a": a, "b": a[::-1]}, opset=18)


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_bitwise_and_64_refused(dtype):
    model = make_model(
        [helper.make_node("BitwiseAnd", ["a", "b"], ["y"])],
        inputs=[("a", dtype, (3,)), ("b", dtype, (3,))],
        outputs=[("y", dtype, (3,))],
        opset=18,
    )
    expect_refusal(model, "unsupported_dtype")


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32"])
def test_bitshift(direction, dtype):
    width = np.dtype(dtype).itemsize * 8
    info = np.iinfo(dtype)
    x = RNG.integers(0, info.max, (2, 8), endpoint=True).astype(dtype)
    s = RNG.integers(0, width - 1, (8,), endpoint=True).astype(dtype)
    run_node("BitShift", {"x": x, "s": s}, direction=direction, opset=11)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8", "int64", "uint16", "float64"])
def test_where(dtype):
    cond = RNG.integers(0, 2, (2, 3, 4)).astype(bool)
    x = values(dtype, (3, 4))
    y = values(dtype, (4,))
    if dtype == "uint16":
        pytest.skip("onnxruntime has no uint16 Where")
    run_node("Where", {"c": cond, "t": x, "f": y}, out_dtype=x.dtype)
