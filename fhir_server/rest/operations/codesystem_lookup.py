"""CodeSystem $lookup — FHIR R4 codesystem-operations.html#lookup: the details of a code
(display, definition, designations, properties including its parents and children).

``GET|POST [base]/CodeSystem/$lookup?system=&code=[&version=][&property=]`` (or a ``coding``);
``[base]/CodeSystem/[id]/$lookup?code=`` on a stored one. An unknown code system is 404, an
unknown code 400.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.operations.terminology_inputs import coding_parts
from fhir_server.runtime import terminology
from resources.errors import Invalid
from terminology.lookup import lookup


def run(ctx: Context, req: FhirRequest) -> Reply:
    params = req.params
    service = terminology.of(ctx)
    code, coding = params.text("code"), coding_parts(params, "coding")
    if (code is None) == (coding is None):
        raise Invalid("$lookup needs exactly one of code, coding")
    system = params.text("system")
    if coding is not None:
        code, system = coding[0], coding[1] or system
    if req.res_id is not None:
        res_id = req.res_id
        content = ctx.repo.read(lambda u: u.read("CodeSystem", res_id)).content
        cs = service.resolver.compile(content)  # type: ignore[arg-type]
    else:
        if system is None:
            raise Invalid("$lookup at type level needs 'system' (or a coding with a system)")
        cs = service.resolver.require_code_system(system, params.text("version"))
    assert code is not None
    return Reply(200, lookup(cs, code, params.texts("property")))


OPERATION = Operation(
    name="lookup",
    definition="http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup",
    levels=frozenset({"type", "instance"}),
    handler=run,
    types=frozenset({"CodeSystem"}),
    permission=Permission.on_type("r"),  # reading code systems, value sets, concept maps
)
