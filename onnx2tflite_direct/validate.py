"""Numerical validation: run the ONNX model (onnxruntime) and the TFLite model (LiteRT) on the
same inputs and compare every output.

Why a module of its own: the converter never imports a runtime, but both the ``--validate`` CLI
flag and the test-suite need one trustworthy comparison. The runtimes are optional extras, so they
are imported lazily inside the functions that need them (``pip install
onnx2tflite_direct[validate]``).

Layout: all arrays handed to and returned from this module are in *ONNX layout*. The conversion
report's ``io`` table says how each graph input/output is laid out in the TFLite file
(``tflite_array = np.transpose(onnx_array, perm)``); :func:`run_litert` applies it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx

_EXTRA_HINT = "pip install onnx2tflite_direct[validate]"

# Small non-negative range for integer inputs: safe as indices, repeats, axes or shape values.
_INT_HIGH = 4


# --------------------------------------------------------------------------------------------
# Lazy runtime imports
# --------------------------------------------------------------------------------------------


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"onnxruntime is needed to validate conversions; install it with `{_EXTRA_HINT}`"
        ) from e
    return onnxruntime


def _import_litert_interpreter():
    try:
        from ai_edge_litert import interpreter
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"ai-edge-litert is needed to run .tflite files; install it with `{_EXTRA_HINT}`"
        ) from e
    return interpreter


def _as_model(model: onnx.ModelProto | str | Path | bytes) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, bytes | bytearray):
        return onnx.load_from_string(bytes(model))
    return onnx.load(str(model))


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real graph inputs: old IR versions also list every initializer as an input."""
    inits = {t.name for t in model.graph.initializer}
    inits |= {t.values.name for t in model.graph.sparse_initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def _static_shape(vi: onnx.ValueInfoProto) -> tuple[int, ...]:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise ValueError(f"input {vi.name!r} is not a tensor (sequence/map/optional inputs)")
    if not tt.HasField("shape"):
        raise ValueError(f"input {vi.name!r} has unknown rank; pin its shape (input_shapes=...)")
    dims = []
    for i, d in enumerate(tt.shape.dim):
        if not d.HasField("dim_value") or d.dim_value < 0:
            label = d.dim_param or "?"
            raise ValueError(
                f"input {vi.name!r} has dynamic dimension {i} ({label!r}); "
                "pin it with input_shapes=... / batch_size=..."
            )
        dims.append(int(d.dim_value))
    return tuple(dims)


def _np_dtype(elem_type: int) -> np.dtype:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def _is_float(dtype: np.dtype) -> bool:
    """True for numpy floats and ml_dtypes floats (bfloat16, float8...; their kind is 'V')."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return True
    if dtype.kind == "V":
        try:
            import ml_dtypes

            ml_dtypes.finfo(dtype)
            return True
        except (ImportError, ValueError, TypeError):
            return False
    return False


def _kind(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if _is_float(dtype):
        return "f"
    if dtype.kind in "OSU":
        return "S"
    return dtype.kind


def random_array(shape: Sequence[int], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Floats ~ N(0, 1); integers in [0, 4); bools uniform; strings are short words."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if _is_float(dtype):
        if dtype.kind == "c":
            real = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
            return real.astype(dtype)
        return rng.standard_normal(shape).astype(np.float32).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, _INT_HIGH, size=shape).astype(dtype)
    if dtype.kind in "OSU":
        words = np.array(["a", "bb", "ccc", "dddd"], dtype=object)
        return words[rng.integers(0, len(words), size=shape)]
    raise ValueError(f"cannot generate random data of dtype {dtype}")


def seeded_inputs(
    model: onnx.ModelProto, seed: int = 0, value_hints: Mapping[str, float] | None = None
) -> dict[str, np.ndarray]:
    """Deterministic random feeds (ONNX layout) for every real graph input.

    Shapes must be static: pass the front-end-processed model (``res.model``) whose dynamic
    dimensions were pinned; a remaining dynamic dimension raises ``ValueError`` naming it.
    ``value_hints`` fills the named inputs with one value instead (a token id, a length, a
    sample rate: inputs that random values would make meaningless or out of range).
    """
    model = _as_model(model)
    rng = np.random.default_rng(seed)
    hints = dict(value_hints or {})
    feeds = {}
    for vi in graph_inputs(model):
        shape = _static_shape(vi)
        dtype = _np_dtype(vi.type.tensor_type.elem_type)
        if vi.name in hints:
            feeds[vi.name] = np.full(shape, hints.pop(vi.name)).astype(dtype)
        else:
            feeds[vi.name] = random_array(shape, dtype, rng)
    if hints:
        raise ValueError(f"value hints name no graph input: {sorted(hints)}")
    return feeds


def load_test_data(specs: Sequence[str]) -> dict[str, np.ndarray]:
    """Parse ``NAME=path.npy`` specs into ``{NAME: array}``.

    Each array holds samples stacked on its first axis (ONNX layout); use :func:`iter_samples`
    to cut it into the model's batch size.
    """
    data: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"test data spec {spec!r} must look like NAME=path.npy")
        if name in data:
            raise ValueError(f"test data given twice for input {name!r}")
        arr = np.load(path, allow_pickle=False)
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{path}: expected a single .npy array, got {type(arr).__name__}")
        if arr.ndim == 0:
            raise ValueError(f"{path}: samples must be stacked on the first axis (got a scalar)")
        data[name] = arr
    return data


def iter_samples(arr: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    """Yield consecutive chunks of exactly ``batch`` samples along axis 0.

    A static model cannot take a short final chunk, so a remainder is dropped; fewer samples
    than one batch is an error.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    n = arr.shape[0]
    if n < batch:
        raise ValueError(f"need at least {batch} samples, got {n}")
    for start in range(0, n - batch + 1, batch):
        yield arr[start : start + batch]


def iter_feed_batches(
    data: Mapping[str, np.ndarray], batches: Mapping[str, int]
) -> Iterator[dict[str, np.ndarray]]:
    """Zip :func:`iter_samples` over several inputs (stops at the shortest)."""
    iters = [iter_samples(data[name], batches[name]) for name in data]
    for chunks in zip(*iters, strict=False):
        yield dict(zip(data, chunks, strict=True))


# --------------------------------------------------------------------------------------------
# Runtimes
# --------------------------------------------------------------------------------------------


def run_onnxruntime(
    model: onnx.ModelProto | bytes | str | Path, feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Reference outputs from onnxruntime (CPU), keyed by ONNX output name.

    Basic graph optimizations only: the extended ones replace node patterns by fused kernels
    that round differently (QDQ groups by integer kernels that saturate on CPUs without VNNI,
    20 dB from the model's own Q/DQ semantics on a small per-channel CNN); the reference is
    what the model says, as the diagnostics' onnxruntime run also computes it."""
    ort = _import_onnxruntime()
    if isinstance(model, onnx.ModelProto):
        content: bytes | str = model.SerializeToString()
    elif isinstance(model, bytes | bytearray):
        content = bytes(model)
    else:
        content = str(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(content, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, dict(feeds))
    return {n: np.asarray(v) for n, v in zip(names, outs, strict=True)}


def _inverse_perm(perm: Sequence[int]) -> list[int]:
    return [int(i) for i in np.argsort(perm)]


def _io_rows(io_table: Sequence[Mapping[str, Any]] | None, kind: str) -> list[Mapping[str, Any]]:
    return [row for row in (io_table or ()) if row.get("kind") == kind]


def make_interpreter(tflite_bytes: bytes, num_threads: int = 1, use_xnnpack: bool = True):
    """A LiteRT interpreter; ``use_xnnpack=False`` runs the reference builtin kernels only."""
    interp_mod = _import_litert_interpreter()
    kwargs: dict[str, Any] = {"model_content": bytes(tflite_bytes), "num_threads": num_threads}
    if not use_xnnpack:
        kwargs["experimental_op_resolver_type"] = (
            interp_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
    return interp_mod.Interpreter(**kwargs)


def run_litert(
    tflite_bytes: bytes,
    feeds_onnx_layout: Mapping[str, np.ndarray],
    io_table: Sequence[Mapping[str, Any]] | None,
    num_threads: int = 1,
    use_xnnpack: bool = True,
) -> dict[str, np.ndarray]:
    """Run the ``serving_default`` signature on ONNX-layout feeds; return ONNX-layout outputs.

    Each input is transposed by its ``perm`` from ``io_table`` and cast to the TFLite input
    dtype; each output is transposed back by the inverse perm. Without an ``io_table`` (or for
    names missing from it) the layouts are taken to be identical.
    """
    interp = make_interpreter(tflite_bytes, num_threads=num_threads, use_xnnpack=use_xnnpack)
    runner = interp.get_signature_runner("serving_default")
    in_details = runner.get_input_details()
    perms_in = {row["name"]: row.get("perm") for row in _io_rows(io_table, "input")}
    perms_out = {row["name"]: row.get("perm") for row in _io_rows(io_table, "output")}

    missing = set(in_details) - set(feeds_onnx_layout)
    if missing:
        raise ValueError(f"no feed for TFLite signature input(s) {sorted(missing)}")
    kwargs = {}
    for name, detail in in_details.items():
        arr = np.asarray(feeds_onnx_layout[name])
        perm = perms_in.get(name)
        if perm is not None:
            arr = np.transpose(arr, perm)
        # The signature runner silently resizes inputs; a shape the file does not declare would
        # hide a layout bug (or fail later with an obscure delegate error), so refuse it here.
        want = detail.get("shape_signature")
        want = detail["shape"] if want is None or len(want) == 0 else want
        fits = len(want) == arr.ndim and all(
            w in (-1, a) for w, a in zip(want, arr.shape, strict=False)
        )
        if not fits:
            raise ValueError(
                f"input {name!r}: feed shape {tuple(arr.shape)} (after perm {perm}) does not fit "
                f"the TFLite input shape {tuple(int(d) for d in want)}"
            )
        kwargs[name] = np.array(arr, dtype=detail["dtype"], order="C")
    raw = runner(**kwargs)

    outputs = {}
    for name, arr in raw.items():
        arr = np.array(arr, copy=True)  # detach from interpreter-owned memory
        perm = perms_out.get(name)
        if perm is not None:
            arr = np.transpose(arr, _inverse_perm(perm))
        outputs[name] = np.array(arr, order="C")  # (ascontiguousarray makes scalars 1-D)
    return outputs


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


def reference_ulp(expected: np.ndarray) -> np.ndarray | None:
    """One unit in the last place of each expected value, in the reference's own float dtype,
    for floats narrower than float32 (float16, bfloat16, float8); None otherwise.

    Why: onnxruntime computes a float16 op in float32 and rounds the result once, and how it
    gets there (SIMD approximations of exp/tanh) differs between instruction sets, so its
    float16 answer can sit one float16 step from the correctly rounded one on some CPUs. A
    tolerance below one step of the reference would judge the reference's own rounding. For
    float32 and wider, ``rtol`` is already far above one ulp.
    """
    dtype = np.dtype(expected.dtype)
    if not _is_float(dtype) or dtype.kind == "c" or dtype.itemsize >= 4:
        return None
    info = ml_dtypes.finfo(dtype)
    magnitude = np.abs(np.asarray(expected, dtype=np.float32))
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log2(np.maximum(magnitude, np.float32(info.smallest_normal))))
    return np.exp2(exponent - info.nmant).astype(np.float32)


def _compare_one(
    expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float | None
) -> dict[str, Any]:
    e_arr, a_arr = np.asarray(expected), np.asarray(actual)
    m: dict[str, Any] = {
        "expected_shape": tuple(e_arr.shape),
        "actual_shape": tuple(a_arr.shape),
        "expected_dtype": str(e_arr.dtype),
        "actual_dtype": str(a_arr.dtype),
        # Exact comparison: a permuted shape (NHWC vs NCHW) is never a match.
        "shape_match": tuple(e_arr.shape) == tuple(a_arr.shape),
        "dtype_match": e_arr.dtype == a_arr.dtype,
        "kind_match": _kind(e_arr.dtype) == _kind(a_arr.dtype),
        "nan_mismatch": 0,
        "max_abs": math.inf,
        "max_rel": math.inf,
        "mean_abs": math.inf,
        "cosine": math.nan,
        "sqnr_db": -math.inf,
        "max_expected_abs": math.nan,
        "ok": False,
    }
    if not (m["shape_match"] and m["kind_match"]):
        return m

    if _kind(e_arr.dtype) == "S":  # strings: exact equality only
        equal = bool(np.array_equal(e_arr.astype(str), a_arr.astype(str)))
        m.update(max_abs=0.0 if equal else math.inf, ok=equal)
        return m

    if _finite_real_metrics(e_arr, a_arr, m, atol, rtol):
        return m
    e = e_arr.astype(np.complex128 if e_arr.dtype.kind == "c" else np.float64).ravel()
    a = a_arr.astype(e.dtype).ravel()
    e_nan, a_nan = np.isnan(e), np.isnan(a)
    m["nan_mismatch"] = int(np.count_nonzero(e_nan != a_nan))
    # Infinities must match exactly (same sign, same place); everything else is compared.
    e_inf, a_inf = np.isinf(e), np.isinf(a)
    inf_mismatch = int(np.count_nonzero((e_inf | a_inf) & ~((e == a) & e_inf)))
    finite = ~(e_nan | a_nan | e_inf | a_inf)
    ef, af = e[finite], a[finite]
    diff = np.abs(ef - af)
    eabs = np.abs(ef)
    max_exp = float(eabs.max()) if eabs.size else 0.0
    m["max_expected_abs"] = max_exp
    if m["nan_mismatch"] or inf_mismatch:
        m["max_abs"] = math.inf
    else:
        m["max_abs"] = float(diff.max()) if diff.size else 0.0
    m["mean_abs"] = float(diff.mean()) if diff.size else 0.0
    # Relative error with a floor so exact zeros in `expected` do not produce inf.
    floor = 1e-6 * max(max_exp, 1.0)
    m["max_rel"] = float((diff / np.maximum(eabs, floor)).max()) if diff.size else 0.0
    if m["max_abs"] == math.inf:
        m["max_rel"] = math.inf
    ne, na = float(np.vdot(ef, ef).real), float(np.vdot(af, af).real)
    if ne == 0.0 and na == 0.0:
        m["cosine"] = 1.0
    elif ne == 0.0 or na == 0.0:
        m["cosine"] = 0.0
    else:
        m["cosine"] = float(np.vdot(ef, af).real / math.sqrt(ne * na))
    noise = float(np.sum(diff**2))
    if noise == 0.0:
        m["sqnr_db"] = math.inf
    elif ne == 0.0:
        m["sqnr_db"] = -math.inf
    else:
        m["sqnr_db"] = 10.0 * math.log10(ne / noise)

    if m["max_abs"] == math.inf:
        m["ok"] = False
    elif not _is_float(e_arr.dtype):  # ints and bools must be exact
        m["ok"] = m["max_abs"] == 0.0
    else:
        scaled_atol = atol * max(1.0, max_exp)
        ulp = reference_ulp(e_arr)
        if ulp is None:
            threshold = scaled_atol if rtol is None else scaled_atol + rtol * eabs
        else:  # the reference itself is only correct to one step of its dtype
            threshold = scaled_atol + ulp.ravel()[finite] + (0.0 if rtol is None else rtol * eabs)
        m["ok"] = bool(np.all(diff <= threshold))
    return m


def _finite_real_metrics(
    e_arr: np.ndarray, a_arr: np.ndarray, m: dict[str, Any], atol: float, rtol: float | None
) -> bool:
    """Fill ``m`` for real float arrays without NaN/inf; False (``m`` untouched) otherwise.

    Why: per-tensor diagnostics compare every activation of a network, and the general path
    (float64 copies, NaN/inf masks, boolean indexing) costs ~10x more. Element-wise work stays
    in float32 when both sides fit (an exact difference of two float32 values rounds by at most
    half an ulp of the difference); every sum accumulates in float64. A difference within
    rounding of the tolerance goes to the general path, so ``ok`` never depends on the path.
    """
    if not (_is_float(e_arr.dtype) and _is_float(a_arr.dtype)) or "c" in (
        e_arr.dtype.kind,
        a_arr.dtype.kind,
    ):
        return False
    work = np.float32 if max(e_arr.dtype.itemsize, a_arr.dtype.itemsize) <= 4 else np.float64
    # No ravel: a transposed view would be copied, and every reduction below is over all axes.
    e = np.asarray(e_arr, dtype=work)
    a = np.asarray(a_arr, dtype=work)
    if e.ndim == 0:  # 0-d arithmetic yields numpy scalars, which ``out=`` cannot take
        e, a = e.reshape(1), a.reshape(1)
    if not e.size:
        m.update(max_abs=0.0, max_rel=0.0, mean_abs=0.0, cosine=1.0, sqnr_db=math.inf)
        m.update(max_expected_abs=0.0, ok=True)
        return True

    def dot(x, y):
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf -> general path
            return float(np.add.reduce(x * y, axis=None, dtype=np.float64))

    # The squared norms are finite exactly when every element is (a square overflowing float32
    # also lands on the general path): one pass instead of two isfinite masks.
    ne, na = dot(e, e), dot(a, a)
    if not (math.isfinite(ne) and math.isfinite(na)):
        return False
    diff = e - a
    np.abs(diff, out=diff)
    eabs = np.abs(e)
    max_exp = float(eabs.max())
    max_abs = float(diff.max())
    scaled_atol = atol * max(1.0, max_exp)
    ulp = reference_ulp(e_arr)
    # The verdict must be the general path's: within rounding of the threshold, defer to it.
    if rtol is None and ulp is None:
        if abs(max_abs - scaled_atol) <= 1e-6 * scaled_atol:
            return False
        ok = max_abs <= scaled_atol
    else:
        threshold = scaled_atol + (0.0 if rtol is None else rtol * eabs)
        if ulp is not None:  # the reference itself is only correct to one step of its dtype
            threshold = threshold + ulp.reshape(e.shape)
        if np.any(np.abs(diff - threshold) <= 1e-6 * threshold):
            return False
        ok = bool(np.all(diff <= threshold))
    # Relative error with a floor so exact zeros in `expected` do not produce inf.
    np.maximum(eabs, work(1e-6 * max(max_exp, 1.0)), out=eabs)
    max_rel = float((diff / eabs).max())
    noise = dot(diff, diff)
    if ne == 0.0 and na == 0.0:
        cosine = 1.0
    elif ne == 0.0 or na == 0.0:
        cosine = 0.0
    else:  # e.a = (|e|^2 + |a|^2 - |e - a|^2) / 2: no fourth pass over the data
        cosine = min(1.0, max(-1.0, (ne + na - noise) / (2.0 * math.sqrt(ne * na))))
    if noise == 0.0:
        sqnr = math.inf
    elif ne == 0.0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * math.log10(ne / noise)
    m.update(
        max_abs=max_abs,
        max_rel=max_rel,
        mean_abs=float(np.add.reduce(diff, axis=None, dtype=np.float64)) / diff.size,
        cosine=cosine,
        sqnr_db=sqnr,
        max_expected_abs=max_exp,
        ok=bool(ok),
    )
    return True


def compare(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    *,
    atol: float = 1e-4,
    rtol: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-output metrics for every name in ``expected``.

    Keys: shape_match, dtype_match, kind_match, nan_mismatch, max_abs, max_rel, mean_abs, cosine,
    sqnr_db, max_expected_abs, ok (plus the shapes/dtypes). NaNs are equal only where both sides
    have them; a NaN or inf in one side only makes max_abs inf. Non-float outputs must be exact.
    ``ok`` is ``max_abs <= atol * max(1, max|expected|)``; with ``rtol`` it is the element-wise
    ``|a - e| <= atol * max(1, max|expected|) + rtol * |e|``. A name missing from ``actual`` gets
    ``{"missing": True, "ok": False}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, e in expected.items():
        if name not in actual:
            out[name] = {"missing": True, "ok": False, "shape_match": False}
            continue
        out[name] = _compare_one(e, actual[name], atol, rtol)
    return out


@dataclass
class ValidationResult:
    """Outcome of :func:`validate`. ``outputs`` maps ONNX output name -> metrics dict."""

    outputs: dict[str, dict[str, Any]]
    atol: float
    rtol: float | None
    extra_outputs: list[str] = field(default_factory=list)
    feeds: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    expected: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    actual: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return (
            bool(self.outputs)
            and not self.extra_outputs
            and all(m.get("ok") for m in self.outputs.values())
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no arrays)."""
        return {
            "ok": self.ok,
            "atol": self.atol,
            "rtol": self.rtol,
            "extra_outputs": list(self.extra_outputs),
            "outputs": {k: _jsonable(v) for k, v in self.outputs.items()},
        }


def _jsonable(metrics: Mapping[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, np.generic):
            v = v.item()
        res[k] = v
    return res


def validate(
    model: onnx.ModelProto | str | Path,
    tflite_bytes: bytes,
    io_table: Sequence[Mapping[str, Any]] | None,
    feeds: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    atol: float = 1e-4,
    rtol: float | None = None,
    num_threads: int = 1,
) -> ValidationResult:
    """Run both runtimes on ``feeds`` (default: :func:`seeded_inputs`) and compare outputs.

    ``model`` should be the converter's ``res.model`` (static shapes); ``io_table`` is
    ``res.report["io"]``.
    """
    model = _as_model(model)
    feeds = dict(feeds) if feeds is not None else seeded_inputs(model, seed)
    expected = run_onnxruntime(model, feeds)
    actual = run_litert(tflite_bytes, feeds, io_table, num_threads=num_threads)
    counts = _trim_padded_outputs(expected, actual)
    metrics = compare(expected, actual, atol=atol, rtol=rtol)
    extra = sorted(set(actual) - set(expected) - counts)
    return ValidationResult(metrics, atol, rtol, extra, feeds, expected, actual)


def _trim_padded_outputs(expected: Mapping, actual: dict) -> set[str]:
    """Fixed-size outputs padded with -1 rows (``<name>_valid_count`` beside them) are cut to
    their valid rows for comparison; returns the count outputs. Padding that is not all -1 is
    left in place, so the comparison fails on it."""
    from .context import VALID_COUNT_SUFFIX

    counts = set()
    for name in list(actual):
        base = name[: -len(VALID_COUNT_SUFFIX)]
        if not name.endswith(VALID_COUNT_SUFFIX) or name in expected or base not in expected:
            continue
        counts.add(name)
        valid = int(np.asarray(actual[name]).reshape(-1)[0])
        rows = np.asarray(actual[base])
        if 0 <= valid <= len(rows) and np.all(rows[valid:] == -1):
            actual[base] = rows[:valid]
    return counts


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.3g}"
    return str(v)


def format_table(result: ValidationResult) -> str:
    """Human-readable per-output summary, one row per ONNX output."""
    header = ["output", "status", "shape", "max_abs", "max_rel", "mean_abs", "cosine", "sqnr_db"]
    rows = [header]
    for name, m in result.outputs.items():
        if m.get("missing"):
            rows.append([name, "MISSING", "-", "-", "-", "-", "-", "-"])
            continue
        if not m["shape_match"]:
            status = f"SHAPE {m['actual_shape']} != {m['expected_shape']}"
        elif not m["kind_match"]:
            status = f"DTYPE {m['actual_dtype']} != {m['expected_dtype']}"
        elif m["nan_mismatch"]:
            status = f"NAN x{m['nan_mismatch']}"
        else:
            status = "ok" if m["ok"] else "FAIL"
        rows.append(
            [
                name,
                status,
                "x".join(str(d) for d in m["expected_shape"]) or "scalar",
                *(_fmt(m[k]) for k in ("max_abs", "max_rel", "mean_abs", "cosine", "sqnr_db")),
            ]
        )
    for name in result.extra_outputs:
        rows.append([name, "UNEXPECTED", "-", "-", "-", "-", "-", "-"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    tol = f"atol={result.atol:g}" + (f", rtol={result.rtol:g}" if result.rtol is not None else "")
    lines.append(
        f"validation {'PASSED' if result.ok else 'FAILED'} ({tol}, atol scaled by max|ref|)"
    )
    return "\n".join(lines)


def validate_samples(
    model: onnx.ModelProto,
    tflite_bytes: bytes,
    io_table: Sequence[Mapping[str, Any]],
    data: Mapping[str, np.ndarray],
    atol: float = 1e-4,
    rtol: float | None = None,
) -> ValidationResult:
    """Validate every model-sized batch of stacked samples; return the worst batch.

    ``data`` holds, per ONNX input, samples stacked on axis 0 in ONNX layout; each chunk fed is
    as large as the model's own batch (its first input dim).
    """
    batches = {
        r["name"]: (int(r["onnx_shape"][0]) if r["onnx_shape"] else 1)
        for r in io_table
        if r["kind"] == "input"
    }
    unknown = sorted(set(data) - set(batches))
    missing = sorted(set(batches) - set(data))
    if unknown or missing:
        raise ValueError(
            f"test data must name every model input exactly: unknown {unknown}, missing {missing}"
        )
    worst: ValidationResult | None = None
    for feeds in iter_feed_batches(data, batches):
        res = validate(model, tflite_bytes, io_table, feeds=feeds, atol=atol, rtol=rtol)
        if worst is None or _badness(res) > _badness(worst):
            worst = res
    if worst is None:
        raise ValueError("test data holds no complete batch")
    return worst


def _badness(res: ValidationResult) -> tuple[bool, float]:
    return (not res.ok, max((m.get("max_abs") or 0.0) for m in res.outputs.values()))
