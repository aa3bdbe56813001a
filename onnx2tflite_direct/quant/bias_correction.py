"""Bias correction: a weighted op's bias absorbs the average error its rounded weights add.

Shared by every variant that rounds weights (int8 and int16x8 integer, dynamic range,
float16) when calibration data gives the per-channel means of the ops' inputs.
"""

from __future__ import annotations

import numpy as np

from .. import tfl
from .integer_plan import FLOAT, is_float_constant

# Weighted ops whose bias absorbs the weight rounding's average error -> weight output axis.
CORRECTED_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}


def dequantized(w: tfl.Tensor) -> np.ndarray:
    """The values an affine-quantized constant stands for (float64)."""
    q = w.quantization
    scale = np.asarray(q.scale, np.float64)
    zero = np.asarray(q.zero_point, np.float64)
    shape = [1] * w.data.ndim
    if scale.size > 1:
        shape[q.axis] = -1
    return (w.data.astype(np.float64) - zero.reshape(shape)) * scale.reshape(shape)


def correct_bias(
    op: tfl.Operator, w_float: tfl.Tensor, w_rounded: np.ndarray, channel_means, producer=None
) -> bool:
    """Subtract from ``op``'s float bias (made if absent) the average error its rounded weight
    adds, ``(Wq - W) . E[x]`` with ``Wq = w_rounded`` (the values the stored weight stands for:
    int8 dequantized, float16 widened) and E[x] the calibrated per-channel mean of the input
    (Nagel et al. 2019, "bias correction"); True if done. Why: the rounding errors of one
    output channel's weights do not cancel against a non-zero-mean input (after a ReLU every
    input is >= 0); their expected sum is a constant per channel, which the bias can remove,
    leaving only the zero-mean part. Applies to CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
    whose input has measured means (``channel_means``: TFLite tensor name -> means);
    ``producer`` (id(tensor) -> operator) finds a PAD before a convolution."""
    correction = _weight_rounding_mean(op, w_float, w_rounded, channel_means or {}, producer)
    if correction is None:
        return False
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    if bias is not None and not is_float_constant(bias):
        return False
    old = np.zeros(correction.size) if bias is None else bias.data.astype(np.float64)
    name = f"{op.outputs[0].name}/bias" if bias is None else bias.name
    corrected = (old.reshape(-1) - correction).astype(np.float32)
    op.inputs[2:] = [tfl.Tensor(f"{name}/corrected", FLOAT, (correction.size,), data=corrected)]
    return True


def _weight_rounding_mean(op, w_float, w_rounded, channel_means, producer) -> np.ndarray | None:
    """``(Wq - W) . E[x]`` per output channel, or None when no means fit the input."""
    if op.opcode not in CORRECTED_OPS or w_float.data is None:
        return None
    x = op.inputs[0]
    mu = channel_means.get(x.name) if x is not None else None
    if mu is None or x.rank < 2 or mu.size != x.shape[-1]:
        return None
    dw = np.asarray(w_rounded, np.float64) - w_float.data
    if op.opcode != "FULLY_CONNECTED":  # border taps read padding zeros, not the mean
        rows, cols = _taps_inside(op, producer)
        dw = dw * rows.reshape(1, -1, 1, 1) * cols.reshape(1, 1, -1, 1)
    if op.opcode == "DEPTHWISE_CONV_2D":  # [1, kh, kw, C * m]: output o reads o // m
        per_out = dw.sum(axis=(0, 1, 2))
        if per_out.size % mu.size:
            return None
        return per_out * np.repeat(mu, per_out.size // mu.size)
    dw = dw.reshape(dw.shape[0], -1, dw.shape[-1]).sum(axis=1)  # [O, I]
    outs, ins = dw.shape
    groups = mu.size // ins
    if groups * ins != mu.size or outs % groups:
        return None
    per_group = outs // groups
    return np.concatenate(
        [
            dw[g * per_group : (g + 1) * per_group] @ mu[g * ins : (g + 1) * ins]
            for g in range(groups)
        ]
    )


def _taps_inside(op: tfl.Operator, producer) -> tuple[np.ndarray, np.ndarray]:
    """Per kernel row and column of a 2-D convolution, the fraction of output positions at
    which that tap reads the image rather than zero padding (SAME padding, or a PAD of zeros
    before a VALID convolution); all ones when nothing is padded."""
    x, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    o = op.options
    size, pad = list(x.shape[1:3]), [0, 0]
    if o.get("padding") == "SAME":
        for d, (stride, dil, k) in enumerate(
            (
                (o.get("stride_h", 1), o.get("dilation_h_factor", 1), w.shape[1]),
                (o.get("stride_w", 1), o.get("dilation_w_factor", 1), w.shape[2]),
            )
        ):
            total = (y.shape[1 + d] - 1) * stride + (k - 1) * dil + 1 - size[d]
            pad[d] = max(total, 0) // 2
    else:
        pad_op = producer.get(id(x)) if producer else None
        if pad_op is not None and pad_op.opcode == "PAD" and pad_op.inputs[1].data is not None:
            amounts = np.asarray(pad_op.inputs[1].data).reshape(-1, 2)
            if amounts.shape[0] == 4:
                pad = [int(amounts[1, 0]), int(amounts[2, 0])]
                size = [x.shape[1] - int(amounts[1].sum()), x.shape[2] - int(amounts[2].sum())]
    fractions = []
    for d, (stride, dil) in enumerate(
        (
            (o.get("stride_h", 1), o.get("dilation_h_factor", 1)),
            (o.get("stride_w", 1), o.get("dilation_w_factor", 1)),
        )
    ):
        starts = np.arange(y.shape[1 + d])[:, None] * stride - pad[d]
        read = starts + np.arange(w.shape[1 + d])[None, :] * dil
        fractions.append(((read >= 0) & (read < size[d])).mean(axis=0))
    return fractions[0], fractions[1]
