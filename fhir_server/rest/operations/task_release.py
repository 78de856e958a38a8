"""$release — ``POST [base]/Task/[id]/$release``: the owner gives a claimed step back to the
worklist (``requested``, no owner). A doctor may pass ``owner`` (valueReference to a
Practitioner) to reassign the step to that doctor instead."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import actor_of
from workflow import cases


def run(ctx: Context, req: FhirRequest) -> Reply:
    actor = actor_of(ctx, req)
    owner = req.params.reference("owner")
    return Reply(200, cases.release(ctx.repo, actor, req.res_id or "", reassign_to=owner).task)


OPERATION = Operation(
    name="release",
    definition="http://hearth.local/fhir/OperationDefinition/Task-release",
    levels=frozenset({"instance"}),
    types=frozenset({"Task"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission.on_type(
        "u"
    ),  # the engine then checks the actor's role (docs/workflow.md)
)
