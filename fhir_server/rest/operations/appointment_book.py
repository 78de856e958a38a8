"""$book — ``POST [base]/Appointment/$book``: book a free Slot for a patient (parameters
``slot``, ``patient`` as valueReference, optional ``reason`` valueString, optional ``basedOn``
valueReference: the ServiceRequest of that patient — a case's order — the appointment is for,
as the case view books one). The Slot becomes busy
and a ``booked`` Appointment is returned (201); a Slot already taken answers 409, also when many
book it at once."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import APPOINTMENT_SCOPES, actor_of, patient_step_scopes
from resources.errors import Invalid
from workflow import appointments


def run(ctx: Context, req: FhirRequest) -> Reply:
    p = req.params
    based_on = p.reference("basedOn")
    # A patient's basedOn is read through their compartment first: another's order is a 404.
    ctx = patient_step_scopes(ctx, "Appointment", "c", own=(based_on,) if based_on else ())
    actor = actor_of(ctx, req)
    slot = p.reference("slot", required=True) or ""
    if not slot.startswith("Slot/"):
        raise Invalid("slot must reference a Slot")
    appt = appointments.book(
        ctx.repo,
        actor,
        slot.removeprefix("Slot/"),
        p.reference("patient", required=True) or "",
        reason=p.text("reason", fhir_type="string"),
        based_on=based_on,
    )
    return Reply(201, appt, {"Location": f"{ctx.base}/Appointment/{appt['id']}/_history/1"})


OPERATION = Operation(
    name="book",
    definition="http://hearth.local/fhir/OperationDefinition/Appointment-book",
    levels=frozenset({"type"}),
    types=frozenset({"Appointment"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission(self_checked=True, reason=APPOINTMENT_SCOPES),
)
