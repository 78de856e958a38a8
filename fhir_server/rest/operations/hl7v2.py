"""$hl7v2 — one HL7 v2 message applied as a transaction, answered by its ACK (docs/hl7v2.md).

``POST [base]/$hl7v2`` is served by ``fhir_server/hl7v2/web.py`` (its body is ER7, not FHIR
JSON, so it has its own route, mounted before the generic operation route, which authorizes it
itself). This declaration puts the operation in the CapabilityStatement, and the generic route
answers any other method 405 from it; ``run`` is never reached.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import MethodNotAllowed


def run(ctx: Context, req: FhirRequest) -> Reply:
    raise MethodNotAllowed(
        "$hl7v2 takes POST with one HL7 v2 message (Content-Type: x-application/hl7-v2+er7)",
        allow=("POST",),
    )


OPERATION = Operation(
    name="hl7v2",
    definition="http://hearth.local/fhir/OperationDefinition/hl7v2",
    levels=frozenset({"system"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission(
        self_checked=True,
        reason="fhir_server/hl7v2/web.py: a system-level token whose scopes allow the writes",
    ),
)
