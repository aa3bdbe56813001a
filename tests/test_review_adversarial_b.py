"""Adversarial review of the exact rewrites (mask_integers, float_masks, float_indices,
log_softmax_parts, contrib_masks, quant/qdq_weights): each case converts, runs in LiteRT and
compares with onnxruntime on seeded inputs (exact where the rule claims exact; within
onnxruntime's own distance from float64 otherwise), on XNNPACK and the builtin kernels."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import check_conversion, convert, expect_refusal, make_model
from onnx import TensorProto, helper
from test_xnnpack_forms import assert_log_softmax_within_onnxruntime, float64_log_softmax

from onnx2tflite_direct import validate as V

F = np.float32
I64 = np.int64
node = helper.make_node
RNG = np.random.default_rng(2026)


def _both_kernels(chk):
    """The file on LiteRT's builtin kernels too: onnxruntime's answer bit for bit."""
    got = V.run_litert(chk.tflite_bytes, chk.feeds, chk.report.get("io"), use_xnnpack=False)
    for name, want in chk.expected.items():
        np.testing.assert_array_equal(got[name], want)


def _matched(chk) -> set[str]:
    return {r["rule"] for r in chk.report["rewrites"] if r["matched"]}


# ------------------------------------------------- mask_integers: the output type's range

PAD_IDS = np.array([[0, 5, 1, 7, 29, 1, 1, 3, 1]], I64)


@pytest.mark.parametrize(
    "dtype,op,k",
    [
        (np.uint8, "Sub", 1),  # 0 - 1 wraps to 255
        (np.uint32, "Sub", 1),  # 0 - 1 wraps to 4294967295
        (np.int8, "Mul", 200 - 256),  # bounds fine, but see the next one
        (np.int8, "Add", 127),  # 1 + 127 wraps to -128
        (np.int16, "Mul", 30000),  # 30000 * 2 after the Add wraps
    ],
)
def test_carried_integers_wrap_in_their_type(dtype, op, k):
    """Cast(mask -> narrow int) then arithmetic whose result leaves the type: onnxruntime
    wraps around; the integer-valued float twin would not (-1 instead of 255): the interval
    is checked against the output type, the integer lowering kept where it leaves it."""
    tp = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        node("Equal", ["ids", "pad"], ["eq"]),
        node("Not", ["eq"], ["ne"]),
        node("Cast", ["ne"], ["m"], to=tp),
        node(op, ["m", "k"], ["s"]),
        node("Add", ["s", "m"], ["t"]),
        node("Mul", ["t", "two"], ["u"]),
        node("Cast", ["u"], ["y"], to=TensorProto.FLOAT),
    ]
    inits = {
        "pad": np.array(1, I64),
        "k": np.array(k, dtype),
        "two": np.array(1 if op == "Mul" and dtype == np.int8 else 2, dtype),
    }
    model = make_model(nodes, [("ids", I64, [1, 9])], [("y", F, [1, 9])], inits)
    chk = check_conversion(model, feeds={"ids": PAD_IDS}, atol=0, rtol=0)
    _both_kernels(chk)


@pytest.mark.parametrize("output", ["cs", "m"])
def test_carried_integer_that_is_a_graph_output(output):
    """The CumSum (or the Cast(bool -> int)) also a graph output: kept as an integer there."""
    model = make_model(
        [
            node("Equal", ["ids", "pad"], ["eq"]),
            node("Not", ["eq"], ["ne"]),
            node("Cast", ["ne"], ["m"], to=TensorProto.INT64),
            node("CumSum", ["m", "ax"], ["cs"]),
            node("Cast", ["cs"], ["y"], to=TensorProto.FLOAT),
        ],
        [("ids", I64, [1, 9])],
        [("y", F, [1, 9]), (output, I64, [1, 9])],
        {"pad": np.array(1, I64), "ax": np.array(1, I64)},
    )
    chk = check_conversion(model, feeds={"ids": PAD_IDS}, atol=0, rtol=0)
    _both_kernels(chk)


def test_carried_lookup_of_negative_positions_also_an_output():
    """cumsum(mask) - 3 indexes a table (negative indices wrap) and is a graph output."""
    model = make_model(
        [
            node("Equal", ["ids", "pad"], ["eq"]),
            node("Not", ["eq"], ["ne"]),
            node("Cast", ["ne"], ["m"], to=TensorProto.INT64),
            node("CumSum", ["m", "ax"], ["cs"]),
            node("Sub", ["cs", "c3"], ["p"]),
            node("Gather", ["t", "p"], ["y"]),
        ],
        [("ids", I64, [1, 9])],
        [("y", F, [1, 9, 4]), ("p", I64, [1, 9])],
        {
            "pad": np.array(1, I64),
            "ax": np.array(1, I64),
            "c3": np.array(3, I64),
            "t": RNG.standard_normal((12, 4)).astype(F),
        },
    )
    chk = check_conversion(model, feeds={"ids": PAD_IDS}, atol=0, rtol=0)
    _both_kernels(chk)


def test_cumsum_twice_over_a_long_axis():
    """cumsum(cumsum(mask)) over 8192 positions reaches 2**25 > 2**24: the second stays
    integer (CUMSUM) and the answer exact."""
    n = 1 << 13
    ids = RNG.integers(0, 3, (1, n)).astype(I64)
    model = make_model(
        [
            node("Equal", ["ids", "pad"], ["eq"]),
            node("Not", ["eq"], ["ne"]),
            node("Cast", ["ne"], ["m"], to=TensorProto.INT32),
            node("CumSum", ["m", "ax"], ["cs"]),
            node("CumSum", ["cs", "ax"], ["cs2"]),
            node("Cast", ["cs2"], ["y"], to=TensorProto.FLOAT),
        ],
        [("ids", I64, [1, n])],
        [("y", F, [1, n])],
        {"pad": np.array(1, I64), "ax": np.array(1, I64)},
    )
    chk = check_conversion(model, feeds={"ids": ids}, atol=0, rtol=0)
    assert "CUMSUM" in chk.ops, chk.ops


def test_uint64_constant_beyond_int64_is_not_a_small_integer():
    """uint64 2**64 - 1 added to a mask count (onnxruntime: -1 modulo 2**64) read as int64 was
    -1, "small", and the float twin added 1.8e19: a silent wrong answer. Now the chain keeps
    its uint64 lowering, which LiteRT has no CAST for: a refusal naming the dtype."""
    u64 = np.uint64
    model = make_model(
        [
            node("Equal", ["ids", "pad"], ["eq"]),
            node("Not", ["eq"], ["ne"]),
            node("Cast", ["ne"], ["m"], to=TensorProto.UINT64),
            node("Add", ["m", "one"], ["m1"]),
            node("Add", ["m1", "big"], ["m2"]),
            node("Cast", ["m2"], ["y"], to=TensorProto.FLOAT),
        ],
        [("ids", I64, [1, 9])],
        [("y", F, [1, 9])],
        {"pad": np.array(1, I64), "one": np.array(1, u64), "big": np.array(2**64 - 1, u64)},
    )
    expect_refusal(model, "unsupported_dtype")


@pytest.mark.parametrize("op", ["Greater", "Less", "Equal"])
def test_uint64_comparison_keeps_its_lowering(op):
    """A uint64 input compared with a constant: the float form needs a CAST from uint64,
    which LiteRT lacks (refused since the rule began); the comparison's own lowering is exact."""
    model = make_model(
        [
            node(op, ["x", "c"], ["g"]),
            node("Not", ["g"], ["ng"]),
            node("Where", ["ng", "a", "b"], ["y"]),
        ],
        [("x", np.uint64, [1, 6])],
        [("y", F, [1, 6])],
        {"c": np.array(2**64 - 2, np.uint64), "a": np.array(2.0, F), "b": np.array(-1.0, F)},
    )
    x = np.array([[0, 1, 5, 2**64 - 1, 2**64 - 2, 7]], np.uint64)
    chk = check_conversion(model, feeds={"x": x}, atol=0, rtol=0)
    _both_kernels(chk)


# ------------------------------------------------- lookup_before_select: a negative axis


@pytest.mark.parametrize("axis,k", [(-1, 1), (-2, -1), (-1, -1)])
def test_lookup_before_select_negative_axis(axis, k):
    """Embedding(ids[..., k]) with the selection's axis negative: it counts from the end of
    the ids, not of the looked-up rows (one axis more); crashed with InternalError before."""
    table = RNG.standard_normal((11, 4)).astype(F)
    ids = np.array([[3, -1, 10], [0, -11, 5]], I64)
    shape = list(np.take(ids, k, axis=axis).shape)
    model = make_model(
        [node("Gather", ["ids", "k"], ["sel"], axis=axis), node("Gather", ["t", "sel"], ["y"])],
        [("ids", I64, [2, 3])],
        [("y", F, [*shape, 4])],
        {"t": table, "k": np.array(k, I64)},
    )
    chk = check_conversion(model, feeds={"ids": ids}, atol=0, rtol=0)
    assert "lookup_before_select" in _matched(chk)
    _both_kernels(chk)


def test_lookup_before_select_ids_read_elsewhere():
    """The ids also read by a Cast that is a graph output, the selection by two lookups."""
    table = RNG.standard_normal((11, 4)).astype(F)
    ids = np.array([[3, -1, 10], [0, -11, 5]], I64)
    model = make_model(
        [
            node("Gather", ["ids", "k"], ["sel"], axis=1),
            node("Gather", ["t", "sel"], ["y"]),
            node("Gather", ["t", "sel"], ["y2"]),
            node("Cast", ["ids"], ["z"], to=TensorProto.FLOAT),
        ],
        [("ids", I64, [2, 3])],
        [("y", F, [2, 4]), ("y2", F, [2, 4]), ("z", F, [2, 3])],
        {"t": table, "k": np.array(-1, I64)},
    )
    chk = check_conversion(model, feeds={"ids": ids}, atol=0, rtol=0)
    _both_kernels(chk)


# ------------------------------------------------- log_softmax_decomposed


@pytest.mark.parametrize(
    "shape,axis,scale",
    [
        ((2, 30011), -1, 1.0),
        ((4, 65521), -1, 1.0),
        ((2, 1031), -1, 8.0),
        ((3, 5, 7), 1, 5.0),
        ((1000, 3), 0, 5.0),
    ],
)
def test_log_softmax_rounding_prime_lengths_and_other_axes(shape, axis, scale):
    """A long axis of prime length (no divisor to split the sum by: the builtin SUM added
    30011 values one after the other, 3.8x onnxruntime's error) and axes other than the last:
    within onnxruntime's own distance from float64 on both kernel sets."""
    rng = np.random.default_rng(sum(shape))
    b = rng.standard_normal(shape[-1]).astype(F)
    model = make_model(
        [node("Add", ["x", "b"], ["l"]), node("LogSoftmax", ["l"], ["y"], axis=axis)],
        [("x", F, list(shape))],
        [("y", F, list(shape))],
        {"b": b},
    )
    x = (rng.standard_normal(shape) * scale).astype(F)
    assert_log_softmax_within_onnxruntime(model, x, float64_log_softmax(x + b, axis))


def test_position_ids_with_a_dynamic_sequence_length():
    """RoBERTa's position ids with the sequence length left dynamic (as torch exports it):
    mask_integers' [L, L] triangle cannot follow L at run time, so a model lowered at sample
    shapes (Graph.sample_pinned) keeps its CUMSUM (was refused: dynamic_shape_unsupported)."""
    model = make_model(
        [
            node("Equal", ["ids", "pad"], ["eq"]),
            node("Not", ["eq"], ["ne"]),
            node("Cast", ["ne"], ["m"], to=TensorProto.INT64),
            node("CumSum", ["m", "ax"], ["cs"]),
            node("Cast", ["cs"], ["y"], to=TensorProto.FLOAT),
        ],
        [("ids", I64, [1, "L"])],
        [("y", F, [1, "L"])],
        {"pad": np.array(1, I64), "ax": np.array(1, I64)},
    )
    res = convert(model)
    for n in (9, 40):
        ids = RNG.integers(0, 4, (1, n)).astype(I64)
        want = ort.InferenceSession(model.SerializeToString()).run(None, {"ids": ids})[0]
        got = V.run_litert(res.tflite_bytes, {"ids": ids}, res.report.get("io"))["y"]
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------- qdq_weights


def test_per_channel_scales_over_the_reduction_axis_are_named():
    """A MatMul weight [K, N] quantized per channel along K (axis 0): FULLY_CONNECTED scales
    its N output channels, so the model's codes cannot be kept; the weight is re-rounded
    (within a step of the Q/DQ semantics) and the notes say why instead of nothing."""
    from onnx import numpy_helper
    from test_qdq_weight_scales import feeds_for, integer_model, off_steps

    from onnx2tflite_direct import builder

    rng = np.random.default_rng(11)
    wq = rng.integers(-60, 61, (16, 8)).astype(np.int8)
    ws = rng.uniform(0.004, 0.02, 16).astype(F)
    inits = [
        numpy_helper.from_array(np.float32(3.0 / 255), "xs"),
        numpy_helper.from_array(np.uint8(128), "xz"),
        numpy_helper.from_array(wq, "wq"),
        numpy_helper.from_array(ws, "ws"),
        numpy_helper.from_array(np.zeros(16, np.int8), "wz"),
        numpy_helper.from_array(np.float32(0.02), "ys"),
        numpy_helper.from_array(np.uint8(128), "yz"),
    ]
    nodes = [
        node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
        node("MatMul", ["xd", "wd"], ["o"]),
        node("QuantizeLinear", ["o", "ys", "yz"], ["oq"]),
        node("DequantizeLinear", ["oq", "ys", "yz"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "reduction_axis_scales",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])],
        inits,
    )
    qmodel = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model, summary = integer_model(qmodel)
    assert any("other than the output channels" in n for n in summary.notes), summary.notes
    off = off_steps(qmodel, builder.build_flatbuffer(model), feeds_for(qmodel), 0.02)
    assert off.max() <= 1.0 + 1e-3


def test_log_softmax_of_an_overflowing_matmul_logit_on_the_builtin_kernels():
    """A logit beyond FLT_MAX out of MatMul (3e38 * -10): onnxruntime gives -inf, and so does
    the default file (LOG_SOFTMAX kept) on both kernel sets. The opt-in log_softmax_decomposed
    gave -FLT_MAX on the builtin kernels (their SUB clamps): why it is not the default."""
    x = RNG.standard_normal((3, 4)).astype(F)
    x[:, 0] = 3e38
    w = (RNG.standard_normal((4, 5)) * 0.01).astype(F)
    w[0, :] = [-10, 0.001, 0.002, -0.003, 0.0]
    model = make_model(
        [node("MatMul", ["x", "w"], ["l"]), node("LogSoftmax", ["l"], ["y"], axis=-1)],
        [("x", F, [3, 4])],
        [("y", F, [3, 5])],
        {"w": w},
    )
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert np.isneginf(want[:, 0]).all()
    res = convert(model)
    assert "log_softmax_decomposed" not in {
        r["rule"] for r in res.report["rewrites"] if r["matched"]
    }
    for xnn in (True, False):
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"), use_xnnpack=xnn)
        np.testing.assert_array_equal(np.isneginf(got["y"]), np.isneginf(want))


# ------------------------------------------------- cases that held (regression guards)


def _branch(name: str, src: str, elem: int, shape):
    out = helper.make_tensor_value_info(f"{name}_o", elem, shape)
    return helper.make_graph([node("Identity", [src], [f"{name}_o"])], name, [], [out])


@pytest.mark.parametrize("src", ["mf", "w", "xf", "tte", "cs"])
@pytest.mark.parametrize("cond", [True, False])
def test_rewritten_values_read_inside_an_if(src, cond):
    """A removed Cast(bool -> float), a select, a moved Cast(int -> float), a uniform lookup
    made constant and a carried CumSum, each read from outer scope by an If branch."""
    mask_nodes = [
        node("Equal", ["ids", "pad"], ["eq"]),
        node("Not", ["eq"], ["ne"]),
        node("Cast", ["ne"], ["mf"], to=TensorProto.FLOAT),
        node("Where", ["ne", "k", "zero"], ["w"]),
        node("Reshape", ["ids", "shp"], ["ir"]),
        node("Cast", ["ir"], ["xf"], to=TensorProto.FLOAT),
        node("Cast", ["ne"], ["m"], to=TensorProto.INT64),
        node("CumSum", ["m", "ax"], ["cs"]),
        node("Add", ["cs", "pad"], ["pos"]),
        node("GatherElements", ["buffer", "pos"], ["tt"], axis=1),
        node("Gather", ["tt_table", "tt"], ["tte"]),
        node("Gather", ["pos_table", "pos"], ["pe"]),
    ]
    if src == "cs":
        then_b = _branch("t", "cs", TensorProto.INT64, [1, 9])
        else_b = _branch("e", "pos", TensorProto.INT64, [1, 9])
        tail = [node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT), node("Add", ["mf", "rf"], ["y"])]
        out_shape = [1, 9]
    else:
        shape = [1, 9, 4] if src == "tte" else [1, 9]
        then_b = _branch("t", src, TensorProto.FLOAT, shape)
        else_b = _branch("e", "pe" if src == "tte" else "xf", TensorProto.FLOAT, shape)
        tail = [node("Add", ["r", "w"] if src != "tte" else ["r", "pe"], ["y"])]
        out_shape = shape
    model = make_model(
        [*mask_nodes, node("If", ["c"], ["r"], then_branch=then_b, else_branch=else_b), *tail],
        [("ids", I64, [1, 9]), ("c", np.bool_, [])],
        [("y", F, out_shape), ("pe", F, [1, 9, 4])],
        {
            "pad": np.array(1, I64),
            "ax": np.array(1, I64),
            "k": np.array(-5.0, F),
            "zero": np.array(0.0, F),
            "shp": np.array([1, 9], I64),
            "buffer": np.zeros((1, 20), I64),
            "tt_table": RNG.standard_normal((2, 4)).astype(F),
            "pos_table": RNG.standard_normal((20, 4)).astype(F),
        },
    )
    chk = check_conversion(model, feeds={"ids": PAD_IDS, "c": np.array(cond)}, atol=0, rtol=0)
    _both_kernels(chk)


def _eln_attention(attrs: dict, count_reader: bool):
    h, heads = 16, 2
    rnd = np.random.default_rng(7)
    ms = "com.microsoft"
    nodes = [
        node(
            "EmbedLayerNormalization",
            ["ids", "", "word", "pos", "", "g", "b", "mask"],
            ["emb", "count"],
            domain=ms,
            epsilon=1e-12,
        ),
        node("Attention", ["emb", "w", "wb", "count"], ["y"], domain=ms, num_heads=heads, **attrs),
    ]
    outputs = [("y", F, [2, 6, h])]
    if count_reader:
        nodes.append(node("Cast", ["count"], ["cf"], to=TensorProto.FLOAT))
        outputs.append(("cf", F, [2]))
    inits = {
        "word": rnd.standard_normal((40, h)).astype(F),
        "pos": rnd.standard_normal((16, h)).astype(F),
        "g": rnd.standard_normal(h).astype(F),
        "b": rnd.standard_normal(h).astype(F),
        "w": (rnd.standard_normal((h, 3 * h)) * 0.3).astype(F),
        "wb": (rnd.standard_normal(3 * h) * 0.1).astype(F),
    }
    return make_model(
        nodes,
        inputs=[("ids", np.int32, [2, 6]), ("mask", np.int32, [2, 6])],
        outputs=outputs,
        initializers=inits,
        opset={"": 17, ms: 1},
        check=False,
    )


@pytest.mark.parametrize(
    "attrs,count_reader",
    [({"unidirectional": 1}, False), ({"mask_filter_value": -3e38, "scale": 0.3}, True)],
)
def test_mask_index_as_bias_all_zero_row_unidirectional_shared_count(attrs, count_reader):
    """A mask row of zeros (count 0: every key masked), unidirectional Attention, the count
    also read by another node: bit-identical to the integer form, within onnxruntime's
    tolerance of it."""
    model = _eln_attention(attrs, count_reader)
    feeds = {
        "ids": np.array([[1, 5, 39, 0, 7, 7], [3, 3, 2, 1, 0, 9]], np.int32),
        "mask": np.array([[0, 0, 0, 0, 0, 0], [1, 1, 1, 2, 1, 0]], np.int32),
    }
    chk = check_conversion(model, feeds=feeds, atol=5e-5)
    off = check_conversion(model, feeds=feeds, atol=5e-5, disable_rewrites=("mask_index_as_bias",))
    assert "mask_index_as_bias" in _matched(chk)
    np.testing.assert_array_equal(chk.actual["y"], off.actual["y"])
