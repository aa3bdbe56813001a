"""Input checks: refuse malformed or out-of-range models with one clear line, early.

Why here and not in the lowerings: ONNX shape inference leaves many spec violations unchecked
(duplicate names, element counts of Reshape, operand shapes of Conv/Gemm/BatchNorm, axis
ranges, TFLite's int32 size limit). Later stages rely on these facts; a violation found there
would surface as a misleading reason or an internal error instead of ``invalid_model``.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from .. import contrib_schemas, errors, op_classes
from ..errors import BadInputError, UnsupportedError
from ..ir import Value
from .protos import dims_compatible, dims_of, dtype_of
from .zipmap import ADVICE, zipmap_outputs

MIN_DEFAULT_OPSET = 7
# TFLite shapes are int32 and kernels index flat buffers with int: larger tensors are refused.
MAX_TFLITE_DIM = 2**31 - 1


def check_structure(model: onnx.ModelProto) -> None:
    """Refuse models that are not well-formed ONNX before anything reads them further."""
    g = model.graph
    if not g.output:
        raise BadInputError(errors.INVALID_MODEL, "the graph has no outputs")
    _check_opsets(model)
    _check_unique_names(g)
    with contrib_schemas.registered(model):  # onnxruntime's default-domain contrib ops
        _check_node_schemas(model)
    for n in g.node:
        where = n.name or n.op_type or "<unnamed>"
        if not n.op_type:
            raise BadInputError(errors.INVALID_MODEL, f"node {where!r} has an empty op_type")
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            if len(n.output) != 1 or not n.output[0] or any(n.input):
                raise BadInputError(
                    errors.INVALID_MODEL,
                    f"Constant {where!r} must have no inputs and exactly one named output",
                )


def _check_opsets(model: onnx.ModelProto) -> None:
    g = model.graph
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
    imported = {"" if o.domain == "ai.onnx" else o.domain for o in model.opset_import}
    for n in g.node:
        domain = "" if n.domain == "ai.onnx" else n.domain
        if domain and domain not in imported:
            raise BadInputError(
                errors.INVALID_MODEL,
                f"node {n.name or n.op_type!r} uses domain {n.domain!r}, which the model does "
                "not import (opset_import)",
            )


def _check_node_schemas(model: onnx.ModelProto) -> None:
    """Arity, required inputs and attribute types of default-domain nodes (onnx's checker).

    Shape inference skips these checks, and a missing required input would otherwise surface
    as an index error deep in a lowering.
    """
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = max(model.ir_version, 3)
    ctx.opset_imports = {
        ("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import
    }
    lex = onnx.checker.C.LexicalScopeContext()
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            continue
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute
        ):
            continue  # subgraphs read outer-scope names the node-level checker cannot see
        try:
            onnx.checker.C.check_node(n.SerializeToString(), ctx, lex)
        except Exception as exc:
            msg = " ".join(str(exc).split())
            raise BadInputError(
                errors.INVALID_MODEL, f"node {n.name or n.op_type!r} is not valid ONNX: {msg}"
            ) from None


def _check_unique_names(g: onnx.GraphProto) -> None:
    """Static single assignment: every tensor name has exactly one source.

    An initializer may also be listed as a graph input (IR < 4 style); nothing else may share
    a name.
    """

    def dup(names) -> str | None:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                return name
            seen.add(name)
        return None

    for kind, names in (
        ("initializer", [t.name for t in g.initializer]),
        ("graph input", [i.name for i in g.input]),
        ("graph output", [o.name for o in g.output]),
    ):
        if (name := dup(names)) is not None:
            raise BadInputError(errors.INVALID_MODEL, f"duplicate {kind} name {name!r}")
    if any(not o.name for o in g.output) or any(not i.name for i in g.input):
        raise BadInputError(errors.INVALID_MODEL, "a graph input or output has an empty name")
    sources = {t.name for t in g.initializer} | {i.name for i in g.input}
    for n in g.node:
        for o in n.output:
            if o and o in sources:
                raise BadInputError(
                    errors.INVALID_MODEL,
                    f"tensor {o!r} is produced by node {n.name or n.op_type!r} and is also a "
                    "graph input, an initializer or the output of another node",
                )
            sources.add(o)


def check_initialized_inputs(inputs, consts) -> None:
    """Graph inputs that are also initializers (IR < 4 style) agree with them; no repeats."""
    for vi in inputs:
        declared = vi.type.tensor_type.elem_type
        if vi.name in consts and declared and dtype_of(declared) != consts[vi.name].dtype:
            raise BadInputError(
                errors.INVALID_MODEL,
                f"graph input {vi.name!r} is declared {dtype_of(declared)} but its initializer "
                f"holds {consts[vi.name].dtype}",
            )
    if len({i.name for i in inputs}) != len(inputs):
        raise BadInputError(errors.INVALID_MODEL, "duplicate graph input names")


def check_input_types(real_inputs) -> None:
    for vi in real_inputs:
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type" or dtype_of(vi.type.tensor_type.elem_type) is None:
            raise UnsupportedError(
                errors.UNSUPPORTED_DTYPE,
                f"graph input {vi.name!r} is not a typed tensor ({kind or 'no type'}); only "
                "tensor inputs with a known element type are supported",
            )


def check_output_types(outputs, nodes=()) -> None:
    zipmaps = zipmap_outputs(nodes)
    for vi in outputs:
        kind = vi.type.WhichOneof("value")
        if kind not in (None, "tensor_type") and vi.name in zipmaps:
            raise UnsupportedError(
                errors.UNSUPPORTED_DTYPE, f"graph output {vi.name!r}: {ADVICE}", zipmaps[vi.name]
            )
        if kind not in (None, "tensor_type"):
            raise UnsupportedError(
                errors.UNSUPPORTED_DTYPE,
                f"graph output {vi.name!r} is a {kind.replace('_type', '')}, not a tensor; "
                "TFLite outputs are tensors (sequences/optionals only convert when they are "
                "resolved inside the graph)",
            )


def declared_output_warnings(declared, infos) -> list[str]:
    """One line per graph output whose declared shape contradicts what the graph computes.

    Why a warning, not a refusal: exporters declare shapes that the graph does not compute
    (``[1, seq]`` for a ``[T, 1, C]`` result, rank 1 for rank 2, ``[]`` for a tensor) and
    onnxruntime ignores the declaration; the computed shape is the output's shape.
    """
    lines = []
    for vi in declared:
        want, got = dims_of(vi), dims_of(infos[vi.name]) if vi.name in infos else None
        if want is None or got is None:
            continue
        if not dims_compatible(want, got):
            lines.append(
                f"graph output {vi.name!r} is declared {list(want)} but computes to "
                f"{list(got)}; the computed shape is used"
            )
    return lines


def check_sizes(values: dict[str, Value]) -> None:
    """Refuse tensors TFLite cannot describe (int32 dims, int-indexed flat buffers)."""
    for v in values.values():
        if not v.shape or not all(isinstance(d, int) for d in v.shape):
            continue
        count = 1
        for d in v.shape:
            count *= d
        if max(v.shape) > MAX_TFLITE_DIM or count > MAX_TFLITE_DIM:
            raise BadInputError(
                errors.INVALID_MODEL,
                f"tensor {v.name!r} has shape {list(v.shape)} ({count} elements); TFLite tensors "
                f"are limited to {MAX_TFLITE_DIM} elements with int32 dims",
            )


def check_element_preserving(nodes, values: dict[str, Value]) -> None:
    """ONNX shape inference does not check that a Reshape keeps the element count; we do."""
    for n in nodes:
        if n.op_type not in op_classes.REORDERS or n.domain not in ("", "ai.onnx"):
            continue
        if not n.input or not n.output:
            continue
        src, dst = values.get(n.input[0]), values.get(n.output[0])
        if src is None or dst is None or not src.is_static or not dst.is_static:
            continue
        if math.prod(src.shape) != math.prod(dst.shape):  # static: python ints, exact
            raise BadInputError(
                errors.INVALID_MODEL,
                f"{n.op_type} {n.name or n.output[0]!r} turns shape {list(src.shape)} into "
                f"{list(dst.shape)}: the element counts differ",
            )


def check_axis_attributes(nodes, values: dict[str, Value]) -> None:
    """Refuse an ``axis`` attribute beyond every rank the node sees (ONNX inference may not).

    The bound is generous (|axis| <= max rank + 1 covers ops whose axis counts in the output,
    like OneHot); exact per-op ranges are the lowerings' business. Judged only when every rank
    is known: the unknown one may be the tensor the axis counts in (Gather(data of unknown
    rank, scalar index, axis=2), as Keypoint R-CNN's exports have after a Loop, is valid).
    """
    for n in nodes:
        if n.domain not in ("", "ai.onnx"):
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis" and a.type == a.INT), None)
        if axis is None:
            continue
        ranks = [values[t].rank if t in values else None for t in n.input if t]
        ranks += [values[t].rank if t in values else None for t in n.output if t]
        known = [r for r in ranks if r is not None]
        if known and len(known) == len(ranks) and abs(axis) > max(known) + 1:
            raise BadInputError(
                errors.INVALID_MODEL,
                f"{n.op_type} {n.name or n.output[0]!r}: axis={axis} is outside the tensors' "
                f"ranks ({max(known)})",
            )


# Where a graph input's dim comes from (``input_dim_origins``): what a message about a size
# that does not fit the model must tell the user to change.
DECLARED, PINNED, BATCH_PINNED, SAMPLED = "declared", "pinned", "batch_pinned", "sampled"


def input_dim_origins(
    model_inputs, input_shapes, batch_size, probe_shapes
) -> dict[str, tuple[str, ...]]:
    """Per graph input, per dim: the model's declaration, the user's ``--input-shape`` or
    ``--batch-size`` pin, or a sample size the converter chose for a dim left dynamic (it
    differs between the sample and the probe sizes; ``dynamic_shapes.py``). The user's pins
    are never sampled (``dynamic_symbols.find_symbols``)."""
    probe_shapes = probe_shapes or {}
    origins = {}
    for vi in model_inputs:
        declared = list(vi.type.tensor_type.shape.dim) if vi.type.HasField("tensor_type") else []
        pinned = (input_shapes or {}).get(vi.name)
        probe = probe_shapes.get(vi.name)
        dims = []
        for axis, d in enumerate(declared):
            unknown = not d.HasField("dim_value") or d.dim_value < 0
            if probe is not None and pinned is not None and axis < len(probe):
                dims.append(SAMPLED if probe[axis] != pinned[axis] else DECLARED)
            elif pinned is not None:
                dims.append(PINNED)
            elif axis == 0 and unknown and batch_size is not None:
                dims.append(BATCH_PINNED)
            else:
                dims.append(DECLARED)
        origins[vi.name] = tuple(dims)
    return origins


def check_operand_shapes(nodes, values: dict[str, Value], origins=None) -> None:
    """Operand shapes the ONNX spec fixes but ONNX shape inference does not check.

    Later stages (layout planning, fusions) rely on them; a violation is an invalid model.
    ``origins`` (:func:`input_dim_origins`) lets the message name what to change.
    """
    for n in nodes:
        if n.domain not in ("", "ai.onnx") or not n.input:
            continue
        problem = None
        shapes = [values[i].shape if i in values else None for i in n.input]
        x = shapes[0]
        if n.op_type == "Transpose" and x is not None:
            perm = next((list(a.ints) for a in n.attribute if a.name == "perm"), None)
            if perm is not None and sorted(perm) != list(range(len(x))):
                problem = f"perm {perm} is not a permutation of the input's {len(x)} axes"
        elif n.op_type in ("BatchNormalization", "InstanceNormalization") and x is not None:
            channels = x[1] if len(x) >= 2 else None
            for k, shape in enumerate(shapes[1:5], start=1):
                if shape is not None and channels is not None and tuple(shape) != (channels,):
                    problem = f"input {k} has shape {list(shape)}, expected [{channels}]"
                    break
        elif n.op_type == "Clip" and any(
            sh is not None and int(np.prod(sh, dtype=object)) != 1 for sh in shapes[1:3]
        ):
            problem = f"min/max must be scalars, got shapes {shapes[1:3]}"
        elif n.op_type == "Conv":
            problem = _conv_operand_problem(n, shapes)
        elif n.op_type in _RECURRENT_GATES:
            problem = _recurrent_operand_problem(n, shapes, nodes, values, origins or {})
        elif n.op_type == "Gemm" and len(shapes) >= 2 and _gemm_k_problem(n, shapes):
            problem = _gemm_k_problem(n, shapes)
        elif n.op_type == "Gemm" and len(shapes) >= 3 and shapes[2] is not None:
            out = values[n.output[0]].shape if n.output[0] in values else None
            c = tuple(shapes[2])
            if out is not None and len(out) == 2 and not _broadcasts_to(c, tuple(out)):
                problem = f"C of shape {list(c)} does not broadcast to the output {list(out)}"
        if problem:
            raise BadInputError(
                errors.INVALID_MODEL, f"{n.op_type} {n.name or n.output[0]!r}: {problem}"
            )


# Gate count per recurrent op: W is [directions, gates x hidden, input].
_RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_RECURRENT_OPERANDS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")


def _recurrent_operand_problem(n, shapes, nodes, values, origins) -> str | None:
    """The batch, direction and hidden sizes of LSTM/GRU/RNN operands must agree (X's batch
    with initial_h's, initial_c's and sequence_lens'): ONNX shape inference checks none of
    them, and input shapes pinned apart (``input_shapes={'input': (2, 512), 'state': (2, 3,
    128)}`` for silero VAD, whose state is [2, batch, 128]) otherwise reach the lowering.
    The message ends with what to change (:func:`_size_hint`)."""
    batch_first = next((a.i for a in n.attribute if a.name == "layout"), 0) == 1
    hidden = next((a.i for a in n.attribute if a.name == "hidden_size"), None)
    gates = _RECURRENT_GATES[n.op_type]
    if hidden is None and len(shapes) > 1 and shapes[1] is not None and len(shapes[1]) == 3:
        hidden = shapes[1][1] // gates if shapes[1][1] is not None else None
    names = dict(zip(_RECURRENT_OPERANDS, n.input, strict=False))
    got = {k: shapes[i] for i, k in enumerate(_RECURRENT_OPERANDS[: len(shapes)])}
    state = ("batch", "directions", "hidden") if batch_first else ("directions", "batch", "hidden")
    expected = {
        "X": ("batch", None, "input") if batch_first else (None, "batch", "input"),
        "W": ("directions", None, "input"),
        "R": ("directions", None, "hidden"),
        "sequence_lens": ("batch",),
        "initial_h": state,
        "initial_c": state,
    }
    seen: dict[str, tuple[int, str]] = {}
    if hidden is not None:
        seen["hidden"] = (hidden, "hidden_size")
    for k, roles in expected.items():
        shape = got.get(k)
        if shape is None or not names.get(k) or len(shape) != len(roles):
            continue
        for axis, (role, d) in enumerate(zip(roles, shape, strict=True)):
            if role is None or d is None:
                continue
            where = f"{k} {list(shape)}{_from_inputs(names[k], nodes, values)}"
            first = seen.setdefault(role, (d, where, (names[k], axis, d)))
            if first[0] != d:
                sides = [first[2], (names[k], axis, d)]
                hint = _size_hint(sides, nodes, values, origins)
                return f"its {role} size is {first[0]} in {first[1]} but {d} in {where}{hint}"
    return None


def _size_hint(sides, nodes, values, origins) -> str:
    """What to change when two operands' sizes disagree (``sides``: (operand, axis, size) of
    each), from where the dims of the graph inputs reaching them come from: a size the
    converter sampled for a dim left dynamic (the model fixes that size elsewhere: it takes
    one size only, to be pinned; named exactly when the operand is the graph input), the
    user's pins (they must fit the model), or the model's own declarations (invalid)."""
    reached = sorted({i for o, _, _ in sides for i in _input_names(o, nodes, values)})
    kinds = {kind for name in reached for kind in origins.get(name, ())}
    if SAMPLED in kinds:
        for (name, axis, _), (_, _, fixed) in (sides, sides[::-1]):
            dims = origins.get(name, ())
            shape = values[name].shape if name in values else None
            if axis < len(dims) and dims[axis] == SAMPLED and shape is not None:
                pin = [
                    str(fixed) if a == axis else f"<d{a}>" if o == SAMPLED else str(n)
                    for a, (n, o) in enumerate(zip(shape, dims, strict=False))
                ]
                others = " (<dK>: the sizes to run at)" if len(pin) > 1 and "<d" in str(pin) else ""
                return (
                    f" (dim {axis} of {name!r} is left dynamic and the converter sampled it; "
                    f"the model fixes it at {fixed} elsewhere, so it takes that size only: "
                    f"pin it with --input-shape {name}:{','.join(pin)}{others})"
                )
        sampled = [n for n in reached if SAMPLED in origins.get(n, ())]
        return (
            f" (a dim of {', '.join(repr(n) for n in sampled)} is left dynamic and the "
            "converter sampled it; the model fixes that size elsewhere, so it takes one size "
            "only: pin it with --input-shape)"
        )
    if PINNED in kinds:
        return " (the input shapes given with --input-shape must fit the model)"
    if BATCH_PINNED in kinds:
        return " (the --batch-size pin must fit the model)"
    if reached:
        return " (as the model declares them: the model is invalid)"
    return ""


def _input_names(name: str, nodes, values) -> list[str]:
    """The graph inputs (not constants) whose values reach ``name``."""
    producer = {o: n for n in nodes for o in n.output}
    found, todo, done = [], [name], set()
    while todo and len(done) < 10_000:
        cur = todo.pop()
        if cur in done or not cur:
            continue
        done.add(cur)
        node = producer.get(cur)
        if node is None:
            v = values.get(cur)
            if v is not None and not v.is_constant:
                found.append(cur)
            continue
        todo.extend(node.input)
    return found


def _from_inputs(name: str, nodes, values) -> str:
    """' (from graph input ...)' for the operand ``name``: the inputs whose shapes reach it
    (the user's pinned shapes are often the cause); ' (graph input ...)' when it is one."""
    producer = {o: n for n in nodes for o in n.output}
    if name not in producer:
        v = values.get(name)
        return f" (graph input {name!r})" if v is not None and not v.is_constant else ""
    found = _input_names(name, nodes, values)
    return f" (from graph input {', '.join(repr(f) for f in sorted(found))})" if found else ""


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Unidirectional (numpy-style) broadcast of ``shape`` to ``target``."""
    if len(shape) > len(target):
        return False
    tail = target[len(target) - len(shape) :]
    return all(d in (1, t) or d is None or t is None for d, t in zip(shape, tail, strict=True))


def _gemm_k_problem(n, shapes) -> str | None:
    a, b = shapes[0], shapes[1]
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    flags = {x.name: x.i for x in n.attribute if x.name in ("transA", "transB")}
    k_a = a[0] if flags.get("transA") else a[1]
    k_b = b[1] if flags.get("transB") else b[0]
    if None not in (k_a, k_b) and k_a != k_b:
        return f"A gives K={k_a} but B gives K={k_b}"
    return None


def _conv_operand_problem(n, shapes) -> str | None:
    x, w = shapes[0], shapes[1] if len(shapes) > 1 else None
    if x is None or w is None or len(x) < 2 or len(w) < 2:
        return None
    group = next((a.i for a in n.attribute if a.name == "group"), 1)
    if None not in (x[1], w[1]) and x[1] != w[1] * group:
        return f"input has {x[1]} channels, weights expect {w[1]} x group {group}"
    if len(shapes) >= 3 and shapes[2] is not None and tuple(shapes[2]) != (w[0],):
        return f"bias shape {list(shapes[2])} does not match {w[0]} filters"
    return None
