"""MaxUnpool: scatter pooled values back to their argmax positions in a zero image.

``out.flat[I.flat] = X.flat``. SCATTER_ND *adds* values at repeated indices, so a second
SCATTER_ND of ones counts the hits and the sum is divided by ``max(count, 1)``; repeated
indices produced by overlapping MaxPool windows point at the same input element and so carry
equal values, which this reproduces exactly.
"""

from __future__ import annotations

import numpy as np

from ..policies import onnx_order
from ..registry import lowering
from .emit import Emitter


def _scatter_flat(ctx, indices, updates, total: int, hint: str):
    e = Emitter(ctx)
    shape_t = e.const([total], np.int32, "shape")
    return e.op(
        "SCATTER_ND", indices, updates, shape_t, shape=(total,), dtype=updates.dtype, hint=hint
    )


def _inferred_shape(ctx) -> tuple[int, ...]:
    shape = ctx.shape(0)
    kernel = [int(k) for k in ctx.attr("kernel_shape")]
    rank = len(kernel)
    strides = [int(s) for s in ctx.attr("strides", [1] * rank)]
    pads = [int(p) for p in ctx.attr("pads", [0] * (2 * rank))]
    spatial = [
        (shape[2 + i] - 1) * strides[i] - (pads[i] + pads[rank + i]) + kernel[i]
        for i in range(rank)
    ]
    return (shape[0], shape[1], *spatial)


@lowering(
    "MaxUnpool",
    onnx_order,
    since=9,
    ranks=(3, 4, 5),
    tflite_ops=("CAST", "SCATTER_ND", "MAXIMUM", "DIV", "RESHAPE"),
    notes="indices may be runtime; values at repeated indices must be equal (as from MaxPool)",
)
def lower_maxunpool(ctx):
    e = Emitter(ctx)
    if tuple(ctx.out_shape(0)) != _inferred_shape(ctx):
        ctx.refuse(
            "unsupported_attribute_value",
            "output_shape differs from the kernel/stride/pads shape; onnxruntime and the ONNX "
            "reference disagree on how indices address the larger output",
        )
    count = int(np.prod(ctx.shape(0)))
    out_shape = ctx.out_shape(0)
    total = int(np.prod(out_shape))
    flat_idx = e.reshape(ctx.input(1), (count, 1), "flat_indices")
    flat_idx = e.cast(flat_idx, np.int32, "indices_i32")
    values = e.reshape(ctx.input(0), (count,), "flat_values")
    summed = _scatter_flat(ctx, flat_idx, values, total, "scattered")
    ones = e.const(np.ones(count, np.float32), np.float32, "ones")
    hits = _scatter_flat(ctx, flat_idx, ones, total, "hits")
    hits = e.op("MAXIMUM", hits, e.const(1.0), hint="hits_at_least_1")
    mean = e.op("DIV", summed, hits, hint="unpooled")
    e.reshape(mean, out_shape, out=ctx.output(0))
