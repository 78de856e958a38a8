"""$start-case — ``POST [base]/Task/$start-case``: start a case of a shipped definition
(docs/workflow.md). Parameters: ``caseType`` (valueCode: skin-screening | imaging-review |
lung-risk), ``patient`` and ``focus`` (valueReference), optional ``referredTo`` (the chosen
doctor), ``priority`` (valueCode), ``note`` (valueString). Returns the case Task (201)."""

from __future__ import annotations

from fhir_server.context import Context, FhirRequest, Reply
from fhir_server.operations.registry import Operation
from fhir_server.workflow_http import Params, actor_of, require_post
from workflow import cases


def run(ctx: Context, req: FhirRequest) -> Reply:
    require_post(req, "start-case")
    actor = actor_of(ctx, req)
    p = Params(req.body)
    out = cases.start_case(
        ctx.repo,
        actor,
        p.one("caseType", "valueCode", required=True),
        p.reference("patient", required=True) or "",
        focus=p.reference("focus"),
        referred_to=p.reference("referredTo"),
        priority=p.one("priority", "valueCode") or "routine",
        note_text=p.one("note", "valueString"),
    )
    case = out.case
    return Reply(
        201,
        case,
        {"Location": f"{ctx.base}/Task/{case['id']}/_history/{case['meta']['versionId']}"},
    )


OPERATION = Operation(
    name="start-case",
    definition="http://hearth.local/fhir/OperationDefinition/Task-start-case",
    levels=frozenset({"type"}),
    types=frozenset({"Task"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
)
