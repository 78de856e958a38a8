"""DICOM value representations (PS3.5 §6.2) → FHIR primitive types: DA, TM, DT, PN, CS, IS."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_OFFSET = re.compile(r"^([+-])(\d{2})(\d{2})$")


def text(value: object) -> str | None:
    """A DICOM string value stripped of padding; None when empty or absent."""
    if value is None:
        return None
    out = str(value).strip().strip("\x00").strip()
    return out or None


def date(da: object) -> str | None:
    """DA ``YYYYMMDD`` (PS3.5 §6.2) → FHIR ``date``; None when absent or malformed."""
    m = _DA.match(text(da) or "")
    if not m:
        return None
    try:
        datetime(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None
    return f"{m[1]}-{m[2]}-{m[3]}"


def offset(tz: object) -> tzinfo | None:
    """Timezone Offset From UTC (0008,0201) ``+HHMM`` → tzinfo."""
    m = _OFFSET.match(text(tz) or "")
    if not m:
        return None
    delta = timedelta(hours=int(m[2]), minutes=int(m[3]))
    return timezone(-delta if m[1] == "-" else delta)


def date_time(da: object, tm: object, tz: tzinfo) -> str | None:
    """DA + TM → FHIR ``dateTime``. FHIR needs a zone with a time: DICOM times without (0008,0201)
    are local to the equipment (PS3.3 C.12.1.1.8), so ``tz`` supplies it. Date only when there is
    no usable time."""
    day = date(da)
    if day is None:
        return None
    m = _TM.match(text(tm) or "")
    if not m:
        return day
    hh, mm, ss = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    if hh > 23 or mm > 59 or ss > 60:
        return day
    micro = int((m[4] or "0").ljust(6, "0"))
    y, mo, d = (int(p) for p in day.split("-"))
    stamp = datetime(y, mo, d, hh, mm, min(ss, 59), micro, tzinfo=tz)
    return stamp.isoformat(timespec="milliseconds" if m[4] else "seconds")


def human_name(pn: object) -> dict | None:
    """PN ``Family^Given^Middle^Prefix^Suffix`` (PS3.5 §6.2.1, alphabetic group) → HumanName."""
    raw = text(pn)
    if raw is None:
        return None
    parts = [p.strip() for p in raw.split("=")[0].split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    name: dict = {}
    if family:
        name["family"] = family
    givens = [g for g in (given, *middle.split()) if g]
    if givens:
        name["given"] = givens
    if prefix:
        name["prefix"] = [prefix]
    if suffix:
        name["suffix"] = [suffix]
    if not name:
        return None
    name["text"] = " ".join([*givens, family] if family else givens)
    return name


def integer(value: object) -> int | None:
    """IS → int (None when absent or not an integer)."""
    raw = text(value)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


GENDER = {"M": "male", "F": "female", "O": "other"}


def gender(cs: object) -> str | None:
    """Patient's Sex (0010,0040) CS M/F/O → AdministrativeGender."""
    return GENDER.get((text(cs) or "").upper())
