"""$generate-slots — ``POST [base]/Schedule/[id]/$generate-slots``: free Slots for a Schedule
from a weekly template (``workflow/schedules.py``).

Inputs: ``start`` (date, the first day; default today in ``timeZone``), ``weeks`` (integer,
1 to 52, default 1), ``dayOfWeek`` (code, repeated: ``mon`` … ``sun``; default ``mon`` to
``fri``), ``startTime`` and ``endTime`` (time, local: the first slot's start and the latest end),
``slotMinutes`` (integer, 5 to 1440), ``timeZone`` (string, IANA; default ``UTC``). Idempotent:
a template Slot that exists already (same start and end) is kept as it is; one that overlaps
another Slot of the Schedule is refused (409 naming it) and nothing is written. Answer
(``Parameters``): ``created`` and ``existing`` (integers) and one ``slot`` reference per Slot
created; 201 when any was created, else 200. Needs update on Schedule and create on Slot."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir_server.auth.enforce import require
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import Invalid
from workflow import schedules


def _time(req: FhirRequest, name: str) -> time:
    given = req.params.one(name, required=True)
    assert given is not None
    value = given.value
    if given.kind not in ("query", "valueTime", "valueString") or not isinstance(value, str):
        raise Invalid(f"$generate-slots: {name} must be a valueTime", expression=given.expression)
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise Invalid(
            f"$generate-slots: {name} must be a time (hh:mm[:ss])", expression=given.expression
        ) from None


def run(ctx: Context, req: FhirRequest) -> Reply:
    if ctx.access is not None:
        require(ctx.access, "Slot", "c")
    _, schedule_id = req.instance()
    p = req.params
    zone = p.text("timeZone", fhir_type="string") or "UTC"
    start = p.one("start")
    if start is None:
        try:
            first = datetime.now(ZoneInfo(zone)).date()
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid(f"timeZone {zone!r} is not a known IANA time zone") from None
    elif start.kind in ("query", "valueDate") and isinstance(start.value, str):
        try:
            first = date.fromisoformat(start.value)
        except ValueError:
            raise Invalid("$generate-slots: start must be a date (YYYY-MM-DD)") from None
    else:
        raise Invalid("$generate-slots: start must be a valueDate", expression=start.expression)
    p.one("slotMinutes", required=True)
    minutes = p.integer("slotMinutes") or 0
    template = schedules.Template(
        start=first,
        weeks=p.integer("weeks") or 1,
        days=tuple(p.texts("dayOfWeek", fhir_type="code")) or ("mon", "tue", "wed", "thu", "fri"),
        opens=_time(req, "startTime"),
        closes=_time(req, "endTime"),
        minutes=minutes,
        zone=zone,
    )
    done = schedules.generate(ctx.repo, schedule_id, template)
    out = [
        {"name": "created", "valueInteger": len(done.created)},
        {"name": "existing", "valueInteger": done.existing},
        *({"name": "slot", "valueReference": {"reference": f"Slot/{i}"}} for i in done.created),
    ]
    return Reply(201 if done.created else 200, {"resourceType": "Parameters", "parameter": out})


OPERATION = Operation(
    name="generate-slots",
    definition="http://hearth.local/fhir/OperationDefinition/Schedule-generate-slots",
    levels=frozenset({"instance"}),
    types=frozenset({"Schedule"}),
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission.on_type("u"),
    handler=run,
)
