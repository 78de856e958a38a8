"""$meta — ``GET|POST [base]/$meta``, ``[base]/[type]/$meta``, ``[base]/[type]/[id]/$meta``
(R4 resource-operations.html#meta, OperationDefinition ``Resource-meta``): a Parameters resource
whose ``return`` (valueMeta) holds the profiles, tags and security labels of the resource, or
those in use by the resources of the type or of the server.

Any valid token may call it; the scopes are checked here: the instance level needs read on the
type (and reads through the patient-compartment guard: another patient's resource is 404), the
type level read on the type, and the in-use lists are computed over the resources the token may
read only (``resources/storage/meta.py`` applies the search's security filter)."""

from __future__ import annotations

from dataclasses import replace

from fhir_server.auth.enforce import require, search_security
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.meta_inputs import meta_parameters
from fhir_server.rest.operations.spec import Operation, Permission
from resources.storage import meta


def run(ctx: Context, req: FhirRequest) -> Reply:
    security = search_security(ctx.access, req.res_type)
    if ctx.access is not None:
        if req.res_type is not None:
            require(ctx.access, req.res_type, "r")
        readable = ctx.access.scopes.types_for("r")
        if security is not None and readable is not None:
            types = readable if security.types is None else security.types & readable
            security = replace(security, types=frozenset(types))
    if req.res_id is not None:
        res_type, res_id = req.instance()
        stored = ctx.repo.read(lambda u: u.read(res_type, res_id))
        found = dict((stored.content or {}).get("meta") or {})
        return Reply(200, meta_parameters(found))
    return Reply(
        200, meta_parameters(ctx.repo.read(lambda u: meta.in_use(u, req.res_type, security)))
    )


OPERATION = Operation(
    name="meta",
    definition="http://hl7.org/fhir/OperationDefinition/Resource-meta",
    levels=frozenset({"system", "type", "instance"}),
    permission=Permission(
        self_checked=True,
        reason="read on the type at type and instance level; the in-use lists cover only the "
        "resources the token may read (fhir_server/rest/operations/meta.py)",
    ),
    handler=run,
)
