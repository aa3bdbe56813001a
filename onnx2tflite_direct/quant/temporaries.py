"""Calibrated ranges of the TFLite-only tensors a lowering creates (decomposition temporaries).

Why: calibration runs the ONNX model in onnxruntime, so it sees ONNX tensors only; their
ranges reach the TFLite graph through the tensor map. A node lowered into several computing
operators (LayerNormalization's MEAN / SUB / MUL / MEAN / ADD / RSQRT / MUL, a global average
pool written as two MEANs, ...) leaves temporaries no ONNX tensor names, and without a range
those operators stayed float in every integer file. Here the lowered float model itself runs in
LiteRT (reference kernels, every tensor kept) on the same calibration samples, and the min/max
of each such temporary is taken: the value the integer kernel will read, measured where it is
computed. Min/max whatever ``--calibration-method`` says (the temporaries are few and their
extremes, e.g. a variance's, carry the signal). Only tensors the tensor map cannot give a range
to are measured, so files without such temporaries are unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import numpy as np

from .. import tfl
from .. import validate as V
from .integer_fold import _is_global_average_pool
from .integer_lstm import kernels, state_ranges
from .integer_plan import REARRANGING, is_float_activation
from .op_rules import RULES


def wanted(sub: tfl.Subgraph, known: Mapping[str, tuple]) -> set[str]:
    """Float activations computed by an operator (not copied by a data-moving one, whose
    source's range is taken instead) that no calibrated range covers; a tensor only read by
    RESHAPE-like copies takes their range (``IntegerPlan._range_downstream``) and is skipped."""
    readers = sub.consumers()
    inputs = {id(t) for t in sub.inputs}
    found = set()
    for op in sub.operators:
        rule = RULES.get(op.opcode)
        if rule is not None and rule.kind == "same" and not _is_global_average_pool(op):
            continue  # (a global average pool becomes a MEAN with its own scale)
        for t in op.outputs:
            if not is_float_activation(t) or t.name in known or id(t) in inputs:
                continue
            users = readers.get(id(t), [])
            if users and all(u.opcode in REARRANGING and i == 0 for u, i in users):
                continue
            found.add(t.name)
    return found


def temporary_ranges(
    model_ir: tfl.Model,
    build: Callable[[tfl.Model], bytes],
    data: Mapping[str, np.ndarray],
    batches: Mapping[str, int],
    tensor_map: Mapping[str, Mapping],
    known: Mapping[str, tuple],
) -> dict[str, tuple[float, float]]:
    """{TFLite tensor name: (min, max)} of the main subgraph's uncovered temporaries over the
    calibration samples (``data`` in ONNX layout, ``batches`` its per-input batch size)."""
    names = wanted(model_ir.subgraphs[0], known)
    lstms = kernels(model_ir.subgraphs[0])  # their cell state over every step: replayed
    if not names and not lstms:
        return {}
    interp_mod = V._import_litert_interpreter()
    with warnings.catch_warnings():  # LiteRT warns that keeping every tensor is for debugging
        warnings.simplefilter("ignore", UserWarning)
        interp = interp_mod.Interpreter(
            model_content=bytes(build(model_ir)),
            num_threads=1,
            experimental_op_resolver_type=interp_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            experimental_preserve_all_tensors=True,
        )
    by_tensor = {entry["tensor"]: (onnx, entry) for onnx, entry in tensor_map.items()}
    inputs = []
    for detail in interp.get_input_details():
        onnx_name, entry = by_tensor.get(detail["name"], (None, None))
        if onnx_name not in data:
            return {}  # an input the samples do not cover (not expected): measure nothing
        inputs.append((detail, onnx_name, entry.get("perm")))
    details = interp.get_tensor_details()
    wanted_index = {d["index"]: d["name"] for d in details if d["name"] in names}
    lstm_inputs = {op.inputs[0].name for op in lstms}
    lstm_index = {d["name"]: d["index"] for d in details if d["name"] in lstm_inputs}
    interp.allocate_tensors()
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for feeds in V.iter_feed_batches(data, batches):
        arrays = []
        for detail, onnx_name, perm in inputs:
            arr = np.asarray(feeds[onnx_name])
            if perm is not None and arr.ndim == len(perm):
                arr = np.transpose(arr, perm)
            if arr.size == int(np.prod(detail["shape"])):
                arr = arr.reshape(detail["shape"])
            arrays.append((detail, np.ascontiguousarray(arr, dtype=detail["dtype"])))
        if not _run(interp, arrays):
            return {}  # the float file did not run on these samples: measure nothing
        for index, name in wanted_index.items():
            try:  # a tensor a control-flow op resized or released has no data to read
                value = np.asarray(interp.get_tensor(index))
            except ValueError:
                continue
            finite = value[np.isfinite(value)]
            if finite.size:
                lo[name] = min(lo.get(name, np.inf), float(finite.min()))
                hi[name] = max(hi.get(name, -np.inf), float(finite.max()))
        for op in lstms:
            if op.inputs[0].name not in lstm_index:
                continue
            x = np.asarray(interp.get_tensor(lstm_index[op.inputs[0].name]))
            for name, (a, b) in state_ranges(op, x).items():
                lo[name] = min(lo.get(name, np.inf), a)  # (the state variable's last value,
                hi[name] = max(hi.get(name, -np.inf), b)  # measured above, is within)
    return {name: (lo[name], hi[name]) for name in lo}


def _run(interp, arrays) -> bool:
    """One invocation; a run-time dimension (dynamic shapes) is resized to the sample's."""
    try:
        resized = False
        for detail, arr in arrays:
            if tuple(interp.get_tensor(detail["index"]).shape) != arr.shape:
                interp.resize_tensor_input(detail["index"], list(arr.shape))
                resized = True
        if resized:
            interp.allocate_tensors()
        for detail, arr in arrays:
            interp.set_tensor(detail["index"], arr)
        interp.invoke()
    except (RuntimeError, ValueError):
        return False
    return True
