"""``--gpu-friendly`` rewrites for operand forms the GPU delegate's parsers reject.

Why a module of its own: these operators have a GPU kernel, and the delegate's rules
(``gpu_rules``) accept their builtin, version and ranks; what they reject is how an operand
is held: a constant of a shape the parser cannot read, a constant where a runtime tensor is
wanted, or the constant on the side the parser does not take. Each rule below fires only when
the very check that rejects the operator (called from ``gpu_rules``) does, and yields
operators the same rules accept; the driver (``gpu_friendly``) re-checks them. Every rule only
moves or selects elements, or regroups the same products and sums, so results are unchanged.

- ``constant_operand_view``: a binary elementwise op (ADD, MUL, SUB, ...) whose constant
  operand is 4-D with batch != 1 (MB ParseInputsWithConstTensor reads a constant as a
  scalar, a per-channel vector, HxW, HxWxC or 1xHxWxC) runs on a 4-D view with batch 1: the
  output's unit axes are dropped and neighbouring axes that both operands keep (or both
  broadcast) are merged, so the constant becomes 1xHxWxC; a runtime operand that broadcasts
  is TILEd to the view first. When the axes cannot be grouped into three, the constant is
  expanded to the output's shape first (at most ``MAX_EXPANDED`` elements).
- ``fold_constant_transpose``: a TRANSPOSE of a constant (GC TRANSPOSE takes one runtime
  input; an Einsum lowering's transposed weight) becomes the transposed constant.
- ``batch_matmul_constant_slices``: BATCH_MATMUL with one constant operand that is not a 2-D
  right-hand side (MB BatchedMatMulOperationParser turns only a 2-D constant rhs into a 1x1
  convolution) becomes BATCH_MATMULs by 2-D constant right-hand sides: a constant whose batch
  broadcasts is one 2-D matrix; a constant with one batch axis of n > 1 is n matrices, the
  runtime operand SPLIT along that axis and the products joined by CONCATENATION (at most
  ``MAX_SLICES``). A constant left-hand side uses (A @ Y)^T = Y^T @ A^T between two
  TRANSPOSEs; adj_x / adj_y are folded into the constant or into those TRANSPOSEs (the GPU
  BATCH_MATMUL parser reads neither flag, so none of the operators made here sets one).
- ``batch_matmul_adjoint_transpose``: BATCH_MATMUL with adj_x / adj_y (the GPU parser reads
  neither flag: ``gpu_rules.batch_matmul_adjoint``) -> TRANSPOSE of each flagged runtime
  operand (a flagged constant stored transposed) + BATCH_MATMUL without flags.
- ``gather_elements_flat``: a GATHER with batch_dims over every axis before the last and
  constant indices (ONNX GatherElements on the last axis: DeBERTa's relative-position
  lookups; the GPU takes version-1 GATHERs by 1-D int32 indices) becomes one GATHER of the
  flattened data by flat indices (row * width + index) between RESHAPEs.
- ``gather_table_by_concatenation``: GATHER of a constant float32 table by runtime indices
  (an embedding lookup; GatherOperationParser::Parse reads the data as a runtime tensor) reads
  the table from a CONCATENATION of two 4-D constant pieces (:func:`lookup`, also used by
  ``gpu_rewrites_int``'s id lookups).
- ``scatter_nd_select_by_gather``: ONNX ScatterND by constant distinct coordinates, lowered as
  SCATTER_ND (no GPU parser) of the updates, SCATTER_ND of ones, GREATER 0 and SELECT_V2 of
  the data, becomes CONCATENATION of the data's rows and the updates + GATHER by a constant
  row map (the SELECT_V2 is replaced; the count chain becomes dead and is removed).
"""

from __future__ import annotations

import numpy as np

from . import gpu_rules, tfl
from .gpu_rewrites import MAX_GPU_RANK, Editor, Rule, delegable, static

# The binary elementwise builtins whose GPU parser reads a constant operand through
# ParseInputsWithConstTensor (gpu_rules.constant_operand).
_BINARY = frozenset(
    """ADD MUL SUB DIV MAXIMUM MINIMUM POW SQUARED_DIFFERENCE FLOOR_DIV FLOOR_MOD""".split()
)

# A constant expanded to the output's shape holds at most this many elements (4 MiB float32).
MAX_EXPANDED = 1 << 20

# A BATCH_MATMUL by a constant with a batch axis becomes at most this many 2-D products.
MAX_SLICES = 32

_FLOATS = (np.dtype(np.float32), np.dtype(np.float16))


def _plain_float(*tensors: tfl.Tensor) -> bool:
    return all(t.dtype in _FLOATS and t.quantization is None for t in tensors)


def _one_constant_operand(op: tfl.Operator, opcodes, rejects) -> bool:
    """A two-input, one-output op of ``opcodes`` that the rule check ``rejects`` refuses,
    with exactly one constant operand (the form the operand rewrites below take)."""
    if op.opcode not in opcodes or len(op.inputs) != 2 or len(op.outputs) != 1:
        return False
    a, b = op.inputs
    if a is None or b is None or (a.data is None) == (b.data is None):
        return False
    return rejects(op, None) is not None


# ----------------------------------------------------------------------------------------------
# constant_operand_view
# ----------------------------------------------------------------------------------------------


def _groups(out_shape, const_shape, x_shape) -> list[list]:
    """Axes of the output that are not 1, neighbours merged when both operands keep them or
    both broadcast them alike: [size, constant keeps it, runtime keeps it] per group."""
    groups: list[list] = []
    for o, c, x in zip(out_shape, const_shape, x_shape, strict=True):
        if o == 1:
            continue
        kind = (c == o, x == o)
        if groups and (groups[-1][1], groups[-1][2]) == kind:
            groups[-1][0] *= o
        else:
            groups.append([o, *kind])
    return groups


def _constant_operand_view(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """Binary elementwise op with a constant the parser cannot read -> the same op on a
    1xHxWxC view (+ TILE of a broadcasting runtime operand), RESHAPEd back."""
    if not _one_constant_operand(op, _BINARY, gpu_rules.constant_operand):
        return None
    a, out = op.inputs[0], op.outputs[0]
    ci = 0 if a.data is not None else 1
    c, x = op.inputs[ci], op.inputs[1 - ci]
    if not static(x, out) or not _plain_float(x, c, out) or out.rank > MAX_GPU_RANK:
        return None
    if c.rank > out.rank or x.rank > out.rank or 0 in out.shape:
        return None
    cp = (1,) * (out.rank - c.rank) + tuple(c.shape)
    xp = (1,) * (out.rank - x.rank) + tuple(x.shape)
    if any(d not in (1, o) for s in (cp, xp) for d, o in zip(s, out.shape, strict=True)):
        return None
    data = c.data.reshape(cp)
    groups = _groups(out.shape, cp, xp)
    if len(groups) > 3:  # the constant expanded: only the runtime operand's pattern remains
        if int(np.prod(out.shape)) > MAX_EXPANDED:
            return None
        cp = tuple(out.shape)
        data = np.broadcast_to(data, cp)
        groups = _groups(out.shape, cp, xp)
        if len(groups) > 3:
            return None
    pad = [1] * (MAX_GPU_RANK - len(groups))
    view = tuple(pad + [g[0] for g in groups])
    c_view = tuple(pad + [g[0] if g[1] else 1 for g in groups])
    x_view = tuple(pad + [g[0] if g[2] else 1 for g in groups])
    const = ed.const(f"{c.name}/view", np.ascontiguousarray(data).reshape(c_view))
    ops: list[tfl.Operator] = []
    src = x
    if x_view != tuple(x.shape):
        src, ops = ed.shared_view(x, x_view, op)
    if x_view != view:
        tiled = ed.temp(f"{x.name}/tiled", x.dtype, view)
        multiples = np.array([v // s for v, s in zip(view, x_view, strict=True)], np.int32)
        ops.append(
            ed.op("TILE", [src, ed.const(f"{tiled.name}/multiples", multiples)], [tiled], op)
        )
        src = tiled
    result = ed.temp(f"{out.name}/view", out.dtype, view)
    inputs = [const, src] if ci == 0 else [src, const]
    ops.append(tfl.Operator(op.opcode, inputs, [result], dict(op.options), onnx_node=op.onnx_node))
    ops.append(ed.reshape(result, out, op))
    return ops


# ----------------------------------------------------------------------------------------------
# fold_constant_transpose
# ----------------------------------------------------------------------------------------------


def _fold_constant_transpose(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """TRANSPOSE of a constant by a constant permutation -> the transposed constant itself."""
    if op.opcode != "TRANSPOSE" or len(op.inputs) != 2 or len(op.outputs) != 1:
        return None
    src, perm, out = op.inputs[0], op.inputs[1], op.outputs[0]
    if src is None or perm is None or src.data is None or perm.data is None:
        return None
    if not static(out) or id(out) in ed.io or src.quantization is not None:
        return None
    axes = [int(p) for p in np.asarray(perm.data).reshape(-1)]
    if sorted(axes) != list(range(src.rank)):
        return None
    folded = np.ascontiguousarray(np.transpose(src.data, axes))
    if folded.shape != tuple(out.shape):
        return None
    out.data = folded
    return []


# ----------------------------------------------------------------------------------------------
# batch_matmul_constant_slices
# ----------------------------------------------------------------------------------------------


def _swap_last(ed: Editor, t: tfl.Tensor, like: tfl.Operator, dst: tfl.Tensor | None = None):
    """TRANSPOSE swapping the last two axes of runtime ``t``: (result, [op])."""
    perm = list(range(t.rank))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    shape = tuple(t.shape[p] for p in perm)
    if dst is None:
        dst = ed.temp(f"{t.name}/swapped", t.dtype, shape, quantization=t.quantization)
    const = ed.const(f"{dst.name}/perm", np.array(perm, np.int32))
    return dst, [ed.op("TRANSPOSE", [t, const], [dst], like)]


def _products(ed: Editor, op, x: tfl.Tensor, w: np.ndarray, out: tfl.Tensor):
    """``out`` = ``x`` (runtime, [..., M, K]) @ ``w`` (constant, [..., K, N]) as BATCH_MATMULs
    by 2-D constant right-hand sides; None when the constant's batch does not allow it."""
    rank = out.rank
    if x.rank != rank or w.ndim > rank:
        return None
    wb = (1,) * (rank - w.ndim) + tuple(w.shape[:-2])
    k, n = w.shape[-2:]
    heavy = [i for i, d in enumerate(wb) if d != 1]

    def matmul(src, dst, mat):
        rhs = ed.const(f"{dst.name}/rhs", np.ascontiguousarray(mat))
        return ed.op("BATCH_MATMUL", [src, rhs], [dst], op, adj_x=False, adj_y=False)

    if not heavy:
        return [matmul(x, out, w.reshape(k, n))]
    if len(heavy) != 1 or wb[heavy[0]] > MAX_SLICES:
        return None
    axis, count = heavy[0], wb[heavy[0]]
    mats = w.reshape(count, k, n)
    ops: list[tfl.Operator] = []
    part_shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape))
    if x.shape[axis] == count:
        parts = [ed.temp(f"{x.name}/part{i}", x.dtype, part_shape) for i in range(count)]
        axis_t = ed.const(f"{x.name}/split_axis", np.array(axis, np.int32))
        ops.append(ed.op("SPLIT", [axis_t, x], parts, op, num_splits=count))
    elif x.shape[axis] == 1:
        parts = [x] * count
    else:
        return None
    prod_shape = tuple(1 if i == axis else d for i, d in enumerate(out.shape))
    products = []
    for i, part in enumerate(parts):
        dst = ed.temp(f"{out.name}/part{i}", out.dtype, prod_shape)
        ops.append(matmul(part, dst, mats[i]))
        products.append(dst)
    ops.append(
        ed.op("CONCATENATION", products, [out], op, axis=axis, fused_activation_function="NONE")
    )
    return ops


def _batch_matmul_constant_slices(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """BATCH_MATMUL by a constant the parser cannot take -> BATCH_MATMULs by 2-D constant
    right-hand sides (split by the constant's batch axis; transposed for a constant lhs)."""
    if not _one_constant_operand(op, {"BATCH_MATMUL"}, gpu_rules.batch_matmul_constant):
        return None
    a, b = op.inputs
    out = op.outputs[0]
    if not static(a, b, out) or not _plain_float(a, b, out):
        return None
    if not 2 <= out.rank <= MAX_GPU_RANK or a.rank < 2 or b.rank < 2:
        return None
    adj_x, adj_y = bool(op.options.get("adj_x")), bool(op.options.get("adj_y"))
    ops: list[tfl.Operator] = []
    if b.data is not None:  # out = X @ C
        w = np.swapaxes(b.data, -1, -2) if adj_y else b.data
        x = a
        if adj_x:
            x, ops = _swap_last(ed, a, op)
        made = _products(ed, op, x, w, out)
        return None if made is None else ops + made
    # out = A @ Y  <=>  out^T = Y^T @ A^T
    w = a.data if adj_x else np.swapaxes(a.data, -1, -2)
    y = b
    if not adj_y:
        y, ops = _swap_last(ed, b, op)
    core_shape = (*out.shape[:-2], out.shape[-1], out.shape[-2])
    core = ed.temp(f"{out.name}/transposed", out.dtype, core_shape)
    made = _products(ed, op, y, w, core)
    if made is None:
        return None
    return ops + made + _swap_last(ed, core, op, out)[1]


def _batch_matmul_adjoint_transpose(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """BATCH_MATMUL with adj_x / adj_y (the GPU parser reads neither flag) -> TRANSPOSE of each
    flagged runtime operand (a flagged constant is stored transposed) + BATCH_MATMUL without
    flags: the same products, summed in the same order."""
    if op.opcode != "BATCH_MATMUL" or len(op.inputs) != 2 or len(op.outputs) != 1:
        return None
    if gpu_rules.batch_matmul_adjoint(op, None) is None:
        return None
    a, b = op.inputs
    out = op.outputs[0]
    if a is None or b is None or not static(a, b, out):
        return None
    if min(a.rank, b.rank) < 2 or max(a.rank, b.rank, out.rank) > MAX_GPU_RANK:
        return None
    ops: list[tfl.Operator] = []
    operands = []
    for t, flag in ((a, op.options.get("adj_x")), (b, op.options.get("adj_y"))):
        if not flag:
            operands.append(t)
        elif t.data is not None:
            if t.quantization is not None:
                return None  # (per-axis parameters would move with the axes)
            flipped = np.ascontiguousarray(np.swapaxes(t.data, -1, -2))
            operands.append(ed.const(f"{t.name}/transposed", flipped))
        else:
            turned, more = _swap_last(ed, t, op)
            operands.append(turned)
            ops += more
    options = {**op.options, "adj_x": False, "adj_y": False}
    ops.append(tfl.Operator("BATCH_MATMUL", operands, [out], options, onnx_node=op.onnx_node))
    return ops


# ----------------------------------------------------------------------------------------------
# gather_elements_flat
# ----------------------------------------------------------------------------------------------


def _gather_elements_flat(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """GATHER on the last axis with batch_dims over all the others, constant indices ->
    GATHER of the [1, rows * width] view by flat int32 indices, RESHAPEd to the output."""
    if op.opcode != "GATHER" or len(op.inputs) != 2 or len(op.outputs) != 1:
        return None
    data, idx, out = op.inputs[0], op.inputs[1], op.outputs[0]
    if data is None or idx is None or data.data is not None or idx.data is None:
        return None
    rank = data.rank
    axis = int(op.options.get("axis", 0) or 0)
    batch_dims = int(op.options.get("batch_dims", 0) or 0)
    axis = axis + rank if axis < 0 else axis
    batch_dims = batch_dims + idx.rank if batch_dims < 0 else batch_dims
    if rank < 2 or axis != rank - 1 or batch_dims != rank - 1 or idx.rank != rank:
        return None
    if not static(data, out) or tuple(idx.shape[:-1]) != tuple(data.shape[:-1]):
        return None
    if tuple(out.shape) != tuple(idx.shape) or data.quantization is not None:
        return None
    width = data.shape[-1]
    values = idx.data.astype(np.int64)
    if values.size == 0 or values.min() < -width or values.max() >= width:
        return None  # out of range: a runtime error for GATHER, left to say so
    values = np.where(values < 0, values + width, values)
    rows = int(np.prod(data.shape[:-1]))
    flat = values.reshape(rows, -1) + (np.arange(rows, dtype=np.int64) * width)[:, None]
    if flat.max() > np.iinfo(np.int32).max:
        return None
    view, ops = ed.shared_view(data, (1, rows * width), op)
    flat_t = ed.const(f"{idx.name}/flat", flat.reshape(-1).astype(np.int32))
    gathered = ed.temp(f"{out.name}/flat", out.dtype, (1, flat.size))
    ops.append(ed.op("GATHER", [view, flat_t], [gathered], op, axis=1, batch_dims=0))
    ops.append(ed.reshape(gathered, out, op))
    return ops if delegable(ops[-2]) else None


# ----------------------------------------------------------------------------------------------
# gather_table_by_concatenation
# ----------------------------------------------------------------------------------------------


def lookup(
    ed: Editor, data: tfl.Tensor, indices: tfl.Tensor, out: tfl.Tensor, like, axis: int
) -> list[tfl.Operator]:
    """GATHER(``data``, ``indices``) along ``axis`` into ``out``, in a form the GPU parses.

    A constant float32 table cannot be the GATHER's data (GatherOperationParser::Parse reads
    input 0 as a runtime tensor; gpu_rules.gather_data_runtime): it is stored as two 4-D
    constants [P, rows, 1, Q] joined by a CONCATENATION, which the parser does take constants
    into, so the GATHER reads a runtime tensor; a RESHAPE gives ``out`` its shape. Other data
    is gathered as it is."""
    if not _runtime_table(data):
        return [ed.op("GATHER", [data, indices], [out], like, axis=axis, batch_dims=0)]
    pre = int(np.prod(data.shape[:axis]))
    rows = data.shape[axis]
    post = int(np.prod(data.shape[axis + 1 :]))
    table = np.asarray(data.data).reshape(pre, rows, 1, post)
    cut = max(1, rows // 2)
    pieces = [table[:, :cut], table[:, cut:]] if rows > 1 else [table]
    consts = [
        ed.const(f"{data.name}/rows{i}", np.ascontiguousarray(p)) for i, p in enumerate(pieces)
    ]
    joined = ed.temp(f"{data.name}/runtime", data.dtype, table.shape)
    n = int(np.prod(indices.shape))
    taken = ed.temp(f"{out.name}/taken", out.dtype, (pre, n, 1, post))
    return [
        ed.op("CONCATENATION", consts, [joined], like, axis=1, fused_activation_function="NONE"),
        ed.op("GATHER", [joined, indices], [taken], like, axis=1, batch_dims=0),
        ed.reshape(taken, out, like),
    ]


def _runtime_table(data: tfl.Tensor) -> bool:
    """A constant float32 table the GPU GATHER cannot read as its data."""
    return (
        data.data is not None
        and data.dtype == np.float32
        and data.quantization is None
        and 1 <= data.rank
        and data.data.size > 0
    )


def _gather_table_by_concatenation(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """GATHER of a constant table by runtime indices (an embedding lookup) -> :func:`lookup`."""
    if op.opcode != "GATHER" or len(op.inputs) != 2 or len(op.outputs) != 1:
        return None
    if gpu_rules.gather_data_runtime(op, None) is None:
        return None
    data, idx = op.inputs
    out = op.outputs[0]
    if idx is None or idx.data is not None or not _runtime_table(data):
        return None
    if op.options.get("batch_dims", 0) not in (0, None) or not static(data, idx, out):
        return None
    axis = int(op.options.get("axis", 0) or 0) % data.rank
    return lookup(ed, data, idx, out, op, axis)


# ----------------------------------------------------------------------------------------------
# scatter_nd_select_by_gather
# ----------------------------------------------------------------------------------------------


def _constant_value(ed: Editor, t: tfl.Tensor | None) -> np.ndarray | None:
    """The values of a constant, or of a CAST of a constant between integer types that keeps
    every value (how the lowering turns ONNX's int64 coordinates into int32)."""
    if t is None:
        return None
    if t.data is not None:
        return np.asarray(t.data)
    op = ed.producer.get(id(t))
    if op is None or op.opcode != "CAST" or op.inputs[0] is None or op.inputs[0].data is None:
        return None
    src = np.asarray(op.inputs[0].data)
    if src.dtype.kind not in "iu" or t.dtype.kind not in "iu":
        return None
    cast = src.astype(t.dtype)
    return cast if np.array_equal(cast.astype(src.dtype), src) else None


def _hit_select(ed: Editor, scattered: tfl.Tensor, coords: tfl.Tensor):
    """The SELECT_V2 that reads ``scattered`` where a SCATTER_ND of positive constants at the
    same ``coords`` is > 0 (lowering/indexing ``_write``: ONNX ScatterND), else None."""
    users = ed.uses.get(id(scattered), [])
    if len(users) != 1 or users[0].opcode != "SELECT_V2" or users[0].inputs[1] is not scattered:
        return None
    select = users[0]
    test = ed.producer.get(id(select.inputs[0]))
    if test is None or test.opcode != "GREATER" or len(test.inputs) != 2:
        return None
    zero = test.inputs[1]
    if zero is None or zero.data is None or np.asarray(zero.data).reshape(-1).tolist() != [0]:
        return None
    count = ed.producer.get(id(test.inputs[0]))
    if count is None or count.opcode != "SCATTER_ND" or count.inputs[0] is not coords:
        return None
    ones = count.inputs[1]
    if ones is None or ones.data is None or not (np.asarray(ones.data) > 0).all():
        return None
    if tuple(count.outputs[0].shape) != tuple(scattered.shape):
        return None
    return select


def _scatter_nd_select_by_gather(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """ONNX ScatterND by constant coordinates, as the lowering writes it (SCATTER_ND of the
    updates, SCATTER_ND of ones, GREATER 0, SELECT_V2 of the data) -> CONCATENATION of the
    data's rows and the updates, GATHER by the constant row map; the SELECT_V2 is replaced and
    the count chain becomes dead. Distinct in-range coordinates only (SCATTER_ND adds
    duplicates); every element is moved, none computed."""
    if op.opcode != "SCATTER_ND" or len(op.inputs) != 3 or len(op.outputs) != 1:
        return None
    coords_t, updates, shape_t = op.inputs
    out = op.outputs[0]
    if updates is None or updates.data is not None or shape_t is None or shape_t.data is None:
        return None
    coords = _constant_value(ed, coords_t)
    select = _hit_select(ed, out, coords_t) if coords is not None else None
    if select is None or ed.removed(select):
        return None
    base, result = select.inputs[2], select.outputs[0]
    if base is None or tuple(base.shape) != tuple(out.shape) or result.shape != out.shape:
        return None
    if not static(base, updates, out) or not _plain_float(base, updates, out):
        return None
    depth = coords.shape[-1] if coords.ndim else 0
    shape = tuple(out.shape)
    if not 1 <= depth <= len(shape) or out.rank > MAX_GPU_RANK:
        return None
    rows = int(np.prod(shape[:depth]))
    flat = coords.reshape(-1, depth).astype(np.int64)
    if (flat < 0).any() or (flat >= np.array(shape[:depth])).any():
        return None  # negative / out-of-range coordinates: left to SCATTER_ND's own checks
    targets = np.ravel_multi_index(tuple(flat.T), shape[:depth]) if flat.size else flat
    if len(np.unique(targets)) != len(targets):
        return None  # duplicates add up in SCATTER_ND
    rest = shape[depth:]
    if int(np.prod(updates.shape)) != len(targets) * int(np.prod(rest)):
        return None
    order = ed.sub.operators
    position = {id(o): i for i, o in enumerate(order)}
    made = ed.producer.get(id(base))
    if made is not None and position.get(id(made), -1) > position[id(op)]:
        return None  # the data is written after the scatter: the GATHER could not go here
    row_map = np.arange(rows, dtype=np.int64)
    row_map[targets] = rows + np.arange(len(targets))
    ops: list[tfl.Operator] = []
    data_rows, more = (base, []) if depth == 1 else ed.shared_view(base, (rows, *rest), op)
    ops += more
    upd_rows = updates
    if tuple(updates.shape) != (len(targets), *rest):
        upd_rows, more = ed.shared_view(updates, (len(targets), *rest), op)
        ops += more
    joined = ed.temp(f"{out.name}/rows", out.dtype, (rows + len(targets), *rest))
    ops.append(
        ed.op(
            "CONCATENATION",
            [data_rows, upd_rows],
            [joined],
            op,
            axis=0,
            fused_activation_function="NONE",
        )
    )
    gathered = result if depth == 1 else ed.temp(f"{out.name}/gathered", out.dtype, (rows, *rest))
    index = ed.const(f"{out.name}/row_map", row_map.astype(np.int32))
    ops.append(ed.op("GATHER", [joined, index], [gathered], op, axis=0, batch_dims=0))
    if gathered is not result:
        ops.append(ed.reshape(gathered, result, op))
    if not all(delegable(o) for o in ops if o.opcode != "RESHAPE"):
        return None
    ed.remove(select)  # its output is written by the GATHER above
    return ops


RULES: dict[str, Rule] = {
    "constant_operand_view": _constant_operand_view,
    "fold_constant_transpose": _fold_constant_transpose,
    "batch_matmul_adjoint_transpose": _batch_matmul_adjoint_transpose,
    "batch_matmul_constant_slices": _batch_matmul_constant_slices,
    "gather_elements_flat": _gather_elements_flat,
    "scatter_nd_select_by_gather": _scatter_nd_select_by_gather,
    "gather_table_by_concatenation": _gather_table_by_concatenation,
}
