"""``--gpu-friendly``: a rewrite happens only where the ported GPU rules (``gpu_rules``) reject
an operator, changes the graph as claimed (op histogram, tensor ranks, versions), leaves
operators the same rules accept, and still agrees with onnxruntime; the section names what
still falls back."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from onnx2tflite_direct import gpu_friendly, gpu_rules, tfl
from onnx2tflite_direct.tflite_reader import tensor_table


def _max_rank(tflite_bytes: bytes) -> int:
    return max(len(r["shape"]) for r in tensor_table(tflite_bytes))


def _rewrites(chk) -> list[dict]:
    return chk.report["gpu_friendly"]["rewrites"]


def _not_delegated(chk) -> list[dict]:
    return chk.report["gpu_friendly"]["not_delegated"]


# ---- GATHER with constant indices -> SLICE (+ CONCATENATION, + RESHAPE) -----------------------


def _gather_model(shape, indices, axis, dtype=np.float32):
    idx = np.asarray(indices, np.int64)
    ax = axis % len(shape)
    out = shape[:ax] + idx.shape + shape[ax + 1 :]
    return make_model(
        [
            helper.make_node("Gather", ["x", "idx"], ["g"], axis=axis),
            helper.make_node("Identity", ["g"], ["y"]),
        ],
        inputs=[("x", dtype, shape)],
        outputs=[("y", dtype, out)],
        initializers={"idx": idx},
    )


@pytest.mark.parametrize(
    "indices, axis, expected",
    [
        # (scalar and single-run indices: the lowering writes SLICEs itself, see the IR test)
        ([[0, 1], [3, 4]], 1, {"SLICE": 2, "CONCATENATION": 1, "RESHAPE": 1}),
        ([[0, 0]], 0, {"SLICE": 2, "CONCATENATION": 1, "RESHAPE": 1}),
        ([[0, 2], [4, 6]], 1, {"STRIDED_SLICE": 1, "RESHAPE": 1}),
        ([[1, 3, 5]], 2, {"STRIDED_SLICE": 1, "RESHAPE": 1}),
        # The delegate refuses reverse strided slices: a reversal becomes one SLICE per index.
        ([[2, 1, 0]], 2, {"SLICE": 3, "CONCATENATION": 1, "RESHAPE": 1}),
    ],
)
def test_rejected_gather_becomes_slices(indices, axis, expected):
    """GATHER takes only 1-D indices on the GPU (gpu_compatibility.cc): others are sliced."""
    model = _gather_model((3, 7, 6), indices, axis)
    plain = check_conversion(model)
    assert plain.ops["GATHER"] == 1
    assert plain.report["gpu"]["verdict"] == "1 op falls back"
    chk = check_conversion(model, gpu_friendly=True)
    assert dict(chk.ops) == expected
    assert [r["rule"] for r in _rewrites(chk)] == ["gather_to_slices"]
    assert np.array_equal(chk.actual["y"], plain.actual["y"])
    assert chk.report["gpu_friendly"]["verdict_after"] == "fully delegable"
    assert chk.report["gpu"]["fully_delegable"]


@pytest.mark.parametrize("indices", [[0, 2, 5], [2, 1, 0], [4, 5, 0, 1]])
def test_delegable_gather_left_alone(indices):
    """1-D constant int32 indices are what the GPU GATHER takes: nothing to rewrite. (Built
    as IR: the lowering already turns such gathers into slices where that is cheaper.)"""
    data = tfl.Tensor("x", np.float32, (3, 7, 6))
    idx = tfl.Tensor("i", np.int32, (len(indices),), data=np.array(indices, np.int32))
    out = tfl.Tensor("y", np.float32, (3, 7, len(indices)))
    sub = tfl.Subgraph(
        operators=[tfl.Operator("GATHER", [data, idx], [out], {"axis": 2, "batch_dims": 0})],
        inputs=[data],
        outputs=[out],
    )
    section = gpu_friendly.apply(tfl.Model([sub]))
    assert section["rewrites"] == [] and section["verdict_after"] == "fully delegable"
    assert [op.opcode for op in sub.operators] == ["GATHER"]


def test_integer_gather_left_alone():
    """Integer tensors stay off the GPU whatever op moves them: no point in more ops."""
    chk = check_conversion(_gather_model((3, 7, 6), 1, 1, np.int32), gpu_friendly=True)
    assert chk.ops["GATHER"] == 1 and _rewrites(chk) == []
    assert "non_float_tensor" in _not_delegated(chk)[0]["rules"]


def test_gather_with_many_runs_takes_flat_indices():
    """Too many runs for slices: the N-D indices are flattened (the GPU GATHER takes 1-D
    ones) and the result reshaped, as torch dynamo's ``as_strided`` pooling needs."""
    model = _gather_model((1, 2, 6), [[0, 2, 4, 1, 3]], 2)
    plain = check_conversion(model)
    assert [f["rules"] for f in plain.report["gpu"]["fall_back"]] == [["tensor_rank"]]
    chk = check_conversion(model, gpu_friendly=True)
    assert dict(chk.ops) == {"GATHER": 1, "RESHAPE": 1}
    assert [r["rule"] for r in _rewrites(chk)] == ["gather_flat_indices"]
    assert _not_delegated(chk) == []
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


def test_out_of_range_gather_left_for_the_kernel_to_reject():
    data = tfl.Tensor("x", np.float32, (1, 2, 6))
    out = tfl.Tensor("y", np.float32, (1, 2, 1, 2))
    idx = tfl.Tensor("i", np.int32, (1, 2), data=np.array([[5, 7]], np.int32))
    sub = tfl.Subgraph(
        operators=[tfl.Operator("GATHER", [data, idx], [out], {"axis": 2, "batch_dims": 0})],
        inputs=[data],
        outputs=[out],
    )
    assert gpu_friendly.apply(tfl.Model([sub]))["rewrites"] == []
    assert [op.opcode for op in sub.operators] == ["GATHER"]


def test_runtime_gather_with_1d_indices_is_delegable():
    """gpu_compatibility.cc: GATHER takes two runtime operands, int32 indices included."""
    model = make_model(
        [helper.make_node("Gather", ["x", "i"], ["y"], axis=0)],
        inputs=[("x", np.float32, (4, 3)), ("i", np.int32, (2,))],
        outputs=[("y", np.float32, (2, 3))],
    )
    feeds = {"x": np.arange(12, dtype=np.float32).reshape(4, 3), "i": np.array([3, 0], np.int32)}
    plain = check_conversion(model, feeds=feeds)
    # The GATHER is taken; the FLOOR_MOD that wraps negative indices works on int32 and is not,
    assert [(f["op"], f["rules"]) for f in plain.report["gpu"]["fall_back"]] == [
        ("FLOOR_MOD", ["non_float_tensor"])
    ]
    # so --gpu-friendly wraps them in float32 between CASTs (index_wrap_in_float).
    chk = check_conversion(model, feeds=feeds, gpu_friendly=True)
    assert chk.ops["GATHER"] == 1
    assert [r["rule"] for r in _rewrites(chk)] == ["index_wrap_in_float"]
    assert _not_delegated(chk) == []


# ---- >4-D TRANSPOSE brought down to 4-D ------------------------------------------------------


def test_channel_shuffle_loses_its_5d_tensors():
    """ShuffleNet's Reshape(5-D) -> Transpose -> Reshape runs in 4-D with no 5-D tensor left."""
    model = make_model(
        [
            helper.make_node("Reshape", ["x", "s1"], ["a"]),
            helper.make_node("Transpose", ["a"], ["b"], perm=[0, 2, 1, 3, 4]),
            helper.make_node("Reshape", ["b", "s2"], ["y"]),
        ],
        inputs=[("x", np.float32, (1, 8, 4, 4))],
        outputs=[("y", np.float32, (1, 8, 4, 4))],
        initializers={
            "s1": np.array([1, 2, 4, 4, 4], np.int64),
            "s2": np.array([1, 8, 4, 4], np.int64),
        },
    )
    plain = check_conversion(model)
    assert _max_rank(plain.tflite_bytes) == 5
    assert {r for f in plain.report["gpu"]["fall_back"] for r in f["rules"]} >= {"rank_above_4"}
    chk = check_conversion(model, gpu_friendly=True)
    assert _max_rank(chk.tflite_bytes) <= 4
    assert chk.ops["TRANSPOSE"] == 1 and chk.versions["TRANSPOSE"] == 1
    assert _not_delegated(chk) == []


def _transpose_then_flatten(shape, perm):
    """Transpose feeding a Reshape to 2-D (as attention/shuffle blocks do)."""
    out = tuple(shape[p] for p in perm)
    flat = (out[0], int(np.prod(out[1:])))
    return make_model(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=list(perm)),
            helper.make_node("Reshape", ["t", "s"], ["y"]),
        ],
        inputs=[("x", np.float32, shape)],
        outputs=[("y", np.float32, flat)],
        initializers={"s": np.array(flat, np.int64)},
    )


@st.composite
def _mergeable_transpose(draw):
    """A 5-D/6-D shape with a permutation that moves at most four blocks of axes."""
    rank = draw(st.integers(5, 6))
    shape = tuple(draw(st.lists(st.sampled_from([1, 2, 3]), min_size=rank, max_size=rank)))
    cuts = sorted(draw(st.sets(st.integers(1, rank - 1), min_size=1, max_size=3)))
    blocks = [list(range(a, b)) for a, b in zip([0, *cuts], [*cuts, rank], strict=True)]
    order = draw(st.permutations(range(len(blocks))))
    return shape, [a for b in order for a in blocks[b]]


@settings(max_examples=12, deadline=None)
@given(_mergeable_transpose())
def test_high_rank_transpose_runs_in_4d(case):
    shape, perm = case
    chk = check_conversion(_transpose_then_flatten(shape, perm), gpu_friendly=True)
    table = tensor_table(chk.tflite_bytes)
    assert chk.ops["TRANSPOSE"] <= 1
    if chk.ops["TRANSPOSE"]:
        assert chk.versions["TRANSPOSE"] <= gpu_rules.OPS["TRANSPOSE"].max_version
    # Only the graph input may stay >4-D (it is the user contract).
    assert all(len(r["shape"]) <= 4 for r in table if r["name"] != "x")


def _run_ir(sub: tfl.Subgraph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    from onnx2tflite_direct.builder import build_flatbuffer

    sub.input_names = [t.name for t in sub.inputs]
    sub.output_names = [t.name for t in sub.outputs]
    interp = Interpreter(model_content=build_flatbuffer(tfl.Model([sub])))
    return interp.get_signature_runner()(**feeds)


def test_transpose_of_unit_axes_becomes_reshape():
    """Lowerings rarely emit this (they reshape themselves), so the IR is built directly."""
    x = tfl.Tensor("x", np.float32, (2, 1, 3, 1, 4))
    y = tfl.Tensor("y", np.float32, (2, 1, 3, 1, 4))
    perm = tfl.Tensor("perm", np.int32, (5,), data=np.array([0, 3, 2, 1, 4], np.int32))
    sub = tfl.Subgraph(
        operators=[tfl.Operator("TRANSPOSE", [x, perm], [y])], inputs=[x], outputs=[y]
    )
    records = gpu_friendly.apply(tfl.Model([sub]))["rewrites"]
    assert [r["rule"] for r in records] == ["transpose_rank_reduction"]
    assert [op.opcode for op in sub.operators] == ["RESHAPE"]
    data = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    got = _run_ir(sub, {"x": data})["y"]
    assert np.array_equal(got, data.transpose(0, 3, 2, 1, 4))


def test_transpose_between_5d_ops_left_alone():
    """With >4-D data on both sides the RESHAPEs would stay >4-D: no rewrite."""
    model = make_model(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2, 4]),
            helper.make_node("Relu", ["t"], ["y"]),
        ],
        inputs=[("x", np.float32, (1, 2, 3, 4, 5))],
        outputs=[("y", np.float32, (1, 2, 4, 3, 5))],
    )
    chk = check_conversion(model, gpu_friendly=True)
    assert chk.ops["TRANSPOSE"] == 1 and _rewrites(chk) == []


def test_unmergeable_transpose_is_split_into_4d_block_moves():
    """Five blocks have no single 4-D equivalent: transpose_split (gpu_rewrites_rank) moves
    one block at a time, each a <=4-D TRANSPOSE; only the view of the 5-D graph input is left."""
    perm = (4, 2, 0, 3, 1)
    chk = check_conversion(_transpose_then_flatten((2, 3, 2, 3, 2), perm), gpu_friendly=True)
    assert [r["rule"] for r in _rewrites(chk)] == ["transpose_split"]
    assert chk.ops["TRANSPOSE"] >= 2
    assert [(i["op"], i["rules"]) for i in _not_delegated(chk)] == [("RESHAPE", ["rank_above_4"])]


# ---- version caps ----------------------------------------------------------------------------


def test_transpose_conv_activation_unfused_below_gpu_cap():
    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], strides=[2, 2]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        inputs=[("x", np.float32, (1, 3, 5, 5))],
        outputs=[("y", np.float32, (1, 2, 11, 11))],
        initializers={"w": w, "b": np.array([0.1, -0.2], np.float32)},
    )
    plain = check_conversion(model)
    assert plain.versions["TRANSPOSE_CONV"] > gpu_rules.OPS["TRANSPOSE_CONV"].max_version
    assert plain.ops["RELU"] == 0
    chk = check_conversion(model, gpu_friendly=True)
    assert chk.versions["TRANSPOSE_CONV"] <= gpu_rules.OPS["TRANSPOSE_CONV"].max_version
    assert chk.ops["RELU"] == 1
    assert [r["rule"] for r in _rewrites(chk)] == ["unfuse_activation"]
    assert _not_delegated(chk) == []


# ---- remaining_issues ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "node, inputs, outputs, rule",
    [
        (
            helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0),
            [("x", np.float32, (2, 5))],
            [("y", np.int64, (2,))],
            "no_gpu_kernel",
        ),
        (
            helper.make_node("Add", ["x", "x"], ["y"]),
            [("x", np.int64, (2, 5))],
            [("y", np.int64, (2, 5))],
            "non_float_tensor",
        ),
        (
            helper.make_node("Relu", ["x"], ["y"]),
            [("x", np.float32, (1, 2, 2, 2, 2))],
            [("y", np.float32, (1, 2, 2, 2, 2))],
            "rank_above_4",
        ),
    ],
)
def test_remaining_issues_names_the_reason(node, inputs, outputs, rule):
    chk = check_conversion(make_model([node], inputs, outputs), gpu_friendly=True)
    rules = [r for issue in _not_delegated(chk) for r in issue["rules"]]
    assert rule in rules


def test_float_cnn_block_is_clean():
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
        ],
        inputs=[("x", np.float32, (1, 3, 8, 8))],
        outputs=[("y", np.float32, (1, 4, 4, 4))],
        initializers={"w": w},
    )
    chk = check_conversion(model, gpu_friendly=True)
    assert _rewrites(chk) == [] and _not_delegated(chk) == []


def test_version_cap_alone_is_reported():
    """A cap violation alone is reported (v4 TRANSPOSE_CONV written without the rewrite)."""
    x = tfl.Tensor("x", np.float32, (1, 4, 4, 2))
    w = tfl.Tensor("w", np.float32, (2, 3, 3, 2), data=np.ones((2, 3, 3, 2), np.float32))
    shape = tfl.Tensor("s", np.int32, (4,), data=np.array([1, 4, 4, 2], np.int32))
    y = tfl.Tensor("y", np.float32, (1, 4, 4, 2))
    op = tfl.Operator("TRANSPOSE_CONV", [shape, w, x], [y], {"stride_h": 1, "stride_w": 1})
    assert [code for code, _ in gpu_rules.check_op(op, 4)] == ["version_above_gpu_cap"]
    assert gpu_rules.check_op(op, 3) == []


# ---- ArgMax/ArgMin: fast kernel by default, slow paths named ----------------------------------


def _argmax_model(shape, axis, keepdims, last, dtype):
    out = tuple(1 if i == axis else d for i, d in enumerate(shape) if keepdims or i != axis)
    node = helper.make_node(
        "ArgMax", ["x"], ["y"], axis=axis, keepdims=keepdims, select_last_index=last
    )
    return make_model([node], [("x", dtype, shape)], [("y", np.int64, out)], opset=13)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int8, np.int32])
@pytest.mark.parametrize("axis, keepdims, last", [(1, 0, 0), (1, 1, 1), (2, 0, 1), (3, 1, 0)])
def test_argmax_reduces_over_the_last_stored_axis(dtype, axis, keepdims, last):
    """The fast LiteRT kernel is the last-axis one: other axes are moved last first."""
    shape = (2, 5, 4, 6)
    ties = np.random.default_rng(3).integers(0, 3, shape).astype(dtype)  # first vs last index
    chk = check_conversion(
        _argmax_model(shape, axis, keepdims, last, dtype), feeds={"x": ties}, keep_io_layout=True
    )
    moved = np.dtype(dtype).name in ("float32", "uint8", "int8") and axis != 3
    assert chk.ops["TRANSPOSE"] == int(moved)
    assert chk.ops["ARG_MAX"] == 1 and chk.ops["REVERSE_V2"] == last


@pytest.mark.parametrize(
    "dtype, last, expected",
    [
        (np.float32, 0, []),
        (np.float32, 1, ["select_last_index=1"]),
        (np.int32, 0, ["int32 input"]),
        (np.int32, 1, ["int32 input", "select_last_index=1"]),
    ],
)
def test_argmax_slow_paths_are_noted(monkeypatch, dtype, last, expected):
    from onnx2tflite_direct.driver import LoweringContext

    seen: list[str] = []
    monkeypatch.setattr(LoweringContext, "note", lambda self, text: seen.append(text), False)
    check_conversion(_argmax_model((2, 5), 1, 0, last, dtype))
    assert [t.split(":")[0] for t in seen] == expected


# ---- builtins without a GPU parser replaced by exact equivalents -------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
@pytest.mark.parametrize(
    "shape, target, reshapes",
    [
        ((3, 1), (2, 3, 4), 1),
        ((1, 4), (3, 4), 0),
        ((2, 1, 1, 5), (2, 3, 4, 5), 0),
        ((5,), (2, 5), 1),
    ],
)
def test_broadcast_to_becomes_tile(dtype, shape, target, reshapes):
    """Float BROADCAST_TO (no GPU parser) becomes TILE; integer/bool data stays off the GPU
    either way, so it is left alone (the replacement must be something the rules accept).
    Built as IR: the lowering writes a float Expand as MUL by ones."""
    x = tfl.Tensor("x", dtype, shape)
    y = tfl.Tensor("y", dtype, target)
    t = tfl.Tensor("t", np.int32, (len(target),), data=np.array(target, np.int32))
    sub = tfl.Subgraph(
        operators=[tfl.Operator("BROADCAST_TO", [x, t], [y])], inputs=[x], outputs=[y]
    )
    section = gpu_friendly.apply(tfl.Model([sub]))
    if dtype is np.float32:
        assert [op.opcode for op in sub.operators] == ["RESHAPE"] * reshapes + ["TILE"]
        assert [r["rule"] for r in section["rewrites"]] == ["broadcast_to_tile"]
        assert section["verdict_after"] == "fully delegable"
        data = np.random.default_rng(11).standard_normal(shape).astype(np.float32)
        assert np.array_equal(_run_ir(sub, {"x": data})["y"], np.broadcast_to(data, target))
    else:
        assert section["rewrites"] == [] and [op.opcode for op in sub.operators] == ["BROADCAST_TO"]


@pytest.mark.parametrize("shape, target", [((3, 1), (2, 3, 4)), ((5,), (2, 5))])
def test_expand_is_delegable_with_gpu_friendly(shape, target):
    """Whatever the lowering writes for a float Expand (BROADCAST_TO, or a MUL by ones the GPU
    refuses across ranks), --gpu-friendly leaves a delegable graph with the same values."""
    model = make_model(
        [
            helper.make_node("Expand", ["x", "s"], ["e"]),
            helper.make_node("Identity", ["e"], ["y"]),
        ],
        inputs=[("x", np.float32, shape)],
        outputs=[("y", np.float32, target)],
        initializers={"s": np.array(target, np.int64)},
    )
    plain = check_conversion(model)
    chk = check_conversion(model, gpu_friendly=True)
    assert chk.report["gpu"]["verdict"] == "fully delegable"
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


def test_scalar_gather_becomes_slice_and_reshape():
    """The ViT class token: GATHER by a scalar index (the GPU takes 1-D indices only)."""
    x = tfl.Tensor("x", np.float32, (1, 7, 6))
    idx = tfl.Tensor("i", np.int32, (), data=np.array(0, np.int32))
    y = tfl.Tensor("y", np.float32, (1, 6))
    sub = tfl.Subgraph(
        operators=[tfl.Operator("GATHER", [x, idx], [y], {"axis": 1, "batch_dims": 0})],
        inputs=[x],
        outputs=[y],
    )
    section = gpu_friendly.apply(tfl.Model([sub]))
    assert [r["rule"] for r in section["rewrites"]] == ["gather_to_slices"]
    assert sorted(op.opcode for op in sub.operators) == ["RESHAPE", "SLICE"]
    assert section["verdict_after"] == "fully delegable"
    data = np.random.default_rng(12).standard_normal(x.shape).astype(np.float32)
    assert np.array_equal(_run_ir(sub, {"x": data})["y"], data[:, 0])


@pytest.mark.parametrize("batch, kv_heads, rep", [(1, 2, 3), (2, 1, 2), (1, 3, 1)])
def test_grouped_query_attention_repeat_tiles_in_4d(batch, kv_heads, rep):
    """Llama-style K/V repeat: Unsqueeze -> Expand (5-D) -> Reshape; no 5-D tensor left."""
    seq, dim = 3, 4
    model = make_model(
        [
            helper.make_node("Unsqueeze", ["k", "ax"], ["u"]),
            helper.make_node("Expand", ["u", "target"], ["e"]),
            helper.make_node("Reshape", ["e", "heads"], ["y"]),
        ],
        inputs=[("k", np.float32, (batch, kv_heads, seq, dim))],
        outputs=[("y", np.float32, (batch, kv_heads * rep, seq, dim))],
        initializers={
            "ax": np.array([2], np.int64),
            "target": np.array([batch, kv_heads, rep, seq, dim], np.int64),
            "heads": np.array([batch, kv_heads * rep, seq, dim], np.int64),
        },
    )
    plain = check_conversion(model)
    chk = check_conversion(model, gpu_friendly=True)
    if rep > 1:
        assert _max_rank(plain.tflite_bytes) == 5 and not plain.report["gpu"]["fully_delegable"]
        assert chk.ops["TILE"] == 1
    assert _max_rank(chk.tflite_bytes) <= 4
    assert _not_delegated(chk) == []
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


@st.composite
def _expand_case(draw):
    """A 4-D..6-D Expand target and a source that broadcasts to it (some axes repeated)."""
    rank = draw(st.integers(4, 6))
    target = tuple(draw(st.lists(st.sampled_from([1, 2, 3]), min_size=rank, max_size=rank)))
    src = tuple(d if draw(st.booleans()) else 1 for d in target)
    return src[draw(st.integers(0, 1)) :], target


@settings(max_examples=12, deadline=None)
@given(_expand_case())
def test_expand_then_flatten_matches_onnxruntime(case):
    src, target = case
    flat = (target[0], int(np.prod(target[1:])))
    model = make_model(
        [
            helper.make_node("Expand", ["x", "target"], ["e"]),
            helper.make_node("Reshape", ["e", "flat"], ["y"]),
        ],
        inputs=[("x", np.float32, src)],
        outputs=[("y", np.float32, flat)],
        initializers={"target": np.array(target, np.int64), "flat": np.array(flat, np.int64)},
    )
    chk = check_conversion(model, gpu_friendly=True)
    assert chk.ops["BROADCAST_TO"] == 0 or len(target) > 4
    if _rewrites(chk):  # the graph input is the user's contract; nothing else stays >4-D
        assert all(len(r["shape"]) <= 4 for r in tensor_table(chk.tflite_bytes) if r["name"] != "x")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # 1e30 in the report
def test_ceil_becomes_floor_of_negation_bit_exactly():
    model = make_model(
        [helper.make_node("Ceil", ["x"], ["y"])],
        inputs=[("x", np.float32, (2, 7))],
        outputs=[("y", np.float32, (2, 7))],
    )
    special = [0.0, -0.0, 0.5, -0.5, -0.3, 1.0, -1.0, 2.5, np.inf, -np.inf, np.nan, 1e30, -1e30]
    x = np.array([*special, 8388607.5], np.float32).reshape(2, 7)
    plain = check_conversion(model, feeds={"x": x})
    assert plain.ops["CEIL"] == 1
    chk = check_conversion(model, feeds={"x": x}, gpu_friendly=True)
    assert dict(chk.ops) == {"MUL": 2, "FLOOR": 1}
    assert chk.actual["y"].tobytes() == np.ceil(x).tobytes()  # signed zeros included
    assert _not_delegated(chk) == []


@pytest.mark.parametrize(
    "shape, starts, ends, steps",
    [
        ((2, 9), [0, 1], [2, 8], [1, 2]),  # 2-D strided
        ((2, 9), [1], [2], [1]),  # 2-D, one axis: a SLICE
        ((12,), [3], [11], [3]),  # 1-D strided
        ((12,), [2], [7], [1]),  # 1-D SLICE
    ],
)
def test_low_rank_slice_is_lifted_to_3d(shape, starts, ends, steps):
    """The GPU slices only 3-D/4-D tensors: 1-D/2-D ones are sliced as a 3-D view."""
    axes = list(range(len(starts))) if len(starts) == len(shape) else [0]
    out = list(shape)
    for a, b, e, st_ in zip(axes, starts, ends, steps, strict=True):
        out[a] = len(range(b, e, st_))
    model = make_model(
        [helper.make_node("Slice", ["x", "b", "e", "a", "s"], ["y"])],
        inputs=[("x", np.float32, shape)],
        outputs=[("y", np.float32, tuple(out))],
        initializers={
            "b": np.array(starts, np.int64),
            "e": np.array(ends, np.int64),
            "a": np.array(axes, np.int64),
            "s": np.array(steps, np.int64),
        },
    )
    plain = check_conversion(model)
    fall = plain.report["gpu"]["fall_back"]
    assert fall and all(f["rules"] == ["tensor_rank"] for f in fall)
    chk = check_conversion(model, gpu_friendly=True)
    assert {r["rule"] for r in _rewrites(chk)} == {"slice_rank_lift"}
    assert _not_delegated(chk) == []
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


@pytest.mark.parametrize("size, channels", [(5, 16), (3, 7), (1, 4)])
def test_lrn_becomes_delegable_ops(size, channels):
    """AlexNet/Inception LRN (no GPU parser) as SQUARE, a banded 1x1 CONV_2D, POW and MUL;
    numerically the same normalization (onnxruntime agrees within float rounding)."""
    model = make_model(
        [helper.make_node("LRN", ["x"], ["y"], size=size, alpha=2e-3, beta=0.75, bias=1.5)],
        inputs=[("x", np.float32, (1, channels, 5, 6))],
        outputs=[("y", np.float32, (1, channels, 5, 6))],
    )
    plain = check_conversion(model)
    assert plain.ops["LOCAL_RESPONSE_NORMALIZATION"] == 1
    chk = check_conversion(model, gpu_friendly=True, atol=1e-6, rtol=1e-5)
    assert [r["rule"] for r in _rewrites(chk)] == ["lrn_by_conv"]
    assert chk.ops["LOCAL_RESPONSE_NORMALIZATION"] == 0 and chk.ops["CONV_2D"] == 1
    assert chk.report["gpu"]["verdict"] == "fully delegable"


def test_gpu_friendly_section_lists_before_and_after():
    model = make_model(
        [helper.make_node("Ceil", ["x"], ["c"]), helper.make_node("ArgMax", ["c"], ["y"], axis=1)],
        inputs=[("x", np.float32, (2, 3))],
        outputs=[("y", np.int64, (2, 1))],
    )
    section = check_conversion(model, gpu_friendly=True).report["gpu_friendly"]
    assert section["verdict_before"] == "3 ops fall back"  # CEIL, ARG_MAX, its int RESHAPE
    assert [r["rule"] for r in section["rewrites"]] == ["ceil_by_floor"]
    assert section["verdict_after"] == "2 ops fall back"
    assert [(f["op"], f["rules"]) for f in section["not_delegated"]] == [
        ("ARG_MAX", ["no_gpu_kernel"]),
        ("RESHAPE", ["non_float_tensor"]),
    ]


def test_constant_reshape_is_folded():
    """A RESHAPE of a constant (Conv1D filters in some lowerings) is refused by the GPU RESHAPE
    (one runtime input): the reshaped constant replaces it. Built as IR: the lowering folds
    the common cases itself."""
    w = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    const = tfl.Tensor("w", np.float32, (3, 4), data=w)
    shape = tfl.Tensor("s", np.int32, (3,), data=np.array([1, 3, 4], np.int32))
    folded = tfl.Tensor("w3", np.float32, (1, 3, 4))
    x = tfl.Tensor("x", np.float32, (2, 3, 4))
    y = tfl.Tensor("y", np.float32, (2, 3, 4))
    sub = tfl.Subgraph(
        operators=[
            tfl.Operator("RESHAPE", [const, shape], [folded]),
            tfl.Operator("ADD", [x, folded], [y], {"fused_activation_function": "NONE"}),
        ],
        inputs=[x],
        outputs=[y],
    )
    section = gpu_friendly.apply(tfl.Model([sub]))
    assert section["verdict_before"] == "1 op falls back"
    assert [r["rule"] for r in section["rewrites"]] == ["fold_constant_reshape"]
    assert [op.opcode for op in sub.operators] == ["ADD"]
    assert section["verdict_after"] == "fully delegable"
    data = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    assert np.array_equal(_run_ir(sub, {"x": data})["y"], data + w[None])


def test_runtime_shape_of_a_static_reshape_becomes_constant():
    """SHAPE -> RESHAPE in a static graph: the target shape is known, the integer shape
    computation goes away (the GPU RESHAPE takes one runtime input, SHAPE has no parser)."""
    x = tfl.Tensor("x", np.float32, (2, 3, 4))
    s = tfl.Tensor("s", np.int32, (2,))
    two = tfl.Tensor("two", np.int32, (2,), data=np.array([1, 2], np.int32))
    d = tfl.Tensor("d", np.int32, (2,))
    y = tfl.Tensor("y", np.float32, (6, 4))
    flat = tfl.Tensor("flat", np.int32, (2,), data=np.array([6, 4], np.int32))
    shape_of = tfl.Tensor("shape_of", np.int32, (3,))
    sub = tfl.Subgraph(
        operators=[
            tfl.Operator("SHAPE", [x], [shape_of], {"out_type": "INT32"}),
            tfl.Operator(
                "SLICE",
                [shape_of, two, tfl.Tensor("n", np.int32, (1,), data=np.array([2], np.int32))],
                [s],
            ),
            tfl.Operator(
                "MUL", [s, tfl.Tensor("z", np.int32, (), data=np.array(0, np.int32))], [d]
            ),
            tfl.Operator("ADD", [d, flat], [tfl.Tensor("target", np.int32, (2,))]),
        ],
        inputs=[x],
        outputs=[y],
    )
    target = sub.operators[-1].outputs[0]
    sub.operators.append(tfl.Operator("RESHAPE", [x, target], [y]))
    section = gpu_friendly.apply(tfl.Model([sub]))
    assert [r["rule"] for r in section["rewrites"]] == ["reshape_static_shape"]
    assert [op.opcode for op in sub.operators] == ["RESHAPE"]
    assert section["verdict_before"] == "5 ops fall back"
    assert section["verdict_after"] == "fully delegable"
    data = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    assert np.array_equal(_run_ir(sub, {"x": data})["y"], data.reshape(6, 4))


def test_qkv_split_of_a_5d_tensor_runs_in_3d():
    """SVTR/ViT-style q/k/v split: RESHAPE to [b, n, 3, heads, d] and three slices of axis 2
    become slices of one shared [b*n, 3, heads*d] view; no 5-D tensor is left."""
    nodes = [helper.make_node("Reshape", ["x", "s5"], ["r"])]
    for k, name in enumerate("qkv"):
        nodes += [
            helper.make_node("Slice", ["r", f"b{k}", f"e{k}", "ax"], [f"{name}5"]),
            helper.make_node("Reshape", [f"{name}5", "s4"], [name]),
        ]
    nodes += [
        helper.make_node("Mul", ["q", "k"], ["qk"]),
        helper.make_node("Add", ["qk", "v"], ["y"]),
    ]
    model = make_model(
        nodes,
        inputs=[("x", np.float32, (1, 4, 24))],
        outputs=[("y", np.float32, (1, 4, 2, 4))],
        initializers={
            "s5": np.array([1, 4, 3, 2, 4], np.int64),
            "s4": np.array([1, 4, 2, 4], np.int64),
            "ax": np.array([2], np.int64),
            **{f"b{k}": np.array([k], np.int64) for k in range(3)},
            **{f"e{k}": np.array([k + 1], np.int64) for k in range(3)},
        },
    )
    plain = check_conversion(model)
    assert _max_rank(plain.tflite_bytes) == 5 and not plain.report["gpu"]["fully_delegable"]
    chk = check_conversion(model, gpu_friendly=True)
    assert [r["rule"] for r in _rewrites(chk)] == ["slice_rank_reduction"] * 3
    assert _max_rank(chk.tflite_bytes) <= 4
    assert chk.report["gpu"]["verdict"] == "fully delegable"
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


@pytest.mark.parametrize("shape, axis", [((6, 1, 5), 0), ((2, 7, 3), 1), ((3, 4), 1)])
def test_flip_becomes_gather(shape, axis):
    """Slice with step -1 over a whole axis (bidirectional RNN exports): the GPU refuses
    reverse slices, a GATHER by the reversed indices is taken."""
    n = shape[axis]
    model = make_model(
        [helper.make_node("Slice", ["x", "b", "e", "a", "s"], ["y"])],
        inputs=[("x", np.float32, shape)],
        outputs=[("y", np.float32, shape)],
        initializers={
            "b": np.array([n - 1], np.int64),
            "e": np.array([-(2**62)], np.int64),
            "a": np.array([axis], np.int64),
            "s": np.array([-1], np.int64),
        },
    )
    plain = check_conversion(model)
    chk = check_conversion(model, gpu_friendly=True)
    # by default the reversal is SLICEs + CONCATENATION (XNNPACK's forms); the GPU takes them
    # at 3-D/4-D (a 2-D SLICE is refused for its rank)
    assert "STRIDED_SLICE" not in plain.ops
    if len(shape) >= 3:
        assert plain.report["gpu"]["fall_back"] == []
    assert [r["rule"] for r in _rewrites(chk)] == ["reverse_slice_to_gather"]
    assert dict(chk.ops) == {"GATHER": 1} and _not_delegated(chk) == []
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


@pytest.mark.parametrize("mode", ["reflect", "constant"])
@pytest.mark.parametrize("shape, pads", [((1, 12), [0, 0, 0, 4]), ((2, 9), [0, 2, 0, 3])])
def test_low_rank_pad_is_lifted_to_3d(mode, shape, pads):
    """STFT front ends reflect-pad [batch, samples]: the GPU pads 3-D/4-D tensors only."""
    out = tuple(d + pads[i] + pads[i + len(shape)] for i, d in enumerate(shape))
    model = make_model(
        [helper.make_node("Pad", ["x", "p"], ["y"], mode=mode)],
        inputs=[("x", np.float32, shape)],
        outputs=[("y", np.float32, out)],
        initializers={"p": np.array(pads, np.int64)},
    )
    plain = check_conversion(model)  # reflect: slices + CONCATENATION (reflect_pad.py)
    rules = [f["rules"] for f in plain.report["gpu"]["fall_back"]]
    assert rules and all(r == ["tensor_rank"] for r in rules), rules
    chk = check_conversion(model, gpu_friendly=True)
    assert [r["rule"] for r in _rewrites(chk)] == ["pad_rank_lift"]
    assert _not_delegated(chk) == []
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


def test_uniform_constant_select_branch_becomes_scalar():
    """Exported attention masks select between the scores and a [1, 1, 1, 1] constant: the
    GPU takes output-shaped or scalar branches, so the constant becomes a scalar."""
    model = make_model(
        [helper.make_node("Where", ["m", "fill", "x"], ["y"])],
        inputs=[("m", np.bool_, (2, 1, 4, 4)), ("x", np.float32, (2, 1, 4, 4))],
        outputs=[("y", np.float32, (2, 1, 4, 4))],
        initializers={"fill": np.full((1, 1, 1, 1), -3.5, np.float32)},
    )
    rng = np.random.default_rng(7)
    feeds = {
        "m": rng.random((2, 1, 4, 4)) < 0.5,
        "x": rng.standard_normal((2, 1, 4, 4)).astype(np.float32),
    }
    # float_mask_logic would make this select float arithmetic; the SELECT_V2 form is tested
    off = {"disable_rewrites": ("float_mask_logic",)}
    plain = check_conversion(model, feeds=feeds, **off)
    assert [(f["op"], f["rules"]) for f in plain.report["gpu"]["fall_back"]] == [
        ("SELECT_V2", ["broadcast"])
    ]
    chk = check_conversion(model, feeds=feeds, gpu_friendly=True, **off)
    assert [r["rule"] for r in _rewrites(chk)] == ["select_scalar_branches"]
    assert _not_delegated(chk) == []
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


@pytest.mark.parametrize(
    "opcode, in_shape, out_shape",
    [("SQUEEZE", (1, 3, 1, 4), (3, 4)), ("EXPAND_DIMS", (3, 4), (1, 3, 4))],
)
def test_squeeze_and_expand_dims_become_reshape(opcode, in_shape, out_shape):
    """Built as IR (the lowering already writes RESHAPE for these): SQUEEZE/EXPAND_DIMS have
    no GPU parser; a RESHAPE moves the same elements."""
    x = tfl.Tensor("x", np.float32, in_shape)
    y = tfl.Tensor("y", np.float32, out_shape)
    if opcode == "SQUEEZE":
        op = tfl.Operator(opcode, [x], [y], {"squeeze_dims": [0, 2]})
    else:
        axis = tfl.Tensor("a", np.int32, (), data=np.array(0, np.int32))
        op = tfl.Operator(opcode, [x, axis], [y])
    sub = tfl.Subgraph(operators=[op], inputs=[x], outputs=[y])
    section = gpu_friendly.apply(tfl.Model([sub]))
    assert section["verdict_before"] == "1 op falls back"
    assert [r["rule"] for r in section["rewrites"]] == ["unit_axes_to_reshape"]
    assert [o.opcode for o in sub.operators] == ["RESHAPE"]
    assert section["verdict_after"] == "fully delegable"
    data = np.random.default_rng(8).standard_normal(in_shape).astype(np.float32)
    assert np.array_equal(_run_ir(sub, {"x": data})["y"], data.reshape(out_shape))


def test_scalar_squeeze_is_kept():
    x = tfl.Tensor("x", np.float32, (1,))
    y = tfl.Tensor("y", np.float32, ())
    sub = tfl.Subgraph(operators=[tfl.Operator("SQUEEZE", [x], [y])], inputs=[x], outputs=[y])
    assert gpu_friendly.apply(tfl.Model([sub]))["rewrites"] == []


@pytest.mark.parametrize("op_type", ["Add", "Mul", "Sigmoid"])
def test_5d_elementwise_between_reshapes_runs_in_4d(op_type):
    """Paddle exports: unsqueeze to 5-D, add a [1,1,1,1,1] constant, squeeze back. The op runs
    on the 4-D tensor and the RESHAPEs cancel out."""
    operands = ["u", "c"] if op_type != "Sigmoid" else ["u"]
    model = make_model(
        [
            helper.make_node("Unsqueeze", ["x", "ax"], ["u"]),
            helper.make_node(op_type, operands, ["a"]),
            helper.make_node("Squeeze", ["a", "ax"], ["s"]),
            helper.make_node("Relu", ["s"], ["y"]),
        ],
        inputs=[("x", np.float32, (1, 3, 5, 6))],
        outputs=[("y", np.float32, (1, 3, 5, 6))],
        initializers={
            "ax": np.array([4], np.int64),
            "c": np.full((1, 1, 1, 1, 1), 0.75, np.float32),
        },
    )
    plain = check_conversion(model)
    assert _max_rank(plain.tflite_bytes) == 5
    chk = check_conversion(model, gpu_friendly=True)
    assert [r["rule"] for r in _rewrites(chk)] == ["elementwise_rank_reduction"]
    assert _max_rank(chk.tflite_bytes) <= 4 and chk.ops["RESHAPE"] == 0
    assert chk.report["gpu"]["verdict"] == "fully delegable"
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


@pytest.mark.parametrize("axes", [[0], [2], [0, 2]])
def test_reverse_becomes_gathers(axes):
    """REVERSE_V2 (bidirectional RNN lowerings, select_last_index) has no GPU parser: one
    GATHER by reversed indices per axis moves the same elements."""
    x = tfl.Tensor("x", np.float32, (5, 1, 6))
    y = tfl.Tensor("y", np.float32, (5, 1, 6))
    axis_t = tfl.Tensor("ax", np.int32, (len(axes),), data=np.array(axes, np.int32))
    sub = tfl.Subgraph(
        operators=[tfl.Operator("REVERSE_V2", [x, axis_t], [y])], inputs=[x], outputs=[y]
    )
    section = gpu_friendly.apply(tfl.Model([sub]))
    assert [r["rule"] for r in section["rewrites"]] == ["reverse_to_gather"]
    assert [op.opcode for op in sub.operators] == ["GATHER"] * len(axes)
    assert section["verdict_after"] == "fully delegable"
    data = np.random.default_rng(9).standard_normal(x.shape).astype(np.float32)
    assert np.array_equal(_run_ir(sub, {"x": data})["y"], np.flip(data, axes))


def test_runtime_target_shape_from_the_inputs_is_not_frozen():
    """A RESHAPE or BROADCAST_TO whose target shape is read from a model input may take
    another shape at run time: neither becomes a constant-shape op."""
    x = tfl.Tensor("x", np.float32, (2, 3, 4))
    s = tfl.Tensor("s", np.int32, (2,))
    y = tfl.Tensor("y", np.float32, (6, 4))
    sub = tfl.Subgraph(operators=[tfl.Operator("RESHAPE", [x, s], [y])], inputs=[x, s], outputs=[y])
    assert gpu_friendly.apply(tfl.Model([sub]))["rewrites"] == []
    b = tfl.Tensor("b", np.float32, (1, 4))
    t = tfl.Tensor("t", np.int32, (2,))
    z = tfl.Tensor("z", np.float32, (3, 4))
    sub = tfl.Subgraph(
        operators=[tfl.Operator("BROADCAST_TO", [b, t], [z])], inputs=[b, t], outputs=[z]
    )
    assert gpu_friendly.apply(tfl.Model([sub]))["rewrites"] == []


@pytest.mark.parametrize("op_type", ["LSTM", "GRU"])
def test_unrolled_rnn_first_step_is_folded(op_type):
    """With --unroll-rnn the first step multiplies the zero initial state by R: a
    FULLY_CONNECTED of constants, which the GPU refuses (its data input must be runtime). Its
    result becomes a constant; the model stays equal to onnxruntime's."""
    rng = np.random.default_rng(10)
    hidden, gates = 4, 4 if op_type == "LSTM" else 3
    w = (rng.standard_normal((1, gates * hidden, 3)) * 0.5).astype(np.float32)
    r = (rng.standard_normal((1, gates * hidden, hidden)) * 0.5).astype(np.float32)
    b = (rng.standard_normal((1, 2 * gates * hidden)) * 0.1).astype(np.float32)
    model = make_model(
        [helper.make_node(op_type, ["x", "W", "R", "B"], ["y"], hidden_size=hidden)],
        inputs=[("x", np.float32, (5, 1, 3))],
        outputs=[("y", np.float32, (5, 1, 1, hidden))],
        initializers={"W": w, "R": r, "B": b},
    )
    plain = check_conversion(model, unroll_rnn=True)
    assert ("FULLY_CONNECTED", ["operands"]) in [
        (f["op"], f["rules"]) for f in plain.report["gpu"]["fall_back"]
    ]
    chk = check_conversion(model, unroll_rnn=True, gpu_friendly=True)
    assert "fold_constant_fully_connected" in {r["rule"] for r in _rewrites(chk)}
    assert "FULLY_CONNECTED" not in {f["op"] for f in _not_delegated(chk)}


def test_while_fallback_gets_the_unroll_hint():
    from onnx2tflite_direct import gpu_check

    section = {
        "verdict": "1 op falls back",
        "fully_delegable": False,
        "partitions": 0,
        "delegated_ops": 0,
        "fall_back": [{"subgraph": 0, "op_index": 3, "op": "WHILE", "rules": ["no_gpu_kernel"],
                       "detail": "the GPU delegate has no WHILE", "onnx_node": "LSTM:y"}],
    }  # fmt: skip
    assert any("--unroll-rnn" in line for line in gpu_check.format_verdict(section))
