"""create — FHIR R4 http.html#create: ``POST [base]/[type]``, and conditional create
(``If-None-Exist: [search parameters]``, http.html#ccreate).

The server assigns the id; an id in the body is ignored, as the spec says. An AuditEvent goes to
the audit log instead of the resource table (``audit_event.record``).
"""

from __future__ import annotations

from fhir_server.context import Context, FhirRequest, Reply
from fhir_server.http import read_resource_body
from fhir_server.interactions import audit_event
from fhir_server.interactions.common import write_reply
from resources.criteria import parse_criteria
from resources.errors import Invalid


def create(ctx: Context, req: FhirRequest) -> Reply:
    body = read_resource_body(req.body)
    if body["resourceType"] != req.res_type:
        raise Invalid(
            f"resourceType {body['resourceType']!r} does not match the URL type {req.res_type}",
            expression=["resourceType"],
        )
    if req.res_type == audit_event.TYPE:
        return audit_event.record(ctx, req, body)
    body = {k: v for k, v in body.items() if k != "id"}
    criteria = None
    if "if-none-exist" in req.headers:
        criteria = parse_criteria(req.headers["if-none-exist"])
    result = ctx.repo.run(lambda u: u.create(body, if_none_exist=criteria))
    return write_reply(ctx, req, result)
