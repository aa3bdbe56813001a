"""Layout policies: per node, which layouts its inputs must arrive in and its outputs get.

A policy is ``policy(node, ins, graph, drv) -> (required, outs)``: ``ins[i]`` is the layout
input ``i`` currently has (``None`` for constants and absent inputs); ``required[i]`` is the
layout the lowering wants it in (``None`` = constant, delivered in ONNX order unless the
lowering asks otherwise); ``outs`` the layouts of the outputs. ``hint`` tells the backward
preference pass whether the op wants channel-last data, passes layouts through, or needs ONNX
order. Only policies decide layouts; lowerings read them.
"""

from __future__ import annotations

from collections import Counter

from . import layout as L
from .ir import Graph, Node

CHANNEL_LAST = "channel_last"
PASSTHROUGH = "passthrough"
ONNX_ORDER = "onnx"


def _hint(kind: str):
    def mark(fn):
        fn.hint = kind
        return fn

    return mark


def _rank(graph: Graph, name: str) -> int:
    return len(graph.values[name].shape)


def _out_layouts(node: Node, graph: Graph, make) -> list[L.Layout]:
    return [make(_rank(graph, o)) if o else None for o in node.outputs]


@_hint(ONNX_ORDER)
def onnx_order(node: Node, ins, graph: Graph, drv=None):
    req = [
        L.identity(_rank(graph, n)) if lay is not None else None
        for n, lay in zip(node.inputs, ins, strict=True)
    ]
    return req, _out_layouts(node, graph, L.identity)


def channel_last(data_inputs: tuple[int, ...] = (0,)):
    """Data inputs and outputs channel-last (conv, pools, norms); other inputs ONNX order."""

    @_hint(CHANNEL_LAST)
    def policy(node: Node, ins, graph: Graph, drv=None):
        req = []
        for i, (name, lay) in enumerate(zip(node.inputs, ins, strict=True)):
            if lay is None:
                req.append(None)
            elif i in data_inputs:
                req.append(L.channel_last(_rank(graph, name)))
            else:
                req.append(L.identity(_rank(graph, name)))
        return req, _out_layouts(node, graph, L.channel_last)

    return policy


@_hint(PASSTHROUGH)
def same_as_input(node: Node, ins, graph: Graph, drv=None):
    """Unary elementwise: any layout, including an inner element order, passes through."""
    lay = ins[0] if ins and ins[0] is not None else L.identity(_rank(graph, node.inputs[0]))
    req = [lay] + [
        None if x is None else L.identity(_rank(graph, n))
        for n, x in zip(node.inputs[1:], ins[1:], strict=True)
    ]
    return req, [lay if o else None for o in node.outputs]


def _data_or_identity(i, name, lay, data_inputs, target, graph):
    """Data inputs (constant or not) take the common layout; the rest keep ONNX order."""
    if not name:
        return None
    if i in data_inputs:
        return target
    return None if lay is None else L.identity(_rank(graph, name))


def _vote(candidates: list[L.Layout], rank: int, drv, node: Node) -> L.Layout:
    if not candidates:
        return L.identity(rank)
    counts = Counter(candidates)
    best = max(counts.values())
    top = [c for c in candidates if counts[c] == best]
    if len(set(top)) > 1 and drv is not None and drv.prefers_channel_last(node.outputs[0]):
        for c in top:
            if c == L.channel_last(rank):
                return c
    return top[0]


def broadcasting(data_inputs: tuple[int, ...] | None = None):
    """Elementwise n-ary ops: every input joins one common layout of the output's rank.

    Lower-rank inputs are broadcast-expanded (leading unit axes) before the layout applies.
    """

    @_hint(PASSTHROUGH)
    def policy(node: Node, ins, graph: Graph, drv=None):
        out_rank = _rank(graph, node.outputs[0])
        idx = range(len(node.inputs)) if data_inputs is None else data_inputs
        full = [
            ins[i]
            for i in idx
            if i < len(ins) and ins[i] is not None and _rank(graph, node.inputs[i]) == out_rank
        ]
        target = _vote(full, out_rank, drv, node)
        nonconst = [ins[i] for i in idx if i < len(ins) and ins[i] is not None]
        if target.inner is not None and any(x != target for x in nonconst):
            target = L.identity(out_rank)
        req = [
            _data_or_identity(i, name, lay, idx, target, graph)
            for i, (name, lay) in enumerate(zip(node.inputs, ins, strict=True))
        ]
        return req, [target if o else None for o in node.outputs]

    return policy


def keep_rank(data_inputs: tuple[int, ...] = (0,)):
    """Ops with axis attributes that keep rank (Concat, Softmax, Pad, Slice, Split ...).

    All data inputs share one layout; inner orders are materialized away since the axis
    attribute may address the flattened axis.
    """

    @_hint(PASSTHROUGH)
    def policy(node: Node, ins, graph: Graph, drv=None):
        rank = _rank(graph, node.inputs[data_inputs[0]])
        cands = [ins[i] for i in data_inputs if i < len(ins) and ins[i] is not None]
        target = _vote([c for c in cands if c.inner is None], rank, drv, node)
        req = [
            _data_or_identity(i, name, lay, data_inputs, target, graph)
            for i, (name, lay) in enumerate(zip(node.inputs, ins, strict=True))
        ]
        return req, [target if o else None for o in node.outputs]

    return policy


def transpose_relabel(node: Node, ins, graph: Graph, drv=None):
    """ONNX Transpose is a relabeling of the stored axes, never an op."""
    lay = ins[0]
    rank = _rank(graph, node.inputs[0])
    if lay is None or lay.inner is not None:
        lay = L.identity(rank)
    perm = node.attrs.get("perm") or list(reversed(range(rank)))
    out = L.compose_transpose(lay, tuple(perm))
    return [lay], [L.canonical(out, graph.values[node.outputs[0]].shape)]


transpose_relabel.hint = PASSTHROUGH


def reshaping(node: Node, ins, graph: Graph, drv=None):
    """Reshape/Flatten/Squeeze/Unsqueeze: stored reshape when the layout allows, else one
    materialization, chosen so that the output lands in the layout its consumers want."""
    src = ins[0]
    a_shape = graph.values[node.inputs[0]].shape
    b_shape = graph.values[node.outputs[0]].shape
    rest = [
        None if x is None else L.identity(_rank(graph, n))
        for n, x in zip(node.inputs[1:], ins[1:], strict=True)
    ]
    if src is None:
        return [None, *rest], [L.identity(len(b_shape))]
    kind, lay = L.reshape_layout(src, a_shape, b_shape)
    if kind == "direct":
        return [src, *rest], [lay]
    if kind == "inner" and drv is not None and drv.all_consumers_accept_inner(node.outputs[0]):
        return [src, *rest], [lay]
    # One TRANSPOSE is needed. Candidates: keep untouched axes where they are, or go to ONNX
    # order; take the one whose output is the layout the consumers prefer.
    wanted = (
        L.channel_last(len(b_shape))
        if drv is not None and drv.prefers_channel_last(node.outputs[0])
        else L.identity(len(b_shape))
    )
    candidates = [] if kind == "inner" else [lay]
    candidates.append(L.identity(len(a_shape)))
    options = []
    for need in candidates:
        kind2, out = L.reshape_layout(need, a_shape, b_shape)
        assert kind2 == "direct", (kind2, need)
        options.append((out != wanted, need, out))
    _, need, out = min(options, key=lambda o: o[0])
    return [need, *rest], [out]


reshaping.hint = PASSTHROUGH
