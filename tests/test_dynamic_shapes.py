"""Dynamic dims beyond the batch: a transformer encoder with a run-time sequence length and a
detector with run-time height and width, each run at several sizes through the signature
runner and compared with onnxruntime (dynamic_shapes.py, sample_shapes.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from harness import expect_refusal, op_histogram
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V

RNG = np.random.default_rng(11)
D, HEADS, VOCAB, MAX_POS = 32, 4, 50, 128


def _w(*shape, scale=0.2):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _ints(*values):
    return np.array(values, np.int64)


class _Graph:
    """A tiny graph builder: ``g.op("MatMul", a, b)`` returns the output name."""

    def __init__(self):
        self.nodes, self.inits, self._n = [], {}, 0

    def init(self, value, hint="c"):
        self._n += 1
        name = f"{hint}_{self._n}"
        self.inits[name] = value
        return name

    def op(self, op_type, *inputs, outputs=1, **attrs):
        self._n += 1
        outs = [f"{op_type.lower()}_{self._n}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if outputs == 1 else outs

    def dim(self, x, axis):
        """Shape(x)[axis] as a [1] int64 tensor, the way exporters write it."""
        shape = self.op("Shape", x)
        return self.op(
            "Unsqueeze",
            self.op("Gather", shape, self.init(_ints(axis)[0]), axis=0),
            self.init(_ints(0)),
        )

    def model(self, inputs, outputs):
        graph = helper.make_graph(
            self.nodes,
            "g",
            [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
            [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
            [numpy_helper.from_array(v, k) for k, v in self.inits.items()],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _layer_norm(g, x):
    return g.op("LayerNormalization", x, g.init(1 + _w(D, scale=0.1)), g.init(_w(D)), axis=-1)


def _linear(g, x, n_in, n_out):
    return g.op("Add", g.op("MatMul", x, g.init(_w(n_in, n_out))), g.init(_w(n_out)))


def _attention(g, x, mask_bias):
    """Heads split and merged with Reshape targets computed from Shape (batch and sequence
    are both run-time values), as torch.onnx writes multi-head attention."""
    batch, seq = g.dim(x, 0), g.dim(x, 1)
    heads = g.op("Concat", batch, seq, g.init(_ints(HEADS, D // HEADS)), axis=0)

    def split(t, perm):
        return g.op("Transpose", g.op("Reshape", t, heads), perm=perm)

    q = split(_linear(g, x, D, D), [0, 2, 1, 3])
    k = split(_linear(g, x, D, D), [0, 2, 3, 1])
    v = split(_linear(g, x, D, D), [0, 2, 1, 3])
    scores = g.op("Mul", g.op("MatMul", q, k), g.init(np.float32(1 / np.sqrt(D // HEADS))))
    probs = g.op("Softmax", g.op("Add", scores, mask_bias), axis=-1)
    ctx = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])
    merged = g.op("Reshape", ctx, g.op("Concat", batch, seq, g.init(_ints(D)), axis=0))
    return _linear(g, merged, D, D)


def transformer_encoder(layers=2):
    """BERT-like: token + position embeddings (position ids = Range over Shape), an
    attention mask turned into an additive bias, post-norm layers with an Erf GELU."""
    g = _Graph()
    word = g.op("Gather", g.init(_w(VOCAB, D, scale=1.0)), "input_ids")
    seq = g.op("Gather", g.op("Shape", "input_ids"), g.init(_ints(1)[0]), axis=0)
    positions = g.op("Range", g.init(_ints(0)[0]), seq, g.init(_ints(1)[0]))
    pos = g.op(
        "Gather", g.init(_w(MAX_POS, D, scale=1.0)), g.op("Unsqueeze", positions, g.init(_ints(0)))
    )
    x = _layer_norm(g, g.op("Add", word, pos))
    mask = g.op(
        "Cast", g.op("Unsqueeze", "attention_mask", g.init(_ints(1, 2))), to=TensorProto.FLOAT
    )
    bias = g.op("Mul", g.op("Sub", g.init(np.float32(1)), mask), g.init(np.float32(-1e4)))
    for _ in range(layers):
        x = _layer_norm(g, g.op("Add", x, _attention(g, x, bias)))
        h = _linear(g, x, D, 2 * D)
        erf = g.op("Erf", g.op("Mul", h, g.init(np.float32(1 / np.sqrt(2)))))
        gelu = g.op(
            "Mul", g.op("Mul", h, g.init(np.float32(0.5))), g.op("Add", erf, g.init(np.float32(1)))
        )
        x = _layer_norm(g, g.op("Add", x, _linear(g, gelu, 2 * D, D)))
    g.nodes.append(helper.make_node("Identity", [x], ["hidden"]))
    return g.model(
        [
            ("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            ("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [("hidden", TensorProto.FLOAT, ["batch", "sequence", D])],
    )


def detector():
    """Conv backbone (strides 2, 4, 8), an FPN upsample + concat, a head decoded against an
    anchor grid built at run time from Range over the feature map's Shape."""
    g = _Graph()

    def conv(x, c_in, c_out, k=3, stride=1):
        w = g.init(_w(c_out, c_in, k, k, scale=0.3))
        pad = k // 2
        y = g.op("Conv", x, w, g.init(_w(c_out)), strides=[stride, stride], pads=[pad] * 4)
        return g.op("Relu", y)

    p1 = conv(conv("images", 3, 8, stride=2), 8, 8, stride=2)  # /4
    p2 = conv(p1, 8, 16, stride=2)  # /8
    up = g.op("Resize", p2, "", g.init(np.array([1, 1, 2, 2], np.float32)), mode="nearest")
    fused = conv(g.op("Concat", p1, up, axis=1), 24, 16, k=1)
    head = g.op("Conv", fused, g.init(_w(6, 16, 1, 1)), g.init(_w(6)))  # [N, 6, h, w]
    n, h, w = g.dim(head, 0), g.dim(head, 2), g.dim(head, 3)
    cells = g.op("Mul", h, w)
    flat = g.op("Reshape", head, g.op("Concat", n, g.init(_ints(6)), cells, axis=0))
    preds = g.op("Transpose", flat, perm=[0, 2, 1])  # [N, h*w, 6]
    xy, wh, score = g.op("Split", preds, g.init(_ints(2, 2, 2)), axis=2, outputs=3)
    ys = g.op(
        "Cast",
        g.op("Range", g.init(_ints(0)[0]), g.op("Squeeze", h), g.init(_ints(1)[0])),
        to=TensorProto.FLOAT,
    )
    xs = g.op(
        "Cast",
        g.op("Range", g.init(_ints(0)[0]), g.op("Squeeze", w), g.init(_ints(1)[0])),
        to=TensorProto.FLOAT,
    )
    grid_shape = g.op("Concat", h, w, axis=0)
    gy = g.op("Expand", g.op("Unsqueeze", ys, g.init(_ints(1))), grid_shape)
    gx = g.op("Expand", g.op("Unsqueeze", xs, g.init(_ints(0))), grid_shape)
    grid = g.op(
        "Reshape",
        g.op(
            "Concat",
            g.op("Unsqueeze", gx, g.init(_ints(2))),
            g.op("Unsqueeze", gy, g.init(_ints(2))),
            axis=2,
        ),
        g.init(_ints(1, -1, 2)),
    )
    centers = g.op("Mul", g.op("Add", g.op("Sigmoid", xy), grid), g.init(np.float32(4)))
    sizes = g.op("Mul", g.op("Exp", wh), g.init(np.float32(4)))
    g.nodes.append(
        helper.make_node("Concat", [centers, sizes, g.op("Sigmoid", score)], ["boxes"], axis=2)
    )
    return g.model(
        [("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [("boxes", TensorProto.FLOAT, ["N", "cells", 6])],
    )


def _check_at_sizes(model, feeds_at, sizes):
    res = convert(model)
    sess = ort.InferenceSession(model.SerializeToString())
    for size in sizes:
        feeds = feeds_at(*size)
        expected = dict(
            zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True)
        )
        actual = V.run_litert(res.tflite_bytes, feeds, res.report["io"])
        for name, want in expected.items():
            got = actual[name]
            assert got.shape == want.shape, (size, name)
            tol = 1e-4 * max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=str(size))
    return res


def _token_feeds(batch, seq):
    ids = RNG.integers(0, VOCAB, (batch, seq)).astype(np.int64)
    mask = np.ones((batch, seq), np.int64)
    mask[:, seq - seq // 4 :] = 0  # padded tail
    return {"input_ids": ids, "attention_mask": mask}


def test_transformer_runs_at_sequence_8_16_128():
    res = _check_at_sizes(
        transformer_encoder(), _token_feeds, [(1, 8), (1, 16), (1, 128), (2, 16), (3, 8)]
    )
    rows = {r["name"]: r for r in res.report["io"]}
    assert rows["input_ids"]["shape_signature"] == [-1, -1]
    assert rows["hidden"]["shape_signature"] == [-1, -1, D]
    ops = op_histogram(res.tflite_bytes)
    assert ops["RANGE"] == 1  # position ids computed at run time, not folded
    assert "CUSTOM" not in ops


def _image_feeds(n, h, w):
    return {"images": RNG.standard_normal((n, 3, h, w)).astype(np.float32)}


def test_detector_runs_at_several_heights_and_widths():
    res = _check_at_sizes(detector(), _image_feeds, [(1, 64, 64), (1, 96, 160), (2, 128, 64)])
    rows = {r["name"]: r for r in res.report["io"]}
    assert rows["images"]["shape_signature"] == [-1, -1, -1, 3]  # channel-last, N/H/W dynamic
    assert op_histogram(res.tflite_bytes)["TRANSPOSE"] <= 1


def test_static_pins_give_a_static_model():
    res = convert(
        transformer_encoder(layers=1),
        input_shapes={"input_ids": (1, 16), "attention_mask": (1, 16)},
    )
    ops = op_histogram(res.tflite_bytes)
    assert "SHAPE" not in ops and "RANGE" not in ops  # all shape arithmetic folded
    assert all(-1 not in r["shape_signature"] for r in res.report["io"])


def test_slice_to_half_the_height_is_computed_at_run_time():
    """Slice(x, 0, Shape(x)[2] / 2): the end is shape arithmetic, exact at odd sizes too."""
    g = _Graph()
    half = g.op("Div", g.dim("x", 2), g.init(_ints(2)))
    top = g.op("Slice", "x", g.init(_ints(0)), half, g.init(_ints(2)))
    g.nodes.append(helper.make_node("Identity", [top], ["out"]))
    model = g.model([("x", TensorProto.FLOAT, [1, 2, "H", 4])], [("out", TensorProto.FLOAT, None)])
    _check_at_sizes(model, lambda h: {"x": _w(1, 2, h, 4)}, [(5,), (8,), (13,)])


@pytest.mark.parametrize("start,end", [(0, None), (1, 3), (-2, None), (0, -1)])
def test_runtime_shape_follows_the_stored_layout(start, end):
    """Shape of a channel-last feature map, read at run time, comes back in ONNX order."""
    g = _Graph()
    feat = g.op("Relu", g.op("Conv", "x", g.init(_w(4, 3, 3, 3)), pads=[1, 1, 1, 1]))
    attrs = {"start": start} | ({"end": end} if end is not None else {})
    shape = g.op("Shape", feat, **attrs)
    g.nodes.append(helper.make_node("Cast", [shape], ["dims"], to=TensorProto.INT64))
    g.nodes.append(helper.make_node("Identity", [feat], ["feat"]))
    model = g.model(
        [("x", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [("dims", TensorProto.INT64, None), ("feat", TensorProto.FLOAT, None)],
    )
    _check_at_sizes(model, lambda h, w: {"x": _w(1, 3, h, w)}, [(5, 7), (64, 33)])


def test_negative_declared_dim_is_a_dynamic_dim():
    """Some exporters write -1 for an unknown dim: it is dynamic like a named one."""
    g = _Graph()
    g.nodes.append(helper.make_node("Relu", ["x"], ["y"]))
    model = g.model([("x", TensorProto.FLOAT, [-1, 2])], [("y", TensorProto.FLOAT, [-1, 2])])
    res = _check_at_sizes(model, lambda n: {"x": _w(n, 2)}, [(1,), (5,)])
    assert res.report["io"][0]["shape_signature"] == [-1, 2]


FIXTURES = Path(__file__).parent / "fixtures"  # written by tools/export_dynamic_fixtures.py


def _fixture(name):
    return onnx.load(str(FIXTURES / name))


def test_torch_exported_encoder_runs_at_sequence_8_16_128():
    """torch.onnx export with dynamic batch and sequence: arange position ids, view-split
    heads, a padding mask, a pooler over token 0."""
    res = _check_at_sizes(
        _fixture("bert_tiny_dynamic.onnx"),
        lambda b, s: {k: v % 100 if k == "input_ids" else v for k, v in _token_feeds(b, s).items()},
        [(1, 8), (1, 16), (1, 128), (2, 16), (3, 40)],
    )
    rows = {r["name"]: r["shape_signature"] for r in res.report["io"]}
    assert rows == {
        "input_ids": [-1, -1],
        "attention_mask": [-1, -1],
        "last_hidden_state": [-1, -1, 32],
        "pooler_output": [-1, 32],
    }


def test_torch_exported_detector_runs_at_several_heights_and_widths():
    """YOLOv8-style anchors built from the feature maps' shapes, FPN upsampling, three
    strides: every size a multiple of 32, batch 1 and 2."""
    _check_at_sizes(
        _fixture("det_dynamic.onnx"),
        _image_feeds,
        [(1, 64, 64), (1, 128, 160), (2, 96, 224), (1, 320, 256)],
    )


def test_batch_pin_leaves_the_other_dims_dynamic():
    res = convert(_fixture("bert_tiny_dynamic.onnx"), batch_size=2)
    rows = {r["name"]: r["shape_signature"] for r in res.report["io"]}
    assert rows["input_ids"] == [2, -1] and rows["pooler_output"] == [2, 32]
    sess = ort.InferenceSession(str(FIXTURES / "bert_tiny_dynamic.onnx"))
    for seq in (8, 33):
        feeds = _token_feeds(2, seq)
        want = sess.run(None, feeds)[0]
        got = V.run_litert(res.tflite_bytes, feeds, res.report["io"])["last_hidden_state"]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1, np.abs(want).max()))


def test_refusal_names_the_dims_and_the_pinning_flags():
    g = _Graph()
    y = g.op("Resize", "x", "", "", g.init(_ints(1, 2, 8, 8)), mode="nearest")
    g.nodes.append(helper.make_node("Identity", [y], ["out"]))
    model = g.model(
        [("x", TensorProto.FLOAT, [1, 2, "H", "W"])], [("out", TensorProto.FLOAT, [1, 2, 8, 8])]
    )
    err = expect_refusal(model, "dynamic_shape_unsupported")
    assert "H = x[2]" in err.message and "W = x[3]" in err.message
    assert "input_shapes=" in err.message  # the API names its own arguments


@pytest.mark.parametrize("op,gates", [("LSTM", 4), ("GRU", 3)])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_recurrent_loop_runs_any_sequence_length_and_batch(op, gates, direction):
    """The WHILE loop reads its trip count from the input at run time; its output buffer and
    zero initial states are FILLs whose dims follow the batch and sequence."""
    dirs, hidden, feat = 2 if direction == "bidirectional" else 1, 5, 4
    g = _Graph()
    w, r = g.init(_w(dirs, gates * hidden, feat)), g.init(_w(dirs, gates * hidden, hidden))
    bias = g.init(_w(dirs, 2 * gates * hidden))
    g.nodes.append(
        helper.make_node(
            op, ["x", w, r, bias], ["y", "y_h"], hidden_size=hidden, direction=direction
        )
    )
    model = g.model(
        [("x", TensorProto.FLOAT, ["time", "batch", feat])],
        [("y", TensorProto.FLOAT, None), ("y_h", TensorProto.FLOAT, None)],
    )
    res = _check_at_sizes(
        model, lambda t, b: {"x": _w(t, b, feat, scale=1.0)}, [(1, 1), (7, 3), (20, 2)]
    )
    assert op_histogram(res.tflite_bytes)["WHILE"] == dirs


def test_quantized_variants_of_a_dynamic_model_run_at_any_size():
    """Calibration runs onnxruntime on the model with its dims still dynamic (samples of any
    size); no quantization rewrite sizes a weight by a run-time dim (a per-channel MUL over
    the attention mask's sequence axis stays a MUL)."""
    model = _fixture("bert_tiny_dynamic.onnx")
    calib = _token_feeds(8, 16)
    calib["input_ids"] %= 100
    res = convert(model, quantize=["fp16", "dynamic", "int8", "int16x8"], calibration_data=calib)
    assert res.report["dynamic_shapes"]["input_dims"]["input_ids"] == ["batch", "sequence"]
    sess = ort.InferenceSession(model.SerializeToString())
    floors = {
        "float16": 60,
        "dynamic_range_quant": 35,
        "integer_quant": 25,
        "integer_quant_with_int16_act": 40,
    }
    for kind, floor in floors.items():
        for batch, seq in ((1, 8), (2, 40)):
            feeds = _token_feeds(batch, seq)
            feeds["input_ids"] %= 100
            want = sess.run(["last_hidden_state"], feeds)[0]
            got = V.run_litert(res.variants[kind], feeds, res.report["io"])["last_hidden_state"]
            sqnr = 10 * np.log10(np.sum(want**2) / np.sum((want - got) ** 2))
            assert sqnr >= floor, (kind, seq, sqnr)
