"""BitCast -> BITCAST: same-width reinterpretation, checked bit-exactly against the reference.

onnxruntime 1.32 has no BitCast kernel; numpy's ``view`` is the definition (little endian).
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import convert, expect_refusal, make_model
from onnx import helper

from onnx2tflite_direct import validate as V

PAIRS = [
    (np.float32, np.int32),
    (np.int32, np.float32),
    (np.uint32, np.int32),
    (np.int8, np.uint8),
    (np.bool_, np.uint8),
    (np.uint16, np.int16),
    (np.float16, np.int16),
    (np.int64, np.float64),
    (np.float64, np.int64),
]


def _model(src, dst, shape):
    node = helper.make_node(
        "BitCast", ["x"], ["y"], to=helper.np_dtype_to_tensor_dtype(np.dtype(dst))
    )
    return make_model([node], [("x", src, shape)], [("y", dst, shape)], opset=26)


@pytest.mark.parametrize(("src", "dst"), PAIRS)
@pytest.mark.parametrize("shape", [(), (3, 4)])
def test_bitcast_matches_numpy_view(src, dst, shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (*shape, np.dtype(src).itemsize), dtype=np.uint8).view(src)
    x = x.reshape(shape) if np.dtype(src) != np.bool_ else (x.reshape(shape) % 2).astype(bool)
    res = convert(_model(src, dst, shape), keep_io_layout=True)
    y = V.run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"))["y"]
    assert y.dtype == np.dtype(dst) and y.shape == shape
    assert y.tobytes() == x.view(dst).tobytes()


def test_bitcast_width_mismatch_refused():
    node = helper.make_node(
        "BitCast", ["x"], ["y"], to=helper.np_dtype_to_tensor_dtype(np.dtype(np.int64))
    )
    model = make_model(
        [node], [("x", np.float32, (2,))], [("y", np.int64, (2,))], opset=26, check=False
    )
    err = expect_refusal(model)
    assert err.reason_code in (
        "unsupported_attribute_value",
        "shape_inference_failed",
        "invalid_model",
    )
