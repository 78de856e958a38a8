"""$start-case — ``POST [base]/Task/$start-case``: start a case of a shipped definition
(docs/workflow.md). Parameters: ``caseType`` (valueCode: skin-screening | imaging-review |
lung-risk), ``patient`` and ``focus`` (valueReference), optional ``referredTo`` (the chosen
doctor), ``priority`` (valueCode), ``note`` (valueString), ``key`` (valueString: a client's identifier of
this start, 8-64 letters, digits or ``-``; a second start with the same key for the same patient
returns the case already started, so an app may retry after a lost response). Returns the case
Task (201)."""

from __future__ import annotations

import re

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import START_CASE_SCOPES, actor_of, patient_step_scopes
from resources.errors import Invalid
from workflow import cases

KEY = re.compile(r"[A-Za-z0-9-]{8,64}")


def run(ctx: Context, req: FhirRequest) -> Reply:
    p = req.params
    focus = p.reference("focus")
    ctx = patient_step_scopes(ctx, "Task", "c", (focus,) if focus else ())
    actor = actor_of(ctx, req)
    case_type = p.text("caseType", fhir_type="code", required=True) or ""
    patient = p.reference("patient", required=True) or ""
    key = p.text("key", fhir_type="string")
    if key is not None and not KEY.fullmatch(key):
        raise Invalid("key must be 8 to 64 letters, digits or '-'")
    out = cases.start_case(
        ctx.repo,
        actor,
        case_type,
        patient,
        focus=focus,
        referred_to=p.reference("referredTo"),
        priority=p.text("priority", fhir_type="code") or "routine",
        note_text=p.text("note", fhir_type="string"),
        # scoped to the case type and patient: a client's key never finds another patient's case
        key=f"{case_type}:{patient}:client:{key}" if key else None,
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
    permission=Permission(self_checked=True, reason=START_CASE_SCOPES),
)
