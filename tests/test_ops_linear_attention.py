"""LinearAttention and ai.onnx.preview FlexAttention against onnx's reference evaluator.

onnxruntime implements neither op, so these tests convert with the harness, run LiteRT and
compare with ``onnx.reference.ReferenceEvaluator``.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import convert, expect_refusal, make_model, op_histogram
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from onnx2tflite_direct.validate import reference_ulp, run_litert

OPSET = {"": 27}
FLEX_OPSET = {"": 26, "ai.onnx.preview": 1}


def check_against_reference(model, feeds, rtol=1e-4, atol=1e-5):
    """Convert, run LiteRT and the onnx reference on ``feeds``; assert they agree."""
    res = convert(model)
    actual = run_litert(res.tflite_bytes, feeds, res.report.get("io"))
    names = [o.name for o in model.graph.output]
    expected = dict(zip(names, ReferenceEvaluator(model).run(None, feeds), strict=True))
    for name in names:
        e, a = expected[name], actual[name]
        assert a.shape == e.shape and a.dtype == e.dtype, (name, a.shape, e.shape, a.dtype)
        bound = atol * max(1.0, float(np.max(np.abs(e)))) + rtol * np.abs(e.astype(np.float64))
        ulp = reference_ulp(e)  # float16: the reference is only correct to one step
        bound = bound if ulp is None else bound + ulp
        err = np.abs(a.astype(np.float64) - e.astype(np.float64))
        assert np.all(err <= bound), f"{name}: max_abs={err.max():.3g}"
    return res


def _rand(rng, shape, dtype=np.float32, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def linear_model(rule, b, t, hq, hkv, dk, dv, *, past, decay_width, beta_width, dtype, **attrs):
    """A LinearAttention model plus seeded feeds (keys L2-normalised, decay <= 0)."""
    rng = np.random.default_rng(hash((rule, t, hq, hkv, past)) % 2**32)
    feeds = {
        "query": _rand(rng, (b, t, hq * dk), dtype),
        "key": _rand(rng, (b, t, hkv * dk)),
        "value": _rand(rng, (b, t, hkv * dv), dtype),
    }
    k4 = feeds["key"].reshape(b, t, hkv, dk)
    feeds["key"] = (k4 / np.linalg.norm(k4, axis=-1, keepdims=True)).reshape(b, t, -1).astype(dtype)
    names = ["query", "key", "value", "", "", ""]
    if past:
        names[3] = "past_state"
        feeds["past_state"] = _rand(rng, (b, hkv, dk, dv), dtype, 0.5)
    if rule in ("gated", "gated_delta"):
        names[4] = "decay"
        feeds["decay"] = -np.abs(_rand(rng, (b, t, decay_width), dtype, 0.3))
    if rule in ("delta", "gated_delta"):
        names[5] = "beta"
        feeds["beta"] = (1 / (1 + np.exp(-_rand(rng, (b, t, beta_width))))).astype(dtype)
    while names[-1] == "":
        names.pop()
    node = helper.make_node(
        "LinearAttention",
        names,
        ["output", "present_state"],
        q_num_heads=hq,
        kv_num_heads=hkv,
        update_rule=rule,
        **attrs,
    )
    inputs = [(n, dtype, feeds[n].shape) for n in names if n]
    outputs = [("output", dtype, (b, t, hq * dv)), ("present_state", dtype, (b, hkv, dk, dv))]
    return make_model([node], inputs, outputs, opset=OPSET), feeds


@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
@pytest.mark.parametrize("t", [1, 3])
@pytest.mark.parametrize("past", [False, True])
def test_linear_attention_rules(rule, t, past):
    model, feeds = linear_model(
        rule, 2, t, 2, 2, 4, 3, past=past, decay_width=8, beta_width=2, dtype=np.float32
    )
    res = check_against_reference(model, feeds)
    assert "TRANSPOSE" not in op_histogram(res.tflite_bytes)


@pytest.mark.parametrize(
    ("hq", "hkv", "decay_width", "beta_width"),
    [(4, 2, 2, 1), (4, 1, 4, 1), (6, 3, 12, 3)],
)
def test_linear_attention_gqa_and_gate_widths(hq, hkv, decay_width, beta_width):
    dk = 4 if decay_width != hkv else 3
    decay_width = decay_width if decay_width == hkv else hkv * dk
    model, feeds = linear_model(
        "gated_delta",
        1,
        3,
        hq,
        hkv,
        dk,
        2,
        past=True,
        decay_width=decay_width,
        beta_width=beta_width,
        dtype=np.float32,
    )
    check_against_reference(model, feeds)


def test_linear_attention_scale_and_float16():
    model, feeds = linear_model(
        "gated_delta",
        1,
        2,
        2,
        2,
        4,
        4,
        past=True,
        decay_width=2,
        beta_width=2,
        dtype=np.float16,
        scale=0.3,
    )
    check_against_reference(model, feeds, rtol=1e-3)


@settings(max_examples=6, deadline=None)
@given(
    t=st.integers(1, 4),
    hkv=st.integers(1, 2),
    group=st.integers(1, 2),
    dk=st.integers(1, 4),
    dv=st.integers(1, 3),
    rule=st.sampled_from(["linear", "gated", "delta", "gated_delta"]),
)
def test_linear_attention_shapes(t, hkv, group, dk, dv, rule):
    model, feeds = linear_model(
        rule,
        1,
        t,
        hkv * group,
        hkv,
        dk,
        dv,
        past=False,
        decay_width=hkv * dk,
        beta_width=hkv,
        dtype=np.float32,
    )
    check_against_reference(model, feeds)


def test_linear_attention_refuses_float64():
    model, _ = linear_model(
        "linear", 1, 2, 1, 1, 4, 4, past=False, decay_width=0, beta_width=0, dtype=np.float64
    )
    expect_refusal(model, "unsupported_dtype")


# ---------------------------------------------------------------------------------------------
# FlexAttention
# ---------------------------------------------------------------------------------------------


def _mod_graph(name, nodes, initializers=()):
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", "H", "L", "S"]) for n in "xy"]
    return helper.make_graph(nodes, name, [vi[0]], [vi[1]], initializer=list(initializers))


def _scalar(name, value, dtype=TensorProto.FLOAT):
    return helper.make_tensor(name, dtype, [], [value])


def _causal_mod():
    shape_ints = [("q_shape", [1, 1, -1, 1]), ("k_shape", [1, 1, 1, -1])]
    inits = [_scalar(n, v, TensorProto.INT64) for n, v in (("zero", 0), ("one", 1))]
    inits += [helper.make_tensor(n, TensorProto.INT64, [4], v) for n, v in shape_ints]
    inits += [_scalar("neg_inf", -np.inf)]
    nodes = [
        helper.make_node("Shape", ["x"], ["L"], start=2, end=3),
        helper.make_node("Shape", ["x"], ["S"], start=3),
        helper.make_node("Squeeze", ["L"], ["Ls"]),
        helper.make_node("Squeeze", ["S"], ["Ss"]),
        helper.make_node("Range", ["zero", "Ls", "one"], ["qr"]),
        helper.make_node("Range", ["zero", "Ss", "one"], ["kr"]),
        helper.make_node("Reshape", ["qr", "q_shape"], ["qi"]),
        helper.make_node("Reshape", ["kr", "k_shape"], ["ki"]),
        helper.make_node("GreaterOrEqual", ["qi", "ki"], ["mask"]),
        helper.make_node("Where", ["mask", "x", "neg_inf"], ["y"]),
    ]
    return _mod_graph("causal", nodes, inits)


def _softcap_mod():
    nodes = [
        helper.make_node("Div", ["x", "cap"], ["s"]),
        helper.make_node("Tanh", ["s"], ["t"]),
        helper.make_node("Mul", ["t", "cap"], ["y"]),
    ]
    return _mod_graph("softcap", nodes, [_scalar("cap", 2.0)])


def _prob_scale_mod():
    return _mod_graph(
        "prob_scale", [helper.make_node("Mul", ["x", "half"], ["y"])], [_scalar("half", 0.5)]
    )


def flex_model(b, hq, hkv, lq, lk, e, ev, dtype=np.float32, **attrs):
    node = helper.make_node(
        "FlexAttention", ["Q", "K", "V"], ["Y"], domain="ai.onnx.preview", **attrs
    )
    inputs = [
        ("Q", dtype, (b, hq, lq, e)),
        ("K", dtype, (b, hkv, lk, e)),
        ("V", dtype, (b, hkv, lk, ev)),
    ]
    model = make_model([node], inputs, [("Y", dtype, (b, hq, lq, ev))], opset=FLEX_OPSET)
    rng = np.random.default_rng(b * 100 + hq * 10 + lq)
    feeds = {name: _rand(rng, shape, dt) for name, dt, shape in inputs}
    return model, feeds


@pytest.mark.parametrize(
    ("hq", "hkv", "lq", "lk", "ev"), [(2, 2, 3, 5, 4), (4, 2, 2, 3, 6), (3, 1, 4, 4, 2)]
)
@pytest.mark.parametrize("scale", [None, 0.2])
def test_flex_attention_plain(hq, hkv, lq, lk, ev, scale):
    attrs = {} if scale is None else {"scale": scale}
    model, feeds = flex_model(2, hq, hkv, lq, lk, 4, ev, **attrs)
    check_against_reference(model, feeds)


@pytest.mark.parametrize(
    "mods",
    [
        {"score_mod": _causal_mod()},
        {"score_mod": _softcap_mod()},
        {"prob_mod": _prob_scale_mod()},
        {"score_mod": _softcap_mod(), "prob_mod": _prob_scale_mod()},
    ],
    ids=["causal", "softcap", "prob_scale", "both"],
)
def test_flex_attention_inlined_mods(mods):
    model, feeds = flex_model(1, 2, 2, 4, 4, 8, 8, **mods)
    check_against_reference(model, feeds)


def _clamp_mod():
    nodes = [
        helper.make_node("Constant", [], ["floor"], value=_scalar("v", -0.5)),
        helper.make_node("Max", ["x", "floor"], ["y"]),
    ]
    return _mod_graph("clamp", nodes)


def test_flex_attention_constant_node_mod():
    model, feeds = flex_model(1, 2, 2, 3, 5, 4, 4, score_mod=_clamp_mod())
    check_against_reference(model, feeds)


def test_flex_attention_float16():
    model, feeds = flex_model(1, 2, 1, 4, 6, 8, 8, dtype=np.float16)
    check_against_reference(model, feeds, rtol=1e-3)


def test_flex_attention_refuses_non_elementwise_mod():
    mod = _mod_graph("softmax", [helper.make_node("Softmax", ["x"], ["y"], axis=2)])
    model, _ = flex_model(1, 1, 1, 2, 2, 4, 4, score_mod=mod)
    err = expect_refusal(model, "unsupported_attribute_value")
    assert "Softmax" in str(err)


def test_flex_attention_refuses_outer_scope_mod():
    mod = _mod_graph("outer", [helper.make_node("Add", ["x", "Q"], ["y"])])
    model, _ = flex_model(1, 1, 1, 4, 4, 4, 4, score_mod=mod)
    err = expect_refusal(model, "unsupported_attribute_value")
    assert "outer-scope" in str(err)


def test_flex_attention_refuses_float64():
    model, _ = flex_model(1, 1, 1, 2, 2, 4, 4, dtype=np.float64)
    expect_refusal(model, "unsupported_dtype")
