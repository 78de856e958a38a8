"""$deliver-report — ``POST [base]/Task/[case id]/$deliver-report``: (re)try delivering a case's
final report (render the PDF, attach it, e-mail the patient). For admins; a failed delivery
stays ``failed`` with its reason until this (or ``hearth worker``) succeeds. Returns Parameters
``status`` (delivered | failed | already-delivered), ``reason``, ``document``."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import actor_of, deliver_report, parameters


def run(ctx: Context, req: FhirRequest) -> Reply:
    actor_of(ctx, req).require(("admin",), "retrying a report delivery")
    done = deliver_report(ctx, req.res_id or "")
    return Reply(200, parameters(status=done.status, reason=done.reason, document=done.document))


OPERATION = Operation(
    name="deliver-report",
    definition="http://hearth.local/fhir/OperationDefinition/Task-deliver-report",
    levels=frozenset({"instance"}),
    types=frozenset({"Task"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission.on_type("u"),  # and the admin role, checked below
)
