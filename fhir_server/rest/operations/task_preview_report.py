"""$preview-report — ``GET|POST [base]/Task/[id]/$preview-report``: the PDF of a case's report
as it stands, before an administrator approves it (``id`` is the case or one of its steps).
Rendered like the delivered report (``mappings/report`` from ``workflow.delivery``'s reading of
the case) but not signed and not stored: nothing is written. Before approval it is the report
the approval would make, with status ``preliminary``; afterwards the stored final report.

Returns a ``Binary`` (``contentType`` application/pdf, ``data`` base64), not stored (no id). Who
may read the case may preview its report (a patient-context token only its own cases: 404 for
another's). A Task that is not a case, or a case type that makes no report: 400."""

from __future__ import annotations

import base64

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from workflow import delivery


def run(ctx: Context, req: FhirRequest) -> Reply:
    pdf = delivery.preview(ctx.repo, req.res_id or "", facility_name=ctx.settings.facility_name)
    binary = {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "data": base64.b64encode(pdf).decode(),
    }
    return Reply(200, binary)


OPERATION = Operation(
    name="preview-report",
    definition="http://hearth.local/fhir/OperationDefinition/Task-preview-report",
    levels=frozenset({"instance"}),
    types=frozenset({"Task"}),
    handler=run,
    permission=Permission.on_type("r"),  # and the case must be readable through ctx.repo
)
