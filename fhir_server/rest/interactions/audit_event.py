"""AuditEvent appends — IHE ITI-20 "Record Audit Event" with Hearth as the audit record
repository (docs/security.md).

AuditEvents live in Hearth's hash-chained audit log; each is shown as the ordinary resource
``AuditEvent/audit-SEQ`` (``resources.audit``), so read and search are the ordinary interactions
(``read``, ``search``), for administrators only (``enforce.require``, and ``require_admin`` on
the paths that do not pass the gate's type check: compartment searches, Bundle entries). The log
is append-only: ``POST [base]/AuditEvent`` appends a client's event (``record``); update, patch,
delete and Bundle entries that write are refused (405).
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.http import version_headers
from resources import audit
from resources.errors import Forbidden, Invalid
from resources.storage.store import Stored

TYPE = audit.TYPE


def require_admin(ctx: Context, res_type: str | None) -> None:
    """AuditEvents are for administrators only, by whatever path they are asked for."""
    if res_type == TYPE and (ctx.access is None or not ctx.access.is_admin):
        raise Forbidden("AuditEvent resources are for administrators only")


def record(ctx: Context, req: FhirRequest, body: dict) -> Reply:
    """``POST [base]/AuditEvent`` (administrators): IHE ITI-20 "Record Audit Event" with Hearth
    as the audit record repository. The event is validated as R4 and appended to the
    hash-chained log, keeping its own ``recorded``; 201 with its ``AuditEvent/audit-SEQ``
    Location. Conditional create is refused: the log is not searched before an append."""
    require_admin(ctx, TYPE)
    if "if-none-exist" in req.headers:
        raise Invalid("conditional create is not supported for AuditEvent (the audit log)")
    seq, recorded, event = ctx.repo.run(lambda u: u.record_audit_event(body))
    content = audit.as_resource(seq, recorded, event)
    stored = Stored(TYPE, content["id"], 1, recorded, False, content)
    headers = version_headers(stored)
    headers["Location"] = f"{ctx.base}/{stored.versioned_ref}"
    wanted = req.prefer.get("return", "representation")
    return Reply(201, None if wanted == "minimal" else stored.content, headers)
