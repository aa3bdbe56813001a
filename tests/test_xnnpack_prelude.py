"""The prelude of real graphs (reversals, masks, index arithmetic) in forms XNNPACK takes.

Each case converts, compares with onnxruntime (harness.check_conversion: exact here, these are
copies and 0/1 arithmetic) and counts the XNNPACK partitions with bench_partitions' counter.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

from benchmarks.bench_partitions import count_partitions
from onnx2tflite_direct import validate as V

RNG = np.random.default_rng(22)
F = np.float32
I64 = np.int64


def _parts(chk) -> dict:
    return count_partitions(chk.tflite_bytes)


@pytest.mark.parametrize(
    "shape,axis,start,end",
    [((20, 1, 16), 0, -1, -(2**63) + 1), ((2, 7, 5), 1, 5, 0), ((3, 4, 6), -1, 4, -7)],
)
def test_reverse_slice_is_slices_and_concat(shape, axis, start, end):
    """x[::-1] (a CRNN's backward LSTM input): SLICEs + CONCATENATION, one partition."""
    inits = {
        "s": np.array([start], I64),
        "e": np.array([end], I64),
        "a": np.array([axis], I64),
        "st": np.array([-1], I64),
    }
    x = RNG.standard_normal(shape).astype(F)
    sl = [slice(None)] * len(shape)
    sl[axis] = slice(start, end if end > -(2**62) else None, -1)
    y = x[tuple(sl)]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Slice", ["r", "s", "e", "a", "st"], ["t"]),
        helper.make_node("Neg", ["t"], ["y"]),
    ]
    model = make_model(nodes, [("x", F, shape)], [("y", F, y.shape)], inits)
    chk = check_conversion(model, feeds={"x": x}, atol=0, rtol=0)
    assert "STRIDED_SLICE" not in chk.ops
    parts = _parts(chk)
    assert parts["partitions"] == 1 and parts["outside"] == {}, parts


FMIN = float(np.finfo(np.float32).min)


def _mask_model(where_then, where_else, cmp=None, extra_not=False):
    """mask (int64) -> Cast(bool) [or a comparison] -> Reshape -> And(constant causal) [-> Not]
    -> Expand -> Where(then, else) -> + scores (the BERT/GPT-2 attention-mask prelude)."""
    causal = np.tril(np.ones((6, 6), bool)).reshape(1, 1, 6, 6)
    inits = {
        "shape": np.array([1, 1, 1, 6], I64),
        "causal": causal,
        "full": np.array([1, 2, 6, 6], I64),
        "a": np.array(where_then, F),
        "b": np.array(where_else, F),
    }
    if cmp is None:
        first = helper.make_node("Cast", ["mask"], ["m"], to=9)
    else:
        op, c = cmp
        inits["c"] = np.array(c, I64)
        first = helper.make_node(op, ["mask", "c"], ["m"])
    nodes = [
        first,
        helper.make_node("Reshape", ["m", "shape"], ["m4"]),
        helper.make_node("And", ["causal", "m4"], ["both"]),
    ]
    last = "both"
    if extra_not:
        nodes.append(helper.make_node("Not", ["both"], ["nb"]))
        last = "nb"
    nodes += [
        helper.make_node("Expand", [last, "full"], ["e"]),
        helper.make_node("Where", ["e", "a", "b"], ["bias"]),
        helper.make_node("Add", ["scores", "bias"], ["y"]),
    ]
    return make_model(
        nodes,
        [("mask", I64, (1, 6)), ("scores", F, (1, 2, 6, 6))],
        [("y", F, (1, 2, 6, 6))],
        inits,
    )


MASKS = [
    np.array([[1, 1, 1, 0, 0, 1]], I64),
    np.array([[0, 3, -2, 2**40, -(2**40) + 1, 2**24 + 1]], I64),
]


def _assert_exact_on_builtin_kernels(chk) -> None:
    """The same file on LiteRT's builtin kernels (no XNNPACK) gives onnxruntime's answer
    bit for bit (infinities included)."""
    got = V.run_litert(chk.tflite_bytes, chk.feeds, chk.report.get("io"), use_xnnpack=False)
    for name, want in chk.expected.items():
        np.testing.assert_array_equal(got[name], want)


@pytest.mark.parametrize(
    "then,other,cmp,extra_not",
    [
        (0.0, FMIN, None, False),  # HF: where(mask, 0, finfo.min)
        (0.0, -np.inf, None, False),  # -inf masks: never 0 * inf
        ([[[[1.5, -2.0, 0.0, 3.0, 4.0, 5.0]]]], -7.25, None, True),
        (np.inf, 0.5, ("Equal", 0), False),
        (2.0, -3.0, ("Less", 2**24 - 2), False),
        (2.0, -3.0, ("GreaterOrEqual", 2), True),
        (-1.0, 1.0, ("LessOrEqual", -2), False),
        (-1.0, 1.0, ("Greater", 0), False),
    ],
)
@pytest.mark.parametrize("mask", MASKS, ids=["padding", "odd_values"])
def test_mask_logic_is_float_arithmetic(then, other, cmp, extra_not, mask):
    """The mask prelude runs as 0/1 float arithmetic: only the CAST of the integer input stays
    outside XNNPACK, and the answer is exactly onnxruntime's (infinities included)."""
    model = _mask_model(then, other, cmp, extra_not)
    scores = RNG.standard_normal((1, 2, 6, 6)).astype(F)
    feeds = {"mask": mask, "scores": scores}
    chk = check_conversion(model, feeds=feeds, atol=0, rtol=0)
    if not (np.isfinite(np.asarray(then, F)).all() and np.isfinite(np.asarray(other, F)).all()):
        # no arithmetic makes an infinity on LiteRT's builtin kernels (they clamp MUL/ADD to
        # +-FLT_MAX): an infinity against a zero is LOG(0/1) (tests/test_xnnpack_forms.py,
        # both kernel sets), any other pair keeps the SELECT_V2 (this model's own Add of the
        # mask clamps there too)
        zero_other = not np.any(then) or not np.any(other)
        assert ("SELECT_V2" not in chk.ops and "LOG" in chk.ops) == zero_other, chk.ops
        return
    assert not {"LOGICAL_AND", "LOGICAL_NOT", "SELECT_V2", "EQUAL", "LESS"} & set(chk.ops), chk.ops
    parts = _parts(chk)
    assert parts["partitions"] == 1 and parts["outside"] == {"CAST": 1}, parts
    assert "float_mask_logic" in {r["rule"] for r in chk.report["rewrites"] if r["matched"]}
    off = check_conversion(
        model, feeds=feeds, atol=0, rtol=0, disable_rewrites=("float_mask_logic",)
    )
    assert "SELECT_V2" in off.ops  # the rule is switchable


def test_bool_input_mask():
    """A bool input (khmersm's mask): one CAST to float, then Not/Where as arithmetic."""
    nodes = [
        helper.make_node("Not", ["mask"], ["nm"]),
        helper.make_node("Where", ["nm", "fill", "zeros"], ["bias"]),
        helper.make_node("Add", ["x", "bias"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("mask", np.bool_, (1, 24)), ("x", F, (1, 24))],
        [("y", F, (1, 24))],
        {"fill": np.full((1, 1), -1e4, F), "zeros": np.zeros((1, 24), F)},
    )
    feeds = {"mask": RNG.random((1, 24)) > 0.5, "x": RNG.standard_normal((1, 24)).astype(F)}
    chk = check_conversion(model, feeds=feeds, atol=0, rtol=0)
    assert _parts(chk)["outside"] == {"CAST": 1}


def test_gathernd_of_every_element_in_order_is_a_reshape():
    """torch.export's mask[:, None, None, :] as GatherND with constant full coordinates."""
    idx = np.stack(np.meshgrid([0], np.arange(7), indexing="ij"), -1).reshape(1, 1, 1, 7, 2)
    nodes = [
        helper.make_node("GatherND", ["x", "idx"], ["g"]),
        helper.make_node("Relu", ["g"], ["y"]),
    ]
    model = make_model(
        nodes, [("x", F, (1, 7))], [("y", F, (1, 1, 1, 7))], {"idx": idx.astype(I64)}
    )
    chk = check_conversion(model, feeds={"x": RNG.standard_normal((1, 7)).astype(F)})
    assert "GATHER_ND" not in chk.ops
    rev = make_model(  # not in order: stays a GATHER_ND
        nodes, [("x", F, (1, 7))], [("y", F, (1, 1, 1, 7))], {"idx": idx[..., ::-1, :].astype(I64)}
    )
    assert "GATHER_ND" in check_conversion(rev, feeds={"x": np.ones((1, 7), F)}).ops


def test_constant_gather_elements_folds():
    """torch's token_type_ids buffer [1, 128] gathered by position ids [1, 16]: a constant
    (onnx.reference cannot fold it), so the token-type embedding lookup folds too."""
    nodes = [
        helper.make_node("GatherElements", ["buf", "pos"], ["tt"], axis=1),
        helper.make_node("Gather", ["table", "tt"], ["emb"]),
        helper.make_node("Add", ["x", "emb"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("x", F, (1, 16, 4))],
        [("y", F, (1, 16, 4))],
        {
            "buf": (np.arange(128) % 2).reshape(1, 128).astype(I64),
            "pos": np.arange(3, 19).reshape(1, 16).astype(I64),
            "table": RNG.standard_normal((2, 4)).astype(F),
        },
    )
    chk = check_conversion(model, feeds={"x": RNG.standard_normal((1, 16, 4)).astype(F)})
    assert "GATHER" not in chk.ops and _parts(chk)["outside"] == {}


def _float_id_model(tf_wrap: bool, v=12, d=5, shape=(4, 6)):
    """Ids fed as floats (a Keras export): Cast(int32) [-> TF's where(i < 0, i + V, i) as
    tf2onnx writes it] -> Gather(table) -> + x."""
    inits = {"table": RNG.standard_normal((v, d)).astype(F), "V": np.array(v, np.int32)}
    nodes = [helper.make_node("Cast", ["ids"], ["i"], to=6)]
    idx = "i"
    if tf_wrap:
        inits["zero"] = np.array(0.0, F)
        nodes += [
            helper.make_node("Add", ["i", "V"], ["iv"]),
            helper.make_node("Cast", ["i"], ["fi"], to=1),
            helper.make_node("Less", ["fi", "zero"], ["neg"]),
            helper.make_node("Cast", ["neg"], ["neg_i"], to=6),
            helper.make_node("Mul", ["neg_i", "iv"], ["a"]),
            helper.make_node("Not", ["neg"], ["pos"]),
            helper.make_node("Cast", ["pos"], ["pos_i"], to=6),
            helper.make_node("Mul", ["i", "pos_i"], ["b"]),
            helper.make_node("Add", ["a", "b"], ["wrapped"]),
        ]
        idx = "wrapped"
    nodes += [
        helper.make_node("Gather", ["table", idx], ["emb"], axis=0),
        helper.make_node("Add", ["emb", "x"], ["y"]),
    ]
    return make_model(
        nodes,
        [("ids", F, shape), ("x", F, (*shape, d))],
        [("y", F, (*shape, d))],
        inits,
    )


@pytest.mark.parametrize("tf_wrap", [False, True])
def test_float_ids_lookup_is_one_hot_product(tf_wrap):
    """Float ids -> Cast -> (wrap) -> Gather of a small table: trunc, wrap and one-hot
    product in float32, all in XNNPACK, the rows exactly onnxruntime's (negative ids and
    fractional ids included: Cast truncates toward zero)."""
    ids = np.array([[0, 1, 11, -1, -12, 5.9], [-5.9, 3.5, -0.5, 0.5, 10.999, -11.5]] * 2, F)
    x = np.zeros((4, 6, 5), F)  # y is the looked-up rows themselves
    model = _float_id_model(tf_wrap)
    chk = check_conversion(model, feeds={"ids": ids, "x": x}, atol=0, rtol=0)
    assert not {"GATHER", "CAST", "FLOOR_MOD"} & set(chk.ops), chk.ops
    parts = _parts(chk)
    assert parts["partitions"] == 1 and parts["outside"] == {}, parts
    assert "gather_one_hot" in {r["rule"] for r in chk.report["rewrites"] if r["matched"]}
    off = check_conversion(
        model, feeds={"ids": ids, "x": x}, atol=0, rtol=0, disable_rewrites=("gather_one_hot",)
    )
    assert "GATHER" in off.ops


@pytest.mark.parametrize("const_first", [True, False])
@pytest.mark.parametrize("fill", [FMIN, -np.inf, 0.0, 2.5])
def test_where_constant_and_runtime_branch(const_first, fill):
    """Where(mask, K, S) / Where(mask, S, K) with run-time S (DeBERTa's masked_fill) keeps its
    SELECT_V2: a float form would need infinite bounds, which LiteRT's builtin kernels cannot
    make by arithmetic. Exact on both kernel sets, infinities in S included."""
    branches = ["k", "s"] if const_first else ["s", "k"]
    nodes = [
        helper.make_node("Cast", ["mask"], ["m"], to=9),
        helper.make_node("Not", ["m"], ["nm"]),
        helper.make_node("Where", ["nm", *branches], ["y"]),
    ]
    model = make_model(
        nodes,
        [("mask", I64, (2, 1, 8)), ("s", F, (2, 3, 8))],
        [("y", F, (2, 3, 8))],
        {"k": np.array(fill, F)},
    )
    s = RNG.standard_normal((2, 3, 8)).astype(F) * 10
    s[0, 0, :3] = [np.inf, -np.inf, FMIN]
    s[1, 2, 5:] = [-np.inf, np.inf, 0.0]
    mask = np.array([[[1, 0, 1, 1, 0, 0, 1, 7]], [[0, 0, 1, -3, 1, 0, 1, 1]]], I64)
    chk = check_conversion(model, feeds={"mask": mask, "s": s}, atol=0, rtol=0)
    assert "SELECT_V2" in chk.ops, chk.ops
    _assert_exact_on_builtin_kernels(chk)


def test_scalar_gather_of_a_length_one_axis_is_a_reshape():
    """x[:, -1] of a one-step decoder output [1, 1, D]: a Reshape (gather_as_reshape), not a
    GATHER that splits the partition."""
    nodes = [
        helper.make_node("Tanh", ["x"], ["t"]),
        helper.make_node("Gather", ["t", "i"], ["g"], axis=1),
        helper.make_node("Relu", ["g"], ["y"]),
    ]
    model = make_model(nodes, [("x", F, (1, 1, 8))], [("y", F, (1, 8))], {"i": np.array(-1, I64)})
    chk = check_conversion(model, feeds={"x": RNG.standard_normal((1, 1, 8)).astype(F)})
    assert "GATHER" not in chk.ops and _parts(chk)["partitions"] == 1
