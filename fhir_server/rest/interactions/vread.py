"""vread — FHIR R4 http.html#vread: ``GET [base]/[type]/[id]/_history/[vid]``."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.http import version_headers


def vread(ctx: Context, req: FhirRequest) -> Reply:
    res_type, res_id = req.instance()
    if req.vid is None:
        raise ValueError(f"{req.method} {req.path} names no version")
    vid = req.vid
    stored = ctx.repo.read(lambda u: u.vread(res_type, res_id, vid))
    return Reply(200, stored.content, version_headers(stored))
