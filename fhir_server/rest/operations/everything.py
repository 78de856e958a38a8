"""$everything — a record in one searchset Bundle, a page at a time.

- ``GET|POST [base]/Patient/[id]/$everything``: the patient's compartment (R4
  patient-operation-everything.html, OperationDefinition ``Patient-everything``);
- ``GET|POST [base]/Patient/$everything``: every patient's compartment the caller may read;
- ``GET|POST [base]/Encounter/[id]/$everything``: the encounter's compartment (R4
  encounter-operation-everything.html; instance level only, as R4 defines it).

Inputs: ``_since`` (instant: only resources last updated at or after it), ``_type`` (comma
separated, repeatable: only these types), ``_count`` (page size; ``HEARTH_DEFAULT_PAGE_SIZE`` when
absent, at most ``HEARTH_MAX_PAGE_SIZE``), and ``_page`` (the cursor of a ``next`` link). Any
other input (``start``/``end``, not supported) is reported as a warning in the Bundle's
OperationOutcome entry, or refused (400) under ``Prefer: handling=strict``.

Each page lists members of the compartment (``search.mode = match``) and the resources they refer
to (``include``). Only what the token may read is returned: types outside its read scopes are
left out, and a patient-context token sees nothing outside its own patient's compartment — an
other patient's id answers 404, exactly as an id that does not exist (``resources/search/everything.py``
applies the search's security filter, ``resources/search/visibility.py``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from fhir_server.auth.enforce import search_security
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import Invalid, Issue, NotFound
from resources.search.everything import EverythingRequest, everything
from resources.validation import is_resource_type

KNOWN = frozenset({"_since", "_type", "_count", "_page"})
PATIENT_DEF = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
ENCOUNTER_DEF = "http://hl7.org/fhir/OperationDefinition/Encounter-everything"


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(f"$everything: _since must be a FHIR instant, not {raw!r}") from exc
    if ts.tzinfo is None or "T" not in raw:
        raise Invalid(f"$everything: _since must be an instant with a time zone: {raw!r}")
    try:
        return ts.astimezone(UTC)
    except OverflowError:
        return (datetime.max if ts.year == 9999 else datetime.min).replace(tzinfo=UTC)


def _types(req: FhirRequest) -> frozenset[str] | None:
    given = [t.strip() for v in req.params.texts("_type") for t in v.split(",")]
    if not given and not req.params.has("_type"):
        return None
    unknown = [t for t in given if not is_resource_type(t)]
    if unknown or not given:
        raise Invalid(f"$everything: _type names no FHIR R4 resource type: {unknown or given!r}")
    return frozenset(given)


def run(ctx: Context, req: FhirRequest) -> Reply:
    comp_type = req.resource_type()
    if comp_type == "Encounter" and req.res_id is None:
        raise NotFound("operation $everything is not supported at Encounter type level")
    strict = req.prefer.get("handling") == "strict"
    ignored = sorted({i.name for i in req.params.inputs} - KNOWN)
    if ignored and strict:
        raise Invalid(
            "$everything: unsupported parameters (Prefer: handling=strict)",
            [Issue("not-supported", f"parameter {name!r} is not supported") for name in ignored],
        )
    notes = tuple(
        Issue("not-supported", f"parameter {name!r} ignored: not supported", severity="warning")
        for name in ignored
    )
    count = req.params.integer("_count")
    security = search_security(ctx.access, None)
    if ctx.access is not None and security is not None:
        # $everything reads: only the types the token may read (search scopes alone are not it)
        readable = ctx.access.scopes.types_for("r")
        if readable is not None:
            types = readable if security.types is None else security.types & readable
            security = replace(security, types=frozenset(types))
    query = [(i.name, str(i.value)) for i in req.params.inputs if i.name in KNOWN]
    asked = EverythingRequest(
        comp_type=comp_type,
        comp_ids=None if req.res_id is None else (req.res_id,),
        count=ctx.settings.default_page_size
        if count is None
        else min(count, ctx.settings.max_page_size),
        path=req.path,
        query=tuple(query),
        types=_types(req),
        since=_since(req.params.text("_since")),
        cursor=req.params.text("_page"),
        security=security,
        notes=notes,
    )

    def page(unit):  # type: ignore[no-untyped-def]
        if req.res_id is not None:
            unit.read(comp_type, req.res_id)  # 404 / 410, and the patient-compartment guard
        return everything(unit, asked, base=ctx.base)

    return Reply(200, ctx.repo.read(page))


OPERATION = Operation(
    name="everything",
    definition=PATIENT_DEF,
    definitions=(("Encounter", ENCOUNTER_DEF),),
    levels=frozenset({"type", "instance"}),
    types=frozenset({"Patient", "Encounter"}),
    permission=Permission.on_type("r"),
    handler=run,
)
