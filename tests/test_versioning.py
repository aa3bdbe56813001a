"""op_version follows LiteRT's versioning rules (Table A of versioning.py) and stays inside the CPU
resolver ranges."""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest

from onnx2tflite_direct import tfl, versioning
from onnx2tflite_direct.schema_gen import schema_generated as S
from onnx2tflite_direct.versioning import (
    CPU_VERSION_RANGE,
    RULES,
    RUNTIME_VERSION,
    UnsupportedOpVersionError,
    check_cpu_range,
    min_runtime_version,
    op_version,
)

F32, I8, U8, I16, I32, I64 = np.float32, np.int8, np.uint8, np.int16, np.int32, np.int64


def T(dtype, shape=(1, 4), q=None, sig=None) -> tfl.Tensor:  # noqa: N802 - reads like a table
    quant = None
    if q is not None:
        scale = np.atleast_1d(np.asarray(q, np.float32))
        quant = tfl.Quantization(scale, np.zeros(scale.size, np.int64), axis=0)
    return tfl.Tensor("t", dtype, shape, quantization=quant, shape_signature=sig)


def Q(dtype, shape=(1, 4), scale=0.5, axis=0) -> tfl.Tensor:  # noqa: N802
    scale = np.atleast_1d(np.asarray(scale, np.float32))
    quant = tfl.Quantization(scale, np.zeros(scale.size, np.int64), axis=axis)
    return tfl.Tensor("q", dtype, shape, quantization=quant)


def op(opcode, inputs, outputs, **options) -> tfl.Operator:
    return tfl.Operator(opcode, list(inputs), list(outputs), options)


CASES = [
    # Elementwise
    ("add f32", op("ADD", [T(F32), T(F32)], [T(F32)]), 1),
    ("add i8", op("ADD", [Q(I8), Q(I8)], [Q(I8)]), 2),
    ("add i16 unquantized", op("ADD", [T(I16), T(I16)], [T(I16)]), 5),
    ("add i16 pot default", op("ADD", [Q(I16), Q(I16)], [Q(I16)]), 1),
    ("add i16 pot false", op("ADD", [Q(I16), Q(I16)], [Q(I16)], pot_scale_int16=False), 3),
    ("add i64", op("ADD", [T(I64), T(I64)], [T(I64)]), 4),
    ("add f16", op("ADD", [T(np.float16), T(np.float16)], [T(np.float16)]), 6),
    ("sub broadcast r5", op("SUB", [T(F32, (1, 2, 3, 4, 5)), T(F32, (5,))], [T(F32)]), 3),
    ("sub same r5", op("SUB", [T(F32, (1, 2, 3, 4, 5)), T(F32, (1, 2, 3, 4, 5))], [T(F32)]), 1),
    ("mul scale>=1", op("MUL", [Q(U8, scale=2.0), Q(U8, scale=1.0)], [Q(U8, scale=1.0)]), 3),
    ("mul scale<1", op("MUL", [Q(U8, scale=0.1), Q(U8, scale=0.1)], [Q(U8, scale=1.0)]), 1),
    ("mul i8 small", op("MUL", [Q(I8, scale=0.1), Q(I8, scale=0.1)], [Q(I8, scale=1.0)]), 2),
    ("mul i16 unquant", op("MUL", [T(I16), T(I16)], [T(I16)]), 7),
    ("div broadcast r5", op("DIV", [T(F32, (1, 1, 1, 1, 2)), T(F32, (2,))], [T(F32)]), 2),
    ("abs i16 quant", op("ABS", [Q(I16)], [Q(I16)]), 3),
    ("abs i16 plain", op("ABS", [T(I16)], [T(I16)]), 4),
    ("floor_div f32", op("FLOOR_DIV", [T(F32), T(F32)], [T(F32)]), 2),
    ("gelu u8", op("GELU", [Q(U8)], [Q(U8)]), 2),
    ("relu u8", op("RELU", [Q(U8)], [Q(U8)]), 2),
    ("relu6 u8", op("RELU6", [Q(U8)], [Q(U8)]), 1),
    ("logistic i16", op("LOGISTIC", [Q(I16)], [Q(I16)]), 3),
    ("l2norm out i8", op("L2_NORMALIZATION", [Q(I8)], [Q(I8)]), 2),
    # Convolutions
    (
        "conv f32",
        op("CONV_2D", [T(F32, (1, 8, 8, 4)), T(F32, (2, 3, 3, 4)), T(F32, (2,))], [T(F32)]),
        1,
    ),
    (
        "conv grouped",
        op("CONV_2D", [T(F32, (1, 8, 8, 4)), T(F32, (4, 3, 3, 2)), T(F32, (4,))], [T(F32)]),
        6,
    ),
    (
        "conv grouped dyn ch",
        op("CONV_2D", [T(F32, (1, 8, 8, 1), sig=(1, 8, 8, -1)), T(F32, (4, 3, 3, 2))], [T(F32)]),
        1,
    ),
    ("conv int8", op("CONV_2D", [Q(I8, (1, 8, 8, 4)), Q(I8, (2, 3, 3, 4)), T(I32)], [Q(I8)]), 3),
    (
        "conv int4 w",
        op("CONV_2D", [Q(I8, (1, 8, 8, 4)), Q(ml_dtypes.int4, (2, 3, 3, 4))], [Q(I8)]),
        7,
    ),
    (
        "conv hybrid per-ch",
        op("CONV_2D", [T(F32, (1, 8, 8, 4)), Q(I8, (2, 3, 3, 4), scale=[1.0, 2.0])], [T(F32)]),
        5,
    ),
    ("conv hybrid per-t", op("CONV_2D", [T(F32, (1, 8, 8, 4)), Q(I8, (2, 3, 3, 4))], [T(F32)]), 2),
    (
        "conv 16x8 bias type",
        op(
            "CONV_2D",
            [Q(I16, (1, 8, 8, 4)), Q(I8, (2, 3, 3, 4))],
            [Q(I16)],
            quantized_bias_type="INT32",
        ),
        8,
    ),
    ("conv 16x8", op("CONV_2D", [Q(I16, (1, 8, 8, 4)), Q(I8, (2, 3, 3, 4))], [Q(I16)]), 1),
    (
        "dw dilation",
        op(
            "DEPTHWISE_CONV_2D",
            [T(F32, (1, 8, 8, 4)), T(F32, (1, 3, 3, 4))],
            [T(F32)],
            dilation_h_factor=2,
        ),
        2,
    ),
    ("dw int8", op("DEPTHWISE_CONV_2D", [Q(I8, (1, 8, 8, 4)), Q(I8, (1, 3, 3, 4))], [Q(I8)]), 3),
    (
        "dw hybrid per-ch",
        op(
            "DEPTHWISE_CONV_2D",
            [T(F32, (1, 8, 8, 4)), Q(I8, (1, 3, 3, 4), scale=[1, 2, 3, 4])],
            [T(F32)],
        ),
        6,
    ),
    (
        "tconv f32",
        op("TRANSPOSE_CONV", [T(I32, (4,)), T(F32, (2, 3, 3, 4)), T(F32, (1, 4, 4, 4))], [T(F32)]),
        1,
    ),
    (
        "tconv bias",
        op(
            "TRANSPOSE_CONV",
            [T(I32, (4,)), T(F32, (2, 3, 3, 4)), T(F32, (1, 4, 4, 4)), T(F32, (2,))],
            [T(F32)],
        ),
        3,
    ),
    (
        "tconv bias omitted",
        op(
            "TRANSPOSE_CONV",
            [T(I32, (4,)), T(F32, (2, 3, 3, 4)), T(F32, (1, 4, 4, 4)), None],
            [T(F32)],
        ),
        1,
    ),
    (
        "tconv i8 weights",
        op("TRANSPOSE_CONV", [T(I32, (4,)), Q(I8, (2, 3, 3, 4)), Q(I8, (1, 4, 4, 4))], [Q(I8)]),
        2,
    ),
    (
        "tconv relu",
        op(
            "TRANSPOSE_CONV",
            [T(I32, (4,)), T(F32, (2, 3, 3, 4)), T(F32, (1, 4, 4, 4))],
            [T(F32)],
            fused_activation_function="RELU",
        ),
        4,
    ),
    ("fc f32 bias", op("FULLY_CONNECTED", [T(F32), T(F32, (3, 4)), T(F32, (3,))], [T(F32)]), 1),
    ("fc None bias", op("FULLY_CONNECTED", [T(F32), T(F32, (3, 4)), None], [T(F32)]), 1),
    ("fc 2 inputs", op("FULLY_CONNECTED", [T(F32), T(F32, (3, 4))], [T(F32)]), 6),
    (
        "fc keep dims",
        op("FULLY_CONNECTED", [T(F32), T(F32, (3, 4)), None], [T(F32)], keep_num_dims=True),
        5,
    ),
    ("fc int8", op("FULLY_CONNECTED", [Q(I8), Q(I8, (3, 4)), T(I32, (3,))], [Q(I8)]), 4),
    ("fc hybrid", op("FULLY_CONNECTED", [T(F32), Q(I8, (3, 4)), None], [T(F32)]), 3),
    (
        "fc hybrid asym",
        op(
            "FULLY_CONNECTED",
            [T(F32), Q(I8, (3, 4)), None],
            [T(F32)],
            asymmetric_quantize_inputs=True,
        ),
        9,
    ),
    (
        "fc hybrid per-ch",
        op("FULLY_CONNECTED", [T(F32), Q(I8, (3, 4), scale=[1, 2, 3]), None], [T(F32)]),
        12,
    ),
    ("fc 16x16", op("FULLY_CONNECTED", [Q(I16), Q(I16, (3, 4)), None], [Q(I16)]), 7),
    ("bmm i8", op("BATCH_MATMUL", [Q(I8), Q(I8)], [Q(I8)]), 2),
    # Layout
    ("transpose r4", op("TRANSPOSE", [T(F32, (1, 2, 3, 4)), T(I32, (4,))], [T(F32)]), 1),
    ("transpose r5", op("TRANSPOSE", [T(F32, (1, 2, 3, 4, 5)), T(I32, (5,))], [T(F32)]), 4),
    ("transpose r6", op("TRANSPOSE", [T(F32, (1,) * 6), T(I32, (6,))], [T(F32)]), 6),
    ("transpose r7", op("TRANSPOSE", [T(F32, (1,) * 7), T(I32, (7,))], [T(F32)]), 8),
    ("transpose bool", op("TRANSPOSE", [T(np.bool_), T(I32, (2,))], [T(np.bool_)]), 3),
    ("broadcast_to f32", op("BROADCAST_TO", [T(F32), T(I32, (2,))], [T(F32)]), 2),
    ("broadcast_to i8", op("BROADCAST_TO", [Q(I8), T(I32, (2,))], [Q(I8)]), 3),
    ("split data i8", op("SPLIT", [T(I32, ()), Q(I8)], [Q(I8), Q(I8)]), 2),
    ("split data i32", op("SPLIT", [T(I32, ()), T(I32)], [T(I32)]), 3),
    ("split data f32", op("SPLIT", [T(I32, ()), T(F32)], [T(F32)]), 1),
    (
        "strided ellipsis",
        op("STRIDED_SLICE", [T(F32)] + [T(I32, (2,))] * 3, [T(F32)], ellipsis_mask=1),
        6,
    ),
    (
        "strided offset",
        op("STRIDED_SLICE", [T(F32)] + [T(I32, (2,))] * 3, [T(F32)], offset=True),
        8,
    ),
    ("pad r5", op("PAD", [T(F32, (1, 1, 1, 1, 1)), T(I32, (5, 2))], [T(F32)]), 4),
    ("s2b rank3", op("SPACE_TO_BATCH_ND", [T(F32, (1, 4, 4))], [T(F32)]), 3),
    ("s2b rank4", op("SPACE_TO_BATCH_ND", [T(F32, (1, 4, 4, 1))], [T(F32)]), 1),
    ("concat i16", op("CONCATENATION", [Q(I16), Q(I16)], [Q(I16)]), 3),
    ("gather batch_dims", op("GATHER", [T(F32), T(I32)], [T(F32)], batch_dims=1), 5),
    ("gather idx i16", op("GATHER", [T(F32), T(I16)], [T(F32)]), 6),
    (
        "select rank5",
        op("SELECT", [T(np.bool_, (1,) * 5), T(F32, (1,) * 5), T(F32, (1,) * 5)], [T(F32)]),
        3,
    ),
    ("where bool", op("WHERE", [T(np.bool_)], [T(I64)]), 1),
    ("where f32", op("WHERE", [T(F32)], [T(I64)]), 2),
    # Type / quantization
    ("cast i8->f32", op("CAST", [T(I8)], [T(F32)]), 3),
    ("cast f32->i32", op("CAST", [T(F32)], [T(I32)]), 1),
    ("cast i4->f32", op("CAST", [T(ml_dtypes.int4)], [T(F32)]), 6),
    ("cast f16", op("CAST", [T(np.float16)], [T(F32)]), 5),
    ("cast bf16", op("CAST", [T(ml_dtypes.bfloat16)], [T(F32)]), 7),
    ("quantize per-axis", op("QUANTIZE", [T(F32, (3, 4))], [Q(I8, (3, 4), scale=[1, 2, 3])]), 3),
    ("quantize i16", op("QUANTIZE", [T(F32)], [Q(I16)]), 2),
    ("quantize i8", op("QUANTIZE", [T(F32)], [Q(I8)]), 1),
    ("dequantize i8 per-axis", op("DEQUANTIZE", [Q(I8, (3, 4), scale=[1, 2, 3])], [T(F32)]), 5),
    ("dequantize i8", op("DEQUANTIZE", [Q(I8)], [T(F32)]), 2),
    ("dequantize f16", op("DEQUANTIZE", [T(np.float16)], [T(F32)]), 3),
    ("dequantize u8", op("DEQUANTIZE", [Q(U8)], [T(F32)]), 1),
    (
        "resize bilinear hpc",
        op("RESIZE_BILINEAR", [T(F32), T(I32, (2,))], [T(F32)], half_pixel_centers=True),
        3,
    ),
    (
        "resize nn align",
        op("RESIZE_NEAREST_NEIGHBOR", [T(F32), T(I32, (2,))], [T(F32)], align_corners=True),
        3,
    ),
    ("equal string", op("EQUAL", [T(np.str_), T(np.str_)], [T(np.bool_)]), 3),
    ("lstm basic", op("LSTM", [T(F32)], [T(F32)], kernel_type="BASIC"), 2),
    ("lstm hybrid", op("LSTM", [T(F32), T(F32), Q(I8)], [T(F32)]), 3),
    (
        "uslstm diag",
        op("UNIDIRECTIONAL_SEQUENCE_LSTM", [T(F32)], [T(F32)], diagonal_recurrent_tensors=True),
        4,
    ),
    ("rnn hybrid asym", op("RNN", [T(F32), Q(I8)], [T(F32)], asymmetric_quantize_inputs=True), 3),
    ("fake quant narrow", op("FAKE_QUANT", [T(F32)], [T(F32)], narrow_range=True), 2),
    ("custom", tfl.Operator("CUSTOM", [T(F32)], [T(F32)], custom_code="X"), 1),
    ("neg", op("NEG", [T(I8)], [T(I8)]), 1),
]


@pytest.mark.parametrize(("name", "operator", "expected"), CASES, ids=[c[0] for c in CASES])
def test_op_version(name: str, operator: tfl.Operator, expected: int) -> None:
    assert op_version(operator) == expected
    if operator.opcode in CPU_VERSION_RANGE:
        check_cpu_range(operator.opcode, expected)


def test_tables_are_consistent_with_schema() -> None:
    codes = S.ENUMS["BuiltinOperator"]
    assert set(CPU_VERSION_RANGE) <= set(codes)
    assert set(RULES) <= set(CPU_VERSION_RANGE)
    assert set(RUNTIME_VERSION) == set(CPU_VERSION_RANGE)
    for name, (lo, hi) in CPU_VERSION_RANGE.items():
        assert 1 <= lo <= hi, name


def test_every_rule_version_is_registered_on_cpu() -> None:
    """Rule outcomes stay in the CPU range, except the documented LSTM v5 mismatch."""
    known_mismatch = {("LSTM", 5), ("UNIDIRECTIONAL_SEQUENCE_LSTM", 5)}
    for name, rules in RULES.items():
        lo, hi = CPU_VERSION_RANGE[name]
        for _, version in rules:
            if (name, version) not in known_mismatch:
                assert lo <= version <= hi, (name, version)


_KINDS = [F32, np.float16, I8, U8, I16, I32, I64, np.bool_]


@pytest.mark.parametrize("opcode", sorted(CPU_VERSION_RANGE))
def test_synthetic_sweep_in_cpu_range(opcode: str) -> None:
    """Plain dtype combinations on every op give an in-range version (BROADCAST_TO never 1)."""
    lo, hi = CPU_VERSION_RANGE[opcode]
    for a, b, quant in itertools.product(_KINDS, _KINDS, (False, True)):
        mk = Q if quant else T
        inputs = [mk(a, (1, 2, 3, 4)), mk(b, (4, 2, 3, 4)), mk(a, (4,))]
        operator = op(opcode, inputs, [mk(a, (1, 2, 3, 4)), mk(b, (1,))])
        version = op_version(operator)
        if opcode in ("LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM") and version == 5:
            with pytest.raises(UnsupportedOpVersionError):
                check_cpu_range(opcode, version)
            continue
        assert lo <= version <= hi, (opcode, a, b, quant, version)
    if opcode == "BROADCAST_TO":
        assert op_version(op(opcode, [T(F32), T(I32, (2,))], [T(F32)])) == 2


def test_guard_raises_out_of_range() -> None:
    with pytest.raises(UnsupportedOpVersionError, match="ADD version 7"):
        check_cpu_range("ADD", 7)
    with pytest.raises(UnsupportedOpVersionError):
        check_cpu_range("BROADCAST_TO", 1)
    check_cpu_range("STABLEHLO_ADD", 1)  # no Table A row: not checked


def test_min_runtime_version() -> None:
    add = op("ADD", [T(F32), T(F32)], [T(F32)])
    gelu = op("GELU", [T(F32)], [T(F32)])
    assert min_runtime_version([add]) == "1.5.0"
    assert min_runtime_version([add, gelu]) == "2.9.0"
    assert min_runtime_version([("TRANSPOSE", 4), ("ADD", 1)]) == "2.3.0"
    assert min_runtime_version([("CONV_2D", 6), ("FULLY_CONNECTED", 10)]) == "2.11.0"
    assert min_runtime_version([("CUSTOM", 1)]) == ""
    assert min_runtime_version([]) == ""


def test_tensor_type_mapping() -> None:
    assert versioning.tensor_type(np.float32) == "FLOAT32"
    assert versioning.tensor_type(ml_dtypes.bfloat16) == "BFLOAT16"
    assert versioning.tensor_type(ml_dtypes.float8_e4m3fn) == "FLOAT8_E4M3FN"
    assert versioning.tensor_type(np.dtype("S4")) == "STRING"
    with pytest.raises(TypeError):
        versioning.tensor_type(np.dtype("datetime64[s]"))
    for name in versioning._TENSOR_TYPE.values():
        assert name in S.ENUMS["TensorType"]
