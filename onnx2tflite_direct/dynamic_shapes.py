"""Dynamic shapes: one .tflite whose symbolic input dimensions are resizable at run time.

The lowering works on static shapes. Every input dimension the model leaves unknown (and the
user did not pin) is a *symbol*; dims that share a ``dim_param`` name are one symbol (the
``batch`` of ``input_ids`` and ``attention_mask``, say). The model is then lowered several
times at sample sizes, and the TFLite graphs are compared element by element:

* a base lowering with every symbol at its first sample value, and one more per symbol with
  that symbol at its second value. The front end is told another sample's input shapes
  (``probe_shapes``), so it never folds shape arithmetic that reads a dynamic dim: Shape/Size
  over such a dim become SHAPE ops, and what is computed from them (Range position ids,
  attention masks, anchor grids) runs at run time;
* the operators must be the same, with the same options: the sizes then change no decision;
* a tensor dimension that differs between the base and a bumped lowering depends on that
  symbol: it becomes -1 in ``shape_signature`` (graph inputs store 1 there; other tensors
  their size extrapolated to 1 when that is linear, else the base sample's size: LiteRT
  recomputes every non-constant shape when inputs are resized);
* constants must be equal, except operands that hold output shapes or slice extents:
  a RESHAPE target with one differing entry gets -1 (LiteRT infers it from the element
  count); a SLICE size that runs to the end of its input gets -1; other differing shape entries
  of the form ``c x product of symbols`` are computed at run time from SHAPE of the inputs
  that carry the symbols; the modulus wrapping a run-time GATHER index is the gathered axis'
  run-time size; a GATHER index or STRIDED_SLICE bound at the same distance from the end of
  its axis in every lowering (``x[:, -1]``) counts from the run-time end; an entry no multiple
  of the symbols takes the size of an earlier tensor that has it in every lowering. A
  constant whose shape changes but that holds one value in every lowering (a ConstantOfShape
  folded at the sample, a loop's output buffer [T, batch]) is FILL at a run-time shape
  computed the same way. Any other size-dependent constant cannot be expressed: the model is
  refused with the operator named and the pinning flags suggested.

A dim declared ``NAME+K`` (a decoder's attention mask over its cache and the new token,
``past+1``) is symbol NAME plus K, sampled with it.

Sample sizes: a symbol used only as a leading (batch) dimension is sampled at 2 and 3 (at 1
some decisions legitimately differ, e.g. a transpose that only moves a unit axis is a
reshape); any other symbol at 64 and 96, sizes valid for strided image backbones (multiples
of 32) and for sequence models. When the model rejects those (shape inference fails, a slice
is empty: an audio front end wants longer inputs; unnamed batch dims that must agree, also
where a shape is left unknown as they differ) or the
graphs differ between them, other plans are tried before refusing: the batch symbols as one,
then larger sizes, then a narrow pair (64 and 80: a recognizer that takes heights below 96
only) (``SIZE_RETRY_SAMPLES``); the report lists the samples used. A strided conv or pool
whose output size is the same at both samples although its input's differs (the samples
within one stride step) would leave that size fixed in the file, wrong at the sizes that
change it: the symbol is sampled again a whole stride apart (``FixedBySamples``); when the
model rejects every size that changes it, the size stays fixed with a warning; otherwise the
model is refused naming the window.

The parts, one job each: ``dynamic_symbols`` (the symbols and the signal that carries them),
``dynamic_sample_plans`` (which sample sizes to try), ``dynamic_compare`` (lowering at the
samples and comparing the graphs), ``dynamic_constants`` (size-dependent constants) and
``dynamic_runtime_dims`` (entries computed at run time from SHAPE). This module ties them
together and turns an inexpressible dependence into the refusal.
"""

from __future__ import annotations

from . import errors
from .dynamic_compare import Lowering
from .dynamic_constants import SHAPE_OPERANDS
from .dynamic_sample_plans import SIZE_RETRY_SAMPLES, with_sample_retries
from .dynamic_symbols import (
    BATCH_SAMPLES,
    COUNT_PIN,
    PIN_HINT,
    SIZE_SAMPLES,
    DynamicShapeModel,
    Inexpressible,
    Symbol,
    describe,
    find_symbols,
    refuse,
    unpin,
)
from .errors import UnsupportedError

# The parts' public names, as the front end, lowering, pipeline and tests import them.
__all__ = [
    "BATCH_SAMPLES",
    "COUNT_PIN",
    "PIN_HINT",
    "SHAPE_OPERANDS",
    "SIZE_RETRY_SAMPLES",
    "SIZE_SAMPLES",
    "DynamicShapeModel",
    "Lowering",
    "Symbol",
    "find_symbols",
    "lower_with_dynamic_shapes",
    "unpin",
]


def lower_with_dynamic_shapes(signal: DynamicShapeModel, lower: Lowering) -> tuple:
    """``lower(shapes, probe_shapes, is_base)`` -> (driver, tfl.Model, loader); returns the base
    result with its size-dependent dimensions made dynamic (see the module docstring)."""
    symbols = signal.symbols
    try:
        while True:
            try:
                result = with_sample_retries(signal, lower)
                size_warnings(result[0])
                return result
            except DynamicShapeModel as more:  # data-dependent sizes after the pinned ones
                if not signal.merge(more):
                    refuse(f"the data-dependent sizes {more} are found again")
    except Inexpressible as err:
        raise UnsupportedError(
            errors.DYNAMIC_SHAPE_UNSUPPORTED,
            f"dynamic shape ({describe(symbols)}): {err}; {PIN_HINT}",
            node_name=err.node,
        ) from None


def size_warnings(driver) -> None:
    """The warnings of the kept sample plan's comparison (``dynamic_compare``: windows that
    overhang small inputs, slices that clip at both samples), into its report; the plans
    tried before it may have found others that do not apply to the file written."""
    report = getattr(driver, "report", None)
    for line in getattr(driver, "size_warnings", ()) if report is not None else ():
        report.warn(line)
