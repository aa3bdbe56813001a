"""TFLite-level intermediate representation: what lowerings emit and the builder writes.

Lowerings never touch FlatBuffer bytes; they create :class:`Tensor` and :class:`Operator`
objects in an :class:`Subgraph`. The builder (``builder.py``) is the only writer of bytes and
computes operator-code versions from these objects (``versioning.py``).

Conventions
- ``Tensor.dtype`` is a numpy dtype (``ml_dtypes.bfloat16`` for BFLOAT16).
- ``Tensor.shape`` is the *stored* (TFLite) shape; ``shape_signature`` uses -1 for dynamic dims
  and is ``None`` when the shape is fully static.
- ``Tensor.data`` holds constant contents already in stored layout (C-contiguous when written);
  ``None`` for activations.
- ``Operator.opcode`` is a ``BuiltinOperator`` name such as ``"CONV_2D"``, or ``"CUSTOM"`` with
  ``custom_code`` set. ``Operator.options`` maps field names of the op's builtin-options table
  (snake_case as in schema.fbs, e.g. ``{"padding": "SAME", "stride_w": 2,
  "fused_activation_function": "RELU"}``) to values; enum values are given by their schema
  names. A ``None`` entry in ``Operator.inputs`` is an omitted optional input (index -1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(eq=False, slots=True)
class Quantization:
    """Per-tensor (one scale) or per-axis (scales along ``axis``) affine quantization.

    Blockwise (the schema's ``BlockwiseQuantization``, written by ``--quantize int4``):
    ``block_scales`` is a constant FLOAT16 tensor ``[rows, cols / block_size]`` with one scale
    per ``block_size`` consecutive elements of each row of a 2-D weight, zero point 0;
    ``scale`` and ``zero_point`` are then empty. It is written next to the weight."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0
    block_size: int = 0
    block_scales: Tensor | None = None


@dataclass(eq=False, slots=True)
class Tensor:
    """One TFLite tensor. Identity (``is``) is what connects operators."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    data: np.ndarray | None = None
    quantization: Quantization | None = None
    shape_signature: tuple[int, ...] | None = None
    # A persistent state tensor (schema ``is_variable``): the sequence LSTM/RNN kernels read
    # their state from one and leave the final state in it.
    is_variable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, np.dtype):  # (a dtype converts to itself)
            self.dtype = np.dtype(self.dtype)
        self.shape = tuple(map(int, self.shape))

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(eq=False, slots=True)
class Operator:
    opcode: str
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    options: dict[str, Any] = field(default_factory=dict)
    custom_code: str | None = None
    custom_options: bytes | None = None
    # Which ONNX node this operator came from (report and tensor-name mapping only).
    onnx_node: str | None = None
    # Schema ``intermediates``: tensors only carrying quantization params a kernel reads
    # (the integer sequence LSTM's 5, ``quant/integer_lstm.py``).
    intermediates: list[Tensor] = field(default_factory=list)


@dataclass(eq=False)
class Subgraph:
    name: str = "main"
    operators: list[Operator] = field(default_factory=list)
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    # Signature keys, parallel to ``inputs`` / ``outputs`` (the ONNX names).
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    # id(tensor a rewrite removed) -> the tensor now holding its values (for the tensor map).
    renamed: dict[int, Tensor] = field(default_factory=dict)
    # Other lowerings of some ONNX nodes, not in the graph: {"node", "form", "ops", "inputs"}
    # (a recurrent layer's forms with integer kernels, ``quant/recurrent_forms.py``).
    alternatives: list[dict] = field(default_factory=list)

    def tensors(self) -> list[Tensor]:
        """Every tensor reachable from the graph, in a deterministic first-use order."""
        seen: dict[int, Tensor] = {}
        for t in self.inputs:
            seen.setdefault(id(t), t)
        for op in self.operators:
            for t in op.inputs:
                if t is not None:
                    seen.setdefault(id(t), t)
                    scales = t.quantization.block_scales if t.quantization else None
                    if scales is not None:  # (written next to its blockwise weight)
                        seen.setdefault(id(scales), scales)
            for t in op.outputs:
                seen.setdefault(id(t), t)
            for t in op.intermediates:
                seen.setdefault(id(t), t)
        for t in self.outputs:
            seen.setdefault(id(t), t)
        return list(seen.values())

    def producers(self, wanted=None, opcodes=None) -> dict[int, Operator]:
        """id(tensor) -> the operator writing it.

        ``wanted`` (a set of tensor ids) and ``opcodes`` restrict the index to those tensors
        and to operators with those opcodes: a rewrite looks at a few candidate tensors, and
        indexing every tensor of a large graph costs more than the rule itself. A snapshot:
        rebuild it (or update it) after editing the operators."""
        out: dict[int, Operator] = {}
        for op in self.operators:
            if opcodes is not None and op.opcode not in opcodes:
                continue
            for t in op.outputs:
                if wanted is None or id(t) in wanted:
                    out[id(t)] = op
        return out

    def consumers(self, wanted=None) -> dict[int, list[tuple[Operator, int]]]:
        """id(tensor) -> every (operator, input index) reading it, in operator order (an
        operator reading a tensor twice is listed twice). ``wanted`` as in :meth:`producers`."""
        out: dict[int, list[tuple[Operator, int]]] = {}
        for op in self.operators:
            for i, t in enumerate(op.inputs):
                if t is not None and (wanted is None or id(t) in wanted):
                    key = id(t)
                    if key in out:
                        out[key].append((op, i))
                    else:
                        out[key] = [(op, i)]
        return out


@dataclass(frozen=True)
class Signature:
    """One SignatureDef: ``key`` runs subgraph ``subgraph_index`` (its ``input_names`` /
    ``output_names`` are the signature's keys)."""

    key: str
    subgraph_index: int


@dataclass(eq=False)
class Model:
    subgraphs: list[Subgraph]
    description: str = "onnx2tflite_direct"
    signature_key: str = "serving_default"
    # Several signatures in one file (``signatures.py``); None: one, ``signature_key``, for
    # subgraph 0.
    signatures: list[Signature] | None = None
    # Extra metadata entries (name -> raw bytes); the builder adds min_runtime_version itself.
    metadata: dict[str, bytes] = field(default_factory=dict)
