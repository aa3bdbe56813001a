"""LinearAttention (opset 27) and ai.onnx.preview FlexAttention as compositions of builtins.

LinearAttention is a recurrence over time steps. With a static sequence length it unrolls
exactly into per-step BATCH_MATMUL/MUL/ADD on the [B, H_kv, d_k, d_v] state, in the reference's
operation order. The packed [B, T, H*D] inputs are split along T and reshaped per step, so no
TRANSPOSE is needed; query heads of one KV group are folded into the row axis of the read
BATCH_MATMUL (GQA without repeating the state). Float16 is computed in float32 like the
reference does, then cast back.

FlexAttention is scaled-dot-product attention whose ``score_mod``/``prob_mod`` subgraphs are
inlined when they are elementwise: nodes that only read constants (Shape of the static scores,
Range, Reshape ...) are folded with onnx's reference evaluator, nodes reading the scores must
be in a small elementwise table; anything else is refused.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from .. import errors
from ..policies import onnx_order
from ..registry import lowering
from .emit import Emitter

F32_F16 = ("float32", "float16")
RULES = ("linear", "gated", "delta", "gated_delta")


def _dtype_name(graph, name) -> str:
    return np.dtype(graph.values[name].dtype).name


def _linear_attention_check(node, graph):
    rule = node.attrs.get("update_rule", "gated_delta")
    if rule not in RULES:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: update_rule={rule!r}"
    hq, hkv = node.attrs.get("q_num_heads", 0), node.attrs.get("kv_num_heads", 0)
    if hq <= 0 or hkv <= 0 or hq % hkv:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: q_num_heads={hq}, kv_num_heads={hkv}"
    present = [i for i, name in enumerate(node.inputs) if name]
    gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if (4 in present) != gating or (5 in present) != delta:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: decay/beta inputs do not match {rule!r}"
    for i in present:
        dt = _dtype_name(graph, node.inputs[i])
        if dt not in F32_F16:
            return f"{errors.UNSUPPORTED_DTYPE}: input {i} dtype {dt} (float32/float16 only)"
    for i in (0, 1, 2, 4, 5):
        if i in present and graph.values[node.inputs[i]].rank != 3:
            return f"{errors.UNSUPPORTED_RANK}: input {i} must be rank 3"
    return None


def _steps(ctx, i, per_step_shape, hint):
    """Input ``i`` ([B, T, X], as float32) split along T, each step reshaped to a 4-D shape."""
    e = Emitter(ctx)
    x = e.cast(ctx.input(i), np.float32, f"{hint}_f32")
    if hint == "decay":
        x = e.op("EXP", x, hint="decay_exp")
    t = x.shape[1]
    parts = [x] if t == 1 else e.split(x, [1] * t, 1, hint)
    return [e.reshape(p, per_step_shape, f"{hint}{s}") for s, p in enumerate(parts)]


def _emit_result(ctx, i, value):
    """Write ``value`` (float32) into output ``i``, casting to the output's dtype."""
    e = Emitter(ctx)
    out = ctx.output(i)
    if np.dtype(out.dtype) == np.float32:
        e.reshape(value, value.shape, out=out)
    else:
        e.op("CAST", value, dtype=out.dtype, hint="t", out=out)


@lowering(
    "LinearAttention",
    onnx_order,
    since=27,
    dtypes=F32_F16,
    dtype_inputs=(0, 1, 2),
    tflite_ops=("SPLIT_V", "RESHAPE", "BATCH_MATMUL", "MUL", "ADD", "SUB", "EXP", "CAST"),
    notes="static T unrolled exactly; all update rules, GQA/MQA, past state, per-head or "
    "per-key decay, scalar or per-head beta; float16 computed in float32",
    extra_check=_linear_attention_check,
)
def lower_linear_attention(ctx):
    e = Emitter(ctx)
    hq, hkv = int(ctx.attr("q_num_heads")), int(ctx.attr("kv_num_heads"))
    batch, steps, q_width = ctx.shape(0)
    dk = q_width // hq
    dv = ctx.shape(2)[2] // hkv
    group = hq // hkv
    if ctx.shape(1)[2] != hkv * dk or q_width != hq * dk or ctx.shape(2)[2] != hkv * dv:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "Q/K/V widths do not match the heads")
    scale = float(ctx.attr("scale", 0.0) or 0.0)
    scale = float(1.0 / np.sqrt(dk)) if scale == 0.0 else scale

    q = _steps(ctx, 0, (batch, hkv, group, dk), "q")
    k_row = _steps(ctx, 1, (batch, hkv, 1, dk), "k")
    k_col = [e.reshape(k, (batch, hkv, dk, 1), "k_col") for k in k_row]
    v = _steps(ctx, 2, (batch, hkv, 1, dv), "v")
    decay = beta = None
    if ctx.has_input(4):
        width = ctx.shape(4)[2]
        if width not in (hkv, hkv * dk):
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"decay width {width}")
        decay = _steps(ctx, 4, (batch, hkv, width // hkv, 1), "decay")
    if ctx.has_input(5):
        width = ctx.shape(5)[2]
        if width not in (hkv, 1):
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"beta width {width}")
        beta = _steps(ctx, 5, (batch, width, 1, 1), "beta")

    if ctx.has_input(3):
        if ctx.shape(3) != (batch, hkv, dk, dv):
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"past_state shape {ctx.shape(3)}")
        state = e.cast(ctx.input(3), np.float32, "past_f32")
    else:
        # A real zero state (not a skipped first step): exp(g) * 0 keeps the reference's NaNs.
        state = e.const(np.zeros((batch, hkv, dk, dv)), hint="zero_state")
    scale_c = e.const(scale, hint="scale")
    outs = []
    for t in range(steps):
        if decay is not None:
            state = e.op("MUL", state, decay[t], hint=f"decayed{t}")
        v_t = v[t]
        if beta is not None:
            retrieved = e.matmul(k_row[t], state, hint=f"retrieved{t}")
            v_t = e.op("SUB", v_t, retrieved, hint=f"residual{t}")
            v_t = e.op("MUL", beta[t], v_t, hint=f"delta{t}")
        write = e.op("MUL", k_col[t], v_t, hint=f"write{t}")
        state = e.op("ADD", state, write, hint=f"state{t}")
        read = e.matmul(q[t], state, hint=f"read{t}")
        read = e.op("MUL", scale_c, read, hint=f"out{t}")
        outs.append(e.reshape(read, (batch, 1, hq * dv), f"out_row{t}"))
    y = outs[0] if steps == 1 else e.concat(outs, 1, "y")
    _emit_result(ctx, 0, y)
    if len(ctx.node.outputs) > 1 and ctx.node.outputs[1]:
        _emit_result(ctx, 1, state)


# ---------------------------------------------------------------------------------------------
# FlexAttention
# ---------------------------------------------------------------------------------------------

# Elementwise ONNX ops a modifier subgraph may apply to the scores/probs tensor.
MOD_UNARY = {
    "Neg": "NEG",
    "Exp": "EXP",
    "Tanh": "TANH",
    "Sigmoid": "LOGISTIC",
    "Relu": "RELU",
    "Abs": "ABS",
    "Sqrt": "SQRT",
    "Log": "LOG",
}
MOD_BINARY = {
    "Add": "ADD",
    "Sub": "SUB",
    "Mul": "MUL",
    "Div": "DIV",
    "Max": "MAXIMUM",
    "Min": "MINIMUM",
}


class _Unsupported(Exception):
    pass


def _fold_node(node: onnx.NodeProto, consts: dict, scores_shape) -> list[np.ndarray]:
    """Evaluate a node whose inputs are constants; ``scores_shape``: Shape of a static tensor."""
    if node.op_type == "Shape" and scores_shape is not None:
        attrs = {a.name: a.i for a in node.attribute}
        dims = np.array(scores_shape, np.int64)
        return [dims[attrs.get("start", 0) : attrs.get("end", len(dims))]]
    feeds = {name: consts[name] for name in node.input if name}
    try:
        return list(ReferenceEvaluator(node).run(None, feeds))
    except Exception as exc:  # the reference rejects it: not foldable, so not inlinable
        raise _Unsupported(f"cannot fold {node.op_type}: {exc}") from exc


def _inline_mod(ctx, graph: onnx.GraphProto, x, hint: str):
    """Emit the elementwise subgraph ``graph`` applied to the float32 tensor ``x``."""
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise _Unsupported("modifier must have one input and one output")
    tensors = {graph.input[0].name: x}
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise _Unsupported(f"{node.domain}.{node.op_type}")
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            raise _Unsupported(f"nested subgraph in {node.op_type}")
        names = [n for n in node.input if n]
        unknown = [n for n in names if n not in tensors and n not in consts]
        if unknown:
            raise _Unsupported(f"outer-scope name {unknown[0]!r}")
        if all(n in consts for n in names) or node.op_type == "Shape":
            static = (
                tensors[names[0]].shape if node.op_type == "Shape" and names[0] in tensors else None
            )
            for name, val in zip(node.output, _fold_node(node, consts, static), strict=False):
                consts[name] = np.asarray(val)
            continue
        tensors[node.output[0]] = _emit_mod_node(ctx, node, tensors, consts, hint)
    out = graph.output[0].name
    if out not in tensors:
        raise _Unsupported("modifier output does not depend on its input")
    y = tensors[out]
    if tuple(y.shape) != tuple(x.shape) or np.dtype(y.dtype) != np.float32:
        raise _Unsupported("modifier changes the shape or dtype")
    return y


def _emit_mod_node(ctx, node, tensors, consts, hint):
    e = Emitter(ctx)

    def operand(name, dtype=np.float32):
        if name in tensors:
            return tensors[name]
        value = consts[name]
        if np.dtype(value.dtype) != np.dtype(dtype):
            raise _Unsupported(f"{node.op_type} operand {name!r} is {value.dtype}")
        return e.const(value, dtype, f"{hint}_const")

    op = node.op_type
    if op == "Identity":
        return tensors[node.input[0]]
    if op in MOD_UNARY:
        x = operand(node.input[0])
        return e.op(MOD_UNARY[op], x, hint=f"{hint}_{op}")
    if op in MOD_BINARY and len(node.input) == 2:
        a, b = operand(node.input[0]), operand(node.input[1])
        return e.op(MOD_BINARY[op], a, b, hint=f"{hint}_{op}")
    if op == "Where":
        cond = operand(node.input[0], np.bool_)
        a, b = operand(node.input[1]), operand(node.input[2])
        return e.op("SELECT_V2", cond, a, b, hint=f"{hint}_where")
    raise _Unsupported(f"{op} applied to the scores")


def _flex_check(node, graph):
    for i in range(3):
        dt = _dtype_name(graph, node.inputs[i])
        if dt not in F32_F16:
            return f"{errors.UNSUPPORTED_DTYPE}: input {i} dtype {dt} (float32/float16 only)"
        if graph.values[node.inputs[i]].rank != 4:
            return f"{errors.UNSUPPORTED_RANK}: input {i} must be rank 4"
    precision = node.attrs.get("softmax_precision")
    if precision not in (None, onnx.TensorProto.FLOAT):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: softmax_precision={precision}"
    return None


def _apply_mod(ctx, name: str, x):
    graph = ctx.attr(name)
    if graph is None:
        return x
    try:
        return _inline_mod(ctx, graph, x, name)
    except _Unsupported as exc:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"{name} not inlinable: {exc}")


def _round_trip_f16(ctx, x, hint):
    """Round a float32 tensor to float16 precision (the reference computes this in float16)."""
    e = Emitter(ctx)
    return e.cast(e.cast(x, np.float16, f"{hint}_f16"), np.float32, f"{hint}_f32")


@lowering(
    "FlexAttention",
    onnx_order,
    domain="ai.onnx.preview",
    since=1,
    dtypes=F32_F16,
    dtype_inputs=(0, 1, 2),
    tflite_ops=("BATCH_MATMUL", "SOFTMAX", "MUL", "CAST"),
    notes="GQA; score_mod/prob_mod inlined when elementwise (Add/Sub/Mul/Div/Max/Min/Where/"
    "Tanh/Exp/... on the scores, constant-foldable index math); float64 refused",
    extra_check=_flex_check,
)
def lower_flex_attention(ctx):
    e = Emitter(ctx)
    half = np.dtype(ctx.value(0).dtype) == np.float16
    batch, hq, q_len, head = ctx.shape(0)
    hkv, kv_len = ctx.shape(1)[1], ctx.shape(1)[2]
    dv = ctx.shape(2)[3]
    if hq % hkv:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"q heads {hq} not a multiple of {hkv}")
    scale = ctx.attr("scale", None)
    scale = 1.0 / np.sqrt(head) if scale is None else scale
    root = np.sqrt(np.float32(scale))
    if half:
        root = np.float16(root)
    root = e.const(np.float32(root), hint="sqrt_scale")
    q = e.op("MUL", e.cast(ctx.input(0), np.float32, "q_f32"), root, hint="q_scaled")
    k = e.op("MUL", e.cast(ctx.input(1), np.float32, "k_f32"), root, hint="k_scaled")
    if half:
        q, k = _round_trip_f16(ctx, q, "q_scaled"), _round_trip_f16(ctx, k, "k_scaled")
    group = hq // hkv
    qg = e.reshape(q, (batch, hkv, group * q_len, head), "q_grouped")
    scores = e.matmul(qg, k, adj_y=True, hint="scores_grouped")
    scores = e.reshape(scores, (batch, hq, q_len, kv_len), "scores")
    if half:
        scores = _round_trip_f16(ctx, scores, "scores")
    scores = _apply_mod(ctx, "score_mod", scores)
    probs = e.op("SOFTMAX", scores, hint="probs", beta=1.0)
    probs = _apply_mod(ctx, "prob_mod", probs)
    pg = e.reshape(probs, (batch, hkv, group * q_len, kv_len), "probs_grouped")
    v = e.cast(ctx.input(2), np.float32, "v_f32")
    y = e.matmul(pg, v, hint="y_grouped")
    y = e.reshape(y, (batch, hq, q_len, dv), "y")
    _emit_result(ctx, 0, y)
