"""read — FHIR R4 http.html#read: ``GET [base]/[type]/[id]``.

Honours ``If-None-Match`` (304 when the client's ETag is current) and ``If-Modified-Since``,
and ``_summary`` / ``_elements`` (the resource subsetted and tagged ``SUBSETTED``).
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from fhir_server.context import Context, FhirRequest, Reply
from fhir_server.http import version_headers
from fhir_server.interactions import audit_event
from resources.shaping import shape_read


def read(ctx: Context, req: FhirRequest) -> Reply:
    if req.res_type == audit_event.TYPE:  # served from the audit log, not the resource table
        return audit_event.read(ctx, req)
    res_type, res_id = req.instance()
    stored = ctx.repo.read(lambda u: u.read(res_type, res_id))
    headers = version_headers(stored)
    inm = req.headers.get("if-none-match")
    if inm and inm.strip().removeprefix("W/") == stored.etag.removeprefix("W/"):
        return Reply(304, None, headers)
    ims = req.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            since = None
        if since is not None and stored.last_updated.replace(microsecond=0) <= since:
            return Reply(304, None, headers)
    return Reply(200, shape_read(stored.content, req.query), headers)
