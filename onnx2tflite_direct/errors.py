"""Typed errors. Every failure reaches the user as one of these, with a stable reason code.

Exit codes (CLI): 0 success, 1 internal error, 2 bad input, 3 unsupported model content,
4 validation mismatch.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_UNSUPPORTED = 3
EXIT_VALIDATION = 4

# Reason codes for refusals of model content (exit 3).
UNSUPPORTED_ONNX_OP = "unsupported_onnx_op"
REQUIRES_CONSTANT_INPUT = "requires_constant_input"
UNSUPPORTED_ATTRIBUTE_VALUE = "unsupported_attribute_value"
UNSUPPORTED_DTYPE = "unsupported_dtype"
UNSUPPORTED_RANK = "unsupported_rank"
DYNAMIC_SHAPE_UNSUPPORTED = "dynamic_shape_unsupported"
CUSTOM_OP_CANDIDATE_DISABLED = "custom_op_candidate_disabled"
CUSTOM_OP_NOT_IN_ALLOWLIST = "custom_op_not_in_allowlist"
UNSUPPORTED_OPSET = "unsupported_opset"
EMPTY_TENSOR_UNSUPPORTED = "empty_tensor_unsupported"
# --strict-integer: some ops have no integer kernel (or would be too inaccurate in integer).
INTEGER_KERNEL_UNAVAILABLE = "integer_kernel_unavailable"

# Reason codes for bad input (exit 2).
INVALID_MODEL = "invalid_model"
FILE_NOT_FOUND = "file_not_found"
UNSAFE_EXTERNAL_DATA = "unsafe_external_data_path"
MISSING_EXTERNAL_DATA = "missing_external_data"
INVALID_OPTION = "invalid_option"
SHAPE_INFERENCE_FAILED = "shape_inference_failed"
MISSING_CALIBRATION_DATA = "missing_calibration_data"

VALIDATION_MISMATCH = "validation_mismatch"
INTERNAL_ERROR = "internal_error"


class ConversionError(Exception):
    """Base of all errors raised by the converter."""

    exit_code = EXIT_INTERNAL

    def __init__(self, reason_code: str, message: str, node_name: str | None = None):
        self.reason_code = reason_code
        self.message = message
        self.node_name = node_name
        where = f" (node {node_name!r})" if node_name else ""
        super().__init__(f"[{reason_code}]{where} {message}")

    def to_dict(self) -> dict:
        return {
            "type": type(self).__name__,
            "reason_code": self.reason_code,
            "node": self.node_name,
            "message": self.message,
            "exit_code": self.exit_code,
        }


class BadInputError(ConversionError):
    """The model file, its external data or the options given are unusable."""

    exit_code = EXIT_BAD_INPUT


class UnsupportedError(ConversionError):
    """The model is valid but contains something we cannot reproduce exactly."""

    exit_code = EXIT_UNSUPPORTED


class ValidationMismatchError(ConversionError):
    """The converted model ran but its numbers differ from onnxruntime beyond tolerance."""

    exit_code = EXIT_VALIDATION

    def __init__(self, message: str, result=None):
        super().__init__(VALIDATION_MISMATCH, message)
        self.result = result  # the ValidationResult
        self.conversion = None  # the ConversionResult whose file did not validate


class InternalError(ConversionError):
    exit_code = EXIT_INTERNAL
