"""Small integers computed from masks, carried as integer-valued float32 (part of float_mask_logic).

Why: RoBERTa's ``create_position_ids_from_input_ids`` computes its position ids from the
padding mask: ``mask = ne(ids, pad)`` -> Cast(int) -> CumSum -> ``* mask`` -> ``+ pad``, then
looks up the position table (and torch's token-type buffer) with them. Lowered literally that is
EQUAL, LOGICAL_NOT, CASTs, CUMSUM, integer MUL/ADD, FLOOR_MODs and GATHERs outside XNNPACK
(integer tensors), next to the one lookup that must stay (the words').

The roles below extend ``float_masks._plan``: an integer value is carried when it is computed
from carried 0/1 values and small integer constants by

* ``Cast(bool -> int)`` (``bool_int``): the 0/1 twin;
* ``Cast(int -> int)`` and data movement (``int_move``): the same op on the twin;
* ``CumSum`` over a constant axis, the last or the one before (``int_cumsum``): a MatMul by a
  constant 0/1 triangular matrix (exclusive and reverse are its other triangles);
* ``Add``/``Sub``/``Mul`` with carried values or integer constants (``int_arith``).

Each carried value gets an interval from its inputs' (a cumsum over n: n times the largest
magnitude; a product: the corners); a role whose interval reaches 2**24, or leaves the range
of its output type (``uint8(0) - 1`` wraps to 255 in onnxruntime), is dropped (with all
that needs it), so every carried value, every partial sum of a MatMul in any order, and every
product is an integer float32 holds exactly. The integers end in:

* ``Cast(int -> float32)``, comparisons and ``Cast(int -> bool)`` of float_masks (they read
  the twin);
* a lookup ``Gather(T, i)`` of a constant float32 table [V, D] (``int_lookup``): ``onehot(w)
  @ T`` with ``w = i + V [i < 0]`` (the wrap left out when the interval is non-negative),
  exact rows as in ``gather_one_hot`` (float_indices), within ``MAX_ROWS``/``MAX_MACS``;
  otherwise a Cast of the twin back to int32 and the Gather;
* a lookup of a constant whose elements are all equal (torch's zero token-type buffer read by
  GatherElements) (``uniform_lookup``): that constant, and Gathers of constant tables by it are
  looked up here. An index outside the table (onnxruntime refuses it at run time) gives the
  constant / a zero row instead of an error.
"""

from __future__ import annotations

import numpy as np

from . import op_classes
from .ir import Graph, Node, Value, fresh_value_name, value_const, value_dtype

F32 = np.dtype(np.float32)
BOOL = np.dtype(np.bool_)
EXACT_INT = 2**24  # float32 holds every integer of smaller magnitude
# Data movement of the twins: the permutations and Expand (a mask broadcast to the ids' shape),
# which are what ``_fold`` computes (reshape, transpose, broadcast); the other copies (Slice,
# Gather, Tile) are not taken: ``_fold`` would reshape them.
MOVERS = op_classes.REORDERS | {"Expand"}
INT_ROLES = ("bool_int", "int_move", "int_cumsum", "int_arith")
END_ROLES = ("int_lookup", "uniform_lookup")
MAX_ROWS = 4096  # one-hot width (gather_one_hot, float_indices, uses the same bounds)
MAX_MACS = 1 << 26  # per lookup: rows x V x D


def _is_int(dtype) -> bool:
    return dtype is not None and dtype.kind in "iu"


def _runtime(graph: Graph, name: str) -> bool:
    return bool(name) and value_const(graph, name) is None


def _small_const(graph: Graph, name: str) -> bool:
    c = value_const(graph, name)
    if c is None or not _is_int(np.asarray(c).dtype):
        return False
    c = np.asarray(c)
    if c.size and c.dtype.kind == "u":  # (a uint64 2**64 - 1 would wrap to -1 in int64)
        return int(c.max()) < EXACT_INT
    return c.size == 0 or int(np.abs(c.astype(np.int64)).max()) < EXACT_INT


def _uniform(c) -> bool:
    c = np.asarray(c)
    return c.size > 0 and bool(np.all(c == c.reshape(-1)[0]))


def _cumsum_axis(graph: Graph, node: Node) -> int | None:
    x = graph.values.get(node.inputs[0])
    axis = value_const(graph, node.inputs[1]) if len(node.inputs) > 1 else None
    if x is None or axis is None or not x.shape or np.asarray(axis).size != 1:
        return None
    rank = len(x.shape)
    a = int(np.asarray(axis).reshape(-1)[0]) % rank
    return a if a == rank - 1 or (rank >= 2 and a == rank - 2) else None


def int_role(graph: Graph, node: Node) -> str | None:
    """The carried-integer role of a (static, default-domain) node, before pruning."""
    op = node.op_type
    out = value_dtype(graph, node.outputs[0])
    src = value_dtype(graph, node.inputs[0]) if node.inputs else None
    if op == "Cast" and _is_int(out):
        if src == BOOL:
            return "bool_int"
        return "int_move" if _is_int(src) else None
    if op in MOVERS and _is_int(out) and _is_int(src):
        return "int_move"
    if op == "CumSum" and graph.sample_pinned:
        return None  # its [L, L] triangle would bake a dynamic length into a constant
    if op == "CumSum" and _is_int(out) and _cumsum_axis(graph, node) is not None:
        return "int_cumsum"
    if op in ("Add", "Sub", "Mul") and _is_int(out) and len(node.inputs) == 2:
        if all(_runtime(graph, n) or _small_const(graph, n) for n in node.inputs):
            return "int_arith"
        return None
    if (
        op in ("Gather", "GatherElements")
        and len(node.inputs) == 2
        and _runtime(graph, node.inputs[1])
    ):
        table = value_const(graph, node.inputs[0])
        if table is None or not _is_int(value_dtype(graph, node.inputs[1])):
            return None
        if _uniform(table):  # (a constant of the ids' shape: not when that can vary)
            return None if graph.sample_pinned else "uniform_lookup"
        table = np.asarray(table)
        if op == "Gather" and node.attrs.get("axis", 0) == 0 and table.dtype == F32:
            if table.ndim == 2 and np.isfinite(table).all():
                return "int_lookup"
    return None


def int_reads(role: str, node: Node, graph: Graph) -> tuple[int, ...]:
    """Input positions a role reads as carried values (bool for bool_int, else integers)."""
    if role in ("bool_int", "int_move", "int_cumsum"):
        return (0,)
    if role in END_ROLES:
        return (1,)
    if role == "int_arith":
        return tuple(i for i in (0, 1) if _runtime(graph, node.inputs[i]))
    return ()


def intervals(graph: Graph, roles: dict[int, str]) -> dict[str, tuple[int, int]]:
    """Bounds of every carried integer, in node order; a role whose bound is unknown or reaches
    2**24 is removed from ``roles`` (pruning removes what needs it)."""
    iv: dict[str, tuple[int, int]] = {}

    def bounds(name: str):
        c = value_const(graph, name)
        if c is not None:
            c = np.asarray(c).astype(np.int64)
            return (int(c.min()), int(c.max())) if c.size else (0, 0)
        return iv.get(name)

    for node in graph.nodes:
        r = roles.get(id(node))
        if r not in INT_ROLES:
            continue
        res = None
        if r == "bool_int":
            res = (0, 1)
        elif r == "int_move":
            res = bounds(node.inputs[0])  # a narrowing Cast that would wrap: _fits below
        elif r == "int_cumsum":
            x = bounds(node.inputs[0])
            if x is not None:
                n = graph.values[node.inputs[0]].shape[_cumsum_axis(graph, node)]
                res = (min(0, n * x[0]), max(0, n * x[1]))
                if n * max(abs(x[0]), abs(x[1])) >= EXACT_INT:
                    res = None
        else:
            a, b = bounds(node.inputs[0]), bounds(node.inputs[1])
            if a is not None and b is not None:
                if node.op_type == "Add":
                    res = (a[0] + b[0], a[1] + b[1])
                elif node.op_type == "Sub":
                    res = (a[0] - b[1], a[1] - b[0])
                else:
                    corners = [p * q for p in a for q in b]
                    res = (min(corners), max(corners))
        if res is not None and not _fits(value_dtype(graph, node.outputs[0]), res):
            res = None  # the integer op wraps around in its type (uint8/uint32 below 0, int8)
        if res is None or max(abs(res[0]), abs(res[1])) >= EXACT_INT:
            del roles[id(node)]
            continue
        iv[node.outputs[0]] = res
    return iv


def _fits(dtype, res: tuple[int, int]) -> bool:
    """Does every integer of ``res`` hold in ``dtype`` (so onnxruntime's op does not wrap)?"""
    info = np.iinfo(dtype)
    return info.min <= res[0] and res[1] <= info.max


def _triangle(n: int, exclusive: bool, reverse: bool) -> np.ndarray:
    """U with (x @ U)_j = the (exclusive / reverse) cumulative sum of x up to j."""
    i, j = np.indices((n, n))
    keep = (i >= j) if reverse else (i <= j)
    if exclusive:
        keep &= i != j
    return keep.astype(np.float32)


def _int_value(b, hint: str, shape, dtype) -> str:
    name = b.fresh(f"{b.label}/{hint}", shape)
    b.graph.values[name].dtype = np.dtype(dtype)
    return name


def one_hot_rows(b, table: str, idx: str, ishape, out: str, wrap: bool) -> None:
    """``out = T[idx]`` for an integer-valued float32 ``idx`` and a constant table T [V, D] as
    ``onehot(w) @ T``, ``w = idx + V [idx < 0]`` when ``wrap`` (ONNX's negative indices);
    ``onehot(w)_j = 1 - min(|w - j|, 1)``: every product but one is a zero, the rows exact."""
    v = np.asarray(value_const(b.graph, table)).shape[0]
    w = idx
    if wrap:  # [idx < 0] = min(relu(-idx), 1) for integer-valued idx
        neg = b.clamp01(b.op("Neg", [idx], ishape, "minus"), ishape)
        w = b.op(
            "Add", [idx, b.op("Mul", [neg, b.const(float(v), "rows")], ishape, "wrap")], ishape, "w"
        )
    col_shape = np.asarray((*ishape, 1), np.int64)
    shape_name = fresh_value_name(b.graph, f"{b.label}/col_shape")
    b.graph.values[shape_name] = Value(shape_name, col_shape.dtype, col_shape.shape, col_shape)
    col = b.op("Reshape", [w, shape_name], (*ishape, 1), "col")
    hot_shape = (*ishape, v)
    d = b.op("Sub", [col, b.const(np.arange(v, dtype=np.float32), "rows_j")], hot_shape, "d")
    m = b.op("Min", [b.op("Abs", [d], hot_shape, "dist"), b.const(1.0, "one")], hot_shape, "far")
    hot = b.op("Sub", [b.const(1.0, "one"), m], hot_shape, "one_hot")
    b.op("MatMul", [hot, table], b.shape(out), "rows", out=out)


def emit_int(b, node: Node, role: str, iv: dict[str, tuple[int, int]]) -> None:
    """The float form of one carried-integer node (``b``: float_masks.FloatFormBuilder)."""
    g = b.graph
    out = node.outputs[0]
    shape = b.shape(out)
    x = node.inputs[0]
    if role == "bool_int":
        b.twin[out] = b.carried(x)
    elif role == "int_move":
        if node.op_type == "Cast":
            b.twin[out] = b.twin[x]
        else:
            b.twin[out] = b.op(
                node.op_type, [b.twin[x], *node.inputs[1:]], shape, "int_move", **node.attrs
            )
    elif role == "int_cumsum":
        axis = _cumsum_axis(g, node)
        n = g.values[x].shape[axis]
        tri = _triangle(n, bool(node.attrs.get("exclusive", 0)), bool(node.attrs.get("reverse", 0)))
        if axis == len(shape) - 1:
            b.twin[out] = b.op("MatMul", [b.twin[x], b.const(tri, "triangle")], shape, "cumsum")
        else:  # the axis before the last: (L @ x) with L = U^T
            b.twin[out] = b.op("MatMul", [b.const(tri.T, "triangle"), b.twin[x]], shape, "cumsum")
    elif role == "int_arith":
        args = [
            b.twin[n] if value_const(g, n) is None else b.const(np.asarray(value_const(g, n)), "c")
            for n in node.inputs
        ]
        b.twin[out] = b.op(node.op_type, args, shape, "int_arith")
    elif role == "uniform_lookup":
        value = np.asarray(value_const(g, x)).reshape(-1)[0]
        g.values[out].const = np.full(shape, value, np.asarray(value_const(g, x)).dtype)
    else:
        _emit_lookup(b, node, iv)


def _emit_lookup(b, node: Node, iv) -> None:
    g = b.graph
    table = np.asarray(value_const(g, node.inputs[0]))
    idx = node.inputs[1]
    ishape = b.shape(idx)
    v, d = table.shape
    lo, hi = iv.get(idx, (-1, v))
    rows = int(np.prod(ishape, dtype=np.int64))
    if v <= MAX_ROWS and rows * v * d <= MAX_MACS:
        one_hot_rows(b, node.inputs[0], b.twin[idx], ishape, node.outputs[0], wrap=lo < 0)
        return
    as_int = _int_value(b, "as_index", ishape, np.int32)
    b.nodes.append(
        Node(f"{b.label}/as_index", "Cast", "", [b.twin[idx]], [as_int], {"to": 6}, b.opset)
    )
    b.nodes.append(
        Node(
            node.name,
            "Gather",
            "",
            [node.inputs[0], as_int],
            list(node.outputs),
            {"axis": 0},
            node.opset,
        )
    )


def fold_constant_gathers(graph: Graph, made_constant: set[str]) -> None:
    """Data movement of, and Gathers of constant tables by, the values this rewrite made
    constant (a uniform lookup's token-type ids and their Expand), computed here (Gathers with
    valid indices only)."""
    kept = []
    for node in graph.nodes:
        value = None
        if (
            node.domain == ""
            and node.inputs
            and node.inputs[0 if node.op_type in MOVERS else -1] in made_constant
        ):
            value = _fold(graph, node)
        if value is None:
            kept.append(node)
            continue
        graph.values[node.outputs[0]].const = value
        made_constant.add(node.outputs[0])
    graph.nodes = kept


def _fold(graph: Graph, node: Node) -> np.ndarray | None:
    out = graph.values.get(node.outputs[0])
    if (
        out is None
        or not out.is_static
        or any(value_const(graph, n) is None for n in node.inputs if n)
    ):
        return None
    data = np.asarray(value_const(graph, node.inputs[0]))
    if node.op_type == "Transpose":
        return np.transpose(data, node.attrs.get("perm")).copy()
    if node.op_type == "Expand":
        return np.broadcast_to(data, out.shape).copy()
    if node.op_type in MOVERS:
        return data.reshape(out.shape)
    if node.op_type == "Gather" and len(node.inputs) == 2:
        idx = np.asarray(value_const(graph, node.inputs[1])).astype(np.int64)
        axis = int(node.attrs.get("axis", 0)) % data.ndim
        n = data.shape[axis]
        if ((idx >= -n) & (idx < n)).all():
            return np.take(data, idx, axis=axis)
    return None
