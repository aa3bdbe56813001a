"""ONNX front end: a model (path or proto) in, the IR graph (``ir.Graph``) out.

The stages, each in its own module, in the order ``graph.load_graph`` runs them:

- ``loading``: safe loading; external data must stay inside the model folder.
- ``checks``: structural and operand checks the ONNX tools leave out (one clear line each).
- ``inference``: the user's shape pins, then ONNX shape inference alternating with constant
  folding until nothing changes (on a data-light skeleton of the model).
- ``passes``: proto-level rules that give inference facts it cannot find itself (constant
  If branches, ``x[i:i+k]`` windows, for-loop trip counts); named, reported and switchable
  with ``--disable-rewrite`` like the IR and TFLite rewrites.
- ``sequences``: statically known sequence/optional uses rewritten into tensor ops.
- ``protos``: the proto readers (dims, dtypes, attributes, constants) all of them share.

Opset policy: the default domain is supported directly for opsets 7..``onnx.defs`` newest; each
lowering declares the opset range whose semantics it implements (older opsets are not
rewritten, so what runs is what the model says). Models below opset 7 are refused.
"""

from .graph import FrontEndResult, load_graph
from .inference import apply_shape_pins
from .loading import load_model
from .passes import RULES

__all__ = ["RULES", "FrontEndResult", "apply_shape_pins", "load_graph", "load_model"]
