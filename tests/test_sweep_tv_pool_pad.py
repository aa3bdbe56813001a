"""A ceil-mode max pool whose input is >= 0 by construction further back than its producer:
GoogLeNet's max pools read an inception block's Concat of RELU branches (or another max pool
of one). Zero padding gives the same maxima as -inf there (every window holds an input cell)
and is a PAD, which XNNPACK takes; PADV2 (-inf) cut GoogLeNet into two delegate partitions."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

F = np.float32


def _pool(kind: str):
    nodes = [
        helper.make_node("Relu", ["a"], ["ra"]),
        helper.make_node("Relu", ["b"], ["rb"]),
        helper.make_node("Concat", ["ra", "rb"], ["c"], axis=1),
    ]
    src = "c"
    if kind == "pool_of_concat":
        nodes.append(  # inception's pool branch: 3x3 / 1, pads 1 (SAME: no PAD op)
            helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        )
        src = "p"
    if kind == "concat_with_tanh":  # one branch can be negative: -inf stays
        nodes[1] = helper.make_node("Tanh", ["b"], ["rb"])
    nodes.append(
        helper.make_node("MaxPool", [src], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    )
    return make_model(  # 14 -> 7: ceil mode adds a padded row and column
        nodes,
        [("a", F, (1, 3, 14, 14)), ("b", F, (1, 2, 14, 14))],
        [("y", F, (1, 5, 7, 7))],
    )


@pytest.mark.parametrize(
    "kind, zero_pad",
    [("concat", True), ("pool_of_concat", True), ("concat_with_tanh", False)],
)
def test_ceil_mode_max_pool_after_concat_of_relus(kind, zero_pad):
    rng = np.random.default_rng(0)
    feeds = {
        "a": (rng.standard_normal((1, 3, 14, 14)) - 2.0).astype(F),  # mostly negative: zeros
        "b": rng.standard_normal((1, 2, 14, 14)).astype(F),
    }
    feeds["b"][:, :, -3:, -3:] = -4.0  # the padded corner window sees only negative inputs
    chk = check_conversion(_pool(kind), feeds=feeds, atol=0, rtol=0 if zero_pad else 1e-6)
    assert ("PADV2" in chk.ops) != zero_pad, chk.ops
    assert ("PAD" in chk.ops) == zero_pad, chk.ops
