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
    KeyboardInterrupt traceback (exit 1). A ``sitecustomize`` in the child sends the signal to
    itself the moment numpy's import returns, i.e. inside `__main__`'s guarded import of the
    command line: exit 130, one line. (Sending it from here when the child reports the import
    raced: on a loaded machine the child had converted before the signal came.)"""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import builtins, os, signal\n"
        "_real = builtins.__import__\n"
        "def _import(name, *args, **kwargs):\n"
        "    module = _real(name, *args, **kwargs)\n"
        "    if name == 'numpy' and builtins.__import__ is _import:\n"
        "        builtins.__import__ = _real\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return module\n"
        "builtins.__import__ = _import\n"
    )
    out_dir = tmp_path / "out"
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-m", "onnx2tflite_direct", str(EXAMPLE), "-o", str(out_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        # a test run started in the background inherits SIGINT ignored, and Python then never
        # raises KeyboardInterrupt: give the child the default disposition a terminal gives
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    code, err = proc.returncode, proc.stderr
    assert code == cli.EXIT_INTERRUPTED == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    said = err.splitlines()
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


# ---- 6. smaller ones --------------------------------------------------------------------------


def test_inspect_errors_carry_a_reason_code(tmp_path, capsys):
    """`inspect` printed "error: FILE: [Errno 2] ..." without the [reason_code] every other
    error line has."""
    tflite = tmp_path / "m_float32.tflite"
    convert(str(EXAMPLE), tmp_path, stem="m")
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(tflite.read_bytes()[:100])
    capsys.readouterr()
    cases = [
        (tmp_path / "nope.tflite", "[file_not_found]", "no such file or directory"),
        (tmp_path, "[file_not_found]", "is a directory"),
        (EXAMPLE, "[invalid_model]", "not a TFLite FlatBuffer"),
        (truncated, "[invalid_model]", "truncated or corrupt"),
    ]
    for path, code, words in cases:
        status, err = _main(capsys, "inspect", path)
        assert status == errors.EXIT_BAD_INPUT
        assert err.strip() == err.strip().splitlines()[0]
        assert err.startswith(f"error: {code} {path}: ") and words in err
    assert _main(capsys, "inspect", tflite)[0] == errors.EXIT_OK


def _generate_example():
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_example", ROOT / "examples/generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generate_example_says_a_users_mistake_in_one_line(tmp_path, capsys, monkeypatch):
    """A missing --model, or --export-hf without torch, printed a traceback."""
    gen = _generate_example()
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not a model\xff")

    def no_torch(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'torch'")

    monkeypatch.setattr(gen, "export_hf", no_torch)  # torch may be installed where this runs
    cases = [
        (["--model", str(tmp_path / "missing.onnx")], "--model", "no such file"),
        (["--model", str(tmp_path)], "--model", "not a readable ONNX model"),
        (["--export-hf", "gpt2", "--model", str(tmp_path / "g.onnx")], "--export-hf", "torch"),
        (["--model", str(EXAMPLE)], "[invalid_option]", "no input 'input_ids'"),
    ]
    for argv, named, words in cases:
        assert gen.main(argv) == errors.EXIT_BAD_INPUT
        out, err = capsys.readouterr()
        (line,) = err.splitlines()
        assert line.startswith("error: ") and named in line and words in line
        assert "Traceback" not in out + err


@pytest.mark.parametrize(
    "flag,tensor,other,kind",
    [
        ("--keep-output-layout", "image", "--keep-input-layout", "input"),
        ("--keep-input-layout", "probs", "--keep-output-layout", "output"),
        ("--channel-last-output", "image", "--channel-last-input", "input"),
    ],
)
def test_a_layout_flag_of_the_wrong_direction_is_refused(
    tmp_path, capsys, flag, tensor, other, kind
):
    """`--keep-output-layout image` (an input) converted without a word: the API's
    keep_layout takes inputs and outputs in one list, and the command line lost which flag
    named which tensor."""
    out = tmp_path / "out"
    code, err = _main(capsys, EXAMPLE, "-o", out, flag, tensor)
    assert code == errors.EXIT_BAD_INPUT
    line = _error_line(err)
    assert line.startswith(f"error: [invalid_option] {flag} names {tensor!r}")
    assert f"which is a model {kind}" in line and f"give it with {other}" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "flag,keyword",
    [("--keep-output-layout", "keep_layout"), ("--channel-last-input", "channel_last")],
)
def test_a_layout_option_naming_no_tensor_names_the_flag(tmp_path, capsys, flag, keyword):
    """Was "layout option names 'nope', ...": which of the four flags?"""
    code, err = _main(capsys, EXAMPLE, "-o", tmp_path / "out", flag, "nope")
    assert code == errors.EXIT_BAD_INPUT
    assert _error_line(err) == (
        f"error: [invalid_option] {flag} names 'nope', which is not a model input or output"
    )
    with pytest.raises(errors.OptionError, match=rf"^\[invalid_option\] {keyword} names 'nope'"):
        convert(str(EXAMPLE), **{keyword: "nope"})


def test_channel_last_on_a_rank_2_tensor_names_the_flag(tmp_path, capsys):
    """Was "'probs' has rank 2; ...": the flag that asked for it was not named."""
    code, err = _main(capsys, EXAMPLE, "-o", tmp_path / "out", "--channel-last-output", "probs")
    assert code == errors.EXIT_BAD_INPUT
    assert _error_line(err) == (
        "error: [invalid_option] --channel-last-output names 'probs' of rank 2; only 3-D to "
        "5-D tensors can be channel-last"
    )


@pytest.mark.parametrize(
    "args,starts",
    [
        (["--inputs", "nope"], "--inputs (sub-graph cut): the model has no tensor named 'nope'"),
        (["--outputs", "nope"], "--outputs (sub-graph cut): the model has no tensor named 'nope'"),
        (["--inputs", "image,c1", "--outputs", "c1"], "--inputs (sub-graph cut): the outputs"),
    ],
    ids=["inputs", "outputs", "unused"],
)
def test_a_bad_cut_names_its_flag(tmp_path, capsys, args, starts):
    """Said "sub-graph cut: no tensor named 'nope'": --inputs or --outputs?"""
    code, err = _main(capsys, EXAMPLE, "-o", tmp_path / "out", *args)
    assert code == errors.EXIT_BAD_INPUT
    assert _error_line(err).startswith(f"error: [invalid_option] {starts}")
    with pytest.raises(errors.OptionError, match=r"^\[invalid_option\] outputs \(sub-graph cut"):
        convert(str(EXAMPLE), outputs="nope")
