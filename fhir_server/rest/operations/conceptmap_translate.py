"""ConceptMap $translate — FHIR R4 conceptmap-operations.html#translate: the codes a code maps
to (or from, with ``reverse``), each with its equivalence and the map it came from.

``GET|POST [base]/ConceptMap/$translate?system=&code=[&url=&conceptMapVersion=&source=&target=
&targetsystem=&reverse=]`` (or ``coding``, ``codeableConcept``, an inline ``conceptMap``);
``[base]/ConceptMap/[id]/$translate``. Without a map named, every stored ConceptMap with a group
for the system and an element for the code is used (found through the ``source-system`` /
``source-code`` search parameters, ``target-*`` for ``reverse``), narrowed by ``source`` /
``target`` value set URLs. Answers 200 with Parameters ``result``, ``message`` and ``match``es.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.operations.terminology_inputs import coded, target
from fhir_server.runtime import terminology
from resources.errors import Invalid
from terminology import translate as tr


def _scope(cm: dict, key: str) -> str | None:
    return cm.get(f"{key}Uri") or cm.get(f"{key}Canonical")


def run(ctx: Context, req: FhirRequest) -> Reply:
    params = req.params
    service = terminology.of(ctx)
    reverse = params.boolean("reverse")
    items = coded(params)
    target_system = params.text("targetsystem")
    source_vs, target_vs = params.text("source"), params.text("target")
    named = target(
        ctx,
        req,
        params,
        service,
        res_type="ConceptMap",
        inline="conceptMap",
        version="conceptMapVersion",
        required=False,
    )
    matches: list[tr.Match] = []
    for item in items:
        if named is not None:
            maps = [named]
        else:
            if item.system is None:
                raise Invalid("$translate without a ConceptMap needs the code's system")
            side = "target" if reverse else "source"
            query = [(f"{side}-system", item.system), (f"{side}-code", item.code)]
            maps = service.resolver.find("ConceptMap", query) if service.resolver.find else []
            if source_vs is not None:
                maps = [
                    m for m in maps if _scope(m, "target" if reverse else "source") == source_vs
                ]
            if target_vs is not None:
                maps = [
                    m for m in maps if _scope(m, "source" if reverse else "target") == target_vs
                ]
        for cm in maps:
            matches += tr.translate(
                cm,
                item.system,
                item.code,
                target_system=target_system,
                reverse=reverse,
                other_map=lambda url: service.resolver.resource("ConceptMap", url),
            )
    ok = tr.result(matches)
    out: list[dict] = [{"name": "result", "valueBoolean": ok}]
    if not ok:
        what = ", ".join(f"{i.system}|{i.code}" if i.system else i.code for i in items)
        out.append(
            {
                "name": "message",
                "valueString": f"no mapping found for {what}"
                if not matches
                else f"{what} maps only as unmatched or disjoint",
            }
        )
    out += [m.to_parameter() for m in matches]
    return Reply(200, {"resourceType": "Parameters", "parameter": out})


OPERATION = Operation(
    name="translate",
    definition="http://hl7.org/fhir/OperationDefinition/ConceptMap-translate",
    levels=frozenset({"type", "instance"}),
    handler=run,
    types=frozenset({"ConceptMap"}),
    permission=Permission.on_type("r"),  # reading code systems, value sets, concept maps
)
