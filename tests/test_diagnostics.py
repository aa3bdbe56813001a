"""Per-tensor bisection (``diagnostics``): a deliberately wrong lowering is found by name.

The wrong lowering is injected test-only by monkeypatching the Relu spec so that exactly one
named node emits TANH; every other Relu keeps the real lowering. The bisection must name that
node, not its (also wrong) consumers, and not the correct Relu before it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from harness import make_model
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

import onnx2tflite_direct as o2t
from onnx2tflite_direct import diagnostics, litert_tensors, tfl
from onnx2tflite_direct.layout import Inner, Layout
from onnx2tflite_direct.registry import REGISTRY
from onnx2tflite_direct.tensor_mapping import derived_tensors

WRONG_NODE = "relu_b"


def _cnn():
    """conv -> relu -> conv -> add(skip) -> relu_b -> conv -> relu -> gap -> flatten -> gemm."""
    rng = np.random.default_rng(0)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"], "relu_a"),
        n("Conv", ["r1", "w2", "b2"], ["c2"], "conv2", pads=[1, 1, 1, 1]),
        n("Add", ["c2", "r1"], ["s"], "add"),
        n("Relu", ["s"], ["r2"], WRONG_NODE),
        n("Conv", ["r2", "w3", "b3"], ["c3"], "conv3", pads=[1, 1, 1, 1]),
        n("Relu", ["c3"], ["r3"], "relu_c"),
        n("MaxPool", ["r3"], ["p"], "pool", kernel_shape=[2, 2], strides=[2, 2]),
        n("GlobalAveragePool", ["p"], ["g"], "gap"),
        n("Flatten", ["g"], ["f"], "flatten"),
        n("Gemm", ["f", "wf", "bf"], ["y"], "fc", transB=1),
    ]
    inits = {
        "w1": w(8, 3, 3, 3),
        "b1": w(8),
        "w2": w(8, 8, 3, 3),
        "b2": w(8),
        "w3": w(8, 8, 3, 3),
        "b3": w(8),
        "wf": w(5, 8),
        "bf": w(5),
    }
    return make_model(nodes, [("x", np.float32, [1, 3, 8, 8])], [("y", np.float32, [1, 5])], inits)


@pytest.fixture(scope="module")
def clean_result():
    return o2t.convert(_cnn())


def _inject_tanh(monkeypatch):
    spec = REGISTRY.lookup("", "Relu", 17)
    original = spec.lower

    def wrong_fn(ctx):
        if ctx.node.name != WRONG_NODE:
            return original(ctx)
        ctx.emit("TANH", [ctx.input(0)], [ctx.output(0)])

    monkeypatch.setattr(spec, "lower", wrong_fn)


def test_clean_model_has_no_divergence(clean_result):
    diag = diagnostics.validate_all_tensors(clean_result)
    assert diag["first_divergent_node"] is None
    assert diag["outputs_ok"]
    assert diag["chain"] == [] and diag["suspects"] == []
    assert all(not n["divergent"] for n in diag["nodes"])
    json.dumps(diag)  # JSON-friendly


def test_injected_wrong_lowering_is_named(monkeypatch):
    _inject_tanh(monkeypatch)
    result = o2t.convert(_cnn())
    diag = diagnostics.validate_all_tensors(result)
    assert diag["first_divergent_node"] == WRONG_NODE
    assert not diag["outputs_ok"]
    by_name = {n["name"]: n for n in diag["nodes"]}
    assert not by_name["relu_a"]["divergent"]  # the correct Relu before it
    assert by_name[WRONG_NODE]["divergent"]
    assert diag["chain"][0] == WRONG_NODE and diag["chain"][-1] == "fc"
    assert "relu_a" not in diag["chain"]
    # relu_b's input (the Add) is measured and fine, so nothing upstream is suspect.
    assert diag["suspects"] == []
    assert set(diag["timing"]) == {"onnxruntime", "litert", "compare", "total"}
    assert diag["derived_divergent"] == []  # relu_b's own tensor is off, not a copy of it
    json.dumps(diag)


def test_mapping_coverage_on_small_cnn(clean_result):
    diag = diagnostics.validate_all_tensors(clean_result)
    mapping = diag["mapping"]
    assert mapping["activation_tensors"] > 0 and "constant" in mapping["definition"]
    assert mapping["ratio"] >= 0.95, mapping
    # Every measured node output matches; all Relu outputs survive activation fusion.
    measured = {o["name"] for n in diag["nodes"] for o in n["outputs"]}
    assert {"r1", "r2", "r3", "y"} <= measured
    # Conv outputs fused with their Relu are gone, not mapped to the Relu's tensor.
    assert not {"c1", "c3"} & measured
    assert "c1" not in clean_result.tensor_map


def test_feeds_are_used(clean_result):
    feeds = {"x": np.zeros((1, 3, 8, 8), np.float32)}
    diag = diagnostics.validate_all_tensors(clean_result, feeds=feeds)
    assert diag["first_divergent_node"] is None


def test_expose_intermediates_lists_typed_node_outputs():
    exposed, added = diagnostics.expose_intermediates(_cnn())
    names = [o.name for o in exposed.graph.output]
    assert names[0] == "y" and {"c1", "r1", "s", "r2", "f"} <= set(added)
    assert len(names) == len(set(names))


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(1, 3), min_size=1, max_size=3),
    st.integers(2, 4),
    st.data(),
)
def test_to_onnx_order_inverts_layout_apply(inner_shape, lead, data):
    inner_perm = tuple(data.draw(st.permutations(range(len(inner_shape)))))
    size = int(np.prod(inner_shape))
    arr = np.arange(lead * size, dtype=np.float32).reshape(lead, size)
    inner_layout = Layout((0, 1), Inner(tuple(inner_shape), inner_perm))
    back = diagnostics.to_onnx_order(inner_layout.apply(arr), inner_layout)
    np.testing.assert_array_equal(back, arr)
    perm = tuple(data.draw(st.permutations(range(3))))
    cube = np.arange(lead * 6, dtype=np.float32).reshape(lead, 2, 3)
    plain = Layout(perm)
    np.testing.assert_array_equal(diagnostics.to_onnx_order(plain.apply(cube), plain), cube)


# --------------------------------------------------------------------------------------------
# TFLite-only tensors: PAD / TRANSPOSE copies, uncropped results, lowering temporaries
# --------------------------------------------------------------------------------------------


def _accounting(mapping):
    """mapped + internal + unmapped is every activation tensor: nothing double counted."""
    total = mapping["mapped"] + mapping["internal"] + mapping["unmapped_count"]
    assert total == mapping["activation_tensors"], mapping
    assert sum(mapping["by_relation"].values()) == mapping["mapped"]


def _w(rng, *shape):
    return (rng.standard_normal(shape) * 0.3).astype(np.float32)


@pytest.mark.parametrize(
    ("pads", "strides"), [([3, 3, 3, 3], [2, 2]), ([0, 1, 2, 1], [1, 1]), ([1, 0, 1, 0], [2, 1])]
)
def test_pad_before_conv_is_a_compared_padded_copy(pads, strides):
    """A PAD the conv lowering emits maps to the conv input, and is compared on its window."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], "relu"),
        helper.make_node("Conv", ["r", "w"], ["y"], "conv", pads=pads, strides=strides),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, [1, 3, 9, 9])],
        [("y", np.float32, None)],
        {"w": _w(rng, 4, 3, 3, 3)},
        check=False,
    )
    result = o2t.convert(model)
    diag = diagnostics.validate_all_tensors(result)
    mapping = diag["mapping"]
    assert mapping["by_relation"].get("padded", 0) >= 1, mapping
    assert mapping["ratio"] == 1.0 and mapping["unmapped_count"] == 0
    copies = [d for e in result.tensor_map.values() for d in e["derived"]]
    assert all(d["pad_values"] == [0.0] for d in copies if d["relation"] == "padded")
    assert diag["derived"]["compared"] >= 1 and diag["derived"]["ok"] == diag["derived"]["compared"]
    _accounting(mapping)


def test_wrong_pad_copy_is_reported_while_its_tensor_is_fine():
    """A derived copy holding wrong values is flagged (the compare reads the ONNX window)."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], "relu"),
        helper.make_node("Conv", ["r", "w"], ["y"], "conv", pads=[0, 1, 2, 1]),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, [1, 2, 6, 6])],
        [("y", np.float32, None)],
        {"w": _w(rng, 3, 2, 3, 3)},
        check=False,
    )
    result = o2t.convert(model)
    entry = result.tensor_map["r"]
    assert entry["derived"] and entry["derived"][0]["relation"] == "padded"
    # Claim the copy starts one row lower than it does (stored NHWC; 2 rows of bottom pad):
    # every window read is shifted, as if the PAD had put its rows on the wrong side.
    crop = entry["derived"][0]["steps"][0]
    assert crop[0] == "crop" and crop[1][1] == 0
    crop[1][1] = 1
    diag = diagnostics.validate_all_tensors(result)
    assert [d["onnx_tensor"] for d in diag["derived_divergent"]] == ["r"]


def test_transpose_materialization_is_a_permuted_copy():
    """keep_io_layout: the NCHW input is transposed for the Conv, its NHWC result transposed
    back for the output; both TRANSPOSE outputs are compared copies of ONNX tensors."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], "conv", pads=[1, 1, 1, 1])]
    model = make_model(
        nodes,
        [("x", np.float32, [1, 2, 5, 5])],
        [("y", np.float32, [1, 3, 5, 5])],
        {"w": _w(rng, 3, 2, 3, 3)},
    )
    result = o2t.convert(model, keep_io_layout=True)
    diag = diagnostics.validate_all_tensors(result)
    mapping = diag["mapping"]
    assert mapping["by_relation"].get("permuted", 0) == 2, mapping
    assert mapping["ratio"] == 1.0
    assert diag["derived"] == {"compared": 2, "ok": 2}
    assert diag["first_divergent_node"] is None
    _accounting(mapping)


def test_conv_transpose_output_survives_reshape_collapse():
    """No crop: the lowering's same-shape RESHAPE is collapsed; the result is still measured.
    (Kernel 3 over stride 2 keeps TRANSPOSE_CONV; kernel == stride is CONV_2D + DEPTH_TO_SPACE.)"""
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w", "b"], ["t"], "up", strides=[2, 2]),
        helper.make_node("Sigmoid", ["t"], ["y"], "sigmoid"),  # not fused into the conv
    ]
    model = make_model(
        nodes,
        [("x", np.float32, [1, 4, 3, 3])],
        [("y", np.float32, None)],
        {"w": _w(rng, 4, 2, 3, 3), "b": _w(rng, 2)},
        check=False,
    )
    diag = diagnostics.validate_all_tensors(o2t.convert(model))
    measured = {o["name"] for n in diag["nodes"] for o in n["outputs"]}
    assert {"t", "y"} <= measured
    assert diag["mapping"]["ratio"] == 1.0 and diag["first_divergent_node"] is None
    _accounting(diag["mapping"])


def test_decomposition_temporaries_are_internal_not_mapped():
    """LayerNormalization's mean/variance/... hold no ONNX value: attributed, not counted."""
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"], "ln", axis=-1),
        helper.make_node("Relu", ["n"], ["y"], "relu"),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, [2, 3, 8])],
        [("y", np.float32, None)],
        {"g": _w(rng, 8), "b": _w(rng, 8)},
        check=False,
    )
    diag = diagnostics.validate_all_tensors(o2t.convert(model))
    mapping = diag["mapping"]
    _accounting(mapping)
    if mapping["internal"] == 0:  # a single fused builtin would have no temporaries
        pytest.skip("LayerNormalization lowered without temporaries")
    assert mapping["ratio"] == (mapping["mapped"]) / mapping["activation_tensors"] < 1.0
    assert {e["node"] for e in mapping["internal_examples"]} == {"ln"}
    assert mapping["unmapped_count"] == 0
    assert diag["first_divergent_node"] is None


def _op(opcode, src, const, dst):
    return tfl.Operator(opcode, [src, const], [dst])


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_derived_steps_reproduce_the_value_exactly(data):
    """PAD then TRANSPOSE then RESHAPE of a value; a slice whose output is a value: the steps
    recorded for each copy turn its array back into the value's array bit for bit."""
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=2, max_size=4)))
    pads = np.array([data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2))) for _ in shape])
    perm = np.array(data.draw(st.permutations(range(len(shape)))), np.int32)
    value = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    padded_arr = np.pad(value, pads, constant_values=7.0)
    permuted_arr = np.transpose(padded_arr, perm)
    flat_arr = permuted_arr.reshape(-1)

    x = tfl.Tensor("x", np.float32, shape)
    padded = tfl.Tensor("p", np.float32, padded_arr.shape)
    permuted = tfl.Tensor("t", np.float32, permuted_arr.shape)
    flat = tfl.Tensor("f", np.float32, flat_arr.shape)
    canvas = tfl.Tensor("canvas", np.float32, padded_arr.shape)  # a value's uncropped producer
    y = tfl.Tensor("y", np.float32, shape)

    def const(name, arr):
        return tfl.Tensor(name, arr.dtype, arr.shape, data=arr)

    begin = pads[:, 0].astype(np.int32)
    ops = [
        _op("PAD", x, const("pads", pads.astype(np.int32)), padded),
        _op("TRANSPOSE", padded, const("perm", perm), permuted),
        _op("RESHAPE", permuted, const("shape", np.array([-1], np.int32)), flat),
        tfl.Operator("SLICE", [canvas, const("b", begin), const("s", np.array(shape))], [y]),
    ]
    found = derived_tensors(ops, {id(x): "x", id(y): "y"})
    arrays = {"p": padded_arr, "t": permuted_arr, "f": flat_arr, "canvas": padded_arr}
    assert set(found) == set(arrays)
    for name, arr in arrays.items():
        onnx_name, relation, steps = found[name]
        assert onnx_name == ("y" if name == "canvas" else "x")
        np.testing.assert_array_equal(litert_tensors.apply_steps(arr, steps), value)
        # The canvas holds computed data around the window; the others, PAD's constant.
        assert relation == ("contains" if name == "canvas" else "padded")


def test_exposed_model_bytes_run_every_node_output():
    model = _cnn()
    feeds = {"x": np.ones((1, 3, 8, 8), np.float32)}
    outs = diagnostics._run_session(diagnostics.exposed_model_bytes(model), feeds)
    assert {o for n in model.graph.node for o in n.output} <= set(outs)
