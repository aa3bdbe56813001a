"""A sweep of the command line as a new user meets it: every flag alone (with the example the
README documents for it), and the documented promises. No run may end in a traceback, and a
user mistake is never exit 1 (exit 1 is our bug).

Runs in-process (``cli.main``) on the bundled example, so the whole sweep stays fast.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from onnx2tflite_direct import cli, errors

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "small_cnn.onnx"


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code, out, err


def _flag_examples() -> list[tuple[str, list[str]]]:
    """(flag, arguments) for every documented flag: its README example as written, and the
    flag alone with the value(s) that example gives it (or its choices' first, or its
    metavar taken literally)."""
    cases = []
    for _, meta in cli.described_options():
        example = shlex.split(meta.example)
        for flag in meta.flags:
            names = set(flag.names)
            if names & set(example):
                cases.append((flag.name, example))
            at = next((i for i, a in enumerate(example) if a in names), None)
            if flag.kind in ("switch", "negate"):
                alone = [flag.name]
            elif at is not None:
                values = []
                for token in example[at + 1 :]:
                    if token.startswith("-"):
                        break
                    values.append(token)
                alone = [flag.name, *values]
            else:
                alone = [flag.name, flag.choices[0] if flag.choices else flag.metavar or "x"]
            if (flag.name, alone) not in cases:
                cases.append((flag.name, alone))
    return cases


@pytest.mark.parametrize("flag,args", _flag_examples(), ids=lambda v: str(v))
def test_every_flag_alone_never_crashes(tmp_path, capsys, flag, args):
    args = [a.replace("out/", f"{tmp_path}/") for a in args]
    if flag not in ("-o", "--output-dir"):
        args = [*args, "-o", str(tmp_path / "out")]
    code, out, err = run(capsys, EXAMPLE, *args)
    assert code != errors.EXIT_INTERNAL, err
    if code != errors.EXIT_OK:  # a refusal or a bad option: one line saying why
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1, err
        assert re.match(r"error: \[\w+\]", lines[0]), lines[0]


EX = "EXAMPLE"
MISTAKES = [
    [],
    [EX, "--quantize"],
    [EX, "--input-shape", "no-colon"],
    [EX, "--atol", "abc"],
    [EX, "--atol", "nan"],
    [EX, "--atol", "-1"],
    [EX, "--batch-size", "0"],
    [EX, "--seed", "-1"],
    [EX, "--calibration-method", "kmeans"],
    [EX, "--calibration-percentile", "20", "--calibration-method", "percentile"],
    [EX, "--value-hint", "x=1,2"],
    [EX, "--calibration-mean", "x=a"],
    [EX, "--test-data", "no-equals-sign"],
    [EX, "--test-data", "image=missing.npy"],
    [EX, "--decompose", "Conv"],
    [EX, "--disable-rewrite", "no_such_rule"],
    [EX, "--inputs", ","],
    [EX, "--outputs", "no_such_tensor"],
    [EX, "--unknown-flag"],
    [EX, "--quantize", "int8"],
    [EX, "--quantize", "int3"],
    [EX, "--input-shape", "nope:1,2"],
    [EX, "--input-shape", "image:1,3,32"],
    [EX, "--keep-input-layout", "nope"],
    [EX, "--channel-last-input", "probs"],
    [EX, "--validate", "--value-hint", "nope=1"],
    [EX, "--validate", "--test-data", "image=SMALL.npy"],
    [EX, "--validate", "--test-data", "nope=IMAGES.npy"],
    [EX, "--quantize", "int8", "--calibration-data", "image=SMALL.npy"],
    [
        EX,
        "--quantize",
        "int8",
        "--calibration-data",
        "image=IMAGES.npy",
        "--calibration-std",
        "image=0",
    ],
    [
        EX,
        "--quantize",
        "int8",
        "--calibration-data",
        "image=IMAGES.npy",
        "--calibration-mean",
        "image=1,2",
    ],
    [EX, "--quantize", "int8", "--calibration-data", "no_such_folder"],
    [EX, "--quantize", "int8", "--calibration-data", "EMPTY"],
    [EX, "--html-report", "EMPTY"],
    [EX, "--html-report", "no_such_folder/x.html"],
    ["missing.onnx"],
    [str(ROOT / "README.md")],
    [str(ROOT / "examples")],
]


@pytest.mark.parametrize("args", MISTAKES, ids=" ".join)
def test_user_mistakes_are_exit_2_never_1(capsys, tmp_path, args):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "SMALL.npy", rng.random((2, 3, 16, 16), dtype=np.float32))
    np.save(tmp_path / "IMAGES.npy", rng.random((2, 3, 32, 32), dtype=np.float32))
    (tmp_path / "EMPTY").mkdir()
    args = [str(EXAMPLE) if a == EX else a for a in args]
    for name in ("SMALL.npy", "IMAGES.npy", "EMPTY"):
        args = [a.replace(name, str(tmp_path / name)) for a in args]
    code, out, err = run(capsys, *args, "-o", tmp_path / "o")
    assert code in (errors.EXIT_BAD_INPUT, errors.EXIT_UNSUPPORTED), (code, err)
    assert len(err.strip().splitlines()) <= 2, err  # at most the short usage line and the error
    assert not (tmp_path / "o").exists()  # a failed run leaves no folder behind


@pytest.mark.parametrize(
    "args,code",
    [
        (["--help"], 0),
        (["--version"], 0),
        (["inspect", "--help"], 0),
        (["inspect"], 2),
        (["inspect", "missing.tflite"], 2),
        (["inspect", str(EXAMPLE)], 2),
    ],
    ids=str,
)
def test_help_version_and_inspect(capsys, args, code):
    got, out, err = run(capsys, *args)
    assert got == code, err
    assert out if code == 0 else err


def test_readme_opening_command_holds(tmp_path, capsys):
    """The README's first command (without the install): files named as promised."""
    before = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    code, out, err = run(
        capsys, EXAMPLE, "-o", tmp_path / "out", "--report-op-coverage", "--validate"
    )
    assert code == 0, err
    assert (tmp_path / "out" / "small_cnn_float32.tflite").exists()
    assert (tmp_path / "out" / "small_cnn_op_coverage_report.json").exists()
    assert "cosine" in (out + err).lower() or "max_abs" in (out + err).lower()
    assert hashlib.sha256(EXAMPLE.read_bytes()).hexdigest() == before  # input never modified


def test_failed_run_keeps_existing_files_and_writes_the_report(tmp_path, capsys):
    """README: a failed run leaves no .tflite behind, does not clobber an existing one, and
    --report-op-coverage writes the report also on failure."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    old = out_dir / "small_cnn_float32.tflite"
    old.write_bytes(b"previous")
    code, _, err = run(
        capsys,
        EXAMPLE,
        "-o",
        out_dir,
        "--report-op-coverage",
        "--input-shape",
        "image:1,5,32,32",  # the conv weights want 3 channels
    )
    assert code in (errors.EXIT_BAD_INPUT, errors.EXIT_UNSUPPORTED), err
    assert old.read_bytes() == b"previous"
    assert (out_dir / "small_cnn_op_coverage_report.json").exists()


def test_quantized_variants_have_the_documented_file_names(tmp_path, capsys):
    """The README's --quantize row names the files each variant writes."""
    code, _, err = run(
        capsys,
        EXAMPLE,
        "-o",
        tmp_path,
        "--quantize",
        "fp16",
        "dynamic",
        "int8",
        "int16x8",
        "--calibration-random",
        "-q",
    )
    assert code == 0, err
    written = sorted(p.name for p in tmp_path.glob("*.tflite"))
    assert written == sorted(
        f"small_cnn_{kind}.tflite"
        for kind in (
            "float32",
            "float16",
            "dynamic_range_quant",
            "integer_quant",
            "full_integer_quant",
            "integer_quant_with_int16_act",
            "full_integer_quant_with_int16_act",
        )
    )
    readme = (ROOT / "README.md").read_text()
    for name in written:
        assert name.replace("small_cnn", "<stem>") in readme or "full_integer" in name


def test_validate_all_tensors_writes_the_documented_file(tmp_path, capsys):
    code, _, err = run(capsys, EXAMPLE, "-o", tmp_path, "--validate-all-tensors", "-q")
    assert code == 0, err
    assert (tmp_path / "small_cnn_tensor_diagnostics.json").exists()


def test_inspect_prints_what_the_readme_promises(tmp_path, capsys):
    assert run(capsys, EXAMPLE, "-o", tmp_path, "-q")[0] == 0
    code, out, err = run(capsys, "inspect", tmp_path / "small_cnn_float32.tflite")
    assert code == 0, err
    text = out.lower()
    for word in ("input", "output", "signature", "conv_2d", "tensor"):
        assert word in text, word
    # --json; the Library section: a SignatureDef serving_default keyed by the ONNX names.
    code, out, err = run(capsys, "inspect", tmp_path / "small_cnn_float32.tflite", "--json")
    assert code == 0, err
    (signature,) = json.loads(out)["signature_defs"]
    assert signature["key"] == "serving_default"
    assert list(signature["inputs"]) == ["image"] and list(signature["outputs"]) == ["probs"]
