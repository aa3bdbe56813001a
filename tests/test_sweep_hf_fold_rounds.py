"""Shape arithmetic chained through many layers folds to its fixed point.

EnCodec (transformers' EncodecModel, TorchScript export) pads every convolution by a length
computed from the previous layer's output length through float arithmetic that ONNX shape
inference cannot see through (Shape -> Gather -> Cast -> Div -> Ceil -> Cast -> Pad). Each
round of inference + folding resolves one layer; the front end used to stop after 8 rounds
and then refused the pinned model (dynamic_shape_unsupported on a Slice "with no static
shape"). The rounds now run until nothing changes.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from tests.harness import check_conversion, make_model

LAYERS = 12  # more than the old bound of 8 rounds


def _padded_conv_chain(layers: int = LAYERS, channels: int = 4, length: int = 50):
    rng = np.random.default_rng(0)
    nodes, inits = [], {}

    def const(name, value):
        inits[name] = np.asarray(value)
        return name

    zero = const("zero1", np.array([0], np.int64))
    x = "x"
    for i in range(layers):
        k, stride = 3, (2 if i % 4 == 3 else 1)
        p = f"l{i}/"
        w = const(p + "w", (rng.standard_normal((channels, channels, k)) * 0.5).astype(np.float32))
        b = const(p + "b", (rng.standard_normal(channels) * 0.1).astype(np.float32))
        # EnCodec's _get_extra_padding_for_conv1d, as torch.onnx (TorchScript) writes it:
        # n = (len - k + pad_total) / stride + 1; ideal = (ceil(n) - 1) * stride + k - pad_total
        nodes += [
            helper.make_node("Shape", [x], [p + "shape"]),
            helper.make_node("Gather", [p + "shape", const(p + "ax", np.array(2))], [p + "len"]),
            helper.make_node(
                "Sub", [p + "len", const(p + "k_minus_pt", np.array(stride))], [p + "a"]
            ),
            helper.make_node("Cast", [p + "a"], [p + "af"], to=TensorProto.FLOAT),
            helper.make_node(
                "Div", [p + "af", const(p + "s", np.array(stride, np.float32))], [p + "n0"]
            ),
            helper.make_node(
                "Add", [p + "n0", const(p + "one", np.array(1.0, np.float32))], [p + "n"]
            ),
            helper.make_node("Ceil", [p + "n"], [p + "c"]),
            helper.make_node("Cast", [p + "c"], [p + "ci"], to=TensorProto.INT64),
            helper.make_node("Sub", [p + "ci", const(p + "i1", np.array(1))], [p + "cm"]),
            helper.make_node("Mul", [p + "cm", const(p + "si", np.array(stride))], [p + "cs"]),
            helper.make_node("Add", [p + "cs", const(p + "kp", np.array(stride))], [p + "ideal"]),
            helper.make_node("Sub", [p + "ideal", p + "len"], [p + "extra"]),
            helper.make_node(
                "Unsqueeze", [p + "extra", const(p + "u", np.array([0]))], [p + "extra1"]
            ),
            helper.make_node(
                "Concat",
                [zero, zero, const(p + "pt", np.array([k - stride])), zero, zero, p + "extra1"],
                [p + "pads"],
                axis=0,
            ),
            helper.make_node("Pad", [x, p + "pads"], [p + "padded"], mode="reflect"),
            # padded[..., :shape[-1]] (the end of a slice that _pad1d takes off again)
            helper.make_node("Shape", [p + "padded"], [p + "pshape"]),
            helper.make_node("Gather", [p + "pshape", const(p + "ax2", np.array(2))], [p + "plen"]),
            helper.make_node(
                "Unsqueeze", [p + "plen", const(p + "u2", np.array([0]))], [p + "end"]
            ),
            helper.make_node(
                "Slice",
                [p + "padded", zero, p + "end", const(p + "sa", np.array([2]))],
                [p + "sliced"],
            ),
            helper.make_node(
                "Conv", [p + "sliced", w, b], [p + "conv"], kernel_shape=[k], strides=[stride]
            ),
            helper.make_node("Elu", [p + "conv"], [p + "y"]),
        ]
        x = p + "y"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    return make_model(
        nodes,
        [("x", np.float32, [1, channels, "length"])],
        [("y", np.float32, [1, channels, "out"])],
        inits,
    )


def test_chained_padding_arithmetic_folds_past_eight_rounds():
    model = _padded_conv_chain()
    x = (
        np.sin(np.linspace(0, 40, 50, dtype=np.float32))[None, None]
        * np.array([1.0, 0.5, -0.7, 0.3], np.float32)[None, :, None]
    )
    res = check_conversion(model, {"x": x.astype(np.float32)}, input_shapes={"x": (1, 4, 50)})
    assert res is not None
