"""The command line: outputs, exit codes, reports, custom ops, atomic writes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from flatbuffers import flexbuffers
from harness import make_model
from onnx import helper

from onnx2tflite_direct import cli, errors

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "small_cnn.onnx"


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "onnx2tflite_direct", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def _unsupported_model(tmp_path: Path) -> Path:
    """Relu -> a made-up op in a custom domain -> Relu."""
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node(
                "Frobnicate",
                ["a"],
                ["b"],
                domain="example.ops",
                gain=2.5,
                mode="fast",
                taps=[1, 2, 3],
            ),
            helper.make_node("Relu", ["b"], ["y"]),
        ],
        inputs=[("x", np.float32, (1, 4))],
        outputs=[("y", np.float32, (1, 4))],
        opset={"": 17, "example.ops": 1},
        check=False,
    )
    # Shape inference cannot see into a custom domain; exporters record the shape here.
    model.graph.value_info.append(
        helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1, 4])
    )
    path = tmp_path / "odd.onnx"
    onnx.save(model, path)
    return path


def test_example_converts_with_report_and_validation(tmp_path):
    before = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    proc = run_cli(EXAMPLE, "-o", tmp_path, "--report-op-coverage", "--validate")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "small_cnn_float32.tflite").stat().st_size > 1000
    report = json.loads((tmp_path / "small_cnn_op_coverage_report.json").read_text())
    assert report["success"] and report["validation"]["ok"]
    assert report["transpose_count"] == 0
    assert hashlib.sha256(EXAMPLE.read_bytes()).hexdigest() == before  # input untouched
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind


def test_unsupported_op_exits_3_with_report_and_no_model(tmp_path):
    model = _unsupported_model(tmp_path)
    proc = run_cli(model, "-o", tmp_path / "out", "--report-op-coverage")
    assert proc.returncode == errors.EXIT_UNSUPPORTED, proc.stderr
    assert "custom_op_candidate_disabled" in proc.stderr
    assert not list((tmp_path / "out").glob("*.tflite"))
    report = json.loads((tmp_path / "out" / "odd_op_coverage_report.json").read_text())
    assert report["success"] is False
    assert report["error"]["reason_code"] == "custom_op_candidate_disabled"
    assert report["counts"]["by_reason"] == {"custom_op_candidate_disabled": 1}
    modes = [(r["op_type"], r["mode"]) for r in report["nodes"]]
    assert modes == [("Relu", "pending"), ("Frobnicate", "unsupported"), ("Relu", "blocked")]


def test_custom_op_not_in_allowlist(tmp_path):
    proc = run_cli(_unsupported_model(tmp_path), "-o", tmp_path, "--allow-custom-ops")
    assert proc.returncode == errors.EXIT_UNSUPPORTED
    assert "custom_op_not_in_allowlist" in proc.stderr


def test_custom_op_options_decode_to_node_attributes(tmp_path):
    proc = run_cli(
        _unsupported_model(tmp_path),
        "-o",
        tmp_path,
        "--allow-custom-ops",
        "--custom-op-allowlist",
        "Frobnicate",
    )
    assert proc.returncode == 0, proc.stderr
    from ai_edge_litert import schema_py_generated as schema

    buf = (tmp_path / "odd_float32.tflite").read_bytes()
    m = schema.Model.GetRootAs(buf, 0)
    codes = [m.OperatorCodes(i) for i in range(m.OperatorCodesLength())]
    custom = [c.CustomCode().decode() for c in codes if c.CustomCode()]
    assert custom == ["ONNX_example.ops.Frobnicate"]
    sg = m.Subgraphs(0)
    ops = [sg.Operators(i) for i in range(sg.OperatorsLength())]
    (op,) = [o for o in ops if codes[o.OpcodeIndex()].CustomCode()]
    attrs = flexbuffers.Loads(bytes(op.CustomOptionsAsNumpy()))
    assert attrs == {"gain": pytest.approx(2.5), "mode": "fast", "taps": [1, 2, 3]}


@pytest.mark.parametrize(
    "content, code",
    [(b"not a protobuf at all \x00\xff", "invalid_model"), (None, "file_not_found")],
)
def test_bad_input_exits_2(tmp_path, content, code):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    proc = run_cli(path, "-o", tmp_path)
    assert proc.returncode == errors.EXIT_BAD_INPUT, proc.stderr
    assert code in proc.stderr
    assert not list(tmp_path.glob("*.tflite"))


def test_failed_run_does_not_clobber_existing_output(tmp_path):
    target = tmp_path / "odd_float32.tflite"
    target.write_bytes(b"previous good file")
    run_cli(_unsupported_model(tmp_path), "-o", tmp_path)
    assert target.read_bytes() == b"previous good file"


def test_input_shape_pin_and_version(tmp_path):
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        inputs=[("x", np.float32, ("N", 3))],
        outputs=[("y", np.float32, ("N", 3))],
    )
    path = tmp_path / "dyn.onnx"
    onnx.save(model, path)
    # Only the batch is unknown: converted with a run-time batch size.
    proc = run_cli(path, "-o", tmp_path, "--report-op-coverage")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "dyn_op_coverage_report.json").read_text())
    assert report["io"][0]["shape_signature"] == [-1, 3]
    # Other unknown dims are dynamic too ...
    wide = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        inputs=[("x", np.float32, ("N", "C"))],
        outputs=[("y", np.float32, ("N", "C"))],
    )
    onnx.save(wide, tmp_path / "wide.onnx")
    proc = run_cli(tmp_path / "wide.onnx", "-o", tmp_path, "--report-op-coverage")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "wide_op_coverage_report.json").read_text())
    assert report["io"][0]["shape_signature"] == [-1, -1]
    # ... unless the weights fix them: refused with the pinning hint.
    fixed = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        inputs=[("x", np.float32, ("N", "C"))],
        outputs=[("y", np.float32, ("N", 2))],
        initializers={"w": np.ones((3, 2), np.float32)},
    )
    onnx.save(fixed, tmp_path / "fixed.onnx")
    proc = run_cli(tmp_path / "fixed.onnx", "-o", tmp_path)
    assert proc.returncode == errors.EXIT_UNSUPPORTED
    assert "dynamic_shape_unsupported" in proc.stderr and "--input-shape" in proc.stderr
    proc = run_cli(
        path, "-o", tmp_path, "--input-shape", "x:5,3", "--validate", "--report-op-coverage"
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "dyn_op_coverage_report.json").read_text())
    assert report["io"][0]["tflite_shape"] == [5, 3]
    proc = run_cli(path, "-o", tmp_path, "--batch-size", "2", "--validate")
    assert proc.returncode == 0, proc.stderr
    assert run_cli("--version").stdout.startswith("onnx2tflite_direct")


def test_validation_mismatch_exits_4(tmp_path, monkeypatch, caplog):
    """A deliberately wrong lowering (test-only) is caught by --validate with exit code 4."""
    from onnx2tflite_direct.registry import REGISTRY

    spec = REGISTRY.lookup("", "Relu", 17)
    monkeypatch.setattr(
        spec, "lower", lambda ctx: ctx.emit("TANH", [ctx.input(0)], [ctx.output(0)])
    )
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        inputs=[("x", np.float32, (2, 3))],
        outputs=[("y", np.float32, (2, 3))],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(model, path)
    assert cli.main([str(path), "-o", str(tmp_path), "--validate"]) == errors.EXIT_VALIDATION


def test_test_data_feeds_validation(tmp_path):
    samples = np.random.default_rng(0).standard_normal((3, 1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "image.npy", samples.reshape(3, 3, 32, 32))
    proc = run_cli(
        EXAMPLE, "-o", tmp_path, "--validate", "--test-data", f"image={tmp_path / 'image.npy'}"
    )
    assert proc.returncode == 0, proc.stderr


def test_validate_all_tensors_names_injected_node_and_exits_4(tmp_path, monkeypatch):
    """A wrong lowering on one node: --validate fails (4) and the bisection names that node."""
    from onnx2tflite_direct.registry import REGISTRY

    spec = REGISTRY.lookup("", "Relu", 17)
    original = spec.lower

    def wrong_on_r2(ctx):
        if ctx.node.outputs[0] == "r2":
            ctx.emit("TANH", [ctx.input(0)], [ctx.output(0)])
        else:
            original(ctx)

    monkeypatch.setattr(spec, "lower", wrong_on_r2)
    nodes = [
        helper.make_node("Relu", ["x"], ["r1"]),
        helper.make_node("Mul", ["r1", "two"], ["m"]),
        helper.make_node("Relu", ["m"], ["r2"]),
        helper.make_node("Add", ["r2", "r1"], ["y"]),
    ]
    model = make_model(
        nodes, [("x", np.float32, (2, 8))], [("y", np.float32, (2, 8))], {"two": np.float32(2)}
    )
    path = tmp_path / "chain.onnx"
    onnx.save(model, path)
    html = tmp_path / "diag.html"
    code = cli.main([str(path), "-o", str(tmp_path), "--validate", "--html-report", str(html)])
    assert code == errors.EXIT_VALIDATION
    diag = json.loads((tmp_path / "chain_tensor_diagnostics.json").read_text())
    assert diag["first_divergent_node"] == "Relu:r2"
    assert "<svg" in html.read_text()


def test_inspect_subcommand(tmp_path):
    assert run_cli(EXAMPLE, "-o", tmp_path).returncode == 0
    proc = run_cli("inspect", tmp_path / "small_cnn_float32.tflite", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["op_histogram"]["CONV_2D"]["count"] == 2
    assert run_cli("inspect", tmp_path / "missing.tflite").returncode == errors.EXIT_BAD_INPUT


def test_unwritable_output_is_bad_input_not_a_traceback(tmp_path):
    """Writing fails (the target path is a directory): a typed error, exit 2."""
    (tmp_path / "small_cnn_float32.tflite").mkdir()
    proc = run_cli(EXAMPLE, "-o", tmp_path)
    assert proc.returncode == errors.EXIT_BAD_INPUT, proc.stderr
    assert "cannot write" in proc.stderr and "Traceback" not in proc.stderr


def test_validate_without_the_extra_is_bad_input(tmp_path, monkeypatch):
    """Core-only installs convert; --validate then says how to get the runtimes (exit 2)."""
    from onnx2tflite_direct import validate

    def missing():
        raise ImportError("onnxruntime is needed; pip install onnx2tflite_direct[validate]")

    monkeypatch.setattr(validate, "_import_onnxruntime", missing)
    assert cli.main([str(EXAMPLE), "-o", str(tmp_path), "--validate"]) == errors.EXIT_BAD_INPUT


def test_outputs_get_ordinary_file_permissions(tmp_path):
    import os
    import stat

    assert run_cli(EXAMPLE, "-o", tmp_path, "--report-op-coverage").returncode == 0
    mask = os.umask(0)
    os.umask(mask)
    for name in ("small_cnn_float32.tflite", "small_cnn_op_coverage_report.json"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o666 & ~mask, oct(mode)


def test_every_flag_reaches_its_convert_option(monkeypatch, tmp_path):
    """Every on/off option given on the command line arrives as its ConvertOptions field."""
    from onnx2tflite_direct import options, pipeline

    seen = {}

    def fake_convert(model, out, opts):
        seen["opts"] = opts
        raise errors.BadInputError(errors.INVALID_OPTION, "stop here")

    monkeypatch.setattr(pipeline, "convert_checked", fake_convert)
    switches = {
        name: meta.flags[0].name
        for name in options.FIELDS
        if (meta := options.meta_of(name)) and meta.flags[0].kind == "switch"
    }
    switches.pop("calibration_random")  # needs --quantize int8, checked elsewhere
    switches.pop("strict_integer")
    args = ["m.onnx", "-o", str(tmp_path), *switches.values(), "--no-fuse"]
    assert cli.main(args) == errors.EXIT_BAD_INPUT
    assert all(getattr(seen["opts"], n) is True for n in switches)
    assert seen["opts"].fuse is False
    cli.main(["m.onnx", "-o", str(tmp_path)])
    assert not any(getattr(seen["opts"], n) for n in switches)
    assert seen["opts"].fuse is True
