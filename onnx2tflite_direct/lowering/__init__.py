"""One module per op family; importing this package registers every lowering.

Modules are discovered (sorted by name, so registration order is deterministic): adding an op
family is adding a file here, with no edit to the core.
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")
