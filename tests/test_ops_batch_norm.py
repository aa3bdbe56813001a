"""BatchNormalization (folded into a preceding Conv when possible) and LRN (batch_norm.py)
against onnxruntime, with constant and runtime scale/bias/statistics."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper
from test_ops_normalization import _model

BN_PARAMS = [("scale", (3,)), ("bias", (3,)), ("mean", (3,)), ("var", (3,))]


@pytest.mark.parametrize("runtime", [False, True])
@pytest.mark.parametrize("x_shape", [(2, 3), (2, 3, 5), (1, 3, 4, 4)])
def test_batchnorm(x_shape, runtime):
    check_conversion(_model("BatchNormalization", x_shape, BN_PARAMS, runtime, epsilon=1e-2))


def test_batchnorm_after_conv_is_folded():
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32)}
    inits.update({n: rng.uniform(0.5, 1.5, s).astype(np.float32) for n, s in BN_PARAMS})
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["h", "scale", "bias", "mean", "var"], ["y"]),
    ]
    model = make_model(
        nodes, [("x", np.float32, (1, 2, 5, 5))], [("y", np.float32, (1, 3, 5, 5))], inits
    )
    assert check_conversion(model).ops == {"CONV_2D": 1}


def test_batchnorm_training_outputs_refused():
    model = _model(
        "BatchNormalization",
        (2, 3, 4),
        BN_PARAMS,
        False,
        outputs=("y", "rm", "rv"),
        training_mode=1,
    )
    expect_refusal(model, "unsupported_attribute_value")


@pytest.mark.parametrize("size", [3, 5])
def test_lrn(size):
    check_conversion(
        _model("LRN", (1, 8, 3, 3), [], False, size=size, alpha=1e-2, beta=0.5, bias=2.0)
    )


def test_lrn_even_size_refused():
    expect_refusal(_model("LRN", (1, 8, 3, 3), [], False, size=4), "unsupported_attribute_value")
