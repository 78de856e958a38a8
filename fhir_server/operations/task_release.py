"""$release — ``POST [base]/Task/[id]/$release``: the owner gives a claimed step back to the
worklist (``requested``, no owner). A doctor may pass ``owner`` (valueReference to a
Practitioner) to reassign the step to that doctor instead."""

from __future__ import annotations

from fhir_server.context import Context, FhirRequest, Reply
from fhir_server.operations.registry import Operation
from fhir_server.workflow_http import Params, actor_of, require_post
from workflow import cases


def run(ctx: Context, req: FhirRequest) -> Reply:
    require_post(req, "release")
    actor = actor_of(ctx, req)
    owner = Params(req.body).reference("owner")
    return Reply(200, cases.release(ctx.repo, actor, req.res_id or "", reassign_to=owner).task)


OPERATION = Operation(
    name="release",
    definition="http://hearth.local/fhir/OperationDefinition/Task-release",
    levels=frozenset({"instance"}),
    types=frozenset({"Task"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
)
