"""Seed models and structure-aware mutations for fuzzing the converter.

A mutation changes one field of a valid small model (a dim, a dtype, an attribute, an edge, a
node, an initializer, the opset) so the converter sees inputs that are *almost* right: the
hardest kind to refuse cleanly. Everything is driven by a ``random.Random`` so an example is
reproduced from ``(seed name, example seed)`` alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
INTERESTING_INTS = [-(2**40), -3, -2, -1, 0, 1, 2, 3, 4, 7, 2**31, 2**40]
INTERESTING_FLOATS = [0.0, -1.0, 1e-30, 1e30, float("nan"), float("inf")]
DTYPES = [
    TensorProto.FLOAT,
    TensorProto.FLOAT16,
    TensorProto.DOUBLE,
    TensorProto.INT8,
    TensorProto.UINT8,
    TensorProto.INT32,
    TensorProto.INT64,
    TensorProto.BOOL,
    TensorProto.STRING,
    TensorProto.UNDEFINED,
]
OP_TYPES = [
    "Relu",
    "Add",
    "Mul",
    "Conv",
    "Reshape",
    "Concat",
    "Gemm",
    "Softmax",
    "MaxPool",
    "Transpose",
    "Identity",
    "Sigmoid",
    "MatMul",
    "Flatten",
    "NoSuchOp",
]


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "seed", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def seed_models() -> dict[str, onnx.ModelProto]:
    """A handful of valid models covering the common op families."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    seeds = {
        "conv_relu_add": _model(
            [
                helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                helper.make_node("Relu", ["c"], ["r"]),
                helper.make_node("Add", ["r", "k"], ["y"]),
            ],
            [_vi("x", [1, 3, 8, 8])],
            [_vi("y", [1, 4, 8, 8])],
            [_const("w", w), _const("b", np.ones(4, np.float32)), _const("k", np.float32(0.5))],
        ),
        "reshape_concat_gemm_softmax": _model(
            [
                helper.make_node("Reshape", ["x", "s"], ["f"]),
                helper.make_node("Concat", ["f", "f"], ["cat"], axis=1),
                helper.make_node("Gemm", ["cat", "gw", "gb"], ["g"], transB=1),
                helper.make_node("Softmax", ["g"], ["y"], axis=-1),
            ],
            [_vi("x", [2, 3, 4])],
            [_vi("y", [2, 5])],
            [
                _const("s", np.array([2, 12], np.int64)),
                _const("gw", rng.standard_normal((5, 24)).astype(np.float32)),
                _const("gb", np.zeros(5, np.float32)),
            ],
        ),
        "maxpool_mul": _model(
            [
                helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                helper.make_node("Mul", ["p", "p"], ["y"]),
            ],
            [_vi("x", [1, 2, 6, 6])],
            [_vi("y", [1, 2, 3, 3])],
        ),
        "shape_chain": _model(
            [
                helper.make_node("Shape", ["x"], ["sh"]),
                helper.make_node("ConstantOfShape", ["sh"], ["z"]),
                helper.make_node("Add", ["x", "z"], ["a"]),
                helper.make_node("Transpose", ["a"], ["y"], perm=[1, 0]),
            ],
            [_vi("x", [3, 5])],
            [_vi("y", [5, 3])],
        ),
    }
    example = ROOT / "examples" / "small_cnn.onnx"
    if example.is_file():
        seeds["small_cnn"] = onnx.load(str(example))
    return seeds


# ----------------------------------------------------------------------------------------------
# Mutations: each edits ``m`` (a private copy) in place.
# ----------------------------------------------------------------------------------------------


def _value_infos(m):
    return list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info)


def _tensor_names(m) -> list[str]:
    g = m.graph
    names = [i.name for i in g.input] + [t.name for t in g.initializer]
    names += [o for n in g.node for o in n.output]
    return names or ["x"]


def change_dim(m, rng):
    vis = [v for v in _value_infos(m) if v.type.tensor_type.shape.dim]
    if vis:
        dim = rng.choice(rng.choice(vis).type.tensor_type.shape.dim)
        if rng.random() < 0.15:
            dim.Clear()
            dim.dim_param = "N"
        else:
            dim.dim_value = rng.choice([0, 1, 2, 3, 5, 64, -1, 2**31, 2**40])


def change_rank(m, rng):
    vis = [v for v in _value_infos(m) if v.type.tensor_type.HasField("shape")]
    if vis:
        shape = rng.choice(vis).type.tensor_type.shape
        if shape.dim and rng.random() < 0.5:
            del shape.dim[rng.randrange(len(shape.dim))]
        else:
            shape.dim.add().dim_value = rng.choice([1, 2, 3])


def change_dtype(m, rng):
    vis = _value_infos(m)
    if vis:
        rng.choice(vis).type.tensor_type.elem_type = rng.choice(DTYPES)


def change_attribute(m, rng):
    attrs = [a for n in m.graph.node for a in n.attribute]
    if not attrs:
        return
    a = rng.choice(attrs)
    if a.type == onnx.AttributeProto.INT:
        a.i = rng.choice(INTERESTING_INTS)
    elif a.type == onnx.AttributeProto.INTS:
        values = list(a.ints)
        if values and rng.random() < 0.7:
            values[rng.randrange(len(values))] = rng.choice(INTERESTING_INTS)
        else:
            values = values[:-1] if values and rng.random() < 0.5 else values + [1]
        a.ClearField("ints")
        a.ints.extend(values)
    elif a.type == onnx.AttributeProto.FLOAT:
        a.f = rng.choice(INTERESTING_FLOATS)
    elif a.type == onnx.AttributeProto.STRING:
        a.s = rng.choice([b"", b"bogus", b"SAME_UPPER", b"NOTSET", b"VALID"])
    else:
        a.type = onnx.AttributeProto.INT  # type confusion: declared INT, payload elsewhere


def add_or_drop_attribute(m, rng):
    if not m.graph.node:
        return
    n = rng.choice(m.graph.node)
    if n.attribute and rng.random() < 0.5:
        del n.attribute[rng.randrange(len(n.attribute))]
    else:
        name = rng.choice(["axis", "perm", "pads", "strides", "group", "alpha", "bogus"])
        if name in ("perm", "pads", "strides"):
            value = [rng.choice(INTERESTING_INTS) for _ in range(rng.randrange(0, 5))]
            kind = onnx.AttributeProto.INTS
        else:
            value = rng.choice(INTERESTING_INTS)
            kind = onnx.AttributeProto.INT
        n.attribute.append(helper.make_attribute(name, value, attr_type=kind))


def rewire_input(m, rng):
    nodes = [n for n in m.graph.node if n.input]
    if nodes:
        n = rng.choice(nodes)
        k = rng.randrange(len(n.input))
        n.input[k] = rng.choice(_tensor_names(m) + ["", "dangling"])


def add_or_drop_input(m, rng):
    if not m.graph.node:
        return
    n = rng.choice(m.graph.node)
    if n.input and rng.random() < 0.5:
        del n.input[rng.randrange(len(n.input))]
    else:
        n.input.append(rng.choice(_tensor_names(m)))


def drop_node(m, rng):
    if m.graph.node:
        del m.graph.node[rng.randrange(len(m.graph.node))]


def duplicate_node(m, rng):
    if m.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(rng.choice(m.graph.node))
        m.graph.node.insert(rng.randrange(len(m.graph.node) + 1), copy)


def swap_nodes(m, rng):
    nodes = list(m.graph.node)
    if len(nodes) >= 2:
        i, j = rng.sample(range(len(nodes)), 2)
        nodes[i], nodes[j] = nodes[j], nodes[i]
        m.graph.ClearField("node")
        m.graph.node.extend(nodes)


def change_op_type(m, rng):
    if m.graph.node:
        rng.choice(m.graph.node).op_type = rng.choice(OP_TYPES)


def change_domain(m, rng):
    if m.graph.node:
        rng.choice(m.graph.node).domain = rng.choice(["com.unknown", "ai.onnx.ml", "ai.onnx"])


def change_initializer(m, rng):
    inits = list(m.graph.initializer)
    if not inits:
        return
    t = rng.choice(inits)
    choice = rng.randrange(5)
    if choice == 0 and t.dims:
        t.dims[rng.randrange(len(t.dims))] = rng.choice([0, 1, 2, 5, 2**31, -1])
    elif choice == 1:
        t.data_type = rng.choice(DTYPES)
    elif choice in (2, 3):
        try:  # an earlier mutation may have made the tensor unreadable: then truncate it
            arr = numpy_helper.to_array(t)
        except (ValueError, TypeError):
            t.raw_data = t.raw_data[: len(t.raw_data) // 2]
            return
        if choice == 2:
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
            t.raw_data = t.raw_data[: len(t.raw_data) // 2]
        else:
            wide = arr.astype(np.float64)
            wide = np.where(np.isfinite(wide), wide, 0) * rng.choice([0, -1, 1e6])
            t.CopyFrom(numpy_helper.from_array(wide.astype(arr.dtype), t.name))
    else:
        t.name = rng.choice(_tensor_names(m))


def change_outputs(m, rng):
    g = m.graph
    if g.output and rng.random() < 0.4:
        del g.output[rng.randrange(len(g.output))]
    else:
        name = rng.choice(_tensor_names(m))
        g.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))


def change_opset(m, rng):
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = rng.choice([1, 6, 7, 9, 11, 13, 17, 21, onnx.defs.onnx_opset_version() + 1])


MUTATIONS: list[Callable] = [
    change_dim,
    change_rank,
    change_dtype,
    change_attribute,
    add_or_drop_attribute,
    rewire_input,
    add_or_drop_input,
    drop_node,
    duplicate_node,
    swap_nodes,
    change_op_type,
    change_domain,
    change_initializer,
    change_outputs,
    change_opset,
]


def mutate(seed: onnx.ModelProto, example_seed: int) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``seed`` with 1-3 mutations; returns it and the mutation names applied."""
    rng = random.Random(example_seed)
    m = onnx.ModelProto()
    m.CopyFrom(seed)
    applied = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        fn = rng.choice(MUTATIONS)
        fn(m, rng)
        applied.append(fn.__name__)
    return m, applied


def run_litert(tflite_bytes: bytes) -> None:
    """Load, allocate and invoke with zero inputs; raises if LiteRT rejects the model."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite_bytes)
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    interp.invoke()


def classify_conversion(model: onnx.ModelProto) -> tuple[str, str, bytes | None]:
    """Convert in-process: ``(outcome, detail, tflite bytes or None)``.

    Outcomes: ``converted``, ``error:<reason_code>`` for a typed refusal, ``internal_error``
    (a bug) and ``raw_exception`` (an exception that escaped the typed errors: a worse bug).
    """
    from onnx2tflite_direct import convert
    from onnx2tflite_direct.errors import ConversionError, InternalError

    try:
        result = convert(model)
    except InternalError as exc:
        return "internal_error", str(exc)[:300], None
    except ConversionError as exc:
        return f"error:{exc.reason_code}", str(exc)[:200], None
    except Exception as exc:  # noqa: BLE001 - the fuzzer records anything that escapes
        return "raw_exception", f"{type(exc).__name__}: {exc}"[:300], None
    return "converted", "", result.tflite_bytes
