"""Cost of a static Q/DQ lattice product per form (issue 22; lowering/lattice_int8.py).

For each shape, a one-Conv (or one-MatMul) QDQ model from onnxruntime's quantize_static
(uint8 activations after a ReLU, per-channel int8 weights) is converted twice: the float form
(conv_lattice: float32 CONV_2D / FULLY_CONNECTED on the integers, split into weight digits past
2**24) and the int8 form (lattice_int8: im2col rows on the exact int8 FULLY_CONNECTED), forced
each way. Both files are timed in rotation at 1 thread (median thread-CPU time, wall beside);
the row also gives what lattice_int8.int8_pays predicts, so the cost constants are checked
against the measurement. ``wide`` weights (all codes +-127) pass 2**24 and take 2 digits.

    PYTHONPATH=. python benchmarks/bench_lattice_int8.py [--runs 30] [--out PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_outliers import rotate  # noqa: E402

from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct.lowering import lattice_int8  # noqa: E402
from tools.zoo import run as zoo  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "lattice_int8.json"
# (name, input channels, output channels, kernel, spatial size, wide weights)
SHAPES = (
    ("conv3x3_c3_o64_s56", 3, 64, 3, 56, False),
    ("conv3x3_c16_o32_s56", 16, 32, 3, 56, False),
    ("conv3x3_c32_o64_s28", 32, 64, 3, 28, False),
    ("conv3x3_c64_o64_s28", 64, 64, 3, 28, False),
    ("conv3x3_c128_o128_s14", 128, 128, 3, 14, False),
    ("conv3x3_c256_o256_s7", 256, 256, 3, 7, False),
    ("conv3x3_c512_o512_s7_wide", 512, 512, 3, 7, True),
    ("conv3x3_c256_o256_s14_wide", 256, 256, 3, 14, True),
    ("conv1x1_c64_o256_s28", 64, 256, 1, 28, False),
    ("conv1x1_c256_o64_s28", 256, 64, 1, 28, False),
    ("matmul_384x384_r128", 384, 384, 0, 128, False),
    ("matmul_384x1536_r128", 384, 1536, 0, 128, False),
    ("matmul_1536x384_r128_wide", 1536, 384, 0, 128, True),
)


def _model(c, o, k, s, wide, seed=0):
    rng = np.random.default_rng(seed)
    if wide:
        w = rng.choice([-0.05, 0.05], [o, c, k, k] if k else [c, o]).astype(np.float32)
    else:
        w = (rng.standard_normal([o, c, k, k] if k else [c, o]) * 0.05).astype(np.float32)
    b = (rng.standard_normal([o]) * 0.1).astype(np.float32)
    if k:
        x_shape, y_shape = [1, c, s, s], [1, o, s, s]
        prod = helper.make_node("Conv", ["r", "w", "b"], ["y"], pads=[k // 2] * 4)
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    else:
        x_shape, y_shape = [1, s, c], [1, s, o]
        prod = helper.make_node("MatMul", ["r", "w"], ["y"])
        inits = [numpy_helper.from_array(w, "w")]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), prod],
        "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), x_shape


def _quantized(model, x_shape, folder: Path):
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    rng = np.random.default_rng(1)
    samples = [{"x": rng.standard_normal(x_shape).astype(np.float32)} for _ in range(3)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            return next(self.it, None)

    onnx.save(model, str(folder / "f.onnx"))
    quantize_static(
        str(folder / "f.onnx"),
        str(folder / "q.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return folder / "q.onnx", samples[0]


@contextlib.contextmanager
def forced(choice):
    """int8_pays answering ``choice`` (None: the cost model), recording its own answer."""
    real = lattice_int8.int8_pays
    seen = []

    def pays(*args):
        seen.append(real(*args))
        return seen[-1] if choice is None else choice

    lattice_int8.int8_pays = pays
    try:
        yield seen
    finally:
        lattice_int8.int8_pays = real


def bench(name, c, o, k, s, wide, runs):
    with tempfile.TemporaryDirectory() as tmp:
        path, feeds = _quantized(*_model(c, o, k, s, wide), Path(tmp))
        blobs = {}
        for form, choice in (("float", False), ("int8", True)):
            with forced(choice) as seen:
                res = convert(str(path), keep_io_layout=True)
            blobs[form] = (bytes(res.tflite_bytes), res.report.get("io_table"))
        predicted = bool(seen[0]) if seen else None
        outs = {}
        for form, (blob, io) in blobs.items():
            run = zoo._litert_runner(blob, feeds, io)
            outs[form] = run
        fns = [outs["float"], outs["int8"]]
        wall, cpu, n = rotate(fns, runs, budget_s=15.0)
        from onnx2tflite_direct.validate import litert_runner

        got = [
            np.asarray(litert_runner(b, io, num_threads=1)(feeds)["y"]) for b, io in blobs.values()
        ]
    return {
        "shape": name,
        "identical_outputs": bool(np.array_equal(got[0], got[1])),
        "float_ms": round(wall[0], 4),
        "int8_ms": round(wall[1], 4),
        "cpu_float_ms": round(cpu[0], 4),
        "cpu_int8_ms": round(cpu[1], 4),
        "cpu_int8_over_float": round(cpu[1] / cpu[0], 3),
        "cost_model_picks_int8": predicted,
        "measured_int8_faster": cpu[1] < cpu[0],
        "rounds": n,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows = []
    for shape in SHAPES:
        if args.only and shape[0] not in args.only:
            continue
        row = bench(*shape, args.runs)
        rows.append(row)
        print(
            f"{row['shape']:30s} float {row['cpu_float_ms']:.3f} ms  int8 {row['cpu_int8_ms']:.3f}"
            f" ms  ratio {row['cpu_int8_over_float']:.3f}  model picks int8 "
            f"{row['cost_model_picks_int8']}  identical {row['identical_outputs']}",
            flush=True,
        )
    import ai_edge_litert

    out = {
        "description": "static Q/DQ lattice product per form: float32 kernels on the integers "
        "(conv_lattice) vs the exact int8 FULLY_CONNECTED (lattice_int8), forced each way",
        "timing": "thread CPU time (cpu_*) and wall, median, 1 thread, forms in rotation",
        "cost_constants": {"INT8_MAC": lattice_int8.INT8_MAC, "COPY": lattice_int8.COPY},
        "machine": platform.machine(),
        "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
        "shapes": rows,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
