"""Rewrites on the emitted TFLite operators: activation fusion and dead-code removal."""

from __future__ import annotations

import numpy as np

from . import tfl

# Ops whose kernels apply ``fused_activation_function`` on the CPU (float path).
FUSABLE_PRODUCERS = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "SUB",
    "MUL",
    "DIV",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "TRANSPOSE_CONV",
}
ACTIVATIONS = {"RELU": "RELU", "RELU6": "RELU6", "RELU_N1_TO_1": "RELU_N1_TO_1"}


def _uses(sub: tfl.Subgraph) -> dict[int, list[tfl.Operator]]:
    uses: dict[int, list[tfl.Operator]] = {}
    for op in sub.operators:
        for t in op.inputs:
            if t is not None:
                uses.setdefault(id(t), []).append(op)
    return uses


def fuse_activations(sub: tfl.Subgraph) -> int:
    """producer -> RELU/RELU6/RELU_N1_TO_1 becomes the producer with a fused activation."""
    uses = _uses(sub)
    outputs = {id(t) for t in sub.outputs}
    producer = {id(t): op for op in sub.operators for t in op.outputs}
    dropped: set[int] = set()
    for act in sub.operators:
        fused = ACTIVATIONS.get(act.opcode)
        if fused is None:
            continue
        src = act.inputs[0]
        prod = producer.get(id(src))
        if (
            prod is None
            or prod.opcode not in FUSABLE_PRODUCERS
            or prod.options.get("fused_activation_function", "NONE") != "NONE"
            or len(uses.get(id(src), [])) != 1
            or id(src) in outputs
            or src.dtype.name != "float32"
        ):
            continue
        prod.options["fused_activation_function"] = fused
        prod.outputs[prod.outputs.index(src)] = act.outputs[0]
        producer[id(act.outputs[0])] = prod
        dropped.add(id(act))
    sub.operators = [op for op in sub.operators if id(op) not in dropped]
    return len(dropped)


BIAS_PRODUCERS = {"FULLY_CONNECTED": 2, "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2}


def _channel_vector(t: tfl.Tensor, channels: int) -> np.ndarray | None:
    """A constant that broadcasts along the last axis only, as a [channels] vector."""
    if t.data is None or t.quantization is not None or t.dtype != np.float32:
        return None
    data = t.data
    if data.size == 1:
        return np.full(channels, data.reshape(-1)[0], np.float32)
    if data.shape[-1] == channels and data.size == channels:
        return data.reshape(channels)
    return None


def fuse_bias_add(sub: tfl.Subgraph) -> int:
    """FULLY_CONNECTED/CONV_2D/DEPTHWISE_CONV_2D -> ADD(per-channel constant) folds the
    constant into the bias (MatMul + Add exported separately is the common case)."""
    uses = _uses(sub)
    outputs = {id(t) for t in sub.outputs}
    producer = {id(t): op for op in sub.operators for t in op.outputs}
    dropped: set[int] = set()
    for add in sub.operators:
        if add.opcode != "ADD" or add.options.get("fused_activation_function", "NONE") != "NONE":
            continue
        for mid, other in ((add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])):
            prod = producer.get(id(mid))
            if (
                prod is None
                or prod.opcode not in BIAS_PRODUCERS
                or id(prod) in dropped
                or prod.options.get("fused_activation_function", "NONE") != "NONE"
                or len(uses.get(id(mid), [])) != 1
                or id(mid) in outputs
                or mid.dtype != np.float32
                or mid.quantization is not None
                or tuple(add.outputs[0].shape) != tuple(mid.shape)
            ):
                continue
            extra = _channel_vector(other, mid.shape[-1])
            slot = BIAS_PRODUCERS[prod.opcode]
            bias = prod.inputs[slot] if len(prod.inputs) > slot else None
            if extra is None or (bias is not None and bias.data is None):
                continue
            total = extra if bias is None else (bias.data.astype(np.float32) + extra)
            new_bias = tfl.Tensor(f"{mid.name}/bias", np.float32, (mid.shape[-1],), data=total)
            while len(prod.inputs) <= slot:
                prod.inputs.append(None)
            prod.inputs[slot] = new_bias
            prod.outputs[prod.outputs.index(mid)] = add.outputs[0]
            producer[id(add.outputs[0])] = prod
            dropped.add(id(add))
            break
    sub.operators = [op for op in sub.operators if id(op) not in dropped]
    return len(dropped)


def collapse_reshapes(sub: tfl.Subgraph) -> int:
    """RESHAPE -> RESHAPE becomes one RESHAPE; a RESHAPE that changes nothing disappears."""
    uses = _uses(sub)
    outputs = {id(t) for t in sub.outputs}
    producer = {id(t): op for op in sub.operators for t in op.outputs}
    dropped: set[int] = set()
    rename: dict[int, tfl.Tensor] = {}
    for op in sub.operators:
        op.inputs = [rename.get(id(t), t) if t is not None else None for t in op.inputs]
        if op.opcode != "RESHAPE":
            continue
        src, out = op.inputs[0], op.outputs[0]
        prev = producer.get(id(src))
        if (
            prev is not None
            and prev.opcode == "RESHAPE"
            and id(prev) not in dropped
            and len(uses.get(id(src), [])) == 1
            and id(src) not in outputs
        ):
            op.inputs[0] = prev.inputs[0]
            dropped.add(id(prev))
            src = op.inputs[0]
        if (
            tuple(src.shape) == tuple(out.shape)
            and id(out) not in outputs
            and src.shape_signature is None
        ):
            rename[id(out)] = src
            sub.renamed[id(out)] = src
            dropped.add(id(op))
    sub.operators = [op for op in sub.operators if id(op) not in dropped]
    return len(dropped)


def remove_dead_ops(sub: tfl.Subgraph) -> int:
    """Drop operators none of whose outputs reach a graph output."""
    live = {id(t) for t in sub.outputs}
    keep = []
    for op in reversed(sub.operators):
        if any(id(t) in live for t in op.outputs):
            keep.append(op)
            live.update(id(t) for t in op.inputs if t is not None)
    removed = len(sub.operators) - len(keep)
    sub.operators = list(reversed(keep))
    return removed


RULES = [
    ("collapse_reshapes", collapse_reshapes),
    ("fuse_bias_add", fuse_bias_add),
    ("fuse_activation", fuse_activations),
    ("remove_dead_ops", remove_dead_ops),
]
ALWAYS = {"remove_dead_ops"}


def apply(sub: tfl.Subgraph, enabled: bool = True, disabled: frozenset[str] = frozenset()):
    for name, rule in RULES:
        if name in ALWAYS or (enabled and name not in disabled):
            yield name, rule(sub)
