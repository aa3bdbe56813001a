"""DepthToSpace/SpaceToDepth (DCR/CRD), ReverseSequence, CenterCropPad against onnxruntime."""

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8])  # what onnxruntime implements
@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("block", [2, 3])
def test_depth_to_space(block, mode, dtype):
    c = 2 * block * block
    x = (RNG.random((2, c, 3, 2)) * 100).astype(dtype)
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=block, mode=mode)
    model = make_model(
        [node], [("x", dtype, x.shape)], [("y", dtype, (2, 2, 3 * block, 2 * block))], opset=13
    )
    check_conversion(model, feeds={"x": x})


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("block", [2, 3])
def test_space_to_depth(block, mode):
    x = RNG.random((1, 3, 2 * block, 3 * block)).astype(np.float32)
    opset = 25 if mode == "CRD" else 13
    attrs = {"mode": mode} if mode == "CRD" else {}
    node = helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=block, **attrs)
    out = (1, 3 * block * block, 2, 3)
    try:
        model = make_model(
            [node], [("x", np.float32, x.shape)], [("y", np.float32, out)], opset=opset
        )
    except Exception:
        pytest.skip("this onnx has no SpaceToDepth mode attribute")
    check_conversion(model, feeds={"x": x})


def test_depth_to_space_between_convs_is_transpose_free():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("DepthToSpace", ["c"], ["d"], blocksize=2, mode="CRD"),
        helper.make_node("Conv", ["d", "w2"], ["y"]),
    ]
    inits = {
        "w": RNG.standard_normal((8, 3, 1, 1)).astype(np.float32),
        "w2": RNG.standard_normal((2, 2, 1, 1)).astype(np.float32),
    }
    model = make_model(
        nodes, [("x", np.float32, (1, 3, 4, 4))], [("y", np.float32, (1, 2, 8, 8))], inits
    )
    chk = check_conversion(model)
    assert chk.ops["TRANSPOSE"] <= 2


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
@pytest.mark.parametrize("time_axis,batch_axis", [(0, 1), (1, 0)])
def test_reverse_sequence(time_axis, batch_axis, dtype):
    shape = [4, 4, 3]
    x = (RNG.random(shape) * 100).astype(dtype)
    lens = np.array([1, 4, 2, 3], np.int64)
    node = helper.make_node(
        "ReverseSequence", ["x", "l"], ["y"], time_axis=time_axis, batch_axis=batch_axis
    )
    model = make_model(
        [node], [("x", dtype, shape), ("l", np.int64, (4,))], [("y", dtype, shape)], opset=10
    )
    check_conversion(model, feeds={"x": x, "l": lens})


@pytest.mark.parametrize(
    "in_shape,target,axes,out_shape",
    [
        ((5, 6), (3, 9), None, (3, 9)),
        ((4, 7, 3), (6, 2), (0, 1), (6, 2, 3)),
        ((4, 7, 3), (2, 5), (-3, -1), (2, 7, 5)),
        ((3, 3), (3, 3), None, (3, 3)),
    ],
)
def test_center_crop_pad(in_shape, target, axes, out_shape):
    attrs = {} if axes is None else {"axes": list(axes)}
    node = helper.make_node("CenterCropPad", ["x", "s"], ["y"], **attrs)
    model = make_model(
        [node],
        [("x", np.float32, in_shape), ("s", np.int64, (len(target),))],
        [("y", np.float32, out_shape)],
        opset=18,
    )
    x = RNG.random(in_shape).astype(np.float32)
    check_conversion(model, feeds={"x": x, "s": np.array(target, np.int64)})
