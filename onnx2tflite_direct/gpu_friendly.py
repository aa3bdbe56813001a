"""``--gpu-friendly``: rewrite a lowered float model until the GPU delegate takes it whole.

Why: the LiteRT GPU delegate claims an operator only if its own rules accept it (ported in
``gpu_rules``: a parser for the builtin, the version at or below the parser's cap, at most 4-D
tensors, float runtime tensors, attribute limits). Operators it rejects fall back to the CPU
and split the graph; by default only the largest partition is delegated. Some rejections are
avoidable with an equivalent graph. :func:`apply` rewrites an operator only when the rules
reject it and only into operators the same rules accept (one source of truth), repeating until
nothing changes; the report section lists the rewrites and what still falls back.

The rules live in ``gpu_rewrites`` (data movement: ranks, layouts, gathers, slices, shapes)
``gpu_rewrites_math`` (computation: activations, CEIL, LRN, constant folding, selects) and
``gpu_rewrites_int`` (int32 index arithmetic: embedding lookups by ``--int32-inputs`` ids),
``gpu_rewrites_int_float`` (integer side computations carried as exact float32, tried first);
``gpu_rewrites_rank`` takes whole regions of >4-D tensors to rank <= 4 (tried last);
:data:`ORDER` is the order they are tried in (the first that applies wins).
"""

from __future__ import annotations

from typing import Any

from . import (
    gpu_check,
    gpu_rewrites,
    gpu_rewrites_int,
    gpu_rewrites_int_float,
    gpu_rewrites_math,
    gpu_rewrites_operands,
    gpu_rewrites_rank,
    gpu_rules,
    tfl,
    tfl_rewrites,
)
from .gpu_rewrites import Editor, Rule, delegable

# Passes over the graph at most (a rewrite's output may enable another one).
MAX_PASSES = 4

ORDER = (
    "int_region_in_float",  # first: a planned integer region is replaced whole
    "gather_to_slices",
    "gather_flat_indices",
    "fold_constant_reshape",
    "fold_constant_transpose",
    "fold_constant_fully_connected",
    "reshape_static_shape",
    "transpose_rank_reduction",
    "transpose_split",
    "unfuse_activation",
    "broadcast_to_tile",
    "broadcast_mul_to_tile",
    "ceil_by_floor",
    "slice_rank_lift",
    "slice_rank_reduction",
    "reverse_slice_to_gather",
    "reverse_to_gather",
    "pad_rank_lift",
    "select_scalar_branches",
    "unit_axes_to_reshape",
    "elementwise_rank_reduction",
    "lrn_by_conv",
    "gather_int32_indices",
    "index_wrap_in_float",
    "int32_moves_in_float",
    "fold_constant_gather",
    "not_into_select",
    "bool_moves_in_float",
    "nonzero_test_in_float",
    "log_softmax_decomposed",
    "constant_operand_view",
    "batch_matmul_adjoint_transpose",
    "batch_matmul_constant_slices",
    "gather_elements_flat",
    "scatter_nd_select_by_gather",
    "gather_table_by_concatenation",
    "region_rank_reduction",  # last: the per-operator rules first, then whole >4-D regions
)
_BY_NAME: dict[str, Rule] = {
    **gpu_rewrites.RULES,
    **gpu_rewrites_math.RULES,
    **gpu_rewrites_int.RULES,
    **gpu_rewrites_int_float.RULES,
    **gpu_rewrites_operands.RULES,
    **gpu_rewrites_rank.RULES,
}
RULES: list[tuple[str, Rule]] = [(name, _BY_NAME[name]) for name in ORDER]
assert set(ORDER) == set(_BY_NAME), "every rule is tried, in one stated order"


def _describe(rule: str, op: tfl.Operator, new_ops: list[tfl.Operator]) -> dict[str, Any]:
    shapes = [list(t.shape) for t in op.inputs[:1] if t is not None]
    made = [o.opcode for o in new_ops]
    return {
        "rule": rule,
        "op": op.opcode,
        "onnx_node": op.onnx_node,
        "detail": f"{op.opcode}{shapes} -> {' + '.join(made) or 'a constant tensor'}",
    }


def _accepted(new_ops: list[tfl.Operator]) -> bool:
    """A rewrite is kept only when the GPU rules take its new operators; its RESHAPEs are
    judged after ``collapse_reshapes`` merged them with their neighbours (the rank rules'
    own reason to exist), by the final verdict."""
    return all(delegable(o) for o in new_ops if o.opcode != "RESHAPE")


def _rewrite_pass(model: tfl.Model, records: list[dict[str, Any]], assumptions: list[str]) -> bool:
    """One pass over every subgraph: each operator the rules reject gets the first rewrite
    that yields operators they accept. True when something changed."""
    changed = False
    for sub in model.subgraphs:
        ctx = gpu_rules.GraphContext(sub)
        ed = Editor(sub)
        for op in list(sub.operators):
            if gpu_rewrites_rank.planned(ed, op):
                continue  # replaced with the rest of its >4-D region
            if not gpu_rules.check_op(op, gpu_check.operator_version(op), ctx):
                continue
            for rule, fn in RULES:
                new_ops = fn(ed, op)
                if new_ops is not None and _accepted(new_ops):
                    records.append(_describe(rule, op, new_ops))
                    ed.replace(op, new_ops)
                    break
        assumptions += [a for a in ed.assumptions if a not in assumptions]
        if ed.commit():
            tfl_rewrites.remove_dead_ops(sub)  # e.g. shape arithmetic a constant replaced
            tfl_rewrites.collapse_reshapes(sub)
            changed = True
    return changed


def apply(model: tfl.Model) -> dict[str, Any]:
    """Rewrite ``model`` in place towards what the GPU delegate takes whole.

    Returns the report's ``gpu_friendly`` section: ``rewrites`` (one record per change:
    ``{rule, op, onnx_node, detail}``), ``assumptions`` (what a rewrite takes for granted about
    the values fed, e.g. a bound on a mask; the CLI prints them), ``verdict_before`` and ``verdict_after`` (the
    ``gpu_check`` verdict text) and ``not_delegated`` (the operators that still fall back, as in
    ``gpu_check.check_ops``). Run after ``tfl_rewrites``; a RESHAPE collapse after each pass
    merges the RESHAPEs the rules insert with their neighbours (that is what removes >4-D
    intermediates around a TRANSPOSE).
    """
    before = gpu_check.verdict_text(gpu_check.check_ops(model))
    records: list[dict[str, Any]] = []
    assumptions: list[str] = []
    for _ in range(MAX_PASSES):
        if not _rewrite_pass(model, records, assumptions):
            break
    remaining = gpu_check.check_ops(model)
    return {
        "rewrites": records,
        "assumptions": assumptions,
        "verdict_before": before,
        "verdict_after": gpu_check.verdict_text(remaining),
        "not_delegated": remaining,
    }
