"""Random ops: LiteRT's generators differ from onnxruntime's, so check distributions."""

import numpy as np
import pytest
from harness import convert, expect_refusal, make_model, op_histogram
from onnx import helper

from onnx2tflite_direct.validate import run_litert

F = np.float32
SHAPE = (200, 50)


def _run(nodes, inputs=(), feeds=None, out_shape=SHAPE):
    model = make_model(nodes, inputs=list(inputs), outputs=[("y", F, out_shape)], check=False)
    res = convert(model)
    return run_litert(res.tflite_bytes, feeds or {}, res.report.get("io"))["y"], res


def test_random_normal_statistics():
    attrs = {"shape": list(SHAPE), "mean": 2.0, "scale": 3.0}
    y, res = _run([helper.make_node("RandomNormal", [], ["y"], **attrs)])
    assert y.shape == SHAPE and y.dtype == F
    assert abs(y.mean() - 2.0) < 0.15 and abs(y.std() - 3.0) < 0.15
    assert op_histogram(res.tflite_bytes)["RANDOM_STANDARD_NORMAL"] == 1


def test_random_uniform_like_statistics():
    node = helper.make_node("RandomUniformLike", ["x"], ["y"], low=-1.0, high=3.0)
    y, _ = _run([node], [("x", F, SHAPE)], {"x": np.zeros(SHAPE, F)})
    assert y.min() >= -1.0 and y.max() < 3.0
    assert abs(y.mean() - 1.0) < 0.1 and abs(y.var() - 16 / 12) < 0.1


def test_random_normal_like_statistics():
    node = helper.make_node("RandomNormalLike", ["x"], ["y"])
    y, _ = _run([node], [("x", F, SHAPE)], {"x": np.zeros(SHAPE, F)})
    assert abs(y.mean()) < 0.05 and abs(y.std() - 1.0) < 0.05


def test_bernoulli_frequencies():
    p = np.tile(np.array([0.0, 0.2, 0.7, 1.0], F), (2500, 1))
    node = helper.make_node("Bernoulli", ["p"], ["y"])
    y, _ = _run([node], [("p", F, p.shape)], {"p": p}, out_shape=p.shape)
    assert set(np.unique(y)) <= {0.0, 1.0}
    np.testing.assert_allclose(y.mean(axis=0), [0.0, 0.2, 0.7, 1.0], atol=0.03)


@pytest.mark.parametrize("op", ["RandomNormal", "RandomUniform"])
def test_seeded_random_ops_are_refused(op):
    """A seed asks for the reference generator's exact sequence, which LiteRT cannot give."""
    node = helper.make_node(op, [], ["y"], shape=list(SHAPE), seed=3.0)
    model = make_model([node], inputs=[], outputs=[("y", F, SHAPE)], check=False)
    err = expect_refusal(model, "unsupported_attribute_value")
    assert "seed" in err.message
