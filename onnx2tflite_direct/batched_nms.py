"""Rule ``batched_nms_groups``: torchvision's batched NMS becomes one NMS kernel per group.

Why: ``torchvision.ops.batched_nms``, traced or exported, runs ONE class-agnostic
NonMaxSuppression over every class's boxes after the "coordinate trick"::

    offsets = idxs.to(boxes) * (boxes.max() + 1)
    keep = nms(boxes + offsets[:, None], scores, iou)

Boxes of different classes then cannot overlap, but LiteRT's NON_MAX_SUPPRESSION_V4 does not
know it: its greedy loop compares each candidate with every box selected so far, of any class
(27,000 candidates and ~20,000 selections on the corpus's SSDlite: 2.7x onnxruntime's NMS
time, benchmarks/bench_nms.py). Run per class, the same greedy selection costs the sum of
(class candidates x class selections), tens of times less.

What the rule does (ONNX IR, before lowering): it recognizes a NonMaxSuppression with one
batch and one score class whose boxes are ``Add(X, offset)``, the offset a per-box
``Mul(Cast(ids), scalar)`` (through Unsqueeze / Reshape / full Slice), and whose integer
``ids`` take values in a range [lo, lo + G) known from the graph (Concat of ConstantOfShape
fills: SSDlite's labels 1..90; ``Mod(x, C)``: RetinaNet's labels 0..C-1), 2 <= G <=
:data:`MAX_GROUPS`. It marks the node: ``ids`` becomes an extra input (index 5) and the
attributes :data:`GROUP_BASE` / :data:`GROUP_COUNT` hold lo and G. The node keeps reading the
shifted boxes: the per-group kernels compute the IoUs onnxruntime computes, on the same float32
values (the offsets round the coordinates; unshifted boxes would give other IoUs).

Soundness does not rest on the pattern: ``lowering/nms_groups.py`` checks at run time that the
groups' coordinate intervals are pairwise disjoint (touching allowed) over the boxes that can
suppress, and otherwise puts every box into one group: the single-kernel selection, exact as
before. A wrong guess of the grouping (an id outside [lo, lo + G) is clamped into it) costs
time, never an answer. Turned off by ``--disable-rewrite batched_nms_groups``.
"""

from __future__ import annotations

import numpy as np

from . import op_classes
from .ir import Graph, Node, Value, fresh_value_name

GROUP_INPUT = 5  # the group ids input the rule appends (ONNX NMS has inputs 0..4)
GROUP_BASE = "o2t_group_base"
GROUP_COUNT = "o2t_group_count"
MAX_GROUPS = 1024  # one NMS kernel per group: beyond this the graph gets unreasonably large

# Ops that carry each element of their first input unchanged (a value range passes through).
_SAME_VALUES = op_classes.COPIES
_INT_DTYPES = {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8)}


def _is_int(graph: Graph, name: str) -> bool:
    v = graph.values.get(name)
    return v is not None and v.dtype is not None and np.dtype(v.dtype) in _INT_DTYPES


def int_range(graph: Graph, producers: dict, name: str, depth: int = 0) -> tuple[int, int] | None:
    """[lo, hi] bounds every element of integer value ``name`` provably lies in, or None."""
    value = graph.values.get(name)
    if value is None or not _is_int(graph, name) or depth > 64:
        return None
    if value.const is not None:
        data = np.asarray(value.const)
        return (int(data.min()), int(data.max())) if data.size else None
    node = producers.get(name)
    if node is None or node.domain != "":
        return None
    op = node.op_type
    if op == "ConstantOfShape":
        fill = node.attrs.get("value")
        v = 0 if fill is None else int(np.asarray(fill).reshape(-1)[0])
        return (v, v)
    if op == "Concat":
        parts = [int_range(graph, producers, i, depth + 1) for i in node.inputs if i]
        if not parts or any(p is None for p in parts):
            return None
        return (min(p[0] for p in parts), max(p[1] for p in parts))
    if op == "Cast" and _is_int(graph, node.inputs[0]):
        inner = int_range(graph, producers, node.inputs[0], depth + 1)
        info = np.iinfo(np.dtype(value.dtype))
        return inner if inner and info.min <= inner[0] and inner[1] <= info.max else None
    if op == "Mod" and not node.attrs.get("fmod", 0):
        divisor = graph.values.get(node.inputs[1])
        d = None if divisor is None or divisor.const is None else np.asarray(divisor.const)
        if d is not None and d.size == 1 and int(d.reshape(-1)[0]) > 0:
            return (0, int(d.reshape(-1)[0]) - 1)  # the sign of a positive divisor
        return None
    if op in ("ArgMax", "ArgMin"):
        shape = graph.values[node.inputs[0]].shape
        axis = int(node.attrs.get("axis", 0))
        if shape is None or not -len(shape) <= axis < len(shape):
            return None
        size = shape[axis]
        return (0, size - 1) if isinstance(size, int) and size > 0 else None
    if op in _SAME_VALUES:
        return int_range(graph, producers, node.inputs[0], depth + 1)
    return None


def _through(producers: dict, graph: Graph, name: str, ops: set[str]) -> str:
    """Follow ``name`` up through ops in ``ops`` (first input) to the first other value."""
    for _ in range(16):
        node = producers.get(name)
        if node is None or node.domain != "" or node.op_type not in ops:
            return name
        if node.op_type == "Cast" and not _float(graph, node.inputs[0]):
            return name
        if node.op_type == "Slice" and not _full_slice(graph, node):
            return name
        name = node.inputs[0]
    return name


def _float(graph: Graph, name: str) -> bool:
    v = graph.values.get(name)
    return v is not None and v.dtype is not None and np.dtype(v.dtype) == np.float32


def _full_slice(graph: Graph, node: Node) -> bool:
    """A Slice that keeps every element (torch's ``x[:]``: start 0, end INT64_MAX, step 1)."""
    consts = []
    for i in range(1, 5):
        if i >= len(node.inputs) or not node.inputs[i]:
            consts.append(None)
            continue
        v = graph.values.get(node.inputs[i])
        if v is None or v.const is None:
            return False
        consts.append(np.asarray(v.const).reshape(-1))
    starts, ends, _, steps = consts
    shape = graph.values[node.inputs[0]].shape
    if starts is None or ends is None or shape is None:
        return False
    if steps is not None and not (steps == 1).all():
        return False
    big = max((d for d in shape if isinstance(d, int)), default=0)
    return bool(
        (starts == 0).all() and (ends >= big).all() and all(isinstance(d, int) for d in shape)
    )


def _scalar(graph: Graph, name: str) -> bool:
    v = graph.values.get(name)
    return v is not None and v.shape is not None and int(np.prod(v.shape or (1,))) == 1


def match(graph: Graph, producers: dict, node: Node) -> tuple[str, int, int] | None:
    """(ids value, lo, G) when ``node`` is an NMS over ``boxes + offset(ids)``, else None."""
    if node.op_type != "NonMaxSuppression" or node.domain != "" or len(node.inputs) > 5:
        return None
    if node.attrs.get("center_point_box", 0) or GROUP_COUNT in node.attrs:
        return None
    boxes, scores = (graph.values.get(n) for n in node.inputs[:2])
    if boxes is None or scores is None or not boxes.is_static or not scores.is_static:
        return None
    if len(boxes.shape) != 3 or tuple(scores.shape[:2]) != (1, 1) or boxes.shape[0] != 1:
        return None
    n = boxes.shape[1]
    shifted = _through(
        producers, graph, node.inputs[0], {"Unsqueeze", "Reshape", "Identity", "Cast"}
    )
    add = producers.get(shifted)
    if add is None or add.op_type != "Add" or add.domain != "":
        return None
    for offset in add.inputs[:2]:
        found = _ids_of_offset(graph, producers, offset, n)
        if found is not None:
            return found
    return None


def _ids_of_offset(graph: Graph, producers: dict, offset: str, n: int):
    """Per-box ``Mul(Cast(ids), scalar)`` behind ``offset`` (shape [n, 1] / [n])."""
    v = graph.values.get(offset)
    if v is None or v.shape is None or int(np.prod(v.shape)) != n:
        return None
    name = _through(producers, graph, offset, {"Unsqueeze", "Reshape", "Identity", "Slice"})
    mul = producers.get(name)
    if mul is None or mul.op_type != "Mul" or mul.domain != "":
        return None
    for a, b in ((mul.inputs[0], mul.inputs[1]), (mul.inputs[1], mul.inputs[0])):
        if not _scalar(graph, b):
            continue
        ids = _group_ids(graph, producers, a, n)
        bounds = None if ids is None else int_range(graph, producers, ids, 0)
        if bounds is None:
            continue
        lo, hi = bounds
        if 2 <= hi - lo + 1 <= MAX_GROUPS:
            return ids, lo, hi - lo + 1
    return None


def _group_ids(graph: Graph, producers: dict, name: str, n: int) -> str | None:
    """The integer [n] ids behind a per-box multiplicand: ``Cast(ids)``, or a constant whose
    values are integers (the Cast folded away): then a new int32 constant holds them."""
    value = graph.values.get(name)
    if value is None or value.shape is None or int(np.prod(value.shape)) != n:
        return None
    if value.const is not None:
        data = np.asarray(value.const).reshape(-1)
        limit = np.iinfo(np.int32)
        if data.dtype.kind == "f" and not (
            np.isfinite(data).all() and (data == np.round(data)).all()
        ):
            return None
        if data.size == 0 or data.min() < limit.min or data.max() > limit.max:
            return None
        if not 2 <= int(data.max()) - int(data.min()) + 1 <= MAX_GROUPS:
            return None
        ids = fresh_value_name(graph, f"{name}_group_ids")
        graph.values[ids] = Value(ids, np.dtype(np.int32), (n,), data.astype(np.int32))
        return ids
    cast = producers.get(name)
    if cast is None or cast.op_type != "Cast" or cast.domain != "":
        return None
    ids_v = graph.values.get(cast.inputs[0])
    if ids_v is None or ids_v.shape is None or tuple(ids_v.shape) != (n,):
        return None
    return cast.inputs[0] if _is_int(graph, cast.inputs[0]) else None


def batched_nms_groups(graph: Graph) -> list[str]:
    """Mark every matching NonMaxSuppression for the per-group lowering (module docstring)."""
    producers = graph.producers()
    changed = []
    for node in graph.nodes:
        found = match(graph, producers, node)
        if found is None:
            continue
        ids, lo, count = found
        node.inputs = list(node.inputs) + [""] * (GROUP_INPUT - len(node.inputs)) + [ids]
        node.attrs[GROUP_BASE] = lo
        node.attrs[GROUP_COUNT] = count
        changed.append(node.label)
    if changed:
        graph.invalidate()
    return changed


RULES = [("batched_nms_groups", batched_nms_groups)]
TRIGGERS = {"batched_nms_groups": {"NonMaxSuppression"}}
