"""Generate the docs that describe code, so they cannot drift from it.

* ``docs/ops.md`` from the op registry;
* the README's command-line tables from the options' metadata (``options.ConvertOptions``
  and the CLI-only flags of ``cli.py``: flag, README text, default, example);
* the README's reason-code list from ``errors.REASON_CODES``.

``python -m onnx2tflite_direct.docs_gen [--check]`` writes (or checks) them; a test fails when
a committed file is stale. In the README, only the blocks between ``<!-- generated: NAME -->``
and ``<!-- end generated -->`` are rewritten.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import onnx

from . import cli, errors, lowering  # noqa: F401  (lowering registers every lowering)
from .options import FIELDS
from .registry import REGISTRY

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "ops.md"
README_PATH = Path(__file__).resolve().parents[1] / "README.md"

# Default-domain ops the front end consumes before lowering (no registry entry, yet converted).
FRONT_END_OPS = {"Constant": "folded into a constant tensor by the front end"}


def _opset_range(spec) -> str:
    return f"{spec.since}+" if spec.until is None else f"{spec.since}-{spec.until}"


NODE_TESTS = Path(__file__).resolve().parents[1] / "coverage_reports" / "onnx_node_tests.json"


def _node_test_counts() -> dict[str, dict[str, int]]:
    """Per op type: node-test case counts by status, from the committed coverage report."""
    if not NODE_TESTS.exists():
        return {}
    data = json.loads(NODE_TESTS.read_text())
    counts: dict[str, dict[str, int]] = {}
    for case in data["cases"]:
        per_op = counts.setdefault(case["op"], {})
        per_op[case["status"]] = per_op.get(case["status"], 0) + 1
    return counts


def _tests_cell(counts: dict[str, int] | None) -> str:
    if not counts:
        return ""
    total = sum(counts.values())
    return f"{counts.get('pass', 0)}/{total}"


ML = "ai.onnx.ml"  # listed in full, like the default domain (tabular exporters write it)


def render_ops_md() -> str:
    newest = onnx.defs.onnx_opset_version()
    onnx_ops = sorted({s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain == ""})
    tests = _node_test_counts()
    lines = [
        "# Supported ONNX operators",
        "",
        "Generated from the op registry by `python -m onnx2tflite_direct.docs_gen`; do not edit.",
        f"Default domain, opsets 7 to {newest}, then other domains. *Node tests* is passing / all "
        "ONNX backend node-test cases whose model's main op is this op "
        "([coverage_reports/onnx_node_tests.md](../coverage_reports/onnx_node_tests.md); "
        "cases outside the constraints are refused with a reason code, never converted wrongly). "
        "An op without a lowering is refused with `custom_op_candidate_disabled` unless "
        "`--allow-custom-ops` and the allowlist name it.",
        "",
        "| ONNX op | domain | opsets | status | node tests | TFLite ops | constraints |",
        "|---|---|---|---|---:|---|---|",
    ]
    by_key: dict[tuple[str, str], list] = {}
    for spec in REGISTRY.specs():
        by_key.setdefault((spec.domain, spec.op_type), []).append(spec)
    # then other domains, and default-domain ops onnx does not define (onnxruntime's own)
    ml_ops = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain == ML}
    keys = [("", op) for op in onnx_ops] + sorted(
        {k for k in by_key if k[0] != "" or k[1] not in onnx_ops} | {(ML, op) for op in ml_ops}
    )
    for domain, op in keys:
        specs = by_key.get((domain, op), [])
        fallback = tests.get(op) if not domain or domain.startswith("ai.onnx") else None
        cell = _tests_cell(tests.get(op if not domain else f"{domain}.{op}", fallback))
        if not specs and op in FRONT_END_OPS and not domain:
            lines.append(
                f"| {op} | ai.onnx | | supported | {cell} | (none) | {FRONT_END_OPS[op]} |"
            )
            continue
        if not specs:
            lines.append(f"| {op} | {domain or 'ai.onnx'} | | not supported | {cell} | | |")
            continue
        for spec in specs:
            tfl_ops = ", ".join(spec.tflite_ops) or "(none: relabeling/alias)"
            lines.append(
                f"| {op} | {domain or 'ai.onnx'} | {_opset_range(spec)} | supported | {cell} | "
                f"{tfl_ops} | {spec.describe_constraints()} |"
            )
    supported = sum(1 for op in onnx_ops if ("", op) in by_key or op in FRONT_END_OPS)
    ml_supported = sum(1 for op in ml_ops if (ML, op) in by_key)
    lines += ["", f"{supported} of {len(onnx_ops)} default-domain ops have a lowering.", ""]
    lines[-1:-1] = [f"{ml_supported} of {len(ml_ops)} {ML} ops have a lowering."]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default_note(name: str) -> str:
    default = cli.default_text(name)
    return f" (default: `{default}`)" if default is not None else ""


def render_cli_table(group: str) -> str:
    """The README table of one option group: flag(s), the ``convert()`` keyword it sets, what
    it does, its default and an example."""
    lines = ["| flag | `convert()` keyword | effect |", "|---|---|---|"]
    for name, meta in cli.described_options():
        if meta.group != group:
            continue
        usage = " / ".join(f"`{_cell(f.usage())}`" for f in meta.flags)
        if name in FIELDS:
            keyword = f"`{_cell(meta.api_hint or name)}`"
        else:
            keyword = "`output_dir` (2nd argument)" if name == "output_dir" else "(CLI only)"
        effect = f"{meta.doc}{_default_note(name)}: `{_cell(meta.example)}`"
        lines.append(f"| {usage} | {keyword} | {effect} |")
    if group == "output":
        lines.append("| `--version` | (CLI only) | print the version: `--version` |")
    return "\n".join(lines)


# Refusals first, then bad input, mismatch, our bugs (the order the README explains them in).
EXIT_ORDER = (
    errors.EXIT_UNSUPPORTED,
    errors.EXIT_BAD_INPUT,
    errors.EXIT_VALIDATION,
    errors.EXIT_INTERNAL,
)


def render_reason_codes() -> str:
    """Every reason code, grouped by the exit code it leaves with."""
    by_exit: dict[int, list[str]] = {}
    for code, exit_code in errors.REASON_CODES.items():
        by_exit.setdefault(exit_code, []).append(f"`{code}`")
    parts = [
        f"{', '.join(codes)} (exit {exit_code})"
        for exit_code, codes in sorted(by_exit.items(), key=lambda kv: EXIT_ORDER.index(kv[0]))
    ]
    return "Reason codes: " + "; ".join(parts) + "."


def readme_blocks() -> dict[str, str]:
    blocks = {f"cli-{group}": render_cli_table(group) for group in cli.GROUP_TITLES}
    blocks["reason-codes"] = render_reason_codes()
    return blocks


_BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def render_readme(current: str) -> str:
    """``current`` with every generated block rewritten; a block the README lacks is an
    error (the README must show every group)."""
    blocks = readme_blocks()
    missing = sorted(set(blocks) - set(m.group(2) for m in _BLOCK.finditer(current)))
    if missing:
        raise ValueError(f"README.md lacks the generated blocks {missing}")
    return _BLOCK.sub(lambda m: m.group(1) + blocks[m.group(2)] + "\n" + m.group(4), current)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="fail if docs/ops.md or the README is stale"
    )
    args = parser.parse_args(argv)
    targets = {DOC_PATH: render_ops_md(), README_PATH: render_readme(README_PATH.read_text())}
    if args.check:
        stale = [p for p, text in targets.items() if not p.exists() or p.read_text() != text]
        for path in stale:
            print(f"{path} is stale; run python -m onnx2tflite_direct.docs_gen", file=sys.stderr)
        return 1 if stale else 0
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
