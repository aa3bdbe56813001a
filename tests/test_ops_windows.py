"""Window ops: constant sizes match onnxruntime; runtime sizes are refused."""

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper


@pytest.mark.parametrize("op", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic", [0, 1])
@pytest.mark.parametrize("size", [2, 7, 16])
def test_window_constant_size(op, periodic, size):
    model = make_model(
        [
            helper.make_node(op, ["n"], ["w"], periodic=periodic),
            helper.make_node("Mul", ["x", "w"], ["y"]),
        ],
        inputs=[("x", np.float32, (3, size))],
        outputs=[("y", np.float32, (3, size))],
        initializers={"n": np.array(size, np.int64)},
    )
    check_conversion(model)


@pytest.mark.parametrize("op", ["HannWindow", "BlackmanWindow"])
def test_window_values_match_reference(op):
    from onnx.reference import ReferenceEvaluator

    from onnx2tflite_direct.lowering.windows import window_values

    model = make_model(
        [helper.make_node(op, ["n"], ["w"], periodic=0)],
        inputs=[("n", np.int64, ())],
        outputs=[("w", np.float32, None)],
        check=False,
    )
    ref = ReferenceEvaluator(model).run(None, {"n": np.array(9, np.int64)})[0]
    np.testing.assert_allclose(window_values(op, 9, False), ref, atol=1e-6)


def test_window_runtime_size_refused():
    model = make_model(
        [helper.make_node("HannWindow", ["n"], ["w"])],
        inputs=[("n", np.int64, ())],
        outputs=[("w", np.float32, (8,))],
        check=False,
    )
    expect_refusal(model)
