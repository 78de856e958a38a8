"""The operations table: which ``$operations`` exist, at which levels, for which types.

The router dispatches from it and the CapabilityStatement is generated from it, so the
statement cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fhir_server.context import Context, FhirRequest, Reply


@dataclass(frozen=True)
class Operation:
    name: str  # without the "$"
    definition: str  # canonical OperationDefinition URL
    levels: frozenset[str]  # "system", "type", "instance"
    handler: Callable[[Context, FhirRequest], Reply]
    types: frozenset[str] | None = None  # None: every resource type
    methods: frozenset[str] = frozenset({"GET", "POST"})
    affects_state: bool = False


def operations() -> dict[str, Operation]:
    """Every operation Hearth implements, by name."""
    from fhir_server.operations import ai_analyze, reindex, validate

    ops = [validate.OPERATION, reindex.OPERATION, ai_analyze.OPERATION]
    return {op.name: op for op in ops}
