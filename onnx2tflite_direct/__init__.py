"""onnx2tflite_direct: ONNX to TFLite/LiteRT by writing the FlatBuffer directly.

Why the conversion names load lazily (PEP 562 ``__getattr__``): importing them pulls in
numpy, onnx and the whole pipeline (a second or two). ``import onnx2tflite_direct`` runs
before ``python -m onnx2tflite_direct`` can install its Ctrl-C handler (``__main__.py``), so
an eager import here made an early Ctrl-C a KeyboardInterrupt traceback; ``import
onnx2tflite_direct.errors`` (or ``.version``) stays cheap too. ``from onnx2tflite_direct
import convert`` works as before: the first access imports the module that defines it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import (
    BadInputError,
    ConversionError,
    InternalError,
    UnsupportedError,
    ValidationMismatchError,
)
from .version import __version__

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from .pipeline import ConversionResult, convert

# Public name -> the submodule that defines it, imported on first access.
_LAZY = {"ConversionResult": "pipeline", "convert": "pipeline"}

__all__ = [
    "BadInputError",
    "ConversionError",
    "ConversionResult",
    "InternalError",
    "UnsupportedError",
    "ValidationMismatchError",
    "__version__",
    "convert",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
