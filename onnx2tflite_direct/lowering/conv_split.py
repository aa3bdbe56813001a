"""A CONV_2D whose constant float32 filter is larger than :data:`MAX_FILTER_BYTES` runs as
several CONV_2Ds over slices of its output channels, joined by CONCATENATION.

Why (``benchmarks/bench_lowering_forms.py``, x86-64 with a 32 MiB L3, 1 thread): XNNPACK's
convolution walks the output rows in small tiles and streams the whole packed filter once per
tile. A filter that fits the last-level cache is streamed from there; a larger one comes from
memory every time. FCN-ResNet50's head (3x3, 2048 -> 512 channels, a 36 MiB filter, on a 16x16
map) ran 2.2-2.6x onnxruntime's time (whose GEMM packs the filter in cache-sized blocks); as
four convs of 128 output channels (9 MiB each) 1.1x. Splitting the output channels keeps every
output's sum exactly the single conv's (same products, same order), unlike a split of the
input channels, which would add partial sums.
"""

from __future__ import annotations

import numpy as np

from .emit import Emitter

SPLIT_LARGE_FILTERS = True  # benchmarks/bench_lowering_forms.py turns it off to time one conv
MAX_FILTER_BYTES = 10 * 2**20


def output_parts(ctx, w, group: int, one_d: bool) -> int:
    """How many output-channel slices a plain (group 1, 2-D) conv with the constant ONNX
    filter ``w`` [O, I, kH, kW] runs as (1: not split)."""
    if not SPLIT_LARGE_FILTERS or w is None or group != 1 or one_d:
        return 1
    w = np.asarray(w)
    if w.dtype != np.float32 or w.nbytes <= MAX_FILTER_BYTES:
        return 1
    if ctx.has_input(2) and ctx.const(2) is None:  # a run-time bias: keep one conv
        return 1
    return min(int(w.shape[0]), -(-w.nbytes // MAX_FILTER_BYTES))


def emit_split(ctx, x, w, out, options: dict, parts: int) -> None:
    """CONV_2D per slice of output channels of ``w`` [O, I, kH, kW] into ``out`` (NHWC)."""
    e = Emitter(ctx)
    o = int(w.shape[0])
    bias = np.asarray(ctx.const(2), np.float32) if ctx.has_input(2) else np.zeros(o, np.float32)
    pieces = []
    for idx in np.array_split(np.arange(o), parts):
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        filt = np.ascontiguousarray(np.transpose(w[lo:hi], (0, 2, 3, 1)))
        pieces.append(
            e.op(
                "CONV_2D",
                x,
                ctx.const_tensor(filt, "filter_slice"),
                ctx.const_tensor(np.ascontiguousarray(bias[lo:hi]), "bias_slice"),
                shape=(*out.shape[:3], hi - lo),
                hint="conv_slice",
                **options,
            )
        )
    e.concat(pieces, 3, out=out)
