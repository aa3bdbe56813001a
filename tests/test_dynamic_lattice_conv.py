"""A static Q/DQ CNN (quantize_static) converted with its image dims left dynamic: the lattice
convs on the exact int8 kernel (lowering/lattice_int8.py) take im2col taps that follow the
run-time size (unit-stride STRIDED_SLICEs counted from the input's end, as the
ExactIntegerConv form does); a strided conv, whose stride-block padding depends on the size
modulo the stride, keeps the float form, which holds at every size. The Q/DQ semantics stay
onnxruntime's exactly at every size tried.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from harness import op_histogram
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from test_lattice_int8 import _cnn, _Reader, _samples

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V


@pytest.fixture(scope="module")
def dynamic_qdq_cnn(tmp_path_factory):
    d = tmp_path_factory.mktemp("dynamic_lattice")
    model = _cnn()
    for axis, name in ((2, "height"), (3, "width")):
        model.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = name
    onnx.save(model, str(d / "f.onnx"))
    quantize_static(
        str(d / "f.onnx"),
        str(d / "q.onnx"),
        _Reader(_samples(4, 1)),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return str(d / "q.onnx")


def test_qdq_lattice_convs_with_dynamic_image_dims(dynamic_qdq_cnn):
    res = convert(dynamic_qdq_cnn, keep_io_layout=True)
    ops = op_histogram(bytes(res.tflite_bytes))
    assert ops["FULLY_CONNECTED"] >= 2 and ops["STRIDED_SLICE"] >= 9, ops  # int8 lattice convs
    signature = next(r["shape_signature"] for r in res.report["io"] if r["name"] == "x")
    assert signature == [1, 3, -1, -1], signature
    rng = np.random.default_rng(2)
    for h, w in [(13, 13), (9, 20), (32, 17), (6, 6)]:
        feeds = {"x": rng.standard_normal((1, 3, h, w)).astype(np.float32)}
        expected = V.run_onnxruntime(dynamic_qdq_cnn, feeds)["y"]
        assert np.std(expected) > 1e-2
        for use_xnnpack in (True, False):
            got = V.run_litert(res.tflite_bytes, feeds, res.report["io"], use_xnnpack=use_xnnpack)
            # one output quantization step: a requantization tie may round either way on
            # another CPU's kernels (onnxruntime's own included); on this one it is exact
            np.testing.assert_allclose(
                got["y"], expected, rtol=0, atol=_output_step(dynamic_qdq_cnn), err_msg=f"{h, w}"
            )


def _output_step(path) -> float:
    """The scale of the DequantizeLinear that produces the graph output."""
    model = onnx.load(path)
    node = next(n for n in model.graph.node if n.output[0] == model.graph.output[0].name)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return float(inits[node.input[1]]) * 1.001
