"""The float16 variant: weights stored as float16, each feeding a DEQUANTIZE.

Kernels, inputs and outputs stay float32, so the file runs on the plain CPU interpreter (a
model whose every tensor is float16 does not); XNNPACK folds the DEQUANTIZE of static weights
and can run the float16 weights directly. Only float32 constants large enough to matter are
converted: small vectors (biases, scalars) would cost an op each and save nothing.
"""

from __future__ import annotations

import numpy as np

from .. import tfl

MIN_ELEMENTS = 64  # smaller constants stay float32 (an extra op would cost more than it saves)


def to_float16_weights(model: tfl.Model) -> int:
    """Rewrite ``model`` in place; returns how many constants became float16."""
    converted = 0
    for sub in model.subgraphs:
        replacement: dict[int, tfl.Tensor] = {}
        dequantize_ops = []
        for op in sub.operators:
            for i, t in enumerate(op.inputs):
                if not _worth_converting(t):
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


def _worth_converting(t: tfl.Tensor | None) -> bool:
    return (
        t is not None
        and t.data is not None
        and t.dtype == np.float32
        and t.quantization is None
        and t.data.size >= MIN_ELEMENTS
        and bool(np.all(np.isfinite(t.data)))
        and float(np.max(np.abs(t.data), initial=0.0)) <= np.finfo(np.float16).max
    )
