"""Latency of the recurrent lowerings against onnxruntime, per form and sequence length.

Models (batch 1, 64 input features, hidden 128, weights ~ N(0, 1/fan_in)): a 2-layer forward
LSTM, a 1-layer bidirectional LSTM, a bidirectional GRU (``linear_before_reset=1``, PyTorch's
export) and a forward GRU with ``linear_before_reset=0``. Every model is converted in each form
the converter can emit for it:

* ``kernel``: LiteRT's UNIDIRECTIONAL_SEQUENCE_LSTM (``recurrent_kernels``, off by default:
  switched on here to measure it);
* ``loop``: one WHILE loop per direction (the default);
* ``unrolled``: ``--unroll-rnn``.

Each file's outputs are checked against onnxruntime (max abs error <= 1e-4 * max(1, max|e|))
before it is timed. Timing: LiteRT (XNNPACK delegate applied, as by default) set_tensor +
invoke, onnxruntime ``session.run``, both at 1 thread; median of ``--runs`` (>= 20) timed runs
after ``--warmup`` untimed ones.

    PYTHONPATH=. python benchmarks/bench_recurrent.py [--seq 16 64 256] [--runs 30]

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
from onnx2tflite_direct.lowering import recurrent_kernels  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "recurrent.json"
FEATURES, HIDDEN = 64, 128
ATOL = 1e-4


def _layer(rng, op, name, x, in_size, dirs, gates, **attrs):
    inits = {
        f"{name}_W": rng.normal(0, in_size**-0.5, (dirs, gates * HIDDEN, in_size)),
        f"{name}_R": rng.normal(0, HIDDEN**-0.5, (dirs, gates * HIDDEN, HIDDEN)),
        f"{name}_B": rng.normal(0, 0.1, (dirs, 2 * gates * HIDDEN)),
    }
    direction = "bidirectional" if dirs == 2 else "forward"
    node = helper.make_node(
        op,
        [x, f"{name}_W", f"{name}_R", f"{name}_B"],
        [f"{name}_Y", f"{name}_Yh"],
        hidden_size=HIDDEN,
        direction=direction,
        **attrs,
    )
    return node, inits


def build(kind: str, seq: int) -> onnx.ModelProto:
    """One benchmark model: X [seq, 1, FEATURES] -> Y of the last layer."""
    rng = np.random.default_rng(0)
    nodes, inits = [], {}
    if kind == "lstm2":  # 2 forward layers: Y [S, 1, 1, H] squeezed to the next layer's X
        n1, i1 = _layer(rng, "LSTM", "l1", "X", FEATURES, 1, 4)
        inits["axes"] = np.array([1], np.int64)
        squeeze = helper.make_node("Squeeze", ["l1_Y", "axes"], ["X2"])
        n2, i2 = _layer(rng, "LSTM", "l2", "X2", HIDDEN, 1, 4)
        nodes, out, dirs = [n1, squeeze, n2], "l2_Y", 1
        inits.update(i1)
        inits.update(i2)
    elif kind == "bilstm":
        n1, inits = _layer(rng, "LSTM", "l1", "X", FEATURES, 2, 4)
        nodes, out, dirs = [n1], "l1_Y", 2
    elif kind == "bigru":
        n1, inits = _layer(rng, "GRU", "g1", "X", FEATURES, 2, 3, linear_before_reset=1)
        nodes, out, dirs = [n1], "g1_Y", 2
    elif kind == "gru":
        n1, inits = _layer(rng, "GRU", "g1", "X", FEATURES, 1, 3)
        nodes, out, dirs = [n1], "g1_Y", 1
    else:
        raise ValueError(kind)
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [seq, 1, FEATURES])],
        [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, [seq, dirs, 1, HIDDEN])],
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
    """Convert in one form: ``kernel`` switches the (default-off) LSTM kernel on."""
    saved = recurrent_kernels.ENABLED
    recurrent_kernels.ENABLED = name == "kernel"
    try:
        yield {"unroll_rnn": name == "unrolled"}
    finally:
        recurrent_kernels.ENABLED = saved


def bench(kind: str, seq: int, warmup: int, runs: int) -> dict:
    model = build(kind, seq)
    feeds = {"X": np.random.default_rng(1).standard_normal((seq, 1, FEATURES), np.float32)}
    expected = V.run_onnxruntime(model, feeds)
    row = {"ort_ms": median_ms(ort_runner(model.SerializeToString(), feeds, 1), warmup, runs)}
    for name in FORMS[kind]:
        with form(name) as options:
            res = convert(model, **options)
        got = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"))
        err = max(float(np.abs(got[k] - e).max()) for k, e in expected.items())
        bound = max(ATOL * max(1.0, float(np.abs(e).max())) for e in expected.values())
        if err > bound:
            raise AssertionError(f"{kind} seq={seq} {name}: max abs error {err:.3g} > {bound:.3g}")
        ms = median_ms(litert_runner(res.tflite_bytes, feeds, res.report["io"], 1), warmup, runs)
        row[name] = {
            "litert_ms": round(ms, 4),
            "ratio": round(ms / row["ort_ms"], 3),
            "max_abs_error": err,
        }
    row["ort_ms"] = round(row["ort_ms"], 4)
    return row


def format_table(results: dict) -> str:
    lines = [f"{'model':8} {'seq':>5} {'ORT ms':>9}  form: LiteRT ms (ratio)"]
    for kind, per_seq in results.items():
        for seq, row in per_seq.items():
            forms = "  ".join(
                f"{n}: {row[n]['litert_ms']:.3f} ({row[n]['ratio']:.2f}x)" for n in FORMS[kind]
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
    args = parser.parse_args(argv)
    if args.runs < 20:
        parser.error("--runs must be >= 20")
    results = {
        kind: {str(seq): bench(kind, seq, args.warmup, args.runs) for seq in args.seq}
        for kind in args.models
    }
    print(format_table(results))
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
