"""Dynamic shapes: a strided window whose output size the samples leave equal.

Two samples within one step of a strided conv's or pool's stride (silero VAD's encoder at 512
and 576 samples, a classifier's stem and pool at 64 and 96 pixels) give the same output size
although the input size differs: kept as is, that size would be fixed in the file, which then
fails in LiteRT or gives wrong values at run-time sizes that change it. The sample plans widen
the step of that symbol until the size differs (it is then dynamic, computed by LiteRT at run
time); when the model itself rejects the sizes that change it (a Squeeze of a unit frame
axis), the size stays fixed with a warning; when no wider step works, the conversion is
refused naming the window and the dims. Each converted file is run in LiteRT at several
sizes, including sizes no multiple of the strides, and compared with onnxruntime.

Also here: input shapes pinned apart for a recurrent op (an LSTM whose initial state has
another batch than its sequence) are a typed bad-input error naming the inputs, not an
internal error from inside the LSTM lowering.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import check_at_sizes, expect_refusal, make_model
from onnx import TensorProto, helper

from onnx2tflite_direct import ConversionError, convert
from onnx2tflite_direct import dynamic_sample_plans as plans
from onnx2tflite_direct import validate as V

RNG = np.random.default_rng(2026)


def _model(nodes, inputs, outputs, inits, opset=17):
    return make_model(nodes, inputs, outputs, inits, opset=opset, check=False)


def _run_at_sizes(res, model, shapes, name="x"):
    check_at_sizes(res, model, shapes, name, seed=2026)


def _signature(res, name):
    return next(r["shape_signature"] for r in res.report["io"] if r["name"] == name)


def _samples(res):
    return {s["name"]: s["samples"] for s in res.report["dynamic_shapes"]["symbols"]}


def _window_warnings(res):
    return [w for w in res.report["warnings"] if "along its" in w]


def framing(stride, squeeze=False):
    """[1, 1, length] -> Conv(k=1, s=stride) frames -> Tanh ([1, 3, frames]); with
    ``squeeze`` the frame axis is squeezed (torch's ``h.squeeze(-1)``: one frame only)."""
    w = (RNG.standard_normal((3, 1, 1)) * 0.5 + 1.0).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["f"], strides=[stride]),
        helper.make_node("Tanh", ["f"], ["t" if squeeze else "y"]),
    ]
    inits = {"w": w}
    if squeeze:
        inits["axes"] = np.array([2], np.int64)
        nodes.append(helper.make_node("Squeeze", ["t", "axes"], ["y"]))
    out = [1, 3] if squeeze else [1, 3, None]
    return _model(
        nodes, [("x", TensorProto.FLOAT, [1, 1, "length"])], [("y", TensorProto.FLOAT, out)], inits
    )


def test_frame_count_equal_at_the_declared_samples_is_made_dynamic():
    """Stride 128: 64 and 96 samples both give one frame. Widened to a step of a whole
    stride, the frame count is dynamic: exact at 1 to 9 frames, lengths no multiple of it."""
    model = framing(128)
    res = convert(model, keep_io_layout=True)
    assert _signature(res, "y") == [1, 3, -1]
    lo, hi = _samples(res)["length"]
    assert (hi - 1) // 128 != (lo - 1) // 128  # the samples now give different frame counts
    assert not _window_warnings(res)
    _run_at_sizes(res, model, [(1, 1, 64), (1, 1, 100), (1, 1, 129), (1, 1, 256), (1, 1, 1000)])


def test_frame_count_equal_at_every_retried_pair_is_made_dynamic():
    """Stride 4096: every retry pair (512/576, 2048/2112, 64/80) is within one stride."""
    model = framing(4096)
    res = convert(model, keep_io_layout=True)
    assert _signature(res, "y") == [1, 3, -1]
    _run_at_sizes(res, model, [(1, 1, 100), (1, 1, 4096), (1, 1, 4097), (1, 1, 9000)])


def stem_and_pool():
    """[n, 3, H, W] -> Conv 3x3 stride 32 (pads 1) -> Relu -> MaxPool 2x2 stride 2 -> Conv 1x1:
    at 64 and 96 the stem gives 2 and 3 rows, the pool 1 row at both (PP-OCR's classifier)."""
    w1 = (RNG.standard_normal((4, 3, 3, 3)) * 0.4).astype(np.float32)
    w2 = (RNG.standard_normal((5, 4, 1, 1)) * 0.4).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["s"], strides=[32, 32], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w2"], ["y"]),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [("y", TensorProto.FLOAT, ["n", 5, None, None])],
        {"w1": w1, "w2": w2},
    )


def test_pool_rows_equal_at_the_declared_samples_follow_height_and_width():
    model = stem_and_pool()
    res = convert(model, keep_io_layout=True)
    assert _signature(res, "y") == [-1, 5, -1, -1]
    assert not _window_warnings(res)
    shapes = [(1, 3, 64, 64), (2, 3, 100, 130), (1, 3, 160, 96), (1, 3, 200, 250), (1, 3, 97, 65)]
    _run_at_sizes(res, model, shapes)


def test_size_the_model_itself_fixes_stays_fixed_with_a_warning():
    """The frame axis is squeezed: the model takes only lengths that give one frame (1 to
    128 samples); the wider step is rejected by the model and there is none below, so the
    frame count stays 1, as the model fixes it, with a warning naming the window."""
    model = framing(128, squeeze=True)
    res = convert(model, keep_io_layout=True)
    (warning,) = _window_warnings(res)
    assert "CONV_2D" in warning and "length=" in warning
    assert "the model rejects the sizes that change it" in warning
    assert _signature(res, "x") == [1, 1, -1]
    _run_at_sizes(res, model, [(1, 1, 1), (1, 1, 50), (1, 1, 100), (1, 1, 128)])
    with pytest.raises(Exception, match="Squeeze|dimension|shape"):  # the model itself
        ort.InferenceSession(model.SerializeToString()).run(
            None, {"x": np.zeros((1, 1, 200), np.float32)}
        )


def test_no_wider_step_that_works_is_refused_naming_the_window(monkeypatch):
    """When no wider step is tried (or none works), the file would be wrong at sizes that
    change the window's output: refused, naming the operator, the symbol and the pin flags."""
    monkeypatch.setattr(plans, "WIDENINGS", 0)
    err = expect_refusal(framing(4096), "dynamic_shape_unsupported", keep_io_layout=True)
    assert "CONV_2D" in err.message and "along its width" in err.message
    assert "length" in err.message and "input_shapes=" in err.message
    assert err.node_name == "Conv:f"


def recurrent(batch_x, batch_h):
    """LSTM over x [seq, batch_x, 4] with initial_h / initial_c [1, batch_h, 3] (pinned apart
    they disagree: silero VAD's state is [2, batch, 128])."""
    w = (RNG.standard_normal((1, 12, 4)) * 0.3).astype(np.float32)
    r = (RNG.standard_normal((1, 12, 3)) * 0.3).astype(np.float32)
    nodes = [helper.make_node("LSTM", ["x", "w", "r", "", "", "h", "c"], ["y"], hidden_size=3)]
    return _model(
        nodes,
        [
            ("x", TensorProto.FLOAT, [5, batch_x, 4]),
            ("h", TensorProto.FLOAT, [1, batch_h, 3]),
            ("c", TensorProto.FLOAT, [1, batch_h, 3]),
        ],
        [("y", TensorProto.FLOAT, None)],
        {"w": w, "r": r},
    )


def test_recurrent_batches_pinned_apart_are_a_bad_input_naming_the_inputs():
    with pytest.raises(ConversionError) as info:
        pins = {"x": (5, 2, 4), "h": (1, 3, 3), "c": (1, 3, 3)}
        convert(recurrent("batch", "state_batch"), input_shapes=pins)
    err = info.value
    assert err.reason_code == "invalid_model" and err.exit_code == 2
    assert "batch size is 2" in err.message and "but 3" in err.message
    assert "LSTM" in err.message and "input shape" in err.message


def test_recurrent_batches_declared_apart_are_a_bad_input():
    err = expect_refusal(recurrent(2, 3), "invalid_model")
    assert "batch size is 2 in X [5, 2, 4]" in err.message and "initial_h [1, 3, 3]" in err.message


def one_row_pool():
    """[n, 1, H, W] -> Conv k=(16, 1) s=(16, 1) -> AveragePool (3, 2) / (3, 2) -> Squeeze the
    height (PP-OCR v4's recognizer neck): one row at H 48..95 (3 to 5 input rows), and at
    H 16..47 too, where onnxruntime averages a partial window of 1 or 2 rows (VALID in TFLite
    gives no row there, SAME two rows at 4 or 5)."""
    w = (RNG.standard_normal((6, 1, 16, 1)) * 0.3).astype(np.float32)
    proj = (RNG.standard_normal((6, 5)) * 0.5).astype(np.float32)
    inits = {"w": w, "proj": proj, "h": np.array([2], np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["rows"], strides=[16, 1]),
        helper.make_node("Relu", ["rows"], ["act"]),
        helper.make_node("AveragePool", ["act"], ["row"], kernel_shape=[3, 2], strides=[3, 2]),
        helper.make_node("Squeeze", ["row", "h"], ["seq"]),
        helper.make_node("Transpose", ["seq"], ["tokens"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["tokens", "proj"], ["y"]),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, ["n", 1, "height", "width"])],
        [("y", TensorProto.FLOAT, ["n", None, 5])],
        inits,
    )


def test_pool_to_one_row_that_the_model_also_takes_partially_is_refused():
    """The pool's row count is 1 at both narrow samples (64, 80); the sizes above are rejected
    by the model, but 16..47 are not (onnxruntime answers there): a file fixed at 1 row was
    wrong at H=32 (rapidocr_rec_v4: up to 0.66 off). Refused; pinned, it converts."""
    model = one_row_pool()
    sess = ort.InferenceSession(model.SerializeToString())
    assert sess.run(None, {"x": np.ones((1, 1, 32, 8), np.float32)})[0].shape == (1, 4, 5)
    err = expect_refusal(model, "dynamic_shape_unsupported", keep_io_layout=True)
    assert "AVERAGE_POOL_2D" in err.message and "along its height" in err.message
    assert "height=64 and 80" in err.message and "input_shapes=" in err.message
    assert err.node_name == "AveragePool:row"
    res = convert(model, input_shapes={"x": (2, 1, 48, 16)}, keep_io_layout=True)
    feeds = {"x": RNG.standard_normal((2, 1, 48, 16)).astype(np.float32)}
    want = sess.run(None, feeds)[0]
    got = V.run_litert(res.tflite_bytes, feeds, res.report["io"])["y"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))
