"""Mechanisms that make full-integer models more accurate, each proven in LiteRT against the
float ONNX model in onnxruntime:

- per-channel Mul/Add/Sub after a weighted op (a BatchNormalization written out, as in DenseNet
  and Inception exports) fold into its weights and bias, and chains of them on other tensors
  become one 1x1 DEPTHWISE_CONV_2D: exact in float, one integer rounding instead of several;
- a value read only by ReLU-like clamps is quantized over the clamp's range (a Concat before a
  Relu, which cannot fuse it);
- a global AVERAGE_POOL_2D runs as MEAN, which may rescale to the pooled value's own range;
- bias correction: the average error of the rounded weights against the calibrated
  per-channel input means (weighted per kernel tap by how often it reads padding) is
  subtracted from the bias (int8, int16x8 and, when calibration data is given, the
  dynamic-range variant);
- with float outputs, the op computing a float softmax head's logits runs in float with
  hybrid int8 weights (the logits' int8 step would dominate the probabilities' error).
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from harness import make_model, op_histogram
from onnx import helper

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V
from onnx2tflite_direct.builder import build_flatbuffer
from onnx2tflite_direct.pipeline import lower_model
from onnx2tflite_direct.quant import bias_correction as BC
from onnx2tflite_direct.quant import calibration as C
from onnx2tflite_direct.quant import integer as I
from onnx2tflite_direct.quant import integer_plan as P
from onnx2tflite_direct.quant import variants as QV

F = np.float32


def _rng(seed):
    return np.random.default_rng(seed)


def bn_chain_net(channels=8, double_bn=True, shift_op="Add", scalar_scale=False, seed=0):
    """Conv -> Mul -> Add -> Relu, Concat with the input, BatchNormalization written out as
    Mul/Add (twice with ``double_bn``) -> Relu, global AveragePool. NCHW 1x4x9x9."""
    rng = _rng(seed)
    c_in, hw = 4, 9
    total = channels + c_in

    def per_channel(n, lo, hi):
        shape = (1,) if scalar_scale else (1, n, 1, 1)
        return rng.uniform(lo, hi, shape).astype(F)

    inits = {
        "w": (rng.standard_normal((channels, c_in, 3, 3)) * 0.4).astype(F),
        "b": (rng.standard_normal(channels) * 0.1).astype(F),
        "s1": per_channel(channels, 0.5, 1.5),
        "t1": (rng.standard_normal((1, channels, 1, 1)) * 0.3).astype(F),
        "s2": per_channel(total, 0.5, 1.5),
        "t2": (rng.standard_normal((1, total, 1, 1)) * 0.3).astype(F),
        "s3": per_channel(total, 0.8, 1.2),
        "t3": (rng.standard_normal((1, total, 1, 1)) * 0.2).astype(F),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "s1"], ["m1"]),
        helper.make_node(shift_op, ["m1", "t1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("Concat", ["r1", "x"], ["cat"], axis=1),
        helper.make_node("Mul", ["cat", "s2"], ["m2"]),
        helper.make_node("Add", ["m2", "t2"], ["a2"]),
    ]
    last = "a2"
    if double_bn:
        nodes += [
            helper.make_node("Mul", ["a2", "s3"], ["m3"]),
            helper.make_node("Add", ["m3", "t3"], ["a3"]),
        ]
        last = "a3"
    nodes += [
        helper.make_node("Relu", [last], ["r2"]),
        helper.make_node("AveragePool", ["r2"], ["y"], kernel_shape=[hw, hw]),
    ]
    return make_model(
        nodes,
        inputs=[("x", F, (1, c_in, hw, hw))],
        outputs=[("y", F, (1, total, 1, 1))],
        initializers=inits,
    )


def concat_relu_net(seed=0):
    """Two convolutions concatenated, then Relu (which a CONCATENATION cannot fuse)."""
    rng = _rng(seed)
    inits = {
        "w1": (rng.standard_normal((6, 3, 3, 3)) * 0.5).astype(F),
        "w2": (rng.standard_normal((6, 3, 1, 1)) * 0.5).astype(F),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "w2"], ["c2"]),
        helper.make_node("Concat", ["c1", "c2"], ["cat"], axis=1),
        helper.make_node("Relu", ["cat"], ["y"]),
    ]
    return make_model(
        nodes,
        inputs=[("x", F, (1, 3, 8, 8))],
        outputs=[("y", F, (1, 12, 8, 8))],
        initializers=inits,
    )


def deep_relu_net(depth=4, width=16, seed=0):
    """Conv -> Relu stacks (post-ReLU inputs have a positive mean: what bias correction is
    for), a global average pool and a Gemm head."""
    rng = _rng(seed)
    nodes, inits, x, c = [], {}, "x", 3
    for k in range(depth):
        inits[f"w{k}"] = (rng.standard_normal((width, c, 3, 3)) * np.sqrt(2.0 / (9 * c))).astype(F)
        inits[f"b{k}"] = (rng.standard_normal(width) * 0.05).astype(F)
        nodes += [
            helper.make_node("Conv", [x, f"w{k}", f"b{k}"], [f"c{k}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{k}"], [f"r{k}"]),
        ]
        x, c = f"r{k}", width
    inits["fc"] = (rng.standard_normal((10, width)) * 0.3).astype(F)
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1),
    ]
    return make_model(
        nodes,
        inputs=[("x", F, (2, 3, 10, 10))],
        outputs=[("y", F, (2, 10))],
        initializers=inits,
    )


def _samples(model, count, seed):
    rng = _rng(seed)
    out = {}
    for vi in V.graph_inputs(model):
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        out[vi.name] = rng.standard_normal((count * shape[0], *shape[1:])).astype(F)
    return out


def _sqnr_db(expected, actual) -> float:
    expected, actual = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    noise = float(np.sum((expected - actual) ** 2))
    return 200.0 if noise == 0 else float(10 * np.log10(np.sum(expected**2) / noise))


def _run(tflite: bytes, feeds: dict) -> dict:
    """LiteRT outputs for float feeds (ONNX layout: the models are converted keeping it)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=tflite).get_signature_runner()
    return {k: np.asarray(v) for k, v in runner(**feeds).items()}


def _variant_sqnr(
    model, kind, quantize, calib_seed=1, eval_seed=2, eval_count=4, **kwargs
) -> float:
    """SQNR (dB) of one variant against onnxruntime on held-out samples (batch by batch)."""
    res = convert(
        model,
        quantize=quantize,
        calibration_data=_samples(model, 16, calib_seed),
        keep_io_layout=True,
        **kwargs,
    )
    held_out = _samples(model, eval_count, eval_seed)
    batch = V.graph_inputs(model)[0].type.tensor_type.shape.dim[0].dim_value
    name = V.graph_inputs(model)[0].name
    out = model.graph.output[0].name
    refs, gots = [], []
    for k in range(0, held_out[name].shape[0], batch):
        feeds = {name: held_out[name][k : k + batch]}
        refs.append(V.run_onnxruntime(model, feeds)[out])
        gots.append(_run(res.variants[kind], feeds)[out])
    return _sqnr_db(np.concatenate(refs), np.concatenate(gots))


def _float_run(model_ir, feeds) -> np.ndarray:
    return next(iter(_run(build_flatbuffer(model_ir), feeds).values()))


# ----------------------------------------------------------------------------------------------
# Pass 0 rewrites: exact in float
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("double_bn", [True, False])
@pytest.mark.parametrize("shift_op", ["Add", "Sub"])
@pytest.mark.parametrize("scalar_scale", [False, True])
@pytest.mark.parametrize("channels", [5, 8])
def test_affine_folding_and_pool_as_mean_are_exact_in_float(
    double_bn, shift_op, scalar_scale, channels
):
    model = bn_chain_net(channels, double_bn, shift_op, scalar_scale)
    lowered = lower_model(model, keep_io_layout=True)
    folded_ir = copy.deepcopy(lowered.model_ir)
    removed = I.fold_affine_constants(folded_ir.subgraphs[0])
    before = op_histogram(build_flatbuffer(lowered.model_ir))
    after = op_histogram(build_flatbuffer(folded_ir))
    assert removed == (5 if double_bn else 3)
    assert "MUL" not in after and "SUB" not in after and "ADD" not in after, after
    assert after.get("MEAN") == 1 and "AVERAGE_POOL_2D" not in after
    assert after["DEPTHWISE_CONV_2D"] == before.get("DEPTHWISE_CONV_2D", 0) + 1
    feeds = _samples(model, 1, seed=5)
    expected = V.run_onnxruntime(model, feeds)["y"]
    np.testing.assert_allclose(_float_run(folded_ir, feeds), expected, rtol=1e-4, atol=1e-5)


def test_shared_conv_output_or_activation_blocks_folding():
    """A conv output read twice (or a conv with a fused activation) keeps its Mul."""
    rng = _rng(3)
    inits = {
        "w": (rng.standard_normal((4, 4, 1, 1)) * 0.5).astype(F),
        "s": rng.uniform(0.5, 1.5, (1, 4, 1, 1)).astype(F),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Mul", ["c", "s"], ["m"]),
        helper.make_node("Add", ["m", "c"], ["y"]),
    ]
    model = make_model(
        nodes,
        inputs=[("x", F, (1, 4, 5, 5))],
        outputs=[("y", F, (1, 4, 5, 5))],
        initializers=inits,
    )
    ir = lower_model(model, keep_io_layout=True).model_ir
    I.fold_affine_constants(ir.subgraphs[0])
    hist = op_histogram(build_flatbuffer(ir))
    assert hist.get("CONV_2D") == 1 and hist.get("ADD") == 1
    feeds = _samples(model, 1, seed=6)
    np.testing.assert_allclose(
        _float_run(ir, feeds), V.run_onnxruntime(model, feeds)["y"], rtol=1e-4, atol=1e-5
    )


# ----------------------------------------------------------------------------------------------
# Integer accuracy: each mechanism against the same model without it
# ----------------------------------------------------------------------------------------------


def _without_folding(monkeypatch):
    monkeypatch.setattr(I, "fold_affine_constants", lambda sub, keep_nodes=(): 0)


def _without_clamp_ranges(monkeypatch):
    monkeypatch.setattr(P.IntegerPlan, "_clamped_by_readers", lambda self, t, rng: rng)


def _without_bias_correction(monkeypatch):
    monkeypatch.setattr(QV._Ranges, "channel_means", lambda self: {})


@pytest.mark.parametrize(
    "model_fn, disable, min_gain_db",
    [
        (bn_chain_net, _without_folding, 1.0),
        (concat_relu_net, _without_clamp_ranges, 1.0),
        (deep_relu_net, _without_bias_correction, 0.5),
    ],
)
def test_mechanism_improves_int8(monkeypatch, model_fn, disable, min_gain_db):
    model = model_fn()
    with_it = _variant_sqnr(model, "integer_quant", ["int8"])
    with monkeypatch.context() as m:
        disable(m)
        without = _variant_sqnr(model, "integer_quant", ["int8"])
    assert with_it > 25.0, with_it
    assert with_it >= without + min_gain_db, (with_it, without)


def test_global_average_pool_output_gets_its_own_scale():
    """The pooled value's range is a fraction of its input's; MEAN writes it at its own scale
    (AVERAGE_POOL_2D would have to keep the input scale)."""
    from ai_edge_litert.interpreter import Interpreter

    model = bn_chain_net()
    res = convert(model, quantize=["int8"], calibration_data=_samples(model, 8, 1))
    tflite = res.variants["integer_quant"]
    details = {d["name"]: d for d in Interpreter(model_content=tflite).get_tensor_details()}
    by_index = {d["index"]: d for d in details.values()}
    interp = Interpreter(model_content=tflite)
    interp.allocate_tensors()
    means = [op for op in interp._get_ops_details() if op["op_name"] == "MEAN"]
    assert len(means) == 1
    x, y = by_index[means[0]["inputs"][0]], by_index[means[0]["outputs"][0]]
    assert y["quantization"][0] < x["quantization"][0] / 2


@pytest.mark.parametrize("activations", ["int8", "int16x8"])
def test_bias_correction_in_both_integer_widths(monkeypatch, activations):
    kind = "integer_quant" if activations == "int8" else "integer_quant_with_int16_act"
    model = deep_relu_net(seed=1)
    with_it = _variant_sqnr(model, kind, [activations])
    with monkeypatch.context() as m:
        _without_bias_correction(m)
        without = _variant_sqnr(model, kind, [activations])
    assert with_it > without, (with_it, without)


def test_dynamic_variant_uses_calibration_means_when_given():
    model = deep_relu_net(seed=2)
    with_data = _variant_sqnr(model, "dynamic_range_quant", ["dynamic"])
    res = convert(model, quantize=["dynamic"], keep_io_layout=True)
    held_out = _samples(model, 4, 2)
    refs, gots = [], []
    for k in range(0, 8, 2):
        feeds = {"x": held_out["x"][k : k + 2]}
        refs.append(V.run_onnxruntime(model, feeds)["y"])
        gots.append(_run(res.variants["dynamic_range_quant"], feeds)["y"])
    without = _sqnr_db(np.concatenate(refs), np.concatenate(gots))
    assert with_data > without, (with_data, without)


def test_weights_on_the_int8_grid_need_no_correction():
    """Exact weights: the correction is zero and the bias stays as it was."""
    from onnx2tflite_direct import tfl

    q = _rng(7).integers(-127, 128, (4, 1, 1, 64))
    q[:, 0, 0, 0] = 127
    scale = np.array([0.01, 0.02, 0.03, 0.04], F)
    w = (q * scale[:, None, None, None]).astype(F)
    w_float = tfl.Tensor("w", np.dtype(F), w.shape, data=w)
    quant = tfl.Quantization(scale=scale, zero_point=np.zeros(4, np.int64))
    w_int = tfl.Tensor("wq", np.dtype(np.int8), w.shape, data=q.astype(np.int8), quantization=quant)
    x = tfl.Tensor("x", np.dtype(F), (1, 3, 3, 64))
    bias = tfl.Tensor("b", np.dtype(F), (4,), data=np.ones(4, F))
    y = tfl.Tensor("y", np.dtype(F), (1, 3, 3, 4))
    op = tfl.Operator("CONV_2D", [x, w_float, bias], [y])
    assert BC.correct_bias(op, w_float, BC.dequantized(w_int), {"x": np.full(64, 0.5)})
    np.testing.assert_allclose(op.inputs[2].data, 1.0, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Calibration: per-channel means
# ----------------------------------------------------------------------------------------------


def test_histogram_channel_means_match_numpy_and_shrink_noisy_ones():
    rng = _rng(4)
    h = C.TensorHistogram(64)
    chunks = [
        rng.standard_normal((2, 5, 8, 8)) + np.arange(1, 6)[None, :, None, None] for _ in range(3)
    ]
    for c in chunks:
        h.update(c.astype(F))
    exact = np.concatenate(chunks).mean(axis=(0, 2, 3))
    got = h.channel_means()  # 384 values a channel: kept up to a little shrinkage
    np.testing.assert_allclose(got, exact, rtol=5e-3)
    assert np.all(np.abs(got) <= np.abs(exact))
    flat = C.TensorHistogram(64)
    flat.update(np.ones(7, F))
    assert flat.channel_means() is None
    # 16 samples of [N, C] features: a mean well inside its own noise is shrunk to 0, a mean
    # far outside it is kept.
    few = C.TensorHistogram(64)
    feats = rng.standard_normal((16, 2)) * [1.0, 0.01] + [0.05, 3.0]
    few.update(feats.astype(F))
    means = few.channel_means()
    assert means[0] == 0.0
    np.testing.assert_allclose(means[1], feats[:, 1].mean(), rtol=1e-4)


def test_means_follow_the_axis_a_tensor_stores_last():
    """Bias correction contracts the stored last axis: a channel-last tensor gets the ONNX
    channel means, one kept in ONNX order (rank >= 3) the means of the ONNX last axis (a
    transformer's hidden features), a padded copy its source's; other copies get none."""
    hist = C.TensorHistogram(16)
    hist.update((np.ones((4, 3, 8, 5)) * np.arange(1, 6)).astype(F))
    tensor_map = {
        "nhwc": {
            "tensor": "t1",
            "perm": [0, 2, 3, 1],
            "inner": None,
            "derived": [
                {"tensor": "t1/padded", "relation": "padded"},
                {"tensor": "t1/r", "relation": "reshaped"},
            ],
        },
        "nchw": {"tensor": "t2", "perm": [0, 1, 2, 3], "inner": None, "derived": []},
        "other": {"tensor": "t3", "perm": [0, 1, 3, 2], "inner": None, "derived": []},
    }
    means = C.tflite_channel_means({"nhwc": hist, "nchw": hist, "other": hist}, tensor_map)
    assert set(means) == {"t1", "t1/padded", "t2"}
    np.testing.assert_allclose(means["t1"], [3.0, 3.0, 3.0], rtol=1e-2)  # (a little shrunk)
    np.testing.assert_allclose(means["t2"], [1.0, 2.0, 3.0, 4.0, 5.0])


def test_flattened_features_get_their_means_in_stored_order():
    """A [N, C*H*W] matrix flattened from NHWC data stores feature j of ONNX order at the
    position the layout's inner order gives: the means are permuted the same way."""
    from onnx2tflite_direct.layout import Inner

    hist = C.TensorHistogram(16)
    feats = _rng(5).standard_normal((64, 12)) * 0.01 + np.arange(1, 13)  # [N, C*H*W]: C3 H2 W2
    hist.update(feats.astype(F))
    inner = Inner((3, 2, 2), (1, 2, 0))  # stored HWC, ONNX CHW
    tensor_map = {
        "flat": {
            "tensor": "t",
            "perm": [0, 1],
            "inner": {"shape": list(inner.shape), "perm": list(inner.perm)},
            "derived": [],
        }
    }
    means = C.tflite_channel_means({"flat": hist}, tensor_map)["t"]
    stored = feats[:, inner.element_order()]  # what the TFLite tensor holds
    np.testing.assert_allclose(means, stored.mean(axis=0), rtol=1e-3)


def flatten_fc_net(seed=0):
    """Conv -> Relu -> MaxPool -> Flatten -> Gemm: the Gemm reads channel-last features in
    the flattened (inner) order."""
    rng = _rng(seed)
    inits = {
        "w": (rng.standard_normal((8, 3, 3, 3)) * 0.5).astype(F),
        "fc": (rng.standard_normal((64, 32)) * 0.3).astype(F),  # >= 1,024: hybrid
        "fb": np.zeros(64, F),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1),
    ]
    return make_model(
        nodes, inputs=[("x", F, (1, 3, 8, 8))], outputs=[("y", F, (1, 64))], initializers=inits
    )


def test_fully_connected_on_flattened_features_gets_its_bias_corrected(monkeypatch):
    """The FC's corrected bias is exactly ``b - (Wq - W) . E[f]`` in ONNX order (E[f] from the
    calibration statistics): the stored order of the features is followed, not ignored."""
    from onnx2tflite_direct import tfl
    from onnx2tflite_direct.quant import dynamic_range as D

    model = flatten_fc_net()
    calib = _samples(model, 16, 1)
    corrected = {}
    real = BC.correct_bias

    def spy(op, w_float, w_int, means, producer=None):
        done = real(op, w_float, w_int, means, producer)
        if op.opcode == "FULLY_CONNECTED":
            corrected["bias"] = op.inputs[2].data.copy() if done else None
        return done

    monkeypatch.setattr(QV, "correct_bias", spy)
    convert(model, quantize=["dynamic"], calibration_data=calib, keep_io_layout=True)
    assert corrected["bias"] is not None
    stats = C.collect_statistics(model, calib, C.CalibrationConfig(progress=False))
    mu = stats["f"].channel_means()  # ONNX feature order
    w = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "fc"))
    # Rows are output channels in both orders: each weight rounds the same way in either.
    wq = D.hybrid_weight(tfl.Tensor("fc", F, w.shape, data=w), "FULLY_CONNECTED", True)
    expected = -(wq.data * wq.quantization.scale[:, None] - w) @ mu
    assert np.abs(expected).max() > 100 * 2e-6  # the tolerance is far below the correction
    np.testing.assert_allclose(corrected["bias"], expected, rtol=1e-3, atol=2e-6)


# ----------------------------------------------------------------------------------------------
# Float output heads: the logits stay float, with hybrid int8 weights
# ----------------------------------------------------------------------------------------------


def classifier_net(seed=0, classes=40):
    """Conv -> Relu -> global pool -> Gemm (logits) -> Softmax, the output."""
    rng = _rng(seed)
    inits = {
        "w": (rng.standard_normal((16, 3, 3, 3)) * 0.5).astype(F),
        "fc": (rng.standard_normal((classes, 64)) * 1.0).astype(F),
        "fb": (rng.standard_normal(classes) * 0.1).astype(F),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    return make_model(
        nodes,
        inputs=[("x", F, (1, 3, 8, 8))],
        outputs=[("y", F, (1, classes))],
        initializers=inits,
    )


def head_net(seed=0, classes=40):
    """Relu -> Gemm (logits) -> Softmax, the output: a classifier's head alone."""
    rng = _rng(seed)
    inits = {
        "fc": (rng.standard_normal((classes, 64)) * 0.5).astype(F),
        "fb": (rng.standard_normal(classes) * 0.1).astype(F),
    }
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Gemm", ["r", "fc", "fb"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    return make_model(
        nodes, inputs=[("x", F, (1, 64))], outputs=[("y", F, (1, classes))], initializers=inits
    )


def _op_tensors(tflite: bytes, opcode: str) -> list[tuple[dict, dict]]:
    """(weight, input) tensor details of every ``opcode`` operator of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    interp.allocate_tensors()
    by_index = {d["index"]: d for d in interp.get_tensor_details()}
    return [
        (by_index[op["inputs"][1]], by_index[op["inputs"][0]])
        for op in interp._get_ops_details()
        if op["op_name"] == opcode
    ]


def test_softmax_logits_stay_float_with_hybrid_int8_weights(monkeypatch):
    model = classifier_net()
    calib = _samples(model, 16, 1)
    res = convert(model, quantize=["int8"], calibration_data=calib, keep_io_layout=True)
    summary = {s["kind"]: s for s in res.report["quantization"]}
    floats = summary["integer_quant"]["float_ops"]
    assert [f["op"] for f in floats] == ["FULLY_CONNECTED", "SOFTMAX"]
    assert floats[0]["reason"] == P.FLOAT_HEAD_INPUT
    [(weight, data)] = _op_tensors(res.variants["integer_quant"], "FULLY_CONNECTED")
    assert weight["dtype"] == np.int8 and data["dtype"] == np.float32  # hybrid kernel
    # Integer outputs (the full-integer file) and --strict-integer keep the head integer.
    assert summary["full_integer_quant"]["float_ops"] == []
    strict = convert(model, quantize=["int8"], calibration_data=calib, strict_integer=True)
    [(_, data)] = _op_tensors(strict.variants["integer_quant"], "FULLY_CONNECTED")
    assert data["dtype"] == np.int8
    # Accuracy, on the head alone (the body's own error would blur it): int8 logits are
    # clipped to the calibrated range and stepped by range / 255; float logits are neither.
    head = head_net()
    with_it = _variant_sqnr(head, "integer_quant", ["int8"], eval_count=64)
    with monkeypatch.context() as m:
        m.setattr(P.IntegerPlan, "_float_head_inputs", lambda self: set())
        without = _variant_sqnr(head, "integer_quant", ["int8"], eval_count=64)
    assert with_it > without + 3.0, (with_it, without)


@pytest.mark.parametrize(
    "size, kernel, stride, padding, out, expected",
    [
        (4, 3, 1, "SAME", 4, [3 / 4, 1, 3 / 4]),
        (5, 3, 2, "SAME", 3, [2 / 3, 1, 2 / 3]),
        (6, 3, 1, "VALID", 4, [1, 1, 1]),
    ],
)
def test_taps_inside_count_the_padding_a_tap_reads(size, kernel, stride, padding, out, expected):
    """Bias correction weighs each kernel tap by how often it reads the image (the mean)
    rather than zero padding: checked against a direct count."""
    from onnx2tflite_direct import tfl

    x = tfl.Tensor("x", np.dtype(F), (1, size, size, 2))
    w = tfl.Tensor(
        "w", np.dtype(F), (3, kernel, kernel, 2), data=np.ones((3, kernel, kernel, 2), F)
    )
    y = tfl.Tensor("y", np.dtype(F), (1, out, out, 3))
    options = {"padding": padding, "stride_h": stride, "stride_w": stride}
    rows, cols = BC._taps_inside(tfl.Operator("CONV_2D", [x, w], [y], options), {})
    np.testing.assert_allclose(rows, expected)
    np.testing.assert_allclose(cols, expected)


def test_taps_inside_see_an_explicit_pad():
    from onnx2tflite_direct import tfl

    src = tfl.Tensor("src", np.dtype(F), (1, 4, 4, 2))
    pads = tfl.Tensor(
        "p", np.dtype(np.int32), (4, 2), data=np.array([[0, 0], [1, 1], [2, 2], [0, 0]], np.int32)
    )
    x = tfl.Tensor("x", np.dtype(F), (1, 6, 8, 2))
    pad = tfl.Operator("PAD", [src, pads], [x])
    w = tfl.Tensor("w", np.dtype(F), (3, 3, 5, 2), data=np.ones((3, 3, 5, 2), F))
    y = tfl.Tensor("y", np.dtype(F), (1, 4, 4, 3))
    conv = tfl.Operator("CONV_2D", [x, w], [y], {"padding": "VALID"})
    rows, cols = BC._taps_inside(conv, {id(x): pad})
    np.testing.assert_allclose(rows, [3 / 4, 1, 3 / 4])
    np.testing.assert_allclose(cols, [2 / 4, 3 / 4, 1, 3 / 4, 2 / 4])


def _masked_attention(mask_value: float) -> onnx.ModelProto:
    """scores + (1 - mask) * mask_value -> Softmax -> MatMul: an additive attention mask the
    way torch/transformers exports it (mask_value = finfo(float32).min) or older code (-1e4)."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["s"]),
        helper.make_node("Sub", ["one", "m"], ["inv"]),
        helper.make_node("Mul", ["inv", "big"], ["bias"]),
        helper.make_node("Add", ["s", "bias"], ["z"]),
        helper.make_node("Softmax", ["z"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    inits = {
        "w": rng.standard_normal((8, 16)).astype(np.float32),
        "v": rng.standard_normal((16, 8)).astype(np.float32),
        "one": np.float32(1),
        "big": np.float32(mask_value),
    }
    return make_model(
        nodes,
        [("x", np.float32, (1, 16, 8)), ("m", np.float32, (1, 1, 16))],
        [("y", np.float32, (1, 16, 8))],
        initializers=inits,
    )


def _mask_feeds(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((n, 1, 16), np.float32)
    mask[:, :, 12:] = 0
    return {"x": rng.standard_normal((n, 16, 8)).astype(np.float32), "m": mask}


@pytest.mark.parametrize(
    "kind,floor", [("integer_quant", 28), ("integer_quant_with_int16_act", 38)]
)
def test_float_min_attention_mask_is_clamped_not_lost(kind, floor):
    """A finfo(float32).min mask quantized over its full range left a step of 1e36: the
    ADD's rescale of the scores underflowed (and the mask MUL's overflowed), so attention
    became uniform (~1 dB). The mask is now clamped where it already acts as -inf and its
    computation kept float; the result equals the -1e4 mask's."""
    results = {}
    for value in (float(np.finfo(np.float32).min), -1e4):
        model = _masked_attention(value)
        res = convert(model, quantize=["int8", "int16x8"], calibration_data=_mask_feeds(16, 0))
        feeds = _mask_feeds(1, 1)
        want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
        got = V.run_litert(res.variants[kind], feeds, res.report["io"])["y"]
        results[value] = 10 * np.log10(np.sum(want**2) / np.sum((want - got) ** 2))
    assert min(results.values()) >= floor, results
    assert abs(results[-1e4] - results[float(np.finfo(np.float32).min)]) < 1.0, results


def pooled_head_net(seed=0, classes=40):
    """Relu -> 1x1 Conv (logits) -> Softmax over the channels of [1, C, 1, 1], the output:
    the softmax runs on [1, C] and a RESHAPE gives the output its shape."""
    rng = _rng(seed)
    inits = {
        "w": (rng.standard_normal((classes, 64, 1, 1)) * 0.5).astype(F),
        "b": (rng.standard_normal(classes) * 0.1).astype(F),
    }
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Conv", ["r", "w", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    return make_model(
        nodes,
        inputs=[("x", F, (1, 64, 1, 1))],
        outputs=[("y", F, (1, classes, 1, 1))],
        initializers=inits,
    )


def test_softmax_head_reshaped_to_the_output_stays_float(monkeypatch):
    model = pooled_head_net()
    res = convert(
        model, quantize=["int8"], calibration_data=_samples(model, 16, 1), keep_io_layout=True
    )
    [summary] = [s for s in res.report["quantization"] if s["kind"] == "integer_quant"]
    floats = [(f["op"], f["reason"]) for f in summary["float_ops"]]
    assert floats == [
        ("CONV_2D", P.FLOAT_HEAD_INPUT),
        ("SOFTMAX", P.FLOAT_HEAD),
        ("RESHAPE", P.FLOAT_HEAD),
    ], floats
    with_it = _variant_sqnr(model, "integer_quant", ["int8"], eval_count=64)
    with monkeypatch.context() as m:  # only a softmax writing the output itself counts
        m.setattr(
            P.IntegerPlan,
            "_float_head_ops",
            lambda self: {
                id(op)
                for op in self.sub.operators
                if op.opcode in P.FIXED_SCALE_HEADS
                and any(id(t) in self.graph_outputs for t in op.outputs)
            },
        )
        without = _variant_sqnr(model, "integer_quant", ["int8"], eval_count=64)
    assert with_it > without + 10.0, (with_it, without)


def token_mlp_net(seed=0, tokens=16, hidden=64):
    """[1, tokens, hidden] -> Relu -> MatMul -> Add -> Relu -> MatMul: a transformer's MLP,
    whose weights contract the last axis (the features), not ONNX axis 1 (the tokens)."""
    rng = _rng(seed)
    inits = {
        "w1": (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(F),
        "b1": (rng.standard_normal(hidden) * 0.1).astype(F),
        "w2": (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(F),
    }
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("MatMul", ["r", "w1"], ["m"]),
        helper.make_node("Add", ["m", "b1"], ["a"]),
        helper.make_node("Relu", ["a"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["y"]),
    ]
    shape = (1, tokens, hidden)
    return make_model(
        nodes, inputs=[("x", F, shape)], outputs=[("y", F, shape)], initializers=inits
    )


@pytest.mark.parametrize(
    "kind, quantize",
    [("dynamic_range_quant", "dynamic"), ("integer_quant_with_int16_act", "int16x8")],
)
def test_token_features_get_their_means_for_bias_correction(monkeypatch, kind, quantize):
    model = token_mlp_net()
    with_it = _variant_sqnr(model, kind, [quantize], eval_count=16)
    with monkeypatch.context() as m:
        m.setattr(C.TensorHistogram, "feature_means", lambda self: None)
        without = _variant_sqnr(model, kind, [quantize], eval_count=16)
    assert with_it > without + 1.5, (with_it, without)  # measured +2.6 / +2.9 dB
