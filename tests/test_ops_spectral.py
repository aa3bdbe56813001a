"""DFT (opset 17/20), STFT and MelWeightMatrix against onnxruntime / the ONNX reference."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

from onnx2tflite_direct.lowering.spectral import dft_matrix


def _dft_out(shape, axis, length, inverse, onesided):
    out = list(shape)
    out[axis] = length // 2 + 1 if onesided and not inverse else length
    out[-1] = 1 if inverse and onesided else 2
    return tuple(out)


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("axis", [1, 2])
@pytest.mark.parametrize(
    ("channels", "inverse", "onesided"),
    [(1, 0, 0), (1, 0, 1), (2, 0, 0), (2, 1, 0), (2, 1, 1)],
)
@pytest.mark.parametrize("dft_length", [None, 6, 12])
def test_dft(opset, axis, channels, inverse, onesided, dft_length):
    shape = (2, 8, 5, channels)
    n = shape[axis]
    length = dft_length or (2 * (n - 1) if inverse and onesided else n)
    if inverse and onesided and length // 2 + 1 != n:
        pytest.skip("ambiguous (onnxruntime != ONNX reference); refusal tested below")
    inits, names, attrs = {}, ["x", "len" if dft_length else ""], {}
    if dft_length:
        inits["len"] = np.array(dft_length, np.int64)
    if opset >= 20:
        inits["axis"] = np.array(axis, np.int64)
        names.append("axis")
    else:
        attrs["axis"] = axis
    node = helper.make_node("DFT", names, ["y"], inverse=inverse, onesided=onesided, **attrs)
    out = _dft_out(shape, axis, length, inverse, onesided)
    model = make_model(
        [node],
        [("x", np.float32, shape)],
        [("y", np.float32, out)],
        initializers=inits,
        opset=opset,
    )
    check_conversion(model, atol=1e-4)


def test_dft_last_data_axis_needs_no_transpose():
    node = helper.make_node("DFT", ["x", "", "axis"], ["y"])
    model = make_model(
        [node],
        [("x", np.float32, (3, 16, 1))],
        [("y", np.float32, (3, 16, 2))],
        initializers={"axis": np.array(-2, np.int64)},
        opset=20,
    )
    chk = check_conversion(model, atol=1e-4)
    assert chk.ops["TRANSPOSE"] == 0 and chk.ops["FULLY_CONNECTED"] == 1, chk.ops


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_dft_runtime_axis_selects_among_shape_compatible_axes(axis):
    node = helper.make_node("DFT", ["x", "", "axis"], ["y"])
    model = make_model(
        [node],
        [("x", np.float32, (1, 6, 6, 2)), ("axis", np.int64, ())],
        [("y", np.float32, (1, 6, 6, 2))],
        opset=20,
    )
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 2)).astype(np.float32)
    check_conversion(model, feeds={"x": x, "axis": np.array(axis, np.int64)}, atol=1e-4)


def test_dft_irfft_resized_spectrum_refused():
    node = helper.make_node("DFT", ["x", "len"], ["y"], axis=1, inverse=1, onesided=1)
    model = make_model(
        [node],
        [("x", np.float32, (1, 5, 2))],
        [("y", np.float32, (1, 12, 1))],
        initializers={"len": np.array(12, np.int64)},
        opset=17,
    )
    expect_refusal(model, "unsupported_attribute_value")


def test_dft_runtime_length_refused():
    node = helper.make_node("DFT", ["x", "len"], ["y"], axis=1)
    model = make_model(
        [node],
        [("x", np.float32, (1, 8, 1)), ("len", np.int64, ())],
        [("y", np.float32, (1, 8, 2))],
        opset=17,
    )
    expect_refusal(model, "requires_constant_input")


def test_dft_matrix_matches_numpy_fft():
    x = np.random.default_rng(1).standard_normal((3, 7, 2))
    z = x[..., 0] + 1j * x[..., 1]
    got = (x.reshape(3, 14) @ dft_matrix(7, 2, 7, False, False)).reshape(3, 7, 2)
    np.testing.assert_allclose(got[..., 0] + 1j * got[..., 1], np.fft.fft(z), atol=1e-12)


def _stft_model(window, frame_length, onesided, step=4, signal=(2, 32, 1), runtime=False):
    inputs, inits = [("signal", np.float32, signal)], {}
    names = ["signal", "step", "", ""]
    if runtime:
        inputs.append(("step", np.int64, ()))
    else:
        inits["step"] = np.array(step, np.int64)
    if window == "const":
        inits["window"] = np.hanning(frame_length).astype(np.float32)
        names[2] = "window"
    elif window == "runtime":
        inputs.append(("window", np.float32, (frame_length,)))
        names[2] = "window"
    if window is None or runtime:
        inits["flen"] = np.array(frame_length, np.int64)
        names[3] = "flen"
    frames = (signal[1] - frame_length) // step + 1
    bins = frame_length // 2 + 1 if onesided else frame_length
    node = helper.make_node("STFT", [n for n in names], ["y"], onesided=onesided)
    out = (signal[0], frames, bins, 2)
    return make_model([node], inputs, [("y", np.float32, out)], initializers=inits, opset=17)


@pytest.mark.parametrize("window", [None, "const", "runtime"])
@pytest.mark.parametrize("onesided", [0, 1])
@pytest.mark.parametrize("channels", [1, 2])
def test_stft(window, onesided, channels):
    model = _stft_model(window, 8, onesided, signal=(2, 32, channels))
    check_conversion(model, atol=1e-4)


def test_stft_runtime_step_pinned_by_output_shape():
    model = _stft_model(None, 16, 1, step=8, signal=(1, 128, 1), runtime=True)
    x = np.random.default_rng(2).standard_normal((1, 128, 1)).astype(np.float32)
    check_conversion(model, feeds={"signal": x, "step": np.array(8, np.int64)}, atol=1e-4)


def test_mel_weight_matrix_constant_inputs():
    inits = {
        "bins": np.array(8, np.int32),
        "dft": np.array(16, np.int32),
        "rate": np.array(8192, np.int32),
        "lo": np.array(0.0, np.float32),
        "hi": np.array(4096.0, np.float32),
    }
    mel = helper.make_node("MelWeightMatrix", list(inits), ["m"])
    mm = helper.make_node("MatMul", ["x", "m"], ["y"])
    model = make_model(
        [mel, mm],
        [("x", np.float32, (3, 9))],
        [("y", np.float32, (3, 8))],
        initializers=inits,
        opset=17,
    )
    check_conversion(model)


def test_mel_weight_matrix_runtime_inputs_refused():
    names = ["bins", "dft", "rate", "lo", "hi"]
    types = [np.int64, np.int64, np.int64, np.float32, np.float32]
    model = make_model(
        [helper.make_node("MelWeightMatrix", names, ["m"])],
        [(n, t, ()) for n, t in zip(names, types, strict=True)],
        [("m", np.float32, (9, 8))],
        opset=17,
    )
    expect_refusal(model, "requires_constant_input")
