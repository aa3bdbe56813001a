"""Tests of ``onnx2tflite_direct.validate`` that do not need the converter.

``run_litert`` is exercised on a hand-built .tflite (schema object API) so layout handling is
checked independently of the converter's own builder.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from harness import make_model, op_histogram, opcode_versions
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import BadInputError
from onnx2tflite_direct import validate as V

# ----------------------------------------------------------------------------------------------
# compare()
# ----------------------------------------------------------------------------------------------


def test_identical_arrays_match():
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    m = V.compare({"y": x}, {"y": x.copy()})["y"]
    assert m["ok"] and m["shape_match"] and m["max_abs"] == 0.0
    assert m["cosine"] == pytest.approx(1.0) and m["sqnr_db"] == math.inf


def test_permuted_shape_never_matches():
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    m = V.compare({"y": x}, {"y": np.transpose(x, (0, 2, 3, 1))})["y"]
    assert not m["shape_match"] and not m["ok"]
    # Same element count, same values when flattened, but a different shape: still no match.
    m = V.compare({"y": x}, {"y": x.reshape(1, 3, 2, 4)})["y"]
    assert not m["shape_match"] and not m["ok"]


def test_dtype_kind_mismatch_fails():
    x = np.arange(6, dtype=np.int64)
    m = V.compare({"y": x}, {"y": x.astype(np.float32)})["y"]
    assert not m["kind_match"] and not m["ok"]
    m = V.compare({"y": x}, {"y": x.astype(np.int32)})["y"]
    assert m["kind_match"] and not m["dtype_match"] and m["ok"]


def test_nan_positions():
    e = np.array([1.0, np.nan, 3.0], np.float32)
    assert V.compare({"y": e}, {"y": e.copy()})["y"]["ok"]
    moved = np.array([np.nan, 2.0, 3.0], np.float32)
    m = V.compare({"y": e}, {"y": moved})["y"]
    assert m["nan_mismatch"] == 2 and not m["ok"] and m["max_abs"] == math.inf


def test_inf_must_match_exactly():
    e = np.array([np.inf, -np.inf, 1.0], np.float32)
    assert V.compare({"y": e}, {"y": e.copy()})["y"]["ok"]
    assert not V.compare({"y": e}, {"y": np.array([np.inf, np.inf, 1.0], np.float32)})["y"]["ok"]


def test_metrics_values():
    e = np.array([1.0, -2.0, 4.0], np.float32)
    a = np.array([1.0, -2.0, 4.5], np.float32)
    m = V.compare({"y": e}, {"y": a}, atol=1e-4)["y"]
    assert m["max_abs"] == pytest.approx(0.5)
    assert m["max_rel"] == pytest.approx(0.125)
    assert m["mean_abs"] == pytest.approx(0.5 / 3)
    assert m["max_expected_abs"] == pytest.approx(4.0)
    assert m["cosine"] == pytest.approx(float(e @ a / np.linalg.norm(e) / np.linalg.norm(a)))
    assert m["sqnr_db"] == pytest.approx(10 * math.log10(21 / 0.25))
    assert not m["ok"]


def test_atol_scaled_by_magnitude_and_rtol():
    e = np.array([1000.0, 0.0], np.float32)
    a = np.array([1000.05, 0.0], np.float32)
    assert V.compare({"y": e}, {"y": a}, atol=1e-4)["y"]["ok"]  # 0.05 <= 1e-4 * 1000
    assert not V.compare({"y": e}, {"y": a}, atol=1e-5)["y"]["ok"]
    assert V.compare({"y": e}, {"y": a}, atol=1e-5, rtol=1e-4)["y"]["ok"]


def test_zero_vectors_cosine_and_ints_exact():
    z = np.zeros(4, np.float32)
    assert V.compare({"y": z}, {"y": z})["y"]["cosine"] == 1.0
    assert V.compare({"y": z}, {"y": z + 1})["y"]["cosine"] == 0.0
    i = np.array([1, 2, 3], np.int32)
    assert not V.compare({"y": i}, {"y": i + np.array([0, 0, 1], np.int32)}, atol=10)["y"]["ok"]
    b = np.array([True, False])
    assert V.compare({"y": b}, {"y": b.copy()})["y"]["ok"]


def _reference_metrics(e, a, atol, rtol):
    """The metrics computed the plain way, in float64 (what the fast path must reproduce).

    A sub-float32 reference is only correct to one step of its dtype, which the verdict
    allows (``reference_ulp``)."""
    ulp = V.reference_ulp(e)
    ulp = 0.0 if ulp is None else ulp.astype(np.float64).ravel()
    e, a = e.astype(np.float64).ravel(), a.astype(np.float64).ravel()
    diff, eabs = np.abs(e - a), np.abs(e)
    max_exp = float(eabs.max())
    scaled = atol * max(1.0, max_exp) + ulp
    ne, na = float(e @ e), float(a @ a)
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "max_rel": float((diff / np.maximum(eabs, 1e-6 * max(max_exp, 1.0))).max()),
        "cosine": float(e @ a) / math.sqrt(ne * na) if ne and na else float(ne == na),
        "max_expected_abs": max_exp,
        "ok": bool(np.all(diff <= scaled + (0.0 if rtol is None else rtol * eabs))),
    }


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 300),
    st.sampled_from([np.float32, np.float16, np.float64]),
    st.floats(1e-7, 1e-1),
    st.sampled_from([None, 1e-3]),
    st.integers(0, 2**16),
    st.booleans(),
)
def test_fast_float_path_matches_float64_reference(size, dtype, noise, rtol, seed, transposed):
    """The finite-float fast path gives the float64 metrics (float32 work rounding aside)."""
    rng = np.random.default_rng(seed)
    e = (rng.standard_normal((size, 3)) * rng.uniform(0.1, 100)).astype(dtype)
    a = (e + rng.standard_normal(e.shape) * noise).astype(dtype)
    if transposed:  # non-contiguous views, as diagnostics hands them over
        e, a = e.T, a.T
    m = V.compare({"y": e}, {"y": a}, atol=1e-4, rtol=rtol)["y"]
    ref = _reference_metrics(e, a, 1e-4, rtol)
    for key in ("max_abs", "mean_abs", "max_rel", "max_expected_abs"):
        assert m[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-12), key
    assert m["cosine"] == pytest.approx(ref["cosine"], abs=1e-6)
    assert m["ok"] == ref["ok"]  # near the threshold the fast path defers to the exact one


@pytest.mark.parametrize("rtol", [None, 1e-3])
def test_verdict_at_the_tolerance_edge_is_exact(rtol):
    """A difference equal to the tolerance (to float64 precision) decides like the float64
    path, although float32 rounding of the difference could tip it either way."""
    e = np.full(4, 1.0, np.float32)
    for delta in np.float32([1e-4, 1.0001e-4, 0.9999e-4]):
        a = e + delta
        m = V.compare({"y": e}, {"y": a}, atol=1e-4, rtol=rtol)["y"]
        assert m["ok"] == _reference_metrics(e, a, 1e-4, rtol)["ok"], delta


@pytest.mark.parametrize("delta", [0.0, 1e-6, 0.5])
def test_scalars_compare(delta):
    m = V.compare({"y": np.float32(2.0)}, {"y": np.array(2.0 + delta, np.float32)})["y"]
    assert m["ok"] == (delta < 1e-4) and m["max_abs"] == pytest.approx(delta, abs=1e-7)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e30])
def test_non_finite_values_take_the_exact_path(bad):
    """NaN/inf (and float32 squares that overflow) leave the fast path; positions still count."""
    e = np.ones(5, np.float32)
    a = e.copy()
    a[2] = bad
    m = V.compare({"y": e}, {"y": a})["y"]
    assert not m["ok"]
    if np.isnan(bad):
        assert m["nan_mismatch"] == 1
    both = V.compare({"y": a}, {"y": a.copy()})["y"]
    assert both["ok"] and both["max_abs"] == 0.0


def test_missing_output_and_empty_arrays():
    res = V.compare({"y": np.zeros(2), "z": np.zeros((0, 3))}, {"z": np.zeros((0, 3))})
    assert res["y"]["missing"] and not res["y"]["ok"]
    assert res["z"]["ok"] and res["z"]["max_abs"] == 0.0


# ----------------------------------------------------------------------------------------------
# Inputs and test data
# ----------------------------------------------------------------------------------------------


def _model_with_initializer_input() -> onnx.ModelProto:
    # IR 3 style: the weight "w" is listed as a graph input too.
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"]), helper.make_node("Cast", ["i"], ["j"], to=1)],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("i", TensorProto.INT64, [5]),
            helper.make_tensor_value_info("b", TensorProto.BOOL, [7]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("j", TensorProto.FLOAT, [5]),
        ],
        initializer=[numpy_helper.from_array(np.ones((2, 3), np.float32), "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)


def test_seeded_inputs_excludes_initializers_and_is_deterministic():
    model = _model_with_initializer_input()
    feeds = V.seeded_inputs(model, seed=3)
    assert list(feeds) == ["x", "i", "b"]
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (2, 3)
    assert feeds["i"].dtype == np.int64 and feeds["i"].min() >= 0 and feeds["i"].max() < 4
    assert feeds["b"].dtype == np.bool_
    again = V.seeded_inputs(model, seed=3)
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)
    assert not np.array_equal(feeds["x"], V.seeded_inputs(model, seed=4)["x"])


def test_seeded_inputs_rejects_dynamic_dims():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", np.float32, ("batch", 3))],
        [("y", np.float32, ("batch", 3))],
    )
    with pytest.raises(ValueError, match="batch"):
        V.seeded_inputs(model)


def test_run_onnxruntime_matches_numpy():
    model = _model_with_initializer_input()
    feeds = V.seeded_inputs(model)
    out = V.run_onnxruntime(model, feeds)
    assert list(out) == ["y", "j"]
    np.testing.assert_allclose(out["y"], feeds["x"] + 1)
    out2 = V.run_onnxruntime(model.SerializeToString(), feeds)
    np.testing.assert_array_equal(out["j"], out2["j"])


def test_test_data_runs_cut_cast_and_check():
    """Stacked samples become runs that fit the model; casts are noted; mistakes name the input."""
    both_dynamic = make_model(
        [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["x", "f"], ["y"])],
        [("x", np.float32, ("n", 2)), ("ids", np.int32, ("n", 2))],
        [("y", np.float32, ("n", 2))],
    )  # fmt: skip
    x, ids = np.ones((5, 2)), np.arange(10, dtype=np.int64).reshape(5, 2)
    runs, notes = V.test_data_runs(both_dynamic, {"x": x, "ids": ids})
    assert len(runs) == 1 and runs[0]["x"].dtype == np.float32 and runs[0]["ids"].dtype == np.int32
    assert len(notes) == 2 and all("cast to" in n for n in notes)
    with pytest.raises(ValueError, match="'ids': int64 values do not fit the input's int32"):
        V.test_data_runs(both_dynamic, {"x": x, "ids": ids + 2**40})
    with pytest.raises(ValueError, match="'ids' is float64"):
        V.test_data_runs(both_dynamic, {"x": x, "ids": x})
    with pytest.raises(ValueError, match="'x' has shape 5x3; the model input is \\?x2"):
        V.test_data_runs(both_dynamic, {"x": np.ones((5, 3)), "ids": ids})
    # A fixed batch of 2 beside a scalar input: runs of 2 samples and one scalar each.
    fixed = make_model(
        [helper.make_node("Mul", ["x", "s"], ["y"])],
        [("x", np.float32, (2, 3)), ("s", np.float32, ())],
        [("y", np.float32, (2, 3))],
    )
    runs, notes = V.test_data_runs(
        fixed, {"x": np.ones((5, 3), np.float32), "s": np.arange(3, dtype=np.float32)}
    )
    assert [r["x"].shape for r in runs] == [(2, 3), (2, 3)]
    assert [r["s"].shape for r in runs] == [(), ()] and runs[1]["s"] == 1
    assert notes == [
        "test data 'x': 1 of 5 samples not validated (runs take 2, the model's batch)",
        "test data 's': 1 of 3 samples not validated (runs take 1, the model's batch)",
    ]
    with pytest.raises(ValueError, match="1 samples, fewer than the model's batch of 2"):
        V.test_data_runs(fixed, {"x": np.ones((1, 3), np.float32), "s": np.ones(1, np.float32)})


def test_load_test_data_and_iter_samples(tmp_path):
    arr = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    np.save(tmp_path / "a.npy", arr)
    data = V.load_test_data([f"x={tmp_path / 'a.npy'}"])
    np.testing.assert_array_equal(data["x"], arr)
    chunks = list(V.iter_samples(data["x"], 2))
    assert [c.shape for c in chunks] == [(2, 3), (2, 3)]  # remainder dropped
    np.testing.assert_array_equal(np.concatenate(chunks), arr[:4])
    batches = list(V.iter_feed_batches({"x": arr, "z": arr[:3]}, {"x": 1, "z": 1}))
    assert len(batches) == 3 and set(batches[0]) == {"x", "z"}
    with pytest.raises(ValueError):
        V.load_test_data(["no_equals_sign.npy"])
    with pytest.raises(ValueError):
        list(V.iter_samples(arr, 6))


# ----------------------------------------------------------------------------------------------
# run_litert on a hand-built .tflite
# ----------------------------------------------------------------------------------------------


def _tiny_tflite() -> bytes:
    """Two ADD ops: ``y = x + x`` on an NHWC float tensor and ``m = n + n`` on int32.

    ONNX view: x is [1, 2, 3, 4] (NCHW), stored NHWC [1, 3, 4, 2] (perm 0, 2, 3, 1).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    def tensor(name, shape, ttype):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), ttype, 0
        return t

    def add(a, b, out):
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [a, b], [out]
        op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.AddOptions, s.AddOptionsT()
        return op

    sg = s.SubGraphT()
    sg.tensors = [
        tensor("x", (1, 3, 4, 2), s.TensorType.FLOAT32),
        tensor("y", (1, 3, 4, 2), s.TensorType.FLOAT32),
        tensor("n", (5,), s.TensorType.INT32),
        tensor("m", (5,), s.TensorType.INT32),
    ]
    sg.inputs, sg.outputs = [0, 2], [1, 3]
    sg.operators = [add(0, 0, 1), add(2, 2, 3)]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.ADD
    code.version = 2

    def tmap(name, idx):
        m = s.TensorMapT()
        m.name, m.tensorIndex = name.encode(), idx
        return m

    sig = s.SignatureDefT()
    sig.signatureKey = b"serving_default"
    sig.inputs = [tmap("x", 0), tmap("n", 2)]
    sig.outputs = [tmap("y", 1), tmap("m", 3)]
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [sg]
    model.buffers, model.signatureDefs = [s.BufferT()], [sig]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


IO_TABLE = [
    {"name": "x", "kind": "input", "dtype": "float32", "onnx_shape": [1, 2, 3, 4],
     "tflite_shape": [1, 3, 4, 2], "perm": [0, 2, 3, 1]},
    {"name": "n", "kind": "input", "dtype": "int64", "onnx_shape": [5], "tflite_shape": [5],
     "perm": None},
    {"name": "y", "kind": "output", "dtype": "float32", "onnx_shape": [1, 2, 3, 4],
     "tflite_shape": [1, 3, 4, 2], "perm": [0, 2, 3, 1]},
    {"name": "m", "kind": "output", "dtype": "int64", "onnx_shape": [5], "tflite_shape": [5],
     "perm": None},
]  # fmt: skip


def test_run_litert_applies_layout_and_casts():
    tfl = _tiny_tflite()
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 4)).astype(np.float32)
    n = np.arange(5, dtype=np.int64)  # ONNX int64 fed to an int32 TFLite input
    out = V.run_litert(tfl, {"x": x, "n": n}, IO_TABLE)
    assert set(out) == {"y", "m"}
    assert out["y"].shape == (1, 2, 3, 4)
    np.testing.assert_array_equal(out["y"], x + x)
    np.testing.assert_array_equal(out["m"], 2 * n.astype(np.int32))
    # Without the io table the stored NHWC layout comes back unchanged: shape must NOT match.
    raw = V.run_litert(tfl, {"x": np.transpose(x, (0, 2, 3, 1)), "n": n}, None)
    assert not V.compare({"y": x + x}, {"y": raw["y"]})["y"]["shape_match"]
    # A feed whose shape the file does not declare is refused, not silently resized.
    with pytest.raises(ValueError, match="does not fit"):
        V.run_litert(tfl, {"x": x, "n": n}, None)
    ref_only = V.run_litert(tfl, {"x": x, "n": n}, IO_TABLE, use_xnnpack=False)
    np.testing.assert_array_equal(ref_only["y"], out["y"])


def test_op_histogram_and_versions():
    tfl = _tiny_tflite()
    assert op_histogram(tfl) == {"ADD": 2}
    assert opcode_versions(tfl) == {"ADD": 2}


def test_format_table_mentions_every_output():
    e = {"y": np.ones((2, 2), np.float32), "z": np.ones(3, np.float32)}
    a = {"y": np.ones((2, 2), np.float32), "z": np.ones((3, 1), np.float32)}
    res = V.ValidationResult(V.compare(e, a), atol=1e-4, rtol=None)
    text = V.format_table(res)
    assert "y" in text and "SHAPE" in text and "FAILED" in text and not res.ok
    assert res.to_dict()["outputs"]["z"]["shape_match"] is False


def _gather_by_index_model():
    return make_model(
        [helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)],
        inputs=[("idx", np.int64, (3,))],
        outputs=[("y", np.float32, (3, 2))],
        initializers={"table": np.arange(10, dtype=np.float32).reshape(5, 2)},
    )


def test_value_hints_fill_generated_inputs():
    from onnx2tflite_direct import convert

    res = convert(_gather_by_index_model(), validate=True, value_hints={"idx": 4})
    assert res.validation.ok
    np.testing.assert_array_equal(res.validation.feeds["idx"], [4, 4, 4])
    np.testing.assert_array_equal(res.validation.actual["y"], [[8, 9]] * 3)
    with pytest.raises(BadInputError) as err:
        convert(_gather_by_index_model(), validate=True, value_hints={"nope": 1})
    assert "nope" in err.value.message


def test_value_hint_flag(tmp_path):
    import subprocess
    import sys

    onnx.save(_gather_by_index_model(), tmp_path / "g.onnx")
    cmd = [sys.executable, "-m", "onnx2tflite_direct", str(tmp_path / "g.onnx"), "-o"]
    proc = subprocess.run(
        [*cmd, str(tmp_path), "--validate", "--value-hint", "idx=3"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [*cmd, str(tmp_path), "--validate", "--value-hint", "idx=3,4"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "one value" in proc.stderr
