"""Where the corpus lives on this machine (never inside the repository)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(
        os.environ.get("ONNX2TFLITE_ZOO_CACHE") or Path.home() / ".cache" / "onnx2tflite_direct_zoo"
    )


def models_dir() -> Path:
    return cache_dir() / "models"


def downloads_dir() -> Path:
    return cache_dir() / "dl"


def results_dir() -> Path:
    """Per-model results; ``$ONNX2TFLITE_ZOO_RESULTS`` keeps one run's results apart (e.g.
    the committed report's, while others run single models against their working tree)."""
    return Path(os.environ.get("ONNX2TFLITE_ZOO_RESULTS") or cache_dir() / "results")


REPO = Path(__file__).resolve().parents[2]
REPORT_JSON = REPO / "coverage_reports" / "zoo.json"
REPORT_MD = REPO / "coverage_reports" / "zoo.md"
