"""Operator-code versions: the rules of LiteRT's ``op_version.cc`` as data plus small predicates.

Why: every ``OperatorCode.version`` in the file must fall inside the range the CPU resolver
registers, or the interpreter refuses the model; matching the official rules also keeps the
file loadable by the oldest runtime that supports it (``min_runtime_version``, Table B).
Sources (upstream LiteRT, not files of this repository): ``op_version.cc`` and the CPU op
resolver's registrations for Table A (rules, version ranges), ``runtime_version.cc`` for Table B.

Conventions: element types come from the numpy dtypes of the tfl tensors (short kinds such as
``"f32"``, ``"i8"``, ``"f8"``); "quantized" means the tensor carries a ``tfl.Quantization``
(the builder writes a quantization table only then); options are read from
``Operator.options`` with the schema defaults when absent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from onnx2tflite_direct import tfl


class UnsupportedOpVersionError(Exception):
    """A computed operator version lies outside the range the CPU resolver registers."""


# numpy dtype name -> TensorType name (ml_dtypes types are matched by name).
_TENSOR_TYPE = {
    "float32": "FLOAT32",
    "float16": "FLOAT16",
    "int32": "INT32",
    "uint8": "UINT8",
    "int64": "INT64",
    "bool": "BOOL",
    "int16": "INT16",
    "complex64": "COMPLEX64",
    "int8": "INT8",
    "float64": "FLOAT64",
    "complex128": "COMPLEX128",
    "uint64": "UINT64",
    "uint32": "UINT32",
    "uint16": "UINT16",
    "int4": "INT4",
    "bfloat16": "BFLOAT16",
    "int2": "INT2",
    "uint4": "UINT4",
    "float8_e4m3fn": "FLOAT8_E4M3FN",
    "float8_e5m2": "FLOAT8_E5M2",
}
# TensorType name -> the short kind used in the rules below.
_KIND = {
    "FLOAT32": "f32",
    "FLOAT16": "f16",
    "BFLOAT16": "bf16",
    "FLOAT8_E4M3FN": "f8",
    "FLOAT8_E5M2": "f8",
    "FLOAT64": "f64",
    "INT2": "i2",
    "INT4": "i4",
    "UINT4": "u4",
    "INT8": "i8",
    "UINT8": "u8",
    "INT16": "i16",
    "UINT16": "u16",
    "INT32": "i32",
    "UINT32": "u32",
    "INT64": "i64",
    "UINT64": "u64",
    "BOOL": "bool",
    "STRING": "string",
    "COMPLEX64": "c64",
    "COMPLEX128": "c128",
}


_TYPE_CACHE: dict[np.dtype, str] = {}


def tensor_type(dtype: np.dtype) -> str:
    """TensorType name for a numpy dtype (str/bytes/object arrays are STRING)."""
    cached = _TYPE_CACHE.get(dtype)
    if cached is not None:
        return cached
    dt = np.dtype(dtype)
    if dt.kind in "USO":
        name = "STRING"
    elif dt.name in _TENSOR_TYPE:
        name = _TENSOR_TYPE[dt.name]
    else:
        raise TypeError(f"no TFLite tensor type for numpy dtype {dt!r}")
    _TYPE_CACHE[dtype] = name
    return name


# Table A: BuiltinOperator name -> (min, max) version registered by the CPU resolver.
CPU_VERSION_RANGE: dict[str, tuple[int, int]] = {
    "ADD": (1, 6),
    "SUB": (1, 5),
    "MUL": (1, 8),
    "DIV": (1, 2),
    "POW": (1, 1),
    "MAXIMUM": (1, 4),
    "MINIMUM": (1, 4),
    "SQUARED_DIFFERENCE": (1, 2),
    "FLOOR_DIV": (1, 3),
    "FLOOR_MOD": (1, 2),
    "ATAN2": (1, 1),
    "ADD_N": (1, 1),
    "ABS": (1, 5),
    "NEG": (1, 1),
    "EXP": (1, 2),
    "LOG": (1, 2),
    "SQRT": (1, 2),
    "RSQRT": (1, 3),
    "SQUARE": (1, 1),
    "SIN": (1, 2),
    "COS": (1, 2),
    "CEIL": (1, 1),
    "FLOOR": (1, 1),
    "ROUND": (1, 1),
    "SIGN": (1, 2),
    "LOGISTIC": (1, 3),
    "TANH": (1, 3),
    "RELU": (1, 3),
    "RELU6": (1, 3),
    "RELU_N1_TO_1": (1, 1),
    "RELU_0_TO_1": (1, 1),
    "LEAKY_RELU": (1, 2),
    "PRELU": (1, 1),
    "ELU": (1, 1),
    "GELU": (1, 3),
    "HARD_SWISH": (1, 1),
    "SOFTMAX": (1, 4),
    "LOG_SOFTMAX": (1, 2),
    "L2_NORMALIZATION": (1, 2),
    "LOCAL_RESPONSE_NORMALIZATION": (1, 1),
    "CONV_2D": (1, 8),
    "DEPTHWISE_CONV_2D": (1, 7),
    "CONV_3D": (1, 1),
    "TRANSPOSE_CONV": (1, 5),
    "CONV_3D_TRANSPOSE": (1, 1),
    "FULLY_CONNECTED": (1, 14),
    "BATCH_MATMUL": (1, 4),
    "AVERAGE_POOL_2D": (1, 3),
    "MAX_POOL_2D": (1, 3),
    "L2_POOL_2D": (1, 1),
    "MEAN": (1, 3),
    "SUM": (1, 2),
    "REDUCE_MAX": (1, 3),
    "REDUCE_MIN": (1, 3),
    "REDUCE_PROD": (1, 2),
    "REDUCE_ANY": (1, 1),
    "REDUCE_ALL": (1, 1),
    "CUMSUM": (1, 1),
    "RESHAPE": (1, 1),
    "TRANSPOSE": (1, 9),
    "SQUEEZE": (1, 2),
    "EXPAND_DIMS": (1, 1),
    "CONCATENATION": (1, 7),
    "PACK": (1, 5),
    "UNPACK": (1, 6),
    "SPLIT": (1, 5),
    "SPLIT_V": (1, 3),
    "SLICE": (1, 8),
    "STRIDED_SLICE": (1, 8),
    "PAD": (1, 6),
    "PADV2": (1, 6),
    "MIRROR_PAD": (1, 3),
    "TILE": (1, 3),
    "BROADCAST_TO": (2, 4),
    "BROADCAST_ARGS": (1, 1),
    "DEPTH_TO_SPACE": (1, 2),
    "SPACE_TO_DEPTH": (1, 2),
    "SPACE_TO_BATCH_ND": (1, 4),
    "BATCH_TO_SPACE_ND": (1, 4),
    "REVERSE_V2": (1, 4),
    "REVERSE_SEQUENCE": (1, 1),
    "SHAPE": (1, 1),
    "RANK": (1, 1),
    "GATHER": (1, 8),
    "GATHER_ND": (1, 6),
    "SCATTER_ND": (1, 1),
    "DYNAMIC_UPDATE_SLICE": (1, 6),
    "EMBEDDING_LOOKUP": (1, 5),
    "SELECT": (1, 4),
    "SELECT_V2": (1, 2),
    "WHERE": (1, 2),
    "ONE_HOT": (1, 1),
    "ARG_MAX": (1, 3),
    "ARG_MIN": (1, 3),
    "TOPK_V2": (1, 3),
    "UNIQUE": (1, 1),
    "MATRIX_DIAG": (1, 1),
    "MATRIX_SET_DIAG": (1, 1),
    "SEGMENT_SUM": (1, 1),
    "UNSORTED_SEGMENT_SUM": (1, 1),
    "UNSORTED_SEGMENT_MAX": (1, 1),
    "UNSORTED_SEGMENT_MIN": (1, 1),
    "UNSORTED_SEGMENT_PROD": (1, 1),
    "SPARSE_TO_DENSE": (1, 3),
    "STABLEHLO_SCATTER": (1, 1),
    "STABLEHLO_GATHER": (1, 1),
    "CAST": (1, 9),
    "FILL": (1, 5),
    "RANGE": (1, 2),
    "ZEROS_LIKE": (1, 1),
    "QUANTIZE": (1, 6),
    "DEQUANTIZE": (1, 9),
    "DENSIFY": (1, 1),
    "BITCAST": (1, 1),
    "RESIZE_BILINEAR": (1, 4),
    "RESIZE_NEAREST_NEIGHBOR": (1, 4),
    "DILATE": (1, 1),
    "EQUAL": (1, 5),
    "NOT_EQUAL": (1, 4),
    "LESS": (1, 3),
    "LESS_EQUAL": (1, 2),
    "GREATER": (1, 2),
    "GREATER_EQUAL": (1, 3),
    "LOGICAL_AND": (1, 1),
    "LOGICAL_OR": (1, 1),
    "LOGICAL_NOT": (1, 1),
    "BITWISE_XOR": (1, 1),
    "RIGHT_SHIFT": (1, 1),
    "LSTM": (1, 4),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (1, 4),
    "BIDIRECTIONAL_SEQUENCE_LSTM": (1, 3),
    "RNN": (1, 3),
    "UNIDIRECTIONAL_SEQUENCE_RNN": (1, 3),
    "BIDIRECTIONAL_SEQUENCE_RNN": (1, 3),
    "SVDF": (1, 4),
    "IF": (1, 1),
    "WHILE": (1, 1),
    "CALL_ONCE": (1, 1),
    "VAR_HANDLE": (1, 1),
    "READ_VARIABLE": (1, 1),
    "ASSIGN_VARIABLE": (1, 1),
    "NON_MAX_SUPPRESSION_V4": (1, 1),
    "NON_MAX_SUPPRESSION_V5": (1, 1),
    "RFFT2D": (1, 1),
    "IMAG": (1, 1),
    "REAL": (1, 1),
    "COMPLEX_ABS": (1, 1),
    "BUCKETIZE": (1, 1),
    "MULTINOMIAL": (1, 1),
    "RANDOM_UNIFORM": (1, 1),
    "RANDOM_STANDARD_NORMAL": (1, 1),
    "REDUCE_WINDOW": (1, 1),
    "STABLEHLO_COMPOSITE": (1, 1),
    "FAKE_QUANT": (1, 2),
}

# Table B: op -> version -> first runtime release that supports it.
RUNTIME_VERSION: dict[str, dict[int, str]] = {
    "ADD": {1: "1.5.0", 2: "1.14.0", 3: "2.4.0", 4: "2.6.0", 5: "2.13.0", 6: "2.23.0"},
    "SUB": {1: "1.6.0", 2: "1.14.0", 3: "2.3.0", 4: "2.4.0", 5: "2.4.0"},
    "MUL": {
        1: "1.5.0",
        2: "1.14.0",
        3: "1.15.0",
        4: "2.3.0",
        5: "2.6.0",
        6: "2.11.0",
        7: "2.13.0",
        8: "2.23.0",
    },
    "DIV": {1: "1.6.0", 2: "2.3.0"},
    "POW": {1: "1.10.0"},
    "MAXIMUM": {1: "1.14.0", 2: "1.14.0", 3: "2.3.0", 4: "2.3.0"},
    "MINIMUM": {1: "1.14.0", 2: "1.14.0", 3: "2.3.0", 4: "2.3.0"},
    "SQUARED_DIFFERENCE": {1: "1.13.1", 2: "2.5.0"},
    "FLOOR_DIV": {1: "1.14.0", 2: "1.14.0", 3: "2.13.0"},
    "FLOOR_MOD": {1: "1.13.0", 2: "2.13.0"},
    "ATAN2": {1: "2.10.0"},
    "ADD_N": {1: "1.14.0"},
    "ABS": {1: "1.13.0", 2: "2.4.0", 3: "2.5.0", 4: "2.6.0", 5: "2.12.0"},
    "NEG": {1: "1.9.0"},
    "EXP": {1: "1.7.0", 2: "2.12.0"},
    "LOG": {1: "1.14.0", 2: "2.15.0"},
    "SQRT": {1: "1.10.0", 2: "2.21.0"},
    "RSQRT": {1: "1.10.0", 2: "2.5.0", 3: "2.15.0"},
    "SQUARE": {1: "1.12.0"},
    "SIN": {1: "1.9.0", 2: "2.23.0"},
    "COS": {1: "1.14.0", 2: "2.23.0"},
    "CEIL": {1: "1.14.0"},
    "FLOOR": {1: "1.9.0"},
    "ROUND": {1: "1.14.0"},
    "SIGN": {1: "2.11.0", 2: "2.12.0"},
    "LOGISTIC": {1: "1.14.0", 2: "1.14.0", 3: "2.3.0"},
    "TANH": {1: "1.14.0", 2: "1.14.0", 3: "2.3.0"},
    "RELU": {1: "1.5.0", 2: "2.1.0", 3: "2.5.0"},
    "RELU6": {1: "1.5.0", 2: "1.14.0", 3: "2.5.0"},
    "RELU_N1_TO_1": {1: "1.5.0"},
    "RELU_0_TO_1": {1: "2.10.0"},
    "LEAKY_RELU": {1: "1.13.1", 2: "2.3.0"},
    "PRELU": {1: "1.8.0"},
    "ELU": {1: "1.14.0"},
    "GELU": {1: "2.9.0", 2: "2.9.0", 3: "2.23.0"},
    "HARD_SWISH": {1: "1.15.0"},
    "SOFTMAX": {1: "1.5.0", 2: "1.14.0", 3: "2.3.0", 4: "2.23.0"},
    "LOG_SOFTMAX": {1: "1.14.0", 2: "1.14.0"},
    "L2_NORMALIZATION": {1: "1.5.0", 2: "1.14.0"},
    "LOCAL_RESPONSE_NORMALIZATION": {1: "1.5.0"},
    "CONV_2D": {
        1: "1.5.0",
        2: "1.14.0",
        3: "1.14.0",
        4: "2.3.0",
        5: "2.4.0",
        6: "2.9.0",
        7: "2.11.0",
        8: "2.15.0",
    },
    "DEPTHWISE_CONV_2D": {
        1: "1.5.0",
        2: "1.12.0",
        3: "1.14.0",
        4: "2.2.0",
        5: "2.3.0",
        6: "2.3.0",
        7: "2.11.0",
    },
    "CONV_3D": {1: "2.5.0"},
    "TRANSPOSE_CONV": {1: "1.9.0", 2: "2.2.0", 3: "2.3.0", 4: "2.13.0", 5: "2.15.0"},
    "CONV_3D_TRANSPOSE": {1: "2.6.0"},
    "FULLY_CONNECTED": {
        1: "1.5.0",
        2: "1.10.0",
        3: "1.14.0",
        4: "1.14.0",
        5: "2.0.0",
        6: "2.1.0",
        7: "2.3.0",
        8: "2.3.0",
        9: "2.3.0",
        10: "2.11.0",
        11: "2.15.0",
        12: "2.17.0",
        13: "2.18.0",
        14: "2.21.0",
    },
    "BATCH_MATMUL": {1: "2.3.0", 2: "2.3.0", 3: "2.4.0", 4: "2.5.0"},
    "AVERAGE_POOL_2D": {1: "1.5.0", 2: "1.14.0", 3: "2.3.0"},
    "MAX_POOL_2D": {1: "1.5.0", 2: "1.14.0", 3: "2.3.0"},
    "L2_POOL_2D": {1: "1.5.0"},
    "MEAN": {1: "1.6.0", 2: "1.14.0", 3: "2.4.0"},
    "SUM": {1: "1.10.0", 2: "1.15.0"},
    "REDUCE_MAX": {1: "1.11.0", 2: "1.14.0", 3: "2.5.0"},
    "REDUCE_MIN": {1: "1.11.0", 2: "1.14.0", 3: "2.5.0"},
    "REDUCE_PROD": {1: "1.11.0", 2: "2.6.0"},
    "REDUCE_ANY": {1: "1.11.0"},
    "REDUCE_ALL": {1: "2.6.0"},
    "CUMSUM": {1: "2.4.0"},
    "RESHAPE": {1: "1.5.0"},
    "TRANSPOSE": {
        1: "1.6.0",
        2: "1.14.0",
        3: "1.15.0",
        4: "2.3.0",
        5: "2.4.0",
        6: "2.12.0",
        7: "2.14.4",
        8: "2.22.0",
        9: "2.23.0",
    },
    "SQUEEZE": {1: "1.6.0", 2: "2.5.0"},
    "EXPAND_DIMS": {1: "1.10.0"},
    "CONCATENATION": {
        1: "1.5.0",
        2: "1.14.0",
        3: "2.3.0",
        4: "2.14.0",
        5: "2.21.0",
        6: "2.23.0",
        7: "2.23.0",
    },
    "PACK": {1: "1.11.0", 2: "1.14.0", 3: "2.3.0", 4: "2.13.0", 5: "2.23.0"},
    "UNPACK": {1: "1.11.0", 2: "1.14.0", 3: "2.2.0", 4: "2.3.0", 5: "2.22.0", 6: "2.23.0"},
    "SPLIT": {1: "1.5.0", 2: "1.14.0", 3: "1.14.0", 4: "2.3.0", 5: "2.23.0"},
    "SPLIT_V": {1: "1.13.1", 2: "2.3.0", 3: "2.23.0"},
    "SLICE": {
        1: "1.14.0",
        2: "1.14.0",
        3: "1.14.0",
        4: "2.4.0",
        5: "2.5.0",
        6: "2.14.0",
        7: "2.21.0",
        8: "2.23.0",
    },
    "STRIDED_SLICE": {
        1: "1.6.0",
        2: "1.14.0",
        3: "2.1.0",
        4: "2.2.0",
        5: "2.5.0",
        6: "2.6.0",
        7: "2.14.0",
        8: "2.14.0",
    },
    "PAD": {1: "1.5.0", 2: "1.14.0", 3: "2.4.0", 4: "2.6.0", 5: "2.20.0", 6: "2.23.0"},
    "PADV2": {1: "1.9.0", 2: "1.14.0", 3: "2.4.0", 4: "2.6.0", 5: "2.20.0", 6: "2.23.0"},
    "MIRROR_PAD": {1: "1.13.1", 2: "2.3.0", 3: "2.12.0"},
    "TILE": {1: "1.10.1", 2: "2.2.0", 3: "2.8.0"},
    "BROADCAST_TO": {2: "2.5.0", 3: "2.5.0", 4: "2.23.0"},
    "BROADCAST_ARGS": {1: "2.6.0"},
    "DEPTH_TO_SPACE": {1: "2.1.0", 2: "2.5.0"},
    "SPACE_TO_DEPTH": {1: "1.5.0", 2: "1.14.0"},
    "SPACE_TO_BATCH_ND": {1: "1.6.0", 2: "1.14.0", 3: "2.3.0", 4: "2.12.0"},
    "BATCH_TO_SPACE_ND": {1: "1.6.0", 2: "1.14.0", 3: "2.3.0", 4: "2.12.0"},
    "REVERSE_V2": {1: "1.14.0", 2: "2.2.0", 3: "2.5.0", 4: "2.23.0"},
    "REVERSE_SEQUENCE": {1: "1.14.0"},
    "SHAPE": {1: "1.10.0"},
    "RANK": {1: "1.14.0"},
    "GATHER": {
        1: "1.6.0",
        2: "1.14.0",
        3: "1.15.0",
        4: "2.4.0",
        5: "2.5.0",
        6: "2.13.0",
        7: "2.15.0",
        8: "2.23.0",
    },
    "GATHER_ND": {1: "1.14.0", 2: "2.3.0", 3: "2.5.0", 4: "2.13.0", 5: "2.16.0", 6: "2.23.0"},
    "SCATTER_ND": {1: "2.1.0"},
    "DYNAMIC_UPDATE_SLICE": {
        1: "2.9.0",
        2: "2.17.0",
        3: "2.19.0",
        4: "2.20.0",
        5: "2.21.0",
        6: "2.22.0",
    },
    "EMBEDDING_LOOKUP": {1: "1.13.0", 2: "1.14.0", 3: "1.14.0", 4: "2.18.0", 5: "2.21.0"},
    "SELECT": {1: "1.14.0", 2: "1.14.0", 3: "2.12.0", 4: "2.12.0"},
    "SELECT_V2": {1: "2.2.0", 2: "2.12.0"},
    "WHERE": {1: "1.14.0", 2: "2.8.0"},
    "ONE_HOT": {1: "1.11.0"},
    "ARG_MAX": {1: "1.9.0", 2: "1.14.0", 3: "2.9.0"},
    "ARG_MIN": {1: "1.9.0", 2: "1.14.0", 3: "2.9.0"},
    "TOPK_V2": {1: "1.7.0", 2: "1.14.0", 3: "2.13.0"},
    "UNIQUE": {1: "1.14.0"},
    "MATRIX_DIAG": {1: "1.14.0"},
    "MATRIX_SET_DIAG": {1: "1.14.0"},
    "SEGMENT_SUM": {1: "2.2.0"},
    "UNSORTED_SEGMENT_SUM": {1: "2.10.0"},
    "UNSORTED_SEGMENT_MAX": {1: "2.10.0"},
    "UNSORTED_SEGMENT_MIN": {1: "2.11.0"},
    "UNSORTED_SEGMENT_PROD": {1: "2.10.0"},
    "SPARSE_TO_DENSE": {1: "1.9.0", 2: "1.14.0", 3: "1.15.0"},
    "STABLEHLO_SCATTER": {1: "2.15.0"},
    "STABLEHLO_GATHER": {1: "2.16.0"},
    "CAST": {
        1: "1.5.0",
        2: "2.7.0",
        3: "2.8.0",
        4: "2.9.0",
        5: "2.12.0",
        6: "2.15.0",
        7: "2.17.0",
        8: "2.21.0",
        9: "2.23.0",
    },
    "FILL": {1: "1.13.0", 2: "2.3.0", 3: "2.5.0", 4: "2.12.0", 5: "2.23.0"},
    "RANGE": {1: "1.13.0", 2: "2.14.0"},
    "ZEROS_LIKE": {1: "1.12.0"},
    "QUANTIZE": {1: "1.14.0", 2: "1.15.0", 3: "2.7.0", 4: "2.21.0", 5: "2.21.0", 6: "2.21.0"},
    "DEQUANTIZE": {
        1: "1.13.1",
        2: "1.14.0",
        3: "1.15.0",
        4: "2.2.0",
        5: "2.7.0",
        6: "2.18.0",
        7: "2.21.0",
        8: "2.22.0",
        9: "2.23.0",
    },
    "DENSIFY": {1: "2.2.0"},
    "BITCAST": {1: "2.13.0"},
    "RESIZE_BILINEAR": {1: "1.7.0", 2: "1.14.0", 3: "2.2.0", 4: "2.5.0"},
    "RESIZE_NEAREST_NEIGHBOR": {1: "1.13.1", 2: "1.14.0", 3: "2.3.0", 4: "2.4.0"},
    "DILATE": {1: "2.15.0"},
    "EQUAL": {1: "1.14.0", 2: "1.14.0", 3: "2.3.0", 4: "2.13.0", 5: "2.21.0"},
    "NOT_EQUAL": {1: "1.14.0", 2: "1.14.0", 3: "2.3.0", 4: "2.21.0"},
    "LESS": {1: "1.14.0", 2: "1.14.0", 3: "2.13.0"},
    "LESS_EQUAL": {1: "1.14.0", 2: "1.14.0"},
    "GREATER": {1: "1.14.0", 2: "1.14.0"},
    "GREATER_EQUAL": {1: "1.14.0", 2: "1.14.0", 3: "2.13.0"},
    "LOGICAL_AND": {1: "1.11.0"},
    "LOGICAL_OR": {1: "1.11.0"},
    "LOGICAL_NOT": {1: "1.11.0"},
    "BITWISE_XOR": {1: "2.13.0"},
    "RIGHT_SHIFT": {1: "2.13.0"},
    "LSTM": {1: "1.7.0", 2: "1.10.0", 3: "1.14.0", 4: "2.3.0"},
    "UNIDIRECTIONAL_SEQUENCE_LSTM": {1: "1.13.1", 2: "1.14.0", 3: "2.3.0", 4: "2.12.0"},
    "BIDIRECTIONAL_SEQUENCE_LSTM": {1: "1.14.0", 2: "1.14.0", 3: "1.14.0"},
    "RNN": {1: "1.5.0", 2: "1.14.0", 3: "2.3.0"},
    "UNIDIRECTIONAL_SEQUENCE_RNN": {1: "1.14.0", 2: "1.14.0", 3: "2.3.0"},
    "BIDIRECTIONAL_SEQUENCE_RNN": {1: "1.14.0", 2: "1.14.0", 3: "2.3.0"},
    "SVDF": {1: "1.5.0", 2: "1.14.0", 3: "2.2.0", 4: "2.3.0"},
    "IF": {1: "1.15.0"},
    "WHILE": {1: "1.15.0"},
    "CALL_ONCE": {1: "2.5.0"},
    "VAR_HANDLE": {1: "2.6.0"},
    "READ_VARIABLE": {1: "2.6.0"},
    "ASSIGN_VARIABLE": {1: "2.6.0"},
    "NON_MAX_SUPPRESSION_V4": {1: "2.1.0"},
    "NON_MAX_SUPPRESSION_V5": {1: "2.1.0"},
    "RFFT2D": {1: "2.5.0"},
    "IMAG": {1: "2.5.0"},
    "REAL": {1: "2.5.0"},
    "COMPLEX_ABS": {1: "2.5.0"},
    "BUCKETIZE": {1: "2.8.0"},
    "MULTINOMIAL": {1: "2.8.0"},
    "RANDOM_UNIFORM": {1: "2.8.0"},
    "RANDOM_STANDARD_NORMAL": {1: "2.8.0"},
    "REDUCE_WINDOW": {1: "2.15.0"},
    "STABLEHLO_COMPOSITE": {1: "2.17.0"},
    "FAKE_QUANT": {1: "1.5.0", 2: "1.10.0"},
}


# ---------------------------------------------------------------------------------------------
# Predicate helpers. A rule is (predicate(op) -> bool, version); the first true one wins.

Rule = tuple[Callable[[tfl.Operator], bool], int]


def _tensor(op: tfl.Operator, i: int, out: bool = False) -> tfl.Tensor | None:
    seq = op.outputs if out else op.inputs
    return seq[i] if i < len(seq) else None


_KIND_OF_DTYPE: dict = {}  # dtype -> _KIND of its tensor type (rules ask for every operator)


def _kind(t: tfl.Tensor | None) -> str | None:
    if t is None:
        return None
    try:
        return _KIND_OF_DTYPE[t.dtype]
    except KeyError:
        kind = _KIND_OF_DTYPE[t.dtype] = _KIND.get(tensor_type(t.dtype))
        return kind


def _rank(t: tfl.Tensor | None) -> int:
    return 0 if t is None else t.rank


def _quantized(t: tfl.Tensor | None) -> bool:
    return t is not None and t.quantization is not None


def _scales(t: tfl.Tensor | None) -> np.ndarray:
    if not _quantized(t):
        return np.zeros(0, np.float32)
    return np.atleast_1d(np.asarray(t.quantization.scale)).ravel()


def _dim(t: tfl.Tensor | None, d: int) -> int | None:
    if t is None or not -t.rank <= d < t.rank:
        return None
    return t.shape[d]


def in_(i: int, *kinds: str) -> Callable[[tfl.Operator], bool]:
    return lambda op: _kind(_tensor(op, i)) in kinds


def in0(*kinds: str) -> Callable[[tfl.Operator], bool]:
    return in_(0, *kinds)


def out0(*kinds: str) -> Callable[[tfl.Operator], bool]:
    return lambda op: _kind(_tensor(op, 0, out=True)) in kinds


def io0(kind: str) -> Callable[[tfl.Operator], bool]:
    """Input 0 and output 0 both of ``kind``."""
    first, last = in0(kind), out0(kind)
    return lambda op: first(op) and last(op)


def triple(a: str, w: str, o: str, w_index: int = 1) -> Callable[[tfl.Operator], bool]:
    """in0 / weights / out0 kinds, e.g. ("f32", "i8", "f32") for hybrid."""
    first, weights, last = in0(a), in_(w_index, w), out0(o)
    return lambda op: first(op) and weights(op) and last(op)


def either(kind: str) -> Callable[[tfl.Operator], bool]:
    """in0 or out0 of ``kind`` (CAST / QUANTIZE rules)."""
    first, last = in0(kind), out0(kind)
    return lambda op: first(op) or last(op)


def rank_gt(n: int, i: int = 0) -> Callable[[tfl.Operator], bool]:
    return lambda op: _rank(_tensor(op, i)) > n


def opt_true(name: str) -> Callable[[tfl.Operator], bool]:
    return lambda op: bool(op.options.get(name, False))


def opt_nonzero(name: str) -> Callable[[tfl.Operator], bool]:
    return lambda op: op.options.get(name, 0) not in (0, None, False)


def opt_is(name: str, *values: object) -> Callable[[tfl.Operator], bool]:
    return lambda op: op.options.get(name) in values


def bias_type_set(op: tfl.Operator) -> bool:
    """``quantized_bias_type`` given and not FLOAT32 (the schema default means unset)."""
    return op.options.get("quantized_bias_type", 0) not in (0, None, "FLOAT32")


def activation_set(op: tfl.Operator) -> bool:
    return op.options.get("fused_activation_function", 0) not in (0, None, "NONE")


def all_(*preds: Callable[[tfl.Operator], bool]) -> Callable[[tfl.Operator], bool]:
    return lambda op: all(p(op) for p in preds)


def any_(*preds: Callable[[tfl.Operator], bool]) -> Callable[[tfl.Operator], bool]:
    return lambda op: any(p(op) for p in preds)


def broadcast_rank_gt4(op: tfl.Operator) -> bool:
    """Input shapes differ and the larger input rank exceeds 4."""
    a, b = _tensor(op, 0), _tensor(op, 1)
    if a is None or b is None or a.shape == b.shape:
        return False
    return max(a.rank, b.rank) > 4


def per_channel(i: int, dim: int) -> Callable[[tfl.Operator], bool]:
    """Scale count of input ``i`` equals its dimension ``dim`` (Table A rule 6)."""

    def pred(op: tfl.Operator) -> bool:
        t = _tensor(op, i)
        return _quantized(t) and _scales(t).size == _dim(t, dim)

    return pred


def per_axis(t: tfl.Tensor | None) -> bool:
    """>1 scale and count = dim[quantized_dimension] (QUANTIZE/DEQUANTIZE/EMBEDDING_LOOKUP)."""
    n = _scales(t).size
    return n > 1 and n == _dim(t, t.quantization.axis)


def grouped_conv(op: tfl.Operator) -> bool:
    """Input channels differ from filter dim 3 (input channel dim statically known)."""
    x, w = _tensor(op, 0), _tensor(op, 1)
    if x is None or w is None or x.rank != 4 or w.rank != 4:
        return False
    if x.shape_signature is not None and x.shape_signature[3] < 0:
        return False
    return x.shape[3] != w.shape[3]


def _add_not_quant_i16(op: tfl.Operator) -> bool:
    return in0("i16")(op) and not _quantized(_tensor(op, 0))


def _mul_scale_ge1(op: tfl.Operator) -> bool:
    a, b, o = _tensor(op, 0), _tensor(op, 1), _tensor(op, 0, out=True)
    s = [_scales(t) for t in (a, b, o)]
    if any(x.size == 0 or x[0] == 0 for x in s):
        return False
    return float(s[0][0]) * float(s[1][0]) / float(s[2][0]) >= 1.0


def _mul_i16_unquantized(op: tfl.Operator) -> bool:
    return in0("i16")(op) and not any(_quantized(_tensor(op, i)) for i in (0, 1))


def _dilated(op: tfl.Operator) -> bool:
    return any(op.options.get(k, 1) != 1 for k in ("dilation_w_factor", "dilation_h_factor"))


def _has_bias(op: tfl.Operator) -> bool:
    return len(op.inputs) == 4 and op.inputs[3] is not None


def _any_rank5(op: tfl.Operator) -> bool:
    return any(_rank(_tensor(op, i)) == 5 for i in range(3))


def _cast_i4_to_f32(op: tfl.Operator) -> bool:
    return in0("i4")(op) and out0("f32")(op)


def _out_per_axis(op: tfl.Operator) -> bool:
    o = _tensor(op, 0, out=True)
    return _quantized(o) and per_axis(o)


def _in0_per_axis(op: tfl.Operator) -> bool:
    t = _tensor(op, 0)
    return _quantized(t) and per_axis(t)


def _table_per_axis(op: tfl.Operator) -> bool:
    t = _tensor(op, 1)
    return _quantized(t) and _scales(t).size > 1 and _scales(t).size == _dim(t, 0)


_FULL_KERNEL = opt_is("kernel_type", None, "FULL", 0)
_ASYM = opt_true("asymmetric_quantize_inputs")
_HYBRID_RNN = all_(in_(1, "i8"), out0("f32"))
_HYBRID_RNN_RULES: list[Rule] = [(all_(_HYBRID_RNN, _ASYM), 3), (_HYBRID_RNN, 2)]
_I8_2: list[Rule] = [(in0("i8"), 2)]
_I16_3_I8_2: list[Rule] = [(in0("i16"), 3), (in0("i8"), 2)]
_IO16_3_I8_2: list[Rule] = [(io0("i16"), 3), (in0("i8"), 2)]
_PAD: list[Rule] = [
    (in0("f8"), 6),
    (in0("bool"), 5),
    (rank_gt(4), 4),
    (in0("i16"), 3),
    (in0("i8"), 2),
]
_SPACE_BATCH: list[Rule] = [
    (in0("i16"), 4),
    (lambda op: _rank(_tensor(op, 0)) != 4, 3),
    (in0("i8"), 2),
]
_MINMAX: list[Rule] = [(io0("i16"), 4), (broadcast_rank_gt4, 3), (in0("i8"), 2)]

# op -> rules in precedence order (first true wins); unlisted ops and no match -> 1.
RULES: dict[str, list[Rule]] = {
    # Elementwise binary
    "ADD": [
        (in0("f16"), 6),
        (_add_not_quant_i16, 5),
        (in0("i64"), 4),
        (all_(io0("i16"), lambda op: op.options.get("pot_scale_int16", True) is False), 3),
        (in0("i8"), 2),
    ],
    "SUB": [
        (all_(io0("i16"), lambda op: op.options.get("pot_scale_int16", True) is False), 5),
        (in0("i64"), 4),
        (broadcast_rank_gt4, 3),
        (in0("i8"), 2),
    ],
    "MUL": [
        (in0("f16"), 8),
        (any_(_mul_i16_unquantized, in0("u32")), 7),
        (in0("c64"), 6),
        (in0("i64"), 5),
        (in0("i16"), 4),
        (_mul_scale_ge1, 3),
        (in0("i8"), 2),
    ],
    "DIV": [(broadcast_rank_gt4, 2)],
    "MAXIMUM": _MINMAX,
    "MINIMUM": _MINMAX,
    "SQUARED_DIFFERENCE": _I8_2,
    "FLOOR_DIV": [(in0("i16", "i8"), 3), (in0("f32"), 2)],
    "FLOOR_MOD": [(in0("i16", "i8"), 2)],
    # Elementwise unary
    "ABS": [
        (in0("i32"), 5),
        (all_(in0("i16"), lambda op: _quantized(_tensor(op, 0))), 3),
        (in0("i16"), 4),
        (in0("i8", "u8"), 2),
    ],
    "EXP": [(in0("i8", "i16"), 2)],
    "LOG": [(in0("i8", "i16"), 2)],
    "SQRT": [(in0("i8", "i16"), 2)],
    "RSQRT": _I16_3_I8_2,
    "SIN": [(in0("f16"), 2)],
    "COS": [(in0("f16"), 2)],
    "SIGN": [(in0("i32"), 2)],
    # Activations / normalization
    "LOGISTIC": _IO16_3_I8_2,
    "TANH": _IO16_3_I8_2,
    "RELU": [(in0("i16"), 3), (in0("i8", "u8"), 2)],
    "RELU6": _I16_3_I8_2,
    "LEAKY_RELU": [(in0("i16"), 2)],
    "GELU": [(in0("f16"), 3), (in0("i8", "u8"), 2)],
    "SOFTMAX": [(in0("f16"), 4), (in0("i16"), 3), (in0("i8"), 2)],
    "LOG_SOFTMAX": _I8_2,
    "L2_NORMALIZATION": [(out0("i8"), 2)],
    # Convolution / matmul
    "CONV_2D": [
        (all_(triple("i16", "i8", "i16"), bias_type_set), 8),
        (grouped_conv, 6),
        (triple("i8", "i8", "i8"), 3),
        (triple("i8", "i4", "i8"), 7),
        (all_(triple("f32", "i8", "f32"), per_channel(1, 0)), 5),
        (triple("f32", "i8", "f32"), 2),
    ],
    "DEPTHWISE_CONV_2D": [
        (all_(triple("f32", "i8", "f32"), per_channel(1, 3)), 6),
        (triple("f32", "i8", "f32"), 4),
        (triple("i8", "i8", "i8"), 3),
        (triple("i8", "i4", "i8"), 7),
        (_dilated, 2),
    ],
    "TRANSPOSE_CONV": [
        (all_(triple("i16", "i8", "i16"), bias_type_set), 5),
        (activation_set, 4),
        (_has_bias, 3),
        (in_(1, "i8"), 2),
    ],
    "FULLY_CONNECTED": [
        (in_(1, "i2"), 14),
        (triple("i16", "i4", "i16"), 13),
        (all_(triple("f32", "i8", "f32"), per_channel(1, 0)), 12),
        (all_(triple("i16", "i8", "i16"), bias_type_set), 11),
        (triple("i16", "i16", "i16"), 7),
        (lambda op: len(op.inputs) == 2, 6),
        (opt_true("keep_num_dims"), 5),
        (triple("i8", "i8", "i8"), 4),
        (triple("i8", "i4", "i8"), 10),
        (all_(triple("f32", "i8", "f32"), _ASYM), 9),
        (triple("f32", "i8", "f32"), 3),
        (opt_is("weights_format", "SHUFFLED4x16INT8", 1), 2),
    ],
    "BATCH_MATMUL": [
        (in0("i16"), 3),
        (in0("i8"), 2),
        (all_(triple("f32", "i8", "f32"), _ASYM), 4),
    ],
    # Pooling / reductions
    "AVERAGE_POOL_2D": _IO16_3_I8_2,
    "MAX_POOL_2D": _IO16_3_I8_2,
    "MEAN": _I16_3_I8_2,
    "SUM": _I8_2,
    "REDUCE_MAX": _I16_3_I8_2,
    "REDUCE_MIN": _I16_3_I8_2,
    "REDUCE_PROD": [(in0("i8", "i16"), 2)],
    # Shape / layout / copy
    "TRANSPOSE": [
        (in0("f16"), 9),
        (any_(rank_gt(6), in0("bf16")), 8),
        (in0("i4"), 7),
        (rank_gt(5), 6),
        (in0("i16"), 5),
        (rank_gt(4), 4),
        (in0("bool"), 3),
        (in0("i8"), 2),
    ],
    "SQUEEZE": [(in0("string"), 2)],
    "CONCATENATION": [
        (in0("f8"), 7),
        (in0("f16"), 6),
        (in0("i4"), 5),
        (in0("u32"), 4),
        (in0("i16"), 3),
        (in0("i8"), 2),
    ],
    "PACK": [(in0("f8"), 5), (in0("i8"), 2), (io0("i16"), 3), (in0("u32"), 4)],
    "UNPACK": [
        (in0("f8"), 6),
        (in0("i8", "u8"), 2),
        (in0("bool"), 3),
        (io0("i16"), 4),
        (in0("f16", "bf16"), 5),
    ],
    "SPLIT": [(in_(1, "f8"), 5), (in_(1, "i16"), 4), (in_(1, "i32"), 3), (in_(1, "i8"), 2)],
    "SPLIT_V": [(in0("f8"), 3), (in0("i8"), 2)],
    "SLICE": [
        (in0("f16"), 8),
        (in0("i4"), 7),
        (in0("u32"), 6),
        (rank_gt(4), 5),
        (in0("i16"), 4),
        (in0("string"), 3),
        (in0("i8"), 2),
    ],
    "STRIDED_SLICE": [
        (opt_true("offset"), 8),
        (in0("u32"), 7),
        (any_(opt_nonzero("ellipsis_mask"), opt_nonzero("new_axis_mask")), 6),
        (in0("string"), 5),
        (rank_gt(4), 4),
        (in0("bool"), 3),
        (in0("i8"), 2),
    ],
    "PAD": _PAD,
    "PADV2": _PAD,
    "MIRROR_PAD": _I16_3_I8_2,
    "TILE": [(in0("i8"), 3), (in0("string"), 2)],
    "BROADCAST_TO": [(in0("f8"), 4), (in0("i8", "i16"), 3), (lambda op: True, 2)],
    "DEPTH_TO_SPACE": _I8_2,
    "SPACE_TO_DEPTH": _I8_2,
    "SPACE_TO_BATCH_ND": _SPACE_BATCH,
    "BATCH_TO_SPACE_ND": _SPACE_BATCH,
    "REVERSE_V2": [(in0("f8"), 4), (in0("i8"), 3), (in0("bool"), 2)],
    # Indexing / scatter / gather
    "GATHER": [
        (in0("f8"), 8),
        (in0("i4"), 7),
        (in_(1, "i16"), 6),
        (opt_nonzero("batch_dims"), 5),
        (in0("i16"), 4),
        (in0("bool"), 3),
        (in0("i8"), 2),
    ],
    "GATHER_ND": [
        (in0("f8"), 6),
        (in0("bool"), 5),
        (in_(1, "i16"), 4),
        (in0("i16"), 3),
        (in0("string"), 2),
    ],
    "DYNAMIC_UPDATE_SLICE": [
        (in0("bf16"), 6),
        (in0("i4"), 5),
        (in0("i16"), 4),
        (in0("f16"), 3),
        (in_(2, "i64"), 2),
    ],
    "EMBEDDING_LOOKUP": [(any_(in_(1, "i4"), _table_per_axis), 4), (in_(1, "i2"), 5)],
    "SELECT": [(in0("u32"), 4), (_any_rank5, 3), (in0("i8"), 2)],
    "SELECT_V2": [(in0("u32"), 2)],
    "WHERE": [(in0("bool"), 1), (lambda op: True, 2)],
    "ARG_MAX": [(in0("bool"), 3), (in0("i8"), 2)],
    "ARG_MIN": [(in0("bool"), 3), (in0("i8"), 2)],
    "TOPK_V2": [
        (any_(in0("i16"), in_(1, "i16"), lambda op: _kind(_tensor(op, 1, out=True)) == "i16"), 3),
        (in0("i8"), 2),
    ],
    "SPARSE_TO_DENSE": [(in_(2, "i8", "u8"), 3), (in_(2, "i64"), 2)],
    # Creation / type
    "CAST": [
        (either("f8"), 9),
        (any_(either("i2"), either("u4")), 8),
        (either("bf16"), 7),
        (_cast_i4_to_f32, 6),
        (any_(either("f64"), either("f16")), 5),
        (either("u16"), 4),
        (either("i8"), 3),
        (either("u32"), 2),
    ],
    "FILL": [
        (in_(1, "f8"), 5),
        (in_(1, "f16"), 4),
        (in_(1, "i8", "i16"), 3),
        (in_(1, "bool", "string"), 2),
    ],
    "RANGE": [(in0("i64"), 2)],
    "QUANTIZE": [(either("u4"), 5), (either("i4"), 4), (_out_per_axis, 3), (out0("i16"), 2)],
    "DEQUANTIZE": [
        (in0("f8"), 9),
        (in0("u4"), 8),
        (in0("i2"), 7),
        (in0("i4"), 6),
        (in0("i16", "f16"), 3),
        (all_(in0("i8"), _in0_per_axis), 5),
        (in0("i8"), 2),
    ],
    # Resize
    "RESIZE_BILINEAR": [(in0("i16"), 4), (opt_true("half_pixel_centers"), 3), (in0("i8"), 2)],
    "RESIZE_NEAREST_NEIGHBOR": [
        (in0("i16"), 4),
        (any_(opt_true("half_pixel_centers"), opt_true("align_corners")), 3),
        (in0("i8"), 2),
    ],
    # Comparison
    "EQUAL": [(in0("i16"), 5), (in0("string"), 3), (in0("i8"), 2)],
    "NOT_EQUAL": [(in0("i16"), 4), (in0("string"), 3), (in0("i8"), 2)],
    "LESS": _I16_3_I8_2,
    "LESS_EQUAL": _I8_2,
    "GREATER": _I8_2,
    "GREATER_EQUAL": _I16_3_I8_2,
    # Recurrent
    "LSTM": [
        (all_(_FULL_KERNEL, triple("i16", "i8", "i16", w_index=2)), 5),
        (all_(_FULL_KERNEL, triple("f32", "i8", "f32", w_index=2), _ASYM), 4),
        (all_(_FULL_KERNEL, triple("f32", "i8", "f32", w_index=2)), 3),
        (opt_is("kernel_type", "BASIC", 1), 2),
    ],
    "UNIDIRECTIONAL_SEQUENCE_LSTM": [
        (triple("i16", "i8", "i16", w_index=2), 5),
        (opt_true("diagonal_recurrent_tensors"), 4),
        (all_(triple("f32", "i8", "f32", w_index=2), _ASYM), 3),
        (triple("f32", "i8", "f32", w_index=2), 2),
    ],
    "BIDIRECTIONAL_SEQUENCE_LSTM": _HYBRID_RNN_RULES,
    "RNN": _HYBRID_RNN_RULES,
    "UNIDIRECTIONAL_SEQUENCE_RNN": _HYBRID_RNN_RULES,
    "BIDIRECTIONAL_SEQUENCE_RNN": _HYBRID_RNN_RULES,
    "SVDF": [
        (in0("i8"), 3),
        (all_(triple("f32", "i8", "f32"), _ASYM), 4),
        (triple("f32", "i8", "f32"), 2),
    ],
    "FAKE_QUANT": [(opt_true("narrow_range"), 2)],
}


def op_version(op: tfl.Operator) -> int:
    """Version ``op_version.cc`` would write for this operator (CUSTOM ops are 1)."""
    for pred, version in RULES.get(op.opcode, ()):
        if pred(op):
            return version
    return 1


def check_cpu_range(opcode: str, version: int) -> None:
    """Raise :class:`UnsupportedOpVersionError` if the CPU resolver would not resolve it.

    Ops without a Table A row (e.g. CUSTOM, most StableHLO builtins) are not checked.
    """
    rng = CPU_VERSION_RANGE.get(opcode)
    if rng is not None and not rng[0] <= version <= rng[1]:
        raise UnsupportedOpVersionError(
            f"{opcode} version {version} is outside the CPU resolver range {rng[0]}-{rng[1]}"
        )


def _release_key(s: str) -> tuple[int, ...]:
    return tuple(int(p) for p in s.split("."))


def min_runtime_version(ops: Iterable[tfl.Operator | tuple[str, int]]) -> str:
    """Highest Table B release over the (opcode, version) pairs; "" if none is listed."""
    best = ""
    for item in ops:
        opcode, version = (
            (item.opcode, op_version(item)) if isinstance(item, tfl.Operator) else item
        )
        release = RUNTIME_VERSION.get(opcode, {}).get(version)
        if release and (not best or _release_key(release) > _release_key(best)):
            best = release
    return best
