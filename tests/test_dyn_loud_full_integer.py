"""The full-integer file of a model with dynamic sizes whose ConvTranspose takes its output
shape from the run-time SHAPE of its input (``lowering/conv_transpose.py``): SHAPE reads only
dims, so it runs on the int8 tensor as it is (``quant/op_rules.py``'s ``shape`` kind) and the
int32 shape arithmetic after it touches no float value. Before, SHAPE had no rule: the
``*_full_integer_quant.tflite`` file was not written (integer_kernel_unavailable, warned).
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import convert, make_model, op_histogram, operators_with_float_flag
from onnx import helper

from onnx2tflite_direct import validate as V

SIZES = ((32, 32), (16, 16), (8, 8), (24, 40), (64, 48))


def _up_down():
    """Conv s2 -> Relu -> ConvTranspose s2 (pads, output_padding) over dynamic H, W."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "wt": (rng.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32),
        "bt": (rng.standard_normal(4) * 0.1).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node(
            "ConvTranspose",
            ["r", "wt", "bt"],
            ["y"],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            output_padding=[1, 1],
        ),
    ]
    return make_model(
        nodes, [("x", np.float32, (1, 3, "H", "W"))], [("y", np.float32, (1, 4, None, None))], inits
    )


def _sqnr_db(expected, actual) -> float:
    noise = np.sum((expected.astype(np.float64) - actual) ** 2)
    return float(10 * np.log10(np.sum(expected.astype(np.float64) ** 2) / max(noise, 1e-30)))


@pytest.mark.parametrize(
    ("variant", "kind", "floor_db"),
    [("int8", "full_integer_quant", 30.0), ("int16x8", "full_integer_quant_with_int16_act", 38.0)],
)
def test_dynamic_conv_transpose_full_integer_file_is_all_integer_and_accurate(
    variant, kind, floor_db
):
    model = _up_down()
    rng = np.random.default_rng(1)
    calib = {"x": rng.standard_normal((16, 3, 32, 32)).astype(np.float32)}
    res = convert(model, quantize=[variant], calibration_data=calib)
    full = res.variants.get(kind)
    assert full is not None, res.report["quantization"]
    assert op_histogram(full)["SHAPE"] >= 1  # the run-time output shape is kept
    assert [op for op, floating in operators_with_float_flag(full) if floating] == []
    for h, w in SIZES:
        feeds = {"x": rng.standard_normal((1, 3, h, w)).astype(np.float32)}
        expected = V.run_onnxruntime(model, feeds)["y"]
        got = V.run_litert(full, feeds, res.report["io"])["y"]
        floating = V.run_litert(res.tflite_bytes, feeds, res.report["io"])["y"]
        assert got.shape == expected.shape == (1, 4, h, w), (h, w, got.shape)
        # within the quantization error of the float model (measured: int8 33.5-34.7 dB,
        # int16x8 41.3-42.1 dB, its int8 weights)
        assert _sqnr_db(expected, got) > floor_db, (h, w, _sqnr_db(expected, got))
        np.testing.assert_allclose(floating, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
