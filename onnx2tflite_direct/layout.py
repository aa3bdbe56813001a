"""Layout algebra: how a tensor's stored (TFLite) axes relate to its ONNX axes.

A :class:`Layout` is a permutation ``perm`` with ``stored = np.transpose(onnx, perm)``; stored axis
``i`` holds ONNX axis ``perm[i]``. Optionally the *last* ONNX axis is stored in a permuted
element order (``inner``): that axis, viewed as ``inner.shape`` in ONNX order, is stored as
``transpose(inner.perm)``. This is what flattening a channel-last feature map produces; a
consumer with constant weights on that axis (Gemm/MatMul) permutes its weights instead of
the activations.

The decisions of *which* layout each tensor gets are made by the layout policies of the
lowerings (``policies.py``) and applied by the lowering driver; this module is pure algebra.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np


@dataclass(frozen=True, slots=True)
class Inner:
    shape: tuple[int, ...]
    perm: tuple[int, ...]

    def element_order(self) -> np.ndarray:
        """stored[j] = onnx[order[j]] along the flattened axis."""
        size = int(np.prod(self.shape, dtype=np.int64))
        return np.arange(size).reshape(self.shape).transpose(self.perm).reshape(-1)


@dataclass(frozen=True, slots=True)
class Layout:
    perm: tuple[int, ...]
    inner: Inner | None = None

    @property
    def rank(self) -> int:
        return len(self.perm)

    @property
    def is_identity(self) -> bool:
        return self.inner is None and self.perm == tuple(range(len(self.perm)))

    def stored_shape(self, onnx_shape) -> tuple:
        return tuple(onnx_shape[p] for p in self.perm)

    def stored_axis(self, onnx_axis: int) -> int:
        return self.perm.index(onnx_axis)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """ONNX-order array -> stored-order array."""
        if self.inner is not None:
            lead = array.shape[:-1]
            order = self.inner.element_order()
            array = np.take(array, order, axis=-1) if array.shape[-1] > 1 else array
            assert array.shape[: len(lead)] == lead
        return np.transpose(array, self.perm) if self.perm != tuple(range(array.ndim)) else array

    def __str__(self) -> str:
        s = "x".join(map(str, self.perm))
        return s + (f"+inner{self.inner.perm}" if self.inner else "")


@cache  # layouts are immutable: one shared object per rank
def identity(rank: int) -> Layout:
    return Layout(tuple(range(rank)))


@cache
def channel_last(rank: int) -> Layout:
    """N C D1..Dk -> N D1..Dk C; identity for rank < 3."""
    if rank < 3:
        return identity(rank)
    return Layout((0, *range(2, rank), 1))


def non_unit_order(perm: tuple[int, ...], shape) -> tuple[int, ...]:
    return tuple(p for p in perm if shape[p] != 1)


def same_memory_order(a: Layout, b: Layout, shape) -> bool:
    """True when both layouts store the elements in the same linear order (size-1 axes move freely)."""
    if a.inner != b.inner:
        return False
    return non_unit_order(a.perm, shape) == non_unit_order(b.perm, shape)


def transpose_perm(src: Layout, dst: Layout) -> tuple[int, ...]:
    """The TRANSPOSE perm turning src-stored data into dst-stored data (no inner layouts)."""
    return tuple(src.perm.index(a) for a in dst.perm)


def compose_transpose(src: Layout, onnx_perm) -> Layout:
    """Layout of ``Transpose(x, onnx_perm)`` when x is stored as ``src``: a pure relabeling."""
    inverse = [0] * len(onnx_perm)
    for out_axis, in_axis in enumerate(onnx_perm):
        inverse[in_axis] = out_axis
    return Layout(tuple(inverse[p] for p in src.perm))


def reshape_groups(a_shape, b_shape):
    """Factor a reshape into groups ([a axes], [b axes]) of equal products, size-1 axes dropped.

    Returns None if the non-unit dims cannot be grouped (never for valid reshapes).
    """
    a = [i for i, d in enumerate(a_shape) if d != 1]
    b = [j for j, d in enumerate(b_shape) if d != 1]
    groups = []
    i = j = 0
    while i < len(a) or j < len(b):
        ga, gb = [], []
        pa = pb = 1
        while True:
            if pa <= pb and i < len(a):
                ga.append(a[i])
                pa *= a_shape[a[i]]
                i += 1
            elif j < len(b):
                gb.append(b[j])
                pb *= b_shape[b[j]]
                j += 1
            else:
                return None
            if pa == pb:
                break
        groups.append((ga, gb))
    return groups


def _insert_unit_axes(stored_non_unit: list[int], b_shape) -> tuple[int, ...]:
    """Place size-1 output axes next to their ONNX predecessor to stay close to identity."""
    order = list(stored_non_unit)
    for axis, d in enumerate(b_shape):
        if d != 1:
            continue
        if axis == 0:
            order.insert(0, axis)
        else:
            order.insert(order.index(axis - 1) + 1, axis)
    return tuple(order)


def canonical(layout: Layout, shape) -> Layout:
    """Prefer identity, then channel-last, among layouts with the same memory order."""
    for candidate in (identity(len(shape)), channel_last(len(shape))):
        if layout.inner is None and same_memory_order(layout, candidate, shape):
            return candidate
    return layout


def reshape_layout(src: Layout, a_shape, b_shape):
    """How a reshape of data stored as ``src`` can be done as a plain stored reshape.

    Returns ``("direct", out_layout)`` when the stored data can be reshaped as is,
    ``("inner", out_layout)`` when the result is only expressible with an inner order on the
    last axis, or ``("transpose", needed_src_layout)`` naming the layout the input must be
    materialized in first (chosen to keep untouched axes where they are).
    """
    if src.inner is not None:
        return ("transpose", identity(len(a_shape)))
    groups = reshape_groups(a_shape, b_shape)
    if groups is None:
        return ("transpose", identity(len(a_shape)))
    stored = non_unit_order(src.perm, a_shape)
    pos = {axis: k for k, axis in enumerate(stored)}
    ordered = sorted(groups, key=lambda g: pos[g[0][0]])  # groups in stored order
    placed = [[pos[a] for a in ga] for ga, _ in ordered]
    if all(_is_run(p) for p in placed):
        seq = [b for _, gb in ordered for b in gb]
        return ("direct", canonical(Layout(_insert_unit_axes(seq, b_shape)), b_shape))
    # A flatten of several axes into the last output axis, stored contiguously but permuted:
    # expressible as an inner element order on that axis.
    disordered = [g for g, p in zip(ordered, placed, strict=True) if not _is_run(p)]
    if (
        all(_is_run(sorted(p)) for p in placed)
        and len(disordered) == 1
        and disordered[0] is ordered[-1]
        and disordered[0][1] == [len(b_shape) - 1]
    ):
        ga = disordered[0][0]
        inner_perm = tuple(ga.index(a) for a in sorted(ga, key=lambda a: pos[a]))
        seq = [b for _, gb in ordered for b in gb]
        inner = Inner(tuple(a_shape[a] for a in ga), inner_perm)
        out = Layout(_insert_unit_axes(seq, b_shape), inner)
        if out.perm == tuple(range(len(b_shape))):
            return ("inner", out)
    # Materialize: keep the groups in their stored order, sort the axes inside each group.
    seq_a = [a for ga, _ in ordered for a in sorted(ga)]
    return ("transpose", Layout(_insert_unit_axes(seq_a, a_shape)))


def _is_run(positions: list[int]) -> bool:
    """Consecutive and increasing: the axes sit next to each other in this order."""
    return positions == list(range(positions[0], positions[0] + len(positions)))
