"""Graph-level rewrites on the ONNX IR before lowering; each is a small named rule.

``apply`` yields ``(rule id, [changed node names])`` for the coverage report.
"""

from __future__ import annotations

import numpy as np

from .ir import Graph, Node


def fold_batchnorm_into_conv(graph: Graph) -> list[str]:
    """Conv (constant W, B) -> BatchNormalization (constant stats) becomes one Conv.

    Only when the conv output feeds the BN alone and is not a graph output, so the
    intermediate tensor is never observable.
    """
    consumers = graph.consumers()
    producers = graph.producers()
    values = graph.values
    removed: set[int] = set()
    changed = []
    for bn in graph.nodes:
        if bn.op_type != "BatchNormalization" or bn.domain != "" or len(bn.inputs) < 5:
            continue
        if bn.attrs.get("training_mode", 0) or any(graph.used(o) for o in bn.outputs[1:]):
            continue
        if bn.opset < 9 and bn.attrs.get("spatial", 1) != 1:
            continue
        conv = producers.get(bn.inputs[0])
        if conv is None or conv.op_type != "Conv" or conv.domain != "":
            continue
        mid = conv.outputs[0]
        if len(consumers.get(mid, [])) != 1 or mid in graph.outputs:
            continue
        stats = [values[n].const for n in bn.inputs[1:5]]
        w = values[conv.inputs[1]].const
        b = values[conv.inputs[2]].const if len(conv.inputs) > 2 and conv.inputs[2] else None
        if any(s is None for s in stats) or w is None or (len(conv.inputs) > 2 and conv.inputs[2] and b is None):
            continue
        if w.dtype != np.float32:
            continue
        scale, bias, mean, var = (s.astype(np.float64) for s in stats)  # small vectors
        eps = float(bn.attrs.get("epsilon", 1e-5))
        factor = scale / np.sqrt(var + eps)
        new_w = w * factor.astype(np.float32).reshape((-1,) + (1,) * (w.ndim - 1))
        base = b.astype(np.float64) if b is not None else 0.0
        new_b = ((base - mean) * factor + bias).astype(np.float32)
        w_name, b_name = f"{conv.label}/bn_folded_W", f"{conv.label}/bn_folded_B"
        graph.values[w_name] = _const(w_name, new_w)
        graph.values[b_name] = _const(b_name, new_b)
        replaced = [n for n in conv.inputs[1:] if n]
        conv.inputs = [conv.inputs[0], w_name, b_name]
        for name in replaced:  # drop the unfolded weights unless something else reads them
            if len(consumers.get(name, [])) == 1 and name not in graph.outputs:
                del graph.values[name]
        conv.outputs = [bn.outputs[0]]
        removed.add(id(bn))
        changed.append(bn.label)
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    graph.invalidate()
    return changed


def _const(name, array):
    from .ir import Value

    return Value(name, array.dtype, tuple(array.shape), array)


def remove_identity_like(graph: Graph) -> list[str]:
    """Nothing to do at the IR level: Identity/Dropout lower to aliases (no TFLite op)."""
    return []


RULES = [("fold_batchnorm_into_conv", fold_batchnorm_into_conv)]


def apply(graph: Graph, enabled: bool = True):
    if not enabled:
        return
    for name, rule in RULES:
        yield name, rule(graph)


__all__ = ["apply", "Node"]
