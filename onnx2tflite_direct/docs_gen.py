"""Generate ``docs/ops.md`` from the registry, so the docs cannot drift from the code.

``python -m onnx2tflite_direct.docs_gen [--check]`` writes (or checks) the file; a test fails
when the committed file is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

from . import lowering  # noqa: F401  (registers every lowering)
from .registry import REGISTRY

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "ops.md"


def _opset_range(spec) -> str:
    return f"{spec.since}+" if spec.until is None else f"{spec.since}-{spec.until}"


def render_ops_md() -> str:
    newest = onnx.defs.onnx_opset_version()
    onnx_ops = sorted(
        {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain == ""}
    )
    lines = [
        "# Supported ONNX operators",
        "",
        "Generated from the op registry by `python -m onnx2tflite_direct.docs_gen`; do not edit.",
        f"Default domain, opsets 7 to {newest}. An op not listed as supported is refused with "
        "`custom_op_candidate_disabled` unless `--allow-custom-ops` and the allowlist name it.",
        "",
        "| ONNX op | domain | opsets | status | TFLite ops | constraints |",
        "|---|---|---|---|---|---|",
    ]
    covered = set()
    for spec in REGISTRY.specs():
        covered.add((spec.domain, spec.op_type))
        tfl_ops = ", ".join(spec.tflite_ops) or "(none: relabeling/alias)"
        lines.append(
            f"| {spec.op_type} | {spec.domain or 'ai.onnx'} | {_opset_range(spec)} | supported | "
            f"{tfl_ops} | {spec.describe_constraints()} |"
        )
    missing = [op for op in onnx_ops if ("", op) not in covered]
    lines += [
        "",
        f"## Not yet supported ({len(missing)} default-domain ops)",
        "",
        ", ".join(missing),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/ops.md is stale")
    args = parser.parse_args(argv)
    text = render_ops_md()
    if args.check:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is stale; run python -m onnx2tflite_direct.docs_gen", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
