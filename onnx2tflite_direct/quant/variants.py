"""The quantized variants written next to the float32 file, and the options that shape them.

Every variant starts from the same lowered float model (``tfl.Model``): the float16 and
dynamic-range variants only rewrite weights; the integer variants need activation ranges, which
come from calibrating the ONNX model in onnxruntime (``calibration.py``) and are carried onto
TFLite tensors through the tensor map (``tensor_mapping.py``). Calibration runs once however many
integer variants are asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import errors, tfl
from . import auto as auto_quant
from . import calibration as cal
from . import int4_noise
from . import overrides as ov
from .bias_correction import correct_bias, dequantized
from .dynamic_range import quantize_weights_int8
from .fp16 import to_float16_weights, will_be_float16
from .int4 import Int4Outcome, quantize_weights_int4
from .integer import quantize_integer
from .integer_compose import compose_for_integer, needs_composition
from .integer_plan import HEURISTIC_REASONS
from .integer_widths import recurrent_nodes, with_wide_nodes
from .recurrent_forms import (
    copy_model,
    fold_constant_products,
    has_alternatives,
    use_integer_forms,
)
from .strict import is_strict
from .temporaries import temporary_ranges

# --quantize choices, in the order variants are produced.
CHOICES = ("fp16", "dynamic", "int4", "int8", "int16x8", "auto")

# choice -> [(file kind, activation dtype, full-integer I/O?)] for the integer variants.
INTEGER_FILES = {
    "int8": [("integer_quant", "int8", False), ("full_integer_quant", "int8", True)],
    "int16x8": [
        ("integer_quant_with_int16_act", "int16", False),
        ("full_integer_quant_with_int16_act", "int16", True),
    ],
}

log = logging.getLogger("onnx2tflite_direct")

IO_DTYPES = ("int8", "uint8")
QUANT_TYPES = ("per-channel", "per-tensor")


@dataclass
class QuantOptions:
    """How the integer variants are calibrated and typed (see ``convert``'s arguments; they are
    checked with every other option in ``option_checks.py``)."""

    calibration_data: object = None  # dict name -> array, list of NAME=path, or a .npz folder
    calibration_method: str = "minmax"
    calibration_percentile: float = 99.99
    calibration_random: bool = False
    calibration_mean: dict | None = None
    calibration_std: dict | None = None
    input_quant_dtype: str = "int8"
    output_quant_dtype: str = "int8"
    quant_type: str = "per-channel"
    strict_integer: bool = False
    allow_float_ops: bool = False  # full-integer files may keep float islands (strict.py)
    quant_overrides: object = ()  # PATTERN=PRECISION strings or {pattern: precision}
    int4_block_size: int = 32  # (0: per-channel int4 only)
    int4_size_budget: float = 0.3  # (int4.py: int8 tables and measured int8 weights within it)
    target_sqnr: float | None = None  # dB, for --quantize auto (``auto.py``)

    @property
    def per_channel(self) -> bool:
        return self.quant_type == "per-channel"


def make_variants(
    model_ir: tfl.Model,
    choices,
    options: QuantOptions,
    tensor_map: dict[str, dict],
    onnx_model: Callable[[], object],
    build: Callable[[tfl.Model], bytes],
    record: Callable[[str, int, list], None],
    io_table=None,
) -> tuple[dict[str, bytes], list[dict]]:
    """Produce every asked variant; returns ({file kind: bytes}, per-variant summaries).
    ``io_table`` (the report's ``io``) lets ``auto`` run its candidate files in LiteRT.

    ``model_ir`` is left untouched unless it is the only variant's input (it is not reused
    afterwards, so the last variant may consume it instead of a copy).
    """
    ordered = [c for c in CHOICES if c in set(choices)]
    overrides = _resolve_overrides(options, model_ir, tensor_map, onnx_model)
    jobs = []
    for choice in ordered:
        if choice == "fp16":
            jobs.append(("float16", choice, _float16_job(options)))
        elif choice == "dynamic":
            jobs.append(("dynamic_range_quant", choice, _dynamic_job(options)))
        elif choice == "int4":
            jobs.append(("int4_weight_quant", choice, _int4_job(options)))
        elif choice == "auto":
            jobs.append((auto_quant.KIND, choice, None))
        else:
            for kind, activations, full in INTEGER_FILES[choice]:
                jobs.append((kind, choice, _integer_job(activations, full, options)))
    ranges = _Ranges(options, tensor_map, onnx_model)
    ranges.float_model = (model_ir, build)  # measured before any job changes it
    variants: dict[str, bytes] = {}
    summaries: list[dict] = []
    for k, (kind, choice, job) in enumerate(jobs):
        summary = {"kind": kind, "variant": choice}
        if job is None:  # auto: many integer files from the float model, one kept
            data, found = auto_quant.auto_variant(
                model_ir, options, tensor_map, onnx_model, build, io_table, overrides,
                lambda opts: _Ranges(opts, tensor_map, onnx_model),
            )  # fmt: skip
            outcome = found.pop("_outcome")
            record(f"quantize_{kind}", outcome.integer_ops, [])
            summary.update(_summary_dict(outcome))
            summary["auto"] = found
            summary.update(_precision_section(None, outcome, overrides, "int8", kind))
            summaries.append(summary)
            variants[kind] = data
            continue
        ir = model_ir if k == len(jobs) - 1 else copy_model(model_ir)
        outcome = job(ir, ranges, overrides)
        if isinstance(outcome, errors.UnsupportedError):  # a full-integer file left out
            log.warning(
                "warning: %s not written [%s]: %s", kind, outcome.reason_code, outcome.message
            )
            summary["refused"] = {"reason_code": outcome.reason_code, "message": outcome.message}
            summaries.append(summary)
            continue
        if isinstance(outcome, int):
            count = outcome
            summary["converted_tensors"] = outcome
        elif isinstance(outcome, Int4Outcome):  # weight-only, with per-operator rows
            count = outcome.converted
            summary.update(outcome.summary())
        else:
            count = outcome.integer_ops
            summary.update(_summary_dict(outcome))
        record(f"quantize_{kind}", count, [])
        summary.update(_precision_section(ir, outcome, overrides, choice, kind))
        summaries.append(summary)
        variants[kind] = build(ir)
    return variants, summaries


def _dynamic_job(options: QuantOptions):
    """int8 hybrid weights, biases corrected for their rounding (:func:`_correct_biases`)."""

    def run(ir: tfl.Model, ranges: _Ranges, overrides: ov.Resolved) -> int:
        floats = _weighted_ops(ir)
        keep = overrides.labels("float")
        converted = quantize_weights_int8(ir, per_channel=options.per_channel, keep_nodes=keep)
        hybrid = [(op, w) for op, w in floats if op.inputs[1].dtype == np.int8]
        _correct_biases(ir, hybrid, lambda op, w: dequantized(op.inputs[1]), ranges, options)
        return converted

    return run


def _int4_job(options: QuantOptions):
    """int4 weights where LiteRT's hybrid kernels take them, int8 or float elsewhere
    (``int4.py``), biases corrected for the rounding (:func:`_correct_biases`)."""

    def run(ir: tfl.Model, ranges: _Ranges, overrides: ov.Resolved) -> Int4Outcome:
        build = ranges.float_model[1] if ranges.float_model else None
        noise = None
        if build is not None and options.int4_size_budget > 0:
            noise = int4_noise.for_model(ir, build, options, ranges.onnx_model, ranges.tensor_map)
        outcome = quantize_weights_int4(
            ir,
            block_size=options.int4_block_size,
            keep_float=overrides.labels("float"),
            keep_int8=overrides.labels("int8"),
            keep_int4=overrides.labels("int4-weights"),
            table_budget=options.int4_size_budget,
            noise=noise,
        )
        values = {id(op): v for op, _, v in outcome.rounded}
        weighted = [(op, w) for op, w, _ in outcome.rounded]
        _correct_biases(ir, weighted, lambda op, w: values[id(op)], ranges, options)
        return outcome

    return run


def _float16_job(options: QuantOptions):
    """float16 weights, biases corrected for their rounding (:func:`_correct_biases`); the
    biases stay float32 (vectors are not converted, see ``fp16``)."""

    def run(ir: tfl.Model, ranges: _Ranges, overrides: ov.Resolved) -> int:
        keep = overrides.labels("float")
        halves = [
            (op, w)
            for op, w in _weighted_ops(ir)
            if will_be_float16(w) and op.onnx_node not in keep
        ]
        _correct_biases(ir, halves, lambda op, w: w.data.astype(np.float16), ranges, options)
        return to_float16_weights(ir, keep_nodes=keep)

    return run


def _weighted_ops(ir: tfl.Model) -> list[tuple[tfl.Operator, tfl.Tensor]]:
    """(op, its weight) of every op whose input 1 is a float32 constant."""
    return [
        (op, op.inputs[1])
        for sub in ir.subgraphs
        for op in sub.operators
        if len(op.inputs) > 1
        and op.inputs[1] is not None
        and op.inputs[1].data is not None
        and op.inputs[1].dtype == np.float32
    ]


def _correct_biases(ir, weighted, rounded_of, ranges: _Ranges, options: QuantOptions) -> None:
    """With user calibration data (never random data: these variants need none), each op of
    ``weighted`` ((op, float weight) pairs) gets its float bias corrected for the average
    error of its rounded weight, ``rounded_of(op, w)`` (``bias_correction``), as the integer
    variants' biases are."""
    if options.calibration_data is None or not weighted:
        return
    means = ranges.channel_means()
    producer = {k: op for sub in ir.subgraphs for k, op in sub.producers().items()}
    for op, w_float in weighted:
        correct_bias(op, w_float, rounded_of(op, w_float), means, producer)


def _integer_job(activations: str, full: bool, options: QuantOptions):
    """One integer file. A full-integer file that would keep float ops is refused alone
    (returned as the error, see ``strict``) unless ``--strict-integer`` refuses the whole
    conversion or ``--allow-float-ops`` accepts the float islands."""

    def run(ir: tfl.Model, ranges: _Ranges, overrides: ov.Resolved):
        # recurrent layers: the forms with integer kernels (the float-I/O file keeps the
        # float file's form, a more accurate float island where that is a loop)
        forms = use_integer_forms(ir, activations == "int16") if full else []
        fold_constant_products(ir.subgraphs[0])  # (an unrolled cell's constant first step)
        compose_for_integer(ir.subgraphs[0])  # e.g. an LRN as integer-kernel ops
        try:
            outcome = _quantize(ir, ranges, overrides)
            if forms:  # the report says which form each recurrent node runs as
                outcome.recurrent_forms = forms
            return outcome
        except errors.UnsupportedError as exc:
            if options.strict_integer or exc.reason_code != errors.INTEGER_KERNEL_UNAVAILABLE:
                raise
            return exc

    def _quantize(ir: tfl.Model, ranges: _Ranges, overrides: ov.Resolved):
        return quantize_integer(
            ir,
            ranges.get(bits=16 if activations == "int16" else 8),
            activations=activations,
            per_channel=options.per_channel,
            input_dtype=(options.input_quant_dtype if activations == "int8" else "int16")
            if full
            else None,
            output_dtype=(options.output_quant_dtype if activations == "int8" else "int16")
            if full
            else None,
            strict=is_strict(options, full),
            channel_means=ranges.channel_means(),
            float_heads=True,  # only applies to float outputs: the file keeps float I/O there
            overrides=with_wide_nodes(
                ir.subgraphs[0], overrides, activations, recurrent_nodes(ranges.onnx_model())
            ),
        )

    return run


def _resolve_overrides(options: QuantOptions, model_ir, tensor_map, onnx_model) -> ov.Resolved:
    """``--quant-override`` matched against the model's nodes once, for every variant; a
    pattern that matches no node is a warning (also in each variant's report section)."""
    overrides = ov.parse(options.quant_overrides)  # checked with the options: cannot fail
    if not overrides:
        return ov.Resolved()
    catalog = ov.node_catalog(onnx_model(), model_ir, tensor_map)
    resolved = ov.resolve(overrides, catalog)
    for o in resolved.unmatched():
        log.warning("warning: --quant-override %s %s", o.spec, ov.unmatched_message(resolved, o))
    return resolved


def _precision_section(ir, outcome, overrides: ov.Resolved, choice: str, kind: str) -> dict:
    """The report's per-node precisions of one variant (and, with ``--quant-override``, what
    each override matched): integer variants from the plan's per-operator decisions, the
    weight-only ones from the weights their operators read."""
    rows = outcome.ops if hasattr(outcome, "ops") else _weight_rows(ir)
    out = {"precision": ov.node_table(rows, overrides, choice, HEURISTIC_REASONS)}
    if overrides:
        out["overrides"] = ov.override_summary(overrides, choice)
    return out


def _weight_rows(ir: tfl.Model) -> list[dict]:
    """Per-operator rows of a weight-only variant: the format of the weights it reads (int8
    hybrid, or float16 through a DEQUANTIZE), else float."""
    halves = {
        id(op.outputs[0])
        for sub in ir.subgraphs
        for op in sub.operators
        if op.opcode == "DEQUANTIZE" and op.inputs[0].dtype == np.float16
    }
    rows = []
    for sub in ir.subgraphs:
        for op in sub.operators:
            if op.opcode == "DEQUANTIZE" and id(op.outputs[0]) in halves:
                continue
            precision = "float"
            for t in op.inputs:
                if t is not None and t.data is not None and t.dtype == np.int8:
                    precision = "int8-weights"
                elif t is not None and id(t) in halves:
                    precision = "float16-weights"
            rows.append({"node": op.onnx_node, "op": op.opcode, "precision": precision})
    weighted = {r["node"] for r in rows if r["precision"] != "float"}
    # A node's other operators (the PAD before its CONV_2D) do not make it "mixed".
    return [r for r in rows if r["precision"] != "float" or r["node"] not in weighted]


def _summary_dict(outcome) -> dict:
    fields = ("integer_ops", "float_ops", "requantized", "folded", "io", "recurrent_forms")
    return {f: getattr(outcome, f) for f in fields if hasattr(outcome, f)}


class _Ranges:
    """Activation ranges on TFLite tensors. onnxruntime runs once, on first use; the
    statistics then give ranges for each bit width (only ``mse`` depends on it)."""

    def __init__(self, options: QuantOptions, tensor_map, onnx_model):
        self.options = options
        self.tensor_map = tensor_map
        self.onnx_model = onnx_model
        self._stats = None
        self._ranges: dict[int, dict[str, tuple[float, float]]] = {}
        self._data = None  # the calibration samples (ONNX layout)
        self.float_model = None  # (lowered float model, build): measures its temporaries
        self._temporaries = None

    def get(self, bits: int) -> dict[str, tuple[float, float]]:
        if bits not in self._ranges:
            config = self._config()
            onnx_ranges = cal.ranges_for_bits(self._statistics(config), bits, config)
            self._ranges[bits] = cal.tflite_ranges(onnx_ranges, self.tensor_map)
            for name, rng in self.temporaries(self._ranges[bits], bits).items():
                self._ranges[bits].setdefault(name, rng)
        return self._ranges[bits]

    def temporaries(self, known, bits: int = 8) -> dict[str, tuple[float, float]]:
        """Ranges of the lowering's TFLite-only temporaries, measured once in LiteRT on the
        float model (``temporaries.py``), per activation width (the recurrent layers' integer
        forms differ by width, ``recurrent_forms``); {} without the float model."""
        key = bits
        if self._temporaries is None:
            self._temporaries = {}
        if key not in self._temporaries:
            self._temporaries[key] = {}
            if self.float_model is not None and self._data is not None:
                model_ir, build = self.float_model
                alternatives = has_alternatives(model_ir)
                if alternatives or needs_composition(model_ir.subgraphs[0]):
                    model_ir = copy_model(model_ir)  # as the integer jobs see it
                    use_integer_forms(model_ir, bits == 16)
                    fold_constant_products(model_ir.subgraphs[0])
                    compose_for_integer(model_ir.subgraphs[0])
                data, batches = cal._fit_inputs(self.onnx_model(), self._data)
                self._temporaries[key] = temporary_ranges(
                    model_ir, build, data, batches, self.tensor_map, known
                )
        return self._temporaries[key]

    def channel_means(self) -> dict:
        """Calibrated per-channel means on TFLite tensors (for the weights' bias correction)."""
        return cal.tflite_channel_means(self._statistics(self._config()), self.tensor_map)

    def _config(self):
        return cal.CalibrationConfig(
            method=self.options.calibration_method, percentile=self.options.calibration_percentile
        )

    def _statistics(self, config):
        if self._stats is None:
            opts = self.options
            model = self.onnx_model()
            if opts.calibration_data is not None:
                try:
                    data = cal.load_calibration_data(
                        opts.calibration_data, mean=opts.calibration_mean, std=opts.calibration_std
                    )
                except (OSError, ValueError) as exc:
                    raise errors.BadInputError(
                        errors.INVALID_OPTION, f"--calibration-data: {exc}"
                    ) from None
            else:  # warns once (calibration.random_calibration_data)
                data = cal.random_calibration_data(model)
            self._stats = cal.collect_statistics(model, data, config)
            self._data = data
        return self._stats
