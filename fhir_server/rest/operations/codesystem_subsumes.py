"""CodeSystem $subsumes — FHIR R4 codesystem-operations.html#subsumes: how code A relates to code
B in the code system's hierarchy (``equivalent``, ``subsumes``, ``subsumed-by``,
``not-subsumed``).

``GET|POST [base]/CodeSystem/$subsumes?system=&codeA=&codeB=[&version=]`` (or ``codingA`` /
``codingB``); ``[base]/CodeSystem/[id]/$subsumes?codeA=&codeB=``.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.parameters import Parameters
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.operations.terminology_inputs import coding_parts
from fhir_server.runtime import terminology
from resources.errors import Invalid
from terminology.lookup import subsumes


def _code(params: Parameters, which: str) -> tuple[str, str | None]:
    code, coding = params.text(f"code{which}"), coding_parts(params, f"coding{which}")
    if (code is None) == (coding is None):
        raise Invalid(f"$subsumes needs exactly one of code{which}, coding{which}")
    return coding if coding is not None else (code, None)  # type: ignore[return-value]


def run(ctx: Context, req: FhirRequest) -> Reply:
    params = req.params
    service = terminology.of(ctx)
    (a, sys_a), (b, sys_b) = _code(params, "A"), _code(params, "B")
    system = params.text("system")
    for s in (sys_a, sys_b):
        if s is not None and system is not None and s != system:
            raise Invalid(f"$subsumes: the codings are not both in the code system {system}")
        system = system or s
    if req.res_id is not None:
        res_id = req.res_id
        content = ctx.repo.read(lambda u: u.read("CodeSystem", res_id)).content
        cs = service.resolver.compile(content)  # type: ignore[arg-type]
        if system is not None and system != cs.url:
            raise Invalid(f"$subsumes: {system} is not the code system {cs.url}")
    else:
        if system is None:
            raise Invalid("$subsumes at type level needs 'system' (or codings with a system)")
        cs = service.resolver.require_code_system(system, params.text("version"))
    return Reply(200, subsumes(cs, a, b))


OPERATION = Operation(
    name="subsumes",
    definition="http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes",
    levels=frozenset({"type", "instance"}),
    handler=run,
    types=frozenset({"CodeSystem"}),
    permission=Permission.on_type("r"),  # reading code systems, value sets, concept maps
)
