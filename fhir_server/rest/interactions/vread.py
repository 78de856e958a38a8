"""vread — FHIR R4 http.html#vread: ``GET [base]/[type]/[id]/_history/[vid]``; ``_summary`` /
``_elements`` subset it as they do a read; another parameter is refused under
``Prefer: handling=strict``."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.http import version_headers
from fhir_server.rest.interactions.common import READ_PARAMETERS, refuse_unknown
from resources.search.shaping import shape_read


def vread(ctx: Context, req: FhirRequest) -> Reply:
    res_type, res_id = req.instance()
    if req.vid is None:
        raise ValueError(f"{req.method} {req.path} names no version")
    refuse_unknown(req, READ_PARAMETERS, "vread")
    vid = req.vid
    stored = ctx.repo.read(lambda u: u.vread(res_type, res_id, vid))
    return Reply(200, shape_read(stored.content, req.query), version_headers(stored))
