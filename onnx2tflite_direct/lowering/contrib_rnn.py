"""com.microsoft DynamicQuantizeLSTM: an LSTM whose matmuls run on dynamically quantized inputs,
reproduced as onnxruntime's CPU kernel computes it.

onnxruntime quantizes the input X once for all time steps (one uint8 scale over the whole
[seq, batch, input] tensor), multiplies it with the int8 W, and at every step quantizes the
previous hidden state (one uint8 scale over [batch, hidden]) before multiplying it with the
int8 R. Each product is ``float(int32 accumulator) * (a_scale * w_scale[column])``, then the
biases and the ordinary LSTM gate arithmetic follow in float. A float LSTM with dequantized
weights would differ from onnxruntime by the activations' quantization noise (~1e-2), so the
same per-step quantization is written out here: the DynamicQuantizeLinear arithmetic of
``contrib_quant`` and exact integer products on LiteRT's int8 FULLY_CONNECTED
(``contrib_quant.exact_dense``; float32 digit-split products, ``qlinear.digit_plan``, where the
weights do not fit it). The gate arithmetic is ``recurrent_cells.lstm_step`` with a recurrent
projection that quantizes (``_QuantizedRecurrence``). A bidirectional layer of batch 1 runs
both directions in one set of [2, ...] ops and its steps in one WHILE loop
(``JOINT_DIRECTIONS``, ``JOINT_LOOP``); other layers are unrolled. With dynamic input sizes
(``dynamic_sizes.sizes_vary``) the other layers run one WHILE loop per direction (unrolled steps
would follow the sequence length) and nothing is sized by the sample: the backward steps are
put in order by REVERSE_V2, the loop count and output buffer come from SHAPE of the steps.

One caveat is onnxruntime's own: when its LSTM parallelizes over the batch (more than 4 rows,
or 2+ rows with hidden <= 256) each thread quantizes the hidden state of its own rows, so its
result depends on its thread count. The lowering quantizes each row separately there (what
onnxruntime computes with at least one thread per row, e.g. its default on a machine with as
many cores as rows), and the whole batch at once otherwise (batch 1 always agrees). With a
dynamic batch at hidden > 256 that choice is made at run time from the state's batch
(``state_grouping``): a file converted at a sample batch would otherwise compute the sample's
choice at every batch, silently unlike onnxruntime on the other side of its threshold.

Refused: sequence_lens (per-sequence lengths), rank != 3.
"""

from __future__ import annotations

import numpy as np

from .. import errors, tfl
from ..float_carried import int8_codes
from ..policies import onnx_order
from ..registry import FLOAT, lowering
from .contrib import MS
from .contrib_quant import (
    dynamic_quantize_parts,
    exact_dense,
    lattice_rows,
    product_quantize,
)
from .control_flow import cond_subgraph, emit_while, less_than, mirror_tensors
from .dynamic_sizes import sizes_vary
from .emit import Emitter
from .int8_kernel import int8_dense, int8_weights
from .qlinear import combine_digits, digit_plan, split_digits
from .recurrent_cells import CellConfig, Ops, lstm_step, parse_activations

X, W, R, B, SEQ_LENS, INITIAL_H, INITIAL_C, P = range(8)
W_SCALE, W_ZP, R_SCALE, R_ZP = 8, 9, 10, 11
DEFAULT_ACTS = ("Sigmoid", "Tanh", "Tanh")
# The products on LiteRT's dynamically quantized FULLY_CONNECTED (``contrib_quant.exact_dense``:
# int8 weights, the exact int32 accumulator) instead of float32 FULLY_CONNECTEDs of the shifted
# integers split into digits (4x the weight bytes per step; ddddocr_common_old's 2 x 20 steps
# of 512 x 2048). Both are exact; the switch is for benchmarks/bench_outliers.py's "before".
INT8_PRODUCTS = True
# A bidirectional layer of batch 1 runs both directions in the same ops, one [2, ...] row per
# direction (each row quantized on its own, as onnxruntime quantizes each direction's state):
# half the ops per time step, which at hidden 512 cost more than the arithmetic
# (ddddocr_common_old: ~40 ops per direction and step). Switch for bench_outliers' "before".
JOINT_DIRECTIONS = True
# ... and the steps as one WHILE loop: XNNPACK packs a FULLY_CONNECTED's weights per operator,
# so unrolled steps stream one copy of R per step (2 x 20 x 1 MB for ddddocr_common_old: out of
# cache, ~25 us per product); in a loop body there is one copy per direction.
JOINT_LOOP = True


def _direction(node) -> str:
    direction = node.attrs.get("direction", "forward")
    return direction.decode() if isinstance(direction, bytes) else str(direction)


def _dirs(node) -> int:
    return 2 if _direction(node) == "bidirectional" else 1


def _check(node, graph):
    vals = graph.values
    x = vals[node.inputs[X]]
    if x.rank != 3:
        return f"{errors.UNSUPPORTED_RANK}: X rank {x.rank} (seq, batch, input)"
    if len(node.inputs) > SEQ_LENS and node.inputs[SEQ_LENS]:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: input sequence_lens"
    for i in (W, R):
        dt = np.dtype(vals[node.inputs[i]].dtype).name
        if dt not in ("int8", "uint8"):
            return f"{errors.UNSUPPORTED_DTYPE}: input {i} has dtype {dt} (int8/uint8)"
    try:
        parse_activations(node.attrs, DEFAULT_ACTS, _dirs(node))
    except ValueError as err:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: {err}"
    return None


def _per_direction(value, d: int):
    """Direction d's scale or zero point: a scalar (per tensor) or a [4 * hidden] vector."""
    v = np.asarray(value, np.float64)
    v = v.reshape(v.shape[0], -1) if v.ndim else v.reshape(1, 1)
    row = v[d] if v.shape[0] > d else v[0]
    return row[0] if row.size == 1 else row


def _quantized_product(
    ctx, a, w_shift: np.ndarray, w_scale, hint: str, per_row=False, weights=None, shared=None
):
    """float(DynamicQuantizeLinear(a) x (w - w_zp)) * (a_scale * w_scale) for a [rows, K] and
    constant [K, N] shifted weights: onnxruntime's quantized GEMM, with an exact accumulator
    (``per_row``: one quantization scale per row of a; ``weights``: the int8 weight tensor of
    ``w_shift``, shared by the steps of a recurrence; ``shared``: the run-time switch of the
    rows to one scale, ``contrib_quant._range_ends``)."""
    e = Emitter(ctx)
    if INT8_PRODUCTS and int8_codes(w_shift) is not None:
        a_shift, neg_zp, a_scale = product_quantize(ctx, a, per_row, shared)
        acc = exact_dense(ctx, a_shift, neg_zp, w_shift, 0, hint, negated=True, weights=weights)
    else:
        acc, a_scale = _digit_product(ctx, a, w_shift, hint, per_row, shared)
    scale = e.op("MUL", a_scale, e.const(np.asarray(w_scale, np.float32)), hint=f"{hint}_scale")
    return e.op("MUL", acc, scale, hint=f"{hint}_product")


def _digit_product(ctx, a, w_shift: np.ndarray, hint: str, per_row: bool, shared=None):
    """(exact accumulator, a_scale) by float32 FULLY_CONNECTEDs of the shifted integers, split
    into digits where a float32 sum could round."""
    e = Emitter(ctx)
    a_shift, _, a_scale = dynamic_quantize_parts(ctx, a, per_row, shared)
    k, n = w_shift.shape
    weights = ctx.const_tensor(np.ascontiguousarray(w_shift.T, np.float32), f"{hint}_w")
    b_max = int(np.max(np.abs(w_shift), initial=0))
    digits, bits = digit_plan(k, 255, b_max)

    def fc(operand, tag):
        return e.dense(operand, weights, None, f"{hint}_{tag}")

    if digits == 1:
        return fc(a_shift, "acc"), a_scale
    parts = [fc(d, f"acc{i}") for i, d in enumerate(split_digits(ctx, a_shift, digits, bits))]
    return e.cast(combine_digits(ctx, parts, bits), np.float32, f"{hint}_acc_f"), a_scale


class _QuantizedRecurrence(Ops):
    """``Ops`` whose recurrent projection (``linear``) quantizes the hidden state per step."""

    def __init__(self, ctx, r_shift: np.ndarray, r_scale, hint: str, per_row):
        super().__init__(ctx)
        self._r_shift, self._r_scale, self._hint = r_shift, r_scale, hint
        self._per_row = per_row  # True, False or RUNTIME_GROUPING (see state_grouping)
        self._step = 0
        codes = int8_codes(r_shift) if INT8_PRODUCTS else None
        self._weights = None if codes is None else int8_weights(ctx, codes, hint)

    def linear(self, x, weight, bias, keep_num_dims: bool = False):
        self._step += 1
        hint = f"{self._hint}_h{self._step}"
        x = self.tensor(x)
        per_row, shared = self._per_row, None
        if per_row is RUNTIME_GROUPING:
            per_row, shared = True, _rows_share_scale(self.ctx, x, hint)
        return _quantized_product(
            self.ctx, x, self._r_shift, self._r_scale, hint, per_row, self._weights, shared
        )


def batch_parallel(batch: int, hidden: int) -> bool:
    """onnxruntime's LSTM splits the batch across threads (``batch_parallel_``) for more than 4
    rows, or 2+ rows of a hidden size <= 256; each thread then quantizes its own rows."""
    return batch > 4 or (batch >= 2 and hidden <= 256)


# state_grouping's answer when the choice follows the run-time batch
RUNTIME_GROUPING = "runtime"
# the most rows onnxruntime keeps together at a hidden size > 256 (batch_parallel)
SERIAL_ROWS = 4


def state_grouping(ctx, batch: int, hidden: int):
    """How the hidden state is quantized: per row (True), the whole batch at once (False), or
    RUNTIME_GROUPING. With dynamic input sizes (``sizes_vary``) the batch seen here is a
    sample: at hidden <= 256 per row holds at every batch (batch 1 quantizes the same either
    way), but at hidden > 256 onnxruntime shares one scale over 2-4 rows and goes per row from
    5, so the choice is made at run time from the state's batch (``_rows_share_scale``); the
    sample's choice would be a silent mismatch on the other side of the threshold."""
    if sizes_vary(ctx) and hidden > 256:
        return RUNTIME_GROUPING
    return batch_parallel(batch, hidden)


def _rows_share_scale(ctx, x, hint: str):
    """[1] float32: 1.0 when the run-time batch of the [batch, hidden] state ``x`` is at most
    SERIAL_ROWS (onnxruntime quantizes those rows together; for one row both forms agree),
    else 0.0: ``clamp(SERIAL_ROWS + 1 - rows, 0, 1)`` from the state's SHAPE."""
    e = Emitter(ctx)
    dims = e.op("SHAPE", x, shape=(2,), dtype=np.int32, hint=f"{hint}_dims", out_type="INT32")
    rows = e.cast(e.gather(dims, np.zeros(1, np.int32), 0, f"{hint}_rows"), np.float32)
    room = e.op("SUB", e.const(np.asarray([SERIAL_ROWS + 1.0], np.float32)), rows)
    room = e.op("MAXIMUM", room, e.const(0.0, hint="zero"), hint=f"{hint}_room")
    return e.op("MINIMUM", room, e.const(1.0, hint="one_f"), hint=f"{hint}_shared")


@lowering(
    "DynamicQuantizeLSTM",
    onnx_order,
    domain=MS,
    dtypes=FLOAT,
    dtype_inputs=(X, B, INITIAL_H, INITIAL_C, P),
    const_inputs=(W, R, B, P, W_SCALE, W_ZP, R_SCALE, R_ZP),
    tflite_ops=(
        "REDUCE_MAX",
        "REDUCE_MIN",
        "DIV",
        "ROUND",
        "FULLY_CONNECTED",
        "MUL",
        "ADD",
        "LOGISTIC",
        "TANH",
        "SPLIT",
        "UNPACK",
        "PACK",
    ),
    notes="onnxruntime's arithmetic: X quantized once (uint8, per tensor), the hidden state "
    "quantized at every step, exact int32 products (on the int8 FULLY_CONNECTED) scaled by "
    "a_scale * w_scale; a bidirectional batch-1 layer runs both directions in one WHILE loop, "
    "others unrolled over the time steps (one WHILE loop a direction when the input sizes "
    "are dynamic); forward/reverse/bidirectional, initial states, "
    "peepholes, clip, activations, input_forget; sequence_lens refused",
    extra_check=_check,
)
def lower_dynamic_quantize_lstm(ctx):
    if _joint_plan(ctx) is not None:
        _lower_joint(ctx, *_joint_plan(ctx))
        return
    e = Emitter(ctx)
    seq, batch, _ = ctx.shape(X)
    hidden = int(ctx.attr("hidden_size"))
    dirs = _dirs(ctx.node)
    acts = parse_activations(ctx.node.attrs, DEFAULT_ACTS, dirs)
    clip = ctx.attr("clip", None)
    clip = None if clip is None else float(clip)
    w_all, r_all = ctx.const(W).astype(np.int64), ctx.const(R).astype(np.int64)
    bias = ctx.const(B) if ctx.has_input(B) else np.zeros((dirs, 8 * hidden), np.float32)
    peep = ctx.const(P) if ctx.has_input(P) else None
    x_rows = e.reshape(ctx.input(X), (seq * batch, ctx.shape(X)[2]), "x_rows")
    o = Ops(ctx)
    ys, last_h, last_c = [], [], []
    for d in range(dirs):
        w_shift = (w_all[d] - _per_direction(ctx.const(W_ZP), d)).astype(np.float32)
        r_shift = (r_all[d] - _per_direction(ctx.const(R_ZP), d)).astype(np.float32)
        w_scale = _per_direction(ctx.const(W_SCALE), d)
        r_scale = _per_direction(ctx.const(R_SCALE), d)
        projected = _quantized_product(ctx, x_rows, w_shift, w_scale, f"x{d}")
        both = (bias[d, : 4 * hidden] + bias[d, 4 * hidden :]).astype(np.float32)
        projected = e.op("ADD", projected, e.const(both), hint=f"x{d}_biased")
        steps = e.reshape(projected, (seq, batch, 4 * hidden), f"x{d}_steps")
        looped = sizes_vary(ctx)  # unrolled, the op count would follow seq: one WHILE loop
        if not looped:
            steps = o.unstack(steps, 0)
        state = []
        for i in (INITIAL_H, INITIAL_C):
            if ctx.has_input(i):
                init = ctx.const(i)
                t = (
                    o.unstack(ctx.input(i), 0)[d]
                    if init is None
                    else np.asarray(init[d], np.float32)
                )
            else:
                t = np.zeros((batch, hidden), np.float32)
            state.append(t)
        peepholes = None
        if peep is not None:
            p = np.asarray(peep[d], np.float32)
            peepholes = (p[:hidden], p[hidden : 2 * hidden], p[2 * hidden :])
        cfg = CellConfig(
            hidden=hidden,
            acts=acts[d],
            clip=clip,
            recurrent=None,
            recurrent_bias=None,
            peepholes=peepholes,
            input_forget=bool(ctx.attr("input_forget", 0)),
        )
        grouping = state_grouping(ctx, batch, hidden)
        rec = _QuantizedRecurrence(ctx, r_shift, r_scale, f"d{d}", grouping)
        backward = d == 1 or _direction(ctx.node) == "reverse"
        if looped:  # the backward direction runs over the reversed steps, reversed back
            h, c, y = _joint_loop(ctx, rec, cfg, _reversed(e, steps) if backward else steps, state)
            ys.append(_reversed(e, y) if backward else y)
            last_h.append(rec.tensor(h))
            last_c.append(rec.tensor(c))
            continue
        order = range(seq - 1, -1, -1) if backward else range(seq)
        outs = [None] * seq
        h, c = state
        for t in order:
            h, c = lstm_step(rec, cfg, steps[t], (h, c))
            outs[t] = rec.tensor(h)
        ys.append(o.stack(outs, 0))  # [seq, batch, hidden]
        last_h.append(rec.tensor(h))
        last_c.append(rec.tensor(c))
    outputs = ctx.node.outputs
    if len(outputs) > 0 and outputs[0]:
        o.stack(ys, 1, out=ctx.output(0))
    if len(outputs) > 1 and outputs[1]:
        o.stack(last_h, 0, out=ctx.output(1))
    if len(outputs) > 2 and outputs[2]:
        o.stack(last_c, 0, out=ctx.output(2))


# ---- both directions in one set of ops (bidirectional, batch 1) -------------------------------


def _shifts(ctx, d: int):
    w = ctx.const(W).astype(np.int64)[d] - _per_direction(ctx.const(W_ZP), d)
    r = ctx.const(R).astype(np.int64)[d] - _per_direction(ctx.const(R_ZP), d)
    return np.asarray(w, np.int64), np.asarray(r, np.int64)


def _joint_plan(ctx):
    """(input codes, [recurrent codes per direction]) when both directions can share ops:
    bidirectional, batch 1, the same activations, every product on the int8 kernel; else None.
    The recurrent codes of both directions get the same number of int8 parts (zero parts
    added), so that one set of input rows serves both."""
    if not (JOINT_DIRECTIONS and INT8_PRODUCTS) or _dirs(ctx.node) != 2 or ctx.shape(X)[1] != 1:
        return None
    acts = parse_activations(ctx.node.attrs, DEFAULT_ACTS, 2)
    if acts[0] != acts[1]:
        return None
    (w0, r0), (w1, r1) = _shifts(ctx, 0), _shifts(ctx, 1)
    w_codes = int8_codes(np.concatenate([w0, w1], 1))
    r_codes = [int8_codes(r0), int8_codes(r1)]
    if w_codes is None or any(c is None for c in r_codes):
        return None
    width = max(c.shape[1] for c in r_codes)
    r_codes = [np.insert(c, [c.shape[1] - 2] * (width - c.shape[1]), 0, axis=1) for c in r_codes]
    return w_codes, r_codes


def _joint_order(seq: int) -> np.ndarray:
    """Row order of [seq, 2] (direction-minor) pairs that puts the forward direction's step t
    next to the backward direction's step seq - 1 - t; it is its own inverse."""
    t = np.arange(seq)
    return np.stack([2 * t, 2 * (seq - 1 - t) + 1], 1).reshape(-1).astype(np.int32)


def _scale_row(value, width: int) -> np.ndarray:
    """A direction's w_scale (scalar or per column) as a [width] row."""
    return np.broadcast_to(np.asarray(value, np.float32), (width,)).astype(np.float32)


class _JointRecurrence(Ops):
    """``Ops`` whose recurrent projection quantizes each direction's row of the [2, hidden]
    state on its own and multiplies it with that direction's R on the int8 kernel."""

    def __init__(self, ctx, r_codes, r_scales: np.ndarray):
        super().__init__(ctx)
        self._codes, self._scales = r_codes, r_scales  # r_scales: [2, 4 * hidden]
        self._weights = [int8_weights(ctx, c, f"r{d}") for d, c in enumerate(r_codes)]
        self._step = 0

    def linear(self, x, weight, bias, keep_num_dims: bool = False):
        self._step += 1
        hint = f"h{self._step}"
        a_shift, neg_zp, a_scale = product_quantize(self.ctx, self.tensor(x), per_row=True)
        copies = (self._codes[0].shape[1] - 2) // a_shift.shape[1]
        wide = lattice_rows(self.ctx, a_shift, neg_zp, copies, 0, hint, negated=True)
        rows = self.split(wide, [1, 1], axis=0)
        accs = [
            int8_dense(self.ctx, r, w, f"{hint}_d{d}")
            for d, (r, w) in enumerate(zip(rows, self._weights, strict=True))
        ]
        acc = self.e.concat(accs, 0, f"{hint}_acc")
        return self.mul(acc, self.mul(a_scale, self._scales))


def _lower_joint(ctx, w_codes, r_codes):
    e = Emitter(ctx)
    o = Ops(ctx)
    seq, _, k = ctx.shape(X)
    hidden = int(ctx.attr("hidden_size"))
    g = 4 * hidden
    clip = ctx.attr("clip", None)
    acts = parse_activations(ctx.node.attrs, DEFAULT_ACTS, 2)
    bias = ctx.const(B) if ctx.has_input(B) else np.zeros((2, 8 * hidden), np.float32)
    both = (bias[:, :g] + bias[:, g:]).astype(np.float32).reshape(-1)  # [2 * g]
    w_scale = np.concatenate([_scale_row(_per_direction(ctx.const(W_SCALE), d), g) for d in (0, 1)])
    r_scales = np.stack([_scale_row(_per_direction(ctx.const(R_SCALE), d), g) for d in (0, 1)])
    # X is quantized once for both directions (onnxruntime quantizes it once per direction,
    # over the same tensor: the same lattice), one FC over both directions' weights.
    x_rows = e.reshape(ctx.input(X), (seq, k), "x_rows")
    a_shift, neg_zp, a_scale = product_quantize(ctx, x_rows)
    wide = lattice_rows(ctx, a_shift, neg_zp, (w_codes.shape[1] - 2) // k, 0, "x", negated=True)
    acc = int8_dense(ctx, wide, w_codes, "x")
    projected = e.op("MUL", acc, e.op("MUL", a_scale, e.const(w_scale), hint="x_scale"))
    projected = e.op("ADD", projected, e.const(both), hint="x_biased")
    # row t of the steps: [forward at t, backward at seq - 1 - t] (one GATHER, not a
    # CONCATENATION per step); the outputs are put back in time order the same way
    any_size = sizes_vary(ctx)
    order = _joint_order(seq)
    if any_size:  # the GATHER's order is sized by seq: the backward half reversed instead
        fwd, bwd = e.split(projected, [g, g], 1, "x_direction")
        steps = e.op(
            "PACK",
            fwd,
            _reversed(e, bwd),
            shape=(seq, 2, g),
            hint="x_steps",
            values_count=2,
            axis=1,
        )
    else:
        steps = e.gather(e.reshape(projected, (2 * seq, g), "x_pairs"), order, 0, "x_joint")
        steps = e.reshape(steps, (seq, 2, g), "x_steps")
    state = []
    for i in (INITIAL_H, INITIAL_C):
        init = ctx.const(i) if ctx.has_input(i) else np.zeros((2, 1, hidden), np.float32)
        if init is None:
            state.append(e.reshape(ctx.input(i), (2, hidden), "initial"))
        else:
            state.append(np.asarray(init, np.float32).reshape(2, hidden))
    peepholes = None
    if ctx.has_input(P):
        p = np.asarray(ctx.const(P), np.float32).reshape(2, 3 * hidden)
        peepholes = (p[:, :hidden], p[:, hidden : 2 * hidden], p[:, 2 * hidden :])
    cfg = CellConfig(
        hidden=hidden,
        acts=acts[0],
        clip=None if clip is None else float(clip),
        recurrent=None,
        recurrent_bias=None,
        peepholes=peepholes,
        input_forget=bool(ctx.attr("input_forget", 0)),
    )
    rec = _JointRecurrence(ctx, r_codes, r_scales)
    if JOINT_LOOP and seq > 1:
        h, c, pairs = _joint_loop(ctx, rec, cfg, steps, state)
    else:
        hs = []
        h, c = state
        for x_t in o.unstack(steps, 0):  # seq x [2, g]
            h, c = lstm_step(rec, cfg, x_t, (h, c))
            hs.append(rec.tensor(h))
        pairs = o.stack(hs, 0)
    outputs = ctx.node.outputs
    if len(outputs) > 0 and outputs[0] and any_size:
        fwd, bwd = e.split(pairs, [1, 1], 1, "y_direction")
        y = e.concat([fwd, _reversed(e, bwd)], 1, "y")
        e.reshape(y, ctx.output(0).shape, out=ctx.output(0))
    elif len(outputs) > 0 and outputs[0]:
        pairs = e.reshape(pairs, (2 * seq, hidden), "h_pairs")
        e.reshape(e.gather(pairs, order, 0, "y"), ctx.output(0).shape, out=ctx.output(0))
    for i, value in ((1, h), (2, c)):
        if len(outputs) > i and outputs[i]:
            e.reshape(rec.tensor(value), ctx.output(i).shape, out=ctx.output(i))


def _reversed(e, x):
    """``x`` in reverse order along axis 0 (REVERSE_V2: no index constant sized by it)."""
    axis = e.const(np.zeros(1, np.int32), np.int32, "reverse_axis")
    return e.op("REVERSE_V2", x, axis, shape=x.shape, hint="reversed")


def _joint_loop(ctx, rec, cfg, steps, state):
    """The joint steps as a WHILE loop over k: loop variables (k, h, c, y buffer [seq, rows,
    hidden], steps [seq, rows, 4 hidden], seq); returns (h, c, y buffer) after the last step.
    Rows are the two directions of a joint layer, or the batch of one direction's loop (when
    the sizes vary). When the sizes vary at run time (``dynamic_sizes.sizes_vary``) seq and the
    buffer's dims are read from SHAPE of the steps, not baked in."""
    e, drv = Emitter(ctx), ctx.driver
    seq, rows, _ = steps.shape
    hidden = cfg.hidden
    y0_dims = e.const(np.asarray((seq, rows, hidden), np.int32), np.int32, "y0_dims")
    count = ctx.const_tensor(np.array(seq, np.int32), "steps")
    if sizes_vary(ctx):
        dims = e.op("SHAPE", steps, shape=(3,), dtype=np.int32, hint="steps_dims", out_type="INT32")
        count = e.gather(dims, np.asarray(0, np.int32), 0, "steps")
        first = e.gather(dims, np.asarray([0, 1], np.int32), 0, "seq_rows")
        y0_dims = e.concat([first, e.const([hidden], np.int32, "y0_rest")], 0, "y0_dims")
    y0 = e.op(
        "FILL",
        y0_dims,
        e.const(0.0, hint="zero"),
        shape=(seq, rows, hidden),
        dtype=np.float32,
        hint="y0",
    )
    init = [
        ctx.const_tensor(np.array(0, np.int32), "step0"),
        *[rec.tensor(v) for v in state],
        y0,
        steps,
        count,
    ]
    cond = cond_subgraph(ctx, init, lambda emit, ins: less_than(ctx, emit, ins[0], ins[5]))
    label = f"{ctx.node.label}/joint"
    body = tfl.Subgraph(name=f"{label}/step")
    body.inputs = mirror_tensors(drv, init, f"{label}/step/in")
    k, h, c, y_buf, xs, _ = body.inputs
    with drv.emitting_into(body):
        x_t = e.gather(xs, k, 0, hint="x_t")  # [2, 4 hidden]
        h_new, c_new = lstm_step(rec, cfg, x_t, (h, c))
        h_new, c_new = rec.tensor(h_new), rec.tensor(c_new)
        zero = ctx.const_tensor(np.array(0, np.int32), "zero_i")
        start = e.op(
            "PACK", k, zero, zero, shape=(3,), dtype=np.int32, hint="start", values_count=3, axis=0
        )
        row = e.reshape(h_new, (1, rows, hidden), "y_t")
        y_next = e.op("DYNAMIC_UPDATE_SLICE", y_buf, row, start, shape=y_buf.shape, hint="y")
        one = ctx.const_tensor(np.array(1, np.int32), "one")
        k_next = e.op("ADD", k, one, hint="next_step")
    body.outputs = [k_next, h_new, c_new, y_next, xs, body.inputs[5]]
    finals = emit_while(ctx, init, cond, body)
    return finals[1], finals[2], finals[3]
