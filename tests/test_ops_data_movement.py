"""Reshape family with runtime shape/axes, Dropout's mask, and Pad (all modes, runtime and
negative pads) against onnxruntime."""

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

RNG = np.random.default_rng(4)


@pytest.mark.parametrize(
    "op,in_shape,second,out_shape",
    [
        ("Reshape", (2, 3, 4), np.array([4, 0, -1], np.int64), (4, 3, 2)),
        ("Squeeze", (2, 1, 4, 1), np.array([1, -1], np.int64), (2, 4)),
        ("Unsqueeze", (2, 4), np.array([0, -1], np.int64), (1, 2, 4, 1)),
    ],
)
def test_reshape_family_runtime_operand(op, in_shape, second, out_shape):
    node = helper.make_node(op, ["x", "s"], ["y"])
    model = make_model(
        [node],
        [("x", np.float32, in_shape), ("s", np.int64, second.shape)],
        [("y", np.float32, out_shape)],
        opset=13,
    )
    check_conversion(model, feeds={"x": RNG.random(in_shape).astype(np.float32), "s": second})


def test_dropout_mask_output():
    node = helper.make_node("Dropout", ["x"], ["y", "m"])
    model = make_model(
        [node],
        [("x", np.float32, (2, 3))],
        [("y", np.float32, (2, 3)), ("m", np.bool_, (2, 3))],
        opset=13,
    )
    check_conversion(model)


PADS = [
    ([0, 1, 2, 0, 2, 1], "all axes"),
    ([1, 0, 0, 0, 0, 3], "one side"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
@pytest.mark.parametrize("runtime", [False, True])
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads,_why", PADS)
def test_pad_modes(pads, _why, mode, runtime, dtype):
    if runtime and mode in ("edge", "wrap"):
        pytest.skip("refused, see test_pad_runtime_edge_refused")
    x = (RNG.random((2, 4, 5)) * 100).astype(dtype)
    per_axis = list(zip(pads[:3], pads[3:], strict=True))
    out = tuple(d + b + e for d, (b, e) in zip(x.shape, per_axis, strict=True))
    inputs = [("x", dtype, x.shape)]
    feeds = {"x": x}
    inits = {}
    if runtime:
        inputs += [("p", np.int64, (6,)), ("v", dtype, ())]
        feeds.update(p=np.array(pads, np.int64), v=np.array(7, dtype))
    else:
        inits.update(p=np.array(pads, np.int64), v=np.array(7, dtype))
    node_inputs = ["x", "p", "v"] if mode == "constant" else ["x", "p"]
    if mode != "constant":
        inputs = [i for i in inputs if i[0] != "v"]
        feeds.pop("v", None)
        inits.pop("v", None)
    node = helper.make_node("Pad", node_inputs, ["y"], mode=mode)
    model = make_model([node], inputs, [("y", dtype, out)], inits, opset=19)
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_pad_negative_crops(mode):
    pads = np.array([-1, 2, 1, -2], np.int64)
    node = helper.make_node("Pad", ["x", "p"], ["y"], mode=mode)
    model = make_model(
        [node], [("x", np.float32, (4, 6))], [("y", np.float32, (4, 6))], {"p": pads}, opset=13
    )
    check_conversion(model)


@pytest.mark.parametrize("runtime", [False, True])
def test_pad_axes_on_channel_last_input(runtime):
    """Pad of a conv output (stored NHWC) with axes: pads land on the right stored axes."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Pad", ["c", "p", "", "a"], ["y"]),
    ]
    inits = {
        "w": RNG.standard_normal((2, 3, 1, 1)).astype(np.float32),
        "a": np.array([1, 3], np.int64),
    }
    pads = np.array([1, 0, 0, 2], np.int64)
    inputs = [("x", np.float32, (1, 3, 4, 4))]
    feeds = {"x": RNG.random((1, 3, 4, 4)).astype(np.float32)}
    if runtime:
        inputs.append(("p", np.int64, (4,)))
        feeds["p"] = pads
    else:
        inits["p"] = pads
    model = make_model(nodes, inputs, [("y", np.float32, (1, 3, 4, 6))], inits, opset=19)
    check_conversion(model, feeds=feeds)


def test_pad_runtime_edge_refused():
    node = helper.make_node("Pad", ["x", "p"], ["y"], mode="edge")
    model = make_model(
        [node],
        [("x", np.float32, (4,)), ("p", np.int64, (2,))],
        [("y", np.float32, (6,))],
        opset=13,
    )
    expect_refusal(model, "requires_constant_input")


def test_pad_opset10_attribute():
    node = helper.make_node("Pad", ["x"], ["y"], pads=[1, 0, 0, 2], value=1.5)
    model = make_model([node], [("x", np.float32, (2, 3))], [("y", np.float32, (3, 5))], opset=10)
    check_conversion(model)
