"""The shared benchmark model set: well-known architectures rebuilt with ``onnx.helper``.

Why generate instead of download: the benchmarks must run offline, deterministically and without
torch, yet exercise the graph patterns real exporters produce (BatchNorm after Conv, Clip(0, 6),
squeeze-excitation, C2f Split/Concat, Resize, erf-GELU, LayerNormalization, multi-head attention
Reshape/Transpose chains, ConvTranspose). Every generator returns an opset-17 float32 model with
static shapes and batch 1; weights are seeded normal draws scaled by fan-in, so activations stay
finite and non-degenerate through the whole depth.

    python benchmarks/models.py OUT_DIR        # writes <name>.onnx for every model
"""

from __future__ import annotations

import collections
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class GraphBuilder:
    """Collects nodes and initializers under unique, readable names; seeded weights.

    ``op`` returns the output name (or names, for ``n_out > 1``); names are ``<hint>_<k>`` so a
    converted graph can be traced back to the block that produced a node.
    """

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._counts: collections.Counter = collections.Counter()

    def fresh(self, hint: str) -> str:
        self._counts[hint] += 1
        return f"{hint}_{self._counts[hint]}"

    def input(self, name: str, elem_type: int, shape: Sequence[int]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return name

    def const(self, value, hint: str = "const", dtype=np.float32) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, values: Sequence[int], hint: str = "shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint, dtype=np.int64)

    def normal(self, shape: Sequence[int], std: float, mean: float = 0.0) -> np.ndarray:
        draw = self.rng.standard_normal(tuple(shape), dtype=np.float32)
        draw *= np.float32(std)
        draw += np.float32(mean)
        return draw

    def uniform(self, shape: Sequence[int], low: float, high: float) -> np.ndarray:
        return self.rng.uniform(low, high, tuple(shape)).astype(np.float32)

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, **attrs):
        hint = op_type.lower()
        outs = [self.fresh(f"{hint}_out") for _ in range(n_out)]
        self.nodes.append(
            helper.make_node(op_type, list(inputs), outs, name=self.fresh(hint), **attrs)
        )
        return outs[0] if n_out == 1 else outs

    def _make_model(self, outputs, initializers, extra_inputs=()) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, self.name, [*self.inputs, *extra_inputs], outputs, initializer=initializers
        )
        return helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8
        )

    def build(self, outputs: Sequence[str], output_names: Sequence[str] | None = None):
        """The model, with output types and shapes from ONNX shape inference (strict).

        Inference runs on a weightless twin: float weights become typed graph inputs (hundreds
        of MB need not be copied), integer initializers (shapes, splits, indices) keep values.
        """
        output_names = list(output_names or outputs)
        for src, dst in zip(outputs, output_names, strict=True):
            if src != dst:
                self.nodes.append(helper.make_node("Identity", [src], [dst], name=f"out_{dst}"))
        untyped = [helper.make_empty_tensor_value_info(n) for n in output_names]
        is_float = [t.data_type == TensorProto.FLOAT for t in self.initializers]
        weights = [
            helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
            for t, f in zip(self.initializers, is_float, strict=True)
            if f
        ]
        values = [t for t, f in zip(self.initializers, is_float, strict=True) if not f]
        twin = self._make_model(untyped, values, weights)
        inferred = onnx.shape_inference.infer_shapes(twin, strict_mode=True).graph.output
        typed = {vi.name: vi for vi in inferred}
        for name in output_names:
            assert typed[name].type.tensor_type.elem_type != TensorProto.UNDEFINED, name
        return self._make_model([typed[n] for n in output_names], self.initializers)


# ----------------------------------------------------------------------------------------------
# Layers shared by several models
# ----------------------------------------------------------------------------------------------


def conv(b: GraphBuilder, x, cin, cout, k, stride=1, groups=1, bias=True, pad=None, gain=2.0):
    """Conv with He-style init (``gain / fan_in`` variance); ``pad`` defaults to ``k // 2``."""
    pad = k // 2 if pad is None else pad
    fan_in = cin // groups * k * k
    w = b.const(b.normal((cout, cin // groups, k, k), math.sqrt(gain / fan_in)), "conv_w")
    inputs = [x, w] + ([b.const(b.normal((cout,), 0.05), "conv_b")] if bias else [])
    return b.op(
        "Conv",
        inputs,
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[pad] * 4,
        group=groups,
        dilations=[1, 1],
    )


def batch_norm(b: GraphBuilder, x, c, gamma=(0.8, 1.2)):
    """Inference BatchNorm with plausible running statistics."""
    params = [
        b.uniform((c,), *gamma),  # scale
        b.normal((c,), 0.05),  # bias
        b.normal((c,), 0.1),  # running mean
        b.uniform((c,), 0.5, 1.5),  # running var
    ]
    names = [
        b.const(p, hint) for p, hint in zip(params, ("bn_s", "bn_b", "bn_m", "bn_v"), strict=True)
    ]
    return b.op("BatchNormalization", [x, *names], epsilon=1e-5, momentum=0.9)


def relu6(b: GraphBuilder, x):
    """Clip(0, 6) with min/max as initializers, as opset >= 11 exporters write it."""
    return b.op("Clip", [x, b.const(0.0, "clip_min"), b.const(6.0, "clip_max")])


def silu(b: GraphBuilder, x):
    return b.op("Mul", [x, b.op("Sigmoid", [x])])


def conv_bn(b: GraphBuilder, x, cin, cout, k, stride=1, groups=1, act="relu", gamma=(0.8, 1.2)):
    y = batch_norm(b, conv(b, x, cin, cout, k, stride, groups, bias=False), cout, gamma)
    if act == "relu":
        return b.op("Relu", [y])
    if act == "relu6":
        return relu6(b, y)
    return y


def classifier(b: GraphBuilder, x, c, classes=1000):
    """GlobalAveragePool -> Flatten -> Gemm, the usual CNN head."""
    flat = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    w = b.const(b.normal((classes, c), math.sqrt(1.0 / c)), "fc_w")
    return b.op("Gemm", [flat, w, b.const(b.normal((classes,), 0.01), "fc_b")], transB=1)


def linear(b: GraphBuilder, x, din, dout):
    """MatMul + Add bias, as transformer exporters emit nn.Linear on 3-D activations."""
    w = b.const(b.normal((din, dout), math.sqrt(1.0 / din)), "linear_w")
    return b.op("Add", [b.op("MatMul", [x, w]), b.const(b.normal((dout,), 0.02), "linear_b")])


def layer_norm(b: GraphBuilder, x, d):
    scale = b.const(b.normal((d,), 0.05, mean=1.0), "ln_s")
    return b.op("LayerNormalization", [x, scale, b.const(b.normal((d,), 0.02), "ln_b")], axis=-1)


def gelu_erf(b: GraphBuilder, x):
    """x * 0.5 * (1 + erf(x / sqrt 2)): the chain opset-17 exporters write for GELU."""
    erf = b.op("Erf", [b.op("Div", [x, b.const(math.sqrt(2.0), "sqrt2")])])
    one_plus = b.op("Add", [erf, b.const(1.0, "one")])
    return b.op("Mul", [b.op("Mul", [x, one_plus]), b.const(0.5, "half")])


def attention(b: GraphBuilder, x, tokens, dim, heads, mask=None):
    """Multi-head self-attention with the Reshape/Transpose head split of exported models."""
    hd = dim // heads
    split_shape = b.ints([1, tokens, heads, hd])

    def project(perm):
        y = b.op("Reshape", [linear(b, x, dim, dim), split_shape])
        return b.op("Transpose", [y], perm=perm)

    q, k, v = project([0, 2, 1, 3]), project([0, 2, 3, 1]), project([0, 2, 1, 3])
    scores = b.op("Div", [b.op("MatMul", [q, k]), b.const(math.sqrt(hd), "attn_scale")])
    if mask is not None:
        scores = b.op("Add", [scores, mask])
    ctx = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])
    ctx = b.op("Transpose", [ctx], perm=[0, 2, 1, 3])
    ctx = b.op("Reshape", [ctx, b.ints([1, tokens, dim])])
    return linear(b, ctx, dim, dim)


def mlp(b: GraphBuilder, x, dim, hidden):
    return linear(b, gelu_erf(b, linear(b, x, dim, hidden)), hidden, dim)


# ----------------------------------------------------------------------------------------------
# CNN classifiers
# ----------------------------------------------------------------------------------------------


def resnet50_like() -> onnx.ModelProto:
    """ResNet-50 v1.5: stem, bottleneck stages [3, 4, 6, 3], BN + Relu, residual Add, GAP, Gemm."""
    b = GraphBuilder("resnet50_like", seed=50)
    x = b.input("input", TensorProto.FLOAT, [1, 3, 224, 224])
    x = conv_bn(b, x, 3, 64, 7, stride=2)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True)):
        cout = width * 4
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            y = conv_bn(b, x, cin, width, 1)
            y = conv_bn(b, y, width, width, 3, stride)
            # Small last-BN scale keeps the residual stream bounded over 16 blocks.
            y = conv_bn(b, y, width, cout, 1, act=None, gamma=(0.1, 0.3))
            skip = x if i > 0 else conv_bn(b, x, cin, cout, 1, stride, act=None)
            x = b.op("Relu", [b.op("Add", [y, skip])])
            cin = cout
    return b.build([classifier(b, x, cin)], ["logits"])


MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2))
MOBILENETV2_SETTINGS += ((6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenetv2_like() -> onnx.ModelProto:
    """MobileNetV2 1.0: inverted residuals (expand 1x1, depthwise 3x3, linear project), Relu6."""
    b = GraphBuilder("mobilenetv2_like", seed=2)
    x = b.input("input", TensorProto.FLOAT, [1, 3, 224, 224])
    x = conv_bn(b, x, 3, 32, 3, stride=2, act="relu6")
    cin = 32
    for expand, cout, repeats, first_stride in MOBILENETV2_SETTINGS:
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            hidden = cin * expand
            y = conv_bn(b, x, cin, hidden, 1, act="relu6") if expand != 1 else x
            y = conv_bn(b, y, hidden, hidden, 3, stride, groups=hidden, act="relu6")
            y = conv_bn(b, y, hidden, cout, 1, act=None, gamma=(0.3, 0.6))
            x = b.op("Add", [x, y]) if stride == 1 and cin == cout else y
            cin = cout
    x = conv_bn(b, x, cin, 1280, 1, act="relu6")
    return b.build([classifier(b, x, 1280)], ["logits"])


# (expand ratio, kernel, first stride, out channels, repeats): EfficientNet-B0/lite0 stages.
EFFICIENTNET_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3))
EFFICIENTNET_STAGES += ((6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


def squeeze_excite(b: GraphBuilder, x, c, squeezed):
    """GlobalAveragePool -> 1x1 conv -> Relu -> 1x1 conv -> Sigmoid -> Mul (broadcast over HW)."""
    s = b.op("GlobalAveragePool", [x])
    s = b.op("Relu", [conv(b, s, c, squeezed, 1)])
    s = b.op("Sigmoid", [conv(b, s, squeezed, c, 1, gain=1.0)])
    return b.op("Mul", [x, s])


def efficientnet_lite_like() -> onnx.ModelProto:
    """EfficientNet-lite0 layout (Relu6, no swish) with squeeze-excitation kept in every MBConv."""
    b = GraphBuilder("efficientnet_lite_like", seed=7)
    x = b.input("input", TensorProto.FLOAT, [1, 3, 224, 224])
    x = conv_bn(b, x, 3, 32, 3, stride=2, act="relu6")
    cin = 32
    for expand, k, first_stride, cout, repeats in EFFICIENTNET_STAGES:
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            hidden = cin * expand
            y = conv_bn(b, x, cin, hidden, 1, act="relu6") if expand != 1 else x
            y = conv_bn(b, y, hidden, hidden, k, stride, groups=hidden, act="relu6")
            y = squeeze_excite(b, y, hidden, max(1, cin // 4))
            y = conv_bn(b, y, hidden, cout, 1, act=None, gamma=(0.3, 0.6))
            x = b.op("Add", [x, y]) if stride == 1 and cin == cout else y
            cin = cout
    x = conv_bn(b, x, cin, 1280, 1, act="relu6")
    return b.build([classifier(b, x, 1280)], ["logits"])


# ----------------------------------------------------------------------------------------------
# Detection: YOLOv8n
# ----------------------------------------------------------------------------------------------


def yolo_conv(b: GraphBuilder, x, cin, cout, k=3, stride=1):
    """Conv (BatchNorm folded into its bias, as exported) + SiLU."""
    return silu(b, conv(b, x, cin, cout, k, stride))


def c2f(b: GraphBuilder, x, cin, cout, n, shortcut=True, concat_unsplit=False):
    """CSP bottleneck with two convolutions: cv1 -> Split in halves -> n bottlenecks on the second
    half -> Concat of both halves and every bottleneck output -> cv2.

    ``concat_unsplit`` writes the Concat with cv1's unsplit output in place of the two halves
    (the same values; ultralytics' ``forward`` vs ``forward_split`` export).
    """
    c = cout // 2
    y = yolo_conv(b, x, cin, 2 * c, 1)
    halves = b.op("Split", [y, b.ints([c, c], "split")], n_out=2, axis=1)
    parts = [y] if concat_unsplit else list(halves)
    last = halves[1]
    for _ in range(n):
        z = yolo_conv(b, yolo_conv(b, last, c, c, 3), c, c, 3)
        last = b.op("Add", [last, z]) if shortcut else z
        parts.append(last)
    return yolo_conv(b, b.op("Concat", parts, axis=1), (2 + n) * c, cout, 1)


def sppf(b: GraphBuilder, x, cin, cout, k=5):
    """Spatial pyramid pooling (fast): three chained MaxPools, Concat with their input."""
    c = cin // 2
    y = yolo_conv(b, x, cin, c, 1)
    pooled = [y]
    for _ in range(3):
        pooled.append(
            b.op("MaxPool", [pooled[-1]], kernel_shape=[k, k], strides=[1, 1], pads=[k // 2] * 4)
        )
    return yolo_conv(b, b.op("Concat", pooled, axis=1), 4 * c, cout, 1)


def upsample2(b: GraphBuilder, x):
    """nn.Upsample(scale_factor=2) as torch exports it: Resize nearest, asymmetric, floor."""
    return b.op(
        "Resize",
        [x, "", b.const([1.0, 1.0, 2.0, 2.0], "scales")],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )


def yolo_anchors(sizes: Sequence[int], strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres [1, 2, A] (grid units) and strides [1, 1, A] for the decoding head."""
    points, stride_rows = [], []
    for size, stride in zip(sizes, strides, strict=True):
        ys, xs = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
        points.append(np.stack([xs.ravel(), ys.ravel()]))
        stride_rows.append(np.full(size * size, stride))
    return np.concatenate(points, 1)[None], np.concatenate(stride_rows)[None, None]


def yolov8n_like() -> onnx.ModelProto:
    """YOLOv8n at 320x320: C2f backbone, SPPF, FPN/PAN neck (Resize + Concat), Detect head with
    DFL box decoding (Reshape/Transpose/Softmax/1x1 conv) and dist2bbox arithmetic."""
    b = GraphBuilder("yolov8n_like", seed=8)
    size, classes, reg_max = 320, 80, 16
    x = b.input("images", TensorProto.FLOAT, [1, 3, size, size])
    x = yolo_conv(b, x, 3, 16, 3, 2)
    x = c2f(b, yolo_conv(b, x, 16, 32, 3, 2), 32, 32, 1)
    p3 = c2f(b, yolo_conv(b, x, 32, 64, 3, 2), 64, 64, 2)
    p4 = c2f(b, yolo_conv(b, p3, 64, 128, 3, 2), 128, 128, 2)
    p5 = c2f(b, yolo_conv(b, p4, 128, 256, 3, 2), 256, 256, 1)
    p5 = sppf(b, p5, 256, 256)
    # FPN (top-down) then PAN (bottom-up); the neck's C2f blocks have no shortcut.
    h4 = c2f(b, b.op("Concat", [upsample2(b, p5), p4], axis=1), 384, 128, 1, False, True)
    o3 = c2f(b, b.op("Concat", [upsample2(b, h4), p3], axis=1), 192, 64, 1, False, True)
    down = yolo_conv(b, o3, 64, 64, 3, 2)
    o4 = c2f(b, b.op("Concat", [down, h4], axis=1), 192, 128, 1, False, True)
    down = yolo_conv(b, o4, 128, 128, 3, 2)
    o5 = c2f(b, b.op("Concat", [down, p5], axis=1), 384, 256, 1, False, True)

    box_c, cls_c, no = 64, max(64, min(classes, 100)), classes + 4 * reg_max
    flat_levels = []
    for feat, c, stride in ((o3, 64, 8), (o4, 128, 16), (o5, 256, 32)):
        box = yolo_conv(b, yolo_conv(b, feat, c, box_c), box_c, box_c)
        box = conv(b, box, box_c, 4 * reg_max, 1, gain=1.0)
        cls = yolo_conv(b, yolo_conv(b, feat, c, cls_c), cls_c, cls_c)
        cls = conv(b, cls, cls_c, classes, 1, gain=1.0)
        level = b.op("Concat", [box, cls], axis=1)
        cells = (size // stride) ** 2
        flat_levels.append(b.op("Reshape", [level, b.ints([1, no, cells])]))
    head = b.op("Concat", flat_levels, axis=2)
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    box, cls = b.op("Split", [head, b.ints([4 * reg_max, classes], "split")], n_out=2, axis=1)

    # DFL: softmax over the 16 bins of each side, expectation by a fixed 1x1 conv.
    dist = b.op("Reshape", [box, b.ints([1, 4, reg_max, anchors])])
    dist = b.op("Softmax", [b.op("Transpose", [dist], perm=[0, 2, 1, 3])], axis=1)
    bins = b.const(np.arange(reg_max, dtype=np.float32).reshape(1, reg_max, 1, 1), "dfl_w")
    dist = b.op("Conv", [dist, bins], kernel_shape=[1, 1])
    dist = b.op("Reshape", [dist, b.ints([1, 4, anchors])])
    # dist2bbox (xywh) scaled by strides.
    points, strides = yolo_anchors([size // s for s in (8, 16, 32)], (8, 16, 32))
    points_name, strides_name = b.const(points, "anchors"), b.const(strides, "strides")
    lt, rb = b.op("Split", [dist, b.ints([2, 2], "split")], n_out=2, axis=1)
    x1y1 = b.op("Sub", [points_name, lt])
    x2y2 = b.op("Add", [points_name, rb])
    centre = b.op("Div", [b.op("Add", [x1y1, x2y2]), b.const(2.0, "two")])
    wh = b.op("Sub", [x2y2, x1y1])
    dbox = b.op("Mul", [b.op("Concat", [centre, wh], axis=1), strides_name])
    out = b.op("Concat", [dbox, b.op("Sigmoid", [cls])], axis=1)
    return b.build([out], ["output0"])


# ----------------------------------------------------------------------------------------------
# Transformers
# ----------------------------------------------------------------------------------------------


def transformer_layer(b: GraphBuilder, x, tokens, dim, heads, hidden, pre_norm, mask=None):
    """Pre-norm (ViT) or post-norm (BERT) encoder layer."""
    if pre_norm:
        x = b.op("Add", [x, attention(b, layer_norm(b, x, dim), tokens, dim, heads)])
        return b.op("Add", [x, mlp(b, layer_norm(b, x, dim), dim, hidden)])
    x = layer_norm(b, b.op("Add", [x, attention(b, x, tokens, dim, heads, mask)]), dim)
    return layer_norm(b, b.op("Add", [x, mlp(b, x, dim, hidden)]), dim)


def vit_small_like(layers: int = 6) -> onnx.ModelProto:
    """ViT-S/16 at 224 (dim 384, 6 heads), ``layers`` pre-norm blocks, class-token head."""
    b = GraphBuilder("vit_small_like", seed=16)
    dim, heads, patch, size, classes = 384, 6, 16, 224, 1000
    grid = size // patch
    tokens = grid * grid + 1
    x = b.input("pixel_values", TensorProto.FLOAT, [1, 3, size, size])
    x = conv(b, x, 3, dim, patch, stride=patch, pad=0, gain=1.0)
    x = b.op("Reshape", [x, b.ints([1, dim, grid * grid])])
    x = b.op("Transpose", [x], perm=[0, 2, 1])
    x = b.op("Concat", [b.const(b.normal((1, 1, dim), 0.02), "cls_token"), x], axis=1)
    x = b.op("Add", [x, b.const(b.normal((1, tokens, dim), 0.02), "pos_embed")])
    for _ in range(layers):
        x = transformer_layer(b, x, tokens, dim, heads, 4 * dim, pre_norm=True)
    x = layer_norm(b, x, dim)
    cls = b.op("Gather", [x, b.const(0, "cls_index", dtype=np.int64)], axis=1)
    w = b.const(b.normal((classes, dim), math.sqrt(1.0 / dim)), "head_w")
    logits = b.op("Gemm", [cls, w, b.const(b.normal((classes,), 0.01), "head_b")], transB=1)
    return b.build([logits], ["logits"])


def bert_base_like(layers: int = 12) -> onnx.ModelProto:
    """BERT-base encoder (dim 768, 12 heads, sequence 128); outputs the last hidden state.

    Inputs: ``input_ids`` int64 [1, 128] and ``attention_mask``, the float additive mask
    [1, 1, 1, 128] (0 keeps a token, large negative drops it). Position and token-type ids are
    constants, as exporters fold them.
    """
    b = GraphBuilder("bert_base_like", seed=768)
    dim, heads, seq, vocab = 768, 12, 128, 30522
    ids = b.input("input_ids", TensorProto.INT64, [1, seq])
    mask = b.input("attention_mask", TensorProto.FLOAT, [1, 1, 1, seq])
    words = b.op("Gather", [b.const(b.normal((vocab, dim), 0.5), "word_emb"), ids], axis=0)
    pos_ids = b.const(np.arange(seq)[None], "position_ids", dtype=np.int64)
    pos = b.op("Gather", [b.const(b.normal((512, dim), 0.1), "pos_emb"), pos_ids], axis=0)
    type_ids = b.const(np.zeros((1, seq)), "token_type_ids", dtype=np.int64)
    types = b.op("Gather", [b.const(b.normal((2, dim), 0.1), "type_emb"), type_ids], axis=0)
    x = layer_norm(b, b.op("Add", [b.op("Add", [words, pos]), types]), dim)
    for _ in range(layers):
        x = transformer_layer(b, x, seq, dim, heads, 4 * dim, pre_norm=False, mask=mask)
    return b.build([x], ["last_hidden_state"])


# ----------------------------------------------------------------------------------------------
# Segmentation
# ----------------------------------------------------------------------------------------------


def unet_like() -> onnx.ModelProto:
    """U-Net at 128x128: double 3x3 conv + BN + Relu per level, MaxPool down, ConvTranspose
    (2x2, stride 2) up, skip Concat, final 1x1 conv to 2 classes."""
    b = GraphBuilder("unet_like", seed=128)
    x = b.input("input", TensorProto.FLOAT, [1, 3, 128, 128])

    def double_conv(x, cin, cout):
        return conv_bn(b, conv_bn(b, x, cin, cout, 3), cout, cout, 3)

    widths = (32, 64, 128, 256)
    skips, cin = [], 3
    for width in widths:
        x = double_conv(x, cin, width)
        skips.append(x)
        x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        cin = width
    x = double_conv(x, cin, 2 * cin)
    cin = 2 * cin
    for width, skip in zip(reversed(widths), reversed(skips), strict=True):
        w = b.const(b.normal((cin, width, 2, 2), math.sqrt(1.0 / (cin * 4))), "up_w")
        up = b.op(
            "ConvTranspose",
            [x, w, b.const(b.normal((width,), 0.05), "up_b")],
            kernel_shape=[2, 2],
            strides=[2, 2],
        )
        x = double_conv(b.op("Concat", [up, skip], axis=1), 2 * width, width)
        cin = width
    return b.build([conv(b, x, cin, 2, 1, gain=1.0)], ["mask_logits"])


BENCHMARK_MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "resnet50": resnet50_like,
    "mobilenetv2": mobilenetv2_like,
    "efficientnet_lite": efficientnet_lite_like,
    "yolov8n": yolov8n_like,
    "vit_small": vit_small_like,
    "bert_base": bert_base_like,
    "unet": unet_like,
}


def save_all(out_dir: str | Path, names: Sequence[str] | None = None) -> dict[str, Path]:
    """Write ``<name>.onnx`` for every (or each named) benchmark model; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names or BENCHMARK_MODELS:
        paths[name] = out / f"{name}.onnx"
        onnx.save(BENCHMARK_MODELS[name](), str(paths[name]))
    return paths


if __name__ == "__main__":
    for name, path in save_all(sys.argv[1] if len(sys.argv) > 1 else "benchmark_models").items():
        print(f"{name}: {path}")
