"""Boolean mask logic carried as float32 0/1, so the attention-mask prelude runs in XNNPACK.

Why: text models build their attention and padding masks from an integer ``attention_mask``
input with ``Cast(to=bool)``, ``And``/``Or``/``Not``, comparisons against constants and a
``Where`` between two constants (0 and the dtype's minimum). Lowered literally these are CAST,
LOGICAL_AND/OR/NOT, EQUAL/LESS, bool RESHAPEs and SELECT_V2: XNNPACK takes no bool or integer
tensor, so every one of them ran on the reference kernels beside the delegate partition. The
same truth values as float32 0.0/1.0 need only SUB, MUL, MAXIMUM, MINIMUM, ABS and RELU, which
XNNPACK takes; the one op that must stay outside is the CAST that reads the integer input.

Rule ``float_mask_logic`` (of ``onnx_rewrites.RULES``; ``--disable-rewrite float_mask_logic``
keeps the bool lowering). A bool value is *carried* as a float32 twin holding 0/1 when it is
produced by one of the forms below and every reader is one too (the largest such set, a
fixpoint; graph outputs keep their bool lowering):

* ``Cast(x -> bool)`` of a run-time integer ``x``: ``min(|float(x)|, 1)``. A nonzero integer
  converts to a float of magnitude >= 1 whatever the rounding, so this is exact.
* a bool graph input: ``Cast(to=float)`` (the op that must stay outside); a bool constant: a
  0/1 constant.
* ``Equal/Less/Greater/LessOrEqual/GreaterOrEqual(x, c)`` of a run-time integer ``x`` and an
  integer constant with ``|c| < 2**24``: ``1 - min(|xf - c|, 1)``, ``min(relu(c - xf), 1)``
  and the mirrored forms (``<= c`` is ``< c + 1``). Exact: ``c`` and ``c +- 1`` are float32
  integers, rounding ``x`` to float32 keeps its order against them and no other integer
  rounds onto them, and a difference of two distinct integer-valued floats is at least 1.
* ``Not``: ``1 - a``; ``And``: ``a * b``; ``Or``: ``max(a, b)``; ``Xor``: ``|a - b|`` (exact
  on 0/1).
* data movement (Reshape, Unsqueeze, Squeeze, Flatten, Transpose, Expand, Identity) of a
  carried value: the same op on the twin.
* ``Cast(bool -> bool)``: the twin itself; ``Cast(x -> bool)`` of a product of run-time
  integers (DeBERTa's ``mask[:, None] * mask[..., None]``): the factors' 0/1 values multiplied
  where the product cannot wrap around to 0 in its type (narrow factors); an int64 product of
  int64 factors (two values of 2**32 multiply to 0) keeps its integer MUL.
* small integers computed from carried values (Cast(bool -> int), CumSum, Add/Sub/Mul with
  constants, integer lookups): integer-valued float32 twins with proven bounds below 2**24,
  see ``mask_integers`` (RoBERTa's position ids).

``Cast(int -> float32)`` of a run-time integer reads the float conversion made at the start of
the integer's data movement (one CAST per input, the movement on floats).

Readers that end a chain: ``Cast(bool -> float32)`` (its readers read the twin) and
``Where(c, A, B)`` with constant float32 ``A``/``B``: ``c * A + (1 - c) * B`` (a term with a
zero constant is left out). Exact for finite constants: each product is the constant or a
zero, and adding a zero changes nothing (only the sign of a zero result can differ). An
infinite constant against zeros (torch's ``masked_fill(mask, -inf)``) is ``log(0/1)``: LOG
gives -inf and 0 exactly on both kernel sets, and nothing adds to it. Any other infinite or NaN
constant, or a run-time branch, keeps the SELECT_V2: an infinity cannot be made
by arithmetic in every kernel set (LiteRT's builtin float MUL/ADD clamp their results to
+-FLT_MAX, so ``-inf`` masks came out -3.4e38 there; tests/test_rewrite_edges.py), and a
run-time branch ``S`` would need infinite bounds (``max(min(S, c ? K : +inf), c ? K : -inf)``)
to pass its own infinities through: LOG makes ``c ? 0 : -inf`` but no exact ``c ? K : +inf``
for K < 0 (the opt-in ``where_runtime_branch`` below is exact on XNNPACK only). The integer value a comparison or cast reads is
converted once, at the start of its chain of integer data movement (the movement is repeated
on the float twin).

Rule ``gathernd_as_reshape``: a GatherND whose constant indices read every element of the
data once in order (``batch_dims`` 0, full-depth indices: torch.export's ``mask[:, None, None,
:]``) is a Reshape; GATHER_ND has no XNNPACK kernel.
"""

from __future__ import annotations

import numpy as np

from .ir import Graph, Node, Value, fresh_value_name, prune_to_fixpoint, value_const, value_dtype
from .mask_integers import (
    BOOL,
    END_ROLES,
    EXACT_INT,
    INT_ROLES,
    MOVERS,
    emit_int,
    fold_constant_gathers,
    int_reads,
    int_role,
    intervals,
)

F32 = np.dtype(np.float32)
LOGIC = {"Not", "And", "Or", "Xor"}
COMPARE = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"}
MIRROR = {
    "Equal": "Equal",
    "Less": "Greater",
    "Greater": "Less",
    "LessOrEqual": "GreaterOrEqual",
    "GreaterOrEqual": "LessOrEqual",
}
ENDS = (
    "sink",
    "select",
    "select_inf",
    "select_runtime",
    "to_float",
    *END_ROLES,
)  # roles whose output is not carried
INT_READERS = ("to_float", "nonzero", "compare")  # read an integer: raw or carried (twin)
TRIGGERS = {"float_mask_logic": {"Cast", "Where"}, "gathernd_as_reshape": {"GatherND"}}


def _value(graph: Graph, name: str) -> Value | None:
    return graph.values.get(name) if name else None


def _runtime_int(graph: Graph, name: str) -> bool:
    """A run-time integer the float forms can read: converted by a CAST, which LiteRT has
    for every integer type but uint64 (its comparisons keep their own lowering)."""
    dt = value_dtype(graph, name)
    return (
        dt is not None and dt.kind in "iu" and dt != np.uint64 and value_const(graph, name) is None
    )


def _product_cannot_wrap(graph: Graph, mul: Node) -> bool:
    """True when the integer Mul's product fits its type for every value of its factors'
    types (e.g. two int16 or uint8 factors in int32 or int64): then it is zero only where a
    factor is."""
    out = value_dtype(graph, mul.outputs[0])
    if out is None:
        return False
    producers = graph.producers()
    bits = [_magnitude_bits(graph, producers, i) for i in mul.inputs]
    return None not in bits and sum(bits) <= _type_bits(out)


def _type_bits(dt: np.dtype) -> int:
    """Bits of magnitude an integer or bool type holds (int64: 63)."""
    return 1 if dt == BOOL else 8 * dt.itemsize - (dt.kind == "i")


def _magnitude_bits(graph: Graph, producers, name: str) -> int | None:
    """Bits of magnitude the integer value ``name`` can hold: its type's, or less when it is a
    widening Cast of a narrower integer or bool (through data movement)."""
    dt = value_dtype(graph, name)
    if dt is None or (dt.kind not in "iu" and dt != BOOL):
        return None
    p = producers.get(name)
    if p is not None and p.domain == "" and p.op_type in MOVERS and p.outputs[0] == name:
        return _magnitude_bits(graph, producers, p.inputs[0])
    if p is not None and p.domain == "" and p.op_type == "Cast" and p.outputs[0] == name:
        src = _magnitude_bits(graph, producers, p.inputs[0])
        return _type_bits(dt) if src is None else min(src, _type_bits(dt))
    return _type_bits(dt)


def _compare_const(graph: Graph, node: Node) -> tuple[str, str, np.ndarray] | None:
    """(op as ``x OP c``, x, c) for a comparison of a run-time integer with a small integer
    constant, else None."""
    a, b = node.inputs[0], node.inputs[1]
    op = node.op_type
    ca, cb = value_const(graph, a), value_const(graph, b)
    if cb is not None and ca is None:
        x, c = a, cb
    elif ca is not None and cb is None:
        x, c, op = b, ca, MIRROR[op]
    else:
        return None
    c = np.asarray(c)
    if not _runtime_int(graph, x) or c.dtype.kind not in "iu":
        return None
    if c.size and int(np.abs(c.astype(np.int64)).max()) >= EXACT_INT - 1:
        return None
    return op, x, c.astype(np.int64)


def _select_constants(graph: Graph, node: Node) -> bool:
    """A Where on float32 whose two branches are finite float32 constants (see the module
    docstring for why an infinity or a run-time branch keeps the SELECT_V2)."""
    if len(node.inputs) != 3 or value_dtype(graph, node.outputs[0]) != F32:
        return False
    for name in node.inputs[1:]:
        c = value_const(graph, name)
        if c is None:
            return False
        c = np.asarray(c)
        if c.dtype != F32 or not np.isfinite(c).all():
            return False
    return True


def _infinite_fill(graph: Graph, node: Node) -> tuple[int, float] | None:
    """(branch holding the infinity, its sign) for ``Where(c, A, B)`` on float32 where one
    branch is a constant all ``+-inf`` and the other a constant all zeros, and the output has
    the condition's shape (torch's ``masked_fill(mask, -inf)``), else None."""
    if len(node.inputs) != 3 or value_dtype(graph, node.outputs[0]) != F32:
        return None
    consts = [value_const(graph, n) for n in node.inputs[1:]]
    if any(c is None or np.asarray(c).dtype != F32 or np.asarray(c).size == 0 for c in consts):
        return None
    out_shape = _value(graph, node.outputs[0])
    cond = _value(graph, node.inputs[0])
    if out_shape is None or cond is None or out_shape.shape != cond.shape:
        return None
    a, z = (np.asarray(c) for c in consts)
    for k, (inf, zero) in enumerate(((a, z), (z, a))):
        if np.isinf(inf).all() and (inf == inf.reshape(-1)[0]).all() and not np.any(zero):
            return k + 1, float(np.sign(inf.reshape(-1)[0]))
    return None


def static_default_node(graph: Graph, node: Node) -> bool:
    """A default-domain node whose values all have static shapes: the float forms' new values
    need them (pinned models)."""
    if node.domain != "" or not node.outputs:
        return False
    return all(graph.values[n].is_static for n in (*node.inputs, *node.outputs) if n)


def _runtime_branch(graph: Graph, node: Node) -> int | None:
    """Input position of the run-time float32 branch of ``Where(c, K, S)`` / ``Where(c, S,
    K)`` with K a finite float32 constant, else None."""
    if len(node.inputs) != 3 or value_dtype(graph, node.outputs[0]) != F32:
        return None
    kinds = []
    for name in node.inputs[1:]:
        c = value_const(graph, name)
        if c is None:
            kinds.append("run" if value_dtype(graph, name) == F32 else None)
        elif np.asarray(c).dtype == F32 and np.isfinite(c).all():
            kinds.append("const")
        else:
            kinds.append(None)
    if sorted(map(str, kinds)) != ["const", "run"]:
        return None
    return 1 + kinds.index("run")


def _role(graph: Graph, node: Node, bool_inputs: set[str], runtime: bool = False) -> str | None:
    """What a node does in the float form (None: it keeps its lowering)."""
    if not static_default_node(graph, node):
        return None
    op = node.op_type
    out = value_dtype(graph, node.outputs[0])
    carried_int = int_role(graph, node)
    if carried_int is not None:
        return carried_int
    if op == "Cast":
        src = value_dtype(graph, node.inputs[0])
        if out == BOOL and _runtime_int(graph, node.inputs[0]):
            return "nonzero"
        if src == BOOL and out == F32:
            return "sink"
        if src == BOOL and out == BOOL:
            return "mover"
        if out == F32 and _runtime_int(graph, node.inputs[0]):
            return "to_float"
        return None
    if op == "Where":
        if _select_constants(graph, node):
            return "select"
        if _infinite_fill(graph, node) is not None:
            return "select_inf"
        return "select_runtime" if runtime and _runtime_branch(graph, node) else None
    if out != BOOL:
        return None
    if op in LOGIC:
        return op.lower()
    if op in COMPARE and len(node.inputs) == 2:
        return "compare" if _compare_const(graph, node) is not None else None
    if op in MOVERS and value_dtype(graph, node.inputs[0]) == BOOL:
        return "mover"
    return None


def _bool_reads(role: str, node: Node, graph: Graph) -> tuple[int, ...]:
    """Input positions a role reads as carried values (0/1, or integers: mask_integers)."""
    if role in INT_ROLES or role in END_ROLES:
        return int_reads(role, node, graph)
    if role in ("not", "mover", "sink", "select", "select_inf", "select_runtime"):
        return (0,)
    if role in ("and", "or", "xor"):
        return (0, 1)
    return ()


def _plan(graph: Graph, runtime: bool = False) -> dict[int, str]:
    bool_inputs = {
        i for i in graph.inputs if value_dtype(graph, i) == BOOL and value_const(graph, i) is None
    }
    producers = graph.producers()
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    roles = {}
    for node in graph.nodes:
        r = _role(graph, node, bool_inputs, runtime)
        if r is not None:
            roles[id(node)] = r

    intervals(graph, roles)

    def fits(node: Node, r: str) -> bool:
        for i in _bool_reads(r, node, graph):
            name = node.inputs[i]
            p = producers.get(name)
            if name in bool_inputs or value_const(graph, name) is not None:
                continue
            if p is None or id(p) not in roles or roles[id(p)] in ENDS:
                return False
        if r not in ENDS:
            name = node.outputs[0]
            if name in outputs:
                return False
            for reader, idx in consumers.get(name, []):
                rr = roles.get(id(reader))
                if r in INT_ROLES and rr in INT_READERS:
                    continue
                if rr is None or idx not in _bool_reads(rr, reader, graph):
                    return False
        return True

    prune_to_fixpoint(graph, roles, fits)

    # a chain that only converts (no logic removed) is not worth a change: keep the plan only
    # where some SELECT_V2 / logical op / comparison / bool or integer data movement disappears
    def moves_integers(node: Node) -> bool:
        p = producers.get(node.inputs[0])
        return p is not None and p.domain == "" and p.op_type in MOVERS

    if not any(
        r not in ("sink", "nonzero", "to_float") or (r != "sink" and moves_integers(n))
        for n in graph.nodes
        if (r := roles.get(id(n))) is not None
    ):
        return {}
    return roles


class FloatFormBuilder:
    """Emits the float forms of the float-form rewrites (this module, float_indices,
    mask_integers, contrib_masks, log_softmax_parts) as new ONNX nodes: fresh names, constants,
    and the float32 twin of every bool or integer value it has carried."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.opset = graph.opsets.get("", 13)
        self.twin: dict[str, str] = {}  # bool or integer value -> float32 twin
        self.nodes: list[Node] = []
        self.label = ""
        self.producers = graph.producers()
        self.iv: dict[str, tuple[int, int]] = {}  # bounds of carried integers

    def fresh(self, base: str, shape, const=None) -> str:
        name = fresh_value_name(self.graph, base)
        shape = None if shape is None else tuple(shape)
        self.graph.values[name] = Value(name, F32, shape, const)
        return name

    def const(self, value, hint: str) -> str:
        arr = np.asarray(value, np.float32)
        return self.fresh(f"{self.label}/{hint}", arr.shape, arr)

    def op(self, op_type, inputs, shape, hint, out=None, **attrs) -> str:
        if out is None:
            out = self.fresh(f"{self.label}/{hint}", shape)
        node = Node(f"{self.label}/{hint}", op_type, "", list(inputs), [out], attrs, self.opset)
        self.nodes.append(node)
        return out

    def shape(self, name: str):
        v = _value(self.graph, name)
        return None if v is None else v.shape

    def carried(self, name: str) -> str:
        """The 0/1 twin of a carried value, a bool constant or a bool graph input."""
        if name in self.twin:
            return self.twin[name]
        c = value_const(self.graph, name)
        if c is not None:
            out = self.const(np.asarray(c).astype(np.float32), "mask")
        else:  # a bool graph input: the one CAST that reads it
            out = self.op("Cast", [name], self.shape(name), "mask_f", to=1)
        self.twin[name] = out
        return out

    def integer(self, name: str) -> str:
        """float32 of a run-time integer, converted at the start of its integer data movement
        (so the movement runs on floats, inside XNNPACK)."""
        if name in self.twin:
            return self.twin[name]
        p = self.producers.get(name)
        if (
            p is not None
            and p.domain == ""
            and p.op_type in MOVERS
            and p.outputs[0] == name
            and _runtime_int(self.graph, p.inputs[0])
        ):
            src = self.integer(p.inputs[0])
            out = self.op(
                p.op_type, [src, *p.inputs[1:]], self.shape(name), "float_move", **p.attrs
            )
        else:
            out = self.op("Cast", [name], self.shape(name), "as_float", to=1)
        self.twin[name] = out
        return out

    def nonzero(self, name: str, shape) -> str:
        """0/1: is the run-time integer ``name`` nonzero. A product of run-time integers
        (DeBERTa's ``mask[:, None] * mask[..., None]``) is nonzero when both factors are (the
        factors' 0/1 values multiplied) only if the integer product cannot wrap around to 0
        (factors whose powers of two add up to the integer width, such as two int64 values of
        2**32): so only when the factors' types are narrow enough (:func:`_product_cannot_wrap`);
        otherwise the product is computed in its integer type, as onnxruntime does."""
        p = self.producers.get(name)
        if name not in self.twin and (
            p is not None
            and p.domain == ""
            and p.op_type == "Mul"
            and p.outputs[0] == name
            and all(_runtime_int(self.graph, i) for i in p.inputs)
            and _product_cannot_wrap(self.graph, p)
        ):
            x, y = (self.nonzero(i, self.shape(i)) for i in p.inputs)
            return self.op("Mul", [x, y], shape, "both_nonzero")
        mag = self.op("Abs", [self.integer(name)], shape, "abs")
        return self.op("Min", [mag, self.const(1.0, "one")], shape, "nonzero")

    def clamp01(self, x: str, shape) -> str:
        """min(relu(x), 1): 1 for x >= 1, 0 for x <= 0 (integer-valued x)."""
        r = self.op("Relu", [x], shape, "relu")
        return self.op("Min", [r, self.const(1.0, "one")], shape, "clamp")


def _keep_output_name(b: FloatFormBuilder, out: str, shape) -> None:
    """A removed Cast whose result is a graph output: the output keeps its name, as an
    Identity of the float twin (its readers inside the graph read the twin itself)."""
    if out in b.graph.outputs:
        b.op("Identity", [b.twin[out]], shape, "output", out=out)


def _emit(b: FloatFormBuilder, node: Node, role: str) -> None:
    g = b.graph
    out = node.outputs[0]
    shape = b.shape(out)
    b.label = node.label
    if role in INT_ROLES or role in END_ROLES:
        emit_int(b, node, role, b.iv)
        return
    if role == "sink":
        b.twin[out] = b.carried(node.inputs[0])
        _keep_output_name(b, out, shape)
        return
    if role == "select":
        _emit_select(b, node, shape)
        return
    if role == "nonzero":
        b.twin[out] = b.nonzero(node.inputs[0], shape)
        return
    if role == "to_float":
        b.twin[out] = b.integer(node.inputs[0])
        _keep_output_name(b, out, shape)
        return
    if role == "select_inf":
        _emit_select_inf(b, node, shape)
        return
    if role == "mover":
        src = b.carried(node.inputs[0])
        if node.op_type == "Cast":  # bool -> bool
            b.twin[out] = src
            return
        b.twin[out] = b.op(node.op_type, [src, *node.inputs[1:]], shape, "mask_move", **node.attrs)
        return
    if role == "not":
        b.twin[out] = b.op("Sub", [b.const(1.0, "one"), b.carried(node.inputs[0])], shape, "not")
        return
    if role in ("and", "or", "xor"):
        x, y = b.carried(node.inputs[0]), b.carried(node.inputs[1])
        if role == "xor":
            d = b.op("Sub", [x, y], shape, "diff")
            b.twin[out] = b.op("Abs", [d], shape, "xor")
        else:
            b.twin[out] = b.op("Mul" if role == "and" else "Max", [x, y], shape, role)
        return
    op, x, c = _compare_const(g, node)
    xf = b.integer(x)
    if op == "Equal":
        d = b.op("Sub", [xf, b.const(c, "c")], shape, "diff")
        a = b.op("Abs", [d], shape, "dist")
        m = b.op("Min", [a, b.const(1.0, "one")], shape, "differs")
        b.twin[out] = b.op("Sub", [b.const(1.0, "one"), m], shape, "equal")
        return
    if op in ("Less", "LessOrEqual"):  # x < c  <=>  c - x >= 1
        bound = c if op == "Less" else c + 1
        d = b.op("Sub", [b.const(bound, "c"), xf], shape, "gap")
    else:  # x > c  <=>  x - c >= 1
        bound = c if op == "Greater" else c - 1
        d = b.op("Sub", [xf, b.const(bound, "c")], shape, "gap")
    b.twin[out] = b.clamp01(d, shape)


def _emit_select_inf(b: FloatFormBuilder, node: Node, shape) -> None:
    """``Where(c, -inf, 0)`` as ``log(1 - c)``, ``Where(c, 0, -inf)`` as ``log(c)`` (negated
    for +inf): LOG maps 0 to -inf and 1 to 0 exactly (XNNPACK's vlog special-cases 0 and its
    reduction makes 1 exact; the builtin kernel is std::log), and no MUL/ADD ever sees the
    infinity (LiteRT's builtin MUL/ADD clamp results to +-FLT_MAX)."""
    branch, sign = _infinite_fill(b.graph, node)
    c = b.carried(node.inputs[0])
    k = b.op("Sub", [b.const(1.0, "one"), c], shape, "not") if branch == 1 else c
    if sign > 0:
        log = b.op("Log", [k], shape, "log")
        b.op("Neg", [log], shape, "select", out=node.outputs[0])
    else:
        b.op("Log", [k], shape, "select", out=node.outputs[0])


def _term(b: FloatFormBuilder, cond: str, const: np.ndarray, shape, hint: str) -> str | None:
    """cond * const (cond in {0, 1}, const finite): exact; None for an all-zero const."""
    if not np.any(const):
        return None
    return b.op("Mul", [cond, b.const(const, hint)], shape, f"{hint}_term")


def _broadcast(*shapes):
    known = [tuple(s) for s in shapes if s is not None]
    try:
        return tuple(np.broadcast_shapes(*known)) if len(known) == len(shapes) else None
    except (ValueError, TypeError):
        return None


def _emit_select(b: FloatFormBuilder, node: Node, shape) -> None:
    g = b.graph
    c = b.carried(node.inputs[0])
    a = np.asarray(value_const(g, node.inputs[1]), np.float32)
    z = np.asarray(value_const(g, node.inputs[2]), np.float32)
    out = node.outputs[0]
    cshape = b.shape(node.inputs[0])
    ta = _term(b, c, a, _broadcast(cshape, a.shape), "then")
    nc = b.op("Sub", [b.const(1.0, "one"), c], cshape, "not") if np.any(z) else None
    tz = None if nc is None else _term(b, nc, z, _broadcast(cshape, z.shape), "else")
    if ta is not None and tz is not None:
        b.op("Add", [ta, tz], shape, "select", out=out)
        return
    # one term (or none) left: adding the other branch's zeros gives the output its
    # broadcast shape (Where broadcasts all three operands)
    part = ta if ta is not None else tz
    if part is None:
        part = b.op(
            "Mul", [c, b.const(np.zeros_like(a), "zero")], _broadcast(cshape, a.shape), "zero"
        )
    other = z if ta is not None else a
    b.op("Add", [part, b.const(np.zeros_like(other), "zero")], shape, "select", out=out)


def float_mask_logic(graph: Graph) -> list[str]:
    roles = _plan(graph)
    if not roles:
        return []
    b = FloatFormBuilder(graph)
    b.iv = intervals(graph, dict(roles))
    changed = []
    kept: list[Node] = []
    for node in graph.nodes:
        role = roles.get(id(node))
        if role is None:
            if b.nodes:
                kept.extend(b.nodes)
                b.nodes = []
            kept.append(node)
            continue
        _emit(b, node, role)
        kept.extend(b.nodes)
        b.nodes = []
        changed.append(node.label)
    # readers of a removed Cast(bool -> float) read the twin
    rename = {
        n.outputs[0]: b.twin[n.outputs[0]]
        for n in graph.nodes
        if roles.get(id(n)) in ("sink", "to_float")
    }
    for n in kept:
        n.inputs = [rename.get(i, i) for i in n.inputs]
    constant = {n.outputs[0] for n in graph.nodes if roles.get(id(n)) == "uniform_lookup"}
    graph.nodes = kept
    if constant:
        fold_constant_gathers(graph, constant)
    graph.invalidate()
    return changed


def gathernd_as_reshape(graph: Graph) -> list[str]:
    changed = []
    opset = graph.opsets.get("", 13)
    for k, node in enumerate(graph.nodes):
        if node.op_type != "GatherND" or node.domain != "" or node.attrs.get("batch_dims", 0):
            continue
        data, idx = _value(graph, node.inputs[0]), value_const(graph, node.inputs[1])
        out = _value(graph, node.outputs[0])
        if data is None or idx is None or out is None or not data.is_static or not out.is_static:
            continue
        idx = np.asarray(idx).astype(np.int64)
        dims = np.array(data.shape, np.int64)
        if idx.ndim < 1 or idx.shape[-1] != len(dims) or idx.size == 0:
            continue
        idx = np.where(idx < 0, idx + dims, idx).reshape(-1, len(dims))
        if (idx < 0).any() or (idx >= dims).any():
            continue
        flat = np.ravel_multi_index(tuple(idx.T), tuple(dims))
        if flat.size != int(np.prod(dims)) or not np.array_equal(flat, np.arange(flat.size)):
            continue
        shape_name, j = f"{node.label}/shape", 1
        while shape_name in graph.values:
            j += 1
            shape_name = f"{node.label}/shape_{j}"
        target = np.array(out.shape, np.int64)
        graph.values[shape_name] = Value(shape_name, np.dtype(np.int64), target.shape, target)
        graph.nodes[k] = Node(
            node.name, "Reshape", "", [node.inputs[0], shape_name], list(node.outputs), {}, opset
        )
        changed.append(node.label)
    if changed:
        graph.invalidate()
    return changed


def where_runtime_branch(graph: Graph) -> list[str]:
    """``Where(c, K, S)`` (or ``Where(c, S, K)``) with a finite constant K and a run-time S,
    whose condition ``float_mask_logic`` carries, as float arithmetic on ``m`` (1 where K is
    chosen): ``min(-log m, max(log m, S)) + m * K``. log m is 0 / -inf, so the clamp passes
    every S where m = 0 and gives +-0 where m = 1; adding ``m * K`` (K or a zero) gives K
    there and leaves S unchanged elsewhere. The condition becomes ``Cast(c -> float)``, a
    sink of float_mask_logic, which runs again at the end. Exact on XNNPACK for every S but NaN (a
    NaN score stays NaN where K was chosen); on LiteRT's builtin kernels an infinite S where
    it is kept comes out +-FLT_MAX (their ADD clamps its result; their MUL/ADD/
    FULLY_CONNECTED clamp every score they compute, so only an input can be infinite there).
    """
    roles = _plan(graph, runtime=True)
    selects = [n for n in graph.nodes if roles.get(id(n)) == "select_runtime"]
    if not selects:
        return []
    b = FloatFormBuilder(graph)
    shared: dict[tuple[str, int], tuple[str, str, str]] = {}
    kept: list[Node] = []
    changed = []
    for node in graph.nodes:
        if roles.get(id(node)) != "select_runtime":
            kept.append(node)
            continue
        b.label = node.label
        run = _runtime_branch(graph, node)
        cond, s_name, k_name = node.inputs[0], node.inputs[run], node.inputs[3 - run]
        cshape = b.shape(cond)
        key = (cond, run)
        if key not in shared:
            cf = b.op("Cast", [cond], cshape, "mask_f", to=1)
            # m = 1 where the constant is chosen: c itself when K is the then-branch
            m = cf if run == 2 else b.op("Sub", [b.const(1.0, "one"), cf], cshape, "masked")
            lo = b.op("Log", [m], cshape, "lo")
            shared[key] = (m, lo, b.op("Neg", [lo], cshape, "hi"))
        m, lo, hi = shared[key]
        shape = b.shape(node.outputs[0])
        k = np.asarray(value_const(graph, k_name), np.float32)
        v = b.op("Max", [lo, s_name], b.shape(s_name), "kept_lo")
        v = b.op("Min", [hi, v], shape, "kept")
        fill = b.op("Mul", [m, b.const(k, "fill")], _broadcast(cshape, k.shape), "fill")
        b.op("Add", [v, fill], shape, "select", out=node.outputs[0])
        kept.extend(b.nodes)
        b.nodes = []
        changed.append(node.label)
    graph.nodes = kept
    graph.invalidate()
    # opt-in rules run after RULES: carry the conditions now that their Where reads a float
    return changed + float_mask_logic(graph)


RULES = [("gathernd_as_reshape", gathernd_as_reshape), ("float_mask_logic", float_mask_logic)]

# Opt-in (onnx_rewrites.OPT_IN / opt_in): not exact on LiteRT's builtin kernels for an infinite
# kept S (see where_runtime_branch), so not run by default.
OPT_IN = {"where_runtime_branch": where_runtime_branch}
