"""Calibration: ranges from onnxruntime intermediates, the streaming histogram, the range
methods (minmax / percentile / mse) and calibration-data loading.

Ranges are checked against numpy on the same intermediates (a second ORT run with every tensor
exposed), and the mse method against the real quantization error it is meant to minimize.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest
from harness import make_model
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from onnx2tflite_direct import errors
from onnx2tflite_direct.quant import calibration as C

RNG = np.random.default_rng(0)


def small_net():
    """x[2,3,4,4] -> Conv -> Relu -> Mul(const) -> Sigmoid, plus an int64 Shape output."""
    w = np.random.default_rng(42).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Mul", ["relu", "k"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], ["y"]),
        helper.make_node("Shape", ["y"], ["shape"]),
    ]
    return make_model(
        nodes,
        [("x", TensorProto.FLOAT, [2, 3, 4, 4])],
        [("y", TensorProto.FLOAT, [2, 4, 4, 4]), ("shape", TensorProto.INT64, [4])],
        {"w": w, "k": np.array(0.5, np.float32)},
    )


def all_intermediates(model, feeds):
    """Every node output of ``model`` for ``feeds`` (independent of the module under test)."""
    probe = helper.make_model(model.graph, opset_imports=model.opset_import)
    probe.ir_version = model.ir_version
    names = [o for n in model.graph.node for o in n.output]
    del probe.graph.output[:]
    probe.graph.output.extend(helper.ValueInfoProto(name=n) for n in names)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(names, feeds), strict=True))


def test_minmax_equals_numpy_over_all_batches():
    model = small_net()
    data = {"x": RNG.standard_normal((10, 3, 4, 4)).astype(np.float32)}  # 5 batches of 2
    ranges = C.collect_ranges(model, data, C.CalibrationConfig(method="minmax", progress=False))
    per_batch = [all_intermediates(model, {"x": data["x"][i : i + 2]}) for i in range(0, 10, 2)]
    assert set(ranges) == {"x", "conv", "relu", "scaled", "y"}  # int64 "shape" skipped
    assert ranges["x"] == (float(data["x"].min()), float(data["x"].max()))
    for name in ("conv", "relu", "scaled", "y"):
        stacked = np.concatenate([b[name] for b in per_batch])
        assert ranges[name] == (float(stacked.min()), float(stacked.max())), name


def test_tflite_ranges_unites_aliases_and_drops_fused():
    onnx_ranges = {"a": (-1.0, 2.0), "a_id": (-3.0, 1.0), "fused": (0.0, 1.0), "b": (1.0, 2.0)}
    derived = [
        {"tensor": "b_nhwc", "relation": "permuted", "steps": []},
        {"tensor": "b_padded", "relation": "padded", "steps": []},
    ]
    tmap = {
        "a": {"tensor": "t0", "perm": [0], "inner": None},
        "a_id": {"tensor": "t0"},
        "b": {"tensor": "t1", "derived": derived},
    }
    assert C.tflite_ranges(onnx_ranges, tmap) == {
        "t0": (-3.0, 2.0),
        "t1": (1.0, 2.0),
        "b_nhwc": (1.0, 2.0),
        "b_padded": (0.0, 2.0),
    }


def quant_error(x: np.ndarray, lo: float, hi: float, bits: int) -> float:
    """Mean squared error of TFLite-style fake quantization of ``x`` into [lo, hi]."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if bits == 16:
        m = max(-lo, hi)
        scale, zp, qmin, qmax = m / 32767, 0, -32767, 32767
    else:
        scale = (hi - lo) / 255
        zp, qmin, qmax = round(-128 - lo / scale), -128, 127
    q = np.clip(np.round(x / scale) + zp, qmin, qmax)
    return float(np.mean(((q - zp) * scale - x) ** 2))


def heavy_tailed(n=50000, seed=1):
    """Student t(3): finite variance, tails far beyond a Gaussian's."""
    return np.random.default_rng(seed).standard_t(df=3, size=n).astype(np.float32)


def hist_of(x: np.ndarray, chunks: int = 4, num_bins: int = 2048) -> C.TensorHistogram:
    h = C.TensorHistogram(num_bins)
    for part in np.array_split(x, chunks):
        h.update(part)
    return h


@pytest.mark.parametrize("pct", [99.0, 99.9])
def test_percentile_clips_outliers(pct):
    x = np.concatenate([np.random.default_rng(2).uniform(-1, 1, 10000), [50.0, -80.0]])
    h = hist_of(x)
    lo, hi = h.percentile(pct)
    tail = (100 - pct) / 100
    # Exact up to the histogram's resolution (one bin; outliers make the bins coarse).
    assert lo == pytest.approx(-1 + 2 * tail, abs=h.width)
    assert hi == pytest.approx(1 - 2 * tail, abs=h.width)
    assert h.width < 0.2


@pytest.mark.parametrize("bits", [8, 16])
def test_mse_range_beats_minmax_on_heavy_tail(bits):
    x = heavy_tailed()
    h = hist_of(x)
    lo, hi = h.mse(bits)
    p_lo, p_hi = h.percentile(99.0)
    assert h.min <= lo <= min(p_lo, 0) or bits == 16
    assert max(p_hi, 0) <= hi <= h.max or bits == 16
    # An 8-bit grid gains by clipping the far tail of a t(3) sample; a 16-bit one need not.
    if bits == 8:
        assert quant_error(x, lo, hi, bits) < 0.95 * quant_error(x, h.min, h.max, bits)
        assert hi < h.max and lo > h.min
    else:
        assert quant_error(x, lo, hi, bits) <= quant_error(x, h.min, h.max, bits)


def test_mse_keeps_full_range_when_nothing_to_clip():
    x = np.random.default_rng(3).uniform(-2, 3, 50000).astype(np.float32)
    lo, hi = hist_of(x).mse(8)
    assert lo == pytest.approx(x.min(), abs=0.02) and hi == pytest.approx(x.max(), abs=0.02)


def test_mse_int16_differs_from_int8_from_same_statistics():
    model = small_net()
    x = heavy_tailed(10 * 3 * 16, seed=4).reshape(10, 3, 4, 4)
    cfg = C.CalibrationConfig(method="mse", progress=False)
    stats = C.collect_statistics(model, {"x": x}, cfg)
    r8, r16 = C.ranges_for_bits(stats, 8, cfg), C.ranges_for_bits(stats, 16, cfg)
    assert set(r8) == set(r16)
    assert r16["x"][1] - r16["x"][0] >= r8["x"][1] - r8["x"][0]  # finer grid clips less


@settings(max_examples=15, deadline=None)
@given(
    scales=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=6),
    offsets=st.lists(st.floats(-100, 100), min_size=6, max_size=6),
    num_bins=st.sampled_from([16, 100, 2048]),
)
def test_streaming_histogram_is_exact_and_constant_size(scales, offsets, num_bins):
    rng = np.random.default_rng(5)
    h = C.TensorHistogram(num_bins)
    seen = []
    for scale, off in zip(scales, offsets, strict=False):
        x = (rng.standard_normal(500) * scale + off).astype(np.float32)
        h.update(x)
        seen.append(x)
        assert h.counts.shape == (num_bins,) and h.counts.nbytes == 8 * num_bins
    allx = np.concatenate(seen).astype(np.float64)
    assert (h.min, h.max) == (allx.min(), allx.max())
    assert h.counts.sum() == allx.size == h.total
    # Every value lies in (or, by float rounding, next to) the bin the grid assigns it.
    tol = 1e-6 * max(abs(allx.min()), abs(allx.max()))
    assert h.lo <= allx.min() + tol and h.hi >= allx.max() - tol
    ref, _ = np.histogram(np.clip(allx, h.lo, h.hi), bins=h.edges())
    assert np.abs(np.cumsum(ref) - np.cumsum(h.counts)).max() <= 0.002 * allx.size
    # Expansion keeps at least a quarter of the bins over the observed range.
    assert (allx.max() - allx.min()) >= (h.hi - h.lo) / 4 or len(scales) == 1


def test_histogram_constant_values_then_spread():
    h = C.TensorHistogram(64)
    h.update(np.zeros(10, np.float32))
    h.update(np.full(5, 3.0, np.float32))
    h.update(np.array([-1.0, np.nan, np.inf], np.float32))
    assert (h.min, h.max, h.total, h.zeros) == (-1.0, 3.0, 16, 10)
    assert h.counts.sum() == 16


def test_state_does_not_grow_over_samples():
    model = small_net()
    few = C.collect_statistics(model, {"x": RNG.standard_normal((2, 3, 4, 4), np.float32)})
    many = C.collect_statistics(model, {"x": RNG.standard_normal((64, 3, 4, 4), np.float32)})
    assert {k: v.counts.nbytes for k, v in few.items()} == {
        k: v.counts.nbytes for k, v in many.items()
    }
    assert many["x"].total == 64 * 3 * 16


def test_progress_bar_only_when_asked(capsys):
    model = small_net()
    data = {"x": RNG.standard_normal((4, 3, 4, 4), np.float32)}
    C.collect_statistics(model, data, C.CalibrationConfig(progress=False))
    assert capsys.readouterr().err == ""
    C.collect_statistics(model, data, C.CalibrationConfig(progress=True))
    err = capsys.readouterr().err
    assert "calibrating" in err and "2/2" in err and err.endswith("\n")


# ---- calibration data ------------------------------------------------------------------------


def test_npz_folder_and_npy_specs_agree(tmp_path):
    x = RNG.standard_normal((6, 3, 4, 4)).astype(np.float32)
    for i in range(3):
        np.savez(tmp_path / f"s{i}.npz", x=x[2 * i : 2 * i + 2])
    np.save(tmp_path / "x.npy", x)
    from_folder = C.load_calibration_data(tmp_path)
    from_npy = C.load_calibration_data([f"x={tmp_path / 'x.npy'}"])
    np.testing.assert_array_equal(from_folder["x"], x)
    np.testing.assert_array_equal(from_npy["x"], x)
    cfg = C.CalibrationConfig(progress=False)
    assert C.collect_ranges(small_net(), from_folder, cfg) == C.collect_ranges(
        small_net(), {"x": x}, cfg
    )


@pytest.mark.parametrize(
    "mean, std",
    [(0.5, 2.0), ([0.1, 0.2, 0.3], [1.0, 2.0, 4.0]), (None, [2.0, 2.0, 2.0])],
)
def test_mean_std_normalization(mean, std):
    x = RNG.uniform(0, 255, (4, 3, 4, 4)).astype(np.float32)
    out = C.load_calibration_data(
        {"x": x}, mean=None if mean is None else {"x": mean}, std={"x": std}
    )["x"]
    m = np.reshape(mean if mean is not None else 0.0, (1, -1, 1, 1))
    s = np.reshape(std, (1, -1, 1, 1))
    np.testing.assert_allclose(out, (x - m) / s, rtol=1e-6)


def test_mean_std_errors():
    x = {"x": np.ones((2, 3), np.float32)}
    with pytest.raises(errors.BadInputError):
        C.load_calibration_data(x, mean={"nope": 1.0})
    with pytest.raises(errors.BadInputError):
        C.load_calibration_data(x, std={"x": 0.0})


@pytest.mark.parametrize("specs", [None, [], {}])
def test_missing_data_is_a_clear_error(specs):
    with pytest.raises(errors.BadInputError) as err:
        C.load_calibration_data(specs)
    assert err.value.reason_code == errors.MISSING_CALIBRATION_DATA


def test_empty_folder_and_missing_file(tmp_path):
    with pytest.raises(errors.BadInputError) as err:
        C.load_calibration_data(tmp_path)
    assert err.value.reason_code == errors.MISSING_CALIBRATION_DATA
    with pytest.raises(errors.BadInputError) as err:
        C.load_calibration_data([f"x={tmp_path / 'none.npy'}"])
    assert err.value.reason_code == errors.FILE_NOT_FOUND


def test_data_must_name_every_input():
    with pytest.raises(errors.BadInputError, match="missing"):
        C.collect_ranges(small_net(), {"other": np.ones((2, 3, 4, 4), np.float32)})


@pytest.mark.parametrize("shape", [(4, 3, 4, 5), (4, 3, 4), (3,)])
def test_samples_not_fitting_the_input_are_refused(shape):
    with pytest.raises(errors.BadInputError, match="calibration data for 'x' has shape"):
        C.collect_ranges(small_net(), {"x": np.ones(shape, np.float32)})


def test_float64_samples_are_cast_and_dynamic_batch_fed_one_by_one():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", TensorProto.FLOAT, ["N", 3])],
        [("y", TensorProto.FLOAT, ["N", 3])],
    )
    x = np.arange(-6.0, 6.0).reshape(4, 3)  # float64
    stats = C.collect_statistics(model, {"x": x})
    assert stats["y"].minmax() == (0.0, 5.0) and stats["y"].total == 12


def test_random_data_warns_and_calibrates(caplog):
    model = small_net()
    with caplog.at_level(logging.WARNING):
        data = C.random_calibration_data(model, num_samples=3, seed=1)
    assert "accuracy will be poor" in caplog.text
    assert data["x"].shape == (6, 3, 4, 4)
    again = C.random_calibration_data(model, num_samples=3, seed=1)
    np.testing.assert_array_equal(data["x"], again["x"])
    assert set(C.collect_ranges(model, data)) == {"x", "conv", "relu", "scaled", "y"}


def test_invalid_config_is_refused():
    with pytest.raises(errors.BadInputError) as err:
        C.CalibrationConfig(method="entropy").check()
    assert err.value.reason_code == errors.INVALID_OPTION
    with pytest.raises(errors.BadInputError):
        C.ranges_for_bits({}, 4)
