"""Gemm and MatMul -> FULLY_CONNECTED (constant weights) or BATCH_MATMUL (runtime weights).

A flattened channel-last feature map (an *inner* layout) is consumed by permuting the
constant weight's input columns, so no TRANSPOSE is needed in front of the classifier.
"""

from __future__ import annotations

import numpy as np

from .. import layout as L
from ..policies import onnx_order
from ..registry import lowering
from .conv_lattice import integer_dense, integer_product
from .emit import Emitter


def _inner_ok_gemm(node, idx, graph):
    return (
        idx == 0
        and not node.attrs.get("transA", 0)
        and len(node.inputs) > 1
        and graph.values[node.inputs[1]].is_constant
    )


def _inner_ok_matmul(node, idx, graph):
    b = graph.values[node.inputs[1]]
    return idx == 0 and b.is_constant and b.rank == 2 and graph.values[node.inputs[0]].rank == 2


def _accepting_inner(accepts):
    """ONNX order everywhere, except a flattened feature map the weights can absorb."""

    def policy(node, ins, graph, drv=None):
        req, outs = onnx_order(node, ins, graph, drv)
        if ins and ins[0] is not None and ins[0].inner is not None and accepts(node, 0, graph):
            req[0] = ins[0]
        return req, outs

    policy.hint = "onnx"
    return policy


def swapped(rank: int) -> L.Layout:
    """The layout storing the last two axes exchanged (a matrix stored transposed)."""
    return L.Layout((*range(rank - 2), rank - 1, rank - 2))


# Ops the transpose-cost lookahead follows when their other inputs are constants: they relabel,
# reshape or cut without touching values (a fused QKV projection is Split into q, k, v), or are
# elementwise with a constant (a bias, a scale), so the layout flows through them.
_FOLLOWED = {
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
    "Dropout",
    "Split",
    "Slice",
    "Add",
    "Sub",
    "Mul",
    "Div",
}
_LOOKAHEAD_DEPTH = 8


def _matmul_takes(node, idx: int, lay: L.Layout, graph) -> bool:
    """Can a MatMul read operand ``idx`` stored as ``lay`` without a TRANSPOSE? B (idx 1) also
    stored transposed, through BATCH_MATMUL's adj_y (XNNPACK refuses adj_x, so A only as is)."""
    if lay.is_identity:
        return True
    rank = graph.values[node.inputs[idx]].rank
    return idx == 1 and rank >= 3 and lay == swapped(rank)


def transposes_ahead(drv, name: str, lay: L.Layout, depth: int = 0) -> int:
    """How many TRANSPOSE ops the consumers of ``name`` need if it is stored as ``lay``.

    Follows relabelings (Reshape, Transpose, Squeeze ...) and elementwise ops with constant
    operands by asking their own layout policies, and ends at MatMul operands (free when
    :func:`_matmul_takes` them) or at any other op (free only in ONNX order). An estimate used
    to choose between candidate layouts of one output, so both are judged the same way."""
    graph = drv.graph
    shape = graph.values[name].shape
    cost = 0 if lay.is_identity or name not in graph.outputs else 1
    for node, idx in drv.consumers.get(name, []):
        spec = drv.specs.get(id(node))
        others_const = all(
            k == idx or not n or graph.values[n].is_constant for k, n in enumerate(node.inputs)
        )
        follow = node.op_type in _FOLLOWED and others_const and node.domain in ("", "ai.onnx")
        if node.op_type == "MatMul" and node.domain in ("", "ai.onnx"):
            cost += 0 if _matmul_takes(node, idx, lay, graph) else 1
        elif spec is None or not follow or depth >= _LOOKAHEAD_DEPTH:
            cost += 0 if lay.is_identity else 1
        else:
            ins = [lay if k == idx else None for k in range(len(node.inputs))]  # rest constant
            req, outs = spec.layout(node, ins, graph, drv)
            if req[idx] is None or not L.same_memory_order(req[idx], lay, shape):
                cost += 1
            cost += sum(
                transposes_ahead(drv, o, outs[k], depth + 1)
                for k, o in enumerate(node.outputs)
                if o and outs[k] is not None and graph.used(o)
            )
    return cost


# Relabelings a head split passes through on its way to the attention products.
_RELABELS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity"}
_LOOKING_AHEAD: list = []


def _feeds_matmuls(drv, name: str, depth: int = 0) -> bool:
    """Does every reader of ``name`` (through relabelings) multiply it in a MatMul?"""
    readers = drv.consumers.get(name, [])
    if not readers or name in drv.graph.outputs or depth >= _LOOKAHEAD_DEPTH:
        return False
    for node, _idx in readers:
        if node.domain not in ("", "ai.onnx"):
            return False
        if node.op_type == "MatMul":
            continue
        if node.op_type not in _RELABELS or not all(
            _feeds_matmuls(drv, o, depth + 1) for o in node.outputs if o
        ):
            return False
    return True


def split_heads_policy(base):
    """``base`` (keep_rank), except a Split whose parts all feed MatMuls and would each need
    their own TRANSPOSE in the layout its input arrives in takes that input in ONNX order: one
    TRANSPOSE before the Split instead of one per part (a fused Q/K/V projection moved to
    head-major order, head_projection.fused_head_projection). Judged by
    :func:`transposes_ahead`, which is exact where the parts end at MatMul operands; a Split
    feeding anything else (a channel-last feature map's channel split) keeps ``base``."""

    def policy(node, ins, graph, drv=None):
        req, outs = base(node, ins, graph, drv)
        lay = req[0] if req else None
        if drv is None or lay is None or lay.is_identity or lay.inner is not None:
            return req, outs
        used = [(k, o) for k, o in enumerate(node.outputs) if o and graph.used(o)]
        if len(used) < 2 or _LOOKING_AHEAD or not all(_feeds_matmuls(drv, o) for _, o in used):
            return req, outs
        ident = L.identity(lay.rank)
        _LOOKING_AHEAD.append(node)  # a lookahead asking this policy does not start another
        try:
            keep = sum(transposes_ahead(drv, o, outs[k]) for k, o in used)
            turned = 1 + sum(transposes_ahead(drv, o, ident) for _, o in used)
        finally:
            _LOOKING_AHEAD.pop()
        if turned < keep:
            req[0] = ident
            outs = [ident if o else None for o in node.outputs]
        return req, outs

    policy.hint = getattr(base, "hint", "onnx")
    return policy


def _matmul_policy(base):
    """ONNX order, except where BATCH_MATMUL saves a TRANSPOSE.

    - B arriving stored transposed (a relabeled K^T) is read through adj_y.
    - The product of two activations may be stored transposed, C^T = B^T A^T (lhs B arriving
      transposed; rhs A read through adj_y unless it arrives transposed), when its consumers
      then need fewer TRANSPOSE ops (:func:`transposes_ahead`). A product by constant weights
      is not: as one BATCH_MATMUL it would save the head-split TRANSPOSE of a K/V projection,
      but XNNPACK prepacks FULLY_CONNECTED weights and not BATCH_MATMUL's, and the corpus's
      encoders ran 7-18% slower with it (MiniLM-L6 5.6 -> 6.7 ms, interleaved A/B).
    XNNPACK takes BATCH_MATMUL only at rank >= 3 and without adj_x, so only those forms are used.
    """

    def policy(node, ins, graph, drv=None):
        req, outs = base(node, ins, graph, drv)
        if node.op_type != "MatMul" or drv is None or any(x is not None and x.inner for x in req):
            return req, outs
        a, b = graph.values[node.inputs[0]], graph.values[node.inputs[1]]
        out_rank = len(graph.values[node.outputs[0]].shape)
        if a.rank < 2 or b.rank < 2 or out_rank < 3 or a.dtype != np.float32:
            return req, outs
        if ins[1] is not None and ins[1] == swapped(b.rank):
            req[1] = ins[1]
        b_transposable = req[1] == swapped(b.rank)
        a_ok = ins[0] is not None and ins[0] in (L.identity(a.rank), swapped(a.rank))
        if not (b_transposable and a_ok and a.rank == out_rank):
            return req, outs
        out = node.outputs[0]
        keep = transposes_ahead(drv, out, outs[0])
        turned = transposes_ahead(drv, out, swapped(out_rank))
        # Reading A stored as it arrives saves its TRANSPOSE too.
        if ins[0] != req[0]:
            turned -= 1
        if turned < keep:
            req[0] = ins[0]
            outs = [swapped(out_rank)]
        return req, outs

    policy.hint = getattr(base, "hint", "onnx")
    return policy


def _fc(ctx, x, weight_out_in: np.ndarray, bias: np.ndarray | None, out, keep_num_dims=False):
    e = Emitter(ctx)
    lay = ctx.in_layout(0)
    if lay.inner is not None:
        order = lay.inner.element_order()
        stored_in_out = weight_out_in.T
        if stored_in_out.flags.c_contiguous:
            # ONNX keeps B as [in, out]: permuting its rows is a fast row gather, leaving one
            # transposing copy below (instead of a strided column gather plus that copy).
            weight_out_in = stored_in_out[order].T
        else:
            weight_out_in = np.take(weight_out_in, order, axis=1)
    weights = np.asarray(weight_out_in, dtype=np.float32, order="C")
    inputs = [x, ctx.const_tensor(weights, "weights")]
    inputs.append(ctx.const_tensor(bias.astype(np.float32), "bias") if bias is not None else None)
    e.op(
        "FULLY_CONNECTED",
        *inputs,
        out=out,
        fused_activation_function="NONE",
        keep_num_dims=keep_num_dims,
    )


def _scale(ctx, t, factor: float, hint: str):
    e = Emitter(ctx)
    if factor == 1.0:
        return t
    out = ctx.temp(np.float32, t.shape, hint)
    k = ctx.const_tensor(np.array(factor, np.float32), hint)
    e.op("MUL", t, k, out=out)
    return out


def _add_c(ctx, product, beta: float):
    """product + beta * C, with C constant (folded in numpy) or runtime."""
    e = Emitter(ctx)
    c = ctx.const(2)
    if c is not None:
        full = np.broadcast_to(c.astype(np.float64) * beta, ctx.out_shape(0)).astype(np.float32)
        c_t = ctx.const_tensor(full, "c")
    else:
        c_t = _scale(ctx, ctx.input(2), beta, "beta_c")
    e.op("ADD", product, c_t, out=ctx.output(0))


@lowering(
    "Gemm",
    _accepting_inner(_inner_ok_gemm),
    dtype_inputs=(0, 1),
    tflite_ops=(
        "FULLY_CONNECTED",
        "BATCH_MATMUL",
        "MUL",
        "ADD",
        "DEQUANTIZE",
        "CAST",
        "RESHAPE",
        "SLICE",
        "CONCATENATION",
    ),
    notes="constant B -> FULLY_CONNECTED (alpha, beta*C folded); runtime B -> BATCH_MATMUL; "
    "on a Q/DQ lattice with int8 weights: exact integer sums (QGemm's; on the int8 "
    "FULLY_CONNECTED where cheaper, lowering/lattice_int8.py), one MUL",
    accepts_inner=_inner_ok_gemm,
)
def lower_gemm(ctx):
    e = Emitter(ctx)
    if integer_dense(ctx):  # Q/DQ lattice operands (lowering/conv_lattice.py)
        return
    alpha = float(ctx.attr("alpha", 1.0))
    beta = float(ctx.attr("beta", 1.0))
    trans_a, trans_b = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    has_c = ctx.has_input(2) and beta != 0.0
    b = ctx.const(1)
    if b is None or trans_a:
        prod_shape = ctx.output(0).shape
        prod = e.op(
            "BATCH_MATMUL",
            ctx.input(0),
            ctx.input(1),
            shape=prod_shape,
            dtype=np.float32,
            hint="matmul",
            adj_x=trans_a,
            adj_y=trans_b,
        )
        if not has_c:
            scaled = _scale(ctx, prod, alpha, "alpha")
            e.reshape(scaled, out=ctx.output(0))
            return
        _add_c(ctx, _scale(ctx, prod, alpha, "alpha"), beta)
        return
    w = np.asarray(b, np.float32) if trans_b else np.asarray(b, np.float32).T  # [N, K]
    if alpha != 1.0:
        w = w * np.float32(alpha)
    n_out = w.shape[0]
    c = ctx.const(2) if has_c else None
    if c is not None and (c.size == 1 or c.size == n_out and c.shape[-1] == n_out):
        bias = np.broadcast_to(c.astype(np.float64).reshape(-1) * beta, (n_out,)).copy()
        _fc(ctx, ctx.input(0), w, bias, ctx.output(0))
        return
    if not has_c:
        _fc(ctx, ctx.input(0), w, None, ctx.output(0))
        return
    prod = ctx.temp(np.float32, ctx.output(0).shape, "matmul")
    _fc(ctx, ctx.input(0), w, None, prod)
    _add_c(ctx, prod, beta)


@lowering(
    "MatMul",
    _matmul_policy(_accepting_inner(_inner_ok_matmul)),
    dtype_inputs=(0, 1),
    tflite_ops=(
        "FULLY_CONNECTED",
        "BATCH_MATMUL",
        "RESHAPE",
        "DEQUANTIZE",
        "MUL",
        "ADD",
        "CAST",
        "FLOOR",
        "SUB",
        "TRANSPOSE",
        "SLICE",
        "CONCATENATION",
    ),
    notes="constant 2-D B -> FULLY_CONNECTED; otherwise BATCH_MATMUL with batch broadcasting; "
    "1-D operands are promoted and squeezed as numpy.matmul does; on Q/DQ lattices (int8 "
    "weights, or two activations): exact integer sums (QLinearMatMul's), one MUL",
    accepts_inner=_inner_ok_matmul,
)
def lower_matmul(ctx):
    e = Emitter(ctx)
    if integer_dense(ctx) or integer_product(ctx):  # Q/DQ lattices (lowering/conv_lattice.py)
        return
    a_shape, b_shape = ctx.shape(0), ctx.shape(1)
    x, y = ctx.input(0), ctx.input(1)
    if len(a_shape) == 1:
        x = ctx.reshape(x, (1, a_shape[0]), "a_row")
    if len(b_shape) == 1:
        y = ctx.reshape(y, (b_shape[0], 1), "b_col")
    b = ctx.const(1)
    squeeze = len(a_shape) == 1 or len(b_shape) == 1
    out_rank = len(ctx.out_shape(0))
    if not squeeze and ctx.out_layout(0) == swapped(out_rank):
        _transposed_product(ctx)
        return
    if not squeeze and ctx.in_layout(1) == swapped(len(b_shape)):
        e.op("BATCH_MATMUL", x, y, out=ctx.output(0), adj_x=False, adj_y=True)
        return
    if b is not None and b.ndim == 2 and len(a_shape) >= 2:
        _fc(
            ctx, x, np.asarray(b, np.float32).T, None, ctx.output(0), keep_num_dims=len(a_shape) > 2
        )
        return
    if not squeeze:
        e.op("BATCH_MATMUL", x, y, out=ctx.output(0), adj_x=False, adj_y=False)
        return
    a2 = (1, a_shape[0]) if len(a_shape) == 1 else a_shape
    b2 = (b_shape[0], 1) if len(b_shape) == 1 else b_shape
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    prod = e.op(
        "BATCH_MATMUL",
        x,
        y,
        shape=(*batch, a2[-2], b2[-1]),
        dtype=np.float32,
        hint="matmul",
        adj_x=False,
        adj_y=False,
    )
    e.reshape(prod, out=ctx.output(0))


def _transposed_product(ctx) -> None:
    """The product stored transposed: C^T = B^T A^T as one BATCH_MATMUL, B arriving stored
    transposed (see _matmul_policy)."""
    e = Emitter(ctx)
    a_turned = ctx.in_layout(0) == swapped(len(ctx.shape(0)))
    e.op(
        "BATCH_MATMUL",
        ctx.input(1),
        ctx.input(0),
        out=ctx.output(0),
        adj_x=False,
        adj_y=not a_turned,
    )
