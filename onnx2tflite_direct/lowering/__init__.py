"""One module per op family, named for the family; importing this package registers every
lowering.

Modules are discovered (sorted by name, so registration order is deterministic; the registry
refuses overlapping opset ranges, so lookup does not depend on it): adding an op family is
adding a file here, with no edit to the core. Shared helpers register nothing: ``emit``
(``Emitter``, the one way a lowering emits ops: shape-inferring, returns the new tensor),
``elementwise`` (the dtype-widening policy), ``common`` (padding and pool-window
arithmetic), ``axis_layouts``; a family split in parts keeps its registrations in one module
(``resize`` with ``resize_reference`` / ``resize_builtins`` / ``resize_runtime``, ``pool`` with
``pool3d``). How to add an op: ``docs/adding_an_op.md``.
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")
