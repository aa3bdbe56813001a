"""A dynamic dim that is the sum of two others: a decoder's attention mask spans its cache and
the new tokens (``total = past + sequence``), and the model adds the mask to scores over
``Concat(past, new)``. Sampled independently, the model rejects every sample (OPT/BLOOM's
TorchScript exports were refused); the sample plans now try that dim as the sum of two
others once independent sizes are all rejected (``dynamic_sample_plans._summed``), warned;
a dim declared ``past+sequence`` is that sum from the start. The file must match
onnxruntime at every (sequence, past), including an empty cache."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import convert, make_model
from onnx import helper

from onnx2tflite_direct import validate as V

D = 8
SIZES = ((1, 1), (1, 5), (4, 9), (7, 3), (16, 32), (5, 0), (3, 70))


def _attention(total: str):
    """q [1, sequence, D] attends over Concat(cache [1, past, D], q) with a [1, total]
    0/1 mask added as -1e4 where 0."""
    rng = np.random.default_rng(0)
    inits = {
        "wq": (rng.standard_normal((D, D)) * 0.3).astype(np.float32),
        "one": np.array(1.0, np.float32),
        "big": np.array(-1e4, np.float32),
        "axes": np.array([1], np.int64),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("Concat", ["cache", "q"], ["k"], axis=1),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Sub", ["one", "mask"], ["off"]),
        helper.make_node("Mul", ["off", "big"], ["bias2"]),
        helper.make_node("Unsqueeze", ["bias2", "axes"], ["bias"]),
        helper.make_node("Add", ["scores", "bias"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "k"], ["y"]),
    ]
    return make_model(
        nodes,
        [
            ("x", np.float32, (1, "sequence", D)),
            ("cache", np.float32, (1, "past", D)),
            ("mask", np.float32, (1, total)),
        ],
        [("y", np.float32, (1, "sequence", D))],
        inits,
    )


def _check(model, res):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for seq, past in SIZES:
        mask = np.ones((1, seq + past), np.float32)
        mask[0, : min(2, past)] = 0.0  # left padding in the cache
        feeds = {
            "x": rng.standard_normal((1, seq, D)).astype(np.float32),
            "cache": rng.standard_normal((1, past, D)).astype(np.float32),
            "mask": mask,
        }
        (want,) = sess.run(None, feeds)
        got = V.run_litert(res.tflite_bytes, feeds, res.report["io"])["y"]
        assert got.shape == want.shape, (seq, past, got.shape)
        assert np.std(want) > 1e-2
        tol = 1e-5 * max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=tol, err_msg=f"{seq}, {past}")


def test_total_found_as_past_plus_sequence():
    model = _attention("total")
    res = convert(model)
    dims = res.report["dynamic_shapes"]["input_dims"]
    assert dims["mask"] == [1, "sequence+past"], dims
    assert sorted(s["name"] for s in res.report["dynamic_shapes"]["symbols"]) == [
        "past",
        "sequence",
    ]
    assert any("total = sequence + past" in w for w in res.report["warnings"])
    _check(model, res)


@pytest.mark.parametrize("declared", ["past+sequence", "sequence + past"])
def test_declared_sum_is_sampled_as_the_sum(declared):
    model = _attention(declared)
    res = convert(model)
    assert res.report["dynamic_shapes"]["input_dims"]["mask"] == [1, declared]
    assert not any("rejects independent sizes" in w for w in res.report["warnings"])
    _check(model, res)
