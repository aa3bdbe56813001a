"""The int4 weight variant (``--quantize int4``): 4-bit weights, float activations.

``<stem>_int4_weight_quant.tflite`` is a dynamic-range file whose weights are 4-bit wherever
the stock LiteRT CPU kernels (ai-edge-litert 2.3) take them, int8 where only int8 is taken,
float elsewhere. What those kernels accept was checked by running tiny files with and without
XNNPACK (``tests/test_quant_int4.py``; ``docs/quantization_int4.md`` has the table):

- FULLY_CONNECTED: int4 blockwise (the schema's ``BlockwiseQuantization``: one float16 scale
  per ``block_size`` consecutive input channels of each output row, zero point 0) when the
  CPU kernel's 4-bit path takes the shape: >= 4 output rows, >= 32 input channels, an even
  count, blocks dividing it. Otherwise the kernel falls back to a path that reads the weight as
  per-channel and computes a wrong answer silently, so such a weight gets int4 per-channel
  instead. Blockwise codes use all of [-8, 7]; per-channel codes stay in [-7, 7] because the
  CPU's 4-bit per-channel path reads -8 as +8. The blockwise path also ignores a fused
  activation, so a blockwise FULLY_CONNECTED gets its activation as an operator of its own.
  Scales must be positive (XNNPACK refuses the model otherwise) and zero points are not read,
  so a skewed block would waste levels: where it pays, each block also gets a float offset,
  added by a small float FULLY_CONNECTED on the input's block sums (:func:`_with_offsets`).
  XNNPACK (the interpreter's default delegate) runs both forms, and blockwise only with
  blocks that are multiples of 32.
- BATCH_MATMUL: no int4 kernel (it refuses int4). A constant 2-D right-hand side becomes a
  FULLY_CONNECTED (``keep_num_dims``) on the transposed weight, then as above.
- CONV_2D 1x1, stride 1, ungrouped: a FULLY_CONNECTED on the NHWC channels, as above.
- Other CONV_2D: int4 per-channel (axis 0), codes in [-7, 7]: the kernel reads -8 right, but
  ResNet-18 measured 7.8 dB with [-8, 7] against 11.7 (likely: the least-squares scales
  then clip a channel's positive side more than its negative one, a bias per channel that
  non-negative activations accumulate). The kernel has no blockwise form.
- DEPTHWISE_CONV_2D: int8 only (its hybrid kernel takes no int4): int8 per-channel, as in the
  dynamic-range file.
- GATHER of rows of a constant 2-D table (axis 0): EMBEDDING_LOOKUP, whose hybrid kernel
  dequantizes int4 rows to float: blockwise when blocks divide the row, else per-row (an even
  row length: the kernel reads an odd-length row from the wrong nibble). The indices are cast
  to int32 and flattened (EMBEDDING_LOOKUP takes 1-D int32), the output reshaped back;
  per-block offsets, where they pay, are gathered by the same indices and added.

Scales: per block (or channel), the scale with the least squared error among 12 candidates
from ``max|w| / 7`` down to ``0.7 max|w| / 8`` (clipping the largest values a little often
rounds the rest better): 0.8 dB of weight SQNR above a fixed ``max|w| / 7.5`` on MiniLM.
The 4-bit packing (two values a byte, the even element in the low nibble) is the builder's
(``_pack_nibbles``).

Precision within a size budget (``--int4-size-budget R``, default 0.3 of the float32 file):
what the 4-bit weights leave of it buys, first, int8 rows for every embedding table (and
the same codes for a tied output projection; :func:`_int8_tables`), then int8 for the weights
whose measured 4-bit output noise per extra byte is largest (:func:`_measured_int8`, measured
by ``int4_noise``). An int8 table is an EMBEDDING_LOOKUP of codes at one scale times its rows'
scales gathered apart (:func:`int8_rows`). ``R = 0`` keeps every weight 4-bit where a kernel
takes it; ``--quant-override`` wins over both choices.

Weights under 1,024 elements stay float, as in the dynamic-range file. A weight shared by
several operators is rewritten once per format its readers need; a weight also read by an
operator that cannot take it quantized stays float for all of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np

from .. import tfl
from .dynamic_range import HYBRID_WEIGHT_AXIS, hybrid_weight, quantizable_weight

INT4 = np.dtype(ml_dtypes.int4)
DEFAULT_BLOCK = 32
# The CPU kernel's 4-bit FULLY_CONNECTED path (the only one that reads blockwise scales).
FC4_MIN_ROWS = 4
FC4_MIN_DEPTH = 32
# Candidate scales: 12 fractions of max|w| / (top + 1), up to (top + 1) / top (the largest
# value then maps to exactly ``top``).
_CANDIDATES = 12
_CHUNK = 1 << 20  # elements quantized at a time (bounds the search's temporaries)
# A blockwise weight gets per-block offsets when they gain this much weight SQNR (dB).
OFFSET_GAIN_DB = 0.25
# Embedding tables get int8 rows while the file's constants stay within this share of the
# float32 file's (issue 21: an int4 file <= 0.3x float32); see :func:`_int8_tables`.
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

INT4_WEIGHTS, INT8_WEIGHTS, FLOAT = "int4-weights", "int8-weights", "float"
# Fused activations a blockwise FULLY_CONNECTED gets as operators of their own.
UNFUSED = {"RELU": "RELU", "RELU6": "RELU6", "RELU_N1_TO_1": "RELU_N1_TO_1", "TANH": "TANH"}


@dataclass
class Int4Outcome:
    """What the rewrite did: per-operator rows for the report, and the weights it rounded."""

    ops: list[dict] = field(default_factory=list)  # {"node", "op", "precision", "reason"?}
    rounded: list = field(default_factory=list)  # (op, float weight in op layout, values)
    tensors: dict = field(default_factory=dict)  # format -> count of weight tensors written
    last_format: str = ""  # (the format the last rewritten operator got)
    chooser: dict = field(default_factory=dict)  # what the measured int8 choice saw

    @property
    def converted(self) -> int:
        return sum(self.tensors.values())

    def summary(self) -> dict:
        """The report's variant entry: counts, and each weighted node's weight format."""
        counts: dict[str, int] = {}
        formats: dict[str, str] = {}
        for row in self.ops:
            if row.get("weighted"):
                counts[row["precision"]] = counts.get(row["precision"], 0) + 1
                formats[row["node"] or row["op"]] = row.get("format", "float")
        return {
            "converted_tensors": self.converted,
            "weights": dict(self.tensors),
            "ops": counts,
            "weight_formats": formats,
            **({"int8_chooser": self.chooser} if self.chooser else {}),
        }


# -- quantizers -------------------------------------------------------------------------------
def _search(rows: np.ndarray, top: int, bottom: int, scale_dtype) -> tuple[np.ndarray, np.ndarray]:
    """Codes in [bottom, top] and one scale per row of ``rows`` (float32 [n, k]), the scale
    chosen for the least squared error (scales rounded to ``scale_dtype`` first)."""
    codes = np.empty(rows.shape, np.int8)
    scales = np.empty(rows.shape[0], scale_dtype)
    step = max(1, _CHUNK // max(rows.shape[1], 1))
    for lo in range(0, rows.shape[0], step):
        r = rows[lo : lo + step]
        peak = np.abs(r).max(axis=1, keepdims=True) / (top + 1)
        best_err = best_s = None
        for f in np.linspace(0.7, (top + 1) / top, _CANDIDATES):
            s = (peak * f).astype(scale_dtype).astype(np.float32)
            s = np.where(s > 0, s, np.float32(1.0))  # all-zero rows: any scale, codes 0
            err = np.square(r - np.clip(np.rint(r / s), bottom, top) * s).sum(axis=1)
            if best_err is None:
                best_err, best_s = err, s[:, 0]
            else:
                better = err < best_err
                best_err = np.where(better, err, best_err)
                best_s = np.where(better, s[:, 0], best_s)
        codes[lo : lo + step] = np.clip(np.rint(r / best_s[:, None]), bottom, top)
        scales[lo : lo + step] = best_s
    return codes, scales


def blockwise_int4(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """2-D ``w`` [rows, cols] as int4 codes in [-8, 7] and float16 scales [rows, cols/block]."""
    rows, cols = w.shape
    codes, scales = _search(w.reshape(-1, block).astype(np.float32), 7, -8, np.float16)
    return codes.reshape(rows, cols), scales.reshape(rows, cols // block)


def blockwise_int4_offsets(w: np.ndarray, block: int):
    """2-D ``w`` [rows, cols] as ``codes * scale + offset`` per block: int4 codes in [-8, 7],
    float16 scales and float32 offsets, both [rows, cols/block]; None when the offsets gain
    under ``OFFSET_GAIN_DB`` of weight SQNR over :func:`blockwise_int4` (symmetric blocks).

    Per block, the best of the symmetric codes (offset 0) and 12 spreads of the block's
    [min, max] over the 16 codes, each with the least-squares offset for its codes. The
    kernels read no zero point; the offsets are added by a small float FULLY_CONNECTED on the
    input's block sums (see :func:`_with_offsets`)."""
    rows = w.reshape(-1, block).astype(np.float32)
    sym_codes, sym_scales = blockwise_int4(w, block)
    codes = sym_codes.reshape(rows.shape).copy()
    scales = sym_scales.reshape(-1).copy()
    offsets = np.zeros(rows.shape[0], np.float32)
    sym_err = np.square(rows - codes * scales.astype(np.float32)[:, None]).sum(axis=1)
    err_all = sym_err.copy()
    step = max(1, _CHUNK // block)
    for a in range(0, rows.shape[0], step):
        r = rows[a : a + step]
        lo, hi = r.min(axis=1, keepdims=True), r.max(axis=1, keepdims=True)
        best = err_all[a : a + step]
        for f in np.linspace(0.8, 1.1, _CANDIDATES):
            sc = ((hi - lo) / 15.0 * f).astype(np.float16).astype(np.float32)
            sc = np.where(sc > 0, sc, np.float32(1.0))
            m = (hi + lo) / 2 + sc / 2  # codes -8..7 centred on the range
            q = np.clip(np.rint((r - m) / sc), -8, 7)
            m = (r - sc * q).mean(axis=1, keepdims=True)
            q = np.clip(np.rint((r - m) / sc), -8, 7)
            err = np.square(r - (sc * q + m)).sum(axis=1)
            better = err < best
            best = np.where(better, err, best)
            codes[a : a + step][better] = q[better]
            scales[a : a + step][better] = sc[better, 0]
            offsets[a : a + step][better] = m[better, 0]
        err_all[a : a + step] = best
    gain = 10 * np.log10(max(float(sym_err.sum()), 1e-30) / max(float(err_all.sum()), 1e-30))
    if gain < OFFSET_GAIN_DB:
        return None
    shape = (w.shape[0], w.shape[1] // block)
    return codes.reshape(w.shape), scales.reshape(shape), offsets.reshape(shape)


def per_channel_int4(w: np.ndarray, axis: int, bottom: int = -7) -> tuple[np.ndarray, np.ndarray]:
    """``w`` as int4 codes in [``bottom``, 7] with one float32 scale per slice along ``axis``
    (-7 for FULLY_CONNECTED, whose CPU 4-bit path reads -8 as +8; -8 for the others)."""
    moved = np.moveaxis(w.astype(np.float32), axis, 0)
    codes, scales = _search(moved.reshape(moved.shape[0], -1), 7, bottom, np.float32)
    return np.moveaxis(codes.reshape(moved.shape), 0, axis), scales


def dequantize(t: tfl.Tensor) -> np.ndarray:
    """The float32 values an int4 (blockwise or per-channel) or int8 weight stands for."""
    q = t.quantization
    codes = t.data.astype(np.float32)
    if q.block_scales is not None:
        s = q.block_scales.data.astype(np.float32)
        return (codes.reshape(s.shape + (-1,)) * s[..., None]).reshape(t.shape)
    shape = [1] * codes.ndim
    if np.size(q.scale) > 1:
        shape[q.axis] = -1
    return codes * np.asarray(q.scale, np.float32).reshape(shape)


def _blockwise_tensor(w: np.ndarray, name: str, block: int, quantized=None) -> tfl.Tensor:
    codes, scales = quantized if quantized is not None else blockwise_int4(w, block)
    scale_t = tfl.Tensor(f"{name}/int4_scales", np.float16, scales.shape, data=scales)
    quant = tfl.Quantization(
        scale=np.zeros(0, np.float32),
        zero_point=np.zeros(0, np.int64),
        axis=0,
        block_size=block,
        block_scales=scale_t,
    )
    return tfl.Tensor(f"{name}/int4", INT4, w.shape, data=codes.astype(INT4), quantization=quant)


def _per_channel_tensor(w: np.ndarray, name: str, axis: int, bottom: int) -> tfl.Tensor:
    codes, scales = per_channel_int4(w, axis, bottom)
    quant = tfl.Quantization(scale=scales, zero_point=np.zeros(scales.size, np.int64), axis=axis)
    return tfl.Tensor(f"{name}/int4", INT4, w.shape, data=codes.astype(INT4), quantization=quant)


def int8_rows(w: np.ndarray, name: str) -> tuple[tfl.Tensor, tfl.Tensor]:
    """2-D ``w`` [rows, cols] as int8 codes in [-127, 127] stored at one scale of 1 (the
    hybrid EMBEDDING_LOOKUP then returns the codes themselves) and the rows' least-squares
    scales as a float32 tensor [rows, 1], gathered and multiplied apart. Why not per-row
    quantization parameters: LiteRT reads one int64 zero point per scale, 12 bytes a row
    against 4 (1.5 bits a value on a 64-wide table: 8 KB of BERT's 0.3x budget)."""
    codes, scales = _search(w.astype(np.float32), 127, -127, np.float32)
    one = tfl.Quantization(scale=np.ones(1, np.float32), zero_point=np.zeros(1, np.int64))
    q = tfl.Tensor(f"{name}/int8", np.int8, w.shape, data=codes, quantization=one)
    s = scales.reshape(-1, 1)
    return q, tfl.Tensor(f"{name}/int8_row_scales", np.float32, s.shape, data=s)


# -- which precision: int8 tables within the size budget --------------------------------------
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
    form = _reader_form(op, index, block)
    if isinstance(form, str):
        return None
    data = op.inputs[index].data
    data = data.T if form.transpose else data
    return data.reshape(data.shape[-2:]) if op.opcode == "BATCH_MATMUL" else data


def _int8_tables(model: tfl.Model, block, keep_float, keep_int4, budget: float, float_bytes=None):
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
    the bytes the budget leaves (for :func:`_measured_int8`)."""
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
            index = _weight_index(op)
            w = op.inputs[index] if index is not None else None
            if not quantizable_weight(w) or op.onnx_node in keep_float:
                continue
            weights[id(w)] = w
            if op.onnx_node in keep_int4:
                continue
            if op.opcode == "GATHER":
                if not isinstance(_reader_form(op, index, block), str):
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


def _int4_values(op: tfl.Operator, index: int, form: _Form) -> np.ndarray:
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


def _int8_cost(w: tfl.Tensor, form: _Form) -> float:
    """Bytes more for ``w`` as int8 per channel than in ``form`` (12 bytes of quantization
    parameters a row: a float32 scale and an int64 zero point; less the 4-bit form's extra
    structure)."""
    bits = _INT4_BITS if form.kind == "int4-block" else 4.0
    rows = w.shape[0] if not form.transpose else w.shape[-1]
    return w.data.size * (8 - bits) / 8 + 12 * rows - (STRUCTURE_BYTES - INT8_STRUCTURE_BYTES)


def _int8_form(op: tfl.Operator, form: _Form, why: str) -> _Form:
    """The int8 form of a chosen weight: per channel, in the FULLY_CONNECTED layout (the
    same quantizer as a tied table's) or the hybrid CONV_2D's."""
    if op.opcode == "CONV_2D" and not form.as_fc:
        return _Form("int8", 0, reason=why, note=form.note)
    return dataclasses.replace(form, kind="int8-channel", arg=0, reason=why, offsets=False)


def _measured_int8(model, block, keep, fixed, room: float, noise, out) -> dict[int, str]:
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
            index = _weight_index(op)
            w = op.inputs[index] if index is not None else None
            if op.opcode == "GATHER" or not quantizable_weight(w) or op.onnx_node in keep:
                continue
            if id(w) in fixed or id(w) in candidates:
                continue
            form = _reader_form(op, index, block)
            if isinstance(form, str) or not form.kind.startswith("int4"):
                continue
            if _shared_blocker(w, readers, block):
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


# -- which format each reader takes -----------------------------------------------------------
@dataclass(frozen=True)
class _Form:
    """How one operator reads one weight: ``kind`` int4-block / int4-channel / int8, the
    layout (``transpose`` for a BATCH_MATMUL right-hand side) and the axis or block size."""

    kind: str
    arg: int
    transpose: bool = False
    reason: str = ""  # why not int4 blockwise (a kernel constraint), for the report
    note: str = ""  # how it is run, when not the op itself (for the report)
    offsets: bool = False  # blockwise with per-block offsets
    as_fc: bool = False  # a 1x1 CONV_2D run as a FULLY_CONNECTED (which has a blockwise kernel)


def _pointwise(op: tfl.Operator, w: tfl.Tensor, x: tfl.Tensor) -> bool:
    """A 1x1, stride-1, ungrouped CONV_2D on NHWC: a FULLY_CONNECTED over the channels."""
    o = op.options
    return (
        w.rank == 4
        and w.shape[1:3] == (1, 1)
        and o.get("stride_h", 1) == 1
        and o.get("stride_w", 1) == 1
        and x.rank == 4
        and x.shape[-1] == w.shape[3]
    )


def _half_scales_fit(w: tfl.Tensor) -> bool:
    """Blockwise scales are float16: max|w| / 7 must stay finite there."""
    return float(np.abs(w.data).max()) / 7.0 < float(np.finfo(np.float16).max)


def _fc_form(rows, cols, block, transpose=False, note="", x=None, w=None, act="NONE") -> _Form:
    """Blockwise where the CPU 4-bit kernel takes it, else per-channel (and why)."""
    why = ""
    if not block:
        why = "int4 per-channel: blockwise not asked for (block size 0)"
    elif act not in UNFUSED and act not in (None, "NONE"):
        why = f"int4 per-channel: the blockwise kernel ignores a fused {act}"
    elif w is not None and not _half_scales_fit(w):
        why = "int4 per-channel: weights too large for float16 block scales"
    elif cols % block or block % 2 or rows < FC4_MIN_ROWS or cols < FC4_MIN_DEPTH:
        why = (
            f"int4 per-channel: blockwise needs >= {FC4_MIN_ROWS} rows, >= {FC4_MIN_DEPTH} "
            f"input channels and blocks of {block} dividing them (CPU 4-bit kernel)"
        )
    if not why:
        offsets = x is not None and x.rank >= 2
        return _Form("int4-block", block, transpose, note=note, offsets=offsets)
    return _Form("int4-channel", -7, transpose, why, note)  # (-8 is misread: codes -7..7)


def _reader_form(op: tfl.Operator, index: int, block: int) -> _Form | str:
    """The format ``op`` can read its constant input ``index`` in, or why it cannot."""
    w = op.inputs[index]
    x = op.inputs[1 - index] if op.opcode in ("GATHER", "BATCH_MATMUL") else op.inputs[0]
    if op.opcode in HYBRID_WEIGHT_AXIS and index == 1:
        if x is None or x.dtype != np.float32:
            return "input is not float32"
        if op.opcode == "FULLY_CONNECTED":
            if w.rank != 2:
                return "weight is not 2-D"
            act = op.options.get("fused_activation_function", "NONE")
            return _fc_form(w.shape[0], w.shape[1], block, x=x, w=w, act=act)
        if op.opcode == "CONV_2D":
            if _pointwise(op, w, x):
                act = op.options.get("fused_activation_function", "NONE")
                note = "FULLY_CONNECTED (a 1x1 CONV_2D: blockwise)"
                rows, cols = w.shape[0], w.shape[3]
                form = _fc_form(rows, cols, block, x=x, w=w, act=act, note=note)
                if form.kind == "int4-block":
                    return dataclasses.replace(form, as_fc=True)
            return _Form(
                "int4-channel", -7, reason="int4 per-channel: CONV_2D has no blockwise kernel"
            )
        return _Form(
            "int8", HYBRID_WEIGHT_AXIS[op.opcode], reason=f"int8: {op.opcode} has no int4 kernel"
        )
    if op.opcode == "BATCH_MATMUL" and index == 1:
        if x.dtype != np.float32 or op.options.get("adj_x"):
            return "left-hand side is not a plain float32 operand"
        if any(d != 1 for d in w.shape[:-2]) or w.rank < 2:
            return "batched constant right-hand side (BATCH_MATMUL has no int4 kernel)"
        k, n = (w.shape[-1], w.shape[-2]) if op.options.get("adj_y") else w.shape[-2:]
        if tuple(op.outputs[0].shape) != tuple(x.shape[:-1]) + (n,) or x.shape[-1] != k:
            return "output shape is not the left-hand side's with the last dimension replaced"
        note = "FULLY_CONNECTED on the transposed weight (BATCH_MATMUL has no int4 kernel)"
        return _fc_form(n, k, block, transpose=not op.options.get("adj_y"), note=note, x=x, w=w)
    if op.opcode == "GATHER" and index == 0:
        if op.options.get("axis", 0) != 0 or op.options.get("batch_dims", 0) != 0:
            return "GATHER not along axis 0 of the table"
        if w.rank != 2 or x.dtype not in (np.int32, np.int64):
            return "table not 2-D or indices not integer"
        rows, cols = w.shape
        if block and cols % block == 0 and block % 2 == 0 and _half_scales_fit(w):
            return _Form("int4-block", block, note="EMBEDDING_LOOKUP", offsets=True)
        if cols % 2 == 0:
            why = f"int4 per-row: blocks of {block} do not divide the row"
            return _Form("int4-channel", -8, reason=why, note="EMBEDDING_LOOKUP")
        return "odd row length (EMBEDDING_LOOKUP reads odd int4 rows from the wrong nibble)"
    return f"{op.opcode} reads it (no quantized kernel for this input)"


# -- the rewrite ------------------------------------------------------------------------------
def quantize_weights_int4(
    model: tfl.Model,
    block_size: int = DEFAULT_BLOCK,
    keep_float=frozenset(),
    keep_int8=frozenset(),
    keep_int4=frozenset(),
    table_budget: float = TABLE_SIZE_BUDGET,
    noise=None,
) -> Int4Outcome:
    """Rewrite ``model`` in place (see the module docstring); ``block_size`` 0 means
    per-channel only. Operators of the ONNX nodes in ``keep_float`` keep float weights, those
    in ``keep_int8`` get int8 hybrid weights, those in ``keep_int4`` int4 even where the
    default would choose int8 (``--quant-override``). Embedding tables (and weights holding
    the same values: a tied output projection) get int8 rows while the file stays within
    ``table_budget`` of the float32 file's constants (:func:`_int8_tables`; 0: never); what
    the budget leaves buys int8 for the weights whose measured 4-bit output noise per byte is
    the largest, when ``noise`` (an ``int4_noise.OutputNoise``) can measure it
    (:func:`_measured_int8`)."""
    out = Int4Outcome()
    float_bytes = getattr(noise, "float_bytes", None)
    tables, tied, room = _int8_tables(
        model, block_size, keep_float, keep_int4, table_budget, float_bytes
    )
    keep = keep_float | keep_int8 | keep_int4
    chosen = _measured_int8(model, block_size, keep, tables | tied, room, noise, out)
    for sub in model.subgraphs:
        readers = sub.consumers()
        made: dict[tuple, object] = {}  # weights per format, block sums per input
        new_ops: list[tfl.Operator] = []
        for op in sub.operators:
            row = {"node": op.onnx_node, "op": op.opcode, "precision": FLOAT}
            index = _weight_index(op)
            w = op.inputs[index] if index is not None else None
            if not quantizable_weight(w):
                new_ops.append(op)
                out.ops.append(row)
                continue
            row["weighted"] = True
            form = _reader_form(op, index, block_size)
            blocker = _shared_blocker(w, readers, block_size)
            if op.onnx_node in keep_float:
                row["reason"] = "override: float"
            elif isinstance(form, str) or blocker:
                row["reason"] = form if isinstance(form, str) else blocker
            elif op.onnx_node in keep_int8 and op.opcode == "BATCH_MATMUL":
                row["reason"] = "override: int8 (BATCH_MATMUL hybrid is per-tensor only: float)"
            else:
                if op.opcode == "GATHER" and (op.onnx_node in keep_int8 or id(w) in tables):
                    why = "override: int8" if op.onnx_node in keep_int8 else TABLE_REASON
                    form = _Form("int8-rows", 0, reason=why, note="EMBEDDING_LOOKUP")
                elif id(w) in tied and op.onnx_node not in keep_int8:
                    form = dataclasses.replace(form, kind="int8-tied", arg=0, reason=TIED_REASON)
                elif id(w) in chosen:
                    form = _int8_form(op, form, chosen[id(w)])
                elif op.onnx_node in keep_int8:
                    axis = HYBRID_WEIGHT_AXIS.get(op.opcode, 0)
                    form = _Form("int8", axis, note=form.note)
                new_ops.extend(_rewrite(op, index, w, form, made, out))
                row["precision"] = INT8_WEIGHTS if form.kind.startswith("int8") else INT4_WEIGHTS
                row["format"] = out.last_format + (f" ({form.note})" if form.note else "")
                if form.reason:
                    row["reason"] = form.reason
                out.ops.append(row)
                continue
            new_ops.append(op)
            out.ops.append(row)
        sub.operators[:] = new_ops
    return out


def _weight_index(op: tfl.Operator) -> int | None:
    if op.opcode == "GATHER":
        return 0
    if op.opcode in HYBRID_WEIGHT_AXIS or op.opcode == "BATCH_MATMUL":
        return 1 if len(op.inputs) > 1 else None
    return None


def _shared_blocker(w: tfl.Tensor, readers, block: int) -> str:
    """Why ``w`` must stay float for every reader (one of them cannot take it), or ''."""
    for reader, i in readers.get(id(w), []):
        if _weight_index(reader) != i or isinstance(_reader_form(reader, i, block), str):
            return f"the weight is also read by {reader.opcode} ({reader.onnx_node}), which needs it float"
    return ""


def _rewrite(op, index, w, form: _Form, made: dict, out: Int4Outcome) -> list[tfl.Operator]:
    """The operators replacing ``op`` with its weight in ``form`` (one per format)."""
    key = (id(w), form.kind, form.arg, form.transpose, form.offsets, form.as_fc)  # (shared)
    data = w.data.T if form.transpose else w.data
    data = data.reshape(data.shape[-2:]) if op.opcode == "BATCH_MATMUL" else data
    data = data.reshape(w.shape[0], w.shape[3]) if form.as_fc else data
    if key not in made:
        offsets = None
        if form.kind == "int4-block" and form.offsets:
            q, offsets = _offset_blockwise_tensors(np.ascontiguousarray(data), w.name, form.arg)
        elif form.kind == "int4-block":
            q = _blockwise_tensor(np.ascontiguousarray(data), w.name, form.arg)
        elif form.kind == "int4-channel":
            q = _per_channel_tensor(data, w.name, 0, bottom=form.arg)
        elif form.kind in ("int8-rows", "int8-tied", "int8-channel"):
            q, row_scales = int8_rows(np.ascontiguousarray(data), w.name)
            if form.kind == "int8-rows":  # codes at scale 1; the row scales gathered apart
                made[("row_scales", id(w))] = row_scales
            else:  # per-channel: the same codes as the table's (one stored copy)
                zero = np.zeros(row_scales.shape[0], np.int64)
                scales = row_scales.data[:, 0].copy()
                q.quantization = tfl.Quantization(scale=scales, zero_point=zero, axis=0)
        else:
            float_w = tfl.Tensor(w.name, np.float32, data.shape, data=data)
            q = hybrid_weight(float_w, op.opcode, per_channel=True)
        made[key] = (q, offsets)
        kind = form.kind + ("+offsets" if offsets is not None else "")
        out.tensors[kind] = out.tensors.get(kind, 0) + 1
    q, offsets = made[key]
    out.last_format = form.kind + ("+offsets" if offsets is not None else "")
    values = dequantize(q)
    row_scales = made.get(("row_scales", id(w))) if form.kind == "int8-rows" else None
    if row_scales is not None:
        values = values * row_scales.data
    if offsets is not None:
        values = values + np.repeat(offsets.data, form.arg, axis=1)
    if op.opcode == "GATHER":
        return _embedding_lookup(op, q, offsets, row_scales)
    if op.opcode == "BATCH_MATMUL":
        float_w = tfl.Tensor(f"{w.name}/fc", np.float32, q.shape, data=np.ascontiguousarray(data))
        fc = tfl.Operator(
            "FULLY_CONNECTED",
            [op.inputs[0], q, None],
            list(op.outputs),
            {"keep_num_dims": True, "asymmetric_quantize_inputs": True},
            onnx_node=op.onnx_node,
        )
        out.rounded.append((fc, float_w, values))
        return _with_offsets(fc, offsets, form.arg, made) if offsets is not None else [fc]
    if form.as_fc:  # CONV_2D 1x1 -> FULLY_CONNECTED on the NHWC channels
        bias = op.inputs[2] if len(op.inputs) > 2 else None
        options = {"keep_num_dims": True, "asymmetric_quantize_inputs": True}
        options["fused_activation_function"] = op.options.get("fused_activation_function", "NONE")
        fc = tfl.Operator(
            "FULLY_CONNECTED",
            [op.inputs[0], q, bias],
            list(op.outputs),
            options,
            onnx_node=op.onnx_node,
        )
        float_w = tfl.Tensor(f"{w.name}/fc", np.float32, q.shape, data=np.ascontiguousarray(data))
        out.rounded.append((fc, float_w, values))
        return _with_offsets(fc, offsets, form.arg, made) if offsets is not None else _unfused(fc)
    out.rounded.append((op, tfl.Tensor(w.name, np.float32, w.shape, data=w.data), values))
    op.inputs[index] = q
    if op.opcode == "FULLY_CONNECTED":
        op.options["asymmetric_quantize_inputs"] = True
        if offsets is not None:
            return _with_offsets(op, offsets, form.arg, made)
        if form.kind == "int4-block":
            return _unfused(op)
    return [op]


def _offset_blockwise_tensors(w: np.ndarray, name: str, block: int):
    """(int4 blockwise weight, its offsets or None when they gain too little)."""
    quantized = blockwise_int4_offsets(w, block)
    if quantized is None:
        return _blockwise_tensor(w, name, block), None
    codes, scales, offsets = quantized
    q = _blockwise_tensor(w, name, block, (codes, scales))
    return q, tfl.Tensor(f"{name}/int4_offsets", np.float32, offsets.shape, data=offsets)


def _with_offsets(fc: tfl.Operator, offsets: tfl.Tensor, block: int, made: dict):
    """``fc`` (blockwise int4) plus its per-block offsets: ``y = fc(x) + FC(block sums of x,
    offsets)``, the block sums (RESHAPE, SUM) made once per input. The fused activation moves
    after the ADD (the blockwise kernel ignores it)."""
    x, y = fc.inputs[0], fc.outputs[0]
    node = fc.onnx_node
    ops = []
    sums = made.get(("sums", id(x), block))
    if sums is None:
        sums = _block_sums(x, block, node, ops)
        made[("sums", id(x), block)] = sums
    act = fc.options.get("fused_activation_function", "NONE") or "NONE"
    fc.options["fused_activation_function"] = "NONE"
    sig = y.shape_signature
    main = tfl.Tensor(f"{y.name}/int4", np.float32, y.shape, shape_signature=sig)
    shifted = tfl.Tensor(f"{y.name}/offsets", np.float32, y.shape, shape_signature=sig)
    fc.outputs[0] = main
    keep = {"keep_num_dims": bool(fc.options.get("keep_num_dims", False))}
    ops.append(fc)
    ops.append(
        tfl.Operator("FULLY_CONNECTED", [sums, offsets, None], [shifted], keep, onnx_node=node)
    )
    fused = act if act in ("RELU", "RELU6", "RELU_N1_TO_1") else "NONE"
    added = (
        y
        if fused == act or act == "NONE"
        else tfl.Tensor(f"{y.name}/pre_{act.lower()}", np.float32, y.shape, shape_signature=sig)
    )
    ops.append(
        tfl.Operator(
            "ADD", [main, shifted], [added], {"fused_activation_function": fused}, onnx_node=node
        )
    )
    if added is not y:
        ops.append(tfl.Operator(UNFUSED[act], [added], [y], onnx_node=node))
    return ops


def _block_sums(x: tfl.Tensor, block: int, node, ops: list) -> tfl.Tensor:
    """The sums of ``x`` over each block of ``block`` channels of its last axis: RESHAPE to
    [..., blocks, block] (the shape computed at run time, SHAPE + SLICE + CONCATENATION, when
    ``x``'s is dynamic), then SUM over the last axis."""
    lead, count = tuple(x.shape[:-1]), x.shape[-1] // block
    blocks = lead + (count, block)
    sig = None if _static(x) else tuple(x.shape_signature[:-1]) + (count, block)
    split = tfl.Tensor(f"{x.name}/blocks{block}", np.float32, blocks, shape_signature=sig)
    axis = tfl.Tensor(
        f"{split.name}/axis", np.int32, (1,), data=np.array([len(lead) + 1], np.int32)
    )
    if sig is None:
        shape = tfl.Tensor(
            f"{split.name}/shape", np.int32, (len(blocks),), data=np.array(blocks, np.int32)
        )
        ops.append(
            tfl.Operator(
                "RESHAPE", [x, shape], [split], {"new_shape": list(blocks)}, onnx_node=node
            )
        )
    else:
        full = tfl.Tensor(f"{x.name}/shape", np.int32, (x.rank,))
        head = tfl.Tensor(f"{x.name}/lead_shape", np.int32, (len(lead),))
        begin = tfl.Tensor(f"{head.name}/begin", np.int32, (1,), data=np.array([0], np.int32))
        size = tfl.Tensor(f"{head.name}/size", np.int32, (1,), data=np.array([len(lead)], np.int32))
        tail = tfl.Tensor(
            f"{split.name}/tail", np.int32, (2,), data=np.array([count, block], np.int32)
        )
        shape = tfl.Tensor(f"{split.name}/shape", np.int32, (len(blocks),))
        ops.append(tfl.Operator("SHAPE", [x], [full], {"out_type": "INT32"}, onnx_node=node))
        ops.append(tfl.Operator("SLICE", [full, begin, size], [head], onnx_node=node))
        ops.append(
            tfl.Operator("CONCATENATION", [head, tail], [shape], {"axis": 0}, onnx_node=node)
        )
        ops.append(tfl.Operator("RESHAPE", [x, shape], [split], onnx_node=node))
    sums_sig = None if sig is None else sig[:-1]
    sums = tfl.Tensor(
        f"{x.name}/block_sums{block}", np.float32, blocks[:-1], shape_signature=sums_sig
    )
    ops.append(tfl.Operator("SUM", [split, axis], [sums], {"keep_dims": False}, onnx_node=node))
    return sums


def _static(t: tfl.Tensor) -> bool:
    return t.shape_signature is None or all(d >= 0 for d in t.shape_signature)


def _unfused(op: tfl.Operator) -> list[tfl.Operator]:
    """The CPU kernel's blockwise path ignores a fused activation: it becomes an operator."""
    act = op.options.get("fused_activation_function", "NONE")
    if act in (None, "NONE"):
        return [op]
    y = op.outputs[0]
    pre = tfl.Tensor(
        f"{y.name}/pre_{act.lower()}", np.float32, y.shape, shape_signature=y.shape_signature
    )
    op.options["fused_activation_function"] = "NONE"
    op.outputs[0] = pre
    return [op, tfl.Operator(UNFUSED[act], [pre], [y], onnx_node=op.onnx_node)]


def _add_row_offsets(rows, flat, offsets, count, dynamic, node, ops) -> tfl.Tensor:
    """``rows`` [n, width] plus, per block, the offsets of its table row (GATHER of the
    offsets table by the same indices, broadcast over the block): [n, blocks, block]."""
    blocks = offsets.shape[1]
    block = rows.shape[1] // blocks
    n = -1 if dynamic else count

    def tensor(name, shape):
        sig = (-1,) + tuple(shape[1:]) if dynamic else None
        return tfl.Tensor(f"{rows.name}/{name}", np.float32, shape, shape_signature=sig)

    def reshape(src, dst, dims):
        new = tfl.Tensor(f"{dst.name}/shape", np.int32, (len(dims),), data=np.array(dims, np.int32))
        ops.append(
            tfl.Operator("RESHAPE", [src, new], [dst], {"new_shape": list(dims)}, onnx_node=node)
        )

    picked = tensor("offsets", (count, blocks))
    ops.append(tfl.Operator("GATHER", [offsets, flat], [picked], {"axis": 0}, onnx_node=node))
    split, column = tensor("blocks", (count, blocks, block)), tensor("offsets3", (count, blocks, 1))
    reshape(rows, split, (n, blocks, block))
    reshape(picked, column, (n, blocks, 1))
    shifted = tensor("shifted", (count, blocks, block))
    ops.append(tfl.Operator("ADD", [split, column], [shifted], onnx_node=node))
    return shifted


def _embedding_lookup(
    op: tfl.Operator, table: tfl.Tensor, offsets=None, row_scales=None
) -> list[tfl.Operator]:
    """GATHER(table, indices) on axis 0 as EMBEDDING_LOOKUP, whose hybrid kernel reads an int4
    table: indices cast to int32 and flattened, the rows reshaped to GATHER's output (its
    shape computed at run time, SHAPE + CONCATENATION, when the indices' shape is dynamic).
    With per-block ``offsets`` ([rows, blocks], float32), their rows are gathered by the same
    indices and added to each block of the looked-up rows; with ``row_scales`` ([rows, 1],
    float32: an int8 table of codes at scale 1), the rows are multiplied by theirs."""
    ids, y = op.inputs[1], op.outputs[0]
    node = op.onnx_node
    dynamic = not _static(ids)
    ops = []
    count = int(np.prod(ids.shape))
    flat = ids
    if ids.dtype != np.int32:
        flat = tfl.Tensor(
            f"{ids.name}/int32", np.int32, ids.shape, shape_signature=ids.shape_signature
        )
        ops.append(tfl.Operator("CAST", [ids], [flat], onnx_node=node))
    if ids.rank != 1:
        src, n = flat, -1 if dynamic else count
        flat = tfl.Tensor(
            f"{ids.name}/flat", np.int32, (count,), shape_signature=(n,) if dynamic else None
        )
        shape = tfl.Tensor(f"{ids.name}/flat_shape", np.int32, (1,), data=np.array([n], np.int32))
        ops.append(
            tfl.Operator("RESHAPE", [src, shape], [flat], {"new_shape": [n]}, onnx_node=node)
        )
    rows_shape = (count, table.shape[1])
    direct = tuple(y.shape) == rows_shape and (not dynamic or ids.rank == 1)
    sig = (-1, table.shape[1]) if dynamic else None
    if direct and offsets is None and row_scales is None:
        rows = y
    else:
        rows = tfl.Tensor(f"{y.name}/rows", np.float32, rows_shape, shape_signature=sig)
    ops.append(tfl.Operator("EMBEDDING_LOOKUP", [flat, table], [rows], onnx_node=node))
    if row_scales is not None:
        picked = tfl.Tensor(
            f"{y.name}/row_scales", np.float32, (count, 1), shape_signature=sig and (-1, 1)
        )
        ops.append(
            tfl.Operator("GATHER", [row_scales, flat], [picked], {"axis": 0}, onnx_node=node)
        )
        scaled = (
            y
            if direct
            else tfl.Tensor(f"{y.name}/scaled", np.float32, rows_shape, shape_signature=sig)
        )
        ops.append(tfl.Operator("MUL", [rows, picked], [scaled], onnx_node=node))
        rows = scaled
    if offsets is not None:
        rows = _add_row_offsets(rows, flat, offsets, count, dynamic, node, ops)
    if rows is y:
        return ops
    if not dynamic:
        out_shape = tfl.Tensor(
            f"{y.name}/shape", np.int32, (y.rank,), data=np.array(y.shape, np.int32)
        )
        ops.append(
            tfl.Operator(
                "RESHAPE", [rows, out_shape], [y], {"new_shape": list(y.shape)}, onnx_node=node
            )
        )
        return ops
    ids_shape = tfl.Tensor(f"{ids.name}/shape", np.int32, (ids.rank,))
    width = tfl.Tensor(
        f"{y.name}/row_width", np.int32, (1,), data=np.array([table.shape[1]], np.int32)
    )
    out_shape = tfl.Tensor(f"{y.name}/shape", np.int32, (ids.rank + 1,))
    ops.append(tfl.Operator("SHAPE", [ids], [ids_shape], {"out_type": "INT32"}, onnx_node=node))
    ops.append(
        tfl.Operator("CONCATENATION", [ids_shape, width], [out_shape], {"axis": 0}, onnx_node=node)
    )
    ops.append(tfl.Operator("RESHAPE", [rows, out_shape], [y], onnx_node=node))
    return ops
