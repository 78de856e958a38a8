"""update — FHIR R4 http.html#update: ``PUT [base]/[type]/[id]`` (update-as-create for a new
id), and conditional update ``PUT [base]/[type]?[search parameters]`` (http.html#cond-update).

``If-Match`` makes it a version-aware update (http.html#concurrency): 412 on mismatch.
``If-None-Match: *`` makes it create-only (RFC 9110 13.1.2, as HAPI FHIR does): 412 when the
resource exists (a deleted one does not); ``If-None-Match: W/"n"``: 412 when version n is the
current one (a Bundle entry's ``request.ifNoneMatch`` alike). The check and the write are one
transaction. The body's type is settled once, here
(``resource_of_type``), and the repository takes it from the ``ResourceBody``.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.http import resource_of_type
from fhir_server.rest.interactions.common import write_reply
from resources.errors import Invalid


def update(ctx: Context, req: FhirRequest) -> Reply:
    res_type, res_id = req.instance()
    body = resource_of_type(req.body, res_type)  # the one resourceType check
    if_match = req.headers.get("if-match")
    if_none_match = req.headers.get("if-none-match")

    result = ctx.repo.run(
        lambda u: u.update(
            res_type, res_id, body, if_match=if_match, if_none_match=if_none_match, client=True
        )
    )
    return write_reply(ctx, req, result)


def conditional_update(ctx: Context, req: FhirRequest) -> Reply:
    res_type = req.resource_type()
    body = resource_of_type(req.body, res_type)  # the one resourceType check
    criteria = req.criteria()
    if not criteria:
        raise Invalid("a conditional update needs search parameters in the URL")
    if_match = req.headers.get("if-match")
    if_none_match = req.headers.get("if-none-match")
    result = ctx.repo.run(
        lambda u: u.conditional_update(
            res_type, criteria, body, if_match=if_match, if_none_match=if_none_match
        )
    )
    return write_reply(ctx, req, result)
