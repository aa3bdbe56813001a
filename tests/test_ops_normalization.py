"""Statistics normalizations (normalization.py: Layer/RMS/Instance/Group/MeanVariance/Lp)
against onnxruntime, with constant and runtime scale/bias. BatchNormalization and LRN:
tests/test_ops_batch_norm.py."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper


def _model(op, x_shape, params, runtime, outputs=("y",), opset=17, **attrs):
    """``params``: [(name, shape)] after x; runtime ones become graph inputs."""
    rng = np.random.default_rng(3)
    inputs = [("x", np.float32, x_shape)]
    inits = {}
    for name, shape in params:
        value = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        if runtime:
            inputs.append((name, np.float32, shape))
        else:
            inits[name] = value
    node = helper.make_node(op, ["x"] + [n for n, _ in params], list(outputs), **attrs)
    outs = [(o, np.float32, None) for o in outputs]
    outs[0] = (outputs[0], np.float32, x_shape)
    return make_model([node], inputs, outs, inits, opset=opset, check=False)


@pytest.mark.parametrize("runtime", [False, True])
@pytest.mark.parametrize(
    "x_shape,axis", [((2, 3, 4, 5), -1), ((2, 3, 4, 5), 1), ((4, 6), 0), ((2, 5, 3), -2)]
)
def test_layer_norm(x_shape, axis, runtime):
    norm_shape = x_shape[axis % len(x_shape) :]
    params = [("scale", norm_shape), ("bias", norm_shape)]
    check_conversion(
        _model("LayerNormalization", x_shape, params, runtime, axis=axis, epsilon=1e-3)
    )


def test_layer_norm_stash_outputs():
    node = helper.make_node("LayerNormalization", ["x", "scale"], ["y", "mean", "inv"], axis=1)
    outs = [
        ("y", np.float32, (2, 3, 4)),
        ("mean", np.float32, (2, 1, 1)),
        ("inv", np.float32, (2, 1, 1)),
    ]
    scale = np.linspace(0.5, 1.5, 12, dtype=np.float32).reshape(3, 4)
    model = make_model([node], [("x", np.float32, (2, 3, 4))], outs, {"scale": scale})
    check_conversion(model)


@pytest.mark.parametrize("runtime", [False, True])
@pytest.mark.parametrize("x_shape,axis", [((2, 3, 4, 5), -1), ((2, 3, 4), 1)])
def test_rms_norm(x_shape, axis, runtime):
    params = [("scale", x_shape[axis % len(x_shape) :])]
    check_conversion(_model("RMSNormalization", x_shape, params, runtime, opset=23, axis=axis))


@pytest.mark.parametrize("runtime", [False, True])
@pytest.mark.parametrize("x_shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)])
def test_instance_norm(x_shape, runtime):
    c = x_shape[1]
    check_conversion(_model("InstanceNormalization", x_shape, [("s", (c,)), ("b", (c,))], runtime))


@pytest.mark.parametrize("runtime", [False, True])
@pytest.mark.parametrize("x_shape,groups", [((2, 4, 3, 3), 2), ((1, 6, 5), 3), ((1, 4, 2, 2), 4)])
def test_group_norm_opset21(x_shape, groups, runtime):
    c = x_shape[1]
    model = _model(
        "GroupNormalization",
        x_shape,
        [("s", (c,)), ("b", (c,))],
        runtime,
        opset=21,
        num_groups=groups,
    )
    check_conversion(model)


@pytest.mark.parametrize("axes", [[0, 2, 3], [2, 3], [1]])
def test_mvn(axes):
    check_conversion(
        _model("MeanVarianceNormalization", (2, 3, 4, 5), [], False, opset=13, axes=axes)
    )


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_lp_norm(p, axis):
    check_conversion(_model("LpNormalization", (2, 3, 4), [], False, opset=13, p=p, axis=axis))


def test_lp_norm_zero_vector_gives_zero():
    model = _model("LpNormalization", (2, 3), [], False, opset=13, p=2, axis=1)
    check_conversion(model, feeds={"x": np.array([[0, 0, 0], [3, 4, 0]], np.float32)})
