"""onnxruntime contrib ops (domain ``com.microsoft``): activations and fused linear ops.

Mechanism: these are ordinary registry lowerings for the domain ``com.microsoft`` (the registry
keys specs by (domain, op)), so the docs, the coverage report and the constraints work as for
any op. Shapes come from :mod:`..contrib_schemas` (onnx schemas with shape inference for
these ops, registered while the front end infers shapes). The fused
ops reuse the default-domain lowerings (Gemm, Conv) and add their epilogue: the product is
written into a temporary instead of the node's output (:class:`Redirect`), then the bias/sum
and the activation write the output.

Contracts are onnxruntime's (docs/ContribOperators.md and the CPU kernels): Gelu is the erf
form, FastGelu the tanh form (the TFLite GELU ``approximate`` flag), QuickGelu is
``x * sigmoid(alpha * x)`` (alpha 1.702), BiasSoftmax flattens from ``axis`` like opset-1
Softmax.
"""

from __future__ import annotations

import math

import numpy as np

from .. import contrib_schemas, errors
from .. import layout as L
from ..policies import broadcasting, channel_last, onnx_order, same_as_input
from ..registry import FLOAT, lowering
from .common import conv2d_options, padding_mode, spatial_pads
from .conv import _conv_check, lower_conv
from .dynamic_sizes import any_size_padding, refuse_sample_pads
from .emit import Emitter
from .math import _erf
from .matmul import lower_gemm

MS = contrib_schemas.MS
QUICK_GELU_ALPHA = 1.702


class Redirect:
    """A lowering context whose output 0 is a fresh temporary (same stored shape and dtype):
    lets a fused op run the plain op's lowering and then apply its epilogue."""

    def __init__(self, ctx, hint: str = "product"):
        self._ctx = ctx
        real = ctx.output(0)
        self.product = ctx.temp(real.dtype, tuple(real.shape), hint)

    def output(self, i: int = 0, dtype=None):
        return self.product if i == 0 else self._ctx.output(i, dtype)

    def __getattr__(self, name):
        return getattr(self._ctx, name)


# ---- activations -------------------------------------------------------------------------------


def _gelu(ctx, x, approximate: bool):
    """GELU into output 0; with ``--decompose Gelu`` the primitive-builtin form the
    default-domain Gelu uses (for delegates without a GELU kernel)."""
    e = Emitter(ctx)
    if "Gelu" not in ctx.driver.options.decompose:
        e.op("GELU", x, out=ctx.output(0), approximate=approximate)
        return
    if approximate:
        cube = e.op("MUL", e.op("MUL", x, x), x)
        inner = e.op("ADD", x, e.op("MUL", cube, e.const(0.044715)))
        core = e.op("TANH", e.op("MUL", inner, e.const(math.sqrt(2.0 / math.pi))))
    else:
        core = _erf(e, e.op("MUL", x, e.const(1.0 / math.sqrt(2.0))))
    e.result(e.op("MUL", e.op("MUL", x, e.const(0.5)), e.op("ADD", core, e.const(1.0))))


@lowering(
    "Gelu",
    same_as_input,
    domain=MS,
    dtypes=FLOAT,
    tflite_ops=("GELU",),
    notes="erf form (GELU approximate=false); --decompose Gelu applies",
)
def lower_ms_gelu(ctx):
    _gelu(ctx, ctx.input(0), False)


@lowering(
    "FastGelu",
    broadcasting(),
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 1),
    tflite_ops=("ADD", "GELU"),
    notes="tanh form (GELU approximate=true); optional bias added first; --decompose Gelu applies",
)
def lower_fast_gelu(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    if ctx.has_input(1):
        x = e.op("ADD", x, ctx.input(1), hint="biased")
    _gelu(ctx, x, True)


@lowering(
    "BiasGelu",
    broadcasting(),
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 1),
    tflite_ops=("ADD", "GELU"),
    notes="erf GELU of A + B; --decompose Gelu applies",
)
def lower_bias_gelu(ctx):
    e = Emitter(ctx)
    _gelu(ctx, e.op("ADD", ctx.input(0), ctx.input(1), hint="biased"), False)


@lowering(
    "QuickGelu",
    same_as_input,
    domain=MS,
    dtypes=FLOAT,
    tflite_ops=("MUL", "LOGISTIC"),
    notes="x * sigmoid(alpha * x), alpha default 1.702",
)
def lower_quick_gelu(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    alpha = float(ctx.attr("alpha", QUICK_GELU_ALPHA))
    scaled = x if alpha == 1.0 else e.op("MUL", x, e.const(alpha), hint="scaled")
    gate = e.op("LOGISTIC", scaled, hint="gate")
    e.op("MUL", x, gate, out=ctx.output(0))


@lowering(
    "BiasAdd",
    broadcasting(),
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2),
    tflite_ops=("ADD",),
    notes="X + bias + skip",
)
def lower_bias_add(ctx):
    e = Emitter(ctx)
    biased = e.op("ADD", ctx.input(0), ctx.input(1), hint="biased")
    e.op("ADD", biased, ctx.input(2), out=ctx.output(0))


def _bias_softmax_check(node, graph):
    data, bias = (graph.values[n] for n in node.inputs[:2])
    rank = data.rank
    axis = int(node.attrs.get("axis", 1))
    if not -rank <= axis < rank:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: axis={axis} for rank {rank}"
    if (
        _bias_shape(data.shape, bias.shape, axis % rank, node.attrs.get("is_inner_broadcast", 0))
        is None
    ):
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: bias shape {list(bias.shape)} does not "
            f"broadcast to data {list(data.shape)} (is_inner_broadcast="
            f"{node.attrs.get('is_inner_broadcast', 0)})"
        )
    return None


def _bias_shape(data, bias, axis: int, inner) -> tuple | None:
    """The bias shape at data's rank: trailing-aligned (numpy) broadcasting, or with
    ``is_inner_broadcast`` the leading and the softmax dims kept and the middle ones 1."""
    data, bias = tuple(data), tuple(bias)
    if len(bias) > len(data):
        return None
    if len(bias) == len(data) or not inner:
        full = (1,) * (len(data) - len(bias)) + bias
    else:
        tail = len(data) - axis
        lead = len(bias) - tail
        if lead < 0:
            return None
        full = bias[:lead] + (1,) * (len(data) - len(bias)) + bias[lead:]
    ok = all(b in (1, d) for b, d in zip(full, data, strict=True))
    return full if ok else None


@lowering(
    "BiasSoftmax",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 1),
    tflite_ops=("ADD", "RESHAPE", "SOFTMAX"),
    notes="softmax over the dims from axis (flattened, as opset-1 Softmax) of data + bias; "
    "is_inner_broadcast 0/1",
    extra_check=_bias_softmax_check,
)
def lower_bias_softmax(ctx):
    e = Emitter(ctx)
    shape = ctx.shape(0)
    axis = int(ctx.attr("axis", 1)) % len(shape)
    full = _bias_shape(shape, ctx.shape(1), axis, ctx.attr("is_inner_broadcast", 0))
    bias = e.reshape(ctx.input(1), full, "bias_full")
    logits = e.op("ADD", ctx.input(0), bias, hint="logits")
    rows = int(np.prod(shape[:axis], dtype=np.int64))
    flat = e.reshape(logits, (rows, int(np.prod(shape[axis:], dtype=np.int64))), "flat")
    probs = e.op("SOFTMAX", flat, hint="probs", beta=1.0)
    e.reshape(probs, shape, out=ctx.output(0))


# ---- fused linear ops ------------------------------------------------------------------------


def _activation(ctx, x, name: str, params: list[float]):
    """``name`` (onnxruntime's fused activation) applied to ``x``, written into output 0."""
    e = Emitter(ctx)
    out = ctx.output(0)

    def param(i, default):
        return float(params[i]) if len(params) > i else default

    if name in ("", "Identity"):
        e.reshape(x, out.shape, out=out)
    elif name == "Relu":
        e.op("RELU", x, out=out, hint="t")
    elif name == "Tanh":
        e.op("TANH", x, out=out, hint="t")
    elif name == "Sigmoid":
        e.op("LOGISTIC", x, out=out, hint="t")
    elif name == "LeakyRelu":
        e.op("LEAKY_RELU", x, hint="t", out=out, alpha=param(0, 0.01))
    elif name == "Clip":
        lo = param(0, float(np.finfo(np.float32).min))
        hi = param(1, float(np.finfo(np.float32).max))
        low = e.op("MAXIMUM", x, e.const(lo), hint="clip_low")
        e.op("MINIMUM", low, e.const(hi), out=out, hint="t")
    elif name == "HardSigmoid":
        scaled = e.op("MUL", x, e.const(param(0, 0.2)), hint="hs_scaled")
        shifted = e.op("ADD", scaled, e.const(param(1, 0.5)), hint="hs_shifted")
        e.op("RELU_0_TO_1", shifted, out=out, hint="t")
    else:  # the declared constraints keep other names out
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"activation={name!r}")


def _activation_name(node) -> str:
    name = node.attrs.get("activation", "")
    return name.decode() if isinstance(name, bytes) else str(name)


_GEMM_ACTIVATIONS = ("Relu", "Tanh", "Sigmoid", "LeakyRelu", "HardSigmoid")
_CONV_ACTIVATIONS = ("", "Identity", "Relu", "Tanh", "Sigmoid", "LeakyRelu", "Clip", "HardSigmoid")


def _activation_check(allowed):
    def check(node, graph):
        name = _activation_name(node)
        if name not in allowed:
            return (
                f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: activation={name!r} "
                f"(supported: {', '.join(a for a in allowed if a)})"
            )
        return None

    return check


def _gemm_check(node, graph):
    a, b = (graph.values[n] for n in node.inputs[:2])
    if a.rank != 2 or b.rank != 2:
        return f"{errors.UNSUPPORTED_RANK}: FusedGemm operands must be 2-D ({a.rank}, {b.rank})"
    return _activation_check(_GEMM_ACTIVATIONS)(node, graph)


@lowering(
    "FusedGemm",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2),
    tflite_ops=("FULLY_CONNECTED", "BATCH_MATMUL", "MUL", "ADD", "RELU", "TANH", "LOGISTIC"),
    notes="Gemm then activation (Relu, Tanh, Sigmoid, LeakyRelu, HardSigmoid with "
    "activation_alpha/beta)",
    extra_check=_gemm_check,
)
def lower_fused_gemm(ctx):
    inner = Redirect(ctx)
    lower_gemm(inner)
    alpha, beta = ctx.attr("activation_alpha", None), ctx.attr("activation_beta", None)
    params = [p for p in (alpha, beta) if p is not None]
    name = _activation_name(ctx.node)
    if name == "HardSigmoid":
        params = [0.2 if alpha is None else alpha, 0.5 if beta is None else beta]
    _activation(ctx, inner.product, name, params)


def _fused_conv_check(node, graph):
    return _conv_check(node, graph) or _activation_check(_CONV_ACTIVATIONS)(node, graph)


@lowering(
    "FusedConv",
    channel_last(data_inputs=(0, 1, 3)),
    domain=MS,
    nonempty=True,
    ranks=(3, 4, 5),
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2, 3),
    tflite_ops=("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "PAD", "ADD", "RELU", "TANH"),
    notes="Conv (+ Z) then activation (Relu, Tanh, Sigmoid, LeakyRelu, Clip, HardSigmoid "
    "from activation_params)",
    extra_check=_fused_conv_check,
)
def lower_fused_conv(ctx):
    e = Emitter(ctx)
    inner = Redirect(ctx, "conv")
    lower_conv(inner)
    y = inner.product
    if ctx.has_input(3):
        y = e.op("ADD", y, ctx.input(3), hint="with_z")
    params = [float(p) for p in ctx.attr("activation_params", []) or []]
    _activation(ctx, y, _activation_name(ctx.node), params)


def _nhwc_conv_check(node, graph):
    x, w = (graph.values[n] for n in node.inputs[:2])
    if x.rank != 4 or w.rank != 4:
        return f"{errors.UNSUPPORTED_RANK}: NhwcConv input rank {x.rank} (2-D convs only)"
    return None


@lowering(
    "NhwcConv",
    onnx_order,
    domain=MS,
    nonempty=True,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2),
    tflite_ops=("CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "TRANSPOSE"),
    notes="2-D; X and Y are NHWC (TFLite's own layout), W is ONNX [M, C/group, kH, kW]",
    extra_check=_nhwc_conv_check,
)
def lower_nhwc_conv(ctx):
    e = Emitter(ctx)
    x_shape, w_shape = ctx.shape(0), ctx.shape(1)
    c = x_shape[3]
    o = w_shape[0]
    kernel = [int(k) for k in w_shape[2:]]
    strides = [int(s) for s in ctx.attr("strides", [1, 1])]
    dilations = [int(d) for d in ctx.attr("dilations", [1, 1])]
    spatial = list(x_shape[1:3])
    pads = spatial_pads(ctx, spatial, kernel, strides, dilations)
    group = int(ctx.attr("group", 1))
    depthwise = group == c and group > 1 and w_shape[1] == 1
    w_layout = L.Layout((1, 2, 3, 0)) if depthwise else L.channel_last(4)
    filt = ctx.input(1, w_layout)
    x = ctx.input(0)
    mode = padding_mode(pads, spatial, kernel, strides, dilations, any_size_padding(ctx))
    if mode is None:
        refuse_sample_pads(ctx, kernel, strides, dilations)
        x = e.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
        mode = "VALID"
    bias = ctx.input(2) if ctx.has_input(2) else ctx.const_tensor(np.zeros(o, np.float32), "bias")
    options = conv2d_options(mode, strides, dilations)
    if depthwise:
        options["depth_multiplier"] = o // c
    opcode = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    e.op(opcode, x, filt, bias, out=ctx.output(0), **options)


# ---- FusedMatMul -----------------------------------------------------------------------------


def _batch_perm(rank: int) -> list[int]:
    """transBatch: dim 0 moves to just before the last axis ([S, B, H] -> [B, S, H])."""
    return [*range(1, rank - 1), 0, rank - 1]


def _fused_matmul_check(node, graph):
    a, b = (graph.values[n] for n in node.inputs[:2])
    if a.rank < 2 or b.rank < 2:
        return f"{errors.UNSUPPORTED_RANK}: 1-D operands (ranks {a.rank}, {b.rank})"
    shapes = []
    for v, which in ((a, "A"), (b, "B")):
        dims = list(v.shape)
        if node.attrs.get(f"transBatch{which}", 0) and len(dims) > 2:
            dims = [dims[i] for i in _batch_perm(len(dims))]
        if node.attrs.get(f"trans{which}", 0):
            dims[-2], dims[-1] = dims[-1], dims[-2]
        shapes.append(dims)
    try:
        np.broadcast_shapes(tuple(shapes[0][:-2]), tuple(shapes[1][:-2]))
    except ValueError:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: batch dims {shapes[0]} x {shapes[1]} do not broadcast"
    if shapes[0][-1] != shapes[1][-2]:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: inner dims {shapes[0]} x {shapes[1]} differ"
    return None


@lowering(
    "FusedMatMul",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 1),
    tflite_ops=("FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE", "MUL"),
    notes="alpha, transA/transB (adj_x/adj_y), transBatchA/transBatchB (a TRANSPOSE, or "
    "folded into a constant operand); constant 2-D B -> FULLY_CONNECTED",
    extra_check=_fused_matmul_check,
)
def lower_fused_matmul(ctx):
    e = Emitter(ctx)
    alpha = float(ctx.attr("alpha", 1.0))
    ta, tb = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    tba, tbb = bool(ctx.attr("transBatchA", 0)), bool(ctx.attr("transBatchB", 0))
    a_rank, b_rank = len(ctx.shape(0)), len(ctx.shape(1))
    out = ctx.output(0)
    b_const = ctx.const(1)
    if b_const is not None and b_rank == 2 and not ta and not (tba and a_rank > 2):
        w = np.asarray(b_const, np.float32)
        w = (w if tb else w.T) * np.float32(alpha)  # FULLY_CONNECTED weights are [N, K]
        weights = ctx.const_tensor(np.ascontiguousarray(w, np.float32), "weights")
        e.op(
            "FULLY_CONNECTED",
            ctx.input(0),
            weights,
            None,
            out=out,
            fused_activation_function="NONE",
            keep_num_dims=a_rank > 2,
        )
        return
    a = ctx.input(0)
    if tba and a_rank > 2:
        a = e.transpose(a, _batch_perm(a_rank), "a_batch_first")
    if b_const is not None:
        w = np.asarray(b_const, np.float32)
        if tbb and b_rank > 2:
            w = np.transpose(w, _batch_perm(b_rank))
        b = ctx.const_tensor(np.ascontiguousarray(w * np.float32(alpha)), "b")
        alpha = 1.0
    else:
        b = ctx.input(1)
        if tbb and b_rank > 2:
            b = e.transpose(b, _batch_perm(b_rank), "b_batch_first")
    batch = np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    m = a.shape[-1] if ta else a.shape[-2]
    n = b.shape[-2] if tb else b.shape[-1]
    prod = e.op("BATCH_MATMUL", a, b, shape=(*batch, m, n), hint="product", adj_x=ta, adj_y=tb)
    if alpha != 1.0:
        prod = e.op("MUL", prod, e.const(alpha), hint="scaled")
    e.reshape(prod, out.shape, out=out)
