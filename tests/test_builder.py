"""build_flatbuffer: hand-built tfl models load and compute the right numbers in LiteRT, and the
file-level conventions (dedupe, alignment, opcodes, metadata, signatures) hold in the bytes."""

from __future__ import annotations

import io
import math
import struct
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnx2tflite_direct import builder, flatbuffer_writer, tfl
from onnx2tflite_direct.builder import (
    BuildError,
    UnknownOptionError,
    build_flatbuffer,
    options_table,
)
from onnx2tflite_direct.schema_gen import schema_generated as S
from onnx2tflite_direct.versioning import UnsupportedOpVersionError

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter

F32 = np.float32
RNG = np.random.default_rng(1234)


def act(name: str, shape, dtype=F32) -> tfl.Tensor:
    return tfl.Tensor(name, dtype, shape)


def const(name: str, data: np.ndarray) -> tfl.Tensor:
    return tfl.Tensor(name, data.dtype, data.shape, data=data)


def model_of(ops, inputs, outputs, in_names=None, out_names=None, **kw) -> tfl.Model:
    sg = tfl.Subgraph(
        operators=ops,
        inputs=inputs,
        outputs=outputs,
        input_names=in_names or [t.name for t in inputs],
        output_names=out_names or [t.name for t in outputs],
    )
    return tfl.Model([sg], **kw)


def parse(data: bytes):
    assert schema.Model.ModelBufferHasIdentifier(data, 0)
    return schema.Model.GetRootAsModel(data, 0)


def run(data: bytes, **inputs) -> dict:
    runner = Interpreter(model_content=data).get_signature_runner("serving_default")
    return runner(**inputs)


def opcodes(m) -> dict[int, tuple[int, int, int]]:
    """builtin code -> (deprecated code, version, index)."""
    out = {}
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        out[oc.BuiltinCode()] = (oc.DeprecatedBuiltinCode(), oc.Version(), i)
    return out


# -- numerics -------------------------------------------------------------------------------
def _add_model() -> tfl.Model:
    x, y, t, o = act("x", (1, 4)), act("y", (1, 4)), act("t", (1, 4)), act("o", (1, 4))
    c = const("c", np.array([[0.5, -1.0, 2.0, 3.0]], F32))
    ops = [
        tfl.Operator("ADD", [x, y], [t]),
        tfl.Operator("ADD", [t, c], [o], {"fused_activation_function": "RELU"}),
    ]
    return model_of(ops, [x, y], [o], ["in_x", "in_y"], ["out"])


def test_add_runs() -> None:
    data = build_flatbuffer(_add_model())
    xv = np.array([[1, -2, 3, -9]], F32)
    yv = np.array([[0.25, 1, 1, 1]], F32)
    got = run(data, in_x=xv, in_y=yv)["out"]
    np.testing.assert_allclose(got, np.maximum(xv + yv + [[0.5, -1.0, 2.0, 3.0]], 0))
    m = parse(data)
    assert m.Version() == 3 and m.Description() == b"onnx2tflite_direct"
    assert m.OperatorCodesLength() == 1
    sig = m.SignatureDefs(0)
    assert sig.SignatureKey() == b"serving_default" and sig.SubgraphIndex() == 0
    assert [sig.Inputs(i).Name() for i in range(sig.InputsLength())] == [b"in_x", b"in_y"]
    assert sig.Outputs(0).Name() == b"out"
    sg = m.Subgraphs(0)
    assert sg.Tensors(sig.Outputs(0).TensorIndex()).Name() == b"o"


def _conv_ref(x, w, b, stride, pad_same, dilation=1, groups=1):
    """NHWC input, OHWI filter, TFLite SAME padding."""
    n, h, wd, c = x.shape
    o, kh, kw, ci = w.shape
    ekh, ekw = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    if pad_same:
        oh, ow = -(-h // stride), -(-wd // stride)
        ph = max((oh - 1) * stride + ekh - h, 0)
        pw = max((ow - 1) * stride + ekw - wd, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - ekh) // stride + 1, (wd - ekw) // stride + 1
    out = np.zeros((n, oh, ow, o), np.float64)
    per_group = o // groups
    for i in range(oh):
        for j in range(ow):
            patch = x[
                :,
                i * stride : i * stride + ekh : dilation,
                j * stride : j * stride + ekw : dilation,
            ]
            for oc in range(o):
                g = oc // per_group
                out[:, i, j, oc] = np.sum(patch[..., g * ci : (g + 1) * ci] * w[oc], axis=(1, 2, 3))
    return (out + b).astype(F32)


@pytest.mark.parametrize(("padding", "stride"), [("SAME", 2), ("VALID", 1)])
def test_conv2d_runs(padding: str, stride: int) -> None:
    xv = RNG.standard_normal((1, 7, 6, 3), dtype=F32)
    wv = RNG.standard_normal((4, 3, 3, 3), dtype=F32)
    bv = RNG.standard_normal(4, dtype=F32)
    ref = np.maximum(_conv_ref(xv, wv, bv, stride, padding == "SAME"), 0)
    x, y = act("x", xv.shape), act("y", ref.shape)
    options = {
        "padding": padding,
        "stride_w": stride,
        "stride_h": stride,
        "fused_activation_function": "RELU",
    }
    conv = tfl.Operator("CONV_2D", [x, const("w", wv), const("b", bv)], [y], options)
    data = build_flatbuffer(model_of([conv], [x], [y]))
    np.testing.assert_allclose(run(data, x=xv)["y"], ref, rtol=1e-4, atol=1e-4)
    assert opcodes(parse(data))[3][1] == 1


def test_grouped_conv_version_6_runs() -> None:
    xv = RNG.standard_normal((1, 5, 5, 4), dtype=F32)
    wv = RNG.standard_normal((6, 3, 3, 2), dtype=F32)
    bv = RNG.standard_normal(6, dtype=F32)
    ref = _conv_ref(xv, wv, bv, 1, True, groups=2)
    x, y = act("x", xv.shape), act("y", ref.shape)
    options = {"padding": "SAME", "stride_w": 1, "stride_h": 1}
    conv = tfl.Operator("CONV_2D", [x, const("w", wv), const("b", bv)], [y], options)
    data = build_flatbuffer(model_of([conv], [x], [y]))
    assert opcodes(parse(data))[3][1] == 6
    np.testing.assert_allclose(run(data, x=xv)["y"], ref, rtol=1e-4, atol=1e-4)


def test_depthwise_dilation_version_2_runs() -> None:
    xv = RNG.standard_normal((1, 7, 7, 3), dtype=F32)
    wv = RNG.standard_normal((1, 3, 3, 3), dtype=F32)
    bv = np.zeros(3, F32)
    # depthwise == grouped conv with groups = channels; filter as OHWI with I = 1
    ref = _conv_ref(xv, np.transpose(wv, (3, 1, 2, 0)), bv, 1, False, dilation=2, groups=3)
    x, y = act("x", xv.shape), act("y", ref.shape)
    options = {
        "padding": "VALID",
        "stride_w": 1,
        "stride_h": 1,
        "depth_multiplier": 1,
        "dilation_w_factor": 2,
        "dilation_h_factor": 2,
    }
    dw = tfl.Operator("DEPTHWISE_CONV_2D", [x, const("w", wv), const("b", bv)], [y], options)
    data = build_flatbuffer(model_of([dw], [x], [y]))
    assert opcodes(parse(data))[4][1] == 2
    np.testing.assert_allclose(run(data, x=xv)["y"], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("with_bias", [True, False])
def test_fully_connected_runs(with_bias: bool) -> None:
    xv = RNG.standard_normal((2, 5), dtype=F32)
    wv = RNG.standard_normal((3, 5), dtype=F32)
    bv = RNG.standard_normal(3, dtype=F32)
    x, y = act("x", (2, 5)), act("y", (2, 3))
    bias = const("b", bv) if with_bias else None
    fc = tfl.Operator("FULLY_CONNECTED", [x, const("w", wv), bias], [y])
    data = build_flatbuffer(model_of([fc], [x], [y]))
    ref = xv @ wv.T + (bv if with_bias else 0)
    np.testing.assert_allclose(run(data, x=xv)["y"], ref, rtol=1e-5, atol=1e-5)
    m = parse(data)
    sg = m.Subgraphs(0)
    op = sg.Operators(0)
    bias_index = op.InputsAsNumpy()[2]
    assert (sg.Tensors(bias_index).Name() == b"b") if with_bias else bias_index == -1
    assert op.BuiltinOptionsType() == S.UNIONS["BuiltinOptions"]["FullyConnectedOptions"]


def test_transpose_rank5_version_4_runs() -> None:
    xv = RNG.standard_normal((2, 1, 3, 2, 4), dtype=F32)
    perm = np.array([4, 2, 0, 3, 1], np.int32)
    x, y = act("x", xv.shape), act("y", np.transpose(xv, perm).shape)
    tr = tfl.Operator("TRANSPOSE", [x, const("perm", perm)], [y])
    data = build_flatbuffer(model_of([tr], [x], [y]))
    assert opcodes(parse(data))[39][1] == 4
    np.testing.assert_array_equal(run(data, x=xv)["y"], np.transpose(xv, perm))


def test_gelu_code_above_127() -> None:
    xv = np.linspace(-3, 3, 8, dtype=F32).reshape(1, 8)
    x, y = act("x", xv.shape), act("y", xv.shape)
    data = build_flatbuffer(model_of([tfl.Operator("GELU", [x], [y])], [x], [y]))
    m = parse(data)
    assert opcodes(m)[150][:2] == (127, 1)
    ref = 0.5 * xv * (1 + np.vectorize(math.erf)(xv / math.sqrt(2)))
    np.testing.assert_allclose(run(data, x=xv)["y"], ref, rtol=1e-4, atol=1e-4)
    meta = {m.Metadata(i).Name(): m.Metadata(i).Buffer() for i in range(m.MetadataLength())}
    raw = m.Buffers(meta[b"min_runtime_version"]).DataAsNumpy().tobytes()
    assert raw == b"2.9.0".ljust(16, b"\0")


# -- file structure -------------------------------------------------------------------------
def _const_model(*arrays: np.ndarray) -> tfl.Model:
    """A chain of ADDs of the given constants (same shape) onto input x."""
    shape = arrays[0].shape
    x = act("x", shape)
    cur, ops = x, []
    for i, a in enumerate(arrays):
        out = act(f"h{i}", shape)
        ops.append(tfl.Operator("ADD", [cur, const(f"c{i}", a)], [out]))
        cur = out
    return model_of(ops, [x], [cur], metadata={"note": b"hello"})


def test_identical_constants_share_one_buffer() -> None:
    a = np.arange(6, dtype=F32).reshape(2, 3)
    model = _const_model(a, a.copy(), a + 1, a.astype(np.int32).astype(F32))
    data = build_flatbuffer(model)
    m = parse(data)
    sg = m.Subgraphs(0)
    bufs = {sg.Tensors(i).Name(): sg.Tensors(i).Buffer() for i in range(sg.TensorsLength())}
    assert bufs[b"c0"] == bufs[b"c1"] == bufs[b"c3"] != bufs[b"c2"]
    assert bufs[b"x"] == 0
    assert m.Buffers(0).DataLength() == 0
    # sentinel + 2 unique constants + min_runtime_version + note
    assert m.BuffersLength() == 5
    xv = np.ones((2, 3), F32)
    np.testing.assert_allclose(run(data, x=xv)["h3"], xv + 3 * a + a + 1)


def test_data_bodies_are_16_byte_aligned() -> None:
    arrays = [
        const("a", np.arange(3, dtype=np.int8)),
        const("b", np.arange(5, dtype=F32)),
        const("c", np.arange(7, dtype=np.int16)),
        const("d", np.arange(1, dtype=np.int64)),
    ]
    ops, outs = [], []
    for i, c in enumerate(arrays):
        x, o = act(f"x{i}", c.shape, c.dtype), act(f"o{i}", c.shape, c.dtype)
        ops.append(tfl.Operator("ADD", [x, c], [o]))
        outs.append((x, o))
    model = model_of(ops, [x for x, _ in outs], [o for _, o in outs])
    data = build_flatbuffer(model)
    assert len(data) % 16 == 0
    m = parse(data)
    checked = 0
    for i in range(m.BuffersLength()):
        buf = m.Buffers(i)
        if buf.DataLength():
            pos = buf._tab.Vector(buf._tab.Offset(4))
            assert pos % 16 == 0, (i, pos)
            checked += 1
    assert checked == len(arrays) + 1  # + min_runtime_version
    assert bytes(m.Buffers(1).DataAsNumpy()) == np.arange(3, dtype=np.int8).tobytes()


def test_deterministic() -> None:
    first = build_flatbuffer(_add_model())
    assert build_flatbuffer(_add_model()) == first  # fresh objects, different id()s
    model = _add_model()
    model.subgraphs[0].operators[1].options = {"fused_activation_function": "RELU"}
    assert build_flatbuffer(model) == build_flatbuffer(model) == first


def test_options_order_does_not_matter() -> None:
    def conv(options):
        x, y = act("x", (1, 4, 4, 1)), act("y", (1, 2, 2, 1))
        w = const("w", np.ones((1, 3, 3, 1), F32))
        return build_flatbuffer(
            model_of([tfl.Operator("CONV_2D", [x, w, None], [y], options)], [x], [y])
        )

    opts = {"padding": "VALID", "stride_w": 1, "stride_h": 1, "dilation_w_factor": 1}
    assert conv(opts) == conv(dict(reversed(list(opts.items()))))


def test_tensor_fields_written() -> None:
    x = tfl.Tensor("dup", F32, (1, 4), shape_signature=(-1, 4))
    c = tfl.Tensor(
        "dup",
        np.int8,
        (3, 4),
        data=np.arange(12, dtype=np.int8).reshape(3, 4),
        quantization=tfl.Quantization(np.array([0.5, 0.25, 2.0], F32), np.array([0]), axis=0),
    )
    y = tfl.Tensor("dup", F32, (1, 3), shape_signature=(-1, 3))
    fc = tfl.Operator("FULLY_CONNECTED", [x, c, None], [y])
    m = parse(build_flatbuffer(model_of([fc], [x], [y], ["in"], ["out"])))
    sg = m.Subgraphs(0)
    names = [sg.Tensors(i).Name() for i in range(sg.TensorsLength())]
    assert names == [b"dup", b"dup_1", b"dup_2"]
    t0, t1 = sg.Tensors(0), sg.Tensors(1)
    assert list(t0.ShapeSignatureAsNumpy()) == [-1, 4] and list(t0.ShapeAsNumpy()) == [1, 4]
    assert t1.ShapeSignatureIsNone() and t1.Type() == S.ENUMS["TensorType"]["INT8"]
    q = t1.Quantization()
    np.testing.assert_array_equal(q.ScaleAsNumpy(), [0.5, 0.25, 2.0])
    np.testing.assert_array_equal(q.ZeroPointAsNumpy(), [0, 0, 0])
    assert q.ZeroPointAsNumpy().dtype == np.int64 and q.QuantizedDimension() == 0
    assert t0.Quantization() is None and t0.HasRank()
    # hybrid FC with per-channel weights and a None bias -> version 12
    assert opcodes(m)[9][1] == 12


def test_one_opcode_per_version_in_use() -> None:
    """A float ADD (v1) and an int8 ADD (v2) get one operator code each, as LiteRT's converter
    writes them: the float ADD must not point at v2 (delegates read the code's version)."""
    xf, yf, of = act("xf", (4,)), act("yf", (4,)), act("of", (4,))
    q = tfl.Quantization(np.array([0.1], F32), np.array([0]))
    xi, yi, oi = (tfl.Tensor(n, np.int8, (4,), quantization=q) for n in ("xi", "yi", "oi"))
    xf2, of2 = act("xf2", (4,)), act("of2", (4,))
    ops = [
        tfl.Operator("ADD", [xf, yf], [of]),
        tfl.Operator("ADD", [xi, yi], [oi]),
        tfl.Operator("ADD", [xf2, of], [of2]),
    ]
    m = parse(build_flatbuffer(model_of(ops, [xf, yf, xi, yi, xf2], [of2, oi])))
    codes = [(m.OperatorCodes(i).BuiltinCode(), m.OperatorCodes(i).Version()) for i in range(2)]
    assert m.OperatorCodesLength() == 2 and codes == [(0, 1), (0, 2)]
    sg = m.Subgraphs(0)
    assert [sg.Operators(i).OpcodeIndex() for i in range(3)] == [0, 1, 0]


def test_custom_op_entry() -> None:
    x, t, y = act("x", (2,)), act("t", (2,)), act("y", (2,))
    ops = [
        tfl.Operator("RELU", [x], [t]),
        tfl.Operator("CUSTOM", [t], [y], custom_code="MyOp", custom_options=b"\x01\x02\x03"),
    ]
    data = build_flatbuffer(model_of(ops, [x], [y]))
    m = parse(data)
    oc = m.OperatorCodes(1)
    assert oc.CustomCode() == b"MyOp" and oc.BuiltinCode() == 32
    assert oc.DeprecatedBuiltinCode() == 32 and oc.Version() == 1
    op = m.Subgraphs(0).Operators(1)
    assert op.CustomOptionsAsNumpy().tobytes() == b"\x01\x02\x03"
    assert op.CustomOptionsFormat() == S.ENUMS["CustomOptionsFormat"]["FLEXBUFFERS"]
    # An unresolved custom op is tolerated at load time; it only fails when tensors are prepared.
    interp = Interpreter(model_content=data)
    with pytest.raises(RuntimeError, match="MyOp"):
        interp.allocate_tensors()


def test_multiple_subgraphs_and_per_subgraph_indices() -> None:
    main = _add_model()
    a, b = act("a", (3,)), act("b", (3,))
    body = tfl.Subgraph(
        name="body", operators=[tfl.Operator("RELU", [a], [b])], inputs=[a], outputs=[b]
    )
    model = tfl.Model([main.subgraphs[0], body])
    data = build_flatbuffer(model)
    m = parse(data)
    assert m.SubgraphsLength() == 2 and m.Subgraphs(1).Name() == b"body"
    sg1 = m.Subgraphs(1)
    assert list(sg1.InputsAsNumpy()) == [0] and list(sg1.OutputsAsNumpy()) == [1]
    assert m.SignatureDefsLength() == 1
    out = run(data, in_x=np.ones((1, 4), F32), in_y=np.ones((1, 4), F32))["out"]
    np.testing.assert_allclose(out, [[2.5, 1.0, 4.0, 5.0]])


# -- errors ---------------------------------------------------------------------------------
def test_unknown_option_name_raises() -> None:
    x, y = act("x", (4,)), act("y", (4,))
    bad = tfl.Operator("ADD", [x, x], [y], {"fused_activation": "RELU"})
    with pytest.raises(UnknownOptionError, match="fused_activation"):
        build_flatbuffer(model_of([bad], [x], [y]))
    bad = tfl.Operator("ADD", [x, x], [y], {"fused_activation_function": "SWISH"})
    with pytest.raises(UnknownOptionError, match="SWISH"):
        build_flatbuffer(model_of([bad], [x], [y]))
    bad = tfl.Operator("RELU", [x], [y], {"alpha": 1.0})
    with pytest.raises(UnknownOptionError, match="no options table"):
        build_flatbuffer(model_of([bad], [x], [y]))


def test_bad_inputs_raise() -> None:
    x, y = act("x", (4,)), act("y", (4,))
    with pytest.raises(BuildError, match="unknown builtin"):
        build_flatbuffer(model_of([tfl.Operator("NOPE", [x], [y])], [x], [y]))
    with pytest.raises(BuildError, match="custom_code"):
        build_flatbuffer(model_of([tfl.Operator("CUSTOM", [x], [y])], [x], [y]))
    c = tfl.Tensor("c", F32, (4,), data=np.zeros(4, np.float64))
    with pytest.raises(BuildError, match="dtype"):
        build_flatbuffer(model_of([tfl.Operator("ADD", [x, c], [y])], [x], [y]))


def test_version_outside_cpu_range_raises() -> None:
    q = tfl.Quantization(np.array([0.1], F32), np.array([0]))
    x = tfl.Tensor("x", np.int16, (1, 2, 3), quantization=q)
    w = tfl.Tensor("w", np.int8, (3, 3), data=np.zeros((3, 3), np.int8), quantization=q)
    y = tfl.Tensor("y", np.int16, (1, 2, 3), quantization=q)
    lstm = tfl.Operator("UNIDIRECTIONAL_SEQUENCE_LSTM", [x, w, w], [y])
    with pytest.raises(UnsupportedOpVersionError, match="version 5"):
        build_flatbuffer(model_of([lstm], [x], [y]))


def test_options_table_convention() -> None:
    assert options_table("CONV_2D") == ("BuiltinOptions", "Conv2DOptions")
    assert options_table("MAX_POOL_2D") == ("BuiltinOptions", "Pool2DOptions")
    assert options_table("MEAN") == ("BuiltinOptions", "ReducerOptions")
    assert options_table("SPLIT_V") == ("BuiltinOptions", "SplitVOptions")
    assert options_table("ATAN2") == ("BuiltinOptions", "ATan2Options")
    assert options_table("STABLEHLO_COMPOSITE") == ("BuiltinOptions2", "StableHLOCompositeOptions")
    assert options_table("DILATE") == ("BuiltinOptions2", "DilateOptions")
    assert options_table("RELU") is None and options_table("LOGISTIC") is None
    for member in S.UNIONS["BuiltinOptions"]:
        assert member == "NONE" or member in S.TABLES


def test_int4_constants_are_packed() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    vals = np.array([1, -2, 3, -8, 7], ml_dtypes.int4)
    q = tfl.Quantization(np.array([1.0], F32), np.array([0]))
    c = tfl.Tensor("c", ml_dtypes.int4, (5,), data=vals, quantization=q)
    x, d, y = act("x", (5,)), act("d", (5,)), act("y", (5,))
    ops = [tfl.Operator("DEQUANTIZE", [c], [d]), tfl.Operator("ADD", [x, d], [y])]
    data = build_flatbuffer(model_of(ops, [x], [y]))
    m = parse(data)
    assert bytes(m.Buffers(1).DataAsNumpy()) == bytes([0xE1, 0x83, 0x07])  # low nibble first
    assert opcodes(m)[6][1] == 6
    np.testing.assert_array_equal(run(data, x=np.zeros(5, F32))["y"], [1, -2, 3, -8, 7])


def test_100mb_builds_fast() -> None:
    dim, layers = 1024, 25  # 25 x 4 MiB float32 weights
    x = act("x", (1, dim))
    cur, ops = x, []
    for i in range(layers):
        w = const(f"w{i}", np.full((dim, dim), i, F32) + np.arange(dim, dtype=F32))
        out = act(f"h{i}", (1, dim))
        ops.append(tfl.Operator("FULLY_CONNECTED", [cur, w, None], [out]))
        cur = out
    model = model_of(ops, [x], [cur])
    start = time.perf_counter()
    data = build_flatbuffer(model)
    elapsed = time.perf_counter() - start
    assert len(data) > layers * dim * dim * 4
    assert elapsed < 2.0, elapsed  # typically ~0.3 s; generous bound for slow CI machines


# -- the precomputed table layouts write the bytes of the field-by-field algorithm ------------
def _reference_end_table(w, slots: list) -> int:
    """The writer's original table body: one pack per field, widest first, then the vtable."""
    n_slots = 1 + max((s[1] for s in slots), default=-1)
    w._reserve(16 * len(slots) + 2 * n_slots + 16)
    buf, end, head = w.buf, w.base + len(w.buf), w.head
    object_end = end - head
    positions = {}
    for size, fid, fmt, value in slots:
        head -= (head - end) % size + size
        pos = end - head
        struct.pack_into(fmt or "<I", buf, head, value if fmt else pos - value)
        positions[fid] = pos
    head -= (head - end) % 4 + 4
    table = end - head
    entries = [0] * n_slots
    for fid, pos in positions.items():
        entries[fid] = table - pos
    key = struct.pack(f"<{n_slots + 2}H", 4 + 2 * n_slots, table - object_end, *entries)
    existing = w._vtables.get(key)
    if existing is None:
        head -= len(key)
        buf[head : head + len(key)] = key
        existing = w._vtables[key] = end - head
    struct.pack_into("<i", buf, end - table, existing - table)
    w.head = head
    if slots:
        w.minalign = max(w.minalign, slots[0][0])
    return table


_SCALAR_FORMATS = {1: "<b", 2: "<h", 4: "<i", 8: "<q"}
_field = st.tuples(st.sampled_from([0, 1, 2, 4, 8]), st.integers(-100, 100))  # size 0: offset


@settings(max_examples=60, deadline=None)
@given(
    fields=st.dictionaries(st.integers(0, 12), _field, max_size=7),
    lead=st.integers(0, 9),
    repeat=st.booleans(),
)
def test_table_frames_match_field_by_field_writer(fields, lead, repeat) -> None:
    """Any mix of scalar widths, offsets and start alignments: same bytes, same positions."""
    writers = [flatbuffer_writer.Writer(64), flatbuffer_writer.Writer(64)]
    results = []
    for k, w in enumerate(writers):
        w.bytes_vector(bytes(lead), 1, 1)  # shifts the start phase
        child = w.string("child")
        slots = [
            (size or 4, fid, _SCALAR_FORMATS.get(size, ""), value if size else child)
            for fid, (size, value) in fields.items()
        ]
        slots.sort(key=lambda s: (-s[0], s[1]))
        positions = []
        for _ in range(1 + repeat):  # the second table reuses the first one's vtable
            if k == 0:
                positions.append(w._end_table("T", list(slots)))
            else:
                positions.append(_reference_end_table(w, list(slots)))
        results.append((bytes(w.buf[w.head :]), positions, w.minalign))
    assert results[0] == results[1]


def _tensors() -> list[tfl.Tensor]:
    q = tfl.Quantization(np.array([0.5], F32), np.array([3]))
    return [
        act("f32", (1, 3)),
        act("scalar", ()),
        tfl.Tensor("i8", np.int8, (2, 2)),
        tfl.Tensor("b", np.bool_, (4,)),
        tfl.Tensor("q", np.int8, (2,), quantization=q),
        tfl.Tensor("dyn", F32, (1, 5), shape_signature=(-1, 5)),
    ]


@pytest.mark.parametrize("buffer", [0, 7])
@pytest.mark.parametrize("lead", [0, 1, 2, 3, 5])
def test_tensor_fast_path_matches_generic_table(buffer: int, lead: int) -> None:
    fast, generic = flatbuffer_writer.Writer(64), flatbuffer_writer.Writer(64)
    for w in (fast, generic):
        w.bytes_vector(bytes(lead), 1, 1)
    for t in _tensors():
        a = builder._tensor_table(fast, t, buffer, t.name + "_n")
        b = generic.table("Tensor", builder._tensor_dict(t, buffer, t.name + "_n"))
        assert a == b
    assert bytes(fast.buf[fast.head :]) == bytes(generic.buf[generic.head :])


def _operators() -> list[tfl.Operator]:
    x, y, z = act("x", (1, 4)), act("y", (1, 4)), act("z", (1, 4))
    shape = const("shape", np.array([4, 1], np.int32))
    return [
        tfl.Operator("ADD", [x, y], [z], {"fused_activation_function": "RELU"}),
        tfl.Operator("ADD", [x, y], [z]),  # an empty options table
        tfl.Operator("RESHAPE", [x, shape], [z]),
        tfl.Operator("LOGISTIC", [x], [z]),  # no options table
        tfl.Operator("FULLY_CONNECTED", [x, y, None], [z], {"keep_num_dims": True}),
        tfl.Operator("STABLEHLO_CONCATENATE", [x, y], [z], {"dimension": 1}),  # BuiltinOptions2
        tfl.Operator("CUSTOM", [x], [z], custom_code="Mine", custom_options=b"\x01\x02"),
    ]


@pytest.mark.parametrize("opcode_index", [0, 3])
@pytest.mark.parametrize("lead", [0, 1, 2, 3, 6])
def test_operator_fast_path_matches_generic_table(opcode_index: int, lead: int) -> None:
    ops = _operators()
    index_of = {id(t): i for i, t in enumerate(t for op in ops for t in op.inputs + op.outputs)}
    fast, generic = flatbuffer_writer.Writer(64), flatbuffer_writer.Writer(64)
    for w in (fast, generic):
        w.bytes_vector(bytes(lead), 1, 1)
    for op in ops:
        a = builder._operator_table(fast, op, opcode_index, index_of)
        b = generic.table("Operator", builder._operator_dict(op, opcode_index, index_of))
        assert a == b
    assert bytes(fast.buf[fast.head :]) == bytes(generic.buf[generic.head :])


def test_operator_fast_path_errors() -> None:
    x, z = act("x", (1, 4)), act("z", (1, 4))
    index_of = {id(x): 0, id(z): 1}
    w = flatbuffer_writer.Writer(64)
    with pytest.raises(UnknownOptionError, match="no options table"):
        builder._operator_table(w, tfl.Operator("LOGISTIC", [x], [z], {"a": 1}), 0, index_of)
    with pytest.raises(UnknownOptionError, match="no field"):
        builder._operator_table(w, tfl.Operator("ADD", [x, x], [z], {"nope": 1}), 0, index_of)
    with pytest.raises(BuildError, match="Tensor.shape"):
        builder._tensor_table(w, tfl.Tensor("big", F32, (2**31,)), 0, "big")


def test_large_constants_differing_outside_the_hash_sample_stay_apart() -> None:
    """Buffers are bucketed by a sample of their bytes; a full compare decides sharing."""
    base = np.arange(1 << 18, dtype=F32)
    other = base.copy()
    other[12345] += 1.0  # not in the hashed ends nor on the sampling stride
    twin = base.copy()
    x = act("x", (1 << 18,))
    outs = [act(f"o{i}", (1 << 18,)) for i in range(3)]
    consts = [const(f"c{i}", arr) for i, arr in enumerate((base, other, twin))]
    ops = [tfl.Operator("ADD", [x, c], [o]) for c, o in zip(consts, outs, strict=True)]
    m = parse(build_flatbuffer(model_of(ops, [x], outs)))
    sg = m.Subgraphs(0)
    buffers = {
        sg.Tensors(i).Name().decode(): sg.Tensors(i).Buffer() for i in range(sg.TensorsLength())
    }
    assert buffers["c0"] == buffers["c2"] != buffers["c1"]
    got = np.frombuffer(bytes(m.Buffers(buffers["c1"]).DataAsNumpy()), F32)
    np.testing.assert_array_equal(got, other)


def test_write_to_file_and_stream_give_the_same_bytes(tmp_path, monkeypatch) -> None:
    """Files get the chunks by writev (resumed after partial writes); streams by write."""
    weights = [const(f"w{i}", RNG.standard_normal((8, 8)).astype(F32)) for i in range(3)]
    x, outs = act("x", (1, 8)), [act(f"o{i}", (1, 8)) for i in range(3)]
    pairs = zip(weights, outs, strict=True)
    ops = [tfl.Operator("FULLY_CONNECTED", [x, w, None], [o]) for w, o in pairs]
    out = builder.serialize(model_of(ops, [x], outs))
    expected = out.tobytes()
    stream = io.BytesIO()
    out.write_to(stream)
    assert stream.getvalue() == expected
    real_writev = builder.os.writev

    def short_writev(fd, buffers):  # at most 100 bytes per call
        taken, left = [], 100
        for b in buffers:
            if left <= 0:
                break
            taken.append(bytes(b)[:left])
            left -= len(taken[-1])
        return real_writev(fd, taken)

    for writev in (real_writev, short_writev):
        monkeypatch.setattr(builder.os, "writev", writev)
        path = tmp_path / "m.tflite"
        with open(path, "wb") as fh:
            fh.write(b"")  # an empty buffered write before: flushed first
            out.write_to(fh)
        assert path.read_bytes() == expected
