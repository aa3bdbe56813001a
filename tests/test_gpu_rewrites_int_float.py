"""``--gpu-friendly`` rule ``int_region_in_float`` (gpu_rewrites_int_float): integer side
computations of text models (position ids from the attention mask, the EOS token's row) carried
as exact float32 integers. Each graph falls back without the flag, is fully delegable with it,
and LiteRT's output equals onnxruntime's exactly (the looked-up rows are copied, not computed)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

from onnx2tflite_direct import gpu_friendly

RULE = "int_region_in_float"


def _rules(chk) -> list[str]:
    return [r["rule"] for r in chk.report["gpu_friendly"]["rewrites"]]


def _friendly(model, feeds):
    """Falls back by default; --gpu-friendly takes it whole with the rule; exact (atol 0)."""
    plain = check_conversion(model, feeds, atol=0, rtol=0)
    assert not plain.report["gpu"]["fully_delegable"]
    chk = check_conversion(model, feeds, atol=0, rtol=0, gpu_friendly=True)
    assert RULE in _rules(chk), _rules(chk)
    assert chk.report["gpu"]["fully_delegable"], chk.report["gpu"]["fall_back"]
    return chk


def _masks(batch: int, n: int, seed: int) -> np.ndarray:
    """0/1 attention masks: left padding, right padding, all ones, holes."""
    rng = np.random.default_rng(seed)
    rows = [np.r_[np.zeros(2), np.ones(n - 2)], np.r_[np.ones(n - 3), np.zeros(3)], np.ones(n)]
    rows += [rng.integers(0, 2, n) for _ in range(batch - len(rows))]
    return np.array(rows[:batch], np.int64)


def _table(rows: int, width: int) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((rows, width)).astype(np.float32)


def test_position_ids_from_the_mask():
    """OPT: positions = cumsum(mask) * mask - 1 + 2, looked up in a 130-row table (CUMSUM,
    MUL, SUB, ADD, the lookup's FLOOR_MOD on int64): |values| <= 7 * 1 * 1 + 2."""
    n = 7
    model = make_model(
        [
            helper.make_node("CumSum", ["mask", "axis"], ["cs"]),
            helper.make_node("Mul", ["cs", "mask"], ["m"]),
            helper.make_node("Sub", ["m", "one"], ["p"]),
            helper.make_node("Add", ["p", "two"], ["q"]),
            helper.make_node("Gather", ["table", "q"], ["y"], axis=0),
        ],
        inputs=[("mask", np.int64, [4, n])],
        outputs=[("y", np.float32, [4, n, 8])],
        initializers={
            "axis": np.array(1, np.int64),
            "one": np.array([[1]], np.int64),
            "two": np.array([[2]], np.int64),
            "table": _table(130, 8),
        },
    )
    chk = _friendly(model, {"mask": _masks(4, n, 1)})
    # the bound taken for the mask is stated (report + CLI), not left implicit
    (assumed,) = chk.report["gpu_friendly"]["assumptions"]
    assert "mask" in assumed and "magnitude <= " in assumed


def test_alibi_positions_cast_to_float():
    """BLOOM: (cumsum(mask) - 1) * mask cast to float32 and scaled per head (exact integers;
    the float product is the same product onnxruntime computes)."""
    n = 9
    slopes = np.array([0.5, 0.25, 0.125], np.float32).reshape(1, 3, 1)
    model = make_model(
        [
            helper.make_node("CumSum", ["mask", "axis"], ["cs"]),
            helper.make_node("Sub", ["cs", "one"], ["p"]),
            helper.make_node("Mul", ["p", "mask"], ["q"]),
            helper.make_node("Cast", ["q"], ["f"], to=1),
            helper.make_node("Unsqueeze", ["f", "ax1"], ["g"]),
            helper.make_node("Mul", ["slopes", "g"], ["y"]),
        ],
        inputs=[("mask", np.int64, [3, n])],
        outputs=[("y", np.float32, [3, 3, n])],
        initializers={
            "axis": np.array(1, np.int64),
            "one": np.array([[1]], np.int64),
            "ax1": np.array([1], np.int64),
            "slopes": slopes,
        },
    )
    _friendly(model, {"mask": _masks(3, n, 2)})


def _pooled(gather_nd: bool, compare: bool, batch: int = 4, n: int = 9):
    """CLIP: the row of each sequence's first EOS (argmax of ids == eos, or of the ids
    themselves) taken from the hidden states, by a flat GATHER or a GATHER_ND."""
    nodes = [helper.make_node("Cast", ["ids"], ["ids32"], to=6)]  # ArgMax takes int32 here
    src = "ids32"
    if compare:
        nodes += [
            helper.make_node("Equal", ["ids", "eos"], ["is_eos"]),
            helper.make_node("Cast", ["is_eos"], ["eos_int"], to=6),  # int32, as torch's .int()
        ]
        src = "eos_int"
    nodes.append(helper.make_node("ArgMax", [src], ["at"], axis=1, keepdims=0))
    inits = {"eos": np.array([[3]], np.int64)}
    if gather_nd:
        nodes += [
            helper.make_node("Unsqueeze", ["at", "ax1"], ["at2"]),
            helper.make_node("Concat", ["rows", "at2"], ["where"], axis=1),
            helper.make_node("GatherND", ["hidden", "where"], ["y"]),
        ]
        inits.update(
            ax1=np.array([1], np.int64), rows=np.arange(batch, dtype=np.int64).reshape(batch, 1)
        )
    else:
        nodes += [
            helper.make_node("Add", ["at", "offsets"], ["flat_at"]),
            helper.make_node("Reshape", ["hidden", "flat_shape"], ["flat"]),
            helper.make_node("Gather", ["flat", "flat_at"], ["y"], axis=0),
        ]
        inits.update(
            offsets=np.arange(batch, dtype=np.int64) * n,
            flat_shape=np.array([batch * n, 5], np.int64),
        )
    return make_model(
        nodes,
        inputs=[("ids", np.int64, [batch, n]), ("hidden", np.float32, [batch, n, 5])],
        outputs=[("y", np.float32, [batch, 5])],
        initializers=inits,
    )


@pytest.mark.parametrize("gather_nd", [False, True])
@pytest.mark.parametrize("compare", [True, False])
def test_first_maximum_row(gather_nd, compare):
    """ARG_MAX (no GPU kernel) -> reduce_max / equality as 0/1 floats / descending ramp /
    reduce_max: ties go to the FIRST maximum as ONNX ArgMax (select_last_index=0). Rows with
    several EOS tokens, none (argmax of zeros: index 0), and ids in [0, 4) (ties everywhere)."""
    batch, n = 4, 9
    ids = np.random.default_rng(3).integers(0, 4, (batch, n)).astype(np.int64)
    ids[1] = [5, 3, 1, 3, 0, 3, 2, 2, 1]  # several EOS: the first
    ids[2] = [1, 2, 0, 1, 2, 0, 1, 2, 0]  # no EOS: argmax of zeros is 0; max 2 tied thrice
    hidden = np.random.default_rng(4).standard_normal((batch, n, 5)).astype(np.float32)
    feeds = {"ids": ids, "hidden": hidden}
    chk = _friendly(_pooled(gather_nd, compare, batch, n), feeds)
    assert "ARG_MAX" not in chk.ops and "GATHER_ND" not in chk.ops, chk.ops


def test_comparison_of_large_ids_with_a_constant():
    """ids == eos for ids far beyond 2**24 (float32 rounds them): a rounded id stays on its
    side of a constant below 2**24, so the test (and the first EOS row) is exact."""
    batch, n = 3, 6
    ids = np.array(
        [
            [2**30, 3, 2**24 + 3, 3, 7, 1],
            [2**24 + 1, 2**24 - 1, 2**31 - 1, 5, 3, 3],
            [-(2**31), 2**24, 4, 2, 1, 0],  # no EOS: row 0
        ],
        np.int64,
    )
    hidden = np.random.default_rng(8).standard_normal((batch, n, 5)).astype(np.float32)
    _friendly(_pooled(False, True, batch, n), {"ids": ids, "hidden": hidden})


def test_clipped_mask_and_negated_float_test():
    """Longformer: Clip(mask, 0, 1) on int (MAXIMUM/MINIMUM) and Not(Equal(x, 0)) read as a
    float (LOGICAL_NOT has no parser): the clamp of the float twin and ``1 - test``."""
    model = make_model(
        [
            helper.make_node("Clip", ["mask", "lo", "hi"], ["clipped"]),
            helper.make_node("Cast", ["clipped"], ["cf"], to=1),
            helper.make_node("Equal", ["x", "zero"], ["is_zero"]),
            helper.make_node("Not", ["is_zero"], ["nonzero"]),
            helper.make_node("Cast", ["nonzero"], ["nf"], to=1),
            helper.make_node("Mul", ["nf", "two"], ["n2"]),
            helper.make_node("Add", ["cf", "n2"], ["y"]),
        ],
        inputs=[("mask", np.int64, [2, 8]), ("x", np.float32, [2, 8])],
        outputs=[("y", np.float32, [2, 8])],
        initializers={
            "lo": np.array(0, np.int64),
            "hi": np.array(1, np.int64),
            "zero": np.array([[0.0]], np.float32),
            "two": np.array([[2.0]], np.float32),
        },
    )
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    x[0, ::3] = 0.0
    mask = rng.integers(-2, 3, (2, 8)).astype(np.int64)  # clipped to 0/1 either side
    chk = _friendly(model, {"mask": mask, "x": x})
    assert "LOGICAL_NOT" not in chk.ops, chk.ops


def test_too_large_for_float_is_left_alone():
    """cumsum(mask) * 2**22 may leave the exact float32 integers (7 * 2**22 > 2**24 even for a
    0/1 mask): the rule does not fire and the file stays exact."""
    model = make_model(
        [
            helper.make_node("CumSum", ["mask", "axis"], ["cs"]),
            helper.make_node("Mul", ["cs", "big"], ["m"]),
            helper.make_node("Cast", ["m"], ["y"], to=1),
        ],
        inputs=[("mask", np.int64, [2, 7])],
        outputs=[("y", np.float32, [2, 7])],
        initializers={"axis": np.array(1, np.int64), "big": np.array([[1 << 22]], np.int64)},
    )
    chk = check_conversion(model, {"mask": _masks(2, 7, 5)}, atol=0, rtol=0, gpu_friendly=True)
    assert RULE not in _rules(chk)


def test_rule_is_registered_first():
    """A planned region is replaced whole, before a per-operator rule takes one part."""
    assert gpu_friendly.ORDER[0] == RULE
