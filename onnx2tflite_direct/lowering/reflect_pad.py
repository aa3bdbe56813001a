"""Pad(mode=reflect) with small constant pads as unit-stride slices joined by CONCATENATION.

Why: LiteRT's MIRROR_PAD kernel is not XNNPACK's and computes every output element through a
recursive index walk: 0.5 ms to pad a [1, 32, 3200] signal by 3 on each side, where onnxruntime
takes 0.01 ms (``benchmarks/bench_lowering_forms.py``). EnCodec pads each of its 1-D convs that
way (13 MIRROR_PADs: most of its time, and a partition boundary at each). A reflect pad of p
along an axis is p one-element slices of the input (positions p, p-1, ..., 1 before it and
n-2, ..., n-1-p after), the input, joined along that axis: copies only, the same values as
MIRROR_PAD (no arithmetic), all XNNPACK ops. Only for pads of at most :data:`MAX_PAD` a side
(the CONCATENATION has 2p+1 inputs).
"""

from __future__ import annotations

import numpy as np

from .emit import Emitter

REFLECT_AS_SLICES = True  # benchmarks/bench_lowering_forms.py turns it off to time MIRROR_PAD
MAX_PAD = 8
# the XNNPACK delegate takes a CONCATENATION of at most this many inputs (more: outside it)
MAX_CONCAT_INPUTS = 5


def reflect_as_slices(ctx, x, stored_pads, out) -> bool:
    """Reflect-pad ``x`` by ``stored_pads`` [(before, after)] per stored axis into ``out``;
    False (nothing emitted) when the pads are too large or not a reflection of the input."""
    if not REFLECT_AS_SLICES or np.dtype(x.dtype) != np.float32:
        return False
    shape = [int(s) for s in x.shape]
    if ctx.driver.options.gpu_friendly and len(shape) < 3:
        # The GPU takes no 1-D/2-D SLICE: the rewrite slice_rank_lift would lift each one, 2
        # RESHAPEs per slice (a 3+3 pad of [1, 3200]: 12 RESHAPEs, 6 slices, 2 joins), where
        # pad_rank_lift lifts one MIRROR_PAD (2 RESHAPEs + 1). Both are fully delegated; this
        # is chosen here because no --gpu-friendly rewrite turns the slices back into a pad.
        return False
    padded = [k for k, p in enumerate(stored_pads) if tuple(p) != (0, 0)]
    for k in padded:
        b, a = stored_pads[k]
        if b < 0 or a < 0 or max(b, a) > MAX_PAD or max(b, a) >= shape[k]:
            return False
    e = Emitter(ctx)
    cur = x
    for n, k in enumerate(padded):
        b, a = (int(v) for v in stored_pads[k])
        size = int(cur.shape[k])
        picks = [*range(b, 0, -1)]  # before: x[b], ..., x[1]
        after = [size - 1 - j for j in range(1, a + 1)]  # after: x[n-2], ..., x[n-1-a]
        pieces = [_one(e, cur, k, i) for i in picks] + [cur] + [_one(e, cur, k, i) for i in after]
        last = n == len(padded) - 1
        while len(pieces) > MAX_CONCAT_INPUTS:  # nested joins: XNNPACK's limit
            head = e.concat(pieces[:MAX_CONCAT_INPUTS], k, hint="reflected_part")
            pieces = [head, *pieces[MAX_CONCAT_INPUTS:]]
        cur = e.concat(pieces, k, hint="reflected", out=out if last else None)
    return True


def _one(e, x, axis: int, i: int):
    begin = [0] * len(x.shape)
    end = [int(s) for s in x.shape]
    begin[axis], end[axis] = i, i + 1
    return e.crop(x, begin, end, "reflect_slice")
