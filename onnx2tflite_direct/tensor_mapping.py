"""ONNX tensor name -> the TFLite tensor holding it, and how to read it back in ONNX order.

Used by per-tensor diagnostics and by calibration (ONNX ranges onto TFLite tensors).

Besides the tensor that *is* an ONNX value, the final graph holds tensors that only exist in
TFLite: a PAD before a convolution, a TRANSPOSE or RESHAPE materializing a value in another
layout, a TRANSPOSE_CONV result that a slice crops to the ONNX output. Those are found by
structure (the operators of the final graph, after the rewrites), not by name, and listed under
``derived`` with the exact steps that turn their stored array back into the ONNX tensor's stored
array. Temporaries of a multi-operator lowering that represent no ONNX value (the mean of a
decomposed LayerNormalization) are listed under ``internal`` of their node's output: attributed,
never compared, never counted as mapped.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from . import tfl
from .driver import Driver

# Ops whose output holds the same elements as input 0 in the same memory order.
_SAME_ORDER = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
_PADS = frozenset({"PAD", "PADV2", "MIRROR_PAD"})


def tensor_map(driver: Driver) -> dict[str, dict]:
    """ONNX tensor name -> the TFLite tensor holding it in the final graph, and its layout.

    Only tensors that survive the rewrites are listed (a conv output fused with its Relu is
    gone); ``perm`` and ``inner`` say how to turn the stored array back into ONNX order.
    ``derived`` lists TFLite-only tensors holding the same values (see
    :func:`derived_tensors`; ``pad_values``: constants a padded copy holds besides them); ``internal`` lists ``{"tensor", "node"}`` for temporaries of the
    lowering of the node that produced this tensor (see :func:`internal_tensors`).
    """
    holder = _holders(driver, _alive(driver.sub))
    out: dict[str, dict] = {}
    taken: set[str] = set()  # TFLite names listed so far (primary, then derived)
    primary: dict[int, str] = {}  # id(tensor) -> the first ONNX name it holds
    for name in driver.tensor_of:
        tensor = holder.get(name)
        if tensor is None:
            continue
        lay = driver.layout_of[name]
        taken.add(tensor.name)
        primary.setdefault(id(tensor), name)
        out[name] = {
            "tensor": tensor.name,
            "perm": list(lay.perm),
            "inner": None
            if lay.inner is None
            else {"shape": list(lay.inner.shape), "perm": list(lay.inner.perm)},
            "derived": [],
            "internal": [],
        }
    derived = derived_tensors(driver.sub.operators, primary)
    for tensor_name, (onnx_name, relation, steps) in derived.items():
        out[onnx_name]["derived"].append(
            {
                "tensor": tensor_name,
                "relation": relation,
                "steps": steps,
                "pad_values": _pad_values(steps),
            }
        )
    taken.update(derived)
    internal = internal_tensors(driver.sub.operators, taken, primary)
    owner = _owners(driver, out, primary, set(internal)) if internal else {}
    for node_label, names in internal.items():
        if node_label in owner:
            out[owner[node_label]]["internal"].extend(
                {"tensor": name, "node": node_label} for name in names
            )
    return out


def _alive(sub: tfl.Subgraph) -> set[int]:
    """``{id(t) for t in sub.tensors()}`` without building the ordered tensor list."""
    alive = {id(t) for t in sub.inputs}
    for op in sub.operators:
        for t in op.inputs:
            if t is not None:
                alive.add(id(t))
        for t in op.outputs:
            alive.add(id(t))
    alive.update(id(t) for t in sub.outputs)
    return alive


def _holders(driver: Driver, alive: set[int]) -> dict[str, tfl.Tensor]:
    """ONNX name -> the alive tensor holding it, following same-shape RESHAPEs a rewrite removed.

    ``collapse_reshapes`` drops a RESHAPE that changes nothing and hands its consumers the
    RESHAPE's *input*, so an ONNX value lowered as "compute a temporary, then RESHAPE it into
    the output" (ConvTranspose without a crop) loses its tensor. Recorded renames
    (``sub.renamed``: id(removed tensor) -> survivor, if the rewrite keeps them) are followed
    first; otherwise the survivor is recognised by structure: the last tensor written by the
    operators of the same (single-output) node, not itself an ONNX value, with the removed
    tensor's shape and dtype.
    Other rewrites keep the *later* tensor (a fused activation's output), so a value they
    remove (the pre-activation Conv output) really is gone and stays unlisted.
    """
    renamed = driver.sub.renamed
    out: dict[str, tfl.Tensor] = {}
    dead: dict[str, tfl.Tensor] = {}
    for name, tensor in driver.tensor_of.items():
        seen = 0
        while id(tensor) not in alive and id(tensor) in renamed and seen < 64:
            tensor, seen = renamed[id(tensor)], seen + 1
        (out if id(tensor) in alive else dead)[name] = tensor
    if not dead:
        return out
    taken = {id(t) for t in out.values()}
    producer_label = {  # single-output nodes only: no sibling output can be the survivor
        node.outputs[0]: node.label
        for node in driver.graph.nodes
        if node.outputs and node.outputs[0] in dead and len([o for o in node.outputs if o]) == 1
    }
    labels = set(producer_label.values())
    last_write: dict[str, tfl.Tensor] = {}
    for op in driver.sub.operators:  # in order: the last write of each node wins
        if op.onnx_node in labels and len(op.outputs) == 1:
            last_write[op.onnx_node] = op.outputs[0]
    # A Conv/MatMul on Q/DQ lattices keeps its integer sums; its value (sums * scale) is dead
    # when only a QuantizeLinear reads it (lowering/conv_lattice.py): the sums are not it.
    taken.update(id(sums[0]) for sums in driver.integer_sums.values())
    for name, tensor in dead.items():
        survivor = last_write.get(producer_label.get(name, ""))
        if (
            survivor is not None
            and id(survivor) not in taken
            and survivor.shape == tensor.shape
            and survivor.dtype == tensor.dtype
        ):
            out[name] = survivor
            taken.add(id(survivor))
    return out


def _owners(
    driver: Driver, out: dict[str, dict], primary: dict[int, str], labels: set[str]
) -> dict[str, str]:
    """Node label (of those in ``labels``) -> the map entry listing its temporaries.

    Its first output in the map; if a rewrite fused every output away (LayerNormalization's
    last ADD now also applies the following Relu), the ONNX tensor its last operator writes.
    """
    owner: dict[str, str] = {}
    for op in driver.sub.operators:
        if op.onnx_node in labels:
            for t in op.outputs:
                if id(t) in primary:
                    owner[op.onnx_node] = primary[id(t)]
    for node in driver.graph.nodes:
        for name in node.outputs:
            if name in out:
                if node.label in labels:
                    owner[node.label] = name
                break
    return owner


def _const(t: tfl.Tensor | None) -> np.ndarray | None:
    return None if t is None or t.data is None else np.asarray(t.data)


def _inverse(op: tfl.Operator) -> list | None:
    """Step turning the output of ``op`` back into its input 0, or None if not exact."""
    src, dst = op.inputs[0], op.outputs[0]
    if src is None or src.is_constant or dst.dtype != src.dtype:
        return None
    if op.opcode in _SAME_ORDER:
        return ["reshape", list(src.shape)]
    if op.opcode == "TRANSPOSE":
        perm = _const(op.inputs[1])
        return None if perm is None else ["transpose", [int(p) for p in np.argsort(perm)]]
    if op.opcode in _PADS:
        pads = _const(op.inputs[1])
        if pads is None:
            return None
        begin = [int(p) for p in pads.reshape(-1, 2)[:, 0]]
        return ["crop", begin, list(src.shape), _pad_fill(op)]
    return None


def _pad_fill(op: tfl.Operator) -> dict | str:
    """What a PAD puts around the value: ``{"pad_value": v}`` or "mirror" (the value's own)."""
    if op.opcode == "MIRROR_PAD":
        return "mirror"
    fill = _const(op.inputs[2]) if op.opcode == "PADV2" and len(op.inputs) > 2 else None
    if op.opcode == "PADV2" and fill is None:
        return "computed"  # a runtime pad value: nothing known about it
    return {"pad_value": 0.0 if fill is None else float(fill.reshape(-1)[0])}


def _forward(op: tfl.Operator) -> list | None:
    """Step turning input 0 of ``op`` into its output, for window/relabel ops, or None."""
    src, dst = op.inputs[0], op.outputs[0]
    if src is None or src.is_constant or dst.dtype != src.dtype:
        return None
    if op.opcode in _SAME_ORDER:
        return ["reshape", list(dst.shape)]
    if op.opcode == "TRANSPOSE":
        perm = _const(op.inputs[1])
        return None if perm is None else ["transpose", [int(p) for p in perm]]
    if op.opcode == "SLICE":
        begin = _const(op.inputs[1])
        if begin is None:
            return None
        return ["crop", [int(b) for b in begin], list(dst.shape), "computed"]
    if op.opcode == "STRIDED_SLICE":
        return _strided_window(op)
    return None


def _strided_window(op: tfl.Operator) -> list | None:
    """A unit-stride, same-rank STRIDED_SLICE as a crop step (anything fancier: None)."""
    src, dst = op.inputs[0], op.outputs[0]
    begin, strides = _const(op.inputs[1]), _const(op.inputs[3]) if len(op.inputs) > 3 else None
    fancy = ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask", "offset")
    if begin is None or strides is None or any(op.options.get(k) for k in fancy):
        return None
    if len(src.shape) != len(dst.shape) or np.any(strides != 1):
        return None
    mask = int(op.options.get("begin_mask", 0) or 0)
    start = []
    for axis, b in enumerate(begin):
        b = 0 if mask >> axis & 1 else int(b)
        start.append(b + src.shape[axis] if b < 0 else b)
    if any(s + d > n for s, d, n in zip(start, dst.shape, src.shape, strict=True)):
        return None
    return ["crop", start, list(dst.shape), "computed"]


def _relation(steps: Iterable[list]) -> str:
    """ "contains" (a window of a larger computed tensor), "padded", "permuted" or "reshaped"."""
    crops = [s[3] for s in steps if s[0] == "crop"]
    if "computed" in crops:
        return "contains"
    if crops:
        return "padded"
    return "permuted" if any(s[0] == "transpose" for s in steps) else "reshaped"


def _pad_values(steps: Iterable[list]) -> list[float]:
    """The constants a padded copy holds besides the value (what calibration must cover)."""
    return sorted({s[3]["pad_value"] for s in steps if s[0] == "crop" and isinstance(s[3], dict)})


def derived_tensors(
    operators: list[tfl.Operator], primary: dict[int, str]
) -> dict[str, tuple[str, str, list]]:
    """TFLite tensor name -> (ONNX name, relation, steps) for TFLite-only copies of a value.

    ``primary`` maps ``id(tensor)`` of each tensor that *is* an ONNX value to that name.
    Applying ``steps`` in order to a derived tensor's stored array gives the primary tensor's
    stored array exactly: ``["transpose", perm]``, ``["reshape", shape]``, ``["crop", begin,
    size, outside]`` where ``outside`` says what surrounds the window: ``{"pad_value": v}``
    (PAD/PADV2), "mirror" (MIRROR_PAD: the value's own elements) or "computed" (other data).
    Found in both directions: PAD/TRANSPOSE/RESHAPE *of* a value, and the input of a
    unit-stride slice, TRANSPOSE or RESHAPE *whose output is* a value (the uncropped
    TRANSPOSE_CONV result). ``relation`` (see :func:`_relation`) is "contains" when the window
    sits in computed data, "padded" when it is padding, else "permuted" or "reshaped".
    """
    known: dict[int, tuple[str, list]] = {k: (v, []) for k, v in primary.items()}
    names: dict[int, str] = {}
    changed = True
    while changed:  # a copy of a copy (transpose of a pad) needs a second pass
        changed = False
        for op in operators:
            if not op.outputs or not op.inputs:
                continue
            src, dst = op.inputs[0], op.outputs[0]
            if src is None:
                continue
            if id(src) in known and id(dst) not in known:
                step = _inverse(op)
                if step is not None:
                    onnx_name, steps = known[id(src)]
                    known[id(dst)] = (onnx_name, [step, *steps])
                    names[id(dst)] = dst.name
                    changed = True
            elif id(dst) in known and id(src) not in known and not src.is_constant:
                step = _forward(op)
                if step is not None:
                    onnx_name, steps = known[id(dst)]
                    known[id(src)] = (onnx_name, [step, *steps])
                    names[id(src)] = src.name
                    changed = True
    return {
        names[key]: (onnx_name, _relation(steps), steps)
        for key, (onnx_name, steps) in known.items()
        if key not in primary
    }


def internal_tensors(
    operators: list[tfl.Operator], taken: set[str], primary: dict[int, str]
) -> dict[str, list[str]]:
    """ONNX node label -> the non-constant tensors its lowering emitted that hold no ONNX value.

    ``taken`` are the names already mapped (primary or derived); ops without an ``onnx_node``
    (layout materializations by the driver) attribute nothing.
    """
    out: dict[str, list[str]] = {}
    for op in operators:
        if op.onnx_node is None:
            continue
        for t in op.outputs:
            if t.is_constant or t.name in taken or id(t) in primary:
                continue
            names = out.setdefault(op.onnx_node, [])
            if t.name not in names:
                names.append(t.name)
    return out
