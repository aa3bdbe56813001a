"""Selective precision: ``--quant-override PATTERN=PRECISION``, parsed, matched and reported.

Why a module of its own: the override is one user request read by every variant (the integer
plan decides an operator's activation width from it, the weight-only variants keep a weight
float from it), and the report must say for every node which precision it got and why. The
parsing (a user error is one line naming the flag), the matching (which ONNX nodes a pattern
names) and the per-node table live here; the variants only ask :meth:`Resolved.get`.

Matching: PATTERN is a Python regular expression that must match the whole of a node's name,
one of its output tensor names, or its op type (``Conv`` names every Conv; ``/layer1/.*`` a
name prefix). When several overrides match a node, the last one given wins. A node created by a
front-end fusion (``<last node>/LayerNormalization``) is matched by its own label, the op type
after the last ``/`` and its output tensors. A node without operators of its own (a Relu fused
into its Conv) passes its override to the node computing it, unless that node is named itself;
one folded away entirely (a BatchNormalization in its Conv's weights) is a warning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# What a node may be asked to run in. int4-weights: 4-bit weights (the int4 weight variant).
PRECISIONS = ("float", "int16x8", "int8", "int4-weights")

# --quantize choice -> the precisions its files can give a node (others are reported as not
# applicable in that file). Weight-only variants (fp16, dynamic, int4) keep float activations:
# they can only keep a node's weights float (``float``) or give them one of their formats.
HONOURED_BY = {
    "fp16": ("float",),
    "dynamic": ("float", "int8"),
    "int4": ("float", "int8", "int4-weights"),
    "int8": ("float", "int8", "int16x8"),
    "int16x8": ("float", "int8", "int16x8"),
    "auto": ("float", "int8", "int16x8"),  # fixed; the search assigns the other nodes
}

# Override precision -> the per-node precisions (report names) that honour it: the weight-only
# files name what their weights became.
SATISFIED_BY = {
    "float": ("float",),
    "int8": ("int8", "int8-weights"),
    "int16x8": ("int16x8",),
    "int4-weights": ("int4-weights",),
}

# Why a node did not get what it asked for, by kind of variant.
NOT_APPLICABLE = {
    "fp16": "the float16 file has float16 weights and float kernels only",
    "dynamic": "the dynamic-range file has int8 hybrid weights and float activations only",
    "int4": "the int4 weight file has int4 or int8 hybrid weights and float activations only",
    "int8": "the integer files have int8 weights",
    "int16x8": "the integer files have int8 weights",
    "auto": "the integer files have int8 weights",
}


@dataclass(frozen=True)
class Override:
    """One ``PATTERN=PRECISION``, in the order given (its ``index``)."""

    pattern: str
    precision: str
    index: int
    regex: re.Pattern = field(compare=False, repr=False)

    @property
    def spec(self) -> str:
        return f"{self.pattern}={self.precision}"

    def matches(self, names) -> bool:
        return any(n and self.regex.fullmatch(n) for n in names)


def normalize(value) -> tuple[str, ...]:
    """``PATTERN=PRECISION`` strings from what ``convert`` accepts: one string, a list of
    them, or a dict {pattern: precision} (in its order)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Mapping):
        return tuple(f"{k}={v}" for k, v in value.items())
    return tuple(str(v) if not isinstance(v, str) else v for v in value)


def parse(value) -> tuple[Override, ...]:
    """The overrides, checked; a bad one raises ValueError with one line saying what is wrong
    (the caller names the option)."""
    out = []
    for k, spec in enumerate(normalize(value)):
        if not isinstance(spec, str):
            raise ValueError(f"expected PATTERN=PRECISION strings, got {spec!r}")
        pattern, sep, precision = spec.rpartition("=")
        precision = precision.strip()
        if not sep or not pattern:
            raise ValueError(
                f"{spec!r}: expected PATTERN=PRECISION (PRECISION one of {', '.join(PRECISIONS)})"
            )
        if precision not in PRECISIONS:
            raise ValueError(
                f"{spec!r}: unknown precision {precision!r}; one of {', '.join(PRECISIONS)}"
            )
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{spec!r}: PATTERN is not a regular expression ({exc})") from None
        out.append(Override(pattern, precision, k, regex))
    return tuple(out)


def unhonoured(overrides, choices) -> list[Override]:
    """Overrides whose precision none of the asked variants (``choices``) can give."""
    return [o for o in overrides if not any(o.precision in HONOURED_BY.get(c, ()) for c in choices)]


@dataclass
class NodeInfo:
    """What a pattern is matched against: an ONNX node's label, op type and outputs."""

    label: str
    op_type: str
    outputs: tuple[str, ...] = ()
    # No operator of its own: the label of the node whose operator computes its output (a
    # Relu fused into the Conv before it), "" when it was folded away entirely.
    inside: str | None = None

    def names(self) -> tuple[str, ...]:
        return (self.label, self.op_type, *self.outputs)


def node_catalog(onnx_model, model_ir, tensor_map: Mapping[str, dict]) -> dict[str, NodeInfo]:
    """Label -> NodeInfo for every ONNX node with operators in the lowered model
    (``tfl.Operator.onnx_node``): the ONNX node itself, or a node a fusion created; and for the
    ONNX nodes without operators of their own, where their output is computed (``inside``)."""
    labels = {op.onnx_node for sub in model_ir.subgraphs for op in sub.operators}
    labels.discard(None)
    writer = {t.name: op.onnx_node for sub in model_ir.subgraphs for op in sub.operators
              for t in op.outputs}  # fmt: skip
    catalog: dict[str, NodeInfo] = {}
    if onnx_model is not None:
        for node in onnx_model.graph.node:
            label = node.name or f"{node.op_type}:{node.output[0] if node.output else '?'}"
            info = NodeInfo(label, node.op_type, tuple(node.output))
            if label not in labels:
                held = [tensor_map.get(o, {}).get("tensor") for o in node.output]
                info.inside = next((writer[t] for t in held if t in writer), None) or ""
            catalog[label] = info
    missing = labels - set(catalog)
    if missing:  # fused nodes: op type after the last '/', outputs through the tensor map
        held_by = {entry["tensor"]: name for name, entry in tensor_map.items()}
        outputs: dict[str, list[str]] = {}
        for sub in model_ir.subgraphs:
            for op in sub.operators:
                if op.onnx_node in missing:
                    for t in op.outputs:
                        if t.name in held_by:
                            outputs.setdefault(op.onnx_node, []).append(held_by[t.name])
        for label in missing:
            op_type = label.rsplit("/", 1)[-1].partition(":")[0]
            catalog[label] = NodeInfo(label, op_type, tuple(outputs.get(label, ())))
    return catalog


@dataclass
class Resolved:
    """The overrides matched against one model: label -> the override that applies."""

    overrides: tuple[Override, ...] = ()
    by_label: dict[str, Override] = field(default_factory=dict)
    matched: dict[int, int] = field(default_factory=dict)  # Override.index -> nodes matched
    # Override.index -> ONNX nodes it names that have no operator of their own, with the
    # node computing their output ("" when folded away): said in the warning.
    absent: dict[int, list[tuple[str, str]]] = field(default_factory=dict)

    def get(self, label: str | None) -> Override | None:
        return self.by_label.get(label) if label is not None else None

    def labels(self, precision: str) -> frozenset[str]:
        return frozenset(k for k, o in self.by_label.items() if o.precision == precision)

    def __bool__(self) -> bool:
        return bool(self.overrides)

    def unmatched(self) -> list[Override]:
        return [o for o in self.overrides if not self.matched.get(o.index)]


def resolve(overrides, catalog: Mapping[str, NodeInfo]) -> Resolved:
    """Each node's override: the last one whose pattern matches it. A node computed inside
    another's operator (a Relu fused into its Conv) passes its override to that node, unless
    the host is named itself: its computation runs at the host's precision. A node folded
    away entirely has nothing to apply it to (the warning names it)."""
    out = Resolved(tuple(overrides))
    via: dict[str, Override] = {}
    for label, info in catalog.items():
        names = info.names()
        for o in overrides:
            if not o.matches(names):
                continue
            out.matched[o.index] = out.matched.get(o.index, 0) + (1 if info.inside else 0)
            if info.inside is not None:
                out.absent.setdefault(o.index, []).append((label, info.inside))
                if info.inside:
                    via[info.inside] = o  # later ones win
                continue
            out.by_label[label] = o  # later ones win
            out.matched[o.index] += 1
    for host, o in via.items():
        out.by_label.setdefault(host, o)
    return out


def unmatched_message(resolved: Resolved, o: Override) -> str:
    """Why ``o`` changes nothing: no such node, or only nodes folded away."""
    absent = resolved.absent.get(o.index)
    if not absent:
        return "matches no node of the model"
    if any(inside for _, inside in absent):
        return "applies through the nodes computing the nodes it names: " + _via(absent)
    return "matches only nodes without operators of their own: " + _via(absent)


def _via(absent: list[tuple[str, str]]) -> str:
    parts = [
        f"{label} (computed inside {inside})" if inside else f"{label} (folded away)"
        for label, inside in absent[:5]
    ]
    return ", ".join(parts) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")


# -- the report's per-node table --------------------------------------------------------------


def node_table(rows, resolved: Resolved, choice: str, heuristic_reasons=()) -> list[dict]:
    """One entry per ONNX node from per-operator rows ``{"node", "op", "precision",
    "reason"}``: the node's precision (``mixed`` when its operators differ) and why:
    ``default`` (the variant's own rule, ``detail`` saying why an operator stays float when a
    heuristic of the default rule keeps it there), ``override`` (the pattern given), or
    ``forced`` (a kernel constraint: ``detail`` names it). An override this variant
    (``choice``) cannot honour is named with ``not_applicable``; the node keeps the default."""
    by_node: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("node"):
            by_node.setdefault(row["node"], []).append(row)
    for label, ops in by_node.items():  # copies at their input's width do not make it mixed
        own = [r for r in ops if not r.get("follows")]
        by_node[label] = own or ops
    table = []
    for label, ops in by_node.items():
        precisions = sorted({r["precision"] for r in ops})
        precision = precisions[0] if len(precisions) == 1 else "mixed"
        o = resolved.get(label)
        entry = {"node": label, "precision": precision}
        if precision == "mixed":
            entry["ops"] = [f"{r['op']}:{r['precision']}" for r in ops]
        reasons = sorted(
            {r["reason"] for r in ops if r.get("reason") and not r["reason"].startswith("override")}
        )
        if o is not None and o.precision not in HONOURED_BY.get(choice, ()):
            entry["override"] = o.spec
            entry["not_applicable"] = NOT_APPLICABLE.get(choice, "not available in this file")
            o = None
        if o is not None:
            entry["override"] = o.spec
            honoured = all(r["precision"] in SATISFIED_BY[o.precision] for r in ops)
            entry["why"] = "override" if honoured else "forced"
        else:
            kernel = [r for r in reasons if not _is_heuristic(r, heuristic_reasons)]
            entry["why"] = "forced" if kernel else "default"
        if reasons:
            entry["detail"] = "; ".join(reasons)
        table.append(entry)
    return table


def _is_heuristic(reason: str, heuristic_reasons) -> bool:
    return any(reason.startswith(h) for h in heuristic_reasons)


def override_summary(resolved: Resolved, choice: str) -> list[dict]:
    """Per override: how many nodes it matched, and whether this variant can honour it."""
    out = []
    for o in resolved.overrides:
        entry = {"override": o.spec, "matched_nodes": resolved.matched.get(o.index, 0)}
        if not entry["matched_nodes"]:
            entry["warning"] = unmatched_message(resolved, o)
        elif any(inside for _, inside in resolved.absent.get(o.index, ())):
            entry["via"] = unmatched_message(resolved, o)
        elif o.precision not in HONOURED_BY.get(choice, ()):
            entry["not_applicable"] = NOT_APPLICABLE.get(choice, "not available in this file")
        out.append(entry)
    return out
