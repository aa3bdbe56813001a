"""``convert()``: front end -> checks -> layout-driven lowering -> rewrites -> builder -> files.

Every failure leaves as a :class:`~onnx2tflite_direct.errors.ConversionError`; the coverage
report is produced (and written when asked) whether conversion succeeds or not; output files
are written atomically so a failed run never leaves a half-written .tflite.
"""

from __future__ import annotations

import copy
import functools
import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from . import errors, onnx_rewrites, report, tfl, tfl_rewrites
from .atomic import write_atomic
from .context import Driver, LoweringOptions
from .errors import ConversionError, InternalError, UnsupportedError
from .extract import extract_subgraph
from .frontend import load_graph, load_model
from .ir import Graph
from .lowering import custom as custom_lowering
from .quant.dynamic_range import quantize_weights_int8
from .quant.fp16 import to_float16_weights
from .registry import REGISTRY, OpSpec, check_node, decomposable_ops
from .tensor_mapping import tensor_map


@dataclass
class ConversionResult:
    tflite_bytes: bytes
    report: dict
    paths: dict[str, Path] = field(default_factory=dict)
    validation: object | None = None
    # ONNX tensor name -> {"tensor": TFLite tensor name, "perm", "inner"} (see context.tensor_map)
    tensor_map: dict[str, dict] = field(default_factory=dict)
    # Further variants asked for with ``quantize``: kind ("float16") -> .tflite bytes.
    variants: dict[str, bytes] = field(default_factory=dict)
    _model_loader: Callable[[], onnx.ModelProto] | None = field(default=None, repr=False)
    _model: onnx.ModelProto | None = field(default=None, repr=False)

    @property
    def model(self) -> onnx.ModelProto | None:
        """The ONNX model as converted (user's shape pins applied): what onnxruntime runs."""
        if self._model is None and self._model_loader is not None:
            self._model = self._model_loader()
        return self._model


# --quantize variant -> (file kind, in-place transform of the lowered model returning a count)
VARIANTS = {
    "fp16": ("float16", to_float16_weights),
    "dynamic": ("dynamic_range_quant", quantize_weights_int8),
}

# Every rule id --disable-rewrite accepts (constant folding is not optional).
REWRITE_RULES = tuple(name for name, _ in onnx_rewrites.RULES + tfl_rewrites.RULES)


def _stem(model) -> str:
    if isinstance(model, (str, os.PathLike)):
        return Path(model).stem
    return "model"


def plan(graph: Graph, options: LoweringOptions, rec: report.ReportBuilder) -> dict[int, OpSpec]:
    """Pick a spec for every node and check its constraints; refuse with all problems known."""
    specs: dict[int, OpSpec] = {}
    problems: list[UnsupportedError] = []
    tainted: set[str] = set()  # outputs of refused nodes: their consumers are not re-judged
    for node in graph.nodes:
        blocker = next((i for i in node.inputs if i in tainted), None)
        if blocker is not None:
            tainted.update(o for o in node.outputs if o)
            rec.blocked(node, blocker)
            continue
        spec = REGISTRY.lookup(node.domain, node.op_type, node.opset)
        try:
            if spec is None:
                spec = custom_lowering.custom_spec(node, options)
            check_node(spec, node, graph)
            specs[id(node)] = spec
        except UnsupportedError as exc:
            problems.append(exc)
            rec.refused(node, exc)
            tainted.update(o for o in node.outputs if o)
    if problems:
        first = problems[0]
        if len(problems) > 1:
            others = "; ".join(sorted({p.reason_code for p in problems[1:]}))
            first.message += f" (and {len(problems) - 1} more refused nodes: {others})"
        raise first
    return specs


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


@_cyclic_gc_paused
def convert(
    model,
    output_dir: str | os.PathLike | None = None,
    *,
    keep_io_layout: bool = False,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    batch_size: int | None = None,
    allow_custom_ops: bool = False,
    custom_op_allowlist=(),
    report_op_coverage: bool = False,
    validate: bool = False,
    test_data: dict | None = None,
    seed: int = 0,
    atol: float = 1e-4,
    stem: str | None = None,
    fuse: bool = True,
    disable_rewrites=(),
    keep_layout: tuple[str, ...] = (),
    channel_last: tuple[str, ...] = (),
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    quantize=(),
    decompose=(),
) -> ConversionResult:
    """Convert an ONNX model (path or ModelProto) to TFLite.

    Returns a :class:`ConversionResult`; raises a typed :class:`ConversionError` on failure
    (after writing the coverage report when ``report_op_coverage`` and ``output_dir`` are set).

    ``keep_layout`` / ``channel_last`` force named inputs/outputs to ONNX order or
    channel-last; ``inputs`` / ``outputs`` convert only the sub-graph between those tensors.
    ``quantize`` lists extra variants to write next to the float32 file (``"fp16"``,
    ``"dynamic"``); ``decompose`` names ONNX ops to lower with primitive builtins only.
    """
    options = LoweringOptions(
        keep_io_layout=keep_io_layout,
        allow_custom_ops=allow_custom_ops,
        custom_op_allowlist=tuple(custom_op_allowlist or ()),
        keep_layout=tuple(keep_layout),
        channel_last=tuple(channel_last),
        decompose=tuple(decompose or ()),
    )
    without = sorted(set(options.decompose) - set(decomposable_ops()))
    if without:
        raise errors.BadInputError(
            errors.INVALID_OPTION,
            f"--decompose: no primitive decomposition for {without}; available: "
            f"{', '.join(decomposable_ops())}",
        )
    unknown_variants = sorted(set(quantize or ()) - set(VARIANTS))
    if unknown_variants:
        raise errors.BadInputError(
            errors.INVALID_OPTION,
            f"unknown --quantize variant(s) {unknown_variants}; available: {', '.join(VARIANTS)}",
        )
    disabled = frozenset(disable_rewrites or ())
    unknown = sorted(disabled - set(REWRITE_RULES))
    if unknown:
        raise errors.BadInputError(
            errors.INVALID_OPTION,
            f"unknown rewrite rule(s) {unknown}; known: {', '.join(REWRITE_RULES)}",
        )
    stem = stem or _stem(model)
    out_dir = Path(output_dir) if output_dir is not None else None
    rec = report.ReportBuilder(options, stem)
    started = time.perf_counter()
    result = ConversionResult(tflite_bytes=b"", report={})
    try:
        if inputs or outputs:
            model = extract_subgraph(load_model(model), inputs, outputs)
        fe = load_graph(model, input_shapes=input_shapes, batch_size=batch_size)
        result._model_loader = fe.model_loader
        rec.model_info(fe)
        rec.rewrite("constant_folding", len(fe.folded_nodes), fe.folded_nodes)
        graph = fe.graph
        for name, changed in onnx_rewrites.apply(graph, enabled=fuse, disabled=disabled):
            rec.rewrite(name, len(changed), changed)
        specs = plan(graph, options, rec)
        driver = Driver(graph, specs, options)
        driver.setup_inputs()
        for node in graph.nodes:
            driver.run_node(node, specs[id(node)])
        driver.finish_outputs()
        for name, count in tfl_rewrites.apply(driver.sub, enabled=fuse, disabled=disabled):
            rec.rewrite(name, count, [])
        from .builder import build_flatbuffer

        model_ir = tfl.Model([driver.sub])
        result.tensor_map = tensor_map(driver)
        # The ONNX-order constants are no longer needed: free them before the builder
        # allocates the output buffer (peak memory is the sum of both otherwise).
        graph.values.clear()
        del fe, graph
        result.tflite_bytes = build_flatbuffer(model_ir)
        rec.lowered(driver, result.tflite_bytes)
        for variant in quantize or ():  # after the float32 file; each starts from it
            kind, make = VARIANTS[variant]
            variant_ir = copy.deepcopy(model_ir) if len(quantize) > 1 else model_ir
            rec.rewrite(f"quantize_{variant}", make(variant_ir), [])
            result.variants[kind] = build_flatbuffer(variant_ir)
        if validate:
            result.validation = _validate(result, rec, test_data, seed, atol)
    except ConversionError as exc:
        rec.error(exc)
        _report_failure(rec, result, out_dir, stem, report_op_coverage, started)
        raise
    except Exception as exc:  # a bug: still typed, still reported
        err = InternalError(errors.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        rec.error(err)
        _report_failure(rec, result, out_dir, stem, report_op_coverage, started)
        raise err from exc
    _finish(rec, result, out_dir, stem, report_op_coverage, started, write_model=True)
    if result.validation is not None and not result.validation.ok:
        err = errors.ValidationMismatchError(
            "converted model differs from onnxruntime beyond tolerance", result.validation
        )
        err.conversion = result  # the file was written; callers may diagnose further
        raise err
    return result


def _validate(result: ConversionResult, rec, test_data, seed, atol):
    from . import validate as val

    try:
        if test_data:
            outcome = val.validate_samples(
                result.model, result.tflite_bytes, rec.io_table, test_data, atol=atol
            )
        else:
            outcome = val.validate(
                result.model, result.tflite_bytes, rec.io_table, seed=seed, atol=atol
            )
    except ValueError as exc:
        raise errors.BadInputError(errors.INVALID_OPTION, f"validation input: {exc}") from None
    except ImportError as exc:  # the validate extra is not installed
        raise errors.BadInputError(errors.INVALID_OPTION, str(exc)) from None
    rec.validation(outcome)
    return outcome


def _report_failure(rec, result, out_dir, stem, write_report, started) -> None:
    """Write the report of a failed run; the conversion error stays the one raised."""
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


def _write_outputs(rec, result, out_dir, stem, write_report, started, write_model) -> None:
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if write_model:
            for kind, data in {"float32": result.tflite_bytes, **result.variants}.items():
                path = out_dir / f"{stem}_{kind}.tflite"
                write_atomic(path, data)
                result.paths[kind] = path
                rec.output_file(path, len(data), kind)
    rec.elapsed(time.perf_counter() - started)
    result.report = rec.to_dict()
    if out_dir is not None and write_report:
        path = out_dir / f"{stem}_op_coverage_report.json"
        write_atomic(path, report.dumps(result.report))
        result.paths["op_coverage_report"] = path
