"""Conversion time vs graph size: a chain of 1,000 and one of 20,000 cheap nodes.

Usage: ``PYTHONPATH=. python benchmarks/bench_scaling.py [--sizes 1000 20000] [--repeats 3]``

Each timing is a fresh process (imports excluded: the clock starts just before ``convert``);
the median of ``--repeats`` runs is kept. The sizes are run in turn within each repeat (1,000,
20,000, 1,000, 20,000 ...), so a change of machine load between the sizes' runs does not
bias the ratio. The ratio large/small should stay below 20x for a 20x larger graph, i.e.
conversion is close to linear. Results go to ``benchmarks/results/scaling.json``;
``--profile`` writes a cProfile listing of the largest size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 8


def chain_model(n_nodes: int) -> onnx.ModelProto:
    """A [1, WIDTH] tensor through a repeating block of cheap ops, ``n_nodes`` nodes in all.

    The block: Add a constant, Relu, Mul by a constant, Reshape to [WIDTH, 1] and back,
    Concat with a small constant then Slice back to WIDTH. Constants are shared.
    """
    consts = {
        "c_add": np.full((1, WIDTH), 0.25, np.float32),
        "c_mul": np.full((1, WIDTH), 0.5, np.float32),
        "s_col": np.array([WIDTH, 1], np.int64),
        "s_row": np.array([1, WIDTH], np.int64),
        "c_cat": np.ones((1, 2), np.float32),
        "sl_start": np.array([0], np.int64),
        "sl_end": np.array([WIDTH], np.int64),
        "sl_axis": np.array([1], np.int64),
    }
    block = [
        ("Add", ["{x}", "c_add"], {}),
        ("Relu", ["{x}"], {}),
        ("Mul", ["{x}", "c_mul"], {}),
        ("Reshape", ["{x}", "s_col"], {}),
        ("Reshape", ["{x}", "s_row"], {}),
        ("Concat", ["{x}", "c_cat"], {"axis": 1}),
        ("Slice", ["{x}", "sl_start", "sl_end", "sl_axis"], {}),
    ]
    nodes, prev = [], "x"
    for i in range(n_nodes):
        op, inputs, attrs = block[i % len(block)]
        # end on a full block so the output shape is [1, WIDTH]
        out = "y" if i == n_nodes - 1 else f"t{i}"
        nodes.append(
            helper.make_node(op, [s.format(x=prev) for s in inputs], [out], f"n{i}", **attrs)
        )
        prev = out
    last_op = block[(n_nodes - 1) % len(block)][0]
    out_shape = {"Reshape": None, "Concat": [1, WIDTH + 2]}.get(last_op, [1, WIDTH])
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


TIMER = """
import sys, time, logging
logging.disable(logging.CRITICAL)
from onnx2tflite_direct import convert
t = time.perf_counter()
r = convert(sys.argv[1])
print(time.perf_counter() - t, len(r.tflite_bytes))
"""

PROFILER = """
import sys, cProfile, pstats, logging
logging.disable(logging.CRITICAL)
from onnx2tflite_direct import convert
cProfile.run("convert(sys.argv[1])", sys.argv[2])
pstats.Stats(sys.argv[2]).sort_stats("cumulative").print_stats(35)
pstats.Stats(sys.argv[2]).sort_stats("tottime").print_stats(25)
"""


def time_once(path: Path) -> tuple[float, int]:
    proc = subprocess.run(
        [sys.executable, "-c", TIMER, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    seconds, size = proc.stdout.split()
    return float(seconds), int(size)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scaling.json"))
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {n: Path(tmp) / f"chain_{n}.onnx" for n in args.sizes}
        for n, path in paths.items():
            onnx.save(chain_model(n), str(path))
        timings: dict[int, list] = {n: [] for n in args.sizes}
        for _ in range(args.repeats):  # interleaved: every size sees the same conditions
            for n, path in paths.items():
                timings[n].append(time_once(path))
        for n in args.sizes:
            runs = timings[n]
            median = statistics.median(r[0] for r in runs)
            rows.append(
                {
                    "nodes": n,
                    "median_s": round(median, 3),
                    "runs_s": [round(r[0], 3) for r in runs],
                    "tflite_bytes": runs[0][1],
                }
            )
            print(f"{n:7d} nodes: median {median:.2f} s over {args.repeats} runs")
        if args.profile:
            prof = Path(tmp) / "prof.out"
            subprocess.run(
                [sys.executable, "-c", PROFILER, str(paths[args.sizes[-1]]), str(prof)],
                cwd=ROOT,
                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                check=True,
            )
    ratio = rows[-1]["median_s"] / max(rows[0]["median_s"], 1e-9)
    size_ratio = rows[-1]["nodes"] / rows[0]["nodes"]
    result = {
        "rows": rows,
        "time_ratio": round(ratio, 2),
        "size_ratio": size_ratio,
        "target_ratio": 20,
        "ok": ratio < 20,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"time ratio {ratio:.1f}x for {size_ratio:.0f}x nodes (target < 20x) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
