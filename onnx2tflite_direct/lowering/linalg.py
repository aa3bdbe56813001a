"""Det -> the Leibniz formula for small static matrices.

det(A) = sum over permutations p of sign(p) * prod_i A[i, p(i)]. One GATHER picks the M
entries of every permutation from the flattened matrix, REDUCE_PROD multiplies them and a
signed SUM adds the terms. With M <= 4 (at most 24 terms of 4 factors) the float32 result
matches an LU-based determinant within the checked tolerance; larger matrices are refused
(the term count grows as M! and so does cancellation error).
"""

from __future__ import annotations

import itertools

import numpy as np

from .. import errors
from ..policies import onnx_order
from ..registry import lowering
from .emit import Emitter

MAX_ORDER = 4


def _sign(perm) -> int:
    inversions = sum(1 for i, j in itertools.combinations(range(len(perm)), 2) if perm[i] > perm[j])
    return -1 if inversions % 2 else 1


def leibniz_tables(order: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat indices [P, M] of each permutation's factors, signs [P])."""
    perms = list(itertools.permutations(range(order)))
    index = np.array([[i * order + p[i] for i in range(order)] for p in perms], np.int32)
    return index, np.array([_sign(p) for p in perms], np.float32)


def _check(node, graph):
    shape = graph.values[node.inputs[0]].shape
    if len(shape) < 2 or shape[-1] != shape[-2]:
        return f"{errors.UNSUPPORTED_RANK}: input shape {shape} is not (..., M, M)"
    if shape[-1] > MAX_ORDER or shape[-1] < 1:
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: matrix order {shape[-1]} not in 1..{MAX_ORDER}"
        )
    return None


@lowering(
    "Det",
    onnx_order,
    since=11,
    dtypes=("float32",),
    tflite_ops=("RESHAPE", "GATHER", "REDUCE_PROD", "MUL", "SUM"),
    notes=f"matrices up to {MAX_ORDER}x{MAX_ORDER} (Leibniz formula)",
    extra_check=_check,
)
def lower_det(ctx):
    e = Emitter(ctx)
    shape = ctx.shape(0)
    order = shape[-1]
    batch = tuple(shape[:-2])
    out = ctx.output(0)
    flat = e.reshape(ctx.input(0), (*batch, order * order) if batch else (order * order,))
    if order == 1:
        e.reshape(flat, out.shape, out=out)
        return
    index, signs = leibniz_tables(order)
    factors = e.gather(flat, index, axis=-1, hint="factors")
    terms = e.reduce("REDUCE_PROD", factors, [-1], keep_dims=False, hint="terms")
    signed = e.op("MUL", terms, e.const(signs, np.float32, "signs"), hint="signed")
    e.reduce("SUM", signed, [-1], keep_dims=False, out=out)
