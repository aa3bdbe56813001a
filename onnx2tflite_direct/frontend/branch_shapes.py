"""If and Loop output shapes that ONNX inference leaves unknown, from the bodies themselves.

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
    branch: onnx.GraphProto, outer: list[str], consts, infos, opset_imports, formal=()
) -> onnx.ModelProto | None:
    """``branch`` as a standalone model reading ``outer`` (constants become initializers,
    run-time values inputs) after its ``formal`` inputs (value infos: a Loop body's);
    None when an outer value has no static shape."""
    inputs, inits = list(formal), list(branch.initializer)
    taken = {vi.name for vi in formal}
    for name in outer:
        if name in taken:
            continue  # shadowed by a formal input
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


def loop_carried_hints(
    nodes, consts, infos, hints, opset_imports, infer_branch: InferBranch | None
) -> dict[str, onnx.ValueInfoProto]:
    """Shapes of Loop-carried outputs that ONNX inference leaves unknown, by induction: the
    body inferred with the carried values at their initial shapes gives them back with the
    same shapes, so every iteration does, and so do the Loop's final values (whatever the
    trip count, zero included: the initial values are returned then)."""
    if infer_branch is None:
        return {}
    out: dict[str, onnx.ValueInfoProto] = {}
    for n in nodes:
        if n.op_type != "Loop" or n.domain not in ("", "ai.onnx") or len(n.input) < 2:
            continue
        carried = list(n.input[2:])
        names = [o for o in n.output[: len(carried)] if o and o not in hints]
        if not names or all(_static(infos.get(o)) for o in names):
            continue
        body = next((a.g for a in n.attribute if a.name == "body"), None)
        if body is None or len(body.input) != 2 + len(carried):
            continue
        initial = [_value_info(c, consts, infos) for c in carried]
        if any(vi is None or not _static(vi) for vi in initial):
            continue
        formal = [
            helper.make_tensor_value_info(body.input[0].name, onnx.TensorProto.INT64, []),
            helper.make_tensor_value_info(body.input[1].name, onnx.TensorProto.BOOL, []),
        ]
        formal += [_renamed(vi, b.name) for vi, b in zip(initial, body.input[2:], strict=True)]
        model = branch_model(body, outer_scope_reads(n), consts, infos, opset_imports, formal)
        if model is None:
            continue
        try:
            result = infer_branch(model)
        except (BadInputError, UnsupportedError):
            continue
        for k, name in enumerate(n.output[: len(carried)]):
            if name not in names or 1 + k >= len(body.output):
                continue
            got = result.get(body.output[1 + k].name)
            want = (initial[k].type.tensor_type.elem_type, dims_of(initial[k]))
            if got is not None and (got[0], tuple(got[1])) == (want[0], tuple(want[1])):
                out[name] = helper.make_tensor_value_info(name, want[0], list(want[1]))
    return out


def control_flow_hints(
    nodes, consts, infos, hints, opset_imports, infer_branch: InferBranch | None
) -> dict[str, onnx.ValueInfoProto]:
    """The front-end rule ``control_flow_shapes``: If outputs and Loop-carried outputs."""
    out = if_branch_hints(nodes, consts, infos, hints, opset_imports, infer_branch)
    out.update(loop_carried_hints(nodes, consts, infos, hints, opset_imports, infer_branch))
    return out


def _value_info(name: str, consts, infos):
    if name in consts:
        arr = consts[name]
        return helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape)
        )
    return infos.get(name)


def _renamed(vi: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    out = onnx.ValueInfoProto()
    out.CopyFrom(vi)
    out.name = name
    return out


def _static(vi) -> bool:
    dims = dims_of(vi) if vi is not None else None
    return dims is not None and all(isinstance(d, int) for d in dims)
