"""$accept — ``POST [base]/Appointment/[id]/$accept``: the patient accepts a ``proposed``
appointment (e.g. the one proposed after a high-risk AI result); it becomes ``booked`` and its
tentative Slot ``busy``. Not proposed: 409."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import APPOINTMENT_SCOPES, actor_of, patient_step_scopes
from workflow import appointments


def run(ctx: Context, req: FhirRequest) -> Reply:
    ctx = patient_step_scopes(ctx, "Appointment", "u", (f"Appointment/{req.res_id}",))
    return Reply(200, appointments.accept(ctx.repo, actor_of(ctx, req), req.res_id or ""))


OPERATION = Operation(
    name="accept",
    definition="http://hearth.local/fhir/OperationDefinition/Appointment-accept",
    levels=frozenset({"instance"}),
    types=frozenset({"Appointment"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission(self_checked=True, reason=APPOINTMENT_SCOPES),
)
