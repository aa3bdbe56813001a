"""TRANSPOSE counts on the block patterns that break pattern-based converters.

Each count equals the number of reorderings the ONNX graph semantically requires: 0 for CSP,
FPN, SPP and LayerNorm over channels; 1 for a detection head that interleaves anchors with
spatial positions. (Residual, squeeze-excitation, channel shuffle, flatten->classifier and
concat are in test_layout.py; attention blocks are counted on ViT/BERT in
test_benchmark_models.py: exactly the ONNX graph's 4 Transposes per layer.)
"""

from __future__ import annotations

import numpy as np
from harness import check_conversion, make_model
from onnx import helper

RNG = np.random.default_rng(1)
F = np.float32


class Block:
    """Tiny graph builder for these tests: named convs with seeded weights."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], {}, 0

    def conv(self, x, cin, cout, k=1, stride=1):
        self.n += 1
        name = f"c{self.n}"
        self.inits[f"{name}_w"] = (RNG.standard_normal((cout, cin, k, k)) * 0.3).astype(F)
        self.inits[f"{name}_b"] = (RNG.standard_normal(cout) * 0.1).astype(F)
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}_w", f"{name}_b"],
                [name],
                pads=[k // 2] * 4,
                strides=[stride] * 2,
            )
        )
        return name

    def op(self, op_type, inputs, out, **attrs):
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def const(self, name, value):
        self.inits[name] = np.asarray(value)
        return name

    def check(self, x_shape, out, out_shape):
        model = make_model(self.nodes, [("x", F, x_shape)], [(out, F, out_shape)], self.inits)
        return check_conversion(model, atol=1e-4)


def test_csp_split_concat_with_unsplit_tensor_is_transpose_free():
    b = Block()
    a = b.conv("x", 8, 8)
    b.nodes.append(
        helper.make_node(
            "Split", [a, b.const("sp", np.array([4, 4], np.int64))], ["s1", "s2"], axis=1
        )
    )
    m = b.conv("s2", 4, 4, k=3)
    b.op("Concat", ["s1", m, a], "cat", axis=1)
    y = b.conv("cat", 16, 8)
    assert b.check((1, 8, 6, 6), y, (1, 8, 6, 6)).ops.get("TRANSPOSE", 0) == 0


def test_fpn_resize_and_concat_is_transpose_free():
    b = Block()
    c3 = b.conv("x", 4, 8, k=3)
    c4 = b.conv(c3, 8, 8, k=3, stride=2)
    up = b.op(
        "Resize",
        [c4, "", b.const("scales", np.array([1, 1, 2, 2], F))],
        "up",
        mode="nearest",
    )
    b.op("Concat", [up, c3], "cat", axis=1)
    y = b.conv("cat", 16, 4)
    assert b.check((1, 4, 8, 8), y, (1, 4, 8, 8)).ops.get("TRANSPOSE", 0) == 0


def test_spp_with_several_maxpools_is_transpose_free():
    b = Block()
    a = b.conv("x", 4, 4)
    p1 = b.op("MaxPool", [a], "p1", kernel_shape=[5, 5], pads=[2] * 4)
    p2 = b.op("MaxPool", [p1], "p2", kernel_shape=[5, 5], pads=[2] * 4)
    p3 = b.op("MaxPool", [p2], "p3", kernel_shape=[5, 5], pads=[2] * 4)
    b.op("Concat", [a, p1, p2, p3], "cat", axis=1)
    y = b.conv("cat", 16, 4)
    assert b.check((1, 4, 8, 8), y, (1, 4, 8, 8)).ops.get("TRANSPOSE", 0) == 0


def test_layernorm_over_channels_via_transposes_is_transpose_free():
    """ConvNeXt-style: permute to NHWC, LayerNormalization(axis=-1), permute back."""
    b = Block()
    a = b.conv("x", 4, 6, k=3)
    t = b.op("Transpose", [a], "t", perm=[0, 2, 3, 1])
    g, be = b.const("g", (RNG.standard_normal(6)).astype(F)), b.const("be", np.zeros(6, F))
    ln = b.op("LayerNormalization", [t, g, be], "ln", axis=-1)
    back = b.op("Transpose", [ln], "back", perm=[0, 3, 1, 2])
    y = b.conv(back, 6, 4)
    assert b.check((1, 4, 5, 5), y, (1, 4, 5, 5)).ops.get("TRANSPOSE", 0) == 0


def test_layernorm_over_channels_via_reducemean_is_transpose_free():
    """channels_first LayerNorm written with ReduceMean over axis 1 (Pow/Sqrt/Div chain)."""
    b = Block()
    a = b.conv("x", 4, 6, k=3)
    u = b.op("ReduceMean", [a], "u", axes=[1], keepdims=1)
    d = b.op("Sub", [a, u], "d")
    sq = b.op("Pow", [d, b.const("two", np.array(2, F))], "sq")
    var = b.op("ReduceMean", [sq], "var", axes=[1], keepdims=1)
    den = b.op("Sqrt", [b.op("Add", [var, b.const("eps", np.array(1e-6, F))], "ve")], "den")
    n = b.op("Div", [d, den], "n")
    w = b.const("w", (RNG.standard_normal((6, 1, 1))).astype(F))
    y = b.op("Mul", [n, w], "y")
    assert b.check((1, 4, 5, 5), y, (1, 6, 5, 5)).ops.get("TRANSPOSE", 0) == 0


def test_detection_head_reorder_costs_one_transpose():
    """[1, A*C, H, W] -> [1, A, C, H, W] -> [1, A, H, W, C] -> [1, A*H*W, C]: anchors move in
    front of the spatial positions, a real reorder (one TRANSPOSE)."""
    b = Block()
    anchors, classes = 3, 5
    a = b.conv("x", 4, anchors * classes)
    r = b.op("Reshape", [a, b.const("s5", np.array([1, anchors, classes, 4, 4], np.int64))], "r5")
    t = b.op("Transpose", [r], "t5", perm=[0, 1, 3, 4, 2])
    y = b.op("Reshape", [t, b.const("s3", np.array([1, anchors * 16, classes], np.int64))], "y")
    chk = b.check((1, 4, 4, 4), y, (1, anchors * 16, classes))
    assert chk.ops.get("TRANSPOSE", 0) == 1
