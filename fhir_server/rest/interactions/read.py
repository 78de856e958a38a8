"""read — FHIR R4 http.html#read: ``GET [base]/[type]/[id]``.

Honours ``If-None-Match`` (304 when the client's ETag is current) and ``If-Modified-Since``,
and ``_summary`` / ``_elements`` (the resource subsetted and tagged ``SUBSETTED``); another
parameter is refused under ``Prefer: handling=strict``. Otherwise the
stored JSON text is served as it is (``resources/storage/point_read.py``: on PostgreSQL a caller
without a patient context reads by one prepared statement, no decode and re-encode). A plain
read (no parameters, JSON) on PostgreSQL does not reach this module: it is answered in the event
loop by ``fhir_server/rest/fast_read.py``, with the same decisions (``not_modified`` is shared).
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import orjson

from fhir_server.rest.context import Context, FhirRequest, JsonText, Reply
from fhir_server.rest.http import Versioned, version_headers
from fhir_server.rest.interactions import audit_event
from fhir_server.rest.interactions.common import READ_PARAMETERS, refuse_unknown
from resources.search.shaping import shape_read
from resources.storage.point_read import read_current


def read(ctx: Context, req: FhirRequest) -> Reply:
    audit_event.require_admin(ctx, req.res_type)
    res_type, res_id = req.instance()
    refuse_unknown(req, READ_PARAMETERS, "read")
    stored = read_current(ctx.repo, ctx.services.get("point_read"), res_type, res_id)
    headers = version_headers(stored)
    if not_modified(stored, req.headers.get("if-none-match"), req.headers.get("if-modified-since")):
        return Reply(304, None, headers)
    if any(k in ("_summary", "_elements") for k, _ in req.query):
        return Reply(200, shape_read(orjson.loads(stored.text), req.query), headers)
    return Reply(200, JsonText(stored.text), headers)


def not_modified(stored: Versioned, inm: str | None, ims: str | None) -> bool:
    """Whether the client's copy is current: ``If-None-Match`` names the current ETag, or
    ``If-Modified-Since`` is not before its ``lastUpdated`` (to the second)."""
    if inm and inm.strip().removeprefix("W/") == stored.etag.removeprefix("W/"):
        return True
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            since = None
        if since is not None and stored.last_updated.replace(microsecond=0) <= since:
            return True
    return False
