"""The float64 reference that issue 21 item 6 is scored against (tools/zoo/exact_reference.py)
must evaluate every op of the benchmark models exactly to float64, then round to float32.

onnx 1.23's reference LRN sums the squares over the batch axis instead of the channel window,
so on a (1, C, H, W) tensor every channel but the first is divided by ``bias ** beta`` only
(22 % off on AlexNet-like activations): the float64 figures of the three LRN models of
benchmarks/bench_prequantized.py were measured against a wrong model until it was replaced.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tools.zoo.exact_reference import run_float64


def _lrn_model(shape, **attrs) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("LRN", ["x"], ["y"], **attrs)],
        "lrn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _lrn_by_hand(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """The spec's formula, element by element over the channel window, in float64, rounded
    once to float32."""
    x = x.astype(np.float64)
    y = np.empty_like(x)
    channels = x.shape[1]
    for c in range(channels):
        lo = max(0, c - (size - 1) // 2)
        hi = min(channels - 1, c + int(np.ceil((size - 1) / 2)))
        square_sum = np.sum(x[:, lo : hi + 1] ** 2, axis=1)
        y[:, c] = x[:, c] / (bias + alpha / size * square_sum) ** beta
    return y.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize(
    ("shape", "attrs"),
    [
        ((1, 16, 7, 7), {"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}),
        ((2, 9, 5, 6), {"size": 3, "alpha": 2e-3, "beta": 0.5, "bias": 2.0}),
        ((1, 6, 4, 4), {"size": 4, "alpha": 1e-2, "beta": 0.75, "bias": 1.0}),  # even window
    ],
)
def test_lrn_float64_reference_sums_over_channels(shape, attrs):
    x = (np.random.default_rng(7).standard_normal(shape) * 30).astype(np.float32)
    got = run_float64(_lrn_model(list(shape), **attrs), {"x": x})["y"]
    want = _lrn_by_hand(x, attrs["size"], attrs["alpha"], attrs["beta"], attrs["bias"])
    # Both are the float32 rounding of a float64 value within ~1e-15 of the real one: equal
    # except where that value lies within 1e-15 of a float32 midpoint (one ulp then).
    assert np.max(np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32))) <= 1
    # The channel window matters on these activations (not a near-identity LRN).
    plain = x / attrs["bias"] ** attrs["beta"]
    assert np.max(np.abs(plain - want) / np.abs(want)) > 0.05


def test_lrn_float64_reference_agrees_with_onnxruntime():
    """onnxruntime's float32 LRN is within a few float32 roundings of the reference."""
    import onnxruntime as ort

    model = _lrn_model([1, 16, 9, 9], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = (np.random.default_rng(3).standard_normal((1, 16, 9, 9)) * 30).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_y = sess.run(None, {"x": x})[0].astype(np.float64)
    got = run_float64(model, {"x": x})["y"]
    assert np.max(np.abs(got - ort_y) / np.abs(got)) < 1e-6


def _pool_model(op: str, shape, **attrs) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], **attrs)],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("op", ["AveragePool", "MaxPool"])
@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        {"kernel_shape": [2, 3], "strides": [1, 2], "pads": [0, 1, 1, 0]},  # asymmetric
        {"kernel_shape": [7, 7]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},  # onnx's own (fallback)
        {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER"},  # onnx's own (fallback)
    ],
)
def test_strided_pools_equal_onnx_reference(op, attrs):
    """The strided-window pools of the float64 reference give onnx.reference's values (its
    per-element loop) to the float32 rounding, and what onnxruntime computes in float32."""
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    if op == "MaxPool":
        attrs = {k: v for k, v in attrs.items() if k != "count_include_pad"}
    model = _pool_model(op, [1, 5, 13, 11], **attrs)
    x = np.random.default_rng(11).standard_normal((1, 5, 13, 11)).astype(np.float32)
    got = run_float64(model, {"x": x})["y"]
    loop = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float64)})[0]
    assert got.shape == loop.shape
    np.testing.assert_array_equal(got, loop.astype(np.float32).astype(np.float64))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_y = sess.run(None, {"x": x})[0]
    assert np.max(np.abs(got - ort_y)) <= 2 * np.max(np.spacing(np.abs(ort_y)))
