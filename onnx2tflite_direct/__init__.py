"""onnx2tflite_direct: ONNX to TFLite/LiteRT by writing the FlatBuffer directly."""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    BadInputError,
    ConversionError,
    InternalError,
    UnsupportedError,
    ValidationMismatchError,
)
from .pipeline import ConversionResult, convert  # noqa: E402

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
