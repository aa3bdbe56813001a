"""The float16 variant: float16 weights feeding DEQUANTIZE, float32 kernels and I/O, running on
the stock CPU interpreter, and as accurate as float16 weights allow (SQNR >= 60 dB)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from harness import op_histogram
from make_real_weight_light_models import cached_model_path

from onnx2tflite_direct import BadInputError, convert
from onnx2tflite_direct import validate as V

ROOT = Path(__file__).resolve().parents[1]


def _stored_dtypes(tflite_bytes: bytes) -> dict[str, int]:
    from ai_edge_litert import schema_py_generated as schema

    sg = schema.Model.GetRootAs(tflite_bytes, 0).Subgraphs(0)
    counts: dict[str, int] = {}
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        if t.Buffer():
            counts[names[t.Type()]] = counts.get(names[t.Type()], 0) + 1
    return counts


def _source(name: str, cache: Path):
    if name == "example":
        return str(ROOT / "examples" / "small_cnn.onnx")
    if name == "mobilenetv2":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import models

        return models.BENCHMARK_MODELS[name]()
    return str(cached_model_path(name, cache))


def _sqnr(expected: np.ndarray, actual: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(expected**2) / np.sum((expected - actual) ** 2)))


@pytest.mark.parametrize("name", ["example", "inception_v1", "mobilenetv2"])
def test_float16_variant_runs_on_cpu_with_high_sqnr(name, tmp_path, real_weight_dir):
    res = convert(_source(name, real_weight_dir), tmp_path, quantize=("fp16",), stem=name)
    half = res.variants["float16"]
    assert res.paths["float16"].read_bytes() == half
    if name != "example":  # weights dominate the file: half the size
        assert len(half) <= 0.55 * len(res.tflite_bytes)
    ops = op_histogram(half)
    assert ops["DEQUANTIZE"] >= 1 and "CUSTOM" not in ops
    assert _stored_dtypes(half).get("FLOAT16", 0) == ops["DEQUANTIZE"]
    assert {f["kind"] for f in res.report["output_files"]} == {"float32", "float16"}
    val = V.validate(res.model, half, res.report["io"], seed=4, atol=1.0)
    for out, metrics in val.outputs.items():  # stock CPU interpreter, float32 I/O
        assert metrics["shape_match"], out
        assert metrics["sqnr_db"] >= 60.0, (out, metrics["sqnr_db"])


def test_float16_variant_is_as_good_as_float16_weights_allow(real_weight_dir):
    """A deep random-weight ResNet-50 is sensitive to weight rounding (onnxruntime with the same
    model's weights rounded to float16 reaches ~28 dB); the variant must do at least as well."""
    import onnx
    from onnx import numpy_helper

    path = cached_model_path("resnet50", real_weight_dir)
    res = convert(str(path), quantize=("fp16",))
    rounded = onnx.load(str(path))
    for t in rounded.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32 and a.size >= 64:
            t.CopyFrom(numpy_helper.from_array(a.astype(np.float16).astype(np.float32), t.name))
    feeds = V.seeded_inputs(res.model, seed=4)
    ((name, expected),) = V.run_onnxruntime(res.model, feeds).items()
    reference = V.run_onnxruntime(rounded, feeds)[name]
    ours = V.run_litert(res.variants["float16"], feeds, res.report["io"])[name]
    assert _sqnr(expected, ours) >= _sqnr(expected, reference) - 3.0


def test_unknown_variant_is_bad_input():
    with pytest.raises(BadInputError) as info:
        convert(str(ROOT / "examples" / "small_cnn.onnx"), quantize=("int3",))
    assert "fp16" in info.value.message


def test_float32_file_is_unchanged_by_asking_for_a_variant():
    example = str(ROOT / "examples" / "small_cnn.onnx")
    assert convert(example).tflite_bytes == convert(example, quantize=("fp16",)).tflite_bytes


def test_vectors_stay_float32_weights_become_float16():
    """Biases and per-channel vectors keep float32 (a fraction of a percent of the bytes, and
    float16 would shift every value of a channel); weights with two or more non-unit dims
    of at least 64 values are float16."""
    res = convert(str(ROOT / "examples" / "small_cnn.onnx"), quantize=("fp16",))
    shapes = _constant_shapes(res.variants["float16"], "FLOAT16")
    assert shapes, "no float16 weight"
    assert all(sum(d > 1 for d in s) >= 2 and np.prod(s) >= 64 for s in shapes), shapes
    float32_vectors = [
        s
        for s in _constant_shapes(res.variants["float16"], "FLOAT32")
        if sum(d > 1 for d in s) == 1
    ]
    assert float32_vectors, "the biases should be float32 constants"


def _constant_shapes(tflite_bytes: bytes, type_name: str) -> list[tuple[int, ...]]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(tflite_bytes, 0)
    sg = model.Subgraphs(0)
    wanted = getattr(schema.TensorType, type_name)
    out = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        if t.Type() == wanted and model.Buffers(t.Buffer()).DataLength() > 0:
            out.append(tuple(t.ShapeAsNumpy()))
    return out


def test_calibration_data_corrects_biases_for_float16_rounding(monkeypatch):
    """With calibration data, each weighted op's (float32) bias absorbs the average error of
    its float16-rounded weights, as in the integer variants (~+10 dB on this net)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_quant_accuracy import _variant_sqnr, deep_relu_net

    from onnx2tflite_direct.quant import variants as QV

    model = deep_relu_net()
    with_it = _variant_sqnr(model, "float16", ["fp16"], eval_count=16)
    with monkeypatch.context() as m:
        m.setattr(QV._Ranges, "channel_means", lambda self: {})
        without = _variant_sqnr(model, "float16", ["fp16"], eval_count=16)
    assert with_it > without + 5.0, (with_it, without)
