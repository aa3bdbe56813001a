"""Expand and Tile (expand.py) against onnxruntime: runtime shapes and repeats, every dtype,
channel-last inputs."""

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper
from test_ops_generators import DTYPES, RNG, _data


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "in_shape,shape,out_shape",
    [((3, 1), (2, 1, 6), (2, 3, 6)), ((4,), (4,), (4,)), ((1, 2, 1), (3, 1, 1, 2), (3, 1, 2, 2))],
)
def test_expand_runtime_shape(in_shape, shape, out_shape, dtype):
    node = helper.make_node("Expand", ["x", "s"], ["y"])
    model = make_model(
        [node],
        [("x", dtype, in_shape), ("s", np.int64, (len(shape),))],
        [("y", dtype, out_shape)],
        opset=13,
    )
    check_conversion(model, feeds={"x": _data(in_shape, dtype), "s": np.array(shape, np.int64)})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("runtime", [False, True])
def test_tile(runtime, dtype):
    x = _data((2, 3, 1), dtype)
    reps = np.array([2, 1, 3], np.int64)
    inputs = [("x", dtype, x.shape)]
    feeds = {"x": x}
    inits = {}
    if runtime:
        inputs.append(("r", np.int64, (3,)))
        feeds["r"] = reps
    else:
        inits["r"] = reps
    node = helper.make_node("Tile", ["x", "r"], ["y"])
    model = make_model([node], inputs, [("y", dtype, (4, 3, 3))], inits, opset=13)
    check_conversion(model, feeds=feeds)


@pytest.mark.parametrize("runtime", [False, True])
def test_tile_channel_last_input(runtime):
    """Tile of a conv output (stored NHWC): repeats are permuted to the stored order."""
    w = RNG.standard_normal((2, 3, 1, 1)).astype(np.float32)
    reps = np.array([1, 2, 3, 1], np.int64)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Tile", ["c", "r"], ["y"]),
    ]
    inputs = [("x", np.float32, (1, 3, 2, 4))]
    inits = {"w": w}
    feeds = {"x": _data((1, 3, 2, 4))}
    if runtime:
        inputs.append(("r", np.int64, (4,)))
        feeds["r"] = reps
    else:
        inits["r"] = reps
    model = make_model(nodes, inputs, [("y", np.float32, (1, 4, 6, 4))], inits, opset=13)
    check_conversion(model, feeds=feeds)
