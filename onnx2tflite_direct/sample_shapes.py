"""Shape arithmetic over dynamic dims, valued at one sample size.

When an input dim is dynamic (``dynamic_shapes.py``), Shape/Size over it stay run-time ops, and
so does everything computed from them: position ids from Range, mask sizes, Reshape targets.
The lowering still needs the static shapes those ops produce at the sample size being lowered,
and ONNX shape inference cannot give them (its data propagation stops at Range, Expand ...).
This module evaluates that arithmetic at the sample size, with the same folding code the
constants use, but keeps the results out of the constants: they only stand in for the
run-time values in the shape-inference skeleton and give their tensors static shapes.
"""

from __future__ import annotations

from collections import ChainMap

import numpy as np
import onnx
from onnx import helper

from .folding import NEVER_FOLD, fold_node, static_shape


class SampleValues:
    """Values of run-time shape arithmetic at one sample size (see the module docstring)."""

    def __init__(self):
        self.values: dict[str, np.ndarray] = {}

    def known(self, consts: dict) -> dict | ChainMap:
        """Constants and sample values, for building the inference skeleton."""
        return ChainMap(self.values, consts) if self.values else consts

    def skeleton_nodes(self, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
        """Nodes whose outputs are not stood in for by sample values."""
        if not self.values:
            return nodes
        return [n for n in nodes if not all(not o or o in self.values for o in n.output)]

    def add_infos(self, infos: dict) -> None:
        for name, value in self.values.items():
            infos[name] = helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)
            )

    def evaluate(self, nodes, consts: dict, infos: dict, opsets: dict) -> bool:
        """Value every node reachable from dynamic Shape/Size through foldable ops; True when
        anything new was found."""
        known = self.known(consts)
        found = False
        for n in nodes:
            if not n.output or all(not o or o in self.values for o in n.output):
                continue
            if n.domain not in ("", "ai.onnx") or n.op_type in NEVER_FOLD:
                continue
            if n.op_type in ("Shape", "Size"):
                if static_shape(n.input[0], infos) is None and n.input[0] not in known:
                    continue
            elif not all(not i or i in known for i in n.input) or not any(
                i in self.values for i in n.input
            ):
                continue
            out = fold_node(n, known, infos, opsets.get(n.domain, 0))
            if out:
                self.values.update(out)
                found = True
        return found
