"""Rewrites on the emitted TFLite operators: activation fusion and dead-code removal."""

from __future__ import annotations

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


RULES = [("fuse_activation", fuse_activations), ("remove_dead_ops", remove_dead_ops)]
ALWAYS = {"remove_dead_ops"}


def apply(sub: tfl.Subgraph, enabled: bool = True):
    for name, rule in RULES:
        if enabled or name in ALWAYS:
            yield name, rule(sub)
