"""Graph-level rewrites on the ONNX IR before lowering; each is a small named rule.

A rule takes the graph, changes it in place and returns the names of the nodes it removed or
replaced; ``apply`` yields ``(rule id, names)`` for the coverage report. Rules only fire when
the tensors they make disappear are read by nothing else and are not graph outputs.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from .batched_nms import RULES as BATCHED_NMS_RULES
from .batched_nms import TRIGGERS as BATCHED_NMS_TRIGGERS
from .cast_before_moves import RULES as CAST_MOVE_RULES
from .cast_before_moves import TRIGGERS as CAST_MOVE_TRIGGERS
from .contrib_masks import RULES as CONTRIB_MASK_RULES
from .contrib_masks import TRIGGERS as CONTRIB_MASK_TRIGGERS
from .empty_operands import drop_empty_concat_operands
from .float_carried import TRIGGERS as FLOAT_CARRIED_TRIGGERS
from .float_carried import float_carried_integers
from .float_indices import RULES as INDEX_RULES
from .float_indices import TRIGGERS as INDEX_TRIGGERS
from .float_masks import OPT_IN as MASK_OPT_IN
from .float_masks import RULES as MASK_RULES
from .float_masks import TRIGGERS as MASK_TRIGGERS
from .folding import NONDETERMINISTIC_OPS
from .head_projection import OPT_IN as HEAD_OPT_IN
from .head_projection import fused_head_projection
from .ir import Graph, Node, Value
from .log_softmax_parts import OPT_IN as LOG_SOFTMAX_OPT_IN
from .log_softmax_parts import TRIGGERS as LOG_SOFTMAX_TRIGGERS
from .qdq_merge import merge_double_qdq
from .registry import REGISTRY
from .strength_reduction import RULES as STRENGTH_RULES
from .strength_reduction import TRIGGERS as STRENGTH_TRIGGERS


class Matcher:
    """Read-only views of the graph that rules match against (rebuilt per rule)."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.consumers = graph.consumers()
        self.producers = graph.producers()

    def private(self, name: str) -> bool:
        """Read by exactly one node and not a graph output: safe to make disappear."""
        return len(self.consumers.get(name, [])) == 1 and name not in self.graph.outputs

    def only_consumer(self, name: str) -> Node | None:
        users = self.consumers.get(name, [])
        return users[0][0] if len(users) == 1 and name not in self.graph.outputs else None

    def scalar(self, name: str) -> float | None:
        value = self.graph.values.get(name)
        if value is None or value.const is None or value.const.size != 1:
            return None
        return float(np.asarray(value.const).reshape(-1)[0])

    def producer(self, name: str, op_type: str) -> Node | None:
        node = self.producers.get(name)
        return node if node is not None and node.op_type == op_type and node.domain == "" else None

    def split_const(self, node: Node, value: float, tol: float = 1e-4) -> str | None:
        """For a binary node with a scalar constant ``value`` operand, the other operand."""
        a, b = node.inputs[0], node.inputs[1]
        for const, other in ((b, a), (a, b)):
            c = self.scalar(const)
            if c is not None and math.isclose(c, value, rel_tol=tol, abs_tol=tol):
                return other
        return None


def _close(value: float | None, target: float) -> bool:
    return value is not None and math.isclose(value, target, rel_tol=1e-4, abs_tol=1e-6)


def _replace(graph: Graph, remove: list[Node], new: Node) -> None:
    """Put ``new`` where the last removed node stood (its inputs are all produced earlier)."""
    ids = {id(n) for n in remove}
    last = max(i for i, n in enumerate(graph.nodes) if id(n) in ids)
    graph.nodes.insert(last + 1, new)
    graph.nodes = [n for n in graph.nodes if id(n) not in ids]
    graph.invalidate()


def _fuse_chains(graph: Graph, op_type: str, opset: int, attrs: dict, match) -> list[str]:
    """Replace every chain ``match(matcher, node) -> (x, out, nodes)`` by one ``op_type`` node,
    but only if that op is itself supported (a fusion must never create a refusal)."""
    if REGISTRY.lookup("", op_type, opset) is None:
        return []
    changed: list[str] = []
    while True:
        m = Matcher(graph)
        found = next((r for r in (match(m, n) for n in graph.nodes) if r), None)
        if found is None:
            return changed
        x, out, nodes = found
        fused = Node(f"{nodes[-1].label}/{op_type}", op_type, "", [x], [out], dict(attrs), opset)
        _replace(graph, nodes, fused)
        changed.extend(n.label for n in nodes)


def fold_batchnorm_into_conv(graph: Graph) -> list[str]:
    """Conv (constant W, B) -> BatchNormalization (constant stats) becomes one Conv."""
    m = Matcher(graph)
    values = graph.values
    removed: set[int] = set()
    changed = []
    for bn in graph.nodes:
        if bn.op_type != "BatchNormalization" or bn.domain != "" or len(bn.inputs) < 5:
            continue
        if bn.attrs.get("training_mode", 0) or any(graph.used(o) for o in bn.outputs[1:]):
            continue
        if bn.opset < 9 and bn.attrs.get("spatial", 1) != 1:
            continue
        conv = m.producer(bn.inputs[0], "Conv")
        if conv is None or not m.private(conv.outputs[0]):
            continue
        stats = [values[n].const for n in bn.inputs[1:5]]
        w = values[conv.inputs[1]].const
        has_b = len(conv.inputs) > 2 and bool(conv.inputs[2])
        b = values[conv.inputs[2]].const if has_b else None
        if any(s is None for s in stats) or w is None or (has_b and b is None):
            continue
        if w.dtype != np.float32:
            continue
        scale, bias, mean, var = (s.astype(np.float64) for s in stats)  # small vectors
        factor = scale / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        new_w = w * factor.astype(np.float32).reshape((-1,) + (1,) * (w.ndim - 1))
        base = b.astype(np.float64) if b is not None else 0.0
        new_b = ((base - mean) * factor + bias).astype(np.float32)
        w_name, b_name = f"{conv.label}/bn_folded_W", f"{conv.label}/bn_folded_B"
        values[w_name] = Value(w_name, new_w.dtype, tuple(new_w.shape), new_w)
        values[b_name] = Value(b_name, new_b.dtype, tuple(new_b.shape), new_b)
        replaced = [n for n in conv.inputs[1:] if n]
        conv.inputs = [conv.inputs[0], w_name, b_name]
        conv.outputs = [bn.outputs[0]]
        for name in replaced:  # drop the unfolded weights unless something else reads them
            if m.private(name):
                del values[name]
        removed.add(id(bn))
        changed.append(bn.label)
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    graph.invalidate()
    return changed


def remove_noop_cast(graph: Graph) -> list[str]:
    """A Cast to the dtype the tensor already has disappears: its readers read the source.

    (Rewiring rather than turning it into an Identity keeps the rule independent of any other
    op's dtype support: a rewrite must never create a refusal.)
    """
    rename: dict[str, str] = {}
    removed: set[int] = set()
    changed = []
    for node in graph.nodes:
        node.inputs = [rename.get(i, i) for i in node.inputs]
        if node.op_type != "Cast" or node.domain != "" or not node.inputs:
            continue
        src = graph.values[node.inputs[0]]
        dst = graph.values.get(node.outputs[0])
        if dst is None or src.dtype is None or src.dtype != dst.dtype:
            continue
        if node.outputs[0] in graph.outputs:
            continue
        rename[node.outputs[0]] = node.inputs[0]
        removed.add(id(node))
        changed.append(node.label)
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    graph.invalidate()
    return changed


def _attr_key(attrs: dict) -> tuple:
    items = []
    for k, v in sorted(attrs.items()):
        if isinstance(v, np.ndarray):
            v = (v.dtype.str, v.shape, v.tobytes())
        elif isinstance(v, list):
            v = tuple(v)
        elif not isinstance(v, (int, float, str, tuple, type(None))):
            return (id(attrs),)  # graphs and other objects: never merged
        items.append((k, v))
    return tuple(items)


def merge_common_subexpressions(graph: Graph) -> list[str]:
    """Two nodes with the same op, inputs and attributes compute the same tensors: keep one."""
    seen: dict[tuple, Node] = {}
    rename: dict[str, str] = {}
    removed: set[int] = set()
    changed = []
    graph_outputs = set(graph.outputs)
    for node in graph.nodes:
        if rename:  # (nothing to rename before the first merge)
            node.inputs = [rename.get(i, i) for i in node.inputs]
        if node.op_type in NONDETERMINISTIC_OPS or any(o in graph_outputs for o in node.outputs):
            continue
        key = (node.domain, node.op_type, node.opset, tuple(node.inputs), _attr_key(node.attrs))
        twin = seen.get(key)
        if twin is None:
            seen[key] = node
            continue
        pairs = list(zip(node.outputs, twin.outputs, strict=False))
        if len(node.outputs) != len(twin.outputs) or any(m and not t for m, t in pairs):
            continue  # the twin does not produce every output this node does
        for mine, theirs in pairs:
            if mine:
                rename[mine] = theirs
        removed.add(id(node))
        changed.append(node.label)
    if removed:
        graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    graph.invalidate()
    return changed


def fuse_gelu(graph: Graph) -> list[str]:
    """x * 0.5 * (1 + Erf(x / sqrt 2)), as exporters write it, becomes one Gelu."""
    return _fuse_chains(graph, "Gelu", 20, {"approximate": "none"}, _match_gelu)


def _match_gelu(m: Matcher, erf: Node):
    """Erf(x / sqrt 2) (or x * 1/sqrt 2), then the common tail."""
    if erf.op_type != "Erf" or erf.domain != "":
        return None
    scaled = erf.inputs[0]
    pre = m.producer(scaled, "Div") or m.producer(scaled, "Mul")
    if pre is None or not m.private(scaled):
        return None
    if pre.op_type == "Div":
        x = pre.inputs[0] if _close(m.scalar(pre.inputs[1]), math.sqrt(2.0)) else None
    else:
        x = m.split_const(pre, 1 / math.sqrt(2.0))
    return None if x is None else _gelu_tail(m, x, erf, [pre, erf])


def _match_gelu_tanh(m: Matcher, tanh: Node):
    """Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)), then the common tail."""
    if tanh.op_type != "Tanh" or tanh.domain != "" or not m.private(tanh.inputs[0]):
        return None
    scale = m.producer(tanh.inputs[0], "Mul")
    inner = None if scale is None else m.split_const(scale, math.sqrt(2.0 / math.pi))
    add = None if inner is None or not m.private(inner) else m.producer(inner, "Add")
    if add is None:
        return None
    for x, cubic_term in ((add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])):
        coef = m.producer(cubic_term, "Mul")
        cube = None if coef is None else m.split_const(coef, 0.044715)
        power = None if cube is None else m.producer(cube, "Pow")
        if (
            power is not None
            and power.inputs[0] == x
            and _close(m.scalar(power.inputs[1]), 3.0)
            and m.private(cubic_term)
            and m.private(cube)
        ):
            return _gelu_tail(m, x, tanh, [power, coef, add, scale, tanh])
    return None


def _gelu_tail(m: Matcher, x: str, core: Node, nodes: list[Node]):
    """core -> Add 1 -> Mul x -> Mul 0.5 (or Mul(x, 0.5) -> Mul): the chain's output and nodes."""
    if not m.private(core.outputs[0]):
        return None
    add = m.only_consumer(core.outputs[0])
    if add is None or add.op_type != "Add" or m.split_const(add, 1.0) != core.outputs[0]:
        return None
    mul = m.only_consumer(add.outputs[0])
    if mul is None or mul.op_type != "Mul":
        return None
    other = mul.inputs[1] if mul.inputs[0] == add.outputs[0] else mul.inputs[0]
    if _close(m.scalar(other), 0.5):  # x * (0.5 * (1 + core)) (torch dynamo)
        if not m.private(mul.outputs[0]):
            return None
        outer = m.only_consumer(mul.outputs[0])
        if outer is None or outer.op_type != "Mul" or len(outer.inputs) != 2:
            return None
        if sorted(outer.inputs) != sorted([x, mul.outputs[0]]):
            return None
        return x, outer.outputs[0], [*nodes, add, mul, outer]
    if other == x:  # (x * (1 + core)) * 0.5
        if not m.private(mul.outputs[0]):
            return None
        half = m.only_consumer(mul.outputs[0])
        if half is None or half.op_type != "Mul" or m.split_const(half, 0.5) != mul.outputs[0]:
            return None
        return x, half.outputs[0], [*nodes, add, mul, half]
    halved = m.producer(other, "Mul")  # (x * 0.5) * (1 + core)
    if halved is not None and m.split_const(halved, 0.5) == x and m.private(other):
        return x, mul.outputs[0], [*nodes, add, halved, mul]
    return None


def fuse_gelu_tanh(graph: Graph) -> list[str]:
    """x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3))) becomes one Gelu(tanh)."""
    return _fuse_chains(graph, "Gelu", 20, {"approximate": "tanh"}, _match_gelu_tanh)


def fuse_hardswish(graph: Graph) -> list[str]:
    """x * HardSigmoid(x; 1/6, 1/2) and x * Clip(x + 3, 0, 6) / 6 become one HardSwish."""
    return _fuse_chains(graph, "HardSwish", 14, {}, _match_hardswish)


def _match_hardswish(m: Matcher, mul: Node):
    if mul.op_type != "Mul" or mul.domain != "" or len(mul.inputs) != 2:
        return None
    for x, gate in ((mul.inputs[0], mul.inputs[1]), (mul.inputs[1], mul.inputs[0])):
        if not m.private(gate):
            continue
        hs = m.producer(gate, "HardSigmoid")
        if hs is not None and hs.inputs[0] == x:
            alpha, beta = hs.attrs.get("alpha", 0.2), hs.attrs.get("beta", 0.5)
            if _close(alpha, 1 / 6) and _close(beta, 0.5):
                return x, mul.outputs[0], [hs, mul]
        chain = _relu6_over_6(m, gate, x)
        if chain is not None:
            return x, mul.outputs[0], [*chain, mul]
    return None


def _relu6_over_6(m: Matcher, gate: str, x: str):
    """gate = Clip(x + 3, 0, 6) / 6 (or * 1/6); the nodes, or None."""
    scale = m.producer(gate, "Div") or m.producer(gate, "Mul")
    if scale is None:
        return None
    want = 6.0 if scale.op_type == "Div" else 1 / 6
    if scale.op_type == "Div":
        clipped = scale.inputs[0] if _close(m.scalar(scale.inputs[1]), want) else None
    else:
        clipped = m.split_const(scale, want)
    if clipped is None or not m.private(clipped):
        return None
    clip = m.producer(clipped, "Clip")
    if clip is None:
        return None
    lo = (
        m.scalar(clip.inputs[1])
        if len(clip.inputs) > 1 and clip.inputs[1]
        else clip.attrs.get("min")
    )
    hi = (
        m.scalar(clip.inputs[2])
        if len(clip.inputs) > 2 and clip.inputs[2]
        else clip.attrs.get("max")
    )
    if lo != 0.0 or hi != 6.0 or not m.private(clip.inputs[0]):
        return None
    add = m.producer(clip.inputs[0], "Add")
    if add is None or m.split_const(add, 3.0) != x:
        return None
    return [add, clip, scale]


def merge_pad_into_conv(graph: Graph) -> list[str]:
    """A zero constant Pad on spatial axes feeding a Conv (or an AveragePool that counts pad
    cells) becomes part of that op's own ``pads``: one pass over the data instead of two."""
    m = Matcher(graph)
    removed: set[int] = set()
    changed = []
    for pad in graph.nodes:
        if (
            pad.op_type != "Pad"
            or pad.domain != ""
            or pad.attrs.get("mode", "constant") != "constant"
        ):
            continue
        consumer = m.only_consumer(pad.outputs[0])
        if consumer is None or consumer.inputs[0] != pad.outputs[0]:
            continue
        if consumer.op_type == "AveragePool" and not consumer.attrs.get("count_include_pad", 0):
            continue
        if consumer.op_type not in ("Conv", "AveragePool") or consumer.attrs.get(
            "auto_pad", "NOTSET"
        ) not in ("NOTSET", "VALID"):
            continue
        amounts = _constant_pads(graph, pad)
        if amounts is None:
            continue
        rank = len(amounts) // 2
        begin, end = amounts[:rank], amounts[rank:]
        if begin[:2] != [0, 0] or end[:2] != [0, 0] or min(amounts) < 0:
            continue
        old = list(consumer.attrs.get("pads", [0] * (2 * (rank - 2))))
        n = rank - 2
        consumer.attrs["pads"] = [old[i] + begin[2 + i] for i in range(n)] + [
            old[n + i] + end[2 + i] for i in range(n)
        ]
        consumer.attrs["auto_pad"] = "NOTSET"
        consumer.inputs[0] = pad.inputs[0]
        removed.add(id(pad))
        changed.append(pad.label)
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    graph.invalidate()
    return changed


def _constant_pads(graph: Graph, pad: Node) -> list[int] | None:
    """Pad amounts when they are constant, the fill value is zero and no axes input is given."""
    if pad.opset < 11:
        amounts, value = (
            pad.attrs.get("pads", pad.attrs.get("paddings")),
            pad.attrs.get("value", 0.0),
        )
    else:
        if len(pad.inputs) > 3 and pad.inputs[3]:
            return None
        src = graph.values[pad.inputs[1]].const if len(pad.inputs) > 1 else None
        amounts = None if src is None else src.reshape(-1).tolist()
        fill = graph.values[pad.inputs[2]] if len(pad.inputs) > 2 and pad.inputs[2] else None
        if fill is not None and fill.const is None:
            return None
        value = 0.0 if fill is None or fill.const.size == 0 else float(fill.const.reshape(-1)[0])
    if amounts is None or value != 0.0:
        return None
    return [int(a) for a in amounts]


RULES = [
    ("merge_common_subexpressions", merge_common_subexpressions),
    ("drop_empty_concat_operands", drop_empty_concat_operands),
    *CAST_MOVE_RULES,  # before remove_noop_cast: it leaves the Cast a no-op
    ("remove_noop_cast", remove_noop_cast),
    ("merge_double_qdq", merge_double_qdq),
    ("float_carried_integers", float_carried_integers),
    ("fold_batchnorm_into_conv", fold_batchnorm_into_conv),
    ("merge_pad_into_conv", merge_pad_into_conv),
    ("fuse_gelu", fuse_gelu),
    ("fuse_gelu_tanh", fuse_gelu_tanh),
    ("fuse_hardswish", fuse_hardswish),
    *STRENGTH_RULES,  # after the fusions: they match Pow(x, 3), Div(x, sqrt 2), Div(x, 6)
    *MASK_RULES,  # after gather_as_reshape: a bool Gather of arange indices is then a Reshape
    *INDEX_RULES,
    *CONTRIB_MASK_RULES,
    ("fused_head_projection", fused_head_projection),  # after remove_identity_arith (bias 0)
    *BATCHED_NMS_RULES,  # after remove_noop_cast: it follows the boxes up to the offset Add
]

# Rules measured and kept, but not run unless asked for (benchmarks, tests): see opt_in.
OPT_IN = dict(HEAD_OPT_IN, **MASK_OPT_IN, **LOG_SOFTMAX_OPT_IN)

# Rules that create activations no ONNX tensor holds (one projection computing three), so
# calibration, which ranges ONNX tensors, has no range for them: the pipeline turns them off
# when it builds a file with integer activations, so that those projections stay integer.
RANGELESS_RULES = frozenset({"fused_head_projection"})


# Op types a rule's pattern must contain (None: any graph). A rule whose trigger is absent
# cannot match, so it is skipped without building its consumer/producer index.
TRIGGERS = {
    "remove_noop_cast": {"Cast"},
    "drop_empty_concat_operands": {"Concat"},
    **CAST_MOVE_TRIGGERS,
    "merge_double_qdq": {"DequantizeLinear"},
    "float_carried_integers": FLOAT_CARRIED_TRIGGERS,
    "fold_batchnorm_into_conv": {"BatchNormalization"},
    "merge_pad_into_conv": {"Pad"},
    "fuse_gelu": {"Erf"},
    "fuse_gelu_tanh": {"Tanh"},
    "fuse_hardswish": {"HardSigmoid", "Clip"},
    **STRENGTH_TRIGGERS,
    **MASK_TRIGGERS,
    **INDEX_TRIGGERS,
    **LOG_SOFTMAX_TRIGGERS,
    **CONTRIB_MASK_TRIGGERS,
    "fused_head_projection": {"Transpose"},
    **BATCHED_NMS_TRIGGERS,
}


@contextlib.contextmanager
def opt_in(*names: str):
    """Run the named :data:`OPT_IN` rules after :data:`RULES` during the conversions inside
    the block (benchmarks and tests measure them against the default; not thread-safe)."""
    unknown = sorted(set(names) - set(OPT_IN))
    if unknown:
        raise ValueError(f"unknown opt-in rule(s) {unknown}; known: {sorted(OPT_IN)}")
    saved = list(RULES)
    RULES.extend((n, OPT_IN[n]) for n in names)
    try:
        yield
    finally:
        RULES[:] = saved


def apply(graph: Graph, enabled: bool = True, disabled: frozenset[str] = frozenset()):
    if not enabled:
        return
    present = {n.op_type for n in graph.nodes}
    for name, rule in RULES:
        if name in disabled:
            continue
        trigger = TRIGGERS.get(name)
        if trigger is not None and not trigger & present:
            yield name, []
            continue
        changed = rule(graph)
        if changed:
            present = {n.op_type for n in graph.nodes}
        yield name, changed
