"""``--int32-inputs``: int64 graph inputs (token ids, attention masks) declared int32.

Why: the LiteRT GPU delegate takes no int64 tensor at all (``gpu_rules``: no rule lists
int64), while it takes int32 GATHER indices and int32 <-> float CASTs; LiteRT's own text
models take int32 ids. A text model exported from PyTorch reads int64 ``input_ids`` and
``attention_mask``, so the operator reading each one falls back to the CPU whatever the
converter emits. With this option the file declares those inputs int32 (the SignatureDef
keys stay the ONNX names); the caller feeds int32 values, which must fit in int32.

How (on the lowered graph, before ``--gpu-friendly``): the input tensor becomes int32 and the
narrowing flows forward, operator by operator in graph order, through every operator that
computes the same values on int32 operands for every value the operand can hold:

* a CAST reading it reads int32 instead (an int64 -> int32 CAST disappears);
* GATHER / GATHER_ND / ONE_HOT read int32 indices as they read int64 ones;
* comparisons, data movement (RESHAPE, SLICE, CONCATENATION, GATHER of the values ...),
  MAXIMUM/MINIMUM and SELECT produce only values of their operands: their int64 outputs
  become int32 (an int64 constant operand becomes an int32 copy when its values fit);
* integer arithmetic (ADD, SUB, MUL, FLOOR_DIV, FLOOR_MOD, NEG, CUMSUM, SUM) is narrowed
  only when interval arithmetic proves every result fits in int32 (the input spans all of
  int32; a FLOOR_MOD by the vocabulary size V spans [0, V-1], a cast bool [0, 1] ...), so
  mask sums and position ids stay exact;
* anything else (an int64 sum that could leave int32, a control-flow operator, a graph
  output) reads the int64 value it read before, through one CAST int32 -> int64 per
  narrowed tensor: the graph computes what it computed before on every int32 value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import errors, tfl
from .tfl_edit import Editor

FLAG = "--int32-inputs"
I32 = np.dtype(np.int32)
I64 = np.dtype(np.int64)
I32_MIN, I32_MAX = int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max)
FULL = (I32_MIN, I32_MAX)
NOTE = (
    "declared int32 instead of int64: feed int32 values (every value must fit in int32; "
    "the file computes what the model computes on them)"
)

# Operators whose output values are values of these inputs (data movement; selections).
MOVES: dict[str, tuple[int, ...] | None] = {
    "RESHAPE": (0,),
    "SQUEEZE": (0,),
    "EXPAND_DIMS": (0,),
    "TRANSPOSE": (0,),
    "SLICE": (0,),
    "STRIDED_SLICE": (0,),
    "TILE": (0,),
    "BROADCAST_TO": (0,),
    "REVERSE_V2": (0,),
    "GATHER": (0,),
    "GATHER_ND": (0,),
    "UNPACK": (0,),
    "SPLIT": (1,),
    "SPLIT_V": (0,),
    "CONCATENATION": None,  # every input
    "PACK": None,
    "MAXIMUM": None,
    "MINIMUM": None,
    "SELECT": (1, 2),
    "SELECT_V2": (1, 2),
}
# Inputs read as indices, int32 as readily as int64 (output type unchanged).
INDICES = {"GATHER": (1,), "GATHER_ND": (1,), "ONE_HOT": (0,)}
COMPARISONS = {"EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL"}
ARITHMETIC = {"ADD", "SUB", "MUL", "FLOOR_DIV", "FLOOR_MOD", "NEG", "CUMSUM", "SUM"}
SHAPE_ONLY = {"SHAPE", "RANK"}  # read only the shape


def resolve(sub: tfl.Subgraph, wanted: bool | Sequence[str]) -> list[str]:
    """The input names to narrow in ``sub``: every int64 input (``wanted`` True) or those
    named (each must be an int64 input: a typed error naming the flag otherwise)."""
    dtypes = {name: t.dtype for name, t in zip(sub.input_names, sub.inputs, strict=True)}
    if wanted is True:
        return [n for n, d in dtypes.items() if d == I64]
    for name in wanted:
        if name not in dtypes:
            raise errors.BadInputError(
                errors.INVALID_OPTION,
                f"{FLAG} names {name!r}, which is not a model input (inputs: "
                f"{', '.join(dtypes) or 'none'})",
            )
        if dtypes[name] != I64:
            raise errors.BadInputError(
                errors.INVALID_OPTION,
                f"{FLAG} names {name!r}, a {dtypes[name].name} input (only int64 inputs are "
                "declared int32)",
            )
    return list(dict.fromkeys(wanted))


def apply(model: tfl.Model, wanted: bool | Sequence[str], io_table: list[dict]) -> dict[str, Any]:
    """Narrow the chosen inputs of every signature's subgraph (in place); the report's
    ``int32_inputs`` section: ``inputs`` (names), ``note``, ``kept_int64`` (operators that
    still read an int64 copy of a narrowed value, with why)."""
    mains = (
        [s.subgraph_index for s in model.signatures] if model.signatures else [0]
    )  # control-flow bodies are reached through their operators, never narrowed themselves
    narrowed: list[str] = []
    kept: list[dict[str, str]] = []
    for index in mains:
        sub = model.subgraphs[index]
        names = resolve(sub, wanted)
        if names:
            kept += _narrow(sub, names)
            narrowed += [n for n in names if n not in narrowed]
    for row in io_table:  # (signature rows carry no kind: they are all inputs)
        if row.get("kind", "input") == "input" and row.get("name") in narrowed:
            row["dtype"] = "int32"
    return {"inputs": narrowed, "note": NOTE, "kept_int64": kept}


def _fits(lo: int, hi: int) -> bool:
    return I32_MIN <= lo and hi <= I32_MAX


def _const_range(t: tfl.Tensor) -> tuple[int, int] | None:
    data = np.asarray(t.data)
    if data.size == 0:
        return (0, 0)
    return int(data.min()), int(data.max())


def _narrow(sub: tfl.Subgraph, names: Iterable[str]) -> list[dict[str, str]]:
    """Declare ``names`` int32 in ``sub`` and flow the narrowing forward (module docstring)."""
    ed = Editor(sub)
    outputs = {id(t) for t in sub.outputs}
    ranges: dict[int, tuple[int, int]] = {}  # id(narrowed tensor) -> its value interval
    for name in names:
        t = sub.inputs[sub.input_names.index(name)]
        t.dtype = I32
        ranges[id(t)] = FULL
    widened: dict[int, tfl.Tensor] = {}  # id(narrowed) -> its int64 copy (CAST)
    alias: dict[int, tfl.Tensor] = {}  # id(removed CAST output) -> the int32 tensor
    kept: list[dict[str, str]] = []

    def widen(op: tfl.Operator, hits: list[int], why: str) -> None:
        for i in hits:
            t = op.inputs[i]
            wide = widened.get(id(t))
            if wide is None:
                wide = ed.temp(f"{t.name}/int64", I64, t.shape, shape_signature=t.shape_signature)
                ed.insert_before(op, [ed.op("CAST", [t], [wide], op)])
                widened[id(t)] = wide
            op.inputs[i] = wide
        kept.append({"op": op.opcode, "onnx_node": op.onnx_node or "", "why": why})

    for op in list(sub.operators):
        # An operand read through a removed CAST was int32 for this operator already.
        was_int32 = {i for i, t in enumerate(op.inputs) if t is not None and id(t) in alias}
        op.inputs = [alias.get(id(t), t) if t is not None else None for t in op.inputs]
        hits = [
            i
            for i, t in enumerate(op.inputs)
            if t is not None and id(t) in ranges and i not in was_int32
        ]
        if not hits:
            continue
        code = op.opcode
        if code in SHAPE_ONLY or set(hits) <= set(INDICES.get(code, ())):
            continue  # reads the shape, or int32 indices as it reads int64 ones
        if code == "CAST" and hits == [0]:
            out = op.outputs[0]
            if out.dtype == I32 and id(out) not in outputs:  # int64 -> int32: now nothing
                alias[id(out)] = op.inputs[0]
                sub.renamed[id(out)] = op.inputs[0]
                ed.remove(op)
            continue
        verdict = _judge(op, hits, ranges, outputs)
        if isinstance(verdict, str):
            widen(op, hits, verdict)
            continue
        span, consts = verdict
        for i in consts:
            c = op.inputs[i]
            op.inputs[i] = ed.const(f"{c.name}/int32", np.asarray(c.data).astype(np.int32))
        for out in op.outputs:
            if out.dtype == I64:
                out.dtype = I32
                if span is not None:
                    ranges[id(out)] = span
    sub.outputs[:] = [alias.get(id(t), t) for t in sub.outputs]
    ed.commit()
    # A narrowed input that is itself a graph output (an Identity the lowering dropped)
    # stays an int64 output: one CAST int32 -> int64 after the graph.
    inputs = {id(t) for t in sub.inputs}
    for j, t in enumerate(sub.outputs):
        if id(t) in inputs and id(t) in ranges and t.dtype == I32:
            wide = ed.temp(
                f"{t.name}/int64_output", I64, t.shape, shape_signature=t.shape_signature
            )
            sub.operators.append(ed.op("CAST", [t], [wide]))
            sub.outputs[j] = wide
            kept.append({"op": "CAST", "onnx_node": "", "why": "the input is a graph output"})
    return kept


def _judge(
    op: tfl.Operator, hits: list[int], ranges, outputs
) -> str | tuple[tuple[int, int] | None, list[int]]:
    """Why ``op`` must keep reading int64 values (a string), or (the value interval of its
    int64 outputs, the int64 constant inputs to copy as int32)."""
    code = op.opcode
    if code in COMPARISONS:
        values: Sequence[int] = (0, 1)
    elif code in MOVES:
        values = MOVES[code] or range(len(op.inputs))
    elif code in ARITHMETIC:
        values = (0,) if code in ("CUMSUM", "SUM", "NEG") else (0, 1)
    else:
        return f"{code} is not known to compute the same on int32"
    stray = set(hits) - set(values) - set(INDICES.get(code, ()))
    if stray:
        return f"{code} reads it as operand {min(stray)}"
    if op.options.get("fused_activation_function", "NONE") not in ("NONE", None):
        return "fused activation"
    spans, consts = [], []
    for i in values:
        t = op.inputs[i] if i < len(op.inputs) else None
        if t is None:
            continue
        if id(t) in ranges:
            spans.append(ranges[id(t)])
        elif t.dtype != I64:
            return f"operand {i} is {t.dtype.name}"
        elif t.data is None:
            return f"operand {i} is a run-time int64 value not derived from a narrowed input"
        else:
            span = _const_range(t)
            if not _fits(*span):
                return f"constant operand {i} does not fit in int32"
            spans.append(span)
            consts.append(i)
    if any(id(t) in outputs for t in op.outputs if t.dtype == I64):
        return "its result is a graph output (kept int64)"
    if code in COMPARISONS:
        return None, consts
    if code in MOVES:
        return (min(s[0] for s in spans), max(s[1] for s in spans)), consts
    span = _arith_span(op, spans)
    if span is None or not _fits(*span):
        return f"{code} could leave int32"
    return span, consts


def _reduced_count(op: tfl.Operator) -> int | None:
    """How many elements one CUMSUM/SUM result adds (None: unknown)."""
    x, axes = op.inputs[0], op.inputs[1]
    if axes is None or axes.data is None:
        return None
    dims = x.shape_signature or x.shape
    count = 1
    for a in np.asarray(axes.data).reshape(-1):
        d = dims[int(a) % len(dims)]
        if d < 0:
            return None
        count *= d
    return count


def _arith_span(op: tfl.Operator, spans: list[tuple[int, int]]) -> tuple[int, int] | None:
    """Interval of every result (and partial result) of an integer arithmetic operator."""
    code = op.opcode
    (lo, hi), rest = spans[0], spans[1:]
    if code in ("CUMSUM", "SUM"):
        n = _reduced_count(op)
        if n is None:
            return None
        return min(0, lo, n * lo), max(0, hi, n * hi)  # every partial sum of <= n terms
    if code == "NEG":
        return -hi, -lo
    if not rest:
        return None
    lo2, hi2 = rest[0]
    if code in ("FLOOR_MOD", "FLOOR_DIV") and lo <= I32_MIN and lo2 <= -1 <= hi2:
        return None  # int32 INT_MIN / -1 traps (SIGFPE on x86) where int64 computes it
    if code == "ADD":
        return lo + lo2, hi + hi2
    if code == "SUB":
        return lo - hi2, hi - lo2
    if code == "MUL":
        products = [a * b for a in (lo, hi) for b in (lo2, hi2)]
        return min(products), max(products)
    if code == "FLOOR_MOD":  # |r| < |divisor|, with the divisor's sign
        m = max(abs(lo2), abs(hi2))
        return (-(m - 1) if lo2 < 0 else 0), (m - 1 if hi2 > 0 else 0)
    if code == "FLOOR_DIV":
        if lo2 <= 0 <= hi2:
            return None  # a zero divisor, or quotients up to the dividend itself
        quotients = [a // b for a in (lo, hi) for b in (lo2, hi2)]
        return min(quotients), max(quotients)
    return None
