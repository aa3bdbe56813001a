"""Dynamic-batch scikit-learn pipelines converted unpinned (sklearn-onnx exports the batch as
an unnamed unknown dim): each graph reproduces one pattern that was refused with
``dynamic_shape_unsupported`` and is now one file that matches onnxruntime at every batch.

* a ConstantOfShape over the shape of an ai.onnx.ml output, which the front end folds at the
  sample size (a bias column concatenated in front of polynomial features; the "one" of
  AdaBoost's SAMME Where): a uniform constant whose shape follows the batch, now a FILL at
  a run-time shape (``dynamic_constants._filled``);
* a Scan whose state is the batch (k-nearest neighbours' distances to the training rows):
  its scan output buffer [T, batch] is such a constant, the same FILL;
* one input per column, each with its own unnamed batch dim, concatenated side by side
  (ColumnTransformer): the samples where they differ leave a shape unknown, which now counts
  as the model rejecting them, so the batch dims are sampled as one
  (``dynamic_compare._unequal_batches``).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import convert, make_model, op_histogram
from onnx import helper

from onnx2tflite_direct import validate as V

ML = {"": 17, "ai.onnx.ml": 3}
BATCHES = (1, 2, 7, 64)


def _scaler(x: str, y: str, d: int) -> object:
    return helper.make_node(
        "Scaler",
        [x],
        [y],
        domain="ai.onnx.ml",
        offset=[float(v) for v in np.linspace(-1.0, 1.5, d)],
        scale=[float(v) for v in np.linspace(0.5, 2.0, d)],
    )


def _check_batches(model, inputs: dict[str, tuple[int, ...]], seed: int = 0):
    """Convert ``model`` with no pins: every input's batch stays dynamic (-1 in the
    signature), and LiteRT matches onnxruntime at each of ``BATCHES`` (resized inputs),
    within float32 rounding of each output's scale."""
    res = convert(model)
    for row in res.report["io"]:
        if row["name"] in inputs:
            assert row["shape_signature"][0] == -1, row
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(seed)
    for n in BATCHES:
        feeds = {
            k: rng.standard_normal((n, *tail)).astype(np.float32) for k, tail in inputs.items()
        }
        expected = dict(zip(names, sess.run(None, feeds), strict=True))
        actual = V.run_litert(res.tflite_bytes, feeds, res.report["io"])
        for out, want in expected.items():
            got = actual[out]
            assert got.shape == want.shape, (n, out, got.shape, want.shape)
            if n > 1:
                assert np.std(want) > 1e-3, (n, out)  # not a near-constant output
            tol = 1e-5 * max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=tol, err_msg=f"batch {n}")
    return res


def test_bias_column_of_ml_output_shape():
    """PolynomialFeatures' bias: ConstantOfShape(Shape(prod)) concatenated before it."""
    nodes = [
        _scaler("X", "s", 4),
        helper.make_node("ReduceProd", ["s"], ["prod"], axes=[1], keepdims=1),
        helper.make_node("Shape", ["prod"], ["shape"]),
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["unit"],
            value=helper.make_tensor("one", 1, [1], [1.0]),
        ),
        helper.make_node("Concat", ["unit", "prod", "s"], ["Y"], axis=1),
    ]
    model = make_model(
        nodes, [("X", np.float32, (None, 4))], [("Y", np.float32, (None, 6))], opset=ML
    )
    res = _check_batches(model, {"X": (4,)})
    assert op_histogram(res.tflite_bytes)["FILL"] == 1  # the bias column, at run time


def test_where_over_ml_output_shape():
    """AdaBoost's SAMME: Where(cond, ConstantOfShape(Shape(p), 1), -0.5) times a weight."""
    nodes = [
        _scaler("X", "p", 3),
        helper.make_node("Shape", ["p"], ["shape"]),
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["one"],
            value=helper.make_tensor("v", 1, [1], [1.0]),
        ),
        helper.make_node("Greater", ["p", "zero"], ["pos"]),
        helper.make_node("Where", ["pos", "one", "neg"], ["w"]),
        helper.make_node("Mul", ["w", "weight"], ["wp"]),
        helper.make_node("Add", ["wp", "p"], ["Y"]),
    ]
    inits = {
        "zero": np.zeros((1,), np.float32),
        "neg": np.array([-0.5], np.float32),
        "weight": np.array(0.75, np.float32),
    }
    model = make_model(
        nodes, [("X", np.float32, (None, 3))], [("Y", np.float32, (None, 3))], inits, opset=ML
    )
    res = _check_batches(model, {"X": (3,)})
    assert op_histogram(res.tflite_bytes)["FILL"] == 1


def test_scan_over_training_rows_with_batch_state():
    """k-NN's distances: a Scan over the training rows whose state is the batch [N, D];
    its scan output [T, N] is transposed to [N, T]."""
    d, t = 4, 9
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["state_in"], ["state_out"]),
            helper.make_node("Sub", ["state_in", "row"], ["diff"]),
            helper.make_node("ReduceSumSquare", ["diff"], ["dist"], axes=[1], keepdims=0),
        ],
        "body",
        [
            helper.make_tensor_value_info("state_in", 1, [None, d]),
            helper.make_tensor_value_info("row", 1, [d]),
        ],
        [
            helper.make_tensor_value_info("state_out", 1, [None, d]),
            helper.make_tensor_value_info("dist", 1, [None]),
        ],
    )
    nodes = [
        _scaler("X", "s", d),
        helper.make_node("Scan", ["s", "train"], ["final", "dists"], num_scan_inputs=1, body=body),
        helper.make_node("Transpose", ["dists"], ["dt"], perm=[1, 0]),
        helper.make_node("Sqrt", ["dt"], ["Y"]),
    ]
    train = np.random.default_rng(1).standard_normal((t, d)).astype(np.float32)
    model = make_model(
        nodes,
        [("X", np.float32, (None, d))],
        [("Y", np.float32, (None, t))],
        {"train": train},
        opset=ML,
    )
    res = _check_batches(model, {"X": (d,)})
    assert op_histogram(res.tflite_bytes)["FILL"] == 1  # the [T, N] scan output buffer


@pytest.mark.parametrize("through_ml", [False, True])
def test_columns_with_their_own_unnamed_batch(through_ml):
    """ColumnTransformer: one input per column group, each batch an unnamed dim of its own,
    concatenated side by side (directly, or after an ai.onnx.ml op on each group)."""
    nodes = [helper.make_node("Concat", ["a", "b"], ["ab"], axis=1)]
    if through_ml:
        nodes = [
            _scaler("a", "sa", 2),
            helper.make_node("Concat", ["sa", "b"], ["ab"], axis=1),
        ]
    nodes.append(helper.make_node("MatMul", ["ab", "w"], ["Y"]))
    w = np.random.default_rng(2).standard_normal((5, 2)).astype(np.float32)
    model = make_model(
        nodes,
        [("a", np.float32, (None, 2)), ("b", np.float32, (None, 3))],
        [("Y", np.float32, (None, 2))],
        {"w": w},
        opset=ML,
    )
    res = _check_batches(model, {"a": (2,), "b": (3,)})
    (symbol,) = res.report["dynamic_shapes"]["symbols"]  # the two batch dims, sampled as one
    assert sorted(map(tuple, symbol["dims"])) == [("a", 0), ("b", 0)]
    assert any("takes them as one batch" in w for w in res.report["warnings"])
