"""Decode-step latency of a prefill/decode file (LiteRT signature runner) against onnxruntime.

A decoder with its KV cache as I/O (examples/generate.py: the built-in GPT-2-style decoder, or
``--model`` an export such as ``examples/generate.py --export-hf llama``) is converted with
``prefill`` and ``decode`` signatures. The cache is filled by a prefill of ``--past`` tokens
(the same cache for both runtimes), then one decode step (one token, past ``--past``) is
timed: median of ``--runs`` after ``--warmup``, the two runtimes alternating step by step
(paired timing), at 1 thread (LiteRT with XNNPACK, ``num_threads=1``; onnxruntime
``intra_op_num_threads=1``, sequential). The outputs of the timed step are compared first
(max abs error <= 1e-4 * max(1, max|expected|)).

    PYTHONPATH=. python benchmarks/bench_decode.py [--model dec.onnx] [--past 128]

A second timing alternates past P and P+1 (the decode step's own cache), as generation grows
the cache one token a step: each LiteRT call then resizes its inputs and re-prepares the
graph (``growing_*`` keys).

Writes ``benchmarks/results/decode.json`` (one entry per model label) and prints a line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnx2tflite_direct import convert  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "decode.json"


def _generate_module():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "examples" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paired_median_ms(a, b, warmup: int, runs: int) -> tuple[float, float]:
    """Median ms of ``a`` and of ``b``, timed alternately (a, b, a, b, ...): on a shared
    machine a slow spell then slows both sides alike instead of only the one timed second."""
    for _ in range(warmup):
        a()
        b()
    times: tuple[list, list] = ([], [])
    for _ in range(runs):
        for run, out in ((a, times[0]), (b, times[1])):
            start = time.perf_counter()
            run()
            out.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[0]), 1e3 * statistics.median(times[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a decoder export (default: the built-in one)")
    parser.add_argument("--label", help="result key (default: the model file's stem)")
    parser.add_argument("--past", type=int, default=128)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    gen = _generate_module()
    model = onnx.load(args.model) if args.model else gen.build_decoder(2048, 4, 8, 32, 512)
    label = args.label or (Path(args.model).stem if args.model else "builtin_decoder")
    res = convert(model, signatures=gen.decoder_signatures(model, args.past))
    interp = Interpreter(model_content=bytes(res.tflite_bytes), num_threads=1)
    prefill, decode = (interp.get_signature_runner(k) for k in ("prefill", "decode"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    inputs = {i.name for i in model.graph.input}

    vocab = model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value or 256
    prompt = np.random.default_rng(0).integers(0, vocab, (1, args.past))
    filled = prefill(**gen._feeds(inputs, prompt, gen._empty_cache(model)))
    feeds = gen._feeds(inputs, np.array([[7]], np.int64), gen._next_past(filled))
    ours = decode(**feeds)
    ref = dict(zip(names, sess.run(None, feeds), strict=True))
    for name, want in ref.items():
        err = float(np.abs(ours[name] - want).max())
        if err > 1e-4 * max(1.0, float(np.abs(want).max())):
            print(f"{label}: {name} differs from onnxruntime by {err}")
            return 1
    litert_ms, ort_ms = paired_median_ms(
        lambda: decode(**feeds), lambda: sess.run(None, feeds), args.warmup, args.runs
    )
    # As in generation, where the cache grows by one every step: past P and P+1 alternate, so
    # every LiteRT call resizes the inputs and re-prepares the graph (AllocateTensors).
    grown = gen._feeds(inputs, np.array([[9]], np.int64), gen._next_past(ours))
    both, turn = (feeds, grown), [0]

    def alternate(run):
        turn[0] ^= 1
        return run(both[turn[0]])

    litert_grow, ort_grow = paired_median_ms(
        lambda: alternate(lambda f: decode(**f)),
        lambda: alternate(lambda f: sess.run(None, f)),
        args.warmup,
        args.runs,
    )
    entry = {
        "past": args.past,
        "litert_ms": round(litert_ms, 3),
        "onnxruntime_ms": round(ort_ms, 3),
        "ratio": round(litert_ms / ort_ms, 3),
        "growing_litert_ms": round(litert_grow, 3),
        "growing_onnxruntime_ms": round(ort_grow, 3),
        "growing_ratio": round(litert_grow / ort_grow, 3),
        "file_bytes": len(res.tflite_bytes),
        "machine": platform.machine(),
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[label] = entry
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"{label}: decode step at past {args.past}, 1 thread: LiteRT {litert_ms:.3f} ms, "
        f"onnxruntime {ort_ms:.3f} ms ({entry['ratio']}x); past growing (a resize every "
        f"step): LiteRT {litert_grow:.3f} ms, onnxruntime {ort_grow:.3f} ms "
        f"({entry['growing_ratio']}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
