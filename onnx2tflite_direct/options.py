"""Every conversion option, once: :class:`ConvertOptions`.

Each field is one option of :func:`~onnx2tflite_direct.pipeline.convert`. Its metadata (the
command-line flags, help text, example, README text, group) is the single place the option is
described: the CLI builds its flags and ``--help`` (with defaults) from it, ``docs_gen`` builds
the README's command-line tables from it, and messages are spelled for the interface that reads
them (``--input-shape`` on the command line, ``input_shapes=`` in Python) through it. The
metadata's own types (:class:`~onnx2tflite_direct.option_meta.Meta`, ``Flag``,
``describe``) live in ``option_meta.py``.

Checks of option values and of options against each other live in :meth:`ConvertOptions.check`
and nowhere else. A problem is raised as :class:`~onnx2tflite_direct.errors.OptionError`
(``invalid_option``), which carries the API names of the options involved so each interface
names them its own way; an option that has no effect is a warning, spelled the same way.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import lowering  # noqa: F401  (registers every lowering: --decompose lists them)
from . import signatures as sig
from .errors import OptionError
from .option_checks import (  # noqa: F401  (REWRITE_RULES, check_output_dir: re-exported)
    CALIBRATION_METHODS,
    IO_DTYPES,
    QUANT_TYPES,
    QUANTIZE_CHOICES,
    REWRITE_RULES,
    check_output_dir,
    conflicts,
    dead_options,
    load_arrays,
    value_problems,
)
from .option_meta import Meta, describe, plain
from .option_values import (
    _finite_float,
    parse_named_path,
    parse_named_value,
    parse_named_values,
    parse_names,
    parse_optional_names,
    parse_shape_pin,
)
from .quant import overrides as quant_overrides
from .quant.strict import ALLOW_FLOAT_OPS_HELP, STRICT_INTEGER_HELP
from .registry import decomposable_ops

log = logging.getLogger("onnx2tflite_direct")


def _opt(default, flags, doc: str, example: str | None = None, **kw):
    """A ConvertOptions field carrying its metadata (:func:`describe`)."""
    return field(default=default, metadata={"option": describe(default, flags, doc, example, **kw)})


def _switch(flag: str, doc: str, group: str, **kw):
    return _opt(False, flag, doc, group=group, kind="switch", **kw)


def _tuple(*lists) -> tuple:
    return tuple(x for values in lists for x in (values or ()))


def _unique_dict(name: str) -> Callable[[list | None], dict | None]:
    """The ``from_cli`` of a repeatable NAME=VALUE flag of option ``name``: a dict (None when
    the flag is absent). One key given twice with different values is an error: the last one
    silently winning hid the mistake (``--input-shape x:1,3 --input-shape x:1,4``)."""

    def build(pairs) -> dict | None:
        out: dict = {}
        for key, value in pairs or ():
            if key in out and out[key] != value:
                raise OptionError(
                    f"{{0}} gives {key!r} twice ({_shown(out[key])} and {_shown(value)}): "
                    "give each one once",
                    (name,),
                )
            out[key] = value
        return out or None

    return build


def _shown(value) -> str:
    """A flag value as the command line wrote it (dims and lists comma-separated)."""
    if isinstance(value, (tuple, list)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _calibration_source(entries):
    """NAME=file.npy entries as given, or the one folder of .npz samples; None when absent."""
    if not entries:
        return None
    if len(entries) == 1 and "=" not in entries[0]:
        return entries[0]
    return list(entries)


def _every_or_names(*lists) -> bool | tuple[str, ...]:
    """A bare optional-list flag: True (every one); else the names given (each flag value is
    the list of one comma-separated token)."""
    return tuple(n for values in lists for names in values or () for n in names) or True


def _not_a_model_path(token: str) -> bool:
    return not token.lower().endswith(".onnx")


def _quantize_token(token: str) -> bool:
    return token in QUANTIZE_CHOICES


_NAMES = {"kind": "list", "metavar": "NAME", "accepts": _not_a_model_path, "from_cli": _tuple}


@dataclass(frozen=True)
class ConvertOptions:
    """The options of :func:`convert`; field metadata generates the CLI and the docs."""

    # ---- conversion ----
    report_op_coverage: bool = _switch(
        "--report-op-coverage",
        "write `<stem>_op_coverage_report.json`, also when conversion fails "
        "([fields](docs/coverage_report.md))",
        "conversion",
    )
    input_shapes: dict[str, tuple[int, ...]] | None = _opt(
        None,
        "--input-shape",
        "pin an input's shape (repeatable, one per input)",
        "--input-shape images:1,3,640,640",
        group="conversion",
        kind="append",
        metavar="NAME:d0,d1,...",
        type=parse_shape_pin,
        api_hint="input_shapes={NAME: (d0, d1, ...)}",
        from_cli=_unique_dict("input_shapes"),
    )
    batch_size: int | None = _opt(
        None,
        "--batch-size",
        "pin the dynamic first dim of every input (without pins, every unknown input dim "
        "stays dynamic: see [Dynamic shapes](#dynamic-shapes))",
        "--batch-size 1",
        group="conversion",
        metavar="N",
        type=int,
        api_hint="batch_size=N",
    )
    allow_custom_ops: bool = _switch(
        "--allow-custom-ops",
        "let the ops named by `--custom-op-allowlist` that have no builtin lowering become "
        "CUSTOM ops (custom code `ONNX_<OpType>`, or `ONNX_<domain>.<OpType>` outside the "
        "default domain, e.g. `ONNX_com.example.MyOp`; attributes as FlexBuffer custom options)",
        "conversion",
    )
    custom_op_allowlist: tuple[str, ...] = _opt(
        (),
        "--custom-op-allowlist",
        "the ONNX op types `--allow-custom-ops` may turn into CUSTOM ops",
        "--allow-custom-ops --custom-op-allowlist MyOp",
        group="conversion",
        metavar="Op1,Op2",
        type=parse_names,
        from_cli=_tuple,
    )
    external_buffers: bool = _switch(
        "--external-buffers",
        "write the weights after the FlatBuffer, referenced by `Buffer.offset/size` (LiteRT's "
        "large-model layout; used automatically above 2 GB)",
        "conversion",
    )
    signatures: dict[str, dict[str, tuple]] | None = _opt(
        None,
        "--signature",
        sig.SIGNATURE_DOC,
        "--signature prefill:input_ids=1,128 --signature decode:input_ids=1,1",
        group="conversion",
        kind="append",
        metavar="NAME:INPUT=d0,d1,...[;INPUT=...]",
        type=sig.parse_signature,
        api_hint="signatures={NAME: {INPUT: (d0, d1, ...)}}",
        from_cli=sig.signatures_from_cli,
    )
    merge: dict[str, object] | None = _opt(
        None,
        "--merge",
        sig.MERGE_DOC,
        "--merge decoder=decoder.onnx",
        group="conversion",
        kind="append",
        metavar="NAME=model.onnx",
        type=sig.parse_merge,
        api_hint="merge={NAME: model}",
        from_cli=sig.merge_from_cli,
    )
    # ---- layout and graph ----
    keep_io_layout: bool = _switch(
        "--keep-io-layout",
        "keep every input and output exactly in ONNX shape and layout (default: inputs feeding "
        "conv-like ops and outputs produced channel-last are exposed channel-last)",
        "layout",
    )
    keep_layout: tuple[str, ...] = _opt(
        (),
        ["--keep-input-layout", "--keep-output-layout"],
        "keep these inputs/outputs exactly in ONNX layout, e.g. an audio or state input that "
        "merely looks like an image",
        "--keep-input-layout state",
        group="layout",
        helps=(
            "keep these inputs exactly in ONNX layout",
            "keep these outputs exactly in ONNX layout",
        ),
        **_NAMES,
    )
    channel_last: tuple[str, ...] = _opt(
        (),
        ["--channel-last-input", "--channel-last-output"],
        "expose these 3-D/4-D/5-D tensors channel-last even where the engine would not",
        "--keep-io-layout --channel-last-input image",
        group="layout",
        helps=(
            "expose these 3-D/4-D/5-D inputs channel-last",
            "expose these 3-D/4-D/5-D outputs channel-last",
        ),
        **_NAMES,
    )
    inputs: list[str] | None = _opt(
        None,
        "--inputs",
        "convert only the sub-graph from these tensors (new inputs typed by shape inference; "
        "an initializer is an error: it stays a constant), e.g. to split pre-processing off",
        "--inputs features",
        group="layout",
        metavar="T1,T2",
        type=parse_names,
    )
    outputs: list[str] | None = _opt(
        None,
        "--outputs",
        "convert only the sub-graph up to these tensors, e.g. to split post-processing off",
        "--outputs backbone_out",
        group="layout",
        metavar="T3,T4",
        type=parse_names,
    )
    decompose: tuple[str, ...] = _opt(
        (),
        "--decompose",
        "lower these ONNX ops with primitive builtins instead of their dedicated TFLite op, for "
        "runtimes or delegates where that kernel is missing or wrong (available: "
        + ", ".join(decomposable_ops())
        + ")",
        "--decompose HardSwish,Gelu",
        group="layout",
        metavar="OP[,OP...]",
        type=parse_names,
        from_cli=_tuple,
    )
    gpu_friendly: bool = _switch(
        "--gpu-friendly",
        "rewrite operators the LiteRT GPU delegate's rules reject into equivalents they "
        "accept, where one exists (docs/gpu_delegate.md), and declare every int64 input int32 "
        "as `--int32-inputs` does (no GPU rule takes an int64 tensor; `--keep-int64-inputs` "
        "keeps them); the report's `gpu_friendly` section lists each rewrite, the verdict "
        "before and after, and what still falls back",
        "layout",
    )
    int32_inputs: bool | tuple[str, ...] = _opt(
        False,
        "--int32-inputs",
        "declare these int64 inputs (all int64 inputs when no name is given) int32 in the "
        "file, e.g. token ids and attention masks for the GPU delegate, which takes no int64 "
        "tensor; feed int32 values, which must fit in int32: the file computes what the model "
        "computes on them (the report's `int32_inputs` section lists each input; "
        "[docs/gpu_delegate.md](docs/gpu_delegate.md))",
        "--gpu-friendly --int32-inputs",
        group="layout",
        kind="optional_list",
        metavar="NAME",
        type=parse_optional_names,
        accepts=_not_a_model_path,
        api_hint="int32_inputs=True or int32_inputs=[NAME, ...]",
        from_cli=_every_or_names,
    )
    keep_int64_inputs: bool = _switch(
        "--keep-int64-inputs",
        "with `--gpu-friendly`, keep the int64 inputs int64 (the file's input dtypes stay the "
        "model's; the GPU delegate then leaves the operators reading them to the CPU)",
        "layout",
        example="--gpu-friendly --keep-int64-inputs",
    )
    fp16_accumulation: bool = _switch(
        "--fp16-accumulation",
        "mark the model as allowing float16 inference with float16 accumulation (LiteRT's "
        "`reduced_precision_support` metadata, read by XNNPACK on ARM)",
        "layout",
    )
    nms_dynamic_output: bool = _switch(
        "--nms-dynamic-output",
        "NonMaxSuppression returns exactly ONNX's `[num_selected, 3]` (dynamic size): the "
        "default since this release; still accepted, with no effect",
        "layout",
    )
    nms_padded_output: bool = _switch(
        "--nms-padded-output",
        "NonMaxSuppression returns a fixed-size `[B*C*K, 3]` output padded with -1 rows plus "
        "`<output>_valid_count`, for delegates that need static shapes (the default is ONNX's "
        "exact `[num_selected, 3]`)",
        "layout",
    )
    nms_class_argmax: bool = _switch(
        "--nms-class-argmax",
        "NonMaxSuppression: reduce `[B, C, N]` class scores to their per-box maximum before "
        "suppression (one NMS per batch instead of one per class)",
        "layout",
    )
    drop_zipmap: bool = _switch(
        "--drop-zipmap",
        "replace an ai.onnx.ml ZipMap (a sequence of maps, which TFLite cannot hold) by its "
        "input: the output keeps its name and becomes the `[N, C]` probability tensor",
        "layout",
    )
    unroll_rnn: bool = _switch(
        "--unroll-rnn",
        "unroll LSTM/GRU/RNN over their static time steps instead of one WHILE loop per "
        "direction (more ops, no loop overhead; better for delegates on short sequences)",
        "layout",
    )
    fuse: bool = _opt(
        True,
        "--no-fuse",
        "disable all fusions and rewrites (debugging)",
        group="layout",
        kind="negate",
        api_hint="fuse=False",
    )
    disable_rewrites: tuple[str, ...] = _opt(
        (),
        "--disable-rewrite",
        "disable one named rewrite rule (repeatable; ids in "
        "[docs/coverage_report.md](docs/coverage_report.md))",
        "--disable-rewrite fuse_activation",
        group="layout",
        kind="append",
        metavar="RULE",
        from_cli=_tuple,
    )
    # ---- quantized variants ----
    quantize: tuple[str, ...] = _opt(
        (),
        "--quantize",
        "any of: `fp16` = `<stem>_float16.tflite` (float16 weights feeding DEQUANTIZE, "
        "float32 kernels and I/O: runs on the stock CPU interpreter); `dynamic` = "
        "`<stem>_dynamic_range_quant.tflite` (int8 weights, LiteRT's hybrid kernels); `int4` = "
        "`<stem>_int4_weight_quant.tflite` (4-bit weights, blockwise where LiteRT's kernels "
        "take them, int8 or float elsewhere: [docs/quantization_int4.md]"
        "(docs/quantization_int4.md)); `int8` = "
        "`<stem>_integer_quant.tflite` + `<stem>_full_integer_quant.tflite` (int8 inside; "
        "float or integer I/O); `int16x8` = `<stem>_integer_quant_with_int16_act.tflite` + "
        "its full-integer variant (int16 activations, int8 weights); `auto` = "
        "`<stem>_auto_quant.tflite` (float I/O, each node int8, int16x8 or float, chosen by "
        "measurement to meet `--target-sqnr`). Ops without an acceptable "
        "integer kernel stay float in the float-I/O files; a full-integer file needing them is "
        "refused, naming them (the report's `quantization` section; see `--allow-float-ops`)",
        "--quantize fp16 int8 --calibration-data images=calib.npy",
        group="quantization",
        kind="list",
        choices=QUANTIZE_CHOICES,
        accepts=_quantize_token,
        api_hint='quantize=["fp16", "int8", ...]',
        from_cli=_tuple,
    )
    calibration_data: object = _opt(
        None,
        "--calibration-data",
        "calibration samples per input in ONNX layout, stacked on axis 0 (repeatable), or a "
        "folder of `.npz` files, one sample each, keyed by input name; also used for the bias "
        "correction of the `fp16` and `dynamic` variants",
        "--calibration-data images=calib.npy",
        group="quantization",
        kind="append",
        metavar="NAME=file.npy|FOLDER",
        api_hint="calibration_data={NAME: array}",
        from_cli=_calibration_source,
    )
    calibration_method: str = _opt(
        "minmax",
        "--calibration-method",
        "how activation ranges are chosen from the calibration statistics",
        "--calibration-method percentile",
        group="quantization",
        choices=CALIBRATION_METHODS,
    )
    calibration_percentile: float = _opt(
        99.99,
        "--calibration-percentile",
        "percentile kept by `--calibration-method percentile`, in (50, 100]",
        "--calibration-method percentile --calibration-percentile 99.9",
        group="quantization",
        metavar="P",
        type=_finite_float,
    )
    calibration_random: bool = _switch(
        "--calibration-random",
        "calibrate on random inputs when you have no data (a warning says accuracy will be poor)",
        "quantization",
    )
    calibration_mean: dict | None = _opt(
        None,
        "--calibration-mean",
        "subtract this mean from the calibration samples of NAME (per channel with several values)",
        "--calibration-mean images=0.485,0.456,0.406",
        group="quantization",
        kind="append",
        metavar="NAME=v[,v...]",
        type=parse_named_values,
        api_hint="calibration_mean={NAME: [v, ...]}",
        from_cli=_unique_dict("calibration_mean"),
    )
    calibration_std: dict | None = _opt(
        None,
        "--calibration-std",
        "divide the calibration samples of NAME by this std (per channel with several values)",
        "--calibration-std images=0.229,0.224,0.225",
        group="quantization",
        kind="append",
        metavar="NAME=v[,v...]",
        type=parse_named_values,
        api_hint="calibration_std={NAME: [v, ...]}",
        from_cli=_unique_dict("calibration_std"),
    )
    input_quant_dtype: str = _opt(
        "int8",
        "--input-quant-dtype",
        "input dtype of the int8 full-integer variant",
        "--input-quant-dtype uint8",
        group="quantization",
        choices=IO_DTYPES,
    )
    output_quant_dtype: str = _opt(
        "int8",
        "--output-quant-dtype",
        "output dtype of the int8 full-integer variant",
        "--output-quant-dtype uint8",
        group="quantization",
        choices=IO_DTYPES,
    )
    quant_type: str = _opt(
        "per-channel",
        "--quant-type",
        "weight scales per output channel or one per tensor",
        "--quant-type per-tensor",
        group="quantization",
        choices=QUANT_TYPES,
    )
    int4_block_size: int = _opt(
        32,
        "--int4-block-size",
        "input channels sharing one scale in the `int4` file's blockwise weights (a multiple "
        "of 32: XNNPACK's int4 kernels need it; larger blocks make smaller files, with more "
        "error); 0 = one scale per output channel ([docs/quantization_int4.md]"
        "(docs/quantization_int4.md))",
        "--quantize int4 --int4-block-size 64",
        group="quantization",
        metavar="N",
        type=int,
    )
    int4_size_budget: float = _opt(
        0.3,
        "--int4-size-budget",
        "the `int4` file's size, as a share of the float32 file's, that precision may spend: "
        "what the 4-bit weights leave buys int8 rows for the embedding tables, then int8 for "
        "the weights whose measured 4-bit output noise per byte is largest (on the "
        "calibration samples, else seeded random inputs); 0 = 4-bit wherever a kernel takes "
        "it ([docs/quantization_int4.md](docs/quantization_int4.md))",
        "--quantize int4 --int4-size-budget 0.25",
        group="quantization",
        metavar="R",
        type=float,
    )
    target_sqnr: float | None = _opt(
        None,
        "--target-sqnr",
        "the output SQNR (dB, against the float ONNX model) the `auto` file must reach: each "
        "node's sensitivity is measured (the output SQNR lost when it alone is quantized), the "
        "cheapest assignment (int8 first, then int16 activations, then float) that meets the "
        "target is confirmed on held-back calibration samples (the last half, which no choice "
        "sees) as a 95 percent lower confidence bound; the report's "
        "`quantization` section gives the assignment, the SQNR reached and the int8 share of "
        "multiply-accumulates. A target the float model itself misses is refused "
        "(`target_sqnr_unreachable`, exit 2). Required with `--quantize auto`, refused without",
        "--quantize auto --target-sqnr 40 --calibration-data images=calib.npy",
        group="quantization",
        metavar="DB",
        type=_finite_float,
    )
    strict_integer: bool = _switch("--strict-integer", STRICT_INTEGER_HELP, "quantization")
    allow_float_ops: bool = _switch("--allow-float-ops", ALLOW_FLOAT_OPS_HELP, "quantization")
    quant_overrides: tuple[str, ...] = _opt(
        (),
        "--quant-override",
        "run the ONNX nodes PATTERN names at PRECISION (`float`, `int16x8`, `int8` or "
        "`int4-weights`) in every quantized file that can (repeatable; the last match wins). "
        "PATTERN is a regular expression matching a whole node name, output tensor name or op "
        "type. In the integer files `float` keeps the node a float island and `int8`/`int16x8` "
        "set its activation width (requantized at the boundaries; also lifting the accuracy "
        "heuristics that keep some ops float); in the weight-only files (`fp16`, `dynamic`, "
        "`int4`) `float` keeps its weights float32 and `int8`/`int4-weights` pick their format. "
        "The report's `quantization` section gives every node's precision and why (`default`, "
        "`override`, or `forced` by a kernel constraint); a pattern matching nothing is a "
        "warning. Not applied to an already-quantized model's own integer file (its Q/DQ "
        "decide)",
        "--quant-override 'Conv_0=int16x8' --quant-override '/head/.*=float'",
        group="quantization",
        kind="append",
        metavar="PATTERN=PRECISION",
        api_hint='quant_overrides=["PATTERN=PRECISION", ...]',
        from_cli=_tuple,
    )
    # ---- checking the result ----
    validate: bool = _switch(
        "--validate",
        "run onnxruntime (basic graph optimizations: the model's own semantics, not fused "
        "kernels that round differently) and LiteRT on seeded inputs (or `--test-data`) and "
        "compare; exit 4 above tolerance",
        "checking",
    )
    test_data: dict | None = _opt(
        None,
        "--test-data",
        "validation inputs in ONNX layout, samples stacked on axis 0 (repeatable): a dynamic "
        "batch takes them in runs of up to 32, a static batch in runs of its size (samples "
        "left over are reported); with `--batch-size`, the count must be a multiple of it",
        "--test-data images=val.npy",
        group="checking",
        kind="append",
        metavar="NAME=file.npy",
        type=parse_named_path,
        api_hint="test_data={NAME: array}",
        from_cli=lambda specs: load_arrays(specs) if specs else None,
    )
    value_hints: dict[str, float] | None = _opt(
        None,
        "--value-hint",
        "fill that input of the generated validation data with one value (token ids, lengths, "
        "sample rates that random values would make meaningless; repeatable)",
        "--value-hint sample_rate=16000",
        group="checking",
        kind="append",
        metavar="NAME=VALUE",
        type=parse_named_value,
        api_hint="value_hints={NAME: VALUE}",
        from_cli=_unique_dict("value_hints"),
    )
    atol: float = _opt(
        1e-4,
        "--atol",
        "validation tolerance: max abs error <= X * max(1, max abs expected)",
        "--atol 1e-3",
        group="checking",
        metavar="X",
        type=_finite_float,
    )
    seed: int = _opt(
        0,
        "--seed",
        "the seed of generated validation inputs",
        "--seed 1",
        group="checking",
        metavar="N",
        type=int,
    )
    # ---- Python only ----
    stem: str | None = field(default=None)  # output file stem (default: the model's stem)

    # ------------------------------------------------------------------------------------

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> ConvertOptions:
        """``convert(**kwargs)``'s options; an unknown keyword is an ``invalid_option``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise OptionError(f"unknown option(s) {unknown}; known: {', '.join(sorted(names))}", ())
        return cls(**kwargs)

    def check(
        self, spell: Callable[[str], str] | None = None, validating: bool = False
    ) -> ConvertOptions:
        """Normalize, check every value and every pair of options; warn about options that have
        no effect. Returns the normalized options; raises :class:`OptionError`.

        ``spell(name)`` gives an option's name as the reader's interface writes it (warnings
        are logged with it); errors carry the names and are spelled by whoever reports them.
        ``validating``: the caller compares tensors itself (the CLI's --validate-all-tensors),
        so the validation options have an effect without ``validate``.
        """
        spell = spell or api_spelling
        try:
            opts = self._normalized()
            for problem in value_problems(opts):
                raise problem
            for problem in conflicts(opts):
                raise problem
        except (TypeError, ValueError, AttributeError) as exc:  # a value of the wrong type
            raise OptionError(f"an option has a value of the wrong type: {exc}") from None
        defaults = {name: _default(f) for name, f in FIELDS.items()}
        for message, names in dead_options(opts, defaults, validating):
            log.warning("warning: %s", _fill(message, names, spell))
        return opts

    def _normalized(self) -> ConvertOptions:
        seqs = ("custom_op_allowlist", "keep_layout", "channel_last", "decompose")
        seqs += ("disable_rewrites",)
        changes = {n: _names(getattr(self, n)) for n in seqs}
        for cut in ("inputs", "outputs"):  # None: no cut; one string: one tensor
            if isinstance(getattr(self, cut), str):
                changes[cut] = [getattr(self, cut)]
        if not isinstance(self.int32_inputs, bool):  # names: a tuple (str: one name)
            names = self.int32_inputs
            changes["int32_inputs"] = (names,) if isinstance(names, str) else tuple(names or ())
        changes["quant_overrides"] = quant_overrides.normalize(self.quant_overrides)
        if isinstance(self.quantize, str):
            changes["quantize"] = (self.quantize,)
        else:
            changes["quantize"] = tuple(self.quantize or ())
        return dataclasses.replace(self, **changes)


def _names(value) -> tuple:
    """A list-of-names option as a tuple; one string is one name (``decompose="Gelu"``), not
    its characters."""
    return (value,) if isinstance(value, str) else tuple(value or ())


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def meta_of(name: str) -> Meta | None:
    return FIELDS[name].metadata.get("option")


FIELDS = {f.name: f for f in dataclasses.fields(ConvertOptions)}


def _field_docs() -> str:
    """One paragraph per option for ``help(ConvertOptions)``, from the same metadata."""
    lines = ["", "Options (keyword = default, command-line flag: what it does):", ""]
    for name, f in FIELDS.items():
        meta = meta_of(name)
        flags = " / ".join(fl.name for fl in meta.flags) if meta else "(Python only)"
        text = plain(meta.doc) if meta else "output file stem (default: the model file's stem)"
        lines.append(f"{name} = {_default(f)!r}, {flags}: {text}")
    return "\n".join(lines)


ConvertOptions.__doc__ = (ConvertOptions.__doc__ or "") + "\n" + _field_docs()


# --------------------------------------------------------------------------------------------
# Spelling option names for the interface that reads the message
# --------------------------------------------------------------------------------------------


def api_spelling(name: str) -> str:
    return name


def cli_spelling(name: str, used: Iterable[str] = ()) -> str:
    """The flag(s) of option ``name``; of several, the ones the user gave (``used``)."""
    meta = meta_of(name) if name in FIELDS else None
    if meta is None:
        return name
    flags = [f.name for f in meta.flags]
    given = [f for f in flags if f in set(used)] or flags
    return "/".join(given)


def _fill(template: str, names: Iterable[str], spell: Callable[[str], str]) -> str:
    return OptionError(template, tuple(names)).spelled(spell)


def _flag_patterns() -> list[tuple[re.Pattern, str, str]]:
    """(pattern of a flag [with its metavar], API name, API hint) for every option flag."""
    out = []
    for name in FIELDS:
        meta = meta_of(name)
        if meta is None:
            continue
        for flag in meta.flags:
            meta_re = re.escape(flag.metavar) if flag.metavar else None
            tail = rf"(?P<meta> {meta_re})?" if meta_re else "(?P<meta>)"
            pattern = re.compile(re.escape(flag.name) + tail + r"(?![\w-])")
            if flag.kind == "switch":
                out.append((pattern, f"{name}=True", None))
            elif flag.kind == "negate":
                out.append((pattern, f"{name}=False", None))
            else:
                out.append((pattern, name, meta.api_hint))
    out.sort(key=lambda item: -len(item[0].pattern))
    return out


def to_api_wording(message: str) -> str:
    """Rewrite command-line flags in a message into convert()'s argument names: the package's
    messages name options by their flags; Python callers read them through this."""
    if "--" not in message:
        return message
    for pattern, name, hint in _PATTERNS:

        def repl(m, name=name, hint=hint):
            return hint if (m.group("meta") and hint) else name

        message = pattern.sub(repl, message)
    return message


def to_cli_wording(message: str) -> str:
    """Rewrite ``name=...`` mentions of convert()'s arguments in a message into the option's
    flag (the few messages written for Python callers)."""
    if "=" not in message:
        return message
    for name in FIELDS:
        meta = meta_of(name)
        if meta is None:
            continue
        flag = meta.flags[0]

        def repl(m, flag=flag):
            if flag.kind in ("switch", "negate"):  # name=True / fuse=False: the flag itself
                return flag.name
            if m.group("value"):
                return f"{flag.name} {m.group('value')}"
            return f"{flag.name} {flag.metavar}" if flag.metavar else flag.name

        message = re.sub(rf"(?<![\w-]){name}=(?:\.\.\.|(?P<value>[^\s,;)]+))?", repl, message)
    return message


_PATTERNS = _flag_patterns()


def convert_signature(fn: Callable) -> inspect.Signature:
    """``fn(model, output_dir=None, *, options=None, <every option>=<default>)``: the
    signature ``help(convert)`` and editors show, generated from :class:`ConvertOptions`."""
    params = list(inspect.signature(fn).parameters.values())[:3]  # model, output_dir, options
    for f in dataclasses.fields(ConvertOptions):
        params.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=_default(f), annotation=f.type
            )
        )
    return inspect.Signature(params)
