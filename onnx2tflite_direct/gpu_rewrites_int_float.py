"""``--gpu-friendly``: small integer side computations (position ids, masks, an EOS lookup)
carried in float32 where interval arithmetic proves every value an exact float32 integer.

Why: a text model computes its position ids from the attention mask (OPT/BLOOM:
``cumsum(mask) * mask - 1``, a slice, ``+ offset``, the wrap of a GATHER's negative indices) or
finds its pooled token with ``argmax(ids == eos)`` plus a row offset (CLIP). Lowered literally
that is int64 CAST, CUMSUM, ADD/SUB/MUL, comparisons, FLOOR_MOD and ARG_MAX (no GPU kernel):
the delegate takes no int64 tensor and int32 only as GATHER indices and CAST operands, so each
of them falls back and splits the graph. Every integer of magnitude <= 2**24 is a float32, and
float32 ADD/SUB/MUL/CUMSUM/FLOOR_MOD of such integers are exact while every result (and, for
CUMSUM, every partial sum in any order) stays within 2**24.

Rule ``int_region_in_float`` plans, per subgraph, the integer operators it can carry as float
twins (the same integers in float32 tensors), each with an interval ``[lo, hi]``:

* sources: an int32 run-time tensor (CAST to float32; interval ``[-B, B]``, below), a bool
  (CAST to 0/1 floats), an integer constant (a float32 constant of the same values);
* CAST between integer types: the twin itself; CUMSUM: float CUMSUM, interval times the axis
  length; ADD/SUB/MUL: the float op, interval by its corners; FLOOR_MOD by a constant c > 0:
  float FLOOR_MOD, ``[0, c - 1]``; data movement by constant parameters: the same movement;
* MAXIMUM/MINIMUM (an int Clip of the mask): the float op, the interval clamped alike;
* comparisons: the float comparison, its bool as 0/1 floats (exact for integers within 2**24,
  and for a source against an integer constant below 2**24 whatever the source holds:
  float32 rounding is monotone and keeps every larger int32 beyond the constant); a float32
  comparison the rules reject (its bool read by a LOGICAL_NOT) is carried as it is;
* LOGICAL_NOT (no GPU parser) of a carried bool: ``1 - x``;
* ARG_MAX along an axis of n: ``n - reduce_max(eq * ramp)`` with ``eq = 1 - min(|x -
  reduce_max(x)|, 1)`` (1 exactly at the maxima of integer-valued x) and the descending ramp
  ``n, n - 1, ..., 1``: the FIRST maximum wins, as TFLite's ARG_MAX (and ONNX ArgMax with
  select_last_index=0) does;
* sinks: CAST to float32 of a carried integer or bool (the twin), CAST to bool (``min(|x|, 1)``), GATHER indices (CAST of
  the twin to int32 and the lookup as ``gather_int32_indices`` writes it).

Every twin must stay within 2**24 (a source compared only against constants excepted). What
the graph cannot bound is an int32 graph input (a mask or ids): the plan takes it to hold values
of magnitude <= B and keeps, of B in ``BOUNDS`` (2**24 down to 1), the plan carrying the most
operators, the larger B on a tie. B >= 1 always covers a 0/1 attention mask; OPT's
``cumsum(mask) * mask`` over 7 tokens is carried with B = 64 (7 * 64 * 64 < 2**24). This is
the contract ``--gpu-friendly`` states for the int32 inputs it declares (docs/gpu_delegate.md):
ids and 0/1 masks; other values that push a carried result past 2**24 may round. An index
outside its table (onnxruntime refuses it) may land on another row, as in the other lookups.
Also carried: CONCATENATION of twins and integer constants, and GATHER_ND (no GPU kernel) by
twin indices as a GATHER of the flattened rows by ``sum(index * stride)``.

An int32 result read by an operator left alone gets a CAST of its twin; an int64 one must be
read only by carried operators (otherwise its producer is not carried). A plan is kept only
when it contains arithmetic (moves and lookups alone are ``gpu_rewrites_int``'s), and every
operator it writes is one the GPU rules accept.
"""

from __future__ import annotations

import numpy as np

from . import (
    gpu_check,
    gpu_rewrites,
    gpu_rewrites_int,
    gpu_rewrites_math,
    gpu_rewrites_operands,
    gpu_rules,
    tfl,
)
from .gpu_rewrites import Editor, Rule, delegable, static

EXACT = 1 << 24
F32 = np.dtype(np.float32)
I32 = np.dtype(np.int32)
I64 = np.dtype(np.int64)
BOOL = np.dtype(np.bool_)
INTS = (I32, I64)
BOUNDS = (1 << 24, 1 << 12, 1 << 6, 1)  # the int32 sources' magnitude, tried in this order
MOVES = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SLICE", "STRIDED_SLICE", "TRANSPOSE", "GATHER"}
COMPARE = {"EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL"}
ARITH = {"CUMSUM", "ADD", "SUB", "MUL", "ARG_MAX", "FLOOR_MOD"} | COMPARE


class _Twin:
    __slots__ = ("t", "lo", "hi", "source")

    def __init__(self, t: tfl.Tensor, lo: int, hi: int, source: bool = False) -> None:
        self.t, self.lo, self.hi, self.source = t, lo, hi, source

    @property
    def exact(self) -> bool:
        return max(abs(self.lo), abs(self.hi)) <= EXACT


def _forms(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """``op`` itself when the GPU rules take it, else the first per-operator rewrite into
    operators they take (a 2-D slice on a 3-D view, a constant operand's 4-D view, ...)."""
    if delegable(op):
        return [op]
    for rules in (gpu_rewrites.RULES, gpu_rewrites_operands.RULES, gpu_rewrites_int.RULES):
        for rule in rules.values():
            made = rule(ed, op)
            if made is not None and all(delegable(o) for o in made if o.opcode != "RESHAPE"):
                return made
    for rule in gpu_rewrites_math.RULES.values():
        made = rule(ed, op)
        if made is not None and all(delegable(o) for o in made if o.opcode != "RESHAPE"):
            return made
    return None


def _forms_of_all(ed: Editor, plan: list[tfl.Operator]) -> list[tfl.Operator] | None:
    """The :func:`_forms` of every operator of ``plan`` in order; None when one has none."""
    ops: list[tfl.Operator] = []
    for o in plan:
        made = _forms(ed, o)
        if made is None:
            return None
        ops += made
    return ops


def _int_const(t: tfl.Tensor) -> np.ndarray | None:
    if t.data is None or t.dtype not in INTS or t.data.size == 0:
        return None
    a = np.asarray(t.data).astype(np.int64)
    return a if np.abs(a).max() <= EXACT else None


def _small_const(t: tfl.Tensor) -> bool:
    """An integer constant strictly inside (-2**24, 2**24): every int32 that float32 rounds
    onto or past it lies on the same side of it."""
    a = _int_const(t)
    return a is not None and int(np.abs(a).max()) < EXACT


class _Planner:
    def __init__(self, ed: Editor, bound: int, excluded: set[int]) -> None:
        self.ed, self.bound, self.excluded = ed, bound, excluded
        self.twins: dict[int, _Twin] = {}
        self.ops: dict[int, list[tfl.Operator]] = {}
        self.arith = False
        self.ctx = gpu_rules.GraphContext(ed.sub)
        self.sources: list[str] = []  # int32 tensors taken to hold values of magnitude <= bound

    # ---- operands ---------------------------------------------------------------------
    def operand(self, t: tfl.Tensor | None, like: tfl.Operator, ops: list) -> _Twin | None:
        if t is None:
            return None
        twin = self.twins.get(id(t))
        if twin is not None:
            return twin
        ed = self.ed
        if t.data is not None:
            a = _int_const(t)
            if a is None:
                return None
            c = ed.const(f"{t.name}/float", a.astype(np.float32))
            return _Twin(c, int(a.min()), int(a.max()))
        if not static(t) or t.rank > 4:
            return None
        if t.dtype == I32:
            f = ed.temp(f"{t.name}/as_float", F32, t.shape)
            ops.append(ed.op("CAST", [t], [f], like))
            twin = _Twin(f, -self.bound, self.bound, source=True)
            self.sources.append(t.name)
        elif t.dtype == BOOL:
            f = ed.temp(f"{t.name}/as_float", F32, t.shape)
            ops.append(ed.op("CAST", [t], [f], like))
            twin = _Twin(f, 0, 1)
        else:
            return None
        self.twins[id(t)] = twin  # one CAST however many operators read it
        return twin

    # ---- one operator -----------------------------------------------------------------
    def visit(self, op: tfl.Operator) -> None:
        if id(op) in self.excluded or not op.outputs:
            return
        out = op.outputs[0]
        if not static(out) or out.rank > 4 or len(op.outputs) != 1:
            return
        if op.options.get("fused_activation_function", "NONE") not in ("NONE", None):
            return
        if all(self.ed.fixed_value(t) for t in op.inputs):
            return  # shape arithmetic: folded to a constant (reshape_static_shape ...)
        ops: list[tfl.Operator] = []
        saved = dict(self.twins)  # a source's CAST is written only with a carried reader
        try:
            result = self._lower(op, out, ops)
        except (KeyError, IndexError, ValueError, TypeError):
            result = None
        if result is None or not all(delegable(o) for o in ops if o.opcode != "RESHAPE"):
            self.twins = saved
            return
        if isinstance(result, _Twin):
            self.twins[id(out)] = result
        self.ops[id(op)] = ops

    def _lower(self, op: tfl.Operator, out: tfl.Tensor, ops: list):
        ed, code = self.ed, op.opcode
        ins = op.inputs
        if code == "CAST" and len(ins) == 1 and ins[0] is not None:
            src = ins[0]
            if out.dtype in INTS and src.dtype in INTS + (BOOL,):
                x = self.operand(src, op, ops)
                return None if x is None else self._keep(out, x, op, ops)
            if out.dtype == F32 and src.dtype in (*INTS, BOOL) and id(src) in self.twins:
                x = self.twins[id(src)]
                if not x.exact:
                    return None
                ops.append(ed.reshape(x.t, out, op))
                return True
            if out.dtype == BOOL and src.dtype in INTS and id(src) in self.twins:
                x = self.twins[id(src)]
                size = ed.temp(f"{out.name}/abs", F32, out.shape)
                nz = ed.temp(f"{out.name}/nonzero", F32, out.shape)
                one = ed.const(f"{out.name}/one", np.array(1.0, np.float32))
                ops += [
                    ed.op("ABS", [x.t], [size], op),
                    ed.op("MINIMUM", [size, one], [nz], op),
                    ed.op("CAST", [nz], [out], op),
                ]
                return True
            return None
        if code == "GATHER" and len(ins) == 2 and id(ins[1]) in self.twins:
            if ins[0] is ins[1] or op.options.get("batch_dims", 0) not in (0, None):
                return None
            if id(ins[0]) in self.twins or ins[0].dtype in INTS + (BOOL,):
                return None  # integer data: a move (below) of a carried table is not handled
            x = self.twins[id(ins[1])]
            if not x.exact:
                return None
            idx = ed.temp(f"{ins[1].name}/int32", I32, ins[1].shape)
            ops.append(ed.op("CAST", [x.t], [idx], op))
            gather = ed.op("GATHER", [ins[0], idx], [out], op, **dict(op.options))
            gpu_rewrites_int._twins(ed)[id(idx)] = x.t
            made = _forms(ed, gather)
            if made is None:
                return None
            ops += made
            return True
        if code == "GATHER_ND" and len(ins) == 2 and id(ins[1]) in self.twins:
            return self._gather_nd(op, out, ops)
        if out.dtype not in INTS + (BOOL,):
            return None
        if code in MOVES and ins and ins[0] is not None and ins[0].data is None:
            if not all(t is None or t.data is not None for t in ins[1:]):
                return None
            x = self.operand(ins[0], op, ops)
            if x is None or ins[0].dtype == BOOL:
                return None  # bool moves: bool_moves_in_float
            moved = ed.temp(f"{out.name}/float", F32, out.shape)
            move = tfl.Operator(
                code, [x.t, *ins[1:]], [moved], dict(op.options), onnx_node=op.onnx_node
            )
            made = _forms(ed, move)
            if made is None:
                return None
            ops += made
            return self._keep(out, _Twin(moved, x.lo, x.hi, x.source), op, ops)
        if code == "CUMSUM" and len(ins) == 2 and ins[1] is not None and ins[1].data is not None:
            x = self.operand(ins[0], op, ops)
            if x is None or id(ins[0]) not in self.twins:
                return None
            axis = int(np.asarray(ins[1].data).reshape(-1)[0]) % out.rank
            n = out.shape[axis]
            lo, hi = min(0, x.lo) * n, max(0, x.hi) * n
            f = ed.temp(f"{out.name}/float", F32, out.shape)
            axis_t = ed.const(f"{out.name}/axis", np.array(axis, np.int32))
            ops.append(ed.op("CUMSUM", [x.t, axis_t], [f], op, **dict(op.options)))
            self.arith = True
            return self._keep(out, _Twin(f, lo, hi), op, ops, need_exact=True)
        if code in ("ADD", "SUB", "MUL") and len(ins) == 2 and out.dtype in INTS:
            a, b = self.operand(ins[0], op, ops), self.operand(ins[1], op, ops)
            if a is None or b is None or not (a.exact and b.exact):
                return None
            if code == "ADD":
                lo, hi = a.lo + b.lo, a.hi + b.hi
            elif code == "SUB":
                lo, hi = a.lo - b.hi, a.hi - b.lo
            else:
                corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
                lo, hi = min(corners), max(corners)
            f = ed.temp(f"{out.name}/float", F32, out.shape)
            made = _forms(ed, ed.op(code, [a.t, b.t], [f], op, fused_activation_function="NONE"))
            if made is None:
                return None
            ops += made
            self.arith = True
            return self._keep(out, _Twin(f, lo, hi), op, ops, need_exact=True)
        if code == "FLOOR_MOD" and len(ins) == 2 and ins[1] is not None:
            c = _int_const(ins[1])
            a = self.operand(ins[0], op, ops)
            if c is None or a is None or not a.exact or c.min() <= 0:
                return None
            f = ed.temp(f"{out.name}/float", F32, out.shape)
            divisor = ed.const(
                f"{out.name}/divisor", c.astype(np.float32) if c.size > 1 else np.float32(c.flat[0])
            )
            made = _forms(ed, ed.op("FLOOR_MOD", [a.t, divisor], [f], op))
            if made is None:
                return None
            ops += made
            lo, hi = (a.lo, a.hi) if a.lo >= 0 and a.hi < c.min() else (0, int(c.max()) - 1)
            return self._keep(out, _Twin(f, lo, hi), op, ops)
        if code == "CONCATENATION" and out.dtype in INTS:
            if not any(id(t) in self.twins for t in ins):
                return None
            parts = [self.operand(t, op, ops) for t in ins]
            if any(x is None for x in parts):
                return None
            f = ed.temp(f"{out.name}/float", F32, out.shape)
            made = _forms(
                ed, ed.op("CONCATENATION", [x.t for x in parts], [f], op, **dict(op.options))
            )
            if made is None:
                return None
            ops += made
            lo, hi = min(x.lo for x in parts), max(x.hi for x in parts)
            return self._keep(out, _Twin(f, lo, hi), op, ops)
        if code in COMPARE and len(ins) == 2 and out.dtype == BOOL:
            if all(t is not None and t.dtype == F32 for t in ins):
                # a float comparison the rules reject (its bool read by a LOGICAL_NOT ...):
                # the same comparison, its bool as 0/1 floats
                if not self.rejected(op):
                    return None
                a, b = _Twin(ins[0], 0, 0), _Twin(ins[1], 0, 0)
            else:
                if not any(
                    t is not None and (id(t) in self.twins or (t.data is None and t.dtype == I32))
                    for t in ins
                ):
                    return None
                a, b = self.operand(ins[0], op, ops), self.operand(ins[1], op, ops)
                if a is None or b is None:
                    return None
                against_constant = (a.source and _small_const(ins[1])) or (
                    b.source and _small_const(ins[0])
                )
                if not (a.exact and b.exact) and not against_constant:
                    return None
            test = ed.temp(f"{out.name}/test", BOOL, out.shape)
            f = ed.temp(f"{out.name}/float", F32, out.shape)
            ops += [ed.op(code, [a.t, b.t], [test], op), ed.op("CAST", [test], [f], op)]
            self.arith = True
            return self._keep_bool(out, f, op, ops)
        if code == "LOGICAL_NOT" and len(ins) == 1 and id(ins[0]) in self.twins:
            x = self.twins[id(ins[0])]
            f = ed.temp(f"{out.name}/float", F32, out.shape)
            one = ed.const(f"{out.name}/one", np.array(1.0, np.float32))
            ops.append(ed.op("SUB", [one, x.t], [f], op, fused_activation_function="NONE"))
            return self._keep_bool(out, f, op, ops)
        if code in ("MAXIMUM", "MINIMUM") and len(ins) == 2 and out.dtype in INTS:
            a, b = self.operand(ins[0], op, ops), self.operand(ins[1], op, ops)
            if a is None or b is None or not (a.exact and b.exact):
                return None
            pick = max if code == "MAXIMUM" else min
            f = ed.temp(f"{out.name}/float", F32, out.shape)
            made = _forms(ed, ed.op(code, [a.t, b.t], [f], op))
            if made is None:
                return None
            ops += made
            self.arith = True
            return self._keep(out, _Twin(f, pick(a.lo, b.lo), pick(a.hi, b.hi)), op, ops)
        if code == "ARG_MAX" and len(ins) == 2 and self.operand(ins[0], op, ops) is not None:
            return self._argmax(op, out, ops)
        return None

    def rejected(self, op: tfl.Operator) -> bool:
        return bool(gpu_rules.check_op(op, gpu_check.operator_version(op), self.ctx))

    def _keep_bool(self, out, f: tfl.Tensor, op, ops) -> _Twin:
        """The 0/1 twin ``f`` of bool ``out``; ``out`` itself written (CAST float -> bool) for
        a reader that does not read the twin (a SELECT, a graph output)."""
        readers = self.ed.uses.get(id(out), [])
        if id(out) in self.ed.io or any(
            u.opcode not in ("CAST", "LOGICAL_NOT") or u.outputs[0].dtype not in (*INTS, F32, BOOL)
            for u in readers
        ):
            ops.append(self.ed.op("CAST", [f], [out], op))
        return _Twin(f, 0, 1)

    def _keep(self, out, twin: _Twin, op, ops, need_exact: bool = False):
        """``twin`` for ``out``; an int32 ``out`` also read by an operator left alone (or a
        graph output) is written from it by a CAST."""
        if need_exact and not twin.exact:
            return None
        if out.dtype == I32 and (id(out) in self.ed.io or len(self.ed.uses.get(id(out), [])) > 0):
            ops.append(self.ed.op("CAST", [twin.t], [out], op))
        return twin

    def _gather_nd(self, op, out, ops):
        """GATHER_ND(data, idx[..., k]) (no GPU kernel) -> GATHER of the [rows, ...] view of
        data by the flat row ``sum(idx[..., j] * stride_j)`` (every valid index: the row of a
        table of <= 2**24 rows, an exact float32 integer)."""
        ed = self.ed
        data, x = op.inputs[0], self.twins[id(op.inputs[1])]
        if data is None or not static(data) or data.dtype in INTS + (BOOL,) or not x.exact:
            return None
        k = x.t.shape[-1]
        if x.t.rank < 2 or k > data.rank or x.lo < 0:
            return None  # negative indices: only after the lowering's wrap
        rows = int(np.prod(data.shape[:k]))
        strides = np.array([int(np.prod(data.shape[j + 1 : k])) for j in range(k)], np.float32)
        if rows > EXACT or x.hi * int(strides.sum()) > EXACT:
            return None
        lead = x.t.shape[:-1]
        scaled = ed.temp(f"{out.name}/scaled", F32, x.t.shape)
        flat_f = ed.temp(f"{out.name}/row_float", F32, lead)
        flat = ed.temp(f"{out.name}/row", I32, lead)
        view = ed.temp(f"{data.name}/rows", data.dtype, (rows, *data.shape[k:]))
        axes = ed.const(f"{out.name}/last", np.array([x.t.rank - 1], np.int32))
        stride_t = ed.const(f"{out.name}/strides", strides)
        plan = [
            ed.op("MUL", [x.t, stride_t], [scaled], op, fused_activation_function="NONE"),
            ed.op("SUM", [scaled, axes], [flat_f], op, keep_dims=False),
        ]
        made = _forms_of_all(ed, plan)
        if made is None:
            return None
        ops += made
        ops += [ed.op("CAST", [flat_f], [flat], op), ed.reshape(data, view, op)]
        gpu_rewrites_int._twins(ed)[id(flat)] = flat_f
        made = _forms(ed, ed.op("GATHER", [view, flat], [out], op, axis=0, batch_dims=0))
        if made is None:
            return None
        ops += made
        return True

    def _argmax(self, op, out, ops):
        ed = self.ed
        x = self.twins[id(op.inputs[0])]
        if not x.exact or op.inputs[1].data is None or x.t.rank < 1:
            return None
        axis = int(np.asarray(op.inputs[1].data).reshape(-1)[0]) % x.t.rank
        n = x.t.shape[axis]
        keep = tuple(1 if i == axis else d for i, d in enumerate(x.t.shape))
        axes = ed.const(f"{out.name}/axis", np.array([axis], np.int32))
        top = ed.temp(f"{out.name}/max", F32, keep)
        diff = ed.temp(f"{out.name}/diff", F32, x.t.shape)
        size = ed.temp(f"{out.name}/gap", F32, x.t.shape)
        near = ed.temp(f"{out.name}/near", F32, x.t.shape)
        eq = ed.temp(f"{out.name}/is_max", F32, x.t.shape)
        score = ed.temp(f"{out.name}/score", F32, x.t.shape)
        best = ed.temp(f"{out.name}/best", F32, keep)
        idx = ed.temp(f"{out.name}/float", F32, out.shape)
        ramp_shape = [1] * x.t.rank
        ramp_shape[axis] = n
        ramp = ed.const(
            f"{out.name}/ramp", np.arange(n, 0, -1, dtype=np.float32).reshape(ramp_shape)
        )
        one = ed.const(f"{out.name}/one", np.array(1.0, np.float32))
        count = ed.const(f"{out.name}/n", np.array(float(n), np.float32))
        plan = [
            ed.op("REDUCE_MAX", [x.t, axes], [top], op, keep_dims=True),
            ed.op("SUB", [x.t, top], [diff], op, fused_activation_function="NONE"),
            ed.op("ABS", [diff], [size], op),
            ed.op("MINIMUM", [size, one], [near], op),
            ed.op("SUB", [one, near], [eq], op, fused_activation_function="NONE"),
            ed.op("MUL", [eq, ramp], [score], op, fused_activation_function="NONE"),
            ed.op("REDUCE_MAX", [score, axes], [best], op, keep_dims=True),
        ]
        made = _forms_of_all(ed, plan)
        if made is None:
            return None
        ops += made
        flat = ed.temp(f"{out.name}/best_flat", F32, out.shape)
        ops.append(ed.reshape(best, flat, op))
        made = _forms(ed, ed.op("SUB", [count, flat], [idx], op, fused_activation_function="NONE"))
        if made is None:
            return None
        ops += made
        self.arith = True
        return self._keep(out, _Twin(idx, 0, n - 1), op, ops)


def _plan(ed: Editor) -> tuple[dict[int, list[tfl.Operator]], str]:
    """(id(operator) -> its float form, what it assumes) for the largest consistent plan of
    this pass (module docstring)."""
    return ed.memo("int_float_plan", lambda: _largest_plan(ed))


def _largest_plan(ed: Editor) -> tuple[dict[int, list[tfl.Operator]], str]:
    best: dict[int, list[tfl.Operator]] = {}
    assumed = ""
    for bound in BOUNDS:
        excluded: set[int] = set()
        for _ in range(len(ed.sub.operators) + 1):
            p = _Planner(ed, bound, excluded)
            for op in ed.sub.operators:
                p.visit(op)
            bad = _orphaned(ed, p)
            if not bad:
                break
            excluded |= bad
        else:
            continue
        if p.arith and len(p.ops) > len(best):
            best = p.ops
            assumed = _assumption(p) if p.sources else ""
    return best, assumed


def _assumption(p: _Planner) -> str:
    """The report's line for what the kept plan takes for granted about its int32 sources."""
    names = ", ".join(sorted(set(p.sources)))
    return (
        f"int_region_in_float: integer arithmetic on {names} carried in float32, proven exact "
        f"while they hold values of magnitude <= {p.bound} (0/1 masks qualify; past it a result "
        "beyond 2^24 may round)"
    )


def _orphaned(ed: Editor, p: _Planner) -> set[int]:
    """Carried operators whose result (not written by their float form: an int64 or a bool
    read through its twin) something left alone still reads."""
    bad = set()
    for op in ed.sub.operators:
        ops = p.ops.get(id(op))
        if ops is None:
            continue
        out = op.outputs[0]
        if any(out in o.outputs for o in ops):
            continue
        if id(out) in ed.io or any(id(u) not in p.ops for u in ed.uses.get(id(out), [])):
            bad.add(id(op))
    return bad


def _int_region_in_float(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """An integer operator of the planned region -> its float form; the rest of the region is
    replaced at the same time (module docstring)."""
    if not any(t is not None and t.dtype in (I32, I64, BOOL) for t in [*op.inputs, *op.outputs]):
        return None
    plan, assumed = _plan(ed)
    if id(op) not in plan:
        return None
    for other in ed.sub.operators:
        if other is not op and id(other) in plan:
            ed.replace(other, plan[id(other)])
    if assumed and assumed not in ed.assumptions:
        ed.assumptions.append(assumed)
    return plan[id(op)]


RULES: dict[str, Rule] = {"int_region_in_float": _int_region_in_float}
