"""``--gpu-friendly`` rules of ``gpu_rewrites_rank``: a connected region of >4-D tensors done at
rank <= 4 (``region_rank_reduction``) and a >4-block TRANSPOSE as <=4-D block moves
(``transpose_split``). Each case: the default file has a >4-D tensor the GPU refuses, the
rewritten one is fully delegable under the ported rules and still agrees with onnxruntime."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

from onnx2tflite_direct.gpu_rewrites_rank import _block_moves
from onnx2tflite_direct.tflite_reader import tensor_table


def _max_rank(tflite_bytes: bytes) -> int:
    return max(len(r["shape"]) for r in tensor_table(tflite_bytes))


def _rules(chk) -> list[str]:
    return [r["rule"] for r in chk.report["gpu_friendly"]["rewrites"]]


def _rank_fallbacks(chk) -> list[str]:
    return [i["op"] for i in chk.report["gpu"]["fall_back"] if "rank_above_4" in i["rules"]]


def _made_delegable(model, rule="region_rank_reduction"):
    """The default file keeps a >4-D tensor; --gpu-friendly takes it to <= 4-D with ``rule``,
    is fully delegable and matches onnxruntime (check_conversion)."""
    plain = check_conversion(model)
    assert _max_rank(plain.tflite_bytes) > 4 and _rank_fallbacks(plain)
    chk = check_conversion(model, gpu_friendly=True)
    assert rule in _rules(chk)
    assert _max_rank(chk.tflite_bytes) <= 4
    assert chk.report["gpu"]["verdict"] == "fully delegable", chk.report["gpu"]["fall_back"]
    return plain, chk


def test_rotary_interleave_of_a_rank5_stack_runs_in_2d():
    """GPT-J / RoFormer rotary embedding: two halves stacked on a new 5th axis and flattened
    back (``torch.stack([-x2, x1], -1).flatten(-2)``): RESHAPE -> CONCATENATION -> RESHAPE."""
    b, s, h, d = 2, 5, 3, 4
    cos = np.random.default_rng(1).uniform(-1, 1, (1, s, 1, d)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Mul", ["x", "cos"], ["a"]),
            helper.make_node("Neg", ["x"], ["n"]),
            helper.make_node("Unsqueeze", ["n", "ax"], ["n5"]),
            helper.make_node("Unsqueeze", ["a", "ax"], ["a5"]),
            helper.make_node("Concat", ["n5", "a5"], ["st"], axis=-1),
            helper.make_node("Reshape", ["st", "flat"], ["y"]),
        ],
        inputs=[("x", np.float32, (b, s, h, d))],
        outputs=[("y", np.float32, (b, s, h, 2 * d))],
        initializers={
            "cos": cos,
            "ax": np.array([4], np.int64),
            "flat": np.array([b, s, h, 2 * d], np.int64),
        },
    )
    plain, chk = _made_delegable(model)
    assert "CONCATENATION" in _rank_fallbacks(plain)
    assert np.array_equal(chk.actual["y"], plain.actual["y"])  # data movement only


def _window_attention(shifted_mask: np.ndarray):
    """Swin-style block: a 6-D window partition (RESHAPE + TRANSPOSE), per-window two-head
    scores, the shift mask added to a 5-D [1, windows, heads, n, n] view, softmax there."""
    hw, ws, c, heads = 6, 3, 4, 2
    nw, n = (hw // ws) ** 2, ws * ws
    nodes = [
        helper.make_node("Reshape", ["x", "s6"], ["x6"]),
        helper.make_node("Transpose", ["x6"], ["w6"], perm=[0, 1, 3, 2, 4, 5]),
        helper.make_node("Reshape", ["w6", "s_heads"], ["wh"]),
        helper.make_node("Transpose", ["wh"], ["q"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["wh"], ["k"], perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["q", "k"], ["scores"]),
        helper.make_node("Reshape", ["scores", "s5"], ["scores5"]),
        helper.make_node("Add", ["scores5", "mask"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["p5"], axis=-1),
        helper.make_node("Reshape", ["p5", "s4"], ["y"]),
    ]
    return make_model(
        nodes,
        inputs=[("x", np.float32, (1, hw, hw, c))],
        outputs=[("y", np.float32, (nw, heads, n, n))],
        initializers={
            "s6": np.array([1, hw // ws, ws, hw // ws, ws, c], np.int64),
            "s_heads": np.array([nw, n, heads, c // heads], np.int64),
            "s5": np.array([1, nw, heads, n, n], np.int64),
            "s4": np.array([nw, heads, n, n], np.int64),
            "mask": shifted_mask,
        },
    )


def test_windowed_attention_mask_and_softmax_run_in_4d():
    rng = np.random.default_rng(2)
    mask = np.where(rng.random((1, 4, 1, 9, 9)) < 0.3, -100.0, 0.0).astype(np.float32)
    plain, chk = _made_delegable(_window_attention(mask))
    assert {"ADD", "SOFTMAX"} <= set(_rank_fallbacks(plain))
    # the mask is now a 3-D constant (batch-1 rule of the delegate's constant operands)
    assert not chk.report["gpu"]["fall_back"]


@pytest.mark.parametrize("keepdims", [0, 1])
def test_rank5_grouped_sum_runs_in_2d(keepdims):
    """WavLM's gated relative position bias: a channel axis split in two and one part summed."""
    x_shape, split = (1, 4, 6, 8), (1, 4, 6, 2, 4)
    out = (1, 4, 6, 2, 1) if keepdims else (1, 4, 6, 2)
    model = make_model(
        [
            helper.make_node("Reshape", ["x", "s5"], ["x5"]),
            helper.make_node("ReduceSum", ["x5", "ax"], ["r"], keepdims=keepdims),
            helper.make_node("Reshape", ["r", "s4"], ["y"]),
        ],
        inputs=[("x", np.float32, x_shape)],
        outputs=[("y", np.float32, (1, 4, 6, 2))],
        initializers={
            "s5": np.array(split, np.int64),
            "ax": np.array([4], np.int64),
            "s4": np.array([1, 4, 6, 2], np.int64),
        },
    )
    assert len(out) >= 4
    _made_delegable(model)


def test_region_that_needs_five_groups_is_left_alone():
    """A broadcast that alternates axis by axis leaves five groups: nothing is rewritten."""
    const = np.random.default_rng(3).uniform(-1, 1, (2, 1, 4, 1, 6)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Reshape", ["x", "s5"], ["x5"]),
            helper.make_node("Add", ["x5", "c"], ["a"]),
            helper.make_node("Reshape", ["a", "s3"], ["y"]),
        ],
        inputs=[("x", np.float32, (6, 20, 6))],
        outputs=[("y", np.float32, (6, 20, 6))],
        initializers={
            "s5": np.array([2, 3, 4, 5, 6], np.int64),
            "c": const,
            "s3": np.array([6, 20, 6], np.int64),
        },
    )
    chk = check_conversion(model, gpu_friendly=True)
    assert "region_rank_reduction" not in _rules(chk)
    assert "ADD" in _rank_fallbacks(chk)


def test_window_merge_transpose_of_five_blocks_is_split():
    """MaxViT's grid partition moves five blocks at once: transpose_split does it as block
    moves of <= 4 merged axes each, between views of 4-D tensors."""
    shape, perm = (1, 2, 2, 4, 4, 8), [0, 5, 1, 3, 2, 4]
    out = tuple(shape[p] for p in perm)
    model = make_model(
        [
            helper.make_node("Reshape", ["x", "s6"], ["x6"]),
            helper.make_node("Transpose", ["x6"], ["t"], perm=perm),
            helper.make_node("Reshape", ["t", "s4"], ["y"]),
        ],
        inputs=[("x", np.float32, (1, 4, 16, 8))],
        outputs=[("y", np.float32, (1, 8, 8, 8))],
        initializers={
            "s6": np.array(shape, np.int64),
            "s4": np.array([1, out[1], out[2] * out[3], out[4] * out[5]], np.int64),
        },
    )
    plain, chk = _made_delegable(model, rule="transpose_split")
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


@pytest.mark.parametrize("n", range(1, 7))
def test_block_moves_compose_to_the_permutation(n):
    for perm in itertools.permutations(range(n)):
        got = np.arange(n)
        for step in _block_moves(list(perm)):
            got = got[step]
        assert got.tolist() == list(perm)
