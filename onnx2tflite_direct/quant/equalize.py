"""Channel equalization: widen each channel of an activation to the tensor's int8 range.

Why: an int8 activation has one scale per tensor, set by its widest channel. After a depthwise
convolution and its ReLU6 a few channels reach 6 while most stay near 1 (on the benchmark
MobileNetV2 the median channel peaks 4-6x below the tensor's range), so most channels use a
few of the 256 steps and their rounding noise, relative to their signal, is 12-16 dB worse
than the widest channel's. A convolution's output channel ``c`` may be scaled by ``s_c`` if
its reader divides its input channel ``c`` by the same factor: the float function is unchanged
(a ReLU commutes with a positive factor; a ReLU6 too while ``s_c`` times the channel's largest
value stays <= 6, which the choice below guarantees on the calibration data), and the
channel's int8 rounding noise, seen after the reader, shrinks by ``s_c``
(Nagel et al. 2019, "Data-free quantization": cross-layer equalization).

Which pairs: a CONV_2D or DEPTHWISE_CONV_2D (fused NONE / RELU / RELU6, constant float
weights) whose output has exactly one reader (directly or through a zero PAD), not a graph
output, read by a CONV_2D (one group), a DEPTHWISE_CONV_2D (multiplier 1) or a
FULLY_CONNECTED on its channels.

How much: ``s_c`` is the largest factor keeping the channel's calibrated extremes, times
``HEADROOM``, inside the tensor's calibrated range (so the range and every other channel stay
as they are), at least 1 and at most ``MAX_SCALE``. Why the headroom: a widened channel now
clips (int8 range, ReLU6) just beyond its *own* calibrated extremes, which a few samples
underestimate more than a whole tensor's; without it the equalized float model of MobileNetV2
fell to 48 dB SQNR on fresh samples, with it 59 dB, above what int8 gives. A depthwise reader takes the whole factor: its weights are
quantized per channel, so dividing one channel's taps costs nothing. A CONV_2D or
FULLY_CONNECTED reader quantizes each *output* channel's weights with one scale, so shrinking
input channel ``c``'s weights coarsens them relative to the others: the rounding noise that
moves from the activation into the weights is balanced by taking ``s_c ** CONV_READER_POWER``.
The producer's weights are scaled per output channel, which per-channel quantization absorbs.

Used by ``--quantize auto`` (``auto.py``): on the float model its candidate files are built
from, with the channel extremes measured by running the float file on the calibration samples.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import litert_tensors, tfl

PRODUCERS = ("CONV_2D", "DEPTHWISE_CONV_2D")
READERS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
ACTIVATIONS = ("NONE", "RELU", "RELU6")
MAX_SCALE = 16.0
HEADROOM = 1.25  # a channel's calibrated extremes times this stay inside the range
CONV_READER_POWER = 0.5


def _float_constant(t) -> bool:
    return t is not None and t.data is not None and np.dtype(t.dtype) == np.float32


def pairs(model_ir: tfl.Model) -> list[tuple[tfl.Operator, list[tfl.Tensor], tfl.Operator]]:
    """(producer, [its output, the PAD output if any], reader) for every equalizable pair."""
    sub = model_ir.subgraphs[0]
    consumers = sub.consumers()
    graph_outputs = {id(t) for t in sub.outputs}
    out = []
    for p in sub.operators:
        if p.opcode not in PRODUCERS or len(p.inputs) < 2 or not _float_constant(p.inputs[1]):
            continue
        if p.options.get("fused_activation_function", "NONE") not in ACTIVATIONS:
            continue
        if len(p.inputs) > 2 and p.inputs[2] is not None and not _float_constant(p.inputs[2]):
            continue
        t = p.outputs[0]
        channels = t.shape[-1] if t.shape else 0
        if p.opcode == "DEPTHWISE_CONV_2D" and p.inputs[1].shape[-1] != channels:
            continue
        chain = [t]
        reader = _only_reader(t, consumers, graph_outputs)
        if reader is not None and reader[0].opcode == "PAD" and reader[1] == 0:
            pad = reader[0]
            if len(pad.inputs) != 2 or pad.inputs[1].data is None:
                continue
            amounts = np.asarray(pad.inputs[1].data).reshape(-1, 2)
            if amounts[-1].any():  # padding the channel axis would add channels
                continue
            chain.append(pad.outputs[0])
            reader = _only_reader(pad.outputs[0], consumers, graph_outputs)
        if reader is None or reader[1] != 0 or not _fits(reader[0], channels):
            continue
        out.append((p, chain, reader[0]))
    return out


def _only_reader(t, consumers, graph_outputs):
    readers = consumers.get(id(t), [])
    if len(readers) != 1 or id(t) in graph_outputs:
        return None
    return readers[0]


def _fits(c: tfl.Operator, channels: int) -> bool:
    if c.opcode not in READERS or len(c.inputs) < 2 or not _float_constant(c.inputs[1]):
        return False
    if len(c.inputs) > 2 and c.inputs[2] is not None and not _float_constant(c.inputs[2]):
        return False
    w = c.inputs[1]
    if c.opcode == "FULLY_CONNECTED":
        return w.rank == 2 and w.shape[1] == channels
    return w.rank == 4 and w.shape[-1] == channels and c.inputs[0].shape[-1] == channels


def channel_extremes(float_bytes: bytes, feeds, io_table, names) -> dict[str, np.ndarray]:
    """Per tensor name, [2, channels]: the per-channel (last axis) min and max of the float
    file's tensor over ``feeds`` (ONNX-layout batches), LiteRT's reference kernels."""
    rows, _ = litert_tensors.file_tables(float_bytes)
    wanted = {r["name"]: r for r in rows if r["name"] in names and not r["constant"]}
    out: dict[str, np.ndarray] = {}
    for feed in feeds:
        interp = litert_tensors.run_keeping_all_tensors(float_bytes, feed, io_table)
        for name, row in wanted.items():
            got = litert_tensors.stored_real(interp, row)
            if got is None or got[0].ndim < 1:
                continue
            x = np.asarray(got[0], np.float64).reshape(-1, got[0].shape[-1])
            now = np.stack([x.min(axis=0), x.max(axis=0)])
            old = out.get(name)
            out[name] = now if old is None else np.stack([np.minimum(old[0], now[0]),
                                                          np.maximum(old[1], now[1])])  # fmt: skip
        del interp
    return out


def scales(extremes: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The largest per-channel factor keeping [min_c, max_c] inside [lo, hi], in
    [1, MAX_SCALE]; 1 for a channel without values."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    mn, mx = np.asarray(extremes, np.float64) * HEADROOM
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(mx > 0, hi / np.where(mx > 0, mx, 1.0), np.inf)
        down = np.where(mn < 0, lo / np.where(mn < 0, mn, 1.0), np.inf)
    s = np.minimum(up, down)
    s = np.where(np.isfinite(s), s, 1.0)
    return np.clip(s, 1.0, MAX_SCALE)


def equalize(
    model_ir: tfl.Model,
    ranges: Mapping[str, tuple[float, float]],
    extremes: Mapping[str, np.ndarray],
    means: Mapping[str, np.ndarray] | None = None,
) -> tuple[list[str], dict]:
    """Scale every pair of :func:`pairs` in place (new weight arrays, module doc); returns the
    producers' ONNX labels equalized and the channel means (``means`` copied, the equalized
    tensors' means scaled alike: the weights' bias correction reads them)."""
    means = dict(means or {})
    done = []
    for p, chain, c in pairs(model_ir):
        t = chain[0]
        if t.name not in ranges or t.name not in extremes:
            continue
        s = scales(extremes[t.name], *ranges[t.name])
        out_axis = 0 if p.opcode == "CONV_2D" else -1
        if s.size != p.inputs[1].shape[out_axis] or s.size != c.inputs[1].shape[-1]:
            continue  # a tensor stored in another shape than the one measured
        if c.opcode != "DEPTHWISE_CONV_2D":
            s = s**CONV_READER_POWER
        if np.all(s == 1.0):
            continue
        w = p.inputs[1]
        shape = [-1, 1, 1, 1] if p.opcode == "CONV_2D" else [1, 1, 1, -1]
        p.inputs[1] = _scaled(w, w.data * s.reshape(shape).astype(np.float32))
        if len(p.inputs) > 2 and p.inputs[2] is not None:
            b = p.inputs[2]
            p.inputs[2] = _scaled(b, b.data * s.astype(np.float32).reshape(b.data.shape))
        w = c.inputs[1]
        inv = (1.0 / s).astype(np.float32)
        cshape = [1, -1] if c.opcode == "FULLY_CONNECTED" else [1, 1, 1, -1]
        c.inputs[1] = _scaled(w, w.data * inv.reshape(cshape))
        for tensor in chain:
            if tensor.name in means and np.size(means[tensor.name]) == s.size:
                means[tensor.name] = np.asarray(means[tensor.name]) * s
        done.append(p.onnx_node or t.name)
    return done, means


def _scaled(t: tfl.Tensor, data: np.ndarray) -> tfl.Tensor:
    return tfl.Tensor(f"{t.name}/equalized", t.dtype, t.shape, data=data.astype(np.float32))
