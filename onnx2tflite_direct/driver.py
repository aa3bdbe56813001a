"""The lowering driver: walks the graph once, applies layout policies, runs lowerings.

For each node the driver asks the op's layout policy which layouts its inputs must have,
materializes them (a RESHAPE when only unit axes move, one TRANSPOSE otherwise, cached per
(tensor, layout)), and hands a :class:`LoweringContext` to the lowering, which emits TFLite
operators. Graph inputs are exposed channel-last when their consumers want channel-last data
(unless the user keeps the ONNX layout).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from . import errors, tfl
from . import layout as L
from .errors import UnsupportedError
from .ir import Graph, Node, Value
from .policies import CHANNEL_LAST, PASSTHROUGH
from .registry import REGISTRY, OpSpec
from .tfl_edit import Names

# A fixed-size output padded with -1 rows (NonMaxSuppression's default) comes with an extra
# output ``<name>` + VALID_COUNT_SUFFIX`` holding how many leading rows are real; validation
# compares those rows with onnxruntime's exact-size output.
VALID_COUNT_SUFFIX = "_valid_count"


@dataclass
class LoweringOptions:
    keep_io_layout: bool = False
    allow_custom_ops: bool = False
    custom_op_allowlist: tuple[str, ...] = ()
    # Per-tensor overrides of the I/O layout decision (ONNX input/output names).
    keep_layout: tuple[str, ...] = ()
    channel_last: tuple[str, ...] = ()
    # ONNX op types to lower with their primitive-builtin decomposition.
    decompose: tuple[str, ...] = ()
    # NonMaxSuppression: fixed-size padded output instead of ONNX's dynamic-size one; reduce
    # [B, C, N] class scores to their per-box maximum before suppression.
    nms_padded_output: bool = False
    nms_class_argmax: bool = False
    # LSTM/GRU/RNN: unroll over the static time steps instead of a WHILE loop.
    unroll_rnn: bool = False
    # --gpu-friendly: lowerings keep the forms the GPU rewrites expect (BROADCAST_TO,
    # STRIDED_SLICE) instead of the ones chosen for XNNPACK (MUL by ones, 5-D SLICEs).
    gpu_friendly: bool = False
    # ONNX-level rewrites (also applied inside If/Loop/Scan bodies).
    fuse: bool = True
    disabled_rewrites: frozenset[str] = frozenset()


@dataclass(slots=True)
class NodeRecord:
    """What happened to one ONNX node (feeds the coverage report)."""

    node: Node
    mode: str = "builtin"  # builtin | custom | folded | unsupported
    tflite_ops: list[str] = field(default_factory=list)
    reason_code: str | None = None
    message: str | None = None
    # Where the node lives: "" for the main graph, "If_0/then_branch" style paths for nodes
    # of converted subgraphs (If/Loop/Scan bodies).
    subgraph: str = ""
    # Remarks that are not errors (a slow path forced by the dtype, a deliberate departure
    # asked for by an option); shown on the node's report row.
    notes: list[str] = field(default_factory=list)


class Driver:
    def __init__(
        self,
        graph: Graph,
        specs: dict[int, OpSpec],
        options: LoweringOptions,
        parent: Driver | None = None,
        path: str = "",
        *,
        report=None,
        lower=None,
    ):
        """``parent``/``path``: set when lowering a nested ONNX graph (an If branch, a Loop
        body) into its own TFLite subgraph; the nested driver shares the root's subgraph list
        and node records so the file and the report see everything.

        ``report`` (the root's ``ReportBuilder``) and ``lower`` (``graph_lowering.lower_graph``)
        are handed down to nested drivers: control-flow lowerings lower their bodies with
        ``driver.lower`` and the body's refusals reach ``driver.report``, without importing
        the layer above them."""
        self.report = parent.report if parent is not None else report
        self.lower = parent.lower if parent is not None else lower
        self.graph = graph
        self.specs = specs
        self.options = options
        self.path = path
        self.sub = tfl.Subgraph(name=path or "main")
        # Further subgraphs (IF/WHILE bodies) in index order; the main graph is index 0.
        self.extra_subgraphs: list[tfl.Subgraph] = (
            parent.extra_subgraphs if parent is not None else []
        )
        self._consumers: dict[str, list[tuple[Node, int]]] | None = None  # see consumers
        self.layout_of: dict[str, L.Layout] = {}
        self.tensor_of: dict[str, tfl.Tensor] = {}
        self._materialized: dict[tuple[str, L.Layout], tfl.Tensor] = {}
        # id(DEQUANTIZE output) -> its quantized constant input (lowering/quantize.py): another
        # layout of such a tensor is a DEQUANTIZE of the constant stored in that layout.
        self.dequantized_constants: dict[int, tfl.Tensor] = {}
        # id(QuantizeLinear output) -> (float value before the zero point, its layout, the
        # lattice): a DequantizeLinear on the same lattice reads that (lowering/quantize.py).
        self.lattice_twins: dict[int, tuple] = {}
        # id(QuantizeLinear output) -> its input tensor when that is already on the Q's lattice
        # (lowering/lattice_moves.py): a DequantizeLinear on the same lattice is that tensor.
        self.lattice_values: dict[int, object] = {}
        # id(Conv output) -> (its exact integer sums, the per-channel scale sx*sw, layout): a
        # QuantizeLinear of it rescales the sums once, as QLinearConv (lowering/conv_lattice.py).
        self.integer_sums: dict[int, tuple] = {}
        self._pref: dict[str, bool] = {}
        self.records: list[NodeRecord] = parent.records if parent is not None else []
        self.io_table: list[dict] = []
        self._current: NodeRecord | None = None
        # Graph outputs a lowering adds beside the ONNX ones (e.g. NMS valid counts):
        # (tensor, signature name, io-table row), exposed after the ONNX outputs.
        self._extra_outputs: list[tuple[tfl.Tensor, str, dict]] = []
        self._names = Names()
        # Values whose sizes may follow a data-dependent count (lowered at sample counts,
        # lowering/dynamic.py): a lowering that builds constants from their sizes computes
        # them at run time instead (lowering/nms.py). Set by graph_lowering for the main graph.
        self.data_dependent: set[str] = set()

    @property
    def consumers(self) -> dict[str, list[tuple[Node, int]]]:
        """Value name -> [(consuming node, input index)]; built on first use (the graph does
        not change during lowering, and many models never ask)."""
        if self._consumers is None:
            self._consumers = self.graph.consumers()
        return self._consumers

    def release_constant_cache(self) -> None:
        """Forget the materialization cache once lowering is over: it holds the re-laid-out
        copies of constants (BERT: 325 MB) that only the emitted tensors still need."""
        self._materialized.clear()

    @contextlib.contextmanager
    def emitting_into(self, sub: tfl.Subgraph):
        """Emit into ``sub`` (a WHILE/IF body a lowering builds op by op) inside the block.

        The body may only read its own inputs and constants; the caller wires it up."""
        saved, self.sub = self.sub, sub
        try:
            yield sub
        finally:
            self.sub = saved

    def add_subgraph(self, sub: tfl.Subgraph) -> int:
        """Append a finished nested subgraph; returns its index in the file (main graph = 0)."""
        self.extra_subgraphs.append(sub)
        return len(self.extra_subgraphs)

    # ---- preferences (backward) -------------------------------------------------------
    def prefers_channel_last(self, name: str, _depth: int = 0) -> bool:
        """Does any consumer chain of ``name`` end in an op that wants channel-last data?"""
        if name in self._pref:
            return self._pref[name]
        self._pref[name] = False  # cycle guard
        result = False
        for node, idx in self.consumers.get(name, []):
            spec = self.specs.get(id(node))
            hint = getattr(spec.layout, "hint", None) if spec else None
            if hint == CHANNEL_LAST and idx == 0:
                result = True
            elif hint == PASSTHROUGH and _depth < 64:
                result = any(self.prefers_channel_last(o, _depth + 1) for o in node.outputs if o)
            if result:
                break
        self._pref[name] = result
        return result

    def all_consumers_accept_inner(self, name: str) -> bool:
        users = self.consumers.get(name, [])
        if not users or name in self.graph.outputs:
            return False
        for node, idx in users:
            spec = self.specs.get(id(node))
            if (
                spec is None
                or spec.accepts_inner is None
                or not spec.accepts_inner(node, idx, self.graph)
            ):
                return False
        return True

    # ---- tensors ----------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        return self._names.take(base)

    def new_tensor(self, base: str, dtype, shape) -> tfl.Tensor:
        return tfl.Tensor(self.unique_name(base), dtype, tuple(shape))

    def const_tensor(self, base: str, array: np.ndarray) -> tfl.Tensor:
        array = np.asarray(array, order="C")  # keeps 0-d arrays 0-d, unlike ascontiguousarray
        return tfl.Tensor(self.unique_name(base), array.dtype, array.shape, data=array)

    def emit(
        self, opcode: str, inputs, outputs, onnx_node: str | None = None, **options
    ) -> tfl.Operator:
        op = tfl.Operator(opcode, list(inputs), list(outputs), options, onnx_node=onnx_node)
        self.sub.operators.append(op)
        if self._current is not None:
            self._current.tflite_ops.append(opcode)
        return op

    def value(self, name: str) -> Value:
        return self.graph.values[name]

    def materialize(self, name: str, target: L.Layout) -> tfl.Tensor:
        """The tensor ``name`` stored in ``target`` layout, emitting at most one TRANSPOSE."""
        value = self.value(name)
        if value.is_constant:
            return self.constant_in(name, target)
        src = self.layout_of[name]
        if src == target:
            return self.tensor_of[name]
        key = (name, target)
        if key in self._materialized:
            return self._materialized[key]
        shape = value.shape
        tensor = self.tensor_of[name]
        quantized = self.dequantized_constants.get(id(tensor))
        if quantized is not None and src.inner is None and target.inner is None:
            out = self.new_tensor(f"{name}/{target}", value.dtype, target.stored_shape(shape))
            perm = np.array(L.transpose_perm(src, target), dtype=np.int32)
            self._dequantize_permuted(quantized, perm, out)
        elif L.same_memory_order(src, target, shape):
            out = self.new_tensor(f"{name}/{target}", value.dtype, target.stored_shape(shape))
            self.reshape(tensor, out)
        elif src.inner is not None:
            out = self._from_inner(name, tensor, src, target)
        elif target.inner is not None:
            raise errors.InternalError(
                errors.INTERNAL_ERROR, f"cannot produce inner layout for {name}"
            )
        else:
            out = self.new_tensor(f"{name}/{target}", value.dtype, target.stored_shape(shape))
            perm = np.array(L.transpose_perm(src, target), dtype=np.int32)
            self.emit("TRANSPOSE", [tensor, self.const_tensor(f"{name}/perm", perm)], [out])
        self._materialized[key] = out
        return out

    def _dequantize_permuted(self, quantized: tfl.Tensor, perm: np.ndarray, out: tfl.Tensor):
        """Weights an ONNX DequantizeLinear computes from an int8 constant, wanted in another
        order (a Conv's OIHW -> OHWI): the constant is stored permuted and dequantized, not
        transposed (or, same memory order, reshaped) at run time. The kernel then reads static
        weights (a run-time TRANSPOSE or RESHAPE made them dynamic: XNNPACK leaves such
        convolutions to the slow reference kernels). Same values: DEQUANTIZE is elementwise."""
        q = quantized.quantization
        axis = int(list(perm).index(q.axis)) if np.size(q.scale) > 1 else 0
        permuted = self.const_tensor(f"{quantized.name}/{out.name}", quantized.data.transpose(perm))
        permuted.quantization = tfl.Quantization(q.scale, q.zero_point, axis)
        self.emit("DEQUANTIZE", [permuted], [out])

    def _from_inner(self, name, tensor, src: L.Layout, target: L.Layout) -> tfl.Tensor:
        value = self.value(name)
        lead = tuple(value.shape[:-1])
        inner = src.inner
        stored_inner = tuple(inner.shape[p] for p in inner.perm)
        split = self.new_tensor(f"{name}/split", value.dtype, lead + stored_inner)
        self.reshape(tensor, split)
        back = [inner.perm.index(k) for k in range(len(inner.perm))]
        perm = list(range(len(lead))) + [len(lead) + b for b in back]
        unsplit = self.new_tensor(f"{name}/unsplit", value.dtype, lead + tuple(inner.shape))
        self.emit(
            "TRANSPOSE",
            [split, self.const_tensor(f"{name}/perm", np.array(perm, np.int32))],
            [unsplit],
        )
        plain = self.new_tensor(f"{name}/onnx", value.dtype, value.shape)
        self.reshape(unsplit, plain)
        ident = L.identity(len(value.shape))
        self._materialized[(name, ident)] = plain
        if target == ident:
            return plain
        out = self.new_tensor(f"{name}/{target}", value.dtype, target.stored_shape(value.shape))
        perm2 = np.array(L.transpose_perm(ident, target), dtype=np.int32)
        self.emit("TRANSPOSE", [plain, self.const_tensor(f"{name}/perm", perm2)], [out])
        return out

    def reshape(self, src: tfl.Tensor, dst: tfl.Tensor) -> None:
        if dst.shape == () and all(d == 1 for d in src.shape):
            # RESHAPE with an empty shape tensor yields [1] in LiteRT; SQUEEZE gives a scalar.
            self.emit("SQUEEZE", [src], [dst])
            return
        shape = self.const_tensor(f"{dst.name}/shape", np.array(dst.shape, dtype=np.int32))
        self.emit("RESHAPE", [src, shape], [dst])

    def constant_in(self, name: str, target: L.Layout | None) -> tfl.Tensor:
        """A constant input as a TFLite constant, broadcast-expanded and stored in ``target``."""
        key = (name, target)
        if key in self._materialized:
            return self._materialized[key]
        array = self.value(name).const
        if target is not None:
            if target.rank > array.ndim:
                array = array.reshape((1,) * (target.rank - array.ndim) + array.shape)
            array = target.apply(array)
        out = self.const_tensor(name, array)
        self._materialized[key] = out
        return out

    # ---- graph walk -------------------------------------------------------------------
    def io_override(self, name: str) -> L.Layout | None:
        """The layout the user forced for an input/output, if any."""
        rank = len(self.value(name).shape)
        if name in self.options.keep_layout:
            return L.identity(rank)
        if name in self.options.channel_last:
            if rank not in (3, 4, 5):
                raise errors.OptionError(
                    f"{{0}} names {name!r} of rank {rank}; only 3-D to 5-D tensors can be "
                    "channel-last",
                    ("channel_last",),
                )
            return L.channel_last(rank)
        return None

    def input_layout(self, name: str) -> L.Layout:
        forced = self.io_override(name)
        if forced is not None:
            return forced
        rank = len(self.value(name).shape)
        if self.options.keep_io_layout or rank < 3 or not self.prefers_channel_last(name):
            return L.identity(rank)
        return L.channel_last(rank)

    def setup_inputs(self) -> None:
        io_names = set(self.graph.inputs) | set(self.graph.outputs)
        for option in ("keep_layout", "channel_last"):  # the message names the option
            for name in getattr(self.options, option):
                if name not in io_names:
                    raise errors.OptionError(
                        f"{{0}} names {name!r}, which is not a model input or output", (option,)
                    )
        for name in self.graph.inputs:
            value = self.value(name)
            if not value.is_static:
                raise UnsupportedError(
                    errors.DYNAMIC_SHAPE_UNSUPPORTED,
                    f"graph input {name!r} has dynamic shape {value.shape}; pin it with "
                    "--input-shape NAME:d0,d1,... or --batch-size N",
                )
            lay = self.input_layout(name)
            t = tfl.Tensor(self.unique_name(name), value.dtype, lay.stored_shape(value.shape))
            self.layout_of[name] = lay
            self.tensor_of[name] = t
            self.sub.inputs.append(t)
            self.sub.input_names.append(name)
            self._io_row(name, "input", lay, t)

    def _io_row(self, name: str, kind: str, lay: L.Layout, tensor: tfl.Tensor) -> None:
        value = self.value(name)
        stored = list(lay.stored_shape(value.shape))
        self.io_table.append(
            {
                "name": name,
                "kind": kind,
                "dtype": np.dtype(value.dtype).name,
                "onnx_shape": list(value.shape),
                "tflite_shape": stored,
                # -1 marks a dimension only known at run time (e.g. a trimmed scan output)
                "shape_signature": list(tensor.shape_signature or stored),
                "perm": list(lay.perm),
            }
        )

    def run_node(self, node: Node, spec: OpSpec) -> None:
        record = NodeRecord(node, subgraph=self.path)
        self.records.append(record)
        self._current = record
        ins = [
            None if not n or self.value(n).is_constant else self.layout_of[n] for n in node.inputs
        ]
        required, outs = spec.layout(node, ins, self.graph, self)
        ctx = LoweringContext(self, node, required, outs)
        decomposed = REGISTRY.decomposition((node.domain, node.op_type))
        if decomposed is not None and node.op_type in self.options.decompose:
            decomposed(ctx)
        else:
            spec.lower(ctx)
        for name in node.outputs:
            if self.graph.used(name) and name not in self.tensor_of:
                raise errors.InternalError(
                    errors.INTERNAL_ERROR,
                    f"lowering of {node.op_type} did not produce {name!r}",
                    node.label,
                )
        self._current = None

    def finish_outputs(self) -> None:
        """Expose graph outputs; constants and passed-through inputs are valid outputs too."""
        for name in self.graph.outputs:
            value = self.value(name)
            if value.is_constant:
                if value.const.size == 0:
                    raise UnsupportedError(
                        errors.UNSUPPORTED_ATTRIBUTE_VALUE,
                        f"graph output {name!r} is an empty constant; LiteRT cannot load "
                        "zero-element constant tensors",
                    )
                t = self.constant_in(name, None)
                lay = L.identity(len(value.shape))
            else:
                src = self.layout_of[name]
                rank = len(value.shape)
                keep = not self.options.keep_io_layout and src in (
                    L.identity(rank),
                    L.channel_last(rank),
                )
                lay = self.io_override(name) or (src if keep else L.identity(rank))
                t = self.materialize(name, lay)
            self.sub.outputs.append(t)
            self.sub.output_names.append(name)
            self._io_row(name, "output", lay, t)
        for tensor, name, row in self._extra_outputs:
            self.sub.outputs.append(tensor)
            self.sub.output_names.append(name)
            self.io_table.append(row)

    def add_extra_output(self, tensor: tfl.Tensor, name: str) -> None:
        """Expose ``tensor`` as a graph output named ``name`` after the ONNX outputs.

        For values a lowering must hand to the user that ONNX has no output for (the valid
        count of a fixed-size NonMaxSuppression result). Stored in ONNX order (no permutation).
        """
        if name in self.graph.values or any(n == name for _, n, _ in self._extra_outputs):
            raise errors.InternalError(
                errors.INTERNAL_ERROR, f"extra output {name!r} collides with a tensor name"
            )
        row = {
            "name": name,
            "kind": "output",
            "dtype": np.dtype(tensor.dtype).name,
            "onnx_shape": list(tensor.shape),
            "tflite_shape": list(tensor.shape),
            "shape_signature": list(tensor.shape_signature or tensor.shape),
            "perm": list(range(len(tensor.shape))),
        }
        self._extra_outputs.append((tensor, name, row))


class LoweringContext:
    """What a lowering sees: its node, inputs in the decided layouts, and an emitter."""

    def __init__(self, driver: Driver, node: Node, required, outs):
        self.driver = driver
        self.node = node
        self.required = list(required) + [None] * (len(node.inputs) - len(required))
        self.outs = outs

    # inputs
    def has_input(self, i: int) -> bool:
        return i < len(self.node.inputs) and bool(self.node.inputs[i])

    def value(self, i: int) -> Value:
        return self.driver.value(self.node.inputs[i])

    def shape(self, i: int) -> tuple[int, ...]:
        return tuple(self.value(i).shape)

    def out_shape(self, i: int = 0) -> tuple[int, ...]:
        return tuple(self.driver.value(self.node.outputs[i]).shape)

    def const(self, i: int) -> np.ndarray | None:
        return self.value(i).const if self.has_input(i) else None

    def attr(self, name: str, default=None):
        return self.node.attrs.get(name, default)

    def in_layout(self, i: int) -> L.Layout:
        lay = self.required[i]
        return lay if lay is not None else L.identity(len(self.shape(i)))

    def input(self, i: int, layout: L.Layout | None = None) -> tfl.Tensor:
        name = self.node.inputs[i]
        target = layout if layout is not None else self.required[i]
        if self.driver.value(name).is_constant:
            return self.driver.constant_in(name, target)
        if target is None:
            target = self.driver.layout_of[name]
        if target.rank > len(self.driver.value(name).shape):
            return self._expanded(name, target)
        return self.driver.materialize(name, target)

    def _expanded(self, name: str, target: L.Layout) -> tfl.Tensor:
        """A lower-rank operand of a broadcasting op, reshaped to the full rank first."""
        value = self.driver.value(name)
        full_shape = (1,) * (target.rank - len(value.shape)) + tuple(value.shape)
        plain = self.driver.materialize(name, L.identity(len(value.shape)))
        if target.inner is not None:
            raise errors.InternalError(errors.INTERNAL_ERROR, "broadcast into inner layout")
        if plain.data is not None and plain.quantization is None and plain.shape_signature is None:
            # a lowering made it a constant (a Q/DQ of a constant): expanded here, stays static
            return self.const_tensor(target.apply(np.asarray(plain.data).reshape(full_shape)))
        stored = target.stored_shape(full_shape)
        if L.same_memory_order(L.identity(target.rank), target, full_shape):
            out = self.driver.new_tensor(f"{name}/expanded", value.dtype, stored)
            self.driver.reshape(plain, out)
            return out
        tmp = self.driver.new_tensor(f"{name}/expanded", value.dtype, full_shape)
        self.driver.reshape(plain, tmp)
        out = self.driver.new_tensor(f"{name}/{target}", value.dtype, stored)
        perm = np.array(L.transpose_perm(L.identity(target.rank), target), np.int32)
        self.emit("TRANSPOSE", [tmp, self.const_tensor(perm, "perm")], [out])
        return out

    # outputs
    def out_layout(self, i: int = 0) -> L.Layout:
        return self.outs[i]

    def output(self, i: int = 0, dtype=None) -> tfl.Tensor:
        name = self.node.outputs[i]
        if name in self.driver.tensor_of:
            return self.driver.tensor_of[name]
        value = self.driver.value(name)
        lay = self.outs[i]
        t = tfl.Tensor(
            self.driver.unique_name(name),
            dtype if dtype is not None else value.dtype,
            lay.stored_shape(value.shape),
        )
        self.driver.layout_of[name] = lay
        self.driver.tensor_of[name] = t
        return t

    def alias_output(self, i: int, tensor: tfl.Tensor, layout: L.Layout) -> None:
        """Make output ``i`` an existing tensor (Identity, Dropout, relabeling Transpose)."""
        name = self.node.outputs[i]
        self.driver.layout_of[name] = layout
        self.driver.tensor_of[name] = tensor

    # emission
    def temp(self, dtype, shape, hint: str = "tmp") -> tfl.Tensor:
        return self.driver.new_tensor(f"{self.node.label}/{hint}", dtype, shape)

    def const_tensor(self, array: np.ndarray, hint: str = "const") -> tfl.Tensor:
        return self.driver.const_tensor(f"{self.node.label}/{hint}", np.asarray(array))

    def emit(self, opcode: str, inputs, outputs, **options) -> tfl.Operator:
        return self.driver.emit(opcode, inputs, outputs, onnx_node=self.node.label, **options)

    def reshape(self, src: tfl.Tensor, shape, hint: str = "reshaped") -> tfl.Tensor:
        if src.data is not None and src.quantization is None and src.shape_signature is None:
            # A constant stays a constant: XNNPACK takes CONV_2D / FULLY_CONNECTED only with
            # static filters, so a run-time RESHAPE of the weights (1-D convs viewed as 2-D)
            # left every such conv outside the delegate, one partition boundary each.
            return self.const_tensor(np.asarray(src.data).reshape(tuple(shape)), hint)
        out = self.temp(src.dtype, shape, hint)
        self.driver.reshape(src, out)
        return out

    def note(self, text: str) -> None:
        """A remark for this node's report row (a slow path, a requested departure)."""
        if self.driver._current is not None:
            self.driver._current.notes.append(text)

    def refuse(self, code: str, message: str):
        raise UnsupportedError(code, f"{self.node.op_type}: {message}", self.node.label)
