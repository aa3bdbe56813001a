"""The front end's axis check judges only what it knows: Keypoint R-CNN's export reads a Loop's
concatenated output (rank unknown to shape inference) with ``Gather(axis=2, scalar index)``;
the check saw only the index's rank 0 and called the model invalid (exit 2, blaming the
user's file) although onnxruntime runs it. The model now gets the refusal that describes it
(the concatenation grows with the trip count: a data-dependent size)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from harness import expect_refusal, make_model
from onnx import TensorProto, helper


def _growing_loop_then_gather():
    body = helper.make_graph(
        [
            helper.make_node("Concat", ["acc_in", "x"], ["acc_out"], axis=0),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None),
        ],
    )
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["zshape"],
            ["acc0"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
        ),
        helper.make_node("Loop", ["n", "cond", "acc0"], ["acc"], body=body),
        helper.make_node("Gather", ["acc", "k"], ["g"], axis=2),
        helper.make_node("Relu", ["g"], ["y"]),
    ]
    inits = {
        "zshape": np.array([0, 3, 4], np.int64),
        "cond": np.array(True),
        "k": np.array(1, np.int64),
    }
    return make_model(
        nodes,
        [("x", np.float32, (2, 3, 4)), ("n", np.int64, ())],
        [("y", np.float32, (2, 3))],
        initializers=inits,
    )


def test_unknown_rank_is_not_an_invalid_model():
    model = _growing_loop_then_gather()
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x, "n": np.array(1, np.int64)})
    # a valid model: onnxruntime runs it
    np.testing.assert_array_equal(y, np.maximum(x[:, :, 1], 0))
    expect_refusal(model, "dynamic_shape_unsupported")
