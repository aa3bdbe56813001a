"""Size-dependent constants of the dynamic-shape lowering: operands that differ between the
lowerings at sample sizes become what holds at every size (see ``dynamic_shapes.py``).

A RESHAPE target with one differing entry gets -1; a SLICE size running to the end gets -1;
a GATHER index or STRIDED_SLICE bound at a fixed distance from the end counts from the
run-time end; a modulus wrapping a run-time GATHER index is the axis' run-time size; other
shape operands and small integer operands are computed at run time
(``dynamic_runtime_dims``); a constant of one value whose shape changes is FILL at such a
run-time shape. Any other differing constant is refused.
"""

from __future__ import annotations

import numpy as np

from . import tfl
from .dynamic_runtime_dims import RuntimeDims
from .dynamic_symbols import refuse


def same_constant(x: tfl.Tensor, y: tfl.Tensor) -> bool:
    return x.data is not None and y.data is not None and np.array_equal(x.data, y.data)


# (op, operand) pairs that hold an output shape -> the operand whose dims the shape follows
# (None: none). A size-dependent entry is computed at run time from those dims when it is an
# integer multiple of one or two of them (exact at every size), else from the input symbols;
# RESHAPE prefers a single -1 entry, which needs no extra ops.
SHAPE_OPERANDS = {
    ("RESHAPE", 1): 0,
    ("BROADCAST_TO", 1): 0,
    ("RESIZE_BILINEAR", 1): 0,
    ("RESIZE_NEAREST_NEIGHBOR", 1): 0,
    ("TRANSPOSE_CONV", 0): 2,
    ("FILL", 0): None,
}


def relax_constants(model: tfl.Model, variants, symbols, sources) -> None:
    """Constants that differ: only shape operands and slice extents are expressible."""
    for index, sa in enumerate(model.subgraphs):
        runtime = RuntimeDims(sa, symbols, sources if index == 0 else {})
        others = [v.subgraphs[index] for v in variants]
        runtime.others = others
        for n, oa in enumerate(sa.operators):
            for k, x in enumerate(oa.inputs):
                if x is None or x.data is None:
                    continue
                other_ops = [o.operators[n] for o in others]
                ys = [o.inputs[k] for o in other_ops]
                if all(same_constant(x, y) for y in ys):
                    continue
                where = f"{oa.opcode} (from ONNX node {oa.onnx_node!r})"
                if any(x.data.shape != y.data.shape for y in ys):
                    oa.inputs[k] = _filled([oa, *other_ops], k, runtime, where)
                    continue
                oa.inputs[k] = _relaxed([oa, *other_ops], k, runtime, where, [sa, *others])
        runtime.insert_ops()


def _relaxed(ops: list[tfl.Operator], k: int, runtime, where: str, subs=()) -> tfl.Tensor:
    """The replacement for operand ``k`` of ``ops[0]`` (``ops[1:]``: the same operator in the
    lowerings at other sizes; ``subs``: their subgraphs)."""
    op, x, ys = ops[0], ops[0].inputs[k], [o.inputs[k] for o in ops[1:]]
    if op.opcode == "FLOOR_MOD" and k == 1 and x.data.size == 1:
        gathered = _gathered(ops, subs)
        if gathered is not None:  # a runtime GATHER index wrapped by its (dynamic) axis size
            return runtime.value_tensor(ops, k, where, follows=gathered)
    if op.opcode == "GATHER" and k == 1:
        tail = _from_the_end(ops)
        if tail is not None:  # a negative index (the last token) into a run-time axis
            return runtime.from_the_end(ops, *tail)
    differ = sorted({int(i) for y in ys for i in np.flatnonzero(x.data != y.data)})
    if op.opcode == "RESHAPE" and k == 1 and len(differ) == 1 and not np.any(x.data == -1):
        return _with_entries(x, differ, -1)
    if op.opcode == "SLICE" and k == 2 and all(_slices_to_end(o, differ) for o in ops):
        return _with_entries(x, differ, -1)
    if op.opcode == "STRIDED_SLICE" and k in (1, 2):
        counted = _counted_from_end(ops, k, differ)
        if counted is not None:  # x[:, -1] folded to length - 1: negative bounds instead
            return counted
    if (op.opcode, k) in SHAPE_OPERANDS and x.dtype == np.int32 and x.data.ndim == 1:
        return runtime.shape_tensor(ops, k, SHAPE_OPERANDS[op.opcode, k], where)
    if (
        np.dtype(x.dtype) in (np.int32, np.int64)
        and x.data.ndim <= 1
        and x.data.size <= 8
        and runtime.expressible_values(ops, k)  # multiples of data-dependent sizes only
    ):
        return runtime.value_tensor(ops, k, where)
    refuse(f"{where}: operand {k} holds values that depend on the input sizes")


# Dtypes LiteRT's FILL kernel writes.
_FILL_DTYPES = frozenset(
    map(np.dtype, ("float32", "float16", "int32", "int64", "int8", "int16", "bool"))
)


def _filled(ops: list[tfl.Operator], k: int, runtime, where: str) -> tfl.Tensor:
    """Operand ``k`` of ``ops[0]``, a constant whose shape changes with the input sizes, as
    FILL at a run-time shape: possible when it holds one value, the same in every lowering
    (a ConstantOfShape over a size the front end folded, a loop's zero-initialised output
    buffer [T, batch]); its size-dependent dims are computed from SHAPE as any shape operand
    is (``RuntimeDims``). Anything else is refused."""
    x, ys = ops[0].inputs[k], [o.inputs[k] for o in ops[1:]]
    flat = [np.asarray(t.data).reshape(-1) for t in (x, *ys)]
    if (
        x.quantization is not None
        or np.dtype(x.dtype) not in _FILL_DTYPES
        or any(t.data.ndim != x.data.ndim or t.dtype != x.dtype for t in ys)
        or any(f.size == 0 for f in flat)
        or any(not np.all(f == flat[0][0]) for f in flat)
    ):
        refuse(f"{where}: operand {k} changes shape with the input sizes")
    shapes = [
        tfl.Tensor(
            f"{x.name}/dims", np.int32, (x.data.ndim,), data=np.array(t.data.shape, np.int32)
        )
        for t in (x, *ys)
    ]
    fills = [
        tfl.Operator("FILL", [s, None], [t], onnx_node=o.onnx_node)
        for s, t, o in zip(shapes, (x, *ys), ops, strict=True)
    ]
    dims = runtime.shape_tensor(fills, 0, None, where, reader=ops[0])
    value = tfl.Tensor(f"{x.name}/value", x.dtype, (), data=np.asarray(flat[0][0], x.dtype))
    signature = tuple(
        -1 if any(t.data.shape[a] != n for t in ys) else n for a, n in enumerate(x.data.shape)
    )
    out = runtime.ed.temp(f"{x.name}/filled", x.dtype, x.data.shape, shape_signature=signature)
    runtime.ed.insert_before(ops[0], [runtime.ed.op("FILL", [dims, value], [out])])
    return out


def _from_the_end(ops: list[tfl.Operator]) -> tuple[np.ndarray, int] | None:
    """(offsets, axis) when GATHER's constant indices are the gathered axis' size minus the
    same offsets in every lowering (``x[:, -1]`` folded at each sample size); else None."""
    params = ops[0].inputs[0]
    axis = int(ops[0].options.get("axis", 0)) % max(params.rank, 1)
    offsets = [
        np.asarray(o.inputs[1].data, np.int64) - o.inputs[0].shape[axis]
        for o in ops
        if o.inputs[0].rank == params.rank
    ]
    if len(offsets) != len(ops) or not np.all(offsets[0] < 0):
        return None
    if any(not np.array_equal(offsets[0], f) for f in offsets[1:]):
        return None
    return offsets[0], axis


def _counted_from_end(ops: list[tfl.Operator], k: int, differ: list[int]) -> tfl.Tensor | None:
    """STRIDED_SLICE begin (``k`` 1) or end (2) entries that are the input's size plus the
    same offset in every lowering, with a positive stride: begins become that negative offset
    (counted from the end at run time), ends the offset or, at 0, past the end (clamped)."""
    op, x = ops[0], ops[0].inputs[k]
    strides = op.inputs[3] if len(op.inputs) > 3 else None
    if op.options.get("offset") or strides is None or strides.data is None or x.data.ndim != 1:
        return None
    if op.options.get("new_axis_mask") or op.options.get("ellipsis_mask"):
        return None  # entries would not index the input's dims one to one
    data = x.data.copy()
    for e in differ:
        if strides.data[e] <= 0:
            return None
        offsets = {int(o.inputs[k].data[e]) - o.inputs[0].shape[e] for o in ops}
        if len(offsets) != 1 or offsets.pop() > (-1 if k == 1 else 0):
            return None
    for e in differ:
        off = int(x.data[e]) - op.inputs[0].shape[e]
        data[e] = off if off < 0 else np.iinfo(np.int32).max
    return tfl.Tensor(f"{x.name}/from_end", x.dtype, x.shape, data=data)


def _gathered(ops: list[tfl.Operator], subs) -> list[tfl.Tensor] | None:
    """Per lowering, the tensor a GATHER reads with the FLOOR_MOD ``ops`` output as its
    indices (negative indices wrapped by the gathered axis' size: a dynamic axis makes the
    modulus that axis' run-time size); None when the indices go elsewhere."""
    found = []
    for op, sub in zip(ops, subs, strict=False):
        reader = next(
            (
                o
                for o in sub.operators
                if o.opcode == "GATHER" and len(o.inputs) > 1 and o.inputs[1] is op.outputs[0]
            ),
            None,
        )
        if reader is None:
            return None
        found.append(reader.inputs[0])
    return found if len(found) == len(ops) else None


def _with_entries(x: tfl.Tensor, entries: list[int], value: int) -> tfl.Tensor:
    data = x.data.copy()
    data[entries] = value
    return tfl.Tensor(f"{x.name}/dynamic", x.dtype, x.shape, data=data)


def _slices_to_end(op: tfl.Operator, entries: list[int]) -> bool:
    """Does every differing SLICE size run from its begin to the end of the input?"""
    source, begin, size = op.inputs[0], op.inputs[1], op.inputs[2]
    if begin.data is None:
        return False
    return all(begin.data[e] + size.data[e] == source.shape[e] for e in entries)
