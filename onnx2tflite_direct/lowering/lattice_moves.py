"""Which tensors of a QDQ model already lie on a Q/DQ lattice (issue 17).

quantize_static writes a QuantizeLinear -> DequantizeLinear pair after every op, also after
ops that only move or select values: DQ(P) -> Reshape / Transpose / MaxPool ... -> Q(P) ->
DQ(P) (MiniLM: 8 such pairs per layer). Their input is exactly ``(q - zp) * s`` for integers
q of P's type, so the Q gives back those integers without rounding or saturating anything,
and its DQ gives back the input itself, bit for bit (the product that made it). onnxruntime
drops such pairs (its QDQ rules run Reshape/Transpose/MaxPool on the integers). The Q
lowering (lowering/quantize.py) asks :func:`on_lattice` and then skips the clamp, and the DQ
reads the input instead of recomputing it: 5 elementwise ops per pair -> 0 (the ROUND of the
integer twin stays only if a lattice Conv/MatMul reads it).

Also the small graph queries the lattice lowerings share (producers, DequantizeLinear
parameters, the lattice key that QuantizeLinear uses).
"""

from __future__ import annotations

import numpy as np

from .. import op_classes
from .elementwise import dtype_name

# Switch (benchmarks/bench_qdq_lattice.py turns it off to time the literal pairs).
SKIP_MOVED_PAIRS = True
# Ops whose output values are some of the input's values (data input 0), on any lattice: the
# permutations, and MaxPool (each output is one of its window's values). The other copies
# (Slice, Gather, ...) would do as well; not taken without a test.
MOVES = op_classes.REORDERS | {"MaxPool"}


def producer(ctx, name: str):
    """The node producing ``name`` (cached on the driver)."""
    drv = ctx.driver
    cache = drv.__dict__.setdefault("_lattice_producers", {})
    if not cache:
        cache.update(drv.graph.producers())
    return cache.get(name)


def dq_params(drv, node):
    """(x, scale, zero point) constants of a DequantizeLinear (x None when not constant), or
    None for anything else."""
    if node is None or node.op_type != "DequantizeLinear" or node.attrs.get("block_size"):
        return None
    scale = drv.value(node.inputs[1]).const
    zp_name = node.inputs[2] if len(node.inputs) > 2 else ""
    zp = drv.value(zp_name).const if zp_name else np.zeros((), np.int64)
    if scale is None or zp is None:
        return None
    x = drv.value(node.inputs[0]).const
    return x, np.asarray(scale, np.float32), np.asarray(zp)


def lattice_key(params) -> tuple:
    """quantize._params_key of a per-tensor DequantizeLinear's parameters (scale, zp)."""
    _, scale, zp = params
    zp = zp.astype(np.int64)
    return (scale.tobytes(), scale.shape, zp.tobytes(), zp.shape, None, 0)


def on_lattice(ctx, key: tuple, dtype: str) -> bool:
    """Is input 0 of this QuantizeLinear (per-tensor parameters ``key``, target ``dtype``)
    a DequantizeLinear of a ``dtype`` tensor on the same parameters, seen through MOVES?"""
    if not SKIP_MOVED_PAIRS or key[1] not in ((), (1,)) or key[3] not in ((), (1,)):
        return False
    node = producer(ctx, ctx.node.inputs[0])
    seen = 0
    while node is not None and node.op_type in MOVES and node.domain in ("", "ai.onnx"):
        node, seen = producer(ctx, node.inputs[0]), seen + 1
    params = dq_params(ctx.driver, node)
    if params is None or params[1].size != 1 or params[2].size > 1 or not seen:
        return False
    if dtype_name(ctx.driver.value(node.inputs[0]).dtype) != dtype:
        return False
    return lattice_key(params) == key


def dequantized_non_negative(ctx, name: str) -> bool:
    """Is ``name`` a DequantizeLinear output (seen through MOVES) whose lattice starts at 0:
    constant zero point equal to its integer type's minimum, positive scales (a ReLU's
    quantize_static output: uint8, zero point 0)? Its values are then >= 0."""
    node = producer(ctx, name)
    while node is not None and node.op_type in MOVES and node.domain in ("", "ai.onnx"):
        node = producer(ctx, node.inputs[0])
    params = dq_params(ctx.driver, node)
    if params is None:
        return False
    dtype = np.dtype(ctx.driver.value(node.inputs[0]).dtype)
    if dtype.kind not in "iu" or not np.all(params[1] > 0):
        return False
    return bool(np.all(params[2].astype(np.int64) == np.iinfo(dtype).min))
