"""Already-quantized ONNX models (QDQ, QOperator, quantize_dynamic) -> integer / hybrid TFLite.

Every model is quantized here by onnxruntime itself (quantize_static / quantize_dynamic over a
few seeded samples), converted with ``qdq_import``, run in LiteRT and compared with
onnxruntime running the same quantized model with Q/DQ evaluated as written (graph
optimizations at BASIC; the default session fuses QDQ into its own integer kernels, whose
u8s8 arithmetic may saturate on x86 without VNNI and is not the ONNX semantics).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from onnx2tflite_direct import builder, pipeline
from onnx2tflite_direct.quant import qdq_import as Q
from onnx2tflite_direct.quant.integer import params_from_range
from onnx2tflite_direct.quant.qoperator_expand import expand_qoperators

MATMUL_LIKE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")


# ---- models ---------------------------------------------------------------------------------


def _init(rng, name, shape, scale=0.3):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _model(nodes, x_shape, y_shape, inits, opset=17):
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def cnn_model():
    """conv+relu, maxpool, conv, residual add, concat of differently scaled inputs, global
    pool, flatten, fully connected."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "p1"], ["a1"]),
        helper.make_node("Concat", ["a1", "p1"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    inits = [
        _init(rng, "w1", [8, 3, 3, 3]),
        _init(rng, "b1", [8], 0.1),
        _init(rng, "w2", [8, 8, 3, 3], 0.2),
        _init(rng, "b2", [8], 0.1),
        _init(rng, "wf", [5, 16]),
        _init(rng, "bf", [5], 0.1),
    ]
    return _model(nodes, [1, 3, 8, 8], [1, 5], inits)


def depthwise_model():
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "wd", "bd"], ["d"], group=4, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["d", "lo", "hi"], ["r"]),
        helper.make_node("Conv", ["r", "wp"], ["y"]),
    ]
    inits = [
        _init(rng, "wd", [4, 1, 3, 3], 0.5),
        _init(rng, "bd", [4], 0.1),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
        _init(rng, "wp", [6, 4, 1, 1], 0.5),
    ]
    return _model(nodes, [1, 4, 6, 6], [1, 6, 6, 6], inits)


def matmul_model():
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Sigmoid", ["a"], ["s"]),
        helper.make_node("MatMul", ["s", "w2"], ["y"]),
    ]
    inits = [
        _init(rng, "w", [16, 12], 0.4),
        _init(rng, "b", [12], 0.1),
        _init(rng, "w2", [12, 8], 0.4),
    ]
    return _model(nodes, [2, 3, 16], [2, 3, 8], inits)


MODELS = {"cnn": cnn_model, "depthwise": depthwise_model, "matmul": matmul_model}


def _samples(model, count, seed):
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(count)]


class _Reader(CalibrationDataReader):
    def __init__(self, samples):
        self.it = iter(samples)

    def get_next(self):
        return next(self.it, None)


def quantized(model, tmp_path, fmt="qdq", per_channel=True, activation=QuantType.QInt8, extra=None):
    src, dst = tmp_path / "f.onnx", tmp_path / f"q_{fmt}.onnx"
    onnx.save(model, str(src))
    if fmt == "dynamic":
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    else:
        quantize_static(
            str(src),
            str(dst),
            _Reader(_samples(model, 4, seed=0)),
            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
            per_channel=per_channel,
            activation_type=activation,
            weight_type=QuantType.QInt8,
            extra_options=extra or {},
        )
    return onnx.load(str(dst))


# ---- conversion and comparison --------------------------------------------------------------


def convert(qmodel, **options):
    stripped, info = Q.import_quantized(qmodel)
    lowering = Q.lowering_options(stripped, info)
    lowered = pipeline.lower_model(stripped, keep_io_layout=True, **lowering)
    model, summary = Q.prequantized_variant(lowered, info.ranges, info, **options)
    share = Q.matmul_like_share(model)
    return builder.build_flatbuffer(model), summary, share


def run_litert(tflite, feeds):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=tflite).get_signature_runner()
    return [np.asarray(runner(**f)["y"]) for f in feeds]


def run_ort(qmodel, feeds):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(qmodel.SerializeToString(), opts)
    return [sess.run(["y"], f)[0] for f in feeds]


def sqnr(ref, act) -> float:
    ref = np.concatenate([np.ravel(r) for r in ref]).astype(np.float64)
    act = np.concatenate([np.ravel(a) for a in act]).astype(np.float64)
    noise = np.sum((ref - act) ** 2)
    return math.inf if noise == 0 else 10 * math.log10(np.sum(ref**2) / noise)


def tensor_dtypes(tflite):
    """opcode -> [(input dtypes)] from the interpreter's tensor details."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    dtypes = {d["index"]: np.dtype(d["dtype"]).name for d in interp.get_tensor_details()}
    found = {}
    for op in interp._get_ops_details():
        found.setdefault(op["op_name"], []).append(
            tuple(dtypes.get(i, "none") for i in op["inputs"] if i >= 0)
        )
    return found


def assert_matches(qmodel, tflite, threshold_db=30.0):
    feeds = _samples(qmodel, 3, seed=1)
    value = sqnr(run_ort(qmodel, feeds), run_litert(tflite, feeds))
    assert value >= threshold_db, f"SQNR {value:.1f} dB"


# ---- QDQ -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(
    "per_channel,activation",
    [(True, QuantType.QInt8), (False, QuantType.QUInt8), (True, QuantType.QUInt8)],
)
def test_qdq_static_runs_integer_and_matches(tmp_path, name, per_channel, activation):
    qmodel = quantized(MODELS[name](), tmp_path, "qdq", per_channel, activation)
    tflite, summary, share = convert(qmodel)
    assert share["integer"] == sum(share.values()) > 0
    ops = tensor_dtypes(tflite)
    for opcode in MATMUL_LIKE:
        for dtypes in ops.get(opcode, []):
            assert dtypes[:2] == ("int8", "int8"), (opcode, dtypes)
    assert summary.mode == "static"
    assert_matches(qmodel, tflite)


def test_symmetric_int16_activations_run_16x8(tmp_path):
    qmodel = quantized(
        cnn_model(), tmp_path, "qdq", True, QuantType.QInt16, {"ActivationSymmetric": True}
    )
    tflite, summary, share = convert(qmodel)
    assert share["integer"] == sum(share.values()) > 0
    for dtypes in tensor_dtypes(tflite)["CONV_2D"]:
        assert dtypes[:3] == ("int16", "int8", "int64")
    assert_matches(qmodel, tflite, threshold_db=60.0)


def test_asymmetric_int16_lattices_stay_exact_float(tmp_path):
    """TFLite int16 needs zero point 0: another lattice would lose the Q's saturation (which
    replaces a Relu onnxruntime removed), so these pairs stay exact float Q/DQ."""
    qmodel = quantized(cnn_model(), tmp_path, "qdq", True, QuantType.QInt16)
    stripped, info = Q.import_quantized(qmodel)
    assert info.pairs == 0 and not Q.is_prequantized(qmodel)
    assert any("zero point 0" in k["reason"] for k in info.kept)
    tflite, summary, share = convert(qmodel)
    assert share["integer"] == 0
    assert_matches(qmodel, tflite, threshold_db=80.0)


def test_concat_of_different_scales_is_requantized(tmp_path):
    qmodel = quantized(cnn_model(), tmp_path, "qdq")
    _, summary, _ = convert(qmodel)
    assert summary.requantized >= 1
    assert any("requantization" in note for note in summary.notes)
    assert any("Concat" in label or "cat" in label for label in summary.requantized_at)
    concat = next(n for n in summary.nodes if "CONCATENATION" in n["ops"])
    assert concat["status"] == "integer"


def test_per_channel_weights_land_on_the_spec_axis(tmp_path):
    qmodel = quantized(depthwise_model(), tmp_path, "qdq", per_channel=True)
    stripped, info = Q.import_quantized(qmodel)
    lowered = pipeline.lower_model(stripped, keep_io_layout=True)
    model, _ = Q.prequantized_variant(lowered, info.ranges, info)
    axes = {
        op.opcode: op.inputs[1].quantization.axis
        for op in model.subgraphs[0].operators
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D")
    }
    assert axes == {"DEPTHWISE_CONV_2D": 3, "CONV_2D": 0}


def test_weights_and_activation_scales_are_the_onnx_ones(tmp_path):
    """The integer model carries exactly the ONNX scales (weights per channel, activations)."""
    qmodel = quantized(cnn_model(), tmp_path, "qdq", per_channel=True)
    consts = {i.name: numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    stripped, info = Q.import_quantized(qmodel)
    lowered = pipeline.lower_model(stripped, keep_io_layout=True)
    model, _ = Q.prequantized_variant(lowered, info.ranges, info)
    convs = [op for op in model.subgraphs[0].operators if op.opcode == "CONV_2D"]
    np.testing.assert_allclose(convs[0].inputs[1].quantization.scale, consts["w1_scale"], 1e-6)
    assert convs[0].outputs[0].quantization.scale[0] == np.float32(consts["r1_scale"])
    zp = int(consts["r1_zero_point"])
    assert int(convs[0].outputs[0].quantization.zero_point[0]) == zp


# ---- QOperator and dynamic ------------------------------------------------------------------


def run_ort_default(qmodel, feeds):
    sess = ort.InferenceSession(qmodel.SerializeToString())
    return [sess.run(["y"], f)[0] for f in feeds]


@pytest.mark.parametrize("name", ["cnn", "matmul"])
def test_qoperator_graphs_expand_and_match(tmp_path, name):
    """Reference: onnxruntime running the QOperator definitions (the expanded graph at BASIC):
    its own QLinearConv/QLinearMatMul kernels saturate u8*s8 pair sums on x86 without VNNI
    (see test_qoperator_nodes_match_onnxruntime_kernels, which avoids that range)."""
    qmodel = quantized(MODELS[name](), tmp_path, "qop", False, QuantType.QUInt8)
    assert {n.op_type for n in qmodel.graph.node} & {"QLinearConv", "QLinearMatMul"}
    tflite, summary, share = convert(qmodel)
    assert share["integer"] == sum(share.values()) > 0
    expanded, info = expand_qoperators(qmodel)
    assert not {n.op_type for n in expanded.graph.node} & {"QLinearConv", "QLinearMatMul"}
    feeds = _samples(qmodel, 3, seed=1)
    assert sqnr(run_ort(expanded, feeds), run_litert(tflite, feeds)) >= 30.0


def _scalar(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.array(value, dtype), name)


def _qop_case(op):
    """(node, {input: uint8 shape}, initializers, output shape) of one QOperator node, with
    weights small enough (|q| <= 63) that onnxruntime's u8*s8 kernels cannot saturate."""
    rng = np.random.default_rng(7)
    ms = {"domain": "com.microsoft"}
    q = [_scalar("as", 0.05), _scalar("az", 120, np.uint8), _scalar("ys", 0.08)]
    q += [_scalar("yz", 110, np.uint8), _scalar("bs", 0.03), _scalar("bz", 140, np.uint8)]
    unary_in = {"a": (1, 4, 5, 5)}
    if op in ("QLinearAdd", "QLinearMul"):
        node = helper.make_node(op, ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"], **ms)
        return node, {"a": (1, 4, 5, 5), "b": (1, 4, 1, 5)}, q, (1, 4, 5, 5)
    if op in ("QLinearSigmoid", "QLinearLeakyRelu", "QLinearGlobalAveragePool"):
        extra = {"alpha": 0.2} if op == "QLinearLeakyRelu" else {}
        node = helper.make_node(op, ["a", "as", "az", "ys", "yz"], ["y"], **ms, **extra)
        out = (1, 4, 1, 1) if op == "QLinearGlobalAveragePool" else (1, 4, 5, 5)
        return node, unary_in, q, out
    if op == "QLinearAveragePool":
        node = helper.make_node(
            op, ["a", "as", "az", "ys", "yz"], ["y"], kernel_shape=[2, 2], strides=[1, 1], **ms
        )
        return node, unary_in, q, (1, 4, 4, 4)
    if op == "QLinearSoftmax":
        node = helper.make_node(op, ["a", "as", "az", "ys", "yz"], ["y"], axis=-1, opset=13, **ms)
        q[2], q[3] = _scalar("ys", 1 / 256), _scalar("yz", 0, np.uint8)
        return node, unary_in, q, (1, 4, 5, 5)
    if op == "QLinearConcat":
        node = helper.make_node(
            op, ["ys", "yz", "a", "as", "az", "b", "bs", "bz"], ["y"], axis=1, **ms
        )
        return node, {"a": (1, 4, 5, 5), "b": (1, 2, 5, 5)}, q, (1, 6, 5, 5)
    w = rng.integers(-63, 64, size=(6, 4, 3, 3) if op == "QLinearConv" else (20, 6))
    ws = _scalar("ws", 0.01)
    wz = _scalar("wz", 0, np.int8)
    bias = numpy_helper.from_array(rng.integers(-300, 300, 6).astype(np.int32), "bias")
    consts = [*q, numpy_helper.from_array(w.astype(np.int8), "w"), ws, wz, bias]
    if op == "QLinearConv":
        ins = ["a", "as", "az", "w", "ws", "wz", "ys", "yz", "bias"]
        return helper.make_node(op, ins, ["y"], pads=[1, 1, 1, 1]), unary_in, consts, (1, 6, 5, 5)
    if op == "QLinearMatMul":
        ins = ["a", "as", "az", "w", "ws", "wz", "ys", "yz"]
        return helper.make_node(op, ins, ["y"]), {"a": (3, 20)}, consts, (3, 6)
    ins = ["a", "as", "az", "w", "ws", "wz", "bias", "ys", "yz"]
    node = helper.make_node("QGemm", ins, ["y"], transB=0, **ms)
    return node, {"a": (3, 20)}, consts, (3, 6)


QOP_NODES = [
    "QLinearAdd",
    "QLinearMul",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearGlobalAveragePool",
    "QLinearAveragePool",
    "QLinearSoftmax",
    "QLinearConcat",
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
]


@pytest.mark.parametrize("op", QOP_NODES)
def test_qoperator_nodes_match_onnxruntime_kernels(op):
    """The expansion is each node's definition (checked against onnxruntime's kernel), and
    the converted integer model stays within two steps of it."""
    node, inputs, consts, out_shape = _qop_case(op)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.UINT8, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, out_shape)],
        consts,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    qmodel = helper.make_model(graph, opset_imports=opsets)
    rng = np.random.default_rng(8)
    feeds = [
        {n: rng.integers(0, 256, s).astype(np.uint8) for n, s in inputs.items()} for _ in range(3)
    ]
    expanded, info = expand_qoperators(qmodel)
    assert info.expanded and node.op_type not in {n.op_type for n in expanded.graph.node}
    kernel = run_ort_default(qmodel, feeds)
    definition = run_ort(expanded, feeds)
    for k, d in zip(kernel, definition, strict=True):
        assert np.max(np.abs(k.astype(np.int32) - d.astype(np.int32))) <= 1
    tflite, summary, share = convert(qmodel)
    # (a lone op between the float edge Q/DQ may stay float: exact either way)
    for k, t in zip(kernel, run_litert(tflite, feeds), strict=True):
        assert np.max(np.abs(k.astype(np.int32) - t.astype(np.int32))) <= 2


@pytest.mark.parametrize("name", list(MODELS))
def test_dynamic_graphs_keep_their_quantization(tmp_path, name):
    """The dynamic-range file of a quantize_dynamic model keeps the model's own quantization
    (``dynamic_range.lattice_products``): every product onnxruntime quantized reads its
    DynamicQuantizeLinear codes, on the int8 FULLY_CONNECTED of scale-1 weights or as a
    float32 product of exact integers, none re-quantized by the hybrid kernels."""
    from onnx2tflite_direct.quant import dynamic_range as D

    qmodel = quantized(MODELS[name](), tmp_path, "dynamic")
    assert {n.op_type for n in qmodel.graph.node} & {"ConvInteger", "MatMulInteger"}
    stripped, info = Q.import_quantized(qmodel)
    assert stripped is qmodel and info.mode == "dynamic"  # (the model itself is lowered)
    lowered = pipeline.lower_model(stripped, keep_io_layout=True)
    model, summary = Q.prequantized_variant(lowered, info.ranges, info)
    assert summary.mode == "dynamic"
    counts = D.product_counts(model)
    assert counts["integer"] == sum(counts.values()) == len(info.dynamic) > 0
    for row in summary.nodes:
        if row["onnx_node"].startswith(("ConvInteger:", "MatMulInteger:")):
            assert row["status"] == "integer" and "own dynamic quantization" in row["reason"]
    for sub in model.subgraphs:  # no weight was re-quantized (int8 weights have scale 1)
        for op in sub.operators:
            w = op.inputs[1] if op.opcode in MATMUL_LIKE else None
            if w is not None and w.quantization is not None:
                assert np.all(w.quantization.scale == 1.0), op.opcode
    # onnxruntime's own numbers, up to the float32 rounding of the float ops between the
    # integer chains (a global average pool's summation order here).
    feeds = _samples(qmodel, 3, seed=1)
    ref, act = run_ort(qmodel, feeds), run_litert(builder.build_flatbuffer(model), feeds)
    for r, a in zip(ref, act, strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6 * float(np.max(np.abs(r))))


# ---- strip_qdq details ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    scale=st.floats(2.0**-16, 10.0, allow_nan=False, allow_subnormal=False, width=32),
    zp=st.integers(0, 255),
    signed=st.booleans(),
)
def test_pair_range_gives_back_the_exact_scale_and_zero_point(scale, zp, signed):
    elem = TensorProto.INT8 if signed else TensorProto.UINT8
    zero_point = zp - 128 if signed else zp
    p = params_from_range(*Q.PairParams(scale, zero_point, elem).range, int16=False)
    assert p.scale == scale
    assert p.zero_point == zp - 128


def _qdq_by_hand(x_dtype, block_size=0):
    """x -> Q -> DQ -> MatMul(DQ(weights)) -> Q -> DQ -> y, optionally blocked weights."""
    rng = np.random.default_rng(3)
    np_dtype = np.int8 if x_dtype == TensorProto.INT8 else np.uint8
    zp = 3 if x_dtype == TensorProto.INT8 else 131
    wq = rng.integers(-127, 128, size=(8, 4)).astype(np.int8)
    wq[0] = 127  # every channel reaches 127, as onnxruntime's symmetric weights do: the
    # integer quantizer's max|w| / 127 then gives back the ONNX weight scales exactly
    w_scale = (
        rng.uniform(0.001, 0.01, size=(2, 4)) if block_size else rng.uniform(0.001, 0.01, size=4)
    ).astype(np.float32)
    dq_attrs = {"axis": 0 if block_size else 1}
    if block_size:
        dq_attrs["block_size"] = block_size
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
        numpy_helper.from_array(np.array(zp, np_dtype), "xz"),
        numpy_helper.from_array(wq, "wq"),
        numpy_helper.from_array(w_scale, "ws"),
        numpy_helper.from_array(np.array(0.01, np.float32), "ys"),
        numpy_helper.from_array(np.array(zp, np_dtype), "yz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], **dq_attrs),
        helper.make_node("MatMul", ["xd", "w"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "ys", "yz"], ["mq"]),
        helper.make_node("DequantizeLinear", ["mq", "ys", "yz"], ["y"]),
    ]
    return _model(nodes, [3, 8], [3, 4], inits, opset=21)


@pytest.mark.parametrize("x_dtype", [TensorProto.INT8, TensorProto.UINT8])
def test_hand_written_qdq_output_pair_renamed_and_exact_lattice(x_dtype):
    qmodel = _qdq_by_hand(x_dtype)
    stripped, info = Q.import_quantized(qmodel)
    assert {n.op_type for n in stripped.graph.node} == {"MatMul"}
    assert stripped.graph.node[0].output[0] == "y"
    zp = 3 if x_dtype == TensorProto.INT8 else 131
    assert info.activations["y"] == Q.PairParams(float(np.float32(0.01)), zp, x_dtype)
    tflite, summary, share = convert(qmodel)
    assert share == {"integer": 1, "hybrid": 0, "float": 0}
    feeds = _samples(qmodel, 4, seed=1)
    ref, act = run_ort(qmodel, feeds), run_litert(tflite, feeds)
    steps = max(np.max(np.abs(r - a)) for r, a in zip(ref, act, strict=True)) / 0.01
    assert steps <= 1.0 + 1e-4


def test_blocked_weights_stay_float_with_a_reason():
    qmodel = _qdq_by_hand(TensorProto.INT8, block_size=4)
    stripped, info = Q.import_quantized(qmodel)
    assert any("block_size" in k["reason"] for k in info.kept)
    tflite, summary, share = convert(qmodel)
    assert share == {"integer": 0, "hybrid": 0, "float": 1}
    matmul = next(n for n in summary.nodes if n["status"] == "float")
    assert matmul["reason"]
    feeds = _samples(qmodel, 3, seed=1)
    ref, act = run_ort(qmodel, feeds), run_litert(tflite, feeds)
    steps = max(np.max(np.abs(r - a)) for r, a in zip(ref, act, strict=True)) / 0.01
    assert steps <= 1.0 + 1e-4


def test_lone_integer_io_becomes_integer_edges():
    """QOperator node with integer graph I/O (no pair anywhere): DQ / Q at the edges."""
    rng = np.random.default_rng(4)
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
        numpy_helper.from_array(rng.integers(0, 256, (4, 3, 3, 3)).astype(np.uint8), "w"),
        numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
        numpy_helper.from_array(np.array(127, np.uint8), "wz"),
        numpy_helper.from_array(np.array(0.2, np.float32), "ys"),
        numpy_helper.from_array(np.array(120, np.uint8), "yz"),
    ]
    node = helper.make_node(
        "QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], pads=[1] * 4
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 4, 5, 5])],
        inits,
    )
    qmodel = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    expanded, info = expand_qoperators(qmodel)
    assert [n.op_type for n in expanded.graph.node] == [
        "DequantizeLinear",
        "Conv",
        "QuantizeLinear",
    ]
    tflite, summary, share = convert(qmodel)
    x = np.random.default_rng(5).integers(0, 256, (1, 3, 5, 5)).astype(np.uint8)
    ref = ort.InferenceSession(qmodel.SerializeToString()).run(["y"], {"x": x})[0]
    act = run_litert(tflite, [{"x": x}])[0]
    assert np.max(np.abs(ref.astype(np.int32) - act.astype(np.int32))) <= 2


@pytest.mark.parametrize("io_dtype", ["int8", "uint8"])
def test_full_integer_io_uses_the_onnx_input_and_output_lattices(tmp_path, io_dtype):
    from types import SimpleNamespace

    from ai_edge_litert.interpreter import Interpreter

    qmodel = quantized(cnn_model(), tmp_path, "qdq")
    consts = {i.name: numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    options = SimpleNamespace(
        full_integer=True, input_quant_dtype=io_dtype, output_quant_dtype=io_dtype
    )
    tflite, summary, _ = convert(qmodel, options=options)
    interp = Interpreter(model_content=tflite)
    runner = interp.get_signature_runner()
    (x_detail,) = runner.get_input_details().values()
    (y_detail,) = runner.get_output_details().values()
    assert np.dtype(x_detail["dtype"]).name == io_dtype == np.dtype(y_detail["dtype"]).name
    shift = 128 if io_dtype == "uint8" else 0
    x_scale = x_detail["quantization_parameters"]["scales"][0]
    x_zp = int(x_detail["quantization_parameters"]["zero_points"][0])
    assert x_scale == np.float32(consts["x_scale"]) and x_zp == int(consts["x_zero_point"]) + shift
    feeds = _samples(qmodel, 3, seed=1)
    info = np.iinfo(io_dtype)
    actual = []
    for f in feeds:
        xq = np.clip(np.rint(f["x"] / x_scale) + x_zp, info.min, info.max).astype(io_dtype)
        yq = runner(x=xq)["y"].astype(np.float32)
        params = y_detail["quantization_parameters"]
        actual.append((yq - params["zero_points"][0]) * params["scales"][0])
    assert sqnr(run_ort(qmodel, feeds), actual) >= 30.0


def test_data_moving_ops_on_quantized_tensors_join_the_pairs():
    """Q -> Transpose (on int8) -> DQ: the Transpose moves to float between two pairs."""
    rng = np.random.default_rng(9)
    w = rng.integers(-127, 128, size=(8, 6)).astype(np.int8)
    w[0] = 127
    inits = [
        _scalar("xs", 0.02),
        _scalar("xz", -5, np.int8),
        numpy_helper.from_array(w, "wq"),
        _scalar("ws", 0.004),
        _scalar("ys", 0.05),
        _scalar("yz", 2, np.int8),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("Transpose", ["xq"], ["xt"], perm=[1, 0]),
        helper.make_node("DequantizeLinear", ["xt", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"]),
        helper.make_node("MatMul", ["xd", "w"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "ys", "yz"], ["mq"]),
        helper.make_node("DequantizeLinear", ["mq", "ys", "yz"], ["y"]),
    ]
    qmodel = _model(nodes, [8, 5], [5, 6], inits)
    assert Q.is_prequantized(qmodel)
    stripped, info = Q.import_quantized(qmodel)
    assert {n.op_type for n in stripped.graph.node} == {"Transpose", "MatMul"}
    tflite, summary, share = convert(qmodel)
    assert share == {"integer": 1, "hybrid": 0, "float": 0}
    feeds = _samples(qmodel, 3, seed=1)
    ref, act = run_ort(qmodel, feeds), run_litert(tflite, feeds)
    assert max(np.max(np.abs(r - a)) for r, a in zip(ref, act, strict=True)) <= 0.05 + 1e-6


def test_dynamic_model_with_quantized_embedding_stays_dynamic(tmp_path):
    """quantize_dynamic also quantizes Gather tables (Gather -> DequantizeLinear): that lone
    DQ keeps its exact float lowering, the MatMul runs hybrid."""
    rng = np.random.default_rng(10)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["eq"]),
        helper.make_node("DequantizeLinear", ["eq", "ts", "tz"], ["e"]),
        helper.make_node("MatMul", ["e", "w"], ["y"]),
    ]
    table = rng.integers(-128, 128, (20, 16)).astype(np.int8)
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 8])],
        [
            numpy_helper.from_array(table, "table"),
            _scalar("ts", 0.01),
            _scalar("tz", 3, np.int8),
            _init(rng, "w", [16, 8], 0.4),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    qmodel = quantized(model, tmp_path, "dynamic")
    assert "DequantizeLinear" in {n.op_type for n in qmodel.graph.node}
    tflite, summary, share = convert(qmodel)
    assert summary.mode == "dynamic"
    assert share["hybrid"] == sum(share.values()) == 1
    feeds = [{"ids": rng.integers(0, 20, (2, 5)).astype(np.int64)} for _ in range(3)]
    ref = [ort.InferenceSession(model.SerializeToString()).run(["y"], f)[0] for f in feeds]
    assert sqnr(ref, run_litert(tflite, feeds)) >= 30.0


def conv_bn_model():
    """Conv -> BatchNormalization (gammas over a 30x spread) -> Relu -> Conv -> BN, as the
    exporters write a ResNet; quantize_static puts a Q/DQ pair between each Conv and its BN."""
    rng = np.random.default_rng(7)
    nodes, inits = [], []
    x = "x"
    for k, (cin, cout) in enumerate(((3, 8), (8, 8))):
        nodes.append(helper.make_node("Conv", [x, f"w{k}"], [f"c{k}"], pads=[1, 1, 1, 1]))
        bn_out = "y" if k == 1 else f"n{k}"
        names = [f"s{k}", f"b{k}", f"m{k}", f"v{k}"]
        nodes.append(helper.make_node("BatchNormalization", [f"c{k}", *names], [bn_out]))
        inits.append(_init(rng, f"w{k}", [cout, cin, 3, 3], 0.4))
        stats = (
            np.geomspace(0.05, 1.5, cout),
            rng.normal(0, 0.1, cout),
            rng.normal(0, 0.1, cout),
            rng.uniform(0.5, 1.5, cout),
        )
        inits += [
            numpy_helper.from_array(v.astype(np.float32), n)
            for v, n in zip(stats, names, strict=True)
        ]
        if k == 0:
            nodes.append(helper.make_node("Relu", ["n0"], ["r0"]))
            x = "r0"
    return _model(nodes, [1, 3, 8, 8], [1, 8, 8, 8], inits)


@pytest.mark.parametrize("per_channel", [False, True])
def test_batchnorm_after_a_conv_pair_keeps_the_conv_rounding(tmp_path, per_channel):
    """The BN is not folded into the Conv (that would drop the Conv output's rounding): the
    Conv writes its own int8 lattice with the ONNX weight scale, the BN runs in float32 as
    onnxruntime's kernel computes it (MUL then ADD, no fused multiply-add) and is rounded by
    DIV + ROUND before the QUANTIZE; the output then agrees with the ONNX semantics except
    where a convolution's exact integer sum and onnxruntime's float32 sum round a near-tie
    differently (one step, rare)."""
    qmodel = quantized(conv_bn_model(), tmp_path, "qdq", per_channel, QuantType.QUInt8)
    consts = {i.name: numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    tflite, summary, share = convert(qmodel)
    assert share["integer"] == sum(share.values()) == 2
    stripped, info = Q.import_quantized(qmodel)
    lowered = pipeline.lower_model(stripped, keep_io_layout=True)
    model, _ = Q.prequantized_variant(lowered, info.ranges, info)
    ops = model.subgraphs[0].operators
    convs = [op for op in ops if op.opcode == "CONV_2D"]
    assert len(convs) == 2 and not any(op.opcode == "DEPTHWISE_CONV_2D" for op in ops)
    bn_ops = [op.opcode for op in ops if op.onnx_node in info.affine]
    assert len(info.affine) == 2 and bn_ops.count("ROUND") == bn_ops.count("MUL") - 2 == 2
    if not per_channel:
        w_scale = convs[0].inputs[1].quantization.scale
        assert w_scale.size == 1 and np.float32(w_scale[0]) == np.float32(consts["w0_scale"])
    c_scale = float(convs[0].outputs[0].quantization.scale[0])
    assert np.float32(c_scale) == np.float32(consts["c0_scale"])
    feeds = _samples(qmodel, 4, seed=3)
    step = float(consts["y_scale"])
    ref = np.stack(run_ort(qmodel, feeds))
    act = np.stack(run_litert(tflite, feeds))
    assert np.max(np.abs(ref - act)) <= step * 1.01
    assert np.mean(np.abs(ref - act) > step / 2) < 0.002


def silu_concat_model():
    """Conv -> SiLU (x * sigmoid(x)) twice, the two branches concatenated (different
    lattices), as a YOLO C2f block writes it."""
    rng = np.random.default_rng(11)
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c0"], ["s0"]),
        helper.make_node("Mul", ["c0", "s0"], ["m0"]),
        helper.make_node("Conv", ["m0", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c1"], ["s1"]),
        helper.make_node("Mul", ["c1", "s1"], ["m1"]),
        helper.make_node("Concat", ["m0", "m1"], ["y"], axis=1),
    ]
    inits = [
        _init(rng, "w0", [8, 3, 3, 3], 0.5),
        _init(rng, "b0", [8], 0.1),
        _init(rng, "w1", [8, 8, 3, 3], 0.3),
        _init(rng, "b1", [8], 0.1),
    ]
    return _model(nodes, [1, 3, 10, 10], [1, 16, 10, 10], inits)


@pytest.mark.parametrize("activation", [QuantType.QInt8, QuantType.QUInt8])
def test_fixed_lattice_kernels_and_requantizations_follow_the_onnx_rounding(tmp_path, activation):
    """A Sigmoid whose Q chose another lattice than the int8 LOGISTIC's fixed 1/256 runs
    float between the DEQUANTIZE and an exactly rounded QUANTIZE (not rounded twice), and the
    concatenation's rescales go through float (XNNPACK's int8 -> int8 conversion applies the
    scale ratio with 8 fractional bits): the output agrees with the ONNX semantics except at
    rare near-ties, one step at most."""
    qmodel = quantized(silu_concat_model(), tmp_path, "qdq", False, activation)
    consts = {i.name: numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    assert not np.isclose(float(consts["s0_scale"]), 1 / 256)
    stripped, info = Q.import_quantized(qmodel)
    lowered = pipeline.lower_model(stripped, keep_io_layout=True)
    model, summary = Q.prequantized_variant(lowered, info.ranges, info)
    ops = model.subgraphs[0].operators
    logistic = [op for op in ops if op.opcode == "LOGISTIC"]
    assert len(logistic) == 2 and all(op.inputs[0].dtype == np.float32 for op in logistic)
    quantize = [op for op in ops if op.opcode == "QUANTIZE"]
    assert all(op.inputs[0].dtype == np.float32 for op in quantize)  # no int8 -> int8
    assert summary.requantized_at  # the concatenation rescales one input at least
    tflite = builder.build_flatbuffer(model)
    feeds = _samples(qmodel, 4, seed=5)
    step = float(consts["y_scale"])
    ref = np.stack(run_ort(qmodel, feeds))
    act = np.stack(run_litert(tflite, feeds))
    assert np.max(np.abs(ref - act)) <= step * 1.01
    assert np.mean(np.abs(ref - act) > step / 2) < 0.002


def fire_model():
    """SqueezeNet's fire module: a squeeze conv, then 1x1 and 3x3 expand convs (+ Relu) whose
    outputs only the concatenation reads."""
    rng = np.random.default_rng(13)
    nodes = [
        helper.make_node("Conv", ["x", "ws", "bs"], ["s"]),
        helper.make_node("Relu", ["s"], ["rs"]),
        helper.make_node("Conv", ["rs", "w1", "b1"], ["e1"]),
        helper.make_node("Relu", ["e1"], ["r1"]),
        helper.make_node("Conv", ["rs", "w3", "b3"], ["e3"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["e3"], ["r3"]),
        helper.make_node("Concat", ["r1", "r3"], ["y"], axis=1),
    ]
    inits = [
        _init(rng, "ws", [4, 6, 1, 1], 0.5),
        _init(rng, "bs", [4], 0.1),
        _init(rng, "w1", [8, 4, 1, 1], 0.3),
        _init(rng, "b1", [8], 0.1),
        _init(rng, "w3", [8, 4, 3, 3], 0.4),
        _init(rng, "b3", [8], 0.1),
    ]
    return _model(nodes, [1, 6, 8, 8], [1, 16, 8, 8], inits)


@pytest.mark.parametrize("make", [fire_model, silu_concat_model])
def test_every_tensor_keeps_its_own_onnx_lattice(tmp_path, make):
    """A tensor with its own Q/DQ pair is written on that lattice, even when it feeds a
    concatenation whose lattice differs (writing the concatenation's lattice directly would
    skip the model's rounding onto its own: squeezenet's fire modules, 10 % of an expand
    convolution's outputs one step off); the rescale onto the shared lattice follows."""
    qmodel = quantized(make(), tmp_path, "qdq", False, QuantType.QUInt8)
    stripped, info = Q.import_quantized(qmodel)
    lowered = pipeline.lower_model(stripped, keep_io_layout=True)
    model, _ = Q.prequantized_variant(lowered, info.ranges, info)
    checked = 0
    for op in model.subgraphs[0].operators:
        for t in op.outputs:
            name = t.name.removesuffix("/int8")
            if name in info.ranges and t.dtype == np.int8 and op.opcode != "QUANTIZE":
                want = params_from_range(*info.ranges[name], False)
                assert np.float32(t.quantization.scale[0]) == np.float32(want.scale), name
                assert int(t.quantization.zero_point[0]) == want.zero_point, name
                checked += 1
    assert checked >= 4
    tflite = builder.build_flatbuffer(model)
    feeds = _samples(qmodel, 4, seed=6)
    step = float(
        numpy_helper.to_array(next(i for i in qmodel.graph.initializer if i.name == "y_scale"))
    )
    ref = np.stack(run_ort(qmodel, feeds))
    act = np.stack(run_litert(tflite, feeds))
    assert np.max(np.abs(ref - act)) <= step * 1.01
    assert np.mean(np.abs(ref - act) > step / 2) < 0.002


def test_sum_of_two_activations_runs_float_between_the_lattices(tmp_path):
    """An Add of two quantized activations runs as onnxruntime computes Q(DQ(a) + DQ(b)):
    float between the DEQUANTIZEs and an exactly rounded QUANTIZE (XNNPACK's int8 ADD
    rescales each input with a coarse fixed-point multiplier); an Add of a constant (a bias)
    and the convolutions stay integer."""
    qmodel = quantized(cnn_model(), tmp_path, "qdq", False, QuantType.QUInt8)
    stripped, info = Q.import_quantized(qmodel)
    lowered = pipeline.lower_model(stripped, keep_io_layout=True)
    model, summary = Q.prequantized_variant(lowered, info.ranges, info)
    adds = [op for op in model.subgraphs[0].operators if op.opcode == "ADD"]
    assert adds and all(t.dtype == np.float32 for op in adds for t in op.inputs)
    status = {n["onnx_node"]: n for n in summary.nodes}
    add = next(n for n in status.values() if "ADD" in n["ops"])
    assert add["status"] == "float" and "sum of two activations" in add["reason"]
    assert all(n["status"] == "integer" for n in status.values() if "CONV_2D" in n["ops"])
    tflite = builder.build_flatbuffer(model)
    feeds = _samples(qmodel, 4, seed=8)
    step = float(
        numpy_helper.to_array(next(i for i in qmodel.graph.initializer if i.name == "y_scale"))
    )
    ref = np.stack(run_ort(qmodel, feeds))
    act = np.stack(run_litert(tflite, feeds))
    assert np.max(np.abs(ref - act)) <= step * 1.01
    assert np.mean(np.abs(ref - act) > step / 2) < 0.01
