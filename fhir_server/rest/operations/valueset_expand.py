"""ValueSet $expand — FHIR R4 valueset-operations.html#expand: the value set with its
``expansion`` (every code, or a page of them).

``GET|POST [base]/ValueSet/$expand?url=[&valueSetVersion=]`` (or an inline ``valueSet`` in a
POSTed Parameters), ``[base]/ValueSet/[id]/$expand``; parameters ``filter``, ``count``,
``offset``, ``activeOnly``, ``includeDesignations``, ``includeDefinition``. An unknown value set
is 404; one that cannot be expanded here (a code system the server does not hold) is 422
``not-supported``; one larger than ``HEARTH_MAX_EXPANSION_SIZE`` is 422 ``too-costly``.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.operations.terminology_inputs import target
from fhir_server.runtime import terminology
from terminology.expand import ExpandParams


def run(ctx: Context, req: FhirRequest) -> Reply:
    params = req.params
    service = terminology.of(ctx)
    vs = target(
        ctx, req, params, service, res_type="ValueSet", inline="valueSet", version="valueSetVersion"
    )
    assert vs is not None
    options = ExpandParams(
        filter=params.text("filter"),
        count=params.integer("count"),
        offset=params.integer("offset") or 0,
        active_only=params.boolean("activeOnly"),
        include_designations=params.boolean("includeDesignations"),
        include_definition=params.boolean("includeDefinition"),
    )
    return Reply(200, service.expander.expand(vs, options))


OPERATION = Operation(
    name="expand",
    definition="http://hl7.org/fhir/OperationDefinition/ValueSet-expand",
    levels=frozenset({"type", "instance"}),
    handler=run,
    types=frozenset({"ValueSet"}),
    permission=Permission.on_type("r"),  # reading code systems, value sets, concept maps
)
