"""$reschedule — ``POST [base]/Appointment/[id]/$reschedule``: move an appointment to another
free Slot (``slot`` valueReference) in one transaction; the old Slot is freed, a taken one
answers 409."""

from __future__ import annotations

from fhir_server.context import Context, FhirRequest, Reply
from fhir_server.operations.registry import Operation
from fhir_server.workflow_http import Params, actor_of, require_post
from resources.errors import Invalid
from workflow import appointments


def run(ctx: Context, req: FhirRequest) -> Reply:
    require_post(req, "reschedule")
    actor = actor_of(ctx, req)
    slot = Params(req.body).reference("slot", required=True) or ""
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
)
