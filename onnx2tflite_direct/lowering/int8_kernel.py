"""LiteRT's dynamically quantized FULLY_CONNECTED with int8 weights of scale 1: the kernel
that ``contrib_quant.exact_dense`` (quantize_dynamic products) and ``lattice_int8`` (static
Q/DQ lattice products) make compute an exact int32 accumulator. A module of its own so that
both reach it without an import circle (contrib_quant imports the contrib lowerings, which
import conv_lattice)."""

from __future__ import annotations

import numpy as np

from .. import tfl
from .emit import Emitter


def int8_weights(ctx, codes: np.ndarray, hint: str) -> tfl.Tensor:
    """The int8 per-channel weight tensor (scale 1, zero point 0) of ``codes`` [N, K']."""
    n = codes.shape[0]
    weights = ctx.const_tensor(codes, f"{hint}_w_int8")
    weights.quantization = tfl.Quantization(
        scale=np.ones(n, np.float32), zero_point=np.zeros(n, np.int64), axis=0
    )
    return weights


def int8_dense(ctx, wide, weights, hint: str):
    """FULLY_CONNECTED of float32 ``wide`` rows with int8 weights (codes [N, K'] or the tensor
    :func:`int8_weights` made of them; an unrolled recurrence passes one tensor to every step,
    so that the kernel packs and streams one copy) of scale 1: the dynamically quantized kernel,
    exact on :func:`lattice_rows` input."""
    if isinstance(weights, np.ndarray):
        weights = int8_weights(ctx, weights, hint)
    n = weights.shape[0]
    return Emitter(ctx).op(
        "FULLY_CONNECTED",
        wide,
        weights,
        None,
        shape=(wide.shape[0], n),
        dtype=np.float32,
        hint=f"{hint}_acc",
        fused_activation_function="NONE",
        keep_num_dims=False,
        asymmetric_quantize_inputs=True,
    )


def im2col_rows(
    e: Emitter, x: tfl.Tensor, kernel: tuple[int, int], hint: str, any_size: bool = False
) -> tfl.Tensor:
    """The im2col rows [N * Ho * Wo, kh * kw * C] of an NHWC ``x`` already padded, stride 1:
    one SLICE per tap (XNNPACK takes SLICE, and a tap is a contiguous window) joined by
    CONCATENATIONs of at most three inputs (XNNPACK's limit).

    ``any_size`` (``dynamic_sizes.sizes_vary``: the input sizes change at run time): each tap is a
    unit-stride STRIDED_SLICE instead, whose ends lie a fixed distance (``k - 1 - tap``) from
    the input's end at every size, which the dynamic-shape lowering counts from the run-time
    end; a SLICE's size ``H - k + 1`` is no such bound and would be refused."""
    kh, kw = kernel
    n, _, _, c = x.shape
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    taps = []
    for ky in range(kh):
        for kx in range(kw):
            if (kh, kw) == (1, 1) and (ho, wo) == tuple(x.shape[1:3]):
                taps.append(x)
                continue
            if any_size:
                taps.append(e.crop(x, [0, ky, kx, 0], [n, ky + ho, kx + wo, c], "tap"))
                continue
            begin = e.const(np.asarray([0, ky, kx, 0], np.int32), np.int32, "begin")
            size = e.const(np.asarray([n, ho, wo, c], np.int32), np.int32, "size")
            taps.append(e.op("SLICE", x, begin, size, shape=(n, ho, wo, c), hint="tap"))
    while len(taps) > 1:
        taps = [
            e.concat(taps[i : i + 3], 3, "taps") if len(taps[i : i + 3]) > 1 else taps[i]
            for i in range(0, len(taps), 3)
        ]
    return e.reshape(taps[0], (n * ho * wo, kh * kw * c), hint)
