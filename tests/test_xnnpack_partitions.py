"""Lowerings pick ops XNNPACK takes, so a float32 graph runs in one delegate partition.

Each case converts, checks the numbers against onnxruntime (harness.check_conversion), and
counts the DELEGATE nodes of a LiteRT interpreter with XNNPACK after allocate_tensors() with
benchmarks/bench_partitions.py's counter (which the first test checks on a known split).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

from benchmarks.bench_partitions import count_partitions

RNG = np.random.default_rng(11)
F = np.float32
X = (1, 8, 6, 6)


def _signed(shape=X, scale=3.0):
    return {"x": (RNG.standard_normal(shape) * scale).astype(F)}


def _one_partition(chk) -> dict:
    parts = count_partitions(chk.tflite_bytes)
    assert parts["partitions"] == 1 and parts["outside"] == {}, parts
    return parts


def test_counter_finds_the_op_that_splits_a_graph():
    # SIGN has no XNNPACK kernel: Relu -> Sign -> Relu is two partitions around it
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Sign", ["a"], ["s"]),
        helper.make_node("Add", ["s", "x"], ["b"]),
        helper.make_node("Tanh", ["b"], ["y"]),
    ]
    model = make_model(nodes, [("x", F, X)], [("y", F, X)])
    chk = check_conversion(model, feeds=_signed())
    parts = count_partitions(chk.tflite_bytes)
    assert parts["outside"] == {"SIGN": 1}
    assert parts["partitions"] == 2
    assert parts["tflite_ops"] == 4 and parts["delegated_ops"] == 3


@pytest.mark.parametrize("slope_shape", [(8, 1, 1), (1,), (6,)])
def test_prelu_is_the_prelu_builtin(slope_shape):
    model = make_model(
        [helper.make_node("PRelu", ["x", "s"], ["y"])],
        [("x", F, X)],
        [("y", F, X)],
        {"s": RNG.uniform(-0.5, 0.5, slope_shape).astype(F)},
    )
    chk = check_conversion(model, feeds=_signed())
    assert dict(chk.ops) == {"PRELU": 1}
    _one_partition(chk)
    decomposed = check_conversion(model, feeds=_signed(), decompose=("PRelu",))
    assert {"GREATER", "SELECT_V2"} <= set(decomposed.ops) and "PRELU" not in decomposed.ops


def test_prelu_with_a_runtime_slope_and_rank_5_input():
    model = make_model(
        [helper.make_node("PRelu", ["x", "s"], ["y"])],
        [("x", F, (1, 2, 3, 4, 5)), ("s", F, (5,))],
        [("y", F, (1, 2, 3, 4, 5))],
    )
    feeds = {"x": RNG.standard_normal((1, 2, 3, 4, 5)).astype(F), "s": RNG.uniform(-1, 1, 5)}
    feeds["s"] = feeds["s"].astype(F)
    chk = check_conversion(model, feeds=feeds)  # rank 5: the select form
    assert "PRELU" not in chk.ops


@pytest.mark.parametrize("alpha, beta", [(0.2, 0.5), (1 / 6, 0.5), (0.25, 0.4)])
def test_hard_sigmoid_stays_in_one_partition(alpha, beta):
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("HardSigmoid", ["c"], ["h"], alpha=alpha, beta=beta),
        helper.make_node("Mul", ["h", "c"], ["y"]),
    ]
    model = make_model(
        nodes, [("x", F, X)], [("y", F, X)], {"w": RNG.standard_normal((8, 8, 3, 3)).astype(F) / 8}
    )
    chk = check_conversion(model, feeds=_signed())
    assert "RELU_0_TO_1" not in chk.ops
    _one_partition(chk)


def test_clip_0_1_stays_in_one_partition_and_is_exact():
    nodes = [
        helper.make_node("Mul", ["x", "k"], ["m"]),
        helper.make_node("Clip", ["m", "lo", "hi"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("x", F, X)],
        [("y", F, X)],
        {"k": np.array(0.4, F), "lo": np.array(0, F), "hi": np.array(1, F)},
    )
    chk = check_conversion(model, feeds=_signed(), atol=0, rtol=0)
    assert "RELU_0_TO_1" not in chk.ops
    _one_partition(chk)


def test_conv1d_filters_stay_constant():
    # a 1-D conv runs as a 2-D one; its filter reshape is done at conversion time, since
    # XNNPACK takes CONV_2D only with a static filter
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1], dilations=[1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"], pads=[2, 2], dilations=[2]),
    ]
    model = make_model(
        nodes,
        [("x", F, (1, 4, 50))],
        [("y", F, (1, 6, 50))],
        {
            "w1": RNG.standard_normal((8, 4, 3)).astype(F) / 4,
            "b1": RNG.standard_normal(8).astype(F),
            "w2": RNG.standard_normal((6, 8, 3)).astype(F) / 4,
        },
    )
    chk = check_conversion(model, feeds=_signed((1, 4, 50)))
    assert chk.ops["CONV_2D"] == 2
    _one_partition(chk)


def test_rms_norm_pow_2_stays_in_one_partition():
    nodes = [
        helper.make_node("Pow", ["x", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "axes"], ["ms"], keepdims=1),
        helper.make_node("Add", ["ms", "eps"], ["v"]),
        helper.make_node("Sqrt", ["v"], ["rms"]),
        helper.make_node("Div", ["x", "rms"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("x", F, (1, 7, 32))],
        [("y", F, (1, 7, 32))],
        {"two": np.array(2, F), "axes": np.array([-1], np.int64), "eps": np.array(1e-6, F)},
        opset=18,
    )
    chk = check_conversion(model, feeds=_signed((1, 7, 32)))
    assert "POW" not in chk.ops
    _one_partition(chk)


def test_dynamo_gelu_form_becomes_gelu():
    # torch dynamo writes x * (0.5 * (1 + erf(x / sqrt 2))); lowered literally, Erf's SIGN
    # split every transformer MLP out of the delegate
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["half", "a"], ["h"]),
        helper.make_node("Mul", ["x", "h"], ["y"]),
    ]
    consts = {"sqrt2": np.array(math.sqrt(2), F), "one": np.array(1, F), "half": np.array(0.5, F)}
    model = make_model(nodes, [("x", F, (2, 16))], [("y", F, (2, 16))], consts)
    chk = check_conversion(model, feeds=_signed((2, 16)))
    assert dict(chk.ops) == {"GELU": 1}
    _one_partition(chk)


@pytest.mark.parametrize(
    "scale, coord, nearest_mode",
    [
        (2, "asymmetric", "floor"),
        (2, "half_pixel", "round_prefer_floor"),
        (4, "asymmetric", "floor"),
        (8, "half_pixel", "round_prefer_floor"),
    ],
)
def test_nearest_upsampling_by_powers_of_two_is_pixel_replication(scale, coord, nearest_mode):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node(
            "Resize",
            ["r", "", "sc"],
            ["y"],
            mode="nearest",
            coordinate_transformation_mode=coord,
            nearest_mode=nearest_mode,
        ),
    ]
    out = (1, 8, 5 * scale, 3 * scale)
    model = make_model(
        nodes,
        [("x", F, (1, 8, 5, 3))],
        [("y", F, out)],
        {"sc": np.array([1, 1, scale, scale], F)},
        opset=13,
    )
    chk = check_conversion(model, feeds=_signed((1, 8, 5, 3)), atol=0, rtol=0)
    steps = int(math.log2(scale))
    assert dict(chk.ops) == {"RELU": 1, "CONCATENATION": steps, "DEPTH_TO_SPACE": steps}
    _one_partition(chk)


def test_nearest_upsampling_by_3_keeps_the_builtin():
    model = make_model(
        [helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest", nearest_mode="floor")],
        [("x", F, (1, 2, 4, 4))],
        [("y", F, (1, 2, 12, 12))],
        {"sc": np.array([1, 1, 3, 3], F)},
        opset=13,
    )
    chk = check_conversion(model, feeds=_signed((1, 2, 4, 4)))
    assert "DEPTH_TO_SPACE" not in chk.ops


def test_unequal_split_is_slices():
    nodes = [
        helper.make_node("Split", ["x", "sizes"], ["a", "b", "c"], axis=1),
        helper.make_node("Add", ["a", "c"], ["ac"]),
        helper.make_node("Concat", ["ac", "b"], ["y"], axis=1),
    ]
    model = make_model(
        nodes,
        [("x", F, (1, 10, 4, 4))],
        [("y", F, (1, 7, 4, 4))],
        {"sizes": np.array([3, 4, 3], np.int64)},
        opset=13,
    )
    chk = check_conversion(model, feeds=_signed((1, 10, 4, 4)), atol=0, rtol=0)
    assert chk.ops["SLICE"] == 3 and "SPLIT_V" not in chk.ops
    _one_partition(chk)


@pytest.mark.parametrize(
    "shape, starts, ends, axes, steps",
    [
        ((1, 3, 16, 16), [0, 0], [16, 16], [2, 3], [2, 2]),  # YOLOv5 Focus
        ((1, 3, 16, 16), [1, 0], [16, 16], [2, 3], [2, 2]),
        ((1, 3, 15, 16), [1], [15], [2], [2]),  # odd length: blocks end at the picked cell
        ((2, 10, 7), [1], [9], [1], [3]),
        ((1, 16, 16, 8), [0, 1], [16, 16], [1, 2], [2, 2]),  # Swin patch merging (NHWC)
        ((12,), [2], [12], [0], [5]),
    ],
)
def test_strided_slices_are_slices_of_blocks(shape, starts, ends, axes, steps):
    out = list(shape)
    for a, b, e, st in zip(axes, starts, ends, steps, strict=True):
        out[a] = len(range(b, e, st))
    nodes = [
        helper.make_node("Slice", ["x", "b", "e", "a", "s"], ["sl"]),
        helper.make_node("Tanh", ["sl"], ["y"]),
    ]
    consts = {
        k: np.array(v, np.int64) for k, v in zip("beas", (starts, ends, axes, steps), strict=True)
    }
    model = make_model(nodes, [("x", F, shape)], [("y", F, tuple(out))], consts)
    chk = check_conversion(model, feeds=_signed(shape))
    assert "STRIDED_SLICE" not in chk.ops
    _one_partition(chk)


def test_float_expand_is_a_mul_by_ones():
    # Llama's grouped-query K/V repeat: [1, 2, 1, 5, 8] -> [1, 2, 3, 5, 8]
    nodes = [
        helper.make_node("Expand", ["x", "shape"], ["e"]),
        helper.make_node("Reshape", ["e", "flat"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("x", F, (1, 2, 1, 5, 8))],
        [("y", F, (1, 6, 5, 8))],
        {"shape": np.array([1, 2, 3, 5, 8], np.int64), "flat": np.array([1, 6, 5, 8], np.int64)},
    )
    x = _signed((1, 2, 1, 5, 8))
    x["x"].flat[:3] = [-0.0, np.inf, -np.inf]
    chk = check_conversion(model, feeds=x, atol=0, rtol=0)
    assert chk.ops["MUL"] == 1 and "BROADCAST_TO" not in chk.ops
    assert np.signbit(chk.validation.actual["y"].flat[0])  # -0 * 1 stays -0
    _one_partition(chk)


@pytest.mark.parametrize("count", [6, 12, 20])
def test_long_float_concat_is_a_tree_of_at_most_5_inputs(count):
    names = [f"x{i}" for i in range(count)]
    nodes = [
        helper.make_node("Concat", names, ["c"], axis=1),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    model = make_model(nodes, [(n, F, (1, 2, 3)) for n in names], [("y", F, (1, 2 * count, 3))])
    feeds = {n: RNG.standard_normal((1, 2, 3)).astype(F) for n in names}
    chk = check_conversion(model, feeds=feeds, atol=0, rtol=0)
    assert chk.ops["CONCATENATION"] >= 2
    _one_partition(chk)


@pytest.mark.parametrize("act, zero_pad", [("Relu", True), ("Tanh", False)])
def test_max_pool_after_relu_pads_with_zeros(act, zero_pad):
    # ResNet's stem: Relu -> MaxPool 3x3 / 2, pads 1; zeros pad like -inf after a RELU
    nodes = [
        helper.make_node(act, ["x"], ["r"]),
        helper.make_node(
            "MaxPool", ["r"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
    ]
    model = make_model(nodes, [("x", F, (1, 4, 12, 12))], [("y", F, (1, 4, 6, 6))])
    x = _signed((1, 4, 12, 12))
    x["x"][:, :, :2, :2] = -5.0  # a corner window that sees only negative inputs
    exact = {"atol": 0, "rtol": 0} if act == "Relu" else {}  # (TANH kernels differ by ulps)
    chk = check_conversion(model, feeds=x, **exact)
    assert ("PAD" in chk.ops) == zero_pad and ("PADV2" in chk.ops) != zero_pad
    if zero_pad:
        _one_partition(chk)


def test_optimized_encoder_layers_share_one_mask_and_split_qkv_evenly():
    # onnxruntime's transformer optimizer: com.microsoft Attention per layer, all reading the
    # same mask_index. The mask is built once and the packed QKV is a SPLIT, so everything
    # after the mask runs in one partition.
    b, s, d, heads, layers = 2, 6, 16, 2, 3
    nodes, inits = [], {}
    x = "x"
    for i in range(layers):
        inits[f"w{i}"] = (RNG.standard_normal((d, 3 * d)) * 0.3).astype(F)
        inits[f"b{i}"] = (RNG.standard_normal(3 * d) * 0.1).astype(F)
        att = f"att{i}"
        nodes.append(
            helper.make_node(
                "Attention",
                [x, f"w{i}", f"b{i}", "mask"],
                [att],
                domain="com.microsoft",
                num_heads=heads,
            )
        )
        nodes.append(helper.make_node("Add", [att, x], [f"res{i}"]))
        x = f"res{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    model = make_model(
        nodes,
        [("x", F, (b, s, d)), ("mask", np.int32, (b,))],
        [("y", F, None)],
        inits,
        opset={"": 17, "com.microsoft": 1},
        check=False,
    )
    feeds = {"x": RNG.standard_normal((b, s, d)).astype(F), "mask": np.array([4, 6], np.int32)}
    chk = check_conversion(model, feeds=feeds, atol=2e-5)
    assert chk.ops["SPLIT"] == layers and "SPLIT_V" not in chk.ops
    assert chk.ops["LESS"] == 1  # one mask for every layer
    parts = count_partitions(chk.tflite_bytes)
    # the first layer's projection runs before the mask is built: 2 partitions, whatever
    # the depth (one per layer before)
    assert parts["partitions"] == 2, parts


def test_erf_has_no_sign_op():
    model = make_model(
        [helper.make_node("Erf", ["x"], ["e"]), helper.make_node("Add", ["e", "x"], ["y"])],
        [("x", F, (24,))],
        [("y", F, (24,))],
    )
    x = np.concatenate(
        [
            np.array([np.inf, -np.inf, 0.0, -0.0, 1e-31, -1e-31, 1e-20, -3e-12], F),
            RNG.standard_normal(16).astype(F) * 2,
        ]
    )
    chk = check_conversion(model, feeds={"x": x})
    assert "SIGN" not in chk.ops
    _one_partition(chk)
