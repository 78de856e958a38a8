"""The terminology operations (docs/terminology.md), one module each, as the registry lists them."""

from __future__ import annotations

from fhir_server.operations import (
    codesystem_lookup,
    codesystem_subsumes,
    conceptmap_translate,
    validate_code,
    valueset_expand,
)

OPERATIONS = [
    codesystem_lookup.OPERATION,
    codesystem_subsumes.OPERATION,
    validate_code.OPERATION,
    valueset_expand.OPERATION,
    conceptmap_translate.OPERATION,
]
