"""Attention (opset 23+) and RotaryEmbedding against onnxruntime."""

import numpy as np
import onnx
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import TensorProto, helper

F = np.float32


def _attention_model(shapes, attrs, outputs=("Y",), opset=23, extra=None):
    """shapes: {input name: (dtype, shape)} in ONNX input order (absent ones omitted)."""
    order = ["Q", "K", "V", "attn_mask", "past_key", "past_value", "nonpad_kv_seqlen"]
    last = max(order.index(n) for n in shapes)
    ins = [n if n in shapes else "" for n in order[: last + 1]]
    node = helper.make_node("Attention", ins, list(outputs), **attrs)
    return make_model(
        [node],
        inputs=[(n, dt, s) for n, (dt, s) in shapes.items()],
        outputs=[(o, F, None) for o in outputs if o],
        opset=opset,
        check=False,  # output shapes are left to shape inference
    )


Q4, K4, V4 = (2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)
CASES = {
    "4d": ({"Q": (F, Q4), "K": (F, K4), "V": (F, V4)}, {}),
    "4d_scaled_causal": (
        {"Q": (F, Q4), "K": (F, K4), "V": (F, V4)},
        {"scale": 0.1, "is_causal": 1},
    ),
    "4d_softcap": ({"Q": (F, Q4), "K": (F, K4), "V": (F, V4)}, {"softcap": 2.0}),
    "4d_gqa": ({"Q": (F, (2, 6, 4, 8)), "K": (F, K4), "V": (F, V4)}, {"is_causal": 1}),
    "3d_gqa": (
        {"Q": (F, (2, 4, 48)), "K": (F, (2, 6, 24)), "V": (F, (2, 6, 12))},
        {"q_num_heads": 6, "kv_num_heads": 3},
    ),
    "float_mask_2d": ({"Q": (F, Q4), "K": (F, K4), "V": (F, V4), "attn_mask": (F, (4, 6))}, {}),
    "float_mask_4d": (
        {"Q": (F, Q4), "K": (F, K4), "V": (F, V4), "attn_mask": (F, (2, 1, 4, 6))},
        {},
    ),
    "bool_mask_causal": (
        {"Q": (F, Q4), "K": (F, K4), "V": (F, V4), "attn_mask": (np.bool_, (4, 6))},
        {"is_causal": 1},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_attention(name):
    shapes, attrs = CASES[name]
    check_conversion(_attention_model(shapes, attrs))


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_attention_past_and_qk_output(mode):
    shapes = {
        "Q": (F, Q4),
        "K": (F, K4),
        "V": (F, V4),
        "attn_mask": (F, (4, 11)),
        "past_key": (F, (2, 3, 5, 8)),
        "past_value": (F, (2, 3, 5, 5)),
    }
    attrs = {"qk_matmul_output_mode": mode, "is_causal": int(mode != 2)}
    if mode == 1:
        attrs["softcap"] = 3.0
    model = _attention_model(shapes, attrs, ("Y", "present_key", "present_value", "qk"))
    chk = check_conversion(model)
    assert chk.ops["CONCATENATION"] == 2


def test_attention_nonpad_kv_seqlen():
    shapes = {
        "Q": (F, (2, 2, 3, 8)),
        "K": (F, (2, 2, 6, 8)),
        "V": (F, (2, 2, 6, 8)),
        "nonpad_kv_seqlen": (np.int64, (2,)),
    }
    model = _attention_model(shapes, {"is_causal": 1}, opset=24)
    feeds = {
        "Q": np.random.default_rng(0).standard_normal((2, 2, 3, 8)).astype(F),
        "K": np.random.default_rng(1).standard_normal((2, 2, 6, 8)).astype(F),
        "V": np.random.default_rng(2).standard_normal((2, 2, 6, 8)).astype(F),
        "nonpad_kv_seqlen": np.array([4, 6], np.int64),
    }
    check_conversion(model, feeds=feeds)


def test_attention_fully_masked_rows_are_zero():
    shapes = {
        "Q": (F, (1, 2, 2, 8)),
        "K": (F, (1, 2, 2, 8)),
        "V": (F, (1, 2, 2, 8)),
        "attn_mask": (np.bool_, (2, 2)),
    }
    model = _attention_model(shapes, {})
    rng = np.random.default_rng(0)
    feeds = {
        n: rng.standard_normal(s).astype(F) for n, (_, s) in shapes.items() if n != "attn_mask"
    }
    feeds["attn_mask"] = np.array([[True, False], [False, False]])
    chk = check_conversion(model, feeds=feeds)
    assert np.all(chk.actual["Y"][:, :, 1] == 0)


def test_attention_mode2_with_causal_refused():
    shapes = {"Q": (F, Q4), "K": (F, K4), "V": (F, V4)}
    model = _attention_model(
        shapes, {"qk_matmul_output_mode": 2, "is_causal": 1}, ("Y", "", "", "qk")
    )
    expect_refusal(model, "unsupported_attribute_value")


def test_attention_short_mask_refused():
    shapes = {"Q": (F, Q4), "K": (F, K4), "V": (F, V4), "attn_mask": (F, (4, 4))}
    expect_refusal(_attention_model(shapes, {}), "unsupported_attribute_value")


def test_attention_fp16_refused():
    shapes = {"Q": (np.float16, Q4), "K": (np.float16, K4), "V": (np.float16, V4)}
    model = _attention_model(shapes, {})
    for out in model.graph.output:  # a well-formed fp16 model declares fp16 outputs
        out.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    expect_refusal(model, "unsupported_dtype")


def _rotary_model(x_shape, cache_shape, attrs, with_pos):
    ins = ["x", "cos", "sin"] + (["pos"] if with_pos else [])
    inputs = [("x", F, x_shape), ("cos", F, cache_shape), ("sin", F, cache_shape)]
    if with_pos:
        inputs.append(
            ("pos", np.int64, (x_shape[0], x_shape[-2] if len(x_shape) == 4 else x_shape[1]))
        )
    return make_model(
        [helper.make_node("RotaryEmbedding", ins, ["y"], **attrs)],
        inputs=inputs,
        outputs=[("y", F, x_shape)],
        opset=23,
    )


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rot_dim", [0, 4])
@pytest.mark.parametrize("three_d", [False, True])
def test_rotary_embedding(interleaved, rot_dim, three_d):
    half = (rot_dim or 8) // 2
    x_shape = (2, 3, 16) if three_d else (2, 2, 3, 8)
    attrs = {"interleaved": interleaved, "rotary_embedding_dim": rot_dim}
    if three_d:
        attrs["num_heads"] = 2
    model = _rotary_model(x_shape, (2, 3, half), attrs, with_pos=False)
    check_conversion(model)


def test_rotary_embedding_position_ids():
    model = _rotary_model((2, 2, 3, 8), (10, 4), {"interleaved": 1}, with_pos=True)
    rng = np.random.default_rng(0)
    feeds = {
        "x": rng.standard_normal((2, 2, 3, 8)).astype(F),
        "cos": rng.standard_normal((10, 4)).astype(F),
        "sin": rng.standard_normal((10, 4)).astype(F),
        "pos": np.array([[0, 1, 2], [7, 3, 9]], np.int64),
    }
    check_conversion(model, feeds=feeds)


_ = TensorProto  # keep import for readers building typed value infos
