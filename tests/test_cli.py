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

    def fake_convert(model, out, opts, io_check=None):
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


# ---- issue 19: what a new user hits -------------------------------------------------------


def _relu_model(tmp_path: Path, batch="N") -> Path:
    """x [batch, 3] -> Relu -> y: a model whose first dim is dynamic."""
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        inputs=[("x", np.float32, (batch, 3))],
        outputs=[("y", np.float32, (batch, 3))],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(model, path)
    return path


def _main(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error")]


def test_html_report_in_a_missing_folder_fails_before_anything_is_written(tmp_path, capsys):
    """Item 4: was a raw FileNotFoundError (exit 1) after the .tflite was written."""
    out = tmp_path / "out"
    code, _, err = _main(capsys, EXAMPLE, "-o", out, "--html-report", tmp_path / "newdir/x.html")
    assert code == errors.EXIT_BAD_INPUT
    (line,) = _error_lines(err)
    assert "--html-report" in line and "newdir" in line and "does not exist" in line
    assert not out.exists()


def test_test_data_not_a_multiple_of_batch_size_is_refused(tmp_path, capsys):
    """Item 4: 5 samples at --batch-size 4 silently dropped the 5th; now exit 2 naming both."""
    model = _relu_model(tmp_path)
    np.save(tmp_path / "x.npy", np.ones((5, 3), np.float32))
    code, _, err = _main(
        capsys,
        model,
        "-o",
        tmp_path / "out",
        "--validate",
        "--batch-size",
        "4",
        "--test-data",
        f"x={tmp_path / 'x.npy'}",
    )
    assert code == errors.EXIT_BAD_INPUT
    (line,) = _error_lines(err)
    assert "--test-data" in line and "--batch-size" in line and "5 samples" in line
    np.save(tmp_path / "x.npy", np.ones((8, 3), np.float32))  # two full batches: fine
    code, _, err = _main(
        capsys, model, "-o", tmp_path / "out", "--validate", "--batch-size", "4",
        "--test-data", f"x={tmp_path / 'x.npy'}",
    )  # fmt: skip
    assert code == 0, err


@pytest.mark.parametrize("flag", ["--test-data", "--calibration-data"])
def test_a_file_that_is_not_npy_says_so_not_pickle(tmp_path, capsys, flag):
    """Items 4 and 11: numpy's "Cannot load file containing pickled data" reached the user."""
    bad = tmp_path / "bad.npy"
    bad.write_text("1,2,3\n")
    extra = ["--quantize", "int8"] if flag == "--calibration-data" else ["--validate"]
    code, _, err = _main(capsys, EXAMPLE, "-o", tmp_path / "o", *extra, flag, f"image={bad}")
    assert code == errors.EXIT_BAD_INPUT
    (line,) = _error_lines(err)
    assert "pickle" not in line and "not a .npy file" in line and flag in line


def test_a_calibration_folder_with_a_foreign_npz_says_so(tmp_path, capsys):
    (tmp_path / "calib").mkdir()
    (tmp_path / "calib" / "0.npz").write_text("not a zip")
    args = ["--quantize", "int8", "--calibration-data", tmp_path / "calib"]
    code, _, err = _main(capsys, EXAMPLE, "-o", tmp_path / "o", *args)
    assert code == errors.EXIT_BAD_INPUT
    (line,) = _error_lines(err)
    assert "pickle" not in line and "not a .npz file" in line and "--calibration-data" in line


def test_full_integer_file_with_float_ops_warns_with_the_count(tmp_path, capsys):
    """Item 5: a model with an op that has no integer kernel gave a float "full_integer_quant"
    silently (it was an LSTM loop; recurrent layers now swap in integer forms, SIN has none)."""
    model = make_model(
        [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Sin", ["m"], ["y"])],
        inputs=[("x", np.float32, (2, 8))],
        outputs=[("y", np.float32, (2, 4))],
        initializers={"W": np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)},
    )
    path = tmp_path / "sin.onnx"
    onnx.save(model, path)
    args = [path, "-o", tmp_path, "--quantize", "int8", "--calibration-random", "-q"]
    args.append("--allow-float-ops")  # (without it the file is refused: test_full_integer.py)
    code, _, err = _main(capsys, *args)
    assert code == 0, err
    report = _report_of(path, tmp_path, args)
    (full,) = [q for q in report["quantization"] if q["kind"] == "full_integer_quant"]
    warning = [ln for ln in err.splitlines() if "full_integer_quant is not all-integer" in ln]
    assert len(warning) == 1, err
    assert f"{len(full['float_ops'])} op(s) still run in float" in warning[0]
    assert len(full["float_ops"]) > 0
    # The random-calibration warning is printed once (item 8), in one wording.
    assert sum("random" in ln for ln in err.splitlines()) == 1, err


def _report_of(model: Path, out: Path, args) -> dict:
    cli.main([str(a) for a in args] + ["--report-op-coverage"])
    return json.loads((out / f"{model.stem}_op_coverage_report.json").read_text())


CONFLICTS = [
    (["--input-shape", "x:4,3", "--batch-size", "2"], ["--input-shape", "--batch-size"]),
    (["--keep-input-layout", "x", "--channel-last-input", "x"], ["--keep-input-layout", "--channel-last-input"]),
    (["-q", "-v"], ["-q", "-v"]),
    (["--quantize", "int8", "--calibration-data", "CALIB", "--calibration-random"], ["--calibration-data", "--calibration-random"]),
    (["--atol", "-1"], ["--atol"]),
    (["--seed", "-3"], ["--seed"]),
]  # fmt: skip


@pytest.mark.parametrize("args,flags", CONFLICTS, ids=lambda v: " ".join(v))
def test_conflicting_options_are_exit_2_naming_both_flags(tmp_path, capsys, args, flags):
    """Item 7: conflicting options were accepted silently (one of them won)."""
    np.save(tmp_path / "calib.npy", np.ones((4, 2, 3), np.float32))
    args = [a.replace("CALIB", f"x={tmp_path / 'calib.npy'}") for a in args]
    code, _, err = _main(capsys, _relu_model(tmp_path), "-o", tmp_path / "out", *args)
    assert code == errors.EXIT_BAD_INPUT, err
    (line,) = _error_lines(err)
    assert all(f in line for f in flags), line
    assert not (tmp_path / "out").exists()


DEAD = [
    (["--calibration-data", "CALIB"], ["--calibration-data", "--quantize"]),
    (["--quantize", "int8", "--calibration-random", "--calibration-percentile", "99.9"], ["--calibration-percentile", "--calibration-method"]),
    (["--custom-op-allowlist", "MyOp"], ["--custom-op-allowlist", "--allow-custom-ops"]),
    (["--quantize", "fp16", "--strict-integer"], ["--strict-integer", "--quantize"]),
    (["--atol", "1e-3"], ["--atol", "--validate"]),
    (["--test-data", "X"], ["--test-data", "--validate"]),
    (["--keep-io-layout", "--keep-output-layout", "y"], ["--keep-output-layout", "--keep-io-layout"]),
]  # fmt: skip


@pytest.mark.parametrize("args,flags", DEAD, ids=lambda v: " ".join(v))
def test_an_option_without_effect_gets_a_warning(tmp_path, capsys, args, flags):
    """Item 7: a flag that has no effect was accepted silently."""
    np.save(tmp_path / "calib.npy", np.ones((4, 2, 3), np.float32))
    np.save(tmp_path / "x.npy", np.ones((4, 3), np.float32))
    args = [a.replace("CALIB", f"x={tmp_path / 'calib.npy'}") for a in args]
    args = [f"x={tmp_path / 'x.npy'}" if a == "X" else a for a in args]
    code, _, err = _main(capsys, _relu_model(tmp_path, batch=2), "-o", tmp_path, *args)
    assert code == 0, err
    (line,) = [ln for ln in err.splitlines() if "has no effect" in ln]
    assert all(f in line for f in flags), line


def test_validation_options_have_an_effect_with_validate_all_tensors(tmp_path, capsys):
    args = ["--validate-all-tensors", "--atol", "1e-3", "--seed", "3"]
    code, _, err = _main(capsys, EXAMPLE, "-o", tmp_path, *args)
    assert code == 0, err
    assert "no effect" not in err


def test_messages_name_the_options_of_the_interface_used(tmp_path, capsys):
    """Item 8: CLI errors named the API's arguments and API errors the CLI's flags."""
    from onnx2tflite_direct import convert
    from onnx2tflite_direct.options import ConvertOptions

    with pytest.raises(errors.BadInputError) as info:
        convert(str(EXAMPLE), atol=-1)
    assert "atol" in info.value.message and "--atol" not in info.value.message
    with pytest.raises(errors.BadInputError) as info:
        convert(str(EXAMPLE), options=ConvertOptions(input_shapes={"nope": (1, 2)}))
    assert "--input-shape" not in info.value.message and "input_shapes" in info.value.message
    with pytest.raises(errors.BadInputError) as info:
        convert(str(EXAMPLE), quantize=["int8"])
    assert "calibration_data" in info.value.message and "--" not in info.value.message
    code, _, err = _main(capsys, EXAMPLE, "-o", tmp_path, "--quantize", "int8")
    assert code == errors.EXIT_BAD_INPUT
    assert "give --calibration-data" in err and "give calibration_data" not in err
    code, _, err = _main(capsys, EXAMPLE, "-o", tmp_path, "--input-shape", "nope:1,2")
    assert code == errors.EXIT_BAD_INPUT and "--input-shape" in err
    # Messages written for Python callers are re-spelled for the command line.
    from onnx2tflite_direct.options import to_cli_wording

    said = to_cli_wording("pin it with input_shapes=... / batch_size=...")
    assert said == "pin it with --input-shape NAME:d0,d1,... / --batch-size N"
    assert to_cli_wording("try fuse=False or seed=3") == "try --no-fuse or --seed 3"


def test_convert_takes_an_options_object_and_keeps_its_keywords(tmp_path):
    import inspect

    from onnx2tflite_direct import convert
    from onnx2tflite_direct.options import FIELDS, ConvertOptions

    params = inspect.signature(convert).parameters
    assert set(FIELDS) <= set(params) and params["atol"].default == 1e-4
    a = convert(str(EXAMPLE), keep_io_layout=True).tflite_bytes
    b = convert(str(EXAMPLE), options=ConvertOptions(keep_io_layout=True)).tflite_bytes
    assert bytes(a) == bytes(b)
    with pytest.raises(errors.BadInputError, match="not both"):
        convert(str(EXAMPLE), options=ConvertOptions(), seed=1)
    with pytest.raises(errors.BadInputError, match="unknown option"):
        convert(str(EXAMPLE), keep_io_layuot=True)


def test_help_states_defaults_choices_subcommand_and_logging_flags(capsys):
    """Item 10: --help had no defaults, no decompose list, no inspect, no -v/-q help."""
    from onnx2tflite_direct.registry import decomposable_ops

    assert cli.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in (
        "--atol X validation tolerance",
        "(default: 0.0001)",
        "(default: 0)",
        "(default: minmax)",
        "(default: int8)",
        "(default: per-channel)",
        "(default: 99.99)",
        "inspect FILE.tflite",
        "-v, --verbose also print",
        "-q, --quiet print only",
        "available: " + ", ".join(decomposable_ops()),
    ):
        assert needle in text, needle


def test_verbose_prints_more_and_quiet_less(tmp_path, capsys):
    """Item 10: -v printed nothing more than the default."""
    lines = {}
    for flag in ("-q", None, "-v"):
        code, out, err = _main(capsys, EXAMPLE, "-o", tmp_path, *([flag] if flag else []))
        assert code == 0
        lines[flag] = len((out + err).splitlines())
    assert lines["-q"] < lines[None] < lines["-v"]


def test_quiet_hides_litert_xnnpack_banner(tmp_path):
    """Item 11: LiteRT's "Created TensorFlow Lite XNNPACK delegate" line showed under -q."""
    proc = run_cli(EXAMPLE, "-o", tmp_path, "--validate", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "XNNPACK" not in proc.stderr
    assert "XNNPACK" in run_cli(EXAMPLE, "-o", tmp_path, "--validate").stderr


def test_failed_run_leaves_no_empty_output_folder(tmp_path, capsys):
    """Item 11: every failed run left an empty output folder, even for file_not_found."""
    code, _, err = _main(capsys, tmp_path / "missing.onnx", "-o", tmp_path / "out")
    assert code == errors.EXIT_BAD_INPUT and "file_not_found" in err
    assert not (tmp_path / "out").exists()
    code, _, _ = _main(capsys, _unsupported_model(tmp_path), "-o", tmp_path / "out2")
    assert code == errors.EXIT_UNSUPPORTED
    assert not (tmp_path / "out2").exists()


def test_argument_error_is_short(capsys):
    """Item 11: an argument error printed a 25-line usage block first."""
    assert cli.main([str(EXAMPLE), "--batch-size", "x"]) == errors.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("usage:") and "--batch-size" in err[1]


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "OUT", "--quantize", "fp16", "MODEL"],
        ["--quantize", "fp16", "dynamic", "MODEL", "-o", "OUT"],
        ["-o", "OUT", "--keep-output-layout", "probs", "MODEL"],
    ],
)
def test_list_flags_do_not_swallow_the_model_path(tmp_path, capsys, args):
    """Item 11: `-o out --quantize fp16 model.onnx` took the model path as a variant."""
    args = [str(EXAMPLE) if a == "MODEL" else str(tmp_path) if a == "OUT" else a for a in args]
    code, _, err = _main(capsys, *args)
    assert code == 0, err
    assert (tmp_path / "small_cnn_float32.tflite").exists()


def test_output_dir_that_is_a_file_says_it_must_be_a_folder(tmp_path, capsys):
    """Item 11: `-o` pointing at a file said only "File exists"."""
    target = tmp_path / "out.tflite"
    target.write_bytes(b"keep me")
    code, _, err = _main(capsys, EXAMPLE, "-o", target)
    assert code == errors.EXIT_BAD_INPUT
    (line,) = _error_lines(err)
    assert "-o" in line and "must be a folder" in line
    assert target.read_bytes() == b"keep me"
    with pytest.raises(errors.BadInputError, match="output_dir"):
        from onnx2tflite_direct import convert

        convert(str(EXAMPLE), target)


def test_api_warns_about_options_without_effect_in_its_own_names(caplog):
    from onnx2tflite_direct import convert

    with caplog.at_level("WARNING", logger="onnx2tflite_direct"):
        convert(str(EXAMPLE), atol=1e-3, custom_op_allowlist=["MyOp"])
    said = [r.getMessage() for r in caplog.records if "no effect" in r.getMessage()]
    assert said == [
        "warning: custom_op_allowlist has no effect without allow_custom_ops",
        "warning: atol has no effect without validate",
    ]


def test_our_bug_is_exit_1_with_a_report_hint_and_traceback_under_verbose(
    tmp_path, capsys, monkeypatch
):
    from onnx2tflite_direct.registry import REGISTRY

    def broken(ctx):
        raise RuntimeError("deliberate")

    monkeypatch.setattr(REGISTRY.lookup("", "Relu", 17), "lower", broken)
    path = _relu_model(tmp_path, batch=2)
    assert cli.main([str(path), "-o", str(tmp_path / "o")]) == errors.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal_error" in err and "please report" in err and "Traceback" not in err
    assert cli.main([str(path), "-o", str(tmp_path / "o"), "-v"]) == errors.EXIT_INTERNAL
    assert "RuntimeError: deliberate" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shapes": [1, 2]},
        {"quantize": 5},
        {"test_data": [1]},
        {"decompose": 3},
        {"calibration_percentile": "x"},
        {"batch_size": 2.5},
        {"seed": 1.5},
        {"atol": "a"},
    ],
    ids=str,
)
def test_api_values_of_the_wrong_type_are_invalid_option(kwargs):
    """convert()'s keywords are checked like the flags: a wrong type is invalid_option, never
    a raw TypeError."""
    from onnx2tflite_direct import convert

    with pytest.raises(errors.BadInputError) as info:
        convert(str(EXAMPLE), **kwargs)
    assert info.value.reason_code == errors.INVALID_OPTION
    assert next(iter(kwargs)) in info.value.message or "wrong type" in info.value.message


def test_every_lowering_option_is_a_convert_option():
    """convert() fills LoweringOptions and QuantOptions by name from ConvertOptions: an option
    without a ConvertOptions field (flag, docs, checks) could never be set."""
    import dataclasses

    from onnx2tflite_direct.driver import LoweringOptions
    from onnx2tflite_direct.options import FIELDS
    from onnx2tflite_direct.quant.variants import QuantOptions

    names = {f.name for f in dataclasses.fields(LoweringOptions)} - {"disabled_rewrites"}
    assert names <= set(FIELDS)
    assert {f.name for f in dataclasses.fields(QuantOptions)} <= set(FIELDS)
