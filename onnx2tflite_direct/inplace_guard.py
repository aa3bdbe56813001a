"""Keep LiteRT's in-place buffer sharing from overwriting a tensor that is still to be read.

Why: LiteRT's arena planner (``ArenaPlanner::IdentifyInPlaceTensors``, tflite/arena_planner.cc)
lets an operator write its output into the buffer of an input (the kernels registered with
``kTfLiteInplaceOp*`` flags: ADD, SUB, MUL, DIV, SOFTMAX, DYNAMIC_UPDATE_SLICE modify the
data; RESHAPE, SQUEEZE, EXPAND_DIMS, BITCAST only rename it). A data-modifying operator may
take over its input's buffer only when that input has one reader; the planner checks the input
itself and the *root* of its sharing chain, but not the tensors in between. So in

    a = MUL(w, 2)       # shares w's buffer (w has one reader)
    r = RESHAPE(a)      # an alias of that buffer: never checked, a may have other readers
    d = DIV(r, 3)       # r has one reader and the root w has one: d overwrites a's buffer
    y = MUL(a, 5)       # reads the quotient instead of a

the built-in kernels give a silently wrong ``y`` (XNNPACK, which takes the whole graph as one
node, and ``experimental_preserve_all_tensors``, which turns sharing off, are right). The
converter emits such chains everywhere (a Q/DQ pair's MUL, a Reshape read by two branches).
docs/litert_known_issues.md has the minimal repro.

:func:`protect` runs the planner's sharing rules on a subgraph (refcounts as the planner counts
them: one per reading input slot, plus one per graph input, output and variable) and, for each
chain where a data-modifying operator would overwrite an alias that another operator still
reads, makes the renaming operator read a copy (an identity TRANSPOSE: no in-place flag, exact
for every type, delegated by XNNPACK and the GPU delegate) instead, so the copy is the chain's
root and the planner's own root check holds. The builder calls it on every subgraph it writes,
so every file is safe whichever pass made the pattern. Graphs without the pattern are
unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from . import tfl

# Registration flags per opcode: (input slots that may be shared, data unmodified).
_MODIFYING = {
    "ADD": (0, 1),
    "SUB": (0, 1),
    "MUL": (0, 1),
    "DIV": (0, 1),
    "SOFTMAX": (0,),
    "DYNAMIC_UPDATE_SLICE": (0,),
}
_RENAMING = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "BITCAST"}
_SCALAR_BYTES = 4  # arena_planner.cc kScalarTensorBytes: never shared by a modifying op
_MAX_COPY_RANK = 6  # TRANSPOSE's


def _bytes(t: tfl.Tensor) -> int | None:
    """The planner's ``tensor.bytes``; None when a dimension is dynamic (its size is known
    only after a resize: taken as "may be shared", the conservative side)."""
    if t.shape_signature is not None and any(d < 0 for d in t.shape_signature):
        return None
    return math.prod(t.shape) * np.dtype(t.dtype).itemsize


def _refcounts(sub: tfl.Subgraph) -> dict[int, int]:
    counts: dict[int, int] = {}
    variables = [t for t in sub.tensors() if t.is_variable]
    for t in (*sub.outputs, *sub.inputs, *variables):
        counts[id(t)] = counts.get(id(t), 0) + 1
    for op in sub.operators:
        for t in op.inputs:
            if t is not None:
                counts[id(t)] = counts.get(id(t), 0) + 1
    return counts


def hazards(sub: tfl.Subgraph) -> list[tuple[tfl.Operator, int]]:
    """(renaming operator, input slot) pairs whose input is an alias that a data-modifying
    operator further down its chain would overwrite while another reader still needs it.

    Mirrors IdentifyInPlaceTensors: operators in execution order; a renaming operator shares
    its input unconditionally, a modifying one the first flagged input with one reader and the
    same byte size (above a scalar's); never a graph input, into a graph output, a constant or
    a variable. Conservative where the planner's outcome depends on what a delegate takes: the
    chain root's own reader count is not required (see below), so a chain may be cut that the
    interpreter without delegates would have left alone; the chain's first tensor is never
    flagged (it is a root in every partition, and the planner checks roots)."""
    refs = _refcounts(sub)
    graph_in = {id(t) for t in sub.inputs}
    graph_out = {id(t) for t in sub.outputs}
    # id(tensor) -> (the tensor it aliases, the operator and slot that made it alias)
    link: dict[int, tuple[tfl.Tensor, tfl.Operator, int]] = {}
    root: dict[int, tfl.Tensor] = {}
    found: dict[int, tuple[tfl.Operator, int]] = {}
    for op in sub.operators:
        renaming = op.opcode in _RENAMING
        slots = (0,) if renaming else _MODIFYING.get(op.opcode)
        if slots is None or not op.outputs:
            continue
        out = op.outputs[0]
        if id(out) in graph_out or out.dtype == np.dtype(object):
            continue
        chosen = None
        for i in slots:
            src = op.inputs[i] if i < len(op.inputs) else None
            if src is None or src.is_constant or src.is_variable or id(src) in graph_in:
                continue
            if src.dtype == np.dtype(object):
                continue
            if not renaming:
                nb_in, nb_out = _bytes(src), _bytes(out)
                if nb_in is not None and nb_out is not None:
                    if nb_in != nb_out or nb_in <= _SCALAR_BYTES:
                        continue
                if refs.get(id(src), 0) > 1:
                    continue
            chosen = i
            break
        if chosen is None:
            continue
        src = op.inputs[chosen]
        top = root.get(id(src), src)
        if not renaming:
            # The planner would also ask the chain's root for one reader; that check is not
            # made here: with a delegate the root may be a delegate node's output further down
            # the chain (with one reader), so any alias in between that others read is at risk.
            t = src
            while id(t) in link:
                parent, via, slot = link[id(t)]
                if parent is not top and refs.get(id(parent), 0) > 1:
                    found.setdefault(id(via), (via, slot))
                t = parent
        link[id(out)] = (src, op, chosen)
        root[id(out)] = top
    return list(found.values())


def _copy(src: tfl.Tensor, perms: dict[int, tfl.Tensor], like: tfl.Operator) -> tfl.Operator:
    """TRANSPOSE ``src`` by the identity permutation into a new tensor (an exact copy)."""
    rank = len(src.shape)
    perm = perms.get(rank)
    if perm is None:
        data = np.arange(rank, dtype=np.int32)
        perm = perms[rank] = tfl.Tensor(f"identity_perm_{rank}", data.dtype, (rank,), data)
    copy = tfl.Tensor(
        f"{src.name}/unaliased",
        src.dtype,
        src.shape,
        quantization=src.quantization,
        shape_signature=src.shape_signature,
    )
    return tfl.Operator("TRANSPOSE", [src, perm], [copy], onnx_node=like.onnx_node)


def protect(sub: tfl.Subgraph) -> int:
    """Break every hazardous chain (:func:`hazards`) with a copy; returns how many copies were
    inserted. The renaming operator reads a copy of its input; when that input has no rank
    TRANSPOSE takes (a 0-d int64, say), the renaming operator's output is copied instead and
    its readers read the copy. Repeats until the planner's rules find no hazard (a copy
    changes the refcounts and roots further down)."""
    added = 0
    perms: dict[int, tfl.Tensor] = {}
    for _ in range(len(sub.operators) + 1):
        todo = hazards(sub)
        if not todo:
            return added
        before: dict[int, tfl.Operator] = {}
        after: dict[int, tfl.Operator] = {}
        for op, slot in todo:
            src, out = op.inputs[slot], op.outputs[0]
            if 1 <= len(src.shape) <= _MAX_COPY_RANK:
                before[id(op)] = _copy(src, perms, op)
                op.inputs[slot] = before[id(op)].outputs[0]
            elif 1 <= len(out.shape) <= _MAX_COPY_RANK:
                after[id(op)] = cp = _copy(out, perms, op)
                for reader in sub.operators:
                    reader.inputs = [cp.outputs[0] if t is out else t for t in reader.inputs]
            else:  # pragma: no cover - TFLite tensors of rank > 6 and 0-d on both sides
                raise AssertionError(f"no identity copy for {src.name} -> {out.name}")
        ops = []
        for op in sub.operators:
            if id(op) in before:
                ops.append(before[id(op)])
            ops.append(op)
            if id(op) in after:
                ops.append(after[id(op)])
        sub.operators[:] = ops
        added += len(before) + len(after)
    raise AssertionError("in-place guard did not converge")  # pragma: no cover
