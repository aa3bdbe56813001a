"""GridSample and AffineGrid, composed exactly from elementwise ops, GATHER_ND and BATCH_MATMUL.

GridSample follows the ONNX reference step by step, vectorized over output positions: the
normalized grid coordinate of each spatial axis is unnormalized (align_corners), rounded
(nearest) and, when outside the sampling borders, clamped (border) or reflected (reflection);
the interpolation taps (1 nearest, 2 linear, 4 cubic per axis) get per-axis weights and integer
indices (zeros: out-of-range taps weigh 0; border: clamped index; reflection: reflected index),
and every corner of the tap grid is one GATHER_ND of the channel-last input (indices
``(n, i_0, ..., i_k)`` give ``[N, *out, C]``, the channel-last output) scaled by the product of
its per-axis weights. The grid stays a runtime tensor.

AffineGrid: the output size is static, so the grid is a constant base (homogeneous normalized
coordinates) times theta^T: one BATCH_MATMUL.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..policies import channel_last, onnx_order
from ..registry import attr_in, lowering
from . import grid_tent
from .emit import Emitter

MODES = {
    "bilinear": "linear",
    "linear": "linear",
    "nearest": "nearest",
    "bicubic": "cubic",
    "cubic": "cubic",
}
TAP_OFFSETS = {"nearest": (0,), "linear": (0, 1), "cubic": (-1, 0, 1, 2)}
CUBIC_ALPHA = -0.75


class _Arith:
    """Float elementwise emitters on [N, *out] coordinate tensors (keeps the math readable)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.e = Emitter(ctx)

    def k(self, value):
        return self.e.const(value, np.float32, "k")

    def _operand(self, v):
        return v if hasattr(v, "shape") and not isinstance(v, np.ndarray) else self.k(v)

    def bin(self, opcode, a, b, dtype=None):
        return self.e.op(
            opcode, self._operand(a), self._operand(b), hint=opcode.lower(), dtype=dtype
        )

    def add(self, a, b):
        return self.bin("ADD", a, b)

    def sub(self, a, b):
        return self.bin("SUB", a, b)

    def mul(self, a, b):
        return self.bin("MUL", a, b)

    def div(self, a, b):
        return self.bin("DIV", a, b)

    def unary(self, opcode, x, dtype=None):
        return self.e.op(opcode, x, dtype=dtype or x.dtype, hint=opcode.lower())

    def cmp(self, opcode, a, b):
        return self.bin(opcode, a, b, dtype=np.bool_)

    def clamp(self, x, lo, hi):
        return self.bin("MINIMUM", self.bin("MAXIMUM", x, lo), hi)

    def select(self, cond, a, b):
        return self.e.op("SELECT_V2", cond, self._operand(a), self._operand(b), hint="select")


def _unnormalize(m: _Arith, g, size: int, align: bool):
    if align:
        return m.mul(m.mul(m.add(g, 1.0), 0.5), float(size - 1))
    return m.mul(m.sub(m.mul(m.add(g, 1.0), float(size)), 1.0), 0.5)


def _reflect(m: _Arith, v, lo: float, hi: float):
    """The reference's reflection of ``v`` into [lo, hi] (identity inside)."""
    span = hi - lo
    below = m.cmp("LESS", v, lo)
    above = m.cmp("GREATER", v, hi)
    dist = m.select(below, m.sub(lo, v), m.sub(v, hi))
    bounces = m.unary("FLOOR", m.div(dist, span))
    rest = m.sub(dist, m.mul(bounces, span))
    odd = m.cmp("GREATER", m.sub(bounces, m.mul(m.unary("FLOOR", m.mul(bounces, 0.5)), 2.0)), 0.5)
    from_lo = m.bin("NOT_EQUAL", below, odd, dtype=np.bool_)  # below & even, or above & odd
    reflected = m.select(from_lo, m.add(rest, lo), m.sub(hi, rest))
    inside = m.bin("LOGICAL_OR", below, above, dtype=np.bool_)
    return m.select(inside, reflected, v)


def _cubic_weights(m: _Arith, t):
    """Keys cubic coefficients for taps -1, 0, 1, 2 at fractional offset ``t`` in [0, 1)."""
    a = CUBIC_ALPHA

    def outer(x):  # |x| in [1, 2]
        return m.sub(m.mul(m.add(m.mul(m.sub(m.mul(x, a), 5 * a), x), 8 * a), x), 4 * a)

    def inner(x):  # |x| in [0, 1]
        return m.add(m.mul(m.mul(m.sub(m.mul(x, a + 2), a + 3), x), x), 1.0)

    one_minus = m.sub(1.0, t)
    return [outer(m.add(t, 1.0)), inner(t), inner(one_minus), outer(m.add(one_minus, 1.0))]


def _axis_taps(m: _Arith, g, size: int, mode: str, padding: str, align: bool):
    """Per tap of one spatial axis: (int32 index tensor, float weight tensor or None)."""
    lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
    x = _unnormalize(m, g, size, align)
    if mode == "nearest":
        x = m.unary("ROUND", x)
    if padding == "border":
        outside = m.bin("LOGICAL_OR", m.cmp("LESS", x, lo), m.cmp("GREATER", x, hi), dtype=np.bool_)
        x = m.select(outside, m.clamp(x, 0.0, size - 1.0), x)
    elif padding == "reflection":
        x = _reflect(m, x, lo, hi)
    if mode == "nearest":
        base, weights = x, [None]  # integral already; the CAST below truncates like int()
    else:
        base = m.unary("FLOOR", x)
        t = m.sub(x, base)
        weights = [m.sub(1.0, t), t] if mode == "linear" else _cubic_weights(m, t)
    taps = []
    for off, w in zip(TAP_OFFSETS[mode], weights, strict=True):
        pos = m.add(base, float(off)) if off else base
        if padding == "zeros":
            valid = m.bin(
                "LOGICAL_AND",
                m.cmp("GREATER_EQUAL", pos, 0.0),
                m.cmp("LESS", pos, float(size)),
                dtype=np.bool_,
            )
            mask = m.unary("CAST", valid, np.float32)
            w = mask if w is None else m.mul(w, mask)
        elif padding == "reflection":
            pos = _reflect(m, pos, lo, hi)  # in [lo, hi]: clamp + CAST truncate like int()
        index = m.unary("CAST", m.clamp(pos, 0.0, size - 1.0), np.int32)
        taps.append((index, w))
    return taps


def _grid_check(node, graph):
    mode = node.attrs.get("mode", "bilinear")
    if mode not in MODES:
        return f"unsupported_attribute_value: mode {mode!r}"
    x = graph.values[node.inputs[0]].shape
    if MODES[mode] == "cubic" and node.attrs.get("padding_mode", "zeros") == "border":
        # onnxruntime clamps each cubic tap (as PyTorch); the ONNX reference clamps the
        # coordinate first: the two disagree near the border.
        return "unsupported_attribute_value: cubic mode with border padding (runtimes disagree)"
    if node.attrs.get("padding_mode", "zeros") == "reflection" and node.attrs.get(
        "align_corners", 0
    ):
        if any(d == 1 for d in x[2:]):
            return "unsupported_attribute_value: reflection over a size-1 axis with align_corners"
    return None


@lowering(
    "GridSample",
    channel_last(data_inputs=(0,)),
    since=16,
    ranks=(4, 5),
    dtype_inputs=(0, 1),
    attrs=(
        attr_in("padding_mode", ("zeros", "border", "reflection"), "zeros"),
        attr_in("align_corners", (0, 1), 0),
    ),
    extra_check=_grid_check,
    tflite_ops=(
        "GATHER_ND",
        "FLOOR",
        "ROUND",
        "SELECT_V2",
        "MUL",
        "ADD",
        "CAST",
        "CONCATENATION",
        "ABS",
        "RELU",
        "BATCH_MATMUL",
        "SUM",
        "RESHAPE",
    ),
    notes="modes nearest/linear/cubic (bilinear/bicubic); runtime grid; exact composition; "
    "bilinear with zero padding over one channel and at most 256 input positions: tent "
    "weights, BATCH_MATMUL and SUM (lowering/grid_tent.py)",
)
def lower_gridsample(ctx):
    e = Emitter(ctx)
    mode = MODES[ctx.attr("mode", "bilinear")]
    padding = ctx.attr("padding_mode", "zeros")
    align = bool(ctx.attr("align_corners", 0))
    x_shape, g_shape = ctx.shape(0), ctx.shape(1)
    spatial = x_shape[2:]
    rank = len(spatial)
    n_batch, out_sp = g_shape[0], tuple(g_shape[1:-1])
    m = _Arith(ctx)
    grid = ctx.input(1)
    if grid_tent.applies(ctx, mode, padding):  # small 2-D input: XNNPACK-only ops
        grid_tent.lower_tent(ctx, m, grid, _unnormalize, align)
        return
    coords = e.split(grid, [1] * rank, axis=-1, hint="coord")
    coords = [e.reshape(c, (n_batch, *out_sp), "coord") for c in coords]
    # grid[..., 0] addresses the last spatial axis (x = W), grid[..., rank-1] the first.
    per_axis = [
        _axis_taps(m, coords[rank - 1 - i], spatial[i], mode, padding, align) for i in range(rank)
    ]
    batch_idx = np.broadcast_to(
        np.arange(n_batch, dtype=np.int32).reshape((n_batch,) + (1,) * (len(out_sp) + 1)),
        (n_batch, *out_sp, 1),
    )
    batch_t = e.const(batch_idx, np.int32, "batch_index")
    data = ctx.input(0)
    channels = x_shape[1]
    out = ctx.output(0)
    corners = list(itertools.product(*per_axis))
    acc = None
    for k, corner in enumerate(corners):
        parts = [batch_t] + [e.reshape(idx, (n_batch, *out_sp, 1), "idx") for idx, _w in corner]
        indices = e.concat(parts, axis=-1, hint="indices")
        picked = e.op("GATHER_ND", data, indices, shape=(n_batch, *out_sp, channels), hint="picked")
        weight = None
        for _idx, w in corner:
            if w is not None:
                weight = w if weight is None else m.mul(weight, w)
        last = k == len(corners) - 1
        if weight is not None:
            weight = e.reshape(weight, (n_batch, *out_sp, 1), "weight")
            picked = e.op(
                "MUL", picked, weight, hint="weighted", out=out if last and acc is None else None
            )
        if acc is None:
            acc = picked
        else:
            acc = e.op("ADD", acc, picked, hint="acc", out=out if last else None)
    if acc is not out:
        e.reshape(acc, out=out)


# ---- AffineGrid --------------------------------------------------------------------------------


def _base_grid(sizes, align: bool) -> np.ndarray:
    """[prod(sizes), rank + 1] homogeneous normalized coordinates, x (last axis) first."""
    axes = []
    for size in sizes:
        if align:
            lin = np.linspace(-1.0, 1.0, size)  # size 1: [-1], as the reference
        else:
            lin = (np.arange(size) * 2.0 + 1.0) / size - 1.0
        axes.append(lin)
    mesh = np.meshgrid(*axes, indexing="ij")
    cols = [mm.reshape(-1) for mm in reversed(mesh)] + [np.ones(int(np.prod(sizes)))]
    return np.stack(cols, axis=-1).astype(np.float32)


def _affine_check(node, graph):
    out = graph.values[node.outputs[0]].shape
    if node.attrs.get("align_corners", 0) and any(d == 1 for d in out[1:-1]):
        return "unsupported_attribute_value: align_corners over a size-1 axis (runtimes disagree)"
    return None


@lowering(
    "AffineGrid",
    onnx_order,
    since=20,
    dtype_inputs=(0,),
    attrs=(attr_in("align_corners", (0, 1), 0),),
    extra_check=_affine_check,
    tflite_ops=("BATCH_MATMUL",),
    notes="output size from static shape inference; theta may be runtime",
)
def lower_affine_grid(ctx):
    e = Emitter(ctx)
    out_shape = ctx.out_shape(0)
    n_batch, sizes, rank = out_shape[0], out_shape[1:-1], out_shape[-1]
    base = _base_grid(sizes, bool(ctx.attr("align_corners", 0)))
    base_t = e.const(np.broadcast_to(base, (n_batch, *base.shape)).copy(), np.float32, "base_grid")
    flat = e.matmul(base_t, ctx.input(0), adj_y=True, hint="grid_flat")
    e.reshape(flat, (n_batch, *sizes, rank), out=ctx.output(0))
