"""Checks of conversion options: each value, each pair that contradicts, each option that
has no effect. The one place they live (``ConvertOptions.check`` runs them).

A problem is an :class:`~onnx2tflite_direct.errors.OptionError` whose template names the
options as ``{0}``, ``{1}`` (their ``convert()`` argument names), so the CLI and the API
each spell them their own way; an option without effect is a (template, names) warning.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from . import errors, frontend, onnx_rewrites, tfl_rewrites
from .errors import OptionError
from .quant import overrides as quant_overrides
from .quant import variants as quant_variants
from .quant.calibration import METHODS as CALIBRATION_METHODS
from .registry import decomposable_ops
from .signatures import value_problems as signature_problems
from .validate import load_test_data

QUANTIZE_CHOICES = quant_variants.CHOICES
IO_DTYPES = quant_variants.IO_DTYPES
QUANT_TYPES = quant_variants.QUANT_TYPES

# The largest dim a TFLite tensor can declare (its shapes are int32); a larger pin reached
# the ONNX protobuf's int64 field and failed there as an internal error.
MAX_DIM = 2**31 - 1

# Every rule id ``disable_rewrites`` accepts (constant folding is not optional).
REWRITE_RULES = tuple(
    name for name, _ in (*frontend.RULES, *onnx_rewrites.RULES, *tfl_rewrites.RULES)
)


# --------------------------------------------------------------------------------------------
# Checks (the one place)
# --------------------------------------------------------------------------------------------


def _wants_integer(o) -> bool:
    return any(c in quant_variants.INTEGER_FILES or c == "auto" for c in o.quantize)


def _bad(template: str, *names: str, reason: str = errors.INVALID_OPTION) -> OptionError:
    return OptionError(template, names, reason)


def value_problems(o) -> Iterable[OptionError]:
    """Each option's own value: types, ranges, choices, known names, readable array files."""
    for name in ("input_shapes", "test_data", "value_hints", "calibration_mean", "calibration_std"):
        if getattr(o, name) is not None and not isinstance(getattr(o, name), Mapping):
            yield _bad(f"{{0}} must be a dict keyed by input name, got {getattr(o, name)!r}", name)
            return
    unknown = sorted(set(o.quantize) - set(QUANTIZE_CHOICES))
    if unknown:
        yield _bad(
            f"{{0}}: unknown variant(s) {unknown}; available: {', '.join(QUANTIZE_CHOICES)}",
            "quantize",
        )
    if o.batch_size is not None and (
        not isinstance(o.batch_size, (int, np.integer))
        or isinstance(o.batch_size, bool)
        or o.batch_size < 1
    ):
        yield _bad(f"{{0}} must be a positive integer, got {o.batch_size!r}", "batch_size")
    elif o.batch_size is not None and o.batch_size > MAX_DIM:
        yield _bad(f"{{0}} {o.batch_size} is above {MAX_DIM} (TFLite dims are int32)", "batch_size")
    for name, dims in (o.input_shapes or {}).items():
        if isinstance(dims, (str, bytes)) or not isinstance(dims, Iterable):
            yield _bad(
                f"{{0}} {name}: expected a tuple of dims such as (1, 3, 224, 224), got {dims!r}",
                "input_shapes",
            )
        elif any(
            not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0 for d in dims
        ):
            yield _bad(
                f"{{0}} {name}: dims must be integers >= 0, got {tuple(dims)}", "input_shapes"
            )
        elif any(d > MAX_DIM for d in dims):
            yield _bad(
                f"{{0}} {name}: a dim above {MAX_DIM} (TFLite dims are int32), got "
                f"{tuple(int(d) for d in dims)}",
                "input_shapes",
            )
    if not (isinstance(o.atol, (int, float)) and math.isfinite(o.atol) and o.atol >= 0):
        yield _bad(f"{{0}} must be a finite number >= 0, got {o.atol!r}", "atol")
    if not isinstance(o.seed, (int, np.integer)) or o.seed < 0:
        yield _bad(f"{{0}} must be an integer >= 0, got {o.seed!r}", "seed")
    for name, choices in (
        ("calibration_method", CALIBRATION_METHODS),
        ("input_quant_dtype", IO_DTYPES),
        ("output_quant_dtype", IO_DTYPES),
        ("quant_type", QUANT_TYPES),
    ):
        if getattr(o, name) not in choices:
            yield _bad(f"{{0}} must be one of {', '.join(choices)}", name)
    block = o.int4_block_size
    integer = isinstance(block, (int, np.integer)) and not isinstance(block, bool)
    if not integer or block < 0 or block % 32:
        yield _bad(f"{{0}} must be 0 or a multiple of 32, got {block!r}", "int4_block_size")
    budget = o.int4_size_budget
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float, np.number))
        or not 0.0 <= float(budget) <= 1.0
    ):
        yield _bad(f"{{0}} must be a number in [0, 1], got {budget!r}", "int4_size_budget")
    target = o.target_sqnr
    if target is not None and (
        isinstance(target, bool)
        or not isinstance(target, (int, float, np.number))
        or not 0.0 < float(target) <= 200.0
    ):
        yield _bad(f"{{0}} must be a number of dB in (0, 200], got {target!r}", "target_sqnr")
    if "auto" in o.quantize and target is None:
        yield _bad("{0} auto needs {1} DB (the output SQNR to meet)", "quantize", "target_sqnr")
    if target is not None and "auto" not in o.quantize:
        yield _bad("{0} only applies to {1} auto", "target_sqnr", "quantize")
    percentile = o.calibration_percentile
    if not isinstance(percentile, (int, float, np.floating)) or not 50.0 < percentile <= 100.0:
        yield _bad("{0} must be in (50, 100]", "calibration_percentile")
    names = o.int32_inputs
    if not isinstance(names, bool) and not all(isinstance(n, str) and n for n in names):
        yield _bad(f"{{0}} must be True or input names, got {names!r}", "int32_inputs")
    if o.keep_int64_inputs and names:
        yield _bad(
            "{0} and {1} contradict each other: give one", "int32_inputs", "keep_int64_inputs"
        )
    for name in ("inputs", "outputs"):  # a cut naming a tensor twice made an invalid model
        names = getattr(o, name)
        if names and not isinstance(names, (str, bytes)):
            twice = sorted({n for n in names if list(names).count(n) > 1})
            if twice:
                yield _bad(f"{{0}} names {', '.join(map(repr, twice))} twice", name)
    yield from decompose_problems(o.decompose)
    yield from rewrite_problems(o.disable_rewrites)
    try:
        quant_overrides.parse(o.quant_overrides)
    except ValueError as exc:
        yield _bad(f"{{0}} {exc}", "quant_overrides")
    for name in ("signatures", "merge"):
        if getattr(o, name) is not None and not isinstance(getattr(o, name), Mapping):
            yield _bad(
                f"{{0}} must be a dict keyed by signature name, got {getattr(o, name)!r}", name
            )
            return
    for problem in signature_problems(o.signatures, o.merge):
        yield _bad(f"{{0}}/{{1}}: {problem}", "signatures", "merge")
    for key, inputs in (o.signatures or {}).items():
        for name, dims in inputs.items() if isinstance(inputs, Mapping) else ():
            if any(isinstance(d, (int, np.integer)) and d > MAX_DIM for d in dims or ()):
                yield _bad(
                    f"{{0}} {key}: {name} has a dim above {MAX_DIM} (TFLite dims are int32)",
                    "signatures",
                )
    yield from calibration_source_problems(o.calibration_data)
    if isinstance(o.calibration_data, (list, tuple)):
        for spec in o.calibration_data:
            name, sep, path = str(spec).partition("=")
            if sep:
                problem = array_file_problem(path, "npy")
                if problem:
                    yield _bad(f"{{0}} {spec}: {problem}", "calibration_data")
    elif isinstance(o.calibration_data, (str, Path)) and path_kind(o.calibration_data) == "dir":
        for path in sorted(Path(o.calibration_data).glob("*.npz")):
            problem = array_file_problem(path, "npz")
            if problem:
                yield _bad(f"{{0}} {o.calibration_data}: {problem}", "calibration_data")


def calibration_source_problems(source) -> Iterable[OptionError]:
    """``calibration_data`` of a form the calibration cannot read: it takes ``{NAME: array}``,
    ``NAME=file.npy`` entries or one folder of ``.npz`` samples. A bare ``.npy`` path (no
    input name) used to reach the folder reader and fail there as an internal error."""
    if source is None or isinstance(source, Mapping):
        return
    if isinstance(source, (list, tuple)):
        if all(isinstance(s, (str, os.PathLike)) for s in source):
            return
        kinds = sorted({type(s).__name__ for s in source})
        yield _bad(
            f"{{0}} as a list takes NAME=file.npy entries, got {', '.join(kinds)} items "
            "(in Python, give {NAME: array})",
            "calibration_data",
        )
        return
    if not isinstance(source, (str, os.PathLike)):
        yield _bad(
            f"{{0}} must be {{NAME: array}}, NAME=file.npy entries or a folder of .npz "
            f"samples, got {type(source).__name__}",
            "calibration_data",
        )
        return
    kind = path_kind(source)
    if kind == UNREACHABLE:
        yield _bad(f"{{0}} {str(source)!r}: {UNREACHABLE_TEXT}", "calibration_data")
    elif kind == "file":
        yield _bad(
            f"{{0}} {str(source)!r} is a file: name the input it feeds (NAME={source}, one "
            "per input) or give a folder of .npz samples keyed by input name",
            "calibration_data",
        )


def decompose_problems(ops) -> Iterable[OptionError]:
    """``decompose`` names ops without a primitive decomposition (also checked by
    ``pipeline.lower_model``)."""
    without = sorted(set(ops or ()) - set(decomposable_ops()))
    if without:
        yield _bad(
            f"{{0}}: no primitive decomposition for {without}; available: "
            f"{', '.join(decomposable_ops())}",
            "decompose",
        )


def rewrite_problems(rules) -> Iterable[OptionError]:
    """``disable_rewrites`` names unknown rules (also checked by ``pipeline.lower_model``)."""
    unknown = sorted(set(rules or ()) - set(REWRITE_RULES))
    if unknown:
        yield _bad(
            f"{{0}}: unknown rewrite rule(s) {unknown}; known: {', '.join(REWRITE_RULES)}",
            "disable_rewrites",
        )


def conflicts(o) -> Iterable[OptionError]:
    """Options that contradict each other: the message names both."""
    both = sorted(set(o.keep_layout) & set(o.channel_last))
    if both:
        yield _bad(f"{{0}} and {{1}} both name {', '.join(both)}", "keep_layout", "channel_last")
    if o.batch_size is not None:
        for name, dims in (o.input_shapes or {}).items():
            if dims and dims[0] != o.batch_size:
                yield _bad(
                    f"{{0}} pins {name}'s first dim to {dims[0]} but {{1}} says {o.batch_size}",
                    "input_shapes",
                    "batch_size",
                )
    if o.calibration_data is not None and o.calibration_random:
        yield _bad("give {0} or {1}, not both", "calibration_data", "calibration_random")
    if o.test_data and o.batch_size:
        for name, arr in o.test_data.items():
            n = int(np.shape(arr)[0]) if np.ndim(arr) else 1
            if n % o.batch_size:
                yield _bad(
                    f"{{0}} {name} holds {n} samples, not a multiple of {{1}} {o.batch_size} "
                    "(the last batch would be incomplete)",
                    "test_data",
                    "batch_size",
                )
    if o.signatures or o.merge:  # one float file, its signatures lowered one by one
        for name in ("quantize", "validate"):
            if getattr(o, name):
                yield _bad(
                    "{0} does not work with {1}/{2} yet: convert each signature's model on its "
                    "own to quantize or validate it",
                    name,
                    "signatures",
                    "merge",
                )
    yield from override_conflicts(o)
    if _wants_integer(o) and o.calibration_data is None and not o.calibration_random:
        yield _bad(
            "integer quantization needs calibration samples: give {0} (per input, ONNX "
            "layout, samples on axis 0, or a folder of .npz samples); {1} uses random inputs "
            "(poor accuracy)",
            "calibration_data",
            "calibration_random",
            reason=errors.MISSING_CALIBRATION_DATA,
        )


def override_conflicts(o) -> Iterable[OptionError]:
    """An override whose precision none of the asked variants can give (int16x8 with only
    ``fp16``): refused rather than silently ignored."""
    if not o.quantize:
        return
    try:
        overrides = quant_overrides.parse(o.quant_overrides)
    except ValueError:
        return  # (reported by value_problems)
    for ov in quant_overrides.unhonoured(overrides, o.quantize):
        able = [c for c, ps in quant_overrides.HONOURED_BY.items() if ov.precision in ps]
        where = f"{{1}} {' or '.join(able)} can" if able else "no variant of this version can"
        yield _bad(
            f"{{0}} {ov.spec}: no file of {{1}} {' '.join(o.quantize)} can run a node at "
            f"{ov.precision} ({where})",
            "quant_overrides",
            "quantize",
        )


def dead_options(
    o, defaults: dict, validating: bool = False
) -> Iterable[tuple[str, tuple[str, ...]]]:
    """(message, option names) of options given where they change nothing."""
    if o.custom_op_allowlist and not o.allow_custom_ops:
        yield "{0} has no effect without {1}", ("custom_op_allowlist", "allow_custom_ops")
    if o.keep_io_layout and o.keep_layout:
        yield (
            "{0} has no effect with {1} (every input and output is kept)",
            (
                "keep_layout",
                "keep_io_layout",
            ),
        )
    if not o.quantize:
        for name in (
            "calibration_data",
            "calibration_random",
            "calibration_mean",
            "calibration_std",
            "strict_integer",
            "allow_float_ops",
            "quant_overrides",
        ):
            if getattr(o, name) not in (None, False, ()):
                yield "{0} has no effect without {1}", (name, "quantize")
    elif not _wants_integer(o):
        for name in ("calibration_random", "strict_integer", "allow_float_ops"):
            if getattr(o, name):
                yield "{0} has no effect without {1} int8 or int16x8", (name, "quantize")
    if o.calibration_percentile != 99.99 and o.calibration_method != "percentile":
        yield (
            "{0} has no effect unless {1} is percentile",
            (
                "calibration_percentile",
                "calibration_method",
            ),
        )
    if o.strict_integer and o.allow_float_ops:
        yield "{0} has no effect with {1}", ("allow_float_ops", "strict_integer")
    if "int8" not in o.quantize:
        for name in ("input_quant_dtype", "output_quant_dtype"):
            if getattr(o, name) != "int8":
                yield "{0} has no effect without {1} int8", (name, "quantize")
    if o.quant_type != "per-channel" and not set(o.quantize) - {"fp16", "int4"}:
        yield "{0} has no effect without {1} dynamic, int8 or int16x8", ("quant_type", "quantize")
    if o.int4_block_size != 32 and "int4" not in o.quantize:
        yield "{0} has no effect without {1} int4", ("int4_block_size", "quantize")
    if o.int4_size_budget != 0.3 and "int4" not in o.quantize:
        yield "{0} has no effect without {1} int4", ("int4_size_budget", "quantize")
    if (o.calibration_mean or o.calibration_std) and o.calibration_random:
        yield (
            "{0}/{1} have no effect on {2}",
            (
                "calibration_mean",
                "calibration_std",
                "calibration_random",
            ),
        )
    if o.nms_dynamic_output:
        yield (
            "{0} has no effect: NonMaxSuppression's exact dynamic-size output is the default "
            "({1} asks for the fixed-size padded one)",
            ("nms_dynamic_output", "nms_padded_output"),
        )
    if not o.fuse and o.disable_rewrites:
        yield "{0} has no effect with {1} (every rewrite is off)", ("disable_rewrites", "fuse")
    if not (o.validate or validating):
        for name in ("atol", "seed", "value_hints", "test_data"):
            if getattr(o, name) not in (None, defaults[name]):
                yield "{0} has no effect without {1}", (name, "validate")
    if o.test_data and o.value_hints:
        yield (
            "{0} has no effect with {1} (only generated inputs are filled)",
            (
                "value_hints",
                "test_data",
            ),
        )


# --------------------------------------------------------------------------------------------
# Array files (--test-data, --calibration-data)
# --------------------------------------------------------------------------------------------

_MAGIC = {"npy": b"\x93NUMPY", "npz": b"PK"}
UNREACHABLE = "unreachable"
UNREACHABLE_TEXT = "cannot be reached: a folder on its path is not accessible (permission denied)"


def path_kind(path) -> str:
    """``"dir"``, ``"file"``, ``"missing"`` or ``UNREACHABLE``, without raising. Why:
    ``Path.exists()`` raises PermissionError for a path under a folder the user cannot enter,
    which became a traceback (exit 1) for -o, --html-report, --calibration-data, --test-data.
    """
    try:
        mode = os.stat(path).st_mode
    except PermissionError:
        return UNREACHABLE
    except (OSError, ValueError):  # missing, under a file, a name the OS rejects
        return "missing"
    return "dir" if stat.S_ISDIR(mode) else "file"


def array_file_problem(path: str | Path, kind: str = "npy") -> str | None:
    """Why ``path`` cannot be read as a numpy ``kind`` file, or None. Checked before numpy
    reads it: numpy's own message for a foreign file is about pickles, which misleads."""
    path = Path(path)
    found = path_kind(path)
    if found == UNREACHABLE:
        return f"{str(path)!r} {UNREACHABLE_TEXT}"
    if found == "missing":
        return f"no such file {str(path)!r}"
    if found == "dir":
        return f"{str(path)!r} is a folder, not a .{kind} file"
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_MAGIC[kind]))
    except OSError as exc:
        return f"cannot read {str(path)!r}: {exc.strerror or exc}"
    if head != _MAGIC[kind]:
        what = "numpy.save" if kind == "npy" else "numpy.savez"
        return f"{str(path)!r} is not a .{kind} file (write it with {what})"
    return None


def load_arrays(specs: list[str]) -> dict[str, np.ndarray]:
    """``NAME=file.npy`` entries -> arrays; a problem is an ``invalid_option`` naming
    ``test_data``."""
    for spec in specs:
        problem = array_file_problem(spec.partition("=")[2])
        if problem:
            raise _bad(f"{{0}} {spec}: {problem}", "test_data")
    try:
        return load_test_data(specs)
    except (OSError, ValueError, TypeError) as exc:
        raise _bad(f"{{0}}: {exc}", "test_data") from None


def check_output_dir(output_dir) -> None:
    """An output folder that cannot be one is an ``invalid_option`` naming it, before any work:
    not a path, empty, an existing file, under a file, or (the folder itself or, when it is
    still to be created, its nearest existing parent) not writable."""
    if output_dir is None:
        return
    if not isinstance(output_dir, (str, os.PathLike)):
        raise _bad(f"{{0}} must be a folder path, got {type(output_dir).__name__}", "output_dir")
    if not str(output_dir):
        raise _bad("{0} is empty: give a folder ('.' for the current one)", "output_dir")
    path = Path(output_dir)
    if path_kind(path) == "file":
        raise _bad(
            f"{{0}} {str(output_dir)!r} is a file; {{0}} must be a folder (outputs are named "
            "<stem>_float32.tflite, <stem>_op_coverage_report.json ... inside it)",
            "output_dir",
        )
    problem = folder_write_problem(path)
    if problem:
        raise _bad(f"{{0}} {str(output_dir)!r}: {problem}", "output_dir")


def folder_write_problem(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (created first if missing), or None: its
    nearest existing ancestor must be a writable, searchable folder."""
    existing = Path(os.path.abspath(folder))
    while (kind := path_kind(existing)) == "missing" and existing != existing.parent:
        existing = existing.parent
    if kind == UNREACHABLE:
        return f"{str(existing)!r} {UNREACHABLE_TEXT}"
    if kind != "dir":
        return f"{str(existing)!r} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"folder {str(existing)!r} is not writable (permission denied)"
    return None
