"""Medication reminders: when an active MedicationRequest's dosage timing (R4 datatypes.html#Timing)
falls due, a reminder Communication for the patient — created once per dose time (conditional
create on its identifier), then e-mailed by ``workflow.messages``.

Supported timing: ``repeat.timeOfDay``; ``repeat.when`` (MORN, NOON, EVE, NIGHT, meals … at the
fixed times below); ``repeat.frequency`` per ``period`` ``periodUnit`` (min, h, d, wk) from
``boundsPeriod.start`` or ``authoredOn``; bounded by ``boundsPeriod.end`` and
``dispenseRequest.validityPeriod``. Times are UTC. Timings beyond these (``dayOfWeek``,
``count``, ``offset``) are not read; such a request gets no reminder rather than a wrong one.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from resources.repository import Repository, Unit

REMINDER_SYSTEM = "http://hearth.local/fhir/workflow/medication-reminder"
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


def dose_times(mr: dict, start: datetime, end: datetime) -> list[datetime]:
    """Dose times of ``mr`` in the half-open window (start, end], sorted."""
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
        daily = [time.fromisoformat(t) for t in repeat.get("timeOfDay") or []]
        daily += [WHEN_TIMES[w] for w in repeat.get("when") or [] if w in WHEN_TIMES]
        if daily:
            day = lo_w.date()
            while day <= hi_w.date():
                for t in daily:
                    at = datetime.combine(day, t, tzinfo=UTC)
                    if lo_w < at <= hi_w or (lo and at == lo and start < at <= end):
                        out.add(at)
                day += timedelta(days=1)
        elif (
            repeat.get("frequency") and repeat.get("period") and repeat.get("periodUnit") in _UNITS
        ):
            step = _UNITS[repeat["periodUnit"]] * float(repeat["period"]) / int(repeat["frequency"])
            anchor = lo or start
            k = max(0, int((lo_w - anchor) / step))
            at = anchor + k * step
            while at <= hi_w:
                if lo_w < at or (at == anchor and start < at):
                    out.add(at)
                at += step
    return sorted(out)


def _text(mr: dict, at: datetime) -> str:
    med = (
        (mr.get("medicationCodeableConcept") or {}).get("text")
        or ((mr.get("medicationCodeableConcept") or {}).get("coding") or [{}])[0].get("display")
        or (mr.get("medicationReference") or {}).get("display", "your medication")
    )
    dosage = "; ".join(
        d.get("text", "") for d in mr.get("dosageInstruction") or [] if d.get("text")
    )
    return f"Reminder: time to take {med} ({at:%Y-%m-%d %H:%M} UTC). {dosage}".strip()


def create_due(
    repo: Repository, now: datetime, lookback: timedelta = timedelta(hours=1)
) -> list[str]:
    """Create the reminder Communications due in (now - lookback, now]; returns new references.
    A dose time older than ``lookback`` is not reminded (no burst of stale reminders after an
    outage); each dose time gets at most one reminder, however many workers run."""
    requests = repo.read(
        lambda u: u.read_many(u.match("MedicationRequest", [("status", "active")]))
    )
    created = []
    for stored in requests:
        mr = stored.content
        for at in dose_times(mr, now - lookback, now):
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
                "payload": [{"contentString": _text(mr, at)}],
            }

            def fn(u: Unit, body: dict = body, key: str = key) -> tuple[str, str]:
                result = u.create(body, if_none_exist=[("identifier", f"{REMINDER_SYSTEM}|{key}")])
                return result.status, result.stored.ref

            status, ref = repo.run(fn)
            if status == "created":
                created.append(ref)
    return created
