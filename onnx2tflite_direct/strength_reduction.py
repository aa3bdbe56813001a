"""Strength reduction on the ONNX IR: an op with a constant operand becomes a cheaper, exact one.

Why: exporters write ``Pow(x, 2)``, ``x / 2``, ``x + 0``, ``Where(true, a, b)`` and
``Gather(x, arange)``; lowered literally they run POW, DIV, an ADD that does nothing, a SELECT_V2
and a GATHER. POW, SELECT_V2 and GATHER have no XNNPACK kernel, so each one also cuts the graph
into another delegate partition (a Pow(x, 2) per RMSNorm split a 132-op Llama into 7).

Each function below is one named rule of ``onnx_rewrites.RULES`` (reported in the coverage
report's ``rewrites``, turned off by ``--disable-rewrite NAME``). Every replacement computes
what onnxruntime computes, to the last bit or within the rounding of the original:

* ``pow_constant_exponent``: Pow with one constant exponent on a float base: 1 -> the base,
  2 -> Mul(x, x) and 3 -> Mul(Mul(x, x), x) (what onnxruntime computes for these, bit for
  bit), 0.5 -> Sqrt (correctly rounded; onnxruntime's std::pow is within 1 ulp of it),
  -1 -> Reciprocal, -0.5 -> Reciprocal(Sqrt) (two roundings: within 1 ulp of onnxruntime on
  a 100k-value sweep). Other exponents stay POW.
* ``div_by_constant``: Div by a constant whose every element is a power of two becomes Mul by
  its reciprocal: x * 2^-k is x / 2^k exactly, subnormal results included. Other divisors stay
  Div: x * (1/c) rounds twice (up to 1.5 ulp off onnxruntime's true division) and XNNPACK
  takes DIV as it takes MUL, so the rewrite would buy little and lose bit-exactness.
* ``remove_identity_arith``: Add/Sub of zero, Mul/Div by one disappear when the constant does
  not broadcast the other operand to a larger shape and the dtype is unchanged. (x + 0 turns
  -0.0 into +0.0: equal values, only 1/x could tell; Sub and Mul keep it.)
* ``where_constant_condition``: a Where whose condition is a constant, all true or all false,
  is the chosen branch when that branch already has the output's shape and dtype.
* ``gather_as_reshape``: a Gather whose constant indices list the axis in order exactly
  (0, 1, ..., n-1, in any index shape: torch's ``as_strided`` export) is a Reshape.
* ``gather_as_slice``: a Gather whose constant indices are a shorter run k, k+1, ..., k+m-1
  (a scalar k: an unrolled RNN's x[t]) is a Slice and a Reshape.

Rules never touch a value that is a graph output or read by something else they would change.
"""

from __future__ import annotations

import numpy as np

from .ir import Graph, Node, Value, fresh_value_name, value_const

FLOAT_DTYPES = {np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)}


def _is_float(dtype) -> bool:
    return dtype is not None and (np.dtype(dtype) in FLOAT_DTYPES or "bfloat16" in str(dtype))


def _same_value_shape(graph: Graph, a: str, b: str) -> bool:
    va, vb = graph.values.get(a), graph.values.get(b)
    return (
        va is not None
        and vb is not None
        and va.shape is not None
        and vb.shape is not None
        and tuple(va.shape) == tuple(vb.shape)
        and va.dtype == vb.dtype
    )


class _Rewriter:
    """Node replacements and renames applied in one pass; ``finish`` commits them."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.rename: dict[str, str] = {}
        self.replaced: dict[int, list[Node]] = {}
        self.changed: list[str] = []
        self.outputs = set(graph.outputs)

    def drop(self, node: Node, out: str, src: str) -> bool:
        """``node``'s output becomes ``src``: readers read ``src`` (not for graph outputs)."""
        if out in self.outputs:
            return False
        self.rename[out] = self.rename.get(src, src)  # nodes come in topological order
        self.replaced[id(node)] = []
        self.changed.append(node.label)
        return True

    def replace(self, node: Node, new: list[Node]) -> None:
        self.replaced[id(node)] = new
        self.changed.append(node.label)

    def temp(self, node: Node, hint: str, like: str) -> str:
        src = self.graph.values[like]
        name = fresh_value_name(self.graph, f"{node.label}/{hint}")
        self.graph.values[name] = Value(name, src.dtype, src.shape)
        return name

    def node(self, like: Node, op_type: str, inputs: list[str], out: str, hint: str, **attrs):
        return Node(f"{like.label}/{hint}", op_type, "", inputs, [out], attrs, like.opset)

    def finish(self) -> list[str]:
        if not self.changed:
            return []
        nodes = [new for n in self.graph.nodes for new in self.replaced.get(id(n), [n])]
        if self.rename:
            for n in nodes:
                n.inputs = [self.rename.get(i, i) for i in n.inputs]
        self.graph.nodes = nodes
        self.graph.invalidate()
        return self.changed


def _default(node: Node, op_type: str) -> bool:
    return node.op_type == op_type and node.domain == "" and len(node.inputs) >= 2


def _scalar(c: np.ndarray | None) -> float | None:
    """The value of a constant whose elements are all equal (None otherwise)."""
    if c is None or c.size == 0 or c.dtype.kind not in "fiu":
        return None
    flat = c.reshape(-1)
    first = flat[0]
    return float(first) if np.all(flat == first) else None


def pow_constant_exponent(graph: Graph) -> list[str]:
    """Pow(x, c) with one constant exponent c in {1, 2, 3, 0.5, -1, -0.5} on a float base."""
    rw = _Rewriter(graph)
    for node in graph.nodes:
        if not _default(node, "Pow"):
            continue
        x, out = node.inputs[0], node.outputs[0]
        c = _scalar(value_const(graph, node.inputs[1]))
        if (
            c is None
            or not _is_float(graph.values[x].dtype)
            or not _same_value_shape(graph, x, out)
        ):
            continue
        if c == 1.0:
            rw.drop(node, out, x)
        elif c == 2.0:
            rw.replace(node, [rw.node(node, "Mul", [x, x], out, "square")])
        elif c == 3.0:  # (x * x) * x: onnxruntime's own Pow(x, 3), to the bit
            sq = rw.temp(node, "square", x)
            rw.replace(
                node,
                [
                    rw.node(node, "Mul", [x, x], sq, "square"),
                    rw.node(node, "Mul", [sq, x], out, "cube"),
                ],
            )
        elif c == 0.5:
            rw.replace(node, [rw.node(node, "Sqrt", [x], out, "sqrt")])
        elif c == -1.0:
            rw.replace(node, [rw.node(node, "Reciprocal", [x], out, "reciprocal")])
        elif c == -0.5:
            root = rw.temp(node, "sqrt", x)
            rw.replace(
                node,
                [
                    rw.node(node, "Sqrt", [x], root, "sqrt"),
                    rw.node(node, "Reciprocal", [root], out, "rsqrt"),
                ],
            )
    return rw.finish()


def _power_of_two_reciprocal(c: np.ndarray) -> np.ndarray | None:
    """1 / c when every element of the float constant c is +-2^k and 1/c is exact."""
    if c.dtype.kind != "f" or c.size == 0 or not np.all(np.isfinite(c)) or np.any(c == 0):
        return None
    mantissa, _ = np.frexp(c.astype(np.float64))
    if not np.all(np.abs(mantissa) == 0.5):
        return None
    inv = (1.0 / c.astype(np.float64)).astype(c.dtype)
    if not np.all(inv.astype(np.float64) * c.astype(np.float64) == 1.0):
        return None  # 1/c under- or overflows the dtype
    return inv


def div_by_constant(graph: Graph) -> list[str]:
    """Div(x, c), c a float constant of powers of two, becomes Mul(x, 1/c) (exact)."""
    rw = _Rewriter(graph)
    for node in graph.nodes:
        if not _default(node, "Div"):
            continue
        c = value_const(graph, node.inputs[1])
        x = node.inputs[0]
        if c is None or not _is_float(graph.values[x].dtype) or c.dtype == np.float64:
            continue
        inv = _power_of_two_reciprocal(c)
        if inv is None:
            continue
        name = fresh_value_name(graph, f"{node.label}/reciprocal")
        graph.values[name] = Value(name, inv.dtype, tuple(inv.shape), inv)
        rw.replace(node, [rw.node(node, "Mul", [x, name], node.outputs[0], "mul")])
    return rw.finish()


# op -> (neutral constant, operand positions the constant may take)
NEUTRAL = {"Add": (0, (0, 1)), "Sub": (0, (1,)), "Mul": (1, (0, 1)), "Div": (1, (1,))}


def remove_identity_arith(graph: Graph) -> list[str]:
    """Add/Sub of zero, Mul/Div by one: the other operand, when shapes and dtype agree."""
    rw = _Rewriter(graph)
    for node in graph.nodes:
        rule = NEUTRAL.get(node.op_type)
        if rule is None or node.domain != "" or len(node.inputs) != 2:
            continue
        neutral, positions = rule
        out = node.outputs[0]
        for pos in positions:
            c = value_const(graph, node.inputs[pos])
            other = node.inputs[1 - pos]
            if c is None or c.size == 0 or not np.all(c == neutral):
                continue
            if _same_value_shape(graph, other, out) and rw.drop(node, out, other):
                break
    return rw.finish()


def where_constant_condition(graph: Graph) -> list[str]:
    """Where(c, a, b) with a constant c that is all true (-> a) or all false (-> b)."""
    rw = _Rewriter(graph)
    for node in graph.nodes:
        if node.op_type != "Where" or node.domain != "" or len(node.inputs) != 3:
            continue
        cond = value_const(graph, node.inputs[0])
        if cond is None or cond.size == 0:
            continue
        if np.all(cond):
            chosen = node.inputs[1]
        elif not np.any(cond):
            chosen = node.inputs[2]
        else:
            continue
        if _same_value_shape(graph, chosen, node.outputs[0]):
            rw.drop(node, node.outputs[0], chosen)
    return rw.finish()


def gather_as_reshape(graph: Graph) -> list[str]:
    """Gather(x, idx, axis) with constant idx = 0..n-1 in order (n = x.shape[axis]) is
    Reshape(x, x.shape[:axis] + idx.shape + x.shape[axis+1:])."""
    rw = _Rewriter(graph)
    for node in graph.nodes:
        if not _default(node, "Gather"):
            continue
        x, out = node.inputs[0], node.outputs[0]
        idx = value_const(graph, node.inputs[1])
        src = graph.values.get(x)
        # a scalar index qualifies on a length-1 axis (x[:, -1] of a one-step decoder output)
        if idx is None or idx.dtype.kind not in "iu" or src is None:
            continue
        if not src.is_static or not src.shape:
            continue
        axis = int(node.attrs.get("axis", 0)) % len(src.shape)
        n = src.shape[axis]
        flat = idx.reshape(-1).astype(np.int64)
        flat = np.where(flat < 0, flat + n, flat)
        if flat.size != n or not np.array_equal(flat, np.arange(n)):
            continue
        shape = [*src.shape[:axis], *idx.shape, *src.shape[axis + 1 :]]
        if 0 in shape:
            continue
        rw.replace(
            node,
            [rw.node(node, "Reshape", [x, _ints(graph, node, "shape", shape)], out, "reshape")],
        )
    return rw.finish()


def _ints(graph: Graph, node: Node, hint: str, values) -> str:
    name = fresh_value_name(graph, f"{node.label}/{hint}")
    arr = np.array(values, np.int64)
    graph.values[name] = Value(name, arr.dtype, arr.shape, arr)
    return name


def gather_as_slice(graph: Graph) -> list[str]:
    """Gather(x, idx, axis) with constant idx = k, k+1, ..., k+m-1 (a scalar k included: an
    unrolled RNN's x[t]) is Slice(x, k, k+m, axis) then Reshape to the output shape."""
    rw = _Rewriter(graph)
    for node in graph.nodes:
        if not _default(node, "Gather") or node.opset < 10:
            continue
        x, out = node.inputs[0], node.outputs[0]
        idx = value_const(graph, node.inputs[1])
        src, dst = graph.values.get(x), graph.values.get(out)
        if idx is None or idx.dtype.kind not in "iu" or idx.size == 0 or src is None:
            continue
        if not _is_float(src.dtype):  # only float ops gain (XNNPACK); else 2 ops for 1
            continue
        if not src.is_static or not src.shape or dst is None or not dst.is_static:
            continue
        axis = int(node.attrs.get("axis", 0)) % len(src.shape)
        n = src.shape[axis]
        flat = idx.reshape(-1).astype(np.int64)
        flat = np.where(flat < 0, flat + n, flat)
        k, m = int(flat[0]), flat.size
        if not np.array_equal(flat, np.arange(k, k + m)) or k < 0 or k + m > n or m == n:
            continue
        part = list(src.shape)
        part[axis] = m
        sliced = fresh_value_name(graph, f"{node.label}/slice")
        graph.values[sliced] = Value(sliced, src.dtype, tuple(part))
        ends = _ints(graph, node, "ends", [k + m])
        slice_in = [x, _ints(graph, node, "starts", [k]), ends, _ints(graph, node, "axes", [axis])]
        shape = _ints(graph, node, "shape", list(dst.shape))
        rw.replace(
            node,
            [
                rw.node(node, "Slice", slice_in, sliced, "slice"),
                rw.node(node, "Reshape", [sliced, shape], out, "reshape"),
            ],
        )
    return rw.finish()


RULES = [
    ("pow_constant_exponent", pow_constant_exponent),
    ("div_by_constant", div_by_constant),
    ("remove_identity_arith", remove_identity_arith),
    ("where_constant_condition", where_constant_condition),
    ("gather_as_reshape", gather_as_reshape),
    ("gather_as_slice", gather_as_slice),
]

TRIGGERS = {
    "pow_constant_exponent": {"Pow"},
    "div_by_constant": {"Div"},
    "remove_identity_arith": {"Add", "Sub", "Mul", "Div"},
    "where_constant_condition": {"Where"},
    "gather_as_reshape": {"Gather"},
    "gather_as_slice": {"Gather"},
}
