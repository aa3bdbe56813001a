"""Default activation widths inside the int8 integer files: normalizations and recurrent cells
run at int16x8.

Why normalizations: a LayerNormalization (or RMSNorm, an LRN ...) lowered to MEAN / SUB / MUL /
MEAN / ADD / RSQRT / MUL squares its input and takes the reciprocal square root of a variance;
an int8 step on the squared deviations and the variance is coarse (the variance spans orders of
magnitude across rows), and the error lands in every element of the normalized row. The same
operators at int16 activations (LiteRT has 16x8 kernels for each, requantized to int8 at the
node's boundary) are more accurate than the float island they replace: ViT-S int8 full-integer
9.8 dB with float LayerNorms, 8.8 dB with int8 ones, 9.9 dB with int16 ones
(benchmarks/bench_full_integer.py).

Why recurrent cells (LSTM/GRU/RNN unrolled into FULLY_CONNECTED / LOGISTIC / TANH / MUL / ADD):
the state is fed back every step, so int8 rounding accumulates over the sequence; LiteRT's own
integer LSTM keeps its cell state in int16 for that reason (the 8x8->16 scheme). At int16
activations with int8 weights: 2-layer LSTM 27.6 -> 34.6 dB, GRU 29.7 -> 36.6 dB over 16 steps.

Why average pools with an even window count: the int8 AVERAGE_POOL_2D kernel divides the
window's sum of raw int8 values by the count N of in-image taps, rounding half away from zero,
and must write its input's scale. With N even, a sum lands exactly halfway 1/N of the time
(1/4 for 2x2), always rounded the same way for a channel whose values sit on one side of the
raw zero: a systematic per-channel error of up to 1/(2N) step that no later rounding averages
away (a global pool, a classifier, a BatchNorm's gain amplify it). At int16 the same rounding
is 256x finer. DenseNet-121 (three 2x2 transition pools): full-integer 14.1 -> 16.7 dB,
onnxruntime QDQ 15.4 (benchmarks/bench_calibration_ranges.py). A whole-image window is not
one of them (it becomes a MEAN, ``integer_fold``), nor an odd count (no ties).

A node the user overrode (``--quant-override``) keeps the override; the choice shows in the
report's per-node precisions (``default``).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from .. import tfl
from .overrides import Override, Resolved

# Operators that mark an ONNX node as a normalization computed from its own statistics.
NORMALIZING_OPS = frozenset({"RSQRT"})
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})
WIDE = Override(
    "(normalization, recurrent cell or even-count average pool)", "int16x8", -1, re.compile(r"(?!)")
)


def recurrent_nodes(onnx_model) -> frozenset[str]:
    """Labels (``tfl.Operator.onnx_node``) of the model's LSTM/GRU/RNN nodes."""
    if onnx_model is None:
        return frozenset()
    return frozenset(
        node.name or f"{node.op_type}:{node.output[0] if node.output else '?'}"
        for node in onnx_model.graph.node
        if node.op_type in RECURRENT_OPS
    )


def with_wide_nodes(
    sub: tfl.Subgraph, overrides: Resolved, activations: str, recurrent=frozenset()
) -> Resolved:
    """``overrides`` plus int16x8 for every normalization node and every recurrent node of
    ``recurrent`` the user did not override, in the int8 files (the int16x8 ones are wide)."""
    if activations != "int8":
        return overrides
    # (an LSTM run by LiteRT's integer sequence kernel is int8 by that kernel's contract)
    kernels = {op.onnx_node for op in sub.operators if op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM"}
    nodes = {
        op.onnx_node
        for op in sub.operators
        if op.onnx_node
        and (op.opcode in NORMALIZING_OPS or op.onnx_node in recurrent or ties_in_average_pool(op))
        and overrides.get(op.onnx_node) is None
        and op.onnx_node not in kernels
    }
    if not nodes:
        return overrides
    by_label = {**overrides.by_label, **dict.fromkeys(sorted(nodes), WIDE)}
    return dataclasses.replace(overrides, overrides=(*overrides.overrides, WIDE), by_label=by_label)


def ties_in_average_pool(op: tfl.Operator) -> bool:
    """An AVERAGE_POOL_2D (not whole-image) some window of which averages an even number of
    in-image values: the int8 kernel's halfway ties bias it (see the module docstring)."""
    if op.opcode != "AVERAGE_POOL_2D" or op.inputs[0].rank != 4 or op.outputs[0].rank != 4:
        return False
    o, x, y = op.options, op.inputs[0], op.outputs[0]
    filters = (int(o.get("filter_height", 1)), int(o.get("filter_width", 1)))
    strides = (int(o.get("stride_h", 1)), int(o.get("stride_w", 1)))
    same = o.get("padding") == "SAME"
    if not same and filters == tuple(x.shape[1:3]):
        return False  # one whole-image window: a MEAN in the integer files
    counts = []
    for size, out, f, s in zip(x.shape[1:3], y.shape[1:3], filters, strides, strict=True):
        if not (isinstance(size, int) and isinstance(out, int) and size > 0 and out > 0):
            return False  # dynamic: counts unknown
        pad = max((out - 1) * s + f - size, 0) // 2 if same else 0
        start = np.arange(out) * s - pad
        counts.append(np.minimum(start + f, size) - np.maximum(start, 0))
    return bool(np.any((counts[0][:, None] * counts[1][None, :]) % 2 == 0))
