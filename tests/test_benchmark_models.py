"""The shared benchmark models (benchmarks/models.py): valid ONNX that onnxruntime runs with
meaningful outputs, converted output matching onnxruntime, and a pinned TRANSPOSE count so a
layout regression (or improvement) shows up here first."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from harness import check_conversion

from benchmarks import models as M
from onnx2tflite_direct import UnsupportedError
from onnx2tflite_direct import validate as V

# BERT is tested with 4 of its 12 layers to keep the suite fast: every layer is the same
# subgraph, so coverage is unchanged and its TRANSPOSE count is 2 per layer (see below). The
# latency benchmark converts the full 12-layer model.
BERT_TEST_LAYERS = 4
BUILDERS = {name: build for name, build in M.BENCHMARK_MODELS.items()}
BUILDERS["bert_base"] = functools.partial(M.bert_base_like, layers=BERT_TEST_LAYERS)

# TRANSPOSE ops in the converted graph (default options: NCHW inputs stored channel-last).
EXPECTED_TRANSPOSES = {
    # Pure CNNs stay channel-last end to end.
    "resnet50": 0,
    "mobilenetv2": 0,
    "efficientnet_lite": 0,
    "unet": 0,
    # 1: the DFL Transpose of [1, 4, 16, A] (real data reorder before the bin Softmax);
    # 1: the class scores are produced anchor-major ([1, A, 80]) and reordered to the ONNX
    #    [1, 80, A] for the Concat with the boxes.
    "yolov8n": 2,
    # Per attention layer 2, each a real reorder: the q/k/v projections, one FULLY_CONNECTED
    # (rule fused_head_projection), moved to head-major [3h, T, d] at once before a SPLIT (k
    # read through adj_y), and the context merge ([h, T, d] -> [T, h, d] -> Reshape). The
    # patch-embedding Reshape/Transpose is free.
    "vit_small": 2 * 6,
    "bert_base": 2 * BERT_TEST_LAYERS,
}


@functools.cache
def benchmark_model(name: str) -> onnx.ModelProto:
    return BUILDERS[name]()


@pytest.fixture(params=sorted(BUILDERS))
def name(request) -> str:
    return request.param


def test_every_model_has_an_expected_transpose_count():
    assert sorted(EXPECTED_TRANSPOSES) == sorted(M.BENCHMARK_MODELS)


def test_model_is_valid_static_and_runs_in_onnxruntime(name):
    model = benchmark_model(name)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == M.OPSET
    for vi in [*V.graph_inputs(model), *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        assert dims and all(d.HasField("dim_value") for d in dims), vi.name
        assert dims[0].dim_value == 1, vi.name
    outputs = V.run_onnxruntime(model, V.seeded_inputs(model, seed=0))
    for out_name, out in outputs.items():
        assert out.dtype == np.float32, out_name
        assert np.isfinite(out).all(), out_name
        # Non-degenerate: the values spread, not a constant or a handful of saturated levels.
        assert out.std() > 1e-3 * max(1.0, float(np.abs(out).max())), out_name
        assert np.unique(out).size > out.size // 10, out_name


def test_model_is_deterministic():
    first, second = M.unet_like(), M.unet_like()
    assert first.SerializeToString() == second.SerializeToString()


def test_model_converts_and_matches_onnxruntime(name):
    model = benchmark_model(name)
    try:
        chk = check_conversion(model, seed=0, atol=1e-4, rtol=None)
    except UnsupportedError as err:  # a missing lowering, never a numerical mismatch
        pytest.xfail(f"{err.reason_code}: {err}")
    assert chk.validation.ok
    assert "CUSTOM" not in chk.ops
    assert chk.ops.get("TRANSPOSE", 0) == EXPECTED_TRANSPOSES[name], dict(chk.ops)
    assert chk.report["transpose_count"] == EXPECTED_TRANSPOSES[name]


def test_save_all_writes_loadable_models(tmp_path):
    paths = M.save_all(tmp_path, ["mobilenetv2"])
    loaded = onnx.load(str(paths["mobilenetv2"]))
    assert loaded.SerializeToString() == benchmark_model("mobilenetv2").SerializeToString()
