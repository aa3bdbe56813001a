"""SVMClassifier probabilities (Platt + onnxruntime's pairwise coupling): LiteRT vs onnxruntime,
1 thread, by class count, and the two sweep forms of ``lowering/svm_coupling.py``.

Models: hand-built ai.onnx.ml SVMClassifier graphs (``tests/test_svm_coupling._svc``: LINEAR
kernel, 2-5 support vectors per class over 5 features, Platt scale 4) for each ``--classes``,
pinned to ``--rows`` rows of seeded standard-normal features; plus the corpus model
skl_robust_svc_linear (its feeds, and their first row) when the zoo cache has it. Each file is
checked against onnxruntime (labels identical, probabilities within 1e-5 + 1e-4 relative),
then timed: median of ``--runs`` runs after warm-up, LiteRT and onnxruntime taking turns run
by run. One LiteRT run is set_tensor + invoke; one onnxruntime run is ``session.run``.

Forms (``--forms``): ``default`` (the converter's choice), ``recompute`` (every in-line step
recomputes Qp and pQp by the tiling, ``TILED_MAX_CLASSES`` raised) and ``incremental`` (the
step-by-step update, ``TILED_MAX_CLASSES`` lowered); how ``TILED_MAX_CLASSES`` was chosen.

Before/after: ``--save DIR`` writes each default file as ``DIR/<model>.tflite``; ``--baseline
DIR`` times such files (e.g. saved by this script run on a ``git archive`` of an older commit)
in the same loop (``baseline_ms``).

    python benchmarks/bench_svm_coupling.py [--classes 3 5 10 20] [--runs 300]

Writes ``benchmarks/results/svm_coupling.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct.validate import litert_runner, make_interpreter  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "svm_coupling"
ZOO = Path.home() / ".cache" / "onnx2tflite_direct_zoo" / "models" / "skl_robust_svc_linear"
FORMS = {"default": None, "recompute": 10**6, "incremental": 1}


def _models(classes, rows):
    from test_svm_coupling import F, _svc

    out = {}
    for k in classes:
        x = np.random.default_rng(k).standard_normal((rows, F)).astype(np.float32)
        out[f"svc_k{k}"] = (_svc(k, "LINEAR", 4.0, 3, rows=rows), {"x": x}, k)
    if (ZOO / "model.onnx").exists():
        import onnx

        model = onnx.load(ZOO / "model.onnx")
        feeds = dict(np.load(ZOO / "feeds.npz"))
        out["skl_robust_svc_linear"] = (model, feeds, 3)
        out["skl_robust_svc_linear_row1"] = (model, {k: v[:1] for k, v in feeds.items()}, 3)
    return out


def _convert(model, feeds, form):
    try:
        from onnx2tflite_direct.lowering import svm_coupling
    except ImportError:  # an older converter: only its own form
        svm_coupling = None
    saved = svm_coupling.TILED_MAX_CLASSES if svm_coupling else None
    if svm_coupling and FORMS[form] is not None:
        svm_coupling.TILED_MAX_CLASSES = FORMS[form]
    try:
        shapes = {k: list(v.shape) for k, v in feeds.items()}
        res = convert(model, input_shapes=shapes, keep_io_layout=True)
    finally:
        if svm_coupling:
            svm_coupling.TILED_MAX_CLASSES = saved
    return res


def _check(res, model, feeds):
    import onnxruntime as ort

    got = litert_runner(res.tflite_bytes, res.report.get("io"))(feeds)
    exp = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    for name, e in zip([o.name for o in model.graph.output], exp, strict=True):
        a = got[name]
        if e.dtype.kind == "f":
            tol = 1e-5 * max(1.0, float(np.abs(e).max())) + 1e-4 * np.abs(e)
            assert np.all(np.abs(a - e) <= tol), (name, float(np.abs(a - e).max()))
        else:
            assert np.array_equal(a, e), name


def _litert(tflite, feeds):
    it = make_interpreter(tflite, num_threads=1)
    it.allocate_tensors()
    ins = [(d["index"], np.ascontiguousarray(feeds[d["name"]])) for d in it.get_input_details()]

    def run():
        for idx, arr in ins:
            it.set_tensor(idx, arr)
        it.invoke()

    return run


def _ort(model, feeds):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts)
    return lambda: sess.run(None, feeds)


def _time(fns, runs):
    for _ in range(20):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, nargs="*", default=[3, 4, 5, 6, 7, 8, 10, 20])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--forms", nargs="*", default=list(FORMS), choices=list(FORMS))
    ap.add_argument("--save", type=Path)
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    rows = []
    for name, (model, feeds, k) in _models(args.classes, args.rows).items():
        fns, ops = {"ort": _ort(model, feeds)}, {}
        for form in args.forms:
            res = _convert(model, feeds, form)
            _check(res, model, feeds)
            fns[form] = _litert(res.tflite_bytes, feeds)
            ops[form] = sum(v["count"] for v in res.report["tflite_ops"].values())
            if form == "default" and args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"{name}.tflite").write_bytes(res.tflite_bytes)
        base = args.baseline / f"{name}.tflite" if args.baseline else None
        if base is not None and base.exists():
            fns["baseline"] = _litert(base.read_bytes(), feeds)
        ms = _time(fns, args.runs)
        row = {"model": name, "classes": k, "rows": len(next(iter(feeds.values())))}
        row["ort_ms"] = round(ms.pop("ort"), 4)
        for key, value in ms.items():
            row[f"{key}_ms"] = round(value, 4)
            row[f"{key}_ratio"] = round(value / row["ort_ms"], 3)
        row["ops"] = ops
        rows.append(row)
        print(json.dumps(row))

    meta = {"machine": platform.machine(), "python": platform.python_version(), "threads": 1}
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    cols = ["ort_ms"] + [f"{f}_ms" for f in [*args.forms, "baseline"] if f"{f}_ms" in rows[0]]
    lines = [
        "# SVMClassifier probabilities: LiteRT vs onnxruntime (1 thread)",
        "",
        f"`python benchmarks/bench_svm_coupling.py` on {meta['machine']}; median of "
        f"{args.runs} runs, ratio = LiteRT / onnxruntime.",
        "",
        "| model | k | rows | " + " | ".join(cols) + " | default ratio | ops (default) |",
        "|---" * (len(cols) + 5) + "|",
    ]
    for r in rows:
        vals = " | ".join(str(r.get(c, "")) for c in cols)
        ratio = r.get("default_ratio", "")
        lines.append(
            f"| {r['model']} | {r['classes']} | {r['rows']} | {vals} | {ratio} | "
            f"{r['ops'].get('default', '')} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
