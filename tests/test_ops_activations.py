"""Activations: builtins where exact, compositions otherwise; attributes, dtypes, Clip with
constant and runtime bounds, PRelu with broadcast slopes, SwiGLU (against the ONNX reference
evaluator: onnxruntime does not run it)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model, run_node
from onnx import helper
from test_ops_causal_conv import check_against_reference

RNG = np.random.default_rng(2)


def x_of(dtype="float32", shape=(2, 3, 4, 5), scale=4.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


CASES = [
    ("Relu", {}, 14),
    ("LeakyRelu", {"alpha": 0.3}, 16),
    ("HardSwish", {}, 14),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 17),
    ("Elu", {}, 17),
    ("Elu", {"alpha": 0.5}, 17),
    ("Selu", {}, 17),
    ("Selu", {"alpha": 1.5, "gamma": 2.0}, 17),
    ("Celu", {}, 17),
    ("Celu", {"alpha": 2.0}, 17),
    ("Gelu", {}, 20),
    ("Gelu", {"approximate": "tanh"}, 20),
    ("Mish", {}, 18),
    ("Softplus", {}, 17),
    ("Softsign", {}, 17),
    ("ThresholdedRelu", {"alpha": 0.7}, 17),
    ("Shrink", {}, 17),
    ("Shrink", {"lambd": 1.5, "bias": 0.5}, 17),
    ("Sigmoid", {}, 13),
    ("Tanh", {}, 13),
]


@pytest.mark.parametrize("op, attrs, opset", CASES, ids=[f"{c[0]}{c[1]}" for c in CASES])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_activation(op, attrs, opset, dtype):
    if dtype == "float16" and op in (
        "Selu",
        "ThresholdedRelu",
        "Mish",
        "Softsign",
        "Celu",
        "Shrink",
    ):
        pytest.skip("onnxruntime has no float16 kernel")
    run_node(op, {"x": x_of(dtype)}, opset=opset, **attrs)


def test_softplus_large_inputs_do_not_overflow():
    x = np.array([-200.0, -30.0, 0.0, 30.0, 100.0, 200.0], np.float32)
    run_node("Softplus", {"x": x})


@pytest.mark.parametrize("dtype", ["int8", "int32"])
def test_relu_int(dtype):
    run_node("Relu", {"x": np.array([-100, -1, 0, 1, 100], dtype)}, opset=14)


@pytest.mark.parametrize(
    "lo, hi",
    [(0.0, 6.0), (0.0, None), (-1.0, 1.0), (-0.5, 2.5), (None, 1.5), (2.0, 1.0), (None, None)],
)
def test_clip_constant_bounds(lo, hi):
    x = x_of()
    inits, names = [], ["x"]
    for name, v in (("lo", lo), ("hi", hi)):
        names.append(name if v is not None else "")
        if v is not None:
            inits.append((name, np.array(v, np.float32)))
    while names and names[-1] == "":
        names.pop()
    model = make_model(
        [helper.make_node("Clip", names, ["y"])],
        inputs=[("x", np.float32, x.shape)],
        outputs=[("y", np.float32, x.shape)],
        initializers=inits,
        opset=13,
    )
    check_conversion(model, feeds={"x": x})


@pytest.mark.parametrize("dtype", ["float32", "int8", "int32", "int64", "uint8", "uint16"])
def test_clip_runtime_bounds(dtype):
    x = (
        np.arange(-10, 14).reshape(2, 3, 4).astype(dtype)
        if dtype[0] != "u"
        else np.arange(24).reshape(2, 3, 4).astype(dtype)
    )
    lo, hi = np.array(2, dtype), np.array(9, dtype)
    if dtype == "uint16":
        pytest.skip("onnxruntime has no uint16 Clip")
    run_node("Clip", {"x": x, "lo": lo, "hi": hi}, out_shape=x.shape, opset=13)


def test_clip_opset10_attributes():
    run_node("Clip", {"x": x_of()}, opset=10, min=-1.5, max=0.5)


@pytest.mark.parametrize("slope_shape", [(1,), (5,), (4, 1), (3, 1, 1), (2, 3, 4, 5)])
def test_prelu_broadcast(slope_shape):
    run_node("PRelu", {"x": x_of(), "s": x_of(shape=slope_shape, scale=0.5)})


@pytest.mark.parametrize("dtype", ["int32", "int64", "float16"])
def test_prelu_dtypes(dtype):
    run_node(
        "PRelu", {"x": x_of(dtype=np.float32).astype(dtype), "s": np.array([2, -1, 3, 1, 0], dtype)}
    )


@pytest.mark.parametrize("alpha", [None, 1.702])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(6,), (2, 3, 4)])
def test_swiglu(alpha, dtype, shape):
    attrs = {} if alpha is None else {"alpha": alpha}
    model = make_model(
        [helper.make_node("SwiGLU", ["a", "b"], ["y"], **attrs)],
        [("a", dtype, shape), ("b", dtype, shape)],
        [("y", dtype, shape)],
        opset=28,
    )
    rng = np.random.default_rng(1)
    feeds = {n: rng.standard_normal(shape).astype(dtype) for n in "ab"}
    check_against_reference(model, feeds)
