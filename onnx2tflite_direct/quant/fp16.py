"""The float16 variant: weights stored as float16, each feeding a DEQUANTIZE.

Kernels, inputs and outputs stay float32, so the file runs on the plain CPU interpreter (a
model whose every tensor is float16 does not); XNNPACK folds the DEQUANTIZE of static weights
and can run the float16 weights directly. Only float32 weights (at least two non-unit dims,
``MIN_ELEMENTS`` values) are converted: vectors (biases, per-channel scales and shifts,
scalars) are a fraction of a percent of a model's bytes, and float16 would cost them
accuracy for nothing (a folded normalization's scale in float16 shifts every value of its
channel; the biases also absorb the weights' rounding, see ``variants``).
"""

from __future__ import annotations

import numpy as np

from .. import tfl

MIN_ELEMENTS = 64  # smaller constants stay float32 (an extra op would cost more than it saves)


def to_float16_weights(model: tfl.Model, keep_nodes=frozenset()) -> int:
    """Rewrite ``model`` in place; returns how many constants became float16. Operators of
    the ONNX nodes in ``keep_nodes`` keep float32 constants (``--quant-override``)."""
    converted = 0
    for sub in model.subgraphs:
        replacement: dict[int, tfl.Tensor] = {}
        dequantize_ops = []
        for op in sub.operators:
            if op.onnx_node in keep_nodes:
                continue
            for i, t in enumerate(op.inputs):
                if not will_be_float16(t):
                    continue
                if id(t) not in replacement:
                    half = tfl.Tensor(
                        f"{t.name}/fp16", np.float16, t.shape, data=t.data.astype(np.float16)
                    )
                    full = tfl.Tensor(f"{t.name}/dequantized", np.float32, t.shape)
                    dequantize_ops.append(
                        tfl.Operator("DEQUANTIZE", [half], [full], onnx_node=op.onnx_node)
                    )
                    replacement[id(t)] = full
                    converted += 1
                op.inputs[i] = replacement[id(t)]
        sub.operators[:0] = dequantize_ops
    return converted


def will_be_float16(t: tfl.Tensor | None) -> bool:
    """Whether :func:`to_float16_weights` stores ``t`` as float16."""
    return (
        t is not None
        and t.data is not None
        and t.dtype == np.float32
        and t.quantization is None
        and t.data.size >= MIN_ELEMENTS
        and sum(d > 1 for d in t.data.shape) >= 2
        and bool(np.all(np.isfinite(t.data)))
        and float(np.max(np.abs(t.data), initial=0.0)) <= np.finfo(np.float16).max
    )
