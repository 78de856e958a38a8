"""vread — FHIR R4 http.html#vread: ``GET [base]/[type]/[id]/_history/[vid]``."""

from __future__ import annotations

from fhir_server.context import Context, FhirRequest, Reply
from fhir_server.http import version_headers


def vread(ctx: Context, req: FhirRequest) -> Reply:
    stored = ctx.repo.read(lambda u: u.vread(req.res_type, req.res_id, req.vid))
    return Reply(200, stored.content, version_headers(stored))
