"""quantize_dynamic models: the float32 file computes onnxruntime's dynamic quantization, and the
float ops between two DynamicQuantizeLinear nodes must round as onnxruntime does, else an ulp
moves an activation across a rounding boundary and the next integer product by a whole step.

BatchNormalization after a ConvInteger (not foldable: the conv is integer) is the case that
held resnet50/mobilenetv2-like dynamic models at 45/39 dB against onnxruntime: its constants
were computed in float64, onnxruntime's CPU kernel computes them step by step in float32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")
pytest.importorskip("ai_edge_litert")

from onnx2tflite_direct import builder, pipeline  # noqa: E402


def _conv_bn_model(rng: np.random.Generator) -> onnx.ModelProto:
    c = 16
    inits = [
        numpy_helper.from_array(rng.standard_normal((c, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(rng.uniform(0.5, 2.0, c).astype(np.float32), "g"),
        numpy_helper.from_array(rng.standard_normal(c).astype(np.float32) * 0.1, "b"),
        numpy_helper.from_array(rng.standard_normal(c).astype(np.float32) * 0.1, "m"),
        numpy_helper.from_array(rng.uniform(0.3, 3.0, c).astype(np.float32), "v"),
        numpy_helper.from_array(rng.standard_normal((8, c, 3, 3)).astype(np.float32) * 0.2, "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["bn"], epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_bn_dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 24, 24])],
        [
            helper.make_tensor_value_info("c1", TensorProto.FLOAT, [1, c, 24, 24]),
            helper.make_tensor_value_info("bn", TensorProto.FLOAT, [1, c, 24, 24]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 24, 24]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _run_litert(data: bytes, feed: dict) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=data).get_signature_runner()
    return {k: np.asarray(v) for k, v in runner(**feed).items()}


def test_batchnorm_after_dynamic_conv_rounds_as_onnxruntime(tmp_path):
    rng = np.random.default_rng(3)
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(_conv_bn_model(rng), str(src))
    quantization.quantize_dynamic(str(src), str(dst), weight_type=quantization.QuantType.QInt8)
    qmodel = onnx.load(str(dst))
    assert any(n.op_type == "ConvInteger" for n in qmodel.graph.node)
    lowered = pipeline.lower_model(qmodel, keep_io_layout=True)
    data = builder.build_flatbuffer(lowered.model_ir)

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(str(dst), opts, providers=["CPUExecutionProvider"])
    feed = {"x": rng.standard_normal((1, 3, 24, 24)).astype(np.float32)}
    names = ["c1", "bn", "y"]
    ref = dict(zip(names, sess.run(names, feed), strict=True))
    got = _run_litert(data, feed)
    np.testing.assert_array_equal(got["c1"], ref["c1"])  # the exact dynamic conv

    # BatchNormalization as onnxruntime's CPU kernel rounds it: every float32 step one
    # correctly rounded IEEE operation (LiteRT's MUL then ADD), the same bits on any CPU.
    inits = {i.name: numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    g, b, m, v = (inits[k].reshape(1, -1, 1, 1) for k in ("g", "b", "m", "v"))
    f32 = np.float32
    a = (f32(1) / np.sqrt(v + f32(1e-5))).astype(f32) * g
    expected = (got["c1"] * a).astype(f32) + (b - m * a).astype(f32)
    np.testing.assert_array_equal(got["bn"], expected)
    ulp = np.spacing(np.abs(ref["bn"]))
    assert np.all(np.abs(got["bn"] - ref["bn"]) <= ulp)  # (a CPU whose compiler fuses x*a+b)
    if np.array_equal(ref["bn"], expected):  # onnxruntime rounded each step too:
        # then the next dynamic conv is exact as well (one step of the second
        # DynamicQuantizeLinear apart anywhere: ~40 dB; float64 BN constants gave that).
        np.testing.assert_array_equal(got["y"], ref["y"])
