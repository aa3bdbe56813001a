"""NonMaxSuppression -> one NON_MAX_SUPPRESSION_V4 per (batch, class), exact ONNX selection.

Output modes (``LoweringOptions``)
- default, exact: ONNX's ``selected_indices`` ``[num_selected, 3]`` int64 (batch, then class,
  then descending score), a dynamic-size tensor (TFLite shape signature ``[-1, 3]``): the
  fixed-size rows below sliced to the valid count at run time.
- ``nms_padded_output`` (for delegates that need static shapes): the output keeps the ONNX
  name but has the static shape ``[B * C' * K, 3]`` (``C'`` = C, or 1 with
  ``nms_class_argmax``; ``K`` = min(max_output_boxes_per_class, N) when that input is
  constant, else N). Its first rows are exactly ONNX's; every row after them is
  ``[-1, -1, -1]``. When the NMS output is a graph output, a second graph output
  ``<output>_valid_count`` (int32 scalar) holds the number of valid rows. A departure from
  ONNX that the user asks for: a consumer that iterates over the rows reads padding.
- ``nms_class_argmax``: scores ``[B, C, N]`` are first reduced to their per-box maximum over
  classes (class-agnostic NMS, one NMS per batch); the class column holds the argmax class.
  This is an opt-in change of semantics, not ONNX's per-class NMS.

Why the extra ops (all facts measured on LiteRT's NON_MAX_SUPPRESSION_V4 kernel):
- Ties: the kernel pops candidates from a heap, so equal scores come out in no index order;
  ONNX takes the lower box index first. The boxes are therefore sorted once by TOPK_V2 (which
  breaks ties by the lower index: ONNX's order) and the kernel gets the sorted boxes with the
  strictly decreasing constant scores N..1; selected positions map back through the sort order.
- Score threshold: ONNX keeps ``score > threshold``. In the sorted order the kept boxes are a
  prefix of length L = count(score > threshold), which is rank-score > N - L.
- IoU threshold: the kernel suppresses when ``iou >= threshold``, ONNX when ``iou > threshold``
  and only boxes that overlap with positive areas. Both are ``iou >= nextafter(max(t, 0))``
  for float32 IoUs; a runtime threshold gets its next float by BITCAST + 1.
- Re-selection: the kernel re-queues every selected box and drops it only when the box's IoU
  with itself (1, or 0 for an empty box) reaches the threshold. Boxes ONNX never suppresses
  (zero, NaN or infinite area; every box when the IoU threshold is >= 1) therefore bypass the kernel
  (score 0, below the rank threshold) and are merged back into the kernel's picks in sorted
  order by a second TOPK_V2: ONNX selects them unconditionally and they suppress nothing.
- A runtime max_output_boxes_per_class is applied after the kernel (greedy NMS selects in
  order, so its first k selections are the selections of a run limited to k); K is then N.

Data-dependent sizes (``lowering/dynamic.py``): nodes reading the exact output are lowered at
two sample selection counts and made dynamic; when the boxes follow a data-dependent count
(boxes kept by a score mask), every constant built from N or K is computed at run time from
SHAPE of the scores (RANGE for the rank scores and slots).

Known limits: in the exact mode an empty selection is a [0, 3] tensor, which
LiteRT's Python ``get_tensor`` cannot read (its shape is readable); an IoU of a box with itself
must be exactly 1, which holds unless twice the box area overflows float32 (an infinite area
bypasses the kernel: onnxruntime's IoUs with it are 0 or NaN).
"""

from __future__ import annotations

import numpy as np

from .. import errors
from .. import layout as L
from ..driver import VALID_COUNT_SUFFIX
from ..policies import onnx_order
from ..registry import FLOAT, attr_in, lowering
from . import nms_groups
from .emit import Emitter

# B * C NMS kernels are unrolled; beyond this the graph would be unreasonably large.
MAX_NMS_KERNELS = 4096
# The kernel gets the rank scores N..1 as float32: exact up to 2**24.
MAX_RANK_SCORE = 2**24


def _const_max_output(node, graph) -> int | None:
    """The constant max_output_boxes_per_class (0 when absent, ONNX's default), or None."""
    if len(node.inputs) < 3 or not node.inputs[2]:
        return 0
    value = graph.values[node.inputs[2]]
    if not value.is_constant:
        return None
    return max(int(np.asarray(value.const).reshape(-1)[0]), 0)


def _check(node, graph) -> str | None:
    boxes = graph.values[node.inputs[0]].shape
    scores = graph.values[node.inputs[1]].shape
    if len(scores) != 3 or boxes[2] != 4 or scores[0] != boxes[0] or scores[2] != boxes[1]:
        return (
            f"{errors.UNSUPPORTED_RANK}: boxes {list(boxes)} / scores {list(scores)} are not "
            "[B, N, 4] / [B, C, N]"
        )
    kernels = boxes[0] * scores[1]
    if kernels == 0 or kernels > MAX_NMS_KERNELS:
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: {boxes[0]} batches x {scores[1]} classes "
            f"needs {kernels} unrolled NMS kernels (supported: 1..{MAX_NMS_KERNELS}; "
            "--nms-class-argmax needs one per batch)"
        )
    if boxes[1] > MAX_RANK_SCORE:
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: {boxes[1]} boxes; ranks are exact float32 "
            f"scores only up to {MAX_RANK_SCORE}"
        )
    if _const_max_output(node, graph) == 0:
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: max_output_boxes_per_class is 0 or absent: "
            "the output is always empty and LiteRT has no zero-size tensors"
        )
    return None


class _NmsBuilder:
    """Emits the graph of one NonMaxSuppression node (see the module docstring)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.e = Emitter(ctx)
        self.batches, self.boxes_n, _ = ctx.shape(0)
        self.classes = ctx.shape(1)[1]
        self.argmax = ctx.driver.options.nms_class_argmax and self.classes > 1
        self.rows_c = 1 if self.argmax else self.classes  # score rows per batch
        if self.argmax:
            ctx.note(
                "--nms-class-argmax: one suppression per box over its best class (ONNX "
                "suppresses per class)"
            )
        if ctx.driver.options.nms_padded_output:
            ctx.note(
                "--nms-padded-output: fixed-size output, rows past the valid count are -1 "
                "(the default gives ONNX's [num_selected, 3])"
            )
        self.rows = self.batches * self.rows_c  # one NMS kernel per row
        # Marked by rule batched_nms_groups: one kernel per group of one row (nms_groups.py).
        self.grouped = self.rows == 1 and nms_groups.groups_of(ctx) is not None
        const_k = _const_max_output(ctx.node, ctx.driver.graph)
        self.runtime_k = const_k is None
        self.const_k = const_k
        self.k = self.boxes_n if self.runtime_k else min(const_k, self.boxes_n)
        # The box count follows a data-dependent size (lowered at sample counts): every
        # constant built from N or K is computed at run time from SHAPE of the scores.
        self.runtime_n = any(i in ctx.driver.data_dependent for i in ctx.node.inputs[:2])
        self._cache = {}

    # ---- small emitters ---------------------------------------------------------------
    def const(self, array, hint):
        return self.ctx.const_tensor(np.asarray(array), hint)

    def gather_rows(self, params, indices, shape, hint):
        """params[r, indices[r, j], ...]: GATHER along axis 1 with one batch dim."""
        return self.e.op("GATHER", params, indices, shape=shape, hint=hint, axis=1, batch_dims=1)

    def unpack(self, tensor, hint):
        """Split axis 0 into ``self.rows`` tensors (a RESHAPE when there is one row)."""
        if self.rows == 1:
            return [self.ctx.reshape(tensor, tensor.shape[1:], hint)]
        parts = [
            self.ctx.temp(tensor.dtype, tensor.shape[1:], f"{hint}{r}") for r in range(self.rows)
        ]
        self.e.op("UNPACK", tensor, out=parts, num=self.rows, axis=0)
        return parts

    def pack(self, parts, hint):
        shape = (self.rows,) + tuple(parts[0].shape)
        if self.rows == 1:
            return self.ctx.reshape(parts[0], shape, hint)
        return self.e.op("PACK", *parts, shape=shape, hint=hint, values_count=self.rows, axis=0)

    def scalar(self, i):
        """Optional scalar input ``i`` as a 0-d runtime tensor."""
        t = self.ctx.input(i)
        return t if t.shape == () else self.ctx.reshape(t, (), f"in{i}_scalar")

    # ---- sizes (constants, or run-time tensors when N follows a data-dependent count) ----
    def n_i32(self):
        """N as an int32 scalar."""
        if not self.runtime_n:
            return self.const(np.int32(self.boxes_n), "box_count_k")
        if "n" not in self._cache:
            dims = self.e.op(
                "SHAPE",
                self.ctx.input(1),
                shape=(3,),
                dtype=np.int32,
                hint="score_dims",
                out_type="INT32",
            )
            begin, one = (
                self.const(np.array([2], np.int32), "n_at"),
                self.const(np.array([1], np.int32), "n_len"),
            )
            n = self.e.op("SLICE", dims, begin, one, shape=(1,), hint="n_vec")
            self._cache["n"] = self.ctx.reshape(n, (), "n")
        return self._cache["n"]

    def k_i32(self):
        """K (selections per row) as an int32 scalar: N, or min(max_output, N)."""
        if not self.runtime_n:
            return self.const(np.int32(self.k), "k")
        if "k" not in self._cache:
            n = self.n_i32()
            if self.runtime_k:
                self._cache["k"] = n
            else:
                cap = min(self.const_k, MAX_RANK_SCORE)  # N never exceeds it (torch: 2**63-1)
                cap = self.const(np.int32(cap), "k_const")
                self._cache["k"] = self.e.op("MINIMUM", n, cap, hint="k_runtime")
        return self._cache["k"]

    def size_f32(self, value):
        """``value`` (an int32 scalar tensor) as float32."""
        return self.e.op("CAST", value, dtype=np.float32, hint="size_f32")

    def last_i32(self):
        """N - 1 as an int32 scalar."""
        if not self.runtime_n:
            return self.const(np.int32(self.boxes_n - 1), "last")
        if "last" not in self._cache:
            one = self.const(np.int32(1), "one_i")
            self._cache["last"] = self.e.op("SUB", self.n_i32(), one, hint="last_rt")
        return self._cache["last"]

    def arange(self, count, limit_t, hint, dtype=np.int32):
        """[count] 0, 1, ...: a constant, or RANGE up to the run-time ``limit_t``."""
        if not self.runtime_n:
            return self.const(np.arange(count, dtype=dtype), hint)
        zero, one = self.const(np.array(0, dtype), "range0"), self.const(np.array(1, dtype), "r1")
        return self.e.op("RANGE", zero, limit_t, one, shape=(count,), dtype=dtype, hint=hint)

    # ---- pieces -----------------------------------------------------------------------
    def corner_boxes(self):
        """[B, N, 4] boxes as two opposite corners; [xc, yc, w, h] -> [x1, y1, x2, y2] (IoU
        does not care which axis comes first), computed as ONNX does: c -/+ size / 2."""
        boxes = self.ctx.input(0)
        if not self.ctx.attr("center_point_box", 0):
            return boxes
        b, n = self.batches, self.boxes_n
        halves = (b, n, 2)
        begin = self.const(np.array([0, 0, 0], np.int32), "center_begin")
        size = self.const(np.array([b, n, 2], np.int32), "half_size")
        centers = self.e.op("SLICE", boxes, begin, size, shape=halves, hint="centers")
        begin2 = self.const(np.array([0, 0, 2], np.int32), "extent_begin")
        extents = self.e.op("SLICE", boxes, begin2, size, shape=halves, hint="extents")
        half = self.e.op("MUL", extents, self.const(np.float32(0.5), "half"), hint="half_extents")
        low = self.e.op("SUB", centers, half, hint="low_corner")
        high = self.e.op("ADD", centers, half, hint="high_corner")
        return self.e.op(
            "CONCATENATION",
            low,
            high,
            shape=(b, n, 4),
            hint="corners",
            axis=2,
            fused_activation_function="NONE",
        )

    def score_rows(self):
        """[rows, N] scores and, in argmax mode, the [B, N] argmax classes."""
        scores = self.ctx.input(1)
        b, n = self.batches, self.boxes_n
        if not self.argmax:
            return self.ctx.reshape(scores, (self.rows, n), "score_rows"), None
        axis = self.const(np.array([1], np.int32), "class_axis")
        classes = self.e.op(
            "ARG_MAX",
            scores,
            axis,
            shape=(b, n),
            dtype=np.int32,
            hint="classes",
            output_type="INT32",
        )
        best = self.e.op(
            "REDUCE_MAX", scores, axis, shape=(b, n), hint="best_scores", keep_dims=False
        )
        return best, classes

    def above_threshold(self, sorted_scores):
        """[rows, N] score > score_threshold (None without a threshold: every box counts)."""
        if not self.ctx.has_input(4):
            return None
        thr = self.scalar(4)
        return self.e.op("GREATER", sorted_scores, thr, dtype=np.bool_, hint="above")

    def rank_thresholds(self, above):
        """Per row, the rank-score threshold N - count(score > score_threshold) as [rows]."""
        if above is None:
            return None
        kept = self.count(above, np.float32, "kept")
        if self.runtime_n:
            total = self.size_f32(self.n_i32())
        else:
            total = self.const(np.float32(self.boxes_n), "box_count")
        return self.e.op("SUB", total, kept, hint="rank_threshold")

    def count(self, mask, dtype, hint):
        """Per row, the number of true entries of a [rows, N] mask."""
        return self.count_rows(mask, self.rows, hint, dtype)

    def count_rows(self, mask, rows, hint, dtype=np.int32):
        """Per row, the number of true entries of a [rows, N] mask."""
        ones = self.e.op("CAST", mask, dtype=dtype, hint=f"{hint}_ones")
        axis = self.const(np.array([1], np.int32), "box_axis")
        return self.e.op("SUM", ones, axis, shape=(rows,), hint=hint, keep_dims=False)

    def rank_scores(self):
        """[N] float32 N, N-1, ..., 1: the kernel's scores in sorted order (exact to 2**24)."""
        n = self.boxes_n
        if not self.runtime_n:
            return self.const(np.arange(n, 0, -1, dtype=np.float32), "rank_scores")
        return self.e.op(
            "RANGE",
            self.size_f32(self.n_i32()),
            self.const(np.float32(0), "rank_end"),
            self.const(np.float32(-1), "rank_step"),
            shape=(n,),
            dtype=np.float32,
            hint="rank_scores",
        )

    def const_iou(self) -> float | None:
        """The IoU threshold when it is constant (ONNX's default 0 when absent), else None."""
        if not self.ctx.has_input(3):
            return 0.0
        value = self.ctx.const(3)
        return None if value is None else float(np.asarray(value, np.float32).reshape(-1)[0])

    def kernel_iou(self):
        """nextafter(max(t, 0), +inf): turns the kernel's ``iou >= t`` into ONNX's ``iou > t``."""
        value = self.const_iou()
        if value is not None:
            t = np.maximum(np.float32(value), np.float32(0))
            return self.const(np.nextafter(t, np.float32(np.inf)), "iou_threshold")
        # max(t, 0) on the bits: every negative float (-0.0 included, whose float MAXIMUM
        # with 0 may stay -0.0 and step to -1.4e-45) has a negative int32 pattern, and no
        # float op flushes a subnormal threshold.
        bits = self.e.op("BITCAST", self.scalar(3), dtype=np.int32, hint="iou_bits")
        bits = self.e.op("MAXIMUM", bits, self.const(np.int32(0), "zero_bits"), hint="iou_nonneg")
        up = self.e.op("ADD", bits, self.const(np.int32(1), "one"), hint="iou_next_bits")
        return self.e.op("BITCAST", up, dtype=np.float32, hint="iou_threshold")

    def suppressible(self, sorted_boxes):
        """[rows, N]: boxes that can suppress or be suppressed (positive area, IoU threshold
        below 1). The others are never suppressed in ONNX; the kernel would select them again
        and again (it re-queues a selected box and drops it only when its IoU with itself,
        1 or 0 for an empty box, reaches the threshold), so they bypass the kernel."""
        rows, n = self.rows, self.boxes_n
        iou = self.const_iou()
        if iou is not None and not iou < 1 and not self.runtime_n:  # ONNX never suppresses
            return self.const(np.zeros((rows, n), np.bool_), "never_suppressed")
        half = (rows, n, 2)
        size = self.const(np.array(half, np.int32), "corner_size")
        first = self.const(np.array([0, 0, 0], np.int32), "first_corner")
        second = self.const(np.array([0, 0, 2], np.int32), "second_corner")
        low = self.e.op("SLICE", sorted_boxes, first, size, shape=half, hint="corner_a")
        high = self.e.op("SLICE", sorted_boxes, second, size, shape=half, hint="corner_b")
        sides = self.e.op("SUB", high, low, hint="sides")
        axis = self.const(np.array([2], np.int32), "side_axis")
        area = self.e.op("REDUCE_PROD", sides, axis, shape=(rows, n), hint="area", keep_dims=False)
        area = self.e.op("ABS", area, hint="abs_area")
        zero = self.const(np.float32(0), "zero_area")
        positive = self.e.op("GREATER", area, zero, dtype=np.bool_, hint="positive_area")
        # An infinite area (an infinite corner, or a product past FLT_MAX) makes every ONNX
        # IoU with the box 0 or NaN: it never suppresses nor is suppressed (the kernel would
        # re-select it, its IoU with itself being NaN or 0).
        finite = self.e.op("LESS_EQUAL", area, self.const(np.float32(np.finfo(np.float32).max),
                           "max_area"), dtype=np.bool_, hint="finite_area")  # fmt: skip
        positive = self.e.op("LOGICAL_AND", positive, finite, hint="positive_finite_area")
        if iou is not None and not iou < 1:  # (run-time N) all false, shaped like the boxes
            never = self.const(np.False_, "never")
            return self.e.op("LOGICAL_AND", positive, never, hint="never_sup")
        if iou is not None:
            return positive
        below_one = self.e.op(
            "LESS",
            self.scalar(3),
            self.const(np.float32(1), "one_f"),
            dtype=np.bool_,
            hint="iou_lt1",
        )
        return self.e.op("LOGICAL_AND", positive, below_one, hint="suppressible")

    def select(self, sorted_boxes, suppressible, thresholds):
        """One NMS kernel per row over the suppressible boxes: ([rows, K] positions in sorted
        order, [rows] valid counts)."""
        zero = self.const(np.float32(0), "excluded_score")
        scores = self.e.op("SELECT_V2", suppressible, self.rank_scores(), zero, hint="kscores")
        k = self.k_i32()
        iou = self.kernel_iou()
        no_threshold = self.const(np.float32(0), "rank_threshold0")
        boxes = self.unpack(sorted_boxes, "row_boxes")
        row_scores = self.unpack(scores, "row_scores")
        limits = self.unpack(thresholds, "row_threshold") if thresholds is not None else None
        picks, counts = [], []
        for r in range(self.rows):
            pick = self.ctx.temp(np.int32, (self.k,), f"picked{r}")
            count = self.ctx.temp(np.int32, (), f"count{r}")
            thr = limits[r] if limits is not None else no_threshold
            self.e.op(
                "NON_MAX_SUPPRESSION_V4", boxes[r], row_scores[r], k, iou, thr, out=[pick, count]
            )
            picks.append(pick)
            counts.append(count)
        return self.pack(picks, "picked"), self.pack(counts, "counts")

    def merge(self, picks, counts, free):
        """The first K of (kernel picks) U (free boxes above the score threshold), ascending
        sorted positions: ONNX's greedy order, where free boxes are always selected."""
        rows, n, k = self.rows, self.boxes_n, self.k
        last = self.last_i32()
        none = self.const(np.int32(-1), "no_key")
        # Keys last - position: TOPK_V2 (largest first) then yields ascending positions.
        if self.runtime_n:
            positions_n = self.arange(n, self.n_i32(), "box_positions")
            free_keys = self.e.op("SUB", last, positions_n, hint="free_keys")
        else:
            free_keys = self.const(n - 1 - np.arange(n, dtype=np.int32), "free_keys")
        free_key = self.e.op("SELECT_V2", free, free_keys, none, hint="free_key")
        keys, width = free_key, n
        n_free = self.count(free, np.int32, "free_count")
        if picks is not None:
            valid = self.valid(counts)
            flipped = self.e.op("SUB", last, picks, hint="pick_key0")
            pick_key = self.e.op("SELECT_V2", valid, flipped, none, hint="pick_key")
            width = n + k
            keys = self.e.op(
                "CONCATENATION",
                pick_key,
                free_key,
                shape=(rows, width),
                hint="keys",
                axis=1,
                fused_activation_function="NONE",
            )
            n_free = self.e.op("ADD", n_free, counts, hint="merged_count")
        top = self.ctx.temp(np.int32, (rows, k), "top_keys")
        where = self.ctx.temp(np.int32, (rows, k), "top_where")
        self.e.op("TOPK_V2", keys, self.k_i32(), out=[top, where])
        clamped = self.e.op("MAXIMUM", top, self.const(np.int32(0), "zero_i"), hint="top_clamped")
        positions = self.e.op("SUB", last, clamped, hint="positions")
        merged = self.e.op("MINIMUM", n_free, self.k_i32(), hint="merged_k")
        return positions, merged

    def first_k_positions(self, chosen):
        """The first K true positions of a [1, N] mask, ascending (TOPK_V2 over keys
        last - position), and their count: a selection merged in ONNX's order."""
        n = self.boxes_n
        last = self.last_i32()
        if self.runtime_n:
            positions_n = self.arange(n, self.n_i32(), "box_positions")
            all_keys = self.e.op("SUB", last, positions_n, hint="chosen_keys0")
        else:
            all_keys = self.const(n - 1 - np.arange(n, dtype=np.int32), "chosen_keys0")
        none = self.const(np.int32(-1), "no_key")
        keys = self.e.op("SELECT_V2", chosen, all_keys, none, hint="chosen_keys")
        top = self.ctx.temp(np.int32, (self.rows, self.k), "top_keys")
        where = self.ctx.temp(np.int32, (self.rows, self.k), "top_where")
        self.e.op("TOPK_V2", keys, self.k_i32(), out=[top, where])
        clamped = self.e.op("MAXIMUM", top, self.const(np.int32(0), "zero_i"), hint="top_clamped")
        positions = self.e.op("SUB", last, clamped, hint="positions")
        total = self.count(chosen, np.int32, "chosen_count")
        return positions, self.e.op("MINIMUM", total, self.k_i32(), hint="merged_k")

    def valid(self, counts):
        """[rows, K] slot < count."""
        slots = self.arange(self.k, self.k_i32(), "slot_range")
        slots = self.ctx.reshape(slots, (1, self.k), "slots")
        col = self.ctx.reshape(counts, (self.rows, 1), "counts_col")
        return self.e.op("LESS", slots, col, dtype=np.bool_, hint="valid")

    def runtime_limit(self, counts):
        """Valid counts capped by a runtime max_output_boxes_per_class (clamped to [0, N])."""
        limit = self.scalar(2)
        dtype = limit.dtype
        if self.runtime_n:
            n = self.n_i32()
            if dtype != np.int32:
                n = self.e.op("CAST", n, dtype=dtype, hint="n_wide")
        else:
            n = self.const(np.array(self.boxes_n, dtype), "n")
        capped = self.e.op("MINIMUM", limit, n, hint="limit_hi")
        zero = self.const(np.array(0, dtype), "zero_k")
        capped = self.e.op("MAXIMUM", capped, zero, hint="limit")
        if dtype != np.int32:
            capped = self.e.op("CAST", capped, dtype=np.int32, hint="limit_i32")
        return self.e.op("MINIMUM", counts, capped, hint="valid_counts")

    def triples(self, box_index, classes, counts):
        """[rows * K, 3] int32 rows (batch, class, box), padding rows -1, valid rows first."""
        rows, k = self.rows, self.k
        grid = (rows, k)
        batch_of_row = np.repeat(np.arange(self.batches, dtype=np.int32), self.rows_c)
        class_of_row = np.tile(np.arange(self.rows_c, dtype=np.int32), self.batches)
        if self.runtime_n:  # per-row constants broadcast over the run-time K columns
            blank = self.e.op("MUL", box_index, self.const(np.int32(0), "zero_col"), hint="blank")

            def column(values, hint):
                return self.e.op(
                    "ADD", blank, self.const(values[:, None], f"{hint}_rows"), hint=hint
                )

        else:

            def column(values, hint):
                return self.const(np.broadcast_to(values[:, None], grid), hint)

        batch_col = column(batch_of_row, "batch_col")
        if classes is None:
            class_col = column(class_of_row, "class_col")
        else:
            class_col = self.gather_rows(classes, box_index, grid, "class_col")
        cols = self.e.op(
            "PACK",
            batch_col,
            class_col,
            box_index,
            shape=grid + (3,),
            hint="triples",
            values_count=3,
            axis=2,
        )
        valid = self.valid(counts)
        valid3 = self.ctx.reshape(valid, grid + (1,), "valid3")
        pad = self.const(np.int32(-1), "pad")
        padded = self.e.op("SELECT_V2", valid3, cols, pad, hint="padded")
        flat = self.ctx.reshape(padded, (rows * k, 3), "flat")
        if rows == 1:
            return flat
        # Compact: TOPK_V2 over unique keys (valid slots first, each group in slot order).
        total = rows * k
        flat_valid = self.ctx.reshape(valid, (total,), "valid_flat")
        if self.runtime_n:
            total_t = self.e.op(
                "MUL", self.k_i32(), self.const(np.int32(rows), "row_count"), hint="total"
            )
            slot = self.arange(total, total_t, "slot_all")
            key_valid = self.e.op("NEG", slot, hint="key_valid")
            key_pad = self.e.op("SUB", key_valid, total_t, hint="key_pad")
        else:
            total_t = self.const(np.int32(total), "all_slots")
            slot = np.arange(total, dtype=np.int32)
            key_valid, key_pad = (
                self.const(-slot, "key_valid"),
                self.const(-slot - total, "key_pad"),
            )
        key = self.e.op("SELECT_V2", flat_valid, key_valid, key_pad, hint="order_key")
        top = self.ctx.temp(np.int32, (total,), "order_key_sorted")
        order = self.ctx.temp(np.int32, (total,), "compact_order")
        self.e.op("TOPK_V2", key, total_t, out=[top, order])
        return self.e.op(
            "GATHER", flat, order, shape=(total, 3), hint="compacted", axis=0, batch_dims=0
        )

    # ---- outputs ----------------------------------------------------------------------
    def output(self, rows, counts):
        ctx, drv, e = self.ctx, self.ctx.driver, self.e
        name = ctx.node.outputs[0]
        total = self.e.op(
            "SUM",
            counts,
            self.const(np.array([0], np.int32), "row_axis"),
            shape=(),
            hint="valid_count",
            keep_dims=False,
        )
        size = rows.shape[0]
        if not drv.options.nms_padded_output:
            wide = self.e.op("CAST", rows, dtype=np.int64, hint="selected_i64")
            extent = self.e.op(
                "CONCATENATION",
                ctx.reshape(total, (1,), "valid_count_1"),
                self.const(np.array([3], np.int32), "three"),
                shape=(2,),
                hint="slice_size",
                axis=0,
                fused_activation_function="NONE",
            )
            pinned = drv.graph.values[name]
            if pinned.is_static:  # read by other nodes: lowered at sample counts (dynamic.py)
                out = drv.new_tensor(name, np.int64, tuple(pinned.shape))
            else:
                out = drv.new_tensor(name, np.int64, (1, 3))
                out.shape_signature = (-1, 3)
            e.op(
                "SLICE",
                wide,
                self.const(np.array([0, 0], np.int32), "slice_begin"),
                extent,
                out=out,
            )
        else:
            drv.value(name).shape = (size, 3)
            out = drv.new_tensor(name, np.int64, (size, 3))
            e.op("CAST", rows, out=out)
            if name in drv.graph.outputs:
                self.expose_valid_count(f"{name}{VALID_COUNT_SUFFIX}", total)
        ctx.alias_output(0, out, L.identity(2))

    def expose_valid_count(self, name, total):
        """An extra graph output next to the fixed-size rows (the ONNX node has one output)."""
        drv = self.ctx.driver
        out = drv.new_tensor(name, np.int32, ())
        self.e.op("RESHAPE", total, self.const(np.array([], np.int32), "scalar_shape"), out=out)
        drv.add_extra_output(out, name)

    def lower(self):
        rows, n = self.rows, self.boxes_n
        scores, classes = self.score_rows()
        sorted_scores = self.ctx.temp(np.float32, (rows, n), "sorted_scores")
        order = self.ctx.temp(np.int32, (rows, n), "score_order")
        self.e.op("TOPK_V2", scores, self.n_i32(), out=[sorted_scores, order])
        order3 = self.ctx.reshape(order, (self.batches, self.rows_c, n), "score_order3")
        sorted_boxes = self.e.op(
            "GATHER",
            self.corner_boxes(),
            order3,
            shape=(self.batches, self.rows_c, n, 4),
            hint="sorted_boxes",
            axis=1,
            batch_dims=1,
        )
        sorted_boxes = self.ctx.reshape(sorted_boxes, (rows, n, 4), "sorted_box_rows")
        above = self.above_threshold(sorted_scores)
        suppressible = self.suppressible(sorted_boxes)
        free = self.e.op("LOGICAL_NOT", suppressible, hint="unsuppressible")
        if above is not None:
            free = self.e.op("LOGICAL_AND", free, above, hint="free")
        iou = self.const_iou()
        if iou is not None and not iou < 1:  # nothing is ever suppressed: no kernel
            positions, counts = self.merge(None, None, free)
        elif self.grouped:
            positions, counts = nms_groups.select_and_merge(
                self, order, sorted_boxes, suppressible, above, free
            )
        else:
            picks, counts = self.select(sorted_boxes, suppressible, self.rank_thresholds(above))
            positions, counts = self.merge(picks, counts, free)
        if self.runtime_k:
            counts = self.runtime_limit(counts)
        box_index = self.gather_rows(order, positions, (rows, self.k), "box_index")
        if classes is not None:
            classes = self.ctx.reshape(classes, (self.batches, n), "classes_rows")
        self.output(self.triples(box_index, classes, counts), counts)


@lowering(
    "NonMaxSuppression",
    onnx_order,
    since=10,
    dtypes=FLOAT,
    dtype_inputs=(0, 1),
    ranks=(3,),
    nonempty=True,
    dynamic_outputs=True,
    attrs=(attr_in("center_point_box", (0, 1), 0),),
    tflite_ops=(
        "NON_MAX_SUPPRESSION_V4",
        "TOPK_V2",
        "GATHER",
        "UNPACK",
        "PACK",
        "SELECT_V2",
        "CONCATENATION",
        "SLICE",
        "RESHAPE",
        "CAST",
        "SUM",
        "REDUCE_PROD",
        "ABS",
        "GREATER",
        "LESS",
        "LOGICAL_NOT",
        "LOGICAL_AND",
        "ADD",
        "SUB",
        "MUL",
        "MINIMUM",
        "MAXIMUM",
        "BITCAST",
        "ARG_MAX",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "REDUCE_ANY",
        "EQUAL",
        "LOGICAL_OR",
        "SCATTER_ND",
        "RANGE",
        "UNSORTED_SEGMENT_MIN",
        "UNSORTED_SEGMENT_MAX",
        "UNSORTED_SEGMENT_SUM",
    ),
    notes=(
        "default: ONNX's exact [num_selected, 3] (dynamic size); --nms-padded-output: fixed-size "
        "[B*C*K, 3] padded with -1 rows plus <output>_valid_count; --nms-class-argmax: "
        f"class-agnostic NMS on per-box max scores; at most {MAX_NMS_KERNELS} batch x class "
        "kernels; torchvision batched_nms boxes (boxes + label * (max + 1)): one kernel per "
        "label group (rule batched_nms_groups), a run-time separation check falling back to one "
        "kernel"
    ),
    extra_check=_check,
)
def lower_nms(ctx):
    _NmsBuilder(ctx).lower()
