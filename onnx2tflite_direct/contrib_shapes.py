"""Shape contracts of the onnxruntime contrib ops we lower: per op its formal inputs,
outputs, attributes (with onnx attribute types) and a Python type-and-shape inference function
written from onnxruntime's contrib-op documentation and CPU kernels. Data for
:mod:`.contrib_schemas`, which turns each entry into an onnx ``OpSchema`` and registers it while
the front end infers shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import onnx
from onnx import helper

MS = "com.microsoft"
_FLOAT = onnx.TensorProto.FLOAT
_INT32 = onnx.TensorProto.INT32

# ---- helpers over the inference context ------------------------------------------------------


def _has(ctx, i: int) -> bool:
    return i < ctx.get_num_inputs() and ctx.has_input(i)


def _elem(ctx, i: int) -> int:
    return ctx.get_input_type(i).tensor_type.elem_type if _has(ctx, i) else 0


def _dims(ctx, i: int) -> list | None:
    """Input ``i``'s dims: int, str (symbolic) or None (unknown); None for unknown rank."""
    if not _has(ctx, i):
        return None
    tt = ctx.get_input_type(i).tensor_type
    if not tt.HasField("shape"):
        return None
    out = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _attr(ctx, name: str, default=None):
    a = ctx.get_attribute(name)
    return default if a is None else helper.get_attribute_value(a)


def _set(ctx, i: int, elem: int, dims: list | None) -> None:
    if i >= ctx.get_num_outputs() or not ctx.has_output(i) or not elem:
        return
    t = helper.make_tensor_type_proto(elem, None if dims is None else list(dims))
    ctx.set_output_type(i, t)


def _add(a, b):
    return a + b if isinstance(a, int) and isinstance(b, int) else None


def _mul(a, b):
    return a * b if isinstance(a, int) and isinstance(b, int) else None


def _div(a, b):
    return a // b if isinstance(a, int) and isinstance(b, int) and b else None


def _broadcast(a: list, b: list) -> list:
    rank = max(len(a), len(b))
    a = [1] * (rank - len(a)) + list(a)
    b = [1] * (rank - len(b)) + list(b)
    out = []
    for x, y in zip(a, b, strict=True):
        out.append(y if x == 1 else x if y == 1 else x if x == y else x if y is None else x)
    return out


def _const_int(ctx, i: int) -> int | None:
    if not _has(ctx, i):
        return None
    data = ctx.get_input_data(i)
    if data is None:
        return None
    arr = onnx.numpy_helper.to_array(data)
    return int(arr.reshape(-1)[0]) if arr.size else None


# ---- shape functions ---------------------------------------------------------------------------


def _same_as_input(ctx) -> None:
    _set(ctx, 0, _elem(ctx, 0), _dims(ctx, 0))


def _matmul_dims(a: list, b: list) -> list:
    a1, b1 = len(a) == 1, len(b) == 1
    a = [1, *a] if a1 else a
    b = [*b, 1] if b1 else b
    out = _broadcast(a[:-2], b[:-2]) + [a[-2], b[-1]]
    if a1:
        out.pop(-2)
    if b1:
        out.pop(-1)
    return out


def _fused_matmul(ctx) -> None:
    a, b = _dims(ctx, 0), _dims(ctx, 1)
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        _set(ctx, 0, _elem(ctx, 0), None)
        return
    a, b = _fused_matmul_operand(ctx, a, "A"), _fused_matmul_operand(ctx, b, "B")
    _set(ctx, 0, _elem(ctx, 0), _matmul_dims(a, b))


def _fused_matmul_operand(ctx, dims: list, which: str) -> list:
    """The operand's shape as the product sees it (transBatch moves the row axis first)."""
    if _attr(ctx, f"transBatch{which}", 0) and len(dims) > 2:
        dims = [*dims[1:-1], dims[0], dims[-1]]
    if _attr(ctx, f"trans{which}", 0):
        dims = [*dims[:-2], dims[-1], dims[-2]]
    return dims


def _fused_gemm(ctx) -> None:
    a, b = _dims(ctx, 0), _dims(ctx, 1)
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        _set(ctx, 0, _elem(ctx, 0), None)
        return
    m = a[1] if _attr(ctx, "transA", 0) else a[0]
    n = b[0] if _attr(ctx, "transB", 0) else b[1]
    _set(ctx, 0, _elem(ctx, 0), [m, n])


def _conv_spatial(ctx, spatial: list, kernel: list) -> list:
    n = len(spatial)
    strides = _attr(ctx, "strides", None) or [1] * n
    dilations = _attr(ctx, "dilations", None) or [1] * n
    pads = _attr(ctx, "pads", None) or [0] * (2 * n)
    auto = _attr(ctx, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    out = []
    for i in range(n):
        size, k = spatial[i], kernel[i]
        if not isinstance(size, int) or not isinstance(k, int):
            out.append(None)
            continue
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append(math.ceil(size / strides[i]))
            continue
        extent = (k - 1) * dilations[i] + 1
        total = 0 if auto == "VALID" else pads[i] + pads[i + n]
        out.append((size + total - extent) // strides[i] + 1)
    return out


def _conv(channels_last: bool) -> Callable:
    def infer(ctx) -> None:
        x, w = _dims(ctx, 0), _dims(ctx, 1)
        if x is None or w is None or len(x) < 3 or len(w) != len(x):
            _set(ctx, 0, _elem(ctx, 0), None)
            return
        spatial = x[1:-1] if channels_last else x[2:]
        kernel = _attr(ctx, "kernel_shape", None) or w[2:]
        sp = _conv_spatial(ctx, spatial, list(kernel))
        dims = [x[0], *sp, w[0]] if channels_last else [x[0], w[0], *sp]
        _set(ctx, 0, _elem(ctx, 0), dims)

    return infer


def _stats_dims(x: list | None, axis: int) -> list | None:
    if x is None:
        return None
    axis = axis % len(x) if x else 0
    return [*x[:axis], *[1] * (len(x) - axis)]


def _layer_norm(simplified: bool) -> Callable:
    """Y like X; Mean / InvStdDev with the normalized axes kept as 1 (float32 by stash_type)."""

    def infer(ctx) -> None:
        x = _dims(ctx, 0)
        _set(ctx, 0, _elem(ctx, 0), x)
        stats = _stats_dims(x, int(_attr(ctx, "axis", -1)))
        stash = int(_attr(ctx, "stash_type", 1))
        stat_elem = _FLOAT if stash == 1 else _elem(ctx, 0)
        for i in (1,) if simplified else (1, 2):
            _set(ctx, i, stat_elem, stats)

    return infer


def _skip_layer_norm(ctx) -> None:
    x = _dims(ctx, 0)
    _set(ctx, 0, _elem(ctx, 0), x)
    stats = _stats_dims(x, -1)
    _set(ctx, 1, _FLOAT, stats)
    _set(ctx, 2, _FLOAT, stats)
    _set(ctx, 3, _elem(ctx, 0), x)


def _embed_layer_norm(ctx) -> None:
    ids, word = _dims(ctx, 0), _dims(ctx, 2)
    if ids is None or word is None or len(ids) != 2 or len(word) != 2:
        return
    out = [ids[0], ids[1], word[1]]
    _set(ctx, 0, _elem(ctx, 2), out)
    _set(ctx, 1, _INT32, [ids[0]])
    _set(ctx, 2, _elem(ctx, 2), out)


def _attention(ctx) -> None:
    """com.microsoft.Attention: output (B, S, v_hidden); present (2, B, N, P + L, H)."""
    x, w = _dims(ctx, 0), _dims(ctx, 1)
    if x is None or w is None or len(x) != 3 or len(w) != 2:
        return
    sizes = _attr(ctx, "qkv_hidden_sizes", None)
    heads = int(_attr(ctx, "num_heads", 1))
    if sizes:
        qk_hidden, v_hidden = int(sizes[0]), int(sizes[2])
    else:
        v_hidden = _div(w[1], 3)
        qk_hidden = v_hidden
    _set(ctx, 0, _elem(ctx, 0), [x[0], x[1], v_hidden])
    past = _dims(ctx, 4)
    past_len = past[3] if past is not None and len(past) == 5 else 0
    if _attr(ctx, "past_present_share_buffer", 0) and past is not None:
        total = past_len
    else:
        total = _add(past_len, x[1])
    _set(ctx, 1, _elem(ctx, 0), [2, x[0], heads, total, _div(qk_hidden, heads)])


def _mha(ctx) -> None:
    """com.microsoft.MultiHeadAttention: output (B, S, v_hidden); present K/V (B, N, T, H)."""
    q, k, v = _dims(ctx, 0), _dims(ctx, 1), _dims(ctx, 2)
    heads = int(_attr(ctx, "num_heads", 1))
    if q is None:
        return
    elem = _elem(ctx, 0)
    if len(q) == 5:  # packed QKV (B, L, N, 3, H)
        b, s, h = q[0], q[1], q[4]
        kv_len, v_hidden, kv_is_past = s, _mul(heads, h), False
    elif len(q) == 3:
        b, s = q[0], q[1]
        if k is not None and len(k) == 5:  # packed KV (B, L, N, 2, H)
            kv_len, h, kv_is_past = k[1], k[4], False
            v_hidden = _mul(heads, h)
        elif k is not None and len(k) == 4:  # key/value are already (B, N, L, H) states
            kv_len, h, kv_is_past = k[2], k[3], True
            v_hidden = _mul(heads, v[3]) if v is not None and len(v) == 4 else None
        elif k is not None and len(k) == 3:
            kv_len, h, kv_is_past = k[1], _div(q[2], heads), False
            v_hidden = v[2] if v is not None and len(v) == 3 else None
        else:
            return
    else:
        return
    _set(ctx, 0, elem, [b, s, v_hidden])
    past = _dims(ctx, 6)
    past_len = past[2] if past is not None and len(past) == 4 and not kv_is_past else 0
    total = _add(past_len, kv_len)
    v_head = _div(v_hidden, heads)
    _set(ctx, 1, elem, [b, heads, total, h])
    _set(ctx, 2, elem, [b, heads, total, v_head])
    _set(ctx, 3, elem, [b, heads, s, total])


def _gqa(ctx) -> None:
    """GroupQueryAttention: output (B, S, N * H); present K/V (B, N_kv, max(P, T), H)."""
    q = _dims(ctx, 0)
    if q is None or len(q) != 3:
        return
    heads, kv_heads = int(_attr(ctx, "num_heads", 1)), int(_attr(ctx, "kv_num_heads", 1))
    if _has(ctx, 1):
        head = _div(q[2], heads)
    else:
        head = _div(q[2], heads + 2 * kv_heads)
    elem = _elem(ctx, 0)
    _set(ctx, 0, elem, [q[0], q[1], _mul(heads, head)])
    past = _dims(ctx, 3)
    total = _const_int(ctx, 6)
    past_len = past[2] if past is not None and len(past) == 4 else None
    if past_len is None and not _has(ctx, 3):
        past_len = 0
    present = None
    if isinstance(total, int) and isinstance(past_len, int):
        present = max(total, past_len)
    elif past_len == 0:
        present = q[1]
    _set(ctx, 1, _elem(ctx, 3) or elem, [q[0], kv_heads, present, head])
    _set(ctx, 2, _elem(ctx, 3) or elem, [q[0], kv_heads, present, head])


def _dynamic_matmul(ctx) -> None:
    a, b = _dims(ctx, 0), _dims(ctx, 1)
    out = _matmul_dims(a, b) if a is not None and b is not None else None
    scale = 2 if ctx.get_num_inputs() > 2 and _elem(ctx, 2) else None
    elem = _elem(ctx, scale) if scale is not None else _FLOAT
    _set(ctx, 0, elem, out)


def _dynamic_quantize_lstm(ctx) -> None:
    """Y (seq, dirs, batch, hidden); Y_h, Y_c (dirs, batch, hidden)."""
    x = _dims(ctx, 0)
    if x is None or len(x) != 3:
        return
    direction = _attr(ctx, "direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = 2 if direction == "bidirectional" else 1
    hidden = _attr(ctx, "hidden_size", None)
    elem = _elem(ctx, 0)
    _set(ctx, 0, elem, [x[0], dirs, x[1], hidden])
    _set(ctx, 1, elem, [dirs, x[1], hidden])
    _set(ctx, 2, elem, [dirs, x[1], hidden])


def _broadcast_inputs(a: int, b: int) -> Callable:
    def infer(ctx) -> None:
        x, y = _dims(ctx, a), _dims(ctx, b)
        _set(ctx, 0, _elem(ctx, a), _broadcast(x, y) if x is not None and y is not None else None)

    return infer


def _qattention(ctx) -> None:
    """QAttention: com.microsoft Attention's shapes with a float output (the bias's type)."""
    x, w = _dims(ctx, 0), _dims(ctx, 1)
    if x is None or w is None or len(x) != 3 or len(w) != 2:
        return
    heads = int(_attr(ctx, "num_heads", 1))
    hidden = _div(w[1], 3)
    elem = _elem(ctx, 2) or _FLOAT
    _set(ctx, 0, elem, [x[0], x[1], hidden])
    past = _dims(ctx, 8)
    past_len = past[3] if past is not None and len(past) == 5 else 0
    _set(ctx, 1, elem, [2, x[0], heads, _add(past_len, x[1]), _div(hidden, heads)])


def _qembed_layer_norm(ctx) -> None:
    ids, word = _dims(ctx, 0), _dims(ctx, 2)
    if ids is None or word is None or len(ids) != 2 or len(word) != 2:
        return
    _set(ctx, 0, _elem(ctx, 8) or _FLOAT, [ids[0], ids[1], word[1]])
    _set(ctx, 1, _INT32, [ids[0]])


def _qgemm(ctx) -> None:
    a, b = _dims(ctx, 0), _dims(ctx, 3)
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return
    m = a[1] if _attr(ctx, "transA", 0) else a[0]
    n = b[0] if _attr(ctx, "transB", 0) else b[1]
    quantized = ctx.get_num_inputs() > 7 and ctx.has_input(7)
    _set(ctx, 0, _elem(ctx, 8) or _elem(ctx, 0) if quantized else _FLOAT, [m, n])


def _qlinear_average_pool(ctx) -> None:
    """NCHW average pool output (ceil_mode as onnxruntime: the last window must start inside
    the input or its left padding)."""
    x = _dims(ctx, 0)
    kernel = _attr(ctx, "kernel_shape", None)
    if x is None or kernel is None or len(x) < 3 or any(not isinstance(d, int) for d in x[2:]):
        return
    n = len(x) - 2
    strides = _attr(ctx, "strides", None) or [1] * n
    pads = _attr(ctx, "pads", None) or [0] * (2 * n)
    auto = _attr(ctx, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    ceil = bool(_attr(ctx, "ceil_mode", 0))
    out = []
    for i in range(n):
        size, k, s = x[2 + i], kernel[i], strides[i]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append(math.ceil(size / s))
        elif auto == "VALID":
            out.append((size - k) // s + 1)
        else:
            span = size + pads[i] + pads[i + n] - k
            o = (math.ceil(span / s) if ceil else span // s) + 1
            if ceil and (o - 1) * s >= size + pads[i]:
                o -= 1
            out.append(o)
    _set(ctx, 0, _elem(ctx, 0), [x[0], x[1], *out])


def _qlinear_gap(ctx) -> None:
    x = _dims(ctx, 0)
    if x is not None and len(x) >= 3:
        _set(ctx, 0, _elem(ctx, 0), [x[0], x[1], *[1] * (len(x) - 2)])


def _qlinear_concat(ctx) -> None:
    shapes = [_dims(ctx, i) for i in range(2, ctx.get_num_inputs(), 3)]
    if not shapes or any(s is None for s in shapes):
        return
    axis = int(_attr(ctx, "axis", 0)) % len(shapes[0])
    out = list(shapes[0])
    sizes = [s[axis] for s in shapes]
    out[axis] = sum(sizes) if all(isinstance(v, int) for v in sizes) else None
    _set(ctx, 0, _elem(ctx, 2), out)


def _matmul_integer_to_float(ctx) -> None:
    a, b = _dims(ctx, 0), _dims(ctx, 1)
    out = _matmul_dims(a, b) if a is not None and b is not None else None
    _set(ctx, 0, _elem(ctx, 2) or _FLOAT, out)


# ---- the table ---------------------------------------------------------------------------------

ATTR_TYPES = {
    "alpha": "f",
    "axis": "i",
    "is_inner_broadcast": "i",
    "transA": "i",
    "transB": "i",
    "transBatchA": "i",
    "transBatchB": "i",
    "activation": "s",
    "activation_alpha": "f",
    "activation_beta": "f",
    "activation_gamma": "f",
    "beta": "f",
    "activation_params": "fs",
    "auto_pad": "s",
    "dilations": "is",
    "group": "i",
    "kernel_shape": "is",
    "pads": "is",
    "strides": "is",
    "epsilon": "f",
    "stash_type": "i",
    "mask_index_type": "i",
    "do_rotary": "i",
    "mask_filter_value": "f",
    "num_heads": "i",
    "past_present_share_buffer": "i",
    "qkv_hidden_sizes": "is",
    "rotary_embedding_dim": "i",
    "scale": "f",
    "unidirectional": "i",
    "interleaved": "i",
    "is_packed_batching": "i",
    "causal": "i",
    "k_quant_type": "s",
    "kv_cache_bit_width": "i",
    "kv_num_heads": "i",
    "local_window_size": "i",
    "qk_norm_epsilon": "f",
    "qk_output": "i",
    "rotary_interleaved": "i",
    "sliding_window_cache": "i",
    "smooth_softmax": "i",
    "softcap": "f",
    "v_quant_type": "s",
    "activations": "ss",
    "clip": "f",
    "direction": "s",
    "hidden_size": "i",
    "input_forget": "i",
    "channels_last": "i",
    "opset": "i",
    "ceil_mode": "i",
    "count_include_pad": "i",
}

# op -> (domain, since, inputs ("name" or "name?" for optional), outputs, attributes, shape fn)
_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _names(text: str) -> list[str]:
    return text.split()


SCHEMAS: dict[tuple[str, str], tuple] = {
    (MS, "Gelu"): (1, ["X"], ["Y"], (), _same_as_input),
    (MS, "FastGelu"): (1, ["X", "bias?"], ["Y"], (), _same_as_input),
    (MS, "BiasGelu"): (1, ["A", "B"], ["C"], (), _same_as_input),
    (MS, "QuickGelu"): (1, ["X"], ["Y"], ("alpha",), _same_as_input),
    (MS, "BiasAdd"): (1, ["X", "bias", "skip"], ["Y"], (), _same_as_input),
    (MS, "BiasSoftmax"): (
        1,
        ["data", "bias"],
        ["output"],
        ("axis", "is_inner_broadcast"),
        _same_as_input,
    ),
    (MS, "FusedMatMul"): (
        1,
        ["A", "B"],
        ["Y"],
        ("alpha", "transA", "transB", "transBatchA", "transBatchB"),
        _fused_matmul,
    ),
    (MS, "FusedGemm"): (
        1,
        ["A", "B", "C?"],
        ["Y"],
        tuple(
            _names(
                "activation activation_alpha activation_beta activation_gamma alpha beta transA transB"
            )
        ),
        _fused_gemm,
    ),
    (MS, "FusedConv"): (
        1,
        ["X", "W", "B?", "Z?"],
        ["Y"],
        ("activation", "activation_params", *_CONV_ATTRS),
        _conv(False),
    ),
    (MS, "NhwcConv"): (1, ["X", "W", "B?"], ["Y"], _CONV_ATTRS, _conv(True)),
    ("", "LayerNormalization"): (
        1,
        ["X", "Scale", "B?"],
        ["Y", "Mean?", "InvStdDev?"],
        ("axis", "epsilon", "stash_type"),
        _layer_norm(False),
    ),
    ("", "SimplifiedLayerNormalization"): (
        1,
        ["X", "scale"],
        ["Y", "inv_std_var?"],
        ("axis", "epsilon", "stash_type"),
        _layer_norm(True),
    ),
    (MS, "SkipLayerNormalization"): (
        1,
        ["input", "skip", "gamma", "beta?", "bias?"],
        ["output", "mean?", "inv_std_var?", "input_skip_bias_sum?"],
        ("epsilon",),
        _skip_layer_norm,
    ),
    (MS, "SkipSimplifiedLayerNormalization"): (
        1,
        ["input", "skip", "gamma", "bias?"],
        ["output", "mean?", "inv_std_var?", "input_skip_bias_sum?"],
        ("epsilon",),
        _skip_layer_norm,
    ),
    (MS, "EmbedLayerNormalization"): (
        1,
        _names(
            "input_ids segment_ids? word_embedding position_embedding segment_embedding? gamma beta mask? position_ids?"
        ),
        ["output", "mask_index?", "embedding_sum?"],
        ("epsilon", "mask_index_type"),
        _embed_layer_norm,
    ),
    (MS, "Attention"): (
        1,
        _names("input weights bias? mask_index? past? attention_bias? past_sequence_length?"),
        ["output", "present?"],
        tuple(
            _names(
                "do_rotary mask_filter_value num_heads past_present_share_buffer qkv_hidden_sizes rotary_embedding_dim scale unidirectional"
            )
        ),
        _attention,
    ),
    (MS, "MultiHeadAttention"): (
        1,
        _names(
            "query key? value? bias? key_padding_mask? attention_bias? past_key? past_value? past_sequence_length? cache_indirection?"
        ),
        ["output", "present_key?", "present_value?", "qk?"],
        ("mask_filter_value", "num_heads", "scale", "unidirectional"),
        _mha,
    ),
    (MS, "RotaryEmbedding"): (
        1,
        ["input", "position_ids", "cos_cache", "sin_cache"],
        ["output"],
        ("interleaved", "is_packed_batching", "num_heads", "rotary_embedding_dim", "scale"),
        _same_as_input,
    ),
    (MS, "GroupQueryAttention"): (
        1,
        _names(
            "query key? value? past_key? past_value? seqlens_k total_sequence_length cos_cache? sin_cache? position_ids? attention_bias? head_sink? k_scale? v_scale? q_norm_weight? k_norm_weight?"
        ),
        ["output", "present_key?", "present_value?", "output_qk?"],
        tuple(
            _names(
                "causal do_rotary k_quant_type kv_cache_bit_width kv_num_heads local_window_size num_heads qk_norm_epsilon qk_output rotary_interleaved scale sliding_window_cache smooth_softmax softcap v_quant_type"
            )
        ),
        _gqa,
    ),
    (MS, "DynamicQuantizeMatMul"): (
        1,
        ["A", "B", "b_scale", "b_zero_point?", "bias?"],
        ["Y"],
        (),
        _dynamic_matmul,
    ),
    (MS, "DynamicQuantizeLSTM"): (
        1,
        _names(
            "X W R B? sequence_lens? initial_h? initial_c? P? W_scale W_zero_point R_scale R_zero_point"
        ),
        ["Y?", "Y_h?", "Y_c?"],
        tuple(
            _names(
                "activation_alpha:fs activation_beta:fs activations clip direction hidden_size input_forget"
            )
        ),
        _dynamic_quantize_lstm,
    ),
    (MS, "QLinearAdd"): (
        1,
        _names("A A_scale A_zero_point? B B_scale B_zero_point? C_scale C_zero_point?"),
        ["C"],
        (),
        _broadcast_inputs(0, 3),
    ),
    (MS, "QLinearMul"): (
        1,
        _names("A A_scale A_zero_point? B B_scale B_zero_point? C_scale C_zero_point?"),
        ["C"],
        (),
        _broadcast_inputs(0, 3),
    ),
    (MS, "QLinearGlobalAveragePool"): (
        1,
        ["X", "x_scale", "x_zero_point", "y_scale", "y_zero_point"],
        ["Y"],
        ("channels_last",),
        _qlinear_gap,
    ),
    (MS, "QGemm"): (
        1,
        _names("A a_scale a_zero_point B b_scale b_zero_point C? y_scale? y_zero_point?"),
        ["Y"],
        ("alpha", "transA", "transB"),
        _qgemm,
    ),
    (MS, "QAttention"): (
        1,
        _names(
            "input weight bias input_scale weight_scale mask_index? input_zero_point? weight_zero_point? past?"
        ),
        ["output", "present?"],
        tuple(
            _names(
                "do_rotary mask_filter_value num_heads past_present_share_buffer scale unidirectional"
            )
        ),
        _qattention,
    ),
    (MS, "QEmbedLayerNormalization"): (
        1,
        _names(
            "input_ids segment_ids? word_embedding_quant position_embedding_quant "
            "segment_embedding? gamma_quant beta_quant mask? word_embedding_scale "
            "position_embedding_scale segment_embedding_scale? gamma_scale beta_scale "
            "word_embedding_zero_point position_embedding_zero_point "
            "segment_embedding_zero_point? gamma_zero_point beta_zero_point"
        ),
        ["layernorm_out", "mask_index_out?"],
        ("epsilon",),
        _qembed_layer_norm,
    ),
    (MS, "QLinearConcat"): (
        1,
        ["Y_scale", "Y_zero_point", "inputs*"],
        ["Y"],
        ("axis",),
        _qlinear_concat,
    ),
    (MS, "QLinearAveragePool"): (
        1,
        ["X", "x_scale", "x_zero_point?", "y_scale", "y_zero_point?"],
        ["Y"],
        tuple(
            _names("auto_pad ceil_mode channels_last count_include_pad kernel_shape pads strides")
        ),
        _qlinear_average_pool,
    ),
    (MS, "QLinearSoftmax"): (
        1,
        ["X", "X_scale", "x_zero_point?", "y_scale", "y_zero_point"],
        ["Y"],
        ("axis", "opset"),
        _same_as_input,
    ),
    (MS, "QLinearSigmoid"): (
        1,
        ["X", "X_scale", "X_zero_point?", "Y_scale", "Y_zero_point?"],
        ["Y"],
        (),
        _same_as_input,
    ),
    (MS, "QLinearLeakyRelu"): (
        1,
        ["X", "X_scale", "X_zero_point?", "Y_scale", "Y_zero_point?"],
        ["Y"],
        ("alpha",),
        _same_as_input,
    ),
    (MS, "MatMulIntegerToFloat"): (
        1,
        ["A", "B", "a_scale", "b_scale", "a_zero_point?", "b_zero_point?", "bias?"],
        ["Y"],
        (),
        _matmul_integer_to_float,
    ),
}
