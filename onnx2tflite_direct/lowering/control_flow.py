"""If -> IF, Loop and Scan -> WHILE, each body lowered into its own TFLite subgraph.

Why builtins and not unrolling: a run-time condition or a data-dependent trip count can only be
reproduced by the interpreter's own control flow. Bodies are lowered by the same loop as the
main graph (``subgraphs.lower_body`` -> ``graph_lowering.lower_graph``) with ONNX layout at
their boundaries; everything that crosses a boundary is passed in ONNX order. TFLite subgraphs only see their inputs, so
outer-scope values a body reads are passed explicitly (IF: as extra inputs to both branches;
WHILE: as loop variables the body passes through unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import errors, tfl
from .. import layout as L
from ..errors import ConversionError
from ..policies import onnx_order
from ..registry import lowering
from ..subgraphs import (
    BodyInput,
    BranchShapeError,
    LoweredBody,
    branch_output_shape,
    lower_body,
)
from .emit import Emitter

BRANCHES = ("then_branch", "else_branch")
ANY_DTYPE = ("bool", "float32", "float16", "int8", "uint8", "int16", "int32", "int64")


def _outer(ctx) -> list[tuple[str, str]]:
    """(name inside the subgraphs, current parent name) of every outer-scope read."""
    node = ctx.node
    start = len(node.explicit_inputs)
    return list(zip(node.implicit_inputs, node.inputs[start:], strict=True))


def _feed(ctx, parent_name: str) -> tfl.Tensor:
    """A parent value in ONNX order, as a subgraph operand."""
    index = ctx.node.inputs.index(parent_name)
    return ctx.input(index)


def _scalar_bool(ctx, tensor: tfl.Tensor, hint: str) -> tfl.Tensor:
    if tensor.shape != ():
        tensor = ctx.reshape(tensor, (), hint)
    return tensor


def _branch_mismatch(a: list[tfl.Tensor], b: list[tfl.Tensor], dynamic_ok) -> str | None:
    """Why the branches' outputs cannot be one IF output: dtypes or ranks differ, or (for an
    output that ``dynamic_ok(k)`` does not allow to take its shape at run time) the dims."""
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        same = x.dtype == y.dtype and len(x.shape) == len(y.shape)
        if same and (x.shape == y.shape or dynamic_ok(k)):
            continue
        return (
            f"output {k}: then-branch gives {x.dtype}{list(x.shape)}, else-branch gives "
            f"{y.dtype}{list(y.shape)}; TFLite IF needs the same dtype and rank, and the "
            "same dims unless the output is a graph output (then it takes the dims of the "
            "branch that runs)"
        )
    return None


def _graph_output_only(node, graph, k: int) -> bool:
    """Output ``k`` is read by no node (a graph output): its shape may be known at run time
    only (the IF kernel resizes it to the branch that ran)."""
    name = node.outputs[k]
    return not any(name in n.inputs for n in graph.nodes)


def _if_check(node, graph) -> str | None:
    """An If output without a static shape must be a graph output (nothing downstream can be
    lowered at an unknown size); the message says which branch makes it unknown."""
    for k, name in enumerate(node.outputs):
        value = graph.values.get(name)
        if not name or value is None or value.is_constant or value.is_static:
            continue
        if value.shape is not None and _graph_output_only(node, graph, k):
            continue
        where = "is read by other nodes" if value.shape is not None else "has no known rank"
        return (
            f"{errors.DYNAMIC_SHAPE_UNSUPPORTED}: output {name!r} has no static shape "
            f"({value.shape}) and {where}: {_branch_shapes(node, graph, k)}; only a graph "
            "output of one rank can take the shape of the branch that runs"
        )
    return None


def _branch_shapes(node, graph, k: int) -> str:
    """What each branch computes for output ``k`` at these input shapes (or why it cannot)."""
    start = len(node.explicit_inputs)
    pairs = zip(node.implicit_inputs, node.inputs[start:], strict=True)
    outer = [(b, graph.values[p]) for b, p in pairs]
    parts = []
    for key in ("then_branch", "else_branch"):
        body = node.attrs.get(key)
        try:
            shape = branch_output_shape(body, outer, graph.opsets, k)
            parts.append(f"{key} gives {list(shape) if shape is not None else 'unknown'}")
        except ConversionError as exc:
            parts.append(f"{key} {exc.message}")
    return "; ".join(parts)


def _lower_branch(ctx, attr: str, outer) -> LoweredBody:
    graph = ctx.attr(attr)
    if graph is None:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"missing {attr}")
    return lower_body(ctx.driver, ctx.node.label, f"{ctx.node.label}/{attr}", graph, [], outer)


@lowering(
    "If",
    onnx_order,
    dtypes=("bool",),
    tflite_ops=("IF",),
    dynamic_outputs=True,
    extra_check=_if_check,
    notes="branches lowered into IF subgraphs; branch outputs must agree in dtype and rank, "
    "and in shape unless the output is a graph output (it then has the shape of the branch "
    "that runs: -1 in its shape signature)",
)
def lower_if(ctx):
    e = Emitter(ctx)
    outer = _outer(ctx)
    lowered, broken = {}, {}
    for key in BRANCHES:
        try:
            lowered[key] = _lower_branch(ctx, key, outer)
        except BranchShapeError as exc:
            broken[key] = exc
    if len(broken) == len(BRANCHES):
        raise broken[BRANCHES[0]]
    for key, exc in broken.items():
        (other,) = lowered.values()
        lowered[key] = _failing_branch(ctx, key, other.sub.outputs, exc)
    then_b, else_b = lowered["then_branch"], lowered["else_branch"]
    node, graph = ctx.node, ctx.driver.graph
    outs = len(node.outputs)
    for branch in (then_b, else_b):
        if len(branch.sub.outputs) != outs:
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "branch output count differs")
    then_o, else_o = then_b.sub.outputs, else_b.sub.outputs
    problem = _branch_mismatch(then_o, else_o, lambda k: _graph_output_only(node, graph, k))
    if problem:
        ctx.refuse(errors.DYNAMIC_SHAPE_UNSUPPORTED, problem)
    feeds = list(dict.fromkeys(then_b.outer_feeds + else_b.outer_feeds))
    for branch in (then_b, else_b):
        _feed_parent_values(branch, feeds, ctx)
    cond = _scalar_bool(ctx, ctx.input(0), "cond")
    outputs = []
    for i, (a, b) in enumerate(zip(then_o, else_o, strict=True)):
        value = ctx.driver.value(node.outputs[i])
        if a.shape != b.shape or not value.is_static:
            outputs.append(_run_time_shaped(ctx, i, a, b))
            continue
        t = ctx.output(i)
        if t.shape != a.shape:
            ctx.refuse(
                errors.DYNAMIC_SHAPE_UNSUPPORTED,
                f"branch output shape {list(a.shape)} differs from the If output {list(t.shape)}",
            )
        outputs.append(t)
    e.op(
        "IF",
        cond,
        *(_feed(ctx, name) for name in feeds),
        out=outputs,
        then_subgraph_index=ctx.driver.add_subgraph(then_b.sub),
        else_subgraph_index=ctx.driver.add_subgraph(else_b.sub),
    )


@dataclass
class _FailingBranch:
    """Stands in for a branch that cannot run at the pinned shapes (``_failing_branch``)."""

    driver: object  # the If's driver (names the subgraph's unused inputs)
    sub: tfl.Subgraph
    outer_feeds: list[str]


def _failing_branch(ctx, key: str, like: list[tfl.Tensor], exc: BranchShapeError):
    """A branch whose shapes contradict each other at the pinned input shapes: onnxruntime
    fails when it takes it, so the IF's branch fails too, at run time, instead of refusing
    the branch that can run. It RESHAPEs a 1-element tensor to a size computed at run time
    (SHAPE + 1 = 2 elements): LiteRT's RESHAPE checks the element count when it runs and
    stops ``Invoke`` with an error. Its outputs only give the IF the other branch's dtypes
    and shapes (they depend on the failing op, so no rewrite removes it)."""
    d, label = ctx.driver, f"{ctx.node.label}/{key}"
    sub = tfl.Subgraph(name=label)
    with d.emitting_into(sub):
        probe = d.const_tensor(f"{label}/probe", np.zeros(1, np.float32))
        dims = d.new_tensor(f"{label}/probe_dims", np.int32, (1,))
        d.emit("SHAPE", [probe], [dims], out_type="INT32")
        wrong = d.new_tensor(f"{label}/wrong_dims", np.int32, (1,))
        one = d.const_tensor(f"{label}/one", np.array([1], np.int32))
        d.emit("ADD", [dims, one], [wrong], fused_activation_function="NONE")
        failed = d.new_tensor(f"{label}/fails_at_run_time", np.float32, (2,))
        d.emit("RESHAPE", [probe, wrong], [failed])
        total = d.new_tensor(f"{label}/poison", np.float32, ())
        axis = d.const_tensor(f"{label}/axis", np.array([0], np.int32))
        d.emit("SUM", [failed, axis], [total], keep_dims=False)
        for k, t in enumerate(like):
            zeros = d.const_tensor(f"{label}/zeros{k}", np.zeros(t.shape, np.float32))
            out = d.new_tensor(f"{label}/out{k}", np.float32, t.shape)
            d.emit("ADD", [zeros, total], [out], fused_activation_function="NONE")
            if np.dtype(t.dtype) != np.float32:
                typed = d.new_tensor(f"{label}/out{k}_typed", t.dtype, t.shape)
                d.emit("CAST", [out], [typed])
                out = typed
            sub.outputs.append(out)
    sub.output_names = [t.name for t in sub.outputs]
    ctx.note(
        f"{key} cannot be computed at these input shapes ({exc.cause[:240]}): it fails at run "
        "time, as in onnxruntime"
    )
    return _FailingBranch(d, sub, [])


def _run_time_shaped(ctx, i: int, a: tfl.Tensor, b: tfl.Tensor) -> tfl.Tensor:
    """Output ``i`` as the branches give it: dims where they differ are -1 in the shape
    signature (LiteRT's IF kernel then makes the output dynamic and resizes it to the branch
    that ran); stored at the then-branch's size. Only reached for graph outputs."""
    name = ctx.node.outputs[i]
    value = ctx.driver.value(name)
    signature = tuple(x if x == y else -1 for x, y in zip(a.shape, b.shape, strict=True))
    value.shape = a.shape  # (the io table's stored size; the signature says what varies)
    if all(d != -1 for d in signature):
        return ctx.output(i)
    out = ctx.driver.new_tensor(name, a.dtype, a.shape)
    out.shape_signature = signature
    ctx.alias_output(i, out, L.identity(len(a.shape)))
    ctx.note(
        f"output {name!r}: then-branch {list(a.shape)}, else-branch {list(b.shape)}; its shape "
        "is the running branch's (shape signature -1 where they differ)"
    )
    return out


def _feed_parent_values(branch: LoweredBody | _FailingBranch, feeds: list[str], ctx) -> None:
    by_name = dict(zip(branch.outer_feeds, branch.sub.inputs, strict=True))
    inputs = []
    for name in feeds:
        t = by_name.get(name)
        if t is None:  # read by the other branch only: an unused input here
            value = ctx.driver.value(name)
            t = tfl.Tensor(branch.driver.unique_name(f"unused_{name}"), value.dtype, value.shape)
        inputs.append(t)
    branch.sub.inputs = inputs
    branch.sub.input_names = list(feeds)


# ---- WHILE plumbing ---------------------------------------------------------------------------


def mirror_tensors(driver, tensors: list[tfl.Tensor], hint: str) -> list[tfl.Tensor]:
    """Fresh tensors with the dtypes/shapes of ``tensors`` (a subgraph's own loop variables)."""
    return [driver.new_tensor(f"{hint}/{k}", t.dtype, t.shape) for k, t in enumerate(tensors)]


def cond_subgraph(ctx, loop_vars: list[tfl.Tensor], make_cond) -> tfl.Subgraph:
    """A WHILE condition subgraph: takes every loop variable, returns one bool scalar.

    ``make_cond(emit, inputs)`` emits the test and returns the bool tensor."""
    driver = ctx.driver
    sub = tfl.Subgraph(name=f"{ctx.node.label}/cond")
    sub.inputs = mirror_tensors(driver, loop_vars, f"{ctx.node.label}/cond/in")

    def emit(opcode, inputs, outputs, **options):
        sub.operators.append(tfl.Operator(opcode, list(inputs), list(outputs), options))

    sub.outputs = [make_cond(emit, sub.inputs)]
    sub.input_names = [t.name for t in sub.inputs]
    sub.output_names = ["cond"]
    return sub


def _all_of(ctx, emit, tests: list[tfl.Tensor]) -> tfl.Tensor:
    out = tests[0]
    for t in tests[1:]:
        both = ctx.driver.new_tensor(f"{ctx.node.label}/cond/and", np.bool_, ())
        emit("LOGICAL_AND", [out, t], [both])
        out = both
    return out


def less_than(ctx, emit, a: tfl.Tensor, b: tfl.Tensor) -> tfl.Tensor:
    out = ctx.driver.new_tensor(f"{ctx.node.label}/cond/less", np.bool_, ())
    emit("LESS", [a, b], [out])
    return out


def emit_while(ctx, init: list[tfl.Tensor], cond_sub, body_sub) -> list[tfl.Tensor]:
    """Emit WHILE over ``init``; returns its outputs (fresh tensors, one per loop variable)."""
    e = Emitter(ctx)
    finals = [ctx.temp(t.dtype, t.shape, f"while_out{k}") for k, t in enumerate(init)]
    body_sub.input_names = [t.name for t in body_sub.inputs]
    body_sub.output_names = [t.name for t in body_sub.outputs]
    e.op(
        "WHILE",
        *init,
        out=finals,
        cond_subgraph_index=ctx.driver.add_subgraph(cond_sub),
        body_subgraph_index=ctx.driver.add_subgraph(body_sub),
    )
    return finals


def _write_slice(body, buf: tfl.Tensor, update: tfl.Tensor, axis: int, index: tfl.Tensor):
    """``buf`` with ``update`` (``buf`` minus ``axis``) written at ``index`` along ``axis``."""
    d = body.driver
    shape = list(buf.shape)
    shape[axis] = 1
    piece = d.new_tensor(f"{buf.name}/piece", update.dtype, shape)
    d.reshape(update, piece)
    position = d.new_tensor(f"{buf.name}/at", index.dtype, (1,))
    d.reshape(index, position)
    parts = []
    if axis:
        parts.append(d.const_tensor(f"{buf.name}/lead", np.zeros(axis, index.dtype)))
    parts.append(position)
    if len(shape) - axis - 1:
        parts.append(
            d.const_tensor(f"{buf.name}/tail", np.zeros(len(shape) - axis - 1, index.dtype))
        )
    starts = parts[0]
    if len(parts) > 1:
        starts = d.new_tensor(f"{buf.name}/starts", index.dtype, (len(shape),))
        d.emit("CONCATENATION", parts, [starts], axis=0, fused_activation_function="NONE")
    out = d.new_tensor(f"{buf.name}/next", buf.dtype, buf.shape)
    d.emit("DYNAMIC_UPDATE_SLICE", [buf, piece, starts], [out])
    return out


def _as_scalar(ctx, index: int, dtype, default) -> tfl.Tensor:
    """Input ``index`` as a 0-d tensor, or a constant ``default`` when the input is absent."""
    if not ctx.has_input(index):
        return ctx.const_tensor(np.array(default, dtype), f"default{index}")
    t = ctx.input(index)
    return ctx.reshape(t, (), f"scalar{index}") if t.shape != () else t


def _check_carried(ctx, body, first: int, carried: list[tfl.Tensor]) -> None:
    for k, t in enumerate(carried):
        out = body.sub.outputs[first + k]
        if out.shape != t.shape or out.dtype != t.dtype:
            ctx.refuse(
                errors.DYNAMIC_SHAPE_UNSUPPORTED,
                f"loop-carried value {k} enters as {t.dtype}{list(t.shape)} and leaves the body "
                f"as {out.dtype}{list(out.shape)}; TFLite WHILE needs them equal",
            )


def _scalar_out(body, t: tfl.Tensor) -> tfl.Tensor:
    if t.shape == ():
        return t
    out = body.driver.new_tensor(f"{t.name}/scalar", t.dtype, ())
    body.driver.reshape(t, out)
    return out


# ---- Loop -------------------------------------------------------------------------------------


def _loop_check(node, graph) -> str | None:
    explicit = node.explicit_inputs
    if not (explicit[0] if explicit else "") and not (explicit[1] if len(explicit) > 1 else ""):
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: a Loop with neither trip count nor condition "
            "input never stops"
        )
    return None


def _static_trip_count(ctx, body) -> int | None:
    """The exact iteration count when the model fixes it: a constant M, and no condition input
    or a constant-true one that the body keeps true (passes through or sets to a constant)."""
    m = ctx.const(0)
    if m is None:
        return None
    if ctx.has_input(1):
        start, cond_in, cond_out = ctx.const(1), body.sub.inputs[1], body.sub.outputs[0]
        if start is None or not bool(np.all(start)):
            return None
        if cond_out is not cond_in and (cond_out.data is None or not bool(np.all(cond_out.data))):
            return None
    return max(int(np.asarray(m).reshape(-1)[0]), 0)


def _scan_capacities(ctx, body, n_carried: int) -> list[int]:
    """Rows of each scan-output buffer: the output's static length (inferred or declared)."""
    caps = []
    for j, piece in enumerate(body.sub.outputs[1 + n_carried :]):
        value = ctx.driver.value(ctx.node.outputs[n_carried + j])
        if not value.is_static:
            ctx.refuse(
                errors.DYNAMIC_SHAPE_UNSUPPORTED,
                f"scan output {value.name!r} has no static shape ({value.shape}): its length "
                "is the run-time iteration count; declare the output shape in the model",
            )
        if tuple(value.shape[1:]) != piece.shape:
            ctx.refuse(
                errors.DYNAMIC_SHAPE_UNSUPPORTED,
                f"scan output {value.name!r} is {list(value.shape)} but the body gives slices "
                f"of {list(piece.shape)}",
            )
        caps.append(value.shape[0])
    return caps


def _loop_formal_inputs(ctx, body_g, n_carried: int) -> list[BodyInput]:
    names = [vi.name for vi in body_g.input]
    formal = [BodyInput(names[0], np.dtype(np.int64), ()), BodyInput(names[1], np.dtype(bool), ())]
    for k in range(n_carried):
        formal.append(BodyInput(names[2 + k], ctx.value(2 + k).dtype, ctx.shape(2 + k)))
    return formal


def _trimmed_scan(ctx, j: int, buf: tfl.Tensor, count: tfl.Tensor) -> None:
    """Output ``j`` = the first ``count`` rows of ``buf`` (a run-time length: dynamic shape)."""
    e = Emitter(ctx)
    rank = buf.rank
    n32 = e.op("CAST", count, dtype=np.int32, hint="count32")
    n1 = ctx.reshape(n32, (1,), "count1")
    rest = ctx.const_tensor(np.full(rank - 1, -1, np.int32), "rest")
    size = n1
    if rank > 1:
        size = e.concat([n1, rest], 0, hint="size")
    begin = ctx.const_tensor(np.zeros(rank, np.int32), "begin")
    out = ctx.output(j)
    out.shape_signature = (-1, *out.shape[1:])
    e.op("SLICE", buf, begin, size, out=out)


@lowering(
    "Loop",
    onnx_order,
    dtypes=ANY_DTYPE,
    dtype_inputs=(),
    dynamic_outputs=True,
    extra_check=_loop_check,
    tflite_ops=("WHILE", "LESS", "LOGICAL_AND", "ADD", "DYNAMIC_UPDATE_SLICE", "SLICE"),
    notes="body lowered into a WHILE subgraph; loop-carried values keep their shape; scan "
    "outputs need a static length (constant trip count, or a declared output shape at least as "
    "long as a constant trip count: the output is trimmed to the iterations run)",
)
def lower_loop(ctx):
    node = ctx.node
    has_m, has_cond = ctx.has_input(0), ctx.has_input(1)
    n_carried = len(node.explicit_inputs) - 2
    body_g = ctx.attr("body")
    if len(body_g.input) != 2 + n_carried or len(body_g.output) < 1 + n_carried:
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE,
            f"the body takes {len(body_g.input)} inputs and gives {len(body_g.output)} outputs "
            f"for {n_carried} loop-carried values (ONNX needs {2 + n_carried} inputs)",
        )
    formal = _loop_formal_inputs(ctx, body_g, n_carried)
    body = lower_body(ctx.driver, node.label, f"{node.label}/body", body_g, formal, _outer(ctx))
    carried = [ctx.input(2 + k) for k in range(n_carried)]
    _check_carried(ctx, body, 1, carried)
    caps = _scan_capacities(ctx, body, n_carried)
    trip = _static_trip_count(ctx, body)
    trimmed = bool(caps) and any(cap != trip for cap in caps)
    if trimmed:
        for j in range(len(caps)):
            if ctx.driver.consumers.get(node.outputs[n_carried + j]):
                ctx.refuse(
                    errors.DYNAMIC_SHAPE_UNSUPPORTED,
                    f"scan output {node.outputs[n_carried + j]!r} has a run-time length and is "
                    "read by other nodes; only a graph output may have a dynamic shape",
                )
        # The buffer must hold every iteration that can run: a run past the declared length
        # would otherwise stop early and differ from ONNX silently.
        bound = ctx.const(0) if has_m else None
        if bound is None or int(np.asarray(bound).reshape(-1)[0]) > min(caps):
            ctx.refuse(
                errors.DYNAMIC_SHAPE_UNSUPPORTED,
                f"scan outputs of {node.label!r} have a run-time length: the trip count must "
                f"be a constant no larger than their declared length ({min(caps)}) so every "
                "iteration fits",
            )

    d, sub = body.driver, body.sub
    pieces = sub.outputs[1 + n_carried :]
    bufs0 = [
        ctx.const_tensor(np.zeros((cap, *p.shape), p.dtype), f"scan{j}")
        for j, (cap, p) in enumerate(zip(caps, pieces, strict=True))
    ]
    m0 = [_as_scalar(ctx, 0, np.int64, 0)] if has_m else []
    init = [
        ctx.const_tensor(np.array(0, np.int64), "iter0"),
        *m0,
        _as_scalar(ctx, 1, np.bool_, True),
        *carried,
        *bufs0,
        *(_feed(ctx, name) for name in body.outer_feeds),
    ]

    iter_in, cond_in = sub.inputs[0], sub.inputs[1]
    v_in, outer_in = sub.inputs[2 : 2 + n_carried], sub.inputs[2 + n_carried :]
    m_in = [d.new_tensor("trip_count", np.int64, ())] if has_m else []
    bufs_in = [d.new_tensor(f"scan{j}", b.dtype, b.shape) for j, b in enumerate(bufs0)]
    iter_next = d.new_tensor("iter_next", np.int64, ())
    one = d.const_tensor("one", np.array(1, np.int64))
    d.emit("ADD", [iter_in, one], [iter_next], fused_activation_function="NONE")
    bufs_next = [_write_slice(body, b, p, 0, iter_in) for b, p in zip(bufs_in, pieces, strict=True)]
    cond_out = _scalar_out(body, sub.outputs[0])
    v_out = sub.outputs[1 : 1 + n_carried]
    sub.inputs = [iter_in, *m_in, cond_in, *v_in, *bufs_in, *outer_in]
    sub.outputs = [iter_next, *m_in, cond_out, *v_out, *bufs_next, *outer_in]

    def make_cond(emit, loop_vars):
        tests = []
        if has_m:
            tests.append(less_than(ctx, emit, loop_vars[0], loop_vars[1]))
        if has_cond:
            tests.append(loop_vars[1 + has_m])
        if trimmed:
            cap = ctx.driver.const_tensor(f"{node.label}/cap", np.array(min(caps), np.int64))
            tests.append(less_than(ctx, emit, loop_vars[0], cap))
        return _all_of(ctx, emit, tests)

    finals = emit_while(ctx, init, cond_subgraph(ctx, init, make_cond), sub)
    base = 2 + has_m
    for k in range(n_carried):
        ctx.alias_output(k, finals[base + k], L.identity(len(carried[k].shape)))
    for j in range(len(caps)):
        buf = finals[base + n_carried + j]
        if trimmed:
            _trimmed_scan(ctx, n_carried + j, buf, finals[0])
        else:
            ctx.alias_output(n_carried + j, buf, L.identity(buf.rank))


# ---- Scan -------------------------------------------------------------------------------------


def _axes(values, count: int, ranks: list[int]) -> list[int]:
    values = list(values) if values else [0] * count
    return [a + r if a < 0 else a for a, r in zip(values, ranks, strict=True)]


def _scan_while(ctx, states, scans, in_axes, in_dirs, out_axes, out_dirs):
    """Run the Scan body over slices of ``scans``; returns (final states, stacked outputs).

    Loop variables: [step (int32), states..., whole scan inputs..., output buffers...,
    outer values...]. The body slices its inputs with GATHER at the step (or the mirrored step
    for reverse directions) and writes each output slice with DYNAMIC_UPDATE_SLICE.
    """
    node = ctx.node
    lengths = {t.shape[a] for t, a in zip(scans, in_axes, strict=True)}
    if len(lengths) != 1:
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"scan inputs of different lengths {lengths}"
        )
    (steps,) = lengths
    if steps == 0:
        ctx.refuse(errors.EMPTY_TENSOR_UNSUPPORTED, "zero-length scan")
    body_g = ctx.attr("body")
    names = [vi.name for vi in body_g.input]
    if len(names) != len(states) + len(scans):
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE,
            f"the body takes {len(names)} inputs for {len(states)} states and {len(scans)} "
            "scan inputs",
        )
    formal = [BodyInput(n, t.dtype, t.shape) for n, t in zip(names, states, strict=False)]
    for n, t, a in zip(names[len(states) :], scans, in_axes, strict=True):
        formal.append(BodyInput(n, t.dtype, t.shape[:a] + t.shape[a + 1 :]))
    body = lower_body(ctx.driver, node.label, f"{node.label}/body", body_g, formal, _outer(ctx))
    _check_carried(ctx, body, 0, states)
    d, sub = body.driver, body.sub
    n_states = len(states)
    pieces = sub.outputs[n_states:]
    if len(out_axes) != len(pieces):
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "scan_output_axes count != scan outputs")
    buf_shapes = [
        p.shape[:a] + (steps,) + p.shape[a:] for p, a in zip(pieces, out_axes, strict=True)
    ]
    bufs0 = [
        ctx.const_tensor(np.zeros(s, p.dtype), f"scan_out{j}")
        for j, (s, p) in enumerate(zip(buf_shapes, pieces, strict=True))
    ]
    init = [
        ctx.const_tensor(np.array(0, np.int32), "step0"),
        *states,
        *scans,
        *bufs0,
        *(_feed(ctx, name) for name in body.outer_feeds),
    ]

    state_in = sub.inputs[:n_states]
    slices = sub.inputs[n_states : n_states + len(scans)]
    outer_in = sub.inputs[n_states + len(scans) :]
    step = d.new_tensor("step", np.int32, ())
    whole = [d.new_tensor(f"scan_in{k}", t.dtype, t.shape) for k, t in enumerate(scans)]
    bufs_in = [d.new_tensor(f"scan_out{j}", b.dtype, b.shape) for j, b in enumerate(bufs0)]
    body_ops = sub.operators
    sub.operators = []
    mirrored = d.new_tensor("mirrored_step", np.int32, ())
    last = d.const_tensor("last_step", np.array(steps - 1, np.int32))
    d.emit("SUB", [last, step], [mirrored], fused_activation_function="NONE")
    for src, dst, axis, rev in zip(whole, slices, in_axes, in_dirs, strict=True):
        d.emit("GATHER", [src, mirrored if rev else step], [dst], axis=axis, batch_dims=0)
    sub.operators.extend(body_ops)
    step_next = d.new_tensor("step_next", np.int32, ())
    one = d.const_tensor("one", np.array(1, np.int32))
    d.emit("ADD", [step, one], [step_next], fused_activation_function="NONE")
    bufs_next = [
        _write_slice(body, b, p, a, mirrored if rev else step)
        for b, p, a, rev in zip(bufs_in, pieces, out_axes, out_dirs, strict=True)
    ]
    sub.inputs = [step, *state_in, *whole, *bufs_in, *outer_in]
    sub.outputs = [step_next, *sub.outputs[:n_states], *whole, *bufs_next, *outer_in]

    def make_cond(emit, loop_vars):
        limit = ctx.driver.const_tensor(f"{node.label}/steps", np.array(steps, np.int32))
        return less_than(ctx, emit, loop_vars[0], limit)

    finals = emit_while(ctx, init, cond_subgraph(ctx, init, make_cond), sub)
    first_buf = 1 + n_states + len(scans)
    return finals[1 : 1 + n_states], finals[first_buf : first_buf + len(bufs0)]


def _scan_directions(ctx, count: int, key: str) -> list[int]:
    return list(ctx.attr(key) or [0] * count)


_SCAN = {
    "dtypes": ANY_DTYPE,
    "dtype_inputs": (),
    "tflite_ops": ("WHILE", "GATHER", "DYNAMIC_UPDATE_SLICE", "LESS", "ADD", "SUB"),
}


@lowering(
    "Scan",
    onnx_order,
    since=9,
    notes="body lowered into a WHILE subgraph over the (static) scan length",
    **_SCAN,
)
def lower_scan(ctx):
    node = ctx.node
    n_in = len(node.explicit_inputs)
    n_scan = int(ctx.attr("num_scan_inputs"))
    n_states = n_in - n_scan
    states = [ctx.input(k) for k in range(n_states)]
    scans = [ctx.input(k) for k in range(n_states, n_in)]
    n_out = len(node.outputs) - n_states
    in_axes = _axes(ctx.attr("scan_input_axes"), n_scan, [t.rank for t in scans])
    out_ranks = [len(ctx.out_shape(n_states + j)) for j in range(n_out)]
    out_axes = _axes(ctx.attr("scan_output_axes"), n_out, out_ranks)
    final_states, stacked = _scan_while(
        ctx,
        states,
        scans,
        in_axes,
        _scan_directions(ctx, n_scan, "scan_input_directions"),
        out_axes,
        _scan_directions(ctx, n_out, "scan_output_directions"),
    )
    for k, t in enumerate([*final_states, *stacked]):
        ctx.alias_output(k, t, L.identity(t.rank))


def _scan8_check(node, graph) -> str | None:
    if node.explicit_inputs and node.explicit_inputs[0]:
        return f"{errors.REQUIRES_CONSTANT_INPUT}: Scan-8 sequence_lens is not supported"
    for name in node.explicit_inputs[1:]:
        shape = graph.values[name].shape
        if shape and shape[0] != 1:
            return f"{errors.UNSUPPORTED_RANK}: Scan-8 with batch {shape[0]}; only batch 1"
    return None


@lowering(
    "Scan",
    onnx_order,
    since=8,
    until=8,
    extra_check=_scan8_check,
    notes="opset 8: batch 1 and no sequence_lens",
    **_SCAN,
)
def lower_scan8(ctx):
    e = Emitter(ctx)
    node = ctx.node
    n_in = len(node.explicit_inputs)
    n_scan = int(ctx.attr("num_scan_inputs"))
    n_states = n_in - 1 - n_scan

    def unbatched(k):
        t = ctx.input(k)
        return ctx.reshape(t, t.shape[1:], f"unbatched{k}")

    states = [unbatched(k) for k in range(1, 1 + n_states)]
    scans = [unbatched(k) for k in range(1 + n_states, n_in)]
    n_out = len(node.outputs) - n_states
    dirs = _scan_directions(ctx, n_scan, "directions")
    final_states, stacked = _scan_while(
        ctx, states, scans, [0] * n_scan, dirs, [0] * n_out, [0] * n_out
    )
    for k, t in enumerate([*final_states, *stacked]):
        e.reshape(t, out=ctx.output(k))
