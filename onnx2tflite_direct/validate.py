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

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx

log = logging.getLogger(__name__)

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


# Samples per validation run when an input's first dim is dynamic: the file is resized to each
# run, so every sample is used (the last run may be shorter) while memory stays bounded.
DYNAMIC_BATCH_CHUNK = 32


def reference_model(model: onnx.ModelProto, dynamic_shapes: Mapping | None) -> onnx.ModelProto:
    """The model onnxruntime runs as the reference for a converted file.

    Why: the converter's ``res.model`` is pinned at one sample size, but a file whose input dims
    stayed dynamic (the report's ``dynamic_shapes`` section) is meant to run at any size, so its
    reference must accept any size too: the same model with those dims symbolic again."""
    if not dynamic_shapes:
        return model
    from .dynamic_shapes import unpin

    return unpin(model, dynamic_shapes["input_dims"])


def _input_dims(vi: onnx.ValueInfoProto) -> list[int | None] | None:
    """Declared dims (None where unknown), or None for an unknown rank."""
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [
        int(d.dim_value) if d.HasField("dim_value") and d.dim_value >= 0 else None
        for d in tt.shape.dim
    ]


def _conform_dtype(name: str, arr: np.ndarray, dtype: np.dtype, notes: list[str]) -> np.ndarray:
    """``arr`` in the input's dtype when that loses nothing the user meant; ValueError else.

    Floats of another width become the input's float dtype (numpy saves float64 by default;
    the model's own precision is what it computes in); integers and bools become the input's
    integer dtype when every value survives the cast."""
    if arr.dtype == dtype:
        return arr
    have = f"{arr.dtype}"
    if _is_float(dtype) and dtype.kind != "c" and (_is_float(arr.dtype) or arr.dtype.kind in "iub"):
        if arr.dtype.kind == "c":
            raise ValueError(f"test data {name!r} is {have}; the model input takes {dtype}")
        notes.append(f"test data {name!r}: {have} samples cast to {dtype}, the input's dtype")
        return arr.astype(dtype)
    if dtype.kind in "iub" and arr.dtype.kind in "iub":
        cast = arr.astype(dtype)
        if np.array_equal(cast.astype(arr.dtype), arr):
            notes.append(f"test data {name!r}: {have} samples cast to {dtype}, the input's dtype")
            return cast
        raise ValueError(f"test data {name!r}: {have} values do not fit the input's {dtype}")
    raise ValueError(f"test data {name!r} is {have}; the model input takes {dtype}")


def test_data_runs(
    model: onnx.ModelProto, data: Mapping[str, np.ndarray]
) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """The feeds of the validation runs over stacked test samples, and notes for the user.

    ``model`` is the reference model (:func:`reference_model`: dynamic dims symbolic). Per
    input, samples are stacked on axis 0 in ONNX layout. A static first dim ``B`` takes runs
    of exactly ``B`` samples; a dynamic one takes up to :data:`DYNAMIC_BATCH_CHUNK` samples
    per run (the file is resized to each run; the last run may be shorter). Samples are cast
    to the input's dtype where nothing is lost (:func:`_conform_dtype`), and a sample shape
    that cannot fit the input, an unknown or missing input name, or too few samples raise
    ``ValueError`` naming the input. Samples left over after the last full run are noted.
    """
    inputs = {vi.name: vi for vi in graph_inputs(model)}
    unknown, missing = sorted(set(data) - set(inputs)), sorted(set(inputs) - set(data))
    if unknown or missing:
        raise ValueError(
            f"test data must name every model input exactly: unknown {unknown}, missing {missing}"
        )
    notes: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    size: dict[str, int | None] = {}  # samples per run; None: dynamic first dim
    for name, vi in inputs.items():
        arr = np.asarray(data[name])
        dims = _input_dims(vi)
        dtype = _np_dtype(vi.type.tensor_type.elem_type)
        if dims is not None and len(dims) == 0:  # a scalar input: one sample per run
            dims, scalar = [1], True
        else:
            scalar = False
        if dims is not None:
            want = "x".join("?" if d is None else str(d) for d in dims)
            fits = arr.ndim == len(dims) and all(
                d is None or d == a for d, a in zip(dims[1:], arr.shape[1:], strict=True)
            )
            if not fits:
                raise ValueError(
                    f"test data {name!r} has shape {'x'.join(map(str, arr.shape))}; the model "
                    f"input is {'scalar' if scalar else want} (samples stacked on axis 0)"
                )
        arrays[name] = _conform_dtype(name, arr, dtype, notes)
        size[name] = None if dims is None or dims[0] is None else dims[0]
        if scalar:
            size[name] = 0  # marker: one scalar per run
    counts = {name: arr.shape[0] for name, arr in arrays.items()}
    static = [s for s in size.values() if s]
    runs: list[dict[str, np.ndarray]] = []
    if static or any(s == 0 for s in size.values()):
        per_run = {n: (s if s else 1 if s == 0 else min(static or [1])) for n, s in size.items()}
        n_runs = min(counts[n] // per_run[n] for n in arrays)
        for name in arrays:
            if counts[name] < per_run[name]:
                raise ValueError(
                    f"test data {name!r}: {counts[name]} samples, fewer than the model's batch "
                    f"of {per_run[name]}"
                )
        for i in range(n_runs):
            feeds = {}
            for name, arr in arrays.items():
                chunk = arr[i * per_run[name] : (i + 1) * per_run[name]]
                feeds[name] = chunk[0] if size[name] == 0 else chunk
            runs.append(feeds)
        used = {n: n_runs * per_run[n] for n in arrays}
        why = "each run takes the model's batch"
    else:  # every first dim is dynamic: every sample is used
        n = min(counts.values())
        chunk = min(n, DYNAMIC_BATCH_CHUNK)
        for start in range(0, n, chunk):
            runs.append({name: arr[start : start + chunk] for name, arr in arrays.items()})
        used = dict.fromkeys(arrays, n)
        why = "the inputs hold different sample counts"
    for name in arrays:
        if counts[name] > used[name]:
            notes.append(
                f"test data {name!r}: {counts[name] - used[name]} of {counts[name]} samples "
                f"not validated ({why})"
            )
    if not runs:
        raise ValueError("test data holds no sample")
    return runs, notes


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
        scale, zero = _io_quantization(detail)
        if scale is not None and _is_float(arr.dtype):  # an integer-I/O (quantized) file
            info = np.iinfo(detail["dtype"])
            arr = np.clip(np.round(arr.astype(np.float64) / scale) + zero, info.min, info.max)
        kwargs[name] = np.array(arr, dtype=detail["dtype"], order="C")
    raw = runner(**kwargs)
    out_details = runner.get_output_details()
    float_out = {
        row["name"] for row in _io_rows(io_table, "output") if _is_float(np.dtype(row["dtype"]))
    }

    outputs = {}
    for name, arr in raw.items():
        arr = np.array(arr, copy=True)  # detach from interpreter-owned memory
        scale, zero = _io_quantization(out_details.get(name, {}))
        if scale is not None and (name in float_out or io_table is None):
            arr = ((arr.astype(np.float64) - zero) * scale).astype(np.float32)
        perm = perms_out.get(name)
        if perm is not None:
            arr = np.transpose(arr, _inverse_perm(perm))
        outputs[name] = np.array(arr, order="C")  # (ascontiguousarray makes scalars 1-D)
    return outputs


def _io_quantization(detail: Mapping[str, Any]) -> tuple[float | None, int]:
    """(scale, zero point) of a quantized integer input/output (the full-integer variants);
    (None, 0) for everything else. Per-channel I/O quantization does not occur at the I/O."""
    q = detail.get("quantization_parameters") or {}
    scales = q.get("scales")
    dtype = detail.get("dtype")
    if scales is None or len(scales) != 1 or dtype is None or np.dtype(dtype).kind not in "iu":
        return None, 0
    zeros = q.get("zero_points")
    return float(scales[0]), int(zeros[0]) if zeros is not None and len(zeros) else 0


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


def tolerance(dtype: np.dtype, max_expected_abs: float, atol: float) -> float | None:
    """The largest absolute error :func:`compare` (``rtol`` None) accepts on a reference of
    ``dtype`` whose largest magnitude is ``max_expected_abs``: ``atol * max(1, max|expected|)``
    for floats (plus one step of a sub-float32 reference at that magnitude, the most
    :func:`reference_ulp` adds), 0 for integers and bools (exact), None for strings.

    Why: charts and tables must draw the threshold each tensor is judged by, which scales
    with the tensor's magnitude, not the bare ``atol``."""
    dtype = np.dtype(dtype)
    if _kind(dtype) == "S":
        return None
    if not _is_float(dtype):
        return 0.0
    if math.isnan(max_expected_abs):  # nothing compared (shape or kind mismatch)
        return None
    if math.isinf(max_expected_abs):
        return math.inf
    tol = atol * max(1.0, max_expected_abs)
    ulp = reference_ulp(np.array([max_expected_abs]).astype(dtype))
    return tol + (float(ulp[0]) if ulp is not None else 0.0)


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
    """Outcome of :func:`validate`. ``outputs`` maps ONNX output name -> metrics dict.

    ``notes``: remarks for the user (test data cast, samples left over, outputs too constant
    to prove anything); ``variants``: quantized files measured against the same reference
    (``{kind: {"outputs": {name: metrics}, "error": None | str}}``, never judged);
    ``skipped``: why nothing was compared (then ``outputs`` is empty); ``runs``: how many
    input sets were compared (the metrics are those of the worst run)."""

    outputs: dict[str, dict[str, Any]]
    atol: float
    rtol: float | None
    extra_outputs: list[str] = field(default_factory=list)
    feeds: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    expected: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    actual: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: str | None = None
    runs: int = 1

    @property
    def ok(self) -> bool:
        return (
            bool(self.outputs)
            and not self.extra_outputs
            and all(m.get("ok") for m in self.outputs.values())
        )

    @property
    def mismatch(self) -> bool:
        """True when the file was compared and differs: what fails a run (exit 4)."""
        return self.skipped is None and not self.ok

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no arrays)."""
        return {
            "ok": None if self.skipped else self.ok,
            "skipped": self.skipped,
            "atol": self.atol,
            "rtol": self.rtol,
            "runs": self.runs,
            "extra_outputs": list(self.extra_outputs),
            "outputs": {k: _jsonable(v) for k, v in self.outputs.items()},
            "notes": list(self.notes),
            "variants": {
                kind: {
                    "error": v.get("error"),
                    "outputs": {k: _jsonable(m) for k, m in v.get("outputs", {}).items()},
                }
                for kind, v in self.variants.items()
            },
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
    variants: Mapping[str, bytes] | None = None,
) -> ValidationResult:
    """Run both runtimes on ``feeds`` (default: :func:`seeded_inputs`) and compare outputs.

    ``model`` should be the converter's ``res.model`` (static shapes, or
    :func:`reference_model`); ``io_table`` is ``res.report["io"]``; ``variants`` (kind ->
    .tflite bytes, e.g. ``res.variants``) are measured on the same feeds (:func:`validate_runs`).
    """
    model = _as_model(model)
    feeds = dict(feeds) if feeds is not None else seeded_inputs(model, seed)
    return validate_runs(
        model, tflite_bytes, io_table, [feeds], atol, rtol, num_threads, variants=variants
    )


def validate_runs(
    model: onnx.ModelProto,
    tflite_bytes: bytes,
    io_table: Sequence[Mapping[str, Any]] | None,
    runs: Iterable[Mapping[str, np.ndarray]],
    atol: float = 1e-4,
    rtol: float | None = None,
    num_threads: int = 1,
    variants: Mapping[str, bytes] | None = None,
    notes: Sequence[str] = (),
) -> ValidationResult:
    """Compare the file with onnxruntime on every feed set of ``runs``; keep the worst run.

    Each variant file (``variants``: kind -> bytes) runs on the same feeds and is measured
    against the same onnxruntime outputs (the float model's): SQNR, max and mean error and
    cosine over all runs. Variants are never judged: quantization error is expected, the user
    needs its size. A variant LiteRT cannot run gets its ``error`` instead of metrics.
    An output whose reference varies by no more than the tolerance over all runs is flagged
    ``constant_reference`` and noted: any constant would match it, so the match proves nothing.
    """
    variants = dict(variants or {})
    worst: ValidationResult | None = None
    ranges: dict[str, _Range] = {}
    accuracy: dict[str, dict[str, _Accuracy]] = {kind: {} for kind in variants}
    failed: dict[str, str] = {}
    count = 0
    for feeds in runs:
        count += 1
        expected = run_onnxruntime(model, feeds)
        actual = run_litert(tflite_bytes, feeds, io_table, num_threads=num_threads)
        counts = _trim_padded_outputs(expected, actual)
        metrics = compare(expected, actual, atol=atol, rtol=rtol)
        extra = sorted(set(actual) - set(expected) - counts)
        res = ValidationResult(metrics, atol, rtol, extra, dict(feeds), expected, actual)
        if worst is None or _badness(res) > _badness(worst):
            worst = res
        for name, e in expected.items():
            ranges.setdefault(name, _Range()).add(e)
        for kind, data in variants.items():
            if kind in failed:
                continue
            try:
                got = run_litert(data, feeds, io_table, num_threads=num_threads)
            except Exception as exc:  # a measurement, not a verdict: report it and go on
                failed[kind] = f"LiteRT could not run it: {type(exc).__name__}: {exc}"
                continue
            _trim_padded_outputs(expected, got)
            for name, e in expected.items():
                accuracy[kind].setdefault(name, _Accuracy()).add(e, got.get(name))
    if worst is None:
        raise ValueError("no inputs to validate on")
    worst.runs = count
    worst.notes = list(notes)
    for name, m in worst.outputs.items():
        rng = ranges.get(name)
        if rng is None or m.get("missing"):
            continue
        spread = rng.spread()
        tol = 0.0 if not rng.is_float else atol * max(1.0, rng.max_abs)
        m["constant_reference"] = spread is not None and spread <= tol
        if m["constant_reference"]:
            worst.notes.append(
                f"output {name!r} is constant on these inputs (it varies by {spread:.3g}, "
                f"within the tolerance {tol:.3g}): a constant would match it too, so this "
                "match proves nothing about the conversion; validate on real inputs"
            )
    worst.variants = {
        kind: {"error": failed.get(kind), "outputs": {}}
        if kind in failed
        else {"error": None, "outputs": {n: a.metrics() for n, a in accuracy[kind].items()}}
        for kind in variants
    }
    return worst


def custom_ops_skip(ops: Sequence[str]) -> str:
    """Why a file with CUSTOM ops is not validated (one line)."""
    return (
        f"validation skipped: the file has CUSTOM ops ({', '.join(ops)}) that neither "
        "onnxruntime nor the stock LiteRT interpreter can run without your own kernels; "
        "nothing was compared"
    )


def log_notes(result: ValidationResult) -> None:
    """Each note (and a skip) as one warning line: they change what the verdict means."""
    if result.skipped:
        log.warning("warning: %s", result.skipped)
    for note in result.notes:
        log.warning("warning: %s", note)


class _Range:
    """Min/max of a reference output over every run (finite values; floats and ints)."""

    def __init__(self):
        self.lo, self.hi, self.max_abs = math.inf, -math.inf, 0.0
        self.is_float, self.numeric = False, True

    def add(self, arr: np.ndarray) -> None:
        arr = np.asarray(arr)
        if _kind(arr.dtype) not in "fiub" or arr.dtype.kind == "c":
            self.numeric = False
            return
        self.is_float = self.is_float or _is_float(arr.dtype)
        vals = arr.astype(np.float64).ravel()
        vals = vals[np.isfinite(vals)]
        if vals.size:
            self.lo, self.hi = min(self.lo, float(vals.min())), max(self.hi, float(vals.max()))
            self.max_abs = max(self.max_abs, abs(self.lo), abs(self.hi))

    def spread(self) -> float | None:
        return self.hi - self.lo if self.numeric and self.hi >= self.lo else None


class _Accuracy:
    """Running error of a variant's output against the reference, over every run."""

    def __init__(self):
        self.signal = self.noise = self.dot = self.power = self.sum_abs = 0.0
        self.max_abs = self.max_expected = 0.0
        self.count = 0
        self.problem: str | None = None

    def add(self, expected: np.ndarray, actual: np.ndarray | None) -> None:
        if self.problem is not None:
            return
        if actual is None:
            self.problem = "missing from the variant's outputs"
            return
        e, a = np.asarray(expected), np.asarray(actual)
        if e.shape != a.shape:
            self.problem = f"shape {a.shape} != {e.shape}"
            return
        if _kind(e.dtype) == "S" or "c" in (e.dtype.kind, np.asarray(a).dtype.kind):
            self.problem = "not a real-valued output"
            return
        e, a = e.astype(np.float64).ravel(), a.astype(np.float64).ravel()
        both = np.isfinite(e) & np.isfinite(a)
        if np.any(np.isfinite(e) != np.isfinite(a)) or np.any((~both) & (e != a)):
            self.max_abs = math.inf
        e, a = e[both], a[both]
        d = e - a
        self.signal += float(e @ e)
        self.noise += float(d @ d)
        self.dot += float(e @ a)
        self.power += float(a @ a)
        self.sum_abs += float(np.abs(d).sum())
        self.count += d.size
        if d.size:
            self.max_abs = max(self.max_abs, float(np.abs(d).max()))
            self.max_expected = max(self.max_expected, float(np.abs(e).max()))

    def metrics(self) -> dict[str, Any]:
        if self.problem is not None:
            return {"error": self.problem}
        if self.noise == 0.0:
            sqnr = math.inf
        elif self.signal == 0.0:
            sqnr = -math.inf
        else:
            sqnr = 10.0 * math.log10(self.signal / self.noise)
        if self.signal == 0.0 or self.power == 0.0:
            cosine = 1.0 if self.signal == self.power else 0.0
        else:
            cosine = self.dot / math.sqrt(self.signal * self.power)
        return {
            "sqnr_db": sqnr,
            "max_abs": self.max_abs,
            "mean_abs": self.sum_abs / self.count if self.count else 0.0,
            "cosine": cosine,
            "max_expected_abs": self.max_expected,
        }


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
    """Human-readable per-output summary, one row per ONNX output (or why nothing was
    compared)."""
    if result.skipped:
        return result.skipped
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
            if m.get("constant_reference"):
                status += " (constant)"
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
    runs = f", worst of {result.runs} runs" if result.runs > 1 else ""
    lines.append(
        f"validation {'PASSED' if result.ok else 'FAILED'} ({tol}, atol scaled by max|ref|{runs})"
    )
    if result.variants:
        lines += ["", format_variants(result)]
    return "\n".join(lines)


def format_variants(result: ValidationResult) -> str:
    """One row per (variant file, output): its error against onnxruntime's float model."""
    header = ["variant", "output", "sqnr_db", "max_abs", "mean_abs", "cosine"]
    rows = [header]
    for kind, v in result.variants.items():
        if v.get("error"):
            rows.append([kind, "-", v["error"], "", "", ""])
            continue
        for name, m in v["outputs"].items():
            if "error" in m:
                rows.append([kind, name, m["error"], "", "", ""])
            else:
                keys = ("sqnr_db", "max_abs", "mean_abs", "cosine")
                rows.append([kind, name, *(_fmt(m[k]) for k in keys)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        "quantized variants vs onnxruntime's float model, same inputs (measured, not judged)"
    )
    return "\n".join(lines)


def validate_samples(
    model: onnx.ModelProto,
    tflite_bytes: bytes,
    io_table: Sequence[Mapping[str, Any]] | None,
    data: Mapping[str, np.ndarray],
    atol: float = 1e-4,
    rtol: float | None = None,
    variants: Mapping[str, bytes] | None = None,
) -> ValidationResult:
    """Validate stacked samples (:func:`test_data_runs`) and return the worst run, with the
    notes on casts and left-over samples.

    ``data`` holds, per ONNX input, samples stacked on axis 0 in ONNX layout. ``model`` is the
    reference model (:func:`reference_model` for a file with dynamic dims).
    """
    runs, notes = test_data_runs(model, data)
    return validate_runs(
        model, tflite_bytes, io_table, runs, atol, rtol, variants=variants, notes=notes
    )


def _badness(res: ValidationResult) -> tuple[bool, float]:
    return (not res.ok, max((m.get("max_abs") or 0.0) for m in res.outputs.values()))
