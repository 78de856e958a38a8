"""update — FHIR R4 http.html#update: ``PUT [base]/[type]/[id]`` (update-as-create for a new
id), and conditional update ``PUT [base]/[type]?[search parameters]`` (http.html#cond-update).

``If-Match`` makes it a version-aware update (http.html#concurrency): 412 on mismatch.
``If-None-Match: *`` makes it create-only (RFC 9110 13.1.2, as HAPI FHIR does): 412 when the
resource exists (a deleted one does not); ``If-None-Match: W/"n"``: 412 when version n is the
current one. The check and the write are one transaction. The body's type is settled once, here
(``resource_of_type``), and the repository takes it from the ``ResourceBody``.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.http import resource_of_type
from fhir_server.rest.interactions.common import write_reply
from resources.errors import Gone, Invalid, NotFound, PreconditionFailed
from resources.storage.repository import Unit


def update(ctx: Context, req: FhirRequest) -> Reply:
    res_type, res_id = req.instance()
    body = resource_of_type(req.body, res_type)  # the one resourceType check
    if_match = req.headers.get("if-match")
    if_none_match = req.headers.get("if-none-match")

    def run(u: Unit):  # type: ignore[no-untyped-def]
        if if_none_match is not None:
            _refuse_if_none_match(u, res_type, res_id, if_none_match)
        return u.update(res_type, res_id, body, if_match=if_match, client=True)

    return write_reply(ctx, req, ctx.repo.run(run))


def _refuse_if_none_match(u: Unit, res_type: str, res_id: str, header: str) -> None:
    try:
        current = u.read(res_type, res_id)
    except (NotFound, Gone):
        return  # nothing current to match (a resource the caller may not see reads as such)
    tags = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    if "*" in tags:
        raise PreconditionFailed(
            f"If-None-Match: * but {res_type}/{res_id} exists (version {current.version})"
        )
    if str(current.version) in tags:
        raise PreconditionFailed(
            f"If-None-Match {header} matches the current version of {res_type}/{res_id}"
        )


def conditional_update(ctx: Context, req: FhirRequest) -> Reply:
    res_type = req.resource_type()
    body = resource_of_type(req.body, res_type)  # the one resourceType check
    criteria = req.criteria()
    if not criteria:
        raise Invalid("a conditional update needs search parameters in the URL")
    if_match = req.headers.get("if-match")
    result = ctx.repo.run(
        lambda u: u.conditional_update(res_type, criteria, body, if_match=if_match)
    )
    return write_reply(ctx, req, result)
