"""onnxruntime contrib ops (com.microsoft, and onnxruntime's default-domain LayerNormalization
below opset 17 / SimplifiedLayerNormalization) against onnxruntime's own CPU kernels.

BiasAdd, BiasSoftmax and NhwcConv have no CPU kernel in onnxruntime (CUDA/ROCm only): they are
checked against onnxruntime running the equivalent default-domain graph on the same inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, convert, expect_refusal, make_model
from onnx import TensorProto, helper

from onnx2tflite_direct import validate as V

F = np.float32
MS = "com.microsoft"
OPSETS = {"": 17, MS: 1}
RNG = np.random.default_rng(7)


def _rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(F)


def ms_node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, domain=MS, **attrs)


def ms_model(nodes, inputs, outputs, inits=(), opset=17):
    """A model importing com.microsoft 1; output shapes are left to shape inference."""
    return make_model(
        nodes,
        inputs=inputs,
        outputs=[(o, dt, None) for o, dt in outputs],
        initializers=inits,
        opset={"": opset, MS: 1},
        check=False,  # no onnx schema for contrib ops; onnxruntime judges the model
    )


def one_node(op, ins: dict, inits: dict | None = None, outputs=("y",), out_dtype=F, **attrs):
    """One com.microsoft node; ``ins`` are runtime inputs {name: shape}, ``inits`` constants."""
    inits = inits or {}
    names = [n for n in [*ins, *inits]]
    node = ms_node(op, attrs.pop("order", names), list(outputs), **attrs)
    return ms_model(
        [node],
        [(n, F, s) for n, s in ins.items()],
        [(o, out_dtype) for o in outputs if o],
        inits,
    )


def check_against(model, reference, feeds, atol=1e-5, rtol=1e-4):
    """Convert ``model`` (an op onnxruntime's CPU provider cannot run) and compare LiteRT with
    onnxruntime running ``reference`` (the same computation in default-domain ops)."""
    res = convert(model)
    expected = V.run_onnxruntime(reference, feeds)
    actual = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"))
    for name, e in expected.items():
        a = actual[name]
        assert a.shape == e.shape, (name, a.shape, e.shape)
        scale = max(1.0, float(np.max(np.abs(e))))
        np.testing.assert_allclose(a, e, atol=atol * scale, rtol=rtol)
    return res


# ---- activations ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 5, 16), (3, 4, 6, 6)])
def test_gelu(shape):
    chk = check_conversion(one_node("Gelu", {"x": shape}))
    assert chk.ops["GELU"] == 1


@pytest.mark.parametrize("bias", [False, True])
def test_fast_gelu(bias):
    inits = {"b": _rand(16)} if bias else {}
    chk = check_conversion(one_node("FastGelu", {"x": (2, 5, 16)}, inits))
    assert chk.ops["GELU"] == 1


@pytest.mark.parametrize("runtime_bias", [False, True])
def test_bias_gelu(runtime_bias):
    ins = {"a": (2, 5, 16), "b": (16,)} if runtime_bias else {"a": (2, 5, 16)}
    inits = {} if runtime_bias else {"b": _rand(16)}
    check_conversion(one_node("BiasGelu", ins, inits))


@pytest.mark.parametrize("alpha", [None, 1.0, 0.5])
def test_quick_gelu(alpha):
    attrs = {} if alpha is None else {"alpha": alpha}
    check_conversion(one_node("QuickGelu", {"x": (2, 5, 16)}, **attrs))


def test_bias_add():
    model = one_node(
        "BiasAdd", {"x": (2, 9, 8), "skip": (2, 9, 8)}, {"b": _rand(8)}, order=["x", "b", "skip"]
    )
    ref = make_model(
        [helper.make_node("Add", ["x", "b"], ["t"]), helper.make_node("Add", ["t", "skip"], ["y"])],
        inputs=[("x", F, (2, 9, 8)), ("skip", F, (2, 9, 8))],
        outputs=[("y", F, (2, 9, 8))],
        initializers=[model.graph.initializer[0]],
    )
    feeds = {"x": _rand(2, 9, 8), "skip": _rand(2, 9, 8)}
    check_against(model, ref, feeds)


@pytest.mark.parametrize(
    "data,bias,axis,inner",
    [
        ((2, 3, 4, 6), (2, 1, 4, 6), 3, 0),  # per-batch mask, broadcast over heads
        ((2, 3, 4, 6), (3, 4, 6), 3, 0),  # relative-position bias, broadcast over batch
        ((2, 3, 4, 6), (2, 6), 3, 1),  # inner broadcast: [B, L] over heads and rows
        ((2, 3, 4, 6), (2, 3, 4, 6), 2, 0),  # softmax over the last two dims (flattened)
        ((2, 3, 4, 6), (3, 4, 6), 1, 0),  # default-style axis 1
    ],
)
def test_bias_softmax(data, bias, axis, inner):
    model = one_node("BiasSoftmax", {"x": data, "b": bias}, axis=axis, is_inner_broadcast=inner)
    rank = len(data)
    full = (1,) * (rank - len(bias)) + bias
    if inner and len(bias) < rank:
        tail = rank - axis
        full = bias[: len(bias) - tail] + (1,) * (rank - len(bias)) + bias[len(bias) - tail :]
    rows = int(np.prod(data[:axis]))
    ref = make_model(
        [
            helper.make_node("Reshape", ["b", "full"], ["bf"]),
            helper.make_node("Add", ["x", "bf"], ["t"]),
            helper.make_node("Reshape", ["t", "flat"], ["tf"]),
            helper.make_node("Softmax", ["tf"], ["sm"], axis=-1),
            helper.make_node("Reshape", ["sm", "shape"], ["y"]),
        ],
        inputs=[("x", F, data), ("b", F, bias)],
        outputs=[("y", F, data)],
        initializers={
            "full": np.array(full, np.int64),
            "flat": np.array([rows, -1], np.int64),
            "shape": np.array(data, np.int64),
        },
    )
    feeds = {"x": _rand(*data, scale=3), "b": _rand(*bias, scale=3)}
    check_against(model, ref, feeds)


def test_bias_softmax_refuses_unbroadcastable_bias():
    model = one_node("BiasSoftmax", {"x": (2, 3, 4, 6), "b": (5, 6)}, axis=3, is_inner_broadcast=0)
    err = expect_refusal(model, "unsupported_attribute_value")
    assert "BiasSoftmax" in str(err)


# ---- fused linear ops ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a_shape,b_shape,attrs,const_b",
    [
        ((2, 5, 8), (8, 6), {}, True),
        ((2, 5, 8), (6, 8), {"transB": 1, "alpha": 0.5}, True),
        ((2, 5, 8), (2, 8, 6), {"alpha": 0.125}, False),
        ((2, 8, 5), (2, 6, 8), {"transA": 1, "transB": 1}, False),
        ((5, 2, 8), (2, 8, 6), {"transBatchA": 1}, False),  # [S, B, H] x [B, H, N]
        ((2, 3, 5, 8), (8, 2, 3, 6), {"transBatchB": 1}, False),
        ((5, 2, 8), (2, 6, 8), {"transBatchA": 1, "transB": 1, "alpha": 2.0}, True),
        ((5, 2, 8), (6, 2, 8), {"transBatchA": 1, "transBatchB": 1, "transB": 1}, False),
    ],
)
def test_fused_matmul(a_shape, b_shape, attrs, const_b):
    ins = {"a": a_shape} if const_b else {"a": a_shape, "b": b_shape}
    inits = {"b": _rand(*b_shape)} if const_b else {}
    check_conversion(one_node("FusedMatMul", ins, inits, **attrs))


@pytest.mark.parametrize(
    "activation,attrs",
    [
        ("Relu", {}),
        ("Tanh", {}),
        ("Sigmoid", {}),
        ("LeakyRelu", {"activation_alpha": 0.2}),
        ("HardSigmoid", {"activation_alpha": 0.3, "activation_beta": 0.4}),
    ],
)
@pytest.mark.parametrize("gemm", [{}, {"transB": 1, "alpha": 0.5, "beta": 2.0}])
def test_fused_gemm(activation, attrs, gemm):
    b_shape = (6, 8) if gemm.get("transB") else (8, 6)
    model = one_node(
        "FusedGemm",
        {"a": (4, 8)},
        {"b": _rand(*b_shape), "c": _rand(6)},
        activation=activation,
        **attrs,
        **gemm,
    )
    check_conversion(model)


@pytest.mark.parametrize(
    "activation,params",
    [
        ("", []),
        ("Relu", []),
        ("Tanh", []),
        ("Sigmoid", []),
        ("LeakyRelu", [0.1]),
        ("Clip", [-0.5, 0.75]),
        ("HardSigmoid", [0.25, 0.5]),
    ],
)
@pytest.mark.parametrize("with_z", [False, True])
def test_fused_conv(activation, params, with_z):
    ins = {"x": (1, 3, 9, 9)}
    if with_z:
        ins["z"] = (1, 4, 9, 9)
    inits = {"w": _rand(4, 3, 3, 3, scale=0.4), "b": _rand(4)}
    attrs = {"pads": [1, 1, 1, 1]}
    if activation:
        attrs["activation"] = activation
    if params:
        attrs["activation_params"] = params
    order = ["x", "w", "b"] + (["z"] if with_z else [])
    check_conversion(one_node("FusedConv", ins, inits, order=order, **attrs))


def test_fused_conv_depthwise_strided():
    model = one_node(
        "FusedConv",
        {"x": (1, 4, 10, 10)},
        {"w": _rand(4, 1, 3, 3), "b": _rand(4)},
        group=4,
        strides=[2, 2],
        pads=[0, 0, 1, 1],
        activation="Relu",
    )
    check_conversion(model)


def test_fused_conv_refuses_unknown_activation():
    model = one_node("FusedConv", {"x": (1, 3, 5, 5)}, {"w": _rand(2, 3, 1, 1)}, activation="Elu")
    err = expect_refusal(model, "unsupported_attribute_value")
    assert "activation='Elu'" in str(err)


@pytest.mark.parametrize(
    "attrs,w_shape",
    [
        ({"pads": [1, 1, 1, 1]}, (4, 3, 3, 3)),
        ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, (4, 3, 3, 3)),
        ({"group": 3, "pads": [0, 1, 0, 1], "dilations": [1, 2]}, (6, 1, 3, 3)),
    ],
)
def test_nhwc_conv(attrs, w_shape):
    w = _rand(*w_shape, scale=0.3)
    b = _rand(w_shape[0])
    model = one_node("NhwcConv", {"x": (1, 9, 9, 3)}, {"w": w, "b": b}, **attrs)
    ref = make_model(
        [
            helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["xt", "w", "b"], ["yt"], **attrs),
            helper.make_node("Transpose", ["yt"], ["y"], perm=[0, 2, 3, 1]),
        ],
        inputs=[("x", F, (1, 9, 9, 3))],
        outputs=[("y", F, None)],
        initializers={"w": w, "b": b},
        check=False,
    )
    check_against(model, ref, {"x": _rand(1, 9, 9, 3)})


# ---- layer normalizations ------------------------------------------------------------------


@pytest.mark.parametrize("opset", [13, 16])
@pytest.mark.parametrize("axis,stats", [(-1, False), (-1, True), (1, True)])
def test_contrib_layer_norm_below_opset_17(opset, axis, stats):
    """onnxruntime's own LayerNormalization in the ONNX domain (what its optimizer writes into
    opset 12-16 models)."""
    shape = (2, 5, 16)
    norm = int(np.prod(shape[axis % 3 :]))
    inits = {"g": _rand(*shape[axis % 3 :]), "b": _rand(*shape[axis % 3 :])}
    outs = ["y", "mean", "inv"] if stats else ["y"]
    node = helper.make_node("LayerNormalization", ["x", "g", "b"], outs, axis=axis, epsilon=1e-5)
    model = ms_model([node], [("x", F, shape)], [(o, F) for o in outs], inits, opset=opset)
    assert norm > 1
    check_conversion(model, atol=2e-5)


@pytest.mark.parametrize("stats", [False, True])
@pytest.mark.parametrize("opset", [14, 17])
def test_simplified_layer_norm(stats, opset):
    outs = ["y", "inv"] if stats else ["y"]
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "g"], outs, epsilon=1e-6)
    model = ms_model(
        [node], [("x", F, (2, 5, 16))], [(o, F) for o in outs], {"g": _rand(16)}, opset=opset
    )
    check_conversion(model, atol=2e-5)


SKIP_CASES = {
    "plain": ((2, 5, 16), (2, 5, 16), ["gamma", "beta"], ["y"]),
    "bias_sum": ((2, 5, 16), (2, 5, 16), ["gamma", "beta", "bias"], ["y", "", "", "sum"]),
    "stats": ((2, 5, 16), (1, 5, 16), ["gamma", "beta"], ["y", "mean", "inv"]),
    "skip_2d": ((2, 5, 16), (5, 16), ["gamma"], ["y"]),
    "tokens_2d": ((10, 16), (10, 16), ["gamma", "", "bias"], ["y", "", "", "sum"]),
}


@pytest.mark.parametrize("case", sorted(SKIP_CASES))
@pytest.mark.parametrize("epsilon", [None, 1e-5])
def test_skip_layer_norm(case, epsilon):
    x_shape, skip_shape, params, outs = SKIP_CASES[case]
    inits = {n: _rand(16) for n in params if n}
    attrs = {} if epsilon is None else {"epsilon": epsilon}
    node = ms_node("SkipLayerNormalization", ["x", "skip", *params], outs, **attrs)
    model = ms_model(
        [node], [("x", F, x_shape), ("skip", F, skip_shape)], [(o, F) for o in outs if o], inits
    )
    check_conversion(model, atol=2e-5)


@pytest.mark.parametrize("with_bias,outs", [(False, ["y"]), (True, ["y", "", "inv", "sum"])])
def test_skip_simplified_layer_norm(with_bias, outs):
    params = ["gamma", "bias"] if with_bias else ["gamma"]
    node = ms_node("SkipSimplifiedLayerNormalization", ["x", "skip", *params], outs, epsilon=1e-6)
    model = ms_model(
        [node],
        [("x", F, (2, 5, 16)), ("skip", F, (2, 5, 16))],
        [(o, F) for o in outs if o],
        {n: _rand(16) for n in params},
    )
    check_conversion(model, atol=2e-5)


def test_embed_layer_norm_position_ids():
    b, s, hidden, vocab = 2, 6, 16, 30
    inits = {
        "word": _rand(vocab, hidden),
        "pos": _rand(12, hidden),
        "gamma": _rand(hidden),
        "beta": _rand(hidden),
    }
    order = ["ids", "", "word", "pos", "", "gamma", "beta", "", "pos_ids"]
    node = ms_node("EmbedLayerNormalization", order, ["y", "mask_index"], epsilon=1e-12)
    model = ms_model(
        [node],
        [("ids", np.int32, (b, s)), ("pos_ids", np.int32, (b, s))],
        [("y", F), ("mask_index", np.int32)],
        inits,
    )
    feeds = {
        "ids": RNG.integers(0, vocab, (b, s)).astype(np.int32),
        "pos_ids": (np.arange(s)[None] + np.array([[0], [5]])).astype(np.int32),
    }
    check_conversion(model, feeds=feeds, atol=2e-5)


@pytest.mark.parametrize("segments", [False, True])
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("emb_sum", [False, True])
def test_embed_layer_norm(segments, mask, emb_sum):
    b, s, hidden, vocab = 2, 7, 16, 30
    ins = [("ids", np.int32, (b, s))]
    feeds = {"ids": RNG.integers(0, vocab, (b, s)).astype(np.int32)}
    if segments:
        ins.append(("seg", np.int32, (b, s)))
        feeds["seg"] = RNG.integers(0, 2, (b, s)).astype(np.int32)
    if mask:
        ins.append(("mask", np.int32, (b, s)))
        feeds["mask"] = (np.arange(s)[None] < np.array([[5], [7]])).astype(np.int32)
    inits = {
        "word": _rand(vocab, hidden),
        "pos": _rand(12, hidden),
        "seg_emb": _rand(2, hidden),
        "gamma": _rand(hidden),
        "beta": _rand(hidden),
    }
    order = [
        "ids",
        "seg" if segments else "",
        "word",
        "pos",
        "seg_emb" if segments else "",
        "gamma",
        "beta",
        "mask" if mask else "",
    ]
    outs = ["y", "mask_index", "emb_sum"] if emb_sum else ["y", "mask_index"]
    node = ms_node("EmbedLayerNormalization", order, outs, epsilon=1e-12)
    if not segments:
        inits.pop("seg_emb")
    model = ms_model(
        [node],
        ins,
        [("y", F), ("mask_index", np.int32)] + ([("emb_sum", F)] if emb_sum else []),
        inits,
    )
    check_conversion(model, feeds=feeds, atol=2e-5)


# ---- dynamic-range quantized graphs (quantize_dynamic) -------------------------------------------
# Real-sized reductions: K = 768 (BERT-base hidden), 3072 (its FFN), 4096. With uint8
# activations and int8 weights one float32 reduction could round (K * 255 * 128 >= 2**24): the
# accumulators must still equal onnxruntime's int32 ones exactly.

QUANT_K = [768, 3072, 4096]


def _int8_weights(k, n, dtype=np.int8):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, int(info.max) + 1, (k, n)).astype(dtype)


@pytest.mark.parametrize("k", QUANT_K)
def test_matmul_integer_real_reduction_is_exact(k):
    a = RNG.integers(0, 256, (3, k)).astype(np.uint8)
    node = helper.make_node("MatMulInteger", ["a", "w", "az"], ["y"])
    model = ms_model(
        [node],
        [("a", np.uint8, (3, k)), ("az", np.uint8, ())],
        [("y", np.int32)],
        {"w": _int8_weights(k, 16)},
    )
    feeds = {"a": a, "az": np.array(131, np.uint8)}
    chk = check_conversion(model, feeds=feeds)  # int32 outputs compare exactly
    assert chk.ops["BATCH_MATMUL"] == 2  # two base-16 digits of a - a_zp


@pytest.mark.parametrize("k", QUANT_K)
def test_quantize_dynamic_chain(k):
    """quantize_dynamic's float graph: DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul."""
    w = _int8_weights(k, 32)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "w", "xz"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xs", "ws"], ["s"]),
        helper.make_node("Mul", ["accf", "s"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["y"]),
    ]
    inits = {"w": w, "ws": np.array(0.02, F), "bias": _rand(32)}
    model = ms_model(nodes, [("x", F, (2, 5, k))], [("y", F)], inits)
    check_conversion(model, feeds={"x": _rand(2, 5, k)}, atol=1e-5, rtol=1e-5)


def test_conv_integer_real_reduction_is_exact():
    c, kh = 256, 3  # K = 2304
    x = RNG.integers(0, 256, (1, c, 6, 6)).astype(np.uint8)
    w = RNG.integers(-128, 128, (8, c, kh, kh)).astype(np.int8)
    node = helper.make_node("ConvInteger", ["x", "w", "xz"], ["y"], pads=[1, 1, 1, 1])
    model = ms_model(
        [node], [("x", np.uint8, x.shape), ("xz", np.uint8, ())], [("y", np.int32)], {"w": w}
    )
    check_conversion(model, feeds={"x": x, "xz": np.array(7, np.uint8)})


@pytest.mark.parametrize("k", [1024, 4096])
def test_qlinear_matmul_real_reduction(k):
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "w", "ws", "wz", "ys", "yz"], ["y"])
    inits = {
        "as": np.array(0.02, F),
        "az": np.array(128, np.uint8),
        "w": _int8_weights(k, 8),
        "ws": np.array(0.01, F),
        "wz": np.array(0, np.int8),
        "ys": np.array(0.5 * np.sqrt(k / 768), F),
        "yz": np.array(120, np.uint8),
    }
    model = ms_model([node], [("a", np.uint8, (4, k))], [("y", np.uint8)], inits)
    a = RNG.integers(0, 256, (4, k)).astype(np.uint8)
    check_conversion(model, feeds={"a": a})


@pytest.mark.parametrize("k", QUANT_K)
@pytest.mark.parametrize("per_column,zero_points,bias", [(False, False, False), (True, True, True)])
def test_matmul_integer_to_float(k, per_column, zero_points, bias):
    n = 24
    inits = {
        "w": _int8_weights(k, n, np.uint8 if zero_points else np.int8),
        "as": np.array(0.015, F),
        "ws": (RNG.uniform(0.005, 0.02, n) if per_column else np.array(0.01)).astype(F),
    }
    order = ["a", "w", "as", "ws"]
    if zero_points:
        inits["az"] = np.array(128, np.uint8)
        inits["wz"] = RNG.integers(100, 150, n).astype(np.uint8)
        order += ["az", "wz"]
    if bias:
        inits["b"] = _rand(n)
        order += ["b"] if zero_points else ["", "", "b"]
    node = ms_node("MatMulIntegerToFloat", order, ["y"])
    model = ms_model([node], [("a", np.uint8, (2, 3, k))], [("y", F)], inits)
    a = RNG.integers(0, 256, (2, 3, k)).astype(np.uint8)
    check_conversion(model, feeds={"a": a}, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k", QUANT_K)
@pytest.mark.parametrize("weights", ["int8", "uint8_zp_per_column"])
def test_dynamic_quantize_matmul(k, weights):
    n = 24
    if weights == "int8":
        inits = {"w": _int8_weights(k, n), "ws": np.array(0.01, F), "b": _rand(n)}
        order = ["x", "w", "ws", "", "b"]
    else:
        inits = {
            "w": _int8_weights(k, n, np.uint8),
            "ws": RNG.uniform(0.005, 0.02, n).astype(F),
            "wz": RNG.integers(100, 150, n).astype(np.uint8),
        }
        order = ["x", "w", "ws", "wz"]
    node = ms_node("DynamicQuantizeMatMul", order, ["y"])
    model = ms_model([node], [("x", F, (2, 3, k))], [("y", F)], inits)
    check_conversion(model, feeds={"x": _rand(2, 3, k)}, atol=1e-5, rtol=1e-5)


# ---- Attention (com.microsoft) ---------------------------------------------------------------

B, S, D, N = 2, 5, 16, 2


def _attention(
    mask=None,
    past=None,
    attrs=None,
    sizes=(16, 16, 16),
    outputs=("y",),
    attn_bias=False,
    bias=True,
    feeds_extra=None,
):
    attrs = {"num_heads": N, **(attrs or {})}
    if sizes != (16, 16, 16):
        attrs["qkv_hidden_sizes"] = list(sizes)
    ins = [("x", F, (B, S, D))]
    feeds = {"x": _rand(B, S, D)}
    inits = {"w": _rand(D, sum(sizes), scale=0.5)}
    order = ["x", "w", "b" if bias else ""]
    if bias:
        inits["b"] = _rand(sum(sizes), scale=0.2)
    if mask is not None:
        ins.append(("mask", np.int32, mask.shape))
        feeds["mask"] = mask
    order.append("mask" if mask is not None else "")
    if past is not None:
        ins.append(("past", F, past))
        feeds["past"] = _rand(*past)
    order.append("past" if past is not None else "")
    if attn_bias:
        total = S + (past[3] if past is not None else 0)
        ins.append(("ab", F, (1, N, S, total)))
        feeds["ab"] = _rand(1, N, S, total)
        order.append("ab")
    while order and not order[-1]:
        order.pop()
    node = ms_node("Attention", order, list(outputs), **attrs)
    model = ms_model([node], ins, [(o, F) for o in outputs], inits)
    return model, {**feeds, **(feeds_extra or {})}


T_PAST = (2, B, N, 4, 8)
ATTENTION_CASES = {
    "plain": {},
    "no_bias_scaled": {"bias": False, "attrs": {"scale": 0.3}},
    "lengths": {"mask": np.array([3, 5], np.int32)},
    "end_start": {"mask": np.array([4, 5, 1, 0], np.int32)},
    "raw_2d": {"mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)},
    "raw_3d": {"mask": (RNG.uniform(size=(B, S, S)) > 0.3).astype(np.int32)},
    "raw_2d_filter": {
        "mask": np.array([[1, 0, 1, 0, 1], [0, 1, 1, 1, 1]], np.int32),
        "attrs": {"mask_filter_value": -1e4 * 3},
    },
    "fully_masked_row": {"mask": np.array([[0, 0, 0, 0, 0], [1, 1, 0, 0, 0]], np.int32)},
    "causal": {"attrs": {"unidirectional": 1}},
    "causal_lengths": {"attrs": {"unidirectional": 1}, "mask": np.array([2, 5], np.int32)},
    "gpt2_past": {"attrs": {"unidirectional": 1}, "past": T_PAST, "outputs": ("y", "present")},
    "gpt2_past_raw_mask": {
        "attrs": {"unidirectional": 1},
        "past": T_PAST,
        "outputs": ("y", "present"),
        "mask": np.array([[0, 1, 1, 1, 1, 1, 1, 1, 1], [1] * 9], np.int32),
    },
    "left_padded_causal": {  # row 0 of batch 0 sees only padding: causal keys stay hidden
        "attrs": {"unidirectional": 1},
        "mask": np.array([[0, 0, 1, 1, 1], [1] * 5], np.int32),
    },
    "qkv_sizes": {"sizes": (16, 16, 8)},
    "attention_bias": {"attn_bias": True},
}


def test_ms_attention_runtime_weights():
    """Weights and bias fed at run time: BATCH_MATMUL projection instead of FULLY_CONNECTED."""
    node = ms_node("Attention", ["x", "w", "b", "mask"], ["y"], num_heads=N, unidirectional=1)
    model = ms_model(
        [node],
        [("x", F, (B, S, D)), ("w", F, (D, 3 * D)), ("b", F, (3 * D,)), ("mask", np.int32, (B,))],
        [("y", F)],
    )
    feeds = {
        "x": _rand(B, S, D),
        "w": _rand(D, 3 * D, scale=0.5),
        "b": _rand(3 * D, scale=0.2),
        "mask": np.array([4, 5], np.int32),
    }
    check_conversion(model, feeds=feeds, atol=2e-5)


@pytest.mark.parametrize("case", sorted(ATTENTION_CASES))
def test_ms_attention(case):
    model, feeds = _attention(**ATTENTION_CASES[case])
    check_conversion(model, feeds=feeds, atol=2e-5)


@pytest.mark.parametrize(
    "kwargs,attr",
    [
        ({"mask": np.ones((B, 1, S, S), np.int32)}, "4-D mask_index"),
        ({"attrs": {"do_rotary": 1}}, "do_rotary"),
        ({"mask": np.ones(3 * B + 2, np.int32)}, "mask_index shape"),
    ],
)
def test_ms_attention_refusals(kwargs, attr):
    model, _ = _attention(**kwargs)
    err = expect_refusal(model, "unsupported_attribute_value")
    assert attr in str(err) and "Attention" in str(err)


# ---- MultiHeadAttention ----------------------------------------------------------------------

L_KV, H = 6, 8


def _mha(
    q=(B, S, D),
    k=(B, L_KV, D),
    v=(B, L_KV, 12),
    bias=False,
    mask=None,
    attn_bias=False,
    past=0,
    attrs=None,
    outputs=("y",),
):
    ins, feeds, inits = [], {}, {}
    order = []

    def runtime(name, shape, value=None):
        ins.append((name, F if value is None else value.dtype, shape))
        feeds[name] = _rand(*shape) if value is None else value
        order.append(name)

    runtime("q", q)
    if k is not None:
        runtime("k", k)
        if v is not None:
            runtime("v", v)
        else:
            order.append("")
    else:
        order += ["", ""]
    if bias:
        inits["bias"] = _rand(q[2] + k[2] + v[2], scale=0.3)
        order.append("bias")
    else:
        order.append("")
    if mask is not None:
        runtime("mask", mask.shape, mask)
    else:
        order.append("")
    total = (k[1] if len(k) == 3 else k[2]) + past if k is not None else q[1] + past
    if attn_bias:
        runtime("ab", (B, 1, S, total))
    else:
        order.append("")
    if past:
        runtime("pk", (B, N, past, H))
        runtime("pv", (B, N, past, v[2] // N))
    while order and not order[-1]:
        order.pop()
    node = ms_node("MultiHeadAttention", order, list(outputs), num_heads=N, **(attrs or {}))
    return ms_model([node], ins, [(o, F) for o in outputs if o], inits), feeds


MHA_CASES = {
    "cross": {},
    "bias": {"bias": True},
    "self_causal": {"k": (B, S, D), "v": (B, S, D), "attrs": {"unidirectional": 1}},
    "lengths": {"mask": np.array([2, 6], np.int32)},
    "raw_mask_2d": {"mask": np.array([[1, 1, 1, 1, 0, 0], [1] * 6], np.int32)},
    "raw_mask_3d": {"mask": (RNG.uniform(size=(B, S, L_KV)) > 0.3).astype(np.int32)},
    "attention_bias_scale": {"attn_bias": True, "attrs": {"scale": 0.2}},
    "projected_kv": {"k": (B, N, L_KV, H), "v": (B, N, L_KV, H)},
    "decoder_past": {
        "k": (B, S, D),
        "v": (B, S, D),
        "bias": True,
        "past": 4,
        "attrs": {"unidirectional": 1},
        "outputs": ("y", "present_k", "present_v", "qk"),
    },
    "left_padded_causal_qk": {
        "k": (B, S, D),
        "v": (B, S, D),
        "attrs": {"unidirectional": 1},
        "mask": np.array([[0, 0, 1, 1, 1], [1] * 5], np.int32),
        "outputs": ("y", "", "", "qk"),
    },
    "past_mask": {
        "k": (B, S, D),
        "v": (B, S, D),
        "past": 4,
        "mask": np.array([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 9], np.int32),
        "outputs": ("y", "present_k", "present_v"),
    },
}


@pytest.mark.parametrize("case", sorted(MHA_CASES))
def test_multi_head_attention(case):
    model, feeds = _mha(**MHA_CASES[case])
    check_conversion(model, feeds=feeds, atol=2e-5)


@pytest.mark.parametrize("packed", ["qkv", "kv"])
def test_multi_head_attention_packed(packed):
    """Packed QKV / KV have no CPU kernel: compared with onnxruntime on the unpacked inputs."""
    length = S
    packed_shape = (B, length, N, 3 if packed == "qkv" else 2, H)
    if packed == "qkv":
        model, _ = _mha(q=packed_shape, k=None, v=None)
    else:
        model, _ = _mha(k=packed_shape, v=None)
    feeds = {"q": _rand(B, S, D)} if packed == "kv" else {}
    feeds["k" if packed == "kv" else "q"] = _rand(*packed_shape)
    src = "k" if packed == "kv" else "q"
    names = ["pq", "pk", "pv"] if packed == "qkv" else ["pk", "pv"]
    nodes = [helper.make_node("Split", [src], names, axis=3)]
    for name in names:
        nodes.append(helper.make_node("Reshape", [name, "flat"], [name + "_f"]))
    q_name = "pq_f" if packed == "qkv" else "q"
    nodes.append(ms_node("MultiHeadAttention", [q_name, "pk_f", "pv_f"], ["y"], num_heads=N))
    inputs = [(n, F, a.shape) for n, a in feeds.items()]
    ref = ms_model(nodes, inputs, [("y", F)], {"flat": np.array([B, length, N * H], np.int64)})
    check_against(model, ref, feeds, atol=2e-5)


# ---- RotaryEmbedding (com.microsoft) ---------------------------------------------------------

ROTARY_CASES = {
    "3d_positions": ((2, 5, 32), (2, 5), {"num_heads": 2}),
    "3d_offset": ((2, 5, 32), (1,), {}),  # heads from the cache width
    "3d_interleaved": ((2, 5, 32), (2, 5), {"num_heads": 2, "interleaved": 1}),
    "4d": ((2, 2, 5, 16), (2, 5), {}),
    "4d_offset_interleaved": ((2, 2, 5, 16), (1,), {"interleaved": 1}),
    "partial": ((2, 5, 32), (2, 5), {"num_heads": 2, "rotary_embedding_dim": 8}),
}


@pytest.mark.parametrize("case", sorted(ROTARY_CASES))
def test_ms_rotary_embedding(case):
    x_shape, pos_shape, attrs = ROTARY_CASES[case]
    half = attrs.get("rotary_embedding_dim", 16) // 2
    max_len = 12
    angles = np.arange(max_len)[:, None] * (1.0 / 100 ** (np.arange(half) / half))[None]
    inits = {"cos": np.cos(angles).astype(F), "sin": np.sin(angles).astype(F)}
    if pos_shape == (1,):
        pos = np.array([4], np.int64)
    else:
        pos = RNG.integers(0, max_len, pos_shape).astype(np.int64)
    node = ms_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], **attrs)
    model = ms_model([node], [("x", F, x_shape), ("pos", np.int64, pos_shape)], [("y", F)], inits)
    check_conversion(model, feeds={"x": _rand(*x_shape), "pos": pos}, atol=2e-5)


# ---- GroupQueryAttention -----------------------------------------------------------------------

GQ_N, GQ_KV, GQ_H = 4, 2, 16  # onnxruntime's rotary needs head_size % 16 == 0


def _gqa(b, s, past, total, seqlens, packed=False, rotary=False, attrs=None):
    ins, feeds, inits = [], {}, {"total": np.array(total, np.int32)}
    q_width = (GQ_N + 2 * GQ_KV) * GQ_H if packed else GQ_N * GQ_H
    ins.append(("q", F, (b, s, q_width)))
    feeds["q"] = _rand(b, s, q_width)
    order = ["q"]
    if packed:
        order += ["", ""]
    else:
        for name in ("k", "v"):
            ins.append((name, F, (b, s, GQ_KV * GQ_H)))
            feeds[name] = _rand(b, s, GQ_KV * GQ_H)
            order.append(name)
    if past:
        for name in ("pk", "pv"):
            ins.append((name, F, (b, GQ_KV, past, GQ_H)))
            feeds[name] = _rand(b, GQ_KV, past, GQ_H)
            order.append(name)
    else:
        order += ["", ""]
    ins.append(("seqlens", np.int32, (b,)))
    feeds["seqlens"] = np.array(seqlens, np.int32)
    order += ["seqlens", "total"]
    if rotary:
        half = GQ_H // 2
        angles = np.arange(32)[:, None] * (1.0 / 50 ** (np.arange(half) / half))[None]
        inits["cos"], inits["sin"] = np.cos(angles).astype(F), np.sin(angles).astype(F)
        order += ["cos", "sin"]
    attrs = {"num_heads": GQ_N, "kv_num_heads": GQ_KV, "do_rotary": int(rotary), **(attrs or {})}
    node = ms_node("GroupQueryAttention", order, ["y", "present_k", "present_v"], **attrs)
    model = ms_model([node], ins, [("y", F), ("present_k", F), ("present_v", F)], inits)
    return model, feeds


GQA_CASES = {
    "prompt": dict(b=2, s=5, past=0, total=5, seqlens=[4, 4]),
    "prompt_packed": dict(b=2, s=5, past=0, total=5, seqlens=[4, 4], packed=True),
    "prompt_rotary": dict(b=2, s=5, past=0, total=5, seqlens=[4, 4], rotary=True),
    "prompt_window_softcap": dict(
        b=1, s=8, past=0, total=8, seqlens=[7], attrs={"local_window_size": 3, "softcap": 2.0}
    ),
    "decode": dict(b=2, s=1, past=6, total=7, seqlens=[6, 4]),
    "decode_rotary_interleaved": dict(
        b=2,
        s=1,
        past=6,
        total=7,
        seqlens=[6, 3],
        rotary=True,
        attrs={"rotary_interleaved": 1, "scale": 0.2},
    ),
    "decode_window": dict(
        b=2, s=1, past=6, total=7, seqlens=[6, 5], attrs={"local_window_size": 2}
    ),
    "subsequent_prompt": dict(b=1, s=3, past=4, total=7, seqlens=[6], rotary=True),
}


@pytest.mark.parametrize("case", sorted(GQA_CASES))
def test_group_query_attention(case):
    model, feeds = _gqa(**GQA_CASES[case])
    check_conversion(model, feeds=feeds, atol=2e-5)


def _gqa_extra_input(model, feeds, index: int, name: str, value: np.ndarray):
    node = model.graph.node[0]
    while len(node.input) < index:
        node.input.append("")
    node.input.append(name)
    model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, value.shape))
    feeds[name] = value


@pytest.mark.parametrize("extra", ["attention_bias", "head_sink", "smooth_softmax"])
@pytest.mark.parametrize("decode", [False, True])
def test_group_query_attention_bias_and_sinks(extra, decode):
    kw = (
        dict(b=2, s=1, past=5, total=6, seqlens=[5, 3])
        if decode
        else dict(b=2, s=5, past=0, total=5, seqlens=[4, 4])
    )
    attrs = {"smooth_softmax": 1} if extra == "smooth_softmax" else {}
    model, feeds = _gqa(**kw, attrs=attrs)
    if extra == "attention_bias":
        _gqa_extra_input(model, feeds, 10, "ab", _rand(2, 1, kw["s"], kw["total"]))
    elif extra == "head_sink":
        _gqa_extra_input(model, feeds, 11, "sink", _rand(GQ_N))
    check_conversion(model, feeds=feeds, atol=2e-5)


def test_group_query_attention_refusals():
    model, _ = _gqa(b=1, s=1, past=3, total=4, seqlens=[3], attrs={"qk_output": 1})
    err = expect_refusal(model, "unsupported_attribute_value")
    assert "qk_output" in str(err) and "GroupQueryAttention" in str(err)


# ---- whole fused graphs, as onnxruntime's transformer optimizer writes them -------------------


def _bert_block(hidden=32, heads=4, seq=7, vocab=50):
    """Embeddings + one encoder layer: EmbedLayerNormalization -> Attention (mask_index from the
    embedding op) -> SkipLayerNormalization -> MatMul -> BiasGelu -> MatMul ->
    SkipLayerNormalization (with bias)."""
    h = hidden
    inits = {
        "word": _rand(vocab, h),
        "pos": _rand(16, h),
        "seg": _rand(2, h),
        "g0": _rand(h),
        "b0": _rand(h),
        "qkv_w": _rand(h, 3 * h, scale=0.2),
        "qkv_b": _rand(3 * h, scale=0.1),
        "o_w": _rand(h, h, scale=0.2),
        "g1": _rand(h),
        "b1": _rand(h),
        "o_b": _rand(h),
        "f1_w": _rand(h, 4 * h, scale=0.2),
        "f1_b": _rand(4 * h),
        "f2_w": _rand(4 * h, h, scale=0.1),
        "f2_b": _rand(h),
        "g2": _rand(h),
        "b2": _rand(h),
    }
    nodes = [
        ms_node(
            "EmbedLayerNormalization",
            ["ids", "segs", "word", "pos", "seg", "g0", "b0", "mask"],
            ["emb", "mask_index"],
            epsilon=1e-12,
        ),
        ms_node("Attention", ["emb", "qkv_w", "qkv_b", "mask_index"], ["att"], num_heads=heads),
        helper.make_node("MatMul", ["att", "o_w"], ["att_o"]),
        ms_node(
            "SkipLayerNormalization", ["att_o", "emb", "g1", "b1", "o_b"], ["ln1"], epsilon=1e-12
        ),
        helper.make_node("MatMul", ["ln1", "f1_w"], ["f1"]),
        ms_node("BiasGelu", ["f1", "f1_b"], ["gelu"]),
        helper.make_node("MatMul", ["gelu", "f2_w"], ["f2"]),
        ms_node("SkipLayerNormalization", ["f2", "ln1", "g2", "b2", "f2_b"], ["y"], epsilon=1e-12),
    ]
    ins = [("ids", np.int32, (2, seq)), ("segs", np.int32, (2, seq)), ("mask", np.int32, (2, seq))]
    feeds = {
        "ids": RNG.integers(0, vocab, (2, seq)).astype(np.int32),
        "segs": (np.arange(seq)[None] >= 4).astype(np.int32).repeat(2, 0),
        "mask": (np.arange(seq)[None] < np.array([[5], [7]])).astype(np.int32),
    }
    return ms_model(nodes, ins, [("y", F)], inits), feeds


def test_bert_like_fused_graph():
    model, feeds = _bert_block()
    chk = check_conversion(model, feeds=feeds, atol=5e-5)
    assert "CUSTOM" not in chk.ops


def test_gpt2_like_fused_graph_with_past():
    """opset-13 graph: onnxruntime's LayerNormalization (ONNX domain) -> unidirectional
    Attention with past/present -> SkipLayerNormalization -> MatMul -> FastGelu(bias)."""
    h, heads, seq, past = 32, 4, 3, 5
    inits = {
        "g0": _rand(h),
        "b0": _rand(h),
        "qkv_w": _rand(h, 3 * h, scale=0.2),
        "qkv_b": _rand(3 * h, scale=0.1),
        "o_w": _rand(h, h, scale=0.2),
        "g1": _rand(h),
        "b1": _rand(h),
        "o_b": _rand(h),
        "f_w": _rand(h, 4 * h, scale=0.2),
        "f_b": _rand(4 * h),
    }
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g0", "b0"], ["ln0"], epsilon=1e-5),
        ms_node(
            "Attention",
            ["ln0", "qkv_w", "qkv_b", "mask", "past"],
            ["att", "present"],
            num_heads=heads,
            unidirectional=1,
        ),
        helper.make_node("MatMul", ["att", "o_w"], ["att_o"]),
        ms_node("SkipLayerNormalization", ["att_o", "x", "g1", "b1", "o_b"], ["ln1"], epsilon=1e-5),
        helper.make_node("MatMul", ["ln1", "f_w"], ["f"]),
        ms_node("FastGelu", ["f", "f_b"], ["y"]),
    ]
    ins = [
        ("x", F, (2, seq, h)),
        ("mask", np.int32, (2, past + seq)),
        ("past", F, (2, 2, heads, past, h // heads)),
    ]
    feeds = {
        "x": _rand(2, seq, h),
        "mask": (np.arange(past + seq)[None] >= np.array([[2], [0]])).astype(np.int32),
        "past": _rand(2, 2, heads, past, h // heads),
    }
    model = ms_model(nodes, ins, [("y", F), ("present", F)], inits, opset=13)
    chk = check_conversion(model, feeds=feeds, atol=5e-5)
    assert "CUSTOM" not in chk.ops


# ---- DynamicQuantizeLSTM -----------------------------------------------------------------------


def _dq_lstm(
    direction="forward",
    per_channel=False,
    states=False,
    peepholes=False,
    uint8=False,
    seq=6,
    batch=1,
    inp=24,
    hidden=16,
    attrs=None,
):
    dirs = 2 if direction == "bidirectional" else 1
    wdt = np.uint8 if uint8 else np.int8
    lo, hi = (0, 256) if uint8 else (-128, 128)
    sshape = (dirs, 4 * hidden) if per_channel else (dirs,)
    inits = {
        "W": RNG.integers(lo, hi, (dirs, inp, 4 * hidden)).astype(wdt),
        "R": RNG.integers(lo, hi, (dirs, hidden, 4 * hidden)).astype(wdt),
        "B": _rand(dirs, 8 * hidden, scale=0.1),
        "ws": RNG.uniform(0.002, 0.01, sshape).astype(F),
        "wz": (np.full(sshape, 128 if uint8 else 0)).astype(wdt),
        "rs": RNG.uniform(0.002, 0.01, sshape).astype(F),
        "rz": (RNG.integers(120, 136, sshape) if uint8 else np.zeros(sshape)).astype(wdt),
    }
    ins = [("x", F, (seq, batch, inp))]
    feeds = {"x": _rand(seq, batch, inp)}
    order = ["x", "W", "R", "B", ""]
    if states:
        for name in ("h0", "c0"):
            ins.append((name, F, (dirs, batch, hidden)))
            feeds[name] = _rand(dirs, batch, hidden, scale=0.5)
        order += ["h0", "c0"]
    else:
        order += ["", ""]
    if peepholes:
        inits["P"] = _rand(dirs, 3 * hidden, scale=0.3)
    order += ["P" if peepholes else "", "ws", "wz", "rs", "rz"]
    node = ms_node(
        "DynamicQuantizeLSTM",
        order,
        ["y", "yh", "yc"],
        hidden_size=hidden,
        direction=direction,
        **(attrs or {}),
    )
    model = ms_model([node], ins, [("y", F), ("yh", F), ("yc", F)], inits)
    return model, feeds


DQ_LSTM_CASES = {
    "forward": {},
    "reverse_states": {"direction": "reverse", "states": True},
    "bidirectional_per_channel": {"direction": "bidirectional", "per_channel": True},
    "uint8_zero_points_peepholes": {"uint8": True, "peepholes": True},
    "clip_activations": {
        "attrs": {"clip": 1.5, "activations": ["HardSigmoid", "Tanh", "Tanh"]},
    },
    "long_reduction": {"inp": 768, "hidden": 32},  # K = 768: the exact digit split
    # onnxruntime keeps the batch together (no batch parallelism) for 2-4 rows, hidden > 256
    "batch2_hidden_272": {"batch": 2, "hidden": 272, "seq": 3},
}


@pytest.mark.parametrize("case", sorted(DQ_LSTM_CASES))
def test_dynamic_quantize_lstm(case):
    model, feeds = _dq_lstm(**DQ_LSTM_CASES[case])
    check_conversion(model, feeds=feeds, atol=2e-5)


def test_dynamic_quantize_lstm_batch_parallel_rows():
    """For 2+ rows with hidden <= 256 onnxruntime quantizes each thread's rows separately; with
    one thread per row (pinned here so that the reference does not depend on the machine)
    that is one scale per row, which the lowering reproduces."""
    import onnxruntime as ort

    model, feeds = _dq_lstm(direction="bidirectional", batch=3, hidden=16)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    res = convert(model)
    actual = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"))
    for name, e in expected.items():
        np.testing.assert_allclose(actual[name], e, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "op,inits", [("Gelu", {}), ("FastGelu", {"b": _rand(16)}), ("BiasGelu", {"b": _rand(16)})]
)
def test_gelu_family_decompose(op, inits):
    """--decompose Gelu (delegates without GELU) also covers the contrib GELUs."""
    chk = check_conversion(one_node(op, {"x": (2, 5, 16)}, inits), decompose=("Gelu",))
    assert "GELU" not in chk.ops


# ---- com.microsoft QOperator ops in the float32 file ------------------------------------------

U8 = np.uint8


def _q(dtype, shape):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, int(info.max) + 1, shape).astype(dtype)


def _qop_check(model, feeds, max_step: int = 0):
    """LiteRT against onnxruntime on quantized outputs: equal, or (``max_step`` = 1, where
    onnxruntime's own CPU kernels differ at rounding ties) one step apart on < 1% of values."""
    res = convert(model)
    expected = V.run_onnxruntime(model, feeds)
    actual = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"))
    for name, e in expected.items():
        a = actual[name]
        assert a.shape == e.shape and a.dtype == e.dtype, (a.shape, e.shape, a.dtype, e.dtype)
        diff = np.abs(a.astype(np.int32) - e.astype(np.int32))
        assert diff.max() <= max_step, (name, diff.max())
        assert np.mean(diff > 0) < 0.01, (name, np.mean(diff > 0))
    return res


def _qparams(prefix, scale, zp, dtype=U8):
    return {f"{prefix}s": np.array(scale, F), f"{prefix}z": np.array(zp, dtype)}


@pytest.mark.parametrize("dtype", [U8, np.int8])
@pytest.mark.parametrize("b_shape", [(2, 8, 6, 6), (1, 8, 1, 1), ()])
def test_qlinear_add(dtype, b_shape):
    zp = 0 if dtype == np.int8 else 128
    inits = {
        **_qparams("a", 0.05, zp - 3, dtype),
        **_qparams("b", 0.03, zp + 5, dtype),
        **_qparams("y", 0.07, zp + 1, dtype),
    }
    node = ms_node("QLinearAdd", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    model = ms_model(
        [node], [("a", dtype, (2, 8, 6, 6)), ("b", dtype, b_shape)], [("y", dtype)], inits
    )
    _qop_check(model, {"a": _q(dtype, (2, 8, 6, 6)), "b": _q(dtype, b_shape)}, max_step=1)


@pytest.mark.parametrize("dtype", [U8, np.int8])
def test_qlinear_mul(dtype):
    zp = 0 if dtype == np.int8 else 128
    inits = {
        **_qparams("a", 0.05, zp - 3, dtype),
        **_qparams("b", 0.03, zp + 5, dtype),
        **_qparams("y", 0.2, zp + 1, dtype),
    }
    node = ms_node("QLinearMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    model = ms_model(
        [node], [("a", dtype, (2, 8, 6, 6)), ("b", dtype, (8, 1, 1))], [("y", dtype)], inits
    )
    _qop_check(model, {"a": _q(dtype, (2, 8, 6, 6)), "b": _q(dtype, (8, 1, 1))})


@pytest.mark.parametrize("dtype", [U8, np.int8])
def test_qlinear_global_average_pool(dtype):
    zp = 0 if dtype == np.int8 else 128
    inits = {**_qparams("x", 0.05, zp - 7, dtype), **_qparams("y", 0.01, zp + 2, dtype)}
    node = ms_node("QLinearGlobalAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"])
    model = ms_model([node], [("x", dtype, (2, 16, 7, 7))], [("y", dtype)], inits)
    _qop_check(model, {"x": _q(dtype, (2, 16, 7, 7))})


def test_qlinear_concat():
    inits = {**_qparams("y", 0.05, 128), **_qparams("a", 0.05, 128), **_qparams("b", 0.02, 100)}
    node = ms_node("QLinearConcat", ["ys", "yz", "a", "as", "az", "b", "bs", "bz"], ["y"], axis=1)
    model = ms_model([node], [("a", U8, (1, 4, 5, 5)), ("b", U8, (1, 6, 5, 5))], [("y", U8)], inits)
    _qop_check(model, {"a": _q(U8, (1, 4, 5, 5)), "b": _q(U8, (1, 6, 5, 5))})


@pytest.mark.parametrize(
    "op,attrs,step", [("QLinearSigmoid", {}, 1), ("QLinearLeakyRelu", {"alpha": 0.1}, 0)]
)
def test_qlinear_lookup_ops(op, attrs, step):
    inits = {**_qparams("x", 0.05, 120), **_qparams("y", 1 / 255 if "Sigmoid" in op else 0.04, 3)}
    node = ms_node(op, ["x", "xs", "xz", "ys", "yz"], ["y"], **attrs)
    model = ms_model([node], [("x", U8, (2, 8, 6, 6))], [("y", U8)], inits)
    _qop_check(
        model,
        {"x": np.arange(2 * 8 * 36, dtype=np.int64).reshape(2, 8, 6, 6).astype(U8)},
        max_step=step,
    )


def test_qoperator_cnn_block_float_io():
    """Q -> QLinearConv -> QLinearAdd (residual) -> QLinearGlobalAveragePool -> DQ, as
    quantize_static(QuantFormat.QOperator) writes a ResNet block: float32 file vs onnxruntime,
    and the integer variant is built from the same model."""
    w = _q(U8, (8, 8, 3, 3))
    inits = {
        **_qparams("x", 0.02, 128),
        **_qparams("w", 0.01, 128),
        **_qparams("c", 0.05, 120),
        **_qparams("s", 0.06, 126),
        **_qparams("g", 0.01, 120),
        "w": w,
        "bias": RNG.integers(-500, 500, 8).astype(np.int32),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node(
            "QLinearConv",
            ["xq", "xs", "xz", "w", "ws", "wz", "cs", "cz", "bias"],
            ["cq"],
            pads=[1, 1, 1, 1],
        ),
        ms_node("QLinearAdd", ["cq", "cs", "cz", "xq", "xs", "xz", "ss", "sz"], ["sq"]),
        ms_node("QLinearGlobalAveragePool", ["sq", "ss", "sz", "gs", "gz"], ["gq"]),
        helper.make_node("DequantizeLinear", ["gq", "gs", "gz"], ["y"]),
    ]
    model = ms_model(nodes, [("x", F, (1, 8, 10, 10))], [("y", F)], inits)
    feeds = {"x": _rand(1, 8, 10, 10, scale=1.0)}
    res = convert(model)
    expected = V.run_onnxruntime(model, feeds)["y"]
    actual = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"))["y"]
    # in output quantization steps: a QLinearAdd tie upstream may move an average by one
    steps = np.abs(actual - expected) / 0.01
    assert steps.max() <= 1.0001, steps.max()
    assert "integer_quant" in res.variants


@pytest.mark.parametrize("out", ["quantized", "float"])
@pytest.mark.parametrize("attrs", [{}, {"transB": 1, "alpha": 0.75}, {"transA": 1}])
@pytest.mark.parametrize("per_column", [False, True])
def test_qgemm(out, attrs, per_column):
    m, k, n = 4, 300, 10  # K * 255 * 255 >= 2**24: the digit split
    a_shape = (k, m) if attrs.get("transA") else (m, k)
    b_shape = (n, k) if attrs.get("transB") else (k, n)
    inits = {
        "as": np.array(0.02, F),
        "az": np.array(128, U8),
        "b": _q(U8, b_shape),
        "bs": (RNG.uniform(0.005, 0.02, n) if per_column else np.array(0.01)).astype(F),
        "bz": (RNG.integers(120, 136, n) if per_column else np.array(128)).astype(U8),
        "c": RNG.integers(-3000, 3000, n).astype(np.int32),
    }
    order = ["a", "as", "az", "b", "bs", "bz", "c"]
    if out == "quantized":
        inits.update(ys=np.array(0.3, F), yz=np.array(120, U8))
        order += ["ys", "yz"]
    node = ms_node("QGemm", order, ["y"], **attrs)
    model = ms_model([node], [("a", U8, a_shape)], [("y", U8 if out == "quantized" else F)], inits)
    feeds = {"a": _q(U8, a_shape)}
    if out == "quantized":
        _qop_check(model, feeds)
    else:
        check_conversion(model, feeds=feeds, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2]},
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        {"kernel_shape": [2, 2], "pads": [0, 0, 1, 1]},
    ],
)
def test_qlinear_average_pool(attrs):
    # scales like a calibration's (round ones put exact ties on the lattice, which float32
    # resolves either way, as onnxruntime's own kernels may)
    inits = {**_qparams("x", 0.0473, 120), **_qparams("y", 0.0391, 125)}
    node = ms_node("QLinearAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], **attrs)
    model = ms_model([node], [("x", U8, (1, 8, 9, 9))], [("y", U8)], inits)
    _qop_check(model, {"x": _q(U8, (1, 8, 9, 9))}, max_step=1)


@pytest.mark.parametrize(
    "opset,axis,shape", [(13, -1, (3, 10)), (12, 1, (2, 4, 5)), (13, 2, (2, 3, 7))]
)
def test_qlinear_softmax(opset, axis, shape):
    inits = {**_qparams("x", 0.0731, 120), **_qparams("y", 1 / 256, 0)}
    node = ms_node("QLinearSoftmax", ["x", "xs", "xz", "ys", "yz"], ["y"], opset=opset, axis=axis)
    model = ms_model([node], [("x", U8, shape)], [("y", U8)], inits)
    _qop_check(model, {"x": _q(U8, shape)}, max_step=1)


@pytest.mark.parametrize("weights", ["QUInt8", "QInt8"])
def test_quantize_static_qoperator_model(weights, tmp_path):
    """A CNN as onnxruntime's quantize_static writes it in QOperator format (QLinearConv,
    QLinearAdd, QLinearGlobalAveragePool, QLinearMatMul, QLinearSoftmax): the float32 file
    matches onnxruntime and the integer variant is built."""
    import onnx
    from harness import small_cnn
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            samples = [np.random.default_rng(i).standard_normal((1, 3, 8, 8)) for i in range(8)]
            self.it = iter([{"x": s.astype(F)} for s in samples])

        def get_next(self):
            return next(self.it, None)

    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(small_cnn(3), src)
    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QOperator,
        activation_type=QuantType.QUInt8,
        weight_type=getattr(QuantType, weights),
    )
    model = onnx.load(dst)
    assert any(n.op_type == "QLinearSoftmax" for n in model.graph.node)
    chk = check_conversion(model, feeds={"x": _rand(1, 3, 8, 8)}, atol=1e-5)
    assert "integer_quant" in chk.result.variants


QATT_CASES = {
    "plain": {},
    "lengths_per_column": {"mask": np.array([3, 5], np.int32), "per_column": True},
    "gpt2_past": {"attrs": {"unidirectional": 1}, "past": (2, B, N, 4, 8)},
    "long_reduction": {"hidden": 768},  # K = 768 uint8 x int8: the exact digit split
}


@pytest.mark.parametrize("case", sorted(QATT_CASES))
def test_qattention_after_dynamic_quantize(case):
    """What quantize_dynamic makes of a fused Attention: DynamicQuantizeLinear(x) feeding
    QAttention with a run-time input scale and zero point."""
    kw = QATT_CASES[case]
    hidden = kw.get("hidden", D)
    heads = N
    per_column = kw.get("per_column", False)
    inits = {
        "w": _int8_weights(hidden, 3 * hidden),
        "b": _rand(3 * hidden, scale=0.1),
        "ws": (RNG.uniform(0.002, 0.01, 3 * hidden) if per_column else np.array(0.005)).astype(F),
    }
    ins = [("x", F, (B, S, hidden))]
    feeds = {"x": _rand(B, S, hidden)}
    order = ["xq", "w", "b", "xs", "ws", "", "xz", "", ""]
    if "mask" in kw:
        ins.append(("mask", np.int32, kw["mask"].shape))
        feeds["mask"] = kw["mask"]
        order[5] = "mask"
    if "past" in kw:
        ins.append(("past", F, kw["past"]))
        feeds["past"] = _rand(*kw["past"])
        order[8] = "past"
    while not order[-1]:
        order.pop()
    outs = ["y", "present"] if "past" in kw else ["y"]
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        ms_node("QAttention", order, outs, num_heads=heads, **kw.get("attrs", {})),
    ]
    model = ms_model(nodes, ins, [(o, F) for o in outs], inits)
    check_conversion(model, feeds=feeds, atol=2e-5)


def test_qembed_layer_norm():
    b, s, hidden, vocab = 2, 7, 16, 30
    inits = {}
    for name, shape in (
        ("word", (vocab, hidden)),
        ("pos", (12, hidden)),
        ("seg", (2, hidden)),
        ("gamma", (hidden,)),
        ("beta", (hidden,)),
    ):
        inits[name] = _q(U8, shape)
        inits[name + "_s"] = np.array(RNG.uniform(0.005, 0.02), F)
        inits[name + "_z"] = np.array(RNG.integers(100, 150), U8)
    order = [
        "ids",
        "segs",
        "word",
        "pos",
        "seg",
        "gamma",
        "beta",
        "mask",
        "word_s",
        "pos_s",
        "seg_s",
        "gamma_s",
        "beta_s",
        "word_z",
        "pos_z",
        "seg_z",
        "gamma_z",
        "beta_z",
    ]
    node = ms_node("QEmbedLayerNormalization", order, ["y", "mask_index"], epsilon=1e-12)
    ins = [("ids", np.int32, (b, s)), ("segs", np.int32, (b, s)), ("mask", np.int32, (b, s))]
    feeds = {
        "ids": RNG.integers(0, vocab, (b, s)).astype(np.int32),
        "segs": (np.arange(s)[None] >= 3).astype(np.int32).repeat(b, 0),
        "mask": (np.arange(s)[None] < np.array([[4], [7]])).astype(np.int32),
    }
    model = ms_model([node], ins, [("y", F), ("mask_index", np.int32)], inits)
    check_conversion(model, feeds=feeds, atol=2e-5)


def test_optimized_then_quantize_dynamic_bert(tmp_path):
    """onnxruntime's documented BERT recipe: transformer optimizer (fused ops), then
    quantize_dynamic, which turns EmbedLayerNormalization and Attention into
    QEmbedLayerNormalization and QAttention and the MatMuls into DynamicQuantizeLinear +
    MatMulInteger: the float32 file matches onnxruntime."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model, feeds = _bert_block(hidden=64, heads=4, seq=7)
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, src)
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    quantized = onnx.load(dst)
    ops = {n.op_type for n in quantized.graph.node}
    assert {"QEmbedLayerNormalization", "QAttention", "MatMulInteger"} <= ops, ops
    check_conversion(quantized, feeds=feeds, atol=5e-5)
