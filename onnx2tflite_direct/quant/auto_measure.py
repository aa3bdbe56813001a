"""How the auto search measures a file: multiply-accumulates per node (the int8 share it
reports) and the output SQNR over samples with its one-sided lower confidence bound.

Why a module of its own: the search (``auto.py``) decides; this only measures, and the
bound's statistics (jackknife standard error, Student t quantile, pooled spread) are easier to
check apart from the search that uses them (tests/test_auto_quant.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .. import tfl

# Verification margin: the one-sided 95% Student t quantile (degrees of freedom = held-back
# samples - 1) times the jackknife standard error of the held-back figure.
T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860,
       9: 1.833, 10: 1.812, 12: 1.782, 15: 1.753, 20: 1.725, 30: 1.697, 40: 1.684, 60: 1.671,
       120: 1.658}  # fmt: skip
BOUND = (
    "one-sided 95% lower confidence bound of the SQNR on unseen samples: sqnr_db (pooled over "
    "the held-back samples) - t(0.95, samples - 1) x its jackknife standard error"
)
MIN_MARGIN_DB = 0.0
MAX_MARGIN_DB = 6.0
# Ops whose multiply-accumulates the int8 share counts.
MAC_OPS = frozenset(
    {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV",
     "CONV_3D"}
)  # fmt: skip


def macs_by_node(model: tfl.Model) -> dict[str, int]:
    """Multiply-accumulates per ONNX node label (per inference; dynamic dims count as 1)."""
    out: dict[str, int] = {}
    for sub in model.subgraphs:
        for op in sub.operators:
            n = op_macs(op)
            if n and op.onnx_node:
                out[op.onnx_node] = out.get(op.onnx_node, 0) + n
    return out


def op_macs(op: tfl.Operator) -> int:
    if op.opcode not in MAC_OPS or not op.outputs or len(op.inputs) < 2:
        return 0

    def size(shape) -> int:
        return int(np.prod([max(int(d), 1) for d in shape])) if shape is not None else 0

    out = size(op.outputs[0].shape)
    w = op.inputs[1]
    if w is None or w.shape is None:
        return 0
    ws = [max(int(d), 1) for d in w.shape]
    if op.opcode == "CONV_2D":  # filter [O, kh, kw, I/groups]
        return out * int(np.prod(ws[1:]))
    if op.opcode == "CONV_3D":  # filter [kd, kh, kw, I, O]
        return out * int(np.prod(ws[:-1]))
    if op.opcode == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, C*m]
        return out * ws[1] * ws[2]
    if op.opcode == "FULLY_CONNECTED":  # weights [O, I]
        return out * ws[-1]
    if op.opcode == "TRANSPOSE_CONV":  # inputs: shape, filter [O, kh, kw, I], x
        x = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] is not None else None
        return size(x.shape) * int(np.prod(ws[:3])) if x is not None else 0
    a = op.inputs[0]  # BATCH_MATMUL: reduction is a's last dim (or -2 with adj_x)
    if a is None or a.shape is None or len(a.shape) < 2:
        return 0
    k = a.shape[-2] if op.options.get("adj_x") else a.shape[-1]
    return out * max(int(k), 1)


def mac_shares(ir: tfl.Model, macs: Mapping[str, int]) -> dict:
    """Share of the model's multiply-accumulates per precision in the written file (an op
    counts as int8 when its weights are int8 and its activations are int8)."""
    total = {"int8": 0, "int16x8": 0, "float": 0}
    for sub in ir.subgraphs:
        for op in sub.operators:
            n = op_macs(op)
            if not n:
                continue
            a = op.inputs[0]
            dtype = np.dtype(a.dtype) if a is not None else np.dtype(np.float32)
            key = "int8" if dtype == np.int8 else "int16x8" if dtype == np.int16 else "float"
            total[key] += n
    whole = sum(total.values())
    return {
        "macs": whole,
        "int8_mac_share": total["int8"] / whole if whole else 1.0,
        "int16x8_mac_share": total["int16x8"] / whole if whole else 0.0,
        "float_mac_share": total["float"] / whole if whole else 0.0,
    }


def op_types(model_ir: tfl.Model) -> dict[str, str]:
    """The op each ONNX node label lowers to (its MAC op where it has one)."""
    out: dict[str, str] = {}
    for sub in model_ir.subgraphs:
        for op in sub.operators:
            if op.onnx_node and (op.onnx_node not in out or op.opcode in MAC_OPS):
                out[op.onnx_node] = op.opcode
    return out


@dataclass
class Measured:
    """Per float output: summed squared reference and squared error over the samples, and
    the same per sample (for the verification margin)."""

    signal: dict[str, float]
    noise: dict[str, float]
    samples: list[tuple[dict[str, float], dict[str, float]]] = field(default_factory=list)
    spread: Measured | None = None  # the same file on other samples: pooled per-sample spread

    def sqnr_db(self) -> float:
        return worst_db(self.signal, self.noise)

    def margin_db(self) -> float:
        """How far the SQNR measured on these samples may stand above what unseen samples
        of the same distribution give: the one-sided 95% Student t quantile times the
        jackknife standard error of the figure (leave one sample out), at least
        ``MIN_MARGIN_DB``. Why measured: a model whose error varies much from sample to
        sample (a real-weight net on a few inputs) needs more than one whose error is steady,
        and a fixed margin tuned on one model fits neither. With ``spread`` (the same file on
        other samples of the distribution) the per-sample variance is pooled over both sets
        (degrees of freedom: both sets' samples - 2): a variance from 8 samples is itself
        uncertain (MobileNetV2: held-back samples' spread 0.36 dB per sample, 64 fresh ones
        0.67), and a bound that trusts a low one is too close."""
        own = self._jackknife()
        if own is None:
            return MIN_MARGIN_DB
        k, se = own
        if not math.isfinite(se):
            return MAX_MARGIN_DB
        other = self.spread._jackknife() if self.spread is not None else None
        if k < 2:
            return MIN_MARGIN_DB
        dof = k - 1
        if other is not None and other[0] >= 2 and math.isfinite(other[1]):
            k2, se2 = other
            # per-sample variance of each set (n * jackknife variance), pooled
            var = ((k - 1) * k * se**2 + (k2 - 1) * k2 * se2**2) / (k + k2 - 2)
            se, dof = math.sqrt(var / k), k + k2 - 2
        return min(max(margin_z(dof + 1) * se, MIN_MARGIN_DB), MAX_MARGIN_DB)

    def _jackknife(self) -> tuple[int, float] | None:
        """(samples, jackknife standard error of :meth:`sqnr_db`); inf when a leave-one-out
        figure is not finite; None when the figure itself is not (no noise) or no samples."""
        k = len(self.samples)
        if k < 1 or not math.isfinite(self.sqnr_db()):
            return None
        if k < 2:
            return k, 0.0
        loo = []
        for s_i, n_i in self.samples:
            signal = {o: self.signal[o] - s_i.get(o, 0.0) for o in self.signal}
            noise = {o: self.noise[o] - n_i.get(o, 0.0) for o in self.noise}
            loo.append(worst_db(signal, noise))
        if not all(math.isfinite(v) for v in loo):
            return k, math.inf
        mean = sum(loo) / k
        return k, math.sqrt((k - 1) / k * sum((v - mean) ** 2 for v in loo))

    def lower_db(self) -> float:
        """The figure less its margin: what the verification compares with the target."""
        return self.sqnr_db() - self.margin_db()


def margin_z(samples: int) -> float:
    """The one-sided 95% Student t quantile for ``samples - 1`` degrees of freedom (the
    nearest tabulated one below: conservative); 1.645 beyond the table."""
    df = samples - 1
    if df < 1:
        return T95[1]
    if df > max(T95):
        return 1.645
    return T95[max(d for d in T95 if d <= df)]


def worst_db(signal: Mapping[str, float], noise: Mapping[str, float]) -> float:
    worst = math.inf
    for name, s in signal.items():
        n = noise[name]
        db = math.inf if n <= 0 else 10 * math.log10(max(s, 1e-300) / n)
        worst = min(worst, db)
    return worst
