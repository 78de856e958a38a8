"""$validate-code — FHIR R4 codesystem-operations.html#validate-code and
valueset-operations.html#validate-code: is a code in the code system / value set, and is its
display right. Answers 200 with Parameters ``result`` (and ``message``, ``display``); a false
result is not an error.

``GET|POST [base]/CodeSystem/$validate-code?url=&code=[&version=&display=]`` (or ``coding``,
``codeableConcept``, an inline ``codeSystem``; without ``url`` the coding's system names the code
system); ``[base]/CodeSystem/[id]/$validate-code``.
``GET|POST [base]/ValueSet/$validate-code?url=&system=&code=[&valueSetVersion=&display=]`` (or
``coding``, ``codeableConcept``, an inline ``valueSet``); ``[base]/ValueSet/[id]/$validate-code``.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.operations.terminology_inputs import coded, target
from fhir_server.runtime import terminology
from resources.errors import Invalid
from terminology.validate import in_code_system, in_value_set


def run(ctx: Context, req: FhirRequest) -> Reply:
    params = req.params
    service = terminology.of(ctx)
    if req.res_type == "CodeSystem":
        items = coded(params, system_param=None)  # the code system is the one named
        content = target(
            ctx,
            req,
            params,
            service,
            res_type="CodeSystem",
            inline="codeSystem",
            version="version",
            required=False,
        )
        if content is None:  # no url: the coding's system names it
            systems = {i.system for i in items if i.system}
            if len(systems) != 1:
                raise Invalid(
                    "$validate-code at type level needs 'url', 'codeSystem', or codings of one "
                    "system"
                )
            content = service.resolver.require("CodeSystem", systems.pop(), params.text("version"))
        cs = service.resolver.compile(content)
        return Reply(200, in_code_system(cs, items))
    items = coded(params)
    vs = target(
        ctx, req, params, service, res_type="ValueSet", inline="valueSet", version="valueSetVersion"
    )
    assert vs is not None
    codes = service.expander.codes(vs)
    return Reply(200, in_value_set(codes, vs.get("url") or f"ValueSet/{vs.get('id')}", items))


OPERATION = Operation(
    name="validate-code",
    definition="http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code",
    levels=frozenset({"type", "instance"}),
    handler=run,
    types=frozenset({"CodeSystem", "ValueSet"}),
    definitions=(
        ("CodeSystem", "http://hl7.org/fhir/OperationDefinition/CodeSystem-validate-code"),
    ),
    permission=Permission.on_type("r"),  # reading code systems, value sets, concept maps
)
