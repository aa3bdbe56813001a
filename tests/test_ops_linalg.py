"""Det via the Leibniz formula: orders 1..4, batched, and refusal of larger matrices."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

from onnx2tflite_direct.lowering.linalg import leibniz_tables


def _model(shape):
    node = helper.make_node("Det", ["x"], ["y"])
    return make_model([node], [("x", np.float32, shape)], [("y", np.float32, shape[:-2])], opset=22)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_det(order, batch):
    check_conversion(_model((*batch, order, order)))


def test_det_singular_matrix_is_zero():
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
    check_conversion(_model((1, 3, 3)), feeds={"x": x})


def test_leibniz_tables_reproduce_numpy():
    a = np.random.default_rng(5).standard_normal((4, 4))
    index, signs = leibniz_tables(4)
    assert np.isclose((a.reshape(-1)[index].prod(axis=1) * signs).sum(), np.linalg.det(a))


def test_det_large_refused():
    expect_refusal(_model((5, 5)), "unsupported_attribute_value")
