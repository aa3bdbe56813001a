"""If nodes whose output shapes ONNX inference leaves unknown (issue 17: real exports).

- Branches that compute the same shape through shape arithmetic (``Shape`` -> ``Reshape``)
  with symbolic declared outputs: the front end infers each branch at the pinned shapes
  (rule ``control_flow_shapes``) and the If output is static, so nodes downstream lower as usual.
- Branches that compute different shapes: a graph output takes the running branch's shape
  (LiteRT's IF kernel resizes it); a value read by other nodes is refused, naming what each
  branch computes.
- A branch that cannot run at the pinned shapes (onnxruntime fails when it takes it): the IF
  gets a branch that fails at run time too, and the If output has the other branch's shape.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from harness import check_conversion, expect_refusal, make_model
from onnx import TensorProto as T
from onnx import helper as h

from onnx2tflite_direct import ConversionError, convert

RNG = np.random.default_rng(17)


def _branch(nodes, name, out, dims):
    return h.make_graph(nodes, name, [], [h.make_tensor_value_info(out, T.FLOAT, dims)])


def _reshape_branch(tag: str, op: str):
    """``op(x, y)`` reshaped to [batch, -1] with batch read by Shape/Gather at run time;
    declared output ``[batch, None]`` (what exporters write)."""
    nodes = [
        h.make_node(op, ["x", "y"], [f"{tag}_v"]),
        h.make_node("Shape", ["x"], [f"{tag}_s"]),
        h.make_node("Gather", [f"{tag}_s", "zero"], [f"{tag}_b"], axis=0),
        h.make_node("Unsqueeze", [f"{tag}_b", "zero1"], [f"{tag}_b1"]),
        h.make_node("Concat", [f"{tag}_b1", "minus1"], [f"{tag}_shape"], axis=0),
        h.make_node("Reshape", [f"{tag}_v", f"{tag}_shape"], [f"{tag}_out"]),
    ]
    return _branch(nodes, tag, f"{tag}_out", ["batch", None])


def _feeds(cond, shape=(2, 3, 4)):
    return {
        "c": np.array(cond),
        "x": RNG.standard_normal(shape).astype(np.float32),
        "y": (RNG.random(shape) + 0.5).astype(np.float32),
    }


def _inits():
    return {
        "zero": np.array(0, np.int64),
        "zero1": np.array([0], np.int64),
        "minus1": np.array([-1], np.int64),
    }


def _reshape_if_model():
    """If(c) over the two reshape branches (Add / Div), declared [batch, None], then Tanh."""
    node = h.make_node(
        "If",
        ["c"],
        ["o"],
        then_branch=_reshape_branch("then", "Add"),
        else_branch=_reshape_branch("else", "Div"),
    )
    return make_model(
        [node, h.make_node("Tanh", ["o"], ["z"])],
        [("c", np.bool_, []), ("x", np.float32, [2, 3, 4]), ("y", np.float32, [2, 3, 4])],
        [("z", np.float32, ["batch", None])],
        initializers=_inits(),
    )


@pytest.mark.parametrize("cond", [True, False])
def test_if_output_shape_from_branches_feeds_downstream_nodes(cond):
    """The If output is declared [batch, None]; each branch computes [2, 12]. Downstream
    Tanh and the graph output then have static shapes."""
    model = _reshape_if_model()
    res = check_conversion(model, feeds=_feeds(cond))
    assert res.ops["IF"] == 1
    assert {"rule": "control_flow_shapes", "matched": 1, "nodes": []} in res.report["rewrites"]


def test_control_flow_shapes_rule_can_be_disabled():
    """--disable-rewrite control_flow_shapes leaves the If output unknown: refused, by name."""
    model = _reshape_if_model()
    err = expect_refusal(
        model, "dynamic_shape_unsupported", disable_rewrites=("control_flow_shapes",)
    )
    assert "then_branch gives [2, 12]" in err.message


def _different_shapes_model(consumer: bool):
    """then: x + y ([2, 3]); else: Concat(x, y) on axis 0 ([4, 3])."""
    then_g = _branch([h.make_node("Add", ["x", "y"], ["t"])], "then", "t", [None, 3])
    else_g = _branch([h.make_node("Concat", ["x", "y"], ["e"], axis=0)], "else", "e", [None, 3])
    nodes = [h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g)]
    out = "o"
    if consumer:
        nodes.append(h.make_node("Relu", ["o"], ["r"]))
        out = "r"
    return make_model(
        nodes,
        [("c", np.bool_, []), ("x", np.float32, [2, 3]), ("y", np.float32, [2, 3])],
        [(out, np.float32, [None, 3])],
    )


@pytest.mark.parametrize("cond", [True, False])
def test_if_graph_output_takes_the_running_branch_shape(cond):
    res = check_conversion(_different_shapes_model(False), feeds=_feeds(cond, (2, 3)))
    assert res.ops["IF"] == 1
    (row,) = [r for r in res.report["io"] if r["name"] == "o"]
    assert row["shape_signature"] == [-1, 3]


def test_if_output_of_branch_dependent_shape_read_by_a_node_is_refused():
    with pytest.raises(ConversionError) as info:
        convert(_different_shapes_model(True))
    err = info.value
    assert err.reason_code == "dynamic_shape_unsupported"
    assert "then_branch gives [2, 3]" in err.message
    assert "else_branch gives [4, 3]" in err.message


def _impossible_else_model():
    """else reshapes the [2, 3] input to [4, 4]: impossible at these shapes (onnxruntime
    fails when it takes that branch); then is a Relu. Declared output shapes are unknown."""
    then_g = _branch([h.make_node("Relu", ["x"], ["t"])], "then", "t", [None, None])
    else_g = _branch([h.make_node("Reshape", ["x", "four"], ["e"])], "else", "e", [None, None])
    return make_model(
        [
            h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g),
            h.make_node("Tanh", ["o"], ["r"]),
        ],
        [("c", np.bool_, []), ("x", np.float32, [2, 3])],
        [("r", np.float32, [None, None])],
        initializers={"four": np.array([4, 4], np.int64)},
        check=False,
    )


def test_if_branch_that_cannot_run_at_the_pinned_shapes_fails_at_run_time():
    """The possible branch matches onnxruntime; the impossible one stops LiteRT's Invoke
    with an error, as onnxruntime stops (no made-up values), and the report says so."""
    model = _impossible_else_model()
    feeds = {"c": np.array(True), "x": RNG.standard_normal((2, 3)).astype(np.float32)}
    res = check_conversion(model, feeds=feeds)
    (row,) = [r for r in res.report["nodes"] if r["op_type"] == "If"]
    assert any("else_branch cannot be computed" in n for n in row["notes"])

    feeds["c"] = np.array(False)
    session = ort.InferenceSession(model.SerializeToString())
    with pytest.raises(Exception, match="(?i)reshape|shape"):
        session.run(None, feeds)
    runner = Interpreter(model_content=bytes(res.tflite_bytes)).get_signature_runner()
    with pytest.raises(Exception, match="RESHAPE"):
        runner(**feeds)


def test_if_with_both_branches_impossible_is_refused():
    then_g = _branch([h.make_node("Reshape", ["x", "four"], ["t"])], "then", "t", [None, None])
    else_g = _branch([h.make_node("Reshape", ["x", "four"], ["e"])], "else", "e", [None, None])
    model = make_model(
        [h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g)],
        [("c", np.bool_, []), ("x", np.float32, [2, 3])],
        [("o", np.float32, [None, None])],
        initializers={"four": np.array([4, 4], np.int64)},
        check=False,
    )
    err = expect_refusal(model, "dynamic_shape_unsupported")
    assert "cannot be computed at these input shapes" in err.message


# ---- Loop-carried values --------------------------------------------------------------------


def _loop_model(grow: bool):
    """A for-loop whose carried ``s`` is declared without a shape; the body computes it
    through Shape -> Reshape (``grow``: Concat with x, a new shape every iteration)."""
    if grow:
        step = [h.make_node("Concat", ["s_in", "x"], ["s_out"], axis=0)]
    else:
        step = [
            h.make_node("Tanh", ["s_in"], ["t"]),
            h.make_node("Add", ["t", "x"], ["u"]),
            h.make_node("Shape", ["s_in"], ["sh"]),
            h.make_node("Reshape", ["u", "sh"], ["s_out"]),
        ]
    body = h.make_graph(
        [*step, h.make_node("Identity", ["c_in"], ["c_out"])],
        "body",
        [
            h.make_tensor_value_info("i", T.INT64, []),
            h.make_tensor_value_info("c_in", T.BOOL, []),
            h.make_tensor_value_info("s_in", T.FLOAT, None),
        ],
        [
            h.make_tensor_value_info("c_out", T.BOOL, []),
            h.make_tensor_value_info("s_out", T.FLOAT, None),
        ],
    )
    return make_model(
        [
            h.make_node("Loop", ["n", "", "s0"], ["s"], body=body),
            h.make_node("Relu", ["s"], ["y"]),
        ],
        [("n", np.int64, []), ("s0", np.float32, (2, 3)), ("x", np.float32, (2, 3))],
        [("y", np.float32, None)],
        check=False,
    )


@pytest.mark.parametrize("trips", [0, 1, 4])
def test_loop_carried_shape_kept_by_the_body_feeds_downstream_nodes(trips):
    """The body gives ``s`` back at its initial [2, 3], so every iteration does: the Loop
    output is [2, 3] and the Relu after it lowers."""
    feeds = {
        "n": np.array(trips, np.int64),
        "s0": RNG.standard_normal((2, 3)).astype(np.float32),
        "x": RNG.standard_normal((2, 3)).astype(np.float32),
    }
    res = check_conversion(_loop_model(grow=False), feeds=feeds)
    assert res.ops["WHILE"] == 1
    assert {"rule": "control_flow_shapes", "matched": 1, "nodes": []} in res.report["rewrites"]


def test_loop_carried_value_growing_every_iteration_is_refused():
    expect_refusal(_loop_model(grow=True), "dynamic_shape_unsupported")
