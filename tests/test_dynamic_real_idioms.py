"""Idioms from real models that the default (unpinned) conversion used to refuse, each
reproduced with onnx.helper, converted with every unknown dim left dynamic, run at several
run-time sizes in LiteRT and compared with onnxruntime (dynamic_shapes.py sample plans).

* two inputs whose batch dims have no shared name but are concatenated, so they must agree
  (Keras/tf2onnx word segmenters: ``unk__330`` and ``unk__331``): the batch symbols are
  sampled as one;
* an audio front end that drops a warm-up of samples and frames the rest with a strided
  Conv: nothing is left at the first sample sizes (64, 96), so larger ones are tried;
* a decision the size changes between the first samples (a mean over more values than
  ``MAX_SEQUENTIAL_REDUCTION`` at one of them is split per axis): larger samples agree;
* torch's gather of token-type ids at the position ids (GatherElements with one row of
  indices, or per-row indices along the last axis): lowered without a size-dependent grid;
* a CRNN whose LSTM runs the image columns as its batch: the zero initial state's FILL
  shape is width / 8, no multiple of the width, but the conv's output has that size;
* a decoder reading its last token (``Gather(prefix, -1, axis=1)``): the index, folded to
  ``length - 1`` at each sample, is computed from the run-time length;
* a batch dim declared dynamic but baked to 1 by the exporter (``x.view(1, seq, 2, 3)``):
  converted with a batch of 1 and a warning, the sequence still dynamic;
* a model that accepts no sample size keeps its refusal, naming the node and the pin flags.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import expect_refusal, run_node
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V

RNG = np.random.default_rng(23)


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _check_at_sizes(model, feeds_list):
    res = convert(model)
    sess = ort.InferenceSession(model.SerializeToString())
    names = [o.name for o in sess.get_outputs()]
    for feeds in feeds_list:
        expected = dict(zip(names, sess.run(None, feeds), strict=True))
        actual = V.run_litert(res.tflite_bytes, feeds, res.report["io"])
        sizes = {k: v.shape for k, v in feeds.items()}
        for name, want in expected.items():
            assert np.std(want) > 1e-3, name  # not a near-constant output
            assert actual[name].shape == want.shape, (sizes, name)
            tol = 1e-4 * max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(actual[name], want, rtol=0, atol=tol, err_msg=str(sizes))
    return res


def concatenated_unnamed_batches():
    """tf2onnx style: every input's batch dim is its own unnamed symbol; the features of the
    inputs are concatenated, which only works when those batches agree."""
    w = (RNG.standard_normal((12, 5)) * 0.3).astype(np.float32)
    nodes = [
        helper.make_node("Concat", ["a", "b"], ["ab"], axis=1),
        helper.make_node("MatMul", ["ab", "w"], ["mm"]),
        helper.make_node("Tanh", ["mm"], ["out"]),
    ]
    inputs = [("a", TensorProto.FLOAT, [None, 7]), ("b", TensorProto.FLOAT, [None, 5])]
    return _model(nodes, inputs, [("out", TensorProto.FLOAT, [None, 5])], {"w": w})


def test_unnamed_batch_dims_that_must_agree_are_one_dynamic_dim():
    model = concatenated_unnamed_batches()
    sizes = [1, 2, 7]
    feeds = [
        {
            "a": RNG.standard_normal((n, 7)).astype(np.float32),
            "b": RNG.standard_normal((n, 5)).astype(np.float32),
        }
        for n in sizes
    ]
    res = _check_at_sizes(model, feeds)
    rows = {r["name"]: r for r in res.report["io"]}
    assert rows["a"]["shape_signature"] == [-1, 7]
    assert rows["b"]["shape_signature"] == [-1, 5]
    symbols = res.report["dynamic_shapes"]["symbols"]
    assert len(symbols) == 1 and sorted(map(tuple, symbols[0]["dims"])) == [("a", 0), ("b", 0)]
    assert not any("batch of 1" in w for w in res.report["warnings"])


WARMUP, KERNEL, STRIDE, CHANNELS = 100, 64, 32, 6


def audio_front_end(warmup=WARMUP):
    """silero-VAD style: [batch, samples] audio, a warm-up dropped with Slice, frames from a
    strided Conv1d, a magnitude and a mean over the frames; both the framed features (their
    count follows the length) and the pooled ones are outputs."""
    w = (RNG.standard_normal((CHANNELS, 1, KERNEL)) * 0.2).astype(np.float32)
    inits = {
        "w": w,
        "starts": np.array([warmup], np.int64),
        "ends": np.array([np.iinfo(np.int64).max], np.int64),
        "axes": np.array([1], np.int64),
        "one": np.array([1], np.int64),
    }
    nodes = [
        helper.make_node("Slice", ["audio", "starts", "ends", "axes"], ["tail"]),
        helper.make_node("Unsqueeze", ["tail", "one"], ["chan"]),
        helper.make_node("Conv", ["chan", "w"], ["frames"], strides=[STRIDE]),
        helper.make_node("Abs", ["frames"], ["features"]),
        helper.make_node("ReduceMean", ["features"], ["pooled"], axes=[2], keepdims=0),
    ]
    return _model(
        nodes,
        [("audio", TensorProto.FLOAT, ["batch", "samples"])],
        [
            ("features", TensorProto.FLOAT, ["batch", CHANNELS, None]),
            ("pooled", TensorProto.FLOAT, ["batch", CHANNELS]),
        ],
        inits,
    )


def test_front_end_needing_long_inputs_is_sampled_at_larger_sizes():
    shapes = [(1, 512), (2, 400), (1, 1000), (3, 2048)]
    feeds = [{"audio": RNG.standard_normal(s).astype(np.float32)} for s in shapes]
    res = _check_at_sizes(audio_front_end(), feeds)
    rows = {r["name"]: r for r in res.report["io"]}
    assert rows["audio"]["shape_signature"] == [-1, -1]
    assert sorted(rows["features"]["shape_signature"]) == [-1, -1, CHANNELS]  # batch, frames
    samples = {s["name"]: s["samples"] for s in res.report["dynamic_shapes"]["symbols"]}
    assert min(samples["samples"]) > WARMUP + KERNEL  # the declared 64/96 gave nothing


def test_declared_samples_are_kept_when_the_model_accepts_them():
    """Short enough to run at 64: no retry, the documented samples are reported."""
    model = audio_front_end(warmup=0)
    res = convert(model)
    samples = {s["name"]: s["samples"] for s in res.report["dynamic_shapes"]["symbols"]}
    assert samples["samples"] == [64, 96]


def test_no_sample_size_accepted_keeps_the_refusal_with_the_pin_flags():
    err = expect_refusal(audio_front_end(warmup=5000), "unsupported_attribute_value")
    assert err.node_name  # the operator is named
    assert "Slice" in err.message
    assert "input_shapes=" in err.message  # the API spells the pin flags its own way


MAX_POS, VOCAB, WIDTH = 128, 30, 8


def token_type_gather(per_row_indices: bool):
    """HF BERT/RoBERTa embeddings: the token-type buffer [1, MAX_POS] expanded to the batch
    and read with torch.gather(dim=1) at the position ids: a Slice of the position buffer to
    the run-time sequence length ([1, seq], BERT) or ids computed per row ([batch, seq],
    RoBERTa). The type and word embeddings are added."""
    inits = {
        "types": RNG.integers(0, 2, (1, MAX_POS)).astype(np.int64),
        "positions": np.arange(MAX_POS, dtype=np.int64)[None],
        "type_emb": RNG.standard_normal((2, WIDTH)).astype(np.float32),
        "word_emb": RNG.standard_normal((VOCAB, WIDTH)).astype(np.float32),
        "zero": np.array([0], np.int64),
        "one": np.array([1], np.int64),
        "i0": np.array(0, np.int64),
        "i1": np.array(1, np.int64),
        "max_pos": np.array(MAX_POS, np.int64),
    }
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "i0"], ["b"], axis=0),
        helper.make_node("Gather", ["shape", "i1"], ["s"], axis=0),
        helper.make_node("Unsqueeze", ["b", "zero"], ["b1"]),
        helper.make_node("Unsqueeze", ["s", "zero"], ["s1"]),
        helper.make_node("Concat", ["b1", "one"], ["expand_to"], axis=0),
        helper.make_node("Expand", ["types", "expand_to"], ["buffered"]),
    ]
    if per_row_indices:
        nodes.append(helper.make_node("Mod", ["input_ids", "max_pos"], ["pos"]))
    else:
        nodes.append(helper.make_node("Slice", ["positions", "zero", "s1", "one"], ["pos"]))
    nodes += [
        helper.make_node("GatherElements", ["buffered", "pos"], ["type_ids"], axis=1),
        helper.make_node("Gather", ["type_emb", "type_ids"], ["type_vec"], axis=0),
        helper.make_node("Gather", ["word_emb", "input_ids"], ["word_vec"], axis=0),
        helper.make_node("Add", ["word_vec", "type_vec"], ["out"]),
    ]
    return _model(
        nodes,
        [("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [("out", TensorProto.FLOAT, ["batch", "sequence", WIDTH])],
        inits,
    )


def _ids(batch, seq):
    return {"input_ids": RNG.integers(0, VOCAB, (batch, seq)).astype(np.int64)}


def test_position_gather_from_a_buffer_follows_the_sequence_length():
    """[1, seq] indices: a GATHER of the buffer's first row (was GATHER_ND over a coordinate
    grid sized by the sequence, refused unpinned)."""
    res = _check_at_sizes(
        token_type_gather(per_row_indices=False), [_ids(1, 5), _ids(2, 17), _ids(3, 128)]
    )
    rows = {r["name"]: r for r in res.report["io"]}
    assert rows["out"]["shape_signature"] == [-1, -1, WIDTH]


def test_per_row_gather_along_the_last_axis_follows_batch_and_sequence():
    """[batch, seq] indices into [batch, MAX_POS]: GATHER with batch dims."""
    res = _check_at_sizes(
        token_type_gather(per_row_indices=True), [_ids(1, 7), _ids(4, 12), _ids(2, 33)]
    )
    rows = {r["name"]: r for r in res.report["io"]}
    assert rows["out"]["shape_signature"] == [-1, -1, WIDTH]


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64, np.int8, np.bool_])
def test_one_row_of_indices_is_exact_on_any_axis_and_dtype(axis, dtype):
    """The one-row GatherElements (every non-axis index dim 1), static, negative indices too."""
    data = RNG.standard_normal((3, 5, 4)) * 10
    data = (data > 0) if dtype == np.bool_ else data.astype(dtype)
    ishape = [1, 1, 1]
    ishape[axis] = 6
    n = data.shape[axis]
    idx = RNG.integers(-n, n, ishape).astype(np.int64)
    run_node("GatherElements", {"x": data, "i": idx}, out_shape=tuple(ishape), axis=axis)


def square_classifier():
    """A square input (one symbol for height and width, as paddle2onnx's ``?`` gives) with an
    anisotropic stride, then a global mean: 16x32 = 512 values at 64, 24x48 = 1152 at 96, on
    either side of the split bound, so the first samples' graphs differ."""
    inits = {
        "w": (RNG.standard_normal((6, 3, 4, 2)) * 0.3).astype(np.float32),
        "b": (RNG.standard_normal(6) * 0.1).astype(np.float32),
        "fc": (RNG.standard_normal((6, 3)) * 0.5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[4, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["out"]),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, [1, 3, "S", "S"])],
        [("out", TensorProto.FLOAT, [1, 3])],
        inits,
    )


def test_graphs_that_differ_at_the_first_samples_are_sampled_larger():
    feeds = [{"x": RNG.standard_normal((1, 3, n, n)).astype(np.float32)} for n in (32, 64, 100)]
    res = _check_at_sizes(square_classifier(), feeds)
    samples = {s["name"]: s["samples"] for s in res.report["dynamic_shapes"]["symbols"]}
    assert samples["S"] != [64, 96]


HIDDEN, STEPS = 5, 60  # more steps than the unrolled form takes: the LSTM is a loop


def columns_as_lstm_batch():
    """ddddocr style: a stride-8 conv over the width of STEPS rows, then [STEPS, columns,
    channels] fed to an LSTM as (sequence, batch = columns): its zero initial state is
    [columns, hidden]."""
    inits = {
        "w": (RNG.standard_normal((6, 2, 8)) * 0.3).astype(np.float32),
        "W": (RNG.standard_normal((1, 4 * HIDDEN, 6)) * 0.4).astype(np.float32),
        "R": (RNG.standard_normal((1, 4 * HIDDEN, HIDDEN)) * 0.4).astype(np.float32),
        "B": (RNG.standard_normal((1, 8 * HIDDEN)) * 0.1).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], strides=[8]),
        helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 1]),
        helper.make_node("LSTM", ["t", "W", "R", "B"], ["y"], hidden_size=HIDDEN),
        helper.make_node("Flatten", ["y"], ["out"], axis=3),
    ]
    return _model(
        nodes,
        [("x", TensorProto.FLOAT, [STEPS, 2, "width"])],
        [("out", TensorProto.FLOAT, None)],
        inits,
    )


def test_lstm_state_sized_by_a_conv_output_follows_the_width():
    feeds = [{"x": RNG.standard_normal((STEPS, 2, w)).astype(np.float32)} for w in (40, 64, 203)]
    res = _check_at_sizes(columns_as_lstm_batch(), feeds)
    assert -1 in {r["name"]: r for r in res.report["io"]}["out"]["shape_signature"]


@pytest.mark.parametrize("index", [-1, [-1, -3]])
def test_negative_gather_index_counts_from_the_run_time_end(index):
    """The last token(s) of a [batch, length, 4] sequence, projected."""
    inits = {
        "at": np.array(index, np.int64),
        "proj": (RNG.standard_normal((4, 3)) * 0.5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gather", ["tokens", "at"], ["last"], axis=1),
        helper.make_node("MatMul", ["last", "proj"], ["out"]),
    ]
    model = _model(
        nodes,
        [("tokens", TensorProto.FLOAT, ["batch", "length", 4])],
        [("out", TensorProto.FLOAT, None)],
        inits,
    )
    feeds = [
        {"tokens": RNG.standard_normal((*s, 4)).astype(np.float32)}
        for s in ((1, 3), (2, 64), (3, 150))
    ]
    _check_at_sizes(model, feeds)


def test_batch_baked_to_one_is_converted_at_one_with_a_warning():
    """Reshape to [1, seq, 2, 3] with seq from Shape: any batch but 1 fails in onnxruntime
    too; the batch symbol alone is fixed, the sequence stays dynamic."""
    inits = {
        "head": np.array([1], np.int64),
        "tail": np.array([2, 3], np.int64),
        "i1": np.array(1, np.int64),
        "zero": np.array([0], np.int64),
        "w": (RNG.standard_normal((3, 4)) * 0.5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "i1"], ["s"], axis=0),
        helper.make_node("Unsqueeze", ["s", "zero"], ["s1"]),
        helper.make_node("Concat", ["head", "s1", "tail"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["heads"]),
        helper.make_node("MatMul", ["heads", "w"], ["out"]),
    ]
    model = _model(
        nodes,
        [("x", TensorProto.FLOAT, ["batch", "seq", 6])],
        [("out", TensorProto.FLOAT, None)],
        inits,
    )
    feeds = [{"x": RNG.standard_normal((1, n, 6)).astype(np.float32)} for n in (3, 50, 130)]
    res = _check_at_sizes(model, feeds)
    assert {r["name"]: r for r in res.report["io"]}["x"]["shape_signature"] == [1, -1, 6]
    assert any("batch of 1" in w and "x[0]" in w for w in res.report["warnings"])
