"""Layout engine: the reshape algebra (property-tested against numpy) and TRANSPOSE counts on
the block patterns that break pattern-based converters."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from harness import check_conversion, make_model
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from onnx2tflite_direct import layout as L

RNG = np.random.default_rng(0)


@st.composite
def reshape_cases(draw):
    rank = draw(st.integers(2, 5))
    shape = tuple(draw(st.lists(st.sampled_from([1, 2, 3, 4]), min_size=rank, max_size=rank)))
    perm = tuple(draw(st.permutations(range(rank))))
    # Target: split or merge random runs of the ONNX shape.
    dims = list(shape)
    out = []
    i = 0
    while i < len(dims):
        run = draw(st.integers(1, len(dims) - i))
        out.append(int(np.prod(dims[i : i + run])))
        i += run
    if draw(st.booleans()) and out[-1] % 2 == 0:
        out[-1:] = [2, out[-1] // 2]
    return shape, perm, tuple(out)


@settings(max_examples=300, deadline=None)
@given(reshape_cases())
def test_reshape_layout_agrees_with_numpy(case):
    shape, perm, target = case
    x = np.arange(int(np.prod(shape))).reshape(shape)
    src = L.Layout(perm)
    kind, lay = L.reshape_layout(src, shape, target)
    expected = x.reshape(target)
    if kind == "transpose":
        stored = lay.apply(x)
        kind2, out = L.reshape_layout(lay, shape, target)
        assert kind2 == "direct"
    else:
        stored, out = src.apply(x), lay
    got = stored.reshape(out.stored_shape(target))
    np.testing.assert_array_equal(got, out.apply(expected))


@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))))
def test_transpose_relabel_composes(perm):
    x = RNG.standard_normal((2, 3, 4, 5))
    src = L.channel_last(4)
    out = L.compose_transpose(src, perm)
    np.testing.assert_array_equal(out.apply(np.transpose(x, perm)), src.apply(x))


def _conv(name, x, cin, cout, k=3, group=1, inits=None):
    w = RNG.standard_normal((cout, cin // group, k, k)).astype(np.float32) * 0.2
    inits[f"{name}_w"] = w
    inits[f"{name}_b"] = RNG.standard_normal(cout).astype(np.float32) * 0.1
    return helper.make_node(
        "Conv", [x, f"{name}_w", f"{name}_b"], [name], pads=[k // 2] * 4, group=group
    )


def _transposes(chk) -> int:
    return chk.ops.get("TRANSPOSE", 0)


def test_residual_block_has_no_transpose():
    inits = {}
    nodes = [
        _conv("c1", "x", 8, 8, inits=inits),
        helper.make_node("Relu", ["c1"], ["r1"]),
        _conv("c2", "r1", 8, 8, inits=inits),
        helper.make_node("Add", ["c2", "x"], ["s"]),
        helper.make_node("Relu", ["s"], ["y"]),
    ]
    model = make_model(
        nodes, [("x", np.float32, (1, 8, 6, 6))], [("y", np.float32, (1, 8, 6, 6))], inits
    )
    chk = check_conversion(model)
    assert _transposes(chk) == 0
    assert chk.ops == {"CONV_2D": 2, "ADD": 1}  # both Relus fused


def test_squeeze_excitation_has_no_transpose():
    inits = {}
    nodes = [
        _conv("c1", "x", 8, 8, inits=inits),
        helper.make_node("GlobalAveragePool", ["c1"], ["g"]),
        _conv("fc1", "g", 8, 4, k=1, inits=inits),
        helper.make_node("Relu", ["fc1"], ["r"]),
        _conv("fc2", "r", 4, 8, k=1, inits=inits),
        helper.make_node("Sigmoid", ["fc2"], ["s"]),
        helper.make_node("Mul", ["c1", "s"], ["y"]),
    ]
    model = make_model(
        nodes, [("x", np.float32, (1, 8, 5, 5))], [("y", np.float32, (1, 8, 5, 5))], inits
    )
    assert _transposes(check_conversion(model)) == 0


def test_flatten_into_gemm_permutes_weights_not_activations():
    inits = {"fc_w": RNG.standard_normal((10, 8 * 4 * 4)).astype(np.float32) * 0.1}
    nodes = [
        _conv("c1", "x", 3, 8, inits=inits),
        helper.make_node("Flatten", ["c1"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w"], ["y"], transB=1),
    ]
    model = make_model(
        nodes, [("x", np.float32, (2, 3, 4, 4))], [("y", np.float32, (2, 10))], inits
    )
    chk = check_conversion(model)
    assert _transposes(chk) == 0
    assert chk.ops["FULLY_CONNECTED"] == 1


def test_flatten_to_two_consumers_materializes_once():
    """If a flattened map also feeds a non-matmul consumer, one TRANSPOSE serves both."""
    inits = {"fc_w": RNG.standard_normal((5, 8 * 3 * 3)).astype(np.float32) * 0.1}
    nodes = [
        _conv("c1", "x", 2, 8, inits=inits),
        helper.make_node("Flatten", ["c1"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w"], ["y"], transB=1),
        helper.make_node("Softmax", ["f"], ["z"], axis=1),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, (1, 2, 3, 3))],
        [("y", np.float32, (1, 5)), ("z", np.float32, (1, 72))],
        inits,
    )
    assert _transposes(check_conversion(model)) == 1


def test_channel_shuffle_costs_one_transpose():
    inits = {}
    nodes = [
        _conv("c1", "x", 6, 6, inits=inits),
        helper.make_node("Reshape", ["c1", "s5"], ["r5"]),
        helper.make_node("Transpose", ["r5"], ["t5"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t5", "s4"], ["r4"]),
        _conv("c2", "r4", 6, 6, inits=inits),
    ]
    inits["s5"] = np.array([1, 3, 2, 4, 4], np.int64)
    inits["s4"] = np.array([1, 6, 4, 4], np.int64)
    model = make_model(
        nodes, [("x", np.float32, (1, 6, 4, 4))], [("c2", np.float32, (1, 6, 4, 4))], inits
    )
    chk = check_conversion(model)
    assert _transposes(chk) == 1
    assert "GATHER" not in chk.ops


def test_concat_of_conv_branches_concatenates_on_channel_axis():
    inits = {}
    nodes = [
        _conv("a", "x", 4, 3, inits=inits),
        _conv("b", "x", 4, 5, k=1, inits=inits),
        helper.make_node("Concat", ["a", "b", "x"], ["y"], axis=1),
    ]
    model = make_model(
        nodes, [("x", np.float32, (1, 4, 5, 5))], [("y", np.float32, (1, 12, 5, 5))], inits
    )
    chk = check_conversion(model)
    assert _transposes(chk) == 0


def test_softmax_over_channels_of_feature_map_is_transpose_free():
    inits = {}
    nodes = [_conv("a", "x", 4, 6, inits=inits), helper.make_node("Softmax", ["a"], ["y"], axis=1)]
    model = make_model(
        nodes, [("x", np.float32, (1, 4, 3, 3))], [("y", np.float32, (1, 6, 3, 3))], inits
    )
    assert _transposes(check_conversion(model)) == 0


def test_keep_io_layout_exposes_onnx_shapes():
    inits = {}
    nodes = [_conv("a", "x", 4, 6, inits=inits)]
    model = make_model(
        nodes, [("x", np.float32, (1, 4, 3, 3))], [("a", np.float32, (1, 6, 3, 3))], inits
    )
    chk = check_conversion(model, keep_io_layout=True)
    assert [r["tflite_shape"] for r in chk.report["io"]] == [[1, 4, 3, 3], [1, 6, 3, 3]]
    assert _transposes(chk) == 2
