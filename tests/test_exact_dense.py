"""onnxruntime's exact int32 accumulator on LiteRT's dynamically quantized FULLY_CONNECTED
(``lowering/contrib_quant.exact_dense``; ``float_carried.MATMUL_ON_INT8_KERNEL``).

A quantize_dynamic chain ``DynamicQuantizeLinear -> MatMulInteger -> Cast(float)`` is compared
with onnxruntime *bit for bit*: both convert the same exact int32 sum to float32 once. The
operands are chosen so that a float32 accumulation would round (sums far past 2**24) and so
that the rows have different ranges (a kernel quantizing each row over its own range, as
LiteRT's hybrid kernels do, would get other codes without the lattice-end columns). Both
LiteRT kernel sets are checked: XNNPACK's int8 GEMM and the builtin hybrid kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import convert, make_model, op_histogram
from onnx import TensorProto, helper

from onnx2tflite_direct import float_carried
from onnx2tflite_direct import validate as V

F = np.float32


def _chain(k: int, n: int, w: np.ndarray, w_zp: np.ndarray, rows: int):
    """x [rows, k] -> DynamicQuantizeLinear -> MatMulInteger(w, w_zp) -> Cast float: the
    accumulator as a graph output, plus the scaled product (onnxruntime's MatMul result)."""
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "zp"]),
        helper.make_node("MatMulInteger", ["q", "w", "zp", "w_zp"], ["acc_i"]),
        helper.make_node("Cast", ["acc_i"], ["acc"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["s", "w_scale"], ["sw"]),
        helper.make_node("Mul", ["acc", "sw"], ["y"]),
    ]
    inits = {"w": w, "w_zp": w_zp, "w_scale": np.asarray(0.01, F)}
    return make_model(
        nodes,
        [("x", TensorProto.FLOAT, [rows, k])],
        [("acc", TensorProto.FLOAT, [rows, n]), ("y", TensorProto.FLOAT, [rows, n])],
        inits,
    )


def _rows_of_different_ranges(rng, rows: int, k: int) -> np.ndarray:
    """Skewed activations: one row spans the tensor's range, the others a fraction of it, so a
    per-row quantization would pick other scales and zero points than the per-tensor one."""
    x = rng.standard_normal((rows, k)).astype(F) + 1.5
    x *= np.linspace(1.0, 0.05, rows, dtype=F)[:, None]
    x[0, :4] = (-1.0, 7.0, -0.3, 5.0)
    return x


def _run(blob: bytes, io, feeds, use_xnnpack: bool) -> dict:
    return V.run_litert(blob, feeds, io, use_xnnpack=use_xnnpack)


CASES = {
    # int8 weights (quantize_dynamic's default): max sum 3072 * 255 * 127 = 9.9e7 > 2**24
    "int8_k3072": (3072, 96, "int8"),
    # uint8 weights with a zero point: w - zp in [-120, 135], split into two int8 parts
    "uint8_zp_k1024": (1024, 200, "uint8"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_accumulator_bit_identical_to_onnxruntime(case):
    k, n, wtype = CASES[case]
    rng = np.random.default_rng(k + n)
    rows = 6
    if wtype == "int8":
        w = rng.integers(-127, 128, (k, n)).astype(np.int8)
        w[:, 0] = np.where(np.arange(k) % 2 == 0, 127, -127)  # sums past 2**24 with row 1
        w_zp = np.asarray(0, np.int8)
    else:
        w = rng.integers(0, 256, (k, n)).astype(np.uint8)
        w[:, 1] = 255  # w - zp = 135 > 127 everywhere in this column
        w_zp = np.asarray(120, np.uint8)
    model = _chain(k, n, w, w_zp, rows)
    x = _rows_of_different_ranges(rng, rows, k)
    x[1] = np.where(np.arange(k) % 2 == 0, 7.0, -1.0)  # the lattice's ends, matching column 0
    feeds = {"x": x}
    expected = V.run_onnxruntime(model, feeds)
    if wtype == "int8":
        assert np.max(np.abs(expected["acc"])) > 2**24  # a float32 accumulation would round
    res = convert(model)
    ops = op_histogram(res.tflite_bytes)
    assert ops["FULLY_CONNECTED"] == 1 and "BATCH_MATMUL" not in ops, ops
    for use_xnnpack in (True, False):
        got = _run(res.tflite_bytes, res.report.get("io"), feeds, use_xnnpack)
        for name in ("acc", "y"):
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{name}")


def test_float_form_rounds_where_the_int8_kernel_is_exact(monkeypatch):
    """The same chain on the float32 FULLY_CONNECTED (switch off): not bit-identical on these
    sums, which is what the int8 kernel buys (and shows the test above can fail)."""
    k, n = 3072, 96
    rng = np.random.default_rng(7)
    w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    w[:, 0] = np.where(np.arange(k) % 2 == 0, 127, -127)
    model = _chain(k, n, w, np.asarray(0, np.int8), 6)
    x = _rows_of_different_ranges(rng, 6, k)
    x[1] = np.where(np.arange(k) % 2 == 0, 7.0, -1.0)
    feeds = {"x": x}
    expected = V.run_onnxruntime(model, feeds)
    monkeypatch.setattr(float_carried, "MATMUL_ON_INT8_KERNEL", False)
    res = convert(model)
    got = _run(res.tflite_bytes, res.report.get("io"), feeds, True)
    assert not np.array_equal(got["acc"], expected["acc"])


def test_row_ranges_matter(monkeypatch):
    """Without the lattice-end columns the kernel's per-row quantization gives other codes:
    planted by making the end columns repeat the row's first code (a row range < 255)."""
    from onnx2tflite_direct.lowering import contrib_quant

    k, n = 256, 32
    rng = np.random.default_rng(11)
    w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    model = _chain(k, n, w, np.asarray(0, np.int8), 6)
    feeds = {"x": _rows_of_different_ranges(rng, 6, k)}
    expected = V.run_onnxruntime(model, feeds)
    real = contrib_quant.exact_dense

    def narrow(ctx, q, zp, w_shift, low=0, hint="exact", ends=None, shifted=False):
        return real(ctx, q, zp, w_shift, low, hint, ends=(low + 100, low + 100), shifted=shifted)

    monkeypatch.setattr(contrib_quant, "exact_dense", narrow)
    res = convert(model)
    got = _run(res.tflite_bytes, res.report.get("io"), feeds, True)
    assert not np.array_equal(got["acc"], expected["acc"])


def test_weights_the_builtin_kernel_cannot_sum_keep_the_float_form():
    """A 3072-long weight column of 127s overflows the x86 builtin kernel's int16 row-sum lanes
    (measured: every output of that column wrong): that MatMul keeps the float32 form, which
    agrees within the float accumulation bound, on both kernel sets."""
    k, n = 3072, 16
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    w[:, 0] = 127
    assert float_carried.int8_codes(w) is None
    assert float_carried.int8_codes(np.where(np.arange(k)[:, None] % 2 == 0, w, -w)) is not None
    model = _chain(k, n, w, np.asarray(0, np.int8), 6)
    feeds = {"x": _rows_of_different_ranges(rng, 6, k)}
    expected = V.run_onnxruntime(model, feeds)
    res = convert(model)
    assert op_histogram(res.tflite_bytes)["FULLY_CONNECTED"] == 1
    for use_xnnpack in (True, False):
        got = _run(res.tflite_bytes, res.report.get("io"), feeds, use_xnnpack)
        np.testing.assert_allclose(got["acc"], expected["acc"], rtol=1e-6, atol=1.0)


# ---- DynamicQuantizeLSTM on the int8 kernel, both directions in one set of ops ---------------

JOINT_CASES = {
    "states_peepholes_uint8": {"states": True, "peepholes": True, "uint8": True},
    "per_channel_clip": {"per_channel": True, "attrs": {"clip": 1.5}},
    "hidden_96_long_input": {"inp": 768, "hidden": 96, "seq": 5},
}


@pytest.mark.parametrize("case", sorted(JOINT_CASES))
def test_bidirectional_lstm_joint_directions(case, monkeypatch):
    """A bidirectional batch-1 layer runs both directions in [2, ...] ops (one FC for the input
    projection of both, two recurrent FCs per step, the steps in one WHILE loop); against
    onnxruntime as tightly as the per-direction unrolled form, on XNNPACK and the builtin
    kernels."""
    from test_ops_contrib import _dq_lstm

    from onnx2tflite_direct.lowering import contrib_rnn

    model, feeds = _dq_lstm(direction="bidirectional", **JOINT_CASES[case])
    expected = V.run_onnxruntime(model, feeds)
    counts = {}
    for joint in (True, False):
        monkeypatch.setattr(contrib_rnn, "JOINT_DIRECTIONS", joint)
        res = convert(model)
        counts[joint] = sum(op_histogram(res.tflite_bytes).values())
        for use_xnnpack in (True, False):
            got = _run(res.tflite_bytes, res.report.get("io"), feeds, use_xnnpack)
            for name, e in expected.items():
                np.testing.assert_allclose(got[name], e, atol=2e-5, rtol=1e-4, err_msg=name)
    assert counts[True] < 0.75 * counts[False], counts


# ---- ConvInteger as im2col rows on the int8 kernel ---------------------------------------------

CONV_CASES = {
    # (input channels, output channels, kernel, pads, weight dtype)
    "3x3_pad1_int8": (64, 40, 3, [1, 1, 1, 1], "int8"),
    "3x3_uneven_pads_uint8_zp": (48, 24, 3, [1, 0, 0, 2], "uint8"),
    "1x1_uint8_zp": (96, 32, 1, [0, 0, 0, 0], "uint8"),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_integer_as_im2col_rows_bit_identical(case):
    """DynamicQuantizeLinear -> ConvInteger -> Cast: the accumulator equals onnxruntime's bit for
    bit (padding with the zero point included), on XNNPACK and on the builtin kernels."""
    c, o, k, pads, wtype = CONV_CASES[case]
    rng = np.random.default_rng(c + o + k)
    if wtype == "int8":
        w = rng.integers(-127, 128, (o, c, k, k)).astype(np.int8)
        w_zp = np.asarray(0, np.int8)
    else:
        w = rng.integers(0, 256, (o, c, k, k)).astype(np.uint8)
        w_zp = np.asarray(131, np.uint8)
    h, wd = 9, 13
    ho, wo = h + pads[0] + pads[2] - k + 1, wd + pads[1] + pads[3] - k + 1
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "zp"]),
        helper.make_node("ConvInteger", ["q", "w", "zp", "w_zp"], ["acc_i"], pads=pads),
        helper.make_node("Cast", ["acc_i"], ["acc"], to=TensorProto.FLOAT),
    ]
    model = make_model(
        nodes,
        [("x", TensorProto.FLOAT, [1, c, h, wd])],
        [("acc", TensorProto.FLOAT, [1, o, ho, wo])],
        {"w": w, "w_zp": w_zp},
    )
    x = (rng.standard_normal((1, c, h, wd)) + 0.8).astype(F)
    feeds = {"x": x}
    expected = V.run_onnxruntime(model, feeds)
    res = convert(model)
    ops = op_histogram(res.tflite_bytes)
    assert ops["FULLY_CONNECTED"] == 1 and "CONV_2D" not in ops, ops
    for use_xnnpack in (True, False):
        got = _run(res.tflite_bytes, res.report.get("io"), feeds, use_xnnpack)
        np.testing.assert_array_equal(got["acc"], expected["acc"])


def test_dynamic_rows_resize_with_the_input():
    """With the batch left dynamic (no pins) the file still takes the int8 path and resizes:
    the lattice-end columns follow the run-time rows; bit-identical at two batch sizes."""
    k, n = 384, 64
    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    model = _chain(k, n, w, np.asarray(0, np.int8), 4)
    for vi in (*model.graph.input, *model.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    res = convert(model)
    assert op_histogram(res.tflite_bytes)["FULLY_CONNECTED"] == 1
    for rows in (3, 7):
        feeds = {"x": _rows_of_different_ranges(rng, rows, k)}
        expected = V.run_onnxruntime(model, feeds)
        got = _run(res.tflite_bytes, res.report.get("io"), feeds, True)
        np.testing.assert_array_equal(got["acc"], expected["acc"])
