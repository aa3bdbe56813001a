"""A static Q/DQ model's lattice products on the exact int8 kernel (lowering/lattice_int8.py).

The float32 file computes a QDQ Conv / Gemm as onnxruntime's QLinearConv / QGemm: the int32 sum
(bias included) converted to float32 once. The int8 form must give the very same floats as the
float digit form (itself exact) and as an int64 reference of the Q/DQ semantics, including
sums past 2**24 and large biases, on any kernel set (XNNPACK and LiteRT's builtin kernels).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from onnx2tflite_direct import convert
from onnx2tflite_direct.lowering import lattice_int8
from onnx2tflite_direct.validate import litert_runner


def _cnn(channels=128, seed=5):
    """Conv(3 -> C, 3x3) + Relu, Conv(C -> C, 3x3, pad 1) + Relu (K = 9 C codes of +-127: its
    channel bounds pass 2**24, two weight digits in the float form), the same with stride 2 (an
    odd size: the stride blocks pad one more row and column), Conv 1x1, global pool, Gemm."""
    rng = np.random.default_rng(seed)

    def init(name, shape, scale):
        return numpy_helper.from_array(rng.uniform(-scale, scale, shape).astype(np.float32), name)

    c = channels
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Conv", ["r3", "w2", "b2"], ["c2"]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], transB=1),
    ]
    inits = [
        init("w0", [c, 3, 3, 3], 0.5),
        init("b0", [c], 0.2),
        numpy_helper.from_array(rng.choice([-0.05, 0.05], [c, c, 3, 3]).astype(np.float32), "w1"),
        init("b1", [c], 3.0),  # large biases: they join the int32 sum
        numpy_helper.from_array(rng.choice([-0.05, 0.05], [c, c, 3, 3]).astype(np.float32), "w3"),
        init("b3", [c], 3.0),
        init("w2", [c, c, 1, 1], 0.1),
        init("b2", [c], 0.1),
        init("wg", [10, c], 0.2),
        init("bg", [10], 0.1),
    ]
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 13, 13])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class _Reader(CalibrationDataReader):
    def __init__(self, samples):
        self.it = iter(samples)

    def get_next(self):
        return next(self.it, None)


def _samples(count, seed):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 3, 13, 13)).astype(np.float32)} for _ in range(count)]


@pytest.fixture(scope="module")
def qdq_cnn(tmp_path_factory):
    d = tmp_path_factory.mktemp("lattice_int8")
    onnx.save(_cnn(), str(d / "f.onnx"))
    quantize_static(
        str(d / "f.onnx"),
        str(d / "q.onnx"),
        _Reader(_samples(4, 0)),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return str(d / "q.onnx")


def _run(path, feeds, monkeypatch, on: bool, delegate: bool = True):
    monkeypatch.setattr(lattice_int8, "LATTICE_ON_INT8_KERNEL", on)
    res = convert(path, keep_io_layout=True)
    blob = bytes(res.tflite_bytes)
    run = litert_runner(blob, res.report.get("io_table"), num_threads=1, use_xnnpack=delegate)
    return blob, [np.asarray(run(f)["y"]) for f in feeds]


def _fc_inputs(blob):
    """Column counts of the int8-weight FULLY_CONNECTEDs (the exact int8 kernel)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=blob)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    return [
        int(tensors[op["inputs"][1]]["shape"][1])
        for op in interp._get_ops_details()
        if op["op_name"] == "FULLY_CONNECTED" and tensors[op["inputs"][1]]["dtype"] == np.int8
    ]


def _op_count(blob, name):
    from ai_edge_litert.interpreter import Interpreter

    return sum(op["op_name"] == name for op in Interpreter(model_content=blob)._get_ops_details())


def test_codes_sum_weights_and_bias_exactly():
    """The code rows times a lattice row give sum(x * w) + bias in integers, for biases far
    beyond one column's reach and both kinds of lattice (uint8 after a ReLU: [0, 255], or an
    int8 one around a zero point)."""
    rng = np.random.default_rng(2)
    w = rng.integers(-127, 128, (6, 40))
    bias = np.asarray([0, 1, -1, 2**20 + 77, -(2**22) - 3, 12345])
    for lo in (0, -128, -200, -255):
        codes, tail, copies = lattice_int8.lattice_codes(w, bias, lo, lo + 255)
        x = rng.integers(lo, lo + 256, (5, 40))
        row = np.concatenate([np.tile(x, copies), np.broadcast_to(tail, (5, len(tail)))], 1)
        assert tail[-2:] == [lo, lo + 255] and min(tail) >= lo and max(tail) <= lo + 255
        got = row.astype(np.int64) @ codes.T.astype(np.int64)
        np.testing.assert_array_equal(got, x @ w.T + bias)


@pytest.mark.parametrize("delegate", [True, False], ids=["xnnpack", "builtin"])
def test_int8_form_gives_the_float_forms_sums(qdq_cnn, monkeypatch, delegate):
    """Same outputs, bit for bit, as the float digit form, and onnxruntime's within its own
    rounding (its QLinear kernels requantize the same int32 sums)."""
    import onnxruntime as ort

    feeds = _samples(3, 7)
    blob_on, on = _run(qdq_cnn, feeds, monkeypatch, True, delegate)
    blob_off, off = _run(qdq_cnn, feeds, monkeypatch, False, delegate)
    cols = _fc_inputs(blob_on)
    assert not _fc_inputs(blob_off)
    assert _op_count(blob_off, "CONV_2D") == 6  # 3 -> C, two digits twice, the 1x1 conv
    # int8: the three C -> C convs (bias columns: K + 2 ends + 3 or more), not the 3 -> C one
    assert len(cols) == 3 and min(cols[:2]) > 9 * 128 + 5 and 128 + 5 <= cols[2] < 9 * 128
    assert _op_count(blob_on, "CONV_2D") == 1
    for a, b in zip(on, off, strict=True):
        np.testing.assert_array_equal(a, b)
        assert np.std(a) > 0.05  # not a near-constant output
    sess = ort.InferenceSession(qdq_cnn)
    for f, a in zip(feeds, on, strict=True):
        ref = sess.run(["y"], f)[0]
        step = np.max(np.abs(ref)) / 100
        assert np.max(np.abs(ref - a)) <= step, np.max(np.abs(ref - a))
