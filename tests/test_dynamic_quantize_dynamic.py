"""quantize_dynamic models (ddddocr's CRNN: ConvInteger backbone, DynamicQuantizeLSTM) converted
with their image width / sequence left dynamic, run at several sizes against onnxruntime.

* ConvInteger as ExactIntegerConv: at a fixed size each im2col tap is a SLICE of size
  ``H - k + 1``, no bound the dynamic-shape lowering can re-express; with dynamic dims the
  taps are unit-stride STRIDED_SLICEs whose ends lie ``k - 1 - tap`` from the input's end at
  every size (counted from the run-time end). The accumulator stays onnxruntime's bit for bit,
  on XNNPACK and on the builtin kernels.
* A bidirectional batch-1 DynamicQuantizeLSTM (both directions joined, one WHILE loop): the
  backward half is put in step order by REVERSE_V2 instead of a GATHER by a seq-sized order,
  and the loop count and output buffer come from SHAPE of the steps.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import make_model, op_histogram
from onnx import TensorProto, helper

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V

F = np.float32
CASES = {
    # (input channels, output channels, kernel, pads, weight dtype, dynamic dims)
    "3x3_pad1_int8_width": (48, 24, 3, [1, 1, 1, 1], "int8", ("width",)),
    "3x3_uneven_pads_uint8_zp_height_width": (48, 16, 3, [1, 0, 0, 2], "uint8", ("h", "w")),
    "2x3_no_pads_batch_width": (64, 8, (2, 3), [0, 0, 0, 0], "int8", ("n", "w")),
}
SIZES = [(1, 9, 5), (2, 6, 13), (1, 11, 40)]  # (batch, height, width) at run time


def _conv_integer(case):
    c, o, k, pads, wtype, dyn = CASES[case]
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(c + o)
    if wtype == "int8":
        w = rng.integers(-127, 128, (o, c, kh, kw)).astype(np.int8)
        w_zp = np.asarray(0, np.int8)
    else:
        w = rng.integers(0, 256, (o, c, kh, kw)).astype(np.uint8)
        w_zp = np.asarray(131, np.uint8)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "zp"]),
        helper.make_node("ConvInteger", ["q", "w", "zp", "w_zp"], ["acc_i"], pads=pads),
        helper.make_node("Cast", ["acc_i"], ["acc"], to=TensorProto.FLOAT),
    ]
    names = {"n": "batch", "h": "height", "w": "width", "width": "width"}
    n_dim = "batch" if "n" in dyn else 1
    h_dim = "height" if "h" in dyn else 8
    w_dim = names["w"] if ("w" in dyn or "width" in dyn) else 8
    model = make_model(
        nodes,
        [("x", TensorProto.FLOAT, [n_dim, c, h_dim, w_dim])],
        [("acc", TensorProto.FLOAT, [n_dim, o, None, None])],
        {"w": w, "w_zp": w_zp},
    )
    return model, (n_dim, h_dim, w_dim), c


@pytest.mark.parametrize("case", sorted(CASES))
def test_exact_conv_with_dynamic_image_dims_bit_identical(case):
    model, dims, c = _conv_integer(case)
    res = convert(model, keep_io_layout=True)
    ops = op_histogram(res.tflite_bytes)
    assert ops["FULLY_CONNECTED"] == 1 and "CONV_2D" not in ops, ops  # the int8 form
    signature = next(r["shape_signature"] for r in res.report["io"] if r["name"] == "x")
    assert signature.count(-1) == sum(isinstance(d, str) for d in dims), signature
    rng = np.random.default_rng(3)
    for n, h, w in SIZES:
        shape = [d if isinstance(d, int) else v for d, v in zip(dims, (n, h, w), strict=True)]
        shape.insert(1, c)
        # a per-image offset so that the quantization lattice changes with the data
        x = (rng.standard_normal(shape) + rng.uniform(0.2, 1.5)).astype(F)
        feeds = {"x": x}
        expected = V.run_onnxruntime(model, feeds)["acc"]
        assert np.std(expected) > 1.0
        for use_xnnpack in (True, False):
            got = V.run_litert(res.tflite_bytes, feeds, res.report["io"], use_xnnpack=use_xnnpack)
            assert got["acc"].shape == expected.shape, (shape, got["acc"].shape)
            np.testing.assert_array_equal(got["acc"], expected, err_msg=f"{shape} {use_xnnpack}")


def test_pinned_exact_conv_keeps_slice_taps():
    """With the sizes pinned the taps stay SLICEs (the fixed-size form XNNPACK takes)."""
    model, _, _ = _conv_integer("3x3_pad1_int8_width")
    res = convert(model, keep_io_layout=True, input_shapes={"x": (1, 48, 8, 20)})
    ops = op_histogram(res.tflite_bytes)
    assert ops["SLICE"] >= 9 and "STRIDED_SLICE" not in ops, ops


LSTM_CASES = {
    # (direction, batch, peepholes, WHILE loops): a bidirectional batch-1 layer is one joint
    # loop; otherwise one loop per direction (unrolled steps would follow seq)
    "bidirectional_joint": ("bidirectional", 1, False, 1),
    "bidirectional_joint_peepholes": ("bidirectional", 1, True, 1),
    "forward_batch2": ("forward", 2, False, 1),
    "reverse_peepholes": ("reverse", 1, True, 1),
    "bidirectional_batch3": ("bidirectional", 3, False, 2),
}


@pytest.mark.parametrize("case", sorted(LSTM_CASES))
def test_dynamic_quantize_lstm_with_dynamic_sequence(case, monkeypatch):
    """One file, run at 1, 5 and 17 steps: Y, Y_h and Y_c as onnxruntime's (the same
    tolerance as the pinned lowering's tests)."""
    import test_ops_contrib
    from test_ops_contrib import _dq_lstm

    direction, batch, peepholes, loops = LSTM_CASES[case]
    dirs = 2 if direction == "bidirectional" else 1
    # weights from a generator of our own: the shared one's state is other tests' weights
    monkeypatch.setattr(test_ops_contrib, "RNG", np.random.default_rng(31))
    model, _ = _dq_lstm(direction=direction, states=True, peepholes=peepholes, batch=batch)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "steps"
    res = convert(model, keep_io_layout=True)
    assert op_histogram(res.tflite_bytes)["WHILE"] == loops
    rng = np.random.default_rng(9)
    for seq in (1, 5, 17):
        feeds = {
            "x": rng.standard_normal((seq, batch, 24)).astype(F),
            "h0": (rng.standard_normal((dirs, batch, 16)) * 0.5).astype(F),
            "c0": (rng.standard_normal((dirs, batch, 16)) * 0.5).astype(F),
        }
        expected = _onnxruntime_thread_per_row(model, feeds, batch)
        got = V.run_litert(res.tflite_bytes, feeds, res.report["io"])
        for name, want in expected.items():
            assert np.std(want) > 1e-2, name
            assert got[name].shape == want.shape, (seq, name, got[name].shape)
            np.testing.assert_allclose(got[name], want, atol=2e-5, rtol=1e-4, err_msg=f"{seq}")


def _onnxruntime_thread_per_row(model, feeds, rows: int) -> dict:
    """onnxruntime with one thread per batch row: its LSTM then quantizes each row's hidden
    state on its own, as the lowering does (``contrib_rnn.batch_parallel``), whatever the
    machine's core count."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = rows
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))
