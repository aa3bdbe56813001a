"""Dynamic batch: one .tflite whose leading input dimension is resizable at run time.

The lowering works on static shapes. A model whose inputs leave only their first dimension
symbolic (and that the user did not pin) is lowered twice, at batch 2 and at batch 3, and the
two TFLite graphs are compared element by element:

* the operators must be the same, with the same options: the batch then changes no decision;
* a tensor dimension that differs between the two is batch-dependent: it becomes -1 in
  ``shape_signature`` and its stored size is extrapolated to batch 1 (linear in the batch);
* constants must be equal, except output-shape operands (RESHAPE, TRANSPOSE_CONV, BROADCAST_TO,
  FILL): a RESHAPE target with one differing entry gets -1 (LiteRT infers it from the element
  count); otherwise entries that are a multiple of the batch are computed at run time from
  SHAPE of a dynamic input. Any other batch-dependent constant (a slice size, a folded Range
  over the batch ...) cannot be expressed: the model is refused with the operator named and
  the pinning flag suggested.

Batch 2 and 3 rather than 1 and 2: at batch 1 some decisions legitimately differ (a transpose
that only moves a unit axis is a reshape), which would hide nothing but refuse needlessly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from . import errors, tfl
from .errors import UnsupportedError

SAMPLE_BATCHES = (2, 3)


class DynamicBatchModel(Exception):  # noqa: N818 - a signal between front end and pipeline
    """Raised by the front end: these inputs have an unknown batch and nothing else unknown."""

    def __init__(self, inputs: list[str]):
        super().__init__(", ".join(inputs))
        self.inputs = inputs


def dynamic_batch_inputs(model: onnx.ModelProto) -> list[str]:
    """Inputs whose only non-static dimension is the first; [] when any other dim is dynamic
    (the general case stays refused) or no input is dynamic."""
    initializers = {t.name for t in model.graph.initializer}
    names = []
    for vi in model.graph.input:
        if vi.name in initializers or not vi.type.HasField("tensor_type"):
            continue
        dims = vi.type.tensor_type.shape.dim
        static = [d.HasField("dim_value") and d.dim_value > 0 for d in dims]
        if not vi.type.tensor_type.HasField("shape") or not dims or all(static):
            continue
        if not all(static[1:]):
            return []
        names.append(vi.name)
    return names


def lower_with_dynamic_batch(lower: Callable[[int], tuple]) -> tuple:
    """``lower(batch)`` -> (driver, tfl.Model, loader); returns the batch-2 result with its
    batch-dependent dimensions made dynamic (see the module docstring)."""
    first = lower(SAMPLE_BATCHES[0])
    second = lower(SAMPLE_BATCHES[1])
    driver, model, _ = first
    pairs = _pair_tensors(model, second[1])
    for a, b in pairs.values():
        _make_dynamic(a, b)
    _relax_shape_operands(model, second[1])
    for row in driver.io_table:
        for key in ("onnx_shape", "tflite_shape"):
            if row[key]:
                row[key][0] = 1
        row["shape_signature"] = [-1, *row["tflite_shape"][1:]]
    return first


def _refuse(message: str):
    raise UnsupportedError(
        errors.DYNAMIC_SHAPE_UNSUPPORTED,
        f"dynamic batch: {message}; pin the batch with --batch-size N (or --input-shape)",
    )


def _pair_tensors(a: tfl.Model, b: tfl.Model) -> dict[int, tuple[tfl.Tensor, tfl.Tensor]]:
    """Tensor of ``a`` -> its counterpart in ``b``, checking that the graphs match op by op."""
    if len(a.subgraphs) != len(b.subgraphs):
        _refuse("the graph structure depends on the batch size")
    pairs: dict[int, tuple[tfl.Tensor, tfl.Tensor]] = {}

    def pair(x: tfl.Tensor | None, y: tfl.Tensor | None, where: str) -> None:
        if (x is None) != (y is None):
            _refuse(f"{where}: an operand exists at one batch size only")
        if x is None:
            return
        known = pairs.get(id(x))
        if known is not None and known[1] is not y and not _same_constant(known[1], y):
            _refuse(f"{where}: tensor {x.name!r} pairs inconsistently")
        if x.dtype != y.dtype or x.rank != y.rank:
            _refuse(f"{where}: tensor {x.name!r} changes dtype or rank with the batch")
        pairs[id(x)] = (x, y)

    for sa, sb in zip(a.subgraphs, b.subgraphs, strict=True):
        if len(sa.operators) != len(sb.operators):
            _refuse("the number of operators depends on the batch size")
        for x, y in zip(sa.inputs + sa.outputs, sb.inputs + sb.outputs, strict=False):
            pair(x, y, f"subgraph {sa.name!r} I/O")
        for oa, ob in zip(sa.operators, sb.operators, strict=True):
            where = f"{oa.opcode} (from ONNX node {oa.onnx_node!r})"
            if (
                oa.opcode != ob.opcode
                or len(oa.inputs) != len(ob.inputs)
                or len(oa.outputs) != len(ob.outputs)
                or not _same_options(oa.options, ob.options)
            ):
                _refuse(f"{where}: the operator differs between batch sizes")
            for x, y in zip(oa.inputs + oa.outputs, ob.inputs + ob.outputs, strict=True):
                pair(x, y, where)
    return pairs


def _same_options(x: dict, y: dict) -> bool:
    if x.keys() != y.keys():
        return False
    return all(np.array_equal(np.asarray(x[k]), np.asarray(y[k])) for k in x)


def _same_constant(x: tfl.Tensor, y: tfl.Tensor) -> bool:
    return x.data is not None and y.data is not None and np.array_equal(x.data, y.data)


def _make_dynamic(a: tfl.Tensor, b: tfl.Tensor) -> None:
    """Mark the batch-dependent dims of activation ``a`` (batch 2) against ``b`` (batch 3)."""
    if a.shape == b.shape:
        return
    if a.data is not None:
        return  # constants are judged by _relax_reshape_targets
    dims, signature = [], []
    lo, hi = SAMPLE_BATCHES
    for da, db in zip(a.shape, b.shape, strict=True):
        step = (db - da) // (hi - lo)
        at_one = da - step * (lo - 1)
        if da == db:
            dims.append(da)
            signature.append(da)
        elif (db - da) % (hi - lo) or step <= 0 or at_one <= 0:
            _refuse(f"tensor {a.name!r} is {a.shape} at batch {lo} but {b.shape} at batch {hi}")
        else:
            dims.append(at_one)
            signature.append(-1)
    a.shape = tuple(dims)
    a.shape_signature = tuple(signature)


# (op, operand) pairs that hold an output shape: a batch-dependent entry is computed at run
# time from the batch (RESHAPE prefers a -1 entry, which needs no extra ops).
SHAPE_OPERANDS = {("RESHAPE", 1), ("TRANSPOSE_CONV", 0), ("BROADCAST_TO", 1), ("FILL", 0)}


def _relax_shape_operands(a: tfl.Model, b: tfl.Model) -> None:
    """Constants that differ: only output-shape operands are expressible (see SHAPE_OPERANDS)."""
    batch = _RuntimeBatch(a.subgraphs[0])
    for index, (sa, sb) in enumerate(zip(a.subgraphs, b.subgraphs, strict=True)):
        for oa, ob in zip(sa.operators, sb.operators, strict=True):
            for k, (x, y) in enumerate(zip(oa.inputs, ob.inputs, strict=True)):
                if x is None or x.data is None or _same_constant(x, y):
                    continue
                where = f"{oa.opcode} (from ONNX node {oa.onnx_node!r})"
                if (oa.opcode, k) not in SHAPE_OPERANDS or x.data.shape != y.data.shape:
                    _refuse(f"{where}: operand {k} holds batch-dependent values")
                differ = np.flatnonzero(x.data != y.data)
                if oa.opcode == "RESHAPE" and len(differ) == 1 and not np.any(x.data == -1):
                    target = x.data.copy()
                    target[differ[0]] = -1
                    oa.inputs[k] = tfl.Tensor(f"{x.name}/dynamic", x.dtype, x.shape, data=target)
                elif index == 0 and x.dtype == np.int32 and x.data.ndim == 1:
                    oa.inputs[k] = batch.shape_tensor(x, y, where)
                else:
                    _refuse(f"{where}: operand {k} holds batch-dependent values")
    batch.insert_ops()


class _RuntimeBatch:
    """Builds shape vectors whose batch-dependent entries (``k * batch``) come from the
    run-time batch: SHAPE of a dynamic graph input, its first entry, times ``k``."""

    def __init__(self, sub: tfl.Subgraph):
        self.sub = sub
        self.ops: list[tfl.Operator] = []
        self._batch: tfl.Tensor | None = None
        self._scaled: dict[int, tfl.Tensor] = {}

    def _const(self, name: str, values) -> tfl.Tensor:
        data = np.asarray(values, np.int32)
        return tfl.Tensor(f"dynamic_batch/{name}", np.int32, data.shape, data=data)

    def _emit(self, opcode: str, inputs, shape, name: str, **options) -> tfl.Tensor:
        out = tfl.Tensor(f"dynamic_batch/{name}", np.int32, shape, shape_signature=None)
        self.ops.append(tfl.Operator(opcode, list(inputs), [out], options))
        return out

    def scaled(self, k: int) -> tfl.Tensor:
        if self._batch is None:
            source = next(
                (t for t in self.sub.inputs if t.shape_signature and t.shape_signature[0] == -1),
                None,
            )
            if source is None:
                _refuse("no input carries the batch")
            dims = self._emit("SHAPE", [source], (source.rank,), "input_shape", out_type="INT32")
            self._batch = self._emit(
                "SLICE", [dims, self._const("zero", [0]), self._const("one", [1])], (1,), "batch"
            )
        if k not in self._scaled:
            self._scaled[k] = (
                self._batch
                if k == 1
                else self._emit(
                    "MUL",
                    [self._batch, self._const(f"k{k}", [k])],
                    (1,),
                    f"batch_x{k}",
                    fused_activation_function="NONE",
                )
            )
        return self._scaled[k]

    def shape_tensor(self, x: tfl.Tensor, y: tfl.Tensor, where: str) -> tfl.Tensor:
        lo, hi = SAMPLE_BATCHES
        pieces, run = [], []
        for va, vb in zip(x.data.tolist(), y.data.tolist(), strict=True):
            if va == vb:
                run.append(va)
                continue
            k = (vb - va) // (hi - lo)
            if k <= 0 or va != k * lo or vb != k * hi:
                _refuse(
                    f"{where}: a shape entry ({va} at batch {lo}, {vb} at {hi}) is not a "
                    "multiple of the batch"
                )
            if run:
                pieces.append(self._const(f"{x.name}/part{len(pieces)}", run))
                run = []
            pieces.append(self.scaled(k))
        if run:
            pieces.append(self._const(f"{x.name}/part{len(pieces)}", run))
        return self._emit(
            "CONCATENATION",
            pieces,
            x.shape,
            f"{x.name}/runtime",
            axis=0,
            fused_activation_function="NONE",
        )

    def insert_ops(self) -> None:
        """The shape arithmetic reads only graph inputs: it runs first."""
        self.sub.operators[:0] = self.ops
