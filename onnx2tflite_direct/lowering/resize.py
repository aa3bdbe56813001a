"""Resize / Upsample in channel-last layout.

ONNX resizing is separable: along each resized axis every output element is a fixed weighted
sum of a few input elements (the *taps*). The taps are computed here in numpy from the
ONNX definition (coordinate transformation, nearest rounding, linear or cubic kernel,
exclude_outside, extrapolation). When TFLite's RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR
computes the very same interpolation (checked by comparing its index/weight formula with the
ONNX taps) the builtin is used; otherwise each axis becomes GATHERs with constant indices and
MULs/ADDs with constant weights -- exact by construction. Antialiasing is refused.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .. import errors
from ..policies import channel_last
from ..registry import FLOAT, attr_in, lowering
from .common import emit_binary

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
            if policy != "stretch":
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


def _resize_check(node, graph):
    """Runtime roi/scales/sizes are accepted when their value cannot change the result."""
    if int(node.attrs.get("antialias", 0)):
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: antialias=1 has no exact TFLite form"
    coord = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    need = errors.REQUIRES_CONSTANT_INPUT
    if coord == "tf_crop_and_resize" and _runtime(node, graph, 1):
        return f"{need}: roi must be constant for tf_crop_and_resize"
    if _runtime(node, graph, 2):
        return f"{need}: scales must be constant (the coordinates depend on the exact scale)"
    if (
        _runtime(node, graph, 3)
        and node.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch"
    ):
        x, y = graph.values[node.inputs[0]].shape, graph.values[node.outputs[0]].shape
        rank = len(x)
        axes = [int(a) % rank for a in node.attrs.get("axes", range(rank))]
        if len({y[a] / x[a] for a in axes}) > 1:
            return f"{need}: sizes must be constant with keep_aspect_ratio_policy"
    return None


def _legacy_check(node, graph):
    if node.op_type == "Upsample" and node.opset < 9:
        pass
    elif _runtime(node, graph, 1):
        return f"{errors.REQUIRES_CONSTANT_INPUT}: scales must be constant (coordinates use it)"
    if node.attrs.get("mode", "nearest") == "nearest":
        shape_in = graph.values[node.inputs[0]].shape
        shape_out = graph.values[node.outputs[0]].shape
        if any(o < i for i, o in zip(shape_in, shape_out, strict=False)):
            return (
                f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: nearest downsampling before opset 11 "
                "has runtime-specific rounding"
            )
    return None


def lower_resize(ctx):
    spec = _Spec(ctx)
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
        emit_binary(ctx, "ADD", x, outside, out=final)


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
            term = emit_binary(
                ctx, "MUL", gathered, weights, f"tap{k}", out=out if last and acc is None else None
            )
        if acc is None:
            acc = term
        else:
            acc = emit_binary(ctx, "ADD", acc, term, f"sum{k}", out=out if last else None)
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


_COMMON = dict(
    dtypes=FLOAT,
    ranks=(1, 2, 3, 4, 5),
    tflite_ops=("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "GATHER", "MUL", "ADD"),
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
    notes="roi/scales/sizes constant; builtin when it is exact, else constant GATHER taps; "
    "antialias refused",
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
