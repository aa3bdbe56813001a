"""What ``--validate`` / ``--validate-all-tensors`` promise around the comparison itself
(issue 19, items 2, 3, 4, 11 and 12): dynamic dims, a failed validation writing nothing,
user mistakes in test data as typed errors, custom ops, results on stdout, constant outputs,
and every quantized variant measured on the same inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from harness import make_model
from onnx import helper

import onnx2tflite_direct as o2t
from onnx2tflite_direct import cli, diagnostics, errors, pipeline
from onnx2tflite_direct import validate as V

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "small_cnn.onnx"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def _cnn(batch="batch") -> onnx.ModelProto:
    """conv -> relu -> global average pool -> flatten -> gemm, batch dim ``batch``."""
    rng = np.random.default_rng(0)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], "conv", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"], "relu"),
        n("GlobalAveragePool", ["r1"], ["g"], "gap"),
        n("Flatten", ["g"], ["f"], "flatten"),
        n("Gemm", ["f", "wf", "bf"], ["y"], "fc", transB=1),
    ]
    inits = {"w1": w(8, 3, 3, 3), "b1": w(8), "wf": w(5, 8), "bf": w(5)}
    return make_model(
        nodes, [("x", np.float32, [batch, 3, 12, 12])], [("y", np.float32, [batch, 5])], inits
    )


def _save(model, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def _samples(n: int, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((n, 3, 12, 12)).astype(dtype)


def _wrong_relu(monkeypatch):
    """Test-only wrong lowering: every Relu emits TANH (LiteRT then differs from onnxruntime)."""
    from onnx2tflite_direct.registry import REGISTRY

    spec = REGISTRY.lookup("", "Relu", 17)
    monkeypatch.setattr(
        spec, "lower", lambda ctx: ctx.emit("TANH", [ctx.input(0)], [ctx.output(0)])
    )


# -- item 2: per-tensor diagnostics on a model with a dynamic dim ----------------------------


def test_all_tensor_diagnostics_and_html_on_a_dynamic_batch(tmp_path):
    """They used to crash (ValueError: Cannot set tensor: Dimension mismatch, exit 1)."""
    path = _save(_cnn(), tmp_path, "dyn")
    html = tmp_path / "diag.html"
    code = cli.main(
        [str(path), "-o", str(tmp_path), "--validate-all-tensors", "--html-report", str(html)]
    )
    assert code == errors.EXIT_OK
    diag = json.loads((tmp_path / "dyn_tensor_diagnostics.json").read_text())
    assert diag["outputs_ok"] and diag["first_divergent_node"] is None
    assert diag["measured"]["compared"] >= 4  # the tensors were really compared
    assert "<svg" in html.read_text()


def test_all_tensor_diagnostics_at_any_batch_the_file_takes():
    res = o2t.convert(_cnn())
    for n in (1, 3):
        diag = diagnostics.validate_all_tensors(res, feeds={"x": _samples(n)})
        assert diag["outputs_ok"] and diag["measured"]["compared"] >= 4
        gemm = next(node for node in diag["nodes"] if node["name"] == "fc")
        assert gemm["outputs"][0]["shape"] == [n, 5]


def test_all_tensor_diagnostics_take_test_data_of_a_dynamic_batch(tmp_path):
    np.save(tmp_path / "x.npy", _samples(3, np.float64))
    path = _save(_cnn(), tmp_path, "dyn")
    args = [str(path), "-o", str(tmp_path), "--validate-all-tensors"]
    assert cli.main([*args, "--test-data", f"x={tmp_path / 'x.npy'}"]) == errors.EXIT_OK
    diag = json.loads((tmp_path / "dyn_tensor_diagnostics.json").read_text())
    assert diag["outputs_ok"]


# -- item 3: a failed validation writes nothing and says so ----------------------------------


def test_failed_validation_writes_no_tflite_and_reports_failure(tmp_path, monkeypatch, capsys):
    _wrong_relu(monkeypatch)
    path = _save(_cnn(batch=1), tmp_path, "cnn")
    good = tmp_path / "cnn_float32.tflite"
    good.write_bytes(b"previous good file")
    code = cli.main(
        [str(path), "-o", str(tmp_path), "--validate", "--report-op-coverage", "-q"]
        + ["--quantize", "fp16"]
    )
    assert code == errors.EXIT_VALIDATION
    assert good.read_bytes() == b"previous good file"  # not clobbered
    assert sorted(p.name for p in tmp_path.glob("*.tflite")) == ["cnn_float32.tflite"]
    assert not list(tmp_path.glob(".*"))  # no pending leftovers
    report = json.loads((tmp_path / "cnn_op_coverage_report.json").read_text())
    assert report["success"] is False
    assert report["error"]["reason_code"] == "validation_mismatch"
    assert report["error"]["exit_code"] == errors.EXIT_VALIDATION
    assert report["validation"]["ok"] is False and report["output_files"] == []
    assert "validation FAILED" in capsys.readouterr().out


def test_failed_validation_still_writes_the_requested_diagnostics(tmp_path, monkeypatch):
    """The bisection is what a failed validation is diagnosed with: it is written (its folder
    created) although the run writes no model file."""
    _wrong_relu(monkeypatch)
    path = _save(_cnn(), tmp_path, "dyn")
    out = tmp_path / "new" / "folder"
    args = [str(path), "-o", str(out), "--validate", "--validate-all-tensors"]
    assert cli.main(args) == errors.EXIT_VALIDATION
    diag = json.loads((out / "dyn_tensor_diagnostics.json").read_text())
    assert diag["first_divergent_node"] == "relu" and not list(out.glob("*.tflite"))


def test_failed_validation_in_the_library_carries_both_results(tmp_path, monkeypatch):
    _wrong_relu(monkeypatch)
    with pytest.raises(o2t.ValidationMismatchError) as info:
        o2t.convert(_cnn(batch=1), tmp_path, validate=True, report_op_coverage=True)
    err = info.value
    assert err.exit_code == errors.EXIT_VALIDATION and not err.result.ok
    assert err.conversion.validation is err.result
    assert len(bytes(err.conversion.tflite_bytes)) > 0  # in memory, for diagnosis
    assert "float32" not in err.conversion.paths and not list(tmp_path.glob("*.tflite"))
    assert err.conversion.report["success"] is False


def test_failed_validation_of_a_streamed_model_keeps_the_previous_file(tmp_path, monkeypatch):
    """Large models are written to disk before validation: under a pending name, removed on
    failure, never over the previous good file."""
    monkeypatch.setattr(pipeline, "STREAM_TO_DISK_BYTES", 0)
    good = tmp_path / "cnn_float32.tflite"
    good.write_bytes(b"previous good file")
    res = o2t.convert(_cnn(batch=1), tmp_path, stem="cnn", validate=True)
    assert res.paths["float32"] == good and good.read_bytes() == bytes(res.tflite_bytes)
    good.write_bytes(b"previous good file")
    _wrong_relu(monkeypatch)
    with pytest.raises(o2t.ValidationMismatchError):
        o2t.convert(_cnn(batch=1), tmp_path, stem="cnn", validate=True)
    assert good.read_bytes() == b"previous good file"
    assert [p.name for p in tmp_path.iterdir()] == ["cnn_float32.tflite"]


# -- item 4: user mistakes in validation inputs are typed, one line, never exit 1 -----------


def test_float64_test_data_is_cast_with_a_note(tmp_path, caplog):
    np.save(tmp_path / "x.npy", _samples(2, np.float64))  # numpy's default dtype
    path = _save(_cnn(batch=1), tmp_path, "cnn")
    args = [str(path), "-o", str(tmp_path), "--validate", "--report-op-coverage"]
    assert cli.main([*args, "--test-data", f"x={tmp_path / 'x.npy'}"]) == errors.EXIT_OK
    assert "float64 samples cast to float32" in caplog.text
    report = json.loads((tmp_path / "cnn_op_coverage_report.json").read_text())
    assert report["validation"]["ok"] and report["validation"]["runs"] == 2
    assert any("cast to float32" in n for n in report["validation"]["notes"])


def test_test_data_on_a_dynamic_batch_runs_every_sample(tmp_path):
    """Samples are fed at their own batch (the file is resized), none is dropped."""
    res = o2t.convert(_cnn(), validate=True, test_data={"x": _samples(5)})
    assert res.validation.ok and res.validation.runs == 1
    assert res.validation.feeds["x"].shape[0] == 5
    runs, notes = V.test_data_runs(
        V.reference_model(res.model, res.report["dynamic_shapes"]), {"x": _samples(70)}
    )
    assert [r["x"].shape[0] for r in runs] == [32, 32, 6] and notes == []
    # One interpreter serves every run, resized to each (32, 32, then 6 samples).
    many = o2t.convert(_cnn(), validate=True, test_data={"x": _samples(70)}).validation
    assert many.ok and many.runs == 3


def test_left_over_samples_at_a_static_batch_are_noted():
    res = o2t.convert(_cnn(batch=2), validate=True, test_data={"x": _samples(5)})
    assert res.validation.ok and res.validation.runs == 2
    assert any("1 of 5 samples not validated" in n for n in res.validation.notes)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"x": np.zeros((2, 3, 10, 12), np.float32)}, "test data 'x' has shape 2x3x10x12"),
        ({"x": np.zeros((2, 3, 12, 12), np.complex64)}, "test data 'x' is complex64"),
        ({"x": _samples(2), "z": _samples(2)}, "unknown ['z']"),
    ],
)
def test_unusable_test_data_is_bad_input(tmp_path, data, message, caplog):
    path = _save(_cnn(), tmp_path, "dyn")
    for name, arr in data.items():
        np.save(tmp_path / f"{name}.npy", arr)
    specs = [f"--test-data={name}={tmp_path / (name + '.npy')}" for name in data]
    code = cli.main([str(path), "-o", str(tmp_path / "out"), "--validate", *specs])
    assert code == errors.EXIT_BAD_INPUT
    assert message in caplog.text
    assert not list((tmp_path / "out").glob("*.tflite"))


def _custom_op_model(tmp_path) -> Path:
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("MyOp", ["a"], ["b"], domain="com.example", alpha=1.5),
            helper.make_node("Relu", ["b"], ["y"]),
        ],
        [("x", np.float32, (1, 4))],
        [("y", np.float32, (1, 4))],
        opset={"": 17, "com.example": 1},
        check=False,
    )
    model.graph.value_info.append(
        helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1, 4])
    )
    return _save(model, tmp_path, "custom")


def test_validate_with_custom_ops_is_skipped_in_one_line(tmp_path, caplog, capsys):
    """Neither runtime can run the CUSTOM op: exit 0, the file written, one warning line, and
    the report says validation was skipped (ok null)."""
    path = _custom_op_model(tmp_path)
    base = [str(path), "-o", str(tmp_path), "--allow-custom-ops", "--custom-op-allowlist", "MyOp"]
    code = cli.main([*base, "--validate", "--report-op-coverage"])
    assert code == errors.EXIT_OK
    skipped = [r.getMessage() for r in caplog.records if "validation skipped" in r.getMessage()]
    assert len(skipped) == 1 and "com.example.MyOp" in skipped[0] and "\n" not in skipped[0]
    assert (tmp_path / "custom_float32.tflite").exists()
    report = json.loads((tmp_path / "custom_op_coverage_report.json").read_text())
    assert report["success"] and report["validation"]["ok"] is None
    assert report["validation"]["skipped"] == skipped[0].removeprefix("warning: ")
    assert "validation PASSED" not in capsys.readouterr().out
    assert cli.main([*base, "--validate-all-tensors"]) == errors.EXIT_OK


# -- item 11: results on stdout; constant outputs prove nothing ------------------------------


def test_validation_table_goes_to_stdout(tmp_path, capsys):
    assert cli.main([str(EXAMPLE), "-o", str(tmp_path), "--validate"]) == errors.EXIT_OK
    captured = capsys.readouterr()
    assert "validation PASSED" in captured.out and "validation PASSED" not in captured.err


def test_constant_output_is_flagged(tmp_path, caplog):
    """A softmax over zero logits is 1/N whatever the input: any constant would match it."""
    model = make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
        ],
        [("x", np.float32, (2, 8))],
        [("y", np.float32, (2, 16))],
        {"w": np.zeros((8, 16), np.float32)},
    )
    res = o2t.convert(model, validate=True)
    assert res.validation.ok and res.validation.outputs["y"]["constant_reference"]
    assert any("constant" in n and "proves nothing" in n for n in res.validation.notes)
    assert "ok (constant)" in V.format_table(res.validation)
    assert "proves nothing" in caplog.text
    assert res.report["validation"]["outputs"]["y"]["constant_reference"] is True
    varied = o2t.convert(str(EXAMPLE), validate=True).validation
    assert not varied.notes and not varied.outputs["probs"]["constant_reference"]
    # One value (a class index at batch 1) cannot vary: nothing to warn about.
    argmax = make_model(
        [helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0)],
        [("x", np.float32, (1, 8))],
        [("y", np.int64, (1,))],
    )
    single = o2t.convert(argmax, validate=True).validation
    assert single.ok and not single.notes and not single.outputs["y"]["constant_reference"]


@pytest.mark.skipif(not (LIGHT / "light_bvlc_alexnet.onnx").exists(), reason="no light models")
def test_light_model_with_constant_output_is_flagged():
    res = o2t.convert(str(LIGHT / "light_bvlc_alexnet.onnx"), validate=True)
    assert res.validation.ok
    assert any("proves nothing" in n for n in res.validation.notes)


# -- item 12: every variant written is measured on the same inputs ---------------------------


def test_every_variant_is_measured_against_the_float_reference(tmp_path, capsys):
    args = [str(EXAMPLE), "-o", str(tmp_path), "--validate", "--report-op-coverage"]
    args += ["--quantize", "fp16", "dynamic", "int8", "--calibration-random", "-q"]
    assert cli.main(args) == errors.EXIT_OK
    report = json.loads((tmp_path / "small_cnn_op_coverage_report.json").read_text())
    variants = report["validation"]["variants"]
    written = {f["kind"] for f in report["output_files"]} - {"float32"}
    assert (
        set(variants)
        == written
        == {
            "float16",
            "dynamic_range_quant",
            "integer_quant",
            "full_integer_quant",
        }
    )
    for kind, v in variants.items():
        m = v["outputs"]["probs"]
        assert v["error"] is None and 20 < m["sqnr_db"] < 160, (kind, m)
        assert 0 < m["max_abs"] < 0.1 and m["cosine"] > 0.99
    # float16 weights lose far less than int8 ones; the integer-I/O file is dequantized for
    # the comparison (its output step, 1/256 on a softmax, bounds its error from below).
    assert variants["float16"]["outputs"]["probs"]["sqnr_db"] > max(
        variants[k]["outputs"]["probs"]["sqnr_db"] for k in ("integer_quant", "dynamic_range_quant")
    )
    out = capsys.readouterr().out
    for kind in written:
        assert f"\n{kind} " in out


def test_a_poor_variant_does_not_fail_the_run():
    """The float32 file is judged; a variant is only measured (here: int8 outputs compared
    with a deliberately tiny tolerance still exit 0)."""
    res = o2t.convert(
        str(EXAMPLE), validate=True, atol=1e-6, quantize=("int8",), calibration_random=True
    )
    assert res.validation.ok
    m = res.validation.variants["full_integer_quant"]["outputs"]["probs"]
    assert m["max_abs"] > 1e-6 * max(1.0, m["max_expected_abs"])  # far beyond the tolerance


def test_a_variant_litert_cannot_run_is_reported_not_raised():
    res = o2t.convert(_cnn(batch=1))
    out = V.validate(res.model, res.tflite_bytes, res.report["io"], variants={"broken": b"junk"})
    assert out.ok and out.variants["broken"]["outputs"] == {}
    error = out.variants["broken"]["error"]
    assert error.startswith("LiteRT could not run it: ") and "\n" not in error
    table = V.format_table(out)
    assert any(ln.startswith("broken ") and "could not run" in ln for ln in table.splitlines())


def test_an_already_quantized_models_integer_file_is_measured_too(tmp_path):
    """The integer file built from a QDQ model's own scales is a variant like the others."""
    from test_prequantized_convert import _quantize_static, float_cnn

    qmodel = _quantize_static(float_cnn(), tmp_path, per_channel=True)
    res = o2t.convert(qmodel, keep_io_layout=True, validate=True)
    assert res.validation.ok
    m = res.validation.variants["integer_quant"]["outputs"]["y"]
    assert m["sqnr_db"] >= 30  # as test_prequantized_convert measures it by hand
