"""If output shapes that ONNX inference leaves unknown, from the branches themselves.

ONNX infers an If output as the union of what its branches declare, and exporters declare
symbolic dims there (``batch``), or the branches compute their shapes through ``Shape`` /
``Gather`` / ``Reshape`` arithmetic that onnx's inference cannot fold. With the outer values'
shapes known (the user's pins), each branch is a model of its own: the front end infers and
folds it like any model (``infer_branch``, handed down by ``graph.load_graph`` so this module
needs no import of it), and when both branches compute the same static shape for an output,
that shape is a fact about the If output whatever the condition: it becomes an inference hint.

A branch whose shapes contradict each other at these input shapes cannot produce a value
(onnxruntime fails when it takes it; so does the lowered IF): the other branch's shapes are
then the If's. Branches that disagree are left alone (the If output keeps its unknown dims);
the IF lowering decides what LiteRT can run then.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import helper, numpy_helper

from .. import errors
from ..errors import BadInputError, UnsupportedError
from .protos import dims_of, outer_scope_reads

# (branch model) -> {output name: (elem_type, dims)} of the branch's graph outputs
InferBranch = Callable[[onnx.ModelProto], dict[str, tuple[int, tuple]]]

BRANCHES = ("then_branch", "else_branch")
# Front-end errors that mean "these shapes contradict each other": onnxruntime fails when it
# takes that branch (the IF lowering makes the branch fail at run time too).
CANNOT_RUN = (errors.SHAPE_INFERENCE_FAILED, errors.INVALID_MODEL)


def branch_model(
    branch: onnx.GraphProto, outer: list[str], consts, infos, opset_imports
) -> onnx.ModelProto | None:
    """``branch`` as a standalone model reading ``outer`` (constants become initializers,
    run-time values inputs); None when an outer value has no static shape."""
    inputs, inits = [], list(branch.initializer)
    for name in outer:
        if name in consts:
            inits.append(numpy_helper.from_array(consts[name], name))
            continue
        vi = infos.get(name)
        dims = dims_of(vi) if vi is not None else None
        if dims is None or any(d is None for d in dims):
            return None
        inputs.append(vi)
    outputs = []
    for vi in branch.output:  # computed shapes only: a declared ``batch`` would mask them
        out = onnx.ValueInfoProto()
        out.CopyFrom(vi)
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
        outputs.append(out)
    graph = helper.make_graph(
        list(branch.node),
        branch.name or "branch",
        inputs,
        outputs,
        inits,
        value_info=list(branch.value_info),
    )
    return helper.make_model(graph, opset_imports=list(opset_imports))


def if_branch_hints(
    nodes, consts, infos, hints, opset_imports, infer_branch: InferBranch | None
) -> dict[str, onnx.ValueInfoProto]:
    """Value infos for If outputs whose shape every branch computes alike (see the module
    docstring); returns only new facts."""
    if infer_branch is None:
        return {}
    out: dict[str, onnx.ValueInfoProto] = {}
    for n in nodes:
        if n.op_type != "If" or n.domain not in ("", "ai.onnx"):
            continue
        names = [o for o in n.output if o and o not in hints and not _static(infos.get(o))]
        if not names:
            continue
        branches = {a.name: a.g for a in n.attribute if a.name in BRANCHES}
        if len(branches) != 2:
            continue
        outer = outer_scope_reads(n)
        shapes, failed = [], 0
        for key in BRANCHES:
            model = branch_model(branches[key], outer, consts, infos, opset_imports)
            if model is None:
                break
            try:
                result = infer_branch(model)
            except BadInputError as exc:  # a branch that cannot run at these shapes
                if exc.reason_code not in CANNOT_RUN:
                    break
                failed += 1
                continue
            except UnsupportedError:
                break
            shapes.append([result.get(vi.name) for vi in branches[key].output])
        if len(shapes) + failed != 2 or not shapes:
            continue
        if failed:  # only the other branch can produce a value: its shapes are the If's
            shapes.append(shapes[0])
        for k, name in enumerate(n.output):
            if name not in names or k >= len(shapes[0]) or k >= len(shapes[1]):
                continue
            a, b = shapes[0][k], shapes[1][k]
            if a is None or a != b or any(not isinstance(d, int) for d in a[1]):
                continue
            out[name] = helper.make_tensor_value_info(name, a[0], list(a[1]))
    return out


def _static(vi) -> bool:
    dims = dims_of(vi) if vi is not None else None
    return dims is not None and all(isinstance(d, int) for d in dims)
