"""$reschedule — ``POST [base]/Appointment/[id]/$reschedule``: move an appointment to another
free Slot (``slot`` valueReference) in one transaction; the old Slot is freed, a taken one
answers 409."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import APPOINTMENT_SCOPES, actor_of, patient_step_scopes
from resources.errors import Invalid
from workflow import appointments


def run(ctx: Context, req: FhirRequest) -> Reply:
    ctx = patient_step_scopes(ctx, "Appointment", "u", (f"Appointment/{req.res_id}",))
    actor = actor_of(ctx, req)
    slot = req.params.reference("slot", required=True) or ""
    if not slot.startswith("Slot/"):
        raise Invalid("slot must reference a Slot")
    appt = appointments.reschedule(ctx.repo, actor, req.res_id or "", slot.removeprefix("Slot/"))
    return Reply(200, appt)


OPERATION = Operation(
    name="reschedule",
    definition="http://hearth.local/fhir/OperationDefinition/Appointment-reschedule",
    levels=frozenset({"instance"}),
    types=frozenset({"Appointment"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission(self_checked=True, reason=APPOINTMENT_SCOPES),
)
