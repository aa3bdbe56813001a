"""DFT, STFT and MelWeightMatrix as constant linear maps.

A DFT along one axis is linear in the (real, imaginary) input values, so it is one
FULLY_CONNECTED with a constant matrix. The matrix is built by pushing every basis vector
through numpy's FFT (the same functions the ONNX reference uses), so dft_length truncation or
zero-padding, onesided output, inverse scaling and the one-sided inverse (irfft, which drops
the imaginary part of the DC and Nyquist bins) all come out of one code path. Products are
accumulated in float32. STFT gathers the frames with constant indices, folds a constant window
into the matrix (a runtime window is a MUL) and uses the same DFT matrix.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from .. import errors
from ..policies import onnx_order
from ..registry import attr_in, lowering
from .emit import Emitter

MAX_MATRIX_ELEMENTS = 1 << 22  # 16 MiB of float32 weights


def dft_matrix(n_in: int, channels: int, length: int, inverse: bool, onesided: bool) -> np.ndarray:
    """[n_in * channels, K * D]: maps interleaved input (n, re/im) to output (k, re/im).

    ``channels`` is 1 for real input, 2 for complex; D is 1 for the one-sided inverse (real
    output) and 2 otherwise.
    """
    basis = np.eye(n_in * channels).reshape(n_in * channels, n_in, channels)
    z = basis[..., 0] + (1j * basis[..., 1] if channels == 2 else 0)
    if inverse and onesided:
        return np.fft.irfft(z, n=length, axis=1)
    y = np.fft.ifft(z, n=length, axis=1) if inverse else np.fft.fft(z, n=length, axis=1)
    if onesided and not inverse:
        y = y[:, : length // 2 + 1]
    return np.stack([y.real, y.imag], axis=-1).reshape(n_in * channels, -1)


def _apply_matrix(ctx, rows, matrix: np.ndarray, hint: str):
    """rows [B, P] times constant ``matrix`` [P, Q] -> [B, Q] (FULLY_CONNECTED)."""
    e = Emitter(ctx)
    weights = e.const(matrix.T.astype(np.float32), np.float32, f"{hint}_matrix")
    return e.dense(rows, weights, None, hint)


def _scalar(value) -> int:
    return int(np.asarray(value).reshape(-1)[0])


def _const_scalar(node, graph, i: int) -> int | None:
    """The value of optional scalar input ``i``; None when absent or computed at run time."""
    if len(node.inputs) <= i or not node.inputs[i]:
        return None
    value = graph.values[node.inputs[i]]
    return _scalar(value.const) if value.is_constant else None


def _present(node, i: int) -> bool:
    return len(node.inputs) > i and bool(node.inputs[i])


def _select_by_value(ctx, i: int, candidates, wrap: int | None = None):
    """Pick ``tensor`` of the (value, tensor) candidate whose value equals runtime input ``i``.

    A runtime scalar that decides an output shape is only possible when the declared output
    shape pins it to a few values; each candidate is computed and the matching one is
    selected (a value outside the candidates contradicts the model's own output shape).
    """
    e = Emitter(ctx)
    (_, chosen), rest = candidates[0], candidates[1:]
    if not rest:
        return chosen
    value = e.reshape(e.cast(ctx.input(i), np.int32, "as_i32"), (), "scalar")
    if wrap is not None:
        value = e.op("FLOOR_MOD", value, e.const(wrap, np.int32, "rank"), hint="wrapped")
    for v, tensor in rest:
        hit = e.op("EQUAL", value, e.const(v, np.int32, "v"), hint="hit", dtype=np.bool_)
        chosen = e.op("SELECT_V2", hit, tensor, chosen, hint="select")
    return chosen


# ---- DFT --------------------------------------------------------------------------------------


def _dft_axis(node, graph) -> int | None:
    rank = len(graph.values[node.inputs[0]].shape)
    if node.opset < 20:
        return int(node.attrs.get("axis", 1)) % rank
    if not _present(node, 2):
        return rank - 2
    axis = _const_scalar(node, graph, 2)
    return None if axis is None else axis % rank


def _dft_length(node, graph, axis: int) -> int:
    shape = graph.values[node.inputs[0]].shape
    if _present(node, 1):
        return _scalar(graph.values[node.inputs[1]].const)
    if node.attrs.get("inverse", 0) and node.attrs.get("onesided", 0):
        return 2 * (shape[axis] - 1)
    return shape[axis]


def _dft_out_shape(node, graph, axis: int) -> tuple[int, ...]:
    shape = list(graph.values[node.inputs[0]].shape)
    length = _dft_length(node, graph, axis)
    inverse, onesided = bool(node.attrs.get("inverse", 0)), bool(node.attrs.get("onesided", 0))
    shape[axis] = length // 2 + 1 if onesided and not inverse else length
    shape[-1] = 1 if inverse and onesided else 2
    return tuple(shape)


def _dft_candidates(node, graph) -> list[int]:
    """The axes the DFT may run along: the constant one, or those fitting the output shape."""
    axis = _dft_axis(node, graph)
    if axis is not None:
        return [axis]
    rank = len(graph.values[node.inputs[0]].shape)
    want = tuple(graph.values[node.outputs[0]].shape)
    return [a for a in range(rank - 1) if _dft_out_shape(node, graph, a) == want]


def _dft_check(node, graph):
    shape = graph.values[node.inputs[0]].shape
    if len(shape) < 2 or shape[-1] not in (1, 2):
        return (
            f"{errors.UNSUPPORTED_RANK}: input {shape} must end in a 1 (real) or 2 (complex) axis"
        )
    axes = _dft_candidates(node, graph)
    if not axes:
        return (
            f"{errors.REQUIRES_CONSTANT_INPUT}: no axis fits output shape "
            f"{graph.values[node.outputs[0]].shape}; make the axis constant"
        )
    for axis in axes:
        length = _dft_length(node, graph, axis)
        if axis == len(shape) - 1:
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: axis {axis} is the complex axis"
        if length < 1:
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: dft_length {length} < 1"
        irfft = node.attrs.get("inverse", 0) and node.attrs.get("onesided", 0)
        if irfft and length // 2 + 1 != shape[axis]:
            # Truncating or zero-padding the one-sided spectrum: onnxruntime and the ONNX
            # reference (numpy irfft) disagree, so there is no single right answer.
            return (
                f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: one-sided inverse with dft_length "
                f"{length} for {shape[axis]} bins (needs dft_length // 2 + 1 == bins)"
            )
        if shape[axis] * shape[-1] * length * 2 > MAX_MATRIX_ELEMENTS:
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: DFT matrix too large (length {length})"
    return None


def _dft_along(ctx, axis: int, out_shape, out=None):
    """The DFT of input 0 along ``axis`` (moved next to the complex axis if needed)."""
    e = Emitter(ctx)
    shape = ctx.shape(0)
    rank = len(shape)
    inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))
    length = _dft_length(ctx.node, ctx.driver.graph, axis)
    matrix = dft_matrix(shape[axis], shape[-1], length, inverse, onesided)
    perm = [d for d in range(rank - 1) if d != axis] + [axis, rank - 1]
    outer = [shape[d] for d in perm[:-2]]
    moved = e.transpose(ctx.input(0), perm, "moved")
    rows = e.reshape(moved, (int(np.prod(outer)), shape[axis] * shape[-1]), "rows")
    spectrum = _apply_matrix(ctx, rows, matrix, "dft")
    if perm == list(range(rank)):
        return e.reshape(spectrum, out_shape, "spectrum", out=out)
    unmoved = e.reshape(spectrum, [out_shape[d] for d in perm], "unrows")
    back = [perm.index(d) for d in range(rank)]
    perm_t = e.const(back, np.int32, "perm")
    return e.op("TRANSPOSE", unmoved, perm_t, shape=out_shape, hint="spectrum", out=out)


def lower_dft(ctx):
    e = Emitter(ctx)
    graph = ctx.driver.graph
    axes = _dft_candidates(ctx.node, graph)
    out = ctx.output(0)
    if len(axes) == 1:
        _dft_along(ctx, axes[0], out.shape, out=out)
        return
    results = [(a, _dft_along(ctx, a, out.shape)) for a in axes]
    chosen = _select_by_value(ctx, 2, results, wrap=len(ctx.shape(0)))
    e.reshape(chosen, out.shape, out=out)


for _since, _until, _consts in ((17, 19, (1,)), (20, None, (1,))):
    lowering(
        "DFT",
        onnx_order,
        since=_since,
        until=_until,
        dtypes=("float32",),
        const_inputs=_consts,
        tflite_ops=("FULLY_CONNECTED", "RESHAPE", "TRANSPOSE", "EQUAL", "SELECT_V2"),
        notes="constant dft_length; one constant DFT matrix (float32 accumulation); a runtime "
        "axis computes every axis the output shape allows and selects at run time",
        extra_check=_dft_check,
    )(lower_dft)


# ---- STFT -------------------------------------------------------------------------------------

MAX_CANDIDATES = 8


def _stft_candidates(node, graph) -> list[tuple[int, int]]:
    """(frame_step, frame_length) pairs consistent with the constants and the output shape."""
    values = graph.values
    length = values[node.inputs[0]].shape[1]
    want = tuple(values[node.outputs[0]].shape)
    onesided = bool(node.attrs.get("onesided", 1))
    steps = [_const_scalar(node, graph, 1)]
    if steps[0] is None:
        steps = range(1, length + 1)
    if _present(node, 3):
        frames = [_const_scalar(node, graph, 3)]
        if frames[0] is None:
            frames = range(1, length + 1)
    elif _present(node, 2):
        frames = [values[node.inputs[2]].shape[0]]
    else:
        frames = [length]
    found = []
    for step in steps:
        for frame in frames:
            if step < 1 or frame < 1 or frame > length:
                continue
            bins = frame // 2 + 1 if onesided else frame
            if want == (want[0], (length - frame) // step + 1, bins, 2):
                found.append((step, frame))
    return found


def _stft_check(node, graph):
    signal = graph.values[node.inputs[0]].shape
    if len(signal) != 3 or signal[-1] not in (1, 2):
        return f"{errors.UNSUPPORTED_RANK}: signal {signal} must be [batch, length, 1 or 2]"
    found = _stft_candidates(node, graph)
    if not found or len(found) > MAX_CANDIDATES:
        return (
            f"{errors.REQUIRES_CONSTANT_INPUT}: frame_step/frame_length are not pinned by the "
            f"output shape ({len(found)} candidates); make them constant"
        )
    for _, frame in found:
        if _present(node, 2) and graph.values[node.inputs[2]].shape != (frame,):
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: window length differs from frame_length"
        if frame * signal[-1] * frame * 2 > MAX_MATRIX_ELEMENTS:
            return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: DFT matrix too large (frame {frame})"
    return None


def _stft_one(ctx, step: int, frame: int, out_shape, out=None):
    e = Emitter(ctx)
    batch, length, channels = ctx.shape(0)
    frames = (length - frame) // step + 1
    matrix = dft_matrix(frame, channels, frame, False, bool(ctx.attr("onesided", 1)))
    index = np.arange(frames)[:, None] * step + np.arange(frame)[None, :]
    framed = e.gather(ctx.input(0), index.astype(np.int32), axis=1, hint="frames")
    window = ctx.const(2) if ctx.has_input(2) else None
    if window is not None:
        matrix = matrix * np.repeat(np.asarray(window, np.float64), channels)[:, None]
    elif ctx.has_input(2):
        shaped = e.reshape(ctx.input(2), (1, 1, frame, 1), "window")
        framed = e.op("MUL", framed, shaped, hint="windowed")
    rows = e.reshape(framed, (batch * frames, frame * channels), "rows")
    return e.reshape(_apply_matrix(ctx, rows, matrix, "dft"), out_shape, "stft", out=out)


@lowering(
    "STFT",
    onnx_order,
    since=17,
    dtypes=("float32",),
    dtype_inputs=(0, 2),
    attrs=(attr_in("onesided", (0, 1), 1),),
    tflite_ops=("GATHER", "RESHAPE", "MUL", "FULLY_CONNECTED", "EQUAL", "SELECT_V2"),
    notes="constant window folded into the DFT matrix; runtime frame_step/frame_length only "
    f"when the output shape pins them to <= {MAX_CANDIDATES} candidates (selected at run time)",
    extra_check=_stft_check,
)
def lower_stft(ctx):
    e = Emitter(ctx)
    found = _stft_candidates(ctx.node, ctx.driver.graph)
    out = ctx.output(0)
    if len(found) == 1:
        _stft_one(ctx, *found[0], out.shape, out=out)
        return
    results = {pair: _stft_one(ctx, *pair, out.shape) for pair in found}
    steps = {s for s, _ in found}
    frames = {f for _, f in found}
    if len(frames) == 1:
        chosen = _select_by_value(ctx, 1, [(s, t) for (s, _), t in results.items()])
    elif len(steps) == 1:
        chosen = _select_by_value(ctx, 3, [(f, t) for (_, f), t in results.items()])
    else:
        ctx.refuse(
            errors.REQUIRES_CONSTANT_INPUT,
            "frame_step and frame_length are both ambiguous; make one of them constant",
        )
    e.reshape(chosen, out.shape, out=out)


# ---- MelWeightMatrix --------------------------------------------------------------------------


def mel_weight_values(node, graph) -> np.ndarray:
    """The matrix from the ONNX reference implementation (all inputs are constants)."""
    from onnx.reference import ReferenceEvaluator

    values = [graph.values[n].const for n in node.inputs]
    names = [f"in{i}" for i in range(len(values))]
    attrs = {k: v for k, v in node.attrs.items() if k == "output_datatype"}
    proto = helper.make_node("MelWeightMatrix", names, ["out"], **attrs)
    model = helper.make_model(
        helper.make_graph(
            [proto],
            "mel",
            [
                helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                for n, v in zip(names, values, strict=True)
            ],
            [helper.make_tensor_value_info("out", 0, None)],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    feeds = dict(zip(names, [np.asarray(v) for v in values], strict=True))
    return ReferenceEvaluator(model).run(None, feeds)[0]


@lowering(
    "MelWeightMatrix",
    onnx_order,
    since=17,
    dtypes=("int32", "int64"),
    const_inputs=(0, 1, 2, 3, 4),
    tflite_ops=(),
    notes="all inputs constant (the output shape is num_mel_bins/dft_length's value)",
)
def lower_mel_weight_matrix(ctx):
    values = mel_weight_values(ctx.node, ctx.driver.graph)
    if values.size == 0:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "empty matrix")
    ctx.alias_output(0, ctx.const_tensor(values, "mel"), ctx.out_layout(0))
