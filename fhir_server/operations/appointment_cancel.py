"""$cancel — ``POST [base]/Appointment/[id]/$cancel``: cancel an appointment and free its
Slot (optional ``reason`` valueString)."""

from __future__ import annotations

from fhir_server.context import Context, FhirRequest, Reply
from fhir_server.operations.registry import Operation
from fhir_server.workflow_http import Params, actor_of, require_post
from workflow import appointments


def run(ctx: Context, req: FhirRequest) -> Reply:
    require_post(req, "cancel")
    actor = actor_of(ctx, req)
    reason = Params(req.body).one("reason", "valueString")
    return Reply(200, appointments.cancel(ctx.repo, actor, req.res_id or "", reason=reason))


OPERATION = Operation(
    name="cancel",
    definition="http://hearth.local/fhir/OperationDefinition/Appointment-cancel",
    levels=frozenset({"instance"}),
    types=frozenset({"Appointment"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
)
