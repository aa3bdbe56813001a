"""Idioms of real already-quantized exports (issue 17's ``quantize_static`` corpus models),
each rebuilt in a small model and compared with onnxruntime.

- A ViT's attention probabilities: ``Softmax -> Q -> DQ -> Cast(float) -> Q -> DQ``.
  onnxruntime removes the no-op Cast and merges the two pairs into one on the intersected
  range at every optimization level but ``ORT_DISABLE_ALL`` (``DoubleQDQPairsRemover``), so
  that is what the float32 file computes (``qdq_merge.py``); with the rule disabled it keeps
  the literal double rounding, which ``ORT_DISABLE_ALL`` computes.
- A BERT's additive attention mask ``(1 - mask) * float32.min``: ``quantize_static`` gives it
  the scale 1.3e36. Stripped into the integer file, LiteRT's ADD Prepare aborted the whole
  process (a scale ratio underflowing its fixed-point multiplier); the pair now stays an exact
  float Q/DQ and the integer file loads, runs and agrees with onnxruntime.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from harness import check_conversion
from harness import convert as harness_convert
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from onnx2tflite_direct.qdq_merge import merged_lattice
from onnx2tflite_direct.quant import qdq_import
from onnx2tflite_direct.validate import make_interpreter, run_litert

BASIC = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
LITERAL = ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def run_ort(model: onnx.ModelProto, feeds: dict, level) -> dict:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def _params(prefix, scale, zp, dtype):
    return [
        numpy_helper.from_array(np.array(scale, np.float32), f"{prefix}_s"),
        numpy_helper.from_array(np.array(zp, dtype), f"{prefix}_z"),
    ]


def _pair(prefix, x, out):
    return [
        helper.make_node("QuantizeLinear", [x, f"{prefix}_s", f"{prefix}_z"], [f"{prefix}_q"]),
        helper.make_node("DequantizeLinear", [f"{prefix}_q", f"{prefix}_s", f"{prefix}_z"], [out]),
    ]


def double_pair_model(first, second, dtype, x_shape=(1, 2, 8, 8), softmax=False, copy="Cast"):
    """x -> [Softmax] -> Q1/DQ1 -> Cast(float) (or Identity) -> Q2/DQ2 -> y."""
    nodes, src = [], "x"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["x"], ["p"], axis=-1))
        src = "p"
    nodes += _pair("a", src, "a_dq")
    if copy == "Cast":
        nodes.append(helper.make_node("Cast", ["a_dq"], ["c"], to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Identity", ["a_dq"], ["c"]))
    nodes += _pair("b", "c", "y")
    graph = helper.make_graph(
        nodes,
        "double_qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x_shape))],
        _params("a", *first, dtype) + _params("b", *second, dtype),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _spanning_input(first, second, dtype, shape, seed):
    """Values over both lattices' ranges (and a little beyond), with exact ties included."""
    lo, hi = (0, 255) if dtype == np.uint8 else (-128, 127)
    ends = [s * (q - z) for s, z in (first, second) for q in (lo, hi)]
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    x = rng.uniform(min(ends) * 1.1, max(ends) * 1.1, size).astype(np.float32)
    x[: size // 4] = (first[0] * (rng.integers(lo, hi, size // 4) + 0.5)).astype(np.float32)
    return x.reshape(shape)


# (scale, zero point) of the two pairs: overlapping, nested, shifted, the ViT's softmax pair.
PAIRS = [
    ((0.02, 128), (0.05, 100), np.uint8),
    ((0.004, 0), (0.0002, 0), np.uint8),
    ((0.01, -3), (0.03, 17), np.int8),
    ((0.1, 0), (0.013, -128), np.int8),
    ((0.0039215, 0), (6.7e-05, 0), np.uint8),
]


@pytest.mark.parametrize("first,second,dtype", PAIRS)
def test_double_pair_is_merged_as_onnxruntime_merges_it(first, second, dtype):
    model = double_pair_model(first, second, dtype)
    feeds = {"x": _spanning_input(first, second, dtype, (1, 2, 8, 8), seed=0)}
    basic, literal = run_ort(model, feeds, BASIC)["y"], run_ort(model, feeds, LITERAL)["y"]
    assert not np.array_equal(basic, literal)  # the idiom: onnxruntime's rewrite is visible
    # Every step is exact (Q/DQ compositions): the merged chain agrees bit for bit.
    check_conversion(model, feeds, atol=0.0, rtol=0.0, keep_io_layout=True)
    res = harness_convert(model, disable_rewrites=("merge_double_qdq",), keep_io_layout=True)
    actual = run_litert(res.tflite_bytes, feeds, res.report.get("io"))["y"]
    np.testing.assert_array_equal(actual, literal)
    rewrites = {r["rule"]: r for r in res.report.get("rewrites", [])}
    assert "merge_double_qdq" not in rewrites or not rewrites["merge_double_qdq"].get("matched")


def test_merged_lattice_arithmetic_is_onnxruntimes():
    """The merged parameters onnxruntime writes into its optimized model, read back."""
    import tempfile

    for first, second, dtype in PAIRS:
        model = double_pair_model(first, second, dtype, copy="Identity")
        with tempfile.TemporaryDirectory() as tmp:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = BASIC
            opts.optimized_model_filepath = f"{tmp}/opt.onnx"
            ort.InferenceSession(
                model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
            )
            opt = onnx.load(f"{tmp}/opt.onnx")
        inits = {i.name: numpy_helper.to_array(i) for i in opt.graph.initializer}
        (q,) = [n for n in opt.graph.node if n.op_type == "QuantizeLinear"]
        want = (float(inits[q.input[1]]), int(inits[q.input[2]]))
        assert merged_lattice(*first, *second, dtype) == want


def test_vit_attention_probabilities_match_onnxruntime():
    """Softmax probabilities through the double pair, then a MatMul: the strict tolerance."""
    model = double_pair_model((0.0039215, 0), (6.7e-05, 0), np.uint8, softmax=True)
    w = numpy_helper.from_array(
        np.random.default_rng(1).standard_normal((8, 8)).astype(np.float32), "w"
    )
    graph = model.graph
    graph.output[0].name = "probs"
    for n in graph.node:
        n.output[:] = ["probs" if o == "y" else o for o in n.output]
    graph.node.append(helper.make_node("MatMul", ["probs", "w"], ["y"]))
    graph.initializer.append(w)
    graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8]))
    feeds = {"x": np.random.default_rng(2).normal(0, 3, (1, 2, 8, 8)).astype(np.float32)}
    literal = run_ort(model, feeds, LITERAL)["y"]
    check = check_conversion(model, feeds, atol=1e-5, rtol=1e-4, keep_io_layout=True)
    assert np.abs(check.expected["y"] - literal).max() > 1e-3  # the literal chain differs
    # The integer file uses the merged lattice too: one pair on the probabilities.
    stripped, info = qdq_import.import_quantized(model)
    assert any("merged lattice" in n for n in info.notes)
    assert info.pairs == 1 and list(info.activations) == ["probs"]


# ---- the BERT additive attention mask ---------------------------------------------------------


class _Reader(CalibrationDataReader):
    def __init__(self, samples):
        self.it = iter(samples)

    def get_next(self):
        return next(self.it, None)


def masked_attention_model():
    """scores = x @ Wq; scores + (1 - mask) * float32.min; Softmax; @ Wv (a BERT layer's
    attention mask idiom, float, to be quantized by quantize_static)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((16, 16)) * 0.3).astype(np.float32), "wq"),
        numpy_helper.from_array((rng.standard_normal((16, 16)) * 0.3).astype(np.float32), "wv"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(np.finfo(np.float32).min, np.float32), "big"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["scores"]),
        helper.make_node("Sub", ["one", "mask"], ["inv"]),
        helper.make_node("Mul", ["inv", "big"], ["bias"]),
        helper.make_node("Add", ["scores", "bias"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "wv"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "masked_attention",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 16, 16]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 1, 16]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 16, 16])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _mask_feeds(seed):
    rng = np.random.default_rng(seed)
    mask = np.ones((1, 1, 1, 16), np.float32)
    mask[..., 12:] = 0.0
    return {"x": rng.standard_normal((1, 2, 16, 16)).astype(np.float32), "mask": mask}


RUN_IN_CHILD = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1])
it.allocate_tensors()
print("ok")
"""


def test_mask_with_a_huge_scale_stays_float_and_the_integer_file_runs(tmp_path):
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(masked_attention_model(), str(src))
    quantize_static(
        str(src),
        str(dst),
        _Reader([_mask_feeds(s) for s in range(4)]),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    qmodel = onnx.load(str(dst))
    scales = [
        float(numpy_helper.to_array(i))
        for i in qmodel.graph.initializer
        if i.name.endswith("_scale") and i.dims == []
    ]
    assert max(scales) > 1e30  # the idiom: quantize_static's scale for float32.min
    _, info = qdq_import.import_quantized(qmodel)
    assert any("2^-60..2^60" in k["reason"] for k in info.kept)

    feeds = _mask_feeds(7)
    check = check_conversion(qmodel, feeds, atol=1e-5, rtol=1e-4, keep_io_layout=True)
    integer = check.result.variants["integer_quant"]
    path = tmp_path / "integer.tflite"
    path.write_bytes(bytes(integer))
    # In a child process: an abort in a kernel's Prepare would kill the test runner.
    child = subprocess.run(
        [sys.executable, "-c", RUN_IN_CHILD, str(path)], capture_output=True, text=True
    )
    assert child.returncode == 0 and "ok" in child.stdout, child.stderr[-2000:]
    actual = run_litert(bytes(integer), feeds, check.report.get("io"))["y"]
    expected = check.expected["y"].astype(np.float64)
    noise = np.sum((expected - actual) ** 2)
    assert noise == 0 or 10 * np.log10(np.sum(expected**2) / noise) >= 25.0


# ---- weights through DequantizeLinear stay static for the kernels ---------------------------


def conv_fc_model():
    """Conv (bias) + Relu, a 1x1 Conv, then MatMul + bias Add: resnet's layers, small."""
    rng = np.random.default_rng(4)
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w"),
        numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "b"),
        numpy_helper.from_array((rng.standard_normal((8, 8, 1, 1)) * 0.3).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "b1"),
        numpy_helper.from_array(
            (rng.standard_normal((8 * 6 * 6, 5)) * 0.1).astype(np.float32), "wf"
        ),
        numpy_helper.from_array((rng.standard_normal(5) * 0.1).astype(np.float32), "bf"),
        numpy_helper.from_array(np.array([1, -1], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r0"]),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["r"]),  # 1x1: OIHW and OHWI share order
        helper.make_node("Reshape", ["r", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "wf"], ["m"]),
        helper.make_node("Add", ["m", "bf"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("per_channel", [True, False])
def test_quantized_weights_and_int32_bias_are_static_operands(tmp_path, per_channel):
    """A Conv/MatMul reading DequantizeLinear(int8 weights) and an int32 bias: the weights are
    stored in the kernel's order behind a DEQUANTIZE of a constant (no run-time TRANSPOSE) and
    the bias is a constant, so LiteRT's XNNPACK runs the convolution with static operands (a
    run-time filter or bias left resnet18's convolutions to slow reference kernels: 13.5x
    onnxruntime's latency). Values unchanged: compared with onnxruntime."""
    from ai_edge_litert.interpreter import Interpreter

    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(conv_fc_model(), str(src))
    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((1, 3, 6, 6)).astype(np.float32)} for _ in range(4)]
    quantize_static(
        str(src),
        str(dst),
        _Reader(samples),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    qmodel = onnx.load(str(dst))
    assert any(
        i.data_type == TensorProto.INT32 for i in qmodel.graph.initializer
    )  # the idiom: an int32 bias behind a DequantizeLinear
    feeds = {"x": np.random.default_rng(5).standard_normal((1, 3, 6, 6)).astype(np.float32)}
    res = harness_convert(qmodel, keep_io_layout=True)
    actual = run_litert(res.tflite_bytes, feeds, res.report.get("io"))["y"]
    expected = run_ort(qmodel, feeds, BASIC)["y"]
    # One output quantization step is onnxruntime's own float32 uncertainty here: a value
    # rounding onto the lattice can fall on either side of a tie under another summation order.
    (dq,) = [n for n in qmodel.graph.node if n.output[0] == "y"]
    step = float(
        numpy_helper.to_array(next(i for i in qmodel.graph.initializer if i.name == dq.input[1]))
    )
    assert np.abs(actual - expected).max() <= step * (1 + 1e-5)
    assert np.mean(actual == expected) >= 0.8

    interp = Interpreter(model_content=bytes(res.tflite_bytes))
    details = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    made_by = {o: op for op in ops for o in op["outputs"]}
    weighted = [op for op in ops if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")]
    assert weighted
    for op in weighted:
        weights = made_by.get(op["inputs"][1])
        assert weights is not None and weights["op_name"] == "DEQUANTIZE"
        assert weights["inputs"][0] not in made_by  # a constant
        assert details[weights["inputs"][0]]["dtype"] == np.int8
        if len(op["inputs"]) > 2 and op["inputs"][2] >= 0:
            assert op["inputs"][2] not in made_by  # the bias: a constant


# ---- an activation pair is one clamp and one product ----------------------------------------


@pytest.mark.parametrize(
    "dtype,zps", [(np.uint8, [0, 128, 250]), (np.int8, [-5, 0, 100]), (np.int16, [0, 0, 0])]
)
def test_activation_pairs_are_exact_and_cheap(dtype, zps):
    """x -> Q -> DQ (per-axis along the channels, then per-tensor), also read with other
    parameters by a second DQ, and the Q output itself a graph output: every value exact.
    A pair with equal constant parameters is lowered as ``clamp(round(x / s)) * s`` (the
    integer tensor only where something else reads it)."""
    scales = np.array([0.05, 0.013, 0.2], np.float32)
    inits = [
        numpy_helper.from_array(scales, "s"),
        numpy_helper.from_array(np.array(zps, dtype), "z"),
        numpy_helper.from_array(np.array(0.07, np.float32), "t_s"),
        numpy_helper.from_array(np.array(zps[1], dtype), "t_z"),
        numpy_helper.from_array(np.array(0.09, np.float32), "u_s"),
    ]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1),
        helper.make_node("QuantizeLinear", ["y", "t_s", "t_z"], ["tq"]),
        helper.make_node("DequantizeLinear", ["tq", "t_s", "t_z"], ["t"]),
        helper.make_node("DequantizeLinear", ["tq", "u_s", "t_z"], ["u"]),
    ]
    shape = [2, 3, 4, 5]
    graph = helper.make_graph(
        nodes,
        "pairs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("y", "t", "u")]
        + [helper.make_tensor_value_info("tq", elem, shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    rng = np.random.default_rng(3)
    x = rng.normal(0, 8, shape).astype(np.float32)
    x.reshape(-1)[:30] = (0.05 * (np.arange(30) - 15 + 0.5)).astype(np.float32)  # ties
    check = check_conversion(model, {"x": x}, atol=0.0, rtol=0.0, keep_io_layout=True)
    mul_count = check.ops["MUL"]
    assert mul_count == 3, check.ops  # one product per DequantizeLinear, no SUB of a zero point
    assert check.ops.get("SUB", 0) == 1  # only the DQ whose Q pairs with other parameters


# ---- a lattice Conv is computed on integers (QLinearConv's sums) ----------------------------


def tie_conv_model(depthwise: bool):
    """x -> Q/DQ (uint8) -> Conv(DQ int8 per-channel weights, DQ int32 bias) -> Q/DQ, with the
    output scale twice sx*sw: half the exact sums land on a rounding tie, which a float32 sum
    in another order misses by an ulp (issue 17's tv_mobilenet_v3_small: 26 dB)."""
    rng = np.random.default_rng(17)
    c, o = (8, 8) if depthwise else (3, 8)
    sx, s = np.float32(0.0173), np.float32(0.00213)
    w = rng.integers(-6, 7, (o, 1 if depthwise else c, 3, 3)).astype(np.int8)
    w[0, 0, 0, 0] = 127  # the weight scale spans the int8 range
    bias = rng.integers(-40, 40, o).astype(np.int32)
    sw = np.full(o, s, np.float32)
    inits = [
        *_params("x", sx, 131, np.uint8),
        *_params("y", np.float32(sx * s) * 2, 121, np.uint8),
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(sw, "w_s"),
        numpy_helper.from_array(np.zeros(o, np.int8), "w_z"),
        numpy_helper.from_array(bias, "b_q"),
        numpy_helper.from_array((sx * sw).astype(np.float32), "b_s"),
        numpy_helper.from_array(np.zeros(o, np.int32), "b_z"),
    ]
    nodes = [
        *_pair("x", "x", "x_dq"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], axis=0),
        helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b"], axis=0),
        helper.make_node(
            "Conv",
            ["x_dq", "w", "b"],
            ["conv"],
            pads=[1, 1, 1, 1],
            strides=[2, 2] if not depthwise else [1, 1],
            group=c if depthwise else 1,
        ),
        *_pair("y", "conv", "y"),
    ]
    graph = helper.make_graph(
        nodes,
        "tie_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("depthwise", [False, True])
def test_lattice_conv_is_exact_on_rounding_ties(depthwise):
    """The Conv reads the centred activation integers, int8 weight integers and int32 bias
    integers (every sum exact in float32), then one product by sx*sw: the ties land where
    onnxruntime's QLinearConv (its default optimization level) puts them, bit for bit, under
    XNNPACK."""
    from onnx2tflite_direct.validate import make_interpreter

    model = tie_conv_model(depthwise)
    channels = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    x = np.random.default_rng(3).uniform(-0.2, 0.2, (1, channels, 16, 16)).astype(np.float32)
    expected = run_ort(model, {"x": x}, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)["y"]
    res = harness_convert(model, keep_io_layout=True)
    interp = make_interpreter(bytes(res.tflite_bytes), use_xnnpack=True)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    actual = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert len(np.unique(expected)) > 20  # not a near-constant output
    np.testing.assert_array_equal(actual, expected)


# ---- a lattice Conv over the 2**24 bound: weight digits, still exact ------------------------


def wide_conv_model(cin: int, kernel: int):
    """x (non-negative: uint8 with zero point 0, the reach of a ReLU output) -> Conv with K =
    cin * kernel**2 products per output and Gaussian weights: per-channel int8 weights sum to
    |w| * 255 > 2**24, the bound resnet18's layer3/layer4 convs exceed (issue 17)."""
    rng = np.random.default_rng(11)
    o = 8
    w = rng.standard_normal((o, cin, kernel, kernel)).astype(np.float32) * 0.05
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array((rng.standard_normal(o) * 0.5).astype(np.float32), "b"),
    ]
    pad = kernel // 2
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[pad] * 4)],
        "wide_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, o, 5, 5])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _init(model, name):
    return numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == name))


def _qlinear_conv_reference(qmodel, xq):
    """onnxruntime's QLinearConv on the QDQ model's constants, in exact integers: the int64
    sums of (x_q - x_zp) * w_q + bias, then round_half_even(float32(sum) * fl(fl(sx*sw)/sy))
    + y_zp saturated, dequantized: the model's Q/DQ semantics as its integer kernel runs it."""
    nodes = {n.output[0]: n for n in qmodel.graph.node}
    conv = next(n for n in qmodel.graph.node if n.op_type == "Conv")
    dq_x, dq_w, dq_b = (nodes[i] for i in conv.input)
    q_y = next(
        n
        for n in qmodel.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] == conv.output[0]
    )
    sx, zx = _init(qmodel, dq_x.input[1]), _init(qmodel, dq_x.input[2]).astype(np.int64)
    wq, sw = _init(qmodel, dq_w.input[0]).astype(np.int64), _init(qmodel, dq_w.input[1])
    bias = _init(qmodel, dq_b.input[0]).astype(np.int64)
    sy, zy = _init(qmodel, q_y.input[1]), _init(qmodel, q_y.input[2]).astype(np.int64)
    o, _, k, _ = wq.shape
    pad = k // 2
    xc = np.pad(xq.astype(np.int64) - zx, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h, w = xq.shape[2:]
    acc = np.zeros((1, o, h, w), np.int64)
    for i in range(k):
        for j in range(k):
            acc += np.einsum("nchw,oc->nohw", xc[:, :, i : i + h, j : j + w], wq[:, :, i, j])
    acc += bias.reshape(1, o, 1, 1)
    return _requantized(acc, (sx * sw).astype(np.float32).reshape(1, o, 1, 1), sy, zy)


def _requantized(acc, sum_scale, sy, zy):
    """onnxruntime's requantization of int32 sums: round_half_even(float32(acc) * fl(sx*sw /
    sy)) + y_zp, saturated to uint8, then the output DequantizeLinear."""
    mult = (sum_scale / sy).astype(np.float32)
    yq = np.clip(np.rint(acc.astype(np.float32) * mult) + zy, 0, 255)
    return ((yq - zy).astype(np.float32) * sy).astype(np.float32)


@pytest.mark.parametrize(
    "cin, kernel, convs, shifted, placed",
    [
        (256, 3, 1, True, False),
        (512, 3, 2, True, True),
        (1024, 3, 2, False, False),
        (65536, 1, 3, True, False),
    ],
)
def test_lattice_conv_over_the_float32_bound_is_exact(
    tmp_path, cin, kernel, convs, shifted, placed
):
    """A per-channel QDQ Conv (onnxruntime quantize_static) whose integer sums can reach past
    2**24: the conv reads x - 127 (reach 128 instead of 255, 127 * sum(w) in the bias) where
    that saves work, and the int8 weights are split into base-2**bits digits (conversion
    time), one exact conv per digit (the high one over only the channels that need it),
    combined exactly (two digits: lo + hi * 2**bits, one rounding as the int32 -> float32
    conversion; three: int32). Bit-exact with
    the model's integer semantics (QLinearConv's) under XNNPACK and the reference kernels,
    within one output step of onnxruntime's float path."""
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(wide_conv_model(cin, kernel), str(src))
    rng = np.random.default_rng(0)
    samples = [{"x": rng.uniform(0, 1, (1, cin, 5, 5)).astype(np.float32)} for _ in range(2)]
    quantize_static(
        str(src),
        str(dst),
        _Reader(samples),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    qmodel = onnx.load(str(dst))
    q_x = next(n for n in qmodel.graph.node if n.op_type == "QuantizeLinear")
    sx = _init(qmodel, q_x.input[1])
    assert int(_init(qmodel, q_x.input[2])) == 0  # reach 255: the bound case
    # inputs on the lattice (x / sx is an integer), realistic: mostly small, some saturating
    xq = np.minimum(rng.exponential(60, (1, cin, 5, 5)), 255).round().astype(np.int64)
    x = (xq * sx).astype(np.float32)
    expected = _qlinear_conv_reference(qmodel, xq)
    res = harness_convert(qmodel, keep_io_layout=True)
    ops = res.report["tflite_ops"]
    assert ops["CONV_2D"]["count"] == convs  # one per weight digit
    assert ("CAST" in ops) == (convs > 2)
    assert ("SUB" in ops) == shifted  # x - 127, padded first (the padding is the real zero)
    # only the channels that need the high digit reduce it, then are put in place
    assert ("FULLY_CONNECTED" in ops) == placed
    for xnnpack in (True, False):
        interp = make_interpreter(bytes(res.tflite_bytes), use_xnnpack=xnnpack)
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        actual = interp.get_tensor(interp.get_output_details()[0]["index"])
        np.testing.assert_array_equal(actual, expected)
    assert len(np.unique(expected)) > 50
    basic = run_ort(qmodel, {"x": x}, BASIC)["y"]
    q_y = [n for n in qmodel.graph.node if n.op_type == "QuantizeLinear"][-1]
    step = float(_init(qmodel, q_y.input[1]))
    assert np.abs(basic - expected).max() <= step * (1 + 1e-5)  # onnxruntime's float rounding


def dense_model(op: str, k: int, n: int):
    """x -> MatMul(x, W [K, N]) (rank-3 x, as a transformer's projection) or Gemm(x, W [N, K],
    b, transB=1) (resnet's classifier), Gaussian weights: the per-column bound of K products
    reaches past 2**24 with a non-negative (zero point 0) activation."""
    rng = np.random.default_rng(12)
    x_shape = [2, 3, k] if op == "MatMul" else [4, k]
    if op == "MatMul":
        w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        inits = [numpy_helper.from_array(w, "w")]
    else:
        w = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
        b = (rng.standard_normal(n) * 0.5).astype(np.float32)
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)]
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    graph = helper.make_graph(
        nodes,
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*x_shape[:-1], n])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _dense_reference(qmodel, xq):
    """QLinearMatMul / QGemm on the QDQ model's constants in exact integers (int64 sums)."""
    nodes = {n.output[0]: n for n in qmodel.graph.node}
    op = next(n for n in qmodel.graph.node if n.op_type in ("MatMul", "Gemm"))
    dq_x, dq_w = nodes[op.input[0]], nodes[op.input[1]]
    q_y = next(
        n for n in qmodel.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == op.output[0]
    )
    sx, zx = _init(qmodel, dq_x.input[1]), _init(qmodel, dq_x.input[2]).astype(np.int64)
    wq, sw = _init(qmodel, dq_w.input[0]).astype(np.int64), _init(qmodel, dq_w.input[1])
    sy, zy = _init(qmodel, q_y.input[1]), _init(qmodel, q_y.input[2]).astype(np.int64)
    if op.op_type == "Gemm":
        wq = wq.T
    acc = (xq.astype(np.int64) - zx) @ wq
    if len(op.input) > 2:
        acc += _init(qmodel, nodes[op.input[2]].input[0]).astype(np.int64)
    return _requantized(acc, (sx * sw).astype(np.float32), sy, zy)


@pytest.mark.parametrize("int8_kernel", [False, True], ids=["float_digits", "int8_kernel"])
@pytest.mark.parametrize("op", ["MatMul", "Gemm"])
def test_lattice_dense_is_exact(tmp_path, monkeypatch, op, int8_kernel):
    """QDQ MatMul / Gemm (onnxruntime quantize_static, per-column int8 weights) with a
    K = 4096 reduction past the 2**24 bound: FULLY_CONNECTED over the centred activation
    integers and two int8 weight digits (or, lattice_int8.py, one exact int8 FULLY_CONNECTED),
    as onnxruntime's QLinearMatMul / QGemm compute it.
    Bit-exact with the integer reference under XNNPACK and the reference kernels, within one
    output step of onnxruntime's float path."""
    from onnx2tflite_direct.lowering import lattice_int8

    monkeypatch.setattr(lattice_int8, "LATTICE_ON_INT8_KERNEL", int8_kernel)
    monkeypatch.setattr(lattice_int8, "int8_pays", lambda *a, **k: True)
    k, n = 4096, 16
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    model = dense_model(op, k, n)
    onnx.save(model, str(src))
    x_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(1)
    samples = [{"x": rng.uniform(0, 1, x_shape).astype(np.float32)} for _ in range(2)]
    quantize_static(
        str(src),
        str(dst),
        _Reader(samples),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    qmodel = onnx.load(str(dst))
    q_x = next(n for n in qmodel.graph.node if n.op_type == "QuantizeLinear")
    sx = _init(qmodel, q_x.input[1])
    assert int(_init(qmodel, q_x.input[2])) == 0
    xq = np.minimum(rng.exponential(60, x_shape), 255).round().astype(np.int64)
    x = (xq * sx).astype(np.float32)
    expected = _dense_reference(qmodel, xq)
    res = harness_convert(qmodel, keep_io_layout=True)
    ops = res.report["tflite_ops"]
    fcs = 1 if int8_kernel else 2  # one int8 GEMM, or two float digits
    assert ops["FULLY_CONNECTED"]["count"] == fcs and "BATCH_MATMUL" not in ops
    for xnnpack in (True, False):
        interp = make_interpreter(bytes(res.tflite_bytes), use_xnnpack=xnnpack)
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        actual = interp.get_tensor(interp.get_output_details()[0]["index"])
        np.testing.assert_array_equal(actual, expected)
    assert len(np.unique(expected)) > 30
    basic = run_ort(qmodel, {"x": x}, BASIC)["y"]
    q_y = [n for n in qmodel.graph.node if n.op_type == "QuantizeLinear"][-1]
    step = float(_init(qmodel, q_y.input[1]))
    assert np.abs(basic - expected).max() <= step * (1 + 1e-5)  # onnxruntime's float rounding


# ---- a Q/DQ pair after a Reshape/Transpose/MaxPool of a lattice value costs nothing ---------


def moved_pairs_model():
    """x + c -> Q/DQ, then Reshape -> MatMul, Transpose -> Mul, MaxPool -> Add: quantize_static
    gives each moved tensor a Q/DQ pair with its input's parameters (MiniLM: 8 per layer)."""
    rng = np.random.default_rng(21)
    inits = [
        numpy_helper.from_array(np.array([2, 24], np.int64), "shape"),
        numpy_helper.from_array((rng.standard_normal((24, 8)) * 0.2).astype(np.float32), "w"),
        numpy_helper.from_array((rng.standard_normal(6) * 0.3).astype(np.float32), "c"),
        numpy_helper.from_array(np.float32(1.7), "k"),
        numpy_helper.from_array(np.float32(0.3), "k2"),
    ]
    nodes = [
        helper.make_node("Add", ["x", "c"], ["a"]),
        helper.make_node("Reshape", ["a", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "w"], ["m"]),
        helper.make_node("Transpose", ["a"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Mul", ["t", "k"], ["y2"]),
        helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2], strides=[2]),
        helper.make_node("Add", ["p", "k2"], ["y3"]),
    ]
    graph = helper.make_graph(
        nodes,
        "moved_pairs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 6])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("m", "y2", "y3")],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_pairs_after_moves_cost_nothing_and_stay_exact(tmp_path):
    """DQ(P) -> Reshape / Transpose / MaxPool -> Q(P) -> DQ(P) gives back the moved values bit
    for bit (they are (q - zp) * s already), so the converter emits no rounding, clamp or
    product for such a pair (lowering/lattice_moves.py); a lattice MatMul after it still reads
    exact integers. Bit-exact with onnxruntime (float ops) and within one output step on the
    MatMul (integer sums vs onnxruntime's float sum)."""
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(moved_pairs_model(), str(src))
    rng = np.random.default_rng(2)
    samples = [{"x": rng.uniform(-1, 1, (2, 4, 6)).astype(np.float32)} for _ in range(3)]
    quantize_static(
        str(src),
        str(dst),
        _Reader(samples),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    qmodel = onnx.load(str(dst))
    quantizers = [n for n in qmodel.graph.node if n.op_type == "QuantizeLinear"]
    moved = [n for n in quantizers if n.input[0] in ("r", "t", "p")]
    assert len(moved) == 3 and len(quantizers) == 8  # x, a, r, t, p, m, y2, y3
    feeds = {"x": rng.uniform(-1.2, 1.2, (2, 4, 6)).astype(np.float32)}  # some saturate
    res = harness_convert(qmodel, keep_io_layout=True)
    ops = res.report["tflite_ops"]
    assert ops["MAXIMUM"]["count"] == 5  # one clamp per Q that can saturate: not the moved 3
    assert ops["FULLY_CONNECTED"]["count"] == 1  # the MatMul still on the integers
    expected = run_ort(qmodel, feeds, BASIC)
    (q_m,) = [n for n in quantizers if n.input[0].startswith("m")]
    step = float(_init(qmodel, q_m.input[1]))
    # (the reference kernels gave a wrong y2 here until the builder's in-place guard:
    # LiteRT's planner let a DIV overwrite a RESHAPE's still-read input, inplace_guard.py)
    for xnnpack in (True, False):
        got = run_litert(res.tflite_bytes, feeds, res.report.get("io"), use_xnnpack=xnnpack)
        np.testing.assert_array_equal(got["y2"], expected["y2"])
        np.testing.assert_array_equal(got["y3"], expected["y3"])
        assert np.abs(got["m"] - expected["m"]).max() <= step * (1 + 1e-5)
    assert len(np.unique(expected["y2"])) > 20


def test_quantized_constant_is_computed_at_conversion_time():
    """Constant -> Q -> DQ (quantize_static quantizes Constant-node scalars as activations:
    MiniLM's attention scale, Erf's constants) is a constant in the file, computed with the
    run-time form's float32 steps: bit-exact with onnxruntime, no run-time rounding for it.
    A value that saturates (2.0 on a lattice up to 1.0) is checked too."""
    c = helper.make_tensor("c", TensorProto.FLOAT, [3], [0.70710677, -0.3, 2.0])
    nodes = [
        helper.make_node("Constant", [], ["cv"], value=c),
        *_pair("c", "cv", "c_dq"),
        *_pair("x", "x", "x_dq"),
        helper.make_node("Mul", ["x_dq", "c_dq"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "const_q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [*_params("c", np.float32(1.0 / 127), 0, np.int8), *_params("x", 0.0173, 131, np.uint8)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = np.random.default_rng(4).uniform(-2, 2, (2, 3)).astype(np.float32)
    expected = run_ort(model, {"x": x}, BASIC)["y"]
    res = harness_convert(model, keep_io_layout=True)
    assert res.report["tflite_ops"]["ROUND"]["count"] == 1  # x's Q only
    assert "RESHAPE" not in res.report["tflite_ops"]  # its rank expansion is a constant too
    for xnnpack in (True, False):
        got = run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"), use_xnnpack=xnnpack)
        np.testing.assert_array_equal(got["y"], expected)
    assert len(np.unique(expected)) == 6


def product_model(k: int, transposed: bool):
    """a [2, 3, 4, K] x b -> MatMul -> y: attention's Q K^T / P V, two activations. With
    ``transposed`` b arrives [2, 3, 5, K] and a Transpose makes it [2, 3, K, 5] (K^T)."""
    b_shape = [2, 3, 5, k] if transposed else [2, 3, k, 5]
    nodes = [helper.make_node("MatMul", ["a", "bt" if transposed else "b"], ["y"])]
    if transposed:
        nodes.insert(0, helper.make_node("Transpose", ["b"], ["bt"], perm=[0, 1, 3, 2]))
    graph = helper.make_graph(
        nodes,
        "product",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 4, k]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, b_shape),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4, 5])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "k, transposed, signed", [(32, True, True), (16, False, False), (300, False, False)]
)
def test_lattice_product_of_two_activations_is_exact(tmp_path, k, transposed, signed):
    """MatMul of two Q/DQ activations (onnxruntime quantize_static) computed as its
    QLinearMatMul: BATCH_MATMUL over the centred integers (B read stored transposed through
    adj_y), one MUL by sa * sb; K = 300 with two uint8 zero-point-0 operands reaches past
    2**24 and splits A into run-time digits combined in int32. Bit-exact with the integer
    reference on XNNPACK and the reference kernels, within one output step of onnxruntime's
    float path."""
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    model = product_model(k, transposed)
    onnx.save(model, str(src))
    shapes = {
        i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    rng = np.random.default_rng(5)
    low = -1.0 if signed else 0.0
    samples = [
        {n: rng.uniform(low, 1, s).astype(np.float32) for n, s in shapes.items()} for _ in range(2)
    ]
    quantize_static(
        str(src),
        str(dst),
        _Reader(samples),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    qmodel = onnx.load(str(dst))
    made = {n.output[0]: n for n in qmodel.graph.node}
    matmul = next(n for n in qmodel.graph.node if n.op_type == "MatMul")
    params = {}  # the lattices the MatMul reads (b's is after its Transpose)
    for name, dq in zip(("a", "b"), (made[i] for i in matmul.input), strict=True):
        params[name] = (_init(qmodel, dq.input[1]), _init(qmodel, dq.input[2]).astype(np.int64))
    ints = {n: rng.integers(0, 256, s) for n, s in shapes.items()}  # on the lattice, full range
    feeds = {n: ((ints[n] - params[n][1]) * params[n][0]).astype(np.float32) for n in ints}
    q_y = next(
        n for n in qmodel.graph.node if n.op_type == "QuantizeLinear" and n.input[0].startswith("y")
    )
    sy, zy = _init(qmodel, q_y.input[1]), _init(qmodel, q_y.input[2]).astype(np.int64)
    b_int = ints["b"] - params["b"][1]
    if transposed:
        b_int = np.swapaxes(b_int, -1, -2)
    acc = (ints["a"] - params["a"][1]) @ b_int
    expected = _requantized(acc, np.float32(params["a"][0] * params["b"][0]), sy, zy)
    res = harness_convert(qmodel, keep_io_layout=True)
    ops = res.report["tflite_ops"]
    assert ("CAST" in ops) == (k == 300)  # the digit split's int32 combination
    for xnnpack in (True, False):
        got = run_litert(res.tflite_bytes, feeds, res.report.get("io"), use_xnnpack=xnnpack)["y"]
        np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) > 20
    basic = run_ort(qmodel, feeds, BASIC)["y"]
    assert np.abs(basic - expected).max() <= float(sy) * (1 + 1e-5)


def test_lattice_product_lands_ties_as_qlinearmatmul():
    """Two Q/DQ activations -> MatMul -> Q with the output scale twice sa * sb: half the
    exact sums are rounding ties, which a float32 sum of dequantized products misses by an
    ulp either way (onnxruntime's float path does, below). The integer form lands every tie
    as QLinearMatMul's round_half_even(float(acc) * fl(fl(sa*sb)/sy)), bit for bit."""
    sa, sb = np.float32(0.0173), np.float32(0.0213)
    sy = np.float32(np.float32(sa * sb) * 2)
    nodes = [
        *_pair("a", "a", "a_dq"),
        *_pair("b", "b", "b_dq"),
        helper.make_node("MatMul", ["a_dq", "b_dq"], ["m"]),
        *_pair("y", "m", "y"),
    ]
    graph = helper.make_graph(
        nodes,
        "tie_product",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 2, 8, 16]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 2, 16, 8]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])],
        [*_params("a", sa, 131, np.uint8), *_params("b", sb, 121, np.uint8)]
        + _params("y", sy, 128, np.uint8),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    rng = np.random.default_rng(8)
    qa, qb = rng.integers(100, 160, (1, 2, 8, 16)), rng.integers(95, 150, (1, 2, 16, 8))
    feeds = {"a": ((qa - 131) * sa).astype(np.float32), "b": ((qb - 121) * sb).astype(np.float32)}
    expected = _requantized((qa - 131) @ (qb - 121), np.float32(sa * sb), sy, 128)
    res = harness_convert(model, keep_io_layout=True)
    for xnnpack in (True, False):
        got = run_litert(res.tflite_bytes, feeds, res.report.get("io"), use_xnnpack=xnnpack)["y"]
        np.testing.assert_array_equal(got, expected)
    basic = run_ort(model, feeds, BASIC)["y"]
    assert np.any(basic != expected)  # the float path misses ties (what this form fixes)
    assert len(np.unique(expected)) > 20


@pytest.mark.parametrize("zp, pad_op", [(0, "PAD"), (128, "PADV2")])
def test_max_pool_of_a_lattice_from_zero_pads_with_zeros(zp, pad_op):
    """ReLU -> Q/DQ (uint8, zero point 0) -> MaxPool with ONNX pads TFLite's SAME cannot
    express (resnet's stem): the values are >= 0, so the pool pads with zeros (PAD, which
    XNNPACK takes) instead of -inf (PADV2, which it does not: two partitions); a lattice
    reaching below 0 keeps -inf. Bit-exact with onnxruntime either way."""
    nodes = [
        helper.make_node("Relu" if zp == 0 else "Identity", ["x"], ["r"]),
        *_pair("r", "r", "r_dq"),
        helper.make_node(
            "MaxPool", ["r_dq"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        _params("r", 0.011, zp, np.uint8),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = np.random.default_rng(9).uniform(-1.5, 1.5, (1, 4, 8, 8)).astype(np.float32)
    res = harness_convert(model, keep_io_layout=True)
    ops = res.report["tflite_ops"]
    assert pad_op in ops and ({"PAD", "PADV2"} - {pad_op}).isdisjoint(ops)
    expected = run_ort(model, {"x": x}, BASIC)["y"]
    for xnnpack in (True, False):
        got = run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"), use_xnnpack=xnnpack)
        np.testing.assert_array_equal(got["y"], expected)
    assert len(np.unique(expected)) > 20


def test_lattice_conv_sums_are_not_mapped_as_its_value():
    """When only a QuantizeLinear reads a lattice Conv, its value (sums * sx*sw) is dead and
    the integer sums stay: per-tensor diagnostics must not compare the sums as the Conv's
    output (they named the first such Conv as the divergent node, -80 dB)."""
    res = harness_convert(tie_conv_model(False), keep_io_layout=True)
    entry = res.tensor_map.get("conv")
    assert entry is None or "integer_sum" not in entry["tensor"]
    assert "y" in res.tensor_map  # the mapping itself still works


def test_lattice_resize_rounds_exact_ties():
    """x -> Q/DQ -> Resize (linear, half_pixel, 2x) -> Q/DQ on the same lattice (quantize_static
    gives a Resize its input's parameters; LRASPP's classifier): the 1/4, 3/4 weights of
    integers are exact, so the RESIZE_BILINEAR of the lattice integers puts every exact tie
    where round-half-to-even puts it, and XNNPACK and the reference kernels agree bit for bit
    (a resize of the dequantized floats misses such ties by an ulp, each kernel its own way:
    LRASPP 37.9 dB between the two). Within one output step of onnxruntime's float path."""
    s, zp = np.float32(0.0449), 3
    nodes = [
        *_pair("x", "x", "x_dq"),
        helper.make_node("Resize", ["x_dq", "", "scales"], ["r"], mode="linear"),
        *_pair("y", "r", "y"),
    ]
    graph = helper.make_graph(
        nodes,
        "lattice_resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 7, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 14, 18])],
        [
            *_params("x", s, zp, np.uint8),
            *_params("y", s, zp, np.uint8),
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    q = np.random.default_rng(10).integers(0, 256, (1, 3, 7, 9))
    x = ((q - zp) * s).astype(np.float32)

    # the exact bilinear of the integers (ONNX half_pixel, edges clamped), rounded half to even
    def taps(n):
        src = np.clip((np.arange(2 * n) + 0.5) / 2 - 0.5, 0, n - 1)
        i0 = np.floor(src).astype(int)
        return i0, np.minimum(i0 + 1, n - 1), src - i0

    (y0, y1, fy), (x0, x1, fx) = taps(7), taps(9)
    c = (q - zp).astype(np.float64)
    top = c[:, :, y0][..., x0] * (1 - fx) + c[:, :, y0][..., x1] * fx
    bottom = c[:, :, y1][..., x0] * (1 - fx) + c[:, :, y1][..., x1] * fx
    exact = top * (1 - fy)[:, None] + bottom * fy[:, None]
    assert np.sum(exact % 1 == 0.5) > 20  # tie-dense
    expected = ((np.clip(np.rint(exact) + zp, 0, 255) - zp) * s).astype(np.float32)
    res = harness_convert(model, keep_io_layout=True)
    assert "RESIZE_BILINEAR" in res.report["tflite_ops"]
    for xnnpack in (True, False):
        got = run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"), use_xnnpack=xnnpack)
        np.testing.assert_array_equal(got["y"], expected)
    basic = run_ort(model, {"x": x}, BASIC)["y"]
    assert np.abs(basic - expected).max() <= s * (1 + 1e-5)


def test_copy_with_a_lattice_of_its_own_is_requantized_onto_it():
    """Inception-v1-like ``Q/DQ -> Dropout -> Reshape -> Q/DQ`` where the Reshape's pair has a
    narrower lattice than its input's (onnxruntime calibrated it apart): ONNX rounds and clips
    the copied values onto it. The integer file requantizes onto the Reshape's lattice
    (exactly, as the input's QUANTIZE does) and agrees with the Q/DQ semantics evaluated in
    float64 on every output; read on the input's lattice, the clipped values were off by up
    to the clipped amount."""
    from onnx import TensorProto, helper, numpy_helper

    from onnx2tflite_direct import builder, pipeline
    from onnx2tflite_direct.quant import qdq_import as Q
    from tools.zoo.exact_reference import run_float64

    s_in, s_out = np.float32(0.1034655), np.float32(0.0854522)
    z = np.uint8(0)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "si", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "si", "z"], ["xd"]),
        helper.make_node("Dropout", ["xd"], ["d"]),
        helper.make_node("Reshape", ["d", "shape"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "so", "z"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "so", "z"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(s_in, "si"),
        numpy_helper.from_array(s_out, "so"),
        numpy_helper.from_array(z, "z"),
        numpy_helper.from_array(np.array([1, 256], np.int64), "shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "copy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
        inits,
    )
    qmodel = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    stripped, info = Q.import_quantized(qmodel)
    lowered = pipeline.lower_model(stripped, keep_io_layout=True)
    model, _ = Q.prequantized_variant(lowered, info.ranges, info)
    rng = np.random.default_rng(5)
    feeds = [{"x": rng.uniform(0.0, 26.0, [1, 256, 1, 1]).astype(np.float32)} for _ in range(3)]
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=builder.build_flatbuffer(model)).get_signature_runner()
    for f in feeds:
        want = run_float64(qmodel, f, round_to_float32=False)["y"].astype(np.float64)
        got = np.asarray(next(iter(runner(**f).values())), np.float64)
        assert np.ptp(want) > 100 * float(s_out) and float(np.max(want)) < 255.5 * float(s_out)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * float(s_out) * 255)
