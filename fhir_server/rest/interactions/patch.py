"""patch — FHIR R4 http.html#patch: ``PATCH [base]/[type]/[id]`` with a JSON Patch
(``application/json-patch+json``) or a FHIRPath Patch (a ``Parameters`` resource).

The patched resource is validated like any write; ``If-Match`` is honoured.
"""

from __future__ import annotations

from collections.abc import Callable

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.interactions.common import write_reply
from resources.errors import Invalid
from resources.storage.patch import apply_fhirpath_patch, apply_json_patch


def _patcher(req: FhirRequest) -> Callable[[dict], dict]:
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    body = req.body
    if ctype == "application/json-patch+json" or isinstance(body, list):
        return lambda current: apply_json_patch(current, body)
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        return lambda current: apply_fhirpath_patch(current, body)
    raise Invalid(
        "a patch body must be a JSON Patch array (application/json-patch+json) "
        "or a FHIRPath Patch Parameters resource"
    )


def patch(ctx: Context, req: FhirRequest) -> Reply:
    apply = _patcher(req)
    if_match = req.headers.get("if-match")
    res_type, res_id = req.instance()
    result = ctx.repo.run(
        lambda u: u.patch(res_type, res_id, apply, if_match=if_match, client=True)
    )
    return write_reply(ctx, req, result)
