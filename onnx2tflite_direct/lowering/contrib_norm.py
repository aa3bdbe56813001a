"""onnxruntime's layer normalizations: the default-domain LayerNormalization below opset 17 and
SimplifiedLayerNormalization (onnxruntime registers both in the ONNX domain), and the
com.microsoft Skip(Simplified)LayerNormalization and EmbedLayerNormalization fusions.

All are the textbook formulas over the last axis (or from ``axis``), composed like the
default-domain normalizations (``normalization.normalize``): MEAN, SUB, MUL, RSQRT. Default
epsilons are onnxruntime's: 1e-5 for (Simplified)LayerNormalization, 1e-12 for the
Skip/Embed fusions. Optional statistics outputs (mean, inverse std, the residual sum) are
produced when a consumer reads them.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import keep_rank, onnx_order
from ..registry import FLOAT, attr_in, lowering
from .contrib import MS
from .dynamic_sizes import sizes_vary
from .emit import Emitter
from .normalization import _stored_axes, lower_layer_norm, normalize

SKIP_EPSILON = 1e-12  # onnxruntime's kDefaultSkipLayerNormEpsilon / EmbedLayerNorm default


def _used(ctx, i: int) -> bool:
    return i < len(ctx.node.outputs) and bool(ctx.node.outputs[i])


# onnxruntime's own LayerNormalization (ONNX domain, versions 1-16): the opset-17 contract.
lowering(
    "LayerNormalization",
    keep_rank(),
    since=1,
    until=16,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2),
    attrs=(attr_in("stash_type", (1,), 1),),
    tflite_ops=("MEAN", "SUB", "MUL", "ADD", "RSQRT"),
    notes="onnxruntime's contrib LayerNormalization (opsets 1-16, same contract as opset 17); "
    "Mean/InvStdDev outputs supported",
)(lower_layer_norm)


@lowering(
    "SimplifiedLayerNormalization",
    keep_rank(),
    dtypes=FLOAT,
    dtype_inputs=(0, 1),
    attrs=(attr_in("stash_type", (1,), 1),),
    tflite_ops=("MUL", "MEAN", "ADD", "RSQRT"),
    notes="onnxruntime's RMS normalization (ONNX domain): x * rsqrt(mean(x^2) + eps) * scale; "
    "inv_std_var output supported",
)
def lower_simplified_layer_norm(ctx):
    e = Emitter(ctx)
    rank = len(ctx.shape(0))
    axis = int(ctx.attr("axis", -1)) % rank
    axes = _stored_axes(ctx, range(axis, rank))
    inv = ctx.output(1) if _used(ctx, 1) else None
    eps = float(ctx.attr("epsilon", 1e-5))
    y = normalize(ctx, ctx.input(0), axes, eps, center=False, inv_out=inv)
    e.op("MUL", y, ctx.input(1, ctx.in_layout(0)), out=ctx.output(0))


def _skip_check(simplified: bool):
    def check(node, graph):
        x = graph.values[node.inputs[0]]
        skip = graph.values[node.inputs[1]]
        if x.rank not in (2, 3):
            return f"{errors.UNSUPPORTED_RANK}: input rank {x.rank} (2-D or 3-D)"
        if tuple(np.broadcast_shapes(tuple(x.shape), tuple(skip.shape))) != tuple(x.shape):
            return (
                f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: skip shape {list(skip.shape)} does not "
                f"broadcast to input {list(x.shape)}"
            )
        if simplified and len(node.outputs) > 1 and node.outputs[1] and graph.used(node.outputs[1]):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: output 1 (mean) of an RMS normalization"
        return None

    return check


def _skip_norm(ctx, simplified: bool):
    e = Emitter(ctx)
    x = e.op("ADD", ctx.input(0), ctx.input(1), hint="with_skip")
    bias_idx = 3 if simplified else 4
    if ctx.has_input(bias_idx):
        x = e.op("ADD", x, ctx.input(bias_idx), hint="with_bias")
    if _used(ctx, 3):
        e.reshape(x, x.shape, out=ctx.output(3))
    last = [len(x.shape) - 1]
    mean_out = ctx.output(1) if _used(ctx, 1) and not simplified else None
    inv_out = ctx.output(2) if _used(ctx, 2) else None
    eps = float(ctx.attr("epsilon", SKIP_EPSILON))
    y = normalize(ctx, x, last, eps, not simplified, mean_out, inv_out)
    has_beta = not simplified and ctx.has_input(3)
    scaled = e.op("MUL", y, ctx.input(2), hint="t", out=None if has_beta else ctx.output(0))
    if has_beta:
        e.op("ADD", scaled, ctx.input(3), out=ctx.output(0))


@lowering(
    "SkipLayerNormalization",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2, 3, 4),
    tflite_ops=("ADD", "MEAN", "SUB", "MUL", "RSQRT"),
    notes="LayerNorm(input + skip (+ bias)) over the last axis; mean, inv_std_var and "
    "input_skip_bias_sum outputs supported; epsilon default 1e-12",
    extra_check=_skip_check(False),
)
def lower_skip_layer_norm(ctx):
    _skip_norm(ctx, False)


@lowering(
    "SkipSimplifiedLayerNormalization",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2, 3),
    tflite_ops=("ADD", "MEAN", "MUL", "RSQRT"),
    notes="RMSNorm(input + skip (+ bias)) over the last axis; inv_std_var and "
    "input_skip_bias_sum outputs supported; epsilon default 1e-12",
    extra_check=_skip_check(True),
)
def lower_skip_simplified_layer_norm(ctx):
    _skip_norm(ctx, True)


def _embed_check(node, graph, id_inputs=(0, 1, 7, 8)):
    ids = graph.values[node.inputs[0]]
    if ids.rank != 2:
        return f"{errors.UNSUPPORTED_RANK}: input_ids rank {ids.rank} (batch, sequence)"
    for i in id_inputs:
        if i < len(node.inputs) and node.inputs[i]:
            dt = np.dtype(graph.values[node.inputs[i]].dtype).name
            if dt not in ("int32", "int64"):
                return f"{errors.UNSUPPORTED_DTYPE}: input {i} has dtype {dt} (int32 ids)"
    return None


def _lookup(ctx, e, table: int, ids: int, hint: str):
    """Rows of table input ``table`` for the ids of input ``ids``; constant ids of a constant
    table (an exporter's position or token-type buffer) are looked up here, in numpy, instead
    of by a GATHER, which XNNPACK does not take (ids outside the table fall back to GATHER)."""
    rows, idx = ctx.const(table), ctx.const(ids)
    if rows is not None and idx is not None:
        idx = np.asarray(idx, np.int64)
        n = np.asarray(rows).shape[0]
        if ((idx >= -n) & (idx < n)).all():
            return e.const(np.take(np.asarray(rows, np.float32), idx, axis=0), hint=hint)
    return e.gather(ctx.input(table), e.cast(ctx.input(ids), np.int32, f"{hint}_ids"), 0, hint)


def _leading_positions(ctx, e, s: int, hidden: int):
    """[1, S, hidden]: the first S rows of the position table, S read at run time from the
    ids' SHAPE (a SLICE sized by it). Why: the static form (the table's first S rows as a
    constant, or a GATHER of ``arange(S)``) bakes the sequence length in, which the
    dynamic-shape lowering cannot re-express; this form resizes with the input."""
    table = ctx.input(3)
    rows = ctx.shape(3)[0]
    table = e.reshape(table, (1, rows, hidden), "position_table")
    ids = ctx.input(0)
    dims = e.op("SHAPE", ids, shape=(2,), dtype=np.int32, hint="ids_dims", out_type="INT32")
    one = e.const([1], np.int32, "one")
    seq = e.op("SLICE", dims, one, one, shape=(1,), hint="sequence")
    size = e.concat([one, seq, e.const([hidden], np.int32, "hidden")], 0, "positions_size")
    begin = e.const(np.zeros(3, np.int32), np.int32, "positions_begin")
    return e.op("SLICE", table, begin, size, shape=(1, s, hidden), hint="positions")


@lowering(
    "EmbedLayerNormalization",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(2, 3, 4, 5, 6),
    tflite_ops=("GATHER", "ADD", "MEAN", "SUB", "MUL", "RSQRT", "SUM", "CAST"),
    notes="word + position (+ segment) embedding GATHERs, LayerNorm (epsilon default 1e-12); "
    "mask_index output = count of mask == 1 per row (0 without mask); embedding_sum output",
    extra_check=_embed_check,
)
def lower_embed_layer_norm(ctx):
    e = Emitter(ctx)
    b, s = ctx.shape(0)
    hidden = ctx.shape(2)[1]
    x = e.gather(ctx.input(2), e.cast(ctx.input(0), np.int32, "ids"), 0, "words")
    if ctx.has_input(8):
        pos = _lookup(ctx, e, 3, 8, "positions")
    else:
        if s > ctx.shape(3)[0]:  # onnxruntime fails on such inputs (index out of range)
            ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE,
                f"sequence length {s} exceeds the {ctx.shape(3)[0]} rows of position_embedding "
                "(pin the sequence dim with input_shapes)",
            )
        pos_table = ctx.const(3)
        if sizes_vary(ctx):
            pos = _leading_positions(ctx, e, s, hidden)
        elif pos_table is not None:
            pos = e.const(np.asarray(pos_table, np.float32)[:s][None], hint="positions")
        else:
            pos = e.gather(ctx.input(3), np.arange(s, dtype=np.int32), 0, "positions")
            pos = e.reshape(pos, (1, s, hidden), "positions_b")
    x = e.op("ADD", x, pos, hint="with_positions")
    if ctx.has_input(1) and ctx.has_input(4):
        seg = _lookup(ctx, e, 4, 1, "segments")
        x = e.op("ADD", x, seg, hint="with_segments")
    if _used(ctx, 2):
        e.reshape(x, x.shape, out=ctx.output(2))
    y = normalize(ctx, x, [2], float(ctx.attr("epsilon", SKIP_EPSILON)))
    scaled = e.op("MUL", y, ctx.input(5), hint="scaled")
    e.op("ADD", scaled, ctx.input(6), out=ctx.output(0))
    if _used(ctx, 1):
        out = ctx.output(1)
        if ctx.has_input(7):
            mask = e.cast(ctx.input(7), np.int32, "mask")
            ones = e.op("EQUAL", mask, e.const(1, np.int32), dtype=np.bool_, hint="ones")
            count = e.cast(e.cast(ones, np.int32, "ones_i"), np.float32, "ones_f")
            total = e.reduce("SUM", count, [1], False, "count")
            e.op("CAST", total, shape=(b,), dtype=np.int32, hint="t", out=out)
        elif sizes_vary(ctx):  # zeros sized by the ids' run-time batch (SLICE to the end)
            begin = e.const(np.zeros(2, np.int32), np.int32, "first_begin")
            size = e.const(np.asarray([b, 1], np.int32), np.int32, "first_size")
            ids = e.cast(ctx.input(0), np.int32, "ids_no_mask")
            first = e.op("SLICE", ids, begin, size, shape=(b, 1), hint="first_ids")
            zero = e.op("MUL", first, e.const([[0]], np.int32, "zero"), hint="no_mask")
            e.reshape(zero, out=out)
        else:
            e.op("CAST", e.const(np.zeros(b, np.float32), hint="no_mask"), out=out)


# ---- QEmbedLayerNormalization --------------------------------------------------------------------

# quantized tables (inputs 2-6) -> (scale input, zero point input)
_QEMBED_PARAMS = {2: (8, 13), 3: (9, 14), 4: (10, 15), 5: (11, 16), 6: (12, 17)}


class _DequantizedEmbedView:
    """A QEmbedLayerNormalization seen as EmbedLayerNormalization: its quantized tables and
    gamma/beta dequantized in numpy (``(q - zp) * scale`` in float32, as onnxruntime does per
    looked-up element), no position_ids (its input 8 is a scale)."""

    def __init__(self, ctx):
        self._ctx = ctx
        self._tables = {}
        for i, (si, zi) in _QEMBED_PARAMS.items():
            if not ctx.has_input(i):
                continue
            q = np.asarray(ctx.const(i)).astype(np.float32)
            zp = (
                np.asarray(ctx.const(zi)).astype(np.float32).reshape(()) if ctx.has_input(zi) else 0
            )
            scale = np.asarray(ctx.const(si), np.float32).reshape(())
            self._tables[i] = ((q - np.float32(zp)) * scale).astype(np.float32)

    def has_input(self, i: int) -> bool:
        return i < 8 and self._ctx.has_input(i)

    def const(self, i: int):
        return self._tables.get(i) if i in _QEMBED_PARAMS else self._ctx.const(i)

    def input(self, i: int, layout=None):
        if i in self._tables:
            return self._ctx.const_tensor(self._tables[i], f"dequantized{i}")
        return self._ctx.input(i, layout)

    def shape(self, i: int):
        return tuple(self._tables[i].shape) if i in self._tables else self._ctx.shape(i)

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def _qembed_check(node, graph):
    problem = _embed_check(node, graph, (0, 1, 7))
    if problem:
        return problem
    for i in (*_QEMBED_PARAMS, *(p for pair in _QEMBED_PARAMS.values() for p in pair)):
        if i < len(node.inputs) and node.inputs[i] and not graph.values[node.inputs[i]].is_constant:
            return f"{errors.REQUIRES_CONSTANT_INPUT}: input {i} must be constant"
    return None


@lowering(
    "QEmbedLayerNormalization",
    onnx_order,
    domain=MS,
    dtypes=("uint8", "int8"),
    dtype_inputs=(2, 3, 5, 6),
    tflite_ops=("GATHER", "ADD", "MEAN", "SUB", "MUL", "RSQRT", "SUM", "CAST"),
    notes="the EmbedLayerNormalization lowering on tables dequantized in numpy as onnxruntime "
    "dequantizes them; constant quantized tables and parameters",
    extra_check=_qembed_check,
)
def lower_qembed_layer_norm(ctx):
    lower_embed_layer_norm(_DequantizedEmbedView(ctx))
