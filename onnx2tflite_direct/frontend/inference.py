"""Shape pins, then ONNX shape inference alternating with constant folding to a fixed point.

Large initializers are kept out of ONNX shape inference (it serializes the whole model): the
inference runs on a data-free *skeleton* in which big constants are declared inputs, and
constant folding alternates with inference until nothing changes (folding a Shape makes a
Reshape's target known, which inference needs to type the next op, and so on).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from .. import contrib_schemas, errors
from ..dynamic_shapes import COUNT_PIN
from ..errors import BadInputError
from ..folding import fold_node, is_foldable, static_dims_picked, static_shape
from ..sample_shapes import SampleValues
from .ml_shapes import ml_output_hints
from .passes import ProtoRules, inline_constant_ifs
from .protos import constant_value, dims_compatible, dims_of, tensor_value_info
from .sequences import resolve_static as resolve_static_sequences

# Constants up to this many elements stay inside the skeleton (shape inference reads them).
SMALL_CONST_ELEMENTS = 1024
# Rounds of inference + folding: each round may resolve one more link of a chain of shape
# arithmetic that inference alone cannot see through (EnCodec's padding: Shape -> float Div
# -> Ceil -> Cast -> Pad, then the next layer reads the padded length; 42 rounds). The loop
# runs to its fixed point: every round that goes on has removed a node or added a hint or a
# sample value, so the bound (this plus one per node) is only a guard.
MAX_FOLD_ROUNDS = 8
# ONNX data propagation materializes Range values; above this many the limit is hidden from it.
MAX_PROPAGATED_RANGE = 1 << 22


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
    input_shapes = _store_count_pins(pinned, input_shapes or {})
    for name, dims in input_shapes.items():
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
        for d, v in zip(shape.dim, dims, strict=True):
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


def _store_count_pins(model: onnx.ModelProto, pins: dict) -> dict:
    """Sample sizes of data-dependent outputs (``dynamic_shapes.COUNT_PIN`` keys) go into the
    model's metadata, where :func:`infer_and_fold` finds them (not into ``value_info``: the
    proto also feeds onnxruntime, which must not see a sample as the output's shape); returns
    the input pins."""
    for name, dims in pins.items():
        if name.startswith(COUNT_PIN):
            entry = model.metadata_props.add()
            entry.key, entry.value = name, ",".join(str(int(d)) for d in dims)
    return {k: v for k, v in pins.items() if not k.startswith(COUNT_PIN)}


def _count_hints(pins: dict) -> dict[str, onnx.ValueInfoProto]:
    """Value infos giving data-dependent outputs their sample shapes (dtype left to inference)."""
    hints = {}
    for key, dims in pins.items():
        if key.startswith(COUNT_PIN):
            name = key[len(COUNT_PIN) :]
            hints[name] = helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, dims)
    return hints


# Ops whose output size depends on the input values (lowering/dynamic.py).
DATA_DEPENDENT_OPS = ("NonZero", "Compress", "NonMaxSuppression")


def graph_outputs_of(proto: onnx.ModelProto) -> set[str]:
    return {o.name for o in proto.graph.output}


def _unpinned_counts(nodes, pinned: dict, outputs: set[str]) -> dict[str, onnx.ValueInfoProto]:
    """Shapeless hints for data-dependent outputs without a sample pin: a declared value_info
    shape is a guess of the exporter's, never trusted for a size only the data decides."""
    return {
        n.output[0]: helper.make_tensor_value_info(n.output[0], onnx.TensorProto.UNDEFINED, None)
        for n in nodes
        if n.op_type in DATA_DEPENDENT_OPS
        and n.domain in ("", "ai.onnx")
        and n.output
        and n.output[0]
        and n.output[0] not in pinned
        and n.output[0] not in outputs
    }


# A Slice end at or above this is "to the end" (torch writes 2**63 - 1): right at any size.
OPEN_END = 2**31 - 1


def _runtime_slice_ends(nodes, consts, infos, probe) -> tuple[list, bool]:
    """Slices of a size sampled at small counts (``x[:300]`` of a selection sampled at 2 and
    3 rows) run to the end at both samples, yet stop at 300 when more rows come: their
    constant ends become run-time values (``ends + 0 * Size(x)``, equal at every size), so the
    lowering slices with the end itself instead of a size fixed at the sample."""
    out, changed = [], False
    for n in nodes:
        if not (
            n.op_type == "Slice"
            and n.domain in ("", "ai.onnx")
            and _clamps_a_sample(n, consts, infos, probe)
        ):
            out.append(n)
            continue
        prefix = f"{n.input[2]}/{n.name or n.output[0]}"
        fixed, zero = f"{prefix}/fixed", f"{prefix}/zero"
        consts[fixed] = consts[n.input[2]].astype(np.int64)  # Size is int64
        consts[zero] = np.zeros((), np.int64)
        out.append(helper.make_node("Size", [n.input[0]], [f"{prefix}/size"]))
        out.append(helper.make_node("Mul", [f"{prefix}/size", zero], [f"{prefix}/scaled"]))
        out.append(helper.make_node("Add", [fixed, f"{prefix}/scaled"], [f"{prefix}/runtime"]))
        node = onnx.NodeProto()
        node.CopyFrom(n)
        node.input[2] = f"{prefix}/runtime"
        out.append(node)
        changed = True
    return out, changed


def _inline_empty_guards(nodes, consts, infos, probe, opset_import) -> tuple[list, list[str]]:
    """``if x.numel() == 0: return <empty constant> else: <computation>`` (torchvision's
    batched_nms) over a data-dependent size becomes the computation alone, when that
    computation, run by onnx's reference evaluator on the empty inputs, gives exactly the
    constant: then both branches agree whenever the condition holds. Every input the
    computation reads from outside must be a constant or empty together with ``x`` (its
    sampled dims are ``x``'s), so the evaluation at size 0 is exact."""
    out, inlined = [], []
    for n in nodes:
        if n.op_type == "If" and n.domain in ("", "ai.onnx") and n.input[0] not in consts:
            if _empty_guard_holds(n, nodes, consts, infos, probe, opset_import):
                view = dict(consts)
                view[n.input[0]] = np.array(False)
                branch_nodes, _ = inline_constant_ifs([n], view)
                consts.update(
                    (k, v) for k, v in view.items() if k not in consts and k != n.input[0]
                )
                out.extend(branch_nodes)
                inlined.append(n.name or n.op_type)
                continue
        out.append(n)
    return out, inlined


def _empty_tested(n, nodes, consts) -> str | None:
    """The tensor x of a condition ``numel(x) == 0`` (Cast/Identity around it allowed)."""
    producer = {o: m for m in nodes for o in m.output if o}
    cond = producer.get(n.input[0])
    while cond is not None and cond.op_type in ("Cast", "Identity"):
        cond = producer.get(cond.input[0])
    if cond is None or cond.op_type != "Equal":
        return None
    zero = [i for i in cond.input if i in consts and np.asarray(consts[i]).size == 1]
    other = [i for i in cond.input if i not in consts]
    if len(zero) != 1 or len(other) != 1 or np.asarray(consts[zero[0]]).reshape(-1)[0] != 0:
        return None
    size = producer.get(other[0])
    if size is not None and size.op_type == "Size":
        return size.input[0]
    if size is not None and size.op_type == "ReduceProd" and len(size.input) == 1:
        shape = producer.get(size.input[0])
        if shape is not None and shape.op_type == "Shape" and not shape.attribute:
            return shape.input[0]
    return None


def _sampled_dims(name, infos, probe) -> tuple | None:
    """The (base, probe) sizes of the dims of ``name`` that differ between the samples."""
    a, b = static_shape(name, infos), static_shape(name, probe)
    if a is None or b is None or len(a) != len(b):
        return None
    return tuple(sorted({(x, y) for x, y in zip(a, b, strict=True) if x != y}))


def _empty_guard_holds(n, nodes, consts, infos, probe, opset_import) -> bool:
    branches = {a.name: a.g for a in n.attribute}
    then, other = branches.get("then_branch"), branches.get("else_branch")
    tested = _empty_tested(n, nodes, consts)
    if then is None or other is None or tested is None:
        return False
    if then.initializer or any(m.op_type != "Constant" for m in then.node):
        return False
    empty = {m.output[0]: constant_value(m) for m in then.node}
    if any(o.name not in empty or empty[o.name].size for o in then.output):
        return False
    if any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        for m in other.node
        for a in m.attribute
    ):
        return False
    sizes = _sampled_dims(tested, infos, probe)
    if not sizes:
        return False
    local = {o for m in other.node for o in m.output} | {t.name for t in other.initializer}
    feeds, inputs = {}, []
    for name in dict.fromkeys(i for m in other.node for i in m.input if i and i not in local):
        if name in consts:
            feeds[name] = np.asarray(consts[name])
        elif _sampled_dims(name, infos, probe) == sizes:
            a, b = static_shape(name, infos), static_shape(name, probe)
            vi = infos[name]
            dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
            feeds[name] = np.zeros([0 if x != y else x for x, y in zip(a, b, strict=True)], dtype)
        else:
            return False  # content that the evaluation at size 0 would have to guess
        inputs.append(tensor_value_info(name, feeds[name]))
    graph = helper.make_graph(
        list(other.node), "else", inputs, list(other.output), list(other.initializer)
    )
    try:
        model = helper.make_model(graph, opset_imports=list(opset_import))
        got = ReferenceEvaluator(model).run(None, feeds)
    except Exception:
        return False
    want = [empty[o.name] for o in then.output]
    return all(
        np.asarray(g).shape == w.shape and np.asarray(g).dtype == w.dtype
        for g, w in zip(got, want, strict=True)
    )


def _clamps_a_sample(n, consts, infos, probe) -> bool:
    if len(n.input) < 3 or n.input[2] not in consts or n.input[0] in consts:
        return False
    a, b = static_shape(n.input[0], infos), static_shape(n.input[0], probe)
    if a is None or b is None or len(a) != len(b):
        return False
    ends = consts[n.input[2]].reshape(-1)
    if len(n.input) > 3 and n.input[3]:
        if n.input[3] not in consts:
            return False
        axes = [int(x) + len(a) if x < 0 else int(x) for x in consts[n.input[3]].reshape(-1)]
    else:
        axes = list(range(len(ends)))
    return any(
        a[axis] != b[axis] and min(a[axis], b[axis]) <= end < OPEN_END
        for axis, end in zip(axes, ends.tolist(), strict=False)
    )


def infer_and_fold(
    proto: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    consts: dict[str, np.ndarray],
    real_inputs: list[onnx.ValueInfoProto],
    opsets: dict[str, int],
    rules: ProtoRules,
    probe_shapes: dict[str, tuple[int, ...]] | None = None,
    warnings: list[str] | None = None,
    infer_branch=None,
    probe_out: dict | None = None,
) -> tuple[list[onnx.NodeProto], dict[str, onnx.ValueInfoProto], list[str]]:
    """Rounds of (proto rules, shape inference, sequence resolution, folding) until nothing
    changes; returns the remaining nodes, the value infos and the names of removed nodes.

    ``consts`` grows with every folded value. ``probe_shapes``: the inputs' shapes at another
    sample; shape arithmetic whose value differs there is kept for run time instead of folded
    (``sample_shapes.py``).

    The model's declared ``value_info`` shapes help inference where onnx leaves dims unknown,
    but exporters also declare shapes that the graph does not compute, and onnxruntime ignores
    them. When strict inference rejects a declaration, inference starts over without the
    declarations and ``warnings`` gets one line per disagreeing tensor: the computed shape wins.

    ``infer_branch``: the front end run on an If branch or a Loop body as a model of its own
    (``branch_shapes``), given by ``graph.load_graph``.
    """
    folded: list[str] = []
    declared = DeclaredValueInfo(proto)
    infos: dict[str, onnx.ValueInfoProto] = {}
    pinned = {
        p.key: [int(d) for d in p.value.split(",") if d]
        for p in proto.metadata_props
        if p.key.startswith(COUNT_PIN)
    }
    hints: dict[str, onnx.ValueInfoProto] = _count_hints(pinned)  # data-dependent samples
    hints.update(_unpinned_counts(nodes, hints, graph_outputs_of(proto)))
    probe_hints = _count_hints(probe_shapes or {})
    samples, probe_samples = SampleValues(), SampleValues()  # stay empty without a probe
    graph_outputs = [o.name for o in proto.graph.output]
    for _ in range(MAX_FOLD_ROUNDS + len(nodes)):
        nodes, inlined = rules.run("inline_constant_ifs", (nodes, []), nodes, consts)
        folded.extend(inlined)
        infos = declared.infer(_infer_with, samples, nodes, consts, real_inputs, hints)
        probe = None
        if probe_shapes:
            probe_inputs = _with_shapes(real_inputs, probe_shapes)
            probe = declared.infer(
                _infer_with,
                probe_samples,
                nodes,
                consts,
                probe_inputs,
                {**hints, **probe_hints},
            )
        clamped = False
        if probe is not None and pinned:  # slices that stop short of a data-dependent size
            nodes, clamped = _runtime_slice_ends(nodes, consts, infos, probe)
            nodes, guards = _inline_empty_guards(nodes, consts, infos, probe, proto.opset_import)
            folded.extend(guards)
            clamped |= bool(guards)
        new_hints = rules.run("window_slice_hints", {}, nodes, consts, infos, hints)
        new_hints.update(ml_output_hints(nodes, consts, infos, hints))  # onnx leaves them unknown
        new_hints.update(
            rules.run(
                "control_flow_shapes",
                {},
                nodes,
                consts,
                infos,
                hints,
                proto.opset_import,
                infer_branch,
            )
        )
        new_hints = {k: v for k, v in new_hints.items() if hints.get(k) != v}  # progress only
        hints.update(new_hints)
        nodes, resolved = resolve_static_sequences(
            nodes, consts, infos, opsets.get("", 0), graph_outputs
        )
        folded.extend(resolved)
        remaining = []
        changed = bool(inlined or resolved or new_hints or clamped)
        shape_nodes = {n.output[0]: n for n in nodes if n.op_type == "Shape" and n.output}
        small = _SmallProbe(declared, nodes, consts, real_inputs, hints, infos, probe_shapes)
        for n in nodes:
            out = None
            picked = static_dims_picked(n, shape_nodes, consts, infos, probe)
            if picked is not None and small.differs(n, shape_nodes, consts, picked):
                picked = None  # a size that both samples exceed clips it: x[:, :16].shape[1]
            if picked is not None:
                out = {n.output[0]: picked}
            elif is_foldable(n, consts, infos, probe) and not small.shape_differs(n, consts, infos):
                out = fold_node(n, consts, infos, opsets.get(n.domain, 0))
            if out is None:
                remaining.append(n)
                continue
            consts.update(out)
            folded.append(n.name or n.op_type)
            changed = True
        nodes = remaining
        if probe is not None:
            # (both, not short-circuited: each sample values its own run-time arithmetic)
            found = samples.evaluate(nodes, consts, infos, opsets)
            changed |= probe_samples.evaluate(nodes, consts, probe, opsets) or found
        if not changed:
            break
    if warnings is not None:
        warnings.extend(declared.disagreements(infos))
    if probe_out is not None and probe is not None:  # the value infos at the probe sizes
        probe_out.update(probe)
    return nodes, infos, folded


# The varying dims of the small probes (:class:`_SmallProbe`): 2, and 1 for a clip at 2
# (``x[:, :2]`` is 2 at the samples and at 2, 1 only at 1); 2 first, since some models reject
# a size of 1 (then only size 2 can veto).
SMALL_PROBE_SIZES = (2, 1)


class _SmallProbe:
    """Shape inference with every dim that differs between the two samples at each of
    ``SMALL_PROBE_SIZES``, run only when a Shape/Size of a run-time tensor, or a Gather of
    its dims (``folding.static_dims_picked``), is about to fold by the two samples: a dim
    equal at both because both exceed a clip (``x[:, :16]``: min(A, 16) is 16 at 64 and 96)
    is 2 here, so it stays at run time (folded, the model read 16 at every size below 16:
    silently wrong). A veto only: where inference fails at a small size, or leaves the
    shape unknown, that size does not veto."""

    def __init__(self, declared, nodes, consts, real_inputs, hints, infos, probe_shapes):
        self._args = (declared, nodes, consts, real_inputs, hints, infos, probe_shapes)
        self._probes: list[dict] | None = None

    def _run(self, size: int) -> dict | None:
        declared, nodes, consts, real_inputs, hints, infos, probe_shapes = self._args
        shapes = {}
        for name, other in (probe_shapes or {}).items():
            here = static_shape(name, infos)
            if here is None or len(here) != len(other):
                continue
            shapes[name] = tuple(size if a != b else a for a, b in zip(here, other, strict=True))
        if not shapes:
            return None
        try:
            return _infer_with(
                SampleValues(),
                declared.proto,
                nodes,
                consts,
                _with_shapes(real_inputs, shapes),
                hints,
                declared.trusted,
            )
        except Exception:  # the model takes no such size: no veto
            return None

    def _small(self) -> list[dict]:
        """The value infos at each small size the model takes (lazily: most folds read no
        run-time shape)."""
        if self._probes is None:
            runs = (self._run(size) for size in SMALL_PROBE_SIZES)
            self._probes = [r for r in runs if r is not None]
        return self._probes

    def shape_differs(self, node, consts, infos) -> bool:
        """A Shape/Size of a run-time tensor that folds by the two samples
        (``folding.is_foldable``) but has another value at a small size."""
        if node.op_type not in ("Shape", "Size") or node.input[0] in consts:
            return False
        if self._args[-1] is None:
            return False
        return any(
            static_shape(node.input[0], small) is not None
            and not is_foldable(node, consts, infos, small)
            for small in self._small()
        )

    def differs(self, node, shape_nodes, consts, picked) -> bool:
        for small in self._small():
            # (the dims picked at the small size, compared with themselves: None when unknown)
            got = static_dims_picked(node, shape_nodes, consts, small, small)
            if got is not None and not np.array_equal(got, picked):
                return True
        return False


class DeclaredValueInfo:
    """The model's declared intermediate shapes, trusted until strict inference rejects one."""

    def __init__(self, proto: onnx.ModelProto):
        self.proto = proto
        self.trusted = True

    def infer(self, infer_with, samples, nodes, consts, real_inputs, hints) -> dict:
        try:
            return infer_with(samples, self.proto, nodes, consts, real_inputs, hints, self.trusted)
        except BadInputError as exc:
            if exc.reason_code != errors.SHAPE_INFERENCE_FAILED or not self.retry_without():
                raise
        return infer_with(samples, self.proto, nodes, consts, real_inputs, hints, self.trusted)

    def retry_without(self) -> bool:
        """Stop trusting the declarations; False when there were none to blame."""
        if not self.trusted or not self.proto.graph.value_info:
            return False
        self.trusted = False
        return True

    def disagreements(self, infos) -> list[str]:
        if self.trusted:
            return []
        lines = []
        for vi in self.proto.graph.value_info:
            want, inferred = dims_of(vi), infos.get(vi.name)
            got = dims_of(inferred) if inferred is not None else None
            if want is not None and got is not None and not dims_compatible(want, got):
                lines.append(
                    f"value_info {vi.name!r} is declared {list(want)} but computes to "
                    f"{list(got)}; the computed shape is used"
                )
        return lines or ["declared value_info shapes contradict shape inference; ignored"]


def _infer_with(
    samples: SampleValues, proto, nodes, consts, real_inputs, hints, declared=True
) -> dict:
    """Shape inference with run-time shape arithmetic stood in for by its sample values."""
    skeleton = _skeleton(
        proto,
        samples.skeleton_nodes(nodes),
        samples.known(consts),
        real_inputs,
        list(hints.values()),
        declared,
    )
    infos = _infer(skeleton)
    samples.add_infos(infos)
    return infos


def _with_shapes(inputs, shapes: dict[str, tuple[int, ...]]) -> list[onnx.ValueInfoProto]:
    """Copies of the input value infos with the given inputs' dims replaced."""
    result = []
    for vi in inputs:
        if vi.name in shapes:
            vi = helper.make_tensor_value_info(
                vi.name, vi.type.tensor_type.elem_type, list(shapes[vi.name])
            )
        result.append(vi)
    return result


def _skeleton(model, nodes, consts, real_inputs, hints=(), declared=True) -> onnx.ModelProto:
    """A data-light copy for shape inference: big constants become typed inputs.

    ``hints``: value infos the front end proved itself (see :func:`window_slice_hints`).
    ``declared``: pass the model's own value_info declarations on to inference."""
    inputs = list(real_inputs)
    inits = []
    hidden = _huge_range_limits(nodes, consts)
    for name, arr in consts.items():
        if arr.size <= SMALL_CONST_ELEMENTS and arr.dtype != object and name not in hidden:
            inits.append(numpy_helper.from_array(arr, name))
        else:
            inputs.append(tensor_value_info(name, arr))
    known = {v.name for v in inputs} | {t.name for t in inits}
    hinted = {v.name for v in hints}
    by_hint = {v.name: v for v in hints}
    value_info = [v for v in model.graph.value_info if v.name not in known | hinted]
    value_info = value_info if declared else []
    value_info += [v for v in hints if v.name not in known]
    graph = helper.make_graph(
        nodes,
        model.graph.name or "g",
        inputs,
        # a hinted graph output takes the proved shape (ml_shapes: declared [None, C])
        [by_hint.get(o.name, o) for o in _skeleton_outputs(model, nodes, consts, real_inputs)],
        inits,
        value_info=value_info,
    )
    sk = helper.make_model(graph, opset_imports=list(model.opset_import))
    sk.ir_version = max(model.ir_version, 4)
    return sk


def _huge_range_limits(nodes, consts) -> set[str]:
    """Names of Range limits whose Range would count more than ``MAX_PROPAGATED_RANGE`` values.

    ONNX data propagation computes every value of a constant Range (minutes or out of memory
    for 2**40); hiding the limit leaves the output shape unknown instead.
    """
    hidden = set()
    for n in nodes:
        if n.op_type != "Range" or len(n.input) != 3 or not all(i in consts for i in n.input):
            continue
        start, limit, delta = (consts[i] for i in n.input)
        try:
            count = np.ceil((limit.astype(np.float64) - start) / delta)
            huge = not np.all(np.isfinite(count)) or float(np.max(count)) > MAX_PROPAGATED_RANGE
        except Exception:
            huge = True
        if huge:
            hidden.add(n.input[1])
    return hidden


def _skeleton_outputs(model, nodes, consts, real_inputs) -> list[onnx.ValueInfoProto]:
    """Graph outputs for inference: without their declared shapes when every op has a schema.

    onnx silently keeps a declared dim that contradicts the inferred one; inferring from
    scratch lets :func:`check_declared_outputs` compare the two.
    """
    if not all(contrib_schemas.has_schema(n) for n in nodes):
        return list(model.graph.output)
    produced = {o for n in nodes for o in n.output}
    exact = {vi.name: vi for vi in real_inputs}
    exact.update((name, tensor_value_info(name, arr)) for name, arr in consts.items())
    outputs = []
    for vi in model.graph.output:
        if vi.name in exact and vi.name not in produced:
            # An output that is a constant or an input gets its exact type: onnx would let a
            # shapeless declaration here hide the shape from the nodes that read the tensor.
            outputs.append(exact[vi.name])
            continue
        out = onnx.ValueInfoProto()
        out.CopyFrom(vi)
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
        outputs.append(out)
    return outputs


def merge_declared(declared, inferred):
    """Per dim: the inferred value, else the declared one; a declaration that contradicts
    the computed shape is dropped (``checks.declared_output_warnings`` reports it)."""
    want = dims_of(declared)
    got = dims_of(inferred) if inferred is not None else None
    if want is None:
        return inferred if inferred is not None else declared
    if got is None:
        return declared
    if not dims_compatible(want, got):
        return inferred
    merged = onnx.ValueInfoProto()
    merged.CopyFrom(inferred)
    if not merged.type.tensor_type.elem_type:
        merged.type.tensor_type.elem_type = declared.type.tensor_type.elem_type
    for dim, g, w in zip(merged.type.tensor_type.shape.dim, got, want, strict=True):
        if g is None and w is not None:
            dim.Clear()
            dim.dim_value = w
    return merged


def _infer(skeleton: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """ONNX shape inference; strict for standard ops, lenient when custom domains are present.

    Strict mode turns contradictions (declared vs inferred dtype or rank, broadcast or axis
    errors) into a clear ``shape_inference_failed`` instead of a tensor of unknown shape that
    fails later with a misleading reason. Custom-domain nodes have no schema, so models with
    them fall back to the lenient mode.
    """
    strict = all(n.domain in ("", "ai.onnx") for n in skeleton.graph.node)
    try:
        inferred = contrib_schemas.infer_shapes(skeleton, strict_mode=strict, data_prop=True)
    except Exception as exc:
        # onnx's data propagation mis-infers ranks on some valid graphs once constants are
        # folded (seen on attention subgraphs); the front end folds shape arithmetic itself,
        # so inference without it is the judge of last resort.
        try:
            inferred = contrib_schemas.infer_shapes(skeleton, strict_mode=strict, data_prop=False)
        except Exception:
            msg = " ".join(str(exc).split())
            raise BadInputError(
                errors.SHAPE_INFERENCE_FAILED, f"ONNX shape inference failed: {msg}"
            ) from None
    g = inferred.graph
    return {vi.name: vi for vi in list(g.input) + list(g.value_info) + list(g.output)}
