"""$meta-add — ``POST [base]/[type]/[id]/$meta-add`` (R4 resource-operation-meta-add.html,
OperationDefinition ``Resource-meta-add``): adds the profiles, tags and security labels of the
``meta`` input (valueMeta) to the resource, as sets (a tag or label is identified by system and
code, a profile by its URL), without a new version, and returns the resulting Meta as
``return``. Needs update on the type."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.meta_inputs import meta_input, meta_parameters
from fhir_server.rest.operations.spec import Operation, Permission
from resources.storage import meta


def run(ctx: Context, req: FhirRequest) -> Reply:
    res_type, res_id = req.instance()
    extra = meta_input(req, "meta-add")
    stored = ctx.repo.run(lambda u: u.set_meta(res_type, res_id, lambda m: meta.added(m, extra)))
    return Reply(200, meta_parameters((stored.content or {}).get("meta") or {}))


OPERATION = Operation(
    name="meta-add",
    definition="http://hl7.org/fhir/OperationDefinition/Resource-meta-add",
    levels=frozenset({"instance"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission.on_type("u"),
    handler=run,
)
