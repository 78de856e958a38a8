"""AuditEvent read and search — FHIR R4 http.html#read, search.html and auditevent.html#search,
served from Hearth's hash-chained audit log rather than the resource table (docs/security.md).

``GET [base]/AuditEvent?date=ge2026-11-01&patient=123&_sort=-date`` returns a searchset Bundle
with keyset ``next`` links; ``GET [base]/AuditEvent/audit-12`` reads row 12 of the log. Both are
for administrators only (``enforce.require``) and, like every request, audited themselves. The
log is append-only: ``POST [base]/AuditEvent`` appends a client's event (``record``); update,
patch, delete and Bundle entries are refused (405).
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

import sqlalchemy as sa

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.http import version_headers
from resources.audit import search as audit_search
from resources.errors import Forbidden, Invalid, NotFound
from resources.storage.bundles import searchset_bundle
from resources.storage.store import Stored

TYPE = "AuditEvent"


def _stored(seq: int, recorded: datetime, event: dict) -> Stored:
    meta = event.get("meta")
    content = {
        **event,
        "id": f"{audit_search.ID_PREFIX}{seq}",
        "meta": {
            **(meta if isinstance(meta, dict) else {}),
            "versionId": "1",
            "lastUpdated": recorded.isoformat().replace("+00:00", "Z"),
        },
    }
    return Stored(TYPE, content["id"], 1, recorded, False, content)


def _admin_only(ctx: Context) -> None:
    """The gate checks AuditEvent access for read and type search; compartment searches and
    Bundle entries reach here by other paths, so the rule is checked here as well."""
    if ctx.access is None or not ctx.access.is_admin:
        raise Forbidden("AuditEvent resources are for administrators only")


def read(ctx: Context, req: FhirRequest) -> Reply:
    _admin_only(ctx)
    assert req.res_id is not None
    seq = audit_search.seq_of(req.res_id)
    row = None
    if seq is not None:
        with ctx.repo.engine.connect() as conn:
            row = audit_search.read(conn, seq)
    if row is None:
        raise NotFound(f"AuditEvent/{req.res_id} is not known")
    stored = _stored(*row)
    return Reply(200, stored.content, version_headers(stored))


def record(ctx: Context, req: FhirRequest, body: dict) -> Reply:
    """``POST [base]/AuditEvent`` (administrators): IHE ITI-20 "Record Audit Event" with Hearth
    as the audit record repository. The event is validated as R4 and appended to the
    hash-chained log, keeping its own ``recorded``; 201 with its ``AuditEvent/audit-SEQ``
    Location. Conditional create is refused: the log is not searched before an append."""
    _admin_only(ctx)
    if "if-none-exist" in req.headers:
        raise Invalid("conditional create is not supported for AuditEvent (the audit log)")
    stored = _stored(*ctx.repo.run(lambda u: u.record_audit_event(body)))
    headers = version_headers(stored)
    headers["Location"] = f"{ctx.base}/{stored.versioned_ref}"
    wanted = req.prefer.get("return", "representation")
    return Reply(201, None if wanted == "minimal" else stored.content, headers)


def search(ctx: Context, req: FhirRequest, query: list[tuple[str, str]] | None = None) -> Reply:
    strict = req.prefer.get("handling") == "strict"
    with ctx.repo.engine.connect() as conn:
        bundle = search_bundle(ctx, conn, list(req.query if query is None else query), strict)
    return Reply(200, bundle)


def search_bundle(
    ctx: Context, conn: sa.Connection, query: list[tuple[str, str]], strict: bool = False
) -> dict:
    """The searchset Bundle of an AuditEvent search on ``conn`` (also for Bundle entries)."""
    _admin_only(ctx)
    q = audit_search.AuditQuery(
        query=query,
        default_count=ctx.settings.default_page_size,
        max_count=ctx.settings.max_page_size,
        strict=strict,
    )
    found = audit_search.search(conn, q)
    url = f"{ctx.base}/{TYPE}"
    self_url = url + (f"?{urlencode(found.applied)}" if found.applied else "")
    next_url = None
    if found.next_page is not None:
        next_url = f"{url}?{urlencode([*found.applied, ('_page', found.next_page)])}"
    outcome = (
        {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in found.issues]}
        if found.issues
        else None
    )
    return searchset_bundle(
        ctx.base,
        [_stored(*row) for row in found.rows],
        includes=found.included,
        self_url=self_url,
        next_url=next_url,
        total=found.total,
        outcome=outcome,
    )


def compartment_search(ctx: Context, req: FhirRequest, patient_id: str) -> Reply:
    """``GET [base]/Patient/[id]/AuditEvent``: the events naming that patient."""
    return search(ctx, req, [("patient", f"Patient/{patient_id}"), *req.query])
