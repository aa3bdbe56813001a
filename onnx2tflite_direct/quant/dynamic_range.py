"""The dynamic-range variant: int8 weights, float activations, LiteRT's hybrid kernels.

Per LiteRT's quantization spec (hybrid kernels): CONV_2D and FULLY_CONNECTED take per-channel weights on axis 0,
DEPTHWISE_CONV_2D on axis 3 (one scale per output channel); weights are symmetric int8 in
[-127, 127]; weights under 1,024 elements stay float (as the reference quantizer does); the
asymmetric per-batch input scheme is used. A weight read by any other op stays float, so no
DEQUANTIZE is needed.
"""

from __future__ import annotations

import numpy as np

from .. import tfl

MIN_ELEMENTS = 1024
# Hybrid-capable op -> the weight's output-channel axis.
HYBRID_WEIGHT_AXIS = {"CONV_2D": 0, "FULLY_CONNECTED": 0, "DEPTHWISE_CONV_2D": 3}
PER_CHANNEL_SCALES_ONLY = {"DEPTHWISE_CONV_2D"}


def quantize_weights_int8(
    model: tfl.Model, per_channel: bool = True, keep_nodes=frozenset()
) -> int:
    """Rewrite ``model`` in place; returns how many weight tensors became int8.

    ``per_channel=False`` gives one scale per weight tensor (``--quant-type per-tensor``);
    operators of the ONNX nodes in ``keep_nodes`` keep float weights (``--quant-override``)."""
    converted = 0
    for sub in model.subgraphs:
        readers = sub.consumers()  # (only constants' readers are asked for)
        done: dict[int, tfl.Tensor] = {}
        for op in sub.operators:
            axis = HYBRID_WEIGHT_AXIS.get(op.opcode)
            w = op.inputs[1] if axis is not None and len(op.inputs) > 1 else None
            if op.onnx_node in keep_nodes or not _eligible(w, op, readers):
                continue
            if id(w) not in done:
                done[id(w)] = hybrid_weight(w, op.opcode, per_channel)
                converted += 1
            op.inputs[1] = done[id(w)]
            if op.opcode == "FULLY_CONNECTED":
                op.options["asymmetric_quantize_inputs"] = True
    return converted


def quantizable_weight(w: tfl.Tensor | None) -> bool:
    """A constant float32 weight, not yet quantized, large enough to pay for a quantized form
    (``MIN_ELEMENTS``) and finite: what the weight-only variants (dynamic, int4) may store."""
    return (
        w is not None
        and w.data is not None
        and w.dtype == np.float32
        and w.quantization is None
        and w.data.size >= MIN_ELEMENTS
        and bool(np.all(np.isfinite(w.data)))
    )


def _eligible(w: tfl.Tensor | None, op: tfl.Operator, readers) -> bool:
    if not quantizable_weight(w):
        return False
    if op.inputs[0] is None or op.inputs[0].dtype != np.float32:
        return False
    # Every reader must be a hybrid op reading it as its weight on the same axis.
    return all(o.opcode == op.opcode and i == 1 for o, i in readers.get(id(w), []))


def hybrid_weight(w: tfl.Tensor, opcode: str, per_channel: bool) -> tfl.Tensor:
    """``w`` as the symmetric int8 weight of hybrid ``opcode``. Per tensor still writes one
    scale per output channel (all equal) for DEPTHWISE_CONV_2D: its hybrid kernel reads a
    scale per channel and would run off the end of a single one."""
    axis = HYBRID_WEIGHT_AXIS[opcode]
    q = _int8_symmetric(w, axis if per_channel else None)
    if not per_channel and opcode in PER_CHANNEL_SCALES_ONLY:
        channels = w.shape[axis]
        q.quantization = tfl.Quantization(
            scale=np.repeat(q.quantization.scale, channels),
            zero_point=np.zeros(channels, np.int64),
            axis=axis,
        )
    return q


def _int8_symmetric(w: tfl.Tensor, axis: int | None) -> tfl.Tensor:
    """Symmetric int8 in [-127, 127]: one scale per slice along ``axis`` (None: per tensor)."""
    data = np.moveaxis(w.data.astype(np.float32), axis or 0, 0)
    flat = data.reshape(data.shape[0] if axis is not None else 1, -1)
    scale = np.abs(flat).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)  # all-zero channels
    q = np.clip(np.rint(flat / scale[:, None]), -127, 127).astype(np.int8)
    q = np.moveaxis(q.reshape(data.shape), 0, axis or 0)
    quant = tfl.Quantization(scale=scale, zero_point=np.zeros_like(scale, np.int64), axis=axis or 0)
    return tfl.Tensor(
        f"{w.name}/int8", np.int8, w.shape, data=np.ascontiguousarray(q), quantization=quant
    )
