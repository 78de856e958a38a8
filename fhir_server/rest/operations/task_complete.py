"""$complete — ``POST [base]/Task/[id]/$complete``: the owner finishes a claimed step.

Parameters: ``output`` (resource: Observation, Condition, MedicationRequest, … as the step
allows; stored with the patient and the case's order), ``conclusion`` (valueString),
``conclusionCode`` (valueCodeableConcept), ``note`` (valueString). The case advances; on admin
approval the final DiagnosticReport is made and delivered (PDF, e-mail) at once.

The AI step is completed by the inference worker (role ``ai``) with ``result`` (valueReference,
repeated), ``highRisk`` and ``uncertain`` (valueBoolean) — the HTTP form of
``workflow.cases.record_ai_result``. Returns the completed Task."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import (
    STEP_SCOPES,
    actor_of,
    deliver_report,
    patient_step_scopes,
)
from resources.errors import Forbidden, Invalid
from workflow import cases


def run(ctx: Context, req: FhirRequest) -> Reply:
    ctx = patient_step_scopes(ctx, "Task", "u", (f"Task/{req.res_id}",))
    actor = actor_of(ctx, req)
    p = req.params
    task_id = req.res_id or ""
    if actor.role == "ai":
        task = ctx.repo.read(lambda u: u.read("Task", task_id)).resource
        parent = ((task.get("partOf") or [{}])[0]).get("reference", "")
        if "ai" not in [
            c.get("code") for cc in task.get("performerType") or [] for c in cc.get("coding") or []
        ]:
            raise Forbidden(f"Task/{task_id} is not an AI step")
        if not parent.startswith("Task/"):
            raise Invalid(f"Task/{task_id} is not a step of a case")
        out = cases.record_ai_result(
            ctx.repo,
            parent.removeprefix("Task/"),
            p.references("result"),
            p.boolean("highRisk"),
            p.boolean("uncertain"),
            device=actor.reference,
        )
    else:
        out = cases.complete(
            ctx.repo,
            actor,
            task_id,
            outputs=p.resources("output"),
            conclusion=p.text("conclusion", fhir_type="string"),
            conclusion_code=p.complex("conclusionCode", "CodeableConcept"),
            note_text=p.text("note", fhir_type="string"),
        )
    if out.deliver:
        deliver_report(ctx, out.case["id"])
    return Reply(200, out.task)


OPERATION = Operation(
    name="complete",
    definition="http://hearth.local/fhir/OperationDefinition/Task-complete",
    levels=frozenset({"instance"}),
    types=frozenset({"Task"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    # Task u, or a patient's own step; the engine then checks the actor's role (docs/workflow.md)
    permission=Permission(self_checked=True, reason=STEP_SCOPES),
)
