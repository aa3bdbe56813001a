"""Per-group selection for a NonMaxSuppression marked by rule ``batched_nms_groups``.

The rule (``batched_nms.py``) found that the node's boxes are torchvision's ``boxes +
offset(group)`` and appended the group ids as input 5. The boxes are still the shifted ones:
each group's kernel computes the IoUs onnxruntime computes.

Why it is exact. Greedy NMS visits candidates in descending score order (ties: lower index
first) and selects one unless a box selected before it overlaps it by more than the
threshold. onnxruntime never suppresses across two boxes whose intersection is empty in one
axis (``intersection max <= intersection min``). If the groups' coordinate intervals (min and
max over all four coordinates of their boxes) are pairwise disjoint or touching, no box
suppresses a box of another group, so a candidate is selected iff no earlier selected box of
its own group suppresses it: the union of the per-group greedy runs, read in the global sorted
order, is the global greedy run, and its first K are ONNX's first K.

The graph (after the common sort of ``lowering/nms.py``: boxes and group ids in descending
score order, ONNX's tie order):

1. Candidates: boxes that can suppress (positive area, IoU threshold below 1) and pass the
   score threshold. Boxes that cannot take part are merged back at the end, as in nms.py.
2. Separation check at run time: per group, the min and max coordinate of its candidates
   (UNSORTED_SEGMENT_MIN / _MAX over the boxes' own min / max coordinate; non-candidates go
   to an extra segment that is dropped; an empty group gets +-FLT_MAX, which overlaps nothing
   finite); groups a != b overlap when ``hi_a > lo_b and hi_b > lo_a`` (a G x G comparison,
   REDUCE_ANY). If any pair overlaps (negative coordinates, a wrong offset, an infinite box;
   a NaN box never takes part: it has no positive area), every candidate goes to group 0: the
   single-kernel selection of nms.py, exact, at its old cost.
3. One NON_MAX_SUPPRESSION_V4 per group over all N (+1) boxes, the other groups' scores 0
   (below the kernel's threshold 0), max_output_size = max(min(K, group size), 1) (group
   sizes by UNSORTED_SEGMENT_SUM). A dummy box at position 0 (score 0, never selected)
   absorbs the kernel's zero padding, so every real pick is a position >= 1.
4. Merge: SCATTER_ND of all picks into [N + 1] (positions are unique across groups; SCATTER_ND
   adds, the dummy collects the padding), a mask of selected positions, or'ed with the boxes
   that bypass the kernel; TOPK_V2 over keys ``N - 1 - position`` lists them in ascending sorted
   position: ONNX's order; the first K are kept.

Cost: the kernels' IoU work is the sum over groups of (candidates x selected), plus O(G * N)
for the [G, N + 1] score rows and the kernels' score scans, O(N + G^2) for the check
(measured, benchmarks/bench_nms.py: 15-23x faster than one kernel on 3,000-27,000 boxes in
10-90 groups, 0.08-0.15x onnxruntime's time; docs/nms.md).
"""

from __future__ import annotations

import numpy as np

from ..batched_nms import GROUP_BASE, GROUP_COUNT, GROUP_INPUT


def groups_of(ctx) -> tuple[int, int] | None:
    """(lo, G) when the node was marked by ``batched_nms_groups``, else None."""
    count = ctx.attr(GROUP_COUNT)
    if count is None or not ctx.has_input(GROUP_INPUT):
        return None
    return int(ctx.attr(GROUP_BASE, 0)), int(count)


def select_and_merge(b, order, sorted_boxes, suppressible, above, free):
    """([1, K] sorted positions in ONNX's order, [1] selected count) for builder ``b``
    (``lowering/nms.py``'s _NmsBuilder with one row); see the module docstring."""
    e, ctx = b.e, b.ctx
    lo, groups = groups_of(ctx)
    n, k = b.boxes_n, b.k
    ctx.note(
        f"batched_nms_groups: {groups} per-group NMS kernels (run-time separation check; "
        "one kernel over all boxes when the groups overlap)"
    )
    # 1. group of each sorted box, candidates
    ids = ctx.input(GROUP_INPUT)
    if ids.dtype != np.int32:
        ids = e.op("CAST", ids, dtype=np.int32, hint="group_ids")
    gid = e.op("SUB", ids, b.const(np.int32(lo), "group_base"), hint="group0")
    gid = e.op("MAXIMUM", gid, b.const(np.int32(0), "group_min"), hint="group_lo")
    gid = e.op("MINIMUM", gid, b.const(np.int32(groups - 1), "group_max"), hint="group")
    flat_order = ctx.reshape(order, (n,), "order_flat")
    sorted_gid = e.op(
        "GATHER", gid, flat_order, shape=(n,), hint="sorted_group", axis=0, batch_dims=0
    )
    cand = suppressible
    if above is not None:
        cand = e.op("LOGICAL_AND", suppressible, above, hint="candidates")
    cand = ctx.reshape(cand, (n,), "candidates_flat")
    # Segment of each sorted box: its group, or G for boxes outside every kernel.
    outside = b.const(np.int32(groups), "outside")
    seg = e.op("SELECT_V2", cand, sorted_gid, outside, hint="segment")
    # 2. separation check: per group the min / max coordinate of its candidates (empty
    # groups: +-FLT_MAX, which overlap nothing finite)
    boxes2 = ctx.reshape(sorted_boxes, (n, 4), "boxes2")
    axis1 = b.const(np.array([1], np.int32), "coord_axis")
    box_lo = e.op("REDUCE_MIN", boxes2, axis1, shape=(n,), hint="box_lo", keep_dims=False)
    box_hi = e.op("REDUCE_MAX", boxes2, axis1, shape=(n,), hint="box_hi", keep_dims=False)
    group_lo = _per_group(b, "UNSORTED_SEGMENT_MIN", box_lo, seg, groups, "group_lo_coord")
    group_hi = _per_group(b, "UNSORTED_SEGMENT_MAX", box_hi, seg, groups, "group_hi_coord")
    hi_col = ctx.reshape(group_hi, (groups, 1), "hi_col")
    lo_row = ctx.reshape(group_lo, (1, groups), "lo_row")
    hi_row = ctx.reshape(group_hi, (1, groups), "hi_row")
    lo_col = ctx.reshape(group_lo, (groups, 1), "lo_col")
    a_over_b = e.op("GREATER", hi_col, lo_row, dtype=np.bool_, hint="hi_a_gt_lo_b")
    b_over_a = e.op("GREATER", hi_row, lo_col, dtype=np.bool_, hint="hi_b_gt_lo_a")
    overlap = e.op("LOGICAL_AND", a_over_b, b_over_a, hint="groups_overlap")
    off_diag = b.const(~np.eye(groups, dtype=np.bool_), "other_group")
    overlap = e.op("LOGICAL_AND", overlap, off_diag, hint="distinct_overlap")
    both_axes = b.const(np.array([0, 1], np.int32), "pair_axes")
    any_overlap = e.op("REDUCE_ANY", overlap, both_axes, shape=(), hint="any_overlap",
                       keep_dims=False)  # fmt: skip
    # Fallback: every candidate in group 0 (the single-kernel selection of nms.py).
    single = e.op("SELECT_V2", cand, b.const(np.int32(0), "first_group"), outside,
                  hint="single_segment")  # fmt: skip
    seg = e.op("SELECT_V2", any_overlap, single, seg, shape=(n,), hint="kernel_segment")
    # 3. one kernel per group: [G, N + 1] scores (the dummy box 0 is in no group)
    counted = e.op("CAST", cand, dtype=np.int32, hint="candidate_ones")
    sizes = _per_group(b, "UNSORTED_SEGMENT_SUM", counted, seg, groups, "group_size")
    sizes = e.op("MINIMUM", sizes, b.k_i32(), hint="group_k")
    sizes = e.op("MAXIMUM", sizes, b.const(np.int32(1), "one_slot"), hint="group_slots")
    size_parts = [ctx.temp(np.int32, (), f"group_slots{g}") for g in range(groups)]
    e.op("UNPACK", sizes, out=size_parts, num=groups, axis=0)
    kscores = _kernel_scores(b, seg, groups, outside)
    score_parts = [ctx.temp(np.float32, (n + 1,), f"group_scores{g}") for g in range(groups)]
    e.op("UNPACK", kscores, out=score_parts, num=groups, axis=0)
    dummy = b.const(np.zeros((1, 4), np.float32), "dummy_box")
    boxes1 = e.op("CONCATENATION", dummy, boxes2, shape=(n + 1, 4), hint="kernel_boxes",
                  axis=0, fused_activation_function="NONE")  # fmt: skip
    iou = b.kernel_iou()
    zero = b.const(np.float32(0), "group_threshold")
    picks = []
    for g in range(groups):
        pick = ctx.temp(np.int32, (k,), f"group_picked{g}")
        count = ctx.temp(np.int32, (), f"group_count{g}")
        e.op("NON_MAX_SUPPRESSION_V4", boxes1, score_parts[g], size_parts[g], iou, zero,
             out=[pick, count])  # fmt: skip
        picks.append(pick)
    # 4. merge
    all_picks = e.op("CONCATENATION", *picks, shape=(groups * k,), hint="group_picks", axis=0,
                     fused_activation_function="NONE")  # fmt: skip
    column = b.const(np.array([-1, 1], np.int32), "pick_column")
    coords = e.op("RESHAPE", all_picks, column, shape=(groups * k, 1), hint="pick_coords")
    one = b.const(np.array([1], np.int32), "one_v")
    if b.runtime_n:
        n_vec = ctx.reshape(b.n_i32(), (1,), "n_vec1")
        extent = e.op("ADD", n_vec, one, hint="n_plus_dummy")
    else:
        n_vec = b.const(np.array([n], np.int32), "n_v")
        extent = b.const(np.array([n + 1], np.int32), "n_plus_dummy")
    hits = e.op("SCATTER_ND", coords, all_picks, extent, shape=(n + 1,), dtype=np.int32,
                hint="hits")  # fmt: skip
    hits = e.op("SLICE", hits, one, n_vec, shape=(n,), hint="hits_boxes")
    picked = e.op("GREATER", hits, b.const(np.int32(0), "zero_hits"), dtype=np.bool_,
                  hint="picked_mask")  # fmt: skip
    picked = ctx.reshape(picked, (1, n), "picked_row")
    chosen = e.op("LOGICAL_OR", picked, free, hint="chosen")
    return b.first_k_positions(chosen)


def _per_group(b, opcode, values, seg, groups, hint):
    """[G] per-group reduction of [N] ``values`` by segment ``seg`` (segment G dropped)."""
    e = b.e
    total = b.const(np.array(groups + 1, np.int32), "segments")
    out = e.op(opcode, values, seg, total, shape=(groups + 1,), hint=f"{hint}_all")
    begin = b.const(np.array([0], np.int32), "first_segment")
    size = b.const(np.array([groups], np.int32), "group_segments")
    return e.op("SLICE", out, begin, size, shape=(groups,), hint=hint)


def _kernel_scores(b, seg, groups, outside):
    """[G, N + 1]: row g holds the rank scores N..1 of group g's boxes, 0 elsewhere; column 0
    is the dummy box, in no group."""
    e, ctx, n = b.e, b.ctx, b.boxes_n
    seg1 = e.op("CONCATENATION", ctx.reshape(outside, (1,), "dummy_segment"), seg,
                shape=(n + 1,), hint="kernel_segment1", axis=0,
                fused_activation_function="NONE")  # fmt: skip
    zero1 = b.const(np.zeros(1, np.float32), "dummy_rank")
    ranks1 = e.op("CONCATENATION", zero1, b.rank_scores(), shape=(n + 1,), hint="rank_scores1",
                  axis=0, fused_activation_function="NONE")  # fmt: skip
    group_col = b.const(np.arange(groups, dtype=np.int32).reshape(groups, 1), "group_index")
    member = e.op("EQUAL", ctx.reshape(seg1, (1, n + 1), "segment_row"), group_col,
                  shape=(groups, n + 1), dtype=np.bool_, hint="member")  # fmt: skip
    zero = b.const(np.float32(0), "other_score")
    ranks_row = ctx.reshape(ranks1, (1, n + 1), "rank_row")
    return e.op("SELECT_V2", member, ranks_row, zero, shape=(groups, n + 1), hint="group_rank")
