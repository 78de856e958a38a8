"""$plan-treatment — ``POST [base]/Task/[case id]/$plan-treatment``: the doctor's treatment plan
for a case, as a CarePlan whose activities are made at once (``workflow/careplans.py``).

Inputs: ``title`` (string, required) and one ``activity`` part per activity, each with ``kind``
(code: ``follow-up-photo`` | ``referral`` | ``medication`` | ``appointment``), ``description``
(string, required), ``dueInDays`` (integer; required for a follow-up photo; for an appointment,
the earliest day), for a medication ``medication`` and ``dosage`` (strings) and optionally
``medicationCode`` (valueCoding, e.g. RxNorm from the formulary; the request is then checked for
allergies and interactions, workflow/medchecks.py), for a referral an optional ``practitioner``
(reference: the performer), for an appointment ``practitioner`` (reference: whose first free
Slot from ``dueInDays`` on is booked) and / or ``slot`` (reference: this Slot), and ``propose``
(boolean: a ``proposed`` appointment, its Slot held, for the patient to accept, instead of a
booked one). Doctors only (403 otherwise); an unknown case is 404, a step or a bad activity 400,
a named Slot already taken or a practitioner with no free Slot 409 (nothing written). Returns
201 with the CarePlan."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.parameters import Parameters
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import actor_of
from resources.errors import Invalid
from workflow import careplans


def _activity(req: FhirRequest, n: int, given: object) -> careplans.Activity:
    if not isinstance(given, list):
        raise Invalid(f"$plan-treatment: activity {n + 1} takes parts (kind, description, …)")
    p = Parameters.read("plan-treatment", [], {"resourceType": "Parameters", "parameter": given})
    return careplans.Activity(
        kind=p.text("kind", required=True) or "",
        description=p.text("description", fhir_type="string", required=True) or "",
        due_in_days=p.integer("dueInDays"),
        medication=p.text("medication", fhir_type="string"),
        dosage=p.text("dosage", fhir_type="string"),
        practitioner=p.reference("practitioner"),
        slot=p.reference("slot"),
        propose=p.boolean("propose"),
        medication_code=p.complex("medicationCode", "Coding"),
    )


def run(ctx: Context, req: FhirRequest) -> Reply:
    actor = actor_of(ctx, req)
    p = req.params
    title = p.text("title", fhir_type="string", required=True) or ""
    activities = [_activity(req, n, a.value) for n, a in enumerate(p.all("activity"))]
    made = careplans.plan(ctx.repo, actor, req.res_id or "", title, activities)
    return Reply(201, made, {"Location": f"{ctx.base}/CarePlan/{made['id']}"})


OPERATION = Operation(
    name="plan-treatment",
    definition="http://hearth.local/fhir/OperationDefinition/Task-plan-treatment",
    levels=frozenset({"instance"}),
    types=frozenset({"Task"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission.on_type("u"),  # and the doctor role, checked by the engine
)
