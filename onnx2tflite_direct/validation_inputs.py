"""The inputs a validation runs on: seeded random feeds, or the user's stacked test samples
cut into runs that fit the converted file.

Why a module of its own: calibration (``quant/``) and validation both feed models, and test
data is user input that must be checked (names, shapes, dtypes) before any runtime sees it,
so a mistake is one clear line, not a runtime's error. Arrays are in ONNX layout.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from .comparison import _is_float
from .dynamic_shapes import unpin

# Small non-negative range for integer inputs: safe as indices, repeats, axes or shape values.
_INT_HIGH = 4


def _as_model(model: onnx.ModelProto | str | Path | bytes) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, bytes | bytearray):
        return onnx.load_from_string(bytes(model))
    return onnx.load(str(model))


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


def _conform_dtype(
    name: str, arr: np.ndarray, dtype: np.dtype, notes: list[str], what: str = "test data"
) -> np.ndarray:
    """``arr`` in the input's dtype when that loses nothing the user meant; ValueError else.

    Real numbers become the input's float dtype (numpy saves float64 by default; the model's
    own precision is what it computes in); integers and bools become the input's integer
    dtype when every value survives the cast. Each cast is noted. ``what`` names the data in
    messages (calibration reuses this check)."""
    if arr.dtype == dtype:
        return arr
    real = _is_float(arr.dtype) or arr.dtype.kind in "iub"
    if _is_float(dtype) and "c" not in (dtype.kind, arr.dtype.kind) and real:
        cast = arr.astype(dtype)
    elif dtype.kind in "iub" and arr.dtype.kind in "iub":
        cast = arr.astype(dtype)
        if not np.array_equal(cast.astype(arr.dtype), arr):
            raise ValueError(f"{what} {name!r}: {arr.dtype} values do not fit the input's {dtype}")
    else:
        raise ValueError(f"{what} {name!r} is {arr.dtype}; the model input takes {dtype}")
    notes.append(f"{what} {name!r}: {arr.dtype} samples cast to {dtype}, the input's dtype")
    return cast


def test_data_runs(
    model: onnx.ModelProto, data: Mapping[str, np.ndarray]
) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """The feeds of the validation runs over stacked test samples, and notes for the user.

    ``model`` is the reference model (:func:`reference_model`: dynamic dims symbolic). Per
    input, samples are stacked on axis 0 in ONNX layout (a scalar input: one value per
    sample). Where the model fixes the first dim ``B``, runs take exactly ``B`` samples;
    where every first dim is dynamic, runs take up to :data:`DYNAMIC_BATCH_CHUNK` samples
    (the file is resized to each run; the last run may be shorter), so no sample is dropped.
    Samples are cast to the input's dtype where nothing is lost (:func:`_conform_dtype`); a
    sample shape that cannot fit the input, an unknown or missing input name, or fewer
    samples than one run raise ``ValueError`` naming the input. Left-over samples are noted.
    """
    inputs = {vi.name: vi for vi in graph_inputs(model)}
    unknown, missing = sorted(set(data) - set(inputs)), sorted(set(inputs) - set(data))
    if unknown or missing:
        raise ValueError(
            f"test data must name every model input exactly: unknown {unknown}, missing {missing}"
        )
    if not inputs:
        raise ValueError("the model has no inputs to feed test data to")
    notes: list[str] = []
    arrays: dict[str, np.ndarray] = {}
    per_run: dict[str, int | None] = {}  # samples per run; None: the first dim is dynamic
    scalars = set()
    for name, vi in inputs.items():
        arr = np.asarray(data[name])
        dims = _input_dims(vi)
        if dims == []:  # a scalar input: samples stacked into a vector, one per run
            dims = [1]
            scalars.add(name)
        if dims is not None:
            fits = arr.ndim == len(dims) and all(
                d is None or d == a for d, a in zip(dims[1:], arr.shape[1:], strict=True)
            )
            if not fits:
                want = "x".join("?" if d is None else str(d) for d in dims)
                raise ValueError(
                    f"test data {name!r} has shape {'x'.join(map(str, arr.shape))}; the model "
                    f"input is {'scalar' if name in scalars else want} (samples stacked on "
                    "axis 0)"
                )
        arrays[name] = _conform_dtype(name, arr, _np_dtype(vi.type.tensor_type.elem_type), notes)
        per_run[name] = None if dims is None else dims[0]
    counts = {name: arr.shape[0] for name, arr in arrays.items()}
    fixed = [n for n in per_run.values() if n is not None]
    if fixed:  # the file fixes a batch (a dynamic-batch input beside it follows the smallest)
        take = {name: n if n is not None else min(fixed) for name, n in per_run.items()}
        for name in arrays:
            if counts[name] < take[name]:
                raise ValueError(
                    f"test data {name!r}: {counts[name]} samples, fewer than the model's batch "
                    f"of {take[name]}"
                )
        n_runs = min(counts[name] // take[name] for name in arrays)
        starts = {name: [i * take[name] for i in range(n_runs)] for name in arrays}
        used = {name: n_runs * take[name] for name in arrays}
        why = {name: f"runs take {take[name]}, the model's batch" for name in arrays}
    else:  # every first dim is dynamic: every sample is used
        n = min(counts.values())
        take = dict.fromkeys(arrays, min(n, DYNAMIC_BATCH_CHUNK))
        starts = {name: list(range(0, n, take[name])) for name in arrays}
        used = dict.fromkeys(arrays, n)
        why = dict.fromkeys(arrays, "the inputs hold different sample counts")
    runs = []
    for i in range(min(len(v) for v in starts.values())):
        feeds = {}
        for name, arr in arrays.items():
            start = starts[name][i]
            feeds[name] = arr[start] if name in scalars else arr[start : start + take[name]]
        runs.append(feeds)
    for name in arrays:
        if counts[name] > used[name]:
            notes.append(
                f"test data {name!r}: {counts[name] - used[name]} of {counts[name]} samples "
                f"not validated ({why[name]})"
            )
    if not runs:
        raise ValueError("test data holds no sample")
    return runs, notes
