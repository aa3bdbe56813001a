"""Resize with runtime ``scales`` / ``roi``: coordinates computed in the graph.

When ``scales`` (or the tf_crop_and_resize ``roi``) is a runtime tensor, the source coordinate
of every output index is computed in the graph with the ONNX formula in float32 (onnxruntime's
order of operations), then split into integer taps (FLOOR, clamp, CAST) that feed GATHERs along
the axis and weights that feed MUL/ADD. Linear and cubic weights are continuous in the
coordinate, so float32 rounding of the coordinate moves the result by rounding error only.
Nearest rounding is discontinuous: a float32 coordinate can land on a rounding boundary that
the float64 ONNX reference misses, so nearest modes keep requiring constant inputs
(:func:`runtime_refusal`).
"""

from __future__ import annotations

import numpy as np

from .emit import Emitter

EXACT_NEAREST_COORDS = ("asymmetric", "half_pixel", "pytorch_half_pixel")


def runtime_refusal(mode, coord, runtime_scales, in_shape, out_shape, axes):
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


class RuntimeAxis:
    """Emits the float32 [n_out] coordinate of one ONNX axis from runtime scale/roi."""

    def __init__(self, ctx, spec, axis, scale, roi):
        self.ctx, self.spec, self.axis = ctx, spec, axis
        self.e = Emitter(ctx)
        self.scale, self.roi = scale, roi  # [1] float32 tensors (runtime or constant)
        self.n_in, self.n_out = spec.in_shape[axis], spec.out_shape[axis]

    def const(self, value, hint="c"):
        return self.ctx.const_tensor(np.asarray(value, np.float32), hint)

    def op(self, opcode, a, b, hint="t"):
        return self.e.op(opcode, a, b, hint=hint)

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
        k = self.e.op("CEIL" if use_ceil else "FLOOR", u, hint="k")
        boundary = self.op("ADD", k, self.const([d]), "boundary")
        remainder = self._exact_remainder(p, boundary)
        beyond = self._compare("GREATER" if use_ceil else "LESS", remainder, self.const([0.0]))
        step = self.e.op("CAST", beyond, dtype=np.float32, hint="step")
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
        return self.e.op(
            opcode, a, b, shape=np.broadcast_shapes(a.shape, b.shape), dtype=np.bool_, hint="cmp"
        )

    def _index(self, k):
        clamped = self.op(
            "MINIMUM", self.op("MAXIMUM", k, self.const([0.0])), self.const([self.n_in - 1])
        )
        return self.e.op("CAST", clamped, dtype=np.int32, hint="idx")

    def taps(self, x):
        """[(int32 indices [n_out], float32 weights [n_out])] of the interpolation kernel."""
        spec = self.spec
        base = self.e.op("FLOOR", x, hint="base")
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
            idx = self.e.op("CAST", c, dtype=np.int32, hint="idx")
            indices.append(idx)
        return list(zip(indices, weights, strict=True))

    def _equal(self, a, b):
        same = self._compare("EQUAL", a, b)
        return self.e.op("CAST", same, dtype=np.float32, hint="mask")

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


def runtime_vector(ctx, i, rank, axes, halves=1):
    """element(a, half): the entry of input ``i`` (scales, or roi with 2 halves) for ONNX axis
    ``a`` as a [1] tensor; the vector covers either all axes or the ``axes`` attribute."""
    e = Emitter(ctx)
    vec = ctx.input(i)
    per = ctx.shape(i)[0] // halves

    def element(a, half=0):
        j = (a if per == rank else list(axes).index(a)) + half * per
        out = ctx.temp(np.float32, (1,), "elem")
        idx = ctx.const_tensor(np.array([j], np.int32), "elem_idx")
        e.gather(vec, idx, 0, out=out)
        return out

    return element


def apply_runtime_taps(ctx, spec, x, stored, taps, mask, out):
    """sum_k GATHER(x, idx_k) * w_k along ``stored``; tf_crop_and_resize extrapolates where
    ``mask`` is 0 (axis by axis, as the ONNX reference does)."""
    e = Emitter(ctx)
    shape = list(x.shape)
    n_out = taps[0][0].shape[0]
    shape[stored] = n_out
    bshape = [1] * len(shape)
    bshape[stored] = n_out
    if mask is not None:
        fill = e.op("SUB", ctx.const_tensor(np.float32([1.0]), "one"), mask, hint="fill")
        fill = e.op(
            "MUL", fill, ctx.const_tensor(np.float32([spec.extrapolation]), "ev"), hint="fill"
        )
        taps = [(i, e.op("MUL", w, mask, hint="w")) for i, w in taps]
        taps.append((None, fill))
    if len(taps) == 1 and taps[0][1] is None:  # nearest: a single unweighted GATHER
        gathered = out if out is not None else ctx.temp(x.dtype, shape, "gather")
        e.gather(x, taps[0][0], stored, out=gathered)
        return gathered
    acc = None
    for k, (idx, w) in enumerate(taps):
        last = k == len(taps) - 1
        w_b = ctx.reshape(w, bshape, "w_b")
        if idx is None:
            term = w_b
        else:
            gathered = e.gather(x, idx, stored, hint=f"gather{k}")
            term = e.op("MUL", gathered, w_b, hint=f"tap{k}")
        if acc is None:
            acc = term
        else:
            acc = e.op("ADD", acc, term, hint=f"sum{k}", out=out if last else None)
    return acc
