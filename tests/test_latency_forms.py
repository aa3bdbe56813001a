"""Latency forms (issue 22): idioms from real models that ran far slower in LiteRT than in
onnxruntime, lowered to an exact faster form. Each test checks the numbers against
onnxruntime and the operator form that makes it fast."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnx2tflite_direct import convert
from onnx2tflite_direct.lowering import conv as conv_mod
from onnx2tflite_direct.validate import make_interpreter
from tests.harness import check_conversion


def _conv_model(x_shape, w, dilations, pads, strides=None, group=1, auto_pad=None):
    rng = np.random.default_rng(1)
    o = w.shape[0]
    attrs = {"dilations": dilations, "group": group}
    if auto_pad:
        attrs["auto_pad"] = auto_pad
    else:
        attrs["pads"] = pads
    if strides:
        attrs["strides"] = strides
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel()),
            helper.make_tensor(
                "b", TensorProto.FLOAT, [o], rng.standard_normal(o).astype(np.float32)
            ),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _filter_shape(model):
    res = convert(model, keep_io_layout=True)
    interp = make_interpreter(bytes(res.tflite_bytes))
    for d in interp._get_ops_details():
        if d["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return tuple(interp._get_tensor_details(d["inputs"][1], 0)["shape"]), [
                d2["op_name"] for d2 in interp._get_ops_details()
            ]
    raise AssertionError("no conv")


RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("dil", "expect_k"),
    [(24, (1, 1)), (36, (1, 1)), (1, (3, 3))],
)
def test_aspp_dilated_conv_drops_padding_only_taps(dil, expect_k):
    """DeepLab's ASPP 3x3 convs at dilation 24/36 on a 14x14 map: only the centre tap reads the
    input, so the conv is a 1x1 conv without PAD (dilation 1 keeps all taps)."""
    w = (RNG.standard_normal((16, 24, 3, 3)) * 0.2).astype(np.float32)
    model = _conv_model((1, 24, 14, 14), w, [dil, dil], [dil] * 4)
    x = RNG.standard_normal((1, 24, 14, 14)).astype(np.float32)
    check_conversion(model, {"x": x})
    shape, ops = _filter_shape(model)
    assert shape[1:3] == expect_k
    if expect_k == (1, 1):
        assert "PAD" not in ops


def test_dead_taps_one_axis_and_asymmetric():
    """Dilation reaching past the map on one axis only (a wide, short feature map), uneven pads and
    a stride: the height axis keeps its live taps, the numbers are unchanged."""
    w = (RNG.standard_normal((8, 6, 3, 5)) * 0.3).astype(np.float32)
    model = _conv_model((1, 6, 4, 20), w, [6, 2], [6, 3, 6, 5], strides=[1, 2])
    x = RNG.standard_normal((1, 6, 4, 20)).astype(np.float32)
    check_conversion(model, {"x": x})
    shape, _ = _filter_shape(model)
    assert shape[1:3] == (1, 5)


def test_dead_taps_depthwise_and_1d():
    """Depthwise 5x5 at dilation 8 on a 6x6 map (centre only) and a 1-D conv at dilation 9 on 7
    steps."""
    w = (RNG.standard_normal((12, 1, 5, 5)) * 0.3).astype(np.float32)
    model = _conv_model((1, 12, 6, 6), w, [8, 8], [16] * 4, group=12)
    x = RNG.standard_normal((1, 12, 6, 6)).astype(np.float32)
    check_conversion(model, {"x": x})
    shape, _ = _filter_shape(model)
    assert shape[1:3] == (1, 1)
    w1 = (RNG.standard_normal((5, 4, 3)) * 0.3).astype(np.float32)
    m1 = _conv_model((1, 4, 7), w1, [9], [9, 9])
    check_conversion(m1, {"x": RNG.standard_normal((1, 4, 7)).astype(np.float32)})


def test_dead_taps_switch_off_keeps_full_kernel(monkeypatch):
    w = (RNG.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    model = _conv_model((1, 3, 5, 5), w, [6, 6], [6] * 4)
    monkeypatch.setattr(conv_mod, "TRIM_DEAD_TAPS", False)
    monkeypatch.setattr(conv_mod, "SPLIT_PADDING_REGIONS", False)
    shape, _ = _filter_shape(model)
    assert shape[1:3] == (3, 3)


def _depthwise_filters(model):
    res = convert(model, keep_io_layout=True)
    interp = make_interpreter(bytes(res.tflite_bytes))
    shapes = []
    for d in interp._get_ops_details():
        if d["op_name"] == "DEPTHWISE_CONV_2D":
            shapes.append(tuple(interp._get_tensor_details(d["inputs"][1], 0)["shape"]))
    return shapes


@pytest.mark.parametrize(
    ("x_shape", "kernel", "dil", "stride", "pads", "mult"),
    [
        ((1, 16, 20, 20), (7, 7), 1, 1, [3, 3, 3, 3], 1),  # PP-OCRv5/v6 detector neck
        ((1, 8, 15, 13), (7, 7), 1, 2, [3, 2, 1, 3], 1),  # stride, uneven pads
        ((1, 8, 18, 18), (6, 5), 2, 1, [5, 4, 4, 4], 2),  # dilation, depth multiplier 2
        ((1, 6, 9, 9), (9, 9), 1, 1, [0, 0, 0, 0], 1),  # VALID
    ],
)
def test_wide_depthwise_runs_as_tiles_of_at_most_25_taps(x_shape, kernel, dil, stride, pads, mult):
    """XNNPACK's depthwise conv of more than 25 taps is 30-70x slower than its 5x5: the conv is
    a sum of depthwise convs over kernel row bands of <= 25 taps, each on its window of the
    input; numbers equal onnxruntime's (addition order only)."""
    c = x_shape[1]
    w = (RNG.standard_normal((c * mult, 1, *kernel)) * 0.2).astype(np.float32)
    model = _conv_model(x_shape, w, [dil, dil], pads, strides=[stride, stride], group=c)
    check_conversion(model, {"x": RNG.standard_normal(x_shape).astype(np.float32)})
    shapes = _depthwise_filters(model)
    assert len(shapes) > 1
    assert all(s[1] * s[2] <= conv_mod.MAX_DEPTHWISE_TAPS for s in shapes)
    assert sum(s[1] * s[2] for s in shapes) == kernel[0] * kernel[1]


def test_wide_depthwise_1d():
    """A 1-D depthwise conv of 31 taps (audio/text models) runs as two bands."""
    w = (RNG.standard_normal((10, 1, 31)) * 0.2).astype(np.float32)
    model = _conv_model((1, 10, 50), w, [1], [15, 15], group=10)
    check_conversion(model, {"x": RNG.standard_normal((1, 10, 50)).astype(np.float32)})
    shapes = _depthwise_filters(model)
    assert sorted(s[2] for s in shapes) == [15, 16]
    assert len(shapes) == 2


def test_wide_depthwise_switch_off(monkeypatch):
    w = (RNG.standard_normal((4, 1, 7, 7)) * 0.2).astype(np.float32)
    model = _conv_model((1, 4, 10, 10), w, [1, 1], [3] * 4, group=4)
    monkeypatch.setattr(conv_mod, "SPLIT_WIDE_DEPTHWISE", False)
    assert _depthwise_filters(model) == [(1, 7, 7, 4)]


def _deconv_model(c_in, c_out, k, s, hw, bias=True, pads=None):
    w = (RNG.standard_normal((c_in, c_out, k, k)) * 0.3).astype(np.float32)
    inits = [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())]
    ins = ["x", "w"]
    if bias:
        b = RNG.standard_normal(c_out).astype(np.float32)
        inits.append(helper.make_tensor("b", TensorProto.FLOAT, [c_out], b))
        ins.append("b")
    attrs = {"kernel_shape": [k, k], "strides": [s, s]}
    if pads:
        attrs["pads"] = pads
    node = helper.make_node("ConvTranspose", ins, ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _op_names(model):
    res = convert(model, keep_io_layout=True)
    return [d["op_name"] for d in make_interpreter(bytes(res.tflite_bytes))._get_ops_details()]


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "bias"), [(24, 1, 2, True), (16, 8, 2, False), (6, 5, 3, True)]
)
def test_non_overlapping_conv_transpose_is_conv_and_depth_to_space(c_in, c_out, k, bias):
    """ConvTranspose with kernel == stride (DB text-detector head, U-Net upsampling): each
    output reads one input pixel, so it is a 1x1 CONV_2D to k*k*C_out channels and
    DEPTH_TO_SPACE (XNNPACK's deconvolution is 4-25x slower for it)."""
    model = _deconv_model(c_in, c_out, k, k, 9, bias)
    check_conversion(model, {"x": RNG.standard_normal((1, c_in, 9, 9)).astype(np.float32)})
    ops = _op_names(model)
    assert "DEPTH_TO_SPACE" in ops and "TRANSPOSE_CONV" not in ops


def test_overlapping_or_padded_conv_transpose_keeps_transpose_conv():
    for model in (_deconv_model(4, 3, 3, 2, 7), _deconv_model(4, 3, 2, 2, 7, pads=[1, 1, 1, 1])):
        check_conversion(model, {"x": RNG.standard_normal((1, 4, 7, 7)).astype(np.float32)})
        assert "TRANSPOSE_CONV" in _op_names(model)


def _unrolled_rnn(steps, k, hidden, used=None, seed=3):
    """torch's unrolled RNNCell loop: h_t = tanh(Gemm(x[t], W_ih, b_ih) + Gemm(h, W_hh, b_hh)),
    with x[t] a Gather of step t; the outputs concatenated (h_0 an input, so that no step's
    Gemm folds into a constant)."""
    rng = np.random.default_rng(seed)
    w_ih = (rng.standard_normal((hidden, k)) / np.sqrt(k)).astype(np.float32)
    w_hh = (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
    b_ih = rng.standard_normal(hidden).astype(np.float32) * 0.1
    b_hh = rng.standard_normal(hidden).astype(np.float32) * 0.1
    inits = [
        helper.make_tensor("w_ih", TensorProto.FLOAT, w_ih.shape, w_ih.ravel()),
        helper.make_tensor("w_hh", TensorProto.FLOAT, w_hh.shape, w_hh.ravel()),
        helper.make_tensor("b_ih", TensorProto.FLOAT, [hidden], b_ih),
        helper.make_tensor("b_hh", TensorProto.FLOAT, [hidden], b_hh),
    ]
    nodes, h, outs = [], "hinit", []
    for t in used if used is not None else range(steps):
        inits.append(helper.make_tensor(f"i{t}", TensorProto.INT64, [], [t]))
        nodes += [
            helper.make_node("Gather", ["x", f"i{t}"], [f"x{t}"], axis=0),
            helper.make_node("Gemm", [f"x{t}", "w_ih", "b_ih"], [f"p{t}"], transB=1),
            helper.make_node("Gemm", [h, "w_hh", "b_hh"], [f"r{t}"], transB=1),
            helper.make_node("Add", [f"p{t}", f"r{t}"], [f"s{t}"]),
            helper.make_node("Tanh", [f"s{t}"], [f"h{t}"]),
        ]
        h = f"h{t}"
        outs.append(h)
    nodes.append(helper.make_node("Concat", outs, ["y"], axis=0))
    graph = helper.make_graph(
        nodes,
        "rnn",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, 1, k]),
            helper.make_tensor_value_info("hinit", TensorProto.FLOAT, [1, hidden]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _fc_inputs(model, **options):
    res = convert(model, keep_io_layout=True, **options)
    interp = make_interpreter(bytes(res.tflite_bytes), use_xnnpack=False)
    shapes = []
    for d in interp._get_ops_details():
        if d["op_name"] == "FULLY_CONNECTED":
            shapes.append(tuple(interp._get_tensor_details(d["inputs"][0], 0)["shape"]))
    return shapes


def test_unrolled_rnn_input_projection_is_one_fully_connected():
    """The per-step W_ih projections of an unrolled RNN become one FULLY_CONNECTED over all
    steps (the weights read once, not once per step); numbers as onnxruntime's."""
    model = _unrolled_rnn(steps=6, k=48, hidden=16)
    rng = np.random.default_rng(4)
    feeds = {
        "x": rng.standard_normal((6, 1, 48)).astype(np.float32),
        "hinit": rng.standard_normal((1, 16)).astype(np.float32),
    }
    check_conversion(model, feeds)
    shapes = _fc_inputs(model)
    assert shapes.count((6, 48)) == 1  # the batched input projection
    assert shapes.count((1, 16)) == 6  # the recurrent ones stay per step
    assert (1, 48) not in shapes
    off = _fc_inputs(model, disable_rewrites=("batch_row_projections",))
    assert off.count((1, 48)) == 6
    check_conversion(model, feeds, disable_rewrites=("batch_row_projections",))


def test_row_projections_of_few_rows_stay_per_row():
    """Two of eight rows used: one FULLY_CONNECTED over all eight would compute four times the
    rows needed, so the per-row form stays."""
    model = _unrolled_rnn(steps=8, k=32, hidden=8, used=[1, 6])
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 1, 32)).astype(np.float32)
    check_conversion(model, {"x": x, "hinit": rng.standard_normal((1, 8)).astype(np.float32)})
    assert _fc_inputs(model).count((1, 32)) == 2


def _conv_filters(model):
    res = convert(model, keep_io_layout=True)
    interp = make_interpreter(bytes(res.tflite_bytes), use_xnnpack=False)
    ops = interp._get_ops_details()
    shapes = [
        tuple(interp._get_tensor_details(d["inputs"][1], 0)["shape"])
        for d in ops
        if d["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")
    ]
    return shapes, [d["op_name"] for d in ops]


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "dil", "pads", "stride", "group", "regions"),
    [
        ((1, 24, 14, 14), (16, 24, 3, 3), 12, [12] * 4, 1, 1, 9),  # ASPP at dilation 12
        ((1, 8, 12, 12), (6, 8, 3, 3), 9, [9, 8, 9, 8], 2, 1, 9),  # stride 2, uneven pads
        ((1, 12, 10, 10), (12, 1, 3, 3), 7, [7] * 4, 1, 12, 9),  # depthwise
        ((1, 6, 16), (5, 6, 3), 12, [12, 12], 1, 1, 3),  # 1-D
    ],
)
def test_conv_mostly_on_padding_runs_per_live_region(
    x_shape, w_shape, dil, pads, stride, group, regions
):
    """A dilated conv whose taps mostly read zero padding: one VALID conv per region of outputs
    with the taps that read the input there, concatenated; no PAD, no product on padding."""
    rank = len(x_shape) - 2
    w = (RNG.standard_normal(w_shape) * 0.2).astype(np.float32)
    model = _conv_model(x_shape, w, [dil] * rank, pads, strides=[stride] * rank, group=group)
    check_conversion(model, {"x": RNG.standard_normal(x_shape).astype(np.float32)})
    shapes, ops = _conv_filters(model)
    assert len(shapes) == regions and "PAD" not in ops and "CONCATENATION" in ops
    full = int(np.prod(w_shape[2:]))
    assert max(s[1] * s[2] for s in shapes) <= full and min(s[1] * s[2] for s in shapes) < full


def test_conv_mostly_on_input_stays_one_conv(monkeypatch):
    """A 3x3 conv with pad 1 on a 16x16 map reads padding only at the border: one conv. With the
    switch off, the ASPP dilation-12 conv is one padded conv again."""
    w = (RNG.standard_normal((8, 4, 3, 3)) * 0.2).astype(np.float32)
    shapes, _ = _conv_filters(_conv_model((1, 4, 16, 16), w, [1, 1], [1] * 4))
    assert shapes == [(8, 3, 3, 4)]
    monkeypatch.setattr(conv_mod, "SPLIT_PADDING_REGIONS", False)
    shapes, ops = _conv_filters(_conv_model((1, 4, 14, 14), w, [12, 12], [12] * 4))
    assert shapes == [(8, 3, 3, 4)] and "CONCATENATION" not in ops


@pytest.mark.parametrize(("k", "dil", "group"), [(3, 12, 1), (3, 24, 1), (7, 1, 4)])
def test_size_dependent_forms_with_run_time_sizes(k, dil, group):
    """Dead taps, live regions and depthwise bands depend on the map size: with H and W left
    dynamic the file still matches onnxruntime at sizes the forms would split differently."""
    import onnxruntime as ort

    from onnx2tflite_direct.validate import litert_runner

    w = (RNG.standard_normal((4, 4 // group, k, k)) * 0.3).astype(np.float32)
    node = helper.make_node(
        "Conv", ["x", "w"], ["y"], dilations=[dil] * 2, pads=[dil * (k // 2)] * 4, group=group
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, "H", "W"])],
        [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    res = convert(model, keep_io_layout=True)
    run = litert_runner(bytes(res.tflite_bytes), res.report.get("io_table"))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for hw in [(14, 14), (30, 22), (9, 40)]:
        x = RNG.standard_normal((1, 4, *hw)).astype(np.float32)
        got, want = run({"x": x})["y"], sess.run(None, {"x": x})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))


def _stack_reduce_model(op_type, keepdims, n_inputs=3):
    names = [f"a{i}" for i in range(n_inputs)]
    nodes = [helper.make_node("Unsqueeze", [n, "ax"], [f"{n}u"]) for n in names]
    nodes.append(helper.make_node("Concat", [f"{n}u" for n in names], ["st"], axis=3))
    nodes.append(helper.make_node(op_type, ["st", "ax"], ["y"], keepdims=keepdims))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 7, 12]) for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("ax", TensorProto.INT64, [1], [3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize(
    ("op_type", "keepdims", "kind"),
    [("ReduceMax", 0, "MAXIMUM"), ("ReduceMin", 1, "MINIMUM"), ("ReduceMax", 1, "MAXIMUM")],
)
def test_stacked_max_is_an_elementwise_chain(op_type, keepdims, kind):
    """torch.stack([a, b, c], -1).max(-1) (a dilated-conv tokenizer's branch merge): MAXIMUM of
    the three, no CONCATENATION interleaving single elements; with the rule off, the stack."""
    model = _stack_reduce_model(op_type, keepdims)
    feeds = {f"a{i}": RNG.standard_normal((1, 7, 12)).astype(np.float32) for i in range(3)}
    check_conversion(model, feeds)
    ops = _op_names(model)
    assert ops.count(kind) == 2 and "CONCATENATION" not in ops
    assert not any(o.startswith("REDUCE") for o in ops)
    res = convert(model, keep_io_layout=True, disable_rewrites=("stacked_reduce_as_elementwise",))
    off = [d["op_name"] for d in make_interpreter(bytes(res.tflite_bytes))._get_ops_details()]
    assert "CONCATENATION" in off
