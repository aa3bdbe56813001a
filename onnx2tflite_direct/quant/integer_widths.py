"""Default activation widths inside the int8 integer files: normalizations run at int16x8.

Why: a LayerNormalization (or RMSNorm, InstanceNorm ...) lowered to MEAN / SUB / MUL / MEAN /
ADD / RSQRT / MUL squares its input and takes the reciprocal square root of a variance; an int8
step on the squared deviations and the variance is coarse (the variance spans orders of
magnitude across rows), and the error lands in every element of the normalized row. The same
operators at int16 activations (LiteRT has 16x8 kernels for each, requantized to int8 at the
node's boundary) are more accurate than the float island they replace: ViT-S int8 full-integer
9.8 dB with float LayerNorms, 8.8 dB with int8 ones, 9.9 dB with int16 ones
(benchmarks/bench_full_integer.py). A node the user overrode (``--quant-override``) keeps the
override; the choice shows in the report's per-node precisions (``default``).
"""

from __future__ import annotations

import dataclasses
import re

from .. import tfl
from .overrides import Override, Resolved

# Operators that mark an ONNX node as a normalization computed from its own statistics.
NORMALIZING_OPS = frozenset({"RSQRT"})
WIDE = Override("(normalization)", "int16x8", -1, re.compile(r"(?!)"))


def with_wide_normalizations(sub: tfl.Subgraph, overrides: Resolved, activations: str):
    """``overrides`` plus int16x8 for every normalization node the user did not override, in
    the int8 files (the int16x8 files are wide already)."""
    if activations != "int8":
        return overrides
    nodes = {
        op.onnx_node
        for op in sub.operators
        if op.opcode in NORMALIZING_OPS and op.onnx_node and overrides.get(op.onnx_node) is None
    }
    if not nodes:
        return overrides
    by_label = {**overrides.by_label, **dict.fromkeys(sorted(nodes), WIDE)}
    return dataclasses.replace(overrides, overrides=(*overrides.overrides, WIDE), by_label=by_label)
