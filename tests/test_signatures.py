"""Several signatures in one file (issue 23): ``signatures=`` / ``--signature`` lower one model
at several input dims, ``merge=`` / ``--merge`` put several models into one file. Every
signature runs through LiteRT's signature runner and is compared with onnxruntime; shared
weights are counted in the file's buffers."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from harness import convert, load_script, make_model
from onnx import helper

from onnx2tflite_direct import errors
from onnx2tflite_direct import signatures as sig
from onnx2tflite_direct.cli import main as cli_main
from onnx2tflite_direct.options import ConvertOptions

RNG_SEED = 23


def _weights(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) / 8


def _projection(w: np.ndarray, bias_seed: int = 1, dims=("batch", "seq")) -> onnx.ModelProto:
    """x [batch, seq, K] @ W [K, N] + b -> Tanh: a weight large enough to count."""
    k, n = w.shape
    return make_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["z"]),
            helper.make_node("Tanh", ["z"], ["y"]),
        ],
        inputs=[("x", np.float32, (*dims, k))],
        outputs=[("y", np.float32, (*dims, n))],
        initializers={"W": w, "b": _weights((n,), bias_seed)},
    )


def _run_signature(tflite: bytes, key: str, feeds: dict) -> dict:
    interp = Interpreter(model_content=bytes(tflite))
    return interp.get_signature_runner(key)(**feeds)


def _reference(model: onnx.ModelProto, feeds: dict) -> dict:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))


def _assert_close(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for name, want in expected.items():
        got = actual[name]
        assert got.shape == want.shape, (name, got.shape, want.shape)
        assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, atol=1e-5 * scale, rtol=1e-4)
        assert float(np.std(want)) > 1e-3  # not a near-constant output


def _buffers_of_size(tflite: bytes, nbytes: int) -> int:
    model = schema.Model.GetRootAs(bytes(tflite), 0)
    return sum(model.Buffers(i).DataLength() == nbytes for i in range(model.BuffersLength()))


def _signature_defs(tflite: bytes) -> dict[str, int]:
    model = schema.Model.GetRootAs(bytes(tflite), 0)
    out = {}
    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        out[sd.SignatureKey().decode()] = sd.SubgraphIndex()
    return out


# ---------------------------------------------------------------------------------------------
# Signatures from shape configurations
# ---------------------------------------------------------------------------------------------


def test_static_and_dynamic_signatures_share_weights_and_match_onnxruntime():
    w = _weights((96, 80), 0)
    model = _projection(w)
    res = convert(
        model,
        signatures={"prefill": {"x": (1, 128, 96)}, "decode": {"x": (1, "?", 96)}},
    )
    tflite = res.tflite_bytes
    assert _signature_defs(tflite) == {"prefill": 0, "decode": 1}
    rng = np.random.default_rng(RNG_SEED)
    for key, shape in (("prefill", (1, 128, 96)), ("decode", (1, 1, 96)), ("decode", (1, 7, 96))):
        feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
        _assert_close(_run_signature(tflite, key, feeds), _reference(model, feeds))
    # the weight is stored once whichever signature reads it ...
    assert _buffers_of_size(tflite, w.nbytes) == 1
    # ... so the file is the single-signature file plus a second subgraph's tables only
    single = convert(model, input_shapes={"x": (1, 128, 96)}).tflite_bytes
    assert len(tflite) < len(single) + w.nbytes // 4
    # a static signature is static, the dynamic one resizable
    interp = Interpreter(model_content=bytes(tflite))
    prefill = interp.get_signature_runner("prefill").get_input_details()["x"]
    decode = interp.get_signature_runner("decode").get_input_details()["x"]
    assert list(prefill["shape_signature"]) == [1, 128, 96]
    assert list(decode["shape_signature"]) == [1, -1, 96]


def test_report_lists_each_signature_with_its_io_and_subgraph():
    model = _projection(_weights((16, 24), 3))
    res = convert(model, signatures={"a": {"x": (2, 4, 16)}, "b": {"x": ("n", "n", 16)}})
    rows = res.report["signatures"]
    assert [(r["name"], r["subgraph_index"]) for r in rows] == [("a", 0), ("b", 1)]
    assert [i["name"] for i in rows[0]["inputs"]] == ["x"]
    assert [o["name"] for o in rows[0]["outputs"]] == ["y"]
    assert rows[0]["inputs"][0]["shape_signature"] == [2, 4, 16]
    assert rows[1]["inputs"][0]["shape_signature"] == [-1, -1, 16]
    # the histogram counts every signature's operators
    assert res.report["tflite_ops"]["TANH"]["count"] == 2
    # a dim name shared by two axes is one size: the runner accepts equal sizes
    feeds = {"x": np.random.default_rng(5).standard_normal((3, 3, 16)).astype(np.float32)}
    _assert_close(_run_signature(res.tflite_bytes, "b", feeds), _reference(model, feeds))


def test_signature_pins_other_inputs_through_input_shapes():
    """A signature names some inputs; ``input_shapes`` pins the others (and loses to it)."""
    w = _weights((32, 32), 4)
    model = make_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Add", ["h", "bias"], ["y"]),
        ],
        inputs=[("x", np.float32, ("b", "s", 32)), ("bias", np.float32, ("b", "s", 32))],
        outputs=[("y", np.float32, ("b", "s", 32))],
        initializers={"W": w},
    )
    res = convert(
        model,
        signatures={"one": {"x": (1, 3, 32)}, "two": {"x": (1, 5, 32)}},
        input_shapes={"bias": (1, 1, 32), "x": (9, 9, 32)},
    )
    rows = {r["name"]: r for r in res.report["signatures"]}
    assert rows["one"]["inputs"][0]["shape_signature"] == [1, 3, 32]
    assert rows["two"]["inputs"][0]["shape_signature"] == [1, 5, 32]
    rng = np.random.default_rng(6)
    feeds = {
        "x": rng.standard_normal((1, 3, 32)).astype(np.float32),
        "bias": rng.standard_normal((1, 1, 32)).astype(np.float32),
    }
    _assert_close(_run_signature(res.tflite_bytes, "one", feeds), _reference(model, feeds))


def _if_model() -> onnx.ModelProto:
    """y = If(flag, x @ W * 2, x @ W + 1): IF with two branch subgraphs per signature."""
    two = helper.make_tensor("two", onnx.TensorProto.FLOAT, [], [2.0])
    one = helper.make_tensor("one", onnx.TensorProto.FLOAT, [], [1.0])
    then_b = helper.make_graph(
        [helper.make_node("Mul", ["h", "two"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", onnx.TensorProto.FLOAT, None)],
        initializer=[two],
    )
    else_b = helper.make_graph(
        [helper.make_node("Add", ["h", "one"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", onnx.TensorProto.FLOAT, None)],
        initializer=[one],
    )
    return make_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("If", ["flag"], ["y"], then_branch=then_b, else_branch=else_b),
        ],
        inputs=[("x", np.float32, ("n", 8)), ("flag", np.bool_, ())],
        outputs=[("y", np.float32, ("n", 8))],
        initializers={"W": _weights((8, 8), 7)},
    )


def test_control_flow_subgraph_indices_are_renumbered_per_signature():
    model = _if_model()
    res = convert(model, signatures={"small": {"x": (2, 8)}, "large": {"x": (6, 8)}})
    defs = _signature_defs(res.tflite_bytes)
    assert defs["small"] == 0 and defs["large"] > defs["small"]
    assert res.report["tflite_ops"].get("IF", {}).get("count") == 2
    rng = np.random.default_rng(8)
    for key, n in (("small", 2), ("large", 6)):
        for flag in (True, False):
            feeds = {
                "x": rng.standard_normal((n, 8)).astype(np.float32),
                "flag": np.array(flag),
            }
            _assert_close(_run_signature(res.tflite_bytes, key, feeds), _reference(model, feeds))


def test_with_input_dims_keeps_model_dim_names_and_refuses_unknown_inputs():
    model = _projection(_weights((4, 4), 9))
    out = sig.with_input_dims(model, {"x": ("?", 3, "?")})
    dims = out.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "x_dim2"]
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim][:1] == ["batch"]
    with pytest.raises(errors.BadInputError, match="no input 'nope'"):
        sig.with_input_dims(model, {"nope": (1,)})
    with pytest.raises(errors.BadInputError, match="rank 3"):
        sig.with_input_dims(model, {"x": (1, 2)})


def test_option_checks():
    model = _projection(_weights((4, 4), 10))
    with pytest.raises(errors.OptionError, match="validate does not work with signatures"):
        convert(model, signatures={"a": {"x": (1, 1, 4)}}, validate=True)
    with pytest.raises(errors.OptionError, match="not an integer"):
        ConvertOptions(signatures={"a": {"x": (1, 1.5, 4)}}).check()
    with pytest.raises(errors.OptionError, match="named by both"):
        ConvertOptions(signatures={"a": {"x": (1, 1, 4)}}, merge={"a": model}).check()
    with pytest.raises(errors.BadInputError, match="signatures b: the model has no input 'z'"):
        convert(model, signatures={"a": {"x": (1, 1, 4)}, "b": {"z": (1,)}})


def test_cli_signature_flags(tmp_path):
    model = _projection(_weights((24, 16), 11))
    path = tmp_path / "proj.onnx"
    onnx.save(model, path)
    out = tmp_path / "out"
    argv = [str(path), "-o", str(out), "-q"]
    code = cli_main([*argv, "--signature", "p:x=1,32,24", "--signature", "d:x=1,?,24"])
    assert code == 0
    tflite = (out / "proj_float32.tflite").read_bytes()
    assert _signature_defs(tflite) == {"p": 0, "d": 1}
    feeds = {"x": np.random.default_rng(12).standard_normal((1, 3, 24)).astype(np.float32)}
    _assert_close(_run_signature(tflite, "d", feeds), _reference(model, feeds))
    # bad values and conflicts are exit 2 with one line naming the flag
    assert cli_main([*argv, "--signature", "p:x=1,32,24", "--signature", "p:x=1,1,24"]) == 2
    assert cli_main([*argv, "--signature", "p:x=1,a-b,24"]) == 2
    assert cli_main([*argv, "--signature", "p:x=1,32,24", "--validate"]) == 2
    assert cli_main([*argv, "--signature", "p:y=1,32,24"]) == 2


def test_parse_signature():
    assert sig.parse_signature("decode:ids=1,1;past=1,4,?,8") == (
        "decode",
        {"ids": (1, 1), "past": (1, 4, "?", 8)},
    )
    assert sig.parse_signature("d:x=-1,past_len") == ("d", {"x": ("?", "past_len")})


# ---------------------------------------------------------------------------------------------
# Signatures from several models
# ---------------------------------------------------------------------------------------------


def _encoder_decoder(shared: np.ndarray):
    """An encoder and a decoder that both read ``shared`` (a tied embedding, say); the decoder
    has a weight of its own and a different input name."""
    k, n = shared.shape
    encoder = _projection(shared, bias_seed=20)
    decoder = make_model(
        [
            helper.make_node("MatMul", ["tokens", "W"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "W2"], ["logits"]),
        ],
        inputs=[("tokens", np.float32, ("n", k))],
        outputs=[("logits", np.float32, ("n", 16))],
        initializers={"W": shared, "W2": _weights((n, 16), 21)},
    )
    return encoder, decoder


def test_merged_models_share_identical_weights_and_match_onnxruntime():
    shared = _weights((128, 64), 22)
    encoder, decoder = _encoder_decoder(shared)
    res = convert(encoder, stem="encoder", merge={"decoder": decoder})
    tflite = res.tflite_bytes
    assert _signature_defs(tflite) == {"encoder": 0, "decoder": 1}
    assert _buffers_of_size(tflite, shared.nbytes) == 1
    separate = len(convert(encoder).tflite_bytes) + len(convert(decoder).tflite_bytes)
    assert len(tflite) <= separate - shared.nbytes  # the shared weight once, not twice
    rng = np.random.default_rng(24)
    enc_feeds = {"x": rng.standard_normal((2, 5, 128)).astype(np.float32)}
    dec_feeds = {"tokens": rng.standard_normal((3, 128)).astype(np.float32)}
    _assert_close(_run_signature(tflite, "encoder", enc_feeds), _reference(encoder, enc_feeds))
    _assert_close(_run_signature(tflite, "decoder", dec_feeds), _reference(decoder, dec_feeds))
    rows = {r["name"]: r for r in res.report["signatures"]}
    assert rows["decoder"]["source"] == "merged model"
    assert [i["name"] for i in rows["decoder"]["inputs"]] == ["tokens"]
    assert [o["name"] for o in rows["decoder"]["outputs"]] == ["logits"]


def test_merge_renumbers_control_flow_of_a_later_model_and_combines_with_signatures():
    model = _if_model()
    other = _projection(_weights((8, 8), 25), dims=(2, 3))
    res = convert(other, signatures={"proj": {}}, merge={"branchy": model})
    defs = _signature_defs(res.tflite_bytes)
    assert defs == {"proj": 0, "branchy": 1}
    rng = np.random.default_rng(26)
    for flag in (True, False):
        feeds = {"x": rng.standard_normal((4, 8)).astype(np.float32), "flag": np.array(flag)}
        _assert_close(_run_signature(res.tflite_bytes, "branchy", feeds), _reference(model, feeds))
    feeds = {"x": rng.standard_normal((2, 3, 8)).astype(np.float32)}
    _assert_close(_run_signature(res.tflite_bytes, "proj", feeds), _reference(other, feeds))


def test_cli_merge(tmp_path):
    encoder, decoder = _encoder_decoder(_weights((32, 24), 27))
    onnx.save(encoder, tmp_path / "enc.onnx")
    onnx.save(decoder, tmp_path / "dec.onnx")
    out = tmp_path / "out"
    argv = [str(tmp_path / "enc.onnx"), "-o", str(out), "-q", "--report-op-coverage"]
    assert cli_main([*argv, "--merge", f"dec={tmp_path / 'dec.onnx'}"]) == 0
    tflite = (out / "enc_float32.tflite").read_bytes()
    assert _signature_defs(tflite) == {"enc": 0, "dec": 1}
    feeds = {"tokens": np.random.default_rng(28).standard_normal((2, 32)).astype(np.float32)}
    _assert_close(_run_signature(tflite, "dec", feeds), _reference(decoder, feeds))
    # a missing merged model: exit 2, nothing written
    missing = tmp_path / "out2"
    assert cli_main([*argv[:1], "-o", str(missing), "-q", "--merge", "d=nope.onnx"]) == 2
    assert not (missing / "enc_float32.tflite").exists()


def test_inspect_shows_each_signature(tmp_path, capsys):
    from onnx2tflite_direct.inspect_tflite import format_inspect, inspect

    model = _projection(_weights((16, 8), 29))
    res = convert(model, signatures={"prefill": {"x": (1, 12, 16)}, "decode": {"x": (1, "?", 16)}})
    info = inspect(bytes(res.tflite_bytes))
    by_key = {s["key"]: s for s in info["signature_defs"]}
    assert by_key["prefill"]["subgraph"] == 0 and by_key["decode"]["subgraph"] == 1
    assert by_key["prefill"]["io"]["inputs"][0]["shape_signature"] == [1, 12, 16]
    assert by_key["decode"]["io"]["inputs"][0]["shape_signature"] == [1, -1, 16]
    assert by_key["decode"]["io"]["outputs"][0]["key"] == "y"
    assert [s["name"] for s in info["subgraphs"]] == ["prefill", "decode"]
    text = format_inspect(info)
    assert "signature 'decode' (subgraph 1)" in text
    assert "in  x  float32  1x1x16 (signature 1x-1x16)" in text
    path = tmp_path / "m.tflite"
    path.write_bytes(bytes(res.tflite_bytes))
    assert cli_main(["inspect", str(path)]) == 0
    assert "signature 'prefill' (subgraph 0)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# A decoder with a KV cache: prefill + decode, greedy generation (examples/generate.py)
# ---------------------------------------------------------------------------------------------


def _generate_module():
    return load_script("examples/generate.py", "generate_example")


def _weight_bytes(tflite: bytes, at_least: int = 4096) -> int:
    model = schema.Model.GetRootAs(bytes(tflite), 0)
    sizes = (model.Buffers(i).DataLength() for i in range(model.BuffersLength()))
    return sum(s for s in sizes if s >= at_least)


def test_decoder_prefill_and_decode_generate_the_same_tokens_as_onnxruntime():
    gen = _generate_module()
    model = gen.build_decoder(vocab=256, layers=2, heads=4, head_dim=16, max_positions=64, seed=3)
    prefill_len, tokens = 16, 12
    signatures = gen.decoder_signatures(model, prefill_len)
    assert signatures["decode"]["past_key_values.1.value"] == (1, 4, "past", 16)
    res = convert(model, signatures=signatures)
    tflite = res.tflite_bytes
    assert _signature_defs(tflite) == {"prefill": 0, "decode": 1}
    decode = Interpreter(model_content=bytes(tflite)).get_signature_runner("decode")
    assert list(decode.get_input_details()["past_key_values.0.key"]["shape_signature"]) == [
        1,
        4,
        -1,
        16,
    ]
    prompt = np.random.default_rng(30).integers(0, 256, prefill_len)
    ours, our_logits = gen.generate(gen.litert_step(tflite), model, prompt, tokens)
    ref, ref_logits = gen.generate(gen.onnxruntime_step(model), model, prompt, tokens)
    assert ours == ref
    assert len(set(ref)) > 3  # not one token repeated
    for a, b in zip(our_logits, ref_logits, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, float(np.abs(b).max())))
    # no weight is stored twice: the weights are those of the one-signature dynamic file plus
    # the position rows the static prefill folds (positions 0..15 of the position table)
    single = convert(model).tflite_bytes
    assert _weight_bytes(tflite) <= _weight_bytes(single) + prefill_len * 64 * 4


def test_offset_dim_follows_its_symbol():
    """``mask`` spans the cache and the new token (``past+1``): sampled with ``past``, so the
    model lowers; a plain second name would be sampled on its own and not fit."""
    model = make_model(
        [
            helper.make_node("ReduceSum", ["cache", "ax"], ["s"], keepdims=0),  # [1, past]
            helper.make_node("Concat", ["s", "new"], ["all"], axis=1),  # [1, past + 1]
            helper.make_node("Mul", ["all", "mask"], ["y"]),
        ],
        inputs=[
            ("cache", np.float32, (1, "past", 8)),
            ("new", np.float32, (1, 1)),
            ("mask", np.float32, (1, "past+1")),
        ],
        outputs=[("y", np.float32, (1, "total"))],
        initializers={"ax": np.array([2], np.int64)},
    )
    res = convert(
        model, signatures={"decode": {}, "step": {"cache": (1, "p", 8), "mask": (1, "p+1")}}
    )
    rng = np.random.default_rng(31)
    for key in ("decode", "step"):
        for past in (0, 3, 40):
            feeds = {
                "cache": rng.standard_normal((1, past, 8)).astype(np.float32),
                "new": rng.standard_normal((1, 1)).astype(np.float32),
                "mask": rng.standard_normal((1, past + 1)).astype(np.float32),
            }
            got = _run_signature(res.tflite_bytes, key, feeds)
            want = _reference(model, feeds)
            np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)
    summary = res.report["signatures"][0]
    assert [r["shape_signature"] for r in summary["inputs"]] == [[1, -1, 8], [1, 1], [1, -1]]


def test_runtime_gather_on_a_dynamic_axis_wraps_by_its_runtime_size():
    """Negative runtime indices are wrapped with FLOOR_MOD by the gathered axis' size; on a
    dynamic axis (a decoder gathering its past+1 attention mask) that size is read at run
    time, so one file serves every length."""
    model = make_model(
        [helper.make_node("Gather", ["x", "idx"], ["y"], axis=1)],
        inputs=[("x", np.float32, (2, "n", 4)), ("idx", np.int64, (3,))],
        outputs=[("y", np.float32, (2, 3, 4))],
    )
    res = convert(model)
    assert res.report["dynamic_shapes"]["input_dims"]["x"] == [2, "n", 4]
    rng = np.random.default_rng(32)
    for n in (3, 7, 50):
        feeds = {
            "x": rng.standard_normal((2, n, 4)).astype(np.float32),
            "idx": np.array([-1, 0, -n], np.int64),
        }
        got = _run_signature(res.tflite_bytes, "serving_default", feeds)
        np.testing.assert_array_equal(got["y"], _reference(model, feeds)["y"])


def test_signatures_with_external_buffers_share_the_weight():
    w = _weights((64, 48), 33)
    model = _projection(w)
    res = convert(
        model, external_buffers=True, signatures={"a": {"x": (1, 4, 64)}, "b": {"x": (2, "?", 64)}}
    )
    single = convert(model, external_buffers=True, input_shapes={"x": (1, 4, 64)}).tflite_bytes
    assert len(res.tflite_bytes) < len(single) + w.nbytes // 4
    rng = np.random.default_rng(34)
    for key, shape in (("a", (1, 4, 64)), ("b", (2, 9, 64))):
        feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
        _assert_close(_run_signature(res.tflite_bytes, key, feeds), _reference(model, feeds))
