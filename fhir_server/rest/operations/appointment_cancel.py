"""$cancel — ``POST [base]/Appointment/[id]/$cancel``: cancel an appointment and free its
Slot (optional ``reason`` valueString)."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import APPOINTMENT_SCOPES, actor_of, patient_step_scopes
from workflow import appointments


def run(ctx: Context, req: FhirRequest) -> Reply:
    ctx = patient_step_scopes(ctx, "Appointment", "u", (f"Appointment/{req.res_id}",))
    actor = actor_of(ctx, req)
    reason = req.params.text("reason", fhir_type="string")
    return Reply(200, appointments.cancel(ctx.repo, actor, req.res_id or "", reason=reason))


OPERATION = Operation(
    name="cancel",
    definition="http://hearth.local/fhir/OperationDefinition/Appointment-cancel",
    levels=frozenset({"instance"}),
    types=frozenset({"Appointment"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission(self_checked=True, reason=APPOINTMENT_SCOPES),
)
