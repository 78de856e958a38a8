"""delete — FHIR R4 http.html#delete: ``DELETE [base]/[type]/[id]``, and conditional delete
``DELETE [base]/[type]?[search parameters]`` (http.html#cdelete): one match is deleted, several
are refused with 412.

Deleting a resource that does not exist, or deleting it again, succeeds with nothing to do
(200 with an OperationOutcome saying so).
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.interactions.common import info_outcome
from resources.errors import Invalid


def delete(ctx: Context, req: FhirRequest) -> Reply:
    if_match = req.headers.get("if-match")
    res_type, res_id = req.instance()
    done = ctx.repo.run(lambda u: u.delete(res_type, res_id, if_match=if_match, client=True))
    if done is None:
        return Reply(200, info_outcome(f"{res_type}/{res_id}: nothing to delete"))
    return Reply(
        200,
        info_outcome(f"deleted {done.stored.ref} (version {done.stored.version})"),
        {"ETag": done.stored.etag},
    )


def conditional_delete(ctx: Context, req: FhirRequest) -> Reply:
    criteria = req.criteria()
    if not criteria:
        raise Invalid("a conditional delete needs search parameters in the URL")
    res_type = req.resource_type()
    done = ctx.repo.run(lambda u: u.conditional_delete(res_type, criteria))
    if not done:
        return Reply(200, info_outcome("no resource matched; nothing deleted"))
    return Reply(200, info_outcome(f"deleted {done[0].stored.ref}"), {"ETag": done[0].stored.etag})
