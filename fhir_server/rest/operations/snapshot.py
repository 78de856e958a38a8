"""$snapshot — ``POST [base]/StructureDefinition/$snapshot`` with a StructureDefinition (the body
itself or a ``definition`` part), ``GET|POST [base]/StructureDefinition/$snapshot?url=…`` for
one known here by canonical URL, ``GET [base]/StructureDefinition/[id]/$snapshot`` for a stored
one (R4 OperationDefinition ``StructureDefinition-snapshot``): the StructureDefinition with its
snapshot generated from its base and its differential (``resources/validation/snapshot.py``,
docs/validation.md "Snapshot generation"). Nothing is stored.

The bases are found as validation finds profiles (stored StructureDefinitions first, then the
R4 ones shipped). A definition without a differential, or whose snapshot cannot be generated
(an unknown base, an element the base does not have), is a 422 saying why."""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.runtime import profiles
from resources.errors import Invalid, NotFound, Unprocessable
from resources.validation import SnapshotError, generate_snapshot


def run(ctx: Context, req: FhirRequest) -> Reply:
    service = profiles.of(ctx)
    sd = req.params.resource("definition", "StructureDefinition")
    url = req.params.text("url")
    if req.res_id is not None:
        if sd is not None or url is not None:
            raise Invalid("$snapshot on a stored StructureDefinition takes no definition or url")
        res_type, res_id = req.instance()
        sd = ctx.repo.read(lambda u: u.read(res_type, res_id)).resource
    elif sd is None:
        if url is None:
            raise Invalid("$snapshot needs a definition (the body or a 'definition' part) or a url")
        sd = service.structure(url)
        if sd is None:
            raise NotFound(f"no StructureDefinition with url {url!r} is known here")
    elif url is not None:
        raise Invalid("$snapshot takes a definition or a url, not both")
    try:
        out = generate_snapshot(sd, service.sources().structure)
    except SnapshotError as exc:
        raise Unprocessable(f"the snapshot cannot be generated: {exc}") from exc
    return Reply(200, out)


OPERATION = Operation(
    name="snapshot",
    definition="http://hl7.org/fhir/OperationDefinition/StructureDefinition-snapshot",
    levels=frozenset({"type", "instance"}),
    types=frozenset({"StructureDefinition"}),
    handler=run,
    bare_resource="definition",
    permission=Permission.on_type("r"),
)
