"""Real tabular models (scikit-learn, LightGBM, XGBoost) exported to ai.onnx.ml, converted, and
checked against onnxruntime.

Needs the exporters, which the project does not depend on; run it in a separate environment:

    python -m venv /work/ml-venv && /work/ml-venv/bin/pip install scikit-learn skl2onnx \\
        lightgbm onnxmltools xgboost && /work/ml-venv/bin/pip install -e ".[validate]"
    /work/ml-venv/bin/python tools/ml_models.py [--only NAME ...] \
        [--json benchmarks/results/ml_models.json]

Classifiers are exported without ZipMap (skl2onnx ``zipmap=False``), as a TFLite tensor cannot
hold a sequence of maps. Every model is checked on held-out rows: labels must be identical,
scores within ``1e-4 * max(1, max|expected|)``; then each model is converted again with the
batch left dynamic and checked at batch 1, 5 and 64 with the one file. A model exported with
ZipMap is converted with ``drop_zipmap=True``. ``benchmarks/bench_trees.py`` reuses the
tree-model builders.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ATOL = 1e-4
N_FEATURES = 20


def _data(n=2000, classes=2, seed=0, regression=False):
    from sklearn.datasets import make_classification, make_regression

    if regression:
        x, y = make_regression(n_samples=n, n_features=N_FEATURES, noise=5.0, random_state=seed)
    else:
        x, y = make_classification(
            n_samples=n,
            n_features=N_FEATURES,
            n_informative=10,
            n_classes=classes,
            random_state=seed,
        )
    return x.astype(np.float32), y


def _skl(model, n_features=N_FEATURES, zipmap_model=None):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    target = zipmap_model or model
    has_proba = _is_classifier(model) and hasattr(target, "predict_proba")
    options = {id(target): {"zipmap": False}} if has_proba else None
    return to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )


def _is_classifier(model) -> bool:
    from sklearn.base import is_classifier

    return is_classifier(model)


def random_forest(n_trees=100, depth=8):
    from sklearn.ensemble import RandomForestClassifier

    x, y = _data(classes=3)
    m = RandomForestClassifier(n_estimators=n_trees, max_depth=depth, random_state=0).fit(x, y)
    return _skl(m), x


def gradient_boosting_regressor():
    from sklearn.ensemble import GradientBoostingRegressor

    x, y = _data(regression=True)
    m = GradientBoostingRegressor(random_state=0).fit(x, y)
    return _skl(m), x


def gradient_boosting_classifier():
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = _data(classes=3)
    m = GradientBoostingClassifier(n_estimators=50, random_state=0).fit(x, y)
    return _skl(m), x


def lightgbm_classifier(n_trees=500):
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _data()
    m = lightgbm.LGBMClassifier(n_estimators=n_trees, verbose=-1, random_state=0).fit(x, y)
    onx = convert_lightgbm(
        m,
        initial_types=[("input", FloatTensorType([None, N_FEATURES]))],
        zipmap=False,
        target_opset=15,
    )
    return onx, x


def lightgbm_regressor():
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _data(regression=True)
    m = lightgbm.LGBMRegressor(n_estimators=100, verbose=-1, random_state=0).fit(x, y)
    onx = convert_lightgbm(
        m, initial_types=[("input", FloatTensorType([None, N_FEATURES]))], target_opset=15
    )
    return onx, x


def xgboost_classifier():
    import xgboost
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _data(classes=3)
    m = xgboost.XGBClassifier(n_estimators=100, max_depth=5, random_state=0).fit(x, y)
    onx = convert_xgboost(
        m, initial_types=[("input", FloatTensorType([None, N_FEATURES]))], target_opset=15
    )
    return onx, x


def _with_nans(x, fraction=0.1, seed=0):
    x = x.copy()
    x[np.random.default_rng(seed).random(x.shape) < fraction] = np.nan
    return x


def lightgbm_with_missing_values():
    """10% NaN features: LightGBM's missing-value routing (nodes_missing_value_tracks_true)."""
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _data()
    x = _with_nans(x)
    m = lightgbm.LGBMClassifier(n_estimators=50, verbose=-1, random_state=0).fit(x, y)
    onx = convert_lightgbm(
        m,
        initial_types=[("input", FloatTensorType([None, N_FEATURES]))],
        zipmap=False,
        target_opset=15,
    )
    return onx, x


def xgboost_binary_with_missing_values():
    import xgboost
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _data()
    x = _with_nans(x)
    m = xgboost.XGBClassifier(n_estimators=50, max_depth=4, random_state=0).fit(x, y)
    onx = convert_xgboost(
        m, initial_types=[("input", FloatTensorType([None, N_FEATURES]))], target_opset=15
    )
    return onx, x


def extra_trees_regressor():
    from sklearn.ensemble import ExtraTreesRegressor

    x, y = _data(regression=True)
    m = ExtraTreesRegressor(n_estimators=30, max_depth=6, random_state=0).fit(x, y)
    return _skl(m), x


def scaler_logistic_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _data(classes=3)
    clf = LogisticRegression(max_iter=500)
    m = make_pipeline(StandardScaler(), clf).fit(x, y)
    return _skl(m, zipmap_model=clf), x


def logistic_regression_binary():
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    m = LogisticRegression(max_iter=500).fit(x, y)
    return _skl(m), x


def svm_classifier():
    from sklearn.svm import SVC

    x, y = _data(n=600, classes=3)
    m = SVC(kernel="rbf", gamma=0.05).fit(x, y)
    return _skl(m), x


def svm_classifier_probabilities():
    """SVC(probability=True): Platt scaling + pairwise coupling (deprecated in sklearn 1.9,
    common in models exported before)."""
    from sklearn.svm import SVC

    x, y = _data(n=600, classes=3)
    m = SVC(kernel="rbf", gamma=0.05, probability=True, random_state=0).fit(x, y)
    return _skl(m), x


def svm_regressor():
    from sklearn.svm import SVR

    x, y = _data(n=600, regression=True)
    m = SVR(kernel="rbf", gamma=0.05, C=10.0).fit(x, y / 100)
    return _skl(m), x


def linear_svc():
    from sklearn.svm import LinearSVC

    x, y = _data(classes=3)
    m = LinearSVC().fit(x, y)
    return _skl(m), x


def one_hot_pipeline():
    """Integer-coded categorical columns one-hot encoded next to scaled numeric ones."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 1500
    num = rng.standard_normal((n, 4)).astype(np.float32)
    cat = rng.integers(0, 5, (n, 2)).astype(np.float32)
    x = np.concatenate([num, cat], axis=1)
    y = ((num[:, 0] + (cat[:, 0] == 2) - (cat[:, 1] == 4)) > 0.3).astype(np.int64)
    clf = LogisticRegression(max_iter=500)
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), [0, 1, 2, 3]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), [4, 5]),
        ]
    )
    m = Pipeline([("pre", pre), ("clf", clf)]).fit(x, y)
    return _skl(m, n_features=6, zipmap_model=clf), x


def one_hot_strings_pipeline():
    """String categories (a StringTensorType input) one-hot encoded, then a classifier."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(1)
    words = np.array(["red", "green", "blue", "cyan", "plum"], dtype=object)
    x = rng.choice(words, (1500, 2))
    y = ((x[:, 0] == "red") | (x[:, 1] == "plum")).astype(np.int64)
    clf = LogisticRegression(max_iter=500)
    m = make_pipeline(OneHotEncoder(handle_unknown="ignore"), clf).fit(x, y)
    onx = to_onnx(
        m,
        initial_types=[("input", StringTensorType([None, 2]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return onx, x


MODELS: dict[str, Callable] = {
    "scaler_logistic_pipeline": scaler_logistic_pipeline,
    "logistic_regression_binary": logistic_regression_binary,
    "random_forest_100x8": random_forest,
    "gradient_boosting_classifier": gradient_boosting_classifier,
    "gradient_boosting_regressor": gradient_boosting_regressor,
    "svm_classifier_rbf": svm_classifier,
    "svm_classifier_probabilities": svm_classifier_probabilities,
    "svm_regressor_rbf": svm_regressor,
    "linear_svc": linear_svc,
    "lightgbm_classifier_500": lightgbm_classifier,
    "lightgbm_regressor": lightgbm_regressor,
    "xgboost_classifier": xgboost_classifier,
    "lightgbm_missing_values": lightgbm_with_missing_values,
    "xgboost_binary_missing_values": xgboost_binary_with_missing_values,
    "extra_trees_regressor": extra_trees_regressor,
    "one_hot_pipeline": one_hot_pipeline,
    "one_hot_strings_pipeline": one_hot_strings_pipeline,
}


def feeds_for(onx, data, rows: slice) -> dict[str, np.ndarray]:
    if isinstance(data, dict):
        return {k: v[rows] for k, v in data.items()}
    return {onx.graph.input[0].name: data[rows]}


def check(name: str, batch: int = 64) -> dict:
    """Convert ``name`` at a fixed batch and compare every output with onnxruntime."""
    import onnxruntime as ort

    from onnx2tflite_direct import ConversionError, convert
    from onnx2tflite_direct import validate as V
    from onnx2tflite_direct.frontend.zipmap import drop_zipmap, zipmap_outputs

    onx, data = MODELS[name]()
    feeds = feeds_for(onx, data, slice(0, batch))
    ops = sorted({f"{n.domain or 'ai.onnx'}.{n.op_type}" for n in onx.graph.node})
    row: dict = {"onnx_ops": ops}
    drop = bool(zipmap_outputs(onx.graph.node))  # exported with ZipMap: --drop-zipmap
    if drop:
        row["drop_zipmap"] = True
        onx_ref = drop_zipmap(onx)
    else:
        onx_ref = onx
    try:
        res = convert(onx, batch_size=batch, drop_zipmap=drop)
    except ConversionError as err:
        row.update(status="refused", reason_code=err.reason_code, error=str(err))
        return row
    sess = ort.InferenceSession(onx_ref.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    val = V.validate(res.model, res.tflite_bytes, res.report.get("io"), feeds, atol=ATOL)
    row["status"] = "converted"
    row["outputs"] = {}
    ok = True
    for out, e in expected.items():
        a = val.actual[out]
        if e.dtype.kind in "iub":
            agree = float(np.mean(a == e))
            row["outputs"][out] = {"kind": "labels", "agreement": agree}
            ok &= agree == 1.0
        else:
            err = float(np.max(np.abs(a.astype(np.float64) - e))) if e.size else 0.0
            scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
            row["outputs"][out] = {"kind": "scores", "max_abs": err, "max_expected_abs": scale}
            ok &= err <= ATOL * scale
    row["match"] = bool(ok)
    row["dynamic_batch"] = _check_dynamic(onx, onx_ref, data, drop)
    return row


def _check_dynamic(onx, onx_ref, data, drop: bool, batches=(1, 5, 64)) -> dict:
    """Converted with the batch left dynamic: one file, run at several batch sizes."""
    import onnxruntime as ort

    from onnx2tflite_direct import ConversionError, convert
    from onnx2tflite_direct import validate as V

    try:
        res = convert(onx, drop_zipmap=drop)
    except ConversionError as err:
        return {"status": "refused", "reason_code": err.reason_code}
    runner = V.make_interpreter(res.tflite_bytes, 1).get_signature_runner()
    sess = ort.InferenceSession(onx_ref.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ok = True
    for b in batches:
        feeds = feeds_for(onx, data, slice(0, b))
        got = runner(**feeds)
        for name, e in zip(names, sess.run(None, feeds), strict=True):
            a = got[name]
            if a.shape != e.shape:
                ok = False
            elif e.dtype.kind in "iub":
                ok &= bool(np.array_equal(a, e))
            else:
                ok &= float(np.max(np.abs(a - e))) <= ATOL * max(1.0, float(np.max(np.abs(e))))
    return {"status": "converted", "batches": list(batches), "match": bool(ok)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(MODELS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = {}
    for name in args.only:
        try:
            results[name] = check(name, args.batch)
        except Exception as exc:  # an exporter failure is reported, not fatal
            results[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        r = results[name]
        verdict = r.get("match", r.get("reason_code", r.get("error", "")))
        dynamic = r.get("dynamic_batch", {}).get("match")
        print(f"{name:<30} {r['status']:<10} {verdict}  dynamic batch: {dynamic}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    ok = all(r.get("match") and r["dynamic_batch"].get("match") for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
