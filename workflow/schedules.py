"""Free Slots for a Schedule from a weekly template (R4 schedule.html, slot.html): the days of
the week, the working hours in the doctor's time zone and the length of a slot. The Slots are
what ``$book`` / ``$accept`` and the urgent pathway (``workflow/appointments.py``) take.

Generation is idempotent: a Slot of the template that already exists (same Schedule, same start
and end) is left as it is (booked or free), so running the same template twice creates nothing
the second time. A template Slot that overlaps an existing Slot of the Schedule without being
that Slot is refused with 409 naming it, and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from resources.errors import Conflict, Invalid
from resources.storage.repository import Repository, Unit, new_id

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # R4 days-of-week codes
MAX_SLOTS = 5000  # one call
MAX_WEEKS = 52


@dataclass(frozen=True)
class Template:
    start: date  # the first day
    weeks: int
    days: tuple[str, ...]  # of DAYS
    opens: time  # local time of the first slot's start
    closes: time  # local time no slot ends after
    minutes: int
    zone: str  # IANA time zone

    def slots(self) -> list[tuple[datetime, datetime]]:
        """(start, end) of each Slot, as aware datetimes in UTC."""
        try:
            tz = ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid(f"timeZone {self.zone!r} is not a known IANA time zone") from None
        if not 1 <= self.weeks <= MAX_WEEKS:
            raise Invalid(f"weeks is 1 to {MAX_WEEKS}")
        if not 5 <= self.minutes <= 24 * 60:
            raise Invalid("slotMinutes is 5 to 1440")
        if not self.days or any(d not in DAYS for d in self.days):
            raise Invalid(f"dayOfWeek is one or more of {', '.join(DAYS)}")
        if self.opens >= self.closes:
            raise Invalid("startTime must be before endTime")
        try:
            return self._slots(tz)
        except OverflowError:
            raise Invalid("start is too near the end (or the start) of the calendar") from None

    def _slots(self, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
        step = timedelta(minutes=self.minutes)
        out = []
        for n in range(self.weeks * 7):
            day = self.start + timedelta(days=n)
            if DAYS[day.weekday()] not in self.days:
                continue
            at = datetime.combine(day, self.opens, tzinfo=tz)
            closes = datetime.combine(day, self.closes, tzinfo=tz)
            while at + step <= closes:
                out.append((at.astimezone(UTC), (at + step).astimezone(UTC)))
                at += step
                if len(out) > MAX_SLOTS:
                    raise Invalid(f"the template makes more than {MAX_SLOTS} Slots: ask for less")
        if not out:
            raise Invalid(
                "the template makes no Slot (no day of the week in range, or hours "
                "shorter than one slot)"
            )
        return out


@dataclass(frozen=True)
class Generated:
    created: list[str]  # Slot ids
    existing: int  # template Slots already there


def _instant(ts: datetime) -> str:
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def generate(repo: Repository, schedule_id: str, template: Template) -> Generated:
    wanted = template.slots()

    def run(u: Unit) -> Generated:
        schedule = u.read("Schedule", schedule_id).resource  # 404 for an unknown Schedule
        ref = f"Schedule/{schedule_id}"
        # a Slot may start before the range and run into it (within a day of the calendar's start)
        earliest = datetime.min.replace(tzinfo=UTC)
        lo = wanted[0][0] - min(timedelta(days=1), wanted[0][0] - earliest)
        hi = wanted[-1][1]
        pks = u.match(
            "Slot",
            [("schedule", ref), ("start", f"ge{_instant(lo)}"), ("start", f"lt{_instant(hi)}")],
        )
        existing = []
        for stored in u.read_many(pks):
            slot = stored.content or {}
            if slot.get("status") == "entered-in-error" or not slot.get("start"):
                continue
            existing.append((_parse(slot["start"]), _parse(slot["end"]), stored.res_id))
        same = {(s, e) for s, e, _ in existing}
        new, kept = [], 0
        for start, end in wanted:
            if (start, end) in same:
                kept += 1
                continue
            clash = next((i for s, e, i in existing if s < end and start < e), None)
            if clash is not None:
                raise Conflict(
                    f"the Slot {_instant(start)}–{_instant(end)} overlaps Slot/{clash} of {ref}; "
                    "nothing was created"
                )
            body: dict = {
                "resourceType": "Slot",
                "schedule": {"reference": ref},
                "status": "free",
                "start": _instant(start),
                "end": _instant(end),
            }
            for key in ("serviceCategory", "serviceType", "specialty"):
                if schedule.get(key):
                    body[key] = schedule[key]
            new.append((new_id(), body))
        done = u.create_many(new)
        return Generated([r.stored.res_id for r in done], kept)

    return repo.run(run)
