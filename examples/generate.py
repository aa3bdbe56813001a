"""Greedy text generation in LiteRT from one file with ``prefill`` and ``decode`` signatures.

A decoder exported with its KV cache as inputs and outputs (transformers' torch.onnx export:
``past_key_values.N.key/value`` in, ``present.N.key/value`` out, ``logits``) is converted once
with two signatures sharing the weights:

* ``prefill``: the prompt (``input_ids`` [1, P]) with an empty cache (past length 0);
* ``decode``: one token (``input_ids`` [1, 1]) with the cache at any past length (dynamic).

Generation runs ``prefill`` once, then ``decode`` per token, feeding each step's ``present``
back as the next step's ``past_key_values``; onnxruntime runs the ONNX model with the same
cache logic, and the tokens are compared one by one.

    python examples/generate.py                   # a random-initialised GPT-2-style decoder
    python examples/generate.py --model dec.onnx  # your export (inputs named as above)
    python examples/generate.py --export-hf llama --model /tmp/llama_past.onnx  # needs torch

The built-in decoder (:func:`build_decoder`) is plain ONNX written with ``onnx.helper``: token
and position embeddings (positions from the cache length), pre-norm attention over the past
and new keys with a causal mask, an MLP, logits from the tied token embedding. It needs no
torch, so the tests use it too (tests/test_signatures.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PAST, PRESENT = "past_key_values.", "present."


# ---------------------------------------------------------------------------------------------
# A GPT-2-style decoder in plain ONNX
# ---------------------------------------------------------------------------------------------


def build_decoder(
    vocab: int = 256,
    layers: int = 2,
    heads: int = 4,
    head_dim: int = 16,
    max_positions: int = 256,
    seed: int = 0,
) -> onnx.ModelProto:
    """A random-initialised decoder with a KV cache as I/O (names as transformers exports)."""
    rng = np.random.default_rng(seed)
    width = heads * head_dim
    nodes: list[onnx.NodeProto] = []
    inits: dict[str, np.ndarray] = {}

    def w(name, shape, scale=None):
        scale = scale if scale is not None else 1 / np.sqrt(shape[0])
        inits[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
        return name

    def c(name, value, dtype=np.int64):
        inits[name] = np.asarray(value, dtype)
        return name

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def norm(x, name):
        g = c(f"{name}.g", 1 + 0.1 * rng.standard_normal(width), np.float32)
        b = c(f"{name}.b", 0.1 * rng.standard_normal(width), np.float32)
        return node("LayerNormalization", [x, g, b], f"{name}.out", axis=-1, epsilon=1e-5)

    wte = w("wte", (vocab, width), 0.2)
    wpe = w("wpe", (max_positions, width), 1.0)
    c("one", 1)
    c("zero", 0)
    # past length and sequence length, positions past .. past + seq - 1
    past_shape = node("Shape", [f"{PAST}0.key"], "past_len_1d", start=2, end=3)
    seq_shape = node("Shape", ["input_ids"], "seq_len_1d", start=1, end=2)
    past_len = node("Squeeze", [past_shape], "past_len")
    seq_len = node("Squeeze", [seq_shape], "seq_len")
    total = node("Add", [past_len, seq_len], "total_len")
    positions = node("Range", [past_len, total, "one"], "positions")
    h = node("Add", [node("Gather", [wte, "input_ids"], "tok_emb"),
                     node("Gather", [wpe, positions], "pos_emb")], "h0")  # fmt: skip
    # causal mask [seq, total]: key j is visible to query i when j <= past + i
    rows = node("Unsqueeze", [positions, c("ax1", [1])], "rows")
    cols = node("Range", ["zero", total, "one"], "cols")
    visible = node("LessOrEqual", [cols, rows], "visible")
    c("head_shape", [1, -1, heads, head_dim])
    c("flat_shape", [1, -1, width])
    c("scale", 1 / np.sqrt(head_dim), np.float32)
    c("masked", -1e4, np.float32)
    outputs = []
    for i in range(layers):
        x = norm(h, f"l{i}.ln1")

        def split(proj, i=i, x=x):
            y = node("MatMul", [x, w(f"l{i}.{proj}", (width, width))], f"l{i}.{proj}.mm")
            y = node("Reshape", [y, "head_shape"], f"l{i}.{proj}.heads")
            return node("Transpose", [y], f"l{i}.{proj}.t", perm=[0, 2, 1, 3])

        q, k, v = split("q"), split("k"), split("v")
        k_all = node("Concat", [f"{PAST}{i}.key", k], f"{PRESENT}{i}.key", axis=2)
        v_all = node("Concat", [f"{PAST}{i}.value", v], f"{PRESENT}{i}.value", axis=2)
        kt = node("Transpose", [k_all], f"l{i}.kt", perm=[0, 1, 3, 2])
        scores = node("Mul", [node("MatMul", [q, kt], f"l{i}.qk"), "scale"], f"l{i}.scores")
        scores = node("Where", [visible, scores, "masked"], f"l{i}.masked_scores")
        probs = node("Softmax", [scores], f"l{i}.probs", axis=-1)
        attn = node("MatMul", [probs, v_all], f"l{i}.attn")
        attn = node("Transpose", [attn], f"l{i}.attn.t", perm=[0, 2, 1, 3])
        attn = node("Reshape", [attn, "flat_shape"], f"l{i}.attn.flat")
        h = node("Add", [h, node("MatMul", [attn, w(f"l{i}.o", (width, width))], f"l{i}.o.mm")],
                 f"l{i}.h1")  # fmt: skip
        x = norm(h, f"l{i}.ln2")
        up = node("Relu", [node("MatMul", [x, w(f"l{i}.up", (width, 4 * width))], f"l{i}.up.mm")],
                  f"l{i}.up.act")  # fmt: skip
        h = node("Add", [h, node("MatMul", [up, w(f"l{i}.down", (4 * width, width))],
                                 f"l{i}.down.mm")], f"l{i}.h2")  # fmt: skip
        outputs += [f"{PRESENT}{i}.key", f"{PRESENT}{i}.value"]
    x = norm(h, "ln_f")
    wte_t = node("Transpose", [wte], "wte_t", perm=[1, 0])  # tied embedding
    node("MatMul", [x, wte_t], "logits")
    cache = [1, heads, "past", head_dim]
    present = [1, heads, "total", head_dim]
    graph = helper.make_graph(
        nodes,
        "decoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"])]
        + [
            helper.make_tensor_value_info(f"{PAST}{i}.{kind}", TensorProto.FLOAT, cache)
            for i in range(layers)
            for kind in ("key", "value")
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "sequence", vocab])]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, present) for n in outputs],
        initializer=[numpy_helper.from_array(a, n) for n, a in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def export_hf(arch: str, path: str, layers: int = 4, hidden: int = 256, vocab: int = 2048,
              positions: int = 256, seed: int = 0) -> None:  # fmt: skip
    """A random-initialised transformers ``GPT2`` or ``Llama`` decoder exported with
    torch.onnx (TorchScript exporter) as one decoding step with past key values: inputs
    ``input_ids`` [1, sequence], ``attention_mask`` [1, total], ``past_key_values.N.key/value``
    [1, heads, past, head_dim]; outputs ``logits``, ``present.N.key/value``. Needs torch and
    transformers (not dependencies of the converter)."""
    import torch
    import transformers
    from transformers import DynamicCache

    torch.manual_seed(seed)
    heads = max(1, hidden // 64)
    if arch == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=heads, n_positions=positions
        )
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=4 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 2),
            max_position_embeddings=positions,
        )
        model = transformers.LlamaForCausalLM(config)
    config._attn_implementation = "eager"
    model.eval()

    def kv(cache, i):
        if hasattr(cache, "layers"):
            return cache.layers[i].keys, cache.layers[i].values
        return cache[i][0], cache[i][1]

    class Step(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, *flat):
            pairs = [(flat[2 * i], flat[2 * i + 1]) for i in range(layers)]
            r = self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                past_key_values=DynamicCache(ddp_cache_data=pairs),
                use_cache=True,
            )
            return (r.logits, *[t for i in range(layers) for t in kv(r.past_key_values, i)])

    past, kv_heads = 5, model.config.num_key_value_heads if arch != "gpt2" else heads
    with torch.no_grad():
        ids = torch.randint(0, vocab, (1, past + 1))
        cache = model(input_ids=ids[:, :past], use_cache=True).past_key_values
        flat = [t for i in range(layers) for t in kv(cache, i)]
    assert flat[0].shape[1] == kv_heads
    names_past = [f"{PAST}{i}.{k}" for i in range(layers) for k in ("key", "value")]
    names_out = ["logits"] + [f"{PRESENT}{i}.{k}" for i in range(layers) for k in ("key", "value")]
    axes = {"input_ids": {1: "sequence"}, "attention_mask": {1: "total"}}
    axes.update({n: {2: "past"} for n in names_past})
    torch.onnx.export(
        Step(model),
        (ids[:, past:], torch.ones(1, past + 1, dtype=torch.int64), *flat),
        path,
        input_names=["input_ids", "attention_mask", *names_past],
        output_names=names_out,
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    onnx.save(onnx.load(path), path)  # one file, weights inline


# ---------------------------------------------------------------------------------------------
# Converting and generating
# ---------------------------------------------------------------------------------------------


def cache_inputs(model: onnx.ModelProto) -> dict[str, tuple]:
    """Past input name -> its declared dims (the past length axis is 2)."""
    return {
        vi.name: tuple(d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim)
        for vi in model.graph.input
        if vi.name.startswith(PAST)
    }


def decoder_signatures(model: onnx.ModelProto, prefill_len: int) -> dict[str, dict]:
    """``prefill`` (prompt of ``prefill_len``, past 0) and ``decode`` (one token, past
    dynamic); an ``attention_mask`` input spans the past and the new tokens."""
    inputs = {vi.name for vi in model.graph.input}
    prefill: dict[str, tuple] = {"input_ids": (1, prefill_len)}
    decode: dict[str, tuple] = {"input_ids": (1, 1)}
    for name, dims in cache_inputs(model).items():
        prefill[name] = (dims[0] if isinstance(dims[0], int) else 1, dims[1], 0, dims[3])
        decode[name] = (prefill[name][0], dims[1], "past", dims[3])
    if "attention_mask" in inputs:
        prefill["attention_mask"] = (1, prefill_len)
        decode["attention_mask"] = (1, "past+1")
    return {"prefill": prefill, "decode": decode}


def _feeds(model_inputs, ids: np.ndarray, past: dict[str, np.ndarray]) -> dict:
    feeds = {"input_ids": ids.astype(np.int64), **past}
    if "attention_mask" in model_inputs:
        length = ids.shape[1] + next(iter(past.values())).shape[2]
        feeds["attention_mask"] = np.ones((1, length), np.int64)
    return feeds


def _empty_cache(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {
        n: np.zeros((1, dims[1], 0, dims[3]), np.float32) for n, dims in cache_inputs(model).items()
    }


def _next_past(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        PAST + n[len(PRESENT) :]: np.array(v) for n, v in outputs.items() if n.startswith(PRESENT)
    }


def generate(step, model: onnx.ModelProto, prompt: np.ndarray, tokens: int):
    """Greedy generation with ``step(signature, feeds) -> outputs``: prefill once, then decode
    one token at a time. Returns (token ids, logits of every step)."""
    names = {vi.name for vi in model.graph.input}
    out = step("prefill", _feeds(names, prompt[None, :], _empty_cache(model)))
    generated, logits = [], [np.array(out["logits"][0, -1])]
    for _ in range(tokens):
        token = int(np.argmax(logits[-1]))
        generated.append(token)
        if len(generated) == tokens:
            break
        ids = np.array([[token]], np.int64)
        out = step("decode", _feeds(names, ids, _next_past(out)))
        logits.append(np.array(out["logits"][0, -1]))
    return generated, logits


def litert_step(tflite: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=bytes(tflite), num_threads=1)
    runners = {key: interp.get_signature_runner(key) for key in ("prefill", "decode")}
    return lambda key, feeds: runners[key](**feeds)


def onnxruntime_step(model: onnx.ModelProto):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return lambda _key, feeds: dict(zip(names, sess.run(None, feeds), strict=True))


def _error(message: str, code: int = 2) -> int:
    """A user's mistake as one line on stderr (exit 2 unless the converter says otherwise)."""
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="an exported decoder (default: a built-in toy one)")
    parser.add_argument(
        "--export-hf",
        choices=("gpt2", "llama"),
        help="first export a random-initialised transformers decoder to --model (needs torch)",
    )
    parser.add_argument("--prefill", type=int, default=128, help="prompt length (default 128)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens to generate (default 32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=4, help="built-in decoder: layers")
    parser.add_argument("--heads", type=int, default=8, help="built-in decoder: heads")
    parser.add_argument("--head-dim", type=int, default=32, help="built-in decoder: head size")
    parser.add_argument("--vocab", type=int, default=2048, help="built-in decoder: vocabulary")
    parser.add_argument("-o", "--output-dir", help="also write the .tflite here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from onnx2tflite_direct import ConversionError, convert

    if args.export_hf:
        args.model = args.model or f"{args.export_hf}_past.onnx"
        try:
            export_hf(args.export_hf, args.model, positions=2 * (args.prefill + args.tokens))
        except ImportError as exc:  # torch/transformers are not dependencies: one line
            return _error(f"--export-hf needs torch and transformers ({exc})")
    if args.model:
        try:
            model = onnx.load(args.model)
        except FileNotFoundError:
            return _error(f"--model {args.model}: no such file")
        except Exception as exc:  # a folder, not an ONNX file, ...: protobuf raises several
            return _error(f"--model {args.model}: not a readable ONNX model ({exc})")
    else:
        model = build_decoder(
            args.vocab, args.layers, args.heads, args.head_dim, 2 * (args.prefill + args.tokens)
        )
    try:
        signatures = decoder_signatures(model, args.prefill)
        both = convert(model, args.output_dir, stem="decoder", signatures=signatures)
        # the single-signature file: decode alone (past dynamic), which holds every weight
        single = convert(model, signatures={"decode": signatures["decode"]})
    except ConversionError as exc:  # the converter's own one line and exit code
        return _error(str(exc), exc.exit_code)
    size, size_single = len(both.tflite_bytes), len(single.tflite_bytes)
    vocab = model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value or 256
    prompt = np.random.default_rng(args.seed).integers(0, vocab, args.prefill)
    ours, our_logits = generate(litert_step(both.tflite_bytes), model, prompt, args.tokens)
    ref, ref_logits = generate(onnxruntime_step(model), model, prompt, args.tokens)
    err = max(float(np.abs(a - b).max()) for a, b in zip(our_logits, ref_logits, strict=False))
    same = sum(a == b for a, b in zip(ours, ref, strict=True))
    print(
        f"prefill+decode file: {size} bytes; decode-only file: {size_single} "
        f"bytes; ratio {size / size_single:.4f}"
    )
    print(f"LiteRT:      {ours}")
    print(f"onnxruntime: {ref}")
    print(f"{same}/{len(ref)} tokens identical; max |logit difference| {err:.3g}")
    return 0 if ours == ref else 1


if __name__ == "__main__":
    sys.exit(main())
