"""$refer — ``POST [base]/Task/[case id]/$refer``: the doctor refers the patient of a case from
the case view, without a treatment plan (``workflow/careplans.py`` ``refer``: the same
ServiceRequest a plan's referral activity is).

Inputs: ``description`` (string, required: what and where, e.g. "Excision biopsy, skin
clinic"), ``performer`` (reference to a Practitioner, PractitionerRole or Organization:
whom it is to), ``reason`` (reference, repeated: the findings it is for — Observation,
Condition, DiagnosticReport or RiskAssessment of the same patient; default the case's AI results
and the findings its steps recorded), ``dueInDays`` (integer, 0 to 3660). Doctors only (403
otherwise); an unknown case, performer or finding is 404, a step or bad input 400. Returns 201
with the ServiceRequest, ``basedOn`` the case's order; the case Task gains a ``referral``
output naming it."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import actor_of
from workflow import careplans


def run(ctx: Context, req: FhirRequest) -> Reply:
    actor = actor_of(ctx, req)
    p = req.params
    given = p.references("reason")
    made = careplans.refer(
        ctx.repo,
        actor,
        req.res_id or "",
        p.text("description", fhir_type="string", required=True) or "",
        due_in_days=p.integer("dueInDays"),
        performer=p.reference("performer"),
        reasons=given or None,
    )
    return Reply(201, made, {"Location": f"{ctx.base}/ServiceRequest/{made['id']}"})


OPERATION = Operation(
    name="refer",
    definition="http://hearth.local/fhir/OperationDefinition/Task-refer",
    levels=frozenset({"instance"}),
    types=frozenset({"Task"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission.on_type("u"),  # and the doctor role, checked by the engine
)
