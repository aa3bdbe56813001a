"""Activation ranges for integer quantization, measured by running the ONNX model in onnxruntime.

Why onnxruntime and not LiteRT: the float reference is the ONNX model, every intermediate of it
can be exposed as a graph output, and the ranges are keyed by ONNX tensor names, which
:func:`tflite_ranges` maps onto the TFLite tensors through the converter's ``tensor_map``.

One pass, streaming: a copy of the model exposes every float node output; for each model-sized
batch of calibration samples the session runs once and every float tensor (graph inputs
included) updates its :class:`TensorHistogram`. A histogram keeps a fixed number of equal bins
plus the exact min/max, so its state never grows with the number of samples. The bin range is
unknown before the first batch, so it *expands*: when a batch falls outside, the bin width is
multiplied by a power of two and the grid is shifted by a whole number of old bins, which makes
every old bin nest inside exactly one new bin (re-binning is exact, no interpolation). After
any expansion at least a quarter of the bins still span observed data.

Methods (``CalibrationConfig.method``):

* ``minmax``: the exact observed min/max (the histogram is not used).
* ``percentile``: the two-sided ``percentile`` (e.g. 99.99 keeps 99.99 % of the values below the
  upper and above the lower bound), read from the histogram and interpolated inside a bin.
* ``mse``: the clipping range minimizing the expected squared quantization error for the
  target bit width ``bits``: inside the range each non-zero value costs ``scale**2 / 12``
  (uniform rounding error; exact zeros are representable and cost nothing), outside it costs its
  squared distance to the clip bound. 8 bits models int8 activations (asymmetric, any zero
  point, both bounds searched on a grid); 16 bits models int16 activations (symmetric, zero point
  0, one bound ``m`` searched, range ``(-m, m)`` clipped back to what was observed).

int8 + int16 with ``mse``: collect once with :func:`collect_statistics`, then call
:func:`ranges_for_bits` for 8 and for 16 bits; onnxruntime runs only once.

Each histogram also sums its tensor per ONNX channel (axis 1) and, for rank >= 3, per index of
the last axis: :func:`tflite_channel_means`
gives the calibrated means per channel that bias correction of rounded weights needs.

Returned ranges are what was observed/selected; they may exclude 0 (e.g. after a sigmoid). The
integer quantizer must widen them to include 0 before computing scale and zero point, as every
TFLite quantization scheme represents 0 exactly.

Calibration data follows the ``--test-data`` convention of :mod:`onnx2tflite_direct.validate`
(samples stacked on axis 0 in ONNX layout, fed in chunks of the model's own batch size).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .. import contrib_schemas, errors
from .. import validate as V
from ..layout import Inner
from ..validation_inputs import _conform_dtype

log = logging.getLogger(__name__)

METHODS = ("minmax", "percentile", "mse")
BIT_WIDTHS = (8, 16)

# Element types whose tensors get ranges. bfloat16 is left out: onnxruntime's Python binding
# cannot hand it back as a numpy array.
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)

# Candidate clip bounds per side for the mse search (a strided subset of the bin edges).
_MSE_CANDIDATES = 256


@dataclass
class CalibrationConfig:
    method: str = "minmax"  # "minmax" | "percentile" | "mse"
    percentile: float = 99.99
    num_bins: int = 2048
    bits: int = 8  # target bit width for "mse" (8 or 16)
    progress: bool | None = None  # None = only when stderr is a TTY

    def check(self) -> None:
        """Raise ``BadInputError(INVALID_OPTION)`` for values no method can use."""
        problems = []
        if self.method not in METHODS:
            problems.append(f"method {self.method!r} (choose from {', '.join(METHODS)})")
        if not 50.0 < float(self.percentile) <= 100.0:
            problems.append(f"percentile {self.percentile} (must be in (50, 100])")
        if int(self.num_bins) < 16:
            problems.append(f"num_bins {self.num_bins} (must be >= 16)")
        if self.bits not in BIT_WIDTHS:
            problems.append(f"bits {self.bits} (must be 8 or 16)")
        if problems:
            raise errors.BadInputError(
                errors.INVALID_OPTION, "calibration: invalid " + "; ".join(problems)
            )


# --------------------------------------------------------------------------------------------
# Streaming statistics of one tensor
# --------------------------------------------------------------------------------------------


class AxisMoments:
    """Streaming sum and sum of squares per index of one axis of a float tensor of rank >= 2;
    a tensor whose size along the axis changes between updates, or that holds non-finite
    values, keeps none."""

    __slots__ = ("axis", "sum", "sumsq", "count")

    def __init__(self, axis: int) -> None:
        self.axis = axis
        self.sum: np.ndarray | None = None
        self.sumsq: np.ndarray | None = None
        self.count = 0  # -1: given up

    def update(self, values: np.ndarray) -> None:
        if values.ndim < 2 or values.dtype.kind != "f" or values.size == 0:
            self.sum, self.count = None, -1
            return
        if self.count < 0:
            return
        axis = self.axis % values.ndim
        axes = tuple(i for i in range(values.ndim) if i != axis)
        sums = values.sum(axis=axes, dtype=np.float64)
        squares = np.square(values, dtype=np.float64).sum(axis=axes)
        if not np.all(np.isfinite(squares)) or (
            self.sum is not None and self.sum.shape != sums.shape
        ):
            self.sum, self.count = None, -1
            return
        if self.sum is None:
            self.sum, self.sumsq = sums, squares
        else:
            self.sum, self.sumsq = self.sum + sums, self.sumsq + squares
        self.count += values.size // values.shape[axis]

    def means(self) -> np.ndarray | None:
        """Mean per index of everything seen, shrunk towards 0 by its own sampling noise:
        ``m * max(0, 1 - se^2 / m^2)`` with ``se^2 = var / count`` (a James-Stein-style
        estimate). Why: the features of a [N, C] matrix over a few samples have noisy means,
        and correcting weights with noise costs accuracy (measured); means of many values, or
        large against their spread, are kept as they are. None when no means were kept."""
        if self.sum is None or self.count < 2:
            return None
        n = self.count
        mean = self.sum / n
        var = np.maximum(self.sumsq / n - mean**2, 0.0) * n / (n - 1)
        noise = var / n
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = np.where(mean != 0, np.maximum(0.0, 1.0 - noise / mean**2), 0.0)
        return mean * keep


class TensorHistogram:
    """Exact min/max, count of exact zeros and an expanding equal-width histogram.

    State is ``num_bins`` floats plus a few scalars whatever the number of updates. Bin ``i``
    covers ``[lo + i*width, lo + (i+1)*width)``; ``width == 0`` means every value seen so far
    equals ``min`` (they are all counted in bin 0 until a different value arrives).
    Non-finite values are ignored (NaN, and the +-inf of masks).
    """

    __slots__ = (
        "counts",
        "lo",
        "width",
        "min",
        "max",
        "total",
        "zeros",
        "channel",
        "features",
    )

    def __init__(self, num_bins: int = 2048) -> None:
        self.counts = np.zeros(int(num_bins), dtype=np.float64)
        self.lo = 0.0
        self.width = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.total = 0
        self.zeros = 0
        # Moments per ONNX channel (axis 1) and per feature (last axis, rank >= 3: a
        # transformer's [batch, sequence, hidden]), for the weights' bias correction.
        self.channel = AxisMoments(1)
        self.features = AxisMoments(-1)

    @property
    def num_bins(self) -> int:
        return self.counts.size

    @property
    def hi(self) -> float:
        return self.lo + self.num_bins * self.width

    def edges(self) -> np.ndarray:
        return self.lo + self.width * np.arange(self.num_bins + 1, dtype=np.float64)

    def update(self, values: np.ndarray) -> None:
        self._update_channels(np.asarray(values))
        x = np.asarray(values).ravel()
        if x.size == 0:
            return
        if x.dtype != np.float64 and x.dtype != np.float32:
            x = x.astype(np.float32)
        mn, mx = float(x.min()), float(x.max())
        if not (math.isfinite(mn) and math.isfinite(mx)):
            x = x[np.isfinite(x)]
            if x.size == 0:
                return
            mn, mx = float(x.min()), float(x.max())
        self._cover(mn, mx)
        self.min, self.max = min(self.min, mn), max(self.max, mx)
        self.total += x.size
        self.zeros += int(np.count_nonzero(x == 0))
        if self.width == 0.0:
            self.counts[0] += x.size
            return
        idx = ((x - self.lo) * (1.0 / self.width)).astype(np.int64)
        np.clip(idx, 0, self.num_bins - 1, out=idx)
        self.counts += np.bincount(idx, minlength=self.num_bins)

    def _update_channels(self, values: np.ndarray) -> None:
        self.channel.update(values)
        if values.ndim >= 3:
            self.features.update(values)

    def channel_means(self) -> np.ndarray | None:
        """Shrunk mean per ONNX channel (axis 1), see :meth:`AxisMoments.means`."""
        return self.channel.means()

    def feature_means(self) -> np.ndarray | None:
        """Shrunk mean per feature (last axis) of a tensor of rank >= 3, else None."""
        return self.features.means()

    def _cover(self, mn: float, mx: float) -> None:
        """Make the bins span ``[mn, mx]`` too, re-binning what was counted exactly."""
        n = self.num_bins
        if self.total == 0:
            self.lo, self.width = mn, (mx - mn) / n
            return
        if self.width == 0.0:
            # Every value so far equals self.min: start a real grid and put them in their bin.
            lo, hi = min(self.min, mn), max(self.max, mx)
            if hi == lo:
                return
            self.lo, self.width = lo, (hi - lo) / n
            self.counts[:] = 0.0
            self.counts[self._bin(self.min)] = self.total
            return
        if mn >= self.lo and mx <= self.hi:
            return
        # The new grid covers the data seen ([min, max]), not the old grid: repeated
        # expansions would otherwise compound the empty margins. It starts on an old bin edge
        # at or below the data minimum and merges 2**k old bins per new bin, so old counts
        # move over exactly (old bins outside [min, max] are empty).
        lo_data, hi_data = min(mn, self.min), max(mx, self.max)
        first = math.floor((lo_data - self.lo) / self.width)
        lo = self.lo + first * self.width
        k = max(0, math.ceil(math.log2(max(hi_data - lo, self.width) / (n * self.width))))
        while lo + n * self.width * 2.0**k < hi_data:
            k += 1
        old = np.arange(n, dtype=np.int64) - first
        target = np.clip(old, 0, None) >> k  # negative: empty bins below the data
        self.counts = np.bincount(np.minimum(target, n - 1), weights=self.counts, minlength=n)
        self.lo, self.width = lo, self.width * 2.0**k

    def _bin(self, value: float) -> int:
        return int(min(max((value - self.lo) / self.width, 0), self.num_bins - 1))

    # ---- range selection -------------------------------------------------------------------

    def minmax(self) -> tuple[float, float]:
        return (self.min, self.max)

    def percentile(self, pct: float) -> tuple[float, float]:
        """Two-sided: the ``100 - pct`` and ``pct`` percentiles, within the observed range."""
        if self.width == 0.0:
            return self.minmax()
        cdf = np.concatenate([[0.0], np.cumsum(self.counts)])
        edges = self.edges()
        lo = float(np.interp((1.0 - pct / 100.0) * self.total, cdf, edges))
        hi = float(np.interp(pct / 100.0 * self.total, cdf, edges))
        return (min(max(lo, self.min), self.max), max(min(hi, self.max), self.min))

    def mse(self, bits: int) -> tuple[float, float]:
        """The clip range with the least expected quantization error at ``bits`` (8 or 16)."""
        if self.width == 0.0:
            return self.minmax()
        model = _ClipErrorModel(self)
        if bits == 16:
            return model.best_symmetric(bits)
        return model.best_asymmetric(bits)


class _ClipErrorModel:
    """Expected squared error of quantizing the histogrammed values into a clip range.

    Values are represented by their bin centres; prefix sums of count, count*c and count*c^2
    give the clipping error of any bound in O(1), so whole grids of candidates are vectorized.
    """

    def __init__(self, hist: TensorHistogram) -> None:
        self.hist = hist
        edges = hist.edges()
        self.centers = 0.5 * (edges[:-1] + edges[1:])
        counts = hist.counts
        self.c0 = np.concatenate([[0.0], np.cumsum(counts)])
        self.c1 = np.concatenate([[0.0], np.cumsum(counts * self.centers)])
        self.c2 = np.concatenate([[0.0], np.cumsum(counts * self.centers**2)])

    def _below(self, bound: np.ndarray) -> np.ndarray:
        """Sum of (c - bound)^2 over bin centres below ``bound``, and their count."""
        k = np.searchsorted(self.centers, bound, side="left")
        n, s1, s2 = self.c0[k], self.c1[k], self.c2[k]
        return s2 - 2 * bound * s1 + bound**2 * n, n

    def _above(self, bound: np.ndarray) -> np.ndarray:
        k = np.searchsorted(self.centers, bound, side="right")
        n, s1, s2 = self.c0[-1] - self.c0[k], self.c1[-1] - self.c1[k], self.c2[-1] - self.c2[k]
        return s2 - 2 * bound * s1 + bound**2 * n, n

    def _candidates(self, limit: float) -> np.ndarray:
        """Bounds between 0 and ``limit`` (same sign): strided bin edges plus ``limit``."""
        if limit == 0.0:
            return np.zeros(1)
        edges = self.hist.edges()
        side = (
            edges[(edges > 0) & (edges < limit)]
            if limit > 0
            else edges[(edges < 0) & (edges > limit)]
        )
        stride = max(1, side.size // _MSE_CANDIDATES)
        return np.concatenate([side[::stride], [limit]])

    def best_asymmetric(self, bits: int) -> tuple[float, float]:
        h = self.hist
        lows = self._candidates(min(h.min, 0.0))[:, None]
        highs = self._candidates(max(h.max, 0.0))[None, :]
        err_lo, n_lo = self._below(lows)
        err_hi, n_hi = self._above(highs)
        inside = h.total - h.zeros - n_lo - n_hi
        scale = (highs - lows) / (2**bits - 1)
        err = err_lo + err_hi + np.maximum(inside, 0) * scale**2 / 12.0
        i, j = np.unravel_index(int(np.argmin(err)), err.shape)
        return self._clip_to_seen(float(lows[i, 0]), float(highs[0, j]))

    def best_symmetric(self, bits: int) -> tuple[float, float]:
        h = self.hist
        bounds = self._candidates(max(abs(h.min), abs(h.max)))
        err_lo, n_lo = self._below(-bounds)
        err_hi, n_hi = self._above(bounds)
        inside = h.total - h.zeros - n_lo - n_hi
        scale = bounds / (2 ** (bits - 1) - 1)
        err = err_lo + err_hi + np.maximum(inside, 0) * scale**2 / 12.0
        m = float(bounds[int(np.argmin(err))])
        return self._clip_to_seen(-m, m)

    def _clip_to_seen(self, lo: float, hi: float) -> tuple[float, float]:
        h = self.hist
        return (max(lo, h.min) if h.min < 0 else h.min, min(hi, h.max) if h.max > 0 else h.max)


def ranges_for_bits(
    stats: Mapping[str, TensorHistogram], bits: int, config: CalibrationConfig | None = None
) -> dict[str, tuple[float, float]]:
    """Ranges per tensor for a target bit width (only ``mse`` depends on it); no ORT run."""
    config = config or CalibrationConfig()
    config.check()
    if bits not in BIT_WIDTHS:
        raise errors.BadInputError(errors.INVALID_OPTION, f"calibration bits {bits} not 8 or 16")
    out: dict[str, tuple[float, float]] = {}
    for name, hist in stats.items():
        if hist.total == 0:
            continue
        if config.method == "minmax":
            lo, hi = hist.minmax()
        elif config.method == "percentile":
            lo, hi = hist.percentile(float(config.percentile))
        else:
            lo, hi = hist.mse(bits)
        out[name] = (float(lo), float(hi))
    return out


# --------------------------------------------------------------------------------------------
# Calibration data
# --------------------------------------------------------------------------------------------


def _missing_data_error(what: str) -> errors.BadInputError:
    return errors.BadInputError(
        errors.MISSING_CALIBRATION_DATA,
        f"integer quantization needs calibration data ({what}): give NAME=path.npy per input "
        "(samples stacked on axis 0, ONNX layout) or a folder of .npz samples, or ask for "
        "random calibration data (accuracy will be poor)",
    )


def load_calibration_data(
    specs: Sequence[str] | Mapping[str, np.ndarray] | str | Path | None,
    mean: Mapping[str, float | Sequence[float]] | None = None,
    std: Mapping[str, float | Sequence[float]] | None = None,
) -> dict[str, np.ndarray]:
    """``{input name: samples stacked on axis 0}`` from specs, arrays, or a folder of .npz files.

    * ``["x=x.npy", ...]``: one ``.npy`` per input (parsed by :func:`validate.load_test_data`).
    * ``{"x": array}``: used as given.
    * a folder (or one ``.npz`` file): each ``.npz`` is one sample, arrays keyed by input name,
      each with the model input's full shape (batch dimension included); files are taken in
      sorted order and concatenated on axis 0.

    ``mean``/``std`` per input apply ``(x - mean) / std`` in float32; a list gives one value per
    channel, broadcast along axis 1 (the ONNX channel axis of the stacked samples).
    """
    if specs is None or (not isinstance(specs, str | Path) and len(specs) == 0):
        raise _missing_data_error("none was given")
    if isinstance(specs, Mapping):
        data = {str(k): np.asarray(v) for k, v in specs.items()}
    elif isinstance(specs, str | Path) and not ("=" in str(specs) and not Path(specs).exists()):
        data = _load_npz_samples(Path(specs))
    else:
        specs = [str(specs)] if isinstance(specs, str | Path) else [str(s) for s in specs]
        for spec in specs:
            path = spec.partition("=")[2]
            if path and not Path(path).is_file():
                raise errors.BadInputError(
                    errors.FILE_NOT_FOUND, f"calibration data {spec!r}: no file {path}"
                )
        try:
            data = V.load_test_data(specs)
        except (ValueError, TypeError) as exc:
            raise errors.BadInputError(errors.INVALID_OPTION, f"calibration data: {exc}") from None
    return normalize(data, mean, std)


def _load_npz_samples(folder: Path) -> dict[str, np.ndarray]:
    if not folder.exists():
        raise errors.BadInputError(errors.FILE_NOT_FOUND, f"calibration data: no {folder}")
    files = [folder] if folder.is_file() else sorted(folder.glob("*.npz"))
    if not files:
        raise _missing_data_error(f"no .npz files in {folder}")
    chunks: dict[str, list[np.ndarray]] = {}
    for path in files:
        with np.load(path, allow_pickle=False) as sample:
            names = set(sample.files)
            if chunks and names != set(chunks):
                raise errors.BadInputError(
                    errors.INVALID_OPTION,
                    f"calibration sample {path.name} holds inputs {sorted(names)}, "
                    f"the first one {sorted(chunks)}",
                )
            for name in sample.files:
                arr = sample[name]
                chunks.setdefault(name, []).append(arr[None] if arr.ndim == 0 else arr)
    try:
        return {name: np.concatenate(parts, axis=0) for name, parts in chunks.items()}
    except ValueError as exc:
        raise errors.BadInputError(
            errors.INVALID_OPTION, f"calibration samples in {folder} differ in shape: {exc}"
        ) from None


def normalize(
    data: Mapping[str, np.ndarray],
    mean: Mapping[str, float | Sequence[float]] | None,
    std: Mapping[str, float | Sequence[float]] | None,
) -> dict[str, np.ndarray]:
    """Apply ``(x - mean) / std`` per input; inputs without an entry pass unchanged."""
    mean, std = dict(mean or {}), dict(std or {})
    unknown = sorted((set(mean) | set(std)) - set(data))
    if unknown:
        raise errors.BadInputError(
            errors.INVALID_OPTION, f"calibration mean/std for unknown input(s) {unknown}"
        )
    out = dict(data)
    for name in set(mean) | set(std):
        arr = np.asarray(data[name], dtype=np.float32)
        m = _per_channel(mean.get(name, 0.0), arr.ndim, name)
        s = _per_channel(std.get(name, 1.0), arr.ndim, name)
        for what, v in (("mean", m), ("std", s)):
            if v.size not in (1, arr.shape[1]):
                raise errors.BadInputError(
                    errors.INVALID_OPTION,
                    f"calibration {what} of {name!r}: {v.size} values for {arr.shape[1]} "
                    "channels (axis 1); give one value or one per channel",
                )
        if np.any(s == 0):
            raise errors.BadInputError(errors.INVALID_OPTION, f"calibration std of {name!r} is 0")
        out[name] = ((arr - m) / s).astype(np.float32)
    return out


def _per_channel(value, ndim: int, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float32)
    if v.ndim == 0:
        return v
    if v.ndim != 1 or ndim < 2:
        raise errors.BadInputError(
            errors.INVALID_OPTION,
            f"calibration mean/std of {name!r}: give a number or one value per channel (axis 1)",
        )
    return v.reshape((1, v.size) + (1,) * (ndim - 2))


def random_calibration_data(
    onnx_model, num_samples: int = 8, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded random samples (``validate.seeded_inputs``) stacked on axis 0; logs a warning."""
    model = V._as_model(onnx_model)
    log.warning(
        "calibrating on random data: integer quantization accuracy will be poor; "
        "give real calibration samples for a usable model"
    )
    try:
        feeds = [V.seeded_inputs(model, seed + i) for i in range(int(num_samples))]
    except ValueError as exc:
        raise errors.BadInputError(errors.INVALID_OPTION, f"random calibration: {exc}") from None
    if not feeds:
        raise errors.BadInputError(errors.INVALID_OPTION, "random calibration: num_samples < 1")
    return {
        name: np.concatenate([f[name] if f[name].ndim else f[name][None] for f in feeds])
        for name in feeds[0]
    }


# --------------------------------------------------------------------------------------------
# Running the model
# --------------------------------------------------------------------------------------------


def float_tensors(model: onnx.ModelProto) -> tuple[list[str], list[str], dict[str, int]]:
    """(float graph inputs, float node outputs, elem type by name) per ONNX shape inference.

    Tensors whose type inference cannot determine are left out (onnxruntime needs the type of a
    graph output), as are non-float tensors and initializers.
    """
    try:
        inferred = contrib_schemas.infer_shapes(model)
    except Exception:  # a model ORT runs may still defeat onnx's inference; use what is declared
        inferred = model
    g = inferred.graph
    elem = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in [*g.input, *g.value_info, *g.output]
        if vi.type.HasField("tensor_type")
    }
    inits = {t.name for t in g.initializer}
    inputs = [vi.name for vi in V.graph_inputs(model) if elem.get(vi.name) in _FLOAT_TYPES]
    outputs = []
    for node in model.graph.node:
        for name in node.output:
            if name and name not in inits and elem.get(name) in _FLOAT_TYPES:
                outputs.append(name)
    return inputs, list(dict.fromkeys(outputs)), elem


def _exposing_copy(model: onnx.ModelProto, names: Iterable[str], elem: Mapping[str, int]):
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in names:
        if name not in have:
            probe.graph.output.append(helper.make_tensor_value_info(name, elem[name], None))
    return probe


def _fit_inputs(
    model: onnx.ModelProto, data: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Data cast to each input's dtype, and samples per feed: its static first dim, else 1.

    Raises ``BadInputError`` naming the input when a sample does not fit its declared shape
    (instead of an onnxruntime error deep inside the run).
    """
    declared = {vi.name: vi for vi in V.graph_inputs(model)}
    unknown = sorted(set(data) - set(declared))
    missing = sorted(set(declared) - set(data))
    if unknown or missing:
        raise errors.BadInputError(
            errors.INVALID_OPTION,
            f"calibration data must name every model input: unknown {unknown}, missing {missing}",
        )
    batches, cast = {}, {}
    for name, arr in data.items():
        arr = np.asarray(arr)
        tt = declared[name].type.tensor_type
        dims = [d.dim_value if d.dim_value > 0 else None for d in tt.shape.dim]
        batches[name] = dims[0] if dims and dims[0] is not None else 1
        sample = list(arr.shape[1:])
        want = dims[1:] if dims else []
        fits = arr.ndim >= 1 and len(sample) == len(want)
        if not fits or any(w is not None and w != a for w, a in zip(want, sample, strict=True)):
            raise errors.BadInputError(
                errors.INVALID_OPTION,
                f"calibration data for {name!r} has shape {tuple(arr.shape)}; the model input "
                f"is {tuple(d or '?' for d in dims)} (samples stacked on axis 0)",
            )
        try:  # the check --test-data gets: no string, no complex, integers that fit
            cast[name] = _conform_dtype(
                name, arr, V._np_dtype(tt.elem_type), [], what="--calibration-data"
            )
        except ValueError as exc:
            raise errors.BadInputError(errors.INVALID_OPTION, str(exc)) from None
    return cast, batches


class _Progress:
    """A one-line progress bar on stderr (no dependency); silent when disabled."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)
        self.started = time.perf_counter()

    def step(self, done: int) -> None:
        if not self.enabled:
            return
        filled = int(30 * done / max(self.total, 1))
        elapsed = time.perf_counter() - self.started
        sys.stderr.write(
            f"\rcalibrating [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} "
            f"{elapsed:.1f}s"
        )
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def collect_statistics(
    onnx_model: onnx.ModelProto | str | Path,
    data: Mapping[str, np.ndarray],
    config: CalibrationConfig | None = None,
) -> dict[str, TensorHistogram]:
    """One onnxruntime pass over ``data``: a :class:`TensorHistogram` per float tensor."""
    config = config or CalibrationConfig()
    config.check()
    model = V._as_model(onnx_model)
    if not data:
        raise _missing_data_error("no inputs given")
    data, batches = _fit_inputs(model, data)
    in_names, out_names, elem = float_tensors(model)
    probe = _exposing_copy(model, out_names, elem)
    ort = V._import_onnxruntime()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in V.graph_inputs(model)}
    stats = {name: TensorHistogram(config.num_bins) for name in [*in_names, *out_names]}
    total = min(data[n].shape[0] // batches[n] for n in data) if data else 0
    if total < 1:
        raise _missing_data_error("fewer samples than one model batch")
    progress = _Progress(total, config.progress)
    for done, feeds in enumerate(V.iter_feed_batches(data, batches), start=1):
        feeds = {n: (a[0] if ranks[n] == 0 else a) for n, a in feeds.items()}
        for name in in_names:
            stats[name].update(feeds[name])
        for name, value in zip(out_names, sess.run(out_names, feeds), strict=True):
            if isinstance(value, np.ndarray):
                stats[name].update(value)
        progress.step(done)
    return stats


def collect_ranges(
    onnx_model: onnx.ModelProto | str | Path,
    data: Mapping[str, np.ndarray],
    config: CalibrationConfig | None = None,
) -> dict[str, tuple[float, float]]:
    """``{ONNX tensor name: (lo, hi)}`` for every float graph input and node output."""
    config = config or CalibrationConfig()
    return ranges_for_bits(collect_statistics(onnx_model, data, config), config.bits, config)


def tflite_ranges(
    onnx_ranges: Mapping[str, tuple[float, float]], tensor_map: Mapping[str, Mapping]
) -> dict[str, tuple[float, float]]:
    """ONNX-name ranges onto TFLite tensor names (``ConversionResult.tensor_map``).

    A per-tensor range does not depend on element order, so ``perm``/``inner`` are not needed.
    Several ONNX tensors may live in one TFLite tensor (Identity, folded reshapes): their
    ranges are united. ``derived`` TFLite-only copies of a value get its range: re-laid-out
    copies (TRANSPOSE/RESHAPE) as is, padded copies widened to their finite pad values (an
    infinite max-pool pad is the quantizer's to clamp); a larger computed tensor that is
    cropped to the value ("contains") holds other data and gets no range from it. ONNX
    tensors without a TFLite tensor (fused away) are dropped.
    """
    out: dict[str, tuple[float, float]] = {}

    def unite(name: str, lo: float, hi: float) -> None:
        if name in out:
            lo, hi = min(lo, out[name][0]), max(hi, out[name][1])
        out[name] = (float(lo), float(hi))

    for onnx_name, (lo, hi) in onnx_ranges.items():
        entry = tensor_map.get(onnx_name)
        if entry is None:
            continue
        unite(entry["tensor"], lo, hi)
        for copy in entry.get("derived", ()):
            relation = copy.get("relation")
            if relation in ("permuted", "reshaped"):  # the same values, re-laid out
                unite(copy["tensor"], lo, hi)
            elif relation == "padded":  # the values plus the padding constants
                pads = [v for v in copy.get("pad_values", [0.0]) if np.isfinite(v)]
                unite(copy["tensor"], min([lo, *pads]), max([hi, *pads]))
            # "contains": a larger computed tensor (cropped later): its range is its own
    return out


def tflite_channel_means(
    stats: Mapping[str, TensorHistogram], tensor_map: Mapping[str, Mapping]
) -> dict[str, np.ndarray]:
    """Per-index means of the axis a TFLite tensor stores last, where that axis is the ONNX
    channel (NHWC activations, [N, C] matrices) or, for rank >= 3 kept in ONNX order, the
    ONNX last axis (a transformer's [batch, sequence, hidden] features); also onto padded
    copies (the padding adds border zeros, which a per-channel mean of the unpadded value
    ignores: a small approximation for what the means are for, correcting the average error
    of rounded weights). A [N, C] matrix flattened from channel-last data stores its C
    features in an inner order (the layout's ``inner``): the means follow it."""
    out: dict[str, np.ndarray] = {}
    for onnx_name, hist in stats.items():
        entry = tensor_map.get(onnx_name)
        if entry is None:
            continue
        perm = list(entry.get("perm") or [])
        if len(perm) < 2:
            continue
        if perm[-1] == 1:
            means = hist.channel_means()
        elif len(perm) >= 3 and perm[-1] == len(perm) - 1:
            means = hist.feature_means()
        else:
            continue
        if means is None:
            continue
        inner = entry.get("inner")
        if inner is not None:
            order = Inner(tuple(inner["shape"]), tuple(inner["perm"])).element_order()
            if len(perm) != 2 or order.size != means.size:
                continue
            means = means[order]  # stored feature j is ONNX feature order[j]
        out[entry["tensor"]] = means
        for copy in entry.get("derived", ()):
            if copy.get("relation") == "padded":
                out[copy["tensor"]] = means
    return out
