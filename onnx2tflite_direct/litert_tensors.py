"""Every tensor of a LiteRT file, read back after one run on the reference kernels: the file's
tensor rows, the run that keeps all intermediates, and each stored tensor as real values in the
layout its ONNX tensor has (per-tensor or per-channel quantization undone, tensor-map steps
applied).

Why a module of its own, in the validation layer: the diagnostics (``--validate-all-tensors``),
the quantization debugger and the auto quantizer's channel equalization all read intermediate
tensors the same way, and the quantizer sits below the presentation layer that renders the
diagnostics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import tflite_reader as R
from . import validate as val

# One thread: onnxruntime runs meanwhile on another core (two LiteRT threads measured no
# faster overall on the benchmark set: the runs then fight over the cores).
LITERT_THREADS = 1


def run_keeping_all_tensors(tflite_bytes: bytes, feeds, io_table):
    """Invoke with the reference kernels, keeping every tensor; return (interpreter, inputs)."""
    interp_mod = val._import_litert_interpreter()
    interp = interp_mod.Interpreter(
        model_content=bytes(tflite_bytes),
        num_threads=LITERT_THREADS,
        experimental_op_resolver_type=interp_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    perms = {row["name"]: row.get("perm") for row in io_table or () if row["kind"] == "input"}
    stored = {}
    for name, detail in input_details(interp).items():
        if name not in feeds:
            raise ValueError(f"no feed for TFLite input {name!r}")
        arr = np.asarray(feeds[name])
        if perms.get(name) is not None:
            arr = np.transpose(arr, perms[name])
        # Dims the file leaves dynamic (stored as 1) take the feed's size, as the signature
        # runner of ``--validate`` does; a size the file fixes must match.
        want = detail.get("shape_signature")
        want = detail["shape"] if want is None or len(want) == 0 else want
        fits = len(want) == arr.ndim and all(
            int(w) in (-1, a) for w, a in zip(want, arr.shape, strict=False)
        )
        if not fits:
            raise ValueError(
                f"input {name!r}: feed shape {tuple(arr.shape)} does not fit the TFLite input "
                f"shape {tuple(int(d) for d in want)}"
            )
        if tuple(detail["shape"]) != arr.shape:
            interp.resize_tensor_input(detail["index"], list(arr.shape), strict=True)
        stored[detail["index"]] = np.array(arr, dtype=detail["dtype"], order="C")
    interp.allocate_tensors()
    for index, arr in stored.items():
        interp.set_tensor(index, arr)
    interp.invoke()
    return interp


def input_details(interp) -> dict[str, dict]:
    """Signature input name -> details (with the tensor ``index``); plain inputs if unsigned."""
    if interp.get_signature_list():
        key = next(iter(interp.get_signature_list()))
        return dict(interp.get_signature_runner(key).get_input_details())
    return {d["name"]: d for d in interp.get_input_details()}


def dequantize(arr: np.ndarray, quant: Mapping[str, Any] | None):
    """(real values, per-element scale or None) of a stored tensor."""
    if quant is None or not quant["scale"]:
        return arr, None
    scale = np.asarray(quant["scale"], np.float64)
    zero = np.asarray(quant["zero_point"] or [0] * len(scale), np.float64)
    if scale.size > 1:  # per-channel along quantized_dimension
        shape = [1] * arr.ndim
        shape[quant["quantized_dimension"]] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    real = (arr.astype(np.float64) - zero) * scale
    return real.astype(np.float32), np.broadcast_to(scale, arr.shape)


def file_tables(tflite_bytes: bytes) -> tuple[list[dict], dict[int, str]]:
    """Main-subgraph tensor rows (index, name, constant, quantization) and, per tensor index,
    the opcode of the operator writing it: one lean pass over the FlatBuffer.

    Why not ``tflite_reader.tensor_table``: it also decodes shapes, dtypes and signatures,
    which the diagnostics never read, and the producers would need a second pass.
    """
    schema = R.schema()
    model = R.root(bytes(tflite_bytes), schema)
    sg = model.Subgraphs(0)
    n_buffers = model.BuffersLength()
    rows = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        b = t.Buffer()
        constant = 0 < b < n_buffers and R.buffer_size(model.Buffers(b)) > 0
        rows.append(
            {
                "index": i,
                "name": R.text(t.Name()),
                "constant": constant,
                "quantization": None if constant else R.quantization(t),
            }
        )
    codes = [name for name, _, _ in R.operator_codes(model, schema)]
    producers: dict[int, str] = {}
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        for t in op.OutputsAsNumpy() if op.OutputsLength() else ():
            producers[int(t)] = codes[op.OpcodeIndex()]
    return rows, producers


def apply_steps(arr: np.ndarray, steps) -> np.ndarray:
    """Turn a derived tensor's stored array into its ONNX tensor's stored array."""
    for step in steps:
        if step[0] == "transpose":
            arr = np.transpose(arr, step[1])
        elif step[0] == "reshape":
            arr = arr.reshape(step[1])
        elif step[0] == "crop":  # ["crop", begin, size, what lies outside]
            arr = arr[tuple(slice(b, b + n) for b, n in zip(step[1], step[2], strict=True))]
        else:
            raise ValueError(f"unknown tensor-map step {step[0]!r}")
    return arr


def stored_real(interp, row, steps=()) -> tuple[np.ndarray, Any] | None:
    """(real array in the ONNX tensor's stored layout, per-element scale or None)."""
    try:
        stored = interp.get_tensor(row["index"])  # a copy: the interpreter keeps its memory
    except ValueError:  # a tensor the runtime did not allocate
        return None
    real, scale = dequantize(stored, row["quantization"])
    if steps:
        real = apply_steps(real, steps)
        scale = None if scale is None else apply_steps(np.asarray(scale), steps)
    return real, scale
