"""Command line: ``python -m onnx2tflite_direct MODEL.onnx -o OUTDIR [options]``.

Exit codes: 0 success, 1 internal error, 2 bad input, 3 unsupported model content,
4 validation mismatch (see ``errors.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__, errors
from .errors import BadInputError, ConversionError

log = logging.getLogger("onnx2tflite_direct")

EPILOG = """exit codes:
  0  converted (and validated, if asked)
  1  internal error (a bug: please report it with the model)
  2  bad input: unreadable model, unsafe or missing external data, bad option
  3  unsupported: an op/attribute/dtype/shape we cannot reproduce exactly (reason code printed)
  4  validation mismatch: LiteRT and onnxruntime differ beyond tolerance
"""


def _shape_pin(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.rpartition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:d0,d1,... got {text!r}")
    try:
        return name, tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"dims must be integers in {text!r}") from None


def _names(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated tensor names")
    return names


# On/off controls of the produced graph (each maps to the convert() argument of its name).
GRAPH_SWITCHES = (
    (
        "--gpu-friendly",
        "prefer ops and versions the LiteRT GPU delegate accepts; the report lists what "
        "would still not delegate",
    ),
    (
        "--fp16-accumulation",
        "mark the model as allowing float16 inference with float16 accumulation "
        "(XNNPACK on ARM reads this)",
    ),
    (
        "--nms-dynamic-output",
        "NonMaxSuppression returns exactly the selected rows (dynamic size) instead of "
        "a fixed-size padded output",
    ),
    (
        "--nms-class-argmax",
        "NonMaxSuppression: reduce [B, C, N] class scores to their per-box maximum first",
    ),
    (
        "--unroll-rnn",
        "unroll LSTM/GRU/RNN over their (static) time steps instead of one WHILE loop "
        "per direction: more ops, no loop overhead, better for delegates on short sequences",
    ),
    (
        "--external-buffers",
        "append weights after the FlatBuffer (Buffer.offset/size); automatic above 2 GB",
    ),
)


def _value_hints(entries: list[str]) -> dict[str, float] | None:
    hints = _per_input_values("--value-hint", entries) or {}
    for name, values in hints.items():
        if len(values) != 1:
            raise BadInputError(errors.INVALID_OPTION, f"--value-hint {name}: one value")
    return {name: values[0] for name, values in hints.items()} or None


def _calibration_source(entries: list[str]):
    """NAME=file.npy entries as given, or the one folder of .npz samples; None when absent."""
    if not entries:
        return None
    if len(entries) == 1 and "=" not in entries[0]:
        return entries[0]
    return list(entries)


def _per_input_values(flag: str, entries: list[str]) -> dict[str, list[float]] | None:
    out: dict[str, list[float]] = {}
    for entry in entries:
        name, sep, values = entry.partition("=")
        try:
            out[name] = [float(v) for v in values.split(",")]
        except ValueError:
            raise BadInputError(errors.INVALID_OPTION, f"{flag}: bad value in {entry!r}") from None
        if not sep or not name:
            raise BadInputError(errors.INVALID_OPTION, f"{flag}: expected NAME=v[,v...]")
    return out or None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="onnx2tflite-direct",
        description="Convert an ONNX model to TFLite/LiteRT (no TensorFlow needed).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="path to the .onnx file")
    p.add_argument("-o", "--output-dir", default=".", help="folder for outputs (default: .)")
    p.add_argument(
        "--report-op-coverage",
        action="store_true",
        help="write <stem>_op_coverage_report.json (also on failure)",
    )
    p.add_argument(
        "--keep-io-layout",
        action="store_true",
        help="keep every input/output in ONNX shape and layout (no channel-last I/O)",
    )
    p.add_argument(
        "--input-shape",
        action="append",
        type=_shape_pin,
        default=[],
        metavar="NAME:d0,d1,...",
        help="pin an input's shape (repeatable)",
    )
    p.add_argument("--batch-size", type=int, help="pin a dynamic first dim of every input")
    p.add_argument(
        "--allow-custom-ops",
        action="store_true",
        help="emit CUSTOM ops for allowlisted ops without a builtin lowering",
    )
    p.add_argument(
        "--custom-op-allowlist",
        default="",
        metavar="Op1,Op2",
        help="ops allowed to become CUSTOM ops",
    )
    p.add_argument(
        "--keep-input-layout",
        nargs="+",
        default=[],
        metavar="NAME",
        help="keep these inputs exactly in ONNX layout",
    )
    p.add_argument(
        "--channel-last-input",
        nargs="+",
        default=[],
        metavar="NAME",
        help="expose these 3-D/4-D/5-D inputs channel-last",
    )
    p.add_argument(
        "--keep-output-layout",
        nargs="+",
        default=[],
        metavar="NAME",
        help="keep these outputs exactly in ONNX layout",
    )
    p.add_argument(
        "--channel-last-output",
        nargs="+",
        default=[],
        metavar="NAME",
        help="expose these 3-D/4-D/5-D outputs channel-last",
    )
    p.add_argument(
        "--inputs",
        type=_names,
        metavar="T1,T2",
        help="convert only the sub-graph from these tensors",
    )
    p.add_argument(
        "--outputs",
        type=_names,
        metavar="T3,T4",
        help="convert only the sub-graph up to these tensors",
    )
    p.add_argument(
        "--quantize",
        nargs="+",
        default=[],
        choices=["fp16", "dynamic", "int8", "int16x8"],
        help="also write quantized variants: fp16 = <stem>_float16.tflite (float16 weights, "
        "float32 kernels and I/O); dynamic = <stem>_dynamic_range_quant.tflite (int8 "
        "weights, hybrid kernels); int8 = <stem>_integer_quant.tflite (float I/O) and "
        "<stem>_full_integer_quant.tflite (integer I/O); int16x8 = "
        "<stem>_integer_quant_with_int16_act.tflite and its full-integer variant",
    )
    q = p.add_argument_group("integer quantization (--quantize int8 / int16x8)")
    q.add_argument(
        "--calibration-data",
        action="append",
        default=[],
        metavar="NAME=file.npy|FOLDER",
        help="calibration samples per input (ONNX layout, samples on axis 0; repeatable), or a "
        "folder of .npz files, one sample each, arrays keyed by input name",
    )
    q.add_argument(
        "--calibration-method",
        default="minmax",
        choices=["minmax", "percentile", "mse"],
        help="how activation ranges are chosen from the calibration statistics",
    )
    q.add_argument(
        "--calibration-percentile",
        type=float,
        default=99.99,
        help="percentile kept by --calibration-method percentile (default 99.99)",
    )
    q.add_argument(
        "--calibration-random",
        action="store_true",
        help="calibrate on random inputs when no data is given (accuracy will be poor)",
    )
    for stat, what in (("mean", "subtract this mean"), ("std", "divide by this std")):
        q.add_argument(
            f"--calibration-{stat}",
            action="append",
            default=[],
            metavar="NAME=v[,v...]",
            help=f"{what} (per channel if several values) in calibration samples of NAME",
        )
    for end in ("input", "output"):
        q.add_argument(
            f"--{end}-quant-dtype",
            default="int8",
            choices=["int8", "uint8"],
            help=f"{end} dtype of the int8 full-integer variant",
        )
    q.add_argument(
        "--quant-type",
        default="per-channel",
        choices=["per-channel", "per-tensor"],
        help="weight scales per output channel (default) or one per tensor",
    )
    q.add_argument(
        "--strict-integer",
        action="store_true",
        help="refuse (exit 3, naming the ops) instead of keeping float islands in integer models",
    )
    p.add_argument(
        "--decompose",
        type=_names,
        default=[],
        metavar="OP[,OP...]",
        help="lower these ONNX ops with primitive builtins instead of their dedicated TFLite op "
        "(for runtimes/delegates where that kernel is missing or wrong)",
    )
    for flag, help_text in GRAPH_SWITCHES:
        p.add_argument(flag, action="store_true", help=help_text)
    p.add_argument(
        "--no-fuse", action="store_true", help="disable fusions and rewrites (debugging)"
    )
    p.add_argument(
        "--disable-rewrite",
        action="append",
        default=[],
        metavar="RULE",
        help="disable one named rewrite rule (repeatable; rule ids are listed in the report)",
    )
    p.add_argument(
        "--validate", action="store_true", help="run onnxruntime and LiteRT and compare outputs"
    )
    p.add_argument(
        "--test-data",
        action="append",
        default=[],
        metavar="NAME=file.npy",
        help="inputs for --validate (ONNX layout, samples on axis 0)",
    )
    p.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="validation tolerance, relative to max(1, max|expected|)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of generated validation inputs")
    p.add_argument(
        "--value-hint",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fill input NAME of generated validation data with VALUE (token ids, lengths, "
        "sample rates: inputs random values would make meaningless); repeatable",
    )
    p.add_argument(
        "--validate-all-tensors",
        action="store_true",
        help="compare every intermediate tensor with onnxruntime and name the first divergent node (writes <stem>_tensor_diagnostics.json)",
    )
    p.add_argument(
        "--html-report",
        metavar="PATH",
        help="with --validate-all-tensors: write a self-contained HTML page of per-node errors",
    )
    p.add_argument(
        "--check-gpu",
        "--check-gpu-compatibility",
        action="store_true",
        help="run LiteRT's model analyzer for GPU delegate compatibility and report its verdict",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--version", action="version", version=f"onnx2tflite_direct {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["inspect"]:
        from .inspect_tflite import main as inspect_main

        return inspect_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    from .pipeline import convert

    try:
        test_data = None
        if args.test_data:
            from .validate import load_test_data

            try:
                test_data = load_test_data(args.test_data)
            except (OSError, ValueError) as exc:
                raise BadInputError(errors.INVALID_OPTION, f"--test-data: {exc}") from None
        result = convert(
            args.model,
            args.output_dir,
            keep_io_layout=args.keep_io_layout,
            input_shapes=dict(args.input_shape) or None,
            batch_size=args.batch_size,
            allow_custom_ops=args.allow_custom_ops,
            custom_op_allowlist=tuple(x for x in args.custom_op_allowlist.split(",") if x),
            report_op_coverage=args.report_op_coverage,
            validate=args.validate,
            test_data=test_data,
            seed=args.seed,
            atol=args.atol,
            value_hints=_value_hints(args.value_hint),
            fuse=not args.no_fuse,
            disable_rewrites=tuple(args.disable_rewrite),
            keep_layout=tuple(args.keep_input_layout + args.keep_output_layout),
            channel_last=tuple(args.channel_last_input + args.channel_last_output),
            inputs=args.inputs,
            outputs=args.outputs,
            quantize=tuple(args.quantize),
            decompose=tuple(args.decompose),
            **{
                flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_"))
                for flag, _ in GRAPH_SWITCHES
            },
            calibration_data=_calibration_source(args.calibration_data),
            calibration_method=args.calibration_method,
            calibration_percentile=args.calibration_percentile,
            calibration_random=args.calibration_random,
            calibration_mean=_per_input_values("--calibration-mean", args.calibration_mean),
            calibration_std=_per_input_values("--calibration-std", args.calibration_std),
            input_quant_dtype=args.input_quant_dtype,
            output_quant_dtype=args.output_quant_dtype,
            quant_type=args.quant_type,
            strict_integer=args.strict_integer,
        )
    except ConversionError as exc:
        log.error("error: %s", exc)
        if isinstance(exc, errors.ValidationMismatchError) and exc.result is not None:
            from .validate import format_table

            log.error("%s", format_table(exc.result))
            if exc.conversion is not None and (args.validate_all_tensors or args.html_report):
                _diagnose(args, exc.conversion, test_data)
        return exc.exit_code
    except ImportError as exc:
        log.error("error: %s", exc)
        return errors.EXIT_BAD_INPUT
    for kind, path in result.paths.items():
        log.info("wrote %s: %s", kind, path)
    status = errors.EXIT_OK
    if args.validate_all_tensors or args.html_report:
        status = _diagnose(args, result, test_data)
    if args.check_gpu:
        from .gpu_check import check_gpu_compatibility

        verdict = check_gpu_compatibility(result.tflite_bytes)
        log.info("GPU delegate check: %s", verdict["message"])
        for op in verdict.get("incompatible_ops", []):
            log.info("  not delegated: %s (%s)", op.get("op"), op.get("message"))
    rep = result.report
    log.info(
        "%d TFLite ops, %d TRANSPOSE",
        sum(v["count"] for v in rep["tflite_ops"].values()),
        rep["transpose_count"],
    )
    if result.validation is not None:
        from .validate import format_table

        log.info("%s", format_table(result.validation))
    return status


def _diagnose(args, result, test_data) -> int:
    """--validate-all-tensors / --html-report: per-tensor bisection, JSON (and HTML) output."""
    from pathlib import Path

    from . import diagnostics, report, validate
    from .atomic import write_atomic

    if test_data:
        batches = {
            r["name"]: r["onnx_shape"][0] for r in result.report["io"] if r["kind"] == "input"
        }
        feeds = next(validate.iter_feed_batches(test_data, batches))
    else:
        feeds = validate.seeded_inputs(result.model, args.seed, _value_hints(args.value_hint))
    diag = diagnostics.validate_all_tensors(result, feeds=feeds, seed=args.seed, atol=args.atol)
    stem = Path(args.model).stem
    out = Path(args.output_dir) / f"{stem}_tensor_diagnostics.json"
    write_atomic(out, report.dumps(diag))
    log.info("wrote tensor diagnostics: %s", out)
    if args.html_report:
        from .html_report import render_html

        write_atomic(Path(args.html_report), render_html(diag, title=stem))
        log.info("wrote HTML report: %s", args.html_report)
    first = diag.get("first_divergent_node")
    log.info("first divergent node: %s", first or "none (every tensor within tolerance)")
    if first:
        log.info("chain: %s", " -> ".join(diag.get("chain", [])))
    return errors.EXIT_OK if diag.get("outputs_ok", True) else errors.EXIT_VALIDATION


if __name__ == "__main__":
    sys.exit(main())
