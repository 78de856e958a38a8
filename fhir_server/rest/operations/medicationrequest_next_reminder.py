"""$next-reminder — ``GET|POST [base]/MedicationRequest/[id]/$next-reminder``: when Hearth will
next remind the patient of this prescription, computed by the rule the worker sends reminders
with (``workflow/reminders.py``: ``next_dose``), so an app shows the same time and keeps no copy
of the rule.

Returns a Parameters resource: ``reminded`` (valueBoolean: whether Hearth reads this
prescription's timing at all), ``timezone`` (valueCode: the IANA zone the times of day are in —
the patient's, else their organisation's, else ``HEARTH_DEFAULT_TIMEZONE``), ``time`` (valueTime,
repeated: the local times of day, ``timeOfDay`` and the fixed times of ``when`` codes), and
``next`` (valueDateTime, in that zone's offset; absent when no reminder is left: the course ended,
the prescription is not active, or its timing is not read).

Who may read the prescription may ask (a patient-context token only their own: 404 for
another's, as a read)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from workflow import reminders


def run(ctx: Context, req: FhirRequest) -> Reply:
    mr = ctx.repo.read(lambda u: u.read("MedicationRequest", req.res_id or "")).resource
    # The zone comes from the Patient's (or its Organization's) timezone extension; the
    # Organization may be outside a patient's compartment, and the zone tells nothing about it.
    engine = replace(ctx, repo=ctx.repo.guarded(None, ctx.repo.on_commit, None))
    default = ZoneInfo(ctx.settings.default_timezone)
    zone = engine.repo.read(lambda u: reminders.patient_zone(u, mr, default))
    repeats = [
        (d.get("timing") or {}).get("repeat") or {} for d in mr.get("dosageInstruction") or []
    ]
    read = [r for r in repeats if reminders.reminded(r)]
    times = sorted({t for r in read for t in reminders.daily_times(r)})
    params: list[dict] = [
        {"name": "reminded", "valueBoolean": bool(read)},
        {"name": "timezone", "valueCode": str(zone)},
        *({"name": "time", "valueTime": t.isoformat()} for t in times),
    ]
    at = reminders.next_dose(mr, datetime.now(UTC), zone)
    if at is not None:
        local = at.astimezone(zone).isoformat(timespec="seconds")
        params.append({"name": "next", "valueDateTime": local})
    return Reply(200, {"resourceType": "Parameters", "parameter": params})


OPERATION = Operation(
    name="next-reminder",
    definition="http://hearth.local/fhir/OperationDefinition/MedicationRequest-next-reminder",
    levels=frozenset({"instance"}),
    types=frozenset({"MedicationRequest"}),
    handler=run,
    permission=Permission.on_type("r"),  # and the prescription must be readable via ctx.repo
)
