"""The operations Hearth implements, found by walking this package: every module that declares
``OPERATION = Operation(...)`` (``fhir_server/rest/operations/spec.py``) is one operation. There is no
central list; adding an operation is adding its module (docs/extending.md).

The router dispatches from it, ``fhir_server/auth/enforce.py`` reads each operation's
permission from it, and the CapabilityStatement is generated from it, so none of them can drift
from the code.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

import fhir_server.rest.operations as package
from fhir_server.rest.operations.spec import Operation


@functools.cache
def operations() -> Mapping[str, Operation]:
    """Every operation Hearth implements, by name (sorted by name)."""
    found: dict[str, Operation] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        op = getattr(module, "OPERATION", None)
        if op is None:
            continue  # a helper module (spec, parameters, terminology_inputs, ...)
        if not isinstance(op, Operation):
            raise TypeError(f"{module.__name__}.OPERATION is not an Operation")
        if op.name in found:
            raise ValueError(f"operation ${op.name} is declared twice ({module.__name__})")
        found[op.name] = op
    return MappingProxyType(dict(sorted(found.items())))
