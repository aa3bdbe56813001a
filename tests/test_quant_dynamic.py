"""The dynamic-range variant: int8 per-channel weights on the axes the quantization spec names,
LiteRT's hybrid kernels (float activations), versions from the hybrid rules, sensible accuracy."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from harness import make_model, opcode_versions
from onnx import helper

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(3)
F = np.float32


def _weights(tflite_bytes: bytes) -> list[tuple[str, int, int, int]]:
    """(name, type, quantized_dimension, scale count) of every quantized constant."""
    from ai_edge_litert import schema_py_generated as schema

    sg = schema.Model.GetRootAs(tflite_bytes, 0).Subgraphs(0)
    out = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        q = t.Quantization()
        if t.Buffer() and q is not None and q.ScaleLength():
            out.append((t.Name().decode(), t.Type(), q.QuantizedDimension(), q.ScaleLength()))
    return out


def _conv_depthwise_fc_model():
    inits = {
        "w1": (RNG.standard_normal((128, 16, 3, 3)) * 0.1).astype(F),
        "wd": (RNG.standard_normal((128, 1, 3, 3)) * 0.3).astype(F),  # 1,152 >= 1,024 elements
        "wf": (RNG.standard_normal((10, 128 * 8 * 8)) * 0.01).astype(F),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "wd"], ["c2"], pads=[1] * 4, group=128),
        helper.make_node("Flatten", ["c2"], ["f"]),
        helper.make_node("Gemm", ["f", "wf"], ["y"], transB=1),
    ]
    return make_model(nodes, [("x", F, (1, 16, 8, 8))], [("y", F, (1, 10))], inits)


def test_hybrid_weights_are_int8_per_channel_on_the_spec_axes():
    res = convert(_conv_depthwise_fc_model(), quantize=("dynamic",))
    dyn = res.variants["dynamic_range_quant"]
    weights = {name.split("/")[-2] if "/" in name else name: w for name, *w in _weights(dyn)}
    assert len(weights) == 3
    dims = sorted((qdim, count) for _, qdim, count in weights.values())
    assert dims == [(0, 10), (0, 128), (3, 128)]  # FC rows, conv out-channels, depthwise dim 3
    assert all(t == 9 for t, _, _ in weights.values())  # TensorType INT8
    versions = opcode_versions(dyn)
    assert versions["CONV_2D"] == 5 and versions["DEPTHWISE_CONV_2D"] == 6
    assert versions["FULLY_CONNECTED"] == 12
    val = V.validate(res.model, dyn, res.report["io"], seed=2, atol=1.0)
    (metrics,) = val.outputs.values()
    assert metrics["shape_match"] and metrics["sqnr_db"] >= 30.0, metrics["sqnr_db"]


def test_per_tensor_weights_keep_a_scale_per_depthwise_channel():
    """--quant-type per-tensor: one scale per weight, except DEPTHWISE_CONV_2D, whose hybrid
    kernel reads one per channel (all equal); a single scale there reads past its end."""
    res = convert(_conv_depthwise_fc_model(), quantize=("dynamic",), quant_type="per-tensor")
    dyn = res.variants["dynamic_range_quant"]
    dims = sorted((qdim, count) for _, _, qdim, count in _weights(dyn))
    assert dims == [(0, 1), (0, 1), (3, 128)]
    val = V.validate(res.model, dyn, res.report["io"], seed=2, atol=1.0)
    (metrics,) = val.outputs.values()
    assert metrics["sqnr_db"] >= 25.0, metrics["sqnr_db"]


@pytest.mark.parametrize("name, floor_db", [("example", 40.0), ("mobilenetv2", 28.0)])
def test_dynamic_variant_accuracy(name, floor_db, tmp_path):
    if name == "example":
        source = str(ROOT / "examples" / "small_cnn.onnx")
    else:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import models

        source = models.BENCHMARK_MODELS[name]()
    res = convert(source, tmp_path, quantize=("fp16", "dynamic"), stem=name)
    assert res.paths["dynamic_range_quant"].read_bytes() == res.variants["dynamic_range_quant"]
    assert res.paths["float16"].read_bytes() == res.variants["float16"]
    assert _weights(res.variants["float16"]) == []  # each variant starts from the float32 graph
    val = V.validate(
        res.model, res.variants["dynamic_range_quant"], res.report["io"], seed=4, atol=1.0
    )
    for metrics in val.outputs.values():
        assert metrics["sqnr_db"] >= floor_db, metrics["sqnr_db"]


def test_small_and_shared_weights_stay_float():
    """Under 1,024 elements (as the reference quantizer) a weight stays float32."""
    inits = {"w": (RNG.standard_normal((4, 3, 3, 3)) * 0.2).astype(F)}
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 4)],
        [("x", F, (1, 3, 5, 5))],
        [("y", F, (1, 4, 5, 5))],
        inits,
    )
    res = convert(model, quantize=("dynamic",))
    assert _weights(res.variants["dynamic_range_quant"]) == []
