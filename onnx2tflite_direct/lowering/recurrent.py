"""LSTM, GRU and RNN -> an exact WHILE loop (default) or unrolled composition of builtins.

An LSTM whose semantics LiteRT's UNIDIRECTIONAL_SEQUENCE_LSTM kernel expresses becomes one
kernel per direction (``recurrent_kernels``) where that measured faster: small cells over long
sequences, and very long sequences (``recurrent_kernels.kernel_is_faster``; its matrix products
run outside XNNPACK, so elsewhere it is slower). Everything else is plain builtins:

* one FULLY_CONNECTED per direction projects every time step at once (X . W^T + biases);
  UNPACK hands out the per-step rows;
* per step: FULLY_CONNECTED of the previous hidden state with R, the gate arithmetic
  (SPLIT, LOGISTIC/TANH/..., MUL, ADD) of the cell (``recurrent_cells``);
* PACK assembles Y, Y_h and Y_c in the requested ``layout``.

The per-step part is either the body of one WHILE loop per direction (graph size does not
grow with the sequence; the step reads its row of the projection with GATHER and writes Y with
DYNAMIC_UPDATE_SLICE) or every step emitted in turn: unrolled where measurement says it is the
faster form (:func:`prefer_unrolled`: small cells, short sequences), with ``--unroll-rnn``, and
for batch-major ``layout=1``.

A ``sequence_lens`` other than "every sequence is full" is handled by masking: a step at
t >= len[b] keeps the state and writes zeros to Y. Iterating reverse directions from the last
step down makes that same mask reproduce ONNX's per-sequence reversal (the first real step of
a length-L sequence is t = L - 1, started from the initial state).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import errors, tfl
from ..policies import onnx_order
from ..registry import FLOAT, attr_in, lowering
from . import recurrent_kernels
from .control_flow import cond_subgraph, emit_while, less_than, mirror_tensors
from .emit import Emitter
from .recurrent_cells import CellConfig, Ops, gru_step, lstm_step, parse_activations, rnn_step


@dataclass(frozen=True)
class CellKind:
    gates: int
    default_activations: tuple[str, ...]
    step: object
    num_states: int


KINDS = {
    "LSTM": CellKind(4, ("Sigmoid", "Tanh", "Tanh"), lstm_step, 2),
    "GRU": CellKind(3, ("Sigmoid", "Tanh"), gru_step, 1),
    "RNN": CellKind(1, ("Tanh",), rnn_step, 1),
}
DIRECTIONS = ("forward", "reverse", "bidirectional")
SEQUENCE_LENS, INITIAL_H, INITIAL_C, PEEPHOLES = 4, 5, 6, 7


# Unrolled vs WHILE loop, by measurement (benchmarks/bench_recurrent.py --sweep, x86-64, 1
# thread, batch 1). Unrolling removes the loop's per-step interpreter work (the body's ops, the
# cond and body subgraph invocations), which dominates small cells: GRU/BiLSTM at hidden <= 32
# run in 0.25-0.6x the loop's time, at hidden 64 in 0.4-0.8x. It loses when the recurrent
# products are large, because every unrolled FULLY_CONNECTED keeps its own packed copy of R in
# XNNPACK and the working set grows with the step count: at hidden 128 from 8-16
# steps x directions, at hidden 256 from 4 (2-2.5x slower at 32-48 steps).
# The step range also keeps the choice identical between the dynamic-shape samples
# (dynamic_shapes.BATCH_SAMPLES 2, 3 for a leading sequence dim; SIZE_SAMPLES 64, 96): a
# sequence length that changes at run time always gets the loop (tests check the bounds).
UNROLL_STEPS = range(4, 49)  # 4..48
UNROLL_HIDDEN = 64  # any step count in UNROLL_STEPS
UNROLL_MEDIUM_HIDDEN, UNROLL_MEDIUM_WORK = 128, 8  # steps x directions at most


def prefer_unrolled(seq: int, hidden: int, dirs: int) -> bool:
    """Whether the unrolled form is the faster one for this recurrence (see above)."""
    if seq not in UNROLL_STEPS:
        return False
    if hidden <= UNROLL_HIDDEN:
        return True
    return hidden <= UNROLL_MEDIUM_HIDDEN and seq * dirs <= UNROLL_MEDIUM_WORK


def _num_directions(node) -> int:
    return 2 if node.attrs.get("direction", "forward") == "bidirectional" else 1


def _check(node, graph) -> str | None:
    """What the declarations cannot say: activations, direction count, sequence_lens values."""
    values = graph.values
    kind = KINDS[node.op_type]
    dirs = _num_directions(node)
    w_shape = values[node.inputs[1]].shape
    if w_shape[0] != dirs:
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: W has {w_shape[0]} directions, expected {dirs}"
        )
    try:
        parse_activations(node.attrs, kind.default_activations, dirs)
    except ValueError as err:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: {err}"
    x_shape = values[node.inputs[0]].shape
    seq = x_shape[1] if node.attrs.get("layout", 0) else x_shape[0]
    if seq < 1:
        return f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: empty sequence"
    if len(node.inputs) > SEQUENCE_LENS and node.inputs[SEQUENCE_LENS]:
        lens = values[node.inputs[SEQUENCE_LENS]]
        if lens.is_constant and (np.any(lens.const < 0) or np.any(lens.const > seq)):
            return (
                f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: sequence_lens {lens.const.tolist()} "
                f"outside [0, {seq}]"
            )
    return None


class Unroller:
    """Lowers one recurrent node: per direction, precompute X.W, step, collect outputs."""

    def __init__(self, ctx, kind: CellKind):
        self.ctx = ctx
        self.e = Emitter(ctx)
        self.kind = kind
        self.o = Ops(ctx)
        self.batch_major = int(ctx.attr("layout", 0)) == 1
        x_shape = ctx.shape(0)
        self.seq, self.batch = (x_shape[1], x_shape[0]) if self.batch_major else x_shape[:2]
        self.hidden = int(ctx.shape(2)[-1])
        self.dirs = _num_directions(ctx.node)
        self.direction = ctx.attr("direction", "forward")

    # ---- operands ------------------------------------------------------------------------
    def operand(self, i: int):
        """Input ``i`` as a numpy constant or a runtime tensor (None when absent)."""
        if not self.ctx.has_input(i):
            return None
        const = self.ctx.const(i)
        return np.asarray(const, np.float32) if const is not None else self.ctx.input(i)

    def per_direction(self, i: int, axis: int = 0):
        value = self.operand(i)
        return [None] * self.dirs if value is None else self.o.unstack(value, axis)

    def initial_states(self, i: int, looped: bool):
        """Initial state per direction as [batch, hidden] tensors (zeros when absent)."""
        per_dir = self.per_direction(i, axis=1 if self.batch_major else 0)
        if looped:  # a FILL, not a constant: its dims can follow a run-time batch
            absent = any(s is None for s in per_dir)
            zeros = self.zeros((self.batch, self.hidden), "h0") if absent else None
            return [zeros if s is None else self.o.tensor(s) for s in per_dir]
        zeros = np.zeros((self.batch, self.hidden), np.float32)
        return [self.o.tensor(zeros if s is None else s) for s in per_dir]

    def zeros(self, shape, hint: str) -> tfl.Tensor:
        """float32 zeros of ``shape`` written by FILL (a shape operand, no stored buffer)."""
        out = self.ctx.temp(np.float32, shape, hint)
        dims = self.ctx.const_tensor(np.array(shape, np.int32), f"{hint}_dims")
        zero = self.ctx.const_tensor(np.array(0, np.float32), "zero")
        self.e.op("FILL", dims, zero, out=out)
        return out

    def runtime_steps(self, projected: tfl.Tensor) -> tfl.Tensor:
        """The sequence length as an int32 scalar read from ``projected`` at run time, so the
        loop also runs a sequence length that changes with a dynamic input size."""
        ctx, e = self.ctx, self.e
        dims = e.op(
            "SHAPE",
            projected,
            shape=(len(projected.shape),),
            dtype=np.int32,
            hint="dims",
            out_type="INT32",
        )
        first = ctx.temp(np.int32, (1,), "seq")
        one = ctx.const_tensor(np.array([1], np.int32), "one")
        e.op("SLICE", dims, ctx.const_tensor(np.array([0], np.int32), "zero"), one, out=first)
        return ctx.reshape(first, (), "steps")

    def step_masks(self, stacked: bool = False):
        """Per step a [batch, 1] bool tensor (t < sequence_lens[b]), or None when all full;
        ``stacked``: one [seq, batch, 1] tensor instead (what the loop body indexes).

        The step-0 mask also says "the sequence is not empty": onnxruntime returns zero final
        states for a zero-length sequence, not the initial ones.
        """
        if not self.ctx.has_input(SEQUENCE_LENS):
            return None
        const = self.ctx.const(SEQUENCE_LENS)
        steps = np.arange(self.seq).reshape(-1, 1, 1)
        if const is not None:
            if np.all(const == self.seq):
                return None
            masks = (steps < np.asarray(const).reshape(1, -1, 1)).astype(np.bool_)
            if stacked:
                return self.ctx.const_tensor(masks, "masks")
            return [self.ctx.const_tensor(m, "mask") for m in masks]
        lens = self.ctx.reshape(self.ctx.input(SEQUENCE_LENS), (1, self.batch, 1), "lens")
        if lens.dtype != np.int32:
            self.ctx.refuse(errors.UNSUPPORTED_DTYPE, "sequence_lens must be int32")
        masks = self.o.op(
            "LESS", self.ctx.const_tensor(steps.astype(np.int32)), lens, dtype=np.bool_
        )
        return masks if stacked else self.o.unstack(masks, 0)

    def biases(self, b_d):
        """(bias of the input projection, bias of the recurrent projection) for one direction."""
        if b_d is None:
            return None, None
        width = self.kind.gates * self.hidden
        wb, rb = self.o.split(b_d, [width, width], axis=0)
        if self.ctx.node.op_type == "GRU" and self.ctx.attr("linear_before_reset", 0):
            # R_bh is applied inside r * (H R_h^T + R_bh): it joins the recurrent projection.
            inner = np.zeros(width, np.float32)
            inner[2 * self.hidden :] = 1.0
            return self.o.add(wb, self.o.mul(rb, 1.0 - inner)), self.o.mul(rb, inner)
        return self.o.add(wb, rb), None

    def cell_config(self, r_d, rec_bias, acts, p_d) -> CellConfig:
        ctx = self.ctx
        clip = ctx.attr("clip", None)
        cfg = CellConfig(
            hidden=self.hidden,
            acts=acts,
            clip=None if clip is None else float(clip),
            recurrent=r_d,
            recurrent_bias=rec_bias,
            input_forget=bool(ctx.attr("input_forget", 0)),
            linear_before_reset=bool(ctx.attr("linear_before_reset", 0)),
        )
        if p_d is not None:
            cfg.peepholes = tuple(self.o.split(p_d, [self.hidden] * 3, axis=0))
        if ctx.node.op_type == "GRU" and not cfg.linear_before_reset:
            cfg.recurrent_parts = tuple(self.o.split(r_d, [2 * self.hidden, self.hidden], 0))
        return cfg

    # ---- the recurrence -----------------------------------------------------------------
    def run_direction(self, d: int, w_d, cfg: CellConfig, x_bias, states, masks):
        o = self.o
        projected = o.linear(self.ctx.input(0), w_d, x_bias, keep_num_dims=True)
        steps = o.unstack(projected, 1 if self.batch_major else 0)
        reverse = self.direction == "reverse" or d == 1
        order = range(self.seq - 1, -1, -1) if reverse else range(self.seq)
        ys = [None] * self.seq
        for t in order:
            new = self.kind.step(o, cfg, steps[t], states)
            if masks is None:
                ys[t] = new[0]
            else:
                new = tuple(
                    o.op("SELECT_V2", masks[t], n, s) for n, s in zip(new, states, strict=True)
                )
                ys[t] = o.op("SELECT_V2", masks[t], new[0], np.zeros((), np.float32))
            states = new
        return ys, states

    def loop_direction(self, d: int, w_d, cfg: CellConfig, x_bias, states, masks):
        """One direction as a WHILE loop; returns (Y [seq, batch, hidden], final states).

        Loop variables: step counter, states, the Y buffer, the input projection, the masks
        (if any) and every run-time operand the step reads (they pass through unchanged)."""
        ctx, o, drv, e = self.ctx, self.o, self.ctx.driver, self.e
        label = f"{ctx.node.label}/d{d}"
        projected = o.linear(ctx.input(0), w_d, x_bias, keep_num_dims=True)
        y0 = self.zeros((self.seq, self.batch, self.hidden), "y0")
        outer = _runtime_operands(cfg)
        init = [
            ctx.const_tensor(np.array(0, np.int32), "step0"),
            *states,
            y0,
            projected,
            self.runtime_steps(projected),
            *([masks] if masks is not None else []),
            *outer,
        ]
        n = len(states)

        def make_cond(emit, inputs):
            return less_than(ctx, emit, inputs[0], inputs[3 + n])

        cond = cond_subgraph(ctx, init, make_cond)
        body = tfl.Subgraph(name=f"{label}/step")
        body.inputs = mirror_tensors(drv, init, f"{label}/step/in")
        k, st = body.inputs[0], body.inputs[1 : 1 + n]
        y_buf, xw, steps = body.inputs[1 + n : 4 + n]
        rest = body.inputs[4 + n :]
        mask_all = rest[0] if masks is not None else None
        inner = dict(zip(map(id, outer), rest[1 if masks is not None else 0 :], strict=True))
        with drv.emitting_into(body):
            t = k
            one = ctx.const_tensor(np.array(1, np.int32), "one")
            if self.direction == "reverse" or d == 1:  # t = steps - 1 - k
                t = _int_op(ctx, "SUB", _int_op(ctx, "SUB", steps, one, "last"), k, "t")
            x_t = e.gather(xw, t, 0, hint="x_t")
            new = self.kind.step(o, _with_operands(cfg, inner), x_t, tuple(st))
            y = new[0]
            if mask_all is not None:
                m_t = e.gather(mask_all, t, 0, hint="mask_t")
                new = tuple(o.op("SELECT_V2", m_t, a, b) for a, b in zip(new, st, strict=True))
                y = o.op("SELECT_V2", m_t, new[0], np.zeros((), np.float32))
            start = ctx.temp(np.int32, (3,), "start")
            zero = ctx.const_tensor(np.array(0, np.int32), "zero")
            e.op("PACK", t, zero, zero, out=start, values_count=3, axis=0)
            y_next = e.op(
                "DYNAMIC_UPDATE_SLICE",
                y_buf,
                ctx.reshape(y, (1, *y.shape), "y_t"),
                start,
                shape=y_buf.shape,
                dtype=np.float32,
                hint="y",
            )
            k_next = _int_op(ctx, "ADD", k, one, "next_step")
        body.outputs = [k_next, *new, y_next, *body.inputs[2 + n :]]
        finals = emit_while(ctx, init, cond, body)
        return finals[1 + n], tuple(finals[1 : 1 + n])

    def is_looped(self) -> bool:
        """The WHILE-loop form (else unrolled) for this node; see the module docstring."""
        return not (
            self.ctx.driver.options.unroll_rnn
            or self.batch_major
            or self.seq == 1
            or prefer_unrolled(self.seq, self.hidden, self.dirs)
        )

    def lower(self, unrolled: bool = False):
        """Emit the node; ``unrolled`` forces the unrolled form (an integer alternative)."""
        ctx, o = self.ctx, self.o
        acts = parse_activations(ctx.node.attrs, self.kind.default_activations, self.dirs)
        weights = self.per_direction(1)
        recurrents = self.per_direction(2)
        biases = self.per_direction(3)
        peepholes = self.per_direction(PEEPHOLES) if ctx.node.op_type == "LSTM" else [None] * 2
        looped = not unrolled and self.is_looped()
        h0 = self.initial_states(INITIAL_H, looped)
        c0 = self.initial_states(INITIAL_C, looped) if self.kind.num_states == 2 else None
        masks = self.step_masks(stacked=looped)
        lens = ctx.const(SEQUENCE_LENS)
        nonempty = None
        if masks is not None and not (lens is not None and np.all(lens > 0)):
            nonempty = o.unstack(masks, 0)[0] if looped else masks[0]
        run = self.loop_direction if looped else self.run_direction
        all_ys, finals = [], []
        for d in range(self.dirs):
            x_bias, rec_bias = self.biases(biases[d])
            cfg = self.cell_config(recurrents[d], rec_bias, acts[d], peepholes[d])
            states = (h0[d], c0[d]) if c0 is not None else (h0[d],)
            ys, last = run(d, weights[d], cfg, x_bias, states, masks)
            if nonempty is not None:
                zero = np.zeros((), np.float32)
                last = tuple(o.op("SELECT_V2", nonempty, s, zero) for s in last)
            all_ys.append(ys)
            finals.append(last)
        return self.write_outputs(all_ys, finals)

    def write_outputs(self, all_ys, finals):
        ctx, o = self.ctx, self.o
        used = [
            i < len(ctx.node.outputs)
            and ctx.node.outputs[i]
            and ctx.driver.graph.used(ctx.node.outputs[i])
            for i in range(3)
        ]
        time_axis, dir_axis = (1, 2) if self.batch_major else (0, 1)
        sources = {}  # output index -> the one tensor its values are a reshape of
        if used[0]:
            per_dir = [
                ys if isinstance(ys, tfl.Tensor) else o.stack(ys, time_axis) for ys in all_ys
            ]
            o.stack(per_dir, dir_axis, out=ctx.output(0))
            if len(per_dir) == 1:
                sources[0] = per_dir[0]
        state_dir_axis = 1 if self.batch_major else 0
        for i in (1, 2):
            if used[i]:
                o.stack([f[i - 1] for f in finals], state_dir_axis, out=ctx.output(i))
                if len(finals) == 1:
                    sources[i] = finals[0][i - 1]
        return sources


LSTM_KERNEL_OPS = (
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "REVERSE_V2",
    "STRIDED_SLICE",
    "CONCATENATION",
    "SLICE",
    "FILL",
)
CFG_OPERANDS = ("recurrent", "recurrent_bias", "peepholes", "recurrent_parts")


# The unrolled alternative of a loop (or kernel) form is kept up to this many steps x
# directions: an integer file then has integer kernels for the cell (past it, the graph would
# grow by thousands of ops per layer; the integer file is refused, naming the loop).
ALTERNATIVE_UNROLL_STEPS = 256


def _record_alternatives(ctx, kind: CellKind, form: str, sources: dict) -> None:
    """The node's other forms that have integer kernels, emitted beside the graph (not in it)
    into ``sub.alternatives``: the full-integer files swap them in (``quant/recurrent_forms.py``).

    Why at lowering time: choosing a form needs the ONNX node (its attributes, constants and
    outputs), which only the lowering sees. An LSTM gets the UNIDIRECTIONAL_SEQUENCE_LSTM kernel
    where its integer 8x8->16 form fits (:func:`recurrent_kernels.integer_kernel_blocker`; int8
    files), and every loop or kernel form the unrolled cell (integer at any width) up to
    :data:`ALTERNATIVE_UNROLL_STEPS`. Only for the main graph; a node already unrolled needs
    none. The report's row keeps the float file's operators. ``sources``: output index ->
    the float form's tensor that output is a reshape of (a rewrite may have made readers read
    it directly)."""
    drv = ctx.driver
    if drv.path or form == "unrolled":
        return
    seq = ctx.shape(0)[1 if ctx.attr("layout", 0) else 0]
    forms = []
    if form == "loop" and ctx.node.op_type == "LSTM":
        if recurrent_kernels.integer_kernel_blocker(ctx) is None:
            forms.append("kernel")
    elif form == "kernel" and recurrent_kernels.integer_kernel_blocker(ctx) is not None:
        form = "float_kernel"  # the float file's kernel has no integer form for this node
    if seq * _num_directions(ctx.node) <= ALTERNATIVE_UNROLL_STEPS:
        forms.append("unrolled")
    record = drv._current
    saved_ops = list(record.tflite_ops) if record is not None else None
    for name in forms:
        scratch = tfl.Subgraph(name=f"{ctx.node.label}/{name}")
        try:
            with drv.emitting_into(scratch):
                if name == "kernel":
                    recurrent_kernels.lower_lstm_kernel(ctx)
                else:
                    Unroller(ctx, kind).lower(unrolled=True)
        except errors.ConversionError:  # a form this node cannot take: the others remain
            continue
        drv.sub.alternatives.append(
            {
                "node": ctx.node.label,
                "form": name,
                "current": form,
                "ops": scratch.operators,
                "inputs": [ctx.input(0)],
                "time_axis": 1 if ctx.attr("layout", 0) else 0,
                "outputs": {i: ctx.output(i) for i in sources},
                "sources": sources,
            }
        )
    if record is not None:
        record.tflite_ops[:] = saved_ops


def _int_op(ctx, opcode: str, a: tfl.Tensor, b: tfl.Tensor, hint: str) -> tfl.Tensor:
    """int32 scalar arithmetic of the loop counter."""
    e = Emitter(ctx)
    return e.op(opcode, a, b, shape=(), dtype=np.int32, hint=hint, fused_activation_function="NONE")


def _runtime_operands(cfg: CellConfig) -> list[tfl.Tensor]:
    """The run-time tensors (not numpy constants) a step reads: W/R/B/P given as inputs."""
    found: dict[int, tfl.Tensor] = {}
    for name in CFG_OPERANDS:
        value = getattr(cfg, name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, tfl.Tensor):
                found.setdefault(id(item), item)
    return list(found.values())


def _with_operands(cfg: CellConfig, inner: dict[int, tfl.Tensor]) -> CellConfig:
    """``cfg`` with run-time operands replaced by the loop body's own copies."""

    def swap(value):
        if isinstance(value, tuple):
            return tuple(swap(v) for v in value)
        return inner.get(id(value), value) if isinstance(value, tfl.Tensor) else value

    return dataclasses.replace(cfg, **{n: swap(getattr(cfg, n)) for n in CFG_OPERANDS})


def _register(op_type: str):
    kind = KINDS[op_type]
    attrs = [
        attr_in("direction", DIRECTIONS, "forward"),
        attr_in("layout", (0, 1), 0),
    ]
    if op_type == "LSTM":
        attrs.append(attr_in("input_forget", (0, 1), 0))
    if op_type == "GRU":
        attrs.append(attr_in("linear_before_reset", (0, 1), 0))

    def lower(ctx):
        if op_type == "LSTM" and recurrent_kernels.use_kernel(ctx):
            sources = recurrent_kernels.lower_lstm_kernel(ctx)
            form = "kernel"
        else:
            unroller = Unroller(ctx, kind)
            form = "loop" if unroller.is_looped() else "unrolled"
            sources = unroller.lower()
        _record_alternatives(ctx, kind, form, sources)

    lowering(
        op_type,
        onnx_order,
        since=7,
        dtypes=FLOAT,
        dtype_inputs=(0, 1, 2, 3, INITIAL_H, INITIAL_C, PEEPHOLES),
        attrs=tuple(attrs),
        extra_check=_check,
        tflite_ops=(
            *(LSTM_KERNEL_OPS if op_type == "LSTM" else ()),
            "WHILE",
            "GATHER",
            "DYNAMIC_UPDATE_SLICE",
            "FULLY_CONNECTED",
            "UNPACK",
            "SPLIT",
            "SPLIT_V",
            "LOGISTIC",
            "TANH",
            "MUL",
            "ADD",
            "SUB",
            "LESS",
            "SELECT_V2",
            "PACK",
            "RESHAPE",
            "MINIMUM",
            "MAXIMUM",
            "RELU",
            "LEAKY_RELU",
            "RELU_0_TO_1",
            "ELU",
        ),
        notes=(
            "LiteRT's UNIDIRECTIONAL_SEQUENCE_LSTM per direction where measured faster (batch 1, "
            "hidden <= 32 from 49 steps, <= 64 from 256, <= 128 from 512) and expressible "
            "(constant W/R/B/P, default activations, no clip/input_forget, sequence_lens "
            "absent or full); otherwise "
            if op_type == "LSTM"
            else ""
        )
        + "one WHILE loop per direction (unrolled with --unroll-rnn, batch-major layout, "
        "a single step, or 4-48 steps of a small cell where that measured faster); "
        "W/R/B/states constant or runtime; "
        "activations Relu/Tanh/Sigmoid/Affine/LeakyRelu/ThresholdedRelu/ScaledTanh/"
        "HardSigmoid/Elu/Softsign/Softplus; clip; sequence_lens by masking (constant values "
        "must lie in [1, seq_length])",
    )(lower)


for _op in KINDS:
    _register(_op)
