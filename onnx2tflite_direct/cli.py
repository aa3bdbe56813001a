"""Command line: ``python -m onnx2tflite_direct MODEL.onnx -o OUTDIR [options]``.

The conversion flags, their help and defaults come from :class:`~.options.ConvertOptions`
(one place per option); this module adds the flags that only the command line has (output
folder, diagnostics, logging) and turns every failure into one line and an exit code:
0 success, 1 internal error, 2 bad input, 3 unsupported model content, 4 validation mismatch
(see ``errors.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import glob
import logging
import os
import re
import sys
import threading
from pathlib import Path

from . import __version__, diagnostics, errors, gpu_check, pipeline, quant_debug, report, validate
from .atomic import write_atomic
from .errors import ConversionError, OptionError
from .html_report import render_html
from .inspect_tflite import main as inspect_main
from .option_checks import folder_write_problem, path_kind
from .option_meta import GROUPS, Flag, Meta, describe
from .options import (
    FIELDS,
    ConvertOptions,
    check_output_dir,
    cli_spelling,
    meta_of,
    to_cli_wording,
)
from .validate import format_table

log = logging.getLogger("onnx2tflite_direct")

PROG = "onnx2tflite-direct"
USAGE = f"{PROG} MODEL.onnx [-o OUTDIR] [options]    or: {PROG} inspect FILE.tflite [--json]"

EPILOG = f"""subcommand:
  {PROG} inspect FILE.tflite [--json]
      print a converted file's inputs/outputs, signature, op histogram with versions,
      tensor count and size breakdown (--json: machine-readable)

exit codes:
  0  converted (and validated, if asked)
  1  internal error (a bug: please report it with the model)
  2  bad input: unreadable model, unsafe or missing external data, bad option
  3  unsupported: an op/attribute/dtype/shape we cannot reproduce exactly (reason code printed)
  4  validation mismatch: LiteRT and onnxruntime differ beyond tolerance
  130  interrupted (Ctrl-C): every output file is complete or untouched
"""

# Flags only the command line has (the Python API returns results instead), described like
# the conversion options so the README's tables cover them too.
CLI_ONLY: dict[str, Meta] = {
    "output_dir": describe(
        ".",
        ("-o", "--output-dir"),
        "where `<stem>_float32.tflite` (and reports) go; created if missing (not by a failed "
        "run); must not be a file. A successful run replaces files of the same names (each "
        "one whole, atomically); a failed or interrupted one leaves them as they were",
        "-o out/",
        group="conversion",
        metavar="DIR",
    ),
    "validate_all_tensors": describe(
        False,
        "--validate-all-tensors",
        "compare every intermediate tensor with onnxruntime and name the first divergent node "
        "(writes `<stem>_tensor_diagnostics.json`); with `--quantize`, also every quantized "
        "file's per-tensor SQNR against the float model and the node where its error enters "
        "(the one adding the most noise relative to its inputs; section `quantized_variants`, "
        "and a table per file on stdout; measured, never judged)",
        group="checking",
        kind="switch",
    ),
    "html_report": describe(
        None,
        "--html-report",
        "a self-contained HTML page with the per-node error chart (implies "
        "`--validate-all-tensors`; its folder must exist, or be the `-o` folder)",
        "--html-report out/diag.html",
        group="checking",
        metavar="PATH",
    ),
    "check_gpu": describe(
        False,
        ("--check-gpu", "--check-gpu-compatibility"),
        "print the GPU delegate verdict: `fully delegable`, or `N ops fall back` naming each "
        "(op index, op, reason codes). A static check of the written model against the LiteRT "
        "GPU delegate's own rules (gpu_rules.py); nothing runs on a GPU (docs/gpu_delegate.md). "
        "The report's `gpu` section holds the same verdict",
        "--check-gpu",
        group="checking",
        kind="switch",
        helps=(
            "print the GPU delegate verdict ('fully delegable' or the ops that fall back and "
            "why): a static check against the delegate's ported rules, nothing runs on a GPU",
        ),
    ),
    "verbose": describe(
        False,
        ("-v", "--verbose"),
        "also print the I/O layouts, the rewrites applied, the op histogram and timings",
        "-v",
        group="output",
        kind="switch",
    ),
    "quiet": describe(
        False,
        ("-q", "--quiet"),
        "print only warnings, errors and results (no progress lines, no runtime banners such "
        "as LiteRT's XNNPACK line)",
        "-q",
        group="output",
        kind="switch",
    ),
}
GROUP_TITLES = {**GROUPS, "output": "Output"}

# Ctrl-C: the shell's convention (128 + SIGINT), outside the conversion's own codes 0-4.
EXIT_INTERRUPTED = 130

# Native runtime lines hidden by -q (LiteRT prints them on the process's stderr).
NATIVE_NOISE = re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate")


class _Parser(argparse.ArgumentParser):
    """An argument error is the short usage line and the error: not the whole usage block."""

    def error(self, message: str):
        message += self._did_you_mean(message)
        self.exit(errors.EXIT_BAD_INPUT, f"usage: {USAGE}\n{self.prog}: error: {message}\n")

    def _did_you_mean(self, message: str) -> str:
        """An unknown flag close to a real one (``--input-shapes``, ``--input_shape``): name
        the real one, which argparse 3.11 does not."""
        if not message.startswith("unrecognized arguments:"):
            return ""
        longs = [o for o in self._option_string_actions if o.startswith("--")]
        hints = []
        for token in message.split(":", 1)[1].split():
            if not token.startswith("--"):
                continue
            typed = token.split("=", 1)[0].replace("_", "-")
            close = difflib.get_close_matches(typed, longs, n=1, cutoff=0.8)
            if close and close[0] not in hints:
                hints.append(close[0])
        return f" (did you mean {' / '.join(hints)}?)" if hints else ""


def default_text(name: str) -> str | None:
    """An option's default as --help and the README show it; None when there is nothing to
    show (a switch, an empty list, no default)."""
    meta = CLI_ONLY.get(name) or meta_of(name)
    if meta is None or not meta.show_default:
        return None
    value = meta.default
    if value is None or value is False or value == ():
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_flag(group, name: str, flag: Flag) -> None:
    kwargs: dict = {"help": flag.help, "dest": flag.dest, "default": None}
    if flag.kind in ("switch", "negate"):
        kwargs["action"] = "store_true"
    else:
        kwargs["metavar"] = flag.metavar
        if flag.type is not None:
            kwargs["type"] = flag.type
        if flag.choices is not None:
            kwargs["choices"] = flag.choices
        if flag.kind == "append":
            kwargs["action"] = "append"
        elif flag.kind == "list":
            kwargs.update(action="extend", nargs="+")
        elif flag.kind == "optional_list":  # split_list_values gives it `--flag=` when bare
            kwargs.update(action="extend", nargs="*")
    default = default_text(name)
    if default is not None:
        kwargs["help"] += f" (default: {default})"
    group.add_argument(*flag.names, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        usage=USAGE,
        description="Convert an ONNX model to TFLite/LiteRT (no TensorFlow needed).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL.onnx", help="path to the .onnx file")
    groups = {key: p.add_argument_group(title.lower()) for key, title in GROUP_TITLES.items()}
    for name, meta in described_options():
        for flag in meta.flags:
            _add_flag(groups[meta.group], name, flag)
    groups["output"].add_argument(
        "--version", action="version", version=f"onnx2tflite_direct {__version__}"
    )
    return p


def described_options() -> list[tuple[str, Meta]]:
    """(name, metadata) of every option with a flag, in --help and README order: by group,
    the output folder first."""
    metas = [("output_dir", CLI_ONLY["output_dir"])]
    metas += [(n, meta_of(n)) for n in FIELDS if meta_of(n) is not None]
    metas += [(n, m) for n, m in CLI_ONLY.items() if n != "output_dir"]
    return sorted(metas, key=lambda item: list(GROUP_TITLES).index(item[1].group))


def _list_flags() -> dict[str, Flag]:
    """Every flag taking one or more values, by each of its names."""
    flags = {}
    for name in FIELDS:
        meta = meta_of(name)
        for flag in meta.flags if meta else ():
            if flag.kind in ("list", "optional_list"):
                flags.update({n: flag for n in flag.names})
    return flags


def _resolve(token: str, parser: argparse.ArgumentParser) -> str | None:
    """The long option a token names (argparse accepts unique prefixes too)."""
    if not token.startswith("--") or "=" in token:
        return None
    longs = [o for o in parser._option_string_actions if o.startswith("--")]
    if token in longs:
        return token
    hits = [o for o in longs if o.startswith(token)]
    return hits[0] if len(hits) == 1 else None


def split_list_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--quantize fp16 model.onnx`` -> ``--quantize=fp16 model.onnx``: a flag taking several
    values keeps only the tokens it accepts, so the model path after it stays the model."""
    lists = _list_flags()
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        out.append(token)
        i += 1
        if token == "--":
            out.extend(argv[i:])
            break
        flag = lists.get(_resolve(token, parser) or "")
        if flag is None:
            continue
        taken = []
        while i < len(argv) and not argv[i].startswith("-"):
            if flag.accepts is not None and not flag.accepts(argv[i]):
                break
            taken.append(argv[i])
            i += 1
        if taken:
            out.pop()
            out.extend(f"{flag.name}={value}" for value in taken)
        elif flag.kind == "optional_list":  # bare: argparse must not take the next token
            out[-1] = f"{flag.name}="
    return out


def options_from_args(args: argparse.Namespace) -> tuple[dict, set[str]]:
    """The ConvertOptions values the flags give (only those given), and the flags given (for
    messages)."""
    values: dict = {}
    used: set[str] = set()
    for name in FIELDS:
        meta = meta_of(name)
        if meta is None:
            continue
        parsed = [getattr(args, flag.dest) for flag in meta.flags]
        given = [f.name for f, v in zip(meta.flags, parsed, strict=True) if v is not None]
        if not given:
            continue
        used.update(given)
        if meta.from_cli is not None:
            values[name] = meta.from_cli(*parsed)
        elif meta.flags[0].kind == "negate":
            values[name] = False
        elif meta.flags[0].kind == "switch":
            values[name] = True
        else:
            values[name] = parsed[0]
    return values, used


def _setup_logging(args: argparse.Namespace) -> None:
    """The package logger prints to the current stderr at the level -q/-v ask for."""
    for handler in [h for h in log.handlers if getattr(h, "_o2t_cli", False)]:
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._o2t_cli = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO)


@contextlib.contextmanager
def _native_noise_filtered(enabled: bool):
    """With -q, lines native runtimes print on the process's stderr (LiteRT's XNNPACK banner)
    are dropped. The stderr descriptor feeds a pipe whose reader passes every other line on
    as it comes, so warnings keep their order and timing."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured, descriptor-less stderr
        fd = None
    if not enabled or fd is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as src:
            for line in src:
                if not NATIVE_NOISE.match(line.decode(errors="replace")):
                    os.write(saved, line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)  # closes the pipe's last write end: the reader sees the end
        reader.join()
        os.close(saved)


def _cli_checks(args: argparse.Namespace) -> None:
    """Command-line-only option problems, before anything is read or written."""
    if args.quiet and args.verbose:
        raise OptionError("{0} and {1} contradict each other: give one", ("quiet", "verbose"))
    if args.html_report is not None and not args.html_report:
        raise OptionError(
            "{0} is empty: give the path of the .html file to write", ("html_report",)
        )
    if args.html_report:
        folder = Path(args.html_report).parent
        problem = folder_write_problem(folder)
        into_output = os.path.abspath(folder) == os.path.abspath(args.output_dir)
        if path_kind(folder) == "missing" and not into_output:  # (-o is created by the run)
            raise OptionError(
                f"{{0}} {args.html_report}: folder {str(folder)!r} does not exist",
                ("html_report",),
            )
        if problem:  # found now, not after the conversion wrote its files
            raise OptionError(f"{{0}} {args.html_report}: {problem}", ("html_report",))
        if path_kind(args.html_report) == "dir":
            raise OptionError(
                f"{{0}} {args.html_report} is a folder; give the path of the .html file to write",
                ("html_report",),
            )
    check_output_dir(args.output_dir)


def _layout_direction_check(args: argparse.Namespace):
    """``--keep-input-layout``/``--channel-last-input`` must name inputs and the ``-output``
    flags outputs. ``convert()`` takes both directions in one list (``keep_layout``,
    ``channel_last``), so only the command line knows which flag a name came with: an input
    given to ``--keep-output-layout`` was taken silently. Checked on the lowered model's
    rows (after any cut), before anything is written."""
    given = [
        (flag.name, "input" if "input" in flag.name else "output", tensor)
        for option in ("keep_layout", "channel_last")
        for flag in meta_of(option).flags
        for tensor in getattr(args, flag.dest) or ()
    ]

    def check(io_table: list[dict]) -> None:
        kinds: dict[str, set[str]] = {}
        for row in io_table:
            kinds.setdefault(row["name"], set()).add(row["kind"])
        for flag, kind, tensor in given:
            if tensor in kinds and kind not in kinds[tensor]:
                other = flag.replace(kind, "output" if kind == "input" else "input")
                raise OptionError(
                    f"{flag} names {tensor!r}, which is a model {' and '.join(kinds[tensor])}, "
                    f"not an {kind}; give it with {other}"
                )

    return check if given else None


def _print(text: str) -> None:
    """A result on stdout; a reader that went away (``| head``) is not an error: the rest of
    the output is dropped and the run's exit code stands."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        _drop_stdout()


def _drop_stdout() -> None:
    """Point stdout at /dev/null so nothing more (nor the flush at exit) hits the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # a captured stdout without a descriptor
        pass


def _pending_files(args: argparse.Namespace, stem: str) -> set[Path]:
    """The hidden ``.<name>.<random>.pending`` files (atomic.py) of this model's outputs now
    in the output folders: only names this run writes (``<stem>_*``, the HTML report), so
    another model's conversion into the same folder keeps its own."""
    found = set()
    if path_kind(args.output_dir) == "dir":
        found |= set(Path(args.output_dir).glob(f".{glob.escape(stem)}_*.pending"))
    if args.html_report and path_kind(Path(args.html_report).parent) == "dir":
        html = Path(args.html_report)
        found |= set(html.parent.glob(f".{glob.escape(html.name)}.*.pending"))
    return found


def _interrupted(args: argparse.Namespace, stem: str, before: set[Path]) -> int:
    """Ctrl-C: one line, no traceback; a pending file this run left (a large model streamed
    to disk before its validation) is removed, so every output is complete or untouched."""
    for path in _pending_files(args, stem) - before:
        path.unlink(missing_ok=True)
    log.error(
        "error: interrupted: every file in %s is complete or as it was (this run's outputs "
        "may be missing)",
        args.output_dir,
    )
    return EXIT_INTERRUPTED


def _spell(used: set[str]):
    """Option name -> how the command line writes it: the flag(s) the user gave, or the short
    flag of a CLI-only option (``-o``, ``-q``)."""

    def spell(name: str) -> str:
        if name in CLI_ONLY:
            names = CLI_ONLY[name].flags[0].names
            return next((n for n in names if not n.startswith("--")), names[0])
        return cli_spelling(name, used)

    return spell


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv[:1] == ["inspect"]:
        try:
            return inspect_main(argv[1:])
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            return int(exc.code or 0)
        except BrokenPipeError:  # `inspect FILE | head`: the reader had enough
            _drop_stdout()
            return errors.EXIT_OK
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    parser = build_parser()
    try:
        args = parser.parse_args(split_list_values(argv, parser))
    except SystemExit as exc:  # --help / --version (0) or an argument error (2)
        return int(exc.code or 0)
    if args.output_dir is None:
        args.output_dir = CLI_ONLY["output_dir"].default
    _setup_logging(args)
    used: set[str] = set()
    before: set[Path] = set()
    stem = Path(args.model).stem
    try:
        _cli_checks(args)
        values, used = options_from_args(args)
        diagnose = bool(args.validate_all_tensors or args.html_report)
        opts = ConvertOptions(**values).check(spell=_spell(used), validating=diagnose)
        stem = opts.stem or Path(args.model).stem
        before = _pending_files(args, stem)
        with _native_noise_filtered(args.quiet):
            return _run(args, opts)
    except KeyboardInterrupt:
        return _interrupted(args, stem, before)
    except OptionError as exc:
        log.error("error: [%s] %s", exc.reason_code, exc.spelled(_spell(used)))
        return exc.exit_code
    except ConversionError as exc:
        log.error("error: [%s]%s %s", exc.reason_code, _where(exc), to_cli_wording(exc.message))
        if exc.exit_code == errors.EXIT_INTERNAL:
            log.error("this is a bug: please report it with the model (-v prints the traceback)")
            log.debug("traceback:", exc_info=exc)
        return exc.exit_code
    except ImportError as exc:  # an optional runtime (the validate extra) is missing
        log.error("error: %s", exc)
        return errors.EXIT_BAD_INPUT


def _where(exc: ConversionError) -> str:
    return f" (node {exc.node_name!r})" if exc.node_name else ""


def _run(args: argparse.Namespace, opts: ConvertOptions) -> int:
    diagnose = bool(args.validate_all_tensors or args.html_report)
    try:
        result = pipeline.convert_checked(
            args.model, args.output_dir, opts, io_check=_layout_direction_check(args)
        )
    except errors.ValidationMismatchError as exc:
        log.error("error: [%s] %s", exc.reason_code, to_cli_wording(exc.message))
        if exc.result is not None:
            _print(format_table(exc.result))  # the result on stdout, the error on stderr
            if exc.conversion is not None and diagnose:
                _diagnose(args, exc.conversion, opts)
        return exc.exit_code
    for kind, path in result.paths.items():
        log.info("wrote %s: %s", kind, path)
    narrowed = result.report.get("int32_inputs")
    if narrowed and narrowed["inputs"]:  # the file's interface changed: say so
        why = "" if narrowed["flag"] == "--int32-inputs" else " (--keep-int64-inputs keeps them)"
        log.info("int32 inputs: %s: %s%s", ", ".join(narrowed["inputs"]), narrowed["note"], why)
    for assumed in (result.report.get("gpu_friendly") or {}).get("assumptions", []):
        log.info("--gpu-friendly assumes: %s", assumed)
    _warn_float_ops(result.report)
    status = errors.EXIT_OK
    if diagnose:
        status = _diagnose(args, result, opts)
    if args.check_gpu:  # the verdict is in every report; the flag prints it (stdout: a result)
        section = result.report["gpu"]
        section["analyzer"] = gpu_check.analyzer_cross_check(
            result.tflite_bytes, section["fall_back"]
        )
        _print("\n".join(gpu_check.format_verdict(section)))
    rep = result.report
    log.info(
        "%d TFLite ops, %d TRANSPOSE",
        sum(v["count"] for v in rep["tflite_ops"].values()),
        rep["transpose_count"],
    )
    _log_details(rep)
    if result.validation is not None and not result.validation.skipped:
        _print(format_table(result.validation))  # results on stdout, diagnostics on stderr
    return status


def _warn_float_ops(rep: dict) -> None:
    """A full-integer file that still computes in float is said on the console, with counts
    (the report's ``quantization`` section names the ops)."""
    for summary in rep.get("quantization") or []:
        if not summary.get("kind", "").startswith("full_integer"):
            continue
        floats = summary.get("float_ops") or []
        float_io = [r for r in summary.get("io") or [] if r.get("dtype") == "float32"]
        if not floats and not float_io:
            continue
        log.warning(
            "warning: %s is not all-integer: %d op(s) still run in float (%d integer)%s; the "
            "report's quantization section names them (written so by --allow-float-ops)",
            summary["kind"],
            len(floats),
            summary.get("integer_ops", 0),
            f", {len(float_io)} input/output(s) stay float32" if float_io else "",
        )


def _log_details(rep: dict) -> None:
    """-v: what the conversion decided, from the report."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    for row in rep.get("io", []):
        log.debug(
            "%s %s: ONNX %s -> TFLite %s%s",
            row.get("kind"),
            row.get("name"),
            row.get("onnx_shape"),
            row.get("tflite_shape"),
            f" (perm {row['perm']})" if row.get("perm") else "",
        )
    for row in rep.get("rewrites") or []:
        if row.get("matched"):
            nodes = ", ".join(row.get("nodes") or [])
            log.debug(
                "rewrite %s: %d%s", row.get("rule"), row["matched"], f" ({nodes})" * bool(nodes)
            )
    for op, info in sorted(rep.get("tflite_ops", {}).items()):
        log.debug("op %s x%d", op, info["count"])
    if rep.get("seconds") is not None:
        log.debug("converted in %.3f s", rep["seconds"])


def _diagnose(args, result, opts: ConvertOptions) -> int:
    """--validate-all-tensors / --html-report: per-tensor bisection, JSON (and HTML) output."""
    custom = validate.custom_ops(result.report.get("nodes", []))
    if custom:  # neither runtime can run the CUSTOM ops: nothing to compare
        if result.validation is None:  # (else --validate said so already)
            log.warning("warning: %s", validate.custom_ops_skip(custom, "tensor diagnostics"))
        return errors.EXIT_OK
    try:
        if opts.test_data:  # the first run --validate makes (same cut, same casts)
            model = validate.reference_model(result.model, result.report.get("dynamic_shapes"))
            feeds = validate.test_data_runs(model, opts.test_data)[0][0]
        else:
            feeds = validate.seeded_inputs(result.model, opts.seed, opts.value_hints)
        diag = diagnostics.validate_all_tensors(result, feeds=feeds, seed=opts.seed, atol=opts.atol)
        if result.variants:  # the per-layer quantization debugger (quant_debug.py)
            diag["quantized_variants"] = quant_debug.debug_variants(
                result, feeds=feeds, seed=opts.seed, atol=opts.atol
            )
    except ValueError as exc:
        log.error("error: [%s] --validate-all-tensors input: %s", errors.INVALID_OPTION, exc)
        return errors.EXIT_BAD_INPUT
    stem = opts.stem or Path(args.model).stem
    out = Path(args.output_dir) / f"{stem}_tensor_diagnostics.json"
    target = out
    try:  # also after a failed validation, which writes (and creates) nothing else
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, report.dumps(diag))
        log.info("wrote tensor diagnostics: %s", out)
        if args.html_report:
            target = Path(args.html_report)
            write_atomic(target, render_html(diag, title=stem))
            log.info("wrote HTML report: %s", args.html_report)
    except OSError as exc:  # the file named, not the pending name it was written under
        flag = "--html-report" if target != out else "-o"
        log.error(
            "error: [%s] %s: cannot write %s: %s",
            errors.INVALID_OPTION,
            flag,
            target,
            exc.strerror or exc,
        )
        return errors.EXIT_BAD_INPUT
    if diag.get("quantized_variants"):
        _print(quant_debug.format_table(diag["quantized_variants"]))
    first = diag.get("first_divergent_node")
    log.info("first divergent node: %s", first or "none (every tensor within tolerance)")
    if first:
        log.info("chain: %s", " -> ".join(diag.get("chain", [])))
    return errors.EXIT_OK if diag.get("outputs_ok", True) else errors.EXIT_VALIDATION


if __name__ == "__main__":
    sys.exit(main())
