"""Two models in one file (``--merge``): a Whisper-like encoder and decoder from the real-model
corpus, merged into one .tflite with a signature each, against the two separate files.

Converted with ``keep_io_layout`` so that every signature takes its inputs in ONNX layout (by
default an input feeding a convolution is exposed channel-last, and the signature runner would
resize to a transposed feed rather than refuse it). Records the file sizes (the merged file must be no larger than the two separate files
together) and, per signature, the largest error against onnxruntime on the corpus's own feeds,
run through LiteRT's signature runner. The models are the corpus entries
``hf_whisper_encoder_ts`` and ``hf_whisper_decoder_dynamo`` (random-initialised transformers
configs; rebuild with ``python -m tools.zoo.build --only NAME`` in the zoo extra's venv).

    PYTHONPATH=. python benchmarks/bench_merge.py [--out benchmarks/results/merge.json]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter

from onnx2tflite_direct import convert
from tools.zoo import run as zoo

PAIR = {"encoder": "hf_whisper_encoder_ts", "decoder": "hf_whisper_decoder_dynamo"}


def _feeds(name: str) -> dict[str, np.ndarray]:
    with np.load(zoo.model_path(name).parent / "feeds.npz") as data:
        return {k: data[k] for k in data.files}


def _max_error(tflite: bytes, signature: str, path: Path, feeds: dict) -> float:
    runner = Interpreter(model_content=tflite, num_threads=1).get_signature_runner(signature)
    got = runner(**feeds)
    want = dict(
        zip(
            [o.name for o in ort.InferenceSession(str(path)).get_outputs()],
            ort.InferenceSession(str(path)).run(None, feeds),
            strict=True,
        )
    )
    return max(float(np.max(np.abs(got[k] - want[k]))) for k in want)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/merge.json")
    args = ap.parse_args(argv)
    paths = {sig: zoo.model_path(name) for sig, name in PAIR.items()}
    separate = {
        sig: len(convert(str(p), stem=sig, keep_io_layout=True).tflite_bytes)
        for sig, p in paths.items()
    }
    merged = convert(
        str(paths["encoder"]),
        stem="encoder",
        keep_io_layout=True,
        merge={"decoder": str(paths["decoder"])},
    )
    tflite = bytes(merged.tflite_bytes)
    errors = {sig: _max_error(tflite, sig, paths[sig], _feeds(PAIR[sig])) for sig in PAIR}
    result = {
        "models": PAIR,
        "separate_bytes": separate,
        "merged_bytes": len(tflite),
        "merged_over_separate": round(len(tflite) / sum(separate.values()), 4),
        "max_abs_error_vs_onnxruntime": errors,
        "signatures": [s["name"] for s in merged.report["signatures"]],
        "machine": platform.machine(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
