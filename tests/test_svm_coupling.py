"""SVMClassifier probabilities (prob_a/prob_b): Platt sigmoids and onnxruntime's iterative
pairwise coupling (lowering/svm_coupling.py), on hand-built ai.onnx.ml graphs (no sklearn).

onnxruntime stops each row's coupling loop once ``max |Qp - pQp| < 0.005 / k``. Our arithmetic
differs from its own by float32 rounding, so a row whose stopping test lands within rounding of
the threshold may stop one sweep earlier or later than onnxruntime there (on any two CPUs as
well). :func:`_reference` replays onnxruntime's loop in float32 (its order of operations) and
reports each row's sweep count and how far its closest stopping test was from the threshold;
the tests assert their feeds have no such near tie, so they hold on any CPU.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import check_conversion
from onnx import helper

from onnx2tflite_direct import convert
from onnx2tflite_direct.lowering import svm_coupling

ML = "ai.onnx.ml"
F = 5
NEAR_TIE = 1e-3  # relative distance of a stopping test from 0.005/k that rounding cannot cross

KERNEL_PARAMS = {"LINEAR": [0.0, 0.0, 0.0], "RBF": [0.2, 0.0, 0.0]}


def _svc(k: int, kernel: str, scale: float, seed: int, probabilities=True, rows=None):
    """An SVMClassifier over ``F`` features, ``k`` classes, labels and probability outputs."""
    rng = np.random.default_rng(seed)
    per_class = [int(v) for v in rng.integers(2, 6, k)]
    v = sum(per_class)
    pairs = k * (k - 1) // 2
    attrs = dict(
        classlabels_ints=[10 * c + 3 for c in range(k)],
        vectors_per_class=per_class,
        support_vectors=[float(x) for x in rng.standard_normal(v * F).astype(np.float32)],
        coefficients=[float(x) for x in rng.standard_normal((k - 1) * v).astype(np.float32)],
        rho=[float(x) for x in rng.standard_normal(pairs).astype(np.float32)],
        kernel_type=kernel,
        kernel_params=KERNEL_PARAMS[kernel],
        post_transform="NONE",
    )
    if probabilities:
        attrs["prob_a"] = [float(a) for a in -scale * (0.5 + rng.random(pairs))]
        attrs["prob_b"] = [float(b) for b in rng.normal(0, 0.3, pairs)]
    cols = k if probabilities else pairs
    node = helper.make_node("SVMClassifier", ["x"], ["label", "scores"], domain=ML, **attrs)
    graph = helper.make_graph(
        [node],
        "svc",
        [helper.make_tensor_value_info("x", 1, [rows, F])],
        [
            helper.make_tensor_value_info("label", 7, [rows]),
            helper.make_tensor_value_info("scores", 1, [rows, cols]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 3)]
    )
    model.ir_version = 9
    return model


def _decision_values(k, kernel, scale, seed, x):
    """onnxruntime's pairwise decision values (the same model without prob_a/prob_b)."""
    model = _svc(k, kernel, scale, seed, probabilities=False)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[1]


def _reference(dec, prob_a, prob_b, k):
    """onnxruntime's Platt + coupling in float32, per row: (p, sweeps, closest stopping test's
    relative distance from the threshold)."""
    f32 = np.float32
    rows = dec.shape[0]
    out = np.zeros((rows, k), f32)
    sweeps = np.zeros(rows, int)
    margin = np.full(rows, np.inf)
    eps = f32(0.005) / f32(k)
    for n in range(rows):
        r = np.zeros((k, k), f32)
        idx = 0
        for i in range(k):
            for j in range(i + 1, k):
                val = f32(f32(dec[n, idx] * prob_a[idx]) + prob_b[idx])
                e = f32(1) / (f32(1) + np.exp(-abs(val), dtype=f32))
                logistic = f32(1) - e if val < 0 else e
                r[i, j] = min(max(f32(1) - logistic, f32(1e-7)), f32(1) - f32(1e-7))
                r[j, i] = f32(1) - r[i, j]
                idx += 1
        q = np.zeros((k, k), f32)
        for t in range(k):
            for j in range(k):
                if j != t:
                    q[t, t] = f32(q[t, t] + r[j, t] * r[j, t])
                    q[t, j] = f32(-r[j, t] * r[t, j])
        p = np.full(k, f32(1) / f32(k), f32)
        for sweep in range(svm_coupling.MAX_SWEEPS):
            qp = np.zeros(k, f32)
            pqp = f32(0)
            for t in range(k):
                for j in range(k):
                    qp[t] = f32(qp[t] + q[t, j] * p[j])
                pqp = f32(pqp + p[t] * qp[t])
            err = max(float(abs(f32(qp[t] - pqp))) for t in range(k))
            margin[n] = min(margin[n], abs(err - eps) / eps)
            if err < eps:
                break
            sweeps[n] = sweep + 1
            for t in range(k):
                diff = f32(f32(pqp - qp[t]) / q[t, t])
                p[t] = f32(p[t] + diff)
                opd = f32(1) + diff
                pqp = f32(f32(f32(pqp + diff * f32(diff * q[t, t] + f32(2) * qp[t])) / opd) / opd)
                qp = ((qp + diff * q[t]) / opd).astype(f32)
                p = (p / opd).astype(f32)
        out[n] = p
    return out, sweeps, margin


def _feeds(k, kernel, scale, seed, rows=16):
    """Seeded features without near ties; also the reference's sweep counts."""
    model = _svc(k, kernel, scale, seed, rows=rows)
    node = model.graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    x = np.random.default_rng(seed + 100).standard_normal((4 * rows, F)).astype(np.float32)
    dec = _decision_values(k, kernel, scale, seed, x)
    a, b = np.float32(attrs["prob_a"]), np.float32(attrs["prob_b"])
    _, sweeps, margin = _reference(dec, a, b, k)
    keep = np.flatnonzero(margin > NEAR_TIE)[:rows]
    assert len(keep) == rows, "too many near ties in the seeded rows"
    return model, x[keep], sweeps[keep]


@pytest.mark.parametrize("k", [3, 4, 5, 7, 9])
@pytest.mark.parametrize("kernel", ["LINEAR", "RBF"])
@pytest.mark.parametrize("scale", [1.0, 12.0])
def test_probabilities_match_onnxruntime(k, kernel, scale):
    """Labels exactly, probabilities to float32 rounding of the coupling's arithmetic."""
    seed = 7 * k + len(kernel) + int(scale)
    model, x, sweeps = _feeds(k, kernel, scale, seed)
    chk = check_conversion(model, feeds={"x": x}, atol=1e-5, rtol=1e-4)
    assert np.ptp(chk.expected["scores"]) > 0.1  # not a near-constant output
    assert sweeps.max() >= 2  # the coupling really iterates


def test_rows_past_the_unrolled_sweeps():
    """A row that needs more sweeps than are emitted in line (rare: 1 of 64 here): the IF
    enters the WHILE loop, which finishes it (the former form stopped at its 10th sweep)."""
    model, x, sweeps = _feeds(3, "LINEAR", 12.0, 16, rows=64)
    assert (sweeps > svm_coupling.unrolled_sweeps(3)).sum() >= 1, sweeps
    check_conversion(model, feeds={"x": x}, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("k", "kernel", "seed"), [(3, "RBF", 20), (5, "RBF", 21), (9, "LINEAR", 22)]
)
def test_the_loop_with_one_sweep_in_line(k, kernel, seed, monkeypatch):
    """The WHILE loop's own arithmetic, per-row stopping and step order, on many rows: with
    one sweep in line (two for k > 3) many rows finish inside the loop, some over two sweeps."""
    monkeypatch.setattr(svm_coupling, "UNROLLED_SWEEPS", 1)
    model, x, sweeps = _feeds(k, kernel, 12.0, seed, rows=32)
    inline = svm_coupling.unrolled_sweeps(k)
    assert (sweeps > inline).sum() >= 4, sweeps  # rows finished inside the loop
    assert (sweeps >= inline + 2).sum() >= 2, sweeps  # over two sweeps there
    assert (sweeps <= inline).sum() >= 1, sweeps  # and rows that never enter it
    check_conversion(model, feeds={"x": x}, atol=1e-5, rtol=1e-4)


def test_the_reference_is_onnxruntime():
    """The float32 replay the feeds are screened with agrees with onnxruntime itself."""
    k, kernel, scale, seed = 4, "RBF", 4.0, 11
    model = _svc(k, kernel, scale, seed)
    attrs = {a.name: helper.get_attribute_value(a) for a in model.graph.node[0].attribute}
    x = np.random.default_rng(seed).standard_normal((64, F)).astype(np.float32)
    dec = _decision_values(k, kernel, scale, seed, x)
    p, _, margin = _reference(dec, np.float32(attrs["prob_a"]), np.float32(attrs["prob_b"]), k)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {"x": x})[1]
    ok = margin > NEAR_TIE
    assert ok.sum() >= 48
    np.testing.assert_allclose(p[ok], expected[ok], rtol=1e-5, atol=1e-6)


def test_linear_kernel_is_one_fully_connected_and_coupling_has_no_batch_matmul():
    """Operator budget of the lowering: the LINEAR kernel's decision values are one
    FULLY_CONNECTED of x (folded weights), and the coupling uses 2-D ops only (a per-row
    BATCH_MATMUL costs ~0.4 us at these sizes); one WHILE for the sweeps past the in-line ones."""
    model, x, _ = _feeds(3, "LINEAR", 1.0, 5)
    res = convert(model, input_shapes={"x": list(x.shape)})
    ops = {name: v["count"] for name, v in res.report["tflite_ops"].items()}
    assert "BATCH_MATMUL" not in ops
    assert ops["WHILE"] == 1 and ops["IF"] == 1
    assert sum(ops.values()) <= 200, ops  # 579 with the per-class op chains it replaces


@pytest.mark.parametrize("k", [2, 3, 5])
def test_non_finite_features(k):
    """A NaN or infinite feature: onnxruntime's decision values are NaN (LINEAR kernel: +-inf
    kernel values of both signs), its stopping test never fires, the row keeps p = 1/k and the
    pairwise votes all go to the second class of each pair. Same here (the clip of the Platt
    values and the folded FULLY_CONNECTED keep the NaN)."""
    model = _svc(k, "LINEAR", 4.0, 3 + k, rows=8)
    x = np.random.default_rng(k).standard_normal((8, F)).astype(np.float32)
    x[1, 2] = np.nan
    x[5, :] = np.nan
    x[6, 0] = np.inf
    chk = check_conversion(model, feeds={"x": x}, atol=1e-5, rtol=1e-4)
    np.testing.assert_array_equal(chk.expected["scores"][[1, 5, 6]], np.float32(1) / np.float32(k))
    assert np.ptp(chk.expected["scores"][[0, 2, 3, 4, 7]]) > 0.1
