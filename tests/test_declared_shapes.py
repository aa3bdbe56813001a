"""Declared shapes that disagree with the computed ones: the computed shape wins, with a warning.

Real exporters declare graph outputs and value_info that the graph does not compute (paddle2onnx
writes ``[]`` for every output, old torch exports ``[1, None]`` for a ``[T, 1, C]`` CTC output).
onnxruntime ignores those declarations, so refusing them refused models that run. A declared
dtype that contradicts the graph stays a refusal: onnxruntime rejects that model too.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import check_conversion, expect_refusal
from onnx import TensorProto, helper

from onnx2tflite_direct import errors

RNG = np.random.default_rng(3)


def _model(out_shape, value_info=None, out_type=TensorProto.FLOAT):
    """x [2, 3, 4] -> Relu -> t -> Transpose -> y [4, 2, 3] (a rank/shape mismatch is visible)."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["t"]),
            helper.make_node("Transpose", ["t"], ["y"], perm=[2, 0, 1]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", out_type, out_shape)],
        value_info=[helper.make_tensor_value_info("t", TensorProto.FLOAT, value_info)]
        if value_info is not None
        else [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


FEEDS = {"x": RNG.standard_normal((2, 3, 4)).astype(np.float32)}


@pytest.mark.parametrize(
    "declared",
    [[1, 6], [24], [], [4, 2, 5], [4, 2, 3, 1], [1, "seq"]],
    ids=["other_dims", "rank1", "rank0", "one_dim_off", "rank4", "symbolic"],
)
def test_declared_output_shape_is_overridden_with_a_warning(declared):
    model = _model(declared)
    ort.InferenceSession(model.SerializeToString())  # onnxruntime accepts the model
    chk = check_conversion(model, feeds=FEEDS)
    assert chk.actual["y"].shape == (4, 2, 3)
    warnings = chk.report["warnings"]
    assert len(warnings) == 1 and "graph output 'y'" in warnings[0], warnings
    assert "computes to [4, 2, 3]" in warnings[0]


def test_matching_declaration_gives_no_warning():
    chk = check_conversion(_model([4, 2, 3], value_info=[2, 3, 4]), feeds=FEEDS)
    assert chk.report["warnings"] == []


@pytest.mark.parametrize("declared", [[7, 7], [24], [2, 3, 5]])
def test_declared_value_info_is_overridden_with_a_warning(declared):
    model = _model([4, 2, 3], value_info=declared)
    chk = check_conversion(model, feeds=FEEDS)
    warnings = chk.report["warnings"]
    assert any("value_info 't'" in w and "computes to [2, 3, 4]" in w for w in warnings), warnings


def test_declared_output_dtype_still_refused():
    expect_refusal(_model([4, 2, 3], out_type=TensorProto.INT64), errors.SHAPE_INFERENCE_FAILED)


def test_warning_reaches_the_report_file(tmp_path):
    from onnx2tflite_direct import convert

    res = convert(_model([1]), tmp_path, report_op_coverage=True)
    assert res.report["success"] is True
    assert res.report["warnings"] and "declared [1]" in res.report["warnings"][0]


def test_batch_size_on_a_model_with_a_fixed_batch_warns():
    """A pin that changes nothing says so (issue 19: a flag with no effect gets a warning)."""
    from onnx2tflite_direct import convert

    res = convert(_model([4, 2, 3], value_info=[2, 3, 4]), batch_size=1)
    assert any("batch-size pin (1) has no effect" in w for w in res.report["warnings"])
    dynamic = _model([4, 2, 3])
    dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    dynamic.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "n"
    res = convert(dynamic, batch_size=2)
    assert not any("batch-size" in w for w in res.report["warnings"])
