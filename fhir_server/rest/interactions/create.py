"""create — FHIR R4 http.html#create: ``POST [base]/[type]``, and conditional create
(``If-None-Exist: [search parameters]``, http.html#ccreate).

The server assigns the id; an id in the body is ignored, as the spec says. An AuditEvent goes to
the audit log instead of the resource table (``audit_event.record``). The body's type is checked
once, here (``resource_of_type``), and the repository takes it from the ``ResourceBody``.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.http import resource_of_type
from fhir_server.rest.interactions import audit_event
from fhir_server.rest.interactions.common import write_reply
from resources.search.criteria import parse_criteria
from resources.validation import ResourceBody


def create(ctx: Context, req: FhirRequest) -> Reply:
    body = resource_of_type(req.body, req.resource_type())
    if body.type == audit_event.TYPE:
        return audit_event.record(ctx, req, body.content)
    body = ResourceBody(body.type, {k: v for k, v in body.content.items() if k != "id"})
    criteria = None
    if "if-none-exist" in req.headers:
        criteria = parse_criteria(req.headers["if-none-exist"])
    result = ctx.repo.run(lambda u: u.create(body, if_none_exist=criteria))
    return write_reply(ctx, req, result)
