"""Ops with data-dependent output sizes: NonZero and Compress lower to WHERE (a dynamic-size
LiteRT tensor) and match onnxruntime exactly, shape included, when their output is a graph
output (nodes reading such an output: tests/test_data_dependent.py); Unique stays refused with
the precise reason (never the generic custom-op refusal or "pin your input shapes")."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, convert, expect_refusal, make_model
from onnx import helper

RNG = np.random.default_rng(23)


def _sparse(shape, dtype):
    """About half zeros; floats also carry -0.0 (a zero) and NaN (not a zero)."""
    values = RNG.standard_normal(shape)
    values[RNG.random(shape) < 0.5] = 0
    if np.dtype(dtype).kind == "f":
        flat = values.reshape(-1)
        flat[0], flat[-1] = -0.0, np.nan
        return values.astype(dtype)
    if dtype == np.bool_:
        return values != 0
    return (values * 10).astype(dtype)


def _nonzero_model(shape, dtype):
    return make_model(
        [helper.make_node("NonZero", ["x"], ["y"])],
        [("x", dtype, shape)],
        [("y", np.int64, (len(shape), "n"))],
        opset=13,
    )


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.bool_, np.uint8], ids=str)
def test_nonzero_matches_onnxruntime(shape, dtype):
    res = check_conversion(_nonzero_model(shape, dtype), feeds={"x": _sparse(shape, dtype)})
    assert res.ops["WHERE"] == 1
    (row,) = [r for r in res.report["io"] if r["kind"] == "output"]
    assert row["shape_signature"] == [len(shape), -1]


@pytest.mark.parametrize("dtype", [np.int8, np.int16], ids=str)
def test_nonzero_of_types_onnxruntime_lacks(dtype):
    """onnxruntime has no NonZero kernel for these: numpy's nonzero is the reference (8-bit
    inputs are widened before NOT_EQUAL, whose quantized path aborts without parameters)."""
    from onnx2tflite_direct.validate import run_litert

    x = _sparse((3, 5), dtype)
    res = convert(_nonzero_model((3, 5), dtype))
    got = run_litert(res.tflite_bytes, {"x": x}, res.report["io"])["y"]
    np.testing.assert_array_equal(got, np.stack(np.nonzero(x)))


def test_nonzero_size_follows_the_data_between_runs():
    """One file, inputs with different non-zero counts: each run gives its own size."""
    from onnx2tflite_direct.validate import run_litert

    model = _nonzero_model((4, 5), np.float32)
    res = convert(model)
    for fill in (0.2, 0.9):
        x = (RNG.random((4, 5)) < fill).astype(np.float32) * RNG.standard_normal((4, 5))
        x[0, 0] = 1.0  # never empty (LiteRT's Python API cannot read a zero-element tensor)
        got = run_litert(res.tflite_bytes, {"x": x.astype(np.float32)}, res.report["io"])["y"]
        np.testing.assert_array_equal(got, np.stack(np.nonzero(x)))


@pytest.mark.parametrize(
    ("shape", "axis", "cond_len"),
    [((4, 3), 0, 4), ((4, 3), 1, 3), ((2, 5, 3), -2, 5), ((2, 5, 3), 1, 3), ((3, 4), None, 12)],
    ids=str,
)
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_, np.uint8], ids=str)
def test_compress_matches_onnxruntime(shape, axis, cond_len, dtype):
    """Along an axis (negative too), with a condition shorter than the axis, and flattened."""
    attrs = {} if axis is None else {"axis": axis}
    model = make_model(
        [helper.make_node("Compress", ["x", "c"], ["y"], **attrs)],
        [("x", dtype, shape), ("c", np.bool_, (cond_len,))],
        [("y", dtype, ["n"] if axis is None else [f"d{k}" for k in range(len(shape))])],
        opset=11,
    )
    cond = RNG.random(cond_len) < 0.5
    cond[0] = True
    res = check_conversion(model, feeds={"x": _sparse(shape, dtype), "c": cond})
    assert res.ops["WHERE"] == 1 and res.ops["GATHER"] == 1


def test_compress_condition_longer_than_the_axis_is_refused():
    model = make_model(
        [helper.make_node("Compress", ["x", "c"], ["y"], axis=0)],
        [("x", np.float32, (2, 3)), ("c", np.bool_, (4,))],
        [("y", np.float32, None)],
        opset=11,
        check=False,
    )
    expect_refusal(model, "unsupported_attribute_value")


def test_unique_refusal_names_the_data_dependent_size():
    """Users get the precise reason, not the generic "pin your input shapes" advice."""
    model = make_model(
        [helper.make_node("Unique", ["x"], ["y"])],
        [("x", np.float32, (6,))],
        [("y", np.float32, ("n",))],
        opset=11,
    )
    err = expect_refusal(model, "dynamic_shape_unsupported")
    assert "number of unique elements" in err.message
    assert "--input-shape" not in err.message
