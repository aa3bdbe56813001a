"""Lookups of small tables by ids that arrive as floats, computed in float32 (one-hot products).

Why: Keras/TF text models exported with tf2onnx take their character or token ids as float32
inputs, cast them to int32 (``Cast``), wrap negative ids with integer arithmetic (TF's
``tf.where(i < 0, i + V, i)`` becomes ``Less``/``Not``/``Cast``/``Mul``/``Add``) and index an
embedding table with ``Gather``. Lowered literally that is CAST, int32 ADD/MUL, LESS,
LOGICAL_NOT, FLOOR_MOD and GATHER: XNNPACK takes no integer tensor and has no GATHER, so all
of it ran outside the delegate. When the table is small the whole chain has an exact float32
form built only from ops XNNPACK takes.

Rule ``gather_one_hot`` (of ``onnx_rewrites.RULES``; ``--disable-rewrite gather_one_hot``
keeps the integer lowering). Integer values are *carried* as integer-valued float32 when they
are computed, from a float32 run-time value, by:

* ``Cast(x -> int32/int64)``: truncation toward zero, ``max(floor(x), 0) + min(ceil(x), 0)``
  (exact for every finite x);
* ``Add``/``Sub`` of carried values and integer constants (``|c| < 2**24``), and ``Mul`` by a
  carried 0/1 value (a cast bool): the same float ops;
* ``Cast(b -> int)`` of a bool computed as below: its 0/1 twin.

Bools: ``Less``/``LessOrEqual``/``Greater``/``GreaterOrEqual``/``Equal`` of ``Cast(carried ->
float32)`` (that Cast is the twin itself) with a float constant ``|c| < 2**24`` are clamped
differences against the constant's integer neighbours (``f < c`` iff ``ceil(c) - f >= 1`` for
integer-valued ``f``), ``Not`` is ``1 - b``.

The lookup: ``Gather(T, i)`` with a constant finite float32 table ``T`` [V, D] (axis 0, at most
``MAX_ROWS`` rows and ``MAX_MACS`` multiply-adds) becomes ``onehot(w) @ T`` with ``w = i + V *
[i < 0]`` (ONNX's negative indices) and ``onehot(w)_j = 1 - min(|w - j|, 1)``: every product
but one is a zero, so the MatMul returns the row exactly. Exact while every carried value
stays below 2**24 in magnitude, which holds whenever the index is valid: the arithmetic is
additions of constants and selections by 0/1. An index outside [-V, V) (onnxruntime refuses
it at run time) gives a zero row, where the integer lowering's FLOOR_MOD gives some row.
"""

from __future__ import annotations

import numpy as np

from .float_masks import MIRROR, FloatFormBuilder, static_default_node
from .ir import (
    Graph,
    Node,
    Value,
    fresh_value_name,
    prune_to_fixpoint,
    value_const,
    value_dtype,
)
from .mask_integers import BOOL, EXACT_INT, MAX_MACS, MAX_ROWS, one_hot_rows
from .strength_reduction import gather_as_slice

F32 = np.dtype(np.float32)
COMPARE = set(MIRROR)
MAX_EXTRA_ROWS = 8  # lookup_before_select: rows looked up per row kept
SMALL_LOOKUP = 1 << 16  # ... or elements looked up in all
TRIGGERS = {"gather_one_hot": {"Gather"}, "lookup_before_select": {"Gather"}}


def _small_int_const(graph: Graph, name: str) -> bool:
    c = value_const(graph, name)
    if c is None:
        return False
    c = np.asarray(c)
    return c.dtype.kind in "iu" and (
        c.size == 0 or int(np.abs(c.astype(np.int64)).max()) < EXACT_INT
    )


def _float_const(graph: Graph, name: str) -> np.ndarray | None:
    c = value_const(graph, name)
    if c is None or np.asarray(c).dtype != F32:
        return None
    c = np.asarray(c)
    if not np.isfinite(c).all() or (c.size and np.abs(c).max() >= EXACT_INT - 2):
        return None
    return c


def _lookup_ok(graph: Graph, node: Node) -> bool:
    if len(node.inputs) != 2 or node.attrs.get("axis", 0) != 0:
        return False
    table = value_const(graph, node.inputs[0])
    if table is None or np.asarray(table).dtype != F32 or np.asarray(table).ndim != 2:
        return False
    if not np.isfinite(table).all():
        return False
    idx = graph.values.get(node.inputs[1])
    if idx is None or not idx.is_static:
        return False
    v, d = table.shape
    rows = int(np.prod(idx.shape, dtype=np.int64))
    return 0 < v <= MAX_ROWS and rows * v * d <= MAX_MACS


def _role(graph: Graph, node: Node) -> str | None:
    if not static_default_node(graph, node):
        return None
    op = node.op_type
    out = value_dtype(graph, node.outputs[0])
    src = value_dtype(graph, node.inputs[0]) if node.inputs else None
    if op == "Cast":
        if (
            src == F32
            and out is not None
            and out.kind == "i"
            and value_const(graph, node.inputs[0]) is None
        ):
            return "trunc"
        if src is not None and src.kind == "i" and out == F32:
            return "to_float"
        if src == BOOL and out is not None and out.kind == "i":
            return "from_bool"
        return None
    if (
        op in ("Add", "Sub", "Mul")
        and out is not None
        and out.kind == "i"
        and len(node.inputs) == 2
    ):
        return op.lower()
    if op in COMPARE and len(node.inputs) == 2 and out == BOOL:
        if any(_float_const(graph, i) is not None for i in node.inputs):
            return "compare"
        return None
    if op == "Not":
        return "not"
    if op == "Gather" and _lookup_ok(graph, node):
        return "lookup"
    return None


def _reads(role: str, node: Node, graph: Graph) -> tuple[int, ...]:
    """Input positions a role reads as carried values (the rest are constants)."""
    if role in ("to_float", "from_bool", "not"):
        return (0,)
    if role == "lookup":
        return (1,)
    if role in ("add", "sub", "mul"):
        return tuple(i for i in (0, 1) if value_const(graph, node.inputs[i]) is None)
    if role == "compare":
        return tuple(i for i in (0, 1) if value_const(graph, node.inputs[i]) is None)
    return ()


def _plan(graph: Graph) -> dict[int, str]:
    producers = graph.producers()
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    roles = {id(n): r for n in graph.nodes if (r := _role(graph, n)) is not None}

    def fits(node: Node, r: str) -> bool:
        ok = len(_reads(r, node, graph)) >= (1 if r != "trunc" else 0)
        for i, name in enumerate(node.inputs):
            if i in _reads(r, node, graph):
                p = producers.get(name)
                pr = roles.get(id(p)) if p is not None else None
                if pr is None or pr == "lookup":
                    ok = False
                elif r == "compare" and pr != "to_float":
                    ok = False
                elif r == "not" and pr not in ("compare", "not"):
                    ok = False
                elif r == "from_bool" and pr not in ("compare", "not"):
                    ok = False
                elif r in ("add", "sub", "mul", "lookup", "to_float") and pr in (
                    "compare",
                    "not",
                    "to_float",
                ):
                    ok = False
            elif name and r in ("add", "sub", "mul") and not _small_int_const(graph, name):
                ok = False
        if ok and r == "mul":  # a selection: one operand is a cast 0/1 value
            sel = [producers.get(node.inputs[i]) for i in _reads(r, node, graph)]
            ok = any(p is not None and roles.get(id(p)) == "from_bool" for p in sel) or any(
                value_const(graph, n) is not None
                and set(np.unique(value_const(graph, n))) <= {0, 1}
                for n in node.inputs
            )
        if ok and r == "to_float" and node.outputs[0] in outputs:
            ok = False  # a graph output keeps its name and its Cast
        if ok and r not in ("lookup", "to_float"):
            name = node.outputs[0]
            if name in outputs:
                ok = False
            for reader, idx in consumers.get(name, []):
                rr = roles.get(id(reader))
                if rr is None or idx not in _reads(rr, reader, graph):
                    ok = False
        return ok

    prune_to_fixpoint(graph, roles, fits)
    return roles if "lookup" in roles.values() else {}


def _emit(b: FloatFormBuilder, node: Node, role: str) -> None:
    g = b.graph
    out = node.outputs[0]
    shape = b.shape(out)
    b.label = node.label
    x = node.inputs[0]
    if role == "trunc":
        fl = b.op("Floor", [x], shape, "floor")
        ce = b.op("Ceil", [x], shape, "ceil")
        zero = b.const(0.0, "zero")
        pos = b.op("Max", [fl, zero], shape, "pos")
        neg = b.op("Min", [ce, zero], shape, "neg")
        b.twin[out] = b.op("Add", [pos, neg], shape, "trunc")
    elif role in ("to_float", "from_bool"):
        b.twin[out] = b.twin[x]
    elif role in ("add", "sub", "mul"):
        args = [
            b.twin[n] if value_const(g, n) is None else b.const(np.asarray(value_const(g, n)), "c")
            for n in node.inputs
        ]
        b.twin[out] = b.op(node.op_type, args, shape, role)
    elif role == "not":
        b.twin[out] = b.op("Sub", [b.const(1.0, "one"), b.twin[x]], shape, "not")
    elif role == "compare":
        _emit_compare(b, node, shape)
    else:
        _emit_lookup(b, node, shape)


def _emit_compare(b: FloatFormBuilder, node: Node, shape) -> None:
    g = b.graph
    a, c_name = node.inputs
    op = node.op_type
    if value_const(g, a) is not None:
        a, c_name, op = c_name, a, MIRROR[op]
    f = b.twin[a]
    c = np.asarray(value_const(g, c_name), np.float64)
    out = node.outputs[0]
    if op == "Equal":  # an integer-valued f equals c only when c is an integer
        ok = (c == np.floor(c)).astype(np.float32)
        d = b.op("Sub", [f, b.const(np.floor(c), "c")], shape, "diff")
        m = b.op("Min", [b.op("Abs", [d], shape, "dist"), b.const(1.0, "one")], shape, "differs")
        eq = b.op("Sub", [b.const(1.0, "one"), m], shape, "equal")
        b.twin[out] = b.op("Mul", [eq, b.const(ok, "integral")], shape, "equal_c")
        return
    if op in ("Less", "LessOrEqual"):  # f < c iff f <= ceil(c) - 1; f <= c iff f <= floor(c)
        bound = np.ceil(c) if op == "Less" else np.floor(c) + 1
        d = b.op("Sub", [b.const(bound, "c"), f], shape, "gap")
    else:  # f > c iff f >= floor(c) + 1; f >= c iff f >= ceil(c)
        bound = np.floor(c) if op == "Greater" else np.ceil(c) - 1
        d = b.op("Sub", [f, b.const(bound, "c")], shape, "gap")
    b.twin[out] = b.clamp01(d, shape)


def _emit_lookup(b: FloatFormBuilder, node: Node, shape) -> None:
    """onehot(i + V * [i < 0]) @ T (mask_integers.one_hot_rows: exact rows)."""
    idx = node.inputs[1]
    one_hot_rows(b, node.inputs[0], b.twin[idx], b.shape(idx), node.outputs[0], wrap=True)


def gather_one_hot(graph: Graph) -> list[str]:
    roles = _plan(graph)
    if not roles:
        return []
    b = FloatFormBuilder(graph)
    kept: list[Node] = []
    changed = []
    sinks = {}
    for node in graph.nodes:
        role = roles.get(id(node))
        if role is None:
            kept.append(node)
            continue
        _emit(b, node, role)
        kept.extend(b.nodes)
        b.nodes = []
        changed.append(node.label)
        if role == "to_float":
            sinks[node.outputs[0]] = b.twin[node.outputs[0]]
    for n in kept:
        n.inputs = [sinks.get(i, i) for i in n.inputs]
    graph.nodes = kept
    graph.invalidate()
    return changed


def lookup_before_select(graph: Graph) -> list[str]:
    """``Gather(T, Gather(ids, k, axis=a))`` with a constant float32 table T, run-time integer
    ids and constant k: the same rows as ``Gather(Gather(T, ids), k, axis=a)``, the lookup of
    every id first and the selection on the float rows (a Slice, by ``gather_as_slice``, run
    here again). Selecting among integers was a GATHER outside XNNPACK (no integer tensors);
    the lookup's own GATHER stays. Only where the first lookup reads at most
    ``MAX_EXTRA_ROWS`` times the rows it keeps (or at most ``SMALL_LOOKUP`` elements); the ids
    it reads besides are not checked against the table (onnxruntime would not read them)."""
    producers = graph.producers()
    consumers = graph.consumers()
    changed = []
    new_nodes: list[Node] = []
    for node in graph.nodes:
        sel = producers.get(node.inputs[1]) if len(node.inputs) == 2 else None
        if not _select_lookup(graph, node, sel, consumers):
            new_nodes.append(node)
            continue
        ids, k = sel.inputs
        table = graph.values[node.inputs[0]]
        rows_name = fresh_value_name(graph, f"{node.label}/all_rows")
        id_shape = graph.values[ids].shape
        graph.values[rows_name] = Value(rows_name, F32, (*id_shape, table.shape[1]))
        new_nodes.append(
            Node(
                f"{node.name}/all_rows",
                "Gather",
                "",
                [node.inputs[0], ids],
                [rows_name],
                {"axis": 0},
                node.opset,
            )
        )
        new_nodes.append(
            Node(
                node.name,
                "Gather",
                "",
                [rows_name, k],
                list(node.outputs),
                # the ids' axis counted from the front: a negative one (``ids[..., k]``) would
                # count from the end of the rows, which have one more axis (the table's)
                {"axis": int(sel.attrs.get("axis", 0)) % len(id_shape)},
                node.opset,
            )
        )
        changed.append(node.label)
    if not changed:
        return []
    graph.nodes = new_nodes
    graph.invalidate()
    gather_as_slice(graph)
    return changed


def _select_lookup(graph: Graph, node: Node, sel: Node | None, consumers) -> bool:
    if node.op_type != "Gather" or node.domain != "" or node.attrs.get("axis", 0) != 0:
        return False
    if sel is None or sel.op_type != "Gather" or sel.domain != "" or len(sel.inputs) != 2:
        return False
    table = value_const(graph, node.inputs[0])
    if table is None or np.asarray(table).dtype != F32 or np.asarray(table).ndim != 2:
        return False
    ids, k = sel.inputs
    if value_const(graph, ids) is not None or value_const(graph, k) is None:
        return False
    if value_dtype(graph, ids) is None or value_dtype(graph, ids).kind not in "iu":
        return False
    if len(consumers.get(sel.outputs[0], [])) != 1 or sel.outputs[0] in graph.outputs:
        return False
    vals = [graph.values.get(n) for n in (ids, sel.outputs[0], node.outputs[0])]
    if any(v is None or not v.is_static for v in vals):
        return False
    every, kept = (int(np.prod(v.shape, dtype=np.int64)) for v in vals[:2])
    d = np.asarray(table).shape[1]
    return every <= MAX_EXTRA_ROWS * max(kept, 1) or every * d <= SMALL_LOOKUP


RULES = [("lookup_before_select", lookup_before_select), ("gather_one_hot", gather_one_hot)]
