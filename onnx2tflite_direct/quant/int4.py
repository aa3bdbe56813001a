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
rounds the rest better): 0.8 dB of weight SQNR above a fixed ``max|w| / 7.5`` on MiniLM
(``int4_codes.py``). The 4-bit packing (two values a byte, the even element in the low nibble) is the builder's
(``_pack_nibbles``).

Precision within a size budget (``--int4-size-budget R``, default 0.3 of the float32 file):
what the 4-bit weights leave of it buys, first, int8 rows for every embedding table (and
the same codes for a tied output projection), then int8 for the weights whose measured 4-bit
output noise per extra byte is largest (``int4_budget.py`` chooses, ``int4_noise.py``
measures). An int8 table is an EMBEDDING_LOOKUP of codes at one scale times its rows' scales
gathered apart (:func:`int8_rows`). ``R = 0`` keeps every weight 4-bit where a kernel takes
it; ``--quant-override`` wins over both choices.

This module is the rewrite: it asks ``int4_forms.py`` which format each operator can read its
weight in and ``int4_budget.py`` which weights get int8, and writes the operators and tensors
(EMBEDDING_LOOKUP for a GATHER, FULLY_CONNECTED for a BATCH_MATMUL or a 1x1 CONV_2D, the
offsets' block sums, unfused activations).

Weights under 1,024 elements stay float, as in the dynamic-range file. A weight shared by
several operators is rewritten once per format its readers need; a weight also read by an
operator that cannot take it quantized stays float for all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .. import tfl
from .dynamic_range import HYBRID_WEIGHT_AXIS, hybrid_weight, quantizable_weight
from .int4_budget import (
    TABLE_REASON,
    TABLE_SIZE_BUDGET,
    TIED_REASON,
    int8_form,
    int8_tables,
    measured_int8,
)
from .int4_codes import INT4, blockwise_int4, blockwise_int4_offsets, per_channel_int4, scale_search
from .int4_forms import UNFUSED, Form, reader_form, shared_blocker, weight_index

DEFAULT_BLOCK = 32

INT4_WEIGHTS, INT8_WEIGHTS, FLOAT = "int4-weights", "int8-weights", "float"


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
    codes, scales = scale_search(w.astype(np.float32), 127, -127, np.float32)
    one = tfl.Quantization(scale=np.ones(1, np.float32), zero_point=np.zeros(1, np.int64))
    q = tfl.Tensor(f"{name}/int8", np.int8, w.shape, data=codes, quantization=one)
    s = scales.reshape(-1, 1)
    return q, tfl.Tensor(f"{name}/int8_row_scales", np.float32, s.shape, data=s)


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
    ``table_budget`` of the float32 file's constants (:func:`int8_tables`; 0: never); what
    the budget leaves buys int8 for the weights whose measured 4-bit output noise per byte is
    the largest, when ``noise`` (an ``int4_noise.OutputNoise``) can measure it
    (:func:`measured_int8`)."""
    out = Int4Outcome()
    float_bytes = getattr(noise, "float_bytes", None)
    tables, tied, room = int8_tables(
        model, block_size, keep_float, keep_int4, table_budget, float_bytes
    )
    keep = keep_float | keep_int8 | keep_int4
    chosen = measured_int8(model, block_size, keep, tables | tied, room, noise, out)
    for sub in model.subgraphs:
        readers = sub.consumers()
        made: dict[tuple, object] = {}  # weights per format, block sums per input
        new_ops: list[tfl.Operator] = []
        for op in sub.operators:
            row = {"node": op.onnx_node, "op": op.opcode, "precision": FLOAT}
            index = weight_index(op)
            w = op.inputs[index] if index is not None else None
            if not quantizable_weight(w):
                new_ops.append(op)
                out.ops.append(row)
                continue
            row["weighted"] = True
            form = reader_form(op, index, block_size)
            blocker = shared_blocker(w, readers, block_size)
            if op.onnx_node in keep_float:
                row["reason"] = "override: float"
            elif isinstance(form, str) or blocker:
                row["reason"] = form if isinstance(form, str) else blocker
            elif op.onnx_node in keep_int8 and op.opcode == "BATCH_MATMUL":
                row["reason"] = "override: int8 (BATCH_MATMUL hybrid is per-tensor only: float)"
            else:
                if op.opcode == "GATHER" and (op.onnx_node in keep_int8 or id(w) in tables):
                    why = "override: int8" if op.onnx_node in keep_int8 else TABLE_REASON
                    form = Form("int8-rows", 0, reason=why, note="EMBEDDING_LOOKUP")
                elif id(w) in tied and op.onnx_node not in keep_int8:
                    form = dataclasses.replace(form, kind="int8-tied", arg=0, reason=TIED_REASON)
                elif id(w) in chosen:
                    form = int8_form(op, form, chosen[id(w)])
                elif op.onnx_node in keep_int8:
                    axis = HYBRID_WEIGHT_AXIS.get(op.opcode, 0)
                    form = Form("int8", axis, note=form.note)
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


def _rewrite(op, index, w, form: Form, made: dict, out: Int4Outcome) -> list[tfl.Operator]:
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
