"""onnxruntime-optimized BERTs converted with their batch and sequence dims left dynamic.

The transformer optimizer's EmbedLayerNormalization adds the first S rows of the position
table, and its mask count feeds every com.microsoft Attention (``mask_index_as_bias`` turns it
into a float attention bias over the key positions 0..T-1). At a fixed size both are
constants; with dynamic dims they are computed from the ids' / mask's run-time shape
(``lowering/contrib_norm.py``, ``contrib_masks.py``). Each model is converted once without
pins, run in LiteRT at several sizes (``resize_tensor_input``) and compared with onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import make_model
from onnx import TensorProto, helper

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V

MS = "com.microsoft"
F = np.float32
H, HEADS, VOCAB, POSITIONS = 16, 2, 40, 128  # >= the dynamic samples (64, 96) of a sequence
SIZES = [(1, 5), (2, 9), (3, 16), (2, 33)]


def _rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(F)


def _model(nodes, inputs, outputs, inits):
    return make_model(nodes, inputs, outputs, inits, opset={"": 17, MS: 1}, check=False)


def _tables(rng):
    return {
        "word": _rand(rng, VOCAB, H),
        "pos": _rand(rng, POSITIONS, H),
        "seg": _rand(rng, 2, H),
        "gamma": _rand(rng, H),
        "beta": _rand(rng, H),
    }


def bert_encoder(position_ids: bool):
    """EmbedLayerNormalization (segments, mask count) -> Attention -> Attention, both reading
    the count as mask_index. ``position_ids``: DistilBERT's form, the ids sliced from a
    [1, POSITIONS] buffer up to Shape(ids)[1] (else the op's implicit 0..S-1)."""
    rng = np.random.default_rng(11)
    inits = _tables(rng)
    inits.update(w=_rand(rng, H, 3 * H, scale=0.4), wb=_rand(rng, 3 * H, scale=0.1))
    nodes, eln_in = [], ["ids", "segs", "word", "pos", "seg", "gamma", "beta", "mask"]
    if position_ids:
        inits.update(
            buf=np.arange(POSITIONS, dtype=np.int64)[None],
            zero=np.zeros(1, np.int64),
            axis1=np.ones(1, np.int64),
        )
        nodes += [
            helper.make_node("Shape", ["ids"], ["seq_len"], start=1, end=2),
            helper.make_node("Slice", ["buf", "zero", "seq_len", "axis1"], ["pos64"]),
            helper.make_node("Cast", ["pos64"], ["pos_ids"], to=TensorProto.INT32),
        ]
        eln_in.append("pos_ids")
    nodes += [
        helper.make_node(
            "EmbedLayerNormalization", eln_in, ["emb", "count"], domain=MS, epsilon=1e-12
        ),
        helper.make_node(
            "Attention", ["emb", "w", "wb", "count"], ["a1"], domain=MS, num_heads=HEADS
        ),
        helper.make_node(
            "Attention", ["a1", "w", "wb", "count"], ["y"], domain=MS, num_heads=HEADS
        ),
    ]
    dyn = ["batch", "sequence"]
    inputs = [(n, TensorProto.INT32, dyn) for n in ("ids", "segs", "mask")]
    return _model(nodes, inputs, [("y", TensorProto.FLOAT, [*dyn, H])], inits)


def embeddings_only():
    """EmbedLayerNormalization alone, no segments and no mask: its outputs are the normalized
    sum, the embedding sum and mask_index (zeros, one per batch row)."""
    rng = np.random.default_rng(12)
    inits = _tables(rng)
    eln_in = ["ids", "", "word", "pos", "", "gamma", "beta"]
    node = helper.make_node(
        "EmbedLayerNormalization", eln_in, ["y", "count", "sum"], domain=MS, epsilon=1e-5
    )
    dyn = ["batch", "sequence"]
    outputs = [
        ("y", TensorProto.FLOAT, [*dyn, H]),
        ("count", TensorProto.INT32, ["batch"]),
        ("sum", TensorProto.FLOAT, [*dyn, H]),
    ]
    return _model([node], [("ids", TensorProto.INT32, dyn)], outputs, inits)


def _feeds(rng, b: int, s: int, names) -> dict:
    """Ids over the vocabulary, segments switching mid-row, and masks with padding of a
    different length per row (a 0 mid-row and a 2, which do not count as ones)."""
    feeds = {"ids": rng.integers(0, VOCAB, (b, s)).astype(np.int32)}
    if "segs" in names:
        feeds["segs"] = (np.arange(s)[None] >= rng.integers(1, s + 1, (b, 1))).astype(np.int32)
    if "mask" in names:
        lengths = rng.integers(max(1, s // 2), s + 1, (b, 1))
        mask = (np.arange(s)[None] < lengths).astype(np.int32)
        if s > 4:
            mask[0, 1], mask[-1, 0] = 0, 2
        feeds["mask"] = mask
    return feeds


def _check_at_sizes(model, sizes=SIZES):
    res = convert(model, keep_io_layout=True)
    signatures = {r["name"]: r.get("shape_signature") for r in res.report["io"]}
    assert signatures["ids"] == [-1, -1], signatures  # one file, resizable in both dims
    sess = ort.InferenceSession(model.SerializeToString())
    names = [i.name for i in sess.get_inputs()]
    outs = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(5)
    for b, s in sizes:
        feeds = _feeds(rng, b, s, names)
        expected = dict(zip(outs, sess.run(None, feeds), strict=True))
        actual = V.run_litert(res.tflite_bytes, feeds, res.report["io"])
        for name, want in expected.items():
            got = actual[name]
            assert got.shape == want.shape, ((b, s), name, got.shape, want.shape)
            if want.dtype.kind in "iu":
                np.testing.assert_array_equal(got, want, err_msg=f"{name} at {(b, s)}")
                continue
            assert np.std(want) > 1e-2, name  # outputs that vary with the inputs
            tol = 2e-5 * max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=f"{name} {(b, s)}")
    return res


@pytest.mark.parametrize("position_ids", [False, True], ids=["implicit", "sliced_buffer"])
def test_bert_encoder_with_dynamic_batch_and_sequence(position_ids):
    """Positions, the mask count and the attention bias follow the run-time sizes; the
    padded keys differ per row and per size, so a baked-in length would show."""
    _check_at_sizes(bert_encoder(position_ids))


def test_bert_encoder_integer_mask_form_is_refused_not_wrong():
    """--disable-rewrite mask_index_as_bias keeps Attention's integer mask_index form, whose
    key grid is sized by the sample: refused with the pin flags named, never a wrong file."""
    from onnx2tflite_direct import UnsupportedError

    with pytest.raises(UnsupportedError) as err:
        convert(bert_encoder(False), keep_io_layout=True, disable_rewrites=("mask_index_as_bias",))
    assert err.value.reason_code == "dynamic_shape_unsupported"
    assert "input_shapes" in err.value.message


def test_embeddings_alone_with_zero_mask_index():
    """No mask: mask_index is zeros of the run-time batch; embedding_sum follows both dims."""
    _check_at_sizes(embeddings_only())


def test_pinned_embeddings_keep_constant_positions():
    """With the sizes pinned, the positions stay a constant (no SHAPE / SLICE at run time)."""
    from harness import op_histogram

    res = convert(embeddings_only(), keep_io_layout=True, input_shapes={"ids": (2, 7)})
    ops = op_histogram(bytes(res.tflite_bytes))
    assert "SHAPE" not in ops and "SLICE" not in ops, ops


def quantized_embeddings():
    """QEmbedLayerNormalization (quantize_dynamic's form): uint8 tables with scales and zero
    points, segments and mask; outputs the normalized sum and mask_index."""
    rng = np.random.default_rng(13)
    tables = _tables(rng)
    inits, order = {}, ["ids", "segs"]
    for name in ("word", "pos", "seg", "gamma", "beta"):
        inits[name] = rng.integers(0, 256, tables[name].shape).astype(np.uint8)
        inits[name + "_s"] = np.asarray(rng.uniform(0.005, 0.02), F)
        inits[name + "_z"] = np.asarray(rng.integers(100, 150), np.uint8)
        order.append(name)
    order.append("mask")
    order += [n + "_s" for n in ("word", "pos", "seg", "gamma", "beta")]
    order += [n + "_z" for n in ("word", "pos", "seg", "gamma", "beta")]
    node = helper.make_node(
        "QEmbedLayerNormalization", order, ["y", "count"], domain=MS, epsilon=1e-12
    )
    dyn = ["batch", "sequence"]
    inputs = [(n, TensorProto.INT32, dyn) for n in ("ids", "segs", "mask")]
    outputs = [("y", TensorProto.FLOAT, [*dyn, H]), ("count", TensorProto.INT32, ["batch"])]
    return _model([node], inputs, outputs, inits)


def test_quantized_embeddings_with_dynamic_batch_and_sequence():
    _check_at_sizes(quantized_embeddings())
