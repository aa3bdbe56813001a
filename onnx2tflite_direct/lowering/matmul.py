"""Gemm and MatMul -> FULLY_CONNECTED (constant weights) or BATCH_MATMUL.

A flattened channel-last feature map (an *inner* layout) is consumed by permuting the
constant weight's input columns, so no TRANSPOSE is needed in front of the classifier.
"""

from __future__ import annotations

import numpy as np

from ..policies import onnx_order
from ..registry import lowering


def _inner_ok_gemm(node, idx, graph):
    return (
        idx == 0
        and not node.attrs.get("transA", 0)
        and len(node.inputs) > 1
        and graph.values[node.inputs[1]].is_constant
    )


def _gemm_policy(node, ins, graph, drv=None):
    req, outs = onnx_order(node, ins, graph, drv)
    if ins and ins[0] is not None and ins[0].inner is not None and _inner_ok_gemm(node, 0, graph):
        req[0] = ins[0]
    return req, outs


_gemm_policy.hint = "onnx"


def _fc(ctx, x, weight_out_in: np.ndarray, bias: np.ndarray | None, out, keep_num_dims=False):
    lay = ctx.in_layout(0)
    if lay.inner is not None:
        weight_out_in = weight_out_in[:, lay.inner.element_order()]
    inputs = [x, ctx.const_tensor(np.ascontiguousarray(weight_out_in, dtype=np.float32), "weights")]
    inputs.append(ctx.const_tensor(bias.astype(np.float32), "bias") if bias is not None else None)
    ctx.emit(
        "FULLY_CONNECTED",
        inputs,
        [out],
        fused_activation_function="NONE",
        keep_num_dims=keep_num_dims,
    )


@lowering(
    "Gemm",
    _gemm_policy,
    dtype_inputs=(0, 1),
    const_inputs=(1,),
    tflite_ops=("FULLY_CONNECTED", "ADD", "TRANSPOSE"),
    notes="B constant; bias folded into FULLY_CONNECTED when broadcastable over rows",
    accepts_inner=_inner_ok_gemm,
)
def lower_gemm(ctx):
    alpha = float(ctx.attr("alpha", 1.0))
    beta = float(ctx.attr("beta", 1.0))
    b = ctx.const(1).astype(np.float64)
    w = b if ctx.attr("transB", 0) else b.T  # [N, K]
    w = w * alpha
    x = ctx.input(0)
    if ctx.attr("transA", 0):
        m, k = ctx.shape(0)[1], ctx.shape(0)[0]
        xt = ctx.temp(np.float32, (m, k), "a_t")
        ctx.emit("TRANSPOSE", [x, ctx.const_tensor(np.array([1, 0], np.int32), "perm")], [xt])
        x = xt
    n_out = w.shape[0]
    c = ctx.const(2) if ctx.has_input(2) else None
    if ctx.has_input(2) and c is None:
        mid = ctx.temp(np.float32, ctx.output(0).shape, "matmul")
        _fc(ctx, x, w, None, mid)
        scaled = ctx.input(2)
        if beta != 1.0:
            tmp = ctx.temp(np.float32, tuple(scaled.shape), "beta_c")
            ctx.emit("MUL", [scaled, ctx.const_tensor(np.array(beta, np.float32), "beta")], [tmp], fused_activation_function="NONE")
            scaled = tmp
        ctx.emit("ADD", [mid, scaled], [ctx.output(0)], fused_activation_function="NONE")
        return
    bias = None
    if c is not None:
        c = c.astype(np.float64) * beta
        if c.size == 1 or (c.ndim >= 1 and c.shape[-1] == n_out and c.size == n_out):
            bias = np.broadcast_to(c.reshape(-1), (n_out,)).copy()
        else:
            mid = ctx.temp(np.float32, ctx.output(0).shape, "matmul")
            _fc(ctx, x, w, None, mid)
            full = np.broadcast_to(c, ctx.out_shape(0)).astype(np.float32)
            ctx.emit("ADD", [mid, ctx.const_tensor(full, "c")], [ctx.output(0)], fused_activation_function="NONE")
            return
    _fc(ctx, x, w, bias, ctx.output(0))


def _matmul_check(node, graph):
    a, b = graph.values[node.inputs[0]], graph.values[node.inputs[1]]
    if a.rank < 2 or b.rank < 2:
        return "unsupported_rank: 1-D MatMul operands are not supported yet"
    return None


def _inner_ok_matmul(node, idx, graph):
    b = graph.values[node.inputs[1]]
    return idx == 0 and b.is_constant and b.rank == 2 and graph.values[node.inputs[0]].rank == 2


def _matmul_policy(node, ins, graph, drv=None):
    req, outs = onnx_order(node, ins, graph, drv)
    if ins and ins[0] is not None and ins[0].inner is not None and _inner_ok_matmul(node, 0, graph):
        req[0] = ins[0]
    return req, outs


_matmul_policy.hint = "onnx"


@lowering(
    "MatMul",
    _matmul_policy,
    dtype_inputs=(0, 1),
    tflite_ops=("FULLY_CONNECTED", "BATCH_MATMUL"),
    notes="constant 2-D B -> FULLY_CONNECTED; otherwise BATCH_MATMUL with broadcasting",
    accepts_inner=_inner_ok_matmul,
    extra_check=_matmul_check,
)
def lower_matmul(ctx):
    b = ctx.const(1)
    x = ctx.input(0)
    if b is not None and b.ndim == 2:
        _fc(ctx, x, b.T.astype(np.float32), None, ctx.output(0), keep_num_dims=len(ctx.shape(0)) > 2)
        return
    ctx.emit("BATCH_MATMUL", [x, ctx.input(1)], [ctx.output(0)], adj_x=False, adj_y=False)
