"""Decisions a lowering must not take from a sample size when the model's sizes vary at run
time (``dynamic_shapes.py`` lowers at sample sizes and pairs the graphs op by op).

Each idiom is reproduced with onnx.helper, converted with its unknown dims left dynamic, run
in LiteRT at several run-time sizes (``resize_tensor_input``) and compared with onnxruntime:

* a strided Conv (k=3, s=2, pads 1, 1: torch's default downsampling, silero VAD's encoder):
  TFLite's SAME equals those pads at odd sizes only. Taken at a sample size it made the
  lowerings differ (CONV_2D at one size, PAD at the other: refused) or, when both samples
  were odd, was silently wrong at even run-time sizes. Explicit PAD + VALID is exact at
  every size; ONNX's SAME_UPPER stays TFLite SAME (equal at every size);
* the same for a strided MaxPool;
* an atrous conv whose outer taps read only padding at the sample sizes: trimming them there
  would be wrong at larger run-time sizes, where they read the input;
* torch's ``x.new_full((x.shape[0], 0, 1), -1e9)`` concatenated to a result (an EEG spindle
  detector's segmentation head): the filler is empty at every size (a constant 0 in its
  shape), FILL makes it at run time; a 0 computed from the sizes stays refused;
* a text recognizer whose height must reduce to one row (a Squeeze or a Reshape to a
  constant 1 after the backbone takes heights 48 to 95 only): the declared samples (64, 96)
  and the larger retries are rejected, the narrow pair (64, 80) is taken;
* a decoder with a KV cache whose shape arithmetic reads ``past + sequence`` (HF LLaMA /
  Qwen2 with past_key_values): the lowering with one symbol bumped was probed at sizes whose
  sum coincided with its own (96 + 64 and 64 + 96), so the sum folded there and stayed a
  SHAPE op in the base lowering (refused: the operators differ). The probe now has every
  symbol larger than the lowered sizes;
* torch's export of ``h.squeeze(-1)`` (silero VAD's decoder): If(h.shape[-1] == 1, Squeeze,
  Identity) with branches of different ranks. The Shape reads a dynamic batch, so it stays
  at run time, but the dim it picks is 1 at every sample: the Gather folds (the per-dim form
  of the Shape rule), the If takes its Squeeze branch at conversion time;
* a refusal at sizes the converter chose (the declared samples rejected) says which sizes
  and why the declared ones were rejected, with the pin flags.

A strided window whose output size is the same at both samples (silero VAD's encoder at 512
and 576 samples): ``test_dynamic_fixed_by_samples.py``.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import check_at_sizes, make_model
from onnx import TensorProto, helper

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V

RNG = np.random.default_rng(71)


def _model(nodes, inputs, outputs, inits, opset=17):
    return make_model(nodes, inputs, outputs, inits, opset=opset, check=False)


def _check_at_sizes(model, shapes, name="x"):
    """Convert once (dims dynamic), run at each input shape, compare with onnxruntime."""
    res = convert(model, keep_io_layout=True)
    check_at_sizes(res, model, shapes, name, seed=71)
    return res


def _signature(res, name):
    return next(r["shape_signature"] for r in res.report["io"] if r["name"] == name)


def strided_conv_1d(stem=(32, 32), auto_pad=None):
    """silero VAD: a strided STFT-like stem Conv1d (kernel, stride = ``stem``), then its
    encoder's Conv1d(k=3, s=2, pads 1) + ReLU. With a (32, 32) stem the sample lengths 64 and
    96 give 2 and 3 columns (SAME at one only: the lowerings differed); with (32, 16) they give
    3 and 5 (SAME at both, wrong at the even column counts of other lengths)."""
    w1 = (RNG.standard_normal((8, 1, stem[0])) * 0.3).astype(np.float32)
    w2 = (RNG.standard_normal((6, 8, 3)) * 0.3).astype(np.float32)
    b2 = (RNG.standard_normal(6) * 0.1).astype(np.float32)
    pad = {"auto_pad": auto_pad} if auto_pad else {"pads": [1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[stem[1]]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2], **pad),
        helper.make_node("Relu", ["c2"], ["y"]),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, ["batch", 1, "length"])],
        [("y", TensorProto.FLOAT, ["batch", 6, None])],
        {"w1": w1, "w2": w2, "b2": b2},
    )


# lengths whose stem output has odd and even column counts for both stems
SIZES_1D = [(1, 1, 64), (2, 1, 96), (1, 1, 128), (3, 1, 144), (1, 1, 160), (1, 1, 224)]


@pytest.mark.parametrize("stem", [(32, 32), (32, 16)])
def test_strided_conv_padding_is_exact_at_odd_and_even_lengths(stem):
    res = _check_at_sizes(strided_conv_1d(stem), SIZES_1D)
    assert _signature(res, "x") == [-1, 1, -1]
    assert _signature(res, "y")[2] == -1


def test_same_upper_strided_conv_stays_dynamic_and_exact():
    _check_at_sizes(strided_conv_1d(auto_pad="SAME_UPPER"), SIZES_1D)


@pytest.mark.parametrize("op", ["Conv", "MaxPool"])
def test_strided_2d_window_with_symmetric_pads_follows_height_and_width(op):
    """ResNet-style 3x3 stride-2 downsampling with pads 1 on a dynamic H x W image."""
    inits = {}
    if op == "Conv":
        inits["w"] = (RNG.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
        node = helper.make_node(
            "Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[3, 3]
        )
    else:
        node = helper.make_node(
            "MaxPool", ["x"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[3, 3]
        )
    channels = 4 if op == "Conv" else 3
    model = _model(
        [node],
        [("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [("y", TensorProto.FLOAT, ["n", channels, None, None])],
        inits,
    )
    _check_at_sizes(model, [(1, 3, 32, 32), (2, 3, 33, 48), (1, 3, 65, 31), (1, 3, 40, 17)])


def qlinear_strided_conv():
    """QLinearConv k=3, s=2, pads 1 on a dynamic uint8 image after a VALID k=3, s=2 stem
    (odd sizes at both samples: 31 and 47): the integer conv's padding choice follows the
    same any-size rule."""
    inits = {
        "xs": np.array(0.05, np.float32),
        "xz": np.array(128, np.uint8),
        "w0": RNG.integers(-60, 60, (4, 3, 3, 3)).astype(np.int8),
        "w1": RNG.integers(-60, 60, (4, 4, 3, 3)).astype(np.int8),
        "ws": np.array(0.01, np.float32),
        "wz": np.array(0, np.int8),
        "ss": np.array(0.06, np.float32),
        "sz": np.array(110, np.uint8),
        "ys": np.array(0.08, np.float32),
        "yz": np.array(120, np.uint8),
        "b0": RNG.integers(-500, 500, 4).astype(np.int32),
        "b1": RNG.integers(-500, 500, 4).astype(np.int32),
    }
    window = dict(strides=[2, 2], kernel_shape=[3, 3])
    nodes = [
        helper.make_node(
            "QLinearConv", ["x", "xs", "xz", "w0", "ws", "wz", "ss", "sz", "b0"], ["s"], **window
        ),
        helper.make_node(
            "QLinearConv",
            ["s", "ss", "sz", "w1", "ws", "wz", "ys", "yz", "b1"],
            ["y"],
            pads=[1, 1, 1, 1],
            **window,
        ),
    ]
    return _model(
        nodes,
        [("x", TensorProto.UINT8, ["n", 3, "h", "w"])],
        [("y", TensorProto.UINT8, ["n", 4, None, None])],
        inits,
    )


def test_qlinear_strided_conv_padding_follows_height_and_width():
    model = qlinear_strided_conv()
    res = convert(model, keep_io_layout=True)
    sess = ort.InferenceSession(model.SerializeToString())
    for shape in [(1, 3, 34, 35), (2, 3, 64, 40), (1, 3, 39, 70)]:  # even stem outputs
        feeds = {"x": RNG.integers(0, 256, shape).astype(np.uint8)}
        want = sess.run(None, feeds)[0]
        got = V.run_litert(res.tflite_bytes, feeds, res.report["io"])["y"]
        assert got.shape == want.shape, shape
        assert np.std(want.astype(np.float32)) > 1
        # one quantum: onnxruntime's requantization rounds its own way
        diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
        assert diff.max() <= 1, shape


def qdq_strided_conv():
    """A float VALID k=3, s=2 stem, then a Q/DQ-lattice Conv k=3, s=2, pads 1 with int8
    weights (lowered as an integer conv, lowering/conv_lattice.py)."""
    inits = {
        "w0": (RNG.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32),
        "s": np.array(0.05, np.float32),
        "z": np.array(128, np.uint8),
        "wq": RNG.integers(-100, 100, (4, 4, 3, 3)).astype(np.int8),
        "ws": np.array(0.004, np.float32),
        "wz": np.array(0, np.int8),
        "ys": np.array(0.03, np.float32),
        "yz": np.array(128, np.uint8),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["stem"], strides=[2, 2]),
        helper.make_node("QuantizeLinear", ["stem", "s", "z"], ["stem_q"]),
        helper.make_node("DequantizeLinear", ["stem_q", "s", "z"], ["stem_dq"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w1"]),
        helper.make_node("Conv", ["stem_dq", "w1"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["c_q"]),
        helper.make_node("DequantizeLinear", ["c_q", "ys", "yz"], ["y"]),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [("y", TensorProto.FLOAT, ["n", 4, None, None])],
        inits,
    )


def test_qdq_strided_conv_padding_follows_height_and_width():
    model = qdq_strided_conv()
    res = convert(model, keep_io_layout=True)
    sess = ort.InferenceSession(model.SerializeToString())
    for shape in [(1, 3, 34, 35), (2, 3, 64, 40), (1, 3, 39, 70)]:  # even stem outputs
        feeds = {"x": RNG.standard_normal(shape).astype(np.float32)}
        want = sess.run(None, feeds)[0]
        got = V.run_litert(res.tflite_bytes, feeds, res.report["io"])["y"]
        assert got.shape == want.shape, shape
        assert np.std(want) > 0.1
        # two output quanta: the output rounds its own way, and a stem value on a rounding
        # tie (float sums differ by an ulp between kernels) moves the sum by < one more
        assert np.abs(got - want).max() <= 0.06 + 1e-6, shape


def atrous_after_stride():
    """A strided stem (width / 16) then a conv of dilation 8: at the sample sizes (64, 96 ->
    4, 6 columns) its outer taps read only padding; at 160+ columns they read the input."""
    w1 = (RNG.standard_normal((4, 1, 16)) * 0.3).astype(np.float32)
    w2 = (RNG.standard_normal((5, 4, 3)) * 0.4).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["stem"], strides=[16]),
        helper.make_node("Conv", ["stem", "w2"], ["y"], dilations=[8], pads=[8, 8]),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, [1, 1, "length"])],
        [("y", TensorProto.FLOAT, [1, 5, None])],
        {"w1": w1, "w2": w2},
    )


def test_taps_dead_at_the_sample_sizes_still_count_at_larger_sizes():
    _check_at_sizes(atrous_after_stride(), [(1, 1, 64), (1, 1, 320), (1, 1, 1024)])


def test_pinned_conversion_still_takes_same_padding():
    """Pinned (static) conversions keep the size-specific choice: SAME at an odd length."""
    model = strided_conv_1d((32, 16))
    res = convert(model, input_shapes={"x": (1, 1, 64)}, keep_io_layout=True)  # 3 columns
    ops = [op for op, _ in _opcodes(res.tflite_bytes)]
    assert "PAD" not in ops


def _opcodes(blob):
    from harness import _opcodes as opcodes

    return opcodes(blob)[1]


def empty_filler(computed_zero=False):
    """y = concat(relu(x), full((batch, 0, 8), -1e9) * 1, axis=1) with a run-time batch."""
    inits = {
        "zero": np.array([0], np.int64),
        "at0": np.array(0, np.int64),
        "axes": np.array([0], np.int64),
        "eight": np.array([8], np.int64),
        "scale": np.array(-1e9, np.float32),
    }
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "at0"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "axes"], ["b1"]),
    ]
    middle = "zero"
    if computed_zero:  # the same 0, but computed from the run-time length
        nodes += [
            helper.make_node("Gather", ["shape", "axes"], ["n1"], axis=0),
            helper.make_node("Sub", ["n1", "n1"], ["diff"]),
        ]
        middle = "diff"
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    nodes += [
        helper.make_node("Concat", ["b1", middle, "eight"], ["dims"], axis=0),
        helper.make_node("ConstantOfShape", ["dims"], ["filler"], value=value),
        helper.make_node("Mul", ["filler", "scale"], ["masked"]),
        helper.make_node("Concat", ["r", "masked"], ["y"], axis=1),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, ["batch", 5, 8])],
        [("y", TensorProto.FLOAT, ["batch", 5, 8])],
        inits,
    )


def test_filler_empty_at_every_size_is_made_at_run_time():
    res = _check_at_sizes(empty_filler(), [(1, 5, 8), (2, 5, 8), (7, 5, 8)])
    assert _signature(res, "y") == [-1, 5, 8]


def test_filler_empty_by_computation_is_dropped():
    """The filler's middle dim is ``n - n``: empty at every size, so the Concat operand is
    dropped with its unread producers (``drop_empty_concat_operands``; it used to be lowered
    and refused). A dim empty at one sample only would make the two samples' graphs differ,
    which the dynamic comparison refuses."""
    res = _check_at_sizes(empty_filler(computed_zero=True), [(1, 5, 8), (2, 5, 8), (7, 5, 8)])
    assert _signature(res, "y") == [-1, 5, 8]


def one_row_recognizer():
    """[n, 1, H, W] -> Conv k=(16, 1) s=(16, 1) -> Conv (3, 1) / (3, 1) -> Squeeze the height
    (one row only for H in 48..95: onnxruntime rejects the others) -> [n, W, C] logits. (An
    AveragePool there takes heights 16..47 too, with a partial window that no single TFLite
    padding matches: refused, ``test_dynamic_fixed_by_samples.py``.)"""
    w = (RNG.standard_normal((6, 1, 16, 1)) * 0.3).astype(np.float32)
    w2 = (RNG.standard_normal((6, 6, 3, 1)) * 0.3).astype(np.float32)
    proj = (RNG.standard_normal((6, 5)) * 0.5).astype(np.float32)
    inits = {"w": w, "w2": w2, "proj": proj, "h": np.array([2], np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["rows"], strides=[16, 1]),
        helper.make_node("Relu", ["rows"], ["act"]),
        helper.make_node("Conv", ["act", "w2"], ["row"], strides=[3, 1]),
        helper.make_node("Squeeze", ["row", "h"], ["seq"]),
        helper.make_node("Transpose", ["seq"], ["tokens"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["tokens", "proj"], ["y"]),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, ["n", 1, "height", "width"])],
        [("y", TensorProto.FLOAT, ["n", "width", 5])],
        inits,
    )


def test_model_taking_a_narrow_height_range_is_sampled_inside_it():
    shapes = [(1, 1, 48, 32), (2, 1, 64, 40), (1, 1, 80, 17), (3, 1, 56, 9)]
    res = _check_at_sizes(one_row_recognizer(), shapes)
    assert _signature(res, "x") == [-1, 1, -1, -1]
    samples = {s["name"]: s["samples"] for s in res.report["dynamic_shapes"]["symbols"]}
    assert samples["height"] == [64, 80]
    # one row at every height the model takes: kept, as the model fixes it
    assert any("the model rejects the sizes that change it" in w for w in res.report["warnings"])


D = 8


def kv_cache_step():
    """kv = concat(past, x) [1, past + sequence, D]; its length read with Shape feeds torch's
    export of ``repeat_kv`` (HF LLaMA): an Expand to [1, 2, total, D] whose target goes
    through Where(Equal(target, -1), 1, target), then a Reshape to [2, total, D]; attention
    scores of x over the repeated keys."""
    inits = {
        "one": np.array([1], np.int64),
        "two": np.array([2], np.int64),
        "minus": np.array([-1], np.int64),
        "at1": np.array([1], np.int64),
        "ax0": np.array([0], np.int64),
        "d": np.array([D], np.int64),
        "wq": (RNG.standard_normal((D, D)) * 0.4).astype(np.float32),
    }
    ones = helper.make_tensor("v", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Concat", ["past", "x"], ["kv"], axis=1),
        helper.make_node("Shape", ["kv"], ["kv_shape"]),
        helper.make_node("Gather", ["kv_shape", "at1"], ["total"], axis=0),
        helper.make_node("Concat", ["one", "two", "total", "d"], ["target"], axis=0),
        helper.make_node("Reshape", ["target", "minus"], ["flat"]),
        helper.make_node("Shape", ["flat"], ["flat_shape"]),
        helper.make_node("ConstantOfShape", ["flat_shape"], ["ones"], value=ones),
        helper.make_node("Mul", ["ones", "minus"], ["minuses"]),
        helper.make_node("Equal", ["flat", "minuses"], ["unknown"]),
        helper.make_node("Where", ["unknown", "ones", "flat"], ["expand_to"]),
        helper.make_node("Tanh", ["kv"], ["kv_act"]),
        helper.make_node("Unsqueeze", ["kv_act", "at1"], ["kv_1"]),
        helper.make_node("Expand", ["kv_1", "expand_to"], ["repeated"]),
        helper.make_node("Concat", ["two", "total", "d"], ["heads"], axis=0),
        helper.make_node("Reshape", ["repeated", "heads"], ["present"]),
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("Transpose", ["present"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "present"], ["y"]),
    ]
    return _model(
        nodes,
        [
            ("x", TensorProto.FLOAT, [1, "sequence", D]),
            ("past", TensorProto.FLOAT, [1, "past", D]),
        ],
        [
            ("y", TensorProto.FLOAT, [2, "sequence", D]),
            ("present", TensorProto.FLOAT, [2, None, D]),
        ],
        inits,
    )


@pytest.mark.parametrize("sizes", [[(1, 10), (3, 4), (8, 1), (5, 37)]])
def test_sum_of_two_dynamic_dims_stays_computed_at_run_time(sizes):
    model = kv_cache_step()
    res = convert(model, keep_io_layout=True)
    sess = ort.InferenceSession(model.SerializeToString())
    for seq, past in sizes:
        feeds = {
            "x": RNG.standard_normal((1, seq, D)).astype(np.float32),
            "past": RNG.standard_normal((1, past, D)).astype(np.float32),
        }
        expected = dict(zip(["y", "present"], sess.run(["y", "present"], feeds), strict=True))
        actual = V.run_litert(res.tflite_bytes, feeds, res.report["io"])
        for out, want in expected.items():
            assert np.std(want) > 1e-3, out
            assert actual[out].shape == want.shape, (seq, past, out)
            np.testing.assert_allclose(actual[out], want, rtol=0, atol=1e-5, err_msg=out)
    assert _signature(res, "present") == [2, -1, D]


def squeeze_if_last_is_one():
    """y = (h.squeeze(-1) if h.shape[-1] == 1 else h) @ w with h = unsqueeze(tanh(x), -1)."""
    inits = {
        "last": np.array([-1], np.int64),
        "one": np.array([1], np.int64),
        "w": (RNG.standard_normal((8, 5)) * 0.5).astype(np.float32),
    }
    then_branch = helper.make_graph(
        [helper.make_node("Squeeze", ["h", "last"], ["squeezed"])],
        "then",
        [],
        [helper.make_tensor_value_info("squeezed", TensorProto.FLOAT, None)],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["h"], ["kept"])],
        "else",
        [],
        [helper.make_tensor_value_info("kept", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("Tanh", ["x"], ["t"]),
        helper.make_node("Unsqueeze", ["t", "last"], ["h"]),
        helper.make_node("Shape", ["h"], ["h_shape"]),
        helper.make_node("Gather", ["h_shape", "last"], ["h_last"], axis=0),
        helper.make_node("Equal", ["h_last", "one"], ["is_one"]),
        helper.make_node(
            "If", ["is_one"], ["features"], then_branch=then_branch, else_branch=else_branch
        ),
        helper.make_node("MatMul", ["features", "w"], ["y"]),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, ["batch", 8])],
        [("y", TensorProto.FLOAT, ["batch", 5])],
        inits,
    )


def test_squeeze_guard_on_a_static_dim_of_a_dynamic_tensor_is_resolved():
    res = _check_at_sizes(squeeze_if_last_is_one(), [(1, 8), (2, 8), (7, 8)])
    assert _signature(res, "y") == [-1, 5]


def warmup_then_quarters():
    """x[:, 100:] viewed as [batch, (length - 100) / 4, 4]: nothing is left at the declared
    samples, and at the retried ones the middle entry is no multiple of the dynamic dims."""
    inits = {
        "starts": np.array([100], np.int64),
        "ends": np.array([np.iinfo(np.int64).max], np.int64),
        "axes": np.array([1], np.int64),
        "view": np.array([0, -1, 4], np.int64),
    }
    nodes = [
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["tail"]),
        helper.make_node("Reshape", ["tail", "view"], ["y"]),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, ["batch", "length"])],
        [("y", TensorProto.FLOAT, ["batch", None, 4])],
        inits,
    )


def test_refusal_at_retried_sizes_names_them_and_the_first_rejection():
    from harness import expect_refusal

    err = expect_refusal(warmup_then_quarters(), "dynamic_shape_unsupported")
    assert "at the retried sample sizes" in err.message
    assert "length=512" in err.message
    assert "Slice" in err.message  # why the declared samples were rejected
    assert "input_shapes=" in err.message
