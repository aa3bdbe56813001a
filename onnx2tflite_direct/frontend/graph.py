"""From a model to the IR graph: load, check, order, infer and fold, then build the IR.

Why one orchestrator over small stages: the order matters (structure checks before anything
reads the graph further; the dynamic-shape signal before any heavy work; operand checks only
once inference and folding have given every value its shape) and is easiest to see in one
function, :func:`load_graph`. Each stage lives in its own module of this package.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from .. import errors
from ..dynamic_shapes import DynamicShapeModel, find_symbols
from ..errors import BadInputError
from ..ir import Graph, Node, Value
from . import checks
from .inference import apply_shape_pins, infer_and_fold, merge_declared
from .loading import load_model
from .passes import ProtoRules
from .protos import (
    attributes,
    constant_value,
    dims_of,
    dtype_of,
    initializer_array,
    node_reads,
    outer_scope_reads,
)


@dataclass
class FrontEndResult:
    graph: Graph
    # Returns the loaded model with the user's shape pins applied (unfolded), for validation.
    # A model given by path is re-read on demand instead of holding its weights twice.
    model_loader: Callable[[], onnx.ModelProto]
    # Every node the front end took out of the graph (its report row says "folded").
    folded_nodes: list[str]
    # (rule, count, removed node names) for the report's ``rewrites``: constant folding, then
    # the proto rules of ``passes.py``.
    rewrites: list[tuple[str, int, list[str]]] = field(default_factory=list)
    # What the front end tolerated but the user should know (declared shapes it overrode).
    warnings: list[str] = field(default_factory=list)


def _topo_sort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Kahn's algorithm; refuses cycles and inputs nothing produces.

    Most files are already in topological order: one pass proves it (every input is
    available or produced earlier, so there is no cycle and nothing dangles) and the file
    order is kept, which is also what the stable sort below would return."""
    node_inputs = [node_reads(n) for n in nodes]
    seen = set(available)
    for n, names in zip(nodes, node_inputs, strict=True):
        if not all(name in seen for name in names):
            break
        seen.update(n.output)
    else:
        return list(nodes)
    produced_by: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                produced_by[o] = i
    indeg = [0] * len(nodes)
    users: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        for name in set(node_inputs[i]):
            if name in available:
                continue
            if name not in produced_by:
                raise BadInputError(
                    errors.INVALID_MODEL,
                    f"node {n.name or n.op_type!r} reads {name!r}, which is neither a graph "
                    "input, an initializer nor produced by any node",
                )
            indeg[i] += 1
            users[produced_by[name]].append(i)
    ready = [i for i in range(len(nodes)) if indeg[i] == 0]
    order: list[int] = []
    while ready:
        i = ready.pop()
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        raise BadInputError(errors.INVALID_MODEL, "the graph contains a cycle")
    return _stable_topo(nodes, produced_by, available, node_inputs)


def _stable_topo(nodes, produced_by, available, node_inputs) -> list[onnx.NodeProto]:
    """Depth-first order that follows the file order: deterministic and usually identical.

    ``node_inputs[i]``: ``node_reads(nodes[i])``."""
    state = [0] * len(nodes)
    out: list[onnx.NodeProto] = []
    for root in range(len(nodes)):
        if state[root]:
            continue
        stack = [(root, iter(node_inputs[root]))]
        state[root] = 1
        while stack:
            i, it = stack[-1]
            for name in it:
                j = produced_by.get(name)
                if name in available or j is None or state[j]:
                    continue
                state[j] = 1
                stack.append((j, iter(node_inputs[j])))
                break
            else:
                stack.pop()
                out.append(nodes[i])
    return out


def _output_types(result: FrontEndResult) -> dict[str, tuple[int, tuple]]:
    """(ONNX elem type, dims) of each graph output: an If branch's computed shapes."""
    g = result.graph
    out = {}
    for name in g.outputs:
        v = g.values[name]
        if v.dtype is not None and v.shape is not None:
            out[name] = (helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype)), tuple(v.shape))
    return out


def _has_unknown_first_dim(model: onnx.ModelProto) -> bool:
    """Whether a batch-size pin reaches any input (it pins unknown first dims only)."""
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if vi.name not in inits and dims and not dims[0].HasField("dim_value"):
            return True
    return False


def load_graph(
    model: str | os.PathLike | onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    batch_size: int | None = None,
    find_dynamic: bool = False,
    probe_shapes: dict[str, tuple[int, ...]] | None = None,
    disabled_rules: frozenset[str] = frozenset(),
) -> FrontEndResult:
    """``find_dynamic``: raise :class:`DynamicShapeModel` (before any heavy work) when input
    dims are left unknown after the pins, so the caller can lower the model at sample sizes
    instead (``dynamic_shapes.py``). ``probe_shapes``: the inputs' shapes at another sample;
    shape arithmetic whose value differs there is kept for run time instead of folded.
    ``disabled_rules``: ids of proto rules (``passes.RULES``) not to run."""
    loaded = load_model(model)
    warnings: list[str] = []
    if batch_size is not None and not _has_unknown_first_dim(loaded):
        warnings.append(
            f"the batch-size pin ({batch_size}) has no effect: the model fixes every input's "
            "first dimension"
        )
    proto = apply_shape_pins(loaded, input_shapes, batch_size)
    checks.check_structure(proto)
    if find_dynamic:
        symbols, input_dims = find_symbols(loaded, set(input_shapes or ()), batch_size)
        if symbols:
            raise DynamicShapeModel(symbols, input_dims)
    g = proto.graph
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in proto.opset_import}

    # A proto we loaded ourselves is ours to empty: releasing each initializer's bytes once
    # copied into numpy keeps peak memory near one copy of the weights instead of two.
    owned = not isinstance(model, onnx.ModelProto)  # (a pinned copy still feeds validation)
    consts: dict[str, np.ndarray] = {}
    for t in g.initializer:
        try:
            consts[t.name] = initializer_array(t)
        except Exception as exc:
            raise BadInputError(errors.INVALID_MODEL, f"initializer {t.name!r}: {exc}") from None
        if owned and t.HasField("raw_data"):
            t.ClearField("raw_data")
    real_inputs = [i for i in g.input if i.name not in consts]
    checks.check_initialized_inputs(g.input, consts)
    checks.check_input_types(real_inputs)
    checks.check_output_types(g.output, g.node)
    nodes = []
    for n in g.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            consts[n.output[0]] = constant_value(n)
        else:
            nodes.append(n)
    available = set(consts) | {i.name for i in real_inputs}
    nodes = _topo_sort(nodes, available)

    rules = ProtoRules(disabled_rules)
    probe_infos: dict[str, onnx.ValueInfoProto] = {}
    nodes, infos, folded = infer_and_fold(
        proto,
        nodes,
        consts,
        real_inputs,
        opsets,
        rules,
        probe_shapes,
        warnings,
        infer_branch=lambda branch: _output_types(
            load_graph(branch, disabled_rules=disabled_rules)
        ),
        probe_out=probe_infos,
    )

    graph_outputs = [o.name for o in g.output]
    warnings += checks.declared_output_warnings(g.output, infos)
    for vi in g.output:  # the declaration fills what inference left unknown (checked compatible)
        infos[vi.name] = merge_declared(vi, infos.get(vi.name))
    values: dict[str, Value] = {}
    for name, arr in consts.items():
        values[name] = Value(name, arr.dtype, tuple(arr.shape), arr)
    for vi in real_inputs:
        values[vi.name] = Value(vi.name, dtype_of(vi.type.tensor_type.elem_type), dims_of(vi))
    for name, vi in infos.items():
        if name not in values:
            values[name] = Value(name, dtype_of(vi.type.tensor_type.elem_type), dims_of(vi))
    rules.run("pin_loop_scan_lengths", [], nodes, values, consts)
    ir_nodes = []
    for i, n in enumerate(nodes):
        domain = "" if n.domain == "ai.onnx" else n.domain
        for o in n.output:
            if o and o not in values:
                values[o] = Value(o, None, None)
        implicit = outer_scope_reads(n)
        ir_nodes.append(
            Node(
                name=n.name or f"{n.op_type}:{n.output[0] if n.output else i}",
                op_type=n.op_type,
                domain=domain,
                inputs=list(n.input) + implicit,
                outputs=list(n.output),
                attrs=attributes(n),
                opset=opsets.get(domain, 1),
                implicit_inputs=list(implicit),
            )
        )
    produced = {o for n in nodes for o in n.output} | set(consts) | {i.name for i in real_inputs}
    for o in graph_outputs:
        if o not in produced:
            raise BadInputError(errors.INVALID_MODEL, f"graph output {o!r} is never produced")
    checks.check_sizes(values)
    checks.check_element_preserving(nodes, values)
    checks.check_axis_attributes(nodes, values)
    origins = checks.input_dim_origins(real_inputs, input_shapes, batch_size, probe_shapes)
    checks.check_operand_shapes(nodes, values, origins)
    graph = Graph(
        nodes=ir_nodes,
        values=values,
        inputs=[i.name for i in real_inputs],
        outputs=graph_outputs,
        opsets=opsets,
        sample_pinned=probe_shapes is not None,
        varying_dims=_varying_dims(values, probe_infos, probe_shapes or {}),
    )
    if isinstance(model, onnx.ModelProto):
        loader = lambda: proto  # noqa: E731  (the caller holds it already)
    else:
        loader = lambda: apply_shape_pins(load_model(model), input_shapes, batch_size)  # noqa: E731
    removed = set(rules.changed["inline_constant_ifs"])  # reported under their own rule
    folding = [name for name in folded if name not in removed]
    rewrites = [("constant_folding", len(folding), folding), *rules.entries()]
    return FrontEndResult(graph, loader, folded, rewrites, warnings)


def _varying_dims(values: dict[str, Value], probe_infos, probe_shapes) -> dict:
    """Per value known at both the sample and the probe sizes (the graph inputs at
    ``probe_shapes``): which dims differ (an unknown dim counts as differing)."""
    varying = {}
    probes = {
        k: dims_of(vi) if vi.type.HasField("tensor_type") else None for k, vi in probe_infos.items()
    }
    probes.update({k: tuple(v) for k, v in probe_shapes.items() if k in values})
    for name, there in probes.items():
        here = values.get(name)
        if here is None or here.shape is None or there is None or len(there) != len(here.shape):
            continue
        varying[name] = tuple(
            a is None or b is None or a != b for a, b in zip(here.shape, there, strict=True)
        )
    return varying
