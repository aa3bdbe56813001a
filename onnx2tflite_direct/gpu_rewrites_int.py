"""``--gpu-friendly`` rewrites of integer index arithmetic: what reads int32 ids (an embedding
lookup and the wrap of its negative indices) expressed with operators the GPU delegate takes.

Why: with ``--int32-inputs`` a text model's ids arrive as int32, which the GPU takes only as
GATHER indices and CAST operands (``gpu_rules``: no other rule lists int32). Its lookup is
lowered as FLOOR_MOD(ids, V) (ONNX's negative indices) and GATHER by the 2-D ids; the delegate
refuses the int32 FLOOR_MOD and the 2-D indices (it takes 1-D ones), and an int32 RESHAPE.
The same values come from float32 arithmetic on the ids: every valid index of a table of
V <= 2**24 rows lies in [-V, V), where int32 -> float32 is exact, float32 FLOOR_MOD by V is
exact on integers that small, and float32 -> int32 gives the index back. Bit-exact on every
valid index (``MAX_EXACT_ROWS``):

- ``gather_int32_indices``: GATHER by run-time N-D int32 indices (optionally wrapped by an
  int32 FLOOR_MOD by the table's size) -> CAST to float32 (+ FLOOR_MOD in float32) + RESHAPE
  to 1-D + CAST to int32 + GATHER + RESHAPE to the N-D result. An index outside [0, V)
  without the wrap stays outside (rounding keeps its sign and keeps it >= 2**24 >= V), so
  LiteRT refuses it as before.
- ``index_wrap_in_float``: FLOOR_MOD(int32 ids, V) read only as the indices of GATHERs along an
  axis of V rows -> CAST to float32, FLOOR_MOD in float32, CAST to int32. Ids outside [-V, V)
  (onnxruntime refuses them) may land on another row than before when they exceed 2**24.
- ``int32_moves_in_float``: int32 data movement by constant parameters (``x[:, i]`` of the
  ids: GATHER by a constant, RESHAPE, SLICE ...) whose result is read only, through more
  movement and the wrap, as GATHER indices of tables of <= 2**24 rows -> CAST to float32, the
  same movement, CAST to int32 (the values are only moved; exact on every valid index as
  above).
- ``fold_constant_gather``: GATHER of a constant table by constant indices -> the gathered
  constant.
- ``bool_moves_in_float``: bool data movement (a mask's RESHAPE) -> CAST to float32, the same
  movement, CAST to bool (the GPU takes bool only in CAST and SELECT).
- ``nonzero_test_in_float``: CAST to bool of an integer derived from int32 values by widening,
  data movement and int64 products (a product of two masks) -> the same test on 0/1 floats
  (``min(|float(x)|, 1)``, moved, multiplied), CAST to bool. Exact for every int32 value.
"""

from __future__ import annotations

import numpy as np

from . import gpu_rewrites, gpu_rewrites_operands, tfl
from .gpu_rewrites import Editor, Rule, delegable, static

MAX_EXACT_ROWS = 1 << 24  # every integer of magnitude <= 2**24 is a float32
I32 = np.dtype(np.int32)
I64 = np.dtype(np.int64)
F32 = np.dtype(np.float32)


def _runtime_int32(t: tfl.Tensor | None) -> bool:
    return t is not None and t.data is None and t.dtype == I32


def _gather_rows(op: tfl.Operator) -> int | None:
    """The size of the axis a GATHER (no batch dims, static table) indexes, or None."""
    if op.opcode != "GATHER" or op.options.get("batch_dims", 0) not in (0, None):
        return None
    data = op.inputs[0]
    if data is None or not static(data) or data.rank == 0:
        return None
    return int(data.shape[int(op.options.get("axis", 0)) % data.rank])


def _wrap_divisor(op: tfl.Operator | None) -> int | None:
    """V of FLOOR_MOD(int32 run-time x, constant V) with one V > 0, else None."""
    if op is None or op.opcode != "FLOOR_MOD" or not _runtime_int32(op.inputs[0]):
        return None
    c = op.inputs[1]
    if c is None or c.data is None or c.data.size == 0:
        return None
    values = np.unique(np.asarray(c.data))
    if values.size != 1 or not 0 < int(values[0]) <= MAX_EXACT_ROWS:
        return None
    return int(values[0])


def _gathers_own_wrap(ed: Editor, op: tfl.Operator) -> bool:
    """Is FLOOR_MOD ``op`` the wrap of ONNX Gather's negative indices (written by the Gather's
    lowering: attributed to the same ONNX node as every GATHER reading it)? Only then are its
    operands outside [-V, V) refused by onnxruntime, so that float32 rounding of them cannot
    change an answer; a model's own Mod (hashed ids) makes every int32 a valid id."""
    users = ed.uses.get(id(op.outputs[0]), [])
    return (
        op.onnx_node is not None
        and bool(users)
        and all(u.opcode == "GATHER" and u.onnx_node == op.onnx_node for u in users)
    )


def _twins(ed: Editor) -> dict[int, tfl.Tensor]:
    """id(int32 tensor) -> the float32 tensor a rule of this pass computed it from (the same
    integers): a later rule reads the float directly instead of casting back and forth."""
    return ed.memo("float_twins", dict)


def _as_float(ed: Editor, src: tfl.Tensor, like: tfl.Operator) -> tuple[tfl.Tensor, list]:
    twin = _twins(ed).get(id(src))
    if twin is not None:
        return twin, []
    out = ed.temp(f"{src.name}/as_float", F32, src.shape)
    return out, [ed.op("CAST", [src], [out], like)]


def _to_int32(ed: Editor, ops: list[tfl.Operator], src: tfl.Tensor, out: tfl.Tensor, like):
    """``ops`` + CAST of float32 ``src`` (integers) into int32 ``out``, remembered as ``out``'s
    twin; None unless the GPU rules take every new operator (the driver would drop them, and
    a twin nobody writes must not be read)."""
    made = [*ops, ed.op("CAST", [src], [out], like)]
    if not all(delegable(o) for o in made if o.opcode != "RESHAPE"):
        return None
    _twins(ed)[id(out)] = src
    return made


def _float_wrap(ed: Editor, x: tfl.Tensor, v: int, like: tfl.Operator):
    """floor_mod(x, v) in float32: (float tensor, ops)."""
    xf, ops = _as_float(ed, x, like)
    wrapped = ed.temp(f"{x.name}/wrapped", F32, x.shape)
    divisor = ed.const(f"{x.name}/rows", np.array(float(v), np.float32))
    ops.append(ed.op("FLOOR_MOD", [xf, divisor], [wrapped], like))
    return wrapped, ops


def _gather_int32_indices(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """GATHER by run-time N-D int32 indices -> the lookup by 1-D indices computed in float32
    (module docstring)."""
    rows = _gather_rows(op)
    idx, out = (op.inputs[1], op.outputs[0]) if len(op.inputs) > 1 else (None, None)
    if rows is None or rows > MAX_EXACT_ROWS or not _runtime_int32(idx) or idx.rank == 1:
        return None
    if not static(idx, out):
        return None
    producer = ed.producer.get(id(idx))
    v = _wrap_divisor(producer)
    if id(idx) in _twins(ed):  # wrapped or moved in float by a rule of this pass
        src, ops = _as_float(ed, idx, op)
    elif (
        v == rows
        and producer is not None
        and len(ed.uses.get(id(idx), [])) == 1
        and _gathers_own_wrap(ed, producer)
    ):
        src, ops = _float_wrap(ed, producer.inputs[0], v, op)
    elif (
        producer is not None
        and producer.opcode == "CAST"
        and producer.inputs[0] is not None
        and producer.inputs[0].dtype == F32
    ):  # the float ids index_wrap_in_float (or the model) already computed
        src, ops = producer.inputs[0], []
    else:
        src, ops = _as_float(ed, idx, op)
    n = int(np.prod(idx.shape))
    flat_f = ed.temp(f"{idx.name}/flat_float", F32, (n,))
    flat = ed.temp(f"{idx.name}/flat", I32, (n,))
    data = op.inputs[0]
    axis = int(op.options.get("axis", 0)) % data.rank
    gathered = ed.temp(
        f"{out.name}/flat", out.dtype, (*data.shape[:axis], n, *data.shape[axis + 1 :])
    )
    return [
        *ops,
        ed.reshape(src, flat_f, op),
        ed.op("CAST", [flat_f], [flat], op),
        *gpu_rewrites_operands.lookup(ed, data, flat, gathered, op, axis),
        ed.reshape(gathered, out, op),
    ]


def _index_wrap_in_float(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """FLOOR_MOD(int32 ids, V) read only as GATHER indices along V rows -> float32 FLOOR_MOD
    between CASTs (module docstring)."""
    v = _wrap_divisor(op)
    out = op.outputs[0]
    users = ed.uses.get(id(out), [])
    if v is None or not users or id(out) in ed.io or not _gathers_own_wrap(ed, op):
        return None
    for user in users:
        if _gather_rows(user) != v or user.inputs[1] is not out or user.inputs[0] is out:
            return None
    wrapped, ops = _float_wrap(ed, op.inputs[0], v, op)
    return _to_int32(ed, ops, wrapped, out, op)


# int32 data movement the GPU refuses (no int32 runtime tensor outside GATHER indices / CAST):
# operator -> the input it moves (the others are constant parameters).
MOVES = {
    "GATHER": 0,
    "RESHAPE": 0,
    "SQUEEZE": 0,
    "EXPAND_DIMS": 0,
    "SLICE": 0,
    "STRIDED_SLICE": 0,
    "TRANSPOSE": 0,
}


def _index_rows(ed: Editor, t: tfl.Tensor, depth: int = 8) -> int | None:
    """The largest table size V when every reader of ``t`` ends, through int32 data movement
    and the FLOOR_MOD wrap, as the indices of GATHERs; None when some reader uses the values
    otherwise (or ``t`` is a graph output)."""
    users = ed.uses.get(id(t), [])
    if not users or id(t) in ed.io or depth == 0:
        return None
    rows = 0
    for user in users:
        if user.opcode == "GATHER" and user.inputs[1] is t and user.inputs[0] is not t:
            found = _gather_rows(user)
        elif (
            _wrap_divisor(user) is not None and user.inputs[0] is t and _gathers_own_wrap(ed, user)
        ):
            found = _index_rows(ed, user.outputs[0], depth - 1)
            found = found if found == _wrap_divisor(user) else None
        elif MOVES.get(user.opcode) == 0 and user.inputs[0] is t and _constant_params(user):
            found = _index_rows(ed, user.outputs[0], depth - 1)
        else:
            found = None
        if found is None:
            return None
        rows = max(rows, found)
    return rows


def _constant_params(op: tfl.Operator) -> bool:
    return len(op.outputs) == 1 and all(t is None or t.data is not None for t in op.inputs[1:])


def _int32_moves_in_float(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """int32 data movement (x[:, i] of the ids) read only as GATHER indices -> the same move
    in float32 between CASTs (module docstring)."""
    if MOVES.get(op.opcode) != 0 or not _runtime_int32(op.inputs[0]):
        return None
    out = op.outputs[0]
    if not _constant_params(op) or out.dtype != I32 or not static(op.inputs[0], out):
        return None
    rows = _index_rows(ed, out)
    if rows is None or rows > MAX_EXACT_ROWS:
        return None
    xf, ops = _as_float(ed, op.inputs[0], op)
    moved, moves = _float_move(ed, op, xf)
    if moves is None:
        return None
    return _to_int32(ed, [*ops, *moves], moved, out, op)


def _float_move(ed: Editor, op: tfl.Operator, xf: tfl.Tensor):
    """(float32 result, ops) of the data movement ``op`` applied to the float32 copy ``xf`` of
    its input, in a form the GPU takes (ops None when there is none)."""
    out = op.outputs[0]
    moved = ed.temp(f"{out.name}/float", F32, out.shape)
    move = tfl.Operator(
        op.opcode, [xf, *op.inputs[1:]], [moved], dict(op.options), onnx_node=op.onnx_node
    )
    return moved, ([move] if delegable(move) else _delegable_move(ed, move))


def _bool_moves_in_float(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """bool data movement (a mask's RESHAPE/unsqueeze; the GPU takes bool only in CAST and
    SELECT) -> CAST to float32 (0/1), the same movement, CAST back to bool: exact."""
    if MOVES.get(op.opcode) != 0 or not _constant_params(op):
        return None
    x, out = op.inputs[0], op.outputs[0]
    if x is None or x.data is not None or x.dtype != np.bool_ or out.dtype != np.bool_:
        return None
    if not static(x, out) or id(out) in ed.io:
        return None
    xf = ed.temp(f"{x.name}/as_float", F32, x.shape)
    moved, moves = _float_move(ed, op, xf)
    if moves is None:
        return None
    return [ed.op("CAST", [x], [xf], op), *moves, ed.op("CAST", [moved], [out], op)]


def _int32_origin(ed: Editor, t: tfl.Tensor) -> bool:
    """Does ``t`` hold int32 values: an int32 tensor, or an int64 widening of one?"""
    if t.dtype == I32:
        return True
    p = ed.producer.get(id(t))
    return p is not None and p.opcode == "CAST" and p.inputs[0].dtype == I32


def _nonzero_float(ed: Editor, t: tfl.Tensor, like: tfl.Operator, ops: list, depth: int = 8):
    """A float32 tensor holding ``t != 0`` as 0/1 (ops appended to ``ops``), or None.

    From the int32 values ``t`` derives from: an int32 value x as min(|float(x)|, 1) (a
    nonzero int32 becomes a float of magnitude >= 1 whatever the rounding); an int64 widening
    CAST as its int32 operand; data movement by constant parameters as the same movement of
    the 0/1 floats; an int64 MUL of two int32 values (exact: |a * b| < 2**62) as the product
    of their 0/1 floats."""
    if depth == 0 or t.data is not None:
        return None
    p = ed.producer.get(id(t))
    if t.dtype == I64 and p is not None and p.opcode == "CAST" and p.inputs[0].dtype == I32:
        return _nonzero_float(ed, p.inputs[0], like, ops, depth - 1)
    if (
        t.dtype == I64
        and p is not None
        and p.opcode == "MUL"
        and p.options.get("fused_activation_function", "NONE") == "NONE"
        and len(p.inputs) == 2
        and all(x is not None and x.data is None and _int32_origin(ed, x) for x in p.inputs)
    ):
        a = _nonzero_float(ed, p.inputs[0], like, ops, depth - 1)
        b = _nonzero_float(ed, p.inputs[1], like, ops, depth - 1) if a is not None else None
        if b is None:
            return None
        both = ed.temp(f"{t.name}/both_nonzero", F32, t.shape)
        ops.append(ed.op("MUL", [a, b], [both], like, fused_activation_function="NONE"))
        return both
    if t.dtype in (I32, I64) and p is not None and MOVES.get(p.opcode) == 0:
        if not _constant_params(p) or not static(p.inputs[0], t):
            return None
        inner = _nonzero_float(ed, p.inputs[0], like, ops, depth - 1)
        if inner is None:
            return None
        moved = ed.temp(f"{t.name}/nonzero", F32, t.shape)
        move = tfl.Operator(
            p.opcode, [inner, *p.inputs[1:]], [moved], dict(p.options), onnx_node=p.onnx_node
        )
        made = [move] if delegable(move) else _delegable_move(ed, move)
        if made is None:
            return None
        ops.extend(made)
        return moved
    if t.dtype != I32:
        return None
    xf, cast = _as_float(ed, t, like)
    size = ed.temp(f"{t.name}/abs", F32, t.shape)
    nonzero = ed.temp(f"{t.name}/nonzero", F32, t.shape)
    one = ed.const(f"{t.name}/one", np.array(1.0, np.float32))
    ops += [
        *cast,
        ed.op("ABS", [xf], [size], like),
        ed.op("MINIMUM", [size, one], [nonzero], like),
    ]
    return nonzero


def _nonzero_test_in_float(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """CAST of an integer to bool (``x != 0``; the GPU casts only float <-> bool) whose value
    derives from int32 values (``_nonzero_float``: DeBERTa's ``mask[:, None] * mask[..., None]``
    of the ``--int32-inputs`` mask) -> the 0/1 float test, CAST to bool. Exact."""
    if op.opcode != "CAST" or len(op.inputs) != 1:
        return None
    x, out = op.inputs[0], op.outputs[0]
    if x is None or x.data is not None or x.dtype not in (I32, I64) or out.dtype != np.bool_:
        return None
    if not static(x, out):
        return None
    ops: list[tfl.Operator] = []
    nonzero = _nonzero_float(ed, x, op, ops)
    if nonzero is None:
        return None
    return [*ops, ed.op("CAST", [nonzero], [out], op)]


def _delegable_move(ed: Editor, move: tfl.Operator) -> list[tfl.Operator] | None:
    """The float move as the data-movement rules write it for the GPU (a GATHER by a scalar
    constant -> STRIDED_SLICE + RESHAPE, a 2-D slice on a 3-D view ...), or None."""
    for rule in gpu_rewrites.RULES.values():
        made = rule(ed, move)
        if made is not None and all(delegable(o) for o in made if o.opcode != "RESHAPE"):
            return made
    return None


def _fold_constant_gather(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """GATHER of a constant table by constant indices (an exporter's constant token-type ids;
    the GPU GATHER needs a run-time operand) -> the gathered constant (numpy ``take``, the same
    elements)."""
    if op.opcode != "GATHER" or op.options.get("batch_dims", 0) not in (0, None):
        return None
    data, idx, out = op.inputs[0], op.inputs[1], op.outputs[0]
    if data is None or idx is None or data.data is None or idx.data is None:
        return None
    if data.quantization is not None or id(out) in ed.io or not static(out):
        return None
    axis = int(op.options.get("axis", 0)) % data.rank
    flat = np.asarray(idx.data).astype(np.int64)
    rows = data.shape[axis]
    if flat.size and (flat.min() < -rows or flat.max() >= rows):
        return None  # LiteRT refuses it at run time: keep that
    taken = np.take(np.asarray(data.data), flat % rows if rows else flat, axis=axis)
    if taken.shape != tuple(out.shape):
        return None
    out.data = np.ascontiguousarray(taken)
    return []


RULES: dict[str, Rule] = {
    "gather_int32_indices": _gather_int32_indices,
    "index_wrap_in_float": _index_wrap_in_float,
    "int32_moves_in_float": _int32_moves_in_float,
    "fold_constant_gather": _fold_constant_gather,
    "bool_moves_in_float": _bool_moves_in_float,
    "nonzero_test_in_float": _nonzero_test_in_float,
}
