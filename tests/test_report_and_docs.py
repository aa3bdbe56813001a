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
        "int32_inputs",
        "quantization",
        "prequantized",
        "dynamic_shapes",
        "signatures",
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


def test_readme_command_line_tables_and_reason_codes_are_generated():
    """The README's flag tables and reason-code list are generated from the options and
    errors: they cannot drift (issue 19 item 10)."""
    current = (ROOT / "README.md").read_text()
    assert current == docs_gen.render_readme(current), "run: python -m onnx2tflite_direct.docs_gen"
    for code in ("missing_calibration_data", "integer_kernel_unavailable"):
        assert f"`{code}`" in current


def test_every_reason_code_has_an_exit_code():
    from onnx2tflite_direct import errors

    constants = {
        v
        for k, v in vars(errors).items()
        if k.isupper() and isinstance(v, str) and not k.startswith("EXIT")
    }
    assert constants == set(errors.REASON_CODES)
    for code, exit_code in errors.REASON_CODES.items():
        assert exit_code in (1, 2, 3, 4), code


def test_constant_is_documented_as_supported_and_converts():
    """docs/ops.md said Constant was "not supported"; the front end folds it (issue 19 #10)."""
    row = next(
        ln
        for ln in (ROOT / "docs" / "ops.md").read_text().splitlines()
        if ln.startswith("| Constant |")
    )
    assert "| supported |" in row
    model = make_model(
        [
            helper.make_node(
                "Constant",
                [],
                ["c"],
                value=helper.make_tensor("v", 1, [1, 3], [0.5, -1.5, 2.0]),
            ),
            helper.make_node("Mul", ["x", "c"], ["y"]),
        ],
        inputs=[("x", np.float32, (2, 3))],
        outputs=[("y", np.float32, (2, 3))],
    )
    check_conversion(model)


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
