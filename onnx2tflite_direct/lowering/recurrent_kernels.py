"""ONNX LSTM -> LiteRT's UNIDIRECTIONAL_SEQUENCE_LSTM kernel, where the semantics coincide and
measurement says it is the faster form.

Built to replace the WHILE loop of small ops (``recurrent.py``) by one op, and measured
(``benchmarks/bench_recurrent.py``, x86-64, 1 thread, batch 1): LiteRT's float sequence kernel
does its matrix-vector products per gate and per step outside XNNPACK, while the loop hoists
X.W of every step into one XNNPACK FULLY_CONNECTED and runs the per-step R product there too.
So the kernel loses on mid-size and large cells (1.3-2x the loop's time at hidden 64-256 up to
128 steps; 1.3-2.8x on the corpus's LSTM models: hidden 100-512, 20-100 steps) and wins where
the loop's per-step overhead dominates: small cells over more steps than are worth unrolling
(0.4-0.8x the loop at hidden <= 32 from 64 steps), and long sequences, where the loop's time
grows faster than linearly (0.65-0.9x at hidden 64 from 256 steps, 0.75-0.8x at hidden 128 at
512). :func:`kernel_is_faster` encodes that; :data:`MODE` forces either form (tests, bench).
The kernel's contract (``tensorflow/lite/kernels/unidirectional_sequence_lstm.cc``,
``lstm_eval.cc``): 24 inputs -- X, input-to-{input, forget, cell, output} weights [H, I],
recurrent-to-{i, f, c, o} weights [H, H], cell-to-{i, f, o} peepholes [H] (optional), gate
biases {i, f, c, o} [H], projection weights/bias (absent here), the output state and the cell
state, the four layer-norm coefficients (absent). Gates are sigmoid, the cell candidate and the
output squash use ``fused_activation_function`` (TANH); the output gate's peephole reads the
*new* cell state, as in ONNX. ONNX packs gates as i, o, f, c and splits each bias into Wb + Rb:
the weights are sliced per gate and the two biases summed, in numpy, at conversion time.

The states are *variable* tensors: the kernel starts from their contents and leaves the final
state in them, and they persist across invocations. ONNX starts every run from ``initial_h`` /
``initial_c`` (or zeros), so an operator placed before the kernel writes the initial state into
each variable tensor on every invocation (UNPACK of ``initial_h``/``initial_c``, constant or
run-time, or FILL with zeros): a second run gives the same numbers as the first. ``Y_h`` is the
kernel output's last time step. ``Y_c`` is what the kernel leaves in the cell-state variable;
it is read by a CONCATENATION that also reads ``Y_h`` (then SLICE keeps the cell half): only a
reader that depends on the kernel's output is ordered after the kernel when a delegate
partitions the graph (a plain reader of the variable could be scheduled before it).

A reverse direction is REVERSE_V2 of X along time, the forward kernel, REVERSE_V2 of its
output; bidirectional is one kernel per direction (the BIDIRECTIONAL_SEQUENCE_LSTM op has the
same per-step arithmetic and a 48-input contract).

What the kernel cannot express is declared in :data:`CONSTRAINTS`; a node failing one keeps the
exact loop (or unrolled) form, and the report says which constraint decided.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import tfl
from .emit import Emitter
from .recurrent_cells import parse_activations

# "measured" (default): the kernel where kernel_is_faster; "always" / "never": forced.
MODE = "measured"
# (hidden at most, steps at least): where the kernel measured faster than the loop, batch 1.
# 49 = past recurrent.UNROLL_STEPS (unrolling beats both below). The step bounds never fall
# between the dynamic-shape samples (2, 3 and 64, 96): the choice is the same at both.
KERNEL_FASTER = ((32, 49), (64, 256), (128, 512))

SEQUENCE_LENS, INITIAL_H, INITIAL_C, PEEPHOLES = 4, 5, 6, 7
ONNX_GATES = ("i", "o", "f", "c")
KERNEL_GATES = ("i", "f", "c", "o")  # the kernel's input order of weights and biases


def _default_activations(ctx) -> bool:
    acts = parse_activations(ctx.node.attrs, ("Sigmoid", "Tanh", "Tanh"), 1 + _bidir(ctx))
    return all(tuple(a.name for a in d) == ("sigmoid", "tanh", "tanh") for d in acts)


def _bidir(ctx) -> int:
    return int(ctx.attr("direction", "forward") == "bidirectional")


def _constant_operands(ctx) -> bool:
    return all(ctx.const(i) is not None for i in (1, 2, 3, PEEPHOLES) if i < 3 or ctx.has_input(i))


def _full_sequences(ctx) -> bool:
    if not ctx.has_input(SEQUENCE_LENS):
        return True
    lens = ctx.const(SEQUENCE_LENS)
    seq = ctx.shape(0)[1 if ctx.attr("layout", 0) else 0]
    return lens is not None and bool(np.all(np.asarray(lens) == seq))


# (name, test) in the order they are checked; the first failing name is reported.
CONSTRAINTS: tuple[tuple[str, Callable], ...] = (
    ("not --unroll-rnn", lambda ctx: not ctx.driver.options.unroll_rnn),
    ("constant W, R, B and P", _constant_operands),
    ("default activations (Sigmoid, Tanh, Tanh)", _default_activations),
    ("no clip", lambda ctx: ctx.attr("clip", None) is None),
    ("input_forget=0", lambda ctx: not ctx.attr("input_forget", 0)),
    ("sequence_lens absent or constant full length", _full_sequences),
)


def _zero_or_absent(ctx, i: int) -> bool:
    if not ctx.has_input(i):
        return True
    value = ctx.const(i)
    return value is not None and not np.any(np.asarray(value))


# What LiteRT's integer (8x8->16) kernel adds to :data:`CONSTRAINTS` as this lowering feeds
# it (``quant/integer_lstm.py``): the states start from zeros written by an integer FILL, and
# the final cell state (int16, read back through a CONCATENATION with Y_h) is not an output.
INTEGER_CONSTRAINTS: tuple[tuple[str, Callable], ...] = (
    ("initial_h and initial_c absent or constant zeros", lambda ctx: all(
        _zero_or_absent(ctx, i) for i in (INITIAL_H, INITIAL_C))),
    ("Y_c unused", lambda ctx: not _used(ctx, 2)),
)  # fmt: skip


def integer_kernel_blocker(ctx) -> str | None:
    """The first constraint of the integer kernel this LSTM node fails (None: it fits);
    ``--unroll-rnn`` does not apply (it chooses the float file's form)."""
    for name, test in (*CONSTRAINTS[1:], *INTEGER_CONSTRAINTS):
        if not test(ctx):
            return name
    return None


def kernel_is_faster(seq: int, hidden: int, batch: int) -> bool:
    """Whether the measurements favour the kernel over the loop (module docstring)."""
    return batch == 1 and any(hidden <= h and seq >= steps for h, steps in KERNEL_FASTER)


def use_kernel(ctx) -> bool:
    """The kernel for this LSTM node: wanted (:data:`MODE`) and expressible (constraints).
    A node the kernel would have been chosen for but cannot express says why in the report."""
    if MODE == "never":
        return False
    if MODE == "measured":
        batch_major = bool(ctx.attr("layout", 0))
        x_shape = ctx.shape(0)
        seq, batch = (x_shape[1], x_shape[0]) if batch_major else (x_shape[0], x_shape[1])
        if not kernel_is_faster(seq, int(ctx.shape(2)[-1]), batch):
            return False
    blocker = kernel_blocker(ctx)
    if blocker is not None:
        ctx.note(f"loop form, not UNIDIRECTIONAL_SEQUENCE_LSTM: needs {blocker}")
    return blocker is None


def kernel_blocker(ctx) -> str | None:
    """The first declared constraint this LSTM node fails (None: the kernel fits)."""
    for name, test in CONSTRAINTS:
        if not test(ctx):
            return name
    return None


def lower_lstm_kernel(ctx) -> dict:
    """One UNIDIRECTIONAL_SEQUENCE_LSTM per direction; Y and Y_h in the node's layout.
    Returns {output index: the one tensor it is a reshape of} (one direction)."""
    e = Emitter(ctx)
    batch_major = bool(ctx.attr("layout", 0))
    time_axis = 1 if batch_major else 0
    x = ctx.input(0)
    x_shape = ctx.shape(0)
    seq, batch = (x_shape[1], x_shape[0]) if batch_major else (x_shape[0], x_shape[1])
    hidden = int(ctx.shape(2)[-1])
    dirs = 1 + _bidir(ctx)
    direction = ctx.attr("direction", "forward")
    h0 = _initial_states(ctx, INITIAL_H, dirs, batch, hidden, batch_major, "h")
    c0 = _initial_states(ctx, INITIAL_C, dirs, batch, hidden, batch_major, "c")
    out_shape = (batch, seq, hidden) if batch_major else (seq, batch, hidden)
    ys, lasts, cells = [], [], []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        x_d = _reverse(ctx, x, time_axis) if reverse else x
        y = e.op(
            "UNIDIRECTIONAL_SEQUENCE_LSTM",
            x_d,
            *_kernel_weights(ctx, d, hidden),
            h0[d],
            c0[d],
            None,
            None,
            None,
            None,
            shape=out_shape,
            dtype=np.float32,
            hint=f"d{d}/lstm_y",
            fused_activation_function="TANH",
            cell_clip=0.0,
            proj_clip=0.0,
            time_major=not batch_major,
            asymmetric_quantize_inputs=False,
        )
        if _used(ctx, 1) or _used(ctx, 2):
            lasts.append(_last_step(ctx, y, time_axis, batch, hidden))
        if _used(ctx, 2):
            cells.append(_final_cell(ctx, lasts[-1], c0[d], batch, hidden))
        ys.append(_reverse(ctx, y, time_axis) if reverse else y)
    _write_outputs(ctx, ys, lasts, cells, batch_major)
    if dirs != 1:
        return {}
    found = {0: ys[0], 1: lasts[0] if lasts else None, 2: cells[0] if cells else None}
    return {i: t for i, t in found.items() if t is not None and _used(ctx, i)}


def _kernel_weights(ctx, d: int, hidden: int) -> list:
    """Inputs 1-17 of the kernel for direction ``d``: weights, peepholes, biases, projection."""
    w = np.asarray(ctx.const(1), np.float32)[d]
    r = np.asarray(ctx.const(2), np.float32)[d]
    w_g = dict(zip(ONNX_GATES, np.split(w, 4, axis=0), strict=True))
    r_g = dict(zip(ONNX_GATES, np.split(r, 4, axis=0), strict=True))
    if ctx.has_input(3):
        wb, rb = np.split(np.asarray(ctx.const(3), np.float32)[d], 2)
        b = wb + rb
    else:
        b = np.zeros(4 * hidden, np.float32)
    b_g = dict(zip(ONNX_GATES, np.split(b, 4), strict=True))

    def const(array, hint):
        return ctx.const_tensor(np.ascontiguousarray(array, np.float32), f"d{d}/{hint}")

    peep = [None, None, None]
    if ctx.has_input(PEEPHOLES):
        p_i, p_o, p_f = np.split(np.asarray(ctx.const(PEEPHOLES), np.float32)[d], 3)
        peep = [const(p_i, "cell_to_i"), const(p_f, "cell_to_f"), const(p_o, "cell_to_o")]
    return [
        *(const(w_g[g], f"input_to_{g}") for g in KERNEL_GATES),
        *(const(r_g[g], f"recurrent_to_{g}") for g in KERNEL_GATES),
        *peep,
        *(const(b_g[g], f"bias_{g}") for g in KERNEL_GATES),
        None,  # projection weights
        None,  # projection bias
    ]


def _state_tensor(ctx, batch: int, hidden: int, hint: str) -> tfl.Tensor:
    t = ctx.temp(np.float32, (batch, hidden), hint)
    t.is_variable = True
    return t


def _initial_states(ctx, i, dirs, batch, hidden, batch_major, which) -> list[tfl.Tensor]:
    """Per direction a variable [batch, hidden] state tensor, written on every invocation with
    the initial state (UNPACK of input ``i``) or zeros (FILL)."""
    e = Emitter(ctx)
    states = [_state_tensor(ctx, batch, hidden, f"d{d}/{which}_state") for d in range(dirs)]
    if ctx.has_input(i) and not _zero_or_absent(ctx, i):
        axis = 1 if batch_major else 0
        e.op("UNPACK", ctx.input(i), out=states, num=dirs, axis=axis)
        return states
    dims = ctx.const_tensor(np.array([batch, hidden], np.int32), f"{which}_dims")
    zero = ctx.const_tensor(np.array(0, np.float32), "zero")
    for s in states:
        e.op("FILL", dims, zero, out=s)
    return states


def _reverse(ctx, t: tfl.Tensor, axis: int) -> tfl.Tensor:
    e = Emitter(ctx)
    return e.op(
        "REVERSE_V2",
        t,
        ctx.const_tensor(np.array([axis], np.int32), "time_axis"),
        shape=t.shape,
        hint="reversed",
    )


def _last_step(ctx, y: tfl.Tensor, time_axis: int, batch: int, hidden: int) -> tfl.Tensor:
    """y's last time step [batch, hidden]: the final hidden state."""
    e = Emitter(ctx)
    out = ctx.temp(np.float32, (batch, hidden), "last_step")
    begin = np.zeros(3, np.int32)
    begin[time_axis] = -1
    e.op(
        "STRIDED_SLICE",
        y,
        ctx.const_tensor(begin, "begin"),
        ctx.const_tensor(np.zeros(3, np.int32), "end"),
        ctx.const_tensor(np.ones(3, np.int32), "strides"),
        out=out,
        begin_mask=0b111 & ~(1 << time_axis),
        end_mask=0b111 & ~(1 << time_axis),
        shrink_axis_mask=1 << time_axis,
    )
    return out


def _final_cell(ctx, last_h, cell_var, batch: int, hidden: int) -> tfl.Tensor:
    """The final cell state the kernel left in ``cell_var``, read after the kernel: the
    CONCATENATION also reads ``last_h`` (the kernel's output), which orders it after."""
    e = Emitter(ctx)
    pair = e.concat([last_h, cell_var], 1, hint="h_and_c")
    out = ctx.temp(np.float32, (batch, hidden), "final_cell")
    begin = ctx.const_tensor(np.array([0, hidden], np.int32), "cell_begin")
    size = ctx.const_tensor(np.array([-1, hidden], np.int32), "cell_size")
    e.op("SLICE", pair, begin, size, out=out)
    return out


def _used(ctx, i: int) -> bool:
    outs = ctx.node.outputs
    return i < len(outs) and bool(outs[i]) and ctx.driver.graph.used(outs[i])


def _stack(ctx, items, axis: int, out: tfl.Tensor) -> None:
    e = Emitter(ctx)
    if len(items) == 1:
        e.reshape(items[0], out=out)
    else:
        e.op("PACK", *items, out=out, values_count=len(items), axis=axis)


def _write_outputs(ctx, ys, lasts, cells, batch_major: bool) -> None:
    """Y [S, D, B, H] (layout 0) / [B, S, D, H] (layout 1); Y_h, Y_c [D, B, H] / [B, D, H]."""
    if _used(ctx, 0):
        _stack(ctx, ys, 2 if batch_major else 1, ctx.output(0))
    state_axis = 1 if batch_major else 0
    if _used(ctx, 1):
        _stack(ctx, lasts, state_axis, ctx.output(1))
    if _used(ctx, 2):
        _stack(ctx, cells, state_axis, ctx.output(2))
