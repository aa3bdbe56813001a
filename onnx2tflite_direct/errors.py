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
# --quantize auto: the float model itself misses --target-sqnr on the held-back samples.
TARGET_SQNR_UNREACHABLE = "target_sqnr_unreachable"

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

    def reworded(self, message: str) -> ConversionError:
        """This error with ``message`` instead (same type, code and node); returns self, so
        an interface can re-spell a message in its own terms and re-raise the same error."""
        self.message = message
        where = f" (node {self.node_name!r})" if self.node_name else ""
        self.args = (f"[{self.reason_code}]{where} {message}",)
        return self


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


class OptionError(BadInputError):
    """A bad option value, or options that contradict each other.

    ``template`` refers to the options involved as ``{0}``, ``{1}`` ...; ``options`` holds
    their ``convert()`` argument names. The message reads in those names; the command line
    re-spells it with its flags (:meth:`spelled`), so each interface names its own options.
    """

    def __init__(self, template: str, options=(), reason_code: str = INVALID_OPTION):
        self.template = template
        self.options = tuple(options)
        super().__init__(reason_code, self.spelled(lambda name: name))

    def spelled(self, spell) -> str:
        """The message with every option named by ``spell(api_name)``."""
        out = self.template
        for i, name in enumerate(self.options):
            out = out.replace("{" + str(i) + "}", spell(name))
        return out


# Every reason code and the exit code it leaves with (the README's list is generated from it).
REASON_CODES = {
    UNSUPPORTED_ONNX_OP: EXIT_UNSUPPORTED,
    REQUIRES_CONSTANT_INPUT: EXIT_UNSUPPORTED,
    UNSUPPORTED_ATTRIBUTE_VALUE: EXIT_UNSUPPORTED,
    UNSUPPORTED_DTYPE: EXIT_UNSUPPORTED,
    UNSUPPORTED_RANK: EXIT_UNSUPPORTED,
    DYNAMIC_SHAPE_UNSUPPORTED: EXIT_UNSUPPORTED,
    CUSTOM_OP_CANDIDATE_DISABLED: EXIT_UNSUPPORTED,
    CUSTOM_OP_NOT_IN_ALLOWLIST: EXIT_UNSUPPORTED,
    UNSUPPORTED_OPSET: EXIT_UNSUPPORTED,
    EMPTY_TENSOR_UNSUPPORTED: EXIT_UNSUPPORTED,
    INTEGER_KERNEL_UNAVAILABLE: EXIT_UNSUPPORTED,
    INVALID_MODEL: EXIT_BAD_INPUT,
    FILE_NOT_FOUND: EXIT_BAD_INPUT,
    UNSAFE_EXTERNAL_DATA: EXIT_BAD_INPUT,
    MISSING_EXTERNAL_DATA: EXIT_BAD_INPUT,
    INVALID_OPTION: EXIT_BAD_INPUT,
    SHAPE_INFERENCE_FAILED: EXIT_BAD_INPUT,
    MISSING_CALIBRATION_DATA: EXIT_BAD_INPUT,
    TARGET_SQNR_UNREACHABLE: EXIT_BAD_INPUT,
    VALIDATION_MISMATCH: EXIT_VALIDATION,
    INTERNAL_ERROR: EXIT_INTERNAL,
}
