"""A static Q/DQ model's lattice products on LiteRT's int8 kernel, exact (issue 22).

lowering/conv_lattice.py computes a QDQ Conv / MatMul / Gemm as onnxruntime's QLinearConv /
QLinearMatMul / QGemm do: the int32 sum ``sum_k x_c[k] * w[k, n] + bias[n]`` of the centred
activation integers ``x_c = q - zp`` (a 256-value lattice ``[lo, hi]``), the int8 weights and
the int32 bias, converted to float32 once. It gets that sum from float32 convs / FULLY_CONNECTEDs
on integer-valued floats, split into 2-3 weight digits where a channel's bound reaches 2**24.

Here the same sum runs on the dynamically quantized FULLY_CONNECTED that
``contrib_quant.exact_dense`` makes exact (int8 weights of scale 1; two lattice-end columns
``lo`` and ``hi`` in every row pin the kernel's per-row input quantization to scale 1 and exact
codes): one int8 GEMM whose int32 accumulator is the whole sum, whatever its size, converted
to float32 once. The bias joins the int32 sum as columns of the row too (a float bias of the
FULLY_CONNECTED would be added after the conversion: a second rounding past 2**24): ``m``
columns holding the lattice end ``E`` of largest magnitude (>= 128) with weights ``W_n``
(``bias = W_n * E + r_n``, ``W_n`` split into parts of at most 127) and two holding a unit
``u = +-1`` with weights ``r_n * u`` (|r_n| < 256). Every such value lies on the row's
lattice, so its code is exact. A Conv (2-D, group 1, dilation 1) first becomes im2col rows
(PAD with the real zero, i.e. centred 0; one SLICE per tap, of a stride-block view when
strided; CONCATENATIONs of at most 3) -- the ExactIntegerConv form.

Which form runs is a cost choice (:func:`int8_pays`), not a per-model rule: the float form
costs one float MAC per weight per reduced digit row, the int8 form ``INT8_MAC`` per weight
(int8 GEMM, XNNPACK's qd8-f32-qc8w) plus ``COPY`` per row element it copies (im2col, the row
columns). The exactness argument uses only integer arithmetic in int32 and one int32 -> float32
conversion; code rows a kernel could not sum (``float_carried.ROW_SUM_LANE_MAX``, the x86
builtin kernel's int16 row-sum lanes) keep the float form.
"""

from __future__ import annotations

import math

import numpy as np

from .. import tfl
from ..float_carried import INT8_MAX, ROW_SUM_LANE_MAX, conv_rows_weights
from .dynamic_sizes import sizes_vary
from .emit import Emitter
from .int8_kernel import im2col_rows, int8_dense, int8_weights
from .integer_digits import split_rows

# Switch (benchmarks/bench_outliers.py's ``int8_lattice_products`` turns it off for "before").
LATTICE_ON_INT8_KERNEL = True
# Cost model in units of one float32 MAC of XNNPACK's GEMM, fitted to
# benchmarks/results/lattice_int8.json (each form forced, 13 shapes: the model picks the faster
# form at every one): INT8_MAC per weight of the int8 GEMM, COPY per row element copied or
# quantized (im2col taps and their CONCATENATIONs, the row's columns, the row quantization),
# TAP per im2col tap and output pixel (a SLICE row of few channels costs more than its bytes:
# 3 -> 64 channels 3x3 ran 2.3x slower as int8).
INT8_MAC = 0.35
COPY = 24.0
TAP = 200.0


def int8_pays(pixels: int, k: int, n: int, float_rows: int, copied: int, taps: int = 0) -> bool:
    """Is the int8 form cheaper? ``pixels`` rows of ``k`` products into ``n`` outputs; the float
    form reduces ``float_rows`` output rows (digits included), the int8 form copies ``copied``
    elements per row besides its own columns and slices ``taps`` im2col taps per row."""
    float_cost = pixels * k * float_rows
    int8_cost = pixels * (k * n * INT8_MAC + (copied + k + 2) * COPY + taps * TAP)
    return int8_cost < float_cost


def lattice_codes(w_rows: np.ndarray, bias: np.ndarray, lo: int, hi: int):
    """(int8 codes [N, K'], the constant tail of every input row, input copies) of the exact
    sum ``sum_k x[k] * w_rows[n, k] + bias[n]`` for ``x`` on ``[lo, hi]`` (hi - lo = 255,
    lo <= 0 <= hi), or None when a code row's sum would overflow the x86 builtin kernel's
    int16 row-sum lanes. The row is ``[x] * copies + tail``; tail ends with ``lo, hi``."""
    w = np.asarray(w_rows, np.int64).T  # [K, N]
    bias = np.asarray(bias, np.int64).reshape(-1)
    parts, rest = [], w
    while not parts or np.any(rest):
        part = np.clip(rest, -INT8_MAX, INT8_MAX)
        parts.append(part)
        rest = rest - part
    tail_values, tail_rows = [], []
    if np.any(bias):
        big = lo if -lo > hi else hi  # |big| >= 128
        unit = 1 if hi >= 1 else -1
        whole = np.sign(bias) * (np.abs(bias) // abs(big)) * np.sign(big)  # toward zero
        rem = (bias - whole * big) * unit  # |rem| < |big| <= 255: two parts
        for _ in range(max(1, math.ceil(int(np.max(np.abs(whole))) / INT8_MAX))):
            part = np.clip(whole, -INT8_MAX, INT8_MAX)
            tail_values.append(big)
            tail_rows.append(part)
            whole = whole - part
        for _ in range(2):
            part = np.clip(rem, -INT8_MAX, INT8_MAX)
            tail_values.append(unit)
            tail_rows.append(part)
            rem = rem - part
        assert not np.any(whole) and not np.any(rem)
    zero = np.zeros(w.shape[1], np.int64)
    codes = np.concatenate([*parts, np.stack([*tail_rows, zero, zero])], 0).T
    blocked = codes.shape[1] // 16 * 16
    lanes = codes[:, :blocked].reshape(codes.shape[0], -1, 8, 2).sum(axis=(1, 3))
    if lanes.size and np.max(np.abs(lanes)) > ROW_SUM_LANE_MAX:
        return None
    return np.ascontiguousarray(codes.astype(np.int8)), [*tail_values, lo, hi], len(parts)


def lattice_sums(ctx, x2: tfl.Tensor, plan, hint: str = "lattice") -> tfl.Tensor:
    """The [rows, N] float32 of the exact int32 sums for rows ``x2`` [rows, K] (float32
    integers on the lattice) and a :func:`lattice_codes` plan: the row ``[x2] * copies +
    tail`` (the tail's row count taken from the data, so a resized input resizes it) on the
    int8 FULLY_CONNECTED."""
    e = Emitter(ctx)
    codes, tail, copies = plan
    rows = x2.shape[0]
    begin = e.const(np.zeros(2, np.int32), np.int32, "begin")
    size = e.const(np.asarray([rows, 1], np.int32), np.int32, "size")
    first = e.op("SLICE", x2, begin, size, shape=(rows, 1), hint=f"{hint}_first")
    zeros = e.op("MUL", first, e.const(0.0, hint="zero"), hint=f"{hint}_zeros")
    tail_t = e.const(np.asarray([tail], np.float32), hint=f"{hint}_tail")
    tail_rows = e.op("ADD", zeros, tail_t, shape=(rows, len(tail)), hint=f"{hint}_tail_rows")
    wide = e.concat([x2] * copies + [tail_rows], 1, f"{hint}_row")
    return int8_dense(ctx, wide, int8_weights(ctx, codes, hint), hint)


def _whole(lattice) -> np.ndarray:
    """The integer weights of a conv_lattice.IntegerConv (its digits recombined)."""
    return sum(np.asarray(d, np.int64) << (lattice.bits * k) for k, d in enumerate(lattice.digits))


def _float_rows(lattice) -> int:
    """Output rows the float form reduces: one per channel and digit (the high digit of two
    over only the channels that need it, conv_lattice.HIGH_DIGIT_SUBSET)."""
    channels = len(lattice.bias)
    if len(lattice.digits) == 2:
        return channels + split_rows(lattice.digits)
    return channels * len(lattice.digits)


def dense_sums(ctx, lattice, span, out_shape):
    """The exact sums of a lattice MatMul / Gemm (conv_lattice.integer_dense: ``lattice`` an
    IntegerConv of [N, K] weight digits over ``centred`` [..., K] on ``span``) shaped
    ``out_shape``, or None when the float form is kept (switch, cost, lanes)."""
    if not LATTICE_ON_INT8_KERNEL or lattice.offset:
        return None
    centred, w_rows, bias = lattice.centred, _whole(lattice), lattice.bias
    float_rows = _float_rows(lattice)
    n, k = w_rows.shape
    pixels = math.prod(centred.shape) // k
    plan = lattice_codes(w_rows, bias, *span)
    if plan is None:
        return None
    copied = (plan[2] - 1) * k + len(plan[1])
    if not int8_pays(pixels, k, n, float_rows, copied):
        return None
    e = Emitter(ctx)
    x2 = e.reshape(centred, (pixels, k), "lattice_rows")
    acc = lattice_sums(ctx, x2, plan)
    return e.reshape(acc, tuple(out_shape), "integer_sum")


def conv_sums(ctx, lattice, geometry, out_hw):
    """The exact sums [N, Ho, Wo, O] of a lattice Conv (2-D, group 1, dilation 1;
    ``lattice`` the conv_lattice.IntegerConv: NHWC centred integers on ``lattice.span``,
    [O, C, kh, kw] weight digits) as im2col rows on the int8 kernel; None when the float form
    is kept. The rows read the unshifted integers (padding is the real zero, centred 0), so an
    IntegerConv offset's ``offset * sum(w)`` leaves the bias again."""
    span = getattr(lattice, "span", None)
    if not LATTICE_ON_INT8_KERNEL or span is None:
        return None
    x, w = lattice.centred, _whole(lattice)
    float_rows = _float_rows(lattice)
    if len(x.shape) != 4 or w.ndim != 4 or w.shape[1] != x.shape[3]:
        return None  # grouped, or not channel-last 2-D
    bias = lattice.bias - lattice.offset * w.reshape(w.shape[0], -1).sum(axis=1)
    kernel, strides, dilations, pads = geometry
    if any(d != 1 for d in dilations) or len(kernel) != 2:
        return None
    o, c, kh, kw = w.shape
    n = x.shape[0]
    ho, wo = out_hw
    rows_w = conv_rows_weights(np.asarray(w, np.int64)).T  # [O, kh * kw * C]
    k = rows_w.shape[1]
    plan = lattice_codes(rows_w, bias, *span)
    if plan is None:
        return None
    copied, taps = plan[2] * k + len(plan[1]), kh * kw
    strided = any(s != 1 for s in strides)
    any_size = sizes_vary(ctx)
    if strided and any_size:  # the stride blocks' end padding and tap sizes follow the size
        return None  # modulo the stride: the float form, valid at every size
    if (kh, kw) == (1, 1) and not any(p for pair in pads for p in pair) and not strided:
        copied, taps = (plan[2] - 1) * k + len(plan[1]), 0  # the input is the rows
    if not int8_pays(n * ho * wo, c * kh * kw, o, float_rows, copied, taps):
        return None
    e = Emitter(ctx)
    if strided:
        x2 = _strided_rows(e, x, (kh, kw), strides, pads, out_hw)
        return e.reshape(lattice_sums(ctx, x2, plan), (n, ho, wo, o), "integer_sum")
    if any(p for pair in pads for p in pair):
        x = e.pad(x, [(0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)])
    x2 = im2col_rows(e, x, (kh, kw), "im2col_rows", any_size=any_size)
    acc = lattice_sums(ctx, x2, plan)
    return e.reshape(acc, (n, ho, wo, o), "integer_sum")


def _strided_rows(e, x, kernel, strides, pads, out_hw):
    """im2col rows [N * Ho * Wo, kh * kw * C] (tap-major) of a strided conv: the padded input
    (also padded at the end to whole stride blocks, never read) viewed as [N, H / sy, sy,
    W / sx, sx * C], so that each tap is one unit-stride SLICE of a phase (rank 5: the builtin
    SLICE's limit; XNNPACK takes it) -- no STRIDED_SLICE."""
    n, h, w, c = x.shape
    (kh, kw), (sy, sx), (ho, wo) = kernel, strides, out_hw
    (top, bottom), (left, right) = pads
    hp, wp = h + top + bottom, w + left + right
    bottom, right = bottom + (-hp) % sy, right + (-wp) % sx
    if top or bottom or left or right:
        x = e.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)])
    hb, wb = x.shape[1] // sy, x.shape[2] // sx
    blocks = e.reshape(x, (n, hb, sy, wb, sx * c), "stride_blocks")
    taps = []
    for ky in range(kh):
        for kx in range(kw):
            begin = [0, ky // sy, ky % sy, kx // sx, (kx % sx) * c]
            begin = e.const(np.asarray(begin, np.int32), np.int32, "begin")
            size = e.const(np.asarray([n, ho, 1, wo, c], np.int32), np.int32, "size")
            taps.append(e.op("SLICE", blocks, begin, size, shape=(n, ho, 1, wo, c), hint="tap"))
    while len(taps) > 1:
        taps = [
            e.concat(taps[i : i + 3], 4, "taps") if len(taps[i : i + 3]) > 1 else taps[i]
            for i in range(0, len(taps), 3)
        ]
    return e.reshape(taps[0], (n * ho * wo, kh * kw * c), "im2col_rows")
