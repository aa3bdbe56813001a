"""Resize / Upsample in channel-last layout.

ONNX resizing is separable: along each resized axis every output element is a fixed weighted
sum of a few input elements (the *taps*). The taps are computed here in numpy from the
ONNX definition (coordinate transformation, nearest rounding, linear or cubic kernel,
exclude_outside, extrapolation). When TFLite's RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR
computes the very same interpolation (checked by comparing its index/weight formula with the
ONNX taps) the builtin is used; otherwise each axis becomes GATHERs with constant indices and
MULs/ADDs with constant weights -- exact by construction. Runtime ``scales``/``roi`` compute the
coordinates in-graph instead. Antialiasing is refused.

Split by job: the ONNX definition in numpy (``resize_reference.py``), what the builtins compute
(``resize_builtins.py``), coordinates at run time (``resize_runtime.py``); this module checks
the node, chooses among them and emits.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import channel_last
from ..registry import FLOAT, attr_in, lowering
from .conv_lattice import integer_resize_operand, rescale_integer_sums
from .dynamic_sizes import axes_vary
from .emit import Emitter
from .resize_builtins import builtin_flags
from .resize_reference import (
    COORD_MODES,
    MODES,
    NEAREST_MODES,
    ambiguous_tie,
    interpolation_matrix,
    source_coords,
)
from .resize_runtime import RuntimeAxis, apply_runtime_taps, runtime_refusal, runtime_vector
from .resize_strided import try_strided_downscale

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
        # Do the taps follow a constant scale (not out / in of this size's sizes)?
        self.scale_given = not (_present(ctx, 3) and not legacy)
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
            self.scale_given = scales is not None
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
        if self.mode == "nearest" and ambiguous_tie(
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
            ambiguous_tie(coord, in_shape[a], out_shape[a], c, (0.0, 1.0), kernel[1])
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
    why = runtime_refusal(mode, coord, runtime_scales, x, y, _node_axes(node, len(x)))
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
    e = Emitter(ctx)
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
    if axes_vary(ctx, axes) and try_strided_downscale(ctx, spec, axes, lay):
        return  # a builtin's taps follow in / out, ONNX's the scale: equal at some sizes only
    plans = {a: spec.axis_plan(a) for a in axes}
    stored = [lay.stored_axis(a) for a in axes]
    rank = len(spec.in_shape)
    if rank == 4 and sorted(stored) == [1, 2] and all(p[1].all() for p in plans.values()):
        lattice = None
        if spec.mode == "linear":  # on a Q/DQ lattice: resize the integers (conv_lattice.py)
            lattice = integer_resize_operand(ctx, [p[0] for p in plans.values()])
        if lattice is not None:
            acc = ctx.temp(np.float32, ctx.output(0).shape, "integer_resized")
            if _try_builtin(ctx, spec, lattice[0], plans, lay, out=acc):
                rescale_integer_sums(ctx, acc, lattice[1])
                return
        if _try_replicate(ctx, spec, x, plans, lay) or _try_builtin(ctx, spec, x, plans, lay):
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
        e.op("ADD", x, outside, out=final, hint="t")


def _lower_runtime(ctx, spec, scales_index, runtime_roi):
    """Resize along every axis the runtime scales/roi cover, coordinates computed in-graph."""
    rank = len(spec.in_shape)
    axes = [int(a) % rank for a in ctx.attr("axes", range(rank))]
    why = runtime_refusal(
        spec.mode, spec.coord, scales_index is not None, spec.in_shape, spec.out_shape, axes
    )
    if why:
        ctx.refuse(errors.REQUIRES_CONSTANT_INPUT, why)
    scale_of = runtime_vector(ctx, scales_index, rank, axes) if scales_index is not None else None
    roi_of = runtime_vector(ctx, 1, rank, axes, halves=2) if runtime_roi else None
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
        axis = RuntimeAxis(ctx, spec, a, scale, roi)
        if spec.mode == "nearest":
            x = apply_runtime_taps(ctx, spec, x, stored, axis.nearest_taps(), None, out)
            continue
        coords = axis.coords()
        mask = axis.inside(coords) if spec.coord == "tf_crop_and_resize" else None
        x = apply_runtime_taps(ctx, spec, x, stored, axis.taps(coords), mask, out)


# Nearest upsampling by a power of two up to this factor becomes pixel replication.
MAX_REPLICATE_FACTOR = 16


def _try_replicate(ctx, spec, x, plans, lay) -> bool:
    """Nearest upsampling of H and W by one factor s = 2^k that repeats every pixel s x s times
    (out[i] = in[i // s]: asymmetric/floor, or half_pixel/round_prefer_floor) is k steps of
    CONCATENATION of 4 copies along the channels and DEPTH_TO_SPACE(2) (i // 2 // 2 = i // 4):
    exact copies, and both run in XNNPACK, which has no RESIZE_NEAREST_NEIGHBOR (each one cut
    the graph into another delegate partition)."""
    e = Emitter(ctx)
    if spec.mode != "nearest" or x.dtype != np.float32 or x.shape_signature is not None:
        return False
    h, w = lay.perm[1], lay.perm[2]
    if set(plans) != {h, w} or spec.out_shape[h] % spec.in_shape[h]:
        return False
    s = spec.out_shape[h] // spec.in_shape[h]
    if s not in (2, 4, 8, 16) or s > MAX_REPLICATE_FACTOR:
        return False
    if spec.out_shape[w] != s * spec.in_shape[w]:
        return False
    for a in (h, w):
        expected = np.zeros((spec.out_shape[a], spec.in_shape[a]))
        expected[np.arange(spec.out_shape[a]), np.arange(spec.out_shape[a]) // s] = 1.0
        if not np.array_equal(plans[a][0], expected):
            return False
    n, ih, iw, c = x.shape
    while s > 1:
        s //= 2
        copies = e.op(
            "CONCATENATION",
            *[x] * 4,
            shape=(n, ih, iw, 4 * c),
            dtype=x.dtype,
            hint="replicated",
            axis=3,
            fused_activation_function="NONE",
        )
        ih, iw = 2 * ih, 2 * iw
        x = ctx.output(0) if s == 1 else ctx.temp(x.dtype, (n, ih, iw, c), "upsampled")
        e.op("DEPTH_TO_SPACE", copies, out=x, block_size=2)
    return True


def _try_builtin(ctx, spec, x, plans, lay, out=None) -> bool:
    e = Emitter(ctx)
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
    out = ctx.output(0) if out is None else out
    e.op(opcode, x, size, out=out, align_corners=flags[0], half_pixel_centers=flags[1])
    return True


def _resize_axis(ctx, x, axis, m, out=None):
    """Apply the [out, in] matrix ``m`` along stored ``axis`` as GATHER taps."""
    e = Emitter(ctx)
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
        e.gather(x, ctx.const_tensor(idx.astype(np.int32), "indices"), axis, out=gathered)
        term = gathered
        if not unit:
            weights = ctx.const_tensor(w.astype(np.float32).reshape(bshape), "weights")
            term = e.op(
                "MUL", gathered, weights, hint=f"tap{k}", out=out if last and acc is None else None
            )
        if acc is None:
            acc = term
        else:
            acc = e.op("ADD", acc, term, hint=f"sum{k}", out=out if last else None)
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
    tflite_ops=(
        "RESIZE_NEAREST_NEIGHBOR",
        "RESIZE_BILINEAR",
        "CONCATENATION",
        "DEPTH_TO_SPACE",
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
        "STRIDED_SLICE",
        "AVERAGE_POOL_2D",
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
