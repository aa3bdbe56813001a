"""Generate ``docs/ops.md`` from the registry, so the docs cannot drift from the code.

``python -m onnx2tflite_direct.docs_gen [--check]`` writes (or checks) the file; a test fails
when the committed file is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import onnx

from . import lowering  # noqa: F401  (registers every lowering)
from .registry import REGISTRY

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "ops.md"


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
    keys = [("", op) for op in onnx_ops] + sorted(k for k in by_key if k[0] != "")
    for domain, op in keys:
        specs = by_key.get((domain, op), [])
        cell = _tests_cell(tests.get(op if not domain else f"{domain}.{op}", tests.get(op)))
        if not specs:
            lines.append(f"| {op} | {domain or 'ai.onnx'} | | not supported | {cell} | | |")
            continue
        for spec in specs:
            tfl_ops = ", ".join(spec.tflite_ops) or "(none: relabeling/alias)"
            lines.append(
                f"| {op} | {domain or 'ai.onnx'} | {_opset_range(spec)} | supported | {cell} | "
                f"{tfl_ops} | {spec.describe_constraints()} |"
            )
    supported = sum(1 for op in onnx_ops if ("", op) in by_key)
    lines += ["", f"{supported} of {len(onnx_ops)} default-domain ops have a lowering.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/ops.md is stale")
    args = parser.parse_args(argv)
    text = render_ops_md()
    if args.check:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != text:
            print(
                f"{DOC_PATH} is stale; run python -m onnx2tflite_direct.docs_gen", file=sys.stderr
            )
            return 1
        return 0
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
