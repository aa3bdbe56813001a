"""A demanding user's mistakes through the Python API and the command line, second round
(after tests/test_cli_new_user.py): each one a typed error, one line naming the flag or
keyword, the documented exit code, never a traceback or an internal error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import test_architecture as arch

import onnx2tflite_direct
from onnx2tflite_direct import cli, convert, errors, signatures

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "small_cnn.onnx"  # input 'image' [1, 3, 32, 32] -> 'probs' [1, 10]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _main(capsys, *args) -> tuple[int, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, err


def _error_line(err: str) -> str:
    (line,) = [ln for ln in err.splitlines() if "error" in ln and not ln.startswith("usage")]
    return line


# ---- 1. Ctrl-C while the command line is still importing --------------------------------


def test_importing_the_package_loads_no_pipeline():
    """`import onnx2tflite_direct` imported the whole pipeline (numpy, onnx: a second or two)
    before `python -m` could install its Ctrl-C handler. Now the heavy names load on first
    access, and every public name still resolves."""
    probe = (
        "import sys, onnx2tflite_direct as p\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'onnx')\n"
        "               or m == 'onnx2tflite_direct.pipeline')\n"
        "print(heavy)\n"
        "from onnx2tflite_direct import convert, ConversionResult\n"
        "from onnx2tflite_direct.pipeline import convert as real\n"
        "print(convert is real, all(hasattr(p, n) for n in p.__all__), 'convert' in dir(p))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, check=True
    ).stdout.splitlines()
    assert out == ["[]", "True True True"]
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        onnx2tflite_direct.nonesuch  # noqa: B018


def test_the_lazy_names_make_no_import_circle():
    """The package root loads its lazy names with importlib, which the architecture test's
    ast reading does not see: its edges are added here and checked for circles and layers."""
    lazy = {("", module) for module in onnx2tflite_direct._LAZY.values()}
    assert all(module in arch.MODULES for _, module in lazy)
    assert not arch._cycles(arch.EDGES | lazy)
    root = arch._layer_of("")
    assert all(arch._layer_of(module) <= root for _, module in lazy)


def test_ctrl_c_during_the_imports_is_one_line(tmp_path):
    """SIGINT while `python -m onnx2tflite_direct` imports numpy/onnx/the pipeline printed a
    KeyboardInterrupt traceback (exit 1). `-X importtime` reports each import as it ends: the
    signal goes out once numpy is in, i.e. inside `__main__`'s guarded import (or, on a fast
    machine, inside cli.main, whose handler says the same): exit 130, one line."""
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "onnx2tflite_direct", str(EXAMPLE)]
        + ["-o", str(out_dir)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.split("|")[-1].strip() == "numpy":
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    code = proc.wait(timeout=120)
    err = "".join(seen) + rest
    assert code == cli.EXIT_INTERRUPTED == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    said = [ln for ln in err.splitlines() if not ln.startswith("import time:")]
    assert len(said) == 1 and said[0].startswith("error: interrupted"), said
    assert not out_dir.exists()


# ---- 2. calibration data of the right shape but a dtype the input cannot take ------------


@pytest.mark.parametrize(
    "samples,dtype",
    [
        (np.full((2, 3, 32, 32), "a"), "<U1"),
        (np.ones((2, 3, 32, 32)) * (0.5 + 2j), "complex128"),
    ],
    ids=["string", "complex"],
)
def test_calibration_data_of_the_wrong_dtype_names_the_flag(tmp_path, capsys, samples, dtype):
    """Strings were an internal error (exit 1, numpy's "could not convert string to float");
    complex samples silently lost their imaginary part. Now the check --test-data gets."""
    path = tmp_path / "c.npy"
    np.save(path, samples)
    out = tmp_path / "out"
    code, err = _main(
        capsys, EXAMPLE, "-o", out, "--quantize", "int8", "--calibration-data", f"image={path}"
    )
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert line.startswith("error: [invalid_option] --calibration-data 'image'")
    assert f"is {dtype}; the model input takes float32" in line
    assert not out.exists()
    with pytest.raises(errors.BadInputError, match=r"^\[invalid_option\] calibration_data 'imag"):
        convert(str(EXAMPLE), quantize=["int8"], calibration_data={"image": samples})


def test_integer_calibration_data_still_calibrates_as_its_float_values():
    """The shared check casts what loses nothing: int64 samples calibrate exactly as the same
    values in float32 (same ranges, same file)."""
    rng = np.random.default_rng(7)
    ints = rng.integers(-3, 4, size=(4, 3, 32, 32))
    got = convert(str(EXAMPLE), quantize=["int8"], calibration_data={"image": ints})
    ref = convert(
        str(EXAMPLE), quantize=["int8"], calibration_data={"image": ints.astype(np.float32)}
    )
    assert got.variants == ref.variants and len(got.variants) == 2


# ---- 3. --signature giving one input twice --------------------------------------------------


def test_a_signature_giving_an_input_twice_is_refused(tmp_path, capsys):
    """`--signature "s:x=1,3;x=2,3"` kept the last entry without a word."""
    code, err = _main(
        capsys, EXAMPLE, "-o", tmp_path / "o", "--signature", "s:image=1,3,32,32;image=1,3,64,64"
    )
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert "argument --signature:" in line and "'image' twice with different dims" in line
    assert not (tmp_path / "o").exists()
    same = signatures.parse_signature("s:x=1,3;x=1,3")  # the same dims twice say one thing
    assert same == ("s", {"x": (1, 3)})


# ---- 4. the model argument of convert() -----------------------------------------------------


@pytest.mark.parametrize("model", [5, None, 3.5, ["a.onnx"]], ids=str)
def test_api_a_model_of_the_wrong_type_is_typed(model):
    """Was an internal error: pathlib's "expected str, bytes or os.PathLike object"."""
    with pytest.raises(errors.BadInputError, match="path .* onnx.ModelProto") as info:
        convert(model)
    assert info.value.reason_code == errors.INVALID_MODEL
    assert type(model).__name__ in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("data", [b"", b"\x08\x07garbage\xff\xff"], ids=["empty", "garbage"])
def test_api_bytes_that_are_no_model_are_typed(data):
    with pytest.raises(errors.BadInputError, match="not a serialized ONNX model") as info:
        convert(data)
    assert info.value.reason_code == errors.INVALID_MODEL


def test_api_serialized_bytes_convert_like_the_proto():
    """A model held as bytes (a download, SerializeToString) was an internal error; now it is
    parsed as onnx.load_model_from_string does, and the file matches LiteRT against
    onnxruntime like the proto's."""
    proto = onnx.load(str(EXAMPLE))
    data = proto.SerializeToString()
    from_bytes = convert(data)
    assert from_bytes.tflite_bytes == convert(proto).tflite_bytes
    assert convert(bytearray(data)).tflite_bytes == from_bytes.tflite_bytes
    assert convert(data, merge={"b": data}).report["signatures"][1]["name"] == "b"


def test_bytes_validate_against_onnxruntime():
    """The file made from bytes, run in LiteRT, against onnxruntime on the model."""
    rng = np.random.default_rng(3)
    feeds = {"image": rng.standard_normal((4, 3, 32, 32)).astype(np.float32)}
    res = convert(EXAMPLE.read_bytes(), validate=True, test_data=feeds)
    assert res.validation.ok and res.validation.runs == 4


# ---- 5. merge named like the main model's signature, through the API ------------------------


def test_api_merge_named_like_the_main_model_is_an_option_error():
    """`convert("small_cnn.onnx", merge={"small_cnn": ...})` was an internal error (two
    signatures of one name); only the command line checked it."""
    with pytest.raises(errors.OptionError, match=r"^\[invalid_option\] merge small_cnn=") as info:
        convert(str(EXAMPLE), merge={"small_cnn": str(EXAMPLE)})
    assert "(signatures)" in str(info.value) and "after its file name" in str(info.value)
    with pytest.raises(errors.OptionError, match="already named 'model' .by default."):
        convert(onnx.load(str(EXAMPLE)), merge={"model": str(EXAMPLE)})
    with pytest.raises(errors.OptionError, match="already named 'net' .the stem given."):
        convert(str(EXAMPLE), stem="net", merge={"net": str(EXAMPLE)})
    named = convert(str(EXAMPLE), signatures={"main": {}}, merge={"small_cnn": str(EXAMPLE)})
    assert [s["name"] for s in named.report["signatures"]] == ["main", "small_cnn"]


def test_cli_merge_named_like_the_main_model_is_the_same_error(tmp_path, capsys):
    code, err = _main(capsys, EXAMPLE, "-o", tmp_path, "--merge", f"small_cnn={EXAMPLE}")
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert line.startswith("error: [invalid_option] --merge small_cnn=...")
    assert "(--signature)" in line
    assert not list(tmp_path.iterdir())
