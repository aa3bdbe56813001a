"""Front end: safe loading, structural checks, constant folding, shape pins."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import BadInputError, convert, errors


def _fc_model_with_external_data(tmp_path, location: str):
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "w")
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        inputs=[("x", np.float32, (2, 3))],
        outputs=[("y", np.float32, (2, 4))],
        initializers=[w],
    )
    onnx.external_data_helper.convert_model_to_external_data(
        model, all_tensors_to_one_file=True, location=location, size_threshold=0
    )
    return model


def test_external_data_inside_model_folder_loads(tmp_path):
    model = _fc_model_with_external_data(tmp_path, "weights.bin")
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    res = convert(str(path), validate=True)
    assert res.validation.ok
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd"])
def test_external_data_outside_model_folder_is_refused_unread(tmp_path, location):
    model = _fc_model_with_external_data(tmp_path, "weights.bin")
    for tensor in model.graph.initializer:
        tensor.ClearField("raw_data")
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    (tmp_path / "outside.bin").write_bytes(b"\0" * 48)
    path = tmp_path / "sub" / "m.onnx"
    path.parent.mkdir()
    path.write_bytes(model.SerializeToString())
    with pytest.raises(BadInputError) as info:
        convert(str(path))
    assert info.value.reason_code == errors.UNSAFE_EXTERNAL_DATA


def test_missing_external_data_is_refused(tmp_path):
    model = _fc_model_with_external_data(tmp_path, "weights.bin")
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(BadInputError) as info:
        convert(str(path))
    assert info.value.reason_code == errors.MISSING_EXTERNAL_DATA


def test_cycle_and_dangling_input_are_invalid_models():
    cyc = helper.make_graph(
        [helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])],
    )
    dangling = helper.make_graph(
        [helper.make_node("Relu", ["nowhere"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    for graph in (cyc, dangling):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        with pytest.raises(BadInputError) as info:
            convert(model)
        assert info.value.reason_code == errors.INVALID_MODEL


def test_old_opset_is_refused():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        inputs=[("x", np.float32, (2,))],
        outputs=[("y", np.float32, (2,))],
        opset=6,
        check=False,
    )
    err = expect_refusal(model, errors.UNSUPPORTED_OPSET)
    assert "opset 6" in err.message


def test_shape_subgraph_is_folded_into_a_static_reshape():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as exporters write flatten."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    model = make_model(
        nodes,
        inputs=[("x", np.float32, (2, 3, 4))],
        outputs=[("y", np.float32, (2, 12))],
        initializers={
            "zero": np.array(0, np.int64),
            "axes0": np.array([0], np.int64),
            "minus1": np.array([-1], np.int64),
        },
    )
    chk = check_conversion(model)
    assert chk.ops == {"RESHAPE": 1}
    folded = {r["rule"]: r["matched"] for r in chk.report["rewrites"]}
    assert folded["constant_folding"] == 4


def test_batch_size_pin_and_bad_pins():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        inputs=[("x", np.float32, ("N", 4))],
        outputs=[("y", np.float32, ("N", 4))],
    )
    chk = check_conversion(model, batch_size=3)
    assert chk.report["io"][0]["tflite_shape"] == [3, 4]
    for pins in ({"nope": (1, 4)}, {"x": (1, 2, 3)}, {"x": (-1, 4)}):
        with pytest.raises(BadInputError) as info:
            convert(model, input_shapes=pins)
        assert info.value.reason_code == errors.INVALID_OPTION


def test_old_ir_initializers_listed_as_inputs_are_constants():
    w = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)
    chk = check_conversion(model)
    assert [r["name"] for r in chk.report["io"] if r["kind"] == "input"] == ["x"]
    assert chk.ops == {"FULLY_CONNECTED": 1}


def test_deterministic_bytes():
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "small_cnn.onnx"
    assert convert(str(example)).tflite_bytes == convert(str(example)).tflite_bytes


@pytest.mark.parametrize("op", ["Conv", "MaxPool", "GlobalAveragePool"])
def test_empty_input_to_conv_and_pool_is_refused(op):
    """LiteRT's conv/pool kernels reject zero-size inputs at load: refuse, never write them."""
    attrs = {"kernel_shape": [1, 1]} if op == "MaxPool" else {}
    inputs = ["x", "w"] if op == "Conv" else ["x"]
    inits = {"w": np.ones((2, 3, 1, 1), np.float32)} if op == "Conv" else {}
    out_c = 2 if op == "Conv" else 3
    out_hw = (1, 1) if op == "GlobalAveragePool" else (0, 4)
    model = make_model(
        [helper.make_node(op, inputs, ["y"], **attrs)],
        inputs=[("x", np.float32, (1, 3, 0, 4))],
        outputs=[("y", np.float32, (1, out_c, *out_hw))],
        initializers=inits,
    )
    expect_refusal(model, errors.EMPTY_TENSOR_UNSUPPORTED)


def test_conversion_restores_the_garbage_collector_state():
    import gc

    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", np.float32, (2,))],
        [("y", np.float32, (2,))],
    )
    assert gc.isenabled()
    convert(model)
    assert gc.isenabled()
    gc.disable()
    try:
        convert(model)
        assert not gc.isenabled()
    finally:
        gc.enable()
