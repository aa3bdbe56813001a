"""convert() on an already-quantized model: besides the float32 file (exact Q/DQ semantics) it
writes the integer file the model's own scales describe, and reports per node how it runs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from harness import small_cnn

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V


def float_cnn():
    return small_cnn(8, residual_softmax=False)


def _quantize_static(model, tmp_path, per_channel: bool):
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.samples = iter(
                [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(8)]
            )

        def get_next(self):
            return next(self.samples, None)

    src, dst = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(model, src)
    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return onnx.load(str(dst))


def _onnx_semantics(qmodel, feeds):
    """onnxruntime with basic graph optimizations runs the Q/DQ nodes as written; its full
    optimizations swap in fused integer kernels whose rounding differs (20 dB apart on this
    per-channel model), so they are not the reference for what the model means."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(qmodel.SerializeToString(), opts).run(["y"], feeds)[0]


def _sqnr_db(expected, actual):
    noise = np.sum((expected - actual) ** 2)
    return float(10 * np.log10(np.sum(expected**2) / max(noise, 1e-30)))


@pytest.mark.parametrize("per_channel", [True, False])
def test_qdq_model_gets_an_integer_file_matching_onnxruntime(tmp_path, per_channel):
    qmodel = _quantize_static(float_cnn(), tmp_path, per_channel)
    res = convert(qmodel, tmp_path / "out", keep_io_layout=True)
    assert "integer_quant" in res.variants
    assert (tmp_path / "out" / "model_integer_quant.tflite").exists()
    section = res.report["prequantized"]
    assert section["mode"] == "static" and section["counts"].get("integer", 0) > 0
    feeds = {"x": np.random.default_rng(5).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    expected = _onnx_semantics(qmodel, feeds)
    integer = V.run_litert(res.variants["integer_quant"], feeds, res.report["io"])["y"]
    assert _sqnr_db(expected, integer) >= 30
    # The float32 file keeps the model's exact Q/DQ semantics.
    exact = V.run_litert(res.tflite_bytes, feeds, res.report["io"])["y"]
    assert _sqnr_db(expected, exact) >= 40


def test_float_model_gets_no_prequantized_section(tmp_path):
    res = convert(float_cnn())
    assert "prequantized" not in res.report and not res.variants
