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
from onnx2tflite_direct import diagnostics
from onnx2tflite_direct.layout import Inner, Layout
from onnx2tflite_direct.registry import REGISTRY

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
    json.dumps(diag)


def test_mapping_coverage_on_small_cnn(clean_result):
    diag = diagnostics.validate_all_tensors(clean_result)
    cov = diag["coverage"]
    assert cov["tflite_nonconstant_tensors"] > 0
    assert cov["fraction"] >= 0.95, cov
    # Every measured node output matches; all Relu outputs survive activation fusion.
    measured = {o["name"] for n in diag["nodes"] for o in n["outputs"]}
    assert {"r1", "r2", "r3", "y"} <= measured


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
