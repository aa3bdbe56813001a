"""Several signatures in one .tflite: shape configurations of one model, or several models.

LiteRT runs any SignatureDef of a file by name (``interpreter.get_signature_runner(NAME)``);
each names one subgraph and maps its tensors to keys. On-device generative models rely on
this: a decoder's ``prefill`` (many tokens) and ``decode`` (one token) share the weights, an
encoder and its decoder ship as one file.

Nothing here lowers anything. A *signature* is one ordinary conversion: the same ONNX model
with some inputs declared at other dims (:func:`with_input_dims`: a fixed size, or a
dimension left dynamic, which the dynamic-shape lowering then makes resizable), or another
ONNX model altogether. The pipeline lowers each one as it lowers any model, and
:func:`combine` puts the results into one :class:`~onnx2tflite_direct.tfl.Model`: the
subgraphs one after another (control-flow subgraph indices renumbered), one
:class:`~onnx2tflite_direct.tfl.Signature` per part. Weights are shared by the builder,
which stores identical constants (dtype, shape, bytes) once whichever subgraph reads them.
"""

from __future__ import annotations

import argparse
import re

import onnx

from . import errors, tfl

# A signature dim: an integer (fixed), ``?`` or -1 (dynamic, keeping the model's own dim name
# when it has one), a name (dynamic; inputs sharing a name share the size) or NAME+K (that
# size plus K: a decoder's attention mask spans the past and the new token, ``past+1``).
Dim = int | str
DYNAMIC = "?"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(\+[0-9]+)?$")

# The README / --help text of the two options (``options.py`` declares them).
SIGNATURE_DOC = (
    "signature NAME of the file: the model with these inputs declared at these dims "
    "(repeatable; the file then has exactly the signatures named): an integer fixes a dim, "
    "`?` leaves it dynamic, a name makes a dynamic dim shared by every dim of that name; "
    "inputs not named keep the model's declaration. One subgraph per signature, keyed by "
    "its name and the ONNX input/output names; weights stored once (see "
    "[Several signatures](#several-signatures-in-one-file))"
)
MERGE_DOC = (
    "put another ONNX model into the same file as signature NAME (repeatable; e.g. a "
    "decoder beside its encoder); weights identical across the models are stored once. "
    "The main model's signature is named after its stem unless `--signature` names them"
)


# --------------------------------------------------------------------------------------------
# Command-line values
# --------------------------------------------------------------------------------------------


def parse_dim(text: str) -> Dim:
    text = text.replace(" ", "")
    if text in (DYNAMIC, "-1"):
        return DYNAMIC
    if _NAME.match(text):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a dim is an integer, ? (dynamic) or a name, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a dim must be >= 0, ? or a name, got {text!r}")
    return value


def parse_signature(text: str) -> tuple[str, dict[str, tuple[Dim, ...]]]:
    """``NAME:INPUT=d0,d1,...[;INPUT=...]`` -> (NAME, {INPUT: dims})."""
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:INPUT=d0,d1,...[;INPUT=...], got {text!r}")
    dims: dict[str, tuple[Dim, ...]] = {}
    for item in (i for i in rest.split(";") if i.strip()):
        inp, eq, values = item.partition("=")
        if not eq or not inp.strip():
            raise argparse.ArgumentTypeError(f"expected INPUT=d0,d1,... in {text!r}, got {item!r}")
        inp, shape = inp.strip(), tuple(parse_dim(d) for d in values.split(",")) if values else ()
        if dims.get(inp, shape) != shape:  # the last one silently won
            raise argparse.ArgumentTypeError(
                f"signature {name!r} gives input {inp!r} twice with different dims in {text!r}"
            )
        dims[inp] = shape
    return name, dims


def parse_merge(text: str) -> tuple[str, str]:
    """``NAME=model.onnx`` -> (NAME, path)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=model.onnx, got {text!r}")
    return name, path


def signatures_from_cli(pairs) -> dict | None:
    """Repeated ``--signature`` values -> ``{NAME: {INPUT: dims}}`` (a repeated NAME is an
    error: two entries would silently become one)."""
    return _unique(pairs, "signatures")


def merge_from_cli(pairs) -> dict | None:
    return _unique(pairs, "merge")


def _unique(pairs, option: str) -> dict | None:
    if not pairs:
        return None
    out: dict = {}
    for name, value in pairs:
        if name in out:
            raise errors.OptionError(f"{{0}} names {name!r} twice", (option,))
        out[name] = value
    return out


# --------------------------------------------------------------------------------------------
# Checks (run by option_checks)
# --------------------------------------------------------------------------------------------


def value_problems(signatures, merge) -> list[str]:
    """Problems of the ``signatures`` / ``merge`` values themselves, as message tails."""
    problems = []
    for key, dims in (signatures or {}).items():
        if not isinstance(key, str) or not key:
            problems.append(f"signature names must be non-empty strings, got {key!r}")
            continue
        if not isinstance(dims, dict):
            problems.append(f"{key}: expected {{INPUT: (d0, d1, ...)}}, got {dims!r}")
            continue
        for inp, shape in dims.items():
            for d in shape:
                ok = (isinstance(d, int) and not isinstance(d, bool) and d >= -1) or (
                    isinstance(d, str) and (d == DYNAMIC or _NAME.match(d))
                )
                if not ok:
                    problems.append(f"{key}: {inp} dim {d!r} is not an integer, ? or a name")
    for key, path in (merge or {}).items():
        if not isinstance(key, str) or not key:
            problems.append(f"merged signature names must be non-empty strings, got {key!r}")
        elif not isinstance(path, (str, bytes, onnx.ModelProto)) and not hasattr(
            path, "__fspath__"
        ):
            problems.append(
                f"{key}: expected a model path, an onnx.ModelProto or its serialized bytes, "
                f"got {type(path).__name__}"
            )
    both = sorted(set(signatures or {}) & set(merge or {}))
    if both:
        problems.append(f"{', '.join(both)} named by both")
    return problems


# --------------------------------------------------------------------------------------------
# Model side
# --------------------------------------------------------------------------------------------


def with_input_dims(
    model: onnx.ModelProto, dims: dict[str, tuple[Dim, ...]], key: str = ""
) -> onnx.ModelProto:
    """A copy of ``model`` whose named inputs are declared with ``dims``: an integer fixes a
    dim, ``?`` (or -1) leaves it dynamic under the model's own dim name (or a new one), a name
    makes it a dynamic dim shared by every dim of that name. Inputs not named keep their
    declarations. An unknown input or a rank that differs is a bad-input error naming the
    input, the signature ``key`` and ``--signature``."""
    where = f"--signature {key}" if key else "--signature"
    out = onnx.ModelProto()
    out.CopyFrom(model)
    initializers = {t.name for t in out.graph.initializer}
    declared = {vi.name: vi for vi in out.graph.input if vi.name not in initializers}
    for name, shape in dims.items():
        vi = declared.get(name)
        if vi is None:
            raise errors.BadInputError(
                errors.INVALID_OPTION,
                f"{where}: the model has no input {name!r} (inputs: {', '.join(declared)})",
            )
        tt = vi.type.tensor_type
        if tt.HasField("shape") and len(tt.shape.dim) != len(shape):
            raise errors.BadInputError(
                errors.INVALID_OPTION,
                f"{where}: input {name!r} has rank {len(tt.shape.dim)}, "
                f"got {len(shape)} dims {tuple(shape)}",
            )
        old = list(tt.shape.dim) if tt.HasField("shape") else []
        own = [d.dim_param if d.HasField("dim_param") else "" for d in old]
        own += [""] * (len(shape) - len(own))
        tt.shape.Clear()
        for axis, d in enumerate(shape):
            dim = tt.shape.dim.add()
            if isinstance(d, int) and d >= 0:
                dim.dim_value = d
            elif d in (DYNAMIC, -1):
                dim.dim_param = own[axis] or f"{name}_dim{axis}"
            else:
                dim.dim_param = d
    return out


def combine(parts: list[tuple[str, tfl.Model]]) -> tfl.Model:
    """One model holding every part's subgraphs, one signature per part (``key`` -> the part's
    first subgraph). Operator options naming a subgraph (``*_subgraph_index``: IF branches,
    WHILE cond/body, CALL_ONCE) are renumbered; subgraphs are named after their signature.
    Metadata entries are merged (the first part's value wins)."""
    subgraphs: list[tfl.Subgraph] = []
    signatures: list[tfl.Signature] = []
    metadata: dict[str, bytes] = {}
    for key, model in parts:
        offset = len(subgraphs)
        for i, sg in enumerate(model.subgraphs):
            if offset:
                for op in sg.operators:
                    for field_name, value in op.options.items():
                        if field_name.endswith("subgraph_index"):
                            op.options[field_name] = value + offset
            sg.name = key if i == 0 else f"{key}/{sg.name}"
            subgraphs.append(sg)
        signatures.append(tfl.Signature(key, offset))
        for name, value in model.metadata.items():
            metadata.setdefault(name, value)
    first = parts[0][1]
    return tfl.Model(subgraphs, first.description, signatures=signatures, metadata=metadata)


def summary(key: str, index: int, source: str, io_table: list[dict]) -> dict:
    """The report's entry for one signature: its subgraph and its I/O rows."""

    def rows(kind: str) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "kind"} for r in io_table if r["kind"] == kind]

    return {
        "name": key,
        "subgraph_index": index,
        "source": source,
        "inputs": rows("input"),
        "outputs": rows("output"),
    }
