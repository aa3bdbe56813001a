"""Lower a nested ONNX graph (If branch, Loop/Scan body) into its own TFLite subgraph.

Why a standalone model: the body then goes through the very same front end (shape inference,
constant folding, nested control flow) as a top-level model, and then through the very same
``graph_lowering.lower_graph`` (ONNX rewrites, plan with aggregated refusals, driver walk),
reached through the parent driver (``Driver.lower``). Values the body
reads from the enclosing scope become graph inputs of that model when they are run-time
tensors, or initializers when they are constants (so folding inside the body still sees them).
The body is lowered with ONNX layout at its boundaries (``keep_io_layout``), so whatever
crosses the subgraph boundary is in ONNX order and the caller can wire it without transposes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import errors
from .driver import Driver
from .errors import BadInputError, UnsupportedError
from .frontend import load_graph
from .frontend.branch_shapes import CANNOT_RUN
from .ir import Value


@dataclass(frozen=True)
class BodyInput:
    """A formal input of the body (Loop's iteration number, Scan's slices ...)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]


@dataclass
class LoweredBody:
    driver: Driver
    # Names (as the parent graph spells them, i.e. possibly renamed) of the run-time outer
    # values the subgraph takes as inputs after its formal inputs, in subgraph-input order.
    outer_feeds: list[str]

    @property
    def sub(self):
        return self.driver.sub


def _value_info(name: str, dtype, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(shape)
    )


def _refuse(label: str, code: str, message: str):
    raise UnsupportedError(code, message, label)


def _check_tensor_outputs(body: onnx.GraphProto, label: str, path: str) -> None:
    for vi in body.output:
        kind = vi.type.WhichOneof("value")
        if kind not in (None, "tensor_type"):
            _refuse(
                label,
                errors.UNSUPPORTED_DTYPE,
                f"{path}: output {vi.name!r} is a {kind.replace('_type', '')}; only tensors can "
                "cross a TFLite subgraph boundary",
            )


def _distinct_outputs(body: onnx.GraphProto):
    """A body may list one value as several outputs (loop-carried and scanned); a graph may
    not: repeats become Identity copies under fresh names (outputs stay positional)."""
    nodes, outputs, seen = list(body.node), [], set()
    for k, vi in enumerate(body.output):
        if vi.name in seen:
            copy = onnx.ValueInfoProto()
            copy.CopyFrom(vi)
            copy.name = f"{vi.name}/output{k}"
            nodes.append(helper.make_node("Identity", [vi.name], [copy.name], name=copy.name))
            vi = copy
        seen.add(vi.name)
        outputs.append(vi)
    return nodes, outputs


def body_model(
    body: onnx.GraphProto,
    formal: list[BodyInput],
    outer: list[tuple[str, Value]],
    opsets: dict[str, int],
) -> tuple[onnx.ModelProto, list[str]]:
    """The body as a standalone model; returns it and the body names of run-time outer inputs."""
    formal_names = {f.name for f in formal}
    inputs = [_value_info(f.name, f.dtype, f.shape) for f in formal]
    inits = list(body.initializer)
    runtime: list[str] = []
    for body_name, value in outer:
        if body_name in formal_names:
            continue  # shadowed by a formal input
        if value.is_constant:
            inits.append(numpy_helper.from_array(np.asarray(value.const), body_name))
        else:
            inputs.append(_value_info(body_name, value.dtype, value.shape))
            runtime.append(body_name)
    nodes, outputs = _distinct_outputs(body)
    graph = helper.make_graph(
        nodes,
        body.name or "body",
        inputs,
        outputs,
        inits,
        value_info=list(body.value_info),
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()]
    )
    return model, runtime


def lower_body(
    parent: Driver,
    label: str,
    path: str,
    body: onnx.GraphProto,
    formal: list[BodyInput],
    outer: list[tuple[str, str]],
) -> LoweredBody:
    """Lower ``body`` into a finished nested driver (subgraph not yet added to the file).

    ``outer``: (name inside the body, name in the parent graph) of every outer-scope value
    the body may read. The subgraph's inputs are the formal inputs, then the run-time outer
    values (in ``LoweredBody.outer_feeds`` order); its outputs are the body outputs.
    """
    _check_tensor_outputs(body, label, path)
    for f in formal:
        if not all(isinstance(d, int) and d >= 0 for d in f.shape):
            _refuse(
                label,
                errors.DYNAMIC_SHAPE_UNSUPPORTED,
                f"{path}: input {f.name!r} has no static shape {list(f.shape)}",
            )
    parent_of = dict(outer)
    values = [(b, parent.value(p)) for b, p in outer]
    model, runtime = body_model(body, formal, values, parent.graph.opsets)
    options = dataclasses.replace(
        parent.options, keep_io_layout=True, keep_layout=(), channel_last=()
    )
    try:
        fe = _load_body(model, options.disabled_rewrites)
    except BranchShapeError as exc:
        raise BranchShapeError(exc.cause, exc.reason_code, f"{path} {exc.message}", label) from None
    # a body of a model lowered at sample sizes varies with them too (lowering/dynamic_sizes.py)
    fe.graph.sample_pinned = fe.graph.sample_pinned or parent.graph.sample_pinned
    try:
        driver = parent.lower(fe.graph, options, parent, path=path)
    except UnsupportedError as exc:
        if exc.message.startswith(path):
            raise
        raise UnsupportedError(exc.reason_code, f"{path}: {exc.message}", label) from None
    return LoweredBody(driver, [parent_of[b] for b in runtime])


class BranchShapeError(UnsupportedError):
    """A body that cannot run at the outer values' shapes (see :func:`_load_body`);
    ``cause``: the front end's message."""

    def __init__(self, cause: str, *args):
        super().__init__(*args)
        self.cause = cause


def _load_body(model: onnx.ModelProto, disabled=frozenset()):
    """The body through the front end. A body whose shapes do not infer at the outer values'
    shapes cannot run there (onnxruntime fails the same way when it takes it): a branch
    meant for other input sizes (one per sample rate, say). That is an unsupported
    combination of the pins and the branch, not a broken model file."""
    try:
        return load_graph(model, disabled_rules=disabled)
    except BadInputError as exc:
        if exc.reason_code not in CANNOT_RUN:
            raise
        raise BranchShapeError(
            exc.message,
            errors.DYNAMIC_SHAPE_UNSUPPORTED,
            "cannot be computed at these input shapes (onnxruntime fails there too; a TFLite "
            f"subgraph has one shape per tensor: pin the input shapes it needs): {exc.message}",
        ) from None


def branch_output_shape(
    body: onnx.GraphProto, outer: list[tuple[str, Value]], opsets: dict[str, int], k: int
) -> tuple | None:
    """The shape ``body`` computes for its output ``k`` at the outer values' shapes (for a
    refusal's message); raises the front end's error when it cannot be computed there."""
    model, _ = body_model(body, [], outer, opsets)
    graph = _load_body(model).graph
    if k >= len(graph.outputs):
        return None
    return graph.values[graph.outputs[k]].shape
