"""Broadcasting arithmetic: Add/Sub/Mul/Div over every supported dtype (small ints are widened
exactly), variadic Sum/Max/Min/Mean with broadcasting, Mod (fmod 0/1) and Pow type mixes."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from harness import expect_refusal, make_model, run_node, values
from onnx import TensorProto, helper

RNG = np.random.default_rng(0)


INT_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
@pytest.mark.parametrize("dtype", ["float32", "float16"] + INT_TYPES)
def test_add_sub_mul_dtypes(op, dtype):
    run_node(op, {"a": values(dtype, (2, 3, 4)), "b": values(dtype, (3, 1))})


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_small_int_overflow_wraps(dtype):
    info = np.iinfo(dtype)
    a = np.array([info.max, info.max - 1, info.min, 5], dtype)
    b = np.array([3, 100, info.max, 7], dtype)
    chk = run_node("Mul", {"a": a, "b": b})
    assert chk.ops["CAST"] == 3  # widened exactly, wrapped back


@pytest.mark.parametrize(
    "dtype", ["float32", "float16", "int8", "int16", "int32", "uint8", "uint16"]
)
def test_div(dtype):
    a = values(dtype, (2, 5), -50, 50)
    b = values(dtype, (5,), -7, 7, nonzero=True)
    run_node("Div", {"a": a, "b": b})


def test_int_div_truncates_toward_zero():
    a = np.array([-7, 7, -7, 7, -1, 1], np.int32)
    b = np.array([2, -2, -2, 2, 3, -3], np.int32)
    chk = run_node("Div", {"a": a, "b": b})
    assert chk.actual["y"].tolist() == [-3, -3, 3, 3, 0, 0]


def _wide_ints(dtype, n, magnitude_bits):
    """``n`` values of ``dtype`` spread over magnitudes up to 2^magnitude_bits, both signs."""
    info = np.iinfo(dtype)
    bits = RNG.integers(0, magnitude_bits, size=n)
    mags = (RNG.random(n) * (2.0**bits)).astype(np.float64)
    vals = np.clip(np.round(mags), 1, float(info.max) / 2).astype(dtype)
    return np.where(RNG.random(n) < 0.5, vals, -vals) if info.min < 0 else vals


INT64_EDGES_A = [np.iinfo(np.int64).max, np.iinfo(np.int64).min, -(2**62) - 12345, 2**53 + 1]
INT64_EDGES_A += [7, -7, 7, -7, 0, 2**63 - 2]
INT64_EDGES_B = [1, 1, 3, -(2**40) - 17, 2, 2, -2, -2, 5, 2**63 - 1]


@pytest.mark.parametrize("b_bits", [4, 20, 40, 62])
def test_int64_div_exact_over_full_range(b_bits):
    a = np.concatenate([_wide_ints(np.int64, 190, 63), np.array(INT64_EDGES_A, np.int64)])
    b = np.concatenate([_wide_ints(np.int64, 190, b_bits), np.array(INT64_EDGES_B, np.int64)])
    chk = run_node("Div", {"a": a, "b": b})
    assert chk.actual["y"].tolist() == [
        _trunc(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)
    ]


def _trunc(x: int, y: int) -> int:
    """Python-int division rounded toward zero (the ONNX integer Div)."""
    q = abs(x) // abs(y)
    return q if (x < 0) == (y < 0) else -q


@pytest.mark.parametrize("dtype", ["int64", "uint32"])
def test_int_div_wide_broadcast(dtype):
    a = _wide_ints(dtype, 24, 31).reshape(2, 3, 4)
    b = _wide_ints(dtype, 4, 9)
    run_node("Div", {"a": a, "b": b})
    if dtype == "uint32":  # the top of the unsigned range
        run_node(
            "Div", {"a": np.array([2**32 - 1, 2**31 + 5], dtype), "b": np.array([1, 3], dtype)}
        )


@pytest.mark.parametrize("dtype", ["uint64", "float64"])
def test_div_refuses_inexact_types(dtype):
    model = make_model(
        [helper.make_node("Div", ["a", "b"], ["y"])],
        inputs=[("a", dtype, (3,)), ("b", dtype, (3,))],
        outputs=[("y", dtype, (3,))],
    )
    expect_refusal(model, "unsupported_dtype")


@pytest.mark.parametrize("op", ["Sum", "Max", "Min", "Mean"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_variadic_broadcast(op, n):
    shapes = [(2, 3, 4), (3, 1), (4,)][:n]
    run_node(op, {f"x{i}": values("float32", s) for i, s in enumerate(shapes)})


@pytest.mark.parametrize("op", ["Max", "Min"])
@pytest.mark.parametrize("dtype", ["float64", "float16", "int8", "uint8", "uint32", "int64"])
def test_max_min_dtypes(op, dtype):
    run_node(op, {"a": values(dtype, (3, 4)), "b": values(dtype, (4,))})


@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize(
    "dtype", ["float32", "float16", "int8", "int32", "int64", "uint8", "uint32"]
)
def test_mod(fmod, dtype):
    if fmod == 0 and np.dtype(dtype).kind == "f":
        pytest.skip("onnxruntime requires fmod=1 for floats")
    a = values(dtype, (3, 4), -30, 30)
    b = values(dtype, (4,), -7, 7, nonzero=True)
    run_node("Mod", {"a": a, "b": b}, fmod=fmod)


@pytest.mark.parametrize(
    "base, exp",
    [
        ("float32", "float32"),
        ("float32", "int32"),
        ("float32", "int64"),
        ("int32", "int32"),
        ("int32", "float32"),
        ("float16", "float16"),
    ],
)
def test_pow(base, exp):
    a = values(base, (2, 3), 1, 4) if base != "float32" else np.abs(values(base, (2, 3), 0.5, 4))
    b = values(exp, (3,), 0, 3)
    run_node("Pow", {"a": a, "b": b}, out_dtype=a.dtype)


def test_bfloat16_add_via_float32():
    a = values("float32", (2, 3)).astype(ml_dtypes.bfloat16)
    b = values("float32", (2, 3)).astype(ml_dtypes.bfloat16)
    model = make_model(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        inputs=[("a", TensorProto.BFLOAT16, (2, 3)), ("b", TensorProto.BFLOAT16, (2, 3))],
        outputs=[("y", TensorProto.BFLOAT16, (2, 3))],
    )
    from onnx2tflite_direct import convert

    res = convert(model)
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=res.tflite_bytes).get_signature_runner()
    got = runner(a=a, b=b)["y"].astype(np.float32)
    want = (
        (a.astype(np.float32) + b.astype(np.float32)).astype(ml_dtypes.bfloat16).astype(np.float32)
    )
    np.testing.assert_array_equal(got, want)


def test_pow_float_base_uint64_exponent():
    """onnxruntime has no kernel for this mix: compare with numpy."""
    from ai_edge_litert.interpreter import Interpreter
    from harness import convert

    a = np.array([[0.5, 2.0, 3.0], [1.0, 4.0, 0.25]], np.float32)
    # 0.5 ** (2^63 + 2) underflows to 0 (read as a negative int64 it would overflow to inf)
    b = np.array([2**63 + 2, 3, 7], np.uint64)
    model = make_model(
        [helper.make_node("Pow", ["a", "b"], ["y"])],
        inputs=[("a", "float32", a.shape), ("b", "uint64", b.shape)],
        outputs=[("y", "float32", a.shape)],
    )
    runner = Interpreter(model_content=convert(model).tflite_bytes).get_signature_runner()
    np.testing.assert_allclose(runner(a=a, b=b)["y"], np.power(a, b.astype(np.float64)), 1e-6)
