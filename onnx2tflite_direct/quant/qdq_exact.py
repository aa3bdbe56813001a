"""Exact roundings for the integer file of an already-quantized model: TFLite rewrites that
make LiteRT round where, and as, the ONNX Q/DQ model rounds.

Each rewrite replaces a step whose LiteRT kernel would round otherwise (the QUANTIZE
builtin's reciprocal multiply, XNNPACK's 8-bit rescale, the builtin BATCH_MATMUL's
fixed-point requantization) by float32 ops computing ONNX's rounding, then a QUANTIZE that
maps a lattice point to itself. The float ops are recorded in ``rounding`` (``id()`` of each
op) so that node statuses count them as part of the quantization, not as float compute.
Used by ``qdq_import.prequantized_variant``.
"""

from __future__ import annotations

import numpy as np

from .. import tfl
from ..tfl_edit import Editor


def _is_int(t) -> bool:
    return t is not None and t.dtype.kind in "iu" and t.quantization is not None


def requantize_through_float(model: tfl.Model, rounding: set[int]) -> int:
    """Each 8-bit -> 8-bit QUANTIZE (a rescale onto another lattice: CONCATENATION inputs,
    integer I/O) becomes DEQUANTIZE, ``round(x / s) * s`` and a float -> int8 QUANTIZE: the
    ONNX ``Q(DQ(q))`` exactly.

    Why: XNNPACK's 8-bit -> 8-bit conversion applies the scale ratio as a multiplier with 8
    fractional bits (yolov8n-like: a ratio of 0.90003 ran as 230 / 256 = 0.8984, 7 % of a
    concatenation's outputs one step off, amplified downstream), and the builtin's reference
    kernel rounds its fixed-point product differently from ONNX's half-to-even division.
    Returns the count."""
    sub = model.subgraphs[0]
    ed = Editor(sub)
    count = 0
    for op in sub.operators:
        if op.opcode != "QUANTIZE" or len(op.inputs) != 1:
            continue
        x, q = op.inputs[0], op.outputs[0]
        if x.dtype not in (np.int8, np.uint8) or q.dtype not in (np.int8, np.uint8):
            continue
        if not (_is_int(x) and _is_int(q)) or np.size(q.quantization.scale) != 1:
            continue
        if np.size(x.quantization.scale) != 1:
            continue
        real = ed.temp(f"{x.name}/dequantized", np.float32, x.shape)
        s = ed.const(f"{q.name}/lattice_scale", np.array([q.quantization.scale[0]], np.float32))
        steps = ed.temp(f"{q.name}/steps", np.float32, x.shape)
        whole = ed.temp(f"{q.name}/whole_steps", np.float32, x.shape)
        on_lattice = ed.temp(f"{q.name}/on_lattice", np.float32, x.shape)
        exact = [
            ed.op("DIV", [real, s], [steps], like=op),
            ed.op("ROUND", [steps], [whole], like=op),
            ed.op("MUL", [whole, s], [on_lattice], like=op),
        ]
        rounding.update(id(o) for o in exact)
        ed.replace(
            op,
            [
                ed.op("DEQUANTIZE", [x], [real], like=op),
                *exact,
                ed.op("QUANTIZE", [on_lattice], [q], like=op),
            ],
        )
        count += 1
    ed.commit()
    return count


def exact_activation_matmuls(model: tfl.Model, rounding: set[int]) -> int:
    """Each int8 x int8 BATCH_MATMUL of two run-time tensors (attention's scores and
    context) keeps an integer kernel for its products, and is requantized as onnxruntime's
    QLinearMatMul requantizes: the exact integer sum ``sum (a - za)(b - zb)`` as float32
    times ``fl(fl(sa * sb) / sy)``, rounded half to even, then ``* sy`` and the QUANTIZE
    (which maps a lattice point to itself).

    Why: LiteRT runs this op with its builtin kernel (XNNPACK takes no int8 BATCH_MATMUL of
    two run-time operands), whose fixed-point requantization first rounds ``acc * m`` to an
    integer (``m`` the multiplier's 31-bit mantissa) and then divides by ``2**shift``, rounding
    again: ``shift`` fractional bits survive to the last rounding, so a value within
    ``2**-shift`` of a half step lands on the tie and rounds away from zero (BERT-like scores,
    shift 7: 8 of 1024 outputs one step off, 27.4987 -> 28; requantized here: none).

    How: the kernel's int32 output ignores both zero points (measured), so the sums are
    completed in float32, exactly while every partial sum stays below 2**24:
    ``sum a b - zb * rowsum(a) - za * colsum(b) + K za zb`` (transposed operands, adj_x /
    adj_y, sum along their own K axis); larger sums keep the builtin requantization.
    Returns the count."""
    sub = model.subgraphs[0]
    ed = Editor(sub)
    count = 0
    for op in sub.operators:
        if op.opcode != "BATCH_MATMUL" or len(op.inputs) != 2:
            continue
        adj_x, adj_y = bool(op.options.get("adj_x")), bool(op.options.get("adj_y"))
        a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
        if not all(_is_int(t) and t.data is None for t in (a, b)) or not _is_int(y):
            continue
        if any(t.dtype != np.int8 or np.size(t.quantization.scale) != 1 for t in (a, b, y)):
            continue
        if a.rank < 2 or b.rank < 2 or a.shape[-1] < 1:
            continue
        za, zb = (int(t.quantization.zero_point[0]) for t in (a, b))
        k = a.shape[-2] if adj_x else a.shape[-1]
        if k * (128 + abs(za)) * (128 + abs(zb)) >= 2**24:
            continue
        sa, sb, sy = (np.float32(t.quantization.scale[0]) for t in (a, b, y))
        multiplier = np.float32(np.float32(sa * sb) / sy)
        acc = ed.temp(f"{y.name}/raw_products", np.int32, y.shape)
        ops = [ed.op("BATCH_MATMUL", [a, b], [acc], like=op, **op.options)]
        real = ed.temp(f"{y.name}/raw_sums", np.float32, y.shape)
        exact = [ed.op("CAST", [acc], [real], like=op)]
        # (operand, its K axis, the axis its sums must lie along, the other zero point)
        terms = ((a, -2 if adj_x else -1, -1, zb), (b, -1 if adj_y else -2, -2, za))
        for x, axis, keep, other_zp in terms:
            if other_zp == 0:
                continue
            as_float = ed.temp(f"{x.name}/as_float", np.float32, x.shape)
            shape = list(x.shape)
            shape[axis] = 1
            total = ed.temp(f"{x.name}/sum_k", np.float32, tuple(shape))
            axes = ed.const(f"{x.name}/k_axis", np.array([x.rank + axis], np.int32))
            exact += [
                ed.op("CAST", [x], [as_float], like=op),
                ed.op("SUM", [as_float, axes], [total], like=op, keep_dims=True),
            ]
            if axis != keep:  # a transposed operand: move the size-1 axis where it broadcasts
                shape[axis], shape[keep] = shape[keep], shape[axis]
                moved = ed.temp(f"{x.name}/sum_k_moved", np.float32, tuple(shape))
                exact.append(ed.reshape(total, moved, like=op))
                total = moved
            scaled = ed.temp(f"{x.name}/sum_k_scaled", np.float32, tuple(shape))
            summed = ed.temp(f"{y.name}/sums", np.float32, y.shape)
            factor = ed.const(f"{x.name}/minus_zp", np.array([-other_zp], np.float32))
            exact += [
                ed.op("MUL", [total, factor], [scaled], like=op),
                ed.op("ADD", [real, scaled], [summed], like=op),
            ]
            real = summed
        steps = ed.temp(f"{y.name}/steps", np.float32, y.shape)
        whole = ed.temp(f"{y.name}/whole_steps", np.float32, y.shape)
        on_lattice = ed.temp(f"{y.name}/on_lattice", np.float32, y.shape)
        if za and zb:
            offset = ed.const(f"{y.name}/zero_point_term", np.array([k * za * zb], np.float32))
            summed = ed.temp(f"{y.name}/sums", np.float32, y.shape)
            exact.append(ed.op("ADD", [real, offset], [summed], like=op))
            real = summed
        m = ed.const(f"{y.name}/multiplier", np.array([multiplier], np.float32))
        s = ed.const(f"{y.name}/lattice_scale", np.array([sy], np.float32))
        exact += [
            ed.op("MUL", [real, m], [steps], like=op),
            ed.op("ROUND", [steps], [whole], like=op),
            ed.op("MUL", [whole, s], [on_lattice], like=op),
            ed.op("QUANTIZE", [on_lattice], [y], like=op),
        ]
        rounding.update(id(o) for o in exact)
        ed.replace(op, [*ops, *exact])
        count += 1
    ed.commit()
    return count


def exact_quantize_after(model: tfl.Model, rounding: set[int]) -> int:
    """Every QUANTIZE of a float value gets ``round(x / s) * s`` as its input (DIV, ROUND half
    to even, MUL): the QUANTIZE builtin multiplies by the reciprocal scale, which can decide a
    near-tie differently from ONNX's division, and a value computed from a lattice input
    repeats its near-ties over every element with the same input value (graph inputs too:
    yolov8n-like, the first flipped elements were the input's). ``round(x / s) * s`` is a
    few float32 ulps from a lattice point, which the builtin maps to that point whatever its
    rounding. Returns the count."""
    sub = model.subgraphs[0]
    producer = sub.producers()
    ed = Editor(sub)
    count = 0
    for op in sub.operators:
        if op.opcode != "QUANTIZE" or op.inputs[0].dtype != np.float32:
            continue
        made_by = producer.get(id(op.inputs[0]))
        q = op.outputs[0]
        if q.quantization is None:
            continue
        if np.size(q.quantization.scale) != 1:
            continue
        x = op.inputs[0]
        s = ed.const(f"{x.name}/lattice_scale", np.array([q.quantization.scale[0]], np.float32))
        steps = ed.temp(f"{x.name}/steps", np.float32, x.shape)
        whole = ed.temp(f"{x.name}/whole_steps", np.float32, x.shape)
        on_lattice = ed.temp(f"{x.name}/on_lattice", np.float32, x.shape)
        exact = [
            ed.op("DIV", [x, s], [steps], like=made_by or op),
            ed.op("ROUND", [steps], [whole], like=made_by or op),
            ed.op("MUL", [whole, s], [on_lattice], like=made_by or op),
        ]
        rounding.update(id(o) for o in exact)
        ed.insert_before(op, exact)
        op.inputs[0] = on_lattice
        count += 1
    ed.commit()
    return count
