"""date parameters (FHIR R4 search.html#date, #prefix).

Every date is a range: its implicit precision makes ``2013-01`` the whole of January 2013, and a
Period runs from the start of its start to the end of its end (open ends go to the limits of
time). A Timing counts by its outer limits (events and ``repeat.boundsPeriod``). Ranges are
stored as UTC epoch microseconds with both ends inclusive. A date or dateTime without a time zone
is read as UTC.

Prefixes compare the search range S = [sl, sh] with a target range T = [tl, th]:
eq: S contains T; ne: it does not; gt: T reaches past sh; lt: T starts before sl;
ge: gt or eq; le: lt or eq; sa: T starts after sh; eb: T ends before sl;
ap: T overlaps S widened by 10% of the gap between S and now (at least a day).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from resources.errors import Invalid
from resources.search.clauses import PkSet, Target, identity_in, pk_in
from resources.search.extract import Value
from resources.search.parse import split_prefix, unescape
from resources.search.tables import idx_date

MODIFIERS = frozenset({"missing"})

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // _US
MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // _US

# A time zone offset written with a ``+`` that the client did not percent-encode arrives as a
# space (application/x-www-form-urlencoded): ``2013-04-02T09:30:10 01:00``. A space is never
# part of a date, so one just before an offset after a time is read as the ``+`` it was (as
# HAPI FHIR reads it).
_UNENCODED_PLUS = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$")
_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _month_end(y: int, m: int) -> datetime:
    return datetime(y + 1, 1, 1, tzinfo=UTC) if m == 12 else datetime(y, m + 1, 1, tzinfo=UTC)


def date_range(text: str) -> tuple[int, int]:
    """``[low, high]`` in epoch microseconds of a FHIR date, dateTime or instant (time without
    seconds allowed, as in search values). Raises ValueError when it is not one."""
    m = _DATE.match(_UNENCODED_PLUS.sub(r"\1+\2", text.strip()))
    if not m:
        raise ValueError(f"not a FHIR date: {text!r}")
    y = int(m["y"])
    if m["m"] is None:
        lo = datetime(y, 1, 1, tzinfo=UTC)
        hi = datetime(y + 1, 1, 1, tzinfo=UTC) if y < 9999 else None
    elif m["d"] is None:
        mo = int(m["m"])
        lo = datetime(y, mo, 1, tzinfo=UTC)
        hi = _month_end(y, mo) if (y, mo) != (9999, 12) else None
    elif m["H"] is None:
        lo = datetime(y, int(m["m"]), int(m["d"]), tzinfo=UTC)
        hi = lo + timedelta(days=1) if lo.date() != datetime.max.date() else None
    else:
        sec = m["S"]
        s = min(int(sec), 59) if sec is not None else 0
        lo = datetime(y, int(m["m"]), int(m["d"]), int(m["H"]), int(m["M"]), s, tzinfo=UTC)
        if sec is None:
            width = timedelta(minutes=1)
        elif m["f"] is None:
            width = timedelta(seconds=1)
        else:
            frac = m["f"][:6]
            lo = lo.replace(microsecond=int(frac.ljust(6, "0")))
            width = timedelta(microseconds=10 ** (6 - len(frac)))
        tz = m["tz"]
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            lo = lo - sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        hi = lo + width
    low = (lo - EPOCH) // _US
    high = (hi - EPOCH) // _US - 1 if hi is not None else MAX_US
    return low, high


def _try_range(v: object) -> tuple[int, int] | None:
    if isinstance(v, str):
        try:
            return date_range(v)
        except (ValueError, OverflowError):
            return None
    return None


def value_range(typ: str | None, value: object) -> tuple[int, int] | None:
    """The range of a date, dateTime, instant, Period or Timing value."""
    if isinstance(value, str):
        return _try_range(value)
    if not isinstance(value, dict):
        return None
    if typ == "Period" or (typ is None and ("start" in value or "end" in value)):
        start, end = _try_range(value.get("start")), _try_range(value.get("end"))
        if start is None and end is None:
            return None
        return (start[0] if start else MIN_US, end[1] if end else MAX_US)
    if typ == "Timing" or (typ is None and ("event" in value or "repeat" in value)):
        ranges = [r for r in (_try_range(e) for e in value.get("event") or ()) if r]
        repeat = value.get("repeat")
        if isinstance(repeat, dict) and isinstance(repeat.get("boundsPeriod"), dict):
            bounds = value_range("Period", repeat["boundsPeriod"])
            if bounds:
                ranges.append(bounds)
        if not ranges:
            return None
        return (min(r[0] for r in ranges), max(r[1] for r in ranges))
    return None


def index(ident: int, values: list[Value], out: list) -> None:
    for typ, value in values:
        r = value_range(typ, value)
        if r is not None:
            out.append((idx_date, (ident, r[0], r[1])))


# -- search ------------------------------------------------------------------------------------
def search_range(text: str) -> tuple[int, int]:
    try:
        return date_range(text)
    except (ValueError, OverflowError) as exc:
        raise Invalid(f"{text!r} is not a valid date/dateTime search value") from exc


def approx(sl: int, sh: int, now_us: int | None = None) -> tuple[int, int]:
    """The search range widened for ``ap``: 10% of the distance to now, at least one day."""
    if now_us is None:
        now_us = (datetime.now(UTC) - EPOCH) // _US
    gap = max(abs(now_us - sl), abs(now_us - sh))
    delta = max(gap // 10, 86_400_000_000)
    return max(sl - delta, MIN_US), min(sh + delta, MAX_US)


def compare(prefix: str, sl: object, sh: object, tl: object, th: object) -> ColumnElement[bool]:
    """The prefix semantics for a target range ``[tl, th]`` against the search range
    ``[sl, sh]`` (for ``ap``, pass the widened search range)."""
    if prefix == "eq":
        return sa.and_(tl >= sl, th <= sh)  # type: ignore[operator]
    if prefix == "ne":
        return sa.or_(tl < sl, th > sh)  # type: ignore[operator]
    if prefix == "gt":
        return th > sh  # type: ignore[operator,return-value]
    if prefix == "lt":
        return tl < sl  # type: ignore[operator,return-value]
    # ge/le: the first conjunct is implied by the rest, and gives the index a range to scan.
    if prefix == "ge":
        return sa.and_(th >= sl, sa.or_(th > sh, sa.and_(tl >= sl, th <= sh)))  # type: ignore[operator]
    if prefix == "le":
        return sa.and_(tl <= sh, sa.or_(tl < sl, sa.and_(tl >= sl, th <= sh)))  # type: ignore[operator]
    if prefix == "sa":
        return tl > sh  # type: ignore[operator,return-value]
    if prefix == "eb":
        return th < sl  # type: ignore[operator,return-value]
    if prefix == "ap":
        return sa.and_(tl <= sh, th >= sl)  # type: ignore[operator]
    raise Invalid(f"unknown prefix {prefix!r}")


def clause(target: Target, modifier: str | None, values: Sequence[str]) -> PkSet:
    conds = []
    for v in values:
        prefix, text = split_prefix(unescape(v))
        sl, sh = search_range(text)
        if prefix == "ap":
            sl, sh = approx(sl, sh)
        conds.append(compare(prefix, sl, sh, idx_date.c.low, idx_date.c.high))
    return pk_in(idx_date, identity_in(idx_date, target.idents), sa.or_(*conds))


def to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def last_updated_clause(values: Sequence[str], res: sa.FromClause) -> ColumnElement[bool]:
    """``_lastUpdated`` on ``resource.last_updated`` (a point in time)."""
    col = res.c.last_updated
    conds = []
    for v in values:
        prefix, text = split_prefix(unescape(v))
        sl, sh = search_range(text)
        if prefix == "ap":
            sl, sh = approx(sl, sh)
        conds.append(compare(prefix, to_datetime(sl), to_datetime(sh), col, col))
    return sa.or_(*conds)
