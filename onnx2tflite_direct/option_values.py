"""Command-line parsers of option values (text -> value): the ``type`` of the flags that
:class:`~onnx2tflite_direct.options.ConvertOptions` declares; argparse reports their errors.
A module of its own so ``options.py`` holds the declarations only."""

from __future__ import annotations

import argparse
import math


def parse_shape_pin(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.rpartition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:d0,d1,... got {text!r}")
    try:
        return name, tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"dims must be integers in {text!r}") from None


def parse_names(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return names


def parse_optional_names(text: str) -> list[str]:
    """Comma-separated names; empty text (a bare optional-list flag) gives none."""
    return [n for n in text.split(",") if n]


def parse_named_values(text: str) -> tuple[str, list[float]]:
    name, sep, values = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=v[,v...], got {text!r}")
    try:
        return name, [float(v) for v in values.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"values must be numbers in {text!r}") from None


def parse_named_value(text: str) -> tuple[str, float]:
    name, values = parse_named_values(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (one value), got {text!r}")
    return name, values[0]


def parse_named_path(text: str) -> str:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=file.npy, got {text!r}")
    return text


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value
