"""Numerical validation: run the ONNX model (onnxruntime) and the TFLite model (LiteRT) on the
same inputs and compare every output (the verdict is ``comparison.py``'s, the inputs come from
``validation_inputs.py``); measure every quantized variant on the same inputs.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

# The comparison and the inputs live in their own modules; their public names (and the few
# private helpers other modules and tools use) stay importable from here.
from .comparison import _is_float, _kind, compare, reference_ulp, tolerance  # noqa: F401
from .driver import VALID_COUNT_SUFFIX
from .tflite_reader import EXTRA_HINT
from .validation_inputs import (  # noqa: F401
    DYNAMIC_BATCH_CHUNK,
    _as_model,
    _np_dtype,
    graph_inputs,
    iter_feed_batches,
    iter_samples,
    load_test_data,
    random_array,
    reference_model,
    seeded_inputs,
    test_data_runs,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Lazy runtime imports
# --------------------------------------------------------------------------------------------


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"onnxruntime is needed to validate conversions; install it with `{EXTRA_HINT}`"
        ) from e
    return onnxruntime


def _import_litert_interpreter():
    try:
        from ai_edge_litert import interpreter
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"ai-edge-litert is needed to run .tflite files; install it with `{EXTRA_HINT}`"
        ) from e
    return interpreter


# --------------------------------------------------------------------------------------------
# Runtimes
# --------------------------------------------------------------------------------------------


def onnxruntime_runner(
    model: onnx.ModelProto | bytes | str | Path,
) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """A function of feeds giving the reference outputs from onnxruntime (CPU), keyed by ONNX
    output name; the session is built once, so many runs (test data) do not rebuild it.

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

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = sess.run(names, dict(feeds))
        return {n: np.asarray(v) for n, v in zip(names, outs, strict=True)}

    return run


def run_onnxruntime(
    model: onnx.ModelProto | bytes | str | Path, feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """One onnxruntime run (:func:`onnxruntime_runner`)."""
    return onnxruntime_runner(model)(feeds)


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


def litert_runner(
    tflite_bytes: bytes,
    io_table: Sequence[Mapping[str, Any]] | None,
    num_threads: int = 1,
    use_xnnpack: bool = True,
) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """A function running the ``serving_default`` signature on ONNX-layout feeds and returning
    ONNX-layout outputs; the interpreter is built once (the signature runner resizes dynamic
    dims to each call's feeds).

    Each input is transposed by its ``perm`` from ``io_table`` and cast to the TFLite input
    dtype (quantized with the file's scale and zero point when the file takes integers for a
    float ONNX input: the full-integer variants); each output is transposed back by the
    inverse perm (and dequantized likewise). Without an ``io_table`` (or for names missing
    from it) the layouts are taken to be identical.
    """
    interp = make_interpreter(tflite_bytes, num_threads=num_threads, use_xnnpack=use_xnnpack)
    runner = interp.get_signature_runner("serving_default")
    in_details = runner.get_input_details()
    out_details = runner.get_output_details()
    perms_in = {row["name"]: row.get("perm") for row in _io_rows(io_table, "input")}
    perms_out = {row["name"]: row.get("perm") for row in _io_rows(io_table, "output")}
    float_out = {
        row["name"] for row in _io_rows(io_table, "output") if _is_float(np.dtype(row["dtype"]))
    }

    def run(feeds_onnx_layout: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = set(in_details) - set(feeds_onnx_layout)
        if missing:
            raise ValueError(f"no feed for TFLite signature input(s) {sorted(missing)}")
        kwargs = {}
        for name, detail in in_details.items():
            arr = np.asarray(feeds_onnx_layout[name])
            perm = perms_in.get(name)
            if perm is not None:
                arr = np.transpose(arr, perm)
            # The signature runner silently resizes inputs; a shape the file does not declare
            # would hide a layout bug (or fail later with an obscure delegate error): refuse it.
            want = detail.get("shape_signature")
            want = detail["shape"] if want is None or len(want) == 0 else want
            fits = len(want) == arr.ndim and all(
                w in (-1, a) for w, a in zip(want, arr.shape, strict=False)
            )
            if not fits:
                raise ValueError(
                    f"input {name!r}: feed shape {tuple(arr.shape)} (after perm {perm}) does "
                    f"not fit the TFLite input shape {tuple(int(d) for d in want)}"
                )
            scale, zero = _io_quantization(detail)
            if scale is not None and _is_float(arr.dtype):  # an integer-I/O (quantized) file
                info = np.iinfo(detail["dtype"])
                arr = np.clip(np.round(arr.astype(np.float64) / scale) + zero, info.min, info.max)
            kwargs[name] = np.array(arr, dtype=detail["dtype"], order="C")
        raw = runner(**kwargs)
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

    return run


def run_litert(
    tflite_bytes: bytes,
    feeds_onnx_layout: Mapping[str, np.ndarray],
    io_table: Sequence[Mapping[str, Any]] | None,
    num_threads: int = 1,
    use_xnnpack: bool = True,
) -> dict[str, np.ndarray]:
    """One LiteRT run (:func:`litert_runner`)."""
    return litert_runner(tflite_bytes, io_table, num_threads, use_xnnpack)(feeds_onnx_layout)


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
    reference = onnxruntime_runner(model)
    converted = litert_runner(tflite_bytes, io_table, num_threads)
    variant_runners: dict[str, Callable] = {}
    worst: ValidationResult | None = None
    ranges: dict[str, _Range] = {}
    accuracy: dict[str, dict[str, _Accuracy]] = {kind: {} for kind in variants}
    failed: dict[str, str] = {}
    count = 0
    for feeds in runs:
        count += 1
        expected = reference(feeds)
        actual = converted(feeds)
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
                if kind not in variant_runners:
                    variant_runners[kind] = litert_runner(data, io_table, num_threads)
                got = variant_runners[kind](feeds)
            except Exception as exc:  # a measurement, not a verdict: report it and go on
                first = (str(exc).strip().splitlines() or [""])[0]  # one line in the table
                failed[kind] = f"LiteRT could not run it: {type(exc).__name__}: {first}"
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


def custom_ops(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ONNX ops (``domain.OpType``) a report's node rows turned into CUSTOM ops."""
    return sorted(
        {
            f"{row['domain'] + '.' if row.get('domain') else ''}{row['op_type']}"
            for row in rows
            if row.get("mode") == "custom"
        }
    )


def custom_ops_skip(ops: Sequence[str], what: str = "validation") -> str:
    """Why a file with CUSTOM ops is not validated (one line)."""
    return (
        f"{what} skipped: the file has CUSTOM ops ({', '.join(ops)}) that neither "
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
    """Min/max of a reference output over every run (finite values; floats and ints).

    Only an output of several values can be called constant: a single value (a scalar, a
    count, one class index at batch 1) says nothing either way."""

    def __init__(self):
        self.lo, self.hi, self.max_abs = math.inf, -math.inf, 0.0
        self.is_float, self.numeric, self.count = False, True, 0

    def add(self, arr: np.ndarray) -> None:
        arr = np.asarray(arr)
        if _kind(arr.dtype) not in "fiub" or arr.dtype.kind == "c":
            self.numeric = False
            return
        self.is_float = self.is_float or _is_float(arr.dtype)
        vals = arr.astype(np.float64).ravel()
        vals = vals[np.isfinite(vals)]
        self.count += vals.size
        if vals.size:
            self.lo, self.hi = min(self.lo, float(vals.min())), max(self.hi, float(vals.max()))
            self.max_abs = max(self.max_abs, abs(self.lo), abs(self.hi))

    def spread(self) -> float | None:
        return self.hi - self.lo if self.numeric and self.count > 1 else None


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
