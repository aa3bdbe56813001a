"""Which weights of the int4 weight variant get int8 instead of 4 bits, within the size
budget (``--int4-size-budget R``, default 0.3 of the float32 file).

What the 4-bit weights leave of the budget buys, first, int8 rows for every embedding table
(and the same codes for a tied output projection; :func:`int8_tables`), then int8 for the
weights whose measured 4-bit output noise per extra byte is largest (:func:`measured_int8`,
measured by ``int4_noise``). ``R = 0`` keeps every weight 4-bit where a kernel takes it;
``--quant-override`` wins over both choices.

Split from ``int4.py`` (the rewrite) because the choice is a question of its own, asked before
anything is rewritten: it estimates the file's bytes and measures output noise, and hands the
rewrite a set of weight ids; the rewrite only carries it out.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from .. import tfl
from .dynamic_range import quantizable_weight
from .int4_codes import blockwise_int4, blockwise_int4_offsets, per_channel_int4
from .int4_forms import Form, reader_form, shared_blocker, weight_index

# Embedding tables get int8 rows while the file's constants stay within this share of the
# float32 file's (issue 21: an int4 file <= 0.3x float32); see :func:`int8_tables`.
TABLE_SIZE_BUDGET = 0.3
# Stored bits per weight of the forms, for that estimate: int4 codes + a float16 scale and a
# float32 offset per block of 32 (an upper bound: offsets only where they pay); int8 codes.
_INT4_BITS = 4 + 16 / 32 + 32 / 32
# Bytes of file structure a 4-bit weight adds (its scales' and offsets' tensors, the block
# sums and offset operators): measured 1.23-1.28 KB a weight on BERT-tiny's and MiniLM's
# all-4-bit files against their float files; an int8 weight adds about 256 (one tensor; its
# per-row scales and zero points are counted apart).
STRUCTURE_BYTES = 1280
INT8_STRUCTURE_BYTES = 256
# The measured chooser skips a weight whose 4-bit output noise is under this share of the
# candidates' total (making it int8 would gain under 0.05 dB).
MIN_NOISE_SHARE = 0.01

TABLE_REASON = (
    "int8: an embedding table (a token's row is its whole signal where the model starts), "
    "within the int4 file's size budget"
)
TIED_REASON = "int8: the same values as an int8 embedding table (one stored copy of the codes)"


def _stored(consts: dict[int, tfl.Tensor]) -> set[int]:
    """ids of one tensor per distinct (dtype, shape, bytes) among ``consts``."""
    seen: dict[tuple, int] = {}
    for key, t in consts.items():
        digest = hashlib.blake2b(np.ascontiguousarray(t.data).tobytes(), digest_size=16).digest()
        seen.setdefault((t.data.dtype.str, t.data.shape, digest), key)
    return set(seen.values())


def _fc_layout(op: tfl.Operator, index: int, block: int) -> np.ndarray | None:
    """The [outputs, inputs] values a FULLY_CONNECTED (or BATCH_MATMUL run as one) would store
    for its weight, or None for other readers."""
    if op.opcode not in ("FULLY_CONNECTED", "BATCH_MATMUL"):
        return None
    form = reader_form(op, index, block)
    if isinstance(form, str):
        return None
    data = op.inputs[index].data
    data = data.T if form.transpose else data
    return data.reshape(data.shape[-2:]) if op.opcode == "BATCH_MATMUL" else data


def int8_tables(model: tfl.Model, block, keep_float, keep_int4, budget: float, float_bytes=None):
    """(ids of the embedding tables to store as int8 rows, ids of the weights holding the same
    values in a FULLY_CONNECTED's layout: a tied output projection, whose codes then share the
    table's stored copy).

    Why tables: a GATHER's row is a token's whole signal where the model starts, and every
    layer reads it through the residual stream; a weight's rounding inside a matmul is one
    branch's share of that stream. Measured with only one weight rounded (4-bit, float
    elsewhere; ``benchmarks/results/int4.md``): BERT-tiny's word table 28 dB against 57-100
    dB for each of its matmuls; GPT-2's table 26 dB and its tied output projection 23 dB
    against 28-38 for its layers. int8 rows gain about 22 dB on those.

    Why a budget: int8 rows cost 2.5 bits a value more than int4 blocks with offsets, and the
    tables are half the weights of small-vocabulary models. They get int8 only when the
    estimated constants of the file (int4 weights at their upper-bound bits, the tables at
    8 bits plus a float32 scale a row, a tied weight's per-row quantization parameters) stay
    within ``budget`` of the float32 file's constants; all tables or none. The third value is
    the bytes the budget leaves (for :func:`measured_int8`)."""
    if budget <= 0:
        return set(), set(), 0.0
    consts: dict[int, tfl.Tensor] = {}
    weights: dict[int, tfl.Tensor] = {}
    tables: dict[int, tfl.Tensor] = {}
    layouts: list[tuple[tfl.Tensor, np.ndarray]] = []
    for sub in model.subgraphs:
        for op in sub.operators:
            for t in op.inputs:
                if t is not None and t.data is not None:
                    consts[id(t)] = t
            index = weight_index(op)
            w = op.inputs[index] if index is not None else None
            if not quantizable_weight(w) or op.onnx_node in keep_float:
                continue
            weights[id(w)] = w
            if op.onnx_node in keep_int4:
                continue
            if op.opcode == "GATHER":
                if not isinstance(reader_form(op, index, block), str):
                    tables[id(w)] = w
                continue
            layout = _fc_layout(op, index, block)
            if layout is not None:
                layouts.append((w, layout))
    stored = _stored(consts)  # (the builder stores equal constants once)
    total = sum(t.data.nbytes for t in consts.values() if id(t) in stored)
    base = total - sum(
        w.data.nbytes - w.data.size * _INT4_BITS / 8 for w in weights.values() if id(w) in stored
    )
    # The file's own structure (the float file's, when built: ``float_bytes``) and what each
    # rewritten weight adds to it (operators, tensors, quantization parameters).
    structure = max(0, (float_bytes or 0) - total)
    total += structure
    base += structure + STRUCTURE_BYTES * len(weights)
    if not tables:
        return set(), set(), budget * total - base
    estimate = base + sum(
        t.data.size * (8 - _INT4_BITS) / 8 + 4 * t.shape[0] for t in tables.values()
    )
    tied = set()
    for w, layout in layouts:
        for t in tables.values():
            if layout.shape == t.shape and np.array_equal(layout, t.data):
                tied.add(id(w))
                estimate += 12 * t.shape[0]  # (its scales and int64 zero points)
                break
    if estimate > budget * total:
        return set(), set(), budget * total - base
    return set(tables), tied, budget * total - estimate


# How many weights the chooser measures at most (one build and run of the model each).
MAX_MEASURED = 96


def _int4_values(op: tfl.Operator, index: int, form: Form) -> np.ndarray:
    """The values ``op``'s weight stands for in ``form`` (int4), in the weight's own layout."""
    w = op.inputs[index]
    data = w.data.T if form.transpose else w.data
    fc = data.reshape(data.shape[-2:]) if op.opcode == "BATCH_MATMUL" else data
    fc = w.data.reshape(w.shape[0], w.shape[3]) if form.as_fc else fc
    fc = np.ascontiguousarray(fc)
    if form.kind == "int4-block":
        found = blockwise_int4_offsets(fc, form.arg) if form.offsets else None
        if found is None:
            codes, scales = blockwise_int4(fc, form.arg)
            values = codes.reshape(scales.shape + (-1,)) * scales[..., None].astype(np.float32)
        else:
            codes, scales, offsets = found
            shaped = codes.reshape(scales.shape + (-1,)).astype(np.float32)
            values = shaped * scales[..., None].astype(np.float32) + offsets[..., None]
        values = values.reshape(fc.shape)
    else:
        codes, scales = per_channel_int4(fc, 0, form.arg)
        values = codes.astype(np.float32) * scales.reshape((-1,) + (1,) * (fc.ndim - 1))
    values = values.reshape(w.shape if form.as_fc else data.shape)
    return values.T if form.transpose else values


def _int8_cost(w: tfl.Tensor, form: Form) -> float:
    """Bytes more for ``w`` as int8 per channel than in ``form`` (12 bytes of quantization
    parameters a row: a float32 scale and an int64 zero point; less the 4-bit form's extra
    structure)."""
    bits = _INT4_BITS if form.kind == "int4-block" else 4.0
    rows = w.shape[0] if not form.transpose else w.shape[-1]
    return w.data.size * (8 - bits) / 8 + 12 * rows - (STRUCTURE_BYTES - INT8_STRUCTURE_BYTES)


def int8_form(op: tfl.Operator, form: Form, why: str) -> Form:
    """The int8 form of a chosen weight: per channel, in the FULLY_CONNECTED layout (the
    same quantizer as a tied table's) or the hybrid CONV_2D's."""
    if op.opcode == "CONV_2D" and not form.as_fc:
        return Form("int8", 0, reason=why, note=form.note)
    return dataclasses.replace(form, kind="int8-channel", arg=0, reason=why, offsets=False)


def measured_int8(model, block, keep, fixed, room: float, noise, out) -> dict[int, str]:
    """{id(weight): why} for the weights to store as int8 instead of int4: the ones whose
    measured output noise at 4 bits (``noise``, the others float) per extra byte is the
    largest, while their extra bytes fit in ``room`` (greedy). int8's own noise is taken as
    nothing (about 24 dB under int4's). Nothing when ``noise`` is None or cannot run the
    model, or there are more than ``MAX_MEASURED`` candidates (recorded in ``out``)."""
    if room <= 0:
        return {}
    if noise is None:
        out.chooser = {"measured": 0, "room_bytes": int(room), "why": "no samples it runs on"}
        return {}
    candidates = {}
    for sub in model.subgraphs:
        readers = sub.consumers()
        for op in sub.operators:
            index = weight_index(op)
            w = op.inputs[index] if index is not None else None
            if op.opcode == "GATHER" or not quantizable_weight(w) or op.onnx_node in keep:
                continue
            if id(w) in fixed or id(w) in candidates:
                continue
            form = reader_form(op, index, block)
            if isinstance(form, str) or not form.kind.startswith("int4"):
                continue
            if shared_blocker(w, readers, block):
                continue
            candidates[id(w)] = (op, index, form)
    if not candidates:
        return {}
    if len(candidates) > MAX_MEASURED or not noise.usable:
        out.chooser = {"measured": 0, "candidates": len(candidates), "room_bytes": int(room)}
        return {}
    scored = []
    for key, (op, index, form) in candidates.items():
        n4 = noise({key: _int4_values(op, index, form)})
        cost = _int8_cost(op.inputs[index], form)
        scored.append((n4 / cost, n4, cost, key, op.onnx_node or op.opcode))
    scored.sort(key=lambda s: -s[0])
    chosen = {}
    left = room
    floor = MIN_NOISE_SHARE * sum(s[1] for s in scored)
    for _, n4, cost, key, _node in scored:
        if cost <= left and n4 > floor:
            chosen[key] = (
                f"int8: its 4-bit rounding alone measured {_db(n4)} dB at the outputs, "
                "among the most per byte; within the int4 file's size budget"
            )
            left -= cost
    out.chooser = {
        "measured": len(scored),
        "room_bytes": int(room),
        "int8": len(chosen),
        "output_sqnr_db_one_weight_int4": {node: _db(n4) for _, n4, _, _, node in scored},
    }
    return chosen


def _db(noise: float) -> float:
    return round(float(10 * np.log10(1.0 / max(noise, 1e-30))), 2)
