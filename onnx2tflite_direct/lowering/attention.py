"""Attention (opset 23+) and RotaryEmbedding as compositions of builtins.

Attention is scaled-dot-product attention: ``softmax(softcap(QK^T * scale) + bias) @ V``. The
structural masks (causal, sliding window) are constants when the key offset is static; the
per-batch ones driven by ``nonpad_kv_seqlen`` are comparisons of a constant index grid with
the runtime lengths. Grouped-query attention needs no head repetition: the query heads of one
KV group are folded into the row axis of the BATCH_MATMUL, which is the same contraction.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import onnx_order
from ..registry import FLOAT, lowering
from .emit import Emitter

NEG_INF = -np.inf


def _attention_check(node, graph):
    vals = graph.values
    if len(node.inputs) > 3 and node.inputs[3]:
        dt = np.dtype(vals[node.inputs[3]].dtype).name
        if dt not in ("bool", "float32"):
            return f"{errors.UNSUPPORTED_DTYPE}: attn_mask dtype {dt} (bool/float32 only)"
    for i in (4, 5):
        if len(node.inputs) > i and node.inputs[i]:
            dt = np.dtype(vals[node.inputs[i]].dtype).name
            if dt != "float32":
                return f"{errors.UNSUPPORTED_DTYPE}: past cache dtype {dt}"
    precision = node.attrs.get("softmax_precision")
    if precision not in (None, 1, 11):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: softmax_precision={precision} (float/double only)"
    mode = node.attrs.get("qk_matmul_output_mode", 0)
    wants_qk = len(node.outputs) > 3 and node.outputs[3]
    if wants_qk and mode == 0 and node.attrs.get("softcap", 0.0) > 0:
        # The spec says "raw QK", the reference returns the softcapped value: ambiguous.
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: qk_matmul_output_mode=0 with softcap"
    structural = node.attrs.get("is_causal", 0) or (len(node.inputs) > 6 and node.inputs[6])
    structural = structural or node.attrs.get("left_window_size", -1) >= 0
    structural = structural or node.attrs.get("right_window_size", -1) >= 0
    if wants_qk and mode == 2 and structural:
        # The reference adds the causal/window bias to this output, onnxruntime does not.
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: qk_matmul_output_mode=2 with causal/window masks"
    if wants_qk and mode not in (0, 1, 2, 3):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: qk_matmul_output_mode={mode}"
    q_rank = vals[node.inputs[0]].rank
    if q_rank not in (3, 4):
        return f"{errors.UNSUPPORTED_RANK}: Q rank {q_rank}"
    return None


def _to_heads(ctx, x, heads: int, hint: str):
    """[B, S, H*D] -> [B, H, S, D]; 4-D inputs pass through."""
    e = Emitter(ctx)
    if len(x.shape) == 4:
        return x
    b, s, hidden = x.shape
    split = e.reshape(x, (b, s, heads, hidden // heads), f"{hint}_split")
    return e.transpose(split, (0, 2, 1, 3), f"{hint}_heads")


def _structural_allowed(q_len, kv_len, offset, is_causal, left, right) -> np.ndarray | None:
    """Static causal/sliding-window permission grid [S, L] (None: everything allowed)."""
    i = np.arange(q_len)[:, None]
    j = np.arange(kv_len)[None, :]
    diff = i + offset - j
    allowed = np.ones((q_len, kv_len), bool)
    if is_causal:
        allowed &= diff >= 0
    if left >= 0:
        allowed &= diff <= left
    if right >= 0:
        allowed &= -diff <= right
    return None if allowed.all() else allowed


def _runtime_allowed(ctx, q_len, kv_len, is_causal, left, right):
    """Per-batch permission [B, 1, S, L] from ``nonpad_kv_seqlen`` (offset = n - S)."""
    e = Emitter(ctx)
    n = e.cast(ctx.input(6), np.int32, "seqlen_i32")
    n = e.reshape(n, (n.shape[0], 1, 1, 1), "seqlen")
    i = np.arange(q_len)[:, None]
    j = np.arange(kv_len)[None, :]
    # Each rule is "grid <= n" or "n <= grid" with an integer grid built from i and j.
    rules = [(np.broadcast_to(j + 1, (q_len, kv_len)), "le")]  # padding: j < n
    if is_causal:
        rules.append((j - i + q_len, "le"))  # j <= i + n - S
    if left >= 0:
        rules.append((left + q_len + j - i, "ge"))  # (i + n - S) - j <= left
    if right >= 0:
        rules.append((j - i + q_len - right, "le"))  # j - (i + n - S) <= right
    allowed = None
    for grid, kind in rules:
        g = e.const(grid[None, None], np.int32, "grid")
        a, b = (g, n) if kind == "le" else (n, g)
        term = e.op("LESS_EQUAL", a, b, dtype=np.bool_, hint="ok")
        allowed = term if allowed is None else e.op("LOGICAL_AND", allowed, term, hint="ok")
    return allowed


def _bias(ctx, q_len, kv_len, past_len):
    """The additive bias (a tensor, or None) and the static fully-masked-row flags."""
    e = Emitter(ctx)
    is_causal = bool(ctx.attr("is_causal", 0))
    left = int(ctx.attr("left_window_size", -1))
    right = int(ctx.attr("right_window_size", -1))
    zero, ninf = e.const(0.0, hint="zero"), e.const(NEG_INF, hint="neg_inf")
    terms = []
    if ctx.has_input(3):
        mask = ctx.input(3)
        if np.dtype(mask.dtype) == np.bool_:
            mask = e.op("SELECT_V2", mask, zero, ninf, hint="mask_bias")
        if mask.shape[-1] != kv_len:
            # The reference pads short masks with -inf; onnxruntime rejects them. Ambiguous.
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "attn_mask shorter than the KV length")
        terms.append(mask)
    if ctx.has_input(6) and not ctx.has_input(4):
        allowed = _runtime_allowed(ctx, q_len, kv_len, is_causal, left, right)
        terms.append(e.op("SELECT_V2", allowed, zero, ninf, hint="structural_bias"))
    else:
        static = _structural_allowed(q_len, kv_len, past_len, is_causal, left, right)
        if static is not None:
            terms.append(e.const(np.where(static, 0.0, NEG_INF), hint="structural_bias"))
    bias = None
    for t in terms:
        bias = t if bias is None else e.op("ADD", bias, t, hint="bias")
    return bias


def _guard_fully_masked(ctx, probs, bias):
    """Rows whose bias is all -inf attend nothing: their probabilities are 0 (not NaN)."""
    e = Emitter(ctx)
    if bias is None:
        return probs
    if bias.data is not None:
        dead = np.isneginf(np.max(np.asarray(bias.data), axis=-1, keepdims=True))
        if not dead.any():
            return probs
        cond = e.const(dead, np.bool_, "dead_rows")
    else:
        row_max = e.reduce("REDUCE_MAX", bias, [-1], True, "bias_row_max")
        cond = e.op("EQUAL", row_max, e.const(NEG_INF), hint="dead_rows", dtype=np.bool_)
    return e.op("SELECT_V2", cond, e.const(0.0, hint="zero"), probs, hint="guarded")


@lowering(
    "Attention",
    onnx_order,
    since=23,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2),
    tflite_ops=("BATCH_MATMUL", "SOFTMAX", "MUL", "ADD", "TANH", "SELECT_V2", "LESS_EQUAL"),
    notes="float32; bool/float masks (padded), causal, sliding window, GQA, past KV, "
    "nonpad_kv_seqlen, softcap, all qk_matmul_output modes (mode 0 with softcap refused)",
    extra_check=_attention_check,
)
def lower_attention(ctx):
    e = Emitter(ctx)
    q_in = ctx.input(0)
    three_d = len(q_in.shape) == 3
    q = _to_heads(ctx, q_in, int(ctx.attr("q_num_heads", 0) or 1), "q")
    k = _to_heads(ctx, ctx.input(1), int(ctx.attr("kv_num_heads", 0) or 1), "k")
    v = _to_heads(ctx, ctx.input(2), int(ctx.attr("kv_num_heads", 0) or 1), "v")
    batch, hq, q_len, head = q.shape
    hkv = k.shape[1]
    if hq % hkv:
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"q heads {hq} not a multiple of kv heads {hkv}"
        )
    past_len = 0
    wants = [i < len(ctx.node.outputs) and bool(ctx.node.outputs[i]) for i in range(4)]
    if ctx.has_input(4):
        past_len = ctx.shape(4)[2]
        k = e.concat([ctx.input(4), k], 2, "present_key", ctx.output(1) if wants[1] else None)
        v = e.concat([ctx.input(5), v], 2, "present_value", ctx.output(2) if wants[2] else None)
    else:
        for i, t in ((1, k), (2, v)):
            if wants[i]:
                e.reshape(t, t.shape, out=ctx.output(i))
    kv_len = k.shape[2]

    scale = ctx.attr("scale", None)
    scale = 1.0 / np.sqrt(head) if scale is None else float(scale)
    root = e.const(np.float32(np.sqrt(scale)), hint="sqrt_scale")
    qs = e.op("MUL", q, root, hint="q_scaled")
    ks = e.op("MUL", k, root, hint="k_scaled")
    group = hq // hkv
    # GQA: query heads h*group..h*group+group-1 share KV head h -> fold them into the rows.
    qg = e.reshape(qs, (batch, hkv, group * q_len, head), "q_grouped")
    scores = e.matmul(qg, ks, adj_y=True, hint="scores_grouped")
    scores = e.reshape(scores, (batch, hq, q_len, kv_len), "scores")
    softcap = float(ctx.attr("softcap", 0.0))
    if softcap > 0:
        cap = e.const(softcap, hint="softcap")
        scores = e.op("DIV", scores, cap, hint="capped_in")
        scores = e.op("TANH", scores, hint="capped_tanh")
        scores = e.op("MUL", scores, cap, hint="capped")
    bias = _bias(ctx, q_len, kv_len, past_len)
    mode = int(ctx.attr("qk_matmul_output_mode", 0))
    if wants[3] and mode in (0, 1):
        e.reshape(scores, scores.shape, out=ctx.output(3))
    logits = scores if bias is None else e.op("ADD", scores, bias, hint="logits")
    if wants[3] and mode == 2:
        e.reshape(logits, logits.shape, out=ctx.output(3))
    probs = e.op("SOFTMAX", logits, hint="probs", beta=1.0)
    probs = _guard_fully_masked(ctx, probs, bias)
    if wants[3] and mode == 3:
        e.reshape(probs, probs.shape, out=ctx.output(3))
    pg = e.reshape(probs, (batch, hkv, group * q_len, kv_len), "probs_grouped")
    y = e.matmul(pg, v, hint="y_grouped")
    y = e.reshape(y, (batch, hq, q_len, v.shape[3]), "y_heads")
    if three_d:
        y = e.transpose(y, (0, 2, 1, 3), "y_tokens")
    e.reshape(y, ctx.out_shape(0), out=ctx.output(0))


def _rotary_check(node, graph):
    x = graph.values[node.inputs[0]]
    if x.rank == 3 and not node.attrs.get("num_heads"):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: 3-D input needs num_heads"
    if x.rank not in (3, 4):
        return f"{errors.UNSUPPORTED_RANK}: input rank {x.rank}"
    return None


@lowering(
    "RotaryEmbedding",
    onnx_order,
    since=23,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2),
    tflite_ops=("GATHER", "SPLIT_V", "MUL", "SUB", "ADD", "CONCATENATION"),
    notes="interleaved via a constant GATHER permutation of the last axis; partial rotary dim",
    extra_check=_rotary_check,
)
def lower_rotary(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    shape = ctx.shape(0)
    if len(shape) == 4:  # [B, H, S, D]: caches broadcast as [B, 1, S, R/2]
        batch, _, seq, head = shape
        work = x
        cache_shape = (batch, 1, seq, -1)
    else:  # [B, S, N*D] -> [B, S, N, D]: caches as [B, S, 1, R/2]
        batch, seq, hidden = shape
        heads = int(ctx.attr("num_heads"))
        head = hidden // heads
        work = e.reshape(x, (batch, seq, heads, head), "x_heads")
        cache_shape = (batch, seq, 1, -1)
    rot = int(ctx.attr("rotary_embedding_dim", 0) or head)
    half = rot // 2
    caches = []
    for i, name in ((1, "cos"), (2, "sin")):
        cache = ctx.input(i)
        if ctx.has_input(3):
            cache = e.gather(cache, ctx.input(3), 0, f"{name}_at_pos")
        if cache.shape[-1] != half:
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"{name} cache last dim != rotary_dim/2")
        caches.append(e.reshape(cache, cache_shape[:3] + (half,), name))
    cos, sin = caches
    interleaved = bool(ctx.attr("interleaved", 0))
    order = np.concatenate([np.arange(0, rot, 2), np.arange(1, rot, 2), np.arange(rot, head)])
    if interleaved:
        work = e.gather(work, order, -1, "deinterleaved")
    sizes = [half, half] + ([head - rot] if head > rot else [])
    parts = e.split(work, sizes, -1, "x")
    x1, x2 = parts[0], parts[1]
    real = e.op(
        "SUB", e.op("MUL", cos, x1, hint="cx1"), e.op("MUL", sin, x2, hint="sx2"), hint="real"
    )
    imag = e.op(
        "ADD", e.op("MUL", sin, x1, hint="sx1"), e.op("MUL", cos, x2, hint="cx2"), hint="imag"
    )
    pieces = [real, imag] + parts[2:]
    direct = not interleaved and len(shape) == 4
    out = e.concat(pieces, -1, "rotated", ctx.output(0) if direct else None)
    if direct:
        return
    if interleaved:
        out = e.gather(out, np.argsort(order), -1, "reinterleaved")
    e.reshape(out, shape, out=ctx.output(0))
