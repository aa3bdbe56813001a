"""Integers carried as float32 (``float_carried.py``, rule ``float_carried_integers``).

quantize_dynamic graphs (DynamicQuantizeLinear -> MatMulInteger/ConvInteger -> Cast -> Mul) run
as float ops XNNPACK takes. Every test compares LiteRT with onnxruntime on seeded realistic
inputs and real-sized reductions (768-4096 products). The activation quantization is
bit-identical; the accumulation is a float32 sum of exact integer products, so the outputs
agree within the float32 rounding of that sum (the bound in ``docs/ops.md``). The integer-exact
lowering stays where a value must remain an integer, and with the rule switched off.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from harness import check_conversion, make_model
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V

ROOT = Path(__file__).resolve().parents[1]
F = np.float32
RULE = "float_carried_integers"
# Ops the integer-exact path needs and XNNPACK does not take.
INTEGER_PATH_OPS = ("CAST", "EQUAL", "SELECT_V2")
# The comparison rule of the corpus (tools/zoo: rtol 1e-3, atol 1e-5 of the output's scale):
# the float32 accumulation differs from onnxruntime's exact int32 sum by a few float32 ulps of
# the sum of absolute products at most (docs/ops.md), far inside it.
ATOL, RTOL = 1e-5, 1e-3


def _rules(res) -> dict[str, int]:
    return {r["rule"]: r["matched"] for r in res.report["rewrites"]}


def _quantized(tmp_path, model, per_channel: bool, weight_type) -> onnx.ModelProto:
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, str(src))
    quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=weight_type)
    return onnx.load(str(dst))


def _mlp(k: int, seed: int) -> onnx.ModelProto:
    """Two MatMuls (K = k, then 4k) with a GELU-ish activation between: transformer FFN sized."""
    rng = np.random.default_rng(seed)
    inits = {
        "w1": (rng.standard_normal((k, 4 * k)) / np.sqrt(k)).astype(F),
        "b1": (rng.standard_normal(4 * k) * 0.1).astype(F),
        "w2": (rng.standard_normal((4 * k, k)) / np.sqrt(4 * k)).astype(F),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Sigmoid", ["hb"], ["g"]),
        helper.make_node("Mul", ["hb", "g"], ["a"]),
        helper.make_node("MatMul", ["a", "w2"], ["y"]),
    ]
    return make_model(nodes, [("x", F, (2, 8, k))], [("y", F, (2, 8, k))], inits, opset=17)


def _cnn(c: int, seed: int) -> onnx.ModelProto:
    """3x3 convs with c*9 = 288..1152-product reductions, a depthwise one and a pointwise one."""
    rng = np.random.default_rng(seed)
    inits = {
        "w1": (rng.standard_normal((c, 3, 3, 3)) * 0.3).astype(F),
        "b1": (rng.standard_normal(c) * 0.1).astype(F),
        "w2": (rng.standard_normal((2 * c, c, 3, 3)) / np.sqrt(9 * c)).astype(F),
        "wd": (rng.standard_normal((2 * c, 1, 3, 3)) * 0.3).astype(F),
        "w3": (rng.standard_normal((c, 2 * c, 1, 1)) / np.sqrt(2 * c)).astype(F),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1] * 4, strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "wd"], ["c3"], pads=[1] * 4, group=2 * c),
        helper.make_node("Conv", ["c3", "w3"], ["y"]),
    ]
    return make_model(nodes, [("x", F, (1, 3, 16, 16))], [("y", F, (1, c, 8, 8))], inits, opset=17)


def _feeds(model, seed: int, spread: float = 2.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = model.graph.input[0]
    shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    return {x.name: (rng.standard_normal(shape) * spread).astype(F)}


def _assert_float_path(chk, count: int | None = None) -> None:
    rules = _rules(chk.result)
    assert rules[RULE] >= 1, rules
    if count is not None:
        assert rules[RULE] == count, rules
    leftover = {op: chk.ops[op] for op in INTEGER_PATH_OPS if chk.ops.get(op)}
    assert not leftover, leftover


@pytest.mark.parametrize("k", [192, 768])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("weight_type", [QuantType.QInt8, QuantType.QUInt8])
def test_quantize_dynamic_matmul_matches_onnxruntime(tmp_path, k, per_channel, weight_type):
    """K = 768 and 3072 products (the second MatMul reads 4k): exact-integer partial sums
    pass 2**24 there for worst-case operands; realistic ones agree within the bound."""
    model = _mlp(k, seed=k)
    qmodel = _quantized(tmp_path, model, per_channel, weight_type)
    chk = check_conversion(qmodel, _feeds(qmodel, 1), atol=ATOL, rtol=RTOL)
    _assert_float_path(chk)
    assert chk.ops["FULLY_CONNECTED"] + chk.ops.get("BATCH_MATMUL", 0) == 2


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("weight_type", [QuantType.QInt8, QuantType.QUInt8])
def test_quantize_dynamic_conv_matches_onnxruntime(tmp_path, per_channel, weight_type):
    model = _cnn(128, seed=5)
    qmodel = _quantized(tmp_path, model, per_channel, weight_type)
    chk = check_conversion(qmodel, _feeds(qmodel, 2), atol=ATOL, rtol=RTOL)
    _assert_float_path(chk)
    # (the 1x1 conv from 2c >= 48 channels: im2col rows on the int8 FULLY_CONNECTED)
    convs = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
    assert sum(chk.ops.get(op, 0) for op in convs) == 4


def _partitions(tflite: bytes) -> tuple[int, dict]:
    """(XNNPACK partitions, ops left outside) as benchmarks/bench_partitions.py counts them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_partitions import count_partitions

    counted = count_partitions(tflite)
    return counted["partitions"], counted["outside"]


@pytest.mark.parametrize("net", ["mlp", "cnn", "cnn1d"])
@pytest.mark.parametrize("weight_type", [QuantType.QInt8, QuantType.QUInt8])
def test_one_xnnpack_partition_and_int8_weights(tmp_path, net, weight_type):
    """The whole float-carried graph is one XNNPACK partition. A 2-D conv's 8-bit filter
    stays 8-bit in the file (an int8 DEQUANTIZE of a constant, unpacked once; uint8 moved to
    int8, since XNNPACK leaves a conv on a dequantized uint8 filter outside); a 1-D conv's
    (reshaped: XNNPACK would not see it as static) is a float32 constant; MatMul weights are
    int8 constants of the exact dynamically quantized FULLY_CONNECTED (no DEQUANTIZE)."""
    model = {"mlp": lambda: _mlp(256, seed=17), "cnn": lambda: _cnn(32, seed=18)}.get(net)
    model = model() if model else _cnn1d(seed=19)
    qmodel = _quantized(tmp_path, model, False, weight_type)
    chk = check_conversion(qmodel, _feeds(qmodel, 20), atol=ATOL, rtol=RTOL)
    _assert_float_path(chk)
    assert _partitions(chk.tflite_bytes) == (1, {})
    assert bool(chk.ops.get("DEQUANTIZE")) == (net == "cnn"), chk.ops
    stored = [t for t in _constant_types(chk.tflite_bytes) if t in ("INT8", "UINT8")]
    assert stored == (["INT8"] * len(stored)) and bool(stored) == (net != "cnn1d"), stored
    if net == "mlp":
        assert chk.ops["FULLY_CONNECTED"] == 2


def _constant_types(tflite: bytes) -> list[str]:
    """The element type of every constant tensor of the main subgraph."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    sg = schema.Model.GetRootAs(tflite, 0).Subgraphs(0)
    model = schema.Model.GetRootAs(tflite, 0)
    out = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        if t.Buffer() and model.Buffers(t.Buffer()).DataLength():
            out.append(names[t.Type()])
    return out


def _cnn1d(seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = {
        "w1": (rng.standard_normal((32, 4, 9)) * 0.3).astype(F),
        "w2": (rng.standard_normal((32, 8, 5)) * 0.2).astype(F),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["y"], group=4, pads=[2, 2]),
    ]
    return make_model(nodes, [("x", F, (1, 4, 200))], [("y", F, (1, 32, 96))], inits, opset=17)


def test_switched_off_keeps_the_integer_exact_lowering(tmp_path):
    qmodel = _quantized(tmp_path, _mlp(768, seed=3), False, QuantType.QInt8)
    feeds = _feeds(qmodel, 4)
    off = check_conversion(qmodel, feeds, atol=ATOL, rtol=RTOL, disable_rewrites=(RULE,))
    assert _rules(off.result).get(RULE, 0) == 0
    assert off.ops["CAST"] > 0  # the int32-exact path: uint8/int32 tensors and digit splits
    on = check_conversion(qmodel, feeds, atol=ATOL, rtol=RTOL)
    _assert_float_path(on)
    # Both agree with onnxruntime; with each other within the same bound.
    for name, e in off.validation.actual.items():
        a = on.validation.actual[name]
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL * max(1.0, np.abs(e).max()))


def _dql_matmul(k: int, n: int, extra_outputs=(), rows: int = 4, w=None):
    """Hand-written DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(scale) graph."""
    rng = np.random.default_rng(k + n)
    if w is None:
        w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(0.004, F), "w_scale"),
    ]
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "w", "xz", "w_zp"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["acc_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xs", "w_scale"], ["s"]),
        helper.make_node("Mul", ["acc_f", "s"], ["y"]),
    ]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])]
    types = {"xq": TensorProto.UINT8, "xs": TensorProto.FLOAT, "xz": TensorProto.UINT8}
    types["acc"] = TensorProto.INT32
    shapes = {"xq": [rows, k], "xs": [], "xz": [], "acc": [rows, n]}
    outs += [helper.make_tensor_value_info(o, types[o], shapes[o]) for o in extra_outputs]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])], outs, inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("k", [1024, 4096])
def test_hand_written_chain_long_reductions(k):
    model = _dql_matmul(k, 64)
    chk = check_conversion(model, _feeds(model, 7, spread=3.0), atol=ATOL, rtol=RTOL)
    _assert_float_path(chk, count=3)  # DQL, MatMulInteger and the Cast that disappears
    assert chk.ops["FULLY_CONNECTED"] == 1


def test_integer_outputs_keep_the_exact_path():
    """The quantized activation and the int32 accumulator as graph outputs: those values must
    stay integers (bit-exact: compared for equality), so nothing is carried as float."""
    model = _dql_matmul(768, 32, extra_outputs=("xq", "xz", "acc"))
    chk = check_conversion(model, _feeds(model, 8), atol=ATOL, rtol=RTOL)
    assert _rules(chk.result).get(RULE, 0) == 0
    for name in ("xq", "xz", "acc"):
        assert chk.validation.actual[name].dtype == chk.validation.expected[name].dtype


def test_quantized_activation_as_output_and_as_matmul_operand():
    """y is a uint8 graph output (kept an integer, compared exactly) and also read by the
    MatMulInteger, which still runs in float on an exact CAST of it; the accumulator is only
    read as float, so the Cast after it disappears."""
    model = _dql_matmul(1024, 32, extra_outputs=("xq",))
    chk = check_conversion(model, _feeds(model, 23), atol=ATOL, rtol=RTOL)
    assert _rules(chk.result)[RULE] == 2  # MatMulInteger and its Cast; not the DQL
    assert chk.ops["FULLY_CONNECTED"] == 1 and not chk.ops.get("FLOOR")
    np.testing.assert_array_equal(chk.validation.actual["xq"], chk.validation.expected["xq"])


@pytest.mark.parametrize("disabled", [(), (RULE,)])
def test_scale_output_and_all_zero_input(disabled):
    """y_scale is 1.0 when the input range is empty (onnxruntime's GetQuantizationParameter),
    selected without EQUAL/SELECT_V2, on both paths; a graph output there is compared
    exactly."""
    model = _dql_matmul(256, 16, extra_outputs=("xs",))
    for feeds in ({"x": np.zeros((4, 256), F)}, _feeds(model, 9)):
        chk = check_conversion(model, feeds, atol=0.0, rtol=RTOL, disable_rewrites=disabled)
        if not disabled:
            _assert_float_path(chk)
        assert not chk.ops.get("EQUAL") and not chk.ops.get("SELECT_V2")
        np.testing.assert_array_equal(chk.validation.actual["xs"], chk.validation.expected["xs"])


def _ties(rows: int, k: int, seed: int) -> np.ndarray:
    """Inputs on exact x / scale half-way points of the lattice [-3, 5] / 255."""
    rng = np.random.default_rng(seed)
    lo, hi = F(-3.0), F(5.0)
    scale = F((hi - lo) / F(255))
    halves = (rng.integers(-70, 120, (rows, k)).astype(F) + F(0.5)) * scale
    x = np.clip(halves.astype(F), lo, hi)
    x[0, 0], x[0, 1] = lo, hi
    return x


@pytest.mark.parametrize("inputs", ["ties", "normal", "skewed"])
def test_activation_quantization_is_bit_identical(inputs):
    """With identity weights the output is float(q - zp) * (x_scale * w_scale): every
    quantized value, the scale and the zero point show through exactly, so LiteRT must equal
    onnxruntime bit for bit. On half-way points onnxruntime divides and rounds half to even
    (a multiply by 1 / scale would round ~30% of these the other way)."""
    rows, k = 4, 512
    model = _dql_matmul(k, k, rows=rows, w=np.eye(k, dtype=np.int8))
    rng = np.random.default_rng(16)
    x = {
        "ties": _ties(rows, k, 11),
        "normal": (rng.standard_normal((rows, k)) * 2).astype(F),
        "skewed": (rng.random((rows, k)) * 7 + 0.25).astype(F),  # all positive: zero point 0
    }[inputs]
    chk = check_conversion(model, {"x": x}, atol=0.0, rtol=0.0)
    _assert_float_path(chk)


def test_rounding_ties_with_a_real_reduction():
    model = _dql_matmul(512, 16)
    chk = check_conversion(model, {"x": _ties(4, 512, 12)}, atol=ATOL, rtol=RTOL)
    _assert_float_path(chk)


def _contrib_model(op: str, k: int, n: int, bias: bool):
    rng = np.random.default_rng(k)
    w = rng.integers(0, 256, (k, n)).astype(np.uint8)
    inits = [
        numpy_helper.from_array(w, "b"),
        numpy_helper.from_array((rng.random(n) * 0.01 + 0.001).astype(F), "b_scale"),
        numpy_helper.from_array(rng.integers(100, 156, n).astype(np.uint8), "b_zp"),
        numpy_helper.from_array((rng.standard_normal(n) * 0.5).astype(F), "bias"),
    ]
    ms = "com.microsoft"
    if op == "DynamicQuantizeMatMul":
        ins = ["x", "b", "b_scale", "b_zp", "bias" if bias else ""]
        nodes = [helper.make_node(op, ins, ["y"], domain=ms)]
    else:
        ins = ["xq", "b", "xs", "b_scale", "xz", "b_zp", "bias" if bias else ""]
        nodes = [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
            helper.make_node(op, ins, ["y"], domain=ms),
        ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, n])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)]
    return helper.make_model(graph, opset_imports=opsets)


@pytest.mark.parametrize("op", ["DynamicQuantizeMatMul", "MatMulIntegerToFloat"])
@pytest.mark.parametrize("bias", [False, True])
def test_contrib_ops_per_column_uint8(op, bias):
    """onnxruntime's fused forms, per-column uint8 weights with zero points, K = 1536."""
    model = _contrib_model(op, 1536, 48, bias)
    chk = check_conversion(model, _feeds(model, 12), atol=ATOL, rtol=RTOL)
    _assert_float_path(chk)


def test_matmul_integer_to_float_on_a_uint8_graph_input():
    """A not produced in the graph (a uint8 input, read through one exact CAST) with [1]-shaped
    constant scale and zero point; K = 2048."""
    rng = np.random.default_rng(22)
    k, n = 2048, 40
    inits = [
        numpy_helper.from_array(rng.integers(-127, 128, (k, n)).astype(np.int8), "b"),
        numpy_helper.from_array(np.array([0.02], F), "a_scale"),
        numpy_helper.from_array((rng.random(n) * 0.01 + 0.001).astype(F), "b_scale"),
        numpy_helper.from_array(np.array([121], np.uint8), "a_zp"),
    ]
    ins = ["a", "b", "a_scale", "b_scale", "a_zp"]
    node = helper.make_node("MatMulIntegerToFloat", ins, ["y"], domain="com.microsoft")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [3, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, n])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    feeds = {"a": rng.integers(0, 256, (3, k)).astype(np.uint8)}
    chk = check_conversion(model, feeds, atol=ATOL, rtol=RTOL)
    assert _rules(chk.result)[RULE] == 1
    assert chk.ops["CAST"] == 1  # the uint8 input, once


def _ddddocr_style_bias():
    """An older quantize_dynamic export: the float bias quantized at run time onto the
    accumulator's lattice (Floor(b / (x_scale * w_scale)) -> Cast int32), added in int32."""
    rng = np.random.default_rng(21)
    c, o = 32, 48
    w = rng.integers(0, 256, (o, c, 3, 3)).astype(np.uint8)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array(131, np.uint8), "w_zp"),
        numpy_helper.from_array(np.array(0.003, F), "w_scale"),
        numpy_helper.from_array((rng.standard_normal(o) * 0.3).astype(F), "b"),
        numpy_helper.from_array(np.array([1, o, 1, 1], np.int64), "b_shape"),
    ]
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("Mul", ["xs", "w_scale"], ["s"]),
        helper.make_node("Div", ["b", "s"], ["bq_f"]),
        helper.make_node("Floor", ["bq_f"], ["bq_r"]),
        helper.make_node("Cast", ["bq_r"], ["bq"], to=TensorProto.INT32),
        helper.make_node("Reshape", ["bq", "b_shape"], ["bq4"]),
        helper.make_node("ConvInteger", ["xq", "w", "xz", "w_zp"], ["acc"], pads=[1] * 4),
        helper.make_node("Add", ["acc", "bq4"], ["acc_b"]),
        helper.make_node("Cast", ["acc_b"], ["acc_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["acc_f", "s"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, o, 12, 12])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_int32_bias_chain_is_carried():
    model = _ddddocr_style_bias()
    chk = check_conversion(model, _feeds(model, 13), atol=ATOL, rtol=RTOL)
    _assert_float_path(chk)
    assert chk.ops["CONV_2D"] == 1


def test_dynamic_range_variant_still_builds_from_the_int8_weights(tmp_path):
    qmodel = _quantized(tmp_path, _mlp(384, seed=14), False, QuantType.QInt8)
    res = convert(qmodel, quantize=("dynamic",))
    dyn = res.variants["dynamic_range_quant"]
    val = V.validate(res.model, dyn, res.report["io"], _feeds(qmodel, 15), atol=1.0)
    (metrics,) = val.outputs.values()
    assert metrics["shape_match"] and metrics["sqnr_db"] >= 25.0, metrics["sqnr_db"]
