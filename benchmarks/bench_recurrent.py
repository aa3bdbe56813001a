"""Latency of the recurrent lowerings against onnxruntime, per form and sequence length.

Models (batch 1, 64 input features, hidden 128, weights ~ N(0, 1/fan_in)): a 2-layer forward
LSTM, a 1-layer bidirectional LSTM, a bidirectional GRU (``linear_before_reset=1``, PyTorch's
export) and a forward GRU with ``linear_before_reset=0``. Every model is converted in each form
the converter can emit for it:

* ``kernel``: LiteRT's UNIDIRECTIONAL_SEQUENCE_LSTM (``recurrent_kernels``; the default only
  where measured faster, forced here);
* ``loop``: one WHILE loop per direction (the default);
* ``unrolled``: ``--unroll-rnn``.

Each file's outputs are checked against onnxruntime (max abs error <= 1e-4 * max(1, max|e|))
before it is timed. Timing: LiteRT (XNNPACK delegate applied, as by default) set_tensor +
invoke, onnxruntime ``session.run``, both at 1 thread; median of ``--runs`` (>= 20) timed runs
after ``--warmup`` untimed ones.

    PYTHONPATH=. python benchmarks/bench_recurrent.py [--seq 16 64 256] [--runs 30] [--sweep]

``default`` is the form the converter picks by itself; ``--sweep`` adds loop vs unrolled (vs
kernel) over hidden 16-256 x 2-48 steps, the measurements behind ``prefer_unrolled``.

Writes ``benchmarks/results/recurrent.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_latency import litert_runner, median_ms, ort_runner  # noqa: E402
from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct import validate as V  # noqa: E402
from onnx2tflite_direct.lowering import recurrent, recurrent_kernels  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "recurrent.json"
FEATURES, HIDDEN = 64, 128
ATOL = 1e-4


def _layer(rng, op, name, x, in_size, hidden, dirs, gates, **attrs):
    inits = {
        f"{name}_W": rng.normal(0, in_size**-0.5, (dirs, gates * hidden, in_size)),
        f"{name}_R": rng.normal(0, hidden**-0.5, (dirs, gates * hidden, hidden)),
        f"{name}_B": rng.normal(0, 0.1, (dirs, 2 * gates * hidden)),
    }
    direction = "bidirectional" if dirs == 2 else "forward"
    node = helper.make_node(
        op,
        [x, f"{name}_W", f"{name}_R", f"{name}_B"],
        [f"{name}_Y", f"{name}_Yh"],
        hidden_size=hidden,
        direction=direction,
        **attrs,
    )
    return node, inits


def build(kind: str, seq: int, hidden: int = HIDDEN, features: int = FEATURES) -> onnx.ModelProto:
    """One benchmark model: X [seq, 1, features] -> Y of the last layer."""
    rng = np.random.default_rng(0)
    nodes, inits = [], {}
    if kind == "lstm2":  # 2 forward layers: Y [S, 1, 1, H] squeezed to the next layer's X
        n1, i1 = _layer(rng, "LSTM", "l1", "X", features, hidden, 1, 4)
        inits["axes"] = np.array([1], np.int64)
        squeeze = helper.make_node("Squeeze", ["l1_Y", "axes"], ["X2"])
        n2, i2 = _layer(rng, "LSTM", "l2", "X2", hidden, hidden, 1, 4)
        nodes, out, dirs = [n1, squeeze, n2], "l2_Y", 1
        inits.update(i1)
        inits.update(i2)
    elif kind == "bilstm":
        n1, inits = _layer(rng, "LSTM", "l1", "X", features, hidden, 2, 4)
        nodes, out, dirs = [n1], "l1_Y", 2
    elif kind == "bigru":
        n1, inits = _layer(rng, "GRU", "g1", "X", features, hidden, 2, 3, linear_before_reset=1)
        nodes, out, dirs = [n1], "g1_Y", 2
    elif kind == "gru":
        n1, inits = _layer(rng, "GRU", "g1", "X", features, hidden, 1, 3)
        nodes, out, dirs = [n1], "g1_Y", 1
    else:
        raise ValueError(kind)
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [seq, 1, features])],
        [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, [seq, dirs, 1, hidden])],
        [
            numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
            for k, v in inits.items()
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


FORMS = {"lstm2": ("kernel", "loop", "unrolled"), "bilstm": ("kernel", "loop", "unrolled")}
FORMS.update({"bigru": ("loop", "unrolled"), "gru": ("loop", "unrolled")})


@contextlib.contextmanager
def form(name: str):
    """Convert in one form. ``default``: the converter's own choice; ``kernel`` switches the
    LSTM kernel on; ``loop`` and ``unrolled`` force that form."""
    saved = recurrent_kernels.MODE, recurrent.UNROLL_STEPS
    if name != "default":
        recurrent_kernels.MODE = "always" if name == "kernel" else "never"
    if name == "loop":
        recurrent.UNROLL_STEPS = range(0)
    try:
        yield {"unroll_rnn": name == "unrolled"}
    finally:
        recurrent_kernels.MODE, recurrent.UNROLL_STEPS = saved


def bench(kind, seq, warmup, runs, hidden=HIDDEN, features=FEATURES, forms=None) -> dict:
    """ORT and each form's LiteRT latency for one model and sequence length."""
    model = build(kind, seq, hidden, features)
    feeds = {"X": np.random.default_rng(1).standard_normal((seq, 1, features), np.float32)}
    expected = V.run_onnxruntime(model, feeds)
    ort_ms = median_ms(ort_runner(model.SerializeToString(), feeds, 1), warmup, runs)
    row: dict = {"ort_ms": round(ort_ms, 4)}
    for name in forms or ("default", *FORMS[kind]):
        with form(name) as options:
            res = convert(model, **options)
        got = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"))
        err = max(float(np.abs(got[k] - e).max()) for k, e in expected.items())
        bound = max(ATOL * max(1.0, float(np.abs(e).max())) for e in expected.values())
        if err > bound:
            raise AssertionError(f"{kind} seq={seq} {name}: max abs error {err:.3g} > {bound:.3g}")
        ms = median_ms(litert_runner(res.tflite_bytes, feeds, res.report["io"], 1), warmup, runs)
        ops = {op for n in res.report.get("nodes", []) for op in n.get("tflite_ops", [])}
        chosen = "kernel" if "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops else None
        chosen = chosen or ("loop" if "WHILE" in ops else "unrolled")
        row[name] = {
            "litert_ms": round(ms, 4),
            "ratio": round(ms / ort_ms, 3),
            "form": chosen,
            "max_abs_error": err,
        }
    return row


SWEEP_HIDDEN = (16, 32, 64, 128, 256)
SWEEP_SEQ = (2, 4, 8, 16, 32, 48, 64, 128, 256, 512)
SWEEP_UNROLLED_MAX = 64  # longer unrolled graphs: slow to convert, measured far slower


def sweep(kinds, warmup, runs) -> dict:
    """Loop vs unrolled (and the kernel, for LSTM) over cell sizes and step counts: the
    measurements behind ``recurrent.prefer_unrolled``."""
    out = {}
    for kind in kinds:
        rows = []
        for hidden in SWEEP_HIDDEN:
            for seq in SWEEP_SEQ:
                forms = [f for f in FORMS[kind] if f != "unrolled" or seq <= SWEEP_UNROLLED_MAX]
                row = bench(kind, seq, warmup, runs, hidden, hidden, forms)
                loop = row["loop"]["litert_ms"]
                row.update(hidden=hidden, seq=seq)
                ratios = {
                    f"{f}_over_loop": round(row[f]["litert_ms"] / loop, 3)
                    for f in forms
                    if f != "loop"
                }
                row.update(ratios)
                text = " ".join(f"{k}={v:.2f}" for k, v in ratios.items())
                print(f"{kind:7} hidden={hidden:4} seq={seq:3} {text}", flush=True)
                rows.append(row)
        out[kind] = rows
    return out


def format_table(results: dict) -> str:
    lines = [f"{'model':8} {'seq':>5} {'ORT ms':>9}  form: LiteRT ms (ratio to ORT)"]
    for kind, per_seq in results.items():
        for seq, row in per_seq.items():
            forms = "  ".join(
                f"{n}: {row[n]['litert_ms']:.3f} ({row[n]['ratio']:.2f}x)"
                + (f" [{row[n]['form']}]" if n == "default" else "")
                for n in ("default", *FORMS[kind])
            )
            lines.append(f"{kind:8} {seq:>5} {row['ort_ms']:>9.3f}  {forms}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(FORMS), choices=list(FORMS))
    parser.add_argument("--seq", nargs="+", type=int, default=[16, 64, 256])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sweep", action="store_true", help="also sweep hidden x steps")
    args = parser.parse_args(argv)
    if args.runs < 20:
        parser.error("--runs must be >= 20")
    results = {
        kind: {str(seq): bench(kind, seq, args.warmup, args.runs) for seq in args.seq}
        for kind in args.models
    }
    print(format_table(results))
    swept = sweep(args.models, args.warmup, args.runs) if args.sweep else None
    payload = {
        "machine": {"platform": platform.platform(), "processor": platform.machine()},
        "threads": 1,
        "features": FEATURES,
        "hidden": HIDDEN,
        "batch": 1,
        "runs": args.runs,
        "warmup": args.warmup,
        "results": results,
    }
    if swept is not None:
        payload["sweep"] = {"hidden": list(SWEEP_HIDDEN), "seq": list(SWEEP_SEQ), "rows": swept}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
