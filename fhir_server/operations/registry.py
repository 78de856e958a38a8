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
    # (type, definition URL) where a type's OperationDefinition differs from ``definition``
    definitions: tuple[tuple[str, str], ...] = ()
    instantiates: str | None = None  # a CapabilityStatement the operation makes us conform to

    def definition_for(self, res_type: str | None) -> str:
        return dict(self.definitions).get(res_type or "", self.definition)


def operations() -> dict[str, Operation]:
    """Every operation Hearth implements, by name."""
    from fhir_server.operations import (
        ai_analyze,
        appointment_accept,
        appointment_book,
        appointment_cancel,
        appointment_reschedule,
        audit_log,
        export,
        hl7v2,
        reindex,
        task_claim,
        task_complete,
        task_deliver_report,
        task_release,
        task_start_case,
        terminology_ops,
        validate,
    )

    ops = [validate.OPERATION, reindex.OPERATION, ai_analyze.OPERATION, audit_log.OPERATION]
    ops.append(export.OPERATION)  # status and files: fhir_server/bulkdata.py
    ops.append(hl7v2.OPERATION)  # POST served by fhir_server/hl7v2/web.py
    ops += [  # the workflow (docs/workflow.md)
        task_start_case.OPERATION,
        task_claim.OPERATION,
        task_release.OPERATION,
        task_complete.OPERATION,
        task_deliver_report.OPERATION,
        appointment_book.OPERATION,
        appointment_cancel.OPERATION,
        appointment_reschedule.OPERATION,
        appointment_accept.OPERATION,
    ]
    ops += terminology_ops.OPERATIONS  # docs/terminology.md
    return {op.name: op for op in ops}
