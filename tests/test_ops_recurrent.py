"""LSTM / GRU / RNN: every lowered form (LSTM sequence kernel, WHILE loop, unrolled) against
onnxruntime.

Covers the LSTM kernel's attribute space (directions, layouts, batch sizes, initial states,
peepholes, stacked layers, repeated invocations with and without XNNPACK) and the constraints
that send a node to the loop; then directions, both layouts, constant and runtime weights/states, peepholes, clip,
input_forget, every recurrent activation, linear_before_reset, sequence_lens masking, output
subsets, a stacked bidirectional model, and the refusals.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from harness import check_conversion, convert, expect_refusal, make_model, op_histogram
from onnx import helper, numpy_helper

from onnx2tflite_direct import dynamic_shapes
from onnx2tflite_direct import validate as V
from onnx2tflite_direct.lowering import recurrent, recurrent_kernels

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
OUTPUTS = {"LSTM": ("Y", "Y_h", "Y_c"), "GRU": ("Y", "Y_h"), "RNN": ("Y", "Y_h")}


def recurrent_model(
    op="LSTM",
    direction="forward",
    layout=0,
    seq=3,
    batch=2,
    size=4,
    hidden=3,
    runtime=(),
    optional=("B",),
    outputs=None,
    lens=None,
    seed=0,
    **attrs,
):
    """One recurrent node; ``runtime`` names inputs fed at runtime, the rest are initializers.

    Returns (model, feeds) with every graph input fed.
    """
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    state_shape = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    arrays = {
        "X": rng.standard_normal((seq, batch, size)).astype(np.float32),
        "W": (rng.standard_normal((dirs, g * hidden, size)) * 0.5).astype(np.float32),
        "R": (rng.standard_normal((dirs, g * hidden, hidden)) * 0.5).astype(np.float32),
        "B": (rng.standard_normal((dirs, 2 * g * hidden)) * 0.5).astype(np.float32),
        "initial_h": rng.standard_normal((dirs, batch, hidden)).astype(np.float32),
        "initial_c": rng.standard_normal((dirs, batch, hidden)).astype(np.float32),
        "P": (rng.standard_normal((dirs, 3 * hidden)) * 0.5).astype(np.float32),
    }
    if layout:  # the same data, batch-major: the layout-0 model is the reference
        for name in ("X", "initial_h", "initial_c"):
            arrays[name] = arrays[name].transpose(1, 0, 2)
    if lens is not None:
        arrays["sequence_lens"] = np.asarray(lens, np.int32)
    order = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
    present = {"X", "W", "R", *optional} | ({"sequence_lens"} if lens is not None else set())
    names = [n if n in present else "" for n in order]
    while not names[-1]:
        names.pop()
    outs = list(outputs or OUTPUTS[op])
    node_outs = [o if o in outs else "" for o in OUTPUTS[op]]
    while not node_outs[-1]:
        node_outs.pop()
    node = helper.make_node(
        op, names, node_outs, hidden_size=hidden, direction=direction, layout=layout, **attrs
    )
    y_shape = (batch, seq, dirs, hidden) if layout else (seq, dirs, batch, hidden)
    out_shapes = {"Y": y_shape, "Y_h": state_shape, "Y_c": state_shape}
    graph_inputs = ["X", *[n for n in names if n and n in runtime]]
    inits = {n: arrays[n] for n in names if n and n not in graph_inputs}
    model = make_model(
        [node],
        inputs=[(n, arrays[n].dtype, arrays[n].shape) for n in graph_inputs],
        outputs=[(o, np.float32, out_shapes[o]) for o in outs],
        initializers=inits,
        opset=14,
    )
    return model, {n: arrays[n] for n in graph_inputs}


BATCH_MAJOR = {"X": (1, 0, 2), "initial_h": (1, 0, 2), "initial_c": (1, 0, 2)}
FROM_SEQ_MAJOR = {"Y": (2, 0, 1, 3), "Y_h": (1, 0, 2), "Y_c": (1, 0, 2)}


def check(model_and_feeds, **options):
    """LiteRT vs onnxruntime; onnxruntime has no layout=1, so that reference is the layout-0
    model on transposed feeds, its outputs transposed back."""
    model, feeds = model_and_feeds
    layout = next((a.i for a in model.graph.node[0].attribute if a.name == "layout"), 0)
    if not layout:
        return check_conversion(model, feeds=feeds, rtol=1e-3, **options)
    reference = copy.deepcopy(model)
    node = reference.graph.node[0]
    next(a for a in node.attribute if a.name == "layout").i = 0
    for value in [*reference.graph.input, *reference.graph.output]:
        perm = BATCH_MAJOR.get(value.name) or FROM_SEQ_MAJOR.get(value.name)
        if perm:
            dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
            inverse = np.argsort(perm) if value.name in FROM_SEQ_MAJOR else perm
            for k, p in enumerate(inverse):
                value.type.tensor_type.shape.dim[k].dim_value = dims[p]
    for init in reference.graph.initializer:
        if init.name in BATCH_MAJOR:
            arr = numpy_helper.to_array(init).transpose(BATCH_MAJOR[init.name])
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr), init.name))
    ref_feeds = {
        k: v.transpose(BATCH_MAJOR[k]) if k in BATCH_MAJOR else v for k, v in feeds.items()
    }
    expected = V.run_onnxruntime(reference, ref_feeds)
    res = convert(model, **options)
    actual = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"))
    assert sorted(actual) == sorted(expected)
    for name, ref in expected.items():
        want = ref.transpose(FROM_SEQ_MAJOR[name])
        got = actual[name]
        assert got.shape == want.shape, (name, got.shape, want.shape)
        atol = 1e-5 * max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=atol, err_msg=name)
    return SimpleNamespace(ops=op_histogram(res.tflite_bytes))


ALL_OPTIONAL = ("B", "initial_h", "initial_c", "P")


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("unroll", [False, True])
def test_directions_and_layouts(op, direction, layout, unroll):
    optional = ("B", "initial_h") + (("initial_c",) if op == "LSTM" else ())
    chk = check(recurrent_model(op, direction, layout, optional=optional), unroll_rnn=unroll)
    assert "CUSTOM" not in chk.ops
    dirs = 2 if direction == "bidirectional" else 1
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in chk.ops  # 3 steps: the loop is faster
    # X . W for every step is one FULLY_CONNECTED per direction, plus one per step for R
    # (unrolled; layout=1 always unrolls) or one in each direction's WHILE body.
    looped = not unroll and layout == 0
    per_step = dirs * (2 if op == "GRU" else 1)
    assert chk.ops["FULLY_CONNECTED"] == dirs + (per_step if looped else 3 * per_step)
    assert chk.ops["WHILE"] == (dirs if looped else 0)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize(
    "runtime",
    [("W", "R"), ("B",), ("initial_h", "initial_c", "P"), ALL_OPTIONAL + ("W", "R")],
)
def test_runtime_operands(op, runtime):
    optional = ALL_OPTIONAL if op == "LSTM" else ("B", "initial_h")
    check(recurrent_model(op, "bidirectional", runtime=runtime, optional=optional))


@pytest.mark.parametrize("optional", [(), ("B",), ("initial_h",), ("B", "initial_c")])
def test_lstm_optional_inputs(optional):
    check(recurrent_model("LSTM", "forward", optional=optional))


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("input_forget", [0, 1])
@pytest.mark.parametrize("peepholes", [False, True])
def test_lstm_peepholes_and_input_forget(direction, input_forget, peepholes):
    optional = ("B", "initial_h", "initial_c") + (("P",) if peepholes else ())
    check(recurrent_model("LSTM", direction, optional=optional, input_forget=input_forget))


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("clip", [0.5, 2.0])
def test_clip(op, clip):
    optional = ALL_OPTIONAL if op == "LSTM" else ("B", "initial_h")
    check(recurrent_model(op, "bidirectional", optional=optional, clip=clip, seed=3))


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("runtime", [(), ("W", "R", "B")])
def test_gru_linear_before_reset(lbr, direction, runtime):
    model = recurrent_model(
        "GRU", direction, optional=("B", "initial_h"), runtime=runtime, linear_before_reset=lbr
    )
    check(model)


ACTIVATIONS = [
    ("Relu", None, None),
    ("Tanh", None, None),
    ("Sigmoid", None, None),
    ("Affine", 0.7, -0.2),
    ("LeakyRelu", 0.3, None),
    ("ThresholdedRelu", 0.4, None),
    ("ScaledTanh", 1.5, 0.8),
    ("HardSigmoid", 0.3, 0.4),
    ("Elu", 0.6, None),
    ("Elu", None, None),
    ("Softsign", None, None),
    ("Softplus", None, None),
]


@pytest.mark.parametrize("name,alpha,beta", ACTIVATIONS)
def test_rnn_activations(name, alpha, beta):
    attrs = {"activations": [name, "Tanh"]}
    if alpha is not None:
        attrs["activation_alpha"] = [alpha]
    if beta is not None:
        attrs["activation_beta"] = [beta]
    check(recurrent_model("RNN", "bidirectional", optional=("B", "initial_h"), **attrs))


@pytest.mark.parametrize(
    "acts,alphas,betas",
    [
        (["HardSigmoid", "Tanh", "Tanh"], [0.25], [0.45]),
        (["Sigmoid", "ScaledTanh", "Softsign"], [1.2], [0.9]),
        (["HardSigmoid", "LeakyRelu", "Elu"], None, None),  # defaults
        (["Sigmoid", "Elu", "ThresholdedRelu"], [0.5, 0.2], None),
    ],
)
def test_lstm_activations(acts, alphas, betas):
    attrs = {"activations": acts}
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    check(recurrent_model("LSTM", "forward", optional=ALL_OPTIONAL, **attrs))


@pytest.mark.parametrize("lbr", [0, 1])
def test_gru_activations(lbr):
    attrs = {"activations": ["HardSigmoid", "Softsign", "Sigmoid", "Relu"]}
    check(
        recurrent_model(
            "GRU", "bidirectional", optional=("B", "initial_h"), linear_before_reset=lbr, **attrs
        )
    )


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("lens_runtime", [False, True])
@pytest.mark.parametrize("unroll", [False, True])
def test_sequence_lens_masking(op, direction, lens_runtime, unroll, monkeypatch):
    monkeypatch.setattr(recurrent, "UNROLL_STEPS", range(0))  # unroll only when asked
    optional = ("B", "initial_h") + (("initial_c",) if op == "LSTM" else ())
    runtime = ("sequence_lens",) if lens_runtime else ()
    model = recurrent_model(
        op, direction, seq=4, batch=3, optional=optional, lens=[4, 1, 2], runtime=runtime
    )
    chk = check(model, unroll_rnn=unroll)
    # LESS builds run-time masks; each WHILE condition adds one more.
    loop_tests = 0 if unroll else (2 if direction == "bidirectional" else 1)
    assert "SELECT_V2" in chk.ops and chk.ops["LESS"] == int(lens_runtime) + loop_tests


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("lens_runtime", [False, True])
def test_sequence_lens_zero_gives_zero_states(op, lens_runtime):
    """onnxruntime: an empty sequence has Y = 0 and zero final states (not initial_h)."""
    optional = ("B", "initial_h") + (("initial_c",) if op == "LSTM" else ())
    runtime = ("sequence_lens",) if lens_runtime else ()
    check(recurrent_model(op, "bidirectional", optional=optional, lens=[0, 2], runtime=runtime))


@pytest.mark.parametrize("layout", [0, 1])
def test_sequence_lens_full_is_no_mask(layout):
    chk = check(recurrent_model("LSTM", "bidirectional", layout, lens=[3, 3]))
    assert "SELECT_V2" not in chk.ops


@pytest.mark.parametrize("outputs", [("Y",), ("Y_h",), ("Y_c",), ("Y", "Y_c"), ("Y_h", "Y_c")])
@pytest.mark.parametrize("kernel", [False, True])
def test_lstm_output_subsets(outputs, kernel, monkeypatch):
    monkeypatch.setattr(recurrent_kernels, "MODE", "always" if kernel else "never")
    model = recurrent_model("LSTM", "bidirectional", layout=1, outputs=outputs, seq=4)
    chk = check(model)
    assert chk.ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == (2 if kernel else 0)
    assert "PACK" in chk.ops


@pytest.mark.parametrize("batch,seq", [(1, 1), (1, 5), (4, 2)])
def test_batch_and_sequence_sizes(batch, seq):
    check(recurrent_model("LSTM", "bidirectional", batch=batch, seq=seq, optional=ALL_OPTIONAL))
    check(recurrent_model("GRU", "reverse", layout=1, batch=batch, seq=seq, linear_before_reset=1))


def test_stacked_bidirectional_lstm():
    check_conversion(_stacked_bilstm(), rtol=1e-3)


def _stacked_bilstm():
    """Two bidirectional LSTM layers: layer 1's Y [S, 2, B, H] feeds layer 2 as [S, B, 2H]."""
    rng = np.random.default_rng(7)
    seq, batch, size, hidden = 5, 2, 4, 3

    def weights(prefix, in_size):
        return {
            f"{prefix}_W": (rng.standard_normal((2, 4 * hidden, in_size)) * 0.4).astype(np.float32),
            f"{prefix}_R": (rng.standard_normal((2, 4 * hidden, hidden)) * 0.4).astype(np.float32),
            f"{prefix}_B": (rng.standard_normal((2, 8 * hidden)) * 0.4).astype(np.float32),
        }

    inits = {**weights("l1", size), **weights("l2", 2 * hidden)}
    inits["perm_shape"] = np.array([seq, batch, 2 * hidden], np.int64)
    nodes = [
        helper.make_node(
            "LSTM",
            ["X", "l1_W", "l1_R", "l1_B"],
            ["Y1"],
            hidden_size=hidden,
            direction="bidirectional",
        ),
        helper.make_node("Transpose", ["Y1"], ["Y1t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["Y1t", "perm_shape"], ["X2"]),
        helper.make_node(
            "LSTM",
            ["X2", "l2_W", "l2_R", "l2_B"],
            ["Y2", "Y2_h"],
            hidden_size=hidden,
            direction="bidirectional",
        ),
    ]
    model = make_model(
        nodes,
        inputs=[("X", np.float32, (seq, batch, size))],
        outputs=[
            ("Y2", np.float32, (seq, 2, batch, hidden)),
            ("Y2_h", np.float32, (2, batch, hidden)),
        ],
        initializers=inits,
        opset=14,
    )
    return model


@pytest.mark.parametrize(
    "kwargs,code",
    [
        ({"activations": ["Gelu", "Tanh", "Tanh"]}, "unsupported_attribute_value"),
        ({"activations": ["Sigmoid", "Tanh"]}, "unsupported_attribute_value"),
        # onnxruntime and the ONNX operators disagree on these defaults: explicit values only
        ({"activations": ["Sigmoid", "Affine", "Tanh"]}, "unsupported_attribute_value"),
        ({"activations": ["Sigmoid", "Tanh", "ScaledTanh"]}, "unsupported_attribute_value"),
        ({"activations": ["ThresholdedRelu", "Tanh", "Tanh"]}, "unsupported_attribute_value"),
        ({"lens": [3, -1]}, "unsupported_attribute_value"),
        ({"lens": [4, 3]}, "unsupported_attribute_value"),
    ],
)
def test_refusals(kwargs, code):
    model, _ = recurrent_model("LSTM", "forward", **kwargs)
    expect_refusal(model, code)


def test_float64_refused():
    node = helper.make_node("RNN", ["X", "W", "R"], ["", "Y_h"], hidden_size=2)
    model = make_model(
        [node],
        inputs=[("X", np.float64, (2, 1, 3))],
        outputs=[("Y_h", np.float64, (1, 1, 2))],
        initializers={"W": np.ones((1, 2, 3)), "R": np.ones((1, 2, 2))},
        opset=14,
    )
    expect_refusal(model, "unsupported_dtype")


# ---- the LSTM sequence kernel (UNIDIRECTIONAL_SEQUENCE_LSTM) ----------------------------------
# Chosen only where measured faster (recurrent_kernels.kernel_is_faster); forced on here so
# every attribute combination is proven. Realistic sizes: enough steps for the recurrence to
# compound errors, hidden states that stay well away from constant.


@pytest.fixture
def kernel_on(monkeypatch):
    monkeypatch.setattr(recurrent_kernels, "MODE", "always")


def kernel_model(direction="forward", layout=0, batch=2, seq=12, initial="absent", peep=False):
    optional = ("B",) + (("initial_h", "initial_c") if initial != "absent" else ())
    optional += ("P",) if peep else ()
    runtime = ("initial_h", "initial_c") if initial == "runtime" else ()
    return recurrent_model(
        "LSTM",
        direction,
        layout,
        seq=seq,
        batch=batch,
        size=6,
        hidden=5,
        optional=optional,
        runtime=runtime,
        seed=seq + batch,
    )


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("initial", ["absent", "constant", "runtime"])
@pytest.mark.parametrize("peep", [False, True])
def test_lstm_kernel_matches_onnxruntime(kernel_on, direction, layout, batch, initial, peep):
    model, feeds = kernel_model(direction, layout, batch, initial=initial, peep=peep)
    chk = check((model, feeds))
    dirs = 2 if direction == "bidirectional" else 1
    assert chk.ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == dirs
    assert "WHILE" not in chk.ops and "FULLY_CONNECTED" not in chk.ops
    # one writer per state tensor and direction, every invocation (UNPACK or FILL)
    writers = chk.ops["UNPACK"] if initial != "absent" else chk.ops["FILL"]
    assert writers == (2 if initial != "absent" else 2 * dirs)


@pytest.mark.parametrize("xnnpack", [True, False])
@pytest.mark.parametrize("initial", ["absent", "runtime"])
def test_lstm_kernel_state_does_not_leak_between_runs(kernel_on, xnnpack, initial):
    """The kernel keeps its state in variable tensors that persist across invocations; ONNX
    starts every run from initial_h/initial_c. Three runs of one interpreter on different
    inputs each match onnxruntime (a leaked state would make runs 2 and 3 differ)."""
    model, feeds = kernel_model("bidirectional", 0, batch=2, initial=initial, peep=True)
    res = convert(model)
    run = V.litert_runner(res.tflite_bytes, res.report.get("io"), use_xnnpack=xnnpack)
    rng = np.random.default_rng(42)
    for _ in range(3):
        fresh = {n: rng.standard_normal(v.shape).astype(np.float32) for n, v in feeds.items()}
        want = V.run_onnxruntime(model, fresh)
        got = run(fresh)
        for name, ref in want.items():
            assert np.std(ref) > 0.05, name  # not a near-constant output
            np.testing.assert_allclose(got[name], ref, rtol=1e-3, atol=1e-5, err_msg=name)


def test_lstm_kernel_long_sequence(kernel_on):
    """200 steps, hidden 32: rounding compounds through the recurrence."""
    model, feeds = recurrent_model(
        "LSTM", "bidirectional", seq=200, batch=2, size=16, hidden=32, optional=ALL_OPTIONAL
    )
    chk = check_conversion(model, feeds=feeds, atol=1e-4, rtol=1e-3)
    assert chk.ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 2


def test_lstm_kernel_full_sequence_lens(kernel_on):
    model = recurrent_model("LSTM", "reverse", seq=4, batch=3, lens=[4, 4, 4], runtime=())
    assert check(model).ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1


@pytest.mark.parametrize(
    "kwargs,constraint",
    [
        ({"clip": 1.5}, "no clip"),
        ({"input_forget": 1}, "input_forget=0"),
        ({"activations": ["HardSigmoid", "Tanh", "Tanh"]}, "default activations"),
        ({"runtime": ("W", "R")}, "constant W, R, B and P"),
        ({"lens": [3, 1]}, "sequence_lens absent or constant full length"),
        ({"lens": [3, 3], "runtime": ("sequence_lens",)}, "sequence_lens absent or constant"),
    ],
)
def test_lstm_kernel_constraints_keep_the_loop(kernel_on, kwargs, constraint):
    """Semantics the kernel cannot express keep the exact loop; the report names the
    constraint that decided."""
    chk = check_conversion(recurrent_model("LSTM", "forward", **kwargs)[0], rtol=1e-3)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in chk.ops and chk.ops["WHILE"] == 1
    notes = [n for row in chk.report["nodes"] for n in row.get("notes", [])]
    assert any(constraint in n for n in notes), notes


def test_lstm_kernel_stacked_bidirectional(kernel_on):
    """Two bidirectional layers, both on the kernel; the glue between them unchanged."""
    model = _stacked_bilstm()
    chk = check_conversion(model, rtol=1e-3)
    assert chk.ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 4 and "WHILE" not in chk.ops


# ---- loop or unrolled: chosen by measurement --------------------------------------------------


def test_unroll_rule_is_identical_at_the_dynamic_shape_samples():
    """A sequence length that changes at run time is lowered at the dynamic-shape samples; the
    form must not differ between them (else the samples' graphs differ and it is refused)."""
    for samples in (dynamic_shapes.BATCH_SAMPLES, dynamic_shapes.SIZE_SAMPLES):
        for hidden in (1, 32, 64, 128, 256):
            for dirs in (1, 2):
                forms = {recurrent.prefer_unrolled(s, hidden, dirs) for s in samples}
                assert forms == {False}, (samples, hidden, dirs)


@pytest.mark.parametrize(
    "op,hidden,seq,unrolled",
    [
        ("GRU", 16, 12, True),  # small cell: the loop's per-step overhead dominates
        ("LSTM", 64, 40, True),
        ("GRU", 128, 4, True),
        ("LSTM", 128, 16, False),  # large R per step: unrolled copies outgrow the cache
        ("GRU", 16, 60, False),  # beyond the unrolled step range
    ],
)
def test_form_follows_the_measured_rule(op, hidden, seq, unrolled):
    model = recurrent_model(op, "forward", seq=seq, batch=2, size=8, hidden=hidden, seed=5)
    chk = check(model)
    assert ("WHILE" not in chk.ops) == unrolled


@pytest.mark.parametrize(
    "hidden,seq,batch,kernel",
    [
        (16, 64, 1, True),  # small cell, more steps than are worth unrolling
        (16, 64, 2, False),  # measured at batch 1 only
        (16, 20, 1, False),  # unrolled instead
        (64, 96, 1, False),  # mid-size cell: the loop is faster up to ~256 steps
        (64, 256, 1, True),
    ],
)
def test_lstm_kernel_chosen_where_measured_faster(hidden, seq, batch, kernel):
    model = recurrent_model(
        "LSTM", "bidirectional", seq=seq, batch=batch, size=8, hidden=hidden, seed=9
    )
    chk = check(model)
    assert ("UNIDIRECTIONAL_SEQUENCE_LSTM" in chk.ops) == kernel


def test_kernel_rule_is_identical_at_the_dynamic_shape_samples():
    for samples in (dynamic_shapes.BATCH_SAMPLES, dynamic_shapes.SIZE_SAMPLES):
        for hidden in (1, 32, 64, 128, 256):
            for batch in (1, *dynamic_shapes.BATCH_SAMPLES):
                forms = {recurrent_kernels.kernel_is_faster(s, hidden, batch) for s in samples}
                assert len(forms) == 1, (samples, hidden, batch)
            # the sequence length as the leading (batch-sampled) dim of a batch-1 input
            forms = {recurrent_kernels.kernel_is_faster(s, hidden, 1) for s in samples}
            assert len(forms) == 1
