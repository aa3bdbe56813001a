"""If -> IF and Loop/Scan -> WHILE: LiteRT must agree with onnxruntime on every path taken."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from harness import check_conversion, expect_refusal, make_model
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper as h

from onnx2tflite_direct import ConversionError, convert

RNG = np.random.default_rng(7)


def _w(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _graph(nodes, name, outputs, inputs=(), inits=()):
    return h.make_graph(
        nodes,
        name,
        [h.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [h.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=[onnx.numpy_helper.from_array(a, n) for n, a in inits],
    )


# ---- If ---------------------------------------------------------------------------------------


def _if_model(then_nodes, else_nodes, out_shape=(2, 3), opset=17):
    then_g = _graph(then_nodes, "then", [("t", T.FLOAT, list(out_shape))])
    else_g = _graph(else_nodes, "else", [("e", T.FLOAT, list(out_shape))])
    node = h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g)
    return make_model(
        [node],
        [("c", np.bool_, []), ("x", np.float32, [2, 3]), ("y", np.float32, [2, 3])],
        [("o", np.float32, list(out_shape))],
        opset=opset,
    )


@pytest.mark.parametrize("cond", [True, False])
@pytest.mark.parametrize(
    "then_op,else_op", [("Add", "Sub"), ("Mul", "Max"), ("Div", "Min")], ids=str
)
def test_if_runtime_condition_takes_each_branch(cond, then_op, else_op):
    model = _if_model(
        [h.make_node(then_op, ["x", "y"], ["t"])], [h.make_node(else_op, ["x", "y"], ["e"])]
    )
    feeds = {
        "c": np.array(cond),
        "x": RNG.standard_normal((2, 3)).astype(np.float32),
        "y": (RNG.random((2, 3)) + 0.5).astype(np.float32),
    }
    res = check_conversion(model, feeds=feeds)
    assert res.ops["IF"] == 1 and res.ops["CUSTOM"] == 0


def test_if_branch_outputs_outer_value_and_constant():
    """A branch may return an outer-scope tensor unchanged, the other a constant."""
    const = np.arange(6, dtype=np.float32).reshape(2, 3)
    then_nodes = [h.make_node("Identity", ["x"], ["t"])]
    else_nodes = [h.make_node("Constant", [], ["e"], value=onnx.numpy_helper.from_array(const))]
    model = _if_model(then_nodes, else_nodes)
    for cond in (True, False):
        feeds = {"c": np.array(cond), "x": _w(2, 3), "y": _w(2, 3)}
        check_conversion(model, feeds=feeds)


def test_if_condition_of_shape_one_from_comparison():
    """The condition computed in the graph (shape [1]) is reshaped to the scalar IF wants."""
    then_g = _graph([h.make_node("Neg", ["x"], ["t"])], "then", [("t", T.FLOAT, [4])])
    else_g = _graph([h.make_node("Abs", ["x"], ["e"])], "else", [("e", T.FLOAT, [4])])
    nodes = [
        h.make_node("ReduceSum", ["x"], ["s"], keepdims=1),
        h.make_node("Greater", ["s", "zero"], ["c"]),
        h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g),
    ]
    model = make_model(
        nodes,
        [("x", np.float32, [4])],
        [("o", np.float32, [4])],
        initializers={"zero": np.zeros(1, np.float32)},
    )
    for sign in (1.0, -1.0):
        check_conversion(model, feeds={"x": sign * (RNG.random(4).astype(np.float32) + 0.1)})


def test_nested_if():
    inner_then = _graph([h.make_node("Add", ["x", "y"], ["it"])], "it", [("it", T.FLOAT, [2, 3])])
    inner_else = _graph([h.make_node("Mul", ["x", "y"], ["ie"])], "ie", [("ie", T.FLOAT, [2, 3])])
    then_nodes = [h.make_node("If", ["c2"], ["t"], then_branch=inner_then, else_branch=inner_else)]
    else_nodes = [h.make_node("Sub", ["x", "y"], ["e"])]
    then_g = _graph(then_nodes, "then", [("t", T.FLOAT, [2, 3])])
    else_g = _graph(else_nodes, "else", [("e", T.FLOAT, [2, 3])])
    node = h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g)
    model = make_model(
        [node],
        [
            ("c", np.bool_, []),
            ("c2", np.bool_, []),
            ("x", np.float32, [2, 3]),
            ("y", np.float32, [2, 3]),
        ],
        [("o", np.float32, [2, 3])],
    )
    for c, c2 in ((True, True), (True, False), (False, True)):
        feeds = {"c": np.array(c), "c2": np.array(c2), "x": _w(2, 3), "y": _w(2, 3)}
        res = check_conversion(model, feeds=feeds)
    assert res.ops["IF"] == 2


def test_if_branches_with_different_shapes_are_refused():
    then_g = _graph([h.make_node("Identity", ["x"], ["t"])], "then", [("t", T.FLOAT, None)])
    else_g = _graph(
        [h.make_node("ReduceSum", ["x"], ["e"], keepdims=0)], "else", [("e", T.FLOAT, None)]
    )
    node = h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g)
    model = make_model(
        [node],
        [("c", np.bool_, []), ("x", np.float32, [2, 3])],
        [("o", np.float32, None)],
        check=False,
    )
    expect_refusal(model, "dynamic_shape_unsupported")


# ---- voice-activity model: If on a run-time sample rate, conv + LSTM per branch ---------------

HIDDEN = 4
FRAMES = 6


def _vad_branch(tag: str, kernel: int, stride: int):
    """Conv1d front end (window depends on the sample rate) -> LSTM over frames -> speech prob."""
    nodes = [
        h.make_node("Conv", ["audio", f"{tag}_w"], [f"{tag}_f"], strides=[stride], pads=[0, 0]),
        h.make_node("Relu", [f"{tag}_f"], [f"{tag}_r"]),
        h.make_node("Transpose", [f"{tag}_r"], [f"{tag}_seq"], perm=[2, 0, 1]),
        h.make_node(
            "LSTM",
            [f"{tag}_seq", f"{tag}_W", f"{tag}_R", f"{tag}_B", "", "h0", "c0"],
            [f"{tag}_Y", f"{tag}_yh", f"{tag}_yc"],
            hidden_size=HIDDEN,
        ),
        h.make_node("Squeeze", [f"{tag}_yh", "axis0"], [f"{tag}_last"]),
        h.make_node("MatMul", [f"{tag}_last", "head"], [f"{tag}_logit"]),
        h.make_node("Sigmoid", [f"{tag}_logit"], [f"{tag}_prob"]),
    ]
    outputs = [
        (f"{tag}_prob", T.FLOAT, [1, 1]),
        (f"{tag}_yh", T.FLOAT, [1, 1, HIDDEN]),
        (f"{tag}_yc", T.FLOAT, [1, 1, HIDDEN]),
    ]
    channels = 3
    inits = [
        (f"{tag}_w", _w(channels, 1, kernel)),
        (f"{tag}_W", _w(1, 4 * HIDDEN, channels)),
        (f"{tag}_R", _w(1, 4 * HIDDEN, HIDDEN)),
        (f"{tag}_B", _w(1, 8 * HIDDEN, scale=0.1)),
    ]
    return _graph(nodes, tag, outputs, inits=inits)


def _vad_model():
    samples = 96
    # 16 kHz: 16-sample windows, stride 16; 8 kHz: 26-sample windows, stride 14 -> 6 frames both
    then_g = _vad_branch("k16", 16, 16)
    else_g = _vad_branch("k8", 26, 14)
    nodes = [
        h.make_node("Equal", ["sr", "sr16k"], ["is16k"]),
        h.make_node("If", ["is16k"], ["prob", "hn", "cn"], then_branch=then_g, else_branch=else_g),
    ]
    return make_model(
        nodes,
        [
            ("audio", np.float32, [1, 1, samples]),
            ("sr", np.int64, []),
            ("h0", np.float32, [1, 1, HIDDEN]),
            ("c0", np.float32, [1, 1, HIDDEN]),
        ],
        [
            ("prob", np.float32, [1, 1]),
            ("hn", np.float32, [1, 1, HIDDEN]),
            ("cn", np.float32, [1, 1, HIDDEN]),
        ],
        initializers={
            "sr16k": np.array(16000, np.int64),
            "axis0": np.array([0], np.int64),
            "head": _w(HIDDEN, 1),
        },
    )


@pytest.mark.parametrize("sample_rate", [16000, 8000])
def test_voice_activity_if_on_runtime_sample_rate_with_lstm_state(sample_rate):
    model = _vad_model()
    feeds = {
        "audio": _w(1, 1, 96, scale=1.0),
        "sr": np.array(sample_rate, np.int64),
        "h0": _w(1, 1, HIDDEN),
        "c0": _w(1, 1, HIDDEN),
    }
    res = check_conversion(model, feeds=feeds, atol=1e-4, rtol=0.0)
    assert res.ops["IF"] == 1 and res.ops["CUSTOM"] == 0
    # The state is threaded: feeding the returned state back changes the answer.
    again = dict(feeds, h0=res.validation.actual["hn"], c0=res.validation.actual["cn"])
    check_conversion(model, feeds=again, atol=1e-4, rtol=0.0)


# ---- Loop -------------------------------------------------------------------------------------

VOCAB, EMB, STEPS, EOS = 5, 6, 8, 0


def _decoder_model(scan_tokens: bool = False):
    """Greedy decoder: loop until argmax == EOS or STEPS tokens; tokens land in a fixed-size
    loop-carried buffer (Where over a position mask), the step count is a loop-carried value.
    ``scan_tokens``: the tokens are also a scan output (declared [STEPS, 1]: the buffer size;
    the TFLite output is trimmed to the steps run, a dynamic-shape output)."""
    body_nodes = [
        h.make_node("Gather", ["emb", "tok_in"], ["e"], axis=0),
        h.make_node("MatMul", ["e", "wx"], ["ax"]),
        h.make_node("MatMul", ["s_in", "wh"], ["ah"]),
        h.make_node("Add", ["ax", "ah"], ["a"]),
        h.make_node("Tanh", ["a"], ["s_out"]),
        h.make_node("MatMul", ["s_out", "wo"], ["logits"]),
        h.make_node("ArgMax", ["logits"], ["tok_out"], axis=1, keepdims=0),
        h.make_node("Equal", ["positions", "i"], ["here"]),
        h.make_node("Where", ["here", "tok_out", "buf_in"], ["buf_out"]),
        h.make_node("Add", ["n_in", "one"], ["n_out"]),
        h.make_node("Equal", ["tok_out", "eos"], ["is_eos"]),
        h.make_node("Not", ["is_eos"], ["not_eos"]),
        h.make_node("Squeeze", ["not_eos"], ["cond_out"]),
    ]
    body = _graph(
        body_nodes,
        "step",
        [
            ("cond_out", T.BOOL, []),
            ("tok_out", T.INT64, [1]),
            ("s_out", T.FLOAT, [1, EMB]),
            ("buf_out", T.INT64, [1, STEPS]),
            ("n_out", T.INT64, []),
        ]
        + ([("tok_out", T.INT64, [1])] if scan_tokens else []),
        inputs=[
            ("i", T.INT64, []),
            ("c", T.BOOL, []),
            ("tok_in", T.INT64, [1]),
            ("s_in", T.FLOAT, [1, EMB]),
            ("buf_in", T.INT64, [1, STEPS]),
            ("n_in", T.INT64, []),
        ],
    )
    loop = h.make_node(
        "Loop",
        ["max_steps", "go", "bos", "state0", "buf0", "zero"],
        ["last", "state", "tokens", "count"] + (["scanned"] if scan_tokens else []),
        body=body,
    )
    scanned = [("scanned", np.int64, [STEPS, 1])] if scan_tokens else []
    return make_model(
        [loop],
        [("state0", np.float32, [1, EMB])],
        [
            ("last", np.int64, [1]),
            ("state", np.float32, [1, EMB]),
            ("tokens", np.int64, [1, STEPS]),
            ("count", np.int64, []),
            *scanned,
        ],
        initializers={
            "max_steps": np.array(STEPS, np.int64),
            "go": np.array(True),
            "bos": np.array([1], np.int64),
            "buf0": np.full((1, STEPS), -1, np.int64),
            "zero": np.array(0, np.int64),
            "one": np.array(1, np.int64),
            "eos": np.array([EOS], np.int64),
            "positions": np.arange(STEPS, dtype=np.int64).reshape(1, STEPS),
            "emb": _w(VOCAB, EMB, scale=1.5),
            "wx": _w(EMB, EMB, scale=1.0),
            "wh": _w(EMB, EMB, scale=1.0),
            "wo": _w(EMB, VOCAB, scale=1.5),
        },
    )


@pytest.mark.parametrize("scan_tokens", [False, True])
def test_greedy_decoder_loop_with_data_dependent_trip_count(scan_tokens):
    model = _decoder_model(scan_tokens)
    rng = np.random.default_rng(3)
    counts = set()
    for _ in range(8):
        feeds = {"state0": (rng.standard_normal((1, EMB)) * 2).astype(np.float32)}
        res = check_conversion(model, feeds=feeds, atol=1e-4, rtol=0.0)
        counts.add(int(res.validation.expected["count"]))
    assert res.ops["WHILE"] == 1 and res.ops["CUSTOM"] == 0
    # Some runs stop at EOS, others run to the step limit: the trip count depends on the data.
    assert len(counts) > 1 and STEPS in counts, counts


def _scan_loop_model(trip_input: bool, declared):
    """Loop accumulating y += x[i] (x read from the outer scope) with y as a scan output."""
    body = _graph(
        [
            h.make_node("Gather", ["x", "i"], ["row"], axis=0),
            h.make_node("Add", ["y_in", "row"], ["y_out"]),
            h.make_node("Mul", ["y_out", "scale"], ["scan"]),
            h.make_node("Identity", ["c"], ["c_out"]),
        ],
        "body",
        [("c_out", T.BOOL, []), ("y_out", T.FLOAT, [3]), ("scan", T.FLOAT, [3])],
        inputs=[("i", T.INT64, []), ("c", T.BOOL, []), ("y_in", T.FLOAT, [3])],
    )
    loop = h.make_node("Loop", ["m", "", "y0"], ["y", "ys"], body=body)
    inputs = [("x", np.float32, [4, 3]), ("y0", np.float32, [3]), ("scale", np.float32, [3])]
    inits = {}
    if trip_input:
        inputs.append(("m", np.int64, []))
    else:
        inits["m"] = np.array(4, np.int64)
    return make_model(
        [loop], inputs, [("y", np.float32, [3]), ("ys", np.float32, declared)], initializers=inits
    )


def test_loop_constant_trip_count_scan_output_and_outer_reads():
    model = _scan_loop_model(False, [None, 3])
    res = check_conversion(model, feeds={"x": _w(4, 3), "y0": _w(3), "scale": _w(3)})
    assert res.validation.actual["ys"].shape == (4, 3)


def test_loop_runtime_trip_count_with_declared_scan_length_is_refused():
    """A run-time trip count could exceed the declared scan length: ONNX would then return more
    rows than the buffer holds, so the loop is refused rather than silently cut short."""
    expect_refusal(_scan_loop_model(True, [4, 3]), "dynamic_shape_unsupported")


def test_loop_runtime_scan_length_without_declared_shape_is_refused():
    expect_refusal(_scan_loop_model(True, [None, 3]), "dynamic_shape_unsupported")


def test_loop_carried_value_changing_shape_is_refused():
    body = _graph(
        [
            h.make_node("Concat", ["y_in", "y_in"], ["y_out"], axis=0),
            h.make_node("Identity", ["c"], ["c_out"]),
        ],
        "body",
        [("c_out", T.BOOL, []), ("y_out", T.FLOAT, [None])],
        inputs=[("i", T.INT64, []), ("c", T.BOOL, []), ("y_in", T.FLOAT, [None])],
    )
    loop = h.make_node("Loop", ["m", "", "y0"], ["y"], body=body)
    model = make_model(
        [loop],
        [("y0", np.float32, [2])],
        [("y", np.float32, [None])],
        initializers={"m": np.array(3, np.int64)},
    )
    expect_refusal(model, "dynamic_shape_unsupported")


@pytest.mark.parametrize("cond", [True, False])
def test_if_on_constant_condition_is_inlined(cond):
    res = check_conversion(_constant_if_model(cond))
    assert res.ops["IF"] == 0 and res.ops["ADD" if cond else "SUB"] == 1


def _constant_if_model(cond):
    then_g = _graph([h.make_node("Add", ["x", "y"], ["t"])], "then", [("t", T.FLOAT, [2, 3])])
    else_g = _graph([h.make_node("Sub", ["x", "y"], ["e"])], "else", [("e", T.FLOAT, [2, 3])])
    nodes = [
        h.make_node("Not", ["flag"], ["c"]),
        h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g, name="If_c"),
    ]
    return make_model(
        nodes,
        [("x", np.float32, [2, 3]), ("y", np.float32, [2, 3])],
        [("o", np.float32, [2, 3])],
        initializers={"flag": np.array(not cond)},
    )


# ---- Scan -------------------------------------------------------------------------------------


def _scan_model(in_axis, in_dir, out_axis, out_dir, opset=17):
    """Running sum over x's ``in_axis`` (optionally reversed), stacked on ``out_axis``; the body
    also multiplies by an outer-scope input."""
    body = _graph(
        [
            h.make_node("Add", ["acc_in", "row"], ["acc_out"]),
            h.make_node("Mul", ["acc_out", "gain"], ["scanned"]),
        ],
        "body",
        [("acc_out", T.FLOAT, [3]), ("scanned", T.FLOAT, [3])],
        inputs=[("acc_in", T.FLOAT, [3]), ("row", T.FLOAT, [3])],
    )
    x_shape = [4, 3] if in_axis in (0, -2) else [3, 4]
    out_shape = [4, 3] if out_axis in (0, -2) else [3, 4]
    node = h.make_node(
        "Scan",
        ["acc0", "x"],
        ["acc", "ys"],
        body=body,
        num_scan_inputs=1,
        scan_input_axes=[in_axis],
        scan_input_directions=[in_dir],
        scan_output_axes=[out_axis],
        scan_output_directions=[out_dir],
    )
    return make_model(
        [node],
        [("acc0", np.float32, [3]), ("x", np.float32, x_shape), ("gain", np.float32, [3])],
        [("acc", np.float32, [3]), ("ys", np.float32, out_shape)],
        opset=opset,
    )


@pytest.mark.parametrize("in_axis,out_axis", [(0, 0), (1, 1), (-1, 0), (0, -1)])
@pytest.mark.parametrize("in_dir,out_dir", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_scan_axes_and_directions(in_axis, out_axis, in_dir, out_dir):
    res = check_conversion(_scan_model(in_axis, in_dir, out_axis, out_dir))
    assert res.ops["WHILE"] == 1


def test_scan_opset8_batch_one():
    body = _graph(
        [h.make_node("Add", ["s_in", "v"], ["s_out"]), h.make_node("Neg", ["s_out"], ["y"])],
        "body",
        [("s_out", T.FLOAT, [2]), ("y", T.FLOAT, [2])],
        inputs=[("s_in", T.FLOAT, [2]), ("v", T.FLOAT, [2])],
    )
    node = h.make_node(
        "Scan", ["", "s0", "x"], ["s", "ys"], body=body, num_scan_inputs=1, directions=[1]
    )
    model = make_model(
        [node],
        [("s0", np.float32, [1, 2]), ("x", np.float32, [1, 5, 2])],
        [("s", np.float32, [1, 2]), ("ys", np.float32, [1, 5, 2])],
        opset=8,
    )
    check_conversion(model)


def test_report_lists_subgraph_nodes_with_their_path():
    res = check_conversion(_scan_model(0, 0, 0, 0))
    rows = {r["name"]: r for r in res.report["nodes"]}
    nested = [r for r in rows.values() if r.get("subgraph")]
    assert {r["op_type"] for r in nested} == {"Add", "Mul"}
    assert all(r["name"].startswith(r["subgraph"] + "/") for r in nested)
    assert all(r["mode"] == "builtin" and r["tflite_ops"] for r in nested)
    assert res.report["tflite_ops"]["WHILE"]["count"] == 1
    assert res.report["tflite_ops"]["ADD"]["count"] >= 2  # body Add + step counter


# ---- sequences and optionals (resolved statically) --------------------------------------------


@pytest.mark.parametrize(
    "split,keepdims,new_axis",
    [(None, 1, 0), (None, 0, 1), (None, 1, 1), (2, 1, 1), ([1, 3], 1, 0), (3, 1, 0)],
)
def test_split_to_sequence_then_concat(split, keepdims, new_axis):
    inputs = ["x"] if split is None else ["x", "split"]
    inits = {} if split is None else {"split": np.array(split, np.int64)}
    nodes = [
        h.make_node("SplitToSequence", inputs, ["seq"], axis=1, keepdims=keepdims),
        h.make_node("ConcatFromSequence", ["seq"], ["y"], axis=-1, new_axis=new_axis),
    ]
    x_shape = [2, 4]
    model = make_model(
        nodes, [("x", np.float32, x_shape)], [("y", np.float32, None)], inits, check=False
    )
    res = check_conversion(model)
    assert all(not r["op_type"] or "Sequence" not in r["op_type"] for r in _lowered(res))


def _lowered(res):
    return [r for r in res.report["nodes"] if r["mode"] != "folded"]


@pytest.mark.parametrize("insert_at", [1, -1, 2, None])
def test_sequence_construct_insert_erase_at_length(insert_at):
    insert_inputs = ["s0", "c"] if insert_at is None else ["s0", "c", "where"]
    nodes = [
        h.make_node("SequenceConstruct", ["a", "b"], ["s0"]),
        h.make_node("SequenceInsert", insert_inputs, ["s1"]),
        h.make_node("SequenceErase", ["s1", "zero"], ["s2"]),
        h.make_node("SequenceAt", ["s2", "minus_one"], ["last"]),
        h.make_node("SequenceAt", ["s2", "zero"], ["first"]),
        h.make_node("SequenceLength", ["s2"], ["n"]),
        h.make_node("Cast", ["n"], ["nf"], to=T.FLOAT),
        h.make_node("Sub", ["last", "first"], ["d"]),
        h.make_node("Mul", ["d", "nf"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("a", np.float32, [3]), ("b", np.float32, [3]), ("c", np.float32, [3])],
        [("y", np.float32, [3])],
        {
            "zero": np.array(0, np.int64),
            "where": np.array(0 if insert_at is None else insert_at, np.int64),
            "minus_one": np.array(-1, np.int64),
        },
    )
    res = check_conversion(model)
    assert {r["op_type"] for r in _lowered(res)} <= {"Identity", "Sub", "Mul"}


def test_sequence_at_runtime_position_is_refused():
    nodes = [
        h.make_node("SequenceConstruct", ["a", "b"], ["s"]),
        h.make_node("SequenceAt", ["s", "pos"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("a", np.float32, [3]), ("b", np.float32, [3]), ("pos", np.int64, [])],
        [("y", np.float32, [3])],
    )
    expect_refusal(model, "unsupported_dtype")


def test_sequence_graph_output_is_refused():
    nodes = [h.make_node("SequenceConstruct", ["a"], ["s"])]
    model = make_model(nodes, [("a", np.float32, [3])], [], check=False)
    model.graph.output.append(
        h.make_value_info("s", h.make_sequence_type_proto(h.make_tensor_type_proto(T.FLOAT, [3])))
    )
    expect_refusal(model, "unsupported_dtype")


@pytest.mark.parametrize("has_value", [True, False])
def test_optional_has_and_get_element(has_value):
    opt = h.make_node("Optional", ["a"] if has_value else [], ["o"])
    if not has_value:
        opt = h.make_node("Optional", [], ["o"], type=h.make_tensor_type_proto(T.FLOAT, [3]))
    nodes = [
        opt,
        h.make_node("OptionalHasElement", ["o"], ["has"]),
        h.make_node("Cast", ["has"], ["hasf"], to=T.FLOAT),
        h.make_node("Mul", ["a", "hasf"], ["y"]),
    ]
    outputs = [("y", np.float32, [3])]
    if has_value:
        nodes.append(h.make_node("OptionalGetElement", ["o"], ["got"]))
        nodes.append(h.make_node("Neg", ["got"], ["z"]))
        outputs.append(("z", np.float32, [3]))
    model = make_model(nodes, [("a", np.float32, [3])], outputs, opset=18)
    check_conversion(model)


def _window_loop_model():
    """Loop over x[i:i+2] windows with an If in the body reading a value two scopes out (w)."""
    then_g = _graph([h.make_node("Mul", ["win", "w"], ["t"])], "then", [("t", T.FLOAT, [2, 3])])
    else_g = _graph([h.make_node("Sub", ["win", "w"], ["e"])], "else", [("e", T.FLOAT, [2, 3])])
    body = _graph(
        [
            h.make_node("Add", ["i", "two"], ["end"]),
            h.make_node("Unsqueeze", ["i", "ax0"], ["start1"]),
            h.make_node("Unsqueeze", ["end", "ax0"], ["end1"]),
            h.make_node("Slice", ["x", "start1", "end1"], ["win"]),
            h.make_node("Mod", ["i", "two"], ["parity"]),
            h.make_node("Equal", ["parity", "zero"], ["even"]),
            h.make_node("If", ["even"], ["term"], then_branch=then_g, else_branch=else_g),
            h.make_node("Add", ["acc_in", "term"], ["acc_out"]),
            h.make_node("Identity", ["c"], ["c_out"]),
        ],
        "body",
        [("c_out", T.BOOL, []), ("acc_out", T.FLOAT, [2, 3])],
        inputs=[("i", T.INT64, []), ("c", T.BOOL, []), ("acc_in", T.FLOAT, [2, 3])],
    )
    loop = h.make_node("Loop", ["m", "", "acc0"], ["acc"], body=body)
    return make_model(
        [loop],
        [
            ("x", np.float32, [5, 3]),
            ("w", np.float32, [2, 3]),
            ("acc0", np.float32, [2, 3]),
            ("m", np.int64, []),
        ],
        [("acc", np.float32, [2, 3])],
        initializers={
            "two": np.array(2, np.int64),
            "zero": np.array(0, np.int64),
            "ax0": np.array([0], np.int64),
        },
    )


def test_loop_window_slice_and_if_inside_body():
    """x[i:i+2] windows (run-time start: the front end proves the window length), and an If
    in the body reading a value two scopes out (w)."""
    model = _window_loop_model()
    for trips in (4, 3):
        feeds = {"x": _w(5, 3), "w": _w(2, 3), "acc0": _w(2, 3), "m": np.array(trips, np.int64)}
        res = check_conversion(model, feeds=feeds)
    assert res.ops["WHILE"] == 1 and res.ops["IF"] == 1


@settings(max_examples=6, deadline=None)
@given(
    steps=st.integers(1, 5),
    width=st.integers(1, 4),
    in_dir=st.integers(0, 1),
    out_dir=st.integers(0, 1),
    axis=st.integers(0, 1),
)
def test_scan_shapes_property(steps, width, in_dir, out_dir, axis):
    """Running product over a scan of any length/width, along either axis, either direction."""
    body = _graph(
        [h.make_node("Mul", ["p_in", "v"], ["p_out"]), h.make_node("Neg", ["p_out"], ["y"])],
        "body",
        [("p_out", T.FLOAT, [width]), ("y", T.FLOAT, [width])],
        inputs=[("p_in", T.FLOAT, [width]), ("v", T.FLOAT, [width])],
    )
    x_shape = [steps, width] if axis == 0 else [width, steps]
    node = h.make_node(
        "Scan",
        ["p0", "x"],
        ["p", "ys"],
        body=body,
        num_scan_inputs=1,
        scan_input_axes=[axis],
        scan_input_directions=[in_dir],
        scan_output_axes=[axis],
        scan_output_directions=[out_dir],
    )
    model = make_model(
        [node],
        [("p0", np.float32, [width]), ("x", np.float32, x_shape)],
        [("p", np.float32, [width]), ("ys", np.float32, x_shape)],
    )
    check_conversion(model)


def test_outer_value_merged_by_rewrites_still_reaches_the_branch():
    """Common-subexpression merging renames a value a branch reads from the outer scope; the
    If's implicit input follows the rename while the branch keeps its own name for it."""
    then_g = _graph([h.make_node("Add", ["n2", "y"], ["t"])], "then", [("t", T.FLOAT, [2, 3])])
    else_g = _graph([h.make_node("Sub", ["n2", "y"], ["e"])], "else", [("e", T.FLOAT, [2, 3])])
    nodes = [
        h.make_node("Neg", ["x"], ["n1"]),
        h.make_node("Neg", ["x"], ["n2"]),
        h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g),
        h.make_node("Mul", ["o", "n1"], ["z"]),
    ]
    model = make_model(
        nodes,
        [("c", np.bool_, []), ("x", np.float32, [2, 3]), ("y", np.float32, [2, 3])],
        [("z", np.float32, [2, 3])],
    )
    for cond in (True, False):
        res = check_conversion(model, feeds={"c": np.array(cond), "x": _w(2, 3), "y": _w(2, 3)})
    assert res.ops["NEG"] == 1


@pytest.mark.parametrize("scale", [0.5, 3.0, 40.0])
def test_while_loop_condition_only(scale):
    """Loop without a trip count: runs while the body's condition holds (a do-while on the
    initial condition computed outside)."""
    body = _graph(
        [
            h.make_node("Mul", ["v_in", "two"], ["v_out"]),
            h.make_node("ReduceSum", ["v_out"], ["total"], keepdims=0),
            h.make_node("Less", ["total", "limit"], ["c_out"]),
        ],
        "body",
        [("c_out", T.BOOL, []), ("v_out", T.FLOAT, [3])],
        inputs=[("i", T.INT64, []), ("c", T.BOOL, []), ("v_in", T.FLOAT, [3])],
    )
    nodes = [
        h.make_node("ReduceSum", ["v0"], ["t0"], keepdims=0),
        h.make_node("Less", ["t0", "limit"], ["go"]),
        h.make_node("Loop", ["", "go", "v0"], ["v"], body=body),
    ]
    model = make_model(
        nodes,
        [("v0", np.float32, [3])],
        [("v", np.float32, [3])],
        initializers={"two": np.array(2, np.float32), "limit": np.array(100, np.float32)},
    )
    check_conversion(model, feeds={"v0": np.array([1, 2, 3], np.float32) * scale})


@pytest.mark.parametrize("cond", [True, False])
def test_if_between_channel_last_convs(cond):
    """Outer values stored channel-last are handed to the branches in ONNX order, and the If
    output feeds a conv again."""
    then_g = _graph([h.make_node("Relu", ["f"], ["t"])], "then", [("t", T.FLOAT, [1, 4, 5, 5])])
    else_g = _graph(
        [h.make_node("MaxPool", ["f"], ["e"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        "else",
        [("e", T.FLOAT, [1, 4, 5, 5])],
    )
    nodes = [
        h.make_node("Conv", ["x", "w1"], ["f"], pads=[1, 1, 1, 1]),
        h.make_node("If", ["c"], ["g"], then_branch=then_g, else_branch=else_g),
        h.make_node("Conv", ["g", "w2"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("c", np.bool_, []), ("x", np.float32, [1, 3, 5, 5])],
        [("y", np.float32, [1, 2, 5, 5])],
        initializers={"w1": _w(4, 3, 3, 3), "w2": _w(2, 4, 1, 1)},
    )
    check_conversion(model, feeds={"c": np.array(cond), "x": _w(1, 3, 5, 5)})


def test_refusal_inside_a_branch_names_the_branch():
    then_g = _graph(
        [h.make_node("Mystery", ["x"], ["t"], domain="com.example")],
        "then",
        [("t", T.FLOAT, [2, 3])],
    )
    else_g = _graph([h.make_node("Neg", ["x"], ["e"])], "else", [("e", T.FLOAT, [2, 3])])
    node = h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g)
    model = make_model(
        [node],
        [("c", np.bool_, []), ("x", np.float32, [2, 3])],
        [("o", np.float32, [2, 3])],
        opset={"": 17, "com.example": 1},
        check=False,
    )
    err = expect_refusal(model, "custom_op_candidate_disabled")
    assert "then_branch" in err.message


def _two_refusals(tag: str):
    """Body nodes: two ops without a lowering, each feeding a node that is then not judged."""
    return [
        h.make_node("Mystery", ["x"], ["a"], domain="com.example", name=f"{tag}_first"),
        h.make_node("Neg", ["a"], ["b"], name=f"{tag}_after_first"),
        h.make_node("Riddle", ["x"], ["r"], domain="com.example", name=f"{tag}_second"),
        h.make_node("Add", ["b", "r"], [f"{tag}_out"], name=f"{tag}_join"),
    ]


def _if_with_two_refusals():
    then_g = _graph(_two_refusals("t"), "then", [("t_out", T.FLOAT, [2, 3])])
    else_g = _graph([h.make_node("Neg", ["x"], ["e"])], "else", [("e", T.FLOAT, [2, 3])])
    node = h.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g, name="pick")
    return make_model(
        [node],
        [("c", np.bool_, []), ("x", np.float32, [2, 3])],
        [("o", np.float32, [2, 3])],
        opset={"": 17, "com.example": 1},
        check=False,
    ), "pick/then_branch"


def _loop_with_two_refusals():
    nodes = _two_refusals("l")
    nodes += [
        h.make_node("Add", ["v_in", "l_out"], ["v_out"]),
        h.make_node("Identity", ["c"], ["c_out"]),
    ]
    body = _graph(
        nodes,
        "body",
        [("c_out", T.BOOL, []), ("v_out", T.FLOAT, [2, 3])],
        inputs=[("i", T.INT64, []), ("c", T.BOOL, []), ("v_in", T.FLOAT, [2, 3])],
    )
    loop = h.make_node("Loop", ["m", "", "v0"], ["v"], body=body, name="repeat")
    return make_model(
        [loop],
        [("x", np.float32, [2, 3]), ("v0", np.float32, [2, 3])],
        [("v", np.float32, [2, 3])],
        initializers={"m": np.array(3, np.int64)},
        opset={"": 17, "com.example": 1},
        check=False,
    ), "repeat/body"


@pytest.mark.parametrize("build", [_if_with_two_refusals, _loop_with_two_refusals], ids=str)
def test_refusals_in_a_body_aggregate_like_top_level_ones(build, tmp_path):
    """A body is planned like the main graph: every refused node is known at once, the error
    names the others, and each gets a report row named by its path (its consumers: blocked)."""
    model, path = build()
    tag = "t" if path.startswith("pick") else "l"
    with pytest.raises(ConversionError) as info:
        convert(model, tmp_path, report_op_coverage=True)
    err = info.value
    assert err.reason_code == "custom_op_candidate_disabled"
    assert err.message.startswith(f"{path}: ") and "Mystery" in err.message
    assert f"(and 1 more refused node: '{tag}_second' (custom_op_candidate_disabled))" in (
        err.message
    )
    (report_file,) = tmp_path.glob("*_op_coverage_report.json")
    rows = {r["name"]: r for r in json.loads(report_file.read_text())["nodes"]}
    for name, mode in (("first", "unsupported"), ("second", "unsupported"), ("join", "blocked")):
        row = rows[f"{path}/{tag}_{name}"]
        assert row["mode"] == mode and row["subgraph"] == path, row
    assert rows[f"{path}/{tag}_second"]["op_type"] == "Riddle"
    assert rows[path.split("/")[0]]["mode"] == "unsupported"  # the If/Loop itself


def test_top_level_refusals_name_the_other_nodes():
    nodes = _two_refusals("g")
    model = make_model(
        nodes,
        [("x", np.float32, [2, 3])],
        [("g_out", np.float32, [2, 3])],
        opset={"": 17, "com.example": 1},
        check=False,
    )
    err = expect_refusal(model, "custom_op_candidate_disabled")
    assert "(and 1 more refused node: 'g_second' (custom_op_candidate_disabled))" in err.message


@pytest.mark.parametrize("cond_out", ["identity", "constant"])
def test_exporter_style_for_loop_has_a_static_scan_length(cond_out):
    """Constant trip count with a constant-true condition the body keeps true: the scan output
    length is known even though ONNX inference leaves it open (no trimming needed)."""
    res = check_conversion(_exporter_loop_model(cond_out))
    assert res.ops["SLICE"] == 0  # the buffer is the output: no run-time trimming
    assert res.validation.actual["ys"].shape == (4, 3)
    assert _rules(res)["pin_loop_scan_lengths"] == 1


def _exporter_loop_model(cond_out):
    keep = (
        h.make_node("Identity", ["c"], ["c_out"])
        if cond_out == "identity"
        else h.make_node(
            "Constant", [], ["c_out"], value=onnx.numpy_helper.from_array(np.array(True))
        )
    )
    body = _graph(
        [keep, h.make_node("Add", ["v_in", "x"], ["v_out"]), h.make_node("Neg", ["v_out"], ["s"])],
        "body",
        [("c_out", T.BOOL, []), ("v_out", T.FLOAT, [3]), ("s", T.FLOAT, [3])],
        inputs=[("i", T.INT64, []), ("c", T.BOOL, []), ("v_in", T.FLOAT, [3])],
    )
    return make_model(
        [h.make_node("Loop", ["m", "go", "v0"], ["v", "ys"], body=body)],
        [("v0", np.float32, [3]), ("x", np.float32, [3])],
        [("v", np.float32, [3]), ("ys", np.float32, [None, 3])],
        initializers={"m": np.array(4, np.int64), "go": np.array(True)},
    )


def _rules(res) -> dict[str, int]:
    return {r["rule"]: r["matched"] for r in res.report["rewrites"]}


# ---- front-end rules: named, reported, switchable ---------------------------------------------


@pytest.mark.parametrize("cond", [True, False])
def test_constant_if_inlining_is_reported_and_can_be_disabled(cond):
    """The If is reported under its own rule (not constant folding); switched off, the If
    becomes a TFLite IF on a constant condition, with the same numbers."""
    model = _constant_if_model(cond)
    inlined = check_conversion(model)
    assert _rules(inlined)["inline_constant_ifs"] == 1
    assert "If_c" not in next(
        r["nodes"] for r in inlined.report["rewrites"] if r["rule"] == "constant_folding"
    )
    kept = check_conversion(model, disable_rewrites=("inline_constant_ifs",))
    assert kept.ops["IF"] == 1 and "inline_constant_ifs" not in _rules(kept)


def test_window_slice_hints_can_be_disabled():
    """Without the proof of the x[i:i+2] window length, the body has a dynamic shape."""
    err = expect_refusal(
        _window_loop_model(), "dynamic_shape_unsupported", disable_rewrites=("window_slice_hints",)
    )
    assert "'win'" in err.message


def test_loop_scan_length_pinning_can_be_disabled():
    err = expect_refusal(
        _exporter_loop_model("identity"),
        "dynamic_shape_unsupported",
        disable_rewrites=("pin_loop_scan_lengths",),
    )
    assert "'ys'" in err.message


@pytest.mark.parametrize("fuse", [True, False])
def test_onnx_fusions_apply_inside_branches(fuse):
    """The erf GELU pattern inside a branch becomes one GELU op, as in the main graph."""
    half, one, root2 = (
        h.make_node(
            "Constant", [], [n], value=onnx.numpy_helper.from_array(np.array(v, np.float32))
        )
        for n, v in (("half", 0.5), ("one", 1.0), ("root2", np.sqrt(2.0)))
    )
    gelu = [
        half,
        one,
        root2,
        h.make_node("Div", ["x", "root2"], ["xs"]),
        h.make_node("Erf", ["xs"], ["er"]),
        h.make_node("Add", ["er", "one"], ["e1"]),
        h.make_node("Mul", ["x", "e1"], ["xe"]),
        h.make_node("Mul", ["xe", "half"], ["t"]),
    ]
    model = _if_model(gelu, [h.make_node("Sub", ["x", "y"], ["e"])])
    feeds = {"c": np.array(True), "x": _w(2, 3), "y": _w(2, 3)}
    res = check_conversion(model, feeds=feeds, fuse=fuse)
    assert (res.ops["GELU"] == 1) == fuse
