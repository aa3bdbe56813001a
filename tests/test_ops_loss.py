"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against onnxruntime."""

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

F = np.float32


def _feeds(x_shape, classes, with_weight, ignore, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, classes, (x_shape[0], *x_shape[2:])).astype(np.int64)
    if ignore is not None:
        target.reshape(-1)[::3] = ignore
    feeds = {"x": rng.standard_normal(x_shape).astype(F), "t": target}
    if with_weight:
        feeds["w"] = rng.uniform(0.5, 2.0, classes).astype(F)
    return feeds


def _model(op, x_shape, reduction, with_weight, ignore, log_prob=False):
    classes = x_shape[1]
    ins = ["x", "t"] + (["w"] if with_weight else [])
    attrs = {"reduction": reduction}
    if ignore is not None:
        attrs["ignore_index"] = ignore
    outs = ["loss"] + (["log_prob"] if log_prob else [])
    inputs = [("x", F, x_shape), ("t", np.int64, (x_shape[0], *x_shape[2:]))]
    if with_weight:
        inputs.append(("w", F, (classes,)))
    out_shape = (x_shape[0], *x_shape[2:]) if reduction == "none" else ()
    outputs = [("loss", F, out_shape)] + ([("log_prob", F, x_shape)] if log_prob else [])
    return make_model([helper.make_node(op, ins, outs, **attrs)], inputs, outputs, opset=13)


@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("x_shape", [(4, 5), (2, 3, 4), (2, 3, 2, 2, 2)])
@pytest.mark.parametrize(
    "with_weight,ignore", [(False, None), (True, None), (True, 1), (False, -1)]
)
def test_loss(op, reduction, x_shape, with_weight, ignore):
    model = _model(op, x_shape, reduction, with_weight, ignore)
    check_conversion(model, feeds=_feeds(x_shape, x_shape[1], with_weight, ignore))


def test_sce_log_prob_output():
    model = _model("SoftmaxCrossEntropyLoss", (2, 3, 4), "mean", True, None, log_prob=True)
    chk = check_conversion(model, feeds=_feeds((2, 3, 4), 3, True, None))
    assert chk.ops["LOG_SOFTMAX"] == 1


def test_nll_picks_target_even_next_to_neg_inf():
    model = _model("NegativeLogLikelihoodLoss", (2, 3), "none", False, None)
    feeds = {
        "x": np.array([[-np.inf, -1.0, -2.0], [-0.5, -np.inf, -3.0]], F),
        "t": np.array([1, 2], np.int64),
    }
    check_conversion(model, feeds=feeds)


def test_loss_float_target_refused():
    model = make_model(
        [helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["loss"])],
        [("x", F, (2, 3)), ("t", np.int64, (2,))],
        [("loss", F, ())],
        opset=13,
    )
    model.graph.input[0].type.tensor_type.elem_type = 11  # double scores
    model.graph.output[0].type.tensor_type.elem_type = 11
    expect_refusal(model, "unsupported_dtype")
