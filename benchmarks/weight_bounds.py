"""What a weight storage format allows on its own: float models whose weights are rounded as
a variant stores them, run with exact (float) activations in onnxruntime.

- :func:`int8_weights_only`: matmul-like weights rounded to per-channel symmetric int8 (to
  nearest), nothing else. The variants exceed it where their bias correction removes the
  rounded weights' average error.
- :func:`float16_weights`: every weight with two or more non-unit dims rounded to float16,
  what the float16 variant stores (``quant/fp16.py``).
- :func:`bias_corrected`: a rounded model with each Conv/Gemm/MatMul output shifted by the
  measured average error its rounded weight adds on the calibration samples (empirical bias
  correction, on the float model's own activations), as the variants correct their biases.
  With int8 weights this is what an int16x8 variant can reach: with activations 256x finer
  than int8 it should land near the figure, and no activation precision takes it far above:
  the error left is the zero-mean part of the weight rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROUNDED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _weight_axis(node: onnx.NodeProto, rank: int) -> int | None:
    """Output-channel axis of a matmul-like node's weight (input 1), or None."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return rank - 1
    return None


def int8_rounding(w: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric per-channel int8 (one scale per slice along ``axis``), dequantized."""
    others = tuple(i for i in range(w.ndim) if i != axis)
    scale = np.maximum(np.abs(w).max(axis=others, keepdims=True), 1e-30) / 127.0
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def int8_weights_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its Conv/ConvTranspose/Gemm/MatMul weights rounded to per-channel int8."""
    out = _copy(model)
    inits = {t.name: t for t in out.graph.initializer}
    for node in out.graph.node:
        if node.op_type not in ROUNDED or len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        axis = _weight_axis(node, w.ndim)
        if axis is None or w.ndim < 2 or w.dtype != np.float32:
            continue
        rounded = int8_rounding(w, axis)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(rounded, node.input[1]))
    return out


def float16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the constants the float16 variant stores as float16 rounded to it."""
    from onnx2tflite_direct.quant.fp16 import MIN_ELEMENTS

    out = _copy(model)
    for t in out.graph.initializer:
        w = numpy_helper.to_array(t)
        if w.dtype == np.float32 and w.size >= MIN_ELEMENTS and sum(d > 1 for d in w.shape) >= 2:
            rounded = w.astype(np.float16).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(rounded, t.name))
    return out


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _weight_deltas(model: onnx.ModelProto, rounded: onnx.ModelProto) -> dict[int, np.ndarray]:
    """Per Conv/Gemm/MatMul node (index) reading an activation and a weight that ``rounded``
    changed: ``rounded weight - float weight``."""
    floats = {t.name: t for t in model.graph.initializer}
    changed = {t.name: t for t in rounded.graph.initializer}
    deltas = {}
    for k, node in enumerate(model.graph.node):
        if node.op_type not in ROUNDED or len(node.input) < 2 or node.input[0] in floats:
            continue
        name = node.input[1]
        if (
            name not in floats
            or floats[name].SerializeToString() == changed[name].SerializeToString()
        ):
            continue
        delta = numpy_helper.to_array(changed[name]) - numpy_helper.to_array(floats[name])
        deltas[k] = delta.astype(np.float32)
    return deltas


def bias_corrected(
    model: onnx.ModelProto,
    rounded: onnx.ModelProto,
    calibration_feeds: Iterable[Mapping[str, np.ndarray]],
) -> onnx.ModelProto:
    """``rounded`` (``model`` with rounded weights), each node whose weight was rounded followed
    by an Add removing its measured average output error per output channel
    (``E[node(x; rounded - float)]`` over the calibration samples and all positions, x the
    float model's activations)."""
    deltas = _weight_deltas(model, rounded)
    nodes = list(model.graph.node)
    probe = _with_outputs(model, sorted({nodes[k].input[0] for k in deltas}))
    error_models = {k: _session(_error_model(model, nodes[k], d)) for k, d in deltas.items()}
    probe_sess = _session(probe)
    names = [o.name for o in probe_sess.get_outputs()]
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for feed in calibration_feeds:
        acts = dict(zip(names, probe_sess.run(names, dict(feed)), strict=True))
        for k, sess in error_models.items():
            err = sess.run(None, {"x": acts[nodes[k].input[0]]})[0].astype(np.float64)
            axis = _output_axis(nodes[k], err.ndim)
            moved = np.moveaxis(err, axis, 0).reshape(err.shape[axis], -1)
            sums[k] = sums.get(k, 0.0) + moved.sum(axis=1)
            counts[k] = counts.get(k, 0) + moved.shape[1]
    return _with_corrections(rounded, {k: sums[k] / counts[k] for k in sums})


def _output_axis(node: onnx.NodeProto, rank: int) -> int:
    return 1 if node.op_type in ("Conv", "ConvTranspose") else rank - 1


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(helper.make_empty_tensor_value_info(name))
    return out


def _error_model(model: onnx.ModelProto, node: onnx.NodeProto, delta: np.ndarray):
    """The node alone, with ``delta`` as its weight and no bias: its output is the error the
    rounded weight adds (the ops are linear in the weight)."""
    single = onnx.NodeProto()
    single.CopyFrom(node)
    del single.input[:]
    single.input.extend(["x", "delta"])
    inits = [numpy_helper.from_array(delta, "delta")]
    if node.op_type == "Gemm":  # C is required before opset 11: a zero adds nothing
        single.input.append("zero")
        inits.append(numpy_helper.from_array(np.zeros(1, np.float32), "zero"))
    del single.output[:]
    single.output.append("err")
    graph = helper.make_graph(
        [single],
        "weight_error",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("err", onnx.TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(
        graph, opset_imports=list(model.opset_import), ir_version=max(model.ir_version, 4)
    )


def _with_corrections(model: onnx.ModelProto, means: dict[int, np.ndarray]) -> onnx.ModelProto:
    """Node k's output ``y`` becomes ``y - means[k]`` (broadcast on its output-channel axis)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    for k, original in enumerate(model.graph.node):
        node = onnx.NodeProto()
        node.CopyFrom(original)
        nodes.append(node)
        if k not in means:
            continue
        y = node.output[0]
        node.output[0] = f"{y}/before_bias_correction"
        shift = -means[k].astype(np.float32)
        if node.op_type in ("Conv", "ConvTranspose"):
            shift = shift.reshape(-1, *[1] * (_conv_output_rank(node, out) - 2))
        const = f"{y}/bias_correction"
        out.graph.initializer.append(numpy_helper.from_array(shift, const))
        nodes.append(helper.make_node("Add", [node.output[0], const], [y]))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _conv_output_rank(node: onnx.NodeProto, model: onnx.ModelProto) -> int:
    weight = next(t for t in model.graph.initializer if t.name == node.input[1])
    return len(weight.dims)


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
