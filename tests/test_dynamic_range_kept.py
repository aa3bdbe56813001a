"""The dynamic-range file of an already dynamically quantized model keeps the model's own
quantization (issue 21 item 6; ``quant/dynamic_range.lattice_products``, docs/dynamic_range.md).

onnxruntime's ``quantize_dynamic`` writes ``DynamicQuantizeLinear -> MatMulInteger/ConvInteger
-> Cast -> Mul(scales)``. The converter's float32 file already computes that chain exactly
(codes carried as float32 into LiteRT's int8 FULLY_CONNECTED with scale-1 weights and
lattice-end columns, or a float32 product of exact integers). The dynamic-range file must keep
those products -- not hand them to LiteRT's hybrid kernels, whose own per-row input
quantization is another quantization -- and leave the float weights the model left
unquantized float, as its semantics and onnxruntime compute them. Checked against onnxruntime running the quantized
model as written (graph optimizations at BASIC), bit for bit where every float op between the
integer chains is one correctly rounded IEEE operation on both sides (any CPU), on both LiteRT
kernel sets.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from harness import convert, make_model
from onnx import TensorProto, helper

from onnx2tflite_direct import validate as V
from onnx2tflite_direct.quant import dynamic_range as D

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")

F = np.float32
KEPT = "own dynamic quantization"


def _weights(rng, shape, scale=0.05):
    return (rng.standard_normal(shape) * scale).astype(F)


def _mlp(rng) -> onnx.ModelProto:
    """x [2, 24, 256] -> MatMul 256x384 + bias -> Relu (h) -> MatMul 384x160 -> y."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="fc1_bias"),
        helper.make_node("Relu", ["a1"], ["h"], name="act"),
        helper.make_node("MatMul", ["h", "w2"], ["y"], name="fc2"),
    ]
    inits = {
        "w1": _weights(rng, (256, 384)),
        "b1": _weights(rng, (384,)),
        "w2": _weights(rng, (384, 160)),
    }
    return make_model(
        nodes,
        [("x", TensorProto.FLOAT, [2, 24, 256])],
        [("h", TensorProto.FLOAT, [2, 24, 384]), ("y", TensorProto.FLOAT, [2, 24, 160])],
        inits,
        opset=13,
    )


def _convs(rng) -> onnx.ModelProto:
    """A stride-2 3x3 conv of 8 channels (the float32 form of ConvInteger) and a 3x3 conv of
    64 channels (im2col rows on the int8 kernel), both with biases."""
    nodes = [
        helper.make_node(
            "Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4, strides=[2, 2]
        ),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2", pads=[1] * 4),
    ]
    inits = {
        "w1": _weights(rng, (64, 8, 3, 3), 0.3),
        "b1": _weights(rng, (64,), 0.1),
        "w2": _weights(rng, (32, 64, 3, 3), 0.1),
        "b2": _weights(rng, (32,), 0.1),
    }
    return make_model(
        nodes,
        [("x", TensorProto.FLOAT, [1, 8, 20, 20])],
        [("r1", TensorProto.FLOAT, [1, 64, 10, 10]), ("y", TensorProto.FLOAT, [1, 32, 10, 10])],
        inits,
        opset=13,
    )


def quantize_dynamic_int8(model, tmp_path, **kw) -> onnx.ModelProto:
    """onnxruntime's quantize_dynamic with int8 weights (through files, as its API wants)."""
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, str(src))
    quantization.quantize_dynamic(
        str(src), str(dst), weight_type=quantization.QuantType.QInt8, **kw
    )
    return onnx.load(str(dst))


def onnxruntime_semantics(qmodel, feeds) -> dict:
    """onnxruntime running the quantized model as written (no fusion into its own kernels)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(
        qmodel.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def _feeds(model, rng) -> dict:
    (vi,) = model.graph.input
    shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    x = rng.standard_normal(shape).astype(F)
    x.reshape(-1)[:3] = (4.0, -2.5, 3.0)  # a range of its own, not symmetric
    return {vi.name: x}


def _rows(res) -> dict[str, dict]:
    return {r["onnx_node"]: r for r in res.report["prequantized"]["nodes"]}


def _weight_scales(tflite: bytes) -> dict[str, list]:
    """opcode -> the scales of the int8 weights its operators read."""
    interp = V.make_interpreter(tflite)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    found: dict[str, list] = {}
    for op in interp._get_ops_details():
        if op["op_name"] in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL"):
            w = details[op["inputs"][1]]
            if np.dtype(w["dtype"]) == np.int8:
                found.setdefault(op["op_name"], []).append(w["quantization_parameters"]["scales"])
    return found


@pytest.mark.parametrize("use_xnnpack", [True, False])
def test_dynamic_matmuls_bit_identical_to_onnxruntime(tmp_path, use_xnnpack):
    rng = np.random.default_rng(21)
    qmodel = quantize_dynamic_int8(_mlp(rng), tmp_path)
    assert sum(n.op_type == "MatMulInteger" for n in qmodel.graph.node) == 2
    res = convert(qmodel)
    dyn = res.variants["dynamic_range_quant"]
    assert res.report["prequantized"]["mode"] == "dynamic"
    # the model's int8 weights, as codes of scale 1 (not re-quantized to max|w| / 127)
    scales = _weight_scales(dyn)
    assert len(scales["FULLY_CONNECTED"]) == 2
    assert all(np.all(s == 1.0) for s in scales["FULLY_CONNECTED"])
    rows = _rows(res)
    products = [r for r in rows.values() if "FULLY_CONNECTED" in r["ops"]]
    assert len(products) == 2 and all(
        r["status"] == "integer" and KEPT in r["reason"] for r in products
    )
    for _ in range(3):
        feeds = _feeds(qmodel, rng)
        expected = onnxruntime_semantics(qmodel, feeds)
        got = V.run_litert(dyn, feeds, res.report["io"], use_xnnpack=use_xnnpack)
        for name in ("h", "y"):
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_dynamic_convs_bit_identical_to_onnxruntime(tmp_path):
    rng = np.random.default_rng(22)
    qmodel = quantize_dynamic_int8(_convs(rng), tmp_path)
    assert sum(n.op_type == "ConvInteger" for n in qmodel.graph.node) == 2
    res = convert(qmodel)
    dyn = res.variants["dynamic_range_quant"]
    rows = _rows(res)
    products = [r for r in rows.values() if {"CONV_2D", "FULLY_CONNECTED"} & set(r["ops"])]
    assert len(products) == 2 and all(
        r["status"] == "integer" and KEPT in r["reason"] for r in products
    )
    for use_xnnpack in (True, False):
        feeds = _feeds(qmodel, rng)
        expected = onnxruntime_semantics(qmodel, feeds)
        got = V.run_litert(dyn, feeds, res.report["io"], use_xnnpack=use_xnnpack)
        for name in ("r1", "y"):
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_weights_the_model_left_float_stay_float(tmp_path):
    """fc2 excluded from quantize_dynamic: its float weight (61440 elements) stays float, as
    the model's semantics and onnxruntime compute it (not LiteRT's hybrid kernel, whose per-row
    input quantization is not the model's: inception-v1-like's classifier lost 2.6 dB against
    the float64 semantics that way), reported so and not counted among the products; fc1
    keeps the model's quantization (h bit-identical). y is within float32 summation error of
    the float64 semantics (the bound any summation order meets)."""
    from tools.zoo.exact_reference import run_float64

    rng = np.random.default_rng(23)
    qmodel = quantize_dynamic_int8(_mlp(rng), tmp_path, nodes_to_exclude=["fc2"])
    assert sum(n.op_type == "MatMulInteger" for n in qmodel.graph.node) == 1
    res = convert(qmodel)
    dyn = res.variants["dynamic_range_quant"]
    rows = _rows(res)
    assert rows["fc2"]["status"] == "float" and "left unquantized" in rows["fc2"]["reason"]
    kept = [r for n, r in rows.items() if "FULLY_CONNECTED" in r["ops"] and n != "fc2"]
    assert len(kept) == 1 and kept[0]["status"] == "integer" and KEPT in kept[0]["reason"]
    scales = _weight_scales(dyn)["FULLY_CONNECTED"]
    assert len(scales) == 1 and np.all(scales[0] == 1.0)  # fc1's codes only; fc2 float
    feeds = _feeds(qmodel, rng)
    expected = onnxruntime_semantics(qmodel, feeds)
    got = V.run_litert(dyn, feeds, res.report["io"])
    np.testing.assert_array_equal(got["h"], expected["h"])
    exact = run_float64(qmodel, feeds)
    h = np.abs(exact["h"].astype(np.float64))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    w2 = np.abs(inits["w2"].astype(np.float64))  # (excluded: still the float weight)
    k = h.shape[-1]
    bound = k * 2.0**-24 / (1 - k * 2.0**-24) * (h @ w2) + np.spacing(np.abs(exact["y"]))
    assert np.all(np.abs(got["y"].astype(np.float64) - exact["y"]) <= bound)


def test_lattice_products_need_integer_operands(tmp_path):
    """The recognition is structural: a float model's products are not on a lattice (all
    quantized by the usual rules), the quantize_dynamic model's all are."""
    from onnx2tflite_direct import pipeline

    rng = np.random.default_rng(24)
    float_model = _mlp(rng)
    lowered = pipeline.lower_model(float_model)
    assert not D.lattice_products(lowered.model_ir)
    assert D.quantize_weights_int8(lowered.model_ir) == 2
    qmodel = quantize_dynamic_int8(float_model, tmp_path)
    lowered = pipeline.lower_model(qmodel)
    assert len(D.lattice_products(lowered.model_ir)) == 2
    assert D.quantize_weights_int8(lowered.model_ir) == 0


def test_fused_forms_keep_their_quantization_underquantize_dynamic_int8(tmp_path):
    """onnxruntime's optimizer fuses the chains into DynamicQuantizeMatMul /
    MatMulIntegerToFloat (no Q/DQ op left: no pre-quantized import). ``--quantize dynamic``
    recognizes their products on the int8 lattice all the same and keeps them exact."""
    rng = np.random.default_rng(25)
    qmodel = quantize_dynamic_int8(_mlp(rng), tmp_path)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "fused.onnx")
    ort.InferenceSession(qmodel.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    fused = onnx.load(str(tmp_path / "fused.onnx"))
    kinds = {n.op_type for n in fused.graph.node}
    assert kinds & {"DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
    assert not kinds & {"MatMulInteger", "DynamicQuantizeLinear"}
    res = convert(fused, quantize=("dynamic",))
    dyn = res.variants["dynamic_range_quant"]
    scales = _weight_scales(dyn)["FULLY_CONNECTED"]
    assert len(scales) == 2 and all(np.all(s == 1.0) for s in scales)
    for use_xnnpack in (True, False):
        feeds = _feeds(fused, rng)
        expected = onnxruntime_semantics(fused, feeds)
        got = V.run_litert(dyn, feeds, res.report["io"], use_xnnpack=use_xnnpack)
        for name in ("h", "y"):
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def _float_form_chain(k: int = 3072, n: int = 16):
    """DynamicQuantizeLinear -> MatMulInteger -> Cast (a graph output: no pre-quantized
    import) with a weight column of 127s that LiteRT's int8 kernel cannot sum exactly
    (``float_carried.int8_codes``): the product stays a float32 FULLY_CONNECTED of the exact
    integer codes, a float weight of 49152 elements that the dynamic-range rules would take."""
    rng = np.random.default_rng(26)
    w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    w[:, 0] = 127
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "zp"]),
        helper.make_node("MatMulInteger", ["q", "w", "zp", "w_zp"], ["acc_i"]),
        helper.make_node("Cast", ["acc_i"], ["acc"], to=TensorProto.FLOAT),
    ]
    model = make_model(
        nodes,
        [("x", TensorProto.FLOAT, [6, k])],
        [("acc", TensorProto.FLOAT, [6, n])],
        {"w": w, "w_zp": np.asarray(0, np.int8)},
        opset=13,
    )
    x = rng.standard_normal((6, k)).astype(F) + 1.5
    return model, {"x": x}


def test_float_form_products_are_recognized(monkeypatch):
    """The product the int8 kernel cannot take is still on the lattice (integer codes times
    integer weights): ``--quantize dynamic`` leaves its float32 weight alone and the file
    agrees with onnxruntime within the float32 accumulation bound. With the recognition off,
    the hybrid kernel re-quantizes it (per-row int8 input codes, weights on max|w| / 127) and
    the accumulator moves by far more than that bound."""
    from onnx2tflite_direct.lowering import contrib_quant  # noqa: F401  (registers the ops)

    model, feeds = _float_form_chain()
    expected = V.run_onnxruntime(model, feeds)["acc"]
    bound = _accumulation_bound(model, feeds["x"])
    res = convert(model, quantize=("dynamic",))
    dyn = res.variants["dynamic_range_quant"]
    assert "FULLY_CONNECTED" not in _weight_scales(dyn)  # no int8 weight: the float form kept
    got = V.run_litert(dyn, feeds, res.report["io"])["acc"]
    assert np.all(np.abs(got.astype(np.float64) - expected) <= bound)
    monkeypatch.setattr(D, "lattice_products", lambda model: set())
    res = convert(model, quantize=("dynamic",))
    dyn = res.variants["dynamic_range_quant"]
    assert "FULLY_CONNECTED" in _weight_scales(dyn)
    got = V.run_litert(dyn, feeds, res.report["io"])["acc"]
    assert np.any(np.abs(got.astype(np.float64) - expected) > bound)


def _accumulation_bound(model, x: np.ndarray) -> np.ndarray:
    """docs/dynamic_range.md's bound of the float32 form, per output: gamma_K * sum_k
    |q - zp| |w| (u = 2**-24), with DynamicQuantizeLinear's codes computed as onnxruntime
    computes them (every step one float32 operation)."""
    from onnx import numpy_helper

    w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}["w"]
    lo, hi = min(F(0), x.min()), max(F(0), x.max())
    scale = F((hi - lo) / F(255))
    zp = np.rint(np.clip(F(0) - lo / scale, 0, 255))
    q = np.clip(np.rint(x / scale) + zp, 0, 255)
    k = x.shape[1]
    gamma = k * 2.0**-24 / (1 - k * 2.0**-24)
    return gamma * (np.abs(q - zp).astype(np.float64) @ np.abs(w).astype(np.float64))
