"""onnxruntime's attention contrib ops: Attention (packed QKV projection, GPT-2/BERT) and
MultiHeadAttention, composed from builtins like the opset-23 Attention.

The contract is onnxruntime's CPU kernel: scores = scale * Q K^T (+ attention_bias); a key
position the padding mask hides gets ``mask_filter_value`` added (default -10000, not -inf:
a fully padded row is a softmax over its raw scores, as in onnxruntime), from mask_index as
key lengths (B), end/start positions (2B), or raw 0/1 masks (B, T) / (B, S, T) (0 = masked);
a position the causal mask of ``unidirectional`` hides (key j > past + i, when S > 1) is set
to the lowest float, so a left-padded row still attends only to its own past. Past state is concatenated before the new keys and
returned as ``present``. Forms the CPU kernel rejects or that need run-time buffer
arithmetic are refused naming the node and the attribute or input: 4-D Megatron masks,
(3B + 2) mask_index, past_present_share_buffer / past_sequence_length, do_rotary,
cache_indirection.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import onnx_order
from ..registry import FLOAT, lowering
from .attention import lower_rotary
from .contrib import MS
from .emit import Emitter

MASK_FILTER = -10000.0


def _has(node, i) -> bool:
    return i < len(node.inputs) and bool(node.inputs[i])


def _used(ctx, i: int) -> bool:
    return i < len(ctx.node.outputs) and bool(ctx.node.outputs[i])


def _to_heads(ctx, x, heads: int, hint: str):
    """[B, S, N*H] -> [B, N, S, H]."""
    e = Emitter(ctx)
    b, s, hidden = x.shape
    split = e.reshape(x, (b, s, heads, hidden // heads), f"{hint}_split")
    return e.transpose(split, (0, 2, 1, 3), f"{hint}_heads")


def _mask_problem(node, graph, idx: int, batch: int, what: str) -> str | None:
    if not _has(node, idx):
        return None
    v = graph.values[node.inputs[idx]]
    dt = np.dtype(v.dtype).name
    if dt != "int32":
        return f"{errors.UNSUPPORTED_DTYPE}: {what} dtype {dt} (int32)"
    if v.rank == 1 and v.shape[0] not in (batch, 2 * batch):
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: {what} shape {list(v.shape)} "
            "((3 * batch + 2) cumulative-length masks are not supported)"
        )
    if v.rank == 4:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: 4-D {what} (Megatron max-sequence masks)"
    if v.rank not in (1, 2, 3):
        return f"{errors.UNSUPPORTED_RANK}: {what} rank {v.rank}"
    return None


def _batch_problem(node, graph, batch: int, checks) -> str | None:
    """``checks``: (input index, axis, allowed sizes) for the batch axis of each optional input;
    an input whose batch disagrees with the query's is refused (the model cannot run)."""
    for idx, axis, allowed in checks:
        if not _has(node, idx):
            continue
        shape = graph.values[node.inputs[idx]].shape
        if len(shape) > axis and shape[axis] not in allowed(batch):
            return (
                f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: input {idx} has batch {shape[axis]} "
                f"where the query has {batch}"
            )
    return None


def _same(b):
    return (b,)


def _same_or_one(b):
    return (1, b)


def _shared(ctx, key, build):
    """One tensor per key for the whole graph: every layer of an optimized encoder reads the
    same mask_index, so its mask is built once. Rebuilt per layer, the integer mask ops sat
    between the layers' float ops and cut the graph into one XNNPACK partition per layer."""
    cache = ctx.driver.__dict__.setdefault("_attention_shared", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _keep_mask(ctx, idx: int | None, batch: int, q_len: int, total: int, past: int, causal: bool):
    """(padding, causal): bool tensors 'key j may be attended by query i' broadcastable to
    [B, 1, S, T], each None when it allows everything. onnxruntime adds mask_filter_value
    where the padding mask says no, and sets the causally hidden scores to the lowest float."""
    mask = ctx.input(idx) if idx is not None and ctx.has_input(idx) else None
    key = ("keep", id(mask), batch, q_len, total, past, causal)
    return _shared(ctx, key, lambda: _build_keep_mask(ctx, idx, batch, q_len, total, past, causal))


def _build_keep_mask(ctx, idx, batch: int, q_len: int, total: int, past: int, causal: bool):
    e = Emitter(ctx)
    keep = None

    def both(a, b):
        return b if a is None else e.op("LOGICAL_AND", a, b, hint="keep")

    if idx is not None and ctx.has_input(idx):
        mask = ctx.input(idx)
        shape = ctx.shape(idx)
        zero = e.const(0, np.int32, "zero_i")
        if len(shape) == 1:
            grid = e.const(np.arange(total, dtype=np.int32)[None, :], np.int32, "key_pos")
            ends = e.reshape(mask, (shape[0], 1), "mask_cols")
            if shape[0] == 2 * batch:
                end, start = e.split(ends, [batch, batch], 0, "mask_bounds")
                keep = e.op("LESS", grid, end, dtype=np.bool_, hint="before_end")
                after = e.op("GREATER_EQUAL", grid, start, dtype=np.bool_, hint="after")
                keep = both(keep, after)
            else:
                keep = e.op("LESS", grid, ends, dtype=np.bool_, hint="in_length")
            keep = e.reshape(keep, (batch, 1, 1, total), "keep_rows")
        else:
            raw = e.op("GREATER", mask, zero, dtype=np.bool_, hint="mask_keep")
            target = (batch, 1, 1, total) if len(shape) == 2 else (batch, 1, q_len, total)
            keep = e.reshape(raw, target, "keep_raw")
    causal_keep = None
    if causal and q_len > 1:
        i = np.arange(q_len)[:, None]
        j = np.arange(total)[None, :]
        causal_keep = e.const((j <= i + past)[None, None], np.bool_, "causal")
    return keep, causal_keep


def attend(ctx, q, k, v, scale: float, keeps, bias, mask_filter: float, qk_out=None):
    """softmax(scale * q k^T + bias, masked as :func:`_keep_mask` says) v over [B, N, *, H]
    tensors; returns [B, N, S, Hv]."""
    e = Emitter(ctx)
    keep, causal_keep = keeps
    b, n, s, _ = q.shape
    t = k.shape[2]
    scores = e.matmul(q, k, adj_y=True, hint="scores")
    scores = e.op("MUL", scores, e.const(np.float32(scale)), hint="scaled")
    if bias is not None:
        scores = e.op("ADD", scores, bias, hint="biased")
    if keep is not None:

        def additive_mask():
            zero, fill = e.const(0.0, hint="zero"), e.const(mask_filter, hint="filter")
            return e.op("SELECT_V2", keep, zero, fill, hint="mask_bias")

        additive = _shared(ctx, ("additive", id(keep), mask_filter), additive_mask)
        scores = e.op("ADD", scores, additive, hint="masked")
    if causal_keep is not None:
        lowest = e.const(np.finfo(np.float32).min, hint="lowest")
        scores = e.op("SELECT_V2", causal_keep, scores, lowest, hint="causal_masked")
    if qk_out is not None:  # onnxruntime copies the scores with bias and mask added
        e.reshape(scores, (b, n, s, t), out=qk_out)
    if tuple(scores.shape) != (b, n, s, t):
        scores = e.op(
            "BROADCAST_TO",
            scores,
            e.const([b, n, s, t], np.int32, "shape"),
            shape=(b, n, s, t),
            hint="scores_full",
        )
    probs = e.op("SOFTMAX", scores, hint="probs", beta=1.0)
    return e.matmul(probs, v, hint="context")


def _merge_heads(ctx, y, out):
    """[B, N, S, H] -> [B, S, N*H] into ``out``."""
    e = Emitter(ctx)
    b, n, s, h = y.shape
    tokens = e.transpose(y, (0, 2, 1, 3), "tokens")
    e.reshape(tokens, (b, s, n * h), out=out)


# ---- Attention ---------------------------------------------------------------------------------


def _attention_sizes(node, graph) -> tuple[int, int, int]:
    sizes = node.attrs.get("qkv_hidden_sizes")
    if sizes:
        return int(sizes[0]), int(sizes[1]), int(sizes[2])
    third = graph.values[node.inputs[1]].shape[1] // 3
    return third, third, third


def _attention_check(node, graph):
    x = graph.values[node.inputs[0]]
    if x.rank != 3:
        return f"{errors.UNSUPPORTED_RANK}: input rank {x.rank} (batch, sequence, hidden)"
    for name in ("do_rotary", "past_present_share_buffer"):
        if node.attrs.get(name, 0):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: {name}={node.attrs[name]}"
    if _has(node, 6):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: input past_sequence_length (shared buffers)"
    heads = int(node.attrs.get("num_heads", 0))
    qh, kh, vh = _attention_sizes(node, graph)
    if heads <= 0 or qh % heads or vh % heads or qh != kh:
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: num_heads={heads} with hidden sizes "
            f"{[qh, kh, vh]}"
        )
    if _has(node, 4) and _has(node, 5):  # onnxruntime rejects the pair
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: inputs past and attention_bias together"
    if _has(node, 4) and not (qh == vh):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: past with v hidden size {vh} != {qh}"
    batch = _batch_problem(node, graph, x.shape[0], ((4, 1, _same), (5, 0, _same_or_one)))
    return batch or _mask_problem(node, graph, 3, x.shape[0], "mask_index")


@lowering(
    "Attention",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2, 4, 5),
    tflite_ops=(
        "FULLY_CONNECTED",
        "SPLIT_V",
        "TRANSPOSE",
        "BATCH_MATMUL",
        "MUL",
        "ADD",
        "SELECT_V2",
        "SOFTMAX",
        "CONCATENATION",
        "LESS",
        "GREATER",
    ),
    notes="packed QKV projection (qkv_hidden_sizes), mask_index (B) / (2B) / raw (B, T) / "
    "(B, S, T), unidirectional, past/present, attention_bias, scale, mask_filter_value; "
    "refused: 4-D and (3B+2) masks, do_rotary, past_present_share_buffer",
    extra_check=_attention_check,
)
def lower_ms_attention(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    b, s, d_in = ctx.shape(0)
    qh, kh, vh = _attention_sizes(ctx.node, ctx.driver.graph)
    w = ctx.const(1)
    bias = ctx.const(2) if ctx.has_input(2) else None
    if w is not None and (bias is not None or not ctx.has_input(2)):
        weights = ctx.const_tensor(np.ascontiguousarray(np.asarray(w, np.float32).T), "qkv_w")
        bias_t = None if bias is None else ctx.const_tensor(np.asarray(bias, np.float32), "qkv_b")
        qkv = e.op(
            "FULLY_CONNECTED",
            x,
            weights,
            bias_t,
            shape=(b, s, qh + kh + vh),
            hint="qkv",
            fused_activation_function="NONE",
            keep_num_dims=True,
        )
    else:
        qkv = e.matmul(x, e.reshape(ctx.input(1), (1, d_in, qh + kh + vh), "w3"), hint="qkv")
        if ctx.has_input(2):
            qkv = e.op("ADD", qkv, ctx.input(2), hint="qkv_biased")
    attention_from_qkv(ctx, qkv, (qh, kh, vh), mask_idx=3, past_idx=4, bias_idx=5)


def _split_last(ctx, x, sizes, hint: str):
    """Equal float32 chunks along the last axis as SPLIT (XNNPACK takes it, not SPLIT_V: each
    layer's packed-QKV split would cut the graph into another delegate partition)."""
    e = Emitter(ctx)
    if len(set(sizes)) > 1 or x.dtype != np.float32:
        return e.split(x, sizes, len(x.shape) - 1, hint)
    shape = (*x.shape[:-1], sizes[0])
    outs = [ctx.temp(x.dtype, shape, f"{hint}{k}") for k in range(len(sizes))]
    axis = e.const(len(x.shape) - 1, np.int32, "axis")
    e.op("SPLIT", axis, x, out=outs, num_splits=len(sizes))
    return outs


def split_first_heads(ctx, qkv, sizes, heads: int):
    """[B, S, qh + kh + vh] -> q, k, v as [B, N, S, H]: SPLIT, then a TRANSPOSE per part."""
    parts = _split_last(ctx, qkv, list(sizes), "qkv")
    return [_to_heads(ctx, t, heads, n) for t, n in zip(parts, "qkv", strict=True)]


def head_major_heads(ctx, qkv, sizes, heads: int):
    """[B, S, qh + kh + vh] -> q, k, v as [B, N, S, H] with equal float32 parts: one RESHAPE
    to [B, S, 3N, H], one TRANSPOSE to head-major [B, 3N, S, H], one SPLIT along the heads (1
    TRANSPOSE instead of 3, the same bytes moved); other parts as :func:`split_first_heads`."""
    e = Emitter(ctx)
    if len(set(sizes)) != 1 or qkv.dtype != np.float32:
        return split_first_heads(ctx, qkv, sizes, heads)
    b, s = qkv.shape[0], qkv.shape[1]
    depth = sizes[0] // heads
    grouped = e.reshape(qkv, (b, s, 3 * heads, depth), "qkv_split")
    major = e.transpose(grouped, (0, 2, 1, 3), "qkv_heads")
    outs = [ctx.temp(qkv.dtype, (b, heads, s, depth), f"{n}_heads") for n in "qkv"]
    e.op("SPLIT", e.const(1, np.int32, "heads_axis"), major, out=outs, num_splits=3)
    return outs


# The head split attention_from_qkv uses: head_major_heads, 2 TRANSPOSE per layer instead of
# 4, measured 0.97-1.00x the split-first form on the corpus's onnxruntime-fused BERT,
# DistilBERT and MiniLM-L6 (benchmarks/bench_attention_forms.py, the *_ortopt rows); the
# benchmark and tests swap split_first_heads in to compare.
packed_heads = head_major_heads


def attention_from_qkv(ctx, qkv, sizes, mask_idx: int, past_idx: int, bias_idx: int | None):
    """The rest of com.microsoft Attention once the packed [B, S, qh + kh + vh] projection is
    computed (shared with QAttention, whose projection is quantized)."""
    e = Emitter(ctx)
    b, s = qkv.shape[0], qkv.shape[1]
    heads = int(ctx.attr("num_heads"))
    qh, kh, vh = sizes
    q, k, v = packed_heads(ctx, qkv, (qh, kh, vh), heads)
    past_len = 0
    if ctx.has_input(past_idx):
        past_len = ctx.shape(past_idx)[3]
        pk, pv = e.split(ctx.input(past_idx), [1, 1], 0, "past")
        head = qh // heads
        pk = e.reshape(pk, (b, heads, past_len, head), "past_k")
        pv = e.reshape(pv, (b, heads, past_len, head), "past_v")
        k = e.concat([pk, k], 2, "k_total")
        v = e.concat([pv, v], 2, "v_total")
    total = k.shape[2]
    if _used(ctx, 1):
        k5 = e.reshape(k, (1, *k.shape), "present_k")
        v5 = e.reshape(v, (1, *v.shape), "present_v")
        e.concat([k5, v5], 0, "present", out=ctx.output(1))
    causal = bool(ctx.attr("unidirectional", 0))
    keep = _keep_mask(ctx, mask_idx, b, s, total, past_len, causal)
    has_bias = bias_idx is not None and ctx.has_input(bias_idx)
    attn_bias = ctx.input(bias_idx) if has_bias else None
    scale = ctx.attr("scale", None)
    scale = 1.0 / np.sqrt(qh // heads) if not scale else float(scale)
    filt = float(ctx.attr("mask_filter_value", MASK_FILTER))
    y = attend(ctx, q, k, v, scale, keep, attn_bias, filt)
    _merge_heads(ctx, y, ctx.output(0))


# ---- MultiHeadAttention ----------------------------------------------------------------------


def _mha_check(node, graph):
    vals = graph.values
    q = vals[node.inputs[0]]
    heads = int(node.attrs.get("num_heads", 0))
    if heads <= 0:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: num_heads={heads}"
    for i, name in ((8, "past_sequence_length"), (9, "cache_indirection")):
        if _has(node, i):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: input {name} (shared/beam buffers)"
    if q.rank == 5:
        if _has(node, 1) or _has(node, 2):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: packed QKV query with key/value"
    elif q.rank != 3:
        return f"{errors.UNSUPPORTED_RANK}: query rank {q.rank}"
    elif not _has(node, 1):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: 3-D query without key"
    else:
        k = vals[node.inputs[1]]
        if k.rank == 5 and _has(node, 2):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: packed KV key with value"
        if k.rank not in (3, 4, 5):
            return f"{errors.UNSUPPORTED_RANK}: key rank {k.rank}"
        if k.rank == 4 and (_has(node, 3) or _has(node, 6)):
            return (
                f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: bias or past_key with 4-D (already "
                "projected) key/value"
            )
    if _has(node, 6) != _has(node, 7):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: past_key and past_value must come together"
    checks = ((1, 0, _same), (2, 0, _same), (5, 0, _same_or_one), (6, 0, _same), (7, 0, _same))
    batch = _batch_problem(node, graph, q.shape[0], checks)
    return batch or _mask_problem(node, graph, 4, q.shape[0], "key_padding_mask")


def _unpack(ctx, packed, parts: int, hint: str):
    """(B, L, N, parts, H) -> ``parts`` tensors [B, N, L, H]."""
    e = Emitter(ctx)
    b, length, n, _, h = packed.shape
    pieces = e.split(packed, [1] * parts, 3, hint)
    out = []
    for i, p in enumerate(pieces):
        p = e.reshape(p, (b, length, n, h), f"{hint}{i}_blnh")
        out.append(e.transpose(p, (0, 2, 1, 3), f"{hint}{i}_heads"))
    return out


@lowering(
    "MultiHeadAttention",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2, 3, 5, 6, 7),
    tflite_ops=(
        "SPLIT_V",
        "TRANSPOSE",
        "BATCH_MATMUL",
        "MUL",
        "ADD",
        "SELECT_V2",
        "SOFTMAX",
        "CONCATENATION",
        "LESS",
        "GREATER",
    ),
    notes="separate Q/K/V (+ bias), packed QKV (B, L, N, 3, H) and KV (B, L, N, 2, H), "
    "projected 4-D key/value, key_padding_mask (B) / (B, T) / (B, S, T), attention_bias, "
    "past/present key and value, unidirectional, qk output; refused: (3B+2) masks, "
    "past_sequence_length, cache_indirection",
    extra_check=_mha_check,
)
def lower_multi_head_attention(ctx):
    e = Emitter(ctx)
    heads = int(ctx.attr("num_heads"))
    q_shape = ctx.shape(0)
    b, s = q_shape[0], q_shape[1]
    if len(q_shape) == 5:
        q, k, v = _unpack(ctx, ctx.input(0), 3, "qkv")
    else:
        q_in = ctx.input(0)
        k_shape = ctx.shape(1)
        bias = None
        if ctx.has_input(3):
            d, dk = q_shape[2], k_shape[2] if len(k_shape) == 3 else heads * k_shape[4]
            dv = ctx.shape(3)[0] - d - dk
            bias = e.split(ctx.input(3), [d, dk, dv], 0, "bias")
            q_in = e.op("ADD", q_in, bias[0], hint="q_biased")
        q = _to_heads(ctx, q_in, heads, "q")
        if len(k_shape) == 5:
            k, v = _unpack(ctx, ctx.input(1), 2, "kv")
        elif len(k_shape) == 4:
            k, v = ctx.input(1), ctx.input(2)
        else:
            k_in, v_in = ctx.input(1), ctx.input(2)
            if bias is not None:
                k_in = e.op("ADD", k_in, bias[1], hint="k_biased")
                v_in = e.op("ADD", v_in, bias[2], hint="v_biased")
            k, v = _to_heads(ctx, k_in, heads, "k"), _to_heads(ctx, v_in, heads, "v")
    past_len = 0
    if ctx.has_input(6):
        past_len = ctx.shape(6)[2]
        k = e.concat([ctx.input(6), k], 2, "k_total")
        v = e.concat([ctx.input(7), v], 2, "v_total")
    for i, t in ((1, k), (2, v)):
        if _used(ctx, i):
            e.reshape(t, t.shape, out=ctx.output(i))
    total = k.shape[2]
    if ctx.has_input(4) and len(ctx.shape(4)) >= 2 and ctx.shape(4)[-1] != total:
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE,
            f"key_padding_mask width {ctx.shape(4)[-1]} != total sequence length {total}",
        )
    keep = _keep_mask(ctx, 4, b, s, total, past_len, bool(ctx.attr("unidirectional", 0)))
    attn_bias = ctx.input(5) if ctx.has_input(5) else None
    scale = ctx.attr("scale", None)
    scale = 1.0 / np.sqrt(q.shape[3]) if not scale else float(scale)
    filt = float(ctx.attr("mask_filter_value", MASK_FILTER))
    qk = ctx.output(3) if _used(ctx, 3) else None
    y = attend(ctx, q, k, v, scale, keep, attn_bias, filt, qk)
    _merge_heads(ctx, y, ctx.output(0))


# ---- RotaryEmbedding -----------------------------------------------------------------------


class _RotaryView:
    """The com.microsoft RotaryEmbedding node seen as the opset-23 one (inputs X, cos, sin,
    position_ids; num_heads known), so that ``attention.lower_rotary`` does the work."""

    _ORDER = {0: 0, 1: 2, 2: 3, 3: 1}

    def __init__(self, ctx, positions, heads: int):
        self._ctx, self._positions, self._heads = ctx, positions, heads

    def input(self, i: int, layout=None):
        return self._positions if i == 3 else self._ctx.input(self._ORDER[i], layout)

    def has_input(self, i: int) -> bool:
        return self._ctx.has_input(self._ORDER.get(i, 99))

    def shape(self, i: int):
        return self._ctx.shape(self._ORDER[i])

    def attr(self, name: str, default=None):
        if name == "num_heads":
            return self._heads
        return self._ctx.attr(name, default)

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def _rotary_heads(node, graph) -> int:
    x = graph.values[node.inputs[0]]
    heads = int(node.attrs.get("num_heads", 0) or 0)
    if x.rank == 4:
        return x.shape[1]
    if heads:
        return heads
    half = graph.values[node.inputs[2]].shape[1]
    return x.shape[2] // (2 * half) if half else 0


def _ms_rotary_check(node, graph):
    x = graph.values[node.inputs[0]]
    if x.rank not in (3, 4):
        return f"{errors.UNSUPPORTED_RANK}: input rank {x.rank}"
    if node.attrs.get("is_packed_batching", 0):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: is_packed_batching=1"
    scale = node.attrs.get("scale", 1.0)
    if scale not in (None, 1.0):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: scale={scale}"
    heads = _rotary_heads(node, graph)
    if heads <= 0 or (x.rank == 3 and x.shape[2] % heads):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: num_heads={heads} for input {list(x.shape)}"
    pos = graph.values[node.inputs[1]]
    seq = x.shape[1] if x.rank == 3 else x.shape[2]
    if pos.rank == 2 and tuple(pos.shape) != (x.shape[0], seq):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: position_ids shape {list(pos.shape)}"
    if pos.rank not in (1, 2) or (pos.rank == 1 and pos.shape[0] != 1):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: position_ids shape {list(pos.shape)}"
    return None


@lowering(
    "RotaryEmbedding",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 2, 3),
    tflite_ops=("GATHER", "SPLIT_V", "MUL", "SUB", "ADD", "CONCATENATION", "CAST"),
    notes="3-D (num_heads, or derived from the cache width) and 4-D inputs; position_ids "
    "(B, S) or (1) as a start offset; interleaved; partial rotary_embedding_dim; "
    "is_packed_batching refused",
    extra_check=_ms_rotary_check,
)
def lower_ms_rotary(ctx):
    e = Emitter(ctx)
    shape = ctx.shape(0)
    b = shape[0]
    seq = shape[1] if len(shape) == 3 else shape[2]
    pos = e.cast(ctx.input(1), np.int32, "position_ids")
    if len(ctx.shape(1)) == 1:  # a start offset shared by the batch
        start = e.reshape(pos, (1, 1), "start")
        grid = e.const(
            np.zeros((b, 1), np.int32) + np.arange(seq, dtype=np.int32), np.int32, "positions_grid"
        )
        pos = e.op("ADD", grid, start, hint="positions")
    lower_rotary(_RotaryView(ctx, pos, _rotary_heads(ctx.node, ctx.driver.graph)))


# ---- GroupQueryAttention -----------------------------------------------------------------------

_GQA_UNSUPPORTED_INPUTS = {
    9: "position_ids",
    12: "k_scale",
    13: "v_scale",
    14: "q_norm_weight",
    15: "k_norm_weight",
}


def _gqa_check(node, graph):
    vals = graph.values
    q = vals[node.inputs[0]]
    heads, kv_heads = int(node.attrs.get("num_heads", 0)), int(node.attrs.get("kv_num_heads", 0))
    if heads <= 0 or kv_heads <= 0 or heads % kv_heads:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: num_heads={heads}, kv_num_heads={kv_heads}"
    if q.rank != 3:
        return f"{errors.UNSUPPORTED_RANK}: query rank {q.rank}"
    for i, name in _GQA_UNSUPPORTED_INPUTS.items():
        if _has(node, i):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: input {name}"
    if _has(node, 11) and node.attrs.get("smooth_softmax", 0):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: head_sink with smooth_softmax=1"
    for name in ("sliding_window_cache", "qk_output"):
        if node.attrs.get(name, 0):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: {name}={node.attrs[name]}"
    if int(node.attrs.get("causal", 1)) != 1:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: causal=0"
    for i in (3, 4):
        if _has(node, i) and np.dtype(vals[node.inputs[i]].dtype).name != "float32":
            return f"{errors.UNSUPPORTED_DTYPE}: quantized KV cache (input {i})"
    if _has(node, 3) != _has(node, 4):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: past_key and past_value must come together"
    if node.attrs.get("do_rotary", 0) and not (_has(node, 7) and _has(node, 8)):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: do_rotary=1 without cos/sin caches"
    checks = ((1, 0, _same), (2, 0, _same), (3, 0, _same), (4, 0, _same), (5, 0, _same))
    return _batch_problem(node, graph, q.shape[0], checks + ((10, 0, _same_or_one),))


class _TensorRotary(_RotaryView):
    """lower_rotary applied to an intermediate [B, N, S, H] tensor (GQA's do_rotary)."""

    def __init__(self, ctx, x, cos, sin, positions, interleaved: bool):
        super().__init__(ctx, positions, x.shape[1])
        self._x, self._cos, self._sin, self._interleaved = x, cos, sin, interleaved
        self.rotated = ctx.temp(x.dtype, tuple(x.shape), "rotated")

    def input(self, i: int, layout=None):
        return {0: self._x, 1: self._cos, 2: self._sin, 3: self._positions}[i]

    def has_input(self, i: int) -> bool:
        return i in (0, 1, 2, 3)

    def shape(self, i: int):
        return tuple(self._x.shape) if i == 0 else tuple(self.input(i).shape)

    def attr(self, name: str, default=None):
        if name == "interleaved":
            return int(self._interleaved)
        if name == "rotary_embedding_dim":
            return int(self._cos.shape[1]) * 2
        return super().attr(name, default)

    def output(self, i: int = 0, dtype=None):
        return self.rotated


def _gqa_present(ctx, past, new, offsets, past_len: int, length: int, hint: str):
    """The present cache [B, N_kv, length, H]: rows < p_b from past, p_b .. p_b + S - 1 the new
    keys, zeros after (onnxruntime's layout), gathered per batch from [past, new, 0]."""
    e = Emitter(ctx)
    b, nkv, s, h = new.shape
    parts = ([past] if past is not None else []) + [new]
    parts.append(e.const(np.zeros((b, nkv, 1, h), np.float32), hint=f"{hint}_zero_row"))
    source = e.concat(parts, 2, f"{hint}_source")
    j = e.const(np.arange(length, dtype=np.int32)[None, :], np.int32, "cache_pos")
    p = e.reshape(offsets, (b, 1), "offset_col")
    before = e.op("LESS", j, p, dtype=np.bool_, hint=f"{hint}_is_past")
    rel = e.op("SUB", j, p, hint=f"{hint}_rel")
    fresh = e.op("LESS", rel, e.const(s, np.int32, "seq"), dtype=np.bool_, hint=f"{hint}_is_new")
    new_idx = e.op("ADD", rel, e.const(past_len, np.int32, "past_len"), hint="new_idx")
    zero_idx = e.const(np.full((b, length), past_len + s, np.int32), np.int32, "zero_idx")
    idx = e.op("SELECT_V2", fresh, new_idx, zero_idx, hint=f"{hint}_idx_new")
    idx = e.op(
        "SELECT_V2",
        before,
        e.op(
            "BROADCAST_TO",
            j,
            e.const([b, length], np.int32, "bshape"),
            shape=(b, length),
            hint="j_b",
        ),
        idx,
        hint=f"{hint}_idx",
    )
    return e.op("GATHER", source, idx, shape=(b, nkv, length, h), hint=hint, axis=2, batch_dims=1)


def _gqa_softmax(ctx, scores):
    """SOFTMAX over the keys; with smooth_softmax an extra logit 0, with head_sink an extra
    logit per head (onnxruntime's ``exp(x_i) / (exp(sink) + sum_j exp(x_j))``), written as one
    more column that is dropped after the softmax."""
    e = Emitter(ctx)
    b, n, s, length = scores.shape
    if ctx.has_input(11):
        sink = e.reshape(ctx.input(11), (1, n, 1, 1), "sink")
        extra = e.op(
            "BROADCAST_TO",
            sink,
            e.const([b, n, s, 1], np.int32, "sink_shape"),
            shape=(b, n, s, 1),
            hint="sink_column",
        )
    elif ctx.attr("smooth_softmax", 0):
        extra = e.const(np.zeros((b, n, s, 1), np.float32), hint="smooth_column")
    else:
        return e.op("SOFTMAX", scores, hint="probs", beta=1.0)
    wide = e.concat([scores, extra], 3, "with_sink")
    probs = e.op("SOFTMAX", wide, hint="probs_wide", beta=1.0)
    return e.split(probs, [length, 1], 3, "probs")[0]


@lowering(
    "GroupQueryAttention",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2, 3, 4, 7, 8, 10, 11),
    const_inputs=(6,),
    tflite_ops=(
        "SPLIT_V",
        "TRANSPOSE",
        "BATCH_MATMUL",
        "MUL",
        "SELECT_V2",
        "SOFTMAX",
        "GATHER",
        "CONCATENATION",
        "LESS",
        "LESS_EQUAL",
        "GREATER_EQUAL",
        "TANH",
    ),
    notes="separate or packed QKV, past/present caches (BNSH; new keys written at "
    "seqlens_k + 1 - S per batch, zeros after, as onnxruntime), causal + local_window_size, "
    "do_rotary with cos/sin caches, softcap, scale, attention_bias, smooth_softmax, head_sink; "
    "constant total_sequence_length; refused: quantized caches, position_ids, qk_output, "
    "q/k norm weights, sliding_window_cache",
    extra_check=_gqa_check,
)
def lower_group_query_attention(ctx):
    e = Emitter(ctx)
    heads, kv_heads = int(ctx.attr("num_heads")), int(ctx.attr("kv_num_heads"))
    b, s, dq = ctx.shape(0)
    if ctx.has_input(1):
        head = dq // heads
        q_in, k_in, v_in = ctx.input(0), ctx.input(1), ctx.input(2)
    else:
        head = dq // (heads + 2 * kv_heads)
        sizes = [heads * head, kv_heads * head, kv_heads * head]
        q_in, k_in, v_in = e.split(ctx.input(0), sizes, 2, "qkv")
    q = _to_heads(ctx, q_in, heads, "q")
    k = _to_heads(ctx, k_in, kv_heads, "k")
    v = _to_heads(ctx, v_in, kv_heads, "v")
    total = int(np.asarray(ctx.const(6)).reshape(-1)[0])
    past_len = ctx.shape(3)[2] if ctx.has_input(3) else 0
    length = max(total, past_len)
    if s == total:  # first prompt: new keys at row 0
        offsets = e.const(np.zeros(b, np.int32), np.int32, "offsets")
    else:
        seqlens = e.cast(ctx.input(5), np.int32, "seqlens_k")
        offsets = e.op("SUB", seqlens, e.const(s - 1, np.int32, "s_1"), hint="offsets")
    if ctx.attr("do_rotary", 0):
        pos = e.op(
            "ADD",
            e.reshape(offsets, (b, 1), "offsets_col"),
            e.const(np.arange(s, dtype=np.int32)[None], np.int32, "steps"),
            hint="positions",
        )
        inter = bool(ctx.attr("rotary_interleaved", 0))
        cos, sin = ctx.input(7), ctx.input(8)
        for name in ("q", "k"):
            view = _TensorRotary(ctx, q if name == "q" else k, cos, sin, pos, inter)
            lower_rotary(view)
            if name == "q":
                q = view.rotated
            else:
                k = view.rotated
    past_k = ctx.input(3) if ctx.has_input(3) else None
    past_v = ctx.input(4) if ctx.has_input(4) else None
    k_all = _gqa_present(ctx, past_k, k, offsets, past_len, length, "present_key")
    v_all = _gqa_present(ctx, past_v, v, offsets, past_len, length, "present_value")
    for i, t in ((1, k_all), (2, v_all)):
        if _used(ctx, i):
            e.reshape(t, t.shape, out=ctx.output(i))
    # query i of batch b sees keys j <= p_b + i, and with a window the last ``window`` of them
    # (j > p_b + i - window: measured against onnxruntime, whose window includes the query)
    rel = np.arange(length)[None, :] - np.arange(s)[:, None]  # j - i
    rel_t = e.const(rel[None, None], np.int32, "key_minus_query")
    p4 = e.reshape(offsets, (b, 1, 1, 1), "offsets_4d")
    keep = e.op("LESS_EQUAL", rel_t, p4, dtype=np.bool_, hint="causal")
    window = int(ctx.attr("local_window_size", -1))
    if window > 0:
        lo = e.op("SUB", p4, e.const(window - 1, np.int32, "window"), hint="window_lo")
        inside = e.op("GREATER_EQUAL", rel_t, lo, dtype=np.bool_, hint="inside")
        keep = e.op("LOGICAL_AND", keep, inside, hint="keep")
    scale = ctx.attr("scale", None)
    scale = 1.0 / np.sqrt(head) if not scale else float(scale)
    group = heads // kv_heads
    qg = e.reshape(q, (b, kv_heads, group * s, head), "q_grouped")
    scores = e.matmul(qg, k_all, adj_y=True, hint="scores_grouped")
    scores = e.reshape(scores, (b, heads, s, length), "scores")
    scores = e.op("MUL", scores, e.const(np.float32(scale)), hint="scaled")
    softcap = float(ctx.attr("softcap", 0.0) or 0.0)
    if softcap > 0:
        cap = e.const(softcap, hint="softcap")
        scores = e.op("DIV", scores, cap, hint="capped_in")
        scores = e.op("TANH", scores, hint="capped_tanh")
        scores = e.op("MUL", scores, cap, hint="capped")
    if ctx.has_input(10):  # attention_bias (B or 1, N or 1, S, total_sequence_length)
        if ctx.shape(10)[-1] != length:
            ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE,
                f"attention_bias width {ctx.shape(10)[-1]} != present length {length}",
            )
        scores = e.op("ADD", scores, ctx.input(10), hint="biased")
    lowest = e.const(np.finfo(np.float32).min, hint="lowest")
    scores = e.op("SELECT_V2", keep, scores, lowest, hint="masked")
    probs = _gqa_softmax(ctx, scores)
    pg = e.reshape(probs, (b, kv_heads, group * s, length), "probs_grouped")
    y = e.matmul(pg, v_all, hint="context_grouped")
    y = e.reshape(y, (b, heads, s, head), "context")
    _merge_heads(ctx, y, ctx.output(0))
