"""The model's own weight lattices for the integer file of an already-quantized model.

Why: a folded weight is ``(q - zp) * s`` in float32 (``qdq_strip``), and the integer quantizer
re-derived its scale as ``max|w| / 127``. That is ``s`` again only when a channel reaches
``q = +-127``; any other weight (onnxruntime's ``reduce_range`` 7-bit codes, other tools,
small or pruned channels, uint8 weights with a zero point) was re-rounded onto a coarser or
finer lattice, and the int32 bias with it: a small Q/DQ Conv whose codes stop at +-60 had
13-17 % of its outputs one step off the Q/DQ semantics, per tensor and per channel alike.

How: :class:`ModelWeightScales` is handed to ``integer.quantize_integer`` (``weight_scales``).
For each weight the quantizer is about to store, it looks for a recorded lattice on which the
TFLite tensor's values are whole codes (checked on the values themselves, so the layout the
lowering gave the weight - OIHW -> OHWI, the depthwise [1, H, W, C*M], a transposed Gemm or
MatMul operand - does not matter, and a weight the lowering changed, e.g. a BatchNormalization
folded into it, matches nothing and keeps the quantizer's own scales). A lowering that repeats
the output channels (a ConvTranspose with kernel = stride as a CONV_2D to s * s * C_out
channels and DEPTH_TO_SPACE) gets the model's per-channel scales laid out the same way (before:
unmatched, re-rounded to max|w| / 127 per tap, and U-Net's four upsampling convolutions lost
1-2 dB against the Q/DQ semantics). The quantizer then stores exactly those codes with the
model's scale, and the bias on ``input scale * s``.

What LiteRT cannot hold: its int8 weights are symmetric, zero point 0, codes in [-127, 127]
(``../shared/litert/QUANT_SPEC.md``; ARM kernels pair int8 products in int16, which -128 * -128
twice overflows). A uint8 weight with zero point ``z`` is re-encoded as the symmetric codes
``q - z`` on the same scale, exact whenever they fit in [-127, 127]; when a code does not fit
(``q - z`` beyond +-127, or an int8 code -128), the weight keeps the re-derived ``max|w| / 127``
and :attr:`ModelWeightScales.misses` names the node and why (the import's notes list them).
"""

from __future__ import annotations

import numpy as np

# |w / s - q| for a value computed as float32(q * s): |q| * 2^-24 < 1e-5 for |q| <= 255
WHOLE_CODE_TOLERANCE = 1e-3
SAMPLE = 256  # values tried first, before a candidate lattice is checked on the whole weight


class ModelWeightScales:
    """``(data, axis, qmax, node) -> scales or None``: the model's scale(s) on which ``data``
    holds whole codes within [-qmax, qmax] (one scale: per tensor; ``data.shape[axis]``
    scales: per channel along ``axis``; ``axis`` None: per tensor only)."""

    def __init__(self, weights: dict[str, dict]):
        self.lattices: list[tuple[int, np.ndarray]] = []  # (element count, float32 scales)
        for record in weights.values():
            scale = record.get("scale")
            if scale is not None and np.all(np.isfinite(scale)) and np.all(scale > 0):
                self.lattices.append((int(record.get("size", -1)), scale))
        self.misses: dict[str, str] = {}  # ONNX node -> why the model's codes were not kept
        self.kept: dict[str, str] = {}  # ONNX node -> "per-tensor" / "per-channel"

    def __bool__(self) -> bool:
        return bool(self.lattices)

    def __call__(self, data: np.ndarray, axis: int | None, qmax: float, node: str | None = None):
        w = np.asarray(data, np.float64)
        if w.size == 0 or not np.all(np.isfinite(w)):
            return None
        same_size = [s for n, s in self.lattices if n == w.size]
        others = [s for n, s in self.lattices if n != w.size]
        for scale, codes in self._matches(w, [*same_size, *others], axis):
            peak = float(np.abs(codes).max(initial=0.0))
            if peak > qmax:
                return self._partly(w, codes, scale, axis, qmax, node)
            self.kept[node or "?"] = "per-tensor" if scale.size == 1 else "per-channel"
            return scale
        self._per_channel_elsewhere(w, same_size, axis, node)
        return None

    def _matches(self, w: np.ndarray, lattices, axis: int | None):
        """``(scale, codes)`` for each lattice on which ``w`` holds whole codes, the lattice
        laid out for the kernel's channels: as recorded, or - when the lowering repeated the
        output channels (a ConvTranspose whose kernel equals its stride is a CONV_2D to
        s * s * C_out channels then DEPTH_TO_SPACE: channel ``(a * s + b) * C_out + o``) -
        tiled or repeated to the kernel's channel count. Each layout is checked on the values
        themselves, so a wrong one matches nothing."""
        for scale in lattices:
            for laid in _channel_layouts(scale, w, axis):
                codes = self._codes(w, laid, axis)
                if codes is not None:
                    yield laid, codes

    def _partly(self, w, codes, scale, axis, qmax, node) -> np.ndarray | None:
        """Codes beyond [-qmax, qmax] on the model's scale: per channel (an op that takes
        per-channel weights), the channels whose codes fit keep them exactly and only the
        others get ``max|w_c| / qmax``; per tensor, the whole weight is re-derived (None)."""
        peak = float(np.abs(codes).max(initial=0.0))
        what = (
            f"the model's weight codes reach {peak:.0f} on its own scale (a uint8 zero point "
            f"or an int8 -128), beyond LiteRT's symmetric [-{qmax:.0f}, {qmax:.0f}]"
        )
        if axis is None:
            self.misses[node or "?"] = f"{what}: re-rounded to max|w| / {qmax:.0f}"
            return None
        peaks = _channel_max(np.abs(codes), axis)
        fits = peaks <= qmax
        own = np.broadcast_to(scale.astype(np.float64), fits.shape)
        derived = _channel_max(np.abs(w), axis) / qmax
        self.misses[node or "?"] = (
            f"{what}: {int(np.sum(~fits))} of {fits.size} output channels re-rounded to "
            f"max|w_c| / {qmax:.0f}, the others keep the model's codes"
        )
        return np.where(fits, own, derived).astype(np.float32)

    def _per_channel_elsewhere(self, w: np.ndarray, lattices, kernel_axis, node) -> None:
        """A per-channel lattice the kernel cannot read: on a weight whose kernel reads one
        scale (BATCH_MATMUL's constant operand, ``kernel_axis`` None), or along another axis
        than the kernel's output channels (a MatMul weight [K, N] with scales over K): the
        codes cannot be kept; say so."""
        for scale in lattices:
            for axis in range(w.ndim):
                if axis == kernel_axis or scale.size < 2:
                    continue
                if self._codes(w, scale, axis) is None:
                    continue
                if kernel_axis is None:
                    why = "an op whose LiteRT kernel reads one scale (BATCH_MATMUL)"
                else:
                    why = "an axis other than the output channels LiteRT's kernel scales"
                self.misses[node or "?"] = (
                    f"per-channel weight scales on {why}: re-rounded to max|w| / 127 "
                    + ("per tensor" if kernel_axis is None else "per output channel")
                )
                return

    @staticmethod
    def _codes(w: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray | None:
        """``w / scale`` when every value is a whole code on it, else None."""
        if scale.size == 1:
            s = np.float64(scale[0])
            head = w.reshape(-1)[:SAMPLE] / s
            if np.abs(head - np.rint(head)).max() > WHOLE_CODE_TOLERANCE:
                return None
            codes = w / s
        else:
            if axis is None or w.ndim == 0 or w.shape[axis] != scale.size:
                return None
            rows = np.moveaxis(w, axis, 0).reshape(scale.size, -1)[
                :, : max(1, SAMPLE // scale.size)
            ]
            head = rows / scale.astype(np.float64)[:, None]  # a few values of every channel first
            if np.abs(head - np.rint(head)).max() > WHOLE_CODE_TOLERANCE:
                return None
            shape = [1] * w.ndim
            shape[axis] = -1
            codes = w / scale.astype(np.float64).reshape(shape)
        rounded = np.rint(codes)
        if np.abs(codes - rounded).max() > WHOLE_CODE_TOLERANCE:
            return None
        return rounded


def _channel_layouts(scale: np.ndarray, w: np.ndarray, axis: int | None):
    """The recorded scales, then (per-channel scales whose count divides the kernel's
    channel count ``r > 1`` times) the same scales tiled ``r`` times (channel ``k`` reads
    scale ``k mod C``) and repeated ``r`` times (channel ``k`` reads scale ``k div r``)."""
    yield scale
    if scale.size < 2 or axis is None or w.ndim == 0:
        return
    channels = w.shape[axis]
    if channels > scale.size and channels % scale.size == 0:
        reps = channels // scale.size
        yield np.tile(scale, reps)
        yield np.repeat(scale, reps)


def _channel_max(values: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    return moved.max(axis=1, initial=0.0)
