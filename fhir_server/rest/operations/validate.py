"""$validate — FHIR R4 resource-operation-validate: validate a resource without storing it.

``POST [base]/[type]/$validate`` with the resource (or a Parameters with a ``resource`` part);
``GET|POST [base]/[type]/[id]/$validate`` validates the stored version. Returns an
OperationOutcome (200) listing every issue, or one informational issue when all is well.

Besides the base R4 validation, the resource is validated against each profile named by a
``profile`` input (the query or a Parameters part; R4 names one, several are accepted) and each
profile its own ``meta.profile`` declares, and each contained resource and Bundle entry against
those it declares (docs/validation.md): StructureDefinitions stored here or
the R4 core profiles shipped with Hearth (``fhir_server/runtime/profiles.py``). An unknown profile
is an error issue. A profile finding at a location the base validation already faulted is left
out (one issue per location, the base one).
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.runtime import profiles
from resources.errors import Invalid
from resources.validation import validate_resource


def run(ctx: Context, req: FhirRequest) -> Reply:
    resource = req.params.resource("resource")  # the body itself, or its 'resource' part
    if resource is None:
        if req.body is not None:
            raise Invalid("Parameters for $validate carry no 'resource' part")
        res_type, res_id = req.res_type, req.res_id
        if res_type is None or res_id is None:
            raise Invalid("$validate at type level needs a resource in the body")
        resource = ctx.repo.read(lambda u: u.read(res_type, res_id)).resource
    if req.res_type and resource.get("resourceType") != req.res_type:
        issues = [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": f"resourceType {resource.get('resourceType')!r} is not {req.res_type}",
                "expression": ["resourceType"],
            }
        ]
    else:
        found = validate_resource(resource)
        if isinstance(resource, dict) and not any(i.expression == ("resourceType",) for i in found):
            faulted = {i.expression for i in found if i.expression}
            found += [
                i
                for i in profiles.of(ctx).validate(resource, req.params.texts("profile"))
                if not i.expression or i.expression not in faulted
            ]
        issues = [i.to_fhir() for i in found]
    if not issues:
        issues = [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]
    return Reply(200, {"resourceType": "OperationOutcome", "issue": issues})


OPERATION = Operation(
    name="validate",
    definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
    levels=frozenset({"type", "instance"}),
    handler=run,
    bare_resource="resource",
    permission=Permission.on_type("r"),
)
