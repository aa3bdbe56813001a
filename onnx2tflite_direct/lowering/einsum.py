"""Einsum as SUM reductions, TRANSPOSE/RESHAPE and BATCH_MATMUL.

Operands are contracted pairwise, left to right. Each pairwise step is one batched matrix
product: shared indices that survive are the batch axes, shared indices that do not are the
contraction, the rest are the rows/columns. Indices only one operand has and nothing later
needs are summed away first. Ellipses become ordinary (right-aligned, broadcasting) indices.
Repeated indices within one operand (diagonals, traces) are refused.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import onnx_order
from ..registry import FLOAT, lowering
from .emit import Emitter

ELLIPSIS_BASE = 0x100  # private letters for ellipsis axes, never valid in an equation


def parse_equation(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """Operand index strings and the output string, ellipses expanded to private letters."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"{len(terms)} operands in equation, {len(ranks)} inputs")
    n_ell = max(
        (r - (len(t) - 3) for t, r in zip(terms, ranks, strict=True) if "..." in t), default=0
    )
    ell = "".join(chr(ELLIPSIS_BASE + k) for k in range(n_ell))
    expanded = []
    for t, r in zip(terms, ranks, strict=True):
        if "..." in t:
            k = r - (len(t) - 3)
            t = t.replace("...", ell[n_ell - k :])
        if len(t) != r:
            raise ValueError(f"term {t!r} does not match rank {r}")
        expanded.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:  # implicit mode: ellipsis axes then the letters seen exactly once, sorted
        letters = "".join(expanded)
        out = ell + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell)
        )
    return expanded, out


def _einsum_check(node, graph):
    ranks = [graph.values[n].rank for n in node.inputs]
    try:
        terms, _ = parse_equation(node.attrs.get("equation", ""), ranks)
    except ValueError as err:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: {err}"
    for t in terms:
        if len(set(t)) != len(t):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: repeated index in {t!r} (diagonal)"
    return None


class _Operand:
    def __init__(self, tensor, letters: str):
        self.t = tensor
        self.letters = letters

    def size(self, letter: str) -> int:
        return int(self.t.shape[self.letters.index(letter)])


def _sum_away(ctx, a: _Operand, keep: set[str]) -> _Operand:
    e = Emitter(ctx)
    drop = [i for i, c in enumerate(a.letters) if c not in keep]
    if not drop:
        return a
    t = e.reduce("SUM", a.t, drop, False, "summed")
    return _Operand(t, "".join(c for c in a.letters if c in keep))


def _contract(ctx, a: _Operand, b: _Operand, keep: set[str]) -> _Operand:
    e = Emitter(ctx)
    a = _sum_away(ctx, a, keep | set(b.letters))
    b = _sum_away(ctx, b, keep | set(a.letters))
    batch = [c for c in a.letters if c in b.letters and c in keep]
    summed = [c for c in a.letters if c in b.letters and c not in keep]
    rows = [c for c in a.letters if c not in b.letters]
    cols = [c for c in b.letters if c not in a.letters]
    for c in summed:
        if a.size(c) != b.size(c):
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"broadcast contracted index {c!r}")
    a_batch = [a.size(c) for c in batch]
    b_batch = [b.size(c) for c in batch]
    if a_batch == b_batch:  # one flat batch axis keeps BATCH_MATMUL at rank 3
        a_batch = b_batch = [int(np.prod(a_batch, dtype=np.int64))] if batch else []
    elif len(batch) > 4:
        ctx.refuse(errors.UNSUPPORTED_RANK, "more than 4 broadcasting batch indices")
    prod = lambda op, cs: int(np.prod([op.size(c) for c in cs], dtype=np.int64))  # noqa: E731
    at = e.transpose(a.t, [a.letters.index(c) for c in batch + rows + summed], "a_t")
    at = e.reshape(at, (*a_batch, prod(a, rows), prod(a, summed)), "a_mat")
    bt = e.transpose(b.t, [b.letters.index(c) for c in batch + summed + cols], "b_t")
    bt = e.reshape(bt, (*b_batch, prod(b, summed), prod(b, cols)), "b_mat")
    y = e.matmul(at, bt, hint="product")
    out_batch = [max(a.size(c), b.size(c)) for c in batch]
    shape = (*out_batch, *[a.size(c) for c in rows], *[b.size(c) for c in cols])
    return _Operand(e.reshape(y, shape, "product_nd"), "".join(batch + rows + cols))


@lowering(
    "Einsum",
    onnx_order,
    since=12,
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2, 3),
    tflite_ops=("BATCH_MATMUL", "SUM", "TRANSPOSE", "RESHAPE"),
    notes="any number of operands, ellipsis broadcasting; repeated indices (diagonal) refused",
    extra_check=_einsum_check,
)
def lower_einsum(ctx):
    e = Emitter(ctx)
    n = len(ctx.node.inputs)
    terms, out = parse_equation(ctx.attr("equation"), [len(ctx.shape(i)) for i in range(n)])
    ops = [_Operand(ctx.input(i), t) for i, t in enumerate(terms)]
    acc = ops[0]
    for k in range(1, n):
        later = set(out).union(*(o.letters for o in ops[k + 1 :]))
        acc = _contract(ctx, acc, ops[k], later)
    acc = _sum_away(ctx, acc, set(out))
    y = e.transpose(acc.t, [acc.letters.index(c) for c in out], "y")
    e.reshape(y, ctx.out_shape(0), out=ctx.output(0))
