"""The nine light_* models shipped in the onnx wheel, and the same graphs with real-size
random weights: convert with default options and with --keep-io-layout, run in LiteRT, match
onnxruntime, and keep the graph transpose-free."""

from __future__ import annotations

import onnx
import pytest
from harness import convert, op_histogram
from make_real_weight_light_models import cached_model_path, light_model_paths

from onnx2tflite_direct import validate as V

LIGHT = light_model_paths()
# Channel shuffles in ShuffleNet: Reshape -> Transpose -> Reshape, one TRANSPOSE each.
SHUFFLES = {"shufflenet": 16}


def _shuffles(model: onnx.ModelProto) -> int:
    return sum(1 for n in model.graph.node if n.op_type == "Transpose")


@pytest.fixture(scope="module", params=sorted(LIGHT))
def light_name(request):
    return request.param


@pytest.mark.parametrize("real_weights", [False, True], ids=["light", "real"])
@pytest.mark.parametrize("keep_io_layout", [False, True], ids=["default", "keep_io"])
def test_light_model_matches_onnxruntime(light_name, real_weights, keep_io_layout, real_weight_dir):
    path = cached_model_path(light_name, real_weight_dir) if real_weights else LIGHT[light_name]
    res = convert(str(path), keep_io_layout=keep_io_layout)
    val = V.validate(res.model, res.tflite_bytes, res.report["io"], seed=1, atol=1e-4)
    assert val.ok, V.format_table(val)
    ops = op_histogram(res.tflite_bytes)
    assert "CUSTOM" not in ops and "GATHER" not in ops
    expected_transposes = SHUFFLES.get(light_name, 0)
    if keep_io_layout:
        # Only at the boundary: NCHW input -> NHWC once (outputs are 2-D here).
        expected_transposes += 1
    assert ops.get("TRANSPOSE", 0) == expected_transposes, ops
    if light_name in SHUFFLES:
        assert _shuffles(onnx.load(str(LIGHT[light_name]))) == SHUFFLES[light_name]


def test_squeezenet_opset9_softmax_is_coerced_2d():
    """Opset-9 Softmax on [1, 1000, 1, 1] normalizes over all 1000 classes (2-D coercion)."""
    res = convert(str(LIGHT["squeezenet"]))
    feeds = V.seeded_inputs(res.model, seed=3)
    out = V.run_litert(res.tflite_bytes, feeds, res.report["io"])
    ref = V.run_onnxruntime(res.model, feeds)
    (name,) = ref
    assert out[name].shape == ref[name].shape == (1, 1000, 1, 1)
    assert abs(float(out[name].sum()) - 1.0) < 1e-4
    assert V.compare(ref, out, atol=1e-5)[name]["ok"]


def test_default_io_is_channel_last():
    res = convert(str(LIGHT["resnet50"]))
    (inp,) = [r for r in res.report["io"] if r["kind"] == "input"]
    assert inp["onnx_shape"] == [1, 3, 224, 224]
    assert inp["tflite_shape"] == [1, 224, 224, 3]
    assert inp["perm"] == [0, 2, 3, 1]
