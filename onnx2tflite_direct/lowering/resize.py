"""Resize / Upsample in channel-last layout.

ONNX resizing is separable: along each resized axis every output element is a fixed weighted
sum of a few input elements (the *taps*). The taps are computed here in numpy from the
ONNX definition (coordinate transformation, nearest rounding, linear or cubic kernel,
exclude_outside, extrapolation). When TFLite's RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR
computes the very same interpolation (checked by comparing its index/weight formula with the
ONNX taps) the builtin is used; otherwise each axis becomes GATHERs with constant indices and
MULs/ADDs with constant weights -- exact by construction. Runtime ``scales``/``roi`` compute the
coordinates in-graph instead (see "runtime scales / roi" below). Antialiasing is refused.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .. import errors
from ..policies import channel_last
from ..registry import FLOAT, attr_in, lowering
from . import compose as C

MODES = ("nearest", "linear", "cubic")
COORD_MODES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
)
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


# ---- the ONNX definition, per axis ------------------------------------------------------


def source_coords(mode, in_size, out_size, scale, roi=(0.0, 1.0), dt=np.float64) -> np.ndarray:
    """Input coordinate of every output index along one axis, computed in ``dt`` (float64 like
    the ONNX reference, or float32 like onnxruntime, to detect rounding ties)."""
    x = np.arange(out_size, dtype=dt)
    scale, n_in, n_out, half = dt(scale), dt(in_size), dt(out_size), dt(0.5)
    if mode == "half_pixel":
        return (x + half) / scale - half
    if mode == "half_pixel_symmetric":
        adjustment = n_out / (scale * n_in)
        offset = n_in / dt(2) * (dt(1) - adjustment)
        return offset + (x + half) / scale - half
    if mode == "pytorch_half_pixel":
        return (x + half) / scale - half if out_size > 1 else np.zeros(out_size, dt)
    if mode == "align_corners":
        return x * (n_in - 1) / (n_out - 1) if out_size > 1 else np.zeros(out_size, dt)
    if mode == "asymmetric":
        return x / scale
    start, end = dt(roi[0]), dt(roi[1])  # tf_crop_and_resize
    if out_size > 1:
        return start * (n_in - 1) + x * (end - start) * (n_in - 1) / (n_out - 1)
    return np.full(out_size, half * (start + end) * (n_in - 1), dt)


def _exact_coords(mode, in_size, out_size, scale, roi) -> list[Fraction]:
    """The coordinates in exact rational arithmetic (scale taken as its float32 value)."""
    s, n_in, n_out, half = (
        Fraction(float(np.float32(scale))),
        Fraction(in_size),
        Fraction(out_size),
        Fraction(1, 2),
    )
    out = []
    for i in range(out_size):
        x = Fraction(i)
        if mode == "half_pixel" or (mode == "pytorch_half_pixel" and out_size > 1):
            v = (x + half) / s - half
        elif mode == "half_pixel_symmetric":
            v = n_in / 2 * (1 - n_out / (s * n_in)) + (x + half) / s - half
        elif mode == "align_corners":
            v = x * (n_in - 1) / (n_out - 1) if out_size > 1 else Fraction(0)
        elif mode == "asymmetric":
            v = x / s
        elif mode == "tf_crop_and_resize":
            a, b = Fraction(float(roi[0])), Fraction(float(roi[1]))
            v = (
                a * (n_in - 1) + x * (b - a) * (n_in - 1) / (n_out - 1)
                if out_size > 1
                else (a + b) / 2 * (n_in - 1)
            )
        else:
            v = Fraction(0)
        out.append(v)
    return out


def _ambiguous_tie(mode, in_size, out_size, scale, roi, nearest_mode) -> bool:
    """Does an exact rounding tie occur where float implementations may land on either side?

    Ties are harmless when the formula is one correctly rounded division of exact operands
    (then float32 and float64 both hit the tie exactly): align_corners always, asymmetric and
    (pytorch_)half_pixel when the scale is exactly representable in float32.
    """
    if mode == "align_corners":
        return False
    if (
        mode in ("asymmetric", "half_pixel", "pytorch_half_pixel")
        and float(np.float32(scale)) == scale
    ):
        return False
    boundary = Fraction(0) if nearest_mode in ("floor", "ceil") else Fraction(1, 2)
    return any(
        v - (v.numerator // v.denominator) == boundary
        for v in _exact_coords(mode, in_size, out_size, scale, roi)
    )


def _round(x, nearest_mode):
    if nearest_mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if nearest_mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    return np.floor(x) if nearest_mode == "floor" else np.ceil(x)


def _cubic(t, a):
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def interpolation_matrix(x, in_size, mode, nearest_mode, cubic_a, exclude_outside) -> np.ndarray:
    """[out, in] weights: output i = sum_j M[i, j] * input j (edge taps clamp to the border)."""
    out = np.zeros((x.size, in_size))
    rows = np.arange(x.size)
    if mode == "nearest":
        idx = np.clip(_round(x, nearest_mode), 0, in_size - 1).astype(np.int64)
        out[rows, idx] = 1.0
        return out
    base = np.floor(x)
    frac = x - base
    if mode == "linear":
        offsets, weights = (0, 1), (1 - frac, frac)
    else:
        offsets = (-1, 0, 1, 2)
        weights = tuple(_cubic(frac - k, cubic_a) for k in offsets)
    raw = [base + k for k in offsets]
    if exclude_outside:
        weights = [
            np.where((r >= 0) & (r <= in_size - 1), w, 0.0)
            for r, w in zip(raw, weights, strict=False)
        ]
        total = np.sum(weights, axis=0)
        weights = [w / total for w in weights]
    for r, w in zip(raw, weights, strict=False):
        np.add.at(out, (rows, np.clip(r, 0, in_size - 1).astype(np.int64)), w)
    return out


# ---- what TFLite's builtins compute ---------------------------------------------------------


def _tfl_scale(in_size, out_size, align_corners):
    if align_corners and out_size > 1:
        return np.float32(in_size - 1) / np.float32(out_size - 1)
    return np.float32(in_size) / np.float32(out_size)


def tfl_nearest(in_size, out_size, align_corners, half_pixel) -> np.ndarray:
    """Index formula of RESIZE_NEAREST_NEIGHBOR (float32 arithmetic like the kernel)."""
    scale = _tfl_scale(in_size, out_size, align_corners)
    v = (np.arange(out_size, dtype=np.float32) + np.float32(0.5 if half_pixel else 0)) * scale
    idx = np.round(v) if align_corners else np.floor(v)  # TfLiteRound: half away from zero
    if align_corners:
        idx = np.where(v - np.floor(v) == 0.5, np.floor(v) + 1, idx)
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    return np.maximum(idx, 0) if half_pixel else idx


def tfl_bilinear(in_size, out_size, align_corners, half_pixel) -> np.ndarray:
    """[out, in] matrix of RESIZE_BILINEAR."""
    scale = _tfl_scale(in_size, out_size, align_corners)
    x = np.arange(out_size, dtype=np.float32)
    v = (x + np.float32(0.5)) * scale - np.float32(0.5) if half_pixel else x * scale
    lower = np.maximum(np.floor(v), 0).astype(np.int64)
    upper = np.minimum(np.ceil(v), in_size - 1).astype(np.int64)
    frac = v.astype(np.float64) - lower
    m = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    np.add.at(m, (rows, lower), 1 - frac)
    np.add.at(m, (rows, upper), frac)
    return m


def _nearest_index(m: np.ndarray) -> np.ndarray | None:
    """The source index per row when every row of ``m`` is one-hot, else None."""
    if not np.all(np.isclose(m, 0) | np.isclose(m, 1)) or not np.allclose(m.sum(1), 1):
        return None
    return np.argmax(m, axis=1)


def builtin_flags(opcode, mats, in_sizes, out_sizes):
    """(align_corners, half_pixel_centers) under which ``opcode`` equals ``mats``, or None."""
    for align, half in ((False, False), (False, True), (True, False)):
        ok = True
        for m, n_in, n_out in zip(mats, in_sizes, out_sizes, strict=False):
            if opcode == "RESIZE_NEAREST_NEIGHBOR":
                idx = _nearest_index(m)
                ok = idx is not None and np.array_equal(idx, tfl_nearest(n_in, n_out, align, half))
                # the optimized kernel's fixed-point index agrees only for these plain cases
                if ok and not (align or half):
                    fixed = (np.arange(n_out) * ((n_in << 16) // n_out + 1)) >> 16
                    ok = np.array_equal(idx, np.minimum(fixed, n_in - 1))
            else:
                ok = np.allclose(m, tfl_bilinear(n_in, n_out, align, half), atol=1e-6)
            if not ok:
                break
        if ok:
            return align, half
    return None


# ---- the lowering -----------------------------------------------------------------------------


class _Spec:
    """Per-node resize parameters in ONNX axis order."""

    def __init__(self, ctx):
        self.ctx = ctx
        op = ctx.node.op_type
        opset = ctx.node.opset
        rank = len(ctx.shape(0))
        self.in_shape = ctx.shape(0)
        self.out_shape = ctx.out_shape(0)
        self.mode = {"bilinear": "linear"}.get(
            ctx.attr("mode", "nearest"), ctx.attr("mode", "nearest")
        )
        legacy = op == "Upsample" or opset < 11
        self.coord = (
            "asymmetric" if legacy else ctx.attr("coordinate_transformation_mode", "half_pixel")
        )
        self.nearest_mode = "floor" if legacy else ctx.attr("nearest_mode", "round_prefer_floor")
        self.cubic_a = float(ctx.attr("cubic_coeff_a", -0.75))
        self.exclude_outside = bool(ctx.attr("exclude_outside", 0))
        self.extrapolation = float(ctx.attr("extrapolation_value", 0.0))
        axes = [int(a) % rank for a in ctx.attr("axes", range(rank))]
        static = [self.out_shape[a] / self.in_shape[a] for a in axes]  # implied by shapes
        self.scales = [1.0] * rank
        if op == "Upsample" and opset < 9:
            ratios = [float(v) for v in np.asarray(ctx.attr("scales"), np.float32)]
        elif _present(ctx, 3) and not legacy:  # sizes: the static output shape is the value
            ratios = static
            sizes = ctx.const(3)
            if sizes is not None:
                ratios = [float(v) / self.in_shape[a] for a, v in zip(axes, sizes, strict=False)]
            policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
            if policy != "stretch" and sizes is None:
                ratios = _aspect_scales(self.in_shape, self.out_shape, axes)[:1] * len(axes)
            elif policy != "stretch":
                common = min(ratios) if policy == "not_larger" else max(ratios)
                ratios = [common] * len(axes)
        else:
            scales = ctx.const(1 if legacy else 2)
            ratios = static if scales is None else [float(v) for v in scales.reshape(-1)]
        for a, r in zip(axes, ratios, strict=False):
            self.scales[a] = r
        inexact = [a for a in axes if self.scales[a] * self.in_shape[a] != self.out_shape[a]]
        if inexact and self.coord in ("align_corners", "pytorch_half_pixel", "tf_crop_and_resize"):
            ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE,
                f"{self.coord} with scale*size not an integer: the ONNX reference and "
                "onnxruntime disagree",
            )
        to_one = [a for a in axes if self.out_shape[a] == 1 and self.in_shape[a] != 1]
        if self.coord == "pytorch_half_pixel" and self.mode == "cubic" and to_one:
            ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE,
                "cubic pytorch_half_pixel to size 1: the ONNX reference and onnxruntime disagree",
            )
        self.roi = [(0.0, 1.0)] * rank
        roi = ctx.const(1) if not legacy and _present(ctx, 1) else None
        if self.coord == "tf_crop_and_resize" and roi is not None and roi.size:
            k = roi.size // 2
            roi_axes = axes if k == len(axes) else range(rank)
            for j, a in enumerate(roi_axes):
                self.roi[a] = (float(roi[j]), float(roi[j + k]))

    def resized_axes(self):
        return [
            a
            for a in range(len(self.in_shape))
            if self.in_shape[a] != self.out_shape[a]
            or self.scales[a] != 1.0
            or self.roi[a] != (0.0, 1.0)
        ]

    def axis_plan(self, a):
        """(matrix [out, in], inside mask [out]) for ONNX axis ``a``."""
        n_in, n_out = self.in_shape[a], self.out_shape[a]
        x = source_coords(self.coord, n_in, n_out, self.scales[a], self.roi[a])
        m = interpolation_matrix(
            x, n_in, self.mode, self.nearest_mode, self.cubic_a, self.exclude_outside
        )
        if self.mode == "nearest" and _ambiguous_tie(
            self.coord, n_in, n_out, self.scales[a], self.roi[a], self.nearest_mode
        ):
            self.ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE,
                f"nearest {self.nearest_mode} hits an exact rounding tie on axis {a} that float32 "
                "and float64 runtimes (onnxruntime, the ONNX reference) resolve differently",
            )
        inside = np.ones(n_out, bool)
        if self.coord == "tf_crop_and_resize":
            inside = (x >= 0) & (x <= n_in - 1)
            m[~inside] = 0.0
        return m, inside


def _present(ctx_or_node, i, graph=None) -> bool:
    """Input ``i`` is given and not an empty tensor."""
    if graph is None:
        ctx = ctx_or_node
        return ctx.has_input(i) and int(np.prod(ctx.shape(i))) > 0
    node = ctx_or_node
    return (
        i < len(node.inputs)
        and bool(node.inputs[i])
        and int(np.prod(graph.values[node.inputs[i]].shape)) > 0
    )


def _runtime(node, graph, i) -> bool:
    return _present(node, i, graph) and graph.values[node.inputs[i]].const is None


def _aspect_scales(in_shape, out_shape, axes) -> list[float]:
    """Candidates for the common keep_aspect_ratio scale behind runtime ``sizes``.

    The scale is sizes[a] / in[a] for the axis the policy picked, and there out[a] == sizes[a]
    (every out[b] is round_half_up(scale * in[b])). So it is one of the out[a] / in[a] that
    reproduce the whole output shape.
    """
    return sorted(
        {
            out_shape[a] / in_shape[a]
            for a in axes
            if all(
                np.floor(out_shape[a] / in_shape[a] * in_shape[b] + 0.5) == out_shape[b]
                for b in axes
            )
        }
    )


def _aspect_scale_known(attrs, in_shape, out_shape, axes) -> bool:
    """Every candidate scale resizes identically, so the runtime ``sizes`` cannot matter."""
    candidates = _aspect_scales(in_shape, out_shape, axes)
    if len(candidates) < 2:
        return bool(candidates)
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    if coord in ("align_corners", "tf_crop_and_resize"):
        return False  # does not use the scale, but the reference's length does
    kernel = (
        attrs.get("mode", "nearest"),
        attrs.get("nearest_mode", "round_prefer_floor"),
        float(attrs.get("cubic_coeff_a", -0.75)),
        bool(attrs.get("exclude_outside", 0)),
    )
    for a in axes:
        mats = [
            interpolation_matrix(
                source_coords(coord, in_shape[a], out_shape[a], c), in_shape[a], *kernel
            )
            for c in candidates
        ]
        if not all(np.array_equal(mats[0], m) for m in mats[1:]):
            return False
        if kernel[0] == "nearest" and any(
            _ambiguous_tie(coord, in_shape[a], out_shape[a], c, (0.0, 1.0), kernel[1])
            for c in candidates
        ):
            return False
    return True


def _node_axes(node, rank):
    return [int(a) % rank for a in node.attrs.get("axes", range(rank))]


def _runtime_check(node, graph, scales_index, mode, coord):
    """Refusal message for runtime scales/roi that cannot be reproduced exactly, or None."""
    runtime_scales = scales_index is not None and _runtime(node, graph, scales_index)
    runtime_roi = coord == "tf_crop_and_resize" and _runtime(node, graph, 1)
    if not (runtime_scales or runtime_roi):
        return None
    x, y = graph.values[node.inputs[0]].shape, graph.values[node.outputs[0]].shape
    why = _runtime_refusal(mode, coord, runtime_scales, x, y, _node_axes(node, len(x)))
    return f"{errors.REQUIRES_CONSTANT_INPUT}: {why}" if why else None


def _resize_check(node, graph):
    """Runtime roi/scales are computed in the graph where float32 is exact enough."""
    if int(node.attrs.get("antialias", 0)):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: antialias=1 has no exact TFLite form"
    coord = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    mode = node.attrs.get("mode", "nearest")
    need = errors.REQUIRES_CONSTANT_INPUT
    if _present(node, 3, graph):  # sizes: the static output shape is the value
        if (
            _runtime(node, graph, 3)
            and node.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch"
        ):
            x, y = graph.values[node.inputs[0]].shape, graph.values[node.outputs[0]].shape
            if not _aspect_scale_known(node.attrs, x, y, _node_axes(node, len(x))):
                return (
                    f"{need}: keep_aspect_ratio_policy with runtime sizes whose common scale "
                    "the static output shape does not determine"
                )
        return _runtime_check(node, graph, None, mode, coord)
    return _runtime_check(node, graph, 2, mode, coord)


def _legacy_check(node, graph):
    if not (node.op_type == "Upsample" and node.opset < 9):
        mode = node.attrs.get("mode", "nearest").replace("bilinear", "linear")
        why = _runtime_check(node, graph, 1, mode, "asymmetric")
        if why:
            return why
    if node.attrs.get("mode", "nearest") == "nearest":
        shape_in = graph.values[node.inputs[0]].shape
        shape_out = graph.values[node.outputs[0]].shape
        if any(o < i for i, o in zip(shape_in, shape_out, strict=False)):
            return (
                f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: nearest downsampling before opset 11 "
                "has runtime-specific rounding"
            )
    return None


def _scales_index(ctx):
    """Input index of a used ``scales`` input, or None (Upsample-7 attribute, or sizes given)."""
    if ctx.node.op_type == "Upsample" and ctx.node.opset < 9:
        return None
    if ctx.node.op_type == "Upsample" or ctx.node.opset < 11:
        return 1
    return None if _present(ctx, 3) else 2


def lower_resize(ctx):
    spec = _Spec(ctx)
    scales_index = _scales_index(ctx)
    runtime_scales = scales_index is not None and ctx.const(scales_index) is None
    runtime_roi = spec.coord == "tf_crop_and_resize" and _present(ctx, 1) and ctx.const(1) is None
    if runtime_scales or runtime_roi:
        _lower_runtime(ctx, spec, scales_index if runtime_scales else None, runtime_roi)
        return
    axes = spec.resized_axes()
    lay = ctx.in_layout(0)
    x = ctx.input(0)
    if not axes:
        ctx.alias_output(0, x, lay)
        return
    plans = {a: spec.axis_plan(a) for a in axes}
    stored = [lay.stored_axis(a) for a in axes]
    rank = len(spec.in_shape)
    if rank == 4 and sorted(stored) == [1, 2] and all(p[1].all() for p in plans.values()):
        if _try_builtin(ctx, spec, x, plans, lay):
            return
    outside = None
    if spec.extrapolation != 0.0 and not all(p[1].all() for p in plans.values()):
        outside = _extrapolation_term(ctx, spec, plans, lay)
    final = ctx.output(0)
    order = sorted(axes, key=lambda a: spec.out_shape[a] / spec.in_shape[a])  # shrink first
    for k, a in enumerate(order):
        last = k == len(order) - 1 and outside is None
        x = _resize_axis(ctx, x, lay.stored_axis(a), plans[a][0], final if last else None)
    if outside is not None:
        C.binary(ctx, "ADD", x, outside, out=final)


def _lower_runtime(ctx, spec, scales_index, runtime_roi):
    """Resize along every axis the runtime scales/roi cover, coordinates computed in-graph."""
    rank = len(spec.in_shape)
    axes = [int(a) % rank for a in ctx.attr("axes", range(rank))]
    why = _runtime_refusal(
        spec.mode, spec.coord, scales_index is not None, spec.in_shape, spec.out_shape, axes
    )
    if why:
        ctx.refuse(errors.REQUIRES_CONSTANT_INPUT, why)
    scale_of = _runtime_vector(ctx, scales_index, rank, axes) if scales_index is not None else None
    roi_of = _runtime_vector(ctx, 1, rank, axes, halves=2) if runtime_roi else None
    lay = ctx.in_layout(0)
    x = ctx.input(0)
    work = [a for a in axes if spec.in_shape[a] != 1 or spec.out_shape[a] != 1]
    if not work:
        ctx.alias_output(0, x, lay)
        return
    work.sort(key=lambda a: spec.out_shape[a] / spec.in_shape[a])  # shrink first
    for k, a in enumerate(work):
        out = ctx.output(0) if k == len(work) - 1 else None
        stored = lay.stored_axis(a)
        if spec.in_shape[a] == 1:  # every tap clamps to the single element
            x = _resize_axis(ctx, x, stored, np.ones((spec.out_shape[a], 1)), out)
            continue
        scale = scale_of(a) if scale_of else ctx.const_tensor(np.float32([spec.scales[a]]), "s")
        roi = (
            (roi_of(a, 0), roi_of(a, 1))
            if roi_of
            else tuple(ctx.const_tensor(np.float32([v]), "roi") for v in spec.roi[a])
        )
        axis = _RuntimeAxis(ctx, spec, a, scale, roi)
        if spec.mode == "nearest":
            x = _apply_runtime_taps(ctx, spec, x, stored, axis.nearest_taps(), None, out)
            continue
        coords = axis.coords()
        mask = axis.inside(coords) if spec.coord == "tf_crop_and_resize" else None
        x = _apply_runtime_taps(ctx, spec, x, stored, axis.taps(coords), mask, out)


def _apply_runtime_taps(ctx, spec, x, stored, taps, mask, out):
    """sum_k GATHER(x, idx_k) * w_k along ``stored``; tf_crop_and_resize extrapolates where
    ``mask`` is 0 (axis by axis, as the ONNX reference does)."""
    shape = list(x.shape)
    n_out = taps[0][0].shape[0]
    shape[stored] = n_out
    bshape = [1] * len(shape)
    bshape[stored] = n_out
    if mask is not None:
        fill = C.binary(ctx, "SUB", ctx.const_tensor(np.float32([1.0]), "one"), mask, "fill")
        fill = C.binary(
            ctx, "MUL", fill, ctx.const_tensor(np.float32([spec.extrapolation]), "ev"), "fill"
        )
        taps = [(i, C.binary(ctx, "MUL", w, mask, "w")) for i, w in taps]
        taps.append((None, fill))
    if len(taps) == 1 and taps[0][1] is None:  # nearest: a single unweighted GATHER
        gathered = out if out is not None else ctx.temp(x.dtype, shape, "gather")
        ctx.emit("GATHER", [x, taps[0][0]], [gathered], axis=stored, batch_dims=0)
        return gathered
    acc = None
    for k, (idx, w) in enumerate(taps):
        last = k == len(taps) - 1
        w_b = ctx.reshape(w, bshape, "w_b")
        if idx is None:
            term = w_b
        else:
            gathered = ctx.temp(x.dtype, shape, f"gather{k}")
            ctx.emit("GATHER", [x, idx], [gathered], axis=stored, batch_dims=0)
            term = C.binary(ctx, "MUL", gathered, w_b, f"tap{k}")
        if acc is None:
            acc = term
        else:
            acc = C.binary(ctx, "ADD", acc, term, f"sum{k}", out=out if last else None)
    return acc


def _try_builtin(ctx, spec, x, plans, lay) -> bool:
    if spec.mode == "cubic":
        return False
    opcode = "RESIZE_NEAREST_NEIGHBOR" if spec.mode == "nearest" else "RESIZE_BILINEAR"
    h, w = lay.perm[1], lay.perm[2]
    ident = {a: (np.eye(spec.in_shape[a]), None) for a in (h, w) if a not in plans}
    mats = [{**ident, **plans}[a][0] for a in (h, w)]
    flags = builtin_flags(
        opcode, mats, [spec.in_shape[h], spec.in_shape[w]], [spec.out_shape[h], spec.out_shape[w]]
    )
    if flags is None:
        return False
    size = ctx.const_tensor(np.array([spec.out_shape[h], spec.out_shape[w]], np.int32), "size")
    ctx.emit(
        opcode, [x, size], [ctx.output(0)], align_corners=flags[0], half_pixel_centers=flags[1]
    )
    return True


def _resize_axis(ctx, x, axis, m, out=None):
    """Apply the [out, in] matrix ``m`` along stored ``axis`` as GATHER taps."""
    n_out = m.shape[0]
    shape = list(x.shape)
    shape[axis] = n_out
    rows = np.arange(n_out)
    taps = []  # (indices, weights) with at most one nonzero per row per tap
    remaining = m.copy()
    while np.any(remaining != 0):
        idx = np.argmax(remaining != 0, axis=1)
        w = remaining[rows, idx]
        remaining[rows, idx] = 0.0
        taps.append((idx, w))
    if not taps:
        taps = [(np.zeros(n_out, np.int64), np.zeros(n_out))]
    acc = None
    bshape = [1] * len(shape)
    bshape[axis] = n_out
    for k, (idx, w) in enumerate(taps):
        last = k == len(taps) - 1
        unit = np.all(w == 1.0)
        g_out = out if last and unit and acc is None and out is not None else None
        gathered = g_out or ctx.temp(x.dtype, shape, f"gather{k}")
        ctx.emit(
            "GATHER",
            [x, ctx.const_tensor(idx.astype(np.int32), "indices")],
            [gathered],
            axis=axis,
            batch_dims=0,
        )
        term = gathered
        if not unit:
            weights = ctx.const_tensor(w.astype(np.float32).reshape(bshape), "weights")
            term = C.binary(
                ctx, "MUL", gathered, weights, f"tap{k}", out=out if last and acc is None else None
            )
        if acc is None:
            acc = term
        else:
            acc = C.binary(ctx, "ADD", acc, term, f"sum{k}", out=out if last else None)
    return acc


def _extrapolation_term(ctx, spec, plans, lay):
    """extrapolation_value where any resized coordinate falls outside the input (else 0)."""
    inside = np.ones([1] * len(spec.in_shape), bool)
    for a, (_, mask) in plans.items():
        shape = [1] * len(spec.in_shape)
        shape[a] = mask.size
        inside = inside & mask.reshape(shape)
    term = np.where(inside, 0.0, spec.extrapolation).astype(np.float32)
    return ctx.const_tensor(lay.apply(term), "extrapolation")


# ---- runtime scales / roi ------------------------------------------------------------------
#
# When `scales` (or the tf_crop_and_resize `roi`) is a runtime tensor, the source coordinate of
# every output index is computed in the graph with the ONNX formula in float32 (onnxruntime's
# order of operations), then split into integer taps (FLOOR, clamp, CAST) that feed GATHERs
# along the axis and weights that feed MUL/ADD. Linear and cubic weights are continuous in the
# coordinate, so float32 rounding of the coordinate moves the result by rounding error only.
# Nearest rounding is discontinuous: a float32 coordinate can land on a rounding boundary that
# the float64 ONNX reference misses, so nearest modes keep requiring constant inputs.


EXACT_NEAREST_COORDS = ("asymmetric", "half_pixel", "pytorch_half_pixel")


def _runtime_refusal(mode, coord, runtime_scales, in_shape, out_shape, axes):
    """Why a runtime roi/scales case cannot be reproduced exactly, or None."""
    if mode == "nearest" and (not runtime_scales or coord not in EXACT_NEAREST_COORDS):
        return (
            f"nearest rounding of {coord} coordinates computed at run time: float32 and the "
            "float64 ONNX reference can round differently near a tie"
        )
    if runtime_scales and coord in ("align_corners", "tf_crop_and_resize"):
        return (
            f"{coord} with runtime scales: the ONNX reference divides by scale*size, onnxruntime "
            "by the integer output size; they differ unless scale*size is an integer"
        )
    if runtime_scales and coord == "pytorch_half_pixel":
        if any(out_shape[a] == 1 and in_shape[a] != 1 for a in axes):
            return "pytorch_half_pixel to size 1 with runtime scales: runtimes disagree"
    return None


class _RuntimeAxis:
    """Emits the float32 [n_out] coordinate of one ONNX axis from runtime scale/roi."""

    def __init__(self, ctx, spec, axis, scale, roi):
        self.ctx, self.spec, self.axis = ctx, spec, axis
        self.scale, self.roi = scale, roi  # [1] float32 tensors (runtime or constant)
        self.n_in, self.n_out = spec.in_shape[axis], spec.out_shape[axis]

    def const(self, value, hint="c"):
        return self.ctx.const_tensor(np.asarray(value, np.float32), hint)

    def op(self, opcode, a, b, hint="t"):
        return C.binary(self.ctx, opcode, a, b, hint)

    def coords(self):
        mode, n_in, n_out = self.spec.coord, self.n_in, self.n_out
        y = np.arange(n_out, dtype=np.float32)
        if mode == "asymmetric":
            return self.op("DIV", self.const(y, "y"), self.scale, "x")
        if mode == "tf_crop_and_resize":
            start, end = self.roi
            if n_out == 1:
                return self.op("MUL", self.op("ADD", start, end), self.const([0.5 * (n_in - 1)]))
            span = self.op("MUL", self.const(y, "y"), self.op("SUB", end, start, "span"))
            span = self.op(
                "DIV", self.op("MUL", span, self.const([n_in - 1])), self.const([n_out - 1])
            )
            return self.op("ADD", span, self.op("MUL", start, self.const([n_in - 1])), "x")
        x = self.op("SUB", self.op("DIV", self.const(y + 0.5, "y"), self.scale), self.const([0.5]))
        if mode == "half_pixel_symmetric":
            adjustment = self.op(
                "DIV", self.const([n_out]), self.op("MUL", self.scale, self.const([n_in]))
            )
            offset = self.op(
                "MUL", self.const([n_in / 2]), self.op("SUB", self.const([1.0]), adjustment)
            )
            x = self.op("ADD", offset, x, "x")
        return x  # half_pixel, pytorch_half_pixel (n_out > 1 checked)

    def nearest_taps(self):
        """[(int32 indices, None)]: the exactly rounded nearest index for x = p / s - c.

        Every nearest mode is floor(q - d) or ceil(q - d) of the quotient q = p / s with a
        boundary offset d. Rounding is monotone and the boundaries are representable, so the
        float32 candidate k is the true index or off by one towards the boundary b = k + d;
        the sign of the exact remainder p - b * s (Dekker's error-free product, no FMA
        needed) says which, reproducing exact rational -- and so the float64 reference's --
        rounding for every scale.
        """
        spec = self.spec
        c = 0.0 if spec.coord == "asymmetric" else 0.5
        d, use_ceil = {
            "floor": (c, False),
            "ceil": (c, True),
            "round_prefer_floor": (c + 0.5, True),
            "round_prefer_ceil": (c - 0.5, False),
        }[spec.nearest_mode]
        p = self.const(np.arange(self.n_out, dtype=np.float32) + np.float32(c), "p")
        u = self.op("SUB", self.op("DIV", p, self.scale, "q"), self.const([d]), "u")
        k = C.unary(self.ctx, "CEIL" if use_ceil else "FLOOR", u, "k")
        boundary = self.op("ADD", k, self.const([d]), "boundary")
        remainder = self._exact_remainder(p, boundary)
        beyond = self._compare("GREATER" if use_ceil else "LESS", remainder, self.const([0.0]))
        step = self.ctx.temp(np.float32, k.shape, "step")
        self.ctx.emit("CAST", [beyond], [step])
        k = self.op("ADD" if use_ceil else "SUB", k, step, "k")
        return [(self._index(k), None)]

    def _exact_remainder(self, p, b):
        """p - b * s with the exact sign: b * s == h + err exactly (Dekker's two-product over
        Veltkamp splits), then p - h is exact when close to zero and sign-safe otherwise."""
        s = self.scale
        h = self.op("MUL", b, s, "h")
        b_hi, b_lo = self._split(b)
        s_hi, s_lo = self._split(s)
        err = self.op("SUB", self.op("MUL", b_hi, s_hi), h)
        err = self.op("ADD", err, self.op("MUL", b_hi, s_lo))
        err = self.op("ADD", err, self.op("MUL", b_lo, s_hi))
        err = self.op("ADD", err, self.op("MUL", b_lo, s_lo), "err")
        return self.op("SUB", self.op("SUB", p, h), err, "remainder")

    def _split(self, a):
        """a == hi + lo with 12-bit halves, so products of halves are exact in float32."""
        scaled = self.op("MUL", a, self.const([4097.0]))
        hi = self.op("SUB", scaled, self.op("SUB", scaled, a), "hi")
        return hi, self.op("SUB", a, hi, "lo")

    def _compare(self, opcode, a, b):
        out = self.ctx.temp(np.bool_, np.broadcast_shapes(a.shape, b.shape), "cmp")
        self.ctx.emit(opcode, [a, b], [out])
        return out

    def _index(self, k):
        clamped = self.op(
            "MINIMUM", self.op("MAXIMUM", k, self.const([0.0])), self.const([self.n_in - 1])
        )
        idx = self.ctx.temp(np.int32, clamped.shape, "idx")
        self.ctx.emit("CAST", [clamped], [idx])
        return idx

    def taps(self, x):
        """[(int32 indices [n_out], float32 weights [n_out])] of the interpolation kernel."""
        spec = self.spec
        base = C.unary(self.ctx, "FLOOR", x, "base")
        frac = self.op("SUB", x, base, "frac")
        if spec.mode == "linear":
            offsets = (0, 1)
            weights = [self.op("SUB", self.const([1.0]), frac, "w"), frac]
        else:
            offsets = (-1, 0, 1, 2)
            one, two = self.const([1.0]), self.const([2.0])
            weights = [
                self._cubic_far(self.op("ADD", frac, one)),
                self._cubic_near(frac),
                self._cubic_near(self.op("SUB", one, frac)),
                self._cubic_far(self.op("SUB", two, frac)),
            ]
        raw = [self.op("ADD", base, self.const([k]), "raw") for k in offsets]
        clamped = [
            self.op(
                "MINIMUM", self.op("MAXIMUM", r, self.const([0.0])), self.const([self.n_in - 1])
            )
            for r in raw
        ]
        if spec.exclude_outside:
            weights = [
                self.op("MUL", w, self._equal(r, c))
                for w, r, c in zip(weights, raw, clamped, strict=True)
            ]
            total = weights[0]
            for w in weights[1:]:
                total = self.op("ADD", total, w, "total")
            weights = [self.op("DIV", w, total, "w") for w in weights]
        indices = []
        for c in clamped:
            idx = self.ctx.temp(np.int32, c.shape, "idx")
            self.ctx.emit("CAST", [c], [idx])
            indices.append(idx)
        return list(zip(indices, weights, strict=True))

    def _equal(self, a, b):
        same = self._compare("EQUAL", a, b)
        out = self.ctx.temp(np.float32, a.shape, "mask")
        self.ctx.emit("CAST", [same], [out])
        return out

    def _cubic_near(self, t):  # ((a + 2) t - (a + 3)) t^2 + 1 for 0 <= t <= 1
        a = self.spec.cubic_a
        p = self.op("SUB", self.op("MUL", t, self.const([a + 2])), self.const([a + 3]))
        return self.op("ADD", self.op("MUL", self.op("MUL", p, t), t), self.const([1.0]), "w")

    def _cubic_far(self, t):  # ((a t - 5a) t + 8a) t - 4a for 1 <= t <= 2
        a = self.spec.cubic_a
        p = self.op("SUB", self.op("MUL", t, self.const([a])), self.const([5 * a]))
        p = self.op("ADD", self.op("MUL", p, t), self.const([8 * a]))
        return self.op("SUB", self.op("MUL", p, t), self.const([4 * a]), "w")

    def inside(self, x):
        """float32 [n_out]: 1 where 0 <= x <= n_in - 1 (tf_crop_and_resize), else 0."""
        clamped = self.op(
            "MINIMUM", self.op("MAXIMUM", x, self.const([0.0])), self.const([self.n_in - 1])
        )
        return self._equal(x, clamped)


def _runtime_vector(ctx, i, rank, axes, halves=1):
    """element(a, half): the entry of input ``i`` (scales, or roi with 2 halves) for ONNX axis
    ``a`` as a [1] tensor; the vector covers either all axes or the ``axes`` attribute."""
    vec = ctx.input(i)
    per = ctx.shape(i)[0] // halves

    def element(a, half=0):
        j = (a if per == rank else list(axes).index(a)) + half * per
        out = ctx.temp(np.float32, (1,), "elem")
        idx = ctx.const_tensor(np.array([j], np.int32), "elem_idx")
        ctx.emit("GATHER", [vec, idx], [out], axis=0, batch_dims=0)
        return out

    return element


_COMMON = dict(
    dtypes=FLOAT,
    ranks=(1, 2, 3, 4, 5),
    tflite_ops=(
        "RESIZE_NEAREST_NEIGHBOR",
        "RESIZE_BILINEAR",
        "GATHER",
        "MUL",
        "ADD",
        "SUB",
        "DIV",
        "FLOOR",
        "MAXIMUM",
        "MINIMUM",
        "EQUAL",
        "LESS",
        "GREATER",
        "CEIL",
        "CAST",
        "RESHAPE",
    ),
)

lowering(
    "Resize",
    channel_last(),
    since=11,
    attrs=(
        attr_in("mode", MODES, "nearest"),
        attr_in("coordinate_transformation_mode", COORD_MODES, "half_pixel"),
        attr_in("nearest_mode", NEAREST_MODES, "round_prefer_floor"),
        attr_in("keep_aspect_ratio_policy", ("stretch", "not_larger", "not_smaller"), "stretch"),
    ),
    notes="builtin when it is exact, else constant GATHER taps; runtime scales/roi: in-graph "
    "coordinates (nearest only asymmetric/half_pixel/pytorch_half_pixel, exact rounding; no "
    "align_corners/tf_crop_and_resize with runtime scales); antialias refused",
    extra_check=_resize_check,
    **_COMMON,
)(lower_resize)

lowering(
    "Resize",
    channel_last(),
    since=10,
    until=10,
    attrs=(attr_in("mode", ("nearest", "linear"), "nearest"),),
    notes="asymmetric coordinates; nearest only for upsampling",
    extra_check=_legacy_check,
    **_COMMON,
)(lower_resize)

lowering(
    "Upsample",
    channel_last(),
    since=7,
    until=9,
    attrs=(attr_in("mode", ("nearest", "linear", "bilinear"), "nearest"),),
    notes="asymmetric coordinates; nearest only for upsampling",
    extra_check=_legacy_check,
    **_COMMON,
)(lower_resize)
