"""onnx2tflite_direct: ONNX to TFLite/LiteRT by writing the FlatBuffer directly."""

from .errors import (
    BadInputError,
    ConversionError,
    InternalError,
    UnsupportedError,
    ValidationMismatchError,
)
from .pipeline import ConversionResult, convert
from .version import __version__

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
