"""onnxruntime's SVM class probabilities: Platt sigmoids of the pairwise decision values coupled
by ``multiclass_probability`` (``ml_common.h``; libsvm's pairwise coupling, Wu, Lin and Weng
2004), as whole-tensor ops over the batch.

onnxruntime, per row: ``r_ij = clip(1 - logistic(A s + B), 1e-7, 1 - 1e-7)`` for each pair
``i < j`` and ``r_ji = 1 - r_ij``; ``Q_ii = sum_j r_ji^2``, ``Q_ij = -r_ij r_ji``; ``p = 1/k``.
Then up to 100 sweeps: recompute ``Qp`` and ``pQp``; stop once ``max_t |Qp_t - pQp| < 0.005/k``;
else for ``t = 0..k-1`` in turn (Gauss-Seidel: each step sees the previous one's ``p``)
``diff = (pQp - Qp_t) / Q_tt``, ``p_t += diff``, ``p /= 1 + diff`` (onnxruntime updates ``Qp``
and ``pQp`` incrementally inside a sweep; recomputing them from ``p`` is the same arithmetic,
to float32 rounding).

Here every tensor is 2-D (``p`` ``[N, k]``, ``Q`` ``[N, k*k]``), so a step is a handful of
elementwise ops and FULLY_CONNECTED with constant 0/1 weights, all inside XNNPACK:

* ``Qp`` = block sums of ``Q * tile(p)`` and ``pQp = sum(p * Qp)`` (FULLY_CONNECTED for the
  tiling and the sums; pQp repeated k times, so no op broadcasts), ``num = pQp - Qp`` (every
  class's numerator; at a sweep's start it is also the stopping test). From
  :data:`TILED_MAX_CLASSES` + 1 classes up the in-line sweeps instead update ``Qp`` and
  ``pQp`` step by step as onnxruntime does (the tiling is O(k^3) per row);
* ``m = num / D_t`` with ``D_t`` holding ``Q_tt`` at column ``t`` and +inf elsewhere: ``diff``
  at ``t``, exact zeros elsewhere (a true division, as onnxruntime's);
* ``p = (p + m) / (1 + sum(m))``: ADD, one FULLY_CONNECTED (ones, bias 1: exactly
  ``1 + diff``), DIV.

Sweeps: :func:`unrolled_sweeps` are emitted in line, unmasked (realistic rows stop within
them; a row's sweeps past its stop are discarded), then each row takes the ``p`` of its first
check that said stop (SELECT_V2). If a row still goes on, an IF enters a WHILE loop that runs
the rest of onnxruntime's 100 sweeps, one step per iteration, while any row goes on; there a
row that has stopped is left unchanged and never restarts, as onnxruntime leaves its loop.
(LiteRT's WHILE re-plans its subgraphs at every invocation, even for zero iterations: ~3.5 us
here; the IF prepares only the branch it takes, and its else branch has no ops.)

Measured with tools.zoo.run on skl_robust_svc_linear (3 classes, 16 rows, x86-64, 1 thread):
0.61-0.63x onnxruntime's time, from 1.94x with the former per-class op chains (579 ops).
"""

from __future__ import annotations

import numpy as np

from .. import tfl
from .control_flow import cond_subgraph, emit_while, mirror_tensors
from .emit import Emitter

MAX_SWEEPS = 100  # onnxruntime's multiclass_probability loop bound
# In line before the WHILE loop: corpus rows stop within 1-3 sweeps, random and extreme pairwise
# probabilities (k = 3..8) within 4; one WHILE step costs ~20 body ops in LiteRT's reference
# kernels, an in-line sweep ~1 us for k = 3 inside XNNPACK.
UNROLLED_SWEEPS = 3


def unrolled_sweeps(k: int) -> int:
    """In-line sweeps for ``k`` classes: rows of 4+ classes need a 4th sweep often (5-40% of
    random rows), 3-class rows rarely (0.1%); entering the WHILE loop costs far more than an
    in-line sweep."""
    return UNROLLED_SWEEPS if k <= 3 else UNROLLED_SWEEPS + 1


# Up to this many classes a sweep recomputes Qp and pQp from p at every step: block sums of
# Q * tile(p) (FULLY_CONNECTED with 0/1 weights: O(k^3) per row, but 10 ops of a few tens of
# ns). Beyond, a sweep updates them step by step as onnxruntime does (17 ops, O(k^2) per row)
# and the stopping tests use a per-row BATCH_MATMUL. benchmarks/bench_svm_coupling.py (16 rows,
# x86-64, 1 thread, whole model, recompute vs step by step): k = 6 25 vs 25 us, 7 30 vs 29,
# 8 36 vs 32, 10 60 vs 45, 20 997 vs 536.
TILED_MAX_CLASSES = 7
TFLITE_OPS = (
    "LOGISTIC",
    "MAXIMUM",
    "MINIMUM",
    "DIV",
    "ABS",
    "REDUCE_MAX",
    "GREATER_EQUAL",
    "LOGICAL_AND",
    "BROADCAST_TO",
    "SPLIT",
    "WHILE",
    "LESS",
    "REDUCE_ANY",
    "EQUAL",
    "GATHER",
    "FLOOR_MOD",
    "IF",
    "BATCH_MATMUL",
)


def _pairwise_q(ctx, dec, prob_a, prob_b, k, pairs):
    """``Q`` ``[N, k*k]`` (row-major) from the decision values ``[N, pairs]``."""
    e = Emitter(ctx)
    npairs = dec.shape[1]
    # r_ij = clip(1 - logistic(dec * A + B), 1e-7, 1 - 1e-7)
    val = e.op("ADD", e.op("MUL", dec, e.const(prob_a), hint="pa"), e.const(prob_b), hint="t")
    platt = e.op("LOGISTIC", e.op("NEG", val, hint="nval"), hint="platt")
    q = e.op("MAXIMUM", platt, e.const(np.float32(1e-7)), hint="qlo")
    q = e.op("MINIMUM", q, e.const(np.float32(1) - np.float32(1e-7)), hint="q")
    # a NaN decision value stays NaN through the clip (MAXIMUM/MINIMUM drop it): onnxruntime's
    # stopping test then never fires a sweep and the row keeps p = 1/k
    q = e.op("ADD", q, e.op("SUB", platt, platt, hint="nan0"), hint="qnan")
    omq = e.op("SUB", e.const(1.0), q, hint="omq")
    feats = e.concat(
        [
            e.op("MUL", q, omq, hint="qomq"),
            e.op("MUL", omq, omq, hint="omq2"),
            e.op("MUL", q, q, hint="q2"),
        ],
        1,
        "qfeats",
    )
    # Q[i,j] = Q[j,i] = -q(1-q); Q[i,i] += (1-q)^2; Q[j,j] += q^2  (pair (i, j), i < j)
    w = np.zeros((k * k, 3 * npairs), np.float32)
    for p, (i, j) in enumerate(pairs):
        w[i * k + j, p] = w[j * k + i, p] = -1
        w[i * k + i, npairs + p] = 1
        w[j * k + j, 2 * npairs + p] = 1
    return e.dense(feats, e.const(w), None, "Q")


class _Steps:
    """The ops of one check / sweep, emitted into whichever subgraph is current. Every tensor
    is 2-D (``[N, k]``, ``[N, k*k]``, ``[N, 1]``): elementwise ops and FULLY_CONNECTED with
    constant 0/1 weights (tiling, block sums), which XNNPACK runs for a few tens of ns each
    (a per-row BATCH_MATMUL costs ~0.4 us at 3 classes and 16 rows)."""

    def __init__(self, ctx, k: int):
        self.ctx, self.k = ctx, k
        self.e = Emitter(ctx)
        self.checked = {}  # id(p) -> (Qp, pQp) of its stopping test
        self.rows = None  # per class t: Q's row t and Q_tt repeated, [N, k] each
        self.tile = np.zeros((k * k, k), np.float32)  # p_j to position i*k + j
        self.blocks = np.zeros((k, k * k), np.float32)  # sum over j of block i
        for i in range(k):
            for j in range(k):
                self.tile[i * k + j, j] = 1
                self.blocks[i, i * k + j] = 1

    def numerators(self, p, qflat, hint):
        """``pQp - Qp`` ``[N, k]`` for the current ``p`` (``Qp`` and ``pQp`` recomputed)."""
        qp, pqp = self.products(p, qflat, hint)
        return self.e.op("SUB", pqp, qp, hint=f"{hint}_num")

    def products(self, p, qflat, hint):
        """``Qp`` ``[N, k]`` and ``pQp`` repeated k times ``[N, k]``."""
        e, k = self.e, self.k
        if k <= TILED_MAX_CLASSES:  # block sums of Q * tile(p): O(k^3) per row, cheap ops
            tiled = e.dense(p, e.const(self.tile), None, f"{hint}_tiled")
            qp = e.dense(e.op("MUL", qflat, tiled, hint="t"), e.const(self.blocks), None, "Qp")
        else:  # p @ Q per row: O(k^2), ~0.4 us of fixed cost per op
            q3 = self.ctx.reshape(qflat, (qflat.shape[0], k, k), "Q3")
            p3 = self.ctx.reshape(p, (p.shape[0], 1, k), "p3")
            qp = self.ctx.reshape(e.matmul(p3, q3, hint="Qp3"), (p.shape[0], k), "Qp")
        # pQp repeated k times: the SUB needs no broadcast (XNNPACK's is several times slower)
        ones = e.const(np.ones((k, k), np.float32), hint="ones")
        pqp = e.dense(e.op("MUL", p, qp, hint="t"), ones, None, f"{hint}_pQp")
        return qp, pqp

    def error(self, p, qflat):
        """``num = pQp - Qp`` and the stopping test's ``max |num|`` ``[N, 1]``."""
        qp, pqp = self.products(p, qflat, "check")
        self.checked[id(p)] = (qp, pqp)
        num = self.e.op("SUB", pqp, qp, hint="check_num")
        return num, self.e.reduce("REDUCE_MAX", self.e.op("ABS", num, hint="t"), [1], True, "err")

    def going(self, err):
        """onnxruntime goes on unless ``max_error < 0.005 / k``."""
        eps = self.e.const(np.full((1, 1), np.float32(0.005) / np.float32(self.k)), hint="eps")
        return self.e.op("GREATER_EQUAL", err, eps, hint="go", dtype=np.bool_)

    def diagonals(self, qflat):
        """``D`` ``[N, k*k]``: block ``t`` (``D_t``) holds ``Q_tt`` at column ``t``, +inf
        elsewhere; and its blocks ``[N, k]`` one by one."""
        e, k = self.e, self.k
        eye = np.eye(k, dtype=np.float32)
        off = np.where(eye > 0, np.float32(0), np.float32(np.inf)).astype(np.float32)
        d = e.op("MUL", qflat, e.const(eye.reshape(1, -1)), hint="Qdiag")
        d = e.op("ADD", d, e.const(off.reshape(1, -1)), hint="D")
        diag = [self.ctx.temp(np.float32, (d.shape[0], k), f"D{t}") for t in range(k)]
        e.op("SPLIT", e.const(np.array(1, np.int32), np.int32, "axis"), d, out=diag, num_splits=k)
        return d, diag

    def incremental_sweep(self, p, num, qflat, diag):
        """A sweep that updates ``Qp`` and ``pQp`` step by step as onnxruntime does (O(k) work
        per row and step, 17 ops) instead of recomputing them (O(k^2) or more per step)."""
        e, k = self.e, self.k
        n = p.shape[0]
        if self.rows is None:
            qrows = [self.ctx.temp(np.float32, (n, k), f"Qrow{t}") for t in range(k)]
            axis = e.const(np.array(1, np.int32), np.int32, "axis")
            e.op("SPLIT", axis, qflat, out=qrows, num_splits=k)
            w = np.zeros((k * k, k * k), np.float32)  # block t: Q_tt k times
            for t in range(k):
                w[t * k : (t + 1) * k, t * k + t] = 1
            qtt = [self.ctx.temp(np.float32, (n, k), f"Qtt{t}") for t in range(k)]
            e.op("SPLIT", axis, e.dense(qflat, e.const(w), None, "Qtt"), out=qtt, num_splits=k)
            self.rows = list(zip(qrows, qtt, strict=True))
        qp, pqp = self.checked[id(p)]
        ones = e.const(np.ones((k, k), np.float32), hint="ones")
        one, two = e.const(np.float32(1)), e.const(np.float32(2))
        for t, (qrow, qtt) in enumerate(self.rows):
            if t:
                num = e.op("SUB", pqp, qp, hint=f"num{t}")
            m = e.op("DIV", num, diag[t], hint=f"diff{t}")  # diff at column t, zeros elsewhere
            diff = e.dense(m, ones, None, f"diffs{t}")  # diff, k times (exact)
            opd = e.op("ADD", diff, one, hint=f"opd{t}")
            p = e.op("DIV", e.op("ADD", p, m, hint="t"), opd, hint=f"p{t}")
            if t == k - 1:
                break
            pick = np.zeros((k, k), np.float32)
            pick[:, t] = 1
            qp_t = e.dense(qp, e.const(pick), None, f"Qp_t{t}")  # Qp_t, k times
            # onnxruntime: pQp = (pQp + diff (diff Q_tt + 2 Qp_t)) / (1 + diff) / (1 + diff)
            inner = e.op(
                "ADD",
                e.op("MUL", diff, qtt, hint="t"),
                e.op("MUL", qp_t, two, hint="t"),
                hint="t",
            )
            pqp = e.op("ADD", pqp, e.op("MUL", diff, inner, hint="t"), hint="t")
            pqp = e.op("DIV", e.op("DIV", pqp, opd, hint="t"), opd, hint=f"pQp{t}")
            # Qp = (Qp + diff Q[t, :]) / (1 + diff)
            qp = e.op("ADD", qp, e.op("MUL", diff, qrow, hint="t"), hint="t")
            qp = e.op("DIV", qp, opd, hint=f"Qp{t}")
        return p

    def anyone(self, active):
        """Whether any row goes on (a bool scalar)."""
        axes = self.e.const(np.arange(2, dtype=np.int32), np.int32, "all_axes")
        return self.e.op("REDUCE_ANY", active, axes, shape=(), hint="any", keep_dims=False)

    def step(self, p, num, d_t):
        """One Gauss-Seidel step (class ``t``): ``p = (p + m) / (1 + sum(m))``."""
        e, k = self.e, self.k
        m = e.op("DIV", num, d_t, hint="diff")  # diff at column t, exact zeros elsewhere
        ones = e.const(np.ones((k, k), np.float32), hint="ones")
        opd = e.dense(m, ones, e.const(np.ones(k, np.float32), hint="one"), "opd")  # 1 + diff
        return e.op("DIV", e.op("ADD", p, m, hint="pm"), opd, hint="p")

    def sweep(self, p, num, qflat, diag):
        """One Gauss-Seidel pass over the classes; ``num`` belongs to the incoming ``p``."""
        if self.k > TILED_MAX_CLASSES:
            return self.incremental_sweep(p, num, qflat, diag)
        for t in range(self.k):
            if t:
                num = self.numerators(p, qflat, f"step{t}")
            p = self.step(p, num, diag[t])
        return p


def pairwise_coupling(ctx, dec, prob_a, prob_b, k, pairs):
    """``[N, k]`` class probabilities from the pairwise decision values (see the module).

    The in-line sweeps run unmasked (a row's extra sweeps are discarded), so all their
    arithmetic is one XNNPACK partition; the per-row choice comes after it: the ``p`` of the
    first check that said stop (SELECT_V2 from the last sweep back)."""
    e = Emitter(ctx)
    n = dec.shape[0]
    steps = _Steps(ctx, k)
    qflat = _pairwise_q(ctx, dec, prob_a, prob_b, k, pairs)
    d, diag = steps.diagonals(qflat)
    p = e.op(
        "BROADCAST_TO",
        e.const(np.full((1, k), np.float32(1) / np.float32(k))),
        e.const(np.array([n, k], np.int32), np.int32, "shape"),
        shape=(n, k),
        hint="p0",
    )
    ps, errs = [p], []
    unrolled = unrolled_sweeps(k)
    for s in range(unrolled + 1):
        num, err = steps.error(ps[-1], qflat)
        errs.append(err)
        if s < unrolled:
            ps.append(steps.sweep(ps[-1], num, qflat, diag))
    active = [steps.going(errs[0])]
    for err in errs[1:]:
        active.append(e.op("LOGICAL_AND", active[-1], steps.going(err), hint="active"))
    p = ps[-1]
    for s in range(unrolled - 1, -1, -1):  # row stopped at check s: p after s sweeps
        p = e.op("SELECT_V2", active[s], p, ps[s], hint=f"p_at{s}")
    return _if_any_goes_on(ctx, steps, p, active[-1], qflat, ctx.reshape(d, (n, k, k), "D3"))


def _if_any_goes_on(ctx, steps: _Steps, p, active, qflat, d3):
    """IF any row goes on: the WHILE loop (:func:`_remaining_sweeps`), else ``p`` as it is.

    LiteRT's WHILE re-plans its cond and body subgraphs at every invocation, even one of zero
    iterations; IF prepares only the branch it takes, and the else branch here has no ops."""
    drv, e = ctx.driver, steps.e
    state = [p, active, qflat, d3]
    label = f"{ctx.node.label}/coupling"
    then_b = tfl.Subgraph(name=f"{label}/more")
    then_b.inputs = mirror_tensors(drv, state, f"{label}/more/in")
    with drv.emitting_into(then_b):
        then_b.outputs = [_remaining_sweeps(ctx, steps, *then_b.inputs)]
    else_b = tfl.Subgraph(name=f"{label}/done")
    else_b.inputs = mirror_tensors(drv, state, f"{label}/done/in")
    else_b.outputs = [else_b.inputs[0]]
    for sub in (then_b, else_b):
        sub.input_names = [t.name for t in sub.inputs]
        sub.output_names = [t.name for t in sub.outputs]
    return e.op(
        "IF",
        steps.anyone(active),
        *state,
        shape=p.shape,
        dtype=np.float32,
        hint="probs",
        then_subgraph_index=drv.add_subgraph(then_b),
        else_subgraph_index=drv.add_subgraph(else_b),
    )


def _remaining_sweeps(ctx, steps: _Steps, p, active, qflat, d3):
    """WHILE (steps < k * MAX_SWEEPS and any row goes on): one Gauss-Seidel step per iteration
    (class ``t`` = the step count mod k), preceded at ``t = 0`` by the rows' stopping test;
    returns ``p`` ``[N, k]``.

    One step, not one sweep, per iteration: LiteRT's WHILE re-plans (AllocateTensors) and
    releases its body's tensors at every invocation, even when the loop runs zero times, at
    ~75 ns per body op on x86-64; a step body is ~20 ops whatever ``k`` (a sweep's is ~15k)."""
    drv, e, k = ctx.driver, steps.e, steps.k
    n = p.shape[0]
    start = np.array(unrolled_sweeps(k) * k, np.int32)
    init = [ctx.const_tensor(start, "steps"), ctx.const_tensor(np.array(0, np.int32), "t")]
    init += [p, active, qflat, d3]

    def make_cond(emit, inputs):
        below = drv.new_tensor(f"{ctx.node.label}/cond/below", np.bool_, ())
        limit = ctx.const_tensor(np.array(MAX_SWEEPS * k, np.int32), "max_steps")
        emit("LESS", [inputs[0], limit], [below])
        axes = ctx.const_tensor(np.arange(2, dtype=np.int32), "all_axes")
        anyone = drv.new_tensor(f"{ctx.node.label}/cond/any", np.bool_, ())
        emit("REDUCE_ANY", [inputs[3], axes], [anyone], keep_dims=False)
        both = drv.new_tensor(f"{ctx.node.label}/cond/go", np.bool_, ())
        emit("LOGICAL_AND", [below, anyone], [both])
        return both

    cond = cond_subgraph(ctx, init, make_cond)
    label = f"{ctx.node.label}/coupling"
    body = tfl.Subgraph(name=f"{label}/step")
    body.inputs = mirror_tensors(drv, init, f"{label}/step/in")
    count, t, p, active, qflat, d3 = body.inputs
    with drv.emitting_into(body):
        num, err = steps.error(p, qflat)
        at_start = e.op("EQUAL", t, ctx.const_tensor(np.array(0, np.int32), "zero"), hint="t0")
        tested = e.op("LOGICAL_AND", active, steps.going(err), hint="tested")
        active = e.op("SELECT_V2", at_start, tested, active, hint="active")
        stepped = steps.step(p, num, e.gather(d3, t, 1, hint="D_t"))
        p = e.op("SELECT_V2", active, stepped, p, hint="p")
        one = ctx.const_tensor(np.array(1, np.int32), "one")
        t_next = e.op("ADD", t, one, hint="t1")
        t_next = e.op("FLOOR_MOD", t_next, ctx.const_tensor(np.array(k, np.int32), "k"), hint="t")
        count = e.op("ADD", count, one, hint="steps")
    body.outputs = [count, t_next, p, active, qflat, d3]
    return e.reshape(emit_while(ctx, init, cond, body)[2], (n, k), "probs")
