"""Bilinear GridSample with zero padding over a small one-channel 2-D input as one BATCH_MATMUL.

Why: the general lowering (``grid.py``) gathers the four corners of every output position with
GATHER_ND, after integer index arithmetic (CAST, comparisons, LOGICAL_AND, CONCATENATION):
none of it is XNNPACK's, so each GridSample runs on LiteRT's builtin kernels between two
partitions. RAFT's correlation lookup samples 7x7 windows from 16x16 .. 2x2 maps 16 times: 1 ms
a GridSample there against onnxruntime's 0.2 ms (``benchmarks/bench_lowering_forms.py``).

Bilinear interpolation with zero padding is, per axis, a tent: the weight of input row i for
the unnormalized coordinate y is ``max(0, 1 - |y - i|)`` (1 - dy at floor(y), dy at floor(y)+1,
0 elsewhere, including at rows outside the input, which is the zero padding). So each output
of a one-channel input is ``sum_i wy[i] sum_j wx[j] x[i, j]``: the x tent [N, P, W] times the
input [N, H, W] read transposed (BATCH_MATMUL, adj_y), weighted by the y tent and summed over
the rows (MUL, SUM). Every op is XNNPACK's. The sums run over all H*W positions (zeros
included), so it pays only for small inputs (:data:`MAX_POSITIONS`), and only with one channel
(measured: 1.1-1.35x onnxruntime against 4.1-4.6x for the gathers at 16x16 and 12x20; with 3-4
channels, where the product needs the input's rows in the other order, 1.4-1.8x against
1.4-1.5x, no gain). The same products as the corner form; the weight of floor(y)+1 is
``1 - (1 - dy)`` instead of ``dy`` (within an ulp of 1), and the summation order differs.
"""

from __future__ import annotations

import numpy as np

from .emit import Emitter

TENT_GRIDSAMPLE = True  # benchmarks/bench_lowering_forms.py turns it off to time the corner form
MAX_POSITIONS = 256  # H*W of the input at most (measured: 16x16 wins, see the benchmark)


def applies(ctx, mode: str, padding: str) -> bool:
    x_shape = ctx.shape(0)
    return (
        TENT_GRIDSAMPLE
        and mode == "linear"
        and padding == "zeros"
        and len(x_shape) == 4
        and int(x_shape[1]) == 1
        and int(x_shape[2]) * int(x_shape[3]) <= MAX_POSITIONS
    )


def _tent(m, e, coord, size: int, n: int, p: int):
    """[N, P, size] weights max(0, 1 - |coord - i|) of the input positions i < size."""
    c3 = e.reshape(coord, (n, p, 1), "coord")
    d = m.sub(c3, e.const(np.arange(size, dtype=np.float32).reshape(1, 1, size), hint="taps"))
    d = e.op("ABS", d, hint="distance")
    return e.op("RELU", m.sub(1.0, d), hint="tent")


def lower_tent(ctx, m, grid, unnormalize, align: bool) -> None:
    """Emit the GridSample (see module doc); ``grid`` [N, Ho, Wo, 2] (x, y)."""
    e = Emitter(ctx)
    n, c, h, w = (int(s) for s in ctx.shape(0))
    out = ctx.output(0)
    p = int(np.prod(out.shape[1:-1]))
    flat = e.reshape(grid, (n, p, 2), "grid")
    # unit-stride slices, not SPLIT_V: XNNPACK takes those
    coords = [e.crop(flat, [0, 0, k], [n, p, k + 1], "coord") for k in (0, 1)]
    gx = unnormalize(m, coords[0], w, align)
    gy = unnormalize(m, coords[1], h, align)
    wx = _tent(m, e, gx, w, n, p)  # [N, P, W]
    wy = _tent(m, e, gy, h, n, p)  # [N, P, H]
    # rows[n, p, i] = sum_j wx[n, p, j] x[n, i, j] (B read transposed, adj_y: 2x faster)
    image = e.reshape(ctx.input(0), (n, h, w), "image")
    rows = e.matmul(wx, image, adj_y=True, hint="rows")
    weighted = m.mul(rows, wy)  # [N, P, H]
    e.reshape(e.reduce("SUM", weighted, [2], keep_dims=False, hint="sampled"), out=out)
