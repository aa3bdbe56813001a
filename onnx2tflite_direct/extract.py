"""Sub-graph extraction: convert only the part of a model between named tensors.

The cut is taken on the ONNX model before anything else: new inputs get dtype and shape from
ONNX shape inference, and every tensor the kept nodes need must come from the named inputs,
initializers or kept nodes. Anything else (an unknown name, an initializer named as an input:
the converter keeps initializers constant, so the file would lack it; an output that does not
depend on the inputs, a cut that leaves a needed tensor outside) is a clear error naming the option
(``--inputs``/``--outputs`` on the command line, ``inputs``/``outputs`` in ``convert()``).
"""

from __future__ import annotations

import onnx
from onnx import helper

from . import contrib_schemas, errors
from .errors import BadInputError, OptionError


def _value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    try:
        inferred = contrib_schemas.infer_shapes(model, strict_mode=False)
    except Exception as exc:
        raise BadInputError(errors.SHAPE_INFERENCE_FAILED, f"cannot type the cut: {exc}") from None
    g = inferred.graph
    return {v.name: v for v in list(g.input) + list(g.value_info) + list(g.output)}


def extract_subgraph(
    model: onnx.ModelProto, inputs: list[str] | None, outputs: list[str] | None
) -> onnx.ModelProto:
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    graph_inputs = [i.name for i in g.input if i.name not in inits]
    producers = {o: n for n in g.node for o in n.output if o}
    known = set(producers) | set(inits) | set(graph_inputs)
    explicit_inputs = bool(inputs)
    inputs = list(inputs) if inputs else graph_inputs
    outputs = list(outputs) if outputs else [o.name for o in g.output]
    for option, names in (("inputs", inputs), ("outputs", outputs)):
        for name in names:
            if name not in known:
                raise OptionError(
                    f"{{0}} (sub-graph cut): the model has no tensor named {name!r}", (option,)
                )
    for name in inputs if explicit_inputs else ():
        if name in inits:  # (kept constant, the file would silently lack the input named)
            raise OptionError(
                f"{{0}} (sub-graph cut): {name!r} is an initializer, a constant of the model "
                "(also where the graph lists it as an input with that default): it cannot be "
                "an input of the file; leave it out of {0}",
                ("inputs",),
            )
    boundary = set(inputs)
    keep: list[onnx.NodeProto] = []
    seen_nodes: set[int] = set()
    reached_inputs: set[str] = set()
    stack = list(outputs)
    visited: set[str] = set()
    while stack:
        name = stack.pop()
        if name in visited:
            continue
        visited.add(name)
        if name in boundary:
            reached_inputs.add(name)
            continue
        if name in inits:
            continue
        node = producers.get(name)
        if node is None:
            raise OptionError(
                f"{{0}} {','.join(inputs)}: the sub-graph cut is not closed: the outputs need "
                f"graph input {name!r}; name it in {{0}} too",
                ("inputs",),
            )
        if id(node) not in seen_nodes:
            seen_nodes.add(id(node))
            keep.append(node)
            stack.extend(i for i in node.input if i)
    unused = [i for i in inputs if i not in reached_inputs and i not in outputs]
    if unused and not explicit_inputs:
        inputs = [i for i in inputs if i not in unused]  # graph inputs the cut does not need
    elif unused:
        raise OptionError(
            f"{{0}} (sub-graph cut): the outputs {outputs} do not depend on inputs {unused}; "
            "leave them out of {0}",
            ("inputs",),
        )
    infos = _value_infos(model)
    for name in inputs + outputs:
        vi = infos.get(name)
        if vi is None or not vi.type.tensor_type.elem_type:
            option = "inputs" if name in inputs else "outputs"
            raise OptionError(
                f"{{0}} (sub-graph cut): the dtype of {name!r} cannot be inferred", (option,)
            )
    order = {id(n): i for i, n in enumerate(g.node)}
    keep.sort(key=lambda n: order[id(n)])
    needed = {i for n in keep for i in n.input}
    new_graph = helper.make_graph(
        keep,
        g.name or "extracted",
        [infos[i] for i in inputs],
        [infos[o] for o in outputs],
        [t for name, t in inits.items() if name in needed],
    )
    out = helper.make_model(new_graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out
