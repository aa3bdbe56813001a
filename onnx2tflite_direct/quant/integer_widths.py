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

A node the user overrode (``--quant-override``) keeps the override; the choice shows in the
report's per-node precisions (``default``).
"""

from __future__ import annotations

import dataclasses
import re

from .. import tfl
from .overrides import Override, Resolved

# Operators that mark an ONNX node as a normalization computed from its own statistics.
NORMALIZING_OPS = frozenset({"RSQRT"})
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})
WIDE = Override("(normalization or recurrent cell)", "int16x8", -1, re.compile(r"(?!)"))


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
        and (op.opcode in NORMALIZING_OPS or op.onnx_node in recurrent)
        and overrides.get(op.onnx_node) is None
        and op.onnx_node not in kernels
    }
    if not nodes:
        return overrides
    by_label = {**overrides.by_label, **dict.fromkeys(sorted(nodes), WIDE)}
    return dataclasses.replace(overrides, overrides=(*overrides.overrides, WIDE), by_label=by_label)
