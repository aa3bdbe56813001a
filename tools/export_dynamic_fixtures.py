"""Export the torch fixtures of tests/test_dynamic_shapes.py (needs torch; the tests do not).

Usage: ``pip install torch==2.13.0 && python tools/export_dynamic_fixtures.py``

Both models are exported with torch.onnx's TorchScript exporter and dynamic axes, the way
users export them: a BERT-like encoder whose position ids are ``arange(seq)`` and whose
attention heads are split with ``view(batch, seq, ...)`` (batch and sequence dynamic), and a
YOLOv8-like detector whose anchor grid is built from each feature map's ``shape`` (batch,
height and width dynamic).
"""

import math
from pathlib import Path

import torch
import torch.nn as nn

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
DIM, HEADS = 32, 4


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(DIM, DIM) for _ in range(4))

    def split(self, x):
        batch, seq = x.shape[0], x.shape[1]
        return x.view(batch, seq, HEADS, DIM // HEADS).transpose(1, 2)

    def forward(self, x, bias):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(DIM // HEADS) + bias
        out = (torch.softmax(scores, -1) @ v).transpose(1, 2).contiguous()
        return self.o(out.view(out.shape[0], out.shape[1], DIM))


class EncoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = Attention()
        self.norm1, self.norm2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.ff = nn.Sequential(nn.Linear(DIM, 2 * DIM), nn.GELU(), nn.Linear(2 * DIM, DIM))

    def forward(self, x, bias):
        x = self.norm1(x + self.attention(x, bias))
        return self.norm2(x + self.ff(x))


class Encoder(nn.Module):
    def __init__(self, vocab=100, max_positions=128, layers=2):
        super().__init__()
        self.tokens = nn.Embedding(vocab, DIM)
        self.positions = nn.Embedding(max_positions, DIM)
        self.types = nn.Embedding(2, DIM)
        self.norm = nn.LayerNorm(DIM)
        self.layers = nn.ModuleList(EncoderLayer() for _ in range(layers))
        self.pool = nn.Linear(DIM, DIM)

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0).expand_as(input_ids)
        x = self.tokens(input_ids) + self.positions(positions)
        x = self.norm(x + self.types(torch.zeros_like(input_ids)))
        mask = attention_mask[:, None, None, :].float()
        bias = (1.0 - mask) * torch.finfo(torch.float32).min
        for layer in self.layers:
            x = layer(x, bias)
        return x, torch.tanh(self.pool(x[:, 0]))


def conv_bn_silu(c_in, c_out, k=3, stride=1):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2), nn.BatchNorm2d(c_out), nn.SiLU()
    )


class Detector(nn.Module):
    """Backbone to strides 8/16/32, FPN upsample + concat, one head per level, anchors and
    strides from the feature maps' shapes, boxes decoded from distances to the anchor."""

    def __init__(self, classes=4):
        super().__init__()
        self.stem = nn.Sequential(
            conv_bn_silu(3, 8, 3, 2), conv_bn_silu(8, 16, 3, 2), conv_bn_silu(16, 16, 3, 2)
        )
        self.down16, self.down32 = conv_bn_silu(16, 32, 3, 2), conv_bn_silu(32, 32, 3, 2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse16, self.fuse8 = conv_bn_silu(64, 32, 1), conv_bn_silu(48, 16, 1)
        self.heads = nn.ModuleList(nn.Conv2d(c, 4 + classes, 1) for c in (16, 32, 32))
        self.strides = (8, 16, 32)

    def forward(self, images):
        p8 = self.stem(images)
        p16 = self.down16(p8)
        p32 = self.down32(p16)
        f16 = self.fuse16(torch.cat([p16, self.up(p32)], 1))
        f8 = self.fuse8(torch.cat([p8, self.up(f16)], 1))
        outs, anchors, strides = [], [], []
        for feature, head, stride in zip((f8, f16, p32), self.heads, self.strides, strict=True):
            y = head(feature)
            batch, channels, h, w = y.shape
            outs.append(y.view(batch, channels, -1))
            ys = torch.arange(h, dtype=torch.float32) + 0.5
            xs = torch.arange(w, dtype=torch.float32) + 0.5
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            anchors.append(torch.stack((grid_x, grid_y), -1).view(-1, 2))
            strides.append(torch.full((h * w, 1), stride, dtype=torch.float32))
        pred = torch.cat(outs, 2)
        anchor = torch.cat(anchors).transpose(0, 1)
        stride = torch.cat(strides).transpose(0, 1)
        box, cls = pred.split((4, pred.shape[1] - 4), 1)
        left_top, right_bottom = box.chunk(2, 1)
        centers = (anchor + (right_bottom - left_top) / 2) * stride
        sizes = (left_top + right_bottom) * stride
        return torch.cat((centers, sizes, cls.sigmoid()), 1)


def export() -> None:
    torch.manual_seed(0)
    dyn = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        Encoder().eval(),
        (torch.randint(0, 100, (2, 16)), torch.ones(2, 16, dtype=torch.long)),
        OUT / "bert_tiny_dynamic.onnx",
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state", "pooler_output"],
        dynamic_axes={
            "input_ids": dyn,
            "attention_mask": dyn,
            "last_hidden_state": dyn,
            "pooler_output": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    torch.manual_seed(0)
    torch.onnx.export(
        Detector().eval(),
        (torch.randn(1, 3, 128, 160),),
        OUT / "det_dynamic.onnx",
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={
            "images": {0: "batch", 2: "height", 3: "width"},
            "output0": {0: "batch", 2: "anchors"},
        },
        opset_version=17,
        dynamo=False,
    )


if __name__ == "__main__":
    export()
