"""HannWindow, HammingWindow, BlackmanWindow: constants of the (constant) window size.

A window's length is its input's *value*, so a runtime size means a runtime output shape,
which TFLite cannot express: those are refused. Constant sizes are normally folded before
lowering; the lowering below covers graphs where folding was skipped.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from .. import errors
from ..policies import onnx_order
from ..registry import INTS, lowering

# Generalized cosine windows: w[n] = sum_k (-1)^k a_k cos(2 pi k n / N).
COEFFS = {
    "HannWindow": (0.5, 0.5),
    "HammingWindow": (25 / 46, 21 / 46),
    "BlackmanWindow": (0.42, 0.5, 0.08),
}


def window_values(op_type: str, size: int, periodic: bool) -> np.ndarray:
    denom = size if periodic else size - 1
    n = np.arange(size, dtype=np.float64)
    w = np.zeros(size)
    for k, a in enumerate(COEFFS[op_type]):
        w += (-1) ** k * a * np.cos(2 * np.pi * k * n / max(denom, 1))
    return w


def _make(op_type: str):
    def lower(ctx):
        size = int(np.asarray(ctx.const(0)).reshape(-1)[0])
        if size < 2 and not ctx.attr("periodic", 1):
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "symmetric window of size < 2 (0/0)")
        dtype = helper.tensor_dtype_to_np_dtype(int(ctx.attr("output_datatype", 1)))
        values = window_values(op_type, size, bool(ctx.attr("periodic", 1))).astype(dtype)
        ctx.alias_output(0, ctx.const_tensor(values, "window"), ctx.out_layout(0))

    return lower


for _op in COEFFS:
    lowering(
        _op,
        onnx_order,
        since=17,
        dtypes=INTS,
        const_inputs=(0,),
        tflite_ops=(),
        notes="constant size only (the output length is the size's value)",
    )(_make(_op))
