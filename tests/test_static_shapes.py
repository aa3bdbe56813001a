"""Run-time shape targets of a dynamic-shape model become prepare-time shapes
(onnx2tflite_direct/static_shapes.py): torch.onnx's repeat_kv pattern (Shape -> Gather ->
Concat -> Expand / Reshape over a tensor with a dynamic past axis) converts to RESHAPEs with
constant targets and a MUL by ones, the shape arithmetic dropped, and still matches
onnxruntime at every past length."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter
from harness import convert, make_model
from onnx import helper

from onnx2tflite_direct import tfl
from onnx2tflite_direct.static_shapes import keep_static


def _repeat_kv_model(dtype=np.float32):
    """x [1, 2, past, 8] -> the heads repeated twice [1, 4, past, 8] (Expand of an Unsqueeze,
    then Reshape), every target computed from Shape(x) as torch.onnx writes it, plus a
    Where(Equal(target, -1), 1, target) guard on the Expand target."""
    nodes = [helper.make_node("Shape", ["x"], ["s"])]
    for i in range(4):
        nodes += [
            helper.make_node("Gather", ["s", f"i{i}"], [f"d{i}"], axis=0),
            helper.make_node("Unsqueeze", [f"d{i}", "ax0"], [f"u{i}"]),
        ]
    nodes += [
        helper.make_node("Unsqueeze", ["x", "ax2"], ["x5"]),
        helper.make_node("Concat", ["u0", "u1", "two", "u2", "u3"], ["t5"], axis=0),
        helper.make_node("Equal", ["t5", "minus1"], ["eq"]),
        helper.make_node("Where", ["eq", "ones5", "t5"], ["t5g"]),
        helper.make_node("Expand", ["x5", "t5g"], ["e"]),
        helper.make_node("Mul", ["u1", "two"], ["heads"]),
        helper.make_node("Concat", ["u0", "heads", "u2", "u3"], ["t4"], axis=0),
        helper.make_node("Reshape", ["e", "t4"], ["r"]),
        helper.make_node("Mul", ["r", "scale"], ["y"]),
    ]
    inits = {f"i{i}": np.array(i, np.int64) for i in range(4)}
    inits.update(
        ax0=np.array([0], np.int64),
        ax2=np.array([2], np.int64),
        two=np.array([2], np.int64),
        minus1=np.array([-1], np.int64),
        ones5=np.ones(5, np.int64),
        scale=np.arange(1, 5, dtype=dtype).reshape(1, 4, 1, 1),
    )
    return make_model(
        nodes,
        inputs=[("x", dtype, (1, 2, "past", 8))],
        outputs=[("y", dtype, (1, 4, "past", 8))],
        initializers=inits,
    )


def test_repeat_kv_targets_are_static_and_match_onnxruntime():
    model = _repeat_kv_model()
    res = convert(model)
    interp = Interpreter(model_content=bytes(res.tflite_bytes))
    runner = interp.get_signature_runner("serving_default")
    ops = {o["op_name"] for o in interp._get_ops_details()}
    # no shape arithmetic left, and nothing whose output shape waits for run-time values
    assert not ops & {"SHAPE", "GATHER", "CONCATENATION", "BROADCAST_TO", "SELECT_V2"}, ops
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(23)
    for past in (1, 5, 129, 64):
        x = rng.standard_normal((1, 2, past, 8)).astype(np.float32)
        x[0, 0, 0, :3] = (-0.0, np.inf, np.nan)
        got = runner(x=x)["y"]
        want = sess.run(None, {"x": x})[0]
        assert got.shape == (1, 4, past, 8)
        np.testing.assert_array_equal(got, want)  # copies and a multiply by 1..4: exact


def test_bool_mask_expand_is_static_and_exact():
    """A bool mask [1, past] expanded to [3, past] by a target read from its own Shape: a
    LOGICAL_AND with true, the same mask at every past length."""
    nodes = [
        helper.make_node("Shape", ["m"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["d1"], axis=0),
        helper.make_node("Unsqueeze", ["d1", "ax0"], ["u1"]),
        helper.make_node("Concat", ["three", "u1"], ["t"], axis=0),
        helper.make_node("Expand", ["m", "t"], ["y"]),
    ]
    model = make_model(
        nodes,
        inputs=[("m", np.bool_, (1, "past"))],
        outputs=[("y", np.bool_, (3, "past"))],
        initializers={
            "one": np.array(1, np.int64),
            "ax0": np.array([0], np.int64),
            "three": np.array([3], np.int64),
        },
    )
    res = convert(model)
    interp = Interpreter(model_content=bytes(res.tflite_bytes))
    runner = interp.get_signature_runner("serving_default")
    ops = {o["op_name"] for o in interp._get_ops_details()}
    assert "BROADCAST_TO" not in ops and "SHAPE" not in ops, ops
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(24)
    for past in (1, 6, 130):
        m = rng.random((1, past)) < 0.5
        np.testing.assert_array_equal(runner(m=m)["y"], sess.run(None, {"m": m})[0])


def _reshape_graph(cap: str | None):
    """x [1, n, 8] -> y [1, n*2, 4] through RESHAPE with the target [1, 2*n, 4] computed from
    SHAPE(x); with ``cap`` the dim goes through that operator with 40 first (a threshold)."""
    x = tfl.Tensor("x", np.float32, (1, 1, 8), shape_signature=(1, -1, 8))
    dims = tfl.Tensor("dims", np.int32, (3,))
    n = tfl.Tensor("n", np.int32, (1,))
    two_n = tfl.Tensor("two_n", np.int32, (1,))
    one = tfl.Tensor("one", np.int32, (1,), data=np.array([1], np.int32))
    four = tfl.Tensor("four", np.int32, (1,), data=np.array([4], np.int32))
    target = tfl.Tensor("target", np.int32, (3,))
    y = tfl.Tensor("y", np.float32, (1, 2, 4), shape_signature=(1, -1, 4))
    ops = [
        tfl.Operator("SHAPE", [x], [dims]),
        tfl.Operator(
            "GATHER", [dims, tfl.Tensor("i", np.int32, (1,), data=np.array([1], np.int32))], [n]
        ),
        tfl.Operator(
            "MUL", [n, tfl.Tensor("k", np.int32, (1,), data=np.array([2], np.int32))], [two_n]
        ),
    ]
    if cap:
        capped = tfl.Tensor("capped", np.int32, (1,))
        ops.append(
            tfl.Operator(
                cap,
                [two_n, tfl.Tensor("c", np.int32, (1,), data=np.array([40], np.int32))],
                [capped],
            )
        )
        two_n = capped
    ops += [
        tfl.Operator("CONCATENATION", [one, two_n, four], [target], {"axis": 0}),
        tfl.Operator("RESHAPE", [x, target], [y]),
    ]
    return tfl.Subgraph("main", ops, [x], [y], ["x"], ["y"])


def test_only_dim_preserving_targets_are_trusted():
    """A target computed by moving and scaling SHAPE entries becomes the signature; one that
    passes through a threshold (MINIMUM) may be the same at both samples and not at every
    size, so its RESHAPE keeps the run-time target."""
    sub = _reshape_graph(None)
    assert keep_static(sub) == 1
    assert [op.opcode for op in sub.operators] == ["RESHAPE"]
    assert sub.operators[0].inputs[1].data.tolist() == [1, -1, 4]
    capped = _reshape_graph("MINIMUM")
    assert keep_static(capped) == 0
    assert capped.operators[-1].inputs[1].name == "target"
