"""LiteRT's integer UNIDIRECTIONAL_SEQUENCE_LSTM (8x8->16) in the int8 integer files.

Why its own module: the kernel's quantization contract is unlike any other op's
(``lstm_eval.cc`` / ``unidirectional_sequence_lstm.cc``, PopulateQuantizedLstmParams8x8_16),
so the generic per-op rules (``op_rules``) cannot state it:

* input X and output Y int8 (asymmetric); the output state (variable input 18) int8 with the
  output's exact params, since the kernel copies its raw bytes into Y; the cell state (variable
  input 19) int16, zero point 0, a power-of-two scale 2^k (the kernel shifts by k), here with
  -15 <= k <= -9 (the bound some builds enforce);
* the 8 gate weights int8 symmetric per tensor; peepholes (when the ONNX node has them) int16
  symmetric per tensor; the 4 gate biases int32 at scale s_x * s_w of the gate's input weight:
  without layer norm the kernel adds them to the input product's accumulator;
* gate pre-activations run at the fixed Q3.12 (2^-12) and the gate outputs at Q0.15, so no
  range is calibrated for them; the operator lists 5 ``intermediates``: 4 int16 tensors at
  2^-12 (read only with layer norm) and the hidden state, which without a projection is the
  output state (same params);
* the states are written zero by an integer FILL (value = the zero point) on every invocation,
  as the float file does (``lowering/recurrent_kernels``).

What is calibrated: Y's range (the output and the output state; ``temporaries`` measures the
kernel's output) and the cell state's largest magnitude over every step, which no tensor of
the graph holds (the state variable keeps only the last step): :func:`state_ranges` replays
the float recurrence in numpy on the kernel input LiteRT computed for each calibration sample.

The plan (``integer_plan``) hands ops of kind :data:`KINDS` to :func:`plan_op`, the rewrite
(``integer``) to :func:`rewrite_op`.
"""

from __future__ import annotations

import numpy as np

from .. import tfl
from .integer_plan import QParams, is_float_activation, is_float_constant, params_from_range
from .op_rules import OpRule

OPCODE = "UNIDIRECTIONAL_SEQUENCE_LSTM"
X, H_STATE, C_STATE = 0, 18, 19
WEIGHTS = range(1, 9)  # input-to-{i,f,c,o} [H, I], recurrent-to-{i,f,c,o} [H, H]
PEEPHOLES = range(9, 12)  # cell-to-{i,f,o} [H]
BIASES = range(12, 16)  # {i,f,c,o} [H]
GATE_SCALE = 2.0**-12  # Q3.12 gate pre-activations (no layer norm)
CELL_EXPONENTS = (-15, -9)
LSTM = OpRule("integer_lstm", int16=False)
STATE_FILL = OpRule("integer_lstm_state", int16=False)
KINDS = frozenset({LSTM.kind, STATE_FILL.kind})


def rule(op: tfl.Operator, consumers, int16: bool) -> OpRule | None:
    """The rule of a sequence-LSTM op or of the FILL writing one's state (int8 files only)."""
    if int16:
        return None
    if op.opcode == OPCODE:
        return LSTM
    if op.opcode == "FILL" and _state_reader(op, consumers) is not None:
        return STATE_FILL
    return None


def _state_reader(fill: tfl.Operator, consumers):
    """(LSTM op, state input index) reading the FILL's output, or None."""
    users = consumers.get(id(fill.outputs[0]), [])
    if len(users) == 1 and users[0][0].opcode == OPCODE and users[0][1] in (H_STATE, C_STATE):
        return users[0]
    return None


# -- plan -------------------------------------------------------------------------------------


def state_params(plan, lstm: tfl.Operator, index: int) -> QParams | None:
    """Params of the output state (= Y's) or of the cell state (power of two)."""
    if index == H_STATE:
        rng = plan.range_of(lstm.outputs[0])
        return None if rng is None else params_from_range(*rng, False)
    rng = plan.ranges.get(lstm.inputs[C_STATE].name)
    if rng is None:
        return None
    return QParams(cell_scale(max(abs(rng[0]), abs(rng[1]))), 0, True)


def cell_scale(magnitude: float) -> float:
    """2^k with 2^k * 32768 >= magnitude, k within :data:`CELL_EXPONENTS`."""
    k = int(np.ceil(np.log2(max(magnitude, 1e-30)))) - 15
    return float(2.0 ** int(np.clip(k, *CELL_EXPONENTS)))


def plan_op(plan, op: tfl.Operator, rule_: OpRule) -> str:
    """Assign params (``plan.params``) for an op of :data:`KINDS`; '' or why not."""
    plan.widths[id(op)] = False
    if rule_ is STATE_FILL:
        lstm, index = _state_reader(op, plan.consumers)
        q = state_params(plan, lstm, index)
        if q is None:
            return f"no calibration range for the LSTM state {op.outputs[0].name!r}"
        plan.params[id(op.outputs[0])] = q
        return ""
    if op.options.get("fused_activation_function", "TANH") != "TANH":
        return "cell activation other than TANH"
    if len(op.inputs) > 20 and any(t is not None for t in op.inputs[20:24]):
        return "layer-norm LSTM"
    if op.inputs[16] is not None:
        return "projection LSTM"
    for i in (*WEIGHTS, *BIASES, *(p for p in PEEPHOLES if op.inputs[p] is not None)):
        if not is_float_constant(op.inputs[i]):
            return f"input {i} of the LSTM is not a float32 constant"
    for i in (H_STATE, C_STATE):
        if id(op.inputs[i]) not in plan.params:
            return "an LSTM state not written by an integer FILL"
    x = op.inputs[X]
    if not is_float_activation(x):
        return f"input {x.name!r} is not a float activation"
    rng = plan.range_of(x)
    if rng is None:
        return f"no calibration range for input {x.name!r}"
    home = plan.params.get(id(x))
    if home is None:
        home = plan.params[id(x)] = params_from_range(*rng, False)
    if home.int16:  # stored wide by the op before it: read through an int8 twin
        plan.twins[(id(x), False)] = params_from_range(*rng, False)
    y_q = state_params(plan, op, H_STATE)
    if y_q is None:
        return f"no calibration range for output {op.outputs[0].name!r}"
    plan.params[id(op.outputs[0])] = y_q
    return ""


# -- rewrite ----------------------------------------------------------------------------------


def rewrite_op(rw, op: tfl.Operator, rule_: OpRule) -> list[tfl.Operator]:
    """The integer operator(s) replacing ``op`` (``rw``: ``integer._Rewrite``)."""
    if rule_ is STATE_FILL:
        out = rw.quantized[id(op.outputs[0])]
        out.is_variable = True
        q = rw.plan.params[id(op.outputs[0])]
        dtype = np.int16 if q.int16 else np.int8
        op.inputs[1] = tfl.Tensor(
            f"{out.name}/zero",
            dtype,
            (),
            data=np.array(q.zero_point, dtype),
            quantization=q.quantization(),
        )
        op.outputs[:] = [out]
        return [op]
    before: list[tfl.Operator] = []
    x = op.inputs[X]
    x_q = rw.quantized[id(x)]
    want = rw.plan.read_params(op, x)
    if rw.plan.params[id(x)] != want:
        x_q = rw._requantize(x, x_q, want, op, before)
    s_x = want.scale
    w_scales = {}
    for i in WEIGHTS:
        op.inputs[i], w_scales[i] = _symmetric(op.inputs[i], np.int8)
    for i in PEEPHOLES:
        if op.inputs[i] is not None:
            op.inputs[i], _ = _symmetric(op.inputs[i], np.int16)
    for gate, i in enumerate(BIASES):
        op.inputs[i] = _bias(op.inputs[i], s_x * w_scales[WEIGHTS[gate]])
    h_var, c_var = op.inputs[H_STATE], op.inputs[C_STATE]
    op.inputs[X] = x_q
    op.inputs[H_STATE] = rw.quantized[id(h_var)]
    op.inputs[C_STATE] = rw.quantized[id(c_var)]
    for i in (H_STATE, C_STATE):
        op.inputs[i].is_variable = True
    y = op.outputs[0]
    op.outputs[:] = [rw.quantized[id(y)]]
    y_q = rw.plan.params[id(y)]
    gate = QParams(GATE_SCALE, 0, True)
    op.intermediates = [
        *(_param_tensor(f"{y.name}/gate{g}", np.int16, gate) for g in range(4)),
        _param_tensor(f"{y.name}/hidden", np.int8, y_q),
    ]
    op.options["asymmetric_quantize_inputs"] = False
    return [*before, op]


def _param_tensor(name: str, dtype, q: QParams) -> tfl.Tensor:
    return tfl.Tensor(name, dtype, (0,), quantization=q.quantization())


def _symmetric(t: tfl.Tensor, dtype) -> tuple[tfl.Tensor, float]:
    """Per-tensor symmetric integer weight (the kernel reads one scale per weight)."""
    qmax = float(np.iinfo(dtype).max)
    peak = float(np.abs(t.data).max(initial=0.0))
    scale = float(np.float32(peak / qmax)) if peak > 0 else 1.0
    values = np.clip(np.rint(t.data.astype(np.float64) / scale), -qmax, qmax).astype(dtype)
    quant = tfl.Quantization(scale=np.array([scale], np.float32), zero_point=np.zeros(1, np.int64))
    name = f"{t.name}/{np.dtype(dtype).name}"
    return tfl.Tensor(name, dtype, t.shape, data=values, quantization=quant), scale


def _bias(t: tfl.Tensor, scale: float) -> tfl.Tensor:
    info = np.iinfo(np.int32)
    q = np.clip(np.rint(t.data.astype(np.float64) / scale), info.min, info.max).astype(np.int32)
    quant = tfl.Quantization(scale=np.array([scale], np.float32), zero_point=np.zeros(1, np.int64))
    return tfl.Tensor(f"{t.name}/int32", np.int32, t.shape, data=q, quantization=quant)


# -- calibration ------------------------------------------------------------------------------


def kernels(sub: tfl.Subgraph) -> list[tfl.Operator]:
    """The float sequence-LSTM ops of ``sub`` whose state ranges :func:`state_ranges` gives."""
    return [
        op
        for op in sub.operators
        if op.opcode == OPCODE
        and is_float_activation(op.inputs[X])
        and all(is_float_constant(op.inputs[i]) for i in (*WEIGHTS, *BIASES))
    ]


def state_ranges(op: tfl.Operator, x: np.ndarray) -> dict[str, tuple[float, float]]:
    """{cell state name: (-m, m)} with m the largest |c| over every step of the float
    recurrence on kernel input ``x`` (states from zero, as the integer kernel starts)."""
    time_major = op.options.get("time_major", True)
    x = np.asarray(x, np.float64)
    if not time_major:
        x = np.swapaxes(x, 0, 1)
    w = [op.inputs[i].data.astype(np.float64) for i in WEIGHTS]
    b = [op.inputs[i].data.astype(np.float64) for i in BIASES]
    p = [None if op.inputs[i] is None else op.inputs[i].data.astype(np.float64) for i in PEEPHOLES]
    hidden = w[0].shape[0]
    batch = x.shape[1]
    h = np.zeros((batch, hidden))
    c = np.zeros((batch, hidden))
    peak = 0.0

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    for step in x:
        pre = [step @ w[g].T + h @ w[4 + g].T + b[g] for g in range(4)]
        i_g = sigmoid(pre[0] + (0 if p[0] is None else p[0] * c))
        f_g = sigmoid(pre[1] + (0 if p[1] is None else p[1] * c))
        c = f_g * c + i_g * np.tanh(pre[2])
        o_g = sigmoid(pre[3] + (0 if p[2] is None else p[2] * c))
        h = o_g * np.tanh(c)
        peak = max(peak, float(np.abs(c).max(initial=0.0)))
    return {op.inputs[C_STATE].name: (-peak, peak)}
