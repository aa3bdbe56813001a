"""Sequences and optionals, resolved statically on ONNX nodes.

TFLite has no sequence or optional tensors. What a model does with them is often fully known
at conversion time: a SequenceConstruct of tensors read back with constant positions, a
SplitToSequence of a static shape concatenated again, an Optional that is known to hold a
value. :func:`resolve_static` (run between shape-inference rounds, because a resolved
SequenceAt gives inference a tensor to type and folding a value to fold) replaces such uses by
plain tensor ops (Identity, Split, Concat, Unsqueeze, Squeeze) and constants. Whatever is left
(a sequence fed to a graph output, a Loop, a run-time position) reaches the lowerings of
``lowering/sequence.py``, which refuse it with ``unsupported_dtype``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..folding import static_shape
from .protos import node_reads

SEQUENCE_OPS = (
    "SequenceEmpty",
    "SequenceConstruct",
    "SequenceInsert",
    "SequenceErase",
    "SequenceAt",
    "SequenceLength",
    "ConcatFromSequence",
    "SplitToSequence",
    "SequenceMap",
)
OPTIONAL_OPS = ("Optional", "OptionalHasElement", "OptionalGetElement")
STATIC_OPS = frozenset(SEQUENCE_OPS + OPTIONAL_OPS)
EMPTY = object()  # an optional without a value


class _Resolver:
    """One pass over the nodes: known sequences are lists of tensor names, known optionals
    hold a name (or ``EMPTY``). Nodes whose meaning becomes static are rewritten."""

    def __init__(self, consts: dict, infos: dict, opset: int):
        self.consts = consts
        self.infos = infos
        self.opset = opset
        self.seqs: dict[str, list[str]] = {}
        self.opts: dict[str, object] = {}
        self.out: list[onnx.NodeProto] = []
        self.ranks: dict[str, int] = {}  # ranks of tensors emitted in this pass

    # helpers ---------------------------------------------------------------------------
    def const_int(self, name: str) -> int | None:
        if not name or name not in self.consts:
            return None
        value = np.asarray(self.consts[name])
        return int(value.reshape(-1)[0]) if value.size == 1 else None

    def add_const(self, name: str, value) -> str:
        self.consts[name] = np.asarray(value)
        return name

    def emit(self, op: str, inputs, outputs, **attrs) -> None:
        self.out.append(helper.make_node(op, list(inputs), list(outputs), name=outputs[0], **attrs))

    def rank(self, name: str) -> int | None:
        if name in self.ranks:
            return self.ranks[name]
        if name in self.consts:
            return np.asarray(self.consts[name]).ndim
        vi = self.infos.get(name)
        if vi is None or not vi.type.tensor_type.HasField("shape"):
            return None
        return len(vi.type.tensor_type.shape.dim)

    def shape(self, name: str) -> tuple | None:
        if name in self.consts:
            return np.asarray(self.consts[name]).shape
        return static_shape(name, self.infos)

    def axes_operand(self, node_name: str, axes: list[int]) -> tuple[list[str], dict]:
        """Squeeze/Unsqueeze axes: an input from opset 13, an attribute before."""
        if self.opset >= 13:
            return [self.add_const(f"{node_name}/axes", np.array(axes, np.int64))], {}
        return [], {"axes": axes}

    # rules -----------------------------------------------------------------------------
    def position(self, seq: list[str], name: str, default: int, insert: bool) -> int | None:
        pos = default if not name else self.const_int(name)
        if pos is None:
            return None
        if pos < 0:  # counted from the back, as onnx's reference does for all three ops
            pos += len(seq)
        return pos if 0 <= pos < len(seq) + (1 if insert else 0) else None

    def visit(self, n: onnx.NodeProto) -> bool:
        """Resolve ``n`` if its meaning is static; returns whether it was consumed."""
        op, ins = n.op_type, [i for i in n.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        seq = self.seqs.get(ins[0]) if ins else None
        if op == "SequenceEmpty":
            self.seqs[n.output[0]] = []
        elif op == "SequenceConstruct":
            self.seqs[n.output[0]] = list(ins)
        elif op == "Identity" and seq is not None:
            self.seqs[n.output[0]] = list(seq)
        elif op == "SequenceLength" and seq is not None:
            self.add_const(n.output[0], np.array(len(seq), np.int64))
        elif op == "SequenceAt" and seq is not None:
            pos = self.position(seq, ins[1], 0, insert=False)
            if pos is None:
                return False
            self.emit("Identity", [seq[pos]], [n.output[0]])
        elif op == "SequenceInsert" and seq is not None:
            pos = self.position(seq, ins[2] if len(ins) > 2 else "", len(seq), insert=True)
            if pos is None:
                return False
            self.seqs[n.output[0]] = seq[:pos] + [ins[1]] + seq[pos:]
        elif op == "SequenceErase" and seq is not None:
            pos = self.position(seq, ins[1] if len(ins) > 1 else "", -1, insert=False)
            if pos is None:
                return False
            self.seqs[n.output[0]] = seq[:pos] + seq[pos + 1 :]
        elif op == "ConcatFromSequence" and seq:
            return self.concat(n, seq, attrs)
        elif op == "SplitToSequence" and ins:
            return self.split(n, ins, attrs)
        elif op == "Optional":
            self.opts[n.output[0]] = ins[0] if ins and ins[0] else EMPTY
        elif op == "OptionalHasElement":
            has = self.has_element(ins[0] if ins else "")
            if has is None:
                return False
            self.add_const(n.output[0], np.array(has))
        elif op == "OptionalGetElement" and ins:
            return self.get_element(n, ins[0])
        else:
            return False
        return True

    def has_element(self, name: str) -> bool | None:
        if not name:
            return False
        if name in self.opts:
            return self.opts[name] is not EMPTY
        if name in self.seqs:
            return True
        return None

    def get_element(self, n, name: str) -> bool:
        payload = self.opts.get(name, name)
        if payload is EMPTY:
            return False
        if payload in self.seqs:
            self.seqs[n.output[0]] = list(self.seqs[payload])
        elif name in self.opts or self.rank(name) is not None:
            self.emit("Identity", [payload], [n.output[0]])
        else:
            return False
        return True

    def concat(self, n, seq: list[str], attrs: dict) -> bool:
        axis = int(attrs.get("axis", 0))
        parts = list(seq)
        if attrs.get("new_axis", 0):
            rank = self.rank(seq[0])
            if rank is None:
                return False
            axis = axis + rank + 1 if axis < 0 else axis
            lifted = []
            for k, name in enumerate(parts):
                out = f"{n.output[0]}/item{k}"
                extra, kw = self.axes_operand(out, [axis])
                self.emit("Unsqueeze", [name, *extra], [out], **kw)
                lifted.append(out)
            parts = lifted
        self.emit("Concat", parts, [n.output[0]], axis=axis)
        return True

    def split(self, n, ins: list[str], attrs: dict) -> bool:
        shape = self.shape(ins[0])
        if shape is None:
            return False
        axis = int(attrs.get("axis", 0))
        axis = axis + len(shape) if axis < 0 else axis
        length = shape[axis]
        split_name = ins[1] if len(ins) > 1 else ""
        squeeze = False
        if not split_name:
            sizes = [1] * length
            squeeze = not attrs.get("keepdims", 1)
        elif split_name in self.consts:
            given = np.asarray(self.consts[split_name]).astype(np.int64)
            if given.ndim == 0:
                step = int(given)
                if step <= 0:
                    return False
                sizes = [step] * (length // step) + ([length % step] if length % step else [])
            else:
                sizes = [int(s) for s in given]
        else:
            return False
        if not sizes or sum(sizes) != length or min(sizes) <= 0:
            return False
        base = n.output[0]
        parts = [f"{base}/part{k}" for k in range(len(sizes))]
        sizes_arr = np.array(sizes, np.int64)
        if self.opset >= 13:
            self.emit(
                "Split", [ins[0], self.add_const(f"{base}/sizes", sizes_arr)], parts, axis=axis
            )
        else:
            self.emit("Split", [ins[0]], parts, axis=axis, split=sizes)
        self.ranks.update((p, len(shape)) for p in parts)
        if squeeze:
            items = []
            for k, part in enumerate(parts):
                out = f"{base}/item{k}"
                extra, kw = self.axes_operand(out, [axis])
                self.emit("Squeeze", [part, *extra], [out], **kw)
                self.ranks[out] = len(shape) - 1
                items.append(out)
            parts = items
        self.seqs[base] = parts
        return True


def _reads(nodes, graph_outputs) -> set[str]:
    return {i for n in nodes for i in node_reads(n)} | set(graph_outputs)


def resolve_static(nodes, consts: dict, infos: dict, opset: int, graph_outputs):
    """Rewrite statically known sequence/optional uses; returns (nodes, resolved node names).

    A resolved node is replaced by the plain nodes it emitted (possibly none). Producers of
    sequences/optionals are put back while something still reads their result (an unresolved
    use, refused later by the lowerings below), so the graph stays well-formed."""
    if not any(n.op_type in STATIC_OPS for n in nodes):
        return nodes, []  # nothing to resolve: most models (a pass over all nodes saved)
    resolver = _Resolver(consts, infos, opset)
    plan: list[tuple[onnx.NodeProto, list[onnx.NodeProto] | None]] = []
    for n in nodes:
        start = len(resolver.out)
        if n.domain in ("", "ai.onnx") and resolver.visit(n):
            plan.append((n, resolver.out[start:]))
        else:
            del resolver.out[start:]
            plan.append((n, None))
    emitted_outputs = {o for _, new in plan if new for e in new for o in e.output}
    kept = {id(n) for n, new in plan if new is None}
    while True:
        current = [n for n, _ in plan if id(n) in kept] + [e for _, new in plan if new for e in new]
        reads = _reads(current, graph_outputs)
        back = [
            n
            for n, new in plan
            if id(n) not in kept
            and any(o in reads and o not in consts and o not in emitted_outputs for o in n.output)
        ]
        if not back:
            break
        kept.update(id(n) for n in back)
    # A kept producer is visited again next round and emits the same (deterministically
    # named) nodes: those already in the graph are not added twice.
    existing = {o for n, new in plan if new is None for o in n.output}
    out: list[onnx.NodeProto] = []
    resolved = []
    for n, new in plan:
        if id(n) in kept:
            out.append(n)
        else:
            resolved.append(n.name or n.op_type)
        out.extend(e for e in new or [] if not set(e.output) & existing)
    return out, resolved
