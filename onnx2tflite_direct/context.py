"""Former name of :mod:`onnx2tflite_direct.driver` (the lowering driver and the context a
lowering sees), kept as an import path while modules and user code still import it here."""

from .driver import (  # noqa: F401
    VALID_COUNT_SUFFIX,
    Driver,
    LoweringContext,
    LoweringOptions,
    NodeRecord,
)
