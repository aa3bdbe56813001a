"""Cast/CastLike between every TFLite-representable dtype pair, on values that are in range for
the target (ONNX leaves out-of-range float -> int undefined), plus refusals."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import TensorProto, helper

TYPES = [
    "float32",
    "float16",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "bool",
]


def in_range_values(src: str, dst: str) -> np.ndarray:
    """Values of ``src`` that every ``dst`` represents (truncation toward zero for floats)."""
    base = np.array([0, 1, 2, 3, 7, 100, 127, -1, -3, -100, -128, 0.5, -2.7, 99.9, 1.5], np.float64)
    if src == "bool" or dst == "bool":
        base = np.array([0, 1, 1, 0, 2, -3, 0.5], np.float64)
    for t in (src, dst):
        if np.dtype(t).kind in "ui":
            base = base[(base >= np.iinfo(t).min) & (base <= np.iinfo(t).max)]
            base = np.trunc(base)
    return base.astype(src)


@pytest.mark.parametrize("src", TYPES)
@pytest.mark.parametrize("dst", TYPES)
def test_cast_pairs(src, dst):
    x = in_range_values(src, dst)
    to = helper.np_dtype_to_tensor_dtype(np.dtype(dst))
    model = make_model(
        [helper.make_node("Cast", ["x"], ["y"], to=to)],
        inputs=[("x", src, x.shape)],
        outputs=[("y", dst, x.shape)],
    )
    check_conversion(model, feeds={"x": x})


def test_castlike_and_bfloat16():
    x = np.array([1.0, -2.5, 3.14159, 1e5, -7e-3], np.float32)
    model = make_model(
        [helper.make_node("CastLike", ["x", "like"], ["y"])],
        inputs=[("x", np.float32, (5,)), ("like", TensorProto.BFLOAT16, (1,))],
        outputs=[("y", TensorProto.BFLOAT16, (5,))],
    )
    from ai_edge_litert.interpreter import Interpreter

    from onnx2tflite_direct import convert

    runner = Interpreter(model_content=convert(model).tflite_bytes).get_signature_runner()
    got = runner(x=x, like=np.zeros(1, ml_dtypes.bfloat16))["y"]
    np.testing.assert_array_equal(
        got.astype(np.float32), x.astype(ml_dtypes.bfloat16).astype(np.float32)
    )


@pytest.mark.parametrize(
    "to", [TensorProto.UINT64, TensorProto.FLOAT8E4M3FN, TensorProto.INT4, TensorProto.STRING]
)
def test_cast_refusals(to):
    model = make_model(
        [helper.make_node("Cast", ["x"], ["y"], to=to)],
        inputs=[("x", np.float32, (3,))],
        outputs=[("y", to, (3,))],
        opset=21,
    )
    expect_refusal(model, "unsupported_dtype")


SUB_BYTE_RANGES = {"int4": (-8, 7), "uint4": (0, 15)}


@pytest.mark.parametrize("src", ["int4", "uint4"])
@pytest.mark.parametrize("dst", ["float32", "float16", "float64", "int8", "int32", "uint8", "bool"])
def test_cast_from_sub_byte_input(src, dst):
    """A 4-bit graph input is widened through float32 (the only partner of the 4-bit CAST).
    onnxruntime cannot take 4-bit numpy feeds, so the reference is numpy in the ONNX dtypes."""
    from onnx2tflite_direct import convert
    from onnx2tflite_direct.validate import run_litert

    lo, hi = SUB_BYTE_RANGES[src]
    if dst.startswith("uint"):
        lo = 0
    x = np.arange(lo, hi + 1).astype(getattr(ml_dtypes, src)).reshape(-1, 1)
    model = make_model(
        [helper.make_node("Cast", ["x"], ["y"], to=helper.np_dtype_to_tensor_dtype(np.dtype(dst)))],
        inputs=[("x", getattr(ml_dtypes, src), x.shape)],
        outputs=[("y", dst, x.shape)],
        opset=21,
    )
    res = convert(model)
    got = run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"))["y"]
    assert got.dtype == np.dtype(dst)
    np.testing.assert_array_equal(got, x.astype(np.int32).astype(dst))


@pytest.mark.parametrize(
    "src,dst",
    [
        ("float32", "int4"),  # onnxruntime rounds, the ONNX reference truncates
        ("int32", "uint4"),
        ("int2", "float32"),  # LiteRT's Python API cannot feed INT2
        ("float32", "int2"),
    ],
)
def test_cast_sub_byte_refusals(src, dst):
    elem = {
        n: helper.np_dtype_to_tensor_dtype(np.dtype(getattr(ml_dtypes, n, n))) for n in (src, dst)
    }
    model = make_model(
        [helper.make_node("Cast", ["x"], ["y"], to=elem[dst])],
        inputs=[("x", elem[src], (3,))],
        outputs=[("y", elem[dst], (3,))],
        opset=21,
    )
    expect_refusal(model, "unsupported_dtype")
