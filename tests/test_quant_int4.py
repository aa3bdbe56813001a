"""The int4 weight variant (``--quantize int4``): 4-bit weights where LiteRT's kernels take them.

Every file is run in LiteRT with its default XNNPACK delegate and with the built-in kernels
alone. The reference is numpy (or onnxruntime) on the weights the file stores, decoded here
independently of the converter (two values a byte, the even element in the low nibble; the
blockwise scales from the tensor the BlockwiseQuantization table names). What remains is the
hybrid kernels' run-time int8 quantization of their input (one scale per row, 255 steps over
[min(0, x), max(0, x)]): per output, at most one input step times the sum of the |weights|.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import make_model
from onnx import helper

from onnx2tflite_direct import cli, convert, tfl
from onnx2tflite_direct.quant import int4, int4_codes
from onnx2tflite_direct.validate import run_litert, run_onnxruntime

RNG = np.random.default_rng(21)
F = np.float32
KERNELS = [pytest.param(True, id="xnnpack"), pytest.param(False, id="builtin")]


# -- decoding what the file stores -------------------------------------------------------------
def _weights(blob: bytes) -> dict[str, dict]:
    """name -> {"type", "codes", "values" (dequantized float64, per-block offsets added),
    "block"} of every quantized constant."""
    from ai_edge_litert import schema_py_generated as S

    model = S.ModelT.InitFromObj(S.Model.GetRootAs(blob, 0))
    sg = model.subgraphs[0]
    out = {}
    for t in sg.tensors:
        q = t.quantization
        raw = model.buffers[t.buffer].data if t.buffer else None
        if q is None or raw is None or len(raw) == 0:
            continue
        shape = tuple(t.shape)
        size = int(np.prod(shape))
        raw = np.asarray(raw, np.uint8)
        if t.type == S.TensorType.INT4:
            lo = (raw & 0x0F).astype(np.int8)
            hi = (raw >> 4).astype(np.int8)
            codes = np.stack([lo, hi], axis=1).reshape(-1)[:size]
            codes = np.where(codes > 7, codes - 16, codes).reshape(shape)
        elif t.type == S.TensorType.INT8:
            codes = raw.view(np.int8).reshape(shape)
        else:
            continue
        entry = {"type": t.type, "codes": codes, "block": 0}
        if q.detailsType == S.QuantizationDetails.BlockwiseQuantization:
            st = sg.tensors[q.details.scales]
            scales = np.asarray(model.buffers[st.buffer].data, np.uint8).view(np.float16)
            scales = scales.astype(np.float64).reshape(tuple(st.shape))
            block = q.details.blockSize
            vals = codes.reshape(scales.shape + (block,)) * scales[..., None]
            entry.update(values=vals.reshape(shape), block=block)
        else:
            scale = np.asarray(q.scale, np.float64)
            bshape = [1] * len(shape)
            if scale.size > 1:
                bshape[q.quantizedDimension] = -1
            entry["values"] = codes * scale.reshape(bshape)
        out[t.name.decode()] = entry
    floats = {
        t.name.decode(): np.asarray(model.buffers[t.buffer].data, np.uint8).view(np.float32)
        for t in sg.tensors
        if t.type == S.TensorType.FLOAT32 and t.buffer and model.buffers[t.buffer].data is not None
    }
    for name, entry in out.items():  # per-block offsets: a float [rows, blocks] tensor beside
        offsets = floats.get(name.removesuffix("/int4") + "/int4_offsets")
        if offsets is not None:
            rows = entry["values"].shape[0]
            per_block = offsets.astype(np.float64).reshape(rows, -1)
            entry["main"] = entry["values"]
            entry["values"] = entry["values"] + np.repeat(per_block, entry["block"], axis=1)
    return out


def _hybrid_bound(x: np.ndarray, w_rows: np.ndarray) -> np.ndarray:
    """Per output (rows of ``x`` times rows of ``w_rows``), the error the run-time int8
    quantization of ``x`` can add: one step of each row's 255-step range times sum |w|."""
    x2 = x.reshape(-1, x.shape[-1]).astype(np.float64)
    step = (np.maximum(x2.max(1), 0) - np.minimum(x2.min(1), 0)) / 255.0
    exact = np.abs(x2) @ np.abs(w_rows).T  # float32 accumulation of the dequantized products
    return step[:, None] * np.abs(w_rows).sum(1)[None, :] + 1e-5 * exact + 1e-6


def _sqnr(actual, expected) -> float:
    e = np.asarray(expected, np.float64)
    noise = np.sum((np.asarray(actual, np.float64) - e) ** 2)
    return float(10 * np.log10(np.sum(e**2) / max(noise, 1e-30)))


def _int4_file(model, **kw):
    """The int4 file with 4-bit weights wherever a kernel takes them (``int4_size_budget=0``:
    these tests pin the kernels' forms; the budget's choices are tested apart)."""
    kw.setdefault("int4_size_budget", 0.0)
    res = convert(model, quantize=("int4",), **kw)
    return res, res.variants["int4_weight_quant"]


# -- the quantizers ------------------------------------------------------------------------------
def test_blockwise_codes_use_the_full_int4_range_and_beat_a_fixed_scale():
    w = RNG.standard_normal((64, 128)).astype(F)
    codes, scales = int4_codes.blockwise_int4(w, 32)
    assert codes.min() >= -8 and codes.max() <= 7 and (codes == -8).any()
    assert scales.dtype == np.float16 and scales.shape == (64, 4)
    deq = (codes.reshape(64, 4, 32) * scales.astype(F)[..., None]).reshape(64, 128)
    plain = np.abs(w.reshape(-1, 32)).max(1, keepdims=True) / 7.5
    fixed = (np.clip(np.rint(w.reshape(-1, 32) / plain), -8, 7) * plain).reshape(64, 128)
    assert _sqnr(deq, w) > _sqnr(fixed, w) + 0.3  # the searched scales


def test_per_channel_codes_avoid_minus_eight():
    """The CPU kernel's 4-bit per-channel FULLY_CONNECTED path reads -8 as +8."""
    w = RNG.standard_normal((10, 3, 3, 16)).astype(F)
    codes, scales = int4_codes.per_channel_int4(w, 0)
    assert codes.min() >= -7 and codes.max() <= 7 and scales.shape == (10,)


# -- the operators, each against numpy on the stored weights -------------------------------------
def _matmul_model(k: int, n: int, rows: int = 5, bias: bool = True):
    w = (RNG.standard_normal((k, n)) * 0.05).astype(F)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m" if bias else "y"])]
    inits = {"w": w}
    if bias:
        inits["b"] = (RNG.standard_normal(n) * 0.1).astype(F)
        nodes.append(helper.make_node("Add", ["m", "b"], ["y"]))
    return make_model(nodes, [("x", F, (1, rows, k))], [("y", F, (1, rows, n))], inits), inits


@pytest.mark.parametrize("xnnpack", KERNELS)
@pytest.mark.parametrize(
    "k, n, form",
    [
        (128, 48, "int4-block"),
        (768, 96, "int4-block"),
        (48, 40, "int4-channel"),
        (512, 3, "int4-channel"),
    ],
)
def test_fully_connected(k, n, form, xnnpack):
    """Blockwise where the CPU 4-bit kernel takes it (>= 4 rows, >= 32 input channels, blocks
    dividing them), per-channel otherwise (K = 48: blocks of 32 do not divide it; 3 rows)."""
    model, inits = _matmul_model(k, n)
    res, blob = _int4_file(model)
    (entry,) = res.report["quantization"]
    (written,) = entry["weights"]  # blockwise weights may come with per-block offsets
    assert written.split("+")[0] == form and entry["weights"][written] == 1
    (w,) = [v for v in _weights(blob).values() if v["values"].shape == (n, k)]
    assert w["block"] == (32 if form == "int4-block" else 0)
    x = RNG.standard_normal((1, 5, k)).astype(F)
    got = run_litert(blob, {"x": x}, res.report["io"], use_xnnpack=xnnpack)["y"]
    ref = x.reshape(5, k) @ w["values"].T + inits["b"]
    bound = _hybrid_bound(x, w.get("main", w["values"]))  # (offsets: a float FC, exact)
    assert np.all(np.abs(got.reshape(5, n) - ref) <= bound), np.max(
        np.abs(got.reshape(5, n) - ref) / bound
    )
    assert _sqnr(got.reshape(5, n), ref) > 35.0


@pytest.mark.parametrize("xnnpack", KERNELS)
def test_batch_matmul_with_a_constant_operand_runs_as_fully_connected(xnnpack):
    """BATCH_MATMUL refuses int4: a constant 2-D right-hand side becomes a FULLY_CONNECTED
    (keep_num_dims) on the transposed weight."""
    k, n = 64, 32
    w = (RNG.standard_normal((k, n)) * 0.1).astype(F)
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [("x", F, (2, 3, 4, k))],
        [("y", F, (2, 3, 4, n))],
        {"w": w},
    )
    res, blob = _int4_file(model)
    ops = {r["op"] for r in res.report["quantization"][0]["precision"] if "op" in r} or None
    assert ops is None or "BATCH_MATMUL" not in ops
    (q,) = [v for v in _weights(blob).values() if v["values"].shape == (n, k)]
    x = RNG.standard_normal((2, 3, 4, k)).astype(F)
    got = run_litert(blob, {"x": x}, res.report["io"], use_xnnpack=xnnpack)["y"]
    ref = x.reshape(-1, k) @ q["values"].T
    assert np.all(np.abs(got.reshape(-1, n) - ref) <= _hybrid_bound(x, q.get("main", q["values"])))


@pytest.mark.parametrize("xnnpack", KERNELS)
@pytest.mark.parametrize("dim, block", [(64, 32), (50, 0)])
def test_gather_rows_of_a_table_are_dequantized_exactly(dim, block, xnnpack):
    """GATHER on axis 0 of a constant table -> EMBEDDING_LOOKUP with an int4 table (blockwise
    with per-block offsets gathered by the same indices, or per row when blocks do not divide
    the row); int64 indices of any shape. One float32 rounding (the offset's ADD) at most."""
    table = RNG.standard_normal((40, dim)).astype(F)
    ids = np.array([[3, 0, 39, 7], [7, 1, 2, 38]], np.int64)
    model = make_model(
        [helper.make_node("Gather", ["table", "ids"], ["y"], axis=0)],
        [("ids", np.int64, (2, 4))],
        [("y", F, (2, 4, dim))],
        {"table": table},
    )
    res, blob = _int4_file(model)
    (q,) = _weights(blob).values()
    assert q["block"] == block and q["codes"].min() >= -8
    (entry,) = res.report["quantization"]
    assert entry["weights"] == {"int4-block+offsets" if block else "int4-channel": 1}
    got = run_litert(blob, {"ids": ids}, res.report["io"], use_xnnpack=xnnpack)["y"]
    np.testing.assert_allclose(got, q["values"][ids], rtol=1e-6, atol=0)
    assert _sqnr(got, table[ids]) > 15.0  # the rows are the table's, not other rows


@pytest.mark.parametrize("xnnpack", KERNELS)
def test_conv_int4_per_channel_and_depthwise_int8(xnnpack):
    """CONV_2D: int4 per output channel; DEPTHWISE_CONV_2D has no int4 kernel: int8, reported."""
    wc = (RNG.standard_normal((64, 8, 3, 3)) * 0.2).astype(F)
    wd = (RNG.standard_normal((64, 1, 5, 5)) * 0.2).astype(F)
    model = make_model(
        [
            helper.make_node("Conv", ["x", "wc"], ["c"], pads=[1] * 4),
            helper.make_node("Conv", ["c", "wd"], ["y"], pads=[0] * 4, group=64),
        ],
        [("x", F, (1, 8, 12, 12))],
        [("y", F, (1, 64, 8, 8))],
        {"wc": wc, "wd": wd},
    )
    res, blob = _int4_file(model)
    (entry,) = res.report["quantization"]
    assert entry["weights"] == {"int4-channel": 1, "int8": 1}
    reasons = {r["node"]: r.get("detail", "") for r in entry["precision"]}
    assert any("no int4 kernel" in d for d in reasons.values())
    types = sorted(v["type"] for v in _weights(blob).values())
    assert types == [9, 17]  # INT8 (depthwise), INT4 (conv)
    x = RNG.standard_normal((1, 8, 12, 12)).astype(F)
    got = run_litert(blob, {"x": x}, res.report["io"], use_xnnpack=xnnpack)["y"]
    fake = {"wc": _stored(blob, (64, 3, 3, 8)).transpose(0, 3, 1, 2)}
    fake["wd"] = _stored(blob, (1, 5, 5, 64)).transpose(3, 0, 1, 2)
    ref = run_onnxruntime(_with_weights(model, fake), {"x": x})["y"]
    assert _sqnr(got, ref) > 30.0  # only the run-time input quantization differs


def _stored(blob: bytes, shape) -> np.ndarray:
    (v,) = [w["values"] for w in _weights(blob).values() if w["values"].shape == shape]
    return v.astype(F)


def _with_weights(model, weights: dict):
    from onnx import numpy_helper

    m = model.__class__()
    m.CopyFrom(model)
    for init in m.graph.initializer:
        if init.name in weights:
            init.CopyFrom(
                numpy_helper.from_array(np.ascontiguousarray(weights[init.name]), init.name)
            )
    return m


# -- a transformer-like block, end to end --------------------------------------------------------
def _encoder():
    d, v, f = 64, 200, 128
    inits = {
        "emb": (RNG.standard_normal((v, d)) * 0.5).astype(F),
        "w1": (RNG.standard_normal((d, f)) * 0.1).astype(F),
        "b1": (RNG.standard_normal(f) * 0.1).astype(F),
        "w2": (RNG.standard_normal((f, d)) * 0.1).astype(F),
        "small": (RNG.standard_normal((d, 8)) * 0.1).astype(F),  # 512 elements: stays float
    }
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], axis=0),
        helper.make_node("MatMul", ["e", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["o"]),
        helper.make_node("Add", ["o", "e"], ["y"]),
        helper.make_node("MatMul", ["y", "small"], ["z"]),
    ]
    model = make_model(
        nodes, [("ids", np.int64, (1, 12))], [("y", F, (1, 12, d)), ("z", F, (1, 12, 8))], inits
    )
    return model, inits


@pytest.mark.parametrize("xnnpack", KERNELS)
def test_encoder_block_against_onnxruntime(xnnpack):
    model, inits = _encoder()
    res, blob = _int4_file(model)
    (entry,) = res.report["quantization"]
    assert entry["kind"] == "int4_weight_quant" and sum(entry["weights"].values()) == 3
    assert all(k.startswith("int4-block") for k in entry["weights"])
    assert entry["ops"] == {"int4-weights": 3}  # (the 512-element weight is not counted: float)
    assert len(blob) < 0.3 * len(res.tflite_bytes)
    ids = RNG.integers(0, 200, (1, 12)).astype(np.int64)
    got = run_litert(blob, {"ids": ids}, res.report["io"], use_xnnpack=xnnpack)
    stored = {
        k: _stored(blob, s) for k, s in (("emb", (200, 64)), ("w1", (128, 64)), ("w2", (64, 128)))
    }
    fake = {"emb": stored["emb"], "w1": stored["w1"].T, "w2": stored["w2"].T}
    same_weights = run_onnxruntime(_with_weights(model, fake), {"ids": ids})
    float_ref = run_onnxruntime(model, {"ids": ids})
    for name in ("y", "z"):
        assert _sqnr(got[name], same_weights[name]) > 35.0  # run-time input quantization only
        assert _sqnr(got[name], float_ref[name]) > 15.0  # 4-bit weights


def test_overrides_keep_float_or_int8():
    model, _ = _encoder()
    res, blob = _int4_file(model, quant_overrides=["Gather=int8", "/?MatMul_1|.*w2.*=float"])
    (entry,) = res.report["quantization"]
    assert entry["weights"]["int8-rows"] == 1  # the table: EMBEDDING_LOOKUP takes int8 rows
    types = sorted(v["type"] for v in _weights(blob).values())
    assert types.count(9) == 1


def test_cli_writes_the_int4_file(tmp_path):
    model, _ = _encoder()
    path = tmp_path / "enc.onnx"
    path.write_bytes(model.SerializeToString())
    assert cli.main([str(path), "-o", str(tmp_path), "--quantize", "int4"]) == 0
    written = sorted(p.name for p in tmp_path.glob("*.tflite"))
    assert written == ["enc_float32.tflite", "enc_int4_weight_quant.tflite"]


def test_blockwise_scales_are_written_next_to_their_weight():
    """The builder writes a blockwise weight's scale tensor (FLOAT16) and the
    BlockwiseQuantization table naming it."""
    w = tfl.Tensor("w", np.float32, (8, 64), data=RNG.standard_normal((8, 64)).astype(F))
    q = int4._blockwise_tensor(w.data, "w", 32)
    assert q.quantization.block_scales.shape == (8, 2)
    x = tfl.Tensor("x", np.float32, (1, 64))
    y = tfl.Tensor("y", np.float32, (1, 8))
    sub = tfl.Subgraph(
        operators=[
            tfl.Operator("FULLY_CONNECTED", [x, q, None], [y], {"asymmetric_quantize_inputs": True})
        ],
        inputs=[x],
        outputs=[y],
    )
    assert q.quantization.block_scales in sub.tensors()


@pytest.mark.parametrize("xnnpack", KERNELS)
def test_skewed_blocks_get_offsets_and_the_activation_follows_them(xnnpack):
    """A skewed weight (all positive): per-block offsets, added by a float FULLY_CONNECTED on
    the input's block sums (shared by the two layers reading the input); the fused RELU
    comes after the offsets are added."""
    k, n = 96, 40
    w1 = np.abs(RNG.standard_normal((k, n))).astype(F) * 0.05
    w2 = (np.abs(RNG.standard_normal((k, n))) * 0.05 - 0.02).astype(F)
    model = make_model(
        [
            helper.make_node("MatMul", ["x", "w1"], ["m"]),
            helper.make_node("Relu", ["m"], ["y"]),
            helper.make_node("MatMul", ["x", "w2"], ["z"]),
        ],
        [("x", F, (1, 6, k))],
        [("y", F, (1, 6, n)), ("z", F, (1, 6, n))],
        {"w1": w1, "w2": w2},
    )
    res, blob = _int4_file(model)
    (entry,) = res.report["quantization"]
    assert entry["weights"] == {"int4-block+offsets": 2}
    from harness import op_histogram

    hist = op_histogram(blob)
    assert hist["SUM"] == 1 and hist["FULLY_CONNECTED"] == 4 and hist["ADD"] == 2
    stored = [v for v in _weights(blob).values() if v["values"].shape == (n, k)]
    x = RNG.standard_normal((1, 6, k)).astype(F)
    got = run_litert(blob, {"x": x}, res.report["io"], use_xnnpack=xnnpack)
    plain = {}
    for name, w in (("y", w1), ("z", w2)):
        (q,) = [v for v in stored if np.corrcoef(v["values"].ravel(), w.T.ravel())[0, 1] > 0.95]
        ref = x.reshape(6, k) @ q["values"].T
        ref = np.maximum(ref, 0) if name == "y" else ref
        # (a ReLU can only shrink the difference)
        assert np.all(np.abs(got[name].reshape(6, n) - ref) <= _hybrid_bound(x, q["main"]))
        codes, scales = int4_codes.blockwise_int4(w.T.copy(), 32)
        plain[name] = (codes.reshape(n, -1, 32) * scales.astype(F)[..., None]).reshape(n, k)
        assert _sqnr(q["values"], w.T) > _sqnr(plain[name], w.T) + 1.0  # what the offsets buy


def test_dynamic_sequence_length():
    """Indices and activations of a dynamic length: the EMBEDDING_LOOKUP output and the block
    sums are reshaped with shapes computed at run time."""
    model, inits = _encoder()
    for vi in (*model.graph.input, *model.graph.output):
        vi.type.tensor_type.shape.dim[1].dim_param = "n"
    res, blob = _int4_file(model)
    (entry,) = res.report["quantization"]
    assert entry["ops"] == {"int4-weights": 3}
    assert "int4-block+offsets" in entry["weights"]
    shapes = {"emb": (200, 64), "w1": (128, 64), "w2": (64, 128)}
    stored = {k: _stored(blob, s) for k, s in shapes.items()}
    fake = {"emb": stored["emb"], "w1": stored["w1"].T, "w2": stored["w2"].T}
    for length in (5, 12):
        ids = RNG.integers(0, 200, (1, length)).astype(np.int64)
        got = run_litert(blob, {"ids": ids}, res.report["io"])
        same_weights = run_onnxruntime(_with_weights(model, fake), {"ids": ids})
        for name in ("y", "z"):
            assert got[name].shape == same_weights[name].shape
            assert _sqnr(got[name], same_weights[name]) > 35.0


def test_weights_beyond_float16_scales_stay_per_channel():
    """Blockwise scales are float16: a weight whose max|w| / 7 overflows it gets float32
    per-channel scales (reported), not infinite block scales."""
    w = (RNG.standard_normal((64, 48)) * 1e6).astype(F)
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [("x", F, (1, 3, 64))],
        [("y", F, (1, 3, 48))],
        {"w": w},
    )
    res, blob = _int4_file(model)
    (entry,) = res.report["quantization"]
    assert entry["weights"] == {"int4-channel": 1}
    assert "float16" in entry["precision"][0]["detail"]
    (q,) = _weights(blob).values()
    x = RNG.standard_normal((1, 3, 64)).astype(F)
    got = run_litert(blob, {"x": x}, res.report["io"])["y"]
    ref = x.reshape(3, 64) @ q["values"].T
    assert np.all(np.abs(got.reshape(3, 48) - ref) <= _hybrid_bound(x, q["values"]))


@pytest.mark.parametrize("xnnpack", KERNELS)
def test_pointwise_conv_runs_as_a_blockwise_fully_connected(xnnpack):
    """A 1x1 stride-1 CONV_2D is a FULLY_CONNECTED over the NHWC channels (keep_num_dims),
    which has a blockwise int4 kernel; its fused RELU follows the offsets."""
    w = (RNG.standard_normal((48, 64, 1, 1)) * 0.1).astype(F)
    b = (RNG.standard_normal(48) * 0.1).astype(F)
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        [("x", F, (1, 64, 6, 6))],
        [("y", F, (1, 48, 6, 6))],
        {"w": w, "b": b},
    )
    res, blob = _int4_file(model)
    (entry,) = res.report["quantization"]
    assert list(entry["weights"]) == ["int4-block+offsets"]
    from harness import op_histogram

    assert "CONV_2D" not in op_histogram(blob)
    (q,) = [v for v in _weights(blob).values() if v["values"].shape == (48, 64)]
    x = RNG.standard_normal((1, 64, 6, 6)).astype(F)
    got = run_litert(blob, {"x": x}, res.report["io"], use_xnnpack=xnnpack)["y"]
    rows = x.transpose(0, 2, 3, 1).reshape(36, 64)
    ref = np.maximum(rows @ q["values"].T + b, 0)
    got_rows = got.transpose(0, 2, 3, 1).reshape(36, 48)
    assert np.all(np.abs(got_rows - ref) <= _hybrid_bound(rows, q["main"]))


@pytest.mark.parametrize("block, form", [(64, "int4-block"), (0, "int4-channel")])
def test_block_size_option(block, form):
    model, inits = _matmul_model(256, 48)
    res, blob = _int4_file(model, int4_block_size=block)
    (entry,) = res.report["quantization"]
    (written,) = entry["weights"]
    assert written.split("+")[0] == form
    (w,) = [v for v in _weights(blob).values() if v["values"].shape == (48, 256)]
    assert w["block"] == block
    x = RNG.standard_normal((1, 5, 256)).astype(F)
    got = run_litert(blob, {"x": x}, res.report["io"])["y"].reshape(5, 48)
    ref = x.reshape(5, 256) @ w["values"].T + inits["b"]
    assert np.all(np.abs(got - ref) <= _hybrid_bound(x, w.get("main", w["values"])))


def test_block_size_must_suit_xnnpack(tmp_path):
    """A block size XNNPACK's int4 kernels cannot take is a bad option (exit 2), named."""
    from onnx2tflite_direct import errors

    model, _ = _matmul_model(64, 48)
    with pytest.raises(errors.OptionError, match="multiple of 32"):
        convert(model, quantize=("int4",), int4_block_size=48)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    code = cli.main(
        [str(path), "-o", str(tmp_path), "--quantize", "int4", "--int4-block-size", "16"]
    )
    assert code == errors.EXIT_BAD_INPUT
    assert not list(tmp_path.glob("*.tflite"))
