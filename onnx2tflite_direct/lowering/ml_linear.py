"""Linear and SVM models of ai.onnx.ml: LinearClassifier, LinearRegressor, SVMClassifier,
SVMRegressor.

Scores are one FULLY_CONNECTED (or a kernel over the support vectors followed by one) and the
labels and post transforms follow onnxruntime's kernels (``linearclassifier.cc``,
``svmclassifier.cc``, ``ml_common.h``), including their one-score conventions:

* LinearClassifier with one coefficient row (two labels) writes ``[1 - p, p]`` with
  ``p = sigmoid(s)`` for LOGISTIC and the raw score ``s`` otherwise (PROBIT, which onnxruntime
  applies to the first column only, is refused); the label is ``labels[1]`` when ``s > 0``.
* A one-target LinearRegressor applies only PROBIT (onnxruntime skips the others there).
* SVMClassifier, support-vector mode without probabilities: the scores are the pairwise
  decision values ``[N, C(C-1)/2]``; labels come from the pairwise votes (first class with the
  most votes); with ``prob_a``/``prob_b`` the scores are onnxruntime's Platt probabilities
  coupled by its iterative pairwise-coupling solver (``svm_coupling``: same 100-sweep bound and
  per-row stopping rule); two classes write ``[-s, s]`` (post_transform NONE) or ``[1 - p, p]``
  (``p`` the sigmoid of ``s`` for LOGISTIC, else ``s``). Linear mode (no support vectors):
  ``x . coef + rho[0]`` per class. A LINEAR kernel's pairwise
  decision values are one FULLY_CONNECTED of ``x`` with the folded weights ``coef . sv``
  (float64, then float32): the kernel over hundreds of support vectors was the bulk of the work.
* Kernels: LINEAR ``x.v``, POLY ``(gamma x.v + coef0)^degree``, RBF ``exp(-gamma |x - v|^2)``,
  SIGMOID ``tanh(gamma x.v + coef0)``.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import onnx_order
from ..registry import lowering
from . import svm_coupling
from .emit import Emitter
from .ml_common import (
    ML_DOMAIN,
    TRANSFORMS,
    argmax_rows,
    as_rows,
    as_text,
    float_input,
    index_where,
    label_table,
    labels_from_index,
    post_transform,
    probit,
    set_output,
)

INPUT_DTYPES = ("float32", "int32", "int64")
KERNELS = ("LINEAR", "POLY", "RBF", "SIGMOID")


def _used(ctx, i: int) -> bool:
    return (
        i < len(ctx.node.outputs)
        and bool(ctx.node.outputs[i])
        and ctx.driver.graph.used(ctx.node.outputs[i])
    )


def fully_connected(ctx, x, weights: np.ndarray, bias: np.ndarray | None, hint="fc"):
    """``x [N, F] @ weights[K, F]^T + bias`` with one FULLY_CONNECTED."""
    e = Emitter(ctx)
    w = e.const(np.ascontiguousarray(weights, np.float32), hint=f"{hint}_w")
    b = None if bias is None else e.const(np.asarray(bias, np.float32), hint=f"{hint}_b")
    return e.dense(x, w, b, hint)


def _labels_check(node, graph):
    if label_table(node.attrs, "classlabels_ints") is None:
        return "unsupported_attribute_value: no classlabels_ints / classlabels_strings"
    return None


def _check_transform(ctx, name):
    if name not in TRANSFORMS:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"post_transform={name!r}")


# ---------------------------------------------------------------------------------------------
# LinearClassifier / LinearRegressor
# ---------------------------------------------------------------------------------------------


@lowering(
    "LinearClassifier",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=INPUT_DTYPES,
    ranks=(1, 2),
    tflite_ops=("FULLY_CONNECTED", "ARG_MAX", "GATHER", "SELECT_V2", "SOFTMAX", "LOGISTIC"),
    notes="int64 or string labels; onnxruntime's one-score conventions; every post_transform",
    extra_check=_labels_check,
)
def lower_linear_classifier(ctx):
    e = Emitter(ctx)
    a = ctx.node.attrs
    coef = np.asarray(a.get("coefficients", []), np.float32)
    intercepts = np.asarray(a.get("intercepts", []) or [], np.float32)
    labels = label_table(a, "classlabels_ints")
    x = as_rows(ctx, float_input(ctx))
    f = x.shape[1]
    k = len(intercepts)
    if k == 0 or coef.size != k * f:
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE,
            f"{coef.size} coefficients for {k} intercepts and {f} features",
        )
    tr = as_text(a.get("post_transform"), "NONE")
    _check_transform(ctx, tr)
    scores = fully_connected(ctx, x, coef.reshape(k, f), intercepts, "scores")
    n = x.shape[0]
    if k == 1:
        s = scores  # [N, 1]
        binary_labels = len(labels) == 2
        if not binary_labels:
            ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE,
                f"one coefficient row with {len(labels)} labels (onnxruntime requires 2)",
            )
        if _used(ctx, 0):
            win = e.op("GREATER", s, e.const(0.0), hint="win", dtype=np.bool_)
            labels_from_index(ctx, index_where(ctx, win), labels, 0)
        if _used(ctx, 1):
            if tr == "PROBIT":
                if binary_labels:
                    ctx.refuse(
                        errors.UNSUPPORTED_ATTRIBUTE_VALUE,
                        "one coefficient row, two labels and post_transform=PROBIT: "
                        "onnxruntime fills only part of the two-column output",
                    )
                s = probit(ctx, s)
            if binary_labels:
                if tr == "LOGISTIC":  # onnxruntime: [1 - sigmoid(s), sigmoid(s)]
                    s = e.op("LOGISTIC", s, hint="sigmoid")
                one_minus = e.op("SUB", e.const(np.ones((1, 1), np.float32)), s, hint="1ms")
                s = e.concat([one_minus, s], 1, "z")
            set_output(ctx, s, 1)
        return
    if _used(ctx, 0):
        if len(labels) < k:
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"{len(labels)} labels for {k} scores")
        labels_from_index(ctx, argmax_rows(ctx, scores), labels[:k], 0)
    if _used(ctx, 1):
        set_output(ctx, post_transform(ctx, scores, tr), 1)
    del n


@lowering(
    "LinearRegressor",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=INPUT_DTYPES,
    ranks=(1, 2),
    tflite_ops=("FULLY_CONNECTED", "SOFTMAX", "LOGISTIC"),
    notes="one target: only PROBIT applies (as onnxruntime)",
)
def lower_linear_regressor(ctx):
    a = ctx.node.attrs
    coef = np.asarray(a.get("coefficients", []), np.float32)
    targets = int(a.get("targets", 1) or 1)
    intercepts = a.get("intercepts")
    x = as_rows(ctx, float_input(ctx))
    f = x.shape[1]
    if coef.size != targets * f:
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE,
            f"{coef.size} coefficients for {targets} targets and {f} features",
        )
    bias = None
    if intercepts is not None and len(intercepts):
        bias = np.asarray(intercepts, np.float32)
        if bias.size != targets:
            ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"{bias.size} intercepts, {targets} targets"
            )
    tr = as_text(a.get("post_transform"), "NONE")
    _check_transform(ctx, tr)
    y = fully_connected(ctx, x, coef.reshape(targets, f), bias, "y")
    if targets == 1:
        if tr == "PROBIT":
            y = probit(ctx, y)
        elif tr != "NONE":
            ctx.note(f"post_transform={tr} with one target: onnxruntime skips it, and so do we")
    else:
        y = post_transform(ctx, y, tr)
    set_output(ctx, y, 0)


# ---------------------------------------------------------------------------------------------
# SVM
# ---------------------------------------------------------------------------------------------


def _kernel_params(a):
    params = list(a.get("kernel_params") or [])
    gamma, coef0, degree = (params + [0.0, 0.0, 0.0])[:3] if params else (0.0, 0.0, 0.0)
    return np.float32(gamma), np.float32(coef0), float(degree)


def kernel(ctx, x, vectors: np.ndarray, kind: str, gamma, coef0, degree, hint="k"):
    """[N, V]: the kernel between each row of ``x`` and each support vector."""
    e = Emitter(ctx)
    if kind == "RBF":
        # |x - v|^2 = |x|^2 - 2 x.v + |v|^2 (the cross term by FULLY_CONNECTED)
        xv = fully_connected(ctx, x, vectors, None, f"{hint}_xv")
        xx = e.reduce("SUM", e.op("MUL", x, x, hint=f"{hint}_x2"), [1], True, f"{hint}_xx")
        vv = np.sum(vectors.astype(np.float64) ** 2, axis=1).astype(np.float32)
        d = e.op("SUB", xx, e.op("MUL", xv, e.const(2.0), hint=f"{hint}_2xv"), hint="t")
        d = e.op("ADD", d, e.const(vv), hint=f"{hint}_d2")
        d = e.op("MAXIMUM", d, e.const(0.0), hint=f"{hint}_d2pos")
        return e.op("EXP", e.op("MUL", d, e.const(-gamma), hint=f"{hint}_g"), hint=hint)
    if kind == "LINEAR":
        return fully_connected(ctx, x, vectors, None, hint)
    scaled = fully_connected(ctx, x, vectors * gamma, np.full(len(vectors), coef0), f"{hint}_lin")
    if kind == "SIGMOID":
        return e.op("TANH", scaled, hint=hint)
    if degree == 2:
        return e.op("MUL", scaled, scaled, hint=hint)
    if degree == 3:
        return e.op("MUL", e.op("MUL", scaled, scaled, hint=f"{hint}_sq"), scaled, hint=hint)
    return e.op("POW", scaled, e.const(np.float32(degree)), hint=hint)


def _svm_check(node, graph):
    kind = as_text(node.attrs.get("kernel_type"), "LINEAR")
    if kind not in KERNELS:
        return f"unsupported_attribute_value: kernel_type={kind!r}"
    return None


@lowering(
    "SVMRegressor",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=("float32",),
    ranks=(1, 2),
    tflite_ops=("FULLY_CONNECTED", "EXP", "TANH", "MUL", "POW", "SELECT_V2"),
    notes="LINEAR/POLY/RBF/SIGMOID kernels, linear mode, one_class (+1/-1)",
    extra_check=_svm_check,
)
def lower_svm_regressor(ctx):
    e = Emitter(ctx)
    a = ctx.node.attrs
    x = as_rows(ctx, float_input(ctx))
    f = x.shape[1]
    coef = np.asarray(a.get("coefficients", []), np.float32)
    rho = np.asarray(a.get("rho", [0.0]), np.float32)
    n_sv = int(a.get("n_supports", 0) or 0)
    kind = as_text(a.get("kernel_type"), "LINEAR")
    gamma, coef0, degree = _kernel_params(a)
    if n_sv > 0:
        sv = np.asarray(a.get("support_vectors", []), np.float32)
        if sv.size != n_sv * f or coef.size != n_sv:
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "support_vectors / coefficients sizes")
        k = kernel(ctx, x, sv.reshape(n_sv, f), kind, gamma, coef0, degree)
        y = fully_connected(ctx, k, coef.reshape(1, n_sv), rho[:1], "y")
    else:
        if coef.size != f:
            ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"{coef.size} coefficients, {f} features"
            )
        y = fully_connected(ctx, x, coef.reshape(1, f), rho[:1], "y")
    if int(a.get("one_class", 0) or 0):
        pos = e.op("GREATER", y, e.const(0.0), hint="pos", dtype=np.bool_)
        y = e.op("SELECT_V2", pos, e.const(1.0), e.const(-1.0), hint="one_class")
    set_output(ctx, y, 0)


def _svc_check(node, graph):
    problem = _svm_check(node, graph) or _labels_check(node, graph)
    if problem:
        return problem
    prob_a, prob_b = node.attrs.get("prob_a") or [], node.attrs.get("prob_b") or []
    if len(prob_a) != len(prob_b):
        return "unsupported_attribute_value: prob_a and prob_b differ in length"
    return None


@lowering(
    "SVMClassifier",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=INPUT_DTYPES,
    ranks=(1, 2),
    tflite_ops=(
        "FULLY_CONNECTED",
        "EXP",
        "TANH",
        "GREATER",
        "SELECT_V2",
        "SUM",
        "ARG_MAX",
        *svm_coupling.TFLITE_OPS,
    ),
    notes=(
        "LINEAR/POLY/RBF/SIGMOID kernels (LINEAR folded into one FULLY_CONNECTED), "
        "support-vector and linear modes, pairwise votes; prob_a/prob_b: Platt probabilities "
        "with onnxruntime's pairwise coupling (its 100-sweep bound and per-row stopping rule)"
    ),
    extra_check=_svc_check,
)
def lower_svm_classifier(ctx):
    e = Emitter(ctx)
    a = ctx.node.attrs
    x = as_rows(ctx, float_input(ctx))
    n, f = x.shape
    labels = label_table(a, "classlabels_ints")
    c = len(labels)
    coef = np.asarray(a.get("coefficients", []), np.float32)
    rho = np.asarray(a.get("rho", []), np.float32)
    per_class = [int(v) for v in a.get("vectors_per_class") or []]
    kind = as_text(a.get("kernel_type"), "LINEAR")
    tr = as_text(a.get("post_transform"), "NONE")
    _check_transform(ctx, tr)
    gamma, coef0, degree = _kernel_params(a)
    if c < 2:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "fewer than 2 class labels")
    all_positive = bool(np.all(coef >= 0))
    if sum(per_class) == 0:  # linear mode: one score per class
        if coef.size != c * f or rho.size < 1:
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "coefficients / rho sizes (linear mode)")
        scores = fully_connected(ctx, x, coef.reshape(c, f), np.full(c, rho[0]), "scores")
        if _used(ctx, 0):
            idx = argmax_rows(ctx, scores)
            if c == 2:  # ChooseClass: the max score decides with the weight-sign rule
                top = e.reduce("REDUCE_MAX", scores, [1], False, "top")
                cut, strict = (0.5, False) if all_positive else (0.0, True)
                win = e.op(
                    "GREATER" if strict else "GREATER_EQUAL",
                    top,
                    e.const(np.float32(cut)),
                    hint="win",
                    dtype=np.bool_,
                )
                second = e.const(np.array([1], np.int32), np.int32, "one")
                idx = e.op("SELECT_V2", win, second, idx, hint="choice")
            labels_from_index(ctx, idx, labels, 0)
        if _used(ctx, 1):
            set_output(ctx, post_transform(ctx, scores, tr), 1)
        return
    # support-vector mode: pairwise decision values
    if len(per_class) != c:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "vectors_per_class does not match labels")
    v = sum(per_class)
    sv = np.asarray(a.get("support_vectors", []), np.float32)
    pairs = [(i, j) for i in range(c - 1) for j in range(i + 1, c)]
    if sv.size != v * f or coef.size < (c - 1) * v or rho.size < len(pairs):
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, "support_vectors / coefficients / rho sizes")
    coef = coef[: (c - 1) * v].reshape(c - 1, v)
    start = np.concatenate([[0], np.cumsum(per_class)]).astype(int)
    w = np.zeros((len(pairs), v), np.float32)
    for p, (i, j) in enumerate(pairs):
        w[p, start[i] : start[i + 1]] = coef[j - 1, start[i] : start[i + 1]]
        w[p, start[j] : start[j + 1]] = coef[i, start[j] : start[j + 1]]
    if kind == "LINEAR":  # sum_v w_pv (x . sv_v) = x . (w sv)_p: one FULLY_CONNECTED
        folded = w.astype(np.float64) @ sv.reshape(v, f).astype(np.float64)
        # x + (x - x): an infinite feature becomes NaN, as the +-inf kernel values of opposite
        # signs make onnxruntime's unfolded sum (folded, it would stay +-inf)
        x = e.op("ADD", x, e.op("SUB", x, x, hint="inf_nan"), hint="x_or_nan")
        dec = fully_connected(ctx, x, folded, rho[: len(pairs)], "decision")
    else:
        k = kernel(ctx, x, sv.reshape(v, f), kind, gamma, coef0, degree)
        dec = fully_connected(ctx, k, w, rho[: len(pairs)], "decision")  # [N, pairs]
    if _used(ctx, 0):
        # votes: pair (i, j) votes i when its value is > 0, else j
        positive = e.op(
            "CAST",
            e.op("GREATER", dec, e.const(0.0), hint="gt", dtype=np.bool_),
            dtype=np.float32,
            hint="gtf",
        )
        vote_i = np.zeros((len(pairs), c), np.float32)
        vote_j = np.zeros((len(pairs), c), np.float32)
        for p, (i, j) in enumerate(pairs):
            vote_i[p, i] = 1
            vote_j[p, j] = 1
        # votes = positive @ (vote_i - vote_j) + sum(vote_j)
        votes = fully_connected(ctx, positive, (vote_i - vote_j).T, vote_j.sum(axis=0), "votes")
        idx = argmax_rows(ctx, votes)
        labels_from_index(ctx, idx, labels, 0)  # ChooseClass with max_weight 0: maxclass
    prob_a = np.asarray(a.get("prob_a") or [], np.float32)
    if _used(ctx, 1) and prob_a.size:
        if prob_a.size < len(pairs):
            ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"{prob_a.size} prob_a for {len(pairs)} pairs"
            )
        prob_b = np.asarray(a.get("prob_b"), np.float32)
        ctx.note(
            "Platt probabilities: onnxruntime's pairwise coupling, "
            f"{svm_coupling.unrolled_sweeps(c)} sweeps in line and a WHILE loop for the rest of "
            f"its {svm_coupling.MAX_SWEEPS} (entered only if a row goes on), with its per-row "
            "stopping rule"
        )
        probs = svm_coupling.pairwise_coupling(
            ctx, dec, prob_a[: len(pairs)], prob_b[: len(pairs)], c, pairs
        )
        set_output(ctx, post_transform(ctx, probs, tr), 1)
    elif _used(ctx, 1):
        if c > 2:
            set_output(ctx, post_transform(ctx, dec, tr), 1)
        elif tr == "PROBIT":
            ctx.refuse(
                errors.UNSUPPORTED_ATTRIBUTE_VALUE,
                "two classes with post_transform=PROBIT: onnxruntime fills one of two columns",
            )
        elif tr == "NONE":
            set_output(ctx, e.concat([e.op("NEG", dec, hint="neg"), dec], 1, "z"), 1)
        else:  # [1 - s, s]; LOGISTIC first squashes s (as onnxruntime)
            s = dec
            if tr == "LOGISTIC":
                s = e.op("LOGISTIC", dec, hint="sigmoid")
            one_minus = e.op("SUB", e.const(np.ones((1, 1), np.float32)), s, hint="1ms")
            set_output(ctx, e.concat([one_minus, s], 1, "z"), 1)
    del n
