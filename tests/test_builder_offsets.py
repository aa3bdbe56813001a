"""Offset-buffer layout (issue #8): constants appended after the FlatBuffer, referenced by
absolute ``Buffer.offset``/``size``. Numbers vs onnxruntime through the whole converter, and
the file structure checked byte by byte (alignment, empty ``Buffer.data``, marker metadata,
loading from a path and from bytes)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from harness import check_conversion
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import builder, tfl
from onnx2tflite_direct.builder import build_flatbuffer, serialize

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter

F32 = np.float32
RNG = np.random.default_rng(7)


def parse(data: bytes):
    assert schema.Model.ModelBufferHasIdentifier(data, 0)
    return schema.Model.GetRootAsModel(data, 0)


def metadata(m) -> dict[str, bytes]:
    out = {}
    for i in range(m.MetadataLength()):
        entry = m.Metadata(i)
        out[entry.Name().decode()] = bytes(m.Buffers(entry.Buffer()).DataAsNumpy())
    return out


def constant_buffers(m) -> set[int]:
    """Buffer indices that some tensor reads its constant data from."""
    out = set()
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        out |= {sg.Tensors(i).Buffer() for i in range(sg.TensorsLength())} - {0}
    return out


def check_offset_layout(data: bytes, alignment: int = builder.EXTERNAL_ALIGNMENT) -> int:
    """Assert the structure of an offset-layout file; returns the number of external buffers."""
    m = parse(data)
    assert metadata(m)[builder.BUFFER_LOCATION_KEY] == builder.BUFFER_LOCATION_VALUE
    assert m.Buffers(0).DataLength() == 0 and m.Buffers(0).Offset() == 0
    spans = []
    for i in sorted(constant_buffers(m)):
        buf = m.Buffers(i)
        if buf.Size() == 0:  # an empty constant has nothing to place
            continue
        assert buf.DataIsNone(), f"buffer {i} holds inline data in the offset layout"
        assert buf.Offset() > 1 and buf.Offset() % alignment == 0, (i, buf.Offset())
        spans.append((buf.Offset(), buf.Size()))
    spans.sort()
    flatbuffer_end = spans[0][0] if spans else len(data)
    for (start, size), (nxt, _) in zip(spans, spans[1:], strict=False):
        assert start + size <= nxt, "external buffers overlap"
    if spans:
        start, size = spans[-1]
        assert start + size + builder.EXTERNAL_TAIL_PADDING == len(data)
        assert data[start + size :] == bytes(builder.EXTERNAL_TAIL_PADDING)
        assert flatbuffer_end < 2**31
    return len(spans)


def external_bytes(data: bytes, m, index: int) -> bytes:
    buf = m.Buffers(index)
    return data[buf.Offset() : buf.Offset() + buf.Size()]


# -- whole-converter numerics ----------------------------------------------------------------
def _gemm_chain(dims=(8, 16, 4)) -> helper.ModelProto:
    nodes, inits = [], []
    cur = "x"
    for k, (din, dout) in enumerate(zip(dims, dims[1:], strict=False)):
        inits += [
            numpy_helper.from_array(RNG.standard_normal((din, dout)).astype(F32), f"w{k}"),
            numpy_helper.from_array(RNG.standard_normal(dout).astype(F32), f"b{k}"),
        ]
        nodes += [
            helper.make_node("MatMul", [cur, f"w{k}"], [f"m{k}"]),
            helper.make_node("Add", [f"m{k}", f"b{k}"], [f"a{k}"]),
            helper.make_node("Relu", [f"a{k}"], [f"h{k}"]),
        ]
        cur = f"h{k}"
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    return _model(nodes, inits, [("x", [2, dims[0]])], [("y", [2, dims[-1]])])


def _conv() -> helper.ModelProto:
    w = RNG.standard_normal((6, 3, 3, 3)).astype(F32)
    b = RNG.standard_normal(6).astype(F32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    return _model(nodes, inits, [("x", [1, 3, 9, 9])], [("y", [1, 6, 5, 5])])


def _gather_mixed_dtypes() -> helper.ModelProto:
    """int64 indices, an int32 table and a float table that appears twice (one shared buffer)."""
    table = np.arange(40, dtype=np.int32).reshape(10, 4) * 3
    ftable = RNG.standard_normal((10, 4)).astype(F32)
    nodes = [
        helper.make_node("Gather", ["t", "idx"], ["yi"], axis=0),
        helper.make_node("Gather", ["f", "idx"], ["g1"], axis=0),
        helper.make_node("Gather", ["f2", "idx"], ["g2"], axis=0),
        helper.make_node("Add", ["g1", "g2"], ["s"]),
        helper.make_node("Add", ["s", "x"], ["yf"]),
    ]
    inits = [
        numpy_helper.from_array(table, "t"),
        numpy_helper.from_array(ftable, "f"),
        numpy_helper.from_array(ftable.copy(), "f2"),
        numpy_helper.from_array(np.array([3, 0, 9, 3], np.int64), "idx"),
    ]
    return _model(
        nodes,
        inits,
        [("x", [4, 4])],
        [("yi", [4, 4], TensorProto.INT32), ("yf", [4, 4])],
    )


def _model(nodes, inits, inputs, outputs) -> helper.ModelProto:
    def vi(spec):
        name, shape, *dtype = spec
        return helper.make_tensor_value_info(name, dtype[0] if dtype else TensorProto.FLOAT, shape)

    graph = helper.make_graph(nodes, "g", [vi(s) for s in inputs], [vi(s) for s in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


MODELS = {"gemm_chain": _gemm_chain, "conv": _conv, "gather_mixed_dtypes": _gather_mixed_dtypes}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_external_buffers_match_onnxruntime(name: str, tmp_path) -> None:
    model = MODELS[name]()
    check = check_conversion(model, external_buffers=True, output_dir=tmp_path)
    data = bytes(check.tflite_bytes)
    assert check_offset_layout(data) >= 1
    path = check.result.paths["float32"]
    assert path.read_bytes() == data
    # Same numbers when LiteRT maps the file itself (the deployment path) ...
    inline = check_conversion(model, external_buffers=False)
    feeds = {
        k: RNG.standard_normal(v["shape"]).astype(v["dtype"])
        for k, v in _runner(inline.tflite_bytes).get_input_details().items()
    }
    expected = _runner(inline.tflite_bytes)(**feeds)
    for runner in (_runner(model_path=str(path)), _runner(data)):  # ... and from bytes
        got = runner(**feeds)
        for key, value in expected.items():
            np.testing.assert_array_equal(got[key], value)


def _runner(content: bytes | None = None, **kwargs):
    if content is not None:
        kwargs["model_content"] = bytes(content)
    return Interpreter(**kwargs).get_signature_runner("serving_default")


def test_inline_layout_has_no_marker() -> None:
    data = check_conversion(_conv()).tflite_bytes
    m = parse(data)
    assert builder.BUFFER_LOCATION_KEY not in metadata(m)
    assert all(m.Buffers(i).Offset() == 0 for i in range(m.BuffersLength()))


# -- builder-level structure -------------------------------------------------------------------
def act(name, shape, dtype=F32) -> tfl.Tensor:
    return tfl.Tensor(name, dtype, shape)


def const(name, data) -> tfl.Tensor:
    return tfl.Tensor(name, data.dtype, data.shape, data=data)


def _fc_stack(weights: list[np.ndarray]) -> tfl.Model:
    x = act("x", (1, weights[0].shape[1]))
    cur, ops = x, []
    for i, w in enumerate(weights):
        out = act(f"h{i}", (1, w.shape[0]))
        ops.append(tfl.Operator("FULLY_CONNECTED", [cur, const(f"w{i}", w), None], [out]))
        cur = out
    sg = tfl.Subgraph(operators=ops, inputs=[x], outputs=[cur], input_names=["x"])
    sg.output_names = ["y"]
    return tfl.Model([sg])


def _reference(weights, x):
    for w in weights:
        x = x @ w.T
    return x


@pytest.mark.parametrize("sizes", [(5, 3), (17, 17, 1), (64, 7, 33)])
def test_offsets_sizes_and_shared_buffers(sizes) -> None:
    dims = [sizes[0], *sizes]
    weights = [
        RNG.standard_normal((o, i)).astype(F32) for i, o in zip(dims, dims[1:], strict=False)
    ]
    weights.append(weights[-1].copy() if weights[-1].shape[0] == weights[-1].shape[1] else None)
    weights = [w for w in weights if w is not None]
    data = build_flatbuffer(_fc_stack(weights), external_buffers=True)
    m = parse(data)
    unique = {w.tobytes() for w in weights}
    assert check_offset_layout(data) == len(unique)
    sg = m.Subgraphs(0)
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        if t.Buffer():
            w = next(w for k, w in enumerate(weights) if t.Name() == f"w{k}".encode())
            assert external_bytes(data, m, t.Buffer()) == w.tobytes()
    x = RNG.standard_normal((1, dims[0])).astype(F32)
    got = _runner(data)(x=x)["y"]
    expected = _reference(weights, x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_streamed_file_equals_joined_bytes_and_is_deterministic(tmp_path) -> None:
    weights = [RNG.standard_normal((6, 4)).astype(F32), RNG.standard_normal((3, 6)).astype(F32)]
    for external in (False, True):
        out = serialize(_fc_stack(weights), external_buffers=external)
        sink = io.BytesIO()
        out.write_to(sink)
        assert sink.getvalue() == out.tobytes() and len(out) == out.nbytes == len(sink.getvalue())
        assert out.external_buffers is external
        copies = [list(map(np.copy, weights)) for _ in range(2)]
        again = [build_flatbuffer(_fc_stack(ws), external_buffers=external) for ws in copies]
        assert again[0] == again[1] == out.tobytes()
        if not external:
            assert out.flatbuffer_size == out.nbytes


def test_switches_to_offsets_when_the_flatbuffer_would_be_too_large(monkeypatch) -> None:
    """The 2 GB limit, scaled down: inline data that would cross it moves out of the FlatBuffer."""
    weights = [RNG.standard_normal((64, 64)).astype(F32) for _ in range(3)]
    model = _fc_stack(weights)
    inline = serialize(model)
    assert not inline.external_buffers
    monkeypatch.setattr(builder, "FLATBUFFER_LIMIT", inline.nbytes - 1)
    moved = serialize(model)
    assert moved.external_buffers and moved.flatbuffer_size < 4096
    data = moved.tobytes()
    assert check_offset_layout(data) == 3
    x = RNG.standard_normal((1, 64)).astype(F32)
    expected = _reference(weights, x)
    got = _runner(data)(x=x)["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    monkeypatch.setattr(builder, "FLATBUFFER_LIMIT", 64)  # not even the tables fit
    with pytest.raises(builder.BuildError, match="2 GB"):
        serialize(model)


def test_empty_and_one_element_constants() -> None:
    """A zero-element constant stays a data-less inline buffer; a 1-element one goes out."""
    x, y, z = act("x", (1,)), act("y", (1,)), act("z", ())
    one = const("one", np.array([2.5], F32))
    empty_shape = const("empty_shape", np.zeros((0,), np.int32))  # reshape to a scalar
    ops = [tfl.Operator("ADD", [x, one], [y]), tfl.Operator("RESHAPE", [y, empty_shape], [z])]
    sg = tfl.Subgraph(operators=ops, inputs=[x], outputs=[z], input_names=["x"])
    sg.output_names = ["z"]
    data = build_flatbuffer(tfl.Model([sg]), external_buffers=True)
    assert check_offset_layout(data) == 1
    m = parse(data)
    empty = m.Buffers(m.Subgraphs(0).Tensors(3).Buffer())
    assert empty.Offset() == 0 and empty.DataLength() == 0
    got = _runner(data)(x=np.array([1.5], F32))["z"]
    assert got.shape == () and got == np.float32(4.0)


ADDABLE = (np.float32, np.int32, np.int64)


@settings(max_examples=12, deadline=None)
@given(
    specs=st.lists(
        st.tuples(st.sampled_from(ADDABLE), st.integers(1, 300), st.booleans()),
        min_size=1,
        max_size=5,
    ),
    seed=st.integers(0, 2**16),
)
def test_random_constant_sets_round_trip(specs, seed) -> None:
    """Any mix of dtypes and sizes (with repeats): aligned, exact bytes, same numbers."""
    rng = np.random.default_rng(seed)
    arrays: list[np.ndarray] = []
    for dtype, size, repeat in specs:
        if repeat and arrays and arrays[-1].dtype == dtype:
            arrays.append(arrays[-1].copy())  # identical bytes: one shared buffer
        else:
            arrays.append((rng.standard_normal(size) * 100).astype(dtype))
    ops, inputs, outputs = [], [], []
    for i, arr in enumerate(arrays):
        x, o = act(f"x{i}", arr.shape, arr.dtype), act(f"o{i}", arr.shape, arr.dtype)
        ops.append(tfl.Operator("ADD", [x, const(f"c{i}", arr)], [o]))
        inputs.append(x)
        outputs.append(o)
    sg = tfl.Subgraph(operators=ops, inputs=inputs, outputs=outputs)
    sg.input_names = [t.name for t in inputs]
    sg.output_names = [t.name for t in outputs]
    data = build_flatbuffer(tfl.Model([sg]), external_buffers=True)
    assert check_offset_layout(data) == len({(a.dtype.str, a.tobytes()) for a in arrays})
    m = parse(data)
    tensors = m.Subgraphs(0)
    by_name = {
        tensors.Tensors(i).Name(): tensors.Tensors(i) for i in range(tensors.TensorsLength())
    }
    for i, arr in enumerate(arrays):
        assert external_bytes(data, m, by_name[f"c{i}".encode()].Buffer()) == arr.tobytes()
    feeds = {f"x{i}": np.ones_like(arr) for i, arr in enumerate(arrays)}
    got = _runner(data)(**feeds)
    for i, arr in enumerate(arrays):
        np.testing.assert_array_equal(got[f"o{i}"], arr + np.ones_like(arr))


# -- pipeline: large models are streamed to disk, not joined in memory ------------------------
def test_large_models_are_streamed_and_mapped(tmp_path, monkeypatch) -> None:
    from onnx2tflite_direct import pipeline

    monkeypatch.setattr(pipeline, "STREAM_TO_DISK_BYTES", 0)  # every model counts as large
    for external in (True, False):
        out = tmp_path / str(external)
        check = check_conversion(_gemm_chain(), output_dir=out, external_buffers=external)
        data = check.tflite_bytes
        assert isinstance(data, memoryview) and data.readonly
        path = check.result.paths["float32"]
        assert path.read_bytes() == data and len(data) == path.stat().st_size
        entry = {"kind": "float32", "path": str(path), "bytes": len(data)}
        assert entry in check.report["output_files"]
        if external:
            check_offset_layout(bytes(data))


def test_failed_run_removes_the_streamed_file(tmp_path, monkeypatch) -> None:
    from onnx2tflite_direct import convert, pipeline
    from onnx2tflite_direct.errors import ConversionError

    monkeypatch.setattr(pipeline, "STREAM_TO_DISK_BYTES", 0)
    bad_samples = {"not_an_input": np.zeros((2, 8), F32)}
    with pytest.raises(ConversionError):
        convert(_gemm_chain(), tmp_path, validate=True, test_data=bad_samples)
    assert not list(tmp_path.glob("*.tflite"))


@pytest.mark.parametrize("external", [False, True])
def test_serialize_does_not_copy_weights(external: bool) -> None:
    """The file's constant chunks are views of the tensors' own arrays (one copy at most, later)."""
    weights = [RNG.standard_normal((32, 16)).astype(F32), RNG.standard_normal((8, 32)).astype(F32)]
    model = _fc_stack(weights)
    out = serialize(model, external_buffers=external)
    for w in weights:
        assert any(
            isinstance(c, memoryview) and c.nbytes == w.nbytes and np.shares_memory(c, w)
            for c in out.chunks
        )
