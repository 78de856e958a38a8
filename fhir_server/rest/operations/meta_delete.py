"""$meta-delete — ``POST [base]/[type]/[id]/$meta-delete`` (R4
resource-operation-meta-delete.html, OperationDefinition ``Resource-meta-delete``): removes the
profiles, tags and security labels of the ``meta`` input (valueMeta) from the resource (a tag or
label is identified by system and code, a profile by its URL), without a new version, and
returns the resulting Meta as ``return``. Needs update on the type."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.meta_inputs import meta_input, meta_parameters
from fhir_server.rest.operations.spec import Operation, Permission
from resources.storage import meta


def run(ctx: Context, req: FhirRequest) -> Reply:
    res_type, res_id = req.instance()
    extra = meta_input(req, "meta-delete")
    stored = ctx.repo.run(lambda u: u.set_meta(res_type, res_id, lambda m: meta.removed(m, extra)))
    return Reply(200, meta_parameters((stored.content or {}).get("meta") or {}))


OPERATION = Operation(
    name="meta-delete",
    definition="http://hl7.org/fhir/OperationDefinition/Resource-meta-delete",
    levels=frozenset({"instance"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission.on_type("u"),
    handler=run,
)
