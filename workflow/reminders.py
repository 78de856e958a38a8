"""Medication reminders: when an active MedicationRequest's dosage timing (R4 datatypes.html#Timing)
falls due, a reminder Communication for the patient — created once per dose time (conditional
create on its identifier), then e-mailed by ``workflow.messages``.

Supported timing: ``repeat.timeOfDay``; ``repeat.when`` (MORN, NOON, EVE, NIGHT, meals … at the
fixed times below); ``repeat.frequency`` per ``period`` ``periodUnit`` (min, h, d, wk) from
``boundsPeriod.start`` or ``authoredOn``; bounded by ``boundsPeriod.end`` and
``dispenseRequest.validityPeriod``. Timings beyond these (``dayOfWeek``, ``count``, ``offset``)
are not read; such a request gets no reminder rather than a wrong one.

Times of day are the patient's local time: the IANA zone of the ``timezone`` extension
(``http://hl7.org/fhir/StructureDefinition/timezone``, or R4's ``tz-code``) on the Patient, else
on its ``managingOrganization``, else ``HEARTH_DEFAULT_TIMEZONE``; zoneinfo applies daylight
saving time. Daily and weekly periods also step in local wall-clock time (a dose every day at
08:00 stays at 08:00 across a DST change); hour and minute periods are elapsed time. A local time
that a DST change skips fires at the same wall-clock offset after the change (02:30 → 03:30); one
that occurs twice fires once, the first time.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from resources.storage.repository import Repository, Unit

REMINDER_SYSTEM = "http://hearth.local/fhir/workflow/medication-reminder"
TIMEZONE_EXTENSIONS = (
    "http://hl7.org/fhir/StructureDefinition/timezone",
    "http://hl7.org/fhir/StructureDefinition/tz-code",
)
WHEN_TIMES = {
    "WAKE": time(7, 0),
    "MORN": time(8, 0),
    "MORN.early": time(7, 0),
    "MORN.late": time(10, 0),
    "NOON": time(12, 0),
    "AFT": time(15, 0),
    "AFT.early": time(14, 0),
    "AFT.late": time(16, 0),
    "EVE": time(18, 0),
    "EVE.early": time(17, 0),
    "EVE.late": time(20, 0),
    "NIGHT": time(21, 0),
    "HS": time(22, 0),
    "C": time(7, 30),
    "CM": time(7, 30),
    "CD": time(12, 30),
    "CV": time(18, 30),
}
_UNITS = {
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "wk": timedelta(weeks=1),
}
_UNSUPPORTED = (
    "dayOfWeek",
    "count",
    "countMax",
    "offset",
    "periodMax",
    "frequencyMax",
    "durationMax",
)


def parse_time(value: str) -> datetime:
    if len(value) == 10:
        value += "T00:00:00Z"
    out = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return out if out.tzinfo else out.replace(tzinfo=UTC)


def _bounds(mr: dict, repeat: dict) -> tuple[datetime | None, datetime | None]:
    starts, ends = [], []
    for period in (
        repeat.get("boundsPeriod") or {},
        (mr.get("dispenseRequest") or {}).get("validityPeriod") or {},
    ):
        if period.get("start"):
            starts.append(parse_time(period["start"]))
        if period.get("end"):
            ends.append(parse_time(period["end"]))
    if mr.get("authoredOn"):
        starts.append(parse_time(mr["authoredOn"]))
    return (max(starts) if starts else None), (min(ends) if ends else None)


def zone_of(resource: dict | None) -> ZoneInfo | None:
    """The IANA time zone a resource's ``timezone`` / ``tz-code`` extension names, if valid."""
    for ext in (resource or {}).get("extension") or []:
        if ext.get("url") in TIMEZONE_EXTENSIONS and isinstance(ext.get("valueCode"), str):
            try:
                return ZoneInfo(ext["valueCode"])
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return None


def patient_zone(u: Unit, mr: dict, default: tzinfo) -> tzinfo:
    """The patient's time zone (see the module doc)."""
    ref = str((mr.get("subject") or {}).get("reference", ""))
    patient = _content(u, ref) if ref.startswith("Patient/") else None
    zone = zone_of(patient)
    if zone is None and patient:
        org = str((patient.get("managingOrganization") or {}).get("reference", ""))
        zone = zone_of(_content(u, org)) if org.startswith("Organization/") else None
    return zone or default


def _content(u: Unit, ref: str) -> dict | None:
    res_type, _, res_id = ref.partition("/")
    try:
        return u.read(res_type, res_id).content
    except Exception:  # noqa: BLE001 - an unreadable record falls back to the default zone
        return None


def _local(day, t: time, zone: tzinfo) -> datetime:  # type: ignore[no-untyped-def]
    """Wall-clock ``day`` ``t`` in ``zone`` as a UTC instant (a skipped time moves forward)."""
    at = datetime.combine(day, t.replace(tzinfo=None), tzinfo=zone)
    return at.astimezone(UTC)


def reminded(repeat: dict) -> bool:
    """Whether Hearth reads this ``Timing.repeat`` (see the module doc) and reminds of it."""
    if not repeat or any(k in repeat for k in _UNSUPPORTED):
        return False
    return bool(daily_times(repeat)) or bool(
        repeat.get("frequency") and repeat.get("period") and repeat.get("periodUnit") in _UNITS
    )


def daily_times(repeat: dict) -> list[time]:
    """The local times of day of a ``Timing.repeat``: its ``timeOfDay`` and the fixed times of
    its ``when`` codes (``WHEN_TIMES``), sorted, each once."""
    daily = {time.fromisoformat(t) for t in repeat.get("timeOfDay") or []}
    daily |= {WHEN_TIMES[w] for w in repeat.get("when") or [] if w in WHEN_TIMES}
    return sorted(daily)


def next_dose(
    mr: dict, after: datetime, zone: tzinfo = UTC, horizon: timedelta = timedelta(days=366)
) -> datetime | None:
    """The first dose time of ``mr`` after ``after`` (within ``horizon``), as ``create_due``
    reminds of it: the next reminder. None when there is none (ended, or a timing not read)."""
    lo = after
    for span in (timedelta(days=1), timedelta(days=31), horizon):
        hi = after + span
        found = dose_times(mr, lo, hi, zone)
        if found:
            return found[0]
        lo = hi
    return None


def dose_times(mr: dict, start: datetime, end: datetime, zone: tzinfo = UTC) -> list[datetime]:
    """Dose times of ``mr`` (UTC instants) in the half-open window (start, end], sorted;
    times of day are wall-clock times in ``zone``."""
    if mr.get("status") != "active":
        return []
    out: set[datetime] = set()
    for dosage in mr.get("dosageInstruction") or []:
        repeat = (dosage.get("timing") or {}).get("repeat") or {}
        if not repeat or any(k in repeat for k in _UNSUPPORTED):
            continue
        lo, hi = _bounds(mr, repeat)
        lo_w = max(start, lo) if lo else start
        hi_w = min(end, hi) if hi else end
        if hi_w <= lo_w and not (lo and lo == hi_w):
            continue
        daily = daily_times(repeat)
        if daily:
            day = lo_w.astimezone(zone).date() - timedelta(days=1)
            while day <= hi_w.astimezone(zone).date():
                for t in daily:
                    at = _local(day, t, zone)
                    if lo_w < at <= hi_w or (lo and at == lo and start < at <= end):
                        out.add(at)
                day += timedelta(days=1)
        elif (
            repeat.get("frequency") and repeat.get("period") and repeat.get("periodUnit") in _UNITS
        ):
            step = _UNITS[repeat["periodUnit"]] * float(repeat["period"]) / int(repeat["frequency"])
            anchor = lo or start
            # Days and weeks step in local wall-clock time; hours and minutes in elapsed time.
            wall = repeat["periodUnit"] in ("d", "wk")
            base = anchor.astimezone(zone).replace(tzinfo=None) if wall else anchor
            k = max(0, int((lo_w - anchor) / step) - 1)
            while True:
                at = base + k * step
                if wall:
                    at = at.replace(tzinfo=zone).astimezone(UTC)
                if at > hi_w:
                    break
                if lo_w < at or (at == anchor and start < at):
                    out.add(at)
                k += 1
    return sorted(out)


def _text(mr: dict, at: datetime, zone: tzinfo) -> str:
    med = (
        (mr.get("medicationCodeableConcept") or {}).get("text")
        or ((mr.get("medicationCodeableConcept") or {}).get("coding") or [{}])[0].get("display")
        or (mr.get("medicationReference") or {}).get("display", "your medication")
    )
    dosage = "; ".join(
        d.get("text", "") for d in mr.get("dosageInstruction") or [] if d.get("text")
    )
    local = at.astimezone(zone)
    return (
        f"Reminder: time to take {med} ({local:%Y-%m-%d %H:%M} {local.tzname()}). {dosage}".strip()
    )


def create_due(
    repo: Repository,
    now: datetime,
    lookback: timedelta = timedelta(hours=1),
    *,
    default_timezone: str = "UTC",
) -> list[str]:
    """Create the reminder Communications due in (now - lookback, now]; returns new references.
    A dose time older than ``lookback`` is not reminded (no burst of stale reminders after an
    outage); each dose time gets at most one reminder, however many workers run."""
    default = ZoneInfo(default_timezone)

    def active(u: Unit) -> list[tuple]:
        found = u.read_many(u.match("MedicationRequest", [("status", "active")]))
        return [(s, patient_zone(u, s.content or {}, default)) for s in found]

    created = []
    for stored, zone in repo.read(active):
        mr = stored.content
        for at in dose_times(mr, now - lookback, now, zone):
            key = f"{stored.res_id}/{at.isoformat().replace('+00:00', 'Z')}"
            body = {
                "resourceType": "Communication",
                "identifier": [{"system": REMINDER_SYSTEM, "value": key}],
                "status": "in-progress",
                "category": [{"text": "medication-reminder"}],
                "medium": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode",
                                "code": "EMAILWRIT",
                            }
                        ]
                    }
                ],
                "subject": mr["subject"],
                "recipient": [mr["subject"]],
                "about": [{"reference": stored.ref}],
                "basedOn": [{"reference": stored.ref}],
                "payload": [{"contentString": _text(mr, at, zone)}],
            }

            def fn(u: Unit, body: dict = body, key: str = key) -> tuple[str, str]:
                result = u.create(body, if_none_exist=[("identifier", f"{REMINDER_SYSTEM}|{key}")])
                return result.status, result.stored.ref

            status, ref = repo.run(fn)
            if status == "created":
                created.append(ref)
    return created
