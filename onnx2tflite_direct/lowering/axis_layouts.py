"""Layout policies and helpers for ops that address data axes by number.

Reductions, ArgMax/ArgMin, CumSum and TopK keep whatever stored layout their input has when
their axes are known at conversion time (they are mapped through the layout); axes that only
exist at run time address ONNX axes, so those ops need their input in ONNX order.
"""

from __future__ import annotations

import numpy as np

from .. import layout as L
from ..policies import PASSTHROUGH, onnx_order
from .emit import Emitter

# LiteRT's default XNNPACK delegate fails to *prepare* SUM/MEAN/SOFTMAX on tensors of rank > 6
# (the model does not load), so ops built from them declare this rank limit.
XNNPACK_RANKS = tuple(range(7))


def rank_of(graph, name: str) -> int:
    return len(graph.values[name].shape)


def with_data_layout(node, ins, graph, lay: L.Layout) -> list:
    """Required input layouts: ``lay`` for input 0, ONNX order for the other runtime inputs."""
    rest = [
        None if x is None else L.identity(rank_of(graph, n))
        for n, x in zip(node.inputs[1:], ins[1:], strict=False)
    ]
    return [lay, *rest]


def reduced_layout(lay: L.Layout, axes, shape) -> L.Layout:
    """The layout of data stored as ``lay`` reduced over ``axes`` without keepdims.

    The stored order of the kept axes does not change, so no data moves.
    """
    kept = [p for p in lay.perm if p not in axes]
    rename = {a: i for i, a in enumerate(sorted(kept))}
    out_shape = [d for i, d in enumerate(shape) if i not in axes]
    return L.canonical(L.Layout(tuple(rename[p] for p in kept)), out_shape)


def reduction_policy(axes_of):
    """Policy of an op reducing input 0 over ``axes_of(node, graph)`` (``None`` = runtime axes).

    The input keeps its layout (inner element orders are materialized away, since an axis may
    address the flattened axis); outputs keep it too, minus the reduced axes unless keepdims.
    """

    def policy(node, ins, graph, drv=None):
        axes = axes_of(node, graph)
        lay = ins[0]
        if axes is None or lay is None or lay.inner is not None:
            return onnx_order(node, ins, graph, drv)
        if node.attrs.get("keepdims", 1):
            out = lay
        else:
            out = reduced_layout(lay, axes, graph.values[node.inputs[0]].shape)
        return with_data_layout(node, ins, graph, lay), [out if o else None for o in node.outputs]

    policy.hint = PASSTHROUGH
    return policy


def stored_axes(ctx, axes) -> np.ndarray:
    """ONNX axes of input 0 as the sorted int32 stored axes a TFLite kernel takes."""
    lay = ctx.in_layout(0)
    return np.array(sorted(lay.stored_axis(a) for a in axes), np.int32)


def runtime_int32(ctx, i: int = 1, scalar: bool = False):
    """A runtime axes/axis/k input as the int32 tensor TFLite kernels take."""
    e = Emitter(ctx)
    t = ctx.input(i)
    if np.dtype(t.dtype) != np.int32:
        cast = e.op("CAST", t, dtype=np.int32, hint="as_i32")
        t = cast
    return ctx.reshape(t, (), "scalar") if scalar and t.shape != () else t


def constant_axis(node, graph, i: int = 1) -> int | None:
    """The non-negative value of a scalar axis input ``i``, or None when it is runtime.

    A rank-1 input has only axis 0, so its axis is known even when given at run time.
    """
    value = graph.values[node.inputs[i]]
    rank = len(graph.values[node.inputs[0]].shape)
    if not value.is_constant:
        return 0 if rank == 1 else None
    return int(np.asarray(value.const).reshape(-1)[0]) % rank


def axis_input_policy(node, ins, graph, drv=None):
    """Ops along one axis given as input 1 (CumSum, CumProd): any layout when the axis is
    constant (it is mapped through the layout), ONNX order when it is a runtime tensor."""
    lay = ins[0]
    if lay is None or lay.inner is not None or constant_axis(node, graph) is None:
        return onnx_order(node, ins, graph, drv)
    return with_data_layout(node, ins, graph, lay), [lay]


axis_input_policy.hint = PASSTHROUGH
