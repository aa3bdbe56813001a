"""``convert()``: front end -> checks -> layout-driven lowering -> rewrites -> builder -> files.

Every failure leaves as a :class:`~onnx2tflite_direct.errors.ConversionError`; the coverage
report is produced (and written when asked) whether conversion succeeds or not; output files
are written atomically so a failed run never leaves a half-written .tflite.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import mmap
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from . import (
    builder,
    errors,
    gpu_check,
    int32_inputs,
    onnx_rewrites,
    option_checks,
    report,
    signatures,
    tfl,
)
from . import gpu_friendly as gpu
from . import validate as val
from .atomic import publish, write_atomic, write_pending
from .driver import Driver, LoweringOptions
from .dynamic_shapes import DynamicShapeModel, lower_with_dynamic_shapes, unpin
from .errors import ConversionError, InternalError, OptionError, UnsupportedError
from .extract import extract_subgraph
from .frontend import load_graph, load_model
from .frontend.zipmap import drop_zipmap
from .graph_lowering import lower_graph
from .options import (  # noqa: F401  (REWRITE_RULES: re-exported)
    REWRITE_RULES,
    ConvertOptions,
    check_output_dir,
    convert_signature,
    to_api_wording,
)
from .quant import qdq_import
from .quant import variants as quant_variants
from .quant.qoperator_expand import QUANTIZATION_OPS
from .tensor_mapping import tensor_map


@dataclass
class ConversionResult:
    report: dict = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    validation: object | None = None
    # Further variants asked for with ``quantize``: kind ("float16") -> .tflite bytes.
    variants: dict[str, bytes] = field(default_factory=dict)
    # Internal state, set by ``convert`` (not constructor arguments, not part of the API).
    _model_loader: Callable[[], onnx.ModelProto] | None = field(
        default=None, init=False, repr=False
    )
    # Builds the tensor map from the lowering until it is first read (see ``tensor_map``).
    _map_builder: Callable[[], dict[str, dict]] | None = field(default=None, init=False, repr=False)
    _tensor_map: dict[str, dict] | None = field(default=None, init=False, repr=False)
    _model: onnx.ModelProto | None = field(default=None, init=False, repr=False)
    # The float32 file: bytes, a memoryview of the written file (outputs >= 1 GiB), or the
    # builder's chunks, joined into bytes only when someone asks (writing needs no join).
    _tflite: object = field(default=b"", init=False, repr=False)

    @property
    def tflite_bytes(self) -> bytes | memoryview:
        if not isinstance(self._tflite, (bytes, memoryview)):
            self._tflite = self._tflite.tobytes()
        return self._tflite

    @property
    def tensor_map(self) -> dict[str, dict]:
        """ONNX tensor name -> {"tensor": TFLite tensor name, "perm", "inner", "derived",
        "internal"} (``tensor_mapping.tensor_map``). Built on first use: only diagnostics and
        calibration read it, and on a large graph it costs as much as a lowering pass."""
        if self._tensor_map is None:
            builder, self._map_builder = self._map_builder, None
            self._tensor_map = builder() if builder is not None else {}
        return self._tensor_map

    @property
    def model(self) -> onnx.ModelProto | None:
        """The ONNX model as converted (user's shape pins applied): what onnxruntime runs."""
        if self._model is None and self._model_loader is not None:
            self._model = self._model_loader()
        return self._model


def _stem(model) -> str:
    if isinstance(model, (str, os.PathLike)):
        return Path(model).stem
    return "model"


def _model_source(model, where: str = ""):
    """``model`` as the loaders take it: a path (str or ``os.PathLike``) or a ModelProto as
    given; serialized bytes (what ``onnx.ModelProto.SerializeToString`` or a download gives)
    parsed into a ModelProto, as ``onnx.load_model_from_string`` does. Anything else, bytes
    that hold no ONNX graph, or a path under a folder the user cannot enter is a bad-input
    error saying what is expected (these were internal errors: pathlib's TypeError, the
    loader's PermissionError). ``where`` prefixes the message (a merged signature's name)."""
    if isinstance(model, (onnx.ModelProto, str, os.PathLike)):
        if not isinstance(model, onnx.ModelProto):
            if option_checks.path_kind(model) == option_checks.UNREACHABLE:
                raise errors.BadInputError(
                    errors.INVALID_MODEL,
                    f"{where}model file {str(model)!r} {option_checks.UNREACHABLE_TEXT}",
                )
        return model
    if isinstance(model, (bytes, bytearray, memoryview)):
        try:
            proto = onnx.load_model_from_string(bytes(model))
        except Exception as exc:  # protobuf raises several types for garbage input
            proto, problem = None, f": {exc}"
        else:
            problem = ""
        if proto is None or (not proto.graph.node and not proto.graph.output):
            raise errors.BadInputError(
                errors.INVALID_MODEL,
                f"{where}the {len(model)} bytes given as the model are not a serialized ONNX "
                f"model{problem or ' (no graph)'}",
            )
        return proto
    raise errors.BadInputError(
        errors.INVALID_MODEL,
        f"{where}the model must be a path (str or os.PathLike), an onnx.ModelProto or its "
        f"serialized bytes, got {type(model).__name__}",
    )


def _merge_name_problem(model, stem: str, o: ConvertOptions) -> None:
    """A ``merge`` name equal to the main model's own signature name (its stem when
    ``signatures`` names none) would give the file two signatures of one name (was an
    internal error from the builder). Checked here, where the stem is known, so the command
    line and ``convert()`` give the same error."""
    if o.merge and not o.signatures and stem in o.merge:
        after = "after its file name" if isinstance(model, (str, os.PathLike)) else "by default"
        after = "the stem given" if o.stem else after
        raise OptionError(
            f"{{0}} {stem}=...: the main model's signature is already named {stem!r} "
            f"({after}); give the merged model another name, or name the main model's "
            "signature ({1})",
            ("merge", "signatures"),
        )


def _cyclic_gc_paused(fn):
    """Conversion builds many long-lived small objects (IR nodes, tensors, protobufs);
    CPython's generational collector would re-traverse all of them on every full collection,
    which makes large graphs superlinear. Reference counting frees them either way; the
    collector's previous state is restored afterwards."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return wrapper


def convert(
    model,
    output_dir: str | os.PathLike | None = None,
    *,
    options: ConvertOptions | None = None,
    **kwargs,
) -> ConversionResult:
    """Convert an ONNX model to TFLite.

    ``model`` is a path (str or ``os.PathLike``), an ``onnx.ModelProto``, or its serialized
    bytes (``ModelProto.SerializeToString()``, a file's contents), parsed as
    ``onnx.load_model_from_string`` does. A model in memory (proto or bytes) must hold its
    weights: external data is found only next to a model file. Its files are named
    ``model_*`` unless ``stem`` says otherwise.

    The options are the fields of :class:`~onnx2tflite_direct.options.ConvertOptions`, given
    as keywords (``convert(m, "out/", quantize=["fp16"])``) or as one object
    (``convert(m, "out/", options=ConvertOptions(quantize=("fp16",)))``); each field's
    metadata (and the README's command-line tables, generated from it) says what it does.
    They are checked together before anything is read (:meth:`ConvertOptions.check`).

    Returns a :class:`ConversionResult`; raises a typed :class:`ConversionError` on failure
    (after writing the coverage report when ``report_op_coverage`` and ``output_dir`` are set),
    whose message names options by these argument names.
    """
    try:
        if options is not None and kwargs:
            raise OptionError("give options=ConvertOptions(...) or keyword options, not both")
        if options is not None and not isinstance(options, ConvertOptions):
            raise OptionError(f"options must be a ConvertOptions, got {type(options).__name__}")
        opts = options if options is not None else ConvertOptions.from_kwargs(kwargs)
        return convert_checked(model, output_dir, opts.check())
    except ConversionError as exc:
        raise exc.reworded(to_api_wording(exc.message))  # noqa: B904  (the same error)


convert.__signature__ = convert_signature(convert)


@_cyclic_gc_paused
def convert_checked(
    model,
    output_dir: str | os.PathLike | None,
    o: ConvertOptions,
    io_check: Callable[[list[dict]], None] | None = None,
) -> ConversionResult:
    """:func:`convert` with options already checked (``ConvertOptions.check``); messages keep
    naming options by their command-line flags (the CLI calls this). ``io_check`` sees the
    lowered model's input/output rows before anything is written and may raise: the command
    line checks there what only it knows (which flag, input or output, named a tensor)."""
    check_output_dir(output_dir)
    options = _lowering_options(  # every LoweringOptions field is the option of its name
        **{
            f.name: getattr(o, f.name)
            for f in dataclasses.fields(LoweringOptions)
            if f.name != "disabled_rewrites"
        },
        disabled_rewrites=_disabled_rewrites(o.disable_rewrites) | _rangeless_rules(o.quantize),
    )
    quant = quant_variants.QuantOptions(  # likewise by name
        **{f.name: getattr(o, f.name) for f in dataclasses.fields(quant_variants.QuantOptions)}
    )
    stem, quantize, validate = o.stem, o.quantize, o.validate
    report_op_coverage, gpu_friendly = o.report_op_coverage, o.gpu_friendly
    external_buffers = o.external_buffers
    model = _model_source(model)
    stem = stem or _stem(model)
    _merge_name_problem(model, stem, o)
    out_dir = Path(output_dir) if output_dir is not None else None
    rec = report.ReportBuilder(options, stem)
    started = time.perf_counter()
    result = ConversionResult()
    try:
        if o.drop_zipmap:  # the [N, C] probabilities instead of ZipMap's maps
            model = drop_zipmap(load_model(model))
        several = bool(o.signatures or o.merge)
        if several:
            driver, model_ir, loader = _lower_signatures(model, options, rec, o, stem)
        else:
            driver, model_ir, loader = _lower(
                model, options, rec, o.input_shapes, o.batch_size, o.inputs, o.outputs
            )
        if io_check is not None:
            io_check(driver.io_table)
        narrow = o.int32_inputs or (gpu_friendly and not o.keep_int64_inputs)
        if narrow:  # before the map and the GPU rewrites: they see the int32 inputs
            rows = [*driver.io_table]  # and each signature's input rows
            rows += [r for s in rec.sections.get("signatures", ()) for r in s["inputs"]]
            section = int32_inputs.apply(model_ir, narrow, rows)
            if o.int32_inputs or section["inputs"]:  # --gpu-friendly: only when it narrowed
                section["flag"] = "--int32-inputs" if o.int32_inputs else "--gpu-friendly"
                rec.section("int32_inputs", section)
        result._model_loader = loader
        result._map_builder = functools.partial(tensor_map, driver)
        if gpu_friendly:  # the map describes the graph as lowered: taken before these rewrites
            result.tensor_map  # noqa: B018
            rec.section("gpu_friendly", gpu.apply(model_ir))
        if o.fp16_accumulation:
            model_ir.metadata[REDUCED_PRECISION_KEY] = FP16_ACCUMULATION

        def build(ir: tfl.Model) -> bytes:
            return builder.serialize(ir, external_buffers=external_buffers).tobytes()

        serialized = builder.serialize(model_ir, external_buffers=external_buffers)
        result._tflite = _model_file(serialized, out_dir, stem, result)
        subgraphs = model_ir.subgraphs if several else None  # the histogram counts them all
        rec.lowered(driver, serialized.nbytes, serialized.versions, subgraphs)
        rec.section("gpu", gpu_check.check_model(model_ir))
        del serialized
        if quantize:  # after the float32 file; each variant starts from it
            result.variants, summaries = quant_variants.make_variants(
                model_ir,
                quantize,
                quant,
                result.tensor_map,
                lambda: _calibration_model(result, rec),
                build,
                rec.rewrite,
                io_table=rec.io_table,
            )
            rec.section("quantization", summaries)
        del model_ir
        if _has_quantization_ops(rec) and not several:
            _prequantized_variant(result, rec, options, quant, build)
        if validate:  # before anything is published: a mismatch raises, nothing is written
            result.validation = _validate(result, rec, o.test_data, o.seed, o.atol, o.value_hints)
    except ConversionError as exc:
        rec.error(exc)
        _report_failure(rec, result, out_dir, stem, report_op_coverage, started)
        raise
    except builder.FieldRangeError as exc:  # an attribute value TFLite's field cannot hold
        err = UnsupportedError(errors.UNSUPPORTED_ATTRIBUTE_VALUE, str(exc))
        rec.error(err)
        _report_failure(rec, result, out_dir, stem, report_op_coverage, started)
        raise err from None
    except Exception as exc:  # a bug: still typed, still reported
        err = InternalError(errors.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        rec.error(err)
        _report_failure(rec, result, out_dir, stem, report_op_coverage, started)
        raise err from exc
    _finish(rec, result, out_dir, stem, report_op_coverage, started, write_model=True)
    return result


def _calibration_model(result: ConversionResult, rec: report.ReportBuilder) -> onnx.ModelProto:
    """The model onnxruntime calibrates: as converted, with dynamic dims left dynamic (the
    converted model is pinned at a sample size; calibration samples may have any size)."""
    dynamic = rec.sections.get("dynamic_shapes")
    return unpin(result.model, dynamic["input_dims"]) if dynamic else result.model


def _has_quantization_ops(rec: report.ReportBuilder) -> bool:
    return any(row.get("op_type") in QUANTIZATION_OPS for row in rec.rows.values())


def _prequantized_variant(result, rec, options: LoweringOptions, quant, build) -> None:
    """An already-quantized model also gets the integer (or hybrid) file its own scales
    describe: Q/DQ stripped into ranges, the float model lowered again and quantized by the
    same integer rewrite as calibrated models (``quant/qdq_import.py``). The float32 file
    keeps the exact Q/DQ semantics; the report's ``prequantized`` section says per node
    whether it runs integer, hybrid or float, and why."""
    imported = qdq_import.import_if_prequantized(result.model)
    if imported is None:
        return
    stripped, info = imported
    extra = qdq_import.lowering_options(stripped, info)
    disabled = options.disabled_rewrites | frozenset(extra.get("disable_rewrites", ()))
    disabled |= onnx_rewrites.RANGELESS_RULES  # its ranges come from the model's Q/DQ pairs
    fields = {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if f.name != "disabled_rewrites"
    }
    lowered = lower_model(stripped, disable_rewrites=disabled, **fields)
    model_ir, summary = qdq_import.prequantized_variant(lowered, info.ranges, info, quant)
    kind = "integer_quant" if summary.mode == "static" else "dynamic_range_quant"
    result.variants[kind] = build(model_ir)
    rec.section("prequantized", {"kind": kind, **summary.to_dict()})


# LiteRT's reduced-precision metadata (read by XNNPACK): float16 inference with float16
# accumulation allowed.
REDUCED_PRECISION_KEY = "reduced_precision_support"
FP16_ACCUMULATION = b"fp16accfp16"


@dataclass
class Lowered:
    """The lowered float model before serialization (for quantizers, passes and tests)."""

    model_ir: tfl.Model
    tensor_map: dict[str, dict]
    driver: Driver
    _loader: Callable[[], onnx.ModelProto]

    @property
    def onnx_model(self) -> onnx.ModelProto:
        return self._loader()


@_cyclic_gc_paused
def lower_model(
    model,
    *,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    batch_size: int | None = None,
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    disable_rewrites=(),
    **lowering,
) -> Lowered:
    """Front end, planning, lowering and TFLite rewrites: what ``convert`` serializes.

    ``lowering`` takes ``convert``'s lowering options (``keep_io_layout``, ``decompose``,
    ``fuse``, ``unroll_rnn`` ...: the fields of :class:`LoweringOptions`)."""
    options = _lowering_options(disabled_rewrites=_disabled_rewrites(disable_rewrites), **lowering)
    rec = report.ReportBuilder(options, _stem(model))
    driver, model_ir, loader = _lower(
        model, options, rec, input_shapes, batch_size, inputs, outputs
    )
    return Lowered(model_ir, tensor_map(driver), driver, loader)


def _lowering_options(**fields) -> LoweringOptions:
    for name in ("custom_op_allowlist", "keep_layout", "channel_last", "decompose"):
        fields[name] = tuple(fields.get(name) or ())
    try:
        options = LoweringOptions(**fields)
    except TypeError as exc:  # an unknown keyword
        raise errors.BadInputError(errors.INVALID_OPTION, str(exc)) from None
    for problem in option_checks.decompose_problems(options.decompose):
        raise problem
    return options


def _rangeless_rules(quantize) -> frozenset[str]:
    """The rewrite rules to turn off because a requested file quantizes activations."""
    integer = any(c in quant_variants.INTEGER_FILES or c == "auto" for c in quantize or ())
    return onnx_rewrites.RANGELESS_RULES if integer else frozenset()


def _disabled_rewrites(disable_rewrites) -> frozenset[str]:
    for problem in option_checks.rewrite_problems(disable_rewrites):
        raise problem
    return frozenset(disable_rewrites or ())


def _lower(model, options, rec, input_shapes, batch_size, inputs, outputs):
    """ONNX model -> (driver, lowered tfl.Model, loader of the ONNX model as converted).

    Input dims left unknown (and not pinned by the user) give a model whose dims are resized
    at run time (``dynamic_shapes.py``)."""
    if inputs or outputs:
        model = extract_subgraph(load_model(model), inputs, outputs)
    try:
        return _lower_static(model, options, rec, input_shapes, batch_size, find_dynamic=True)
    except DynamicShapeModel as signal:

        def at(shapes, probe_shapes, is_base: bool):
            scratch = rec if is_base else report.ReportBuilder(options, "")
            pins = {**(input_shapes or {}), **shapes}
            return _lower_static(model, options, scratch, pins, batch_size, probe_shapes)

        lowered = lower_with_dynamic_shapes(signal, at)
        rec.section("dynamic_shapes", signal.summary())
        return lowered


def _lower_signatures(model, options, rec, o: ConvertOptions, stem: str):
    """``signatures`` / ``merge``: each signature lowered as a model of its own (the main model
    with its inputs declared at the signature's dims, or another model), then combined into
    one ``tfl.Model`` whose subgraphs share the weights (``signatures.py``). Returns the first
    signature's driver and loader with the combined model: the coverage rows, io table and
    tensor map are the first signature's; the report's ``signatures`` section lists them all.

    ``input_shapes``, ``inputs`` and ``outputs`` apply to the main model (a signature's own
    dims win over a pin of the same input); ``batch_size`` and the lowering options to all."""
    if o.signatures:
        main = load_model(model)
        plan = [
            (key, signatures.with_input_dims(main, dims, key), dims, True)
            for key, dims in o.signatures.items()
        ]
    else:
        plan = [(stem, model, {}, True)]
    plan += [
        (key, _model_source(other, f"signature {key!r}: "), {}, False)
        for key, other in (o.merge or {}).items()
    ]
    parts, entries, first = [], [], None
    for key, source, dims, is_main in plan:
        scratch = rec if first is None else report.ReportBuilder(options, key)
        pins = {k: v for k, v in (o.input_shapes or {}).items() if k not in dims and is_main}
        try:
            lowered = _lower(
                source,
                options,
                scratch,
                pins or None,
                o.batch_size,
                o.inputs if is_main else None,
                o.outputs if is_main else None,
            )
        except ConversionError as exc:
            raise exc.reworded(f"signature {key!r}: {exc.message}") from None
        first = first or lowered
        parts.append((key, lowered[1]))
        source_text = "main model" if is_main else "merged model"
        entries.append((key, source_text, lowered[0].io_table))
        rec.warnings.extend(w for w in scratch.warnings if w not in rec.warnings)
    model_ir = signatures.combine(parts)
    index = {s.key: s.subgraph_index for s in model_ir.signatures}
    rec.section(
        "signatures", [signatures.summary(key, index[key], src, io) for key, src, io in entries]
    )
    return first[0], model_ir, first[2]


def _lower_static(
    model, options, rec, input_shapes, batch_size, probe_shapes=None, find_dynamic=False
):
    fe = load_graph(
        model,
        input_shapes=input_shapes,
        batch_size=batch_size,
        find_dynamic=find_dynamic,
        probe_shapes=probe_shapes,
        disabled_rules=options.disabled_rewrites,
    )
    rec.model_info(fe)
    for rule, count, removed in fe.rewrites:
        rec.rewrite(rule, count, removed)
    driver = lower_graph(fe.graph, options, rec=rec)
    # The ONNX-order constants and the driver's copies of re-laid-out weights are no longer
    # needed: free them before the file is built (peak memory is the sum otherwise).
    fe.graph.values.clear()
    driver.release_constant_cache()
    return driver, tfl.Model([driver.sub, *driver.extra_subgraphs]), fe.model_loader


def _validate(result: ConversionResult, rec, test_data, seed, atol, value_hints=None):
    """Compare the file with onnxruntime (and measure every variant on the same inputs)
    before anything is published. A mismatch raises :class:`ValidationMismatchError` carrying
    the validation and this conversion (``.result`` / ``.conversion``), so the run fails like
    any other: no .tflite is written or replaced and the report says why.

    A file with CUSTOM ops is not compared: onnxruntime has no kernel for the op (that is why
    it became a custom op) and neither has the stock LiteRT interpreter; the validation says
    it was skipped and why, and the run goes on."""
    custom = val.custom_ops(rec.rows.values())
    if custom:
        outcome = val.ValidationResult({}, atol, None, skipped=val.custom_ops_skip(custom))
    else:
        model = val.reference_model(result.model, rec.sections.get("dynamic_shapes"))
        try:
            if test_data:
                outcome = val.validate_samples(
                    model,
                    result.tflite_bytes,
                    rec.io_table,
                    test_data,
                    atol=atol,
                    variants=result.variants,
                )
            else:
                feeds = val.seeded_inputs(result.model, seed, value_hints)
                outcome = val.validate(
                    model,
                    result.tflite_bytes,
                    rec.io_table,
                    feeds,
                    atol=atol,
                    variants=result.variants,
                )
        except ValueError as exc:
            raise errors.BadInputError(errors.INVALID_OPTION, f"validation input: {exc}") from None
        except ImportError as exc:  # the validate extra is not installed
            raise errors.BadInputError(errors.INVALID_OPTION, str(exc)) from None
    rec.validation(outcome)
    result.validation = outcome
    val.log_notes(outcome)
    if outcome.mismatch:
        err = errors.ValidationMismatchError(
            "converted model differs from onnxruntime beyond tolerance; no .tflite written",
            outcome,
        )
        err.conversion = result  # in memory only: callers may diagnose further
        raise err
    return outcome


def _report_failure(rec, result, out_dir, stem, write_report, started) -> None:
    """Write the report of a failed run; the conversion error stays the one raised."""
    streamed = result.paths.pop("float32", None)  # a failed run leaves no model file (the
    # streamed one is still under its pending name: the previous good file is untouched)
    if streamed is not None:
        streamed.unlink(missing_ok=True)
    try:
        _finish(rec, result, out_dir, stem, write_report, started, write_model=False)
    except errors.BadInputError:
        pass


def _finish(rec, result, out_dir, stem, write_report, started, write_model) -> None:
    try:
        _write_outputs(rec, result, out_dir, stem, write_report, started, write_model)
    except OSError as exc:
        msg = f"cannot write to {out_dir}: {exc.strerror or exc}"
        raise errors.BadInputError(errors.INVALID_OPTION, msg) from None


# A float32 model at least this large is streamed to disk from the constants' own arrays as
# soon as it is built, so the weights are never held twice (tfl arrays + one joined copy);
# ``tflite_bytes`` is then a read-only memoryview of the written file.
STREAM_TO_DISK_BYTES = 1 << 30


def _model_file(serialized, out_dir: Path | None, stem: str, result: ConversionResult):
    """The float32 .tflite: the builder's chunks, or (large, with an output folder) written
    now under a pending name (published by ``_write_outputs``) and mapped, so the weights
    are not held twice."""
    if out_dir is None or serialized.nbytes < STREAM_TO_DISK_BYTES:
        return serialized
    path = out_dir / f"{stem}_float32.tflite"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # Under a pending name until the run succeeds (validation may still reject it).
        path = write_pending(path, serialized)
        with open(path, "rb") as fh:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        msg = f"cannot write to {out_dir}: {exc.strerror or exc}"
        raise errors.BadInputError(errors.INVALID_OPTION, msg) from None
    result.paths["float32"] = path
    result.tensor_map  # noqa: B018  (taken now: a lazy map would keep the weights alive)
    return memoryview(mapped)


def _write_outputs(rec, result, out_dir, stem, write_report, started, write_model) -> None:
    if out_dir is not None and (write_model or write_report):  # a failed run makes no folder
        out_dir.mkdir(parents=True, exist_ok=True)
        if write_model:
            for kind, data in {"float32": result._tflite, **result.variants}.items():
                path = out_dir / f"{stem}_{kind}.tflite"
                staged = result.paths.get(kind)  # streamed under a pending name (_model_file)
                if staged is not None and staged != path:
                    publish(staged, path)
                elif staged is None:
                    write_atomic(path, data)
                result.paths[kind] = path
                rec.output_file(path, len(data), kind)
    rec.elapsed(time.perf_counter() - started)
    result.report = rec.to_dict()
    if out_dir is not None and write_report:
        path = out_dir / f"{stem}_op_coverage_report.json"
        write_atomic(path, report.dumps(result.report))
        result.paths["op_coverage_report"] = path
