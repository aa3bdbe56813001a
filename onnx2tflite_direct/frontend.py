"""ONNX front end: safe loading, shape pins, shape inference, constant folding -> graph IR.

Opset policy: the default domain is supported directly for opsets 7..``onnx.defs`` newest; each
lowering declares the opset range whose semantics it implements (older opsets are not
rewritten, so what runs is what the model says). Models below opset 7 are refused.

Large initializers are kept out of ONNX shape inference (it serializes the whole model): the
inference runs on a data-free *skeleton* in which big constants are declared inputs, and constant
folding alternates with inference until nothing changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from . import errors
from .errors import BadInputError, UnsupportedError
from .folding import fold_node, is_foldable
from .ir import Graph, Node, Value

MIN_DEFAULT_OPSET = 7
# Constants up to this many elements stay inside the skeleton (shape inference reads them).
SMALL_CONST_ELEMENTS = 1024
MAX_FOLD_ROUNDS = 8


@dataclass
class FrontEndResult:
    graph: Graph
    # Returns the loaded model with the user's shape pins applied (unfolded), for validation.
    # A model given by path is re-read on demand instead of holding its weights twice.
    model_loader: Callable[[], onnx.ModelProto]
    folded_nodes: list[str]


def _check_external_data(model: onnx.ModelProto, base_dir: Path) -> bool:
    """Refuse external data that points outside the model folder or at missing bytes."""
    base = base_dir.resolve()
    found = False
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        found = True
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location or os.path.isabs(location):
            raise BadInputError(
                errors.UNSAFE_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data location {location!r} must be a "
                "relative path inside the model folder",
            )
        target = (base / location).resolve()
        if base not in target.parents:
            raise BadInputError(
                errors.UNSAFE_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data {location!r} resolves outside the "
                f"model folder {str(base)!r}; refused and not read",
            )
        if not target.is_file():
            raise BadInputError(
                errors.MISSING_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data file {location!r} does not exist",
            )
        offset = int(info.get("offset", 0) or 0)
        length = info.get("length")
        size = target.stat().st_size
        if offset < 0 or (length is not None and offset + int(length) > size) or offset > size:
            raise BadInputError(
                errors.MISSING_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data range exceeds file {location!r}",
            )
    return found


def _all_tensors(model: onnx.ModelProto):
    yield from model.graph.initializer
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t


def load_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """Load from path or take a ModelProto; never modifies the caller's file or proto."""
    if isinstance(model, onnx.ModelProto):
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in _all_tensors(model)):
            raise BadInputError(
                errors.MISSING_EXTERNAL_DATA,
                "ModelProto references external data; pass the model path instead so the "
                "data can be located safely",
            )
        return model
    path = Path(model)
    if not path.is_file():
        raise BadInputError(errors.FILE_NOT_FOUND, f"model file {str(path)!r} not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for garbage input
        raise BadInputError(
            errors.INVALID_MODEL, f"{str(path)!r} is not a readable ONNX model: {exc}"
        ) from None
    if _check_external_data(proto, path.parent):
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
        except Exception as exc:
            raise BadInputError(errors.MISSING_EXTERNAL_DATA, str(exc)) from None
    return proto


def _dims(value_info) -> tuple[int | None, ...] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)


def _dtype(elem_type: int) -> np.dtype | None:
    if elem_type == 0:
        return None
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None


def apply_shape_pins(
    model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]] | None, batch_size: int | None
) -> onnx.ModelProto:
    """Return a copy of ``model`` whose graph inputs carry the user's pinned dims."""
    if not input_shapes and batch_size is None:
        return model
    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    init_names = {t.name for t in pinned.graph.initializer}
    real_inputs = {i.name: i for i in pinned.graph.input if i.name not in init_names}
    for name, dims in (input_shapes or {}).items():
        if name not in real_inputs:
            raise BadInputError(
                errors.INVALID_OPTION,
                f"--input-shape names {name!r}, which is not a model input "
                f"(inputs: {', '.join(real_inputs) or 'none'})",
            )
        shape = real_inputs[name].type.tensor_type.shape
        if len(shape.dim) != len(dims):
            raise BadInputError(
                errors.INVALID_OPTION,
                f"--input-shape {name}: rank {len(dims)} given, the model input has rank "
                f"{len(shape.dim)}",
            )
        for d, v in zip(shape.dim, dims):
            if int(v) < 0:
                raise BadInputError(errors.INVALID_OPTION, f"--input-shape {name}: dim {v} < 0")
            d.Clear()
            d.dim_value = int(v)
    if batch_size is not None:
        if batch_size <= 0:
            raise BadInputError(errors.INVALID_OPTION, f"--batch-size {batch_size} must be > 0")
        for vi in real_inputs.values():
            dims = vi.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                dims[0].Clear()
                dims[0].dim_value = int(batch_size)
    return pinned


def _check_structure(model: onnx.ModelProto) -> None:
    g = model.graph
    if not g.output:
        raise BadInputError(errors.INVALID_MODEL, "the graph has no outputs")
    default = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not default and any(n.domain in ("", "ai.onnx") for n in g.node):
        raise BadInputError(errors.INVALID_MODEL, "the model declares no default-domain opset")
    if default and default[0] < MIN_DEFAULT_OPSET:
        raise UnsupportedError(
            errors.UNSUPPORTED_OPSET,
            f"default-domain opset {default[0]} is older than {MIN_DEFAULT_OPSET}; upgrade the "
            "model with onnx.version_converter first",
        )
    if default and default[0] > onnx.defs.onnx_opset_version():
        raise UnsupportedError(
            errors.UNSUPPORTED_OPSET,
            f"default-domain opset {default[0]} is newer than this onnx "
            f"({onnx.defs.onnx_opset_version()})",
        )
    seen: set[str] = set()
    for n in g.node:
        for o in n.output:
            if o and o in seen:
                raise BadInputError(errors.INVALID_MODEL, f"tensor {o!r} is produced twice")
            seen.add(o)


def _topo_sort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Kahn's algorithm; refuses cycles and inputs nothing produces."""
    produced_by: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                produced_by[o] = i
    indeg = [0] * len(nodes)
    users: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        for name in set(_node_inputs(n)):
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
    return _stable_topo(nodes, produced_by, available)


def _stable_topo(nodes, produced_by, available) -> list[onnx.NodeProto]:
    """Depth-first order that follows the file order: deterministic and usually identical."""
    state = [0] * len(nodes)
    out: list[onnx.NodeProto] = []
    for root in range(len(nodes)):
        if state[root]:
            continue
        stack = [(root, iter(_node_inputs(nodes[root])))]
        state[root] = 1
        while stack:
            i, it = stack[-1]
            for name in it:
                j = produced_by.get(name)
                if name in available or j is None or state[j]:
                    continue
                state[j] = 1
                stack.append((j, iter(_node_inputs(nodes[j]))))
                break
            else:
                stack.pop()
                out.append(nodes[i])
    return out


def _node_inputs(node: onnx.NodeProto) -> list[str]:
    """Inputs of a node including outer-scope names read by its subgraphs."""
    names = [i for i in node.input if i]
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for sub in graphs:
            inner = {i.name for i in sub.input} | {t.name for t in sub.initializer}
            for sn in sub.node:
                names.extend(i for i in _node_inputs(sn) if i not in inner)
                inner.update(sn.output)
    return names


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = numpy_helper.to_array(a.t)
        elif a.type == onnx.AttributeProto.GRAPH:
            out[a.name] = a.g
        else:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [x.decode("utf-8", "replace") for x in v]
            out[a.name] = v
    return out


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray:
    attrs = _attrs(node)
    if "value" in attrs:
        return attrs["value"]
    for key, dtype in (
        ("value_float", np.float32),
        ("value_int", np.int64),
        ("value_floats", np.float32),
        ("value_ints", np.int64),
    ):
        if key in attrs:
            return np.array(attrs[key], dtype=dtype)
    raise UnsupportedError(
        errors.UNSUPPORTED_ATTRIBUTE_VALUE,
        f"Constant with attributes {sorted(attrs)} (sparse or string constants) is not supported",
        node.name,
    )


def _value_info(name: str, arr: np.ndarray) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape)
    )


def _skeleton(model, nodes, consts, real_inputs) -> onnx.ModelProto:
    """A data-light copy for shape inference: big constants become typed inputs."""
    inputs = list(real_inputs)
    inits = []
    for name, arr in consts.items():
        if arr.size <= SMALL_CONST_ELEMENTS and arr.dtype != object:
            inits.append(numpy_helper.from_array(arr, name))
        else:
            inputs.append(_value_info(name, arr))
    known = {v.name for v in inputs} | {t.name for t in inits}
    value_info = [v for v in model.graph.value_info if v.name not in known]
    graph = helper.make_graph(
        nodes, model.graph.name or "g", inputs, list(model.graph.output), inits, value_info=value_info
    )
    sk = helper.make_model(graph, opset_imports=list(model.opset_import))
    sk.ir_version = max(model.ir_version, 4)
    return sk


def _infer(skeleton: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    try:
        inferred = shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise BadInputError(errors.SHAPE_INFERENCE_FAILED, f"ONNX shape inference failed: {exc}")
    g = inferred.graph
    return {vi.name: vi for vi in list(g.input) + list(g.value_info) + list(g.output)}


def load_graph(
    model: str | os.PathLike | onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    batch_size: int | None = None,
) -> FrontEndResult:
    proto = apply_shape_pins(load_model(model), input_shapes, batch_size)
    _check_structure(proto)
    g = proto.graph
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in proto.opset_import}

    consts: dict[str, np.ndarray] = {}
    for t in g.initializer:
        try:
            consts[t.name] = numpy_helper.to_array(t)
        except Exception as exc:
            raise BadInputError(errors.INVALID_MODEL, f"initializer {t.name!r}: {exc}") from None
    real_inputs = [i for i in g.input if i.name not in consts]
    if len({i.name for i in g.input}) != len(g.input):
        raise BadInputError(errors.INVALID_MODEL, "duplicate graph input names")
    nodes = []
    for n in g.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            consts[n.output[0]] = _constant_node_value(n)
        else:
            nodes.append(n)
    available = set(consts) | {i.name for i in real_inputs}
    nodes = _topo_sort(nodes, available)

    folded: list[str] = []
    infos: dict[str, onnx.ValueInfoProto] = {}
    for _ in range(MAX_FOLD_ROUNDS):
        infos = _infer(_skeleton(proto, nodes, consts, real_inputs))
        remaining = []
        changed = False
        for n in nodes:
            out = None
            if is_foldable(n, consts, infos):
                out = fold_node(n, consts, infos, opsets.get(n.domain, 0))
            if out is None:
                remaining.append(n)
                continue
            consts.update(out)
            folded.append(n.name or n.op_type)
            changed = True
        nodes = remaining
        if not changed:
            break

    graph_outputs = [o.name for o in g.output]
    values: dict[str, Value] = {}
    for name, arr in consts.items():
        values[name] = Value(name, arr.dtype, tuple(arr.shape), arr)
    for vi in real_inputs:
        values[vi.name] = Value(vi.name, _dtype(vi.type.tensor_type.elem_type), _dims(vi))
    for name, vi in infos.items():
        if name not in values:
            values[name] = Value(name, _dtype(vi.type.tensor_type.elem_type), _dims(vi))
    ir_nodes = []
    for i, n in enumerate(nodes):
        domain = "" if n.domain == "ai.onnx" else n.domain
        for o in n.output:
            if o and o not in values:
                values[o] = Value(o, None, None)
        ir_nodes.append(
            Node(
                name=n.name or f"{n.op_type}_{i}",
                op_type=n.op_type,
                domain=domain,
                inputs=list(n.input),
                outputs=list(n.output),
                attrs=_attrs(n),
                opset=opsets.get(domain, 1),
            )
        )
    for o in graph_outputs:
        if o not in values:
            raise BadInputError(errors.INVALID_MODEL, f"graph output {o!r} is never produced")
    graph = Graph(
        nodes=ir_nodes,
        values=values,
        inputs=[i.name for i in real_inputs],
        outputs=graph_outputs,
        opsets=opsets,
    )
    if isinstance(model, onnx.ModelProto):
        loader = lambda: proto  # noqa: E731  (the caller holds it already)
    else:
        loader = lambda: apply_shape_pins(load_model(model), input_shapes, batch_size)  # noqa: E731
    return FrontEndResult(graph=graph, model_loader=loader, folded_nodes=folded)
