"""--quantize int8 / int16x8 end to end: calibration in onnxruntime, ranges through the tensor
map, integer files that run in LiteRT close to the float ONNX outputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from harness import make_model
from harness import small_cnn as harness_small_cnn
from onnx import helper

from onnx2tflite_direct import BadInputError, UnsupportedError, convert, errors
from onnx2tflite_direct import validate as V

RNG = np.random.default_rng(21)


def small_cnn():
    return harness_small_cnn(21)


def with_float_island():
    """A Sin (no integer kernel in LiteRT: it stays a float island). (A LayerNormalization
    runs in integer since issue 21: tests/test_full_integer.py.)"""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Sin", ["m"], ["y"]),
    ]
    inits = {"w": (RNG.standard_normal((16, 16)) * 0.3).astype(np.float32)}
    return make_model(
        nodes,
        inputs=[("x", np.float32, (4, 16))],
        outputs=[("y", np.float32, (4, 16))],
        initializers=inits,
    )


def _samples(model, count, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for vi in V.graph_inputs(model):
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        out[vi.name] = rng.standard_normal((count * shape[0], *shape[1:])).astype(np.float32)
    return out


def _sqnr_db(expected, actual):
    noise = np.sum((expected - actual) ** 2)
    return float(10 * np.log10(np.sum(expected**2) / max(noise, 1e-30)))


def _run(tflite, model, feeds):
    """Run a variant on float feeds, quantizing/dequantizing integer I/O by its parameters."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    runner = interp.get_signature_runner()
    inputs = {}
    for name, info in runner.get_input_details().items():
        x = feeds[name]
        if info["dtype"] != np.float32:
            qp = info["quantization_parameters"]
            lim = np.iinfo(info["dtype"])
            x = np.round(x / qp["scales"][0]) + qp["zero_points"][0]
            x = np.clip(x, lim.min, lim.max).astype(info["dtype"])
        inputs[name] = x
    outs = runner(**inputs)
    result = {}
    for name, info in runner.get_output_details().items():
        y = outs[name]
        if info["dtype"] != np.float32:
            qp = info["quantization_parameters"]
            y = (y.astype(np.float32) - qp["zero_points"][0]) * qp["scales"][0]
        result[name] = y
    return result


@pytest.mark.parametrize("quant_type", ["per-channel", "per-tensor"])
@pytest.mark.parametrize("io_dtype", ["int8", "uint8"])
def test_int8_and_int16x8_variants_track_the_float_model(quant_type, io_dtype):
    model = small_cnn()
    res = convert(
        model,
        quantize=["int8", "int16x8"],
        calibration_data=_samples(model, 16, seed=1),
        quant_type=quant_type,
        input_quant_dtype=io_dtype,
        output_quant_dtype=io_dtype,
        keep_io_layout=True,  # fed in ONNX layout below
    )
    kinds = {
        "integer_quant",
        "full_integer_quant",
        "integer_quant_with_int16_act",
        "full_integer_quant_with_int16_act",
    }
    assert set(res.variants) == kinds
    held_out = _samples(model, 1, seed=99)
    expected = V.run_onnxruntime(model, held_out)["y"]
    sqnr = {k: _sqnr_db(expected, _run(res.variants[k], model, held_out)["y"]) for k in kinds}
    assert min(sqnr.values()) > 20, sqnr
    from ai_edge_litert.interpreter import Interpreter

    full = Interpreter(model_content=res.variants["full_integer_quant"])
    assert full.get_input_details()[0]["dtype"] == np.dtype(io_dtype)
    assert full.get_output_details()[0]["dtype"] == np.dtype(io_dtype)
    int16 = Interpreter(model_content=res.variants["full_integer_quant_with_int16_act"])
    assert int16.get_input_details()[0]["dtype"] == np.int16
    summary = {s["kind"]: s for s in res.report["quantization"]}
    # Float outputs: only the output softmax and the op computing its logits stay float (the
    # int8 steps of the softmax output, 1/256, and of the logits would dominate the output
    # error); with integer outputs everything is integer.
    assert [f["op"] for f in summary["integer_quant"]["float_ops"]] == [
        "FULLY_CONNECTED",
        "SOFTMAX",
    ]
    assert summary["full_integer_quant"]["float_ops"] == []
    assert summary["integer_quant"]["integer_ops"] > 0


def test_float_islands_are_reported_and_strict_integer_refuses():
    model = with_float_island()
    data = _samples(model, 8, seed=2)
    res = convert(model, quantize=["int8"], calibration_data=data)
    summary = {s["kind"]: s for s in res.report["quantization"]}
    islands = summary["integer_quant"]["float_ops"]
    assert islands and all(op["reason"] for op in islands)
    held_out = _samples(model, 1, seed=7)
    expected = V.run_onnxruntime(model, held_out)["y"]
    assert _sqnr_db(expected, _run(res.variants["integer_quant"], model, held_out)["y"]) > 20
    with pytest.raises(UnsupportedError) as info:
        convert(model, quantize=["int8"], calibration_data=data, strict_integer=True)
    assert info.value.reason_code == errors.INTEGER_KERNEL_UNAVAILABLE


def test_integer_quantization_needs_calibration_data_unless_random(caplog):
    model = small_cnn()
    with pytest.raises(BadInputError) as info:
        convert(model, quantize=["int8"])
    assert info.value.reason_code == errors.MISSING_CALIBRATION_DATA
    with caplog.at_level(logging.WARNING, logger="onnx2tflite_direct"):
        res = convert(model, quantize=["int8"], calibration_random=True)
    assert "integer_quant" in res.variants
    assert any("random" in r.message for r in caplog.records)


def test_cli_writes_every_variant(tmp_path):
    import subprocess
    import sys

    import onnx

    def cli(out_dir, *flags):
        cmd = [sys.executable, "-m", "onnx2tflite_direct", str(tmp_path / "m.onnx")]
        return subprocess.run([*cmd, "-o", str(out_dir), *flags], capture_output=True, text=True)

    model = small_cnn()
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", _samples(model, 4, seed=3)["x"])
    calib = f"x={tmp_path / 'calib.npy'}"
    variants = ("fp16", "dynamic", "int8", "int16x8")
    proc = cli(
        tmp_path,
        "--quantize",
        *variants,
        "--calibration-data",
        calib,
        "--calibration-method",
        "percentile",
    )
    assert proc.returncode == 0, proc.stderr
    for kind in (
        "float32",
        "float16",
        "dynamic_range_quant",
        "integer_quant",
        "full_integer_quant",
        "integer_quant_with_int16_act",
        "full_integer_quant_with_int16_act",
    ):
        assert (tmp_path / f"m_{kind}.tflite").stat().st_size > 0
    proc = cli(tmp_path / "none", "--quantize", "int8")
    assert proc.returncode == errors.EXIT_BAD_INPUT
    assert "missing_calibration_data" in proc.stderr
    assert not (tmp_path / "none" / "m_float32.tflite").exists()
