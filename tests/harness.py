"""Shared helpers for lowering tests: build a tiny ONNX model, convert it, run both runtimes.

Typical use::

    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        inputs=[("x", np.float32, (1, 3, 8, 8))],
        outputs=[("y", np.float32, (1, 3, 8, 8))],
    )
    chk = check_conversion(model)
    assert chk.ops == {"RELU": 1}

``check_conversion`` asserts exact output names, shapes and dtypes and numbers within tolerance;
the returned :class:`ConversionCheck` lets a test also assert on op counts and versions.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnx2tflite_direct import tflite_reader as R
from onnx2tflite_direct import validate as V

# ----------------------------------------------------------------------------------------------
# Building models
# ----------------------------------------------------------------------------------------------

ValueSpec = tuple[str, Any, Sequence[int | str | None] | None]


def _elem_type(t: Any) -> int:
    if isinstance(t, int) and not isinstance(t, bool):
        return t
    return helper.np_dtype_to_tensor_dtype(np.dtype(t))


def _value_info(spec: ValueSpec | onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    if isinstance(spec, onnx.ValueInfoProto):
        return spec
    name, dtype, shape = spec
    return helper.make_tensor_value_info(name, _elem_type(dtype), shape)


def _initializer(item: Any) -> onnx.TensorProto:
    if isinstance(item, onnx.TensorProto):
        return item
    name, arr = item
    return numpy_helper.from_array(np.asarray(arr), name)


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[ValueSpec | onnx.ValueInfoProto],
    outputs: Sequence[ValueSpec | onnx.ValueInfoProto],
    initializers: Iterable[onnx.TensorProto | tuple[str, np.ndarray]] | Mapping = (),
    opset: int | Mapping[str, int] = 17,
    ir_version: int | None = None,
    check: bool = True,
) -> onnx.ModelProto:
    """Thin wrapper over ``onnx.helper.make_model``.

    ``inputs``/``outputs`` are ``(name, elem_type or numpy dtype, shape)``; a shape entry may be
    an int, a ``str`` (symbolic dim) or ``None``; ``shape=None`` means unknown rank.
    ``initializers`` are TensorProtos, ``(name, array)`` pairs or a ``{name: array}`` mapping.
    ``opset`` is the default-domain version or a ``{domain: version}`` mapping. The IR version
    defaults to the lowest one that supports the opsets, so onnxruntime accepts the model.
    """
    if isinstance(initializers, Mapping):
        initializers = initializers.items()
    opsets = {"": opset} if isinstance(opset, int) else dict(opset)
    opset_imports = [helper.make_opsetid(d, v) for d, v in opsets.items()]
    graph = helper.make_graph(
        list(nodes),
        "test_graph",
        [_value_info(s) for s in inputs],
        [_value_info(s) for s in outputs],
        initializer=[_initializer(i) for i in initializers],
    )
    if ir_version is None:
        ir_version = helper.find_min_ir_version_for(opset_imports, ignore_unknown=True)
    model = helper.make_model(graph, opset_imports=opset_imports, ir_version=ir_version)
    if check:
        onnx.checker.check_model(model)
    return model


# ----------------------------------------------------------------------------------------------
# Inspecting .tflite files
# ----------------------------------------------------------------------------------------------


def _builtin_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    ops = schema.BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def _opcodes(tflite_bytes: bytes) -> tuple[Any, list[tuple[str, int]]]:
    """(model, [(name, version) per operator code]); the code is max(builtin, deprecated)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(bytes(tflite_bytes), 0)
    names = _builtin_names()
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        codes.append((names.get(code, f"UNKNOWN_{code}"), oc.Version()))
    return model, codes


def operators_with_float_flag(tflite_bytes: bytes) -> list[tuple[str, bool]]:
    """(opcode, reads or writes a float32/float16 tensor) of every operator of every subgraph:
    what the full-integer tests count as float ops."""
    sch = R.schema()
    model = R.root(tflite_bytes, sch)
    codes = R.operator_codes(model, sch)
    found = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        rows = R.tensor_rows(model, sg, sch)
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            idx = [i for i in [*op.InputsAsNumpy(), *op.OutputsAsNumpy()] if i >= 0]
            floating = any(rows[i]["dtype"] in ("float32", "float16") for i in idx)
            found.append((codes[op.OpcodeIndex()][0], floating))
    return found


def op_histogram(tflite_bytes: bytes) -> collections.Counter:
    """Counter of builtin op names over all subgraphs (custom ops count as ``"CUSTOM"``)."""
    model, codes = _opcodes(tflite_bytes)
    hist: collections.Counter = collections.Counter()
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            hist[codes[sg.Operators(o).OpcodeIndex()][0]] += 1
    return hist


def opcode_versions(tflite_bytes: bytes) -> dict[str, int]:
    """Builtin op name -> operator-code version (highest if listed more than once)."""
    versions: dict[str, int] = {}
    for name, version in _opcodes(tflite_bytes)[1]:
        versions[name] = max(version, versions.get(name, 0))
    return versions


# ----------------------------------------------------------------------------------------------
# Converting and checking
# ----------------------------------------------------------------------------------------------


@dataclass
class ConversionCheck:
    result: Any  # the converter's result object
    tflite_bytes: bytes
    report: dict
    ops: collections.Counter
    versions: dict[str, int]
    validation: V.ValidationResult
    feeds: dict[str, np.ndarray] = field(repr=False)

    @property
    def expected(self) -> dict[str, np.ndarray]:
        return self.validation.expected

    @property
    def actual(self) -> dict[str, np.ndarray]:
        return self.validation.actual


def convert(model: onnx.ModelProto, **convert_options: Any):
    """The package's ``convert``, plus the version check every produced model must pass."""
    from onnx2tflite_direct import convert as _convert

    res = _convert(model, **convert_options)
    assert_versions_in_cpu_range(res.tflite_bytes)
    return res


def assert_versions_in_cpu_range(tflite_bytes: bytes) -> None:
    """Every operator code's version lies in the range the CPU resolver registers."""
    from onnx2tflite_direct.versioning import CPU_VERSION_RANGE

    for name, version in _opcodes(tflite_bytes)[1]:
        if name == "CUSTOM":
            assert version == 1, version
            continue
        assert name in CPU_VERSION_RANGE, f"{name} is not registered in the CPU resolver"
        lo, hi = CPU_VERSION_RANGE[name]
        assert lo <= version <= hi, f"{name} version {version} outside CPU range {lo}-{hi}"


def check_conversion(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    **convert_options: Any,
) -> ConversionCheck:
    """Convert ``model``, run LiteRT and onnxruntime on the same inputs, assert they agree.

    Feeds default to :func:`validate.seeded_inputs` of the front-end-processed model (pinned
    shapes). Tolerance is element-wise ``|a - e| <= atol * max(1, max|e|) + rtol * |e|`` for
    floats, exact equality otherwise.
    """
    res = convert(model, **convert_options)
    front = res.model if getattr(res, "model", None) is not None else model
    feeds = dict(feeds) if feeds is not None else V.seeded_inputs(front, seed)
    val = V.validate(front, res.tflite_bytes, res.report.get("io"), feeds, atol=atol, rtol=rtol)

    onnx_outputs = [o.name for o in model.graph.output]
    assert list(val.expected) == onnx_outputs, (val.expected.keys(), onnx_outputs)
    assert sorted(val.actual) == sorted(onnx_outputs), (
        f"TFLite signature outputs {sorted(val.actual)} != ONNX outputs {sorted(onnx_outputs)}"
    )
    problems = []
    for name, m in val.outputs.items():
        e, a = val.expected[name], val.actual[name]
        if e.shape != a.shape:
            problems.append(f"{name}: shape {a.shape} != expected {e.shape}")
        elif e.dtype != a.dtype:
            problems.append(f"{name}: dtype {a.dtype} != expected {e.dtype}")
        elif not m["ok"]:
            problems.append(
                f"{name}: max_abs={m['max_abs']:.3g} max_rel={m['max_rel']:.3g} "
                f"(max|expected|={m['max_expected_abs']:.3g}, nan_mismatch={m['nan_mismatch']})"
            )
    assert not problems, (
        f"LiteRT disagrees with onnxruntime (atol={atol}, rtol={rtol}):\n  "
        + "\n  ".join(problems)
        + "\n"
        + V.format_table(val)
    )
    return ConversionCheck(
        result=res,
        tflite_bytes=res.tflite_bytes,
        report=res.report,
        ops=op_histogram(res.tflite_bytes),
        versions=opcode_versions(res.tflite_bytes),
        validation=val,
        feeds=feeds,
    )


def check_at_sizes(res, model: onnx.ModelProto, shapes, name: str = "x", seed: int = 0):
    """A file converted with dynamic dims, run in LiteRT at each input shape of ``name``
    (standard-normal float32 feeds) against onnxruntime: same shapes, outputs that vary, and
    agreement within 1e-4 of each output's scale (float32 sums in another order)."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    sess = ort.InferenceSession(model.SerializeToString())
    names = [o.name for o in sess.get_outputs()]
    for shape in shapes:
        feeds = {name: rng.standard_normal(shape).astype(np.float32)}
        expected = dict(zip(names, sess.run(None, feeds), strict=True))
        actual = V.run_litert(res.tflite_bytes, feeds, res.report["io"])
        for out, want in expected.items():
            assert np.std(want) > 1e-3, (shape, out)  # not a near-constant output
            assert actual[out].shape == want.shape, (shape, out, actual[out].shape)
            tol = 1e-4 * max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(actual[out], want, rtol=0, atol=tol, err_msg=str(shape))


def expect_refusal(model: onnx.ModelProto, reason_code: str | None = None, **convert_options):
    """Assert that converting ``model`` raises ``ConversionError`` (with ``reason_code``)."""
    from onnx2tflite_direct import ConversionError

    try:
        convert(model, **convert_options)
    except ConversionError as err:
        if reason_code is not None:
            assert err.reason_code == reason_code, (err.reason_code, str(err))
        return err
    raise AssertionError(f"conversion succeeded; expected refusal {reason_code or ''}".strip())


# ----------------------------------------------------------------------------------------------
# One-node checks (shared by the elementwise/math/logical/activation tests)
# ----------------------------------------------------------------------------------------------

RNG = np.random.default_rng(0)


def values(dtype, shape, low=-20, high=20, nonzero=False):
    """Small random values of ``dtype`` (non-negative for unsigned types)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        low = max(low, 0)
    a = RNG.uniform(low, high, size=shape)
    a = a if dtype.kind == "f" else np.round(a)
    if nonzero:
        a = np.where(a == 0, 3, a)
    return a.astype(dtype)


def run_node(op, feeds: dict, out_dtype=None, out_shape=None, opset=17, **attrs):
    """Build a one-node model over ``feeds`` and check it against onnxruntime."""
    names = list(feeds)
    first = feeds[names[0]]
    shape = (
        out_shape
        if out_shape is not None
        else np.broadcast_shapes(*[a.shape for a in feeds.values()])
    )
    dtype = out_dtype if out_dtype is not None else first.dtype
    model = make_model(
        [helper.make_node(op, names, ["y"], **attrs)],
        inputs=[(n, a.dtype, a.shape) for n, a in feeds.items()],
        outputs=[("y", dtype, shape)],
        opset=opset,
    )
    return check_conversion(model, feeds=feeds)


def small_cnn(seed: int, residual_softmax: bool = True) -> onnx.ModelProto:
    """Conv+Relu -> Conv -> (Add skip | Relu) -> GlobalAveragePool -> Flatten -> MatMul
    (-> Softmax): a [1, 3, 8, 8] -> [1, 4] classifier for the quantization tests."""
    rng = np.random.default_rng(seed)
    inits = {
        "w1": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "b1": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32),
        "fw": (rng.standard_normal((8, 4)) * 0.3).astype(np.float32),
    }
    join = (
        helper.make_node("Add", ["c2", "r1"], ["s"])
        if residual_softmax
        else helper.make_node("Relu", ["c2"], ["s"])
    )
    head = [helper.make_node("MatMul", ["f", "fw"], ["logits" if residual_softmax else "y"])]
    if residual_softmax:
        head.append(helper.make_node("Softmax", ["logits"], ["y"], axis=1))
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        join,
        helper.make_node("GlobalAveragePool", ["s"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        *head,
    ]
    return make_model(
        nodes,
        inputs=[("x", np.float32, (1, 3, 8, 8))],
        outputs=[("y", np.float32, (1, 4))],
        initializers=inits,
        opset=17,
    )


def load_script(relative_path: str, name: str):
    """A repository script that is not a package module (``examples/``, ``tools/``), imported
    from its path so tests can call its functions."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / relative_path
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
