"""Realistic recurrent models end to end: a CNN + 2-layer bidirectional LSTM CTC recognizer
and a GRU keyword-spotter, as exporters write them (Transpose/Reshape glue between the CNN's
NCHW maps and the time-major recurrent layers). LiteRT must match onnxruntime in every recurrent form (the default choice, the
loop, unrolled, and the LSTM sequence kernel)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

from onnx2tflite_direct.lowering import recurrent, recurrent_kernels

RNG = np.random.default_rng(11)


def _w(*shape, scale=0.3):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _bilstm(prefix: str, x: str, in_size: int, hidden: int, inits: dict) -> list:
    inits[f"{prefix}_W"] = _w(2, 4 * hidden, in_size)
    inits[f"{prefix}_R"] = _w(2, 4 * hidden, hidden)
    inits[f"{prefix}_B"] = _w(2, 8 * hidden)
    return [
        helper.make_node(
            "LSTM",
            [x, f"{prefix}_W", f"{prefix}_R", f"{prefix}_B"],
            [f"{prefix}_Y"],
            hidden_size=hidden,
            direction="bidirectional",
        ),
        # [T, 2, B, H] -> [T, B, 2, H] -> [T, B, 2H]
        helper.make_node("Transpose", [f"{prefix}_Y"], [f"{prefix}_Yt"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", [f"{prefix}_Yt", "tb_shape"], [f"{prefix}_out"]),
    ]


def ctc_recognizer(batch=1, width=32, hidden=8, classes=11):
    """Text-line OCR: [B, 1, 16, W] -> 2x (Conv, Relu, MaxPool) -> columns as time steps
    -> 2 bidirectional LSTM layers -> per-step class log-probabilities [T, B, classes]."""
    inits = {
        "c1_w": _w(4, 1, 3, 3),
        "c1_b": _w(4),
        "c2_w": _w(8, 4, 3, 3),
        "c2_b": _w(8),
    }
    steps, feat = width // 4, 8 * 4  # two 2x2 pools: H 16 -> 4, W -> W/4
    inits["seq_shape"] = np.array([steps, batch, feat], np.int64)
    inits["tb_shape"] = np.array([steps, batch, 2 * hidden], np.int64)
    inits["fc_w"] = _w(2 * hidden, classes)
    inits["fc_b"] = _w(classes)
    nodes = [
        helper.make_node("Conv", ["image", "c1_w", "c1_b"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2_w", "c2_b"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        # [B, C, H, W] -> [W, B, C, H] -> [T=W, B, C*H]
        helper.make_node("Transpose", ["p2"], ["cols"], perm=[3, 0, 1, 2]),
        helper.make_node("Reshape", ["cols", "seq_shape"], ["seq"]),
        *_bilstm("l1", "seq", feat, hidden, inits),
        *_bilstm("l2", "l1_out", 2 * hidden, hidden, inits),
        helper.make_node("MatMul", ["l2_out", "fc_w"], ["logits0"]),
        helper.make_node("Add", ["logits0", "fc_b"], ["logits"]),
        helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=2),
    ]
    return make_model(
        nodes,
        inputs=[("image", np.float32, (batch, 1, 16, width))],
        outputs=[("log_probs", np.float32, (steps, batch, classes))],
        initializers=inits,
        opset=14,
    )


def gru_keyword_spotter(batch=1, frames=20, mfcc=10, hidden=16, keywords=4):
    """Keyword spotting: MFCC frames [B, T, F] -> time-major Transpose -> GRU -> last hidden
    state -> Gemm -> Softmax over keywords (what PyTorch exports for batch_first GRUs;
    onnxruntime does not run layout=1)."""
    inits = {
        "W": _w(1, 3 * hidden, mfcc),
        "R": _w(1, 3 * hidden, hidden),
        "B": _w(1, 6 * hidden),
        "fc_w": _w(keywords, hidden),
        "fc_b": _w(keywords),
        "flat": np.array([batch, hidden], np.int64),
    }
    nodes = [
        helper.make_node("Transpose", ["mfcc"], ["frames"], perm=[1, 0, 2]),
        helper.make_node(
            "GRU",
            ["frames", "W", "R", "B"],
            ["", "h_last"],
            hidden_size=hidden,
            linear_before_reset=1,
        ),
        helper.make_node("Reshape", ["h_last", "flat"], ["h"]),
        helper.make_node("Gemm", ["h", "fc_w", "fc_b"], ["scores"], transB=1),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=1),
    ]
    return make_model(
        nodes,
        inputs=[("mfcc", np.float32, (batch, frames, mfcc))],
        outputs=[("probs", np.float32, (batch, keywords))],
        initializers=inits,
        opset=14,
    )


def _form(monkeypatch, form: str) -> dict:
    """Conversion options (and switches) for one recurrent form; ``default`` is the converter's
    own choice (unrolled for these small cells, ``recurrent.prefer_unrolled``)."""
    if form == "kernel":
        monkeypatch.setattr(recurrent_kernels, "MODE", "always")
    if form == "loop":
        monkeypatch.setattr(recurrent, "UNROLL_STEPS", range(0))
    return {"unroll_rnn": form == "unrolled"}


def _assert_form(ops, form: str, recurrent_ops: int) -> None:
    assert ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == (recurrent_ops if form == "kernel" else 0)
    assert ops["WHILE"] == (recurrent_ops if form == "loop" else 0)


@pytest.mark.parametrize("form", ["default", "loop", "unrolled", "kernel"])
@pytest.mark.parametrize("batch", [1, 2])
def test_cnn_bilstm_ctc_recognizer(batch, form, monkeypatch):
    options = _form(monkeypatch, form)
    chk = check_conversion(ctc_recognizer(batch=batch), atol=1e-4, rtol=0.0, **options)
    assert chk.ops["CONV_2D"] == 2 and chk.ops["CUSTOM"] == 0
    # The CNN runs channel-last; the only layout changes are the CNN->sequence hand-off.
    assert chk.ops["TRANSPOSE"] <= 3
    _assert_form(chk.ops, form, 4)  # 2 bidirectional layers


@pytest.mark.parametrize("form", ["default", "loop", "unrolled"])
@pytest.mark.parametrize("batch", [1, 3])
def test_gru_keyword_spotter(batch, form, monkeypatch):
    options = _form(monkeypatch, form)
    chk = check_conversion(gru_keyword_spotter(batch=batch), atol=1e-4, rtol=0.0, **options)
    assert chk.ops["FULLY_CONNECTED"] >= 1 and chk.ops["CUSTOM"] == 0
    _assert_form(chk.ops, form, 1)
