"""The report documents itself, and generated docs are never stale."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from harness import check_conversion, make_model
from onnx import helper

from onnx2tflite_direct import docs_gen

ROOT = Path(__file__).resolve().parents[1]


def test_every_report_field_is_documented():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        inputs=[("x", np.float32, (1, 2))],
        outputs=[("y", np.float32, (1, 2))],
    )
    report = check_conversion(model).report
    doc = (ROOT / "docs" / "coverage_report.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", doc, flags=re.M))
    optional_sections = {
        "gpu_friendly",
        "quantization",
        "prequantized",
        "dynamic_shapes",
    }  # present only when asked for (or when input dims stay dynamic)
    assert set(report) == documented - optional_sections
    row = report["nodes"][0]
    assert set(row) == {"name", "domain", "op_type", "mode", "tflite_ops", "reason_code", "message"}
    assert row["mode"] == "builtin" and row["tflite_ops"] == ["RELU"]
    statuses = {r["op_type"]: r["status"] for r in report["registry_policy"]}
    assert statuses["Relu"] == "builtin"


def test_ops_doc_is_generated_from_the_registry():
    current = (ROOT / "docs" / "ops.md").read_text()
    assert current == docs_gen.render_ops_md(), "run: python -m onnx2tflite_direct.docs_gen"


def test_every_rewrite_rule_is_documented():
    from onnx2tflite_direct.pipeline import REWRITE_RULES

    doc = (ROOT / "docs" / "coverage_report.md").read_text()
    missing = [rule for rule in REWRITE_RULES if f"`{rule}`" not in doc]
    assert not missing, missing


def test_readme_documents_every_cli_flag_with_an_example():
    from pathlib import Path

    from onnx2tflite_direct.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    flags = [
        opt
        for action in build_parser()._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    ]
    missing = [f for f in flags if f"`{f}" not in readme and f" {f}" not in readme]
    assert not missing, f"README does not document {missing}"
