"""Full-integer files choose the form of each recurrent layer that has integer kernels.

Why: the float file lowers an LSTM/GRU/RNN to the form measured fastest in float (a WHILE loop,
LiteRT's float UNIDIRECTIONAL_SEQUENCE_LSTM kernel, or unrolled cells). A WHILE loop has no
integer kernel (its body is not quantized), and LiteRT runs the sequence-LSTM kernel in integer
only with int8 activations (8x8->16; its 16x8 version is not registered on CPU). So the lowering
also emits, beside the graph, the node's forms that do have integer kernels
(``lowering/recurrent.py``, ``tfl.Subgraph.alternatives``), and a full-integer variant swaps
in:

* int8 files: the integer sequence-LSTM kernel where the LSTM fits it (``quant/integer_lstm``),
  else the unrolled cell (int16x8 inside the int8 file, ``integer_widths``);
* int16x8 files: the unrolled cell.

The unrolled cell has a fixed step count, so it is only swapped in where the sequence length
(and batch) of the node's input are static; the kernel takes a run-time sequence length (its
time axis is made resizable, :func:`_dynamic_time`). A node with neither keeps its loop and the
strict full-integer file is refused naming it (``strict.KNOWN_GAPS``). The float file, the
float-I/O integer files (a float loop is the more accurate island where floats are allowed)
and ``--unroll-rnn`` are untouched (with ``--unroll-rnn`` every cell is unrolled already).
"""

from __future__ import annotations

import copy

import numpy as np

from .. import tfl

# Per file width: the forms to swap in, in order of preference.
PREFERRED = {False: ("kernel", "unrolled"), True: ("unrolled",)}
# A current form kept at that width (it has integer kernels there).
KEPT = {False: ("kernel",), True: ()}


def copy_model(model: tfl.Model) -> tfl.Model:
    """``copy.deepcopy`` that keeps ``Subgraph.renamed`` valid: its keys are id()s of the
    original tensors, re-keyed to their copies (the swap below reads it)."""
    memo: dict = {}
    copied = copy.deepcopy(model, memo)
    for new in copied.subgraphs:
        new.renamed = {id(memo[k]): v for k, v in new.renamed.items() if k in memo}
    return copied


def has_alternatives(model: tfl.Model) -> bool:
    return bool(model.subgraphs and model.subgraphs[0].alternatives)


def use_integer_forms(model: tfl.Model, int16: bool) -> list[dict]:
    """Swap, IN PLACE, every recurrent node's integer form into the main subgraph; returns one
    row per node considered: {"node", "from", "to"} ("to" None: kept, with "why")."""
    sub = model.subgraphs[0]
    by_node: dict[str, list[dict]] = {}
    for alt in sub.alternatives:
        by_node.setdefault(alt["node"], []).append(alt)
        # an input a rewrite removed: judge the dims of the tensor now holding its values
        alt["inputs"] = [_renamed(sub, t) or t for t in alt["inputs"]]
    rows = []
    for node, alts in by_node.items():
        current = alts[0]["current"]
        if current in KEPT[int16]:
            continue
        chosen = _choose(alts, int16)
        if chosen is None:
            rows.append({"node": node, "from": current, "to": None, "why": _why_not(alts)})
            continue
        if not _static(chosen):
            _dynamic_time(chosen)
        if not _swap(model, node, chosen):
            why = "the graph around it was rewritten in a way the alternative cannot follow"
            rows.append({"node": node, "from": current, "to": None, "why": why})
            continue
        rows.append({"node": node, "from": current, "to": chosen["form"]})
    sub.alternatives = []
    return rows


def _dynamic_axes(alt: dict) -> set[int]:
    """Axes of the node's input a dynamic-shape model marks -1 (run-time sizes)."""
    return {
        axis
        for t in alt["inputs"]
        if t.shape_signature is not None
        for axis, d in enumerate(t.shape_signature)
        if d < 0
    }


def _usable(alt: dict) -> bool:
    """Static input dims, or (the sequence kernel) only the time axis dynamic: the kernel
    runs any length, the unrolled cell has a fixed step count."""
    axes = _dynamic_axes(alt)
    return not axes or (alt["form"] == "kernel" and axes == {alt["time_axis"]})


def _static(alt: dict) -> bool:
    return not _dynamic_axes(alt)


def _choose(alts: list[dict], int16: bool) -> dict | None:
    forms = {a["form"]: a for a in alts if _usable(a)}
    return next((forms[f] for f in PREFERRED[int16] if f in forms), None)


def _dynamic_time(alt: dict) -> None:
    """The kernel form lowered at a sample length, made resizable along time: its tensors
    carrying the time axis (rank 3: [T, B, H] or [B, T, H]; rank 4: Y) get -1 there in
    ``shape_signature`` and its RESHAPE targets -1 at that entry (LiteRT infers it)."""
    t_axis = alt["time_axis"]
    for op in alt["ops"]:
        for t in op.outputs:
            if t.rank in (3, 4):
                signature = list(t.shape)
                signature[t_axis] = -1
                t.shape_signature = tuple(signature)
        if op.opcode == "RESHAPE" and op.outputs[0].rank in (3, 4):
            target = list(op.outputs[0].shape_signature)
            op.options["new_shape"] = target
            if len(op.inputs) > 1 and op.inputs[1] is not None:
                op.inputs[1] = tfl.Tensor(
                    f"{op.outputs[0].name}/dynamic_shape",
                    np.int32,
                    (len(target),),
                    data=np.array(target, np.int32),
                )


def _why_not(alts: list[dict]) -> str:
    if any(not _usable(a) for a in alts):
        return "the sequence length or batch is dynamic"
    return "no form with integer kernels fits"


def _swap(model: tfl.Model, node: str, alt: dict) -> bool:
    """Replace the operators of ``node`` in the main subgraph by the alternative's (placed
    where the node's first operator was); False (graph unchanged) when they cannot be wired
    in.

    The graph was rewritten after lowering (``tfl_rewrites``) and the alternatives were not:
    an output the alternative writes may have been removed, its readers reading the float
    form's tensor instead (``sub.renamed``): a RESHAPE then writes that tensor from the
    alternative's; an operator a rewrite created outside the node that only recomputes what
    the alternative writes (or feeds only the removed loop) goes. Old operators of the node
    whose output the new ones read (a layout copy of the input) stay. The WHILE bodies no
    operator references any more are dropped (other subgraph references renumbered)."""
    sub = model.subgraphs[0]
    time_axis = None if _static(alt) else alt["time_axis"]
    head, new_ops = [], list(alt["ops"])
    for op in new_ops:  # an input a rewrite removed: its values are in the renamed tensor
        for k, t in enumerate(op.inputs):
            target = _renamed(sub, t) if t is not None else None
            if target is None:
                continue
            if target.shape == t.shape:
                op.inputs[k] = target
            elif all(r.outputs[0] is not t for r in head):
                head.append(_reshape(target, t, time_axis))
    for op in list(new_ops):
        for t in op.outputs:
            target = _renamed(sub, t)
            if target is not None:
                new_ops.append(_reshape(t, target, time_axis))
    for i, src in alt["sources"].items():  # the float form's tensor readers may now read
        out = alt["outputs"][i]
        if src is not out:
            new_ops.append(_reshape(out, src, time_axis))
    new_ops = head + new_ops
    written = {id(t) for op in new_ops for t in op.outputs}
    read = {id(t) for op in new_ops for t in op.inputs if t is not None}
    kept, dropped, first = [], [], None
    for op in sub.operators:
        if op.onnx_node != node:
            if op.outputs and all(id(t) in written for t in op.outputs):
                dropped.append(op)  # recomputes an output of the node
            else:
                kept.append(op)
            continue
        first = len(kept) if first is None else first
        needed = any(id(t) in read and id(t) not in written for t in op.outputs)
        (kept if needed else dropped).append(op)
    if first is None:
        return False
    operators = kept[:first] + new_ops + kept[first:]
    operators = _without_dead_dangling(sub, operators)
    if operators is None:
        return False
    sub.operators = operators
    _drop_unreferenced_subgraphs(model, dropped)
    return True


def _renamed(sub: tfl.Subgraph, t: tfl.Tensor) -> tfl.Tensor | None:
    seen = 0
    target = None
    while id(t) in sub.renamed and seen < 100:
        t = target = sub.renamed[id(t)]
        seen += 1
    return target


def _reshape(src: tfl.Tensor, dst: tfl.Tensor, time_axis: int | None) -> tfl.Operator:
    """RESHAPE src -> dst; with a run-time sequence length (``time_axis``), the time entry
    of a [T, B, H] / [T, D, B, H] target is -1 (LiteRT infers it)."""
    target = list(dst.shape)
    if time_axis is not None and dst.rank in (3, 4):
        target[time_axis] = -1
        dst.shape_signature = tuple(target)
    data = np.array(target, np.int32)
    shape = tfl.Tensor(f"{dst.name}/alt_shape", np.int32, (len(target),), data=data)
    return tfl.Operator("RESHAPE", [src, shape], [dst], {"new_shape": target})


def _without_dead_dangling(sub, operators):
    """``operators`` without the ones the swap left dead: reading a value nothing writes any
    more, or whose results were read before and are not now (a rewrite's op that only fed
    the removed loop, a run-time shape computed for a removed RESHAPE); None if a live op
    still reads a value nothing writes (the alternative cannot be wired in)."""
    graph_inputs = {id(t) for t in sub.inputs}
    outputs = {id(t) for t in sub.outputs}
    read_before = {id(t) for op in sub.operators for t in op.inputs if t is not None}
    while True:
        produced = graph_inputs | {id(t) for op in operators for t in op.outputs}
        readers = {id(t) for op in operators for t in op.inputs if t is not None}

        def unread(op, readers=readers):
            return not any(id(t) in readers or id(t) in outputs for t in op.outputs)

        dangling = [
            op
            for op in operators
            if any(
                t is not None and t.data is None and id(t) not in produced and not t.is_variable
                for t in op.inputs
            )
        ]
        if any(not unread(op) for op in dangling):
            return None
        orphaned = [
            op
            for op in operators
            if op.outputs
            and unread(op)
            and any(id(t) in read_before for t in op.outputs)
            and not any(t.is_variable for t in op.outputs)
        ]
        dead = dangling + orphaned
        if not dead:
            return operators
        operators = [op for op in operators if all(op is not d for d in dead)]


def _subgraph_refs(op: tfl.Operator) -> list[str]:
    return [k for k, v in op.options.items() if k.endswith("subgraph_index") and isinstance(v, int)]


def _drop_unreferenced_subgraphs(model: tfl.Model, dropped: list[tfl.Operator]) -> None:
    orphans = set()
    for op in dropped:
        for key in _subgraph_refs(op):
            orphans.add(op.options[key])
    # a body's own nested loops go too
    frontier = list(orphans)
    while frontier:
        index = frontier.pop()
        for op in model.subgraphs[index].operators:
            for key in _subgraph_refs(op):
                if op.options[key] not in orphans:
                    orphans.add(op.options[key])
                    frontier.append(op.options[key])
    if not orphans:
        return
    keep = [i for i in range(len(model.subgraphs)) if i not in orphans]
    new_index = {old: new for new, old in enumerate(keep)}
    model.subgraphs[:] = [model.subgraphs[i] for i in keep]
    for sub in model.subgraphs:
        for op in sub.operators:
            for key in _subgraph_refs(op):
                op.options[key] = new_index[op.options[key]]
    for sig in getattr(model, "signatures", None) or []:
        if hasattr(sig, "subgraph_index"):
            sig.subgraph_index = new_index.get(sig.subgraph_index, sig.subgraph_index)


def fold_constant_products(sub: tfl.Subgraph) -> int:
    """FULLY_CONNECTED ops reading only constants (an unrolled cell's first recurrent product
    of a constant initial state) become their constant result, IN PLACE; returns how many.
    Why here: the integer rewrite gives params to activations, and such an op's activation is
    a constant (a bidirectional GRU's full-integer file failed on it); the float file keeps
    the op (LiteRT computes it once per run at the same float32 precision)."""
    folded = []
    for op in sub.operators:
        if (
            op.opcode != "FULLY_CONNECTED"
            or op.options.get("fused_activation_function", "NONE") != "NONE"
        ):
            continue
        x, w = op.inputs[0], op.inputs[1]
        b = op.inputs[2] if len(op.inputs) > 2 else None
        operands = [t for t in (x, w, b) if t is not None]
        if any(t.data is None or t.dtype != np.float32 for t in operands):
            continue
        out = x.data.astype(np.float64).reshape(-1, w.shape[1]) @ w.data.astype(np.float64).T
        if b is not None:
            out = out + b.data.astype(np.float64)
        result = op.outputs[0]
        result.data = out.astype(np.float32).reshape(result.shape)
        folded.append(op)
    if folded:
        sub.operators = [op for op in sub.operators if all(op is not f for f in folded)]
    return len(folded)
