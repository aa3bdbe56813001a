"""Dynamic batch (dynamic_shapes.py): a symbolic leading input dim becomes shape_signature -1 and the file runs at
any batch size (LiteRT resizes through the signature runner), matching onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from harness import expect_refusal, op_histogram
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V

RNG = np.random.default_rng(5)


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def cnn_classifier():
    inits = {
        "w": (RNG.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32),
        "fw": (RNG.standard_normal((64, 5)) * 0.3).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fw"], ["m"]),
        helper.make_node("Softmax", ["m"], ["y"], axis=1),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [("y", TensorProto.FLOAT, ["N", 5])],
        inits,
    )


def attention_block():
    """Self-attention over [N, 8, 16] with heads split by Reshape: the batch is inside the
    reshape targets (0 = copy the batch dim, as exporters write it)."""
    inits = {
        name: (RNG.standard_normal((16, 16)) * 0.3).astype(np.float32)
        for name in ("wq", "wk", "wv")
    }
    inits["heads"] = np.array([0, 8, 2, 8], np.int64)
    inits["merge"] = np.array([0, 8, 16], np.int64)
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q0"]),
        helper.make_node("MatMul", ["x", "wk"], ["k0"]),
        helper.make_node("MatMul", ["x", "wv"], ["v0"]),
        *[helper.make_node("Reshape", [f"{t}0", "heads"], [f"{t}1"]) for t in "qkv"],
        helper.make_node("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k1"], ["kT"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v1"], ["v"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["q", "kT"], ["s"]),
        helper.make_node("Softmax", ["s"], ["a"], axis=-1),
        helper.make_node("MatMul", ["a", "v"], ["o"]),
        helper.make_node("Transpose", ["o"], ["o1"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["o1", "merge"], ["y"]),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, ["N", 8, 16])],
        [("y", TensorProto.FLOAT, ["N", 8, 16])],
        inits,
    )


def _run_at_batches(model, shape_tail, batches=(1, 3, 8)):
    res = convert(model)
    sess = ort.InferenceSession(model.SerializeToString())
    name = model.graph.input[0].name
    row = next(r for r in res.report["io"] if r["name"] == name)
    assert row["shape_signature"][0] == -1 and row["onnx_shape"][0] == 1
    for batch in batches:
        feed = {name: RNG.standard_normal((batch, *shape_tail)).astype(np.float32)}
        expected = sess.run(None, feed)[0]
        actual = V.run_litert(res.tflite_bytes, feed, res.report["io"])
        got = next(iter(actual.values()))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    return res


def test_cnn_runs_at_any_batch():
    res = _run_at_batches(cnn_classifier(), (3, 8, 8))
    assert op_histogram(res.tflite_bytes)["TRANSPOSE"] == 0


def test_attention_block_runs_at_any_batch():
    _run_at_batches(attention_block(), (8, 16))


def test_validate_runs_on_the_dynamic_model():
    res = convert(cnn_classifier(), validate=True)
    assert res.validation.ok


def test_pinned_batch_stays_static():
    res = convert(cnn_classifier(), batch_size=4)
    row = res.report["io"][0]
    assert row["tflite_shape"][0] == 4 and row["shape_signature"][0] == 4


def test_batch_dependent_values_are_computed_at_run_time():
    """y = x + row index (Range over Shape of the batch): SHAPE/RANGE run in the file."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Range", ["start", "n", "step"], ["idx"]),
        helper.make_node("Cast", ["idx"], ["idxf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["idxf", "axis1"], ["col"]),
        helper.make_node("Add", ["x", "col"], ["y"]),
    ]
    inits = {
        "zero": np.array(0, np.int64),
        "start": np.array(0, np.int64),
        "step": np.array(1, np.int64),
        "axis1": np.array([1], np.int64),
    }
    model = _model(
        nodes, [("x", TensorProto.FLOAT, ["N", 4])], [("y", TensorProto.FLOAT, ["N", 4])], inits
    )
    res = _run_at_batches(model, (4,))
    assert op_histogram(res.tflite_bytes)["RANGE"] == 1
    pinned = convert(model, batch_size=3)
    feed = {"x": RNG.standard_normal((3, 4)).astype(np.float32)}
    expected = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
    actual = V.run_litert(pinned.tflite_bytes, feed, pinned.report["io"])["y"]
    np.testing.assert_allclose(actual, expected, rtol=1e-5)


@pytest.mark.parametrize("dims", [["N", "C", 8, 8], [1, 3, "H", 8]])
def test_dims_the_weights_fix_are_refused_with_the_pinning_hint(dims):
    """C must be 3 (conv weights) and H must be 8 (the classifier's flattened width): no
    sample size but the pinned one is valid, so the refusal names the pinning flag."""
    model = cnn_classifier()
    shape = model.graph.input[0].type.tensor_type.shape
    for d, v in zip(shape.dim, dims, strict=True):
        d.Clear()
        if isinstance(v, str):
            d.dim_param = v
        else:
            d.dim_value = v
    onnx.checker.check_model(model)
    err = expect_refusal(model, "dynamic_shape_unsupported")
    assert "input_shapes=" in err.message  # the API names its own arguments


def test_transpose_conv_output_shape_follows_the_batch_at_run_time():
    """TRANSPOSE_CONV takes its output shape as an operand: its batch entry is computed from
    SHAPE of the input at run time. (Kernel 3 over stride 2: the taps overlap; kernel == stride
    runs as CONV_2D + DEPTH_TO_SPACE, which needs no output shape.)"""
    inits = {"w": (RNG.standard_normal((4, 2, 3, 3)) * 0.3).astype(np.float32)}
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])]
    model = _model(
        nodes,
        [("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [("y", TensorProto.FLOAT, ["N", 2, 11, 11])],
        inits,
    )
    res = _run_at_batches(model, (4, 5, 5))
    assert op_histogram(res.tflite_bytes)["SHAPE"] == 1
