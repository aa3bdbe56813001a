"""A TRANSPOSE above XNNPACK's rank limit becomes RESHAPE -> lower-rank TRANSPOSE -> RESHAPE
(rule ``transpose_within_xnnpack_rank`` of ``tfl_rewrites.RULES``).

Window attention over video (torchvision's Swin3D: ``[B, D/wd, wd, H/wh, wh, W/ww, ww, C]``,
permuted) writes 8-D transposes; XNNPACK takes at most 6 dims, so each such TRANSPOSE, and the
8-D RESHAPEs around it, ran outside the delegate (six partitions on a two-stage Swin3D).

A permutation moves blocks, not single axes: unit axes can be dropped, and input axes that
stay adjacent and in order in the output can be merged into one, without changing which
element goes where. When that brings the rank to XNNPACK's limit, the TRANSPOSE becomes
RESHAPE (merged input) -> TRANSPOSE (merged perm) -> RESHAPE (the original output shape);
``collapse_reshapes`` then folds those RESHAPEs into the model's own ones. Pure data
movement: exact for every dtype and quantization.
"""

from __future__ import annotations

import numpy as np

from . import tfl
from .tfl_edit import Editor

XNNPACK_MAX_RANK = 6


def merged_permutation(shape, perm) -> tuple[list[int], list[int]]:
    """(merged input shape, merged perm) of transposing ``shape`` by ``perm``."""
    kept = [a for a in perm if shape[a] != 1]  # output order, unit axes dropped
    runs: list[list[int]] = []
    for a in kept:  # the next input axis after the run's last one (unit axes between)
        if runs and a > runs[-1][-1] and all(shape[b] == 1 for b in range(runs[-1][-1] + 1, a)):
            runs[-1].append(a)
        else:
            runs.append([a])
    by_input = sorted(range(len(runs)), key=lambda r: runs[r][0])
    merged_shape = [int(np.prod([shape[a] for a in runs[r]])) for r in by_input]
    position = {r: i for i, r in enumerate(by_input)}
    return merged_shape, [position[r] for r in range(len(runs))]


def transpose_within_xnnpack_rank(sub: tfl.Subgraph) -> int:
    ed = Editor(sub)
    for op in sub.operators:
        if op.opcode != "TRANSPOSE" or len(op.inputs) < 2:
            continue
        x, perm_t, out = op.inputs[0], op.inputs[1], op.outputs[0]
        if (
            x is None
            or perm_t is None
            or perm_t.data is None
            or x.rank <= XNNPACK_MAX_RANK
            or x.shape_signature is not None
            or out.shape_signature is not None
        ):
            continue
        perm = [int(p) % x.rank for p in np.asarray(perm_t.data).reshape(-1)]
        shape, small = merged_permutation(list(x.shape), perm)
        if len(small) > XNNPACK_MAX_RANK:
            continue
        if len(small) <= 1:  # at most one axis that is not 1 moves: a RESHAPE
            ed.replace(op, [ed.reshape(x, out, op)])
            continue
        fields = {"quantization": x.quantization}
        src = ed.temp(f"{out.name}/merged_in", x.dtype, shape, **fields)
        moved = ed.temp(f"{out.name}/merged_out", x.dtype, [shape[p] for p in small], **fields)
        perm_small = ed.const(f"{out.name}/merged_perm", np.array(small, np.int32))
        ed.replace(
            op,
            [
                ed.reshape(x, src, op),
                ed.op("TRANSPOSE", [src, perm_small], [moved], op),
                ed.reshape(moved, out, op),
            ],
        )
    return ed.commit()


RULES = [("transpose_within_xnnpack_rank", transpose_within_xnnpack_rank)]
