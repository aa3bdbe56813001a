"""Proto-level passes: named, reported, switchable rules run between inference rounds.

Why on ONNX protos and not on the IR like ``onnx_rewrites``: each one gives shape inference or
folding a fact it cannot find itself (the branch a constant If takes, the length of an
``x[i:i+k]`` window, the trip count of a for-loop), so it must run inside the front end's
inference/folding loop. Like the other rewrites each rule has an id that ``--disable-rewrite``
turns off (``--no-fuse`` does not: they are not fusions) and a ``rewrites`` report entry.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import UnsupportedError
from ..ir import Value
from .branch_shapes import control_flow_hints
from .protos import constant_value, dims_of


def inline_constant_ifs(nodes, consts) -> tuple[list[onnx.NodeProto], list[str]]:
    """Replace each If whose condition is a known constant by the nodes of the taken branch.

    The branch's outputs are renamed to the If's outputs through Identity nodes; its Constant
    nodes and initializers join ``consts``. Outer-scope reads precede the If in topological
    order, and a branch is itself topologically sorted, so the order stays valid.
    """
    out: list[onnx.NodeProto] = []
    inlined: list[str] = []
    for n in nodes:
        cond = consts.get(n.input[0]) if n.op_type == "If" and n.input else None
        if cond is None or n.domain not in ("", "ai.onnx") or np.asarray(cond).size != 1:
            out.append(n)
            continue
        key = "then_branch" if bool(np.asarray(cond).reshape(-1)[0]) else "else_branch"
        branch = next((a.g for a in n.attribute if a.name == key), None)
        if branch is None:  # malformed If: left for the lowering to refuse
            out.append(n)
            continue
        for t in branch.initializer:
            consts[t.name] = numpy_helper.to_array(t)
        for sn in branch.node:
            if sn.op_type == "Constant" and sn.domain in ("", "ai.onnx"):
                consts[sn.output[0]] = constant_value(sn)
            else:
                out.append(sn)
        for src, dst in zip(branch.output, n.output, strict=False):
            if dst:
                out.append(helper.make_node("Identity", [src.name], [dst], name=f"{dst}/inlined"))
        inlined.append(n.name or n.op_type)
    return out, inlined


WINDOW_WRAPPERS = ("Unsqueeze", "Reshape", "Identity", "Squeeze", "Cast")


def window_slice_hints(nodes, consts, infos, known) -> dict[str, onnx.ValueInfoProto]:
    """Output shapes of ``Slice(x, s, s + k)`` with a run-time ``s`` (``x[i:i+k]`` in loops).

    ONNX inference cannot see that such a window has ``k`` elements along its axis; the
    window's length is ``k`` whenever ``s`` is in range (when it is not, the run-time
    STRIDED_SLICE computes the real, smaller shape and the following ops fail loudly)."""
    candidates = [n for n in nodes if n.op_type == "Slice" and len(n.input) >= 3]
    if not any(n.input[1] not in consts for n in candidates):
        return {}  # no run-time start: nothing to prove (most models: the pass is skipped)
    producer = {o: n for n in nodes for o in n.output if o}

    def strip(name: str) -> str:
        while name in producer and producer[name].op_type in WINDOW_WRAPPERS:
            name = producer[name].input[0]
        return name

    out = {}
    for n in candidates:
        if n.output[0] in known:
            continue
        vi, src = infos.get(n.output[0]), infos.get(n.input[0])
        dims = dims_of(vi) if vi else None
        x = consts[n.input[0]].shape if n.input[0] in consts else (dims_of(src) if src else None)
        if dims is None or x is None or None not in dims or None in x:
            continue
        steps = consts.get(n.input[4]) if len(n.input) > 4 and n.input[4] else np.ones(1)
        axes = consts.get(n.input[3]) if len(n.input) > 3 and n.input[3] else np.zeros(1)
        add = producer.get(strip(n.input[2]))
        if steps is None or axes is None or np.asarray(axes).size != 1 or add is None:
            continue
        if np.any(np.asarray(steps) != 1) or add.op_type != "Add":
            continue
        start = strip(n.input[1])
        terms = list(add.input)
        if start not in terms or len(terms) != 2:
            continue
        k = consts.get(terms[1 - terms.index(start)])
        if k is None or np.asarray(k).size != 1 or int(np.asarray(k).reshape(-1)[0]) <= 0:
            continue
        axis = int(np.asarray(axes).reshape(-1)[0]) % len(x)
        shape = list(x)
        shape[axis] = min(int(np.asarray(k).reshape(-1)[0]), x[axis])
        out[n.output[0]] = helper.make_tensor_value_info(
            n.output[0], vi.type.tensor_type.elem_type, shape
        )
    return out


def _always_true_loop(node: onnx.NodeProto, consts) -> bool:
    """Condition input constant true and the body's condition output provably true: the body
    passes its condition input through, or returns a true Constant (exporters' for-loops)."""
    cond = consts.get(node.input[1])
    if cond is None or not bool(np.all(cond)):
        return False
    body = next((a.g for a in node.attribute if a.name == "body"), None)
    if body is None or not body.input or not body.output:
        return False
    name = body.output[0].name
    producer = {o: sn for sn in body.node for o in sn.output}
    while name in producer and producer[name].op_type == "Identity":
        name = producer[name].input[0]
    if name == body.input[1].name:
        return True
    src = producer.get(name)
    if src is not None and src.op_type == "Constant" and src.domain in ("", "ai.onnx"):
        try:
            return bool(np.all(constant_value(src)))
        except UnsupportedError:
            return False
    return False


def pin_loop_scan_lengths(nodes, values: dict[str, Value], consts) -> list[str]:
    """A Loop with a constant trip count and no condition input runs exactly that many times:
    its scan outputs have that length (ONNX shape inference leaves it unknown). Returns the
    scan outputs it pinned."""
    pinned = []
    for n in nodes:
        if n.op_type != "Loop" or n.domain not in ("", "ai.onnx") or len(n.input) < 2:
            continue
        if n.input[0] not in consts or (n.input[1] and not _always_true_loop(n, consts)):
            continue
        trips = max(int(np.asarray(consts[n.input[0]]).reshape(-1)[0]), 0)
        for name in n.output[len(n.input) - 2 :]:
            v = values.get(name)
            if v is not None and v.shape and v.shape[0] is None:
                v.shape = (trips, *v.shape[1:])
                pinned.append(name)
    return pinned


# Rule ids (``--disable-rewrite`` and the report's ``rewrites`` entries), in the order they run.
RULES = (
    ("inline_constant_ifs", inline_constant_ifs),
    ("window_slice_hints", window_slice_hints),
    ("control_flow_shapes", control_flow_hints),
    ("pin_loop_scan_lengths", pin_loop_scan_lengths),
)


# Rules whose changed names are nodes they took out of the graph (their report rows say
# "folded"); the others name tensors whose shape they proved (the nodes stay and are lowered).
REMOVING = frozenset({"inline_constant_ifs"})


class ProtoRules:
    """The proto rules of one front-end run: which are on, and what each changed.

    The rules run at different points of the inference loop (before inference, after it, on
    the final values), so the loop calls them through :meth:`run`, which skips a disabled
    rule (returning ``off``) and records what an enabled one changed for the report."""

    def __init__(self, disabled: frozenset[str] = frozenset()):
        self.functions = {name: fn for name, fn in RULES if name not in disabled}
        self.changed: dict[str, list[str]] = {name: [] for name, _ in RULES}

    def run(self, name: str, off, *args):
        """``fn(*args)`` of rule ``name``, or ``off`` when the rule is disabled."""
        fn = self.functions.get(name)
        if fn is None:
            return off
        result = fn(*args)
        self.changed[name].extend(_changed_names(result))
        return result

    def entries(self) -> list[tuple[str, int, list[str]]]:
        """``(rule, count, removed node names)`` per rule, for ``ReportBuilder.rewrite``."""
        return [
            (name, len(names), list(names) if name in REMOVING else [])
            for name, names in self.changed.items()
        ]


def _changed_names(result) -> list[str]:
    """What a rule reports: inline_constant_ifs (nodes, names), window_slice_hints
    {output: value info}, pin_loop_scan_lengths [names]."""
    if isinstance(result, tuple):
        return result[1]
    return list(result)
