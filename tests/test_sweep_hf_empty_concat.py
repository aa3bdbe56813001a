"""A Concat operand with no elements is dropped (rule drop_empty_concat_operands).

transformers' partial rotary embedding, ``cat(rotate(q[..., :r]), q[..., r:])``, with the
whole head rotated (Phi-3: partial_rotary_factor 1.0) leaves an empty pass-through slice,
which TorchScript's exporter keeps. It was refused (unsupported_attribute_value: Slice with
an empty result); the empty operand adds nothing to the Concat.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from tests.harness import check_conversion, expect_refusal, make_model

HEAD = 8


def _partial_rotary(rotary: int):
    """q [1, 2, 5, HEAD] -> cat(q[..., :r] * cos + rotate_half(q[..., :r]) * sin, q[..., r:])."""
    half = rotary // 2
    nodes = [
        helper.make_node("Slice", ["q", "z", "r", "ax"], ["rot"]),
        helper.make_node("Slice", ["q", "r", "big", "ax"], ["passthrough"]),
        helper.make_node("Slice", ["rot", "z", "h", "ax"], ["x1"]),
        helper.make_node("Slice", ["rot", "h", "big", "ax"], ["x2"]),
        helper.make_node("Neg", ["x2"], ["nx2"]),
        helper.make_node("Concat", ["nx2", "x1"], ["rotated"], axis=-1),
        helper.make_node("Mul", ["rot", "cos"], ["a"]),
        helper.make_node("Mul", ["rotated", "sin"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["embedded"]),
        helper.make_node("Concat", ["embedded", "passthrough"], ["y"], axis=-1),
    ]
    theta = np.arange(5)[:, None] * (10000.0 ** (-np.arange(half) / half))[None]
    ang = np.concatenate([theta, theta], axis=-1).astype(np.float32)
    inits = {
        "z": np.array([0]), "r": np.array([rotary]), "h": np.array([half]),
        "big": np.array([2**63 - 1]), "ax": np.array([-1]),
        "cos": np.cos(ang), "sin": np.sin(ang),
    }  # fmt: skip
    return make_model(
        nodes, [("q", np.float32, [1, 2, 5, HEAD])], [("y", np.float32, [1, 2, 5, HEAD])], inits
    )


def _feeds():
    rng = np.random.default_rng(0)
    return {"q": rng.standard_normal((1, 2, 5, HEAD)).astype(np.float32)}


def test_full_rotary_drops_the_empty_passthrough():
    check_conversion(_partial_rotary(HEAD), _feeds())


def test_partial_rotary_keeps_a_nonempty_passthrough():
    check_conversion(_partial_rotary(HEAD // 2), _feeds())


def test_rule_disabled_still_refuses_the_empty_slice():
    expect_refusal(
        _partial_rotary(HEAD),
        "unsupported_attribute_value",
        disable_rewrites=("drop_empty_concat_operands",),
    )
