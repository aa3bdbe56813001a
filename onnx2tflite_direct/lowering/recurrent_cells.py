"""Building blocks of the unrolled LSTM/GRU/RNN lowering: operands, activations, cell steps.

An *operand* is either a numpy array (a constant ONNX input, folded in numpy as long as
possible) or a TFLite tensor (a runtime input: node tests feed W, R, B and states at runtime).
The arithmetic helpers accept both, so one code path serves constant and runtime weights.

The recurrent activations are the ONNX list (Relu, Tanh, Sigmoid, Affine, LeakyRelu,
ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus); ``activation_alpha`` and
``activation_beta`` are consumed in order by the activations that take them, with the
per-function defaults onnxruntime uses when the lists run out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .emit import Emitter

# name (lower case) -> (alpha default, beta default): None = unused, REQUIRED = must be given.
# onnxruntime defaults Affine/ScaledTanh alpha (and beta) and ThresholdedRelu alpha to 0, the
# ONNX operators to 1.0 (or leave them undefined): refuse rather than pick one.
REQUIRED = "required"
ACTIVATION_PARAMS: dict[str, tuple] = {
    "sigmoid": (None, None),
    "tanh": (None, None),
    "relu": (None, None),
    "softsign": (None, None),
    "softplus": (None, None),
    "leakyrelu": (0.01, None),
    "thresholdedrelu": (REQUIRED, None),
    "elu": (1.0, None),
    "affine": (REQUIRED, REQUIRED),
    "scaledtanh": (REQUIRED, REQUIRED),
    "hardsigmoid": (0.2, 0.5),
}


@dataclass(frozen=True)
class Activation:
    name: str  # lower case
    alpha: float = 0.0
    beta: float = 0.0


def parse_activations(attrs: dict, defaults: tuple[str, ...], num_directions: int):
    """Per direction, the cell's activations; raises ValueError for what cannot be lowered."""
    names = [str(n.decode() if isinstance(n, bytes) else n) for n in attrs.get("activations", [])]
    if not names:
        names = list(defaults) * num_directions
    if len(names) != len(defaults) * num_directions:
        raise ValueError(
            f"activations has {len(names)} entries; expected {len(defaults) * num_directions}"
        )
    alphas = [float(a) for a in attrs.get("activation_alpha", [])]
    betas = [float(b) for b in attrs.get("activation_beta", [])]
    acts = []
    for name in names:
        key = name.lower()
        if key not in ACTIVATION_PARAMS:
            raise ValueError(f"activation {name!r} is not supported")
        alpha_default, beta_default = ACTIVATION_PARAMS[key]
        alpha = 0.0 if alpha_default is None else _take(alphas, alpha_default, name, "alpha")
        beta = 0.0 if beta_default is None else _take(betas, beta_default, name, "beta")
        acts.append(Activation(key, alpha, beta))
    per = len(defaults)
    return [tuple(acts[d * per : (d + 1) * per]) for d in range(num_directions)]


def _take(values: list[float], default, name: str, which: str) -> float:
    if values:
        return values.pop(0)
    if default == REQUIRED:
        raise ValueError(f"activation {name} needs an explicit activation_{which}")
    return default


class Ops:
    """Float32 arithmetic on operands (numpy constants fold, tensors emit ops)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.e = Emitter(ctx, np.float32)

    def tensor(self, v):
        if isinstance(v, np.ndarray):
            return self.ctx.const_tensor(np.asarray(v, np.float32), "c")
        return v

    def binary(self, opcode: str, a, b):
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            fold = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}[opcode]
            return fold(a, b).astype(np.float32)
        return self.e.op(opcode, self.tensor(a), self.tensor(b))

    def add(self, a, b):
        return self.binary("ADD", a, b)

    def sub(self, a, b):
        return self.binary("SUB", a, b)

    def mul(self, a, b):
        return self.binary("MUL", a, b)

    def op(self, opcode: str, *inputs, **options):
        return self.e.op(opcode, *[self.tensor(t) for t in inputs], **options)

    def split(self, v, sizes, axis: int):
        """Split ``v`` along ``axis`` into pieces of ``sizes`` (numpy slices or SPLIT/SPLIT_V)."""
        if len(sizes) == 1:
            return [v]
        if isinstance(v, np.ndarray):
            return np.split(v, np.cumsum(sizes)[:-1], axis=axis)
        axis = axis % len(v.shape)
        outs = []
        for size in sizes:
            shape = list(v.shape)
            shape[axis] = size
            outs.append(self.ctx.temp(np.float32, shape, "split"))
        axis_t = self.ctx.const_tensor(np.array(axis, np.int32), "axis")
        if len(set(sizes)) == 1:
            self.e.op("SPLIT", axis_t, v, out=outs, num_splits=len(sizes))
        else:
            size_t = self.ctx.const_tensor(np.array(sizes, np.int32), "sizes")
            self.e.op("SPLIT_V", v, size_t, axis_t, out=outs, num_splits=len(sizes))
        return outs

    def unstack(self, v, axis: int):
        """The slices of ``v`` along ``axis``, that axis removed (numpy take or UNPACK)."""
        count = v.shape[axis]
        if isinstance(v, np.ndarray):
            return [np.take(v, k, axis=axis) for k in range(count)]
        shape = tuple(d for k, d in enumerate(v.shape) if k != axis)
        if count == 1:
            return [self.ctx.reshape(v, shape, "unstacked")]
        outs = [self.ctx.temp(v.dtype, shape, "unstacked") for _ in range(count)]
        self.e.op("UNPACK", v, out=outs, num=count, axis=axis)
        return outs

    def stack(self, items, axis: int, out=None):
        """PACK ``items`` along a new ``axis`` (a RESHAPE for a single item)."""
        items = [self.tensor(t) for t in items]
        shape = list(items[0].shape)
        shape.insert(axis, len(items))
        if out is None:
            out = self.ctx.temp(np.float32, shape, "stacked")
        if len(items) == 1:
            self.e.reshape(items[0], out=out)
        else:
            self.e.op("PACK", *items, out=out, values_count=len(items), axis=axis)
        return out

    def linear(self, x, weight, bias, keep_num_dims: bool = False):
        """x @ weight.T + bias with FULLY_CONNECTED; weight [out, in] constant or runtime."""
        out_shape = (
            (*x.shape[:-1], weight.shape[0])
            if keep_num_dims
            else (
                int(np.prod(x.shape[:-1])),
                weight.shape[0],
            )
        )
        out = self.ctx.temp(np.float32, out_shape, "fc")
        inputs = [x, self.tensor(weight), None if bias is None else self.tensor(bias)]
        self.e.op(
            "FULLY_CONNECTED",
            *inputs,
            out=out,
            fused_activation_function="NONE",
            keep_num_dims=keep_num_dims,
        )
        return out

    def clip(self, x, threshold: float | None):
        if threshold is None:
            return x
        low = self.op("MAXIMUM", x, np.array(-threshold, np.float32))
        return self.op("MINIMUM", low, np.array(threshold, np.float32))

    def activate(self, act: Activation, x, clip: float | None = None):
        return apply_activation(self, act, self.clip(x, clip))


def apply_activation(o: Ops, act: Activation, x):
    """One recurrent activation as an exact composition of TFLite builtins."""
    name, alpha, beta = act.name, np.float32(act.alpha), np.float32(act.beta)
    if name == "sigmoid":
        return o.op("LOGISTIC", x)
    if name == "tanh":
        return o.op("TANH", x)
    if name == "relu":
        return o.op("RELU", x)
    if name == "leakyrelu":
        return o.op("LEAKY_RELU", x, alpha=float(alpha))
    if name == "thresholdedrelu":
        above = o.op("GREATER", x, np.array(alpha, np.float32), dtype=np.bool_)
        return o.op("SELECT_V2", above, x, np.zeros((), np.float32))
    if name == "scaledtanh":
        return o.mul(o.op("TANH", o.mul(x, np.array(beta))), np.array(alpha))
    if name == "hardsigmoid":
        return o.op("RELU_0_TO_1", o.add(o.mul(x, np.array(alpha)), np.array(beta)))
    if name == "affine":
        return o.add(o.mul(x, np.array(alpha)), np.array(beta))
    if name == "elu":
        elu = o.op("ELU", x)
        if alpha == 1.0:
            return elu
        positive = o.op("GREATER", x, np.zeros((), np.float32), dtype=np.bool_)
        return o.op("SELECT_V2", positive, x, o.mul(elu, np.array(alpha)))
    if name == "softsign":
        return o.op("DIV", x, o.add(o.op("ABS", x), np.ones((), np.float32)))
    if name == "softplus":
        relu = o.op("MAXIMUM", x, np.zeros((), np.float32))
        tail = o.op("EXP", o.op("NEG", o.op("ABS", x)))
        return o.add(relu, o.op("LOG", o.add(tail, np.ones((), np.float32))))
    raise AssertionError(name)


# ---- cells ---------------------------------------------------------------------------------
# A cell knows its gate count, its bias split between the precomputed input projection and the
# per-step recurrent projection, and one time step. State is a tuple of [batch, hidden] tensors.


@dataclass
class CellConfig:
    hidden: int
    acts: tuple  # this direction's activations
    clip: float | None
    recurrent: object  # R for this direction, [gates*hidden, hidden]
    recurrent_bias: object | None  # added to the recurrent projection (GRU lbr=1 only)
    peepholes: tuple | None = None  # LSTM (p_i, p_o, p_f), each [hidden]
    input_forget: bool = False
    linear_before_reset: bool = False
    recurrent_parts: tuple = ()  # GRU lbr=0: (R_zr, R_h), split once outside the loop


def rnn_step(o: Ops, cfg: CellConfig, xw, state):
    (h,) = state
    pre = o.add(xw, o.linear(h, cfg.recurrent, None))
    return (o.activate(cfg.acts[0], pre, cfg.clip),)


def lstm_step(o: Ops, cfg: CellConfig, xw, state):
    """ONNX LSTM (gate order i, o, f, c) with optional peepholes and coupled input-forget."""
    h, c = state
    f_act, g_act, h_act = cfg.acts
    gates = o.add(xw, o.linear(h, cfg.recurrent, None))
    i_pre, o_pre, f_pre, c_pre = o.split(gates, [cfg.hidden] * 4, axis=1)
    if cfg.peepholes is not None:
        p_i, p_o, p_f = cfg.peepholes
        i_pre = o.add(i_pre, o.mul(c, p_i))
        f_pre = o.add(f_pre, o.mul(c, p_f))
    i_gate = o.activate(f_act, i_pre, cfg.clip)
    if cfg.input_forget:
        f_gate = o.sub(np.ones((), np.float32), i_gate)
    else:
        f_gate = o.activate(f_act, f_pre, cfg.clip)
    candidate = o.activate(g_act, c_pre, cfg.clip)
    c_new = o.add(o.mul(f_gate, c), o.mul(i_gate, candidate))
    if cfg.peepholes is not None:
        o_pre = o.add(o_pre, o.mul(c_new, cfg.peepholes[1]))
    o_gate = o.activate(f_act, o_pre, cfg.clip)
    return (o.mul(o_gate, apply_activation(o, h_act, c_new)), c_new)


def gru_step(o: Ops, cfg: CellConfig, xw, state):
    """ONNX GRU (gate order z, r, h); linear_before_reset picks where R_h applies."""
    (h,) = state
    f_act, g_act = cfg.acts
    hid = cfg.hidden
    x_zr, x_h = o.split(xw, [2 * hid, hid], axis=1)
    if cfg.linear_before_reset:
        rec = o.linear(h, cfg.recurrent, cfg.recurrent_bias)
        rec_zr, rec_h = o.split(rec, [2 * hid, hid], axis=1)
    else:
        r_zr, r_h = cfg.recurrent_parts
        rec_zr = o.linear(h, r_zr, None)
    z_gate, r_gate = o.split(o.activate(f_act, o.add(x_zr, rec_zr), cfg.clip), [hid, hid], 1)
    if cfg.linear_before_reset:
        h_pre = o.add(x_h, o.mul(r_gate, rec_h))
    else:
        h_pre = o.add(x_h, o.linear(o.mul(r_gate, h), r_h, None))
    candidate = o.activate(g_act, h_pre, cfg.clip)
    # (1 - z) * candidate + z * h == candidate + z * (h - candidate)
    return (o.add(candidate, o.mul(z_gate, o.sub(h, candidate))),)
