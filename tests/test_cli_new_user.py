"""A new user's mistakes on the command line and in convert(): each one a typed error, one
line naming the flag or input, the documented exit code, never a traceback, nothing
half-written (found by running the README on a fresh clone, then getting things wrong)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from harness import make_model
from onnx import helper

from onnx2tflite_direct import cli, convert, errors, pipeline

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "small_cnn.onnx"  # input 'image' [1, 3, 32, 32]


def _main(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _error_line(err: str) -> str:
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error")]
    return line


def test_a_bare_npy_file_as_calibration_data_names_the_flag(tmp_path, capsys):
    """`--calibration-data calib.npy` (no NAME=) reached the folder reader: exit 1,
    "TypeError: 'numpy.ndarray' object does not support the context manager protocol"."""
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((2, 3, 32, 32), np.float32))
    out = tmp_path / "out"
    code, _, err = _main(
        capsys, EXAMPLE, "-o", out, "--quantize", "int8", "--calibration-data", calib
    )
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert "--calibration-data" in line and "NAME=" in line and "invalid_option" in line
    assert not out.exists()
    with pytest.raises(errors.BadInputError, match="calibration_data") as info:
        convert(str(EXAMPLE), quantize=["int8"], calibration_data=str(calib))
    assert info.value.reason_code == errors.INVALID_OPTION


def test_calibration_data_of_the_wrong_kind_is_one_short_line():
    """An array given without its input name printed the whole array in the message."""
    samples = np.zeros((2, 3, 32, 32), np.float32)
    for wrong in (samples, [samples]):
        with pytest.raises(errors.BadInputError, match="calibration_data") as info:
            convert(str(EXAMPLE), quantize=["int8"], calibration_data=wrong)
        assert info.value.reason_code == errors.INVALID_OPTION
        assert len(str(info.value)) < 200 and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "flag,first,second,extra",
    [
        ("--input-shape", "image:1,3,32,32", "image:1,3,64,64", []),
        ("--value-hint", "image=1", "image=2", ["--validate"]),
        ("--calibration-mean", "image=0.5", "image=0.4", ["--quantize", "int8"]),
        ("--calibration-std", "image=1", "image=2,3,4", ["--quantize", "int8"]),
    ],
)
def test_one_input_given_twice_with_different_values_is_refused(
    tmp_path, capsys, flag, first, second, extra
):
    """The last value silently won: `--input-shape image:1,3,32,32 --input-shape
    image:1,3,64,64` converted at 64x64 without a word."""
    out = tmp_path / "out"
    args = [EXAMPLE, "-o", out, flag, first, flag, second, *extra]
    if "--quantize" in extra:
        args.append("--calibration-random")
    code, _, err = _main(capsys, *args)
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert flag in line and "'image' twice" in line
    assert not out.exists()


def test_the_same_pin_given_twice_is_fine(tmp_path, capsys):
    pin = "image:1,3,32,32"
    code, _, _ = _main(capsys, EXAMPLE, "-o", tmp_path, "--input-shape", pin, "--input-shape", pin)
    assert code == errors.EXIT_OK


def test_merge_named_like_the_main_model_is_refused(tmp_path, capsys):
    """The main model's signature is named after its file stem: `--merge small_cnn=...` made
    two signatures of one name, an internal error (exit 1, BuildError)."""
    code, _, err = _main(capsys, EXAMPLE, "-o", tmp_path, "--merge", f"small_cnn={EXAMPLE}")
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert "--merge" in line and "small_cnn" in line and "--signature" in line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("flag", ["-o", "--html-report"])
def test_an_empty_path_is_refused(tmp_path, capsys, flag):
    """`-o ""` wrote into the current folder; `--html-report ""` was silently ignored."""
    args = [EXAMPLE, "-o", tmp_path / "out"] if flag != "-o" else [EXAMPLE]
    code, _, err = _main(capsys, *args, flag, "")
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert f"{flag} is empty" in line
    assert not (tmp_path / "out").exists()


def test_output_dir_under_a_file_names_the_flag(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, _, err = _main(capsys, EXAMPLE, "-o", tmp_path / "afile" / "sub")
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert line.startswith("error: [invalid_option] -o ") and "is a file" in line


def _unwritable(monkeypatch, folder: Path) -> None:
    """``folder`` reads as not writable (chmod cannot show it to root, who runs CI here)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == folder and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_an_unwritable_output_dir_fails_before_converting(tmp_path, capsys, monkeypatch):
    """Was found only when the files were written, as "cannot write to DIR" naming no flag."""
    locked = tmp_path / "locked"
    locked.mkdir()
    _unwritable(monkeypatch, locked)
    for target in (locked, locked / "new" / "deeper"):
        code, _, err = _main(capsys, EXAMPLE, "-o", target)
        assert code == errors.EXIT_BAD_INPUT
        line = _error_line(err)
        assert "-o" in line and "not writable" in line and str(locked) in line
    assert not list(locked.iterdir())
    with pytest.raises(errors.BadInputError, match="output_dir"):
        convert(str(EXAMPLE), str(locked))


def test_an_unwritable_html_report_folder_fails_before_anything_is_written(
    tmp_path, capsys, monkeypatch
):
    """The .tflite and the diagnostics JSON were written, then "cannot write the tensor
    diagnostics: ... .x.html.abc123.pending" (a temporary name, not the flag) and exit 2."""
    locked = tmp_path / "locked"
    locked.mkdir()
    _unwritable(monkeypatch, locked)
    out = tmp_path / "out"
    code, _, err = _main(capsys, EXAMPLE, "-o", out, "--html-report", locked / "x.html")
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert "--html-report" in line and "not writable" in line and ".pending" not in line
    assert not out.exists()


def test_ctrl_c_is_one_line_and_leaves_every_file_whole(tmp_path, capsys, monkeypatch):
    """Ctrl-C printed a KeyboardInterrupt traceback; a model streamed to disk before the
    interrupt stayed behind as a hidden .pending file. Now: exit 130, one line, the previous
    run's file untouched, no pending file."""
    out = tmp_path / "out"
    assert cli.main([str(EXAMPLE), "-o", str(out)]) == errors.EXIT_OK
    model = out / "small_cnn_float32.tflite"
    before = model.read_bytes()
    capsys.readouterr()

    other = out / ".other_float32.tflite.abc123.pending"  # another model's run, same folder

    def interrupted(*args, **kwargs):
        other.write_bytes(b"in flight")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "STREAM_TO_DISK_BYTES", 0)  # written under a pending name
    monkeypatch.setattr(pipeline, "_write_outputs", interrupted)  # Ctrl-C before publishing
    code, _, err = _main(capsys, EXAMPLE, "-o", out, "--keep-io-layout")
    assert code == cli.EXIT_INTERRUPTED == 130
    assert "interrupted" in _error_line(err)
    assert sorted(p.name for p in out.iterdir()) == [other.name, "small_cnn_float32.tflite"]
    assert model.read_bytes() == before and other.read_bytes() == b"in flight"
    assert "130" in cli.EPILOG


def test_converting_twice_into_one_folder_replaces_the_file_whole(tmp_path, capsys):
    """The documented behaviour (-o's help): a second successful run replaces the file."""
    out = tmp_path / "out"
    assert cli.main([str(EXAMPLE), "-o", str(out)]) == errors.EXIT_OK
    first = (out / "small_cnn_float32.tflite").read_bytes()
    assert cli.main([str(EXAMPLE), "-o", str(out), "--keep-io-layout"]) == errors.EXIT_OK
    second = (out / "small_cnn_float32.tflite").read_bytes()
    assert second != first  # the NCHW input adds a TRANSPOSE
    assert sorted(p.name for p in out.iterdir()) == ["small_cnn_float32.tflite"]
    assert "replaces files of the same names" in cli.CLI_ONLY["output_dir"].doc


@pytest.mark.parametrize("command", ["inspect", "validate"])
def test_a_closed_stdout_is_not_a_traceback(tmp_path, command):
    """`... | head -1`: the reader goes away; was a BrokenPipeError traceback."""
    assert cli.main([str(EXAMPLE), "-o", str(tmp_path)]) == errors.EXIT_OK
    if command == "inspect":
        args = ["inspect", str(tmp_path / "small_cnn_float32.tflite")]
    else:
        args = [str(EXAMPLE), "-o", str(tmp_path), "--validate", "-q"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnx2tflite_direct", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    proc.stdout.close()  # before the child prints anything (its imports take a while)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == errors.EXIT_OK, err
    assert "Traceback" not in err and "BrokenPipe" not in err


@pytest.mark.parametrize(
    "kwargs,names",
    [
        ({"input_shapes": {"image": 5}}, "input_shapes"),
        ({"input_shapes": {"image": "1,3,32,32"}}, "input_shapes"),
        ({"batch_size": True}, "batch_size"),
    ],
    ids=str,
)
def test_api_values_name_their_keyword(kwargs, names):
    """`input_shapes={"image": 5}` said only "an option has a value of the wrong type";
    `batch_size=True` converted (a bool is an int)."""
    with pytest.raises(errors.BadInputError, match=names) as info:
        convert(str(EXAMPLE), **kwargs)
    assert info.value.reason_code == errors.INVALID_OPTION


def test_api_output_dir_of_the_wrong_type_is_typed():
    """convert(model, 5) raised a raw TypeError."""
    with pytest.raises(errors.BadInputError, match="output_dir") as info:
        convert(str(EXAMPLE), 5)
    assert info.value.reason_code == errors.INVALID_OPTION


def test_api_one_name_as_a_string_is_one_name(tmp_path):
    """`keep_layout="image"` was read as the names 'i', 'm', 'a', 'g', 'e' (refused naming
    'i'); `decompose="HardSwish"` as 'H', 'a', ... Now one string is one name, as
    int32_inputs already took it."""
    kept = convert(str(EXAMPLE), keep_layout="image")
    listed = convert(str(EXAMPLE), keep_layout=["image"])
    assert kept.tflite_bytes == listed.tflite_bytes
    row = next(r for r in kept.report["io"] if r["name"] == "image")
    assert row["tflite_shape"] == [1, 3, 32, 32]
    assert convert(str(EXAMPLE), decompose="HardSwish").tflite_bytes is not None


@pytest.mark.parametrize(
    "typed,meant",
    [
        ("--input-shapes", "--input-shape"),
        ("--input_shape", "--input-shape"),
        ("--qunatize", "--quantize"),
        ("--keep-io-layouts", "--keep-io-layout"),
    ],
)
def test_a_mistyped_flag_names_the_real_one(capsys, typed, meant):
    """`--input-shapes image:1,3,32,32` said only "unrecognized arguments"."""
    code = cli.main([str(EXAMPLE), typed, "x"])
    err = capsys.readouterr().err
    assert code == errors.EXIT_BAD_INPUT
    assert f"(did you mean {meant}?)" in err and "Traceback" not in err


def test_an_unknown_flag_far_from_any_gets_no_guess(capsys):
    assert cli.main([str(EXAMPLE), "--frobnicate"]) == errors.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "unrecognized arguments: --frobnicate" in err and "did you mean" not in err


def _unenterable(monkeypatch, folder: Path) -> None:
    """Paths under ``folder`` fail to stat with EACCES, as under a folder without search
    permission (which root, who runs CI here, never meets)."""
    real = os.stat

    def stat(path, *args, **kwargs):
        if Path(os.fspath(path)).is_relative_to(folder) and Path(os.fspath(path)) != folder:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)


@pytest.mark.parametrize(
    "args,named",
    [
        (["-o", "{locked}/inner/out"], "-o"),
        (["-o", "{out}", "--html-report", "{locked}/inner/x.html"], "--html-report"),
        (["-o", "{out}", "--quantize", "int8", "--calibration-data", "{locked}/inner"], "--cal"),
        (
            ["-o", "{out}", "--quantize", "int8", "--calibration-data", "image={locked}/c.npy"],
            "--c",
        ),
        (["-o", "{out}", "--validate", "--test-data", "image={locked}/c.npy"], "--test-data"),
        (["-o", "{out}", "--merge", "d={locked}/d.onnx"], "signature 'd'"),
    ],
    ids=[
        "output-dir",
        "html-report",
        "calibration-folder",
        "calibration-file",
        "test-data",
        "merge",
    ],
)
def test_a_path_under_a_folder_that_cannot_be_entered(tmp_path, capsys, monkeypatch, args, named):
    """Path.exists() raises PermissionError there: a traceback (exit 1) for -o,
    --html-report, --calibration-data and --test-data, an internal error for --merge."""
    locked, out = tmp_path / "locked", tmp_path / "out"
    locked.mkdir()
    _unenterable(monkeypatch, locked)
    filled = [a.format(locked=locked, out=out) for a in args]
    code, _, err = _main(capsys, EXAMPLE, *filled)
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert named in line and "permission denied" in line
    assert not out.exists()


def test_a_model_under_a_folder_that_cannot_be_entered(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    _unenterable(monkeypatch, locked)
    code, _, err = _main(capsys, locked / "m.onnx", "-o", tmp_path / "out")
    assert code == errors.EXIT_BAD_INPUT
    assert "[invalid_model]" in _error_line(err) and "permission denied" in err


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--batch-size", "99999999999999999999999"], "--batch-size"),
        (["--batch-size", "3000000000"], "--batch-size"),
        (["--input-shape", "x:99999999999999999999999,3"], "--input-shape"),
        (["--signature", "s:x=99999999999999999999999,3"], "--signature"),
    ],
    ids=["batch-huge", "batch-int32", "input-shape", "signature"],
)
def test_a_dim_above_int32_names_its_flag(tmp_path, capsys, args, flag):
    """A pin past int64 reached the ONNX protobuf: internal_error "Value out of range"."""
    path = tmp_path / "relu.onnx"
    onnx.save(
        make_model(
            [helper.make_node("Relu", ["x"], ["y"])],
            inputs=[("x", np.float32, ("N", 3))],
            outputs=[("y", np.float32, ("N", 3))],
        ),
        path,
    )
    code, _, err = _main(capsys, path, "-o", tmp_path / "out", *args)
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert flag in line and "2147483647" in line and "[invalid_option]" in line


@pytest.mark.parametrize("flag,value", [("--inputs", "c1,c1"), ("--outputs", "probs,probs")])
def test_a_cut_naming_a_tensor_twice_is_an_option_error(tmp_path, capsys, flag, value):
    """Was `[invalid_model] duplicate graph input name 'c1'`: blamed the model, named no flag."""
    code, _, err = _main(capsys, EXAMPLE, "-o", tmp_path / "out", flag, value)
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert line.startswith(f"error: [invalid_option] {flag} names") and "twice" in line


def test_api_a_cut_given_as_one_string_is_one_tensor():
    """`inputs="c1"` was read as the tensors 'c', '1' ("no tensor named 'c'")."""
    cut = convert(str(EXAMPLE), inputs="c1", outputs="probs")
    assert [row["name"] for row in cut.report["io"]] == ["c1", "probs"]
    listed = convert(str(EXAMPLE), inputs=["c1"], outputs=["probs"])
    assert cut.tflite_bytes == listed.tflite_bytes


def test_html_report_into_the_output_folder_the_run_creates(tmp_path, capsys):
    """The README's own example, `-o out/ --html-report out/diag.html`, was refused on a fresh
    checkout: "folder 'out' does not exist" (-o is created by the run)."""
    out = tmp_path / "out"
    code, _, _ = _main(capsys, EXAMPLE, "-o", out, "--html-report", out / "diag.html")
    assert code == errors.EXIT_OK
    assert (out / "diag.html").read_text().lstrip().lower().startswith("<!doctype html")
    code, _, err = _main(capsys, EXAMPLE, "-o", out, "--html-report", out / "sub" / "x.html")
    assert code == errors.EXIT_BAD_INPUT and "does not exist" in _error_line(err)
