"""$claim — ``POST [base]/Task/[id]/$claim``: take a ``requested`` step whose performerType is
the caller's role; it becomes ``in-progress`` with the caller as ``owner``. Of concurrent
claims exactly one wins; the others get 409. Wrong role: 403. A patient user may claim a
step of their own case that names the patient role (the lung-risk intake)."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import STEP_SCOPES, actor_of, patient_step_scopes
from workflow import cases


def run(ctx: Context, req: FhirRequest) -> Reply:
    ctx = patient_step_scopes(ctx, "Task", "u", (f"Task/{req.res_id}",))
    return Reply(200, cases.claim(ctx.repo, actor_of(ctx, req), req.res_id or "").task)


OPERATION = Operation(
    name="claim",
    definition="http://hearth.local/fhir/OperationDefinition/Task-claim",
    levels=frozenset({"instance"}),
    types=frozenset({"Task"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    # Task u, or a patient's own step; the engine then checks the actor's role (docs/workflow.md)
    permission=Permission(self_checked=True, reason=STEP_SCOPES),
)
