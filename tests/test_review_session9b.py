"""Review of session 9 (needless refusals): valid models the new checks must not refuse.

A recurrent op's graph inputs whose batch dims carry different names (an exporter names X's
batch ``batch`` and leaves the initial states' unnamed, or names them otherwise) are one size:
ONNX and onnxruntime require them equal. Sampled apart (64 and 96), every sample plan was
rejected by the operand check of 6e1c39a (dynamic_shape_unsupported; before it an internal
error from inside the lowering). They are one symbol now: each model converts with its
batch (and sequence) dynamic and matches onnxruntime at several run-time sizes.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import convert
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import validate as V

RNG = np.random.default_rng(909)
HIDDEN, FEATURES = 3, 4


def recurrent(op, x_dims, state_dims, lens_dims=None, direction="forward"):
    """``op`` over graph inputs x, h (and c for LSTM, sl for sequence_lens) with the given
    declared dims; outputs Y and Y_h."""
    dirs = 2 if direction == "bidirectional" else 1
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    inits = {
        "w": (RNG.standard_normal((dirs, gates * HIDDEN, FEATURES)) * 0.4).astype(np.float32),
        "r": (RNG.standard_normal((dirs, gates * HIDDEN, HIDDEN)) * 0.4).astype(np.float32),
        "b": (RNG.standard_normal((dirs, 2 * gates * HIDDEN)) * 0.3).astype(np.float32),
    }
    inputs = [("x", TensorProto.FLOAT, x_dims), ("h", TensorProto.FLOAT, state_dims)]
    operands = ["x", "w", "r", "b", "", "h"]
    if lens_dims is not None:
        operands[4] = "sl"
        inputs.append(("sl", TensorProto.INT32, lens_dims))
    if op == "LSTM":
        operands.append("c")
        inputs.append(("c", TensorProto.FLOAT, state_dims))
    node = helper.make_node(op, operands, ["y", "yh"], hidden_size=HIDDEN, direction=direction)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "yh")],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


CASES = {
    "lstm_states_unnamed": ("LSTM", [5, None, FEATURES], [1, None, HIDDEN], None, "forward"),
    "lstm_named_apart": ("LSTM", ["seq", "batch", FEATURES], [1, "b2", HIDDEN], None, "forward"),
    "gru_named_apart": ("GRU", [6, "n", FEATURES], [2, "m", HIDDEN], None, "bidirectional"),
    "rnn_named_apart": ("RNN", ["s", "n", FEATURES], [1, "m", HIDDEN], None, "forward"),
    "lstm_lens_named_apart": ("LSTM", [5, "n", FEATURES], [1, "n", HIDDEN], ["k"], "forward"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_recurrent_batch_dims_named_apart_convert_and_match(case):
    op, x_dims, state_dims, lens_dims, direction = CASES[case]
    model = recurrent(op, x_dims, state_dims, lens_dims, direction)
    res = convert(model, keep_io_layout=True)
    sess = ort.InferenceSession(model.SerializeToString())
    dirs = 2 if direction == "bidirectional" else 1
    for batch, seq in ((1, 5), (2, 3), (5, 7)):
        seq = x_dims[0] if isinstance(x_dims[0], int) else seq
        feeds = {
            "x": RNG.standard_normal((seq, batch, FEATURES)).astype(np.float32),
            "h": RNG.standard_normal((dirs, batch, HIDDEN)).astype(np.float32),
        }
        if op == "LSTM":
            feeds["c"] = RNG.standard_normal((dirs, batch, HIDDEN)).astype(np.float32)
        if lens_dims is not None:
            feeds["sl"] = RNG.integers(1, seq + 1, size=batch).astype(np.int32)
        expected = dict(zip(("y", "yh"), sess.run(None, feeds), strict=True))
        actual = V.run_litert(res.tflite_bytes, feeds, res.report["io"])
        for name, want in expected.items():
            assert np.std(want) > 1e-2, (case, name)
            assert actual[name].shape == want.shape, (case, batch, name, actual[name].shape)
            # float32 recurrences of a few steps: a few ulps of values below 1
            np.testing.assert_allclose(actual[name], want, rtol=0, atol=2e-5, err_msg=case)


# --- auto_pad SAME_* windows when only the batch is dynamic ---------------------------------
# 3bbc3b2 refuses a strided SAME_LOWER window (and SAME_* where the lowering pads explicitly:
# count_include_pad, QLinearConv SAME_LOWER) whenever any input size varies, because its pads
# follow the spatial size modulo the stride. With a dynamic batch only, the spatial sizes are
# fixed and so are the pads: these converted at c7d57e4 and must still (exact vs onnxruntime).

CH, HEIGHT, WIDTH = 3, 17, 18


def _window(kind, auto_pad):
    w = (RNG.standard_normal((4, CH, 3, 3)) * 0.4).astype(np.float32)
    inits = {}
    if kind == "conv":
        nodes = [helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], auto_pad=auto_pad)]
        inits["w"] = w
    elif kind == "avgpool_count_pad":
        nodes = [
            helper.make_node(
                "AveragePool",
                ["x"],
                ["y"],
                kernel_shape=[3, 3],
                strides=[2, 2],
                auto_pad=auto_pad,
                count_include_pad=1,
            )
        ]
    elif kind == "maxpool":
        nodes = [
            helper.make_node(
                "MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], auto_pad=auto_pad
            )
        ]
    else:  # qlinearconv
        inits.update(
            xs=np.float32(0.05),
            xz=np.uint8(128),
            wq=RNG.integers(-60, 60, (4, CH, 3, 3)).astype(np.int8),
            ws=np.float32(0.01),
            wz=np.int8(0),
            ys=np.float32(0.05),
            yz=np.uint8(128),
        )
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
            helper.make_node(
                "QLinearConv",
                ["xq", "xs", "xz", "wq", "ws", "wz", "ys", "yz"],
                ["yq"],
                strides=[2, 2],
                auto_pad=auto_pad,
            ),
            helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
        ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", CH, HEIGHT, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "kind,auto_pad",
    [
        ("conv", "SAME_LOWER"),
        ("avgpool_count_pad", "SAME_LOWER"),
        ("avgpool_count_pad", "SAME_UPPER"),
        ("maxpool", "SAME_LOWER"),
        ("qlinearconv", "SAME_LOWER"),
    ],
)
def test_same_pads_with_only_the_batch_dynamic_convert_and_match(kind, auto_pad):
    model = _window(kind, auto_pad)
    res = convert(model, keep_io_layout=True)
    sess = ort.InferenceSession(model.SerializeToString())
    for batch in (1, 2, 3):
        x = RNG.uniform(-3, 3, (batch, CH, HEIGHT, WIDTH)).astype(np.float32)
        (want,) = sess.run(None, {"x": x})
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"])["y"]
        assert np.std(want) > 1e-2
        assert got.shape == want.shape, (kind, batch, got.shape, want.shape)
        if kind == "qlinearconv":  # integer codes: exact
            np.testing.assert_array_equal(got, want)
        else:  # float32 sums of 27 products / 9 cells: a few ulps of values below 30
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * max(1, np.abs(want).max()))


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_ceil_mode_pool_with_only_the_batch_dynamic_converts_and_matches(op):
    """k=2, s=3, ceil_mode on 16x16 (last window starts inside the input at this size):
    3bbc3b2 refused it whenever any dim was dynamic (onnxruntime drops that window at other
    sizes); with only the batch dynamic the size is 16 at run time too."""
    node = helper.make_node(op, ["x"], ["y"], kernel_shape=[2, 2], strides=[3, 3], ceil_mode=1)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", CH, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    res = convert(model, keep_io_layout=True)
    sess = ort.InferenceSession(model.SerializeToString())
    for batch in (1, 2, 3):
        x = RNG.uniform(-3, 3, (batch, CH, 16, 16)).astype(np.float32)
        (want,) = sess.run(None, {"x": x})
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"])["y"]
        assert np.std(want) > 1e-2
        assert got.shape == want.shape == (batch, CH, 6, 6), (got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * max(1, np.abs(want).max()))


def test_batch_first_lstm_with_unnamed_state_batch_converts_and_matches():
    """torch's batch_first export: inp [batch, seq, F] -> Transpose -> LSTM X, the states
    graph inputs with an unnamed batch: X's batch is inp's axis 0 through the Transpose."""
    inits = {
        "w": (RNG.standard_normal((1, 4 * HIDDEN, FEATURES)) * 0.4).astype(np.float32),
        "r": (RNG.standard_normal((1, 4 * HIDDEN, HIDDEN)) * 0.4).astype(np.float32),
    }
    nodes = [
        helper.make_node("Transpose", ["inp"], ["x"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["x", "w", "r", "", "", "h", "c"], ["y", "yh"], hidden_size=3),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("inp", TensorProto.FLOAT, ["batch", "seq", FEATURES]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, None, HIDDEN]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, None, HIDDEN]),
        ],
        [helper.make_tensor_value_info("yh", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    res = convert(model, keep_io_layout=True)
    sess = ort.InferenceSession(model.SerializeToString())
    for batch, seq in ((1, 5), (2, 3), (5, 7)):
        feeds = {
            "inp": RNG.standard_normal((batch, seq, FEATURES)).astype(np.float32),
            "h": RNG.standard_normal((1, batch, HIDDEN)).astype(np.float32),
            "c": RNG.standard_normal((1, batch, HIDDEN)).astype(np.float32),
        }
        (want,) = sess.run(None, feeds)
        got = V.run_litert(res.tflite_bytes, feeds, res.report["io"])["yh"]
        assert np.std(want) > 1e-2
        assert got.shape == want.shape, (batch, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
