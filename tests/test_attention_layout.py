"""Attention blocks as exporters write them: numbers against onnxruntime and TRANSPOSE count.

Issue 22 item 5: K^T arriving transposed is read through BATCH_MATMUL's adj_y, and a product of
two activations whose heads are split by Reshape and moved by Transpose may be stored
transposed (C^T = B^T A^T). A projection by constant weights stays FULLY_CONNECTED: storing its
product transposed as a BATCH_MATMUL saves two TRANSPOSE per attention layer but measured
7-18% slower end to end on the corpus's MiniLM/BERT/ViT (XNNPACK prepacks FULLY_CONNECTED
weights, not BATCH_MATMUL's). The q, k, v projections of one activation become one
FULLY_CONNECTED moved to head-major by one TRANSPOSE (rule fused_head_projection,
tests/test_attention_forms.py): with the context merge, at most 4 per layer, never more.
"""

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

F = np.float32
B, S, H, D = 1, 7, 4, 8
C = H * D


def _w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(F)


def _bert_layer(nodes, inits, rng, x, i, mask=None):
    """One BERT-style self-attention layer (separate Q/K/V projections, exporter order)."""
    p = f"l{i}_"

    def proj(name, src):
        inits[p + name + "_w"] = _w(rng, C, C)
        inits[p + name + "_b"] = _w(rng, C)
        nodes.append(helper.make_node("MatMul", [src, p + name + "_w"], [p + name + "_mm"]))
        nodes.append(helper.make_node("Add", [p + name + "_mm", p + name + "_b"], [p + name]))
        return p + name

    inits[p + "split"] = np.array([B, S, H, D], np.int64)
    inits[p + "merge"] = np.array([B, S, C], np.int64)
    inits[p + "scale"] = np.array(np.sqrt(D), F)
    q, k, v = proj("q", x), proj("k", x), proj("v", x)
    for t in (q, k, v):
        nodes.append(helper.make_node("Reshape", [t, p + "split"], [t + "_h"]))
    nodes.append(helper.make_node("Transpose", [q + "_h"], [q + "_t"], perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("Transpose", [k + "_h"], [k + "_t"], perm=[0, 2, 3, 1]))
    nodes.append(helper.make_node("Transpose", [v + "_h"], [v + "_t"], perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("MatMul", [q + "_t", k + "_t"], [p + "qk"]))
    nodes.append(helper.make_node("Div", [p + "qk", p + "scale"], [p + "scores"]))
    scores = p + "scores"
    if mask is not None:
        nodes.append(helper.make_node("Add", [scores, mask], [p + "masked"]))
        scores = p + "masked"
    nodes.append(helper.make_node("Softmax", [scores], [p + "probs"], axis=-1))
    nodes.append(helper.make_node("MatMul", [p + "probs", v + "_t"], [p + "ctx"]))
    nodes.append(helper.make_node("Transpose", [p + "ctx"], [p + "ctx_t"], perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("Reshape", [p + "ctx_t", p + "merge"], [p + "merged"]))
    out = proj("o", p + "merged")
    nodes.append(helper.make_node("Add", [out, x], [p + "res"]))
    nodes.append(helper.make_node("LayerNormalization", [p + "res", "ln_g", "ln_b"], [p + "y"]))
    return p + "y"


def _bert(layers: int, with_mask: bool):
    rng = np.random.default_rng(0)
    nodes, inits = [], {"ln_g": 1 + _w(rng, C, scale=0.1), "ln_b": _w(rng, C, scale=0.1)}
    inputs = [("x", F, [B, S, C])]
    mask = None
    if with_mask:  # additive mask [B, 1, 1, S] as HF builds it from attention_mask
        inputs.append(("mask", F, [B, 1, 1, S]))
        mask = "mask"
    x = "x"
    for i in range(layers):
        x = _bert_layer(nodes, inits, rng, x, i, mask)
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    return make_model(nodes, inputs, [("y", F, [B, S, C])], inits)


def _gpt2(layers: int):
    """GPT-2 style: one fused c_attn projection split into q, k, v; causal mask by Where."""
    rng = np.random.default_rng(1)
    nodes, inits = [], {}
    inits["split3"] = np.array([C, C, C], np.int64)
    inits["heads"] = np.array([B, S, H, D], np.int64)
    inits["merge"] = np.array([B, S, C], np.int64)
    inits["causal"] = np.tril(np.ones((S, S), bool))[None, None]
    inits["neg"] = np.array(-1e9, F)
    inits["inv_sqrt_d"] = np.array(1 / np.sqrt(D), F)
    x = "x"
    for i in range(layers):
        p = f"g{i}_"
        inits[p + "w"] = _w(rng, C, 3 * C)
        inits[p + "b"] = _w(rng, 3 * C)
        inits[p + "wo"] = _w(rng, C, C)
        inits[p + "bo"] = _w(rng, C)
        nodes += [
            helper.make_node("MatMul", [x, p + "w"], [p + "mm"]),
            helper.make_node("Add", [p + "mm", p + "b"], [p + "qkv"]),
            helper.make_node("Split", [p + "qkv", "split3"], [p + "q", p + "k", p + "v"], axis=2),
        ]
        for t in ("q", "k", "v"):
            nodes.append(helper.make_node("Reshape", [p + t, "heads"], [p + t + "h"]))
        nodes += [
            helper.make_node("Transpose", [p + "qh"], [p + "qt"], perm=[0, 2, 1, 3]),
            helper.make_node("Transpose", [p + "kh"], [p + "kt"], perm=[0, 2, 3, 1]),
            helper.make_node("Transpose", [p + "vh"], [p + "vt"], perm=[0, 2, 1, 3]),
            helper.make_node("MatMul", [p + "qt", p + "kt"], [p + "qk"]),
            helper.make_node("Mul", [p + "qk", "inv_sqrt_d"], [p + "sc"]),
            helper.make_node("Where", ["causal", p + "sc", "neg"], [p + "masked"]),
            helper.make_node("Softmax", [p + "masked"], [p + "pr"], axis=-1),
            helper.make_node("MatMul", [p + "pr", p + "vt"], [p + "ctx"]),
            helper.make_node("Transpose", [p + "ctx"], [p + "ctxt"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [p + "ctxt", "merge"], [p + "merged"]),
            helper.make_node("MatMul", [p + "merged", p + "wo"], [p + "o"]),
            helper.make_node("Add", [p + "o", p + "bo"], [p + "ob"]),
            helper.make_node("Add", [p + "ob", x], [p + "y"]),
        ]
        x = p + "y"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    return make_model(nodes, [("x", F, [B, S, C])], [("y", F, [B, S, C])], inits)


@pytest.mark.parametrize("keep_io_layout", [True, False])
@pytest.mark.parametrize("layers,with_mask", [(1, False), (3, True)])
def test_bert_like_attention(layers, with_mask, keep_io_layout):
    chk = check_conversion(_bert(layers, with_mask), keep_io_layout=keep_io_layout)
    assert chk.ops["TRANSPOSE"] <= 4 * layers, chk.ops
    assert chk.ops["FULLY_CONNECTED"] >= 2 * layers, chk.ops  # projections keep their kernel
    assert chk.ops["BATCH_MATMUL"] >= 2 * layers


@pytest.mark.parametrize("layers", [1, 2])
def test_gpt2_like_attention(layers):
    chk = check_conversion(_gpt2(layers), keep_io_layout=True)
    assert chk.ops["TRANSPOSE"] <= 4 * layers, chk.ops


def test_runtime_key_transposed_reads_adj_y():
    """Q @ K^T with K a graph input relabeled by Transpose: no TRANSPOSE, adj_y instead."""
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("q", F, [2, 3, 5, 8]), ("k", F, [2, 3, 6, 8])],
        [("y", F, [2, 3, 5, 6])],
    )
    chk = check_conversion(model, keep_io_layout=True)
    assert "TRANSPOSE" not in chk.ops, chk.ops


def test_transposed_projection_feeding_graph_output():
    """A projection whose only consumer is a graph output stays in ONNX order (no saving)."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    model = make_model(nodes, [("x", F, [1, 5, 6])], [("y", F, [1, 5, 4])], {"w": _w(rng, 6, 4)})
    chk = check_conversion(model, keep_io_layout=True)
    assert "TRANSPOSE" not in chk.ops and "FULLY_CONNECTED" in chk.ops, chk.ops
