"""Order of arrival: an older message never overwrites what a newer one wrote.

HL7 v2 does not promise that messages arrive in the order they were recorded (v2.5.1 Chapter 2,
2.10: sequence numbering is an option a sender may not use; a resent or queued message may come
after a newer one), so Hearth orders a patient's record by the time each message says its event
was recorded: EVN-2 (Recorded Date/Time, IG ``EVN[Provenance]`` → ``Provenance.recorded``), else
MSH-7 (the message's date/time). EVN-6 (Event Occurred) is when the event happened in the world,
not when the record changed (a backdated admission recorded today is today's news), so it is
kept in the Provenance and not used here.

A message that carries the patient's record (its Patient entry is a conditional update: ADT,
BAR, …) stamps the Patient with that time (``LAST_EVENT``, a ``dateTime`` extension). The HTTP
and MLLP edges compare a message's time with the stamp before applying it
(``fhir_server/hl7v2/service.py``):

- newer or equal: applied as mapped; the Patient update carries ``If-Match`` the version read
  (``If-None-Match: *`` when there was none), so two workers applying two messages about one
  patient at once cannot both win: the loser's transaction fails whole (412) and is compared
  again;
- older: ``stale`` turns every conditional update of the message into a conditional create on
  the same criteria: what the record lacks is added, nothing that exists is replaced; the
  MessageHeader and Provenance are tagged ``OUT_OF_ORDER``; the ACK is AA with an ERR W.

Messages whose Patient is a conditional create (results, orders, …) add records keyed by their
own identifiers and are not ordered against the patient's record. Pure functions: no I/O.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone

from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2.er7 import Message
from mappings.hl7v2.errors import Hl7Error

LAST_EVENT = "http://hearth.local/fhir/StructureDefinition/hl7v2-last-event"
ARRIVAL_SYSTEM = "http://hearth.local/fhir/CodeSystem/hl7v2-arrival"
OUT_OF_ORDER = {
    "system": ARRIVAL_SYSTEM,
    "code": "out-of-order",
    "display": "older than the patient's record: only what was missing was added",
}
RECORD = ("MessageHeader", "Provenance")


def message_time(message: Message, tz: str | None) -> str | None:
    """EVN-2, else MSH-7, as a FHIR dateTime (None when neither is a readable timestamp)."""
    evn = message.one("EVN")
    for seg, n in ((evn, 2), (message.msh, 7)):
        if seg is None or not seg.value(n):
            continue
        try:
            return dt.date_time(seg.value(n), tz, seg.where(n))
        except Hl7Error:
            continue
    return None


def instant(value: str) -> datetime | None:
    """A FHIR dateTime as an aware instant for comparison (a date alone: its start, UTC)."""
    try:
        if "T" not in value:
            parts = [int(p) for p in value.split("-")]
            while len(parts) < 3:
                parts.append(1)
            return datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
        text = value.replace("Z", "+00:00")
        day, _, rest = text.partition("T")
        sign = "+" if "+" in rest else "-"
        clock, _, zone = rest.partition(sign) if sign in rest else (rest, "", "")
        base = datetime.fromisoformat(f"{day}T{clock}")
        hours, _, minutes = zone.partition(":")
        offset = timedelta(hours=int(hours or 0), minutes=int(minutes or 0))
        return base.replace(tzinfo=timezone(offset if sign == "+" else -offset))
    except ValueError:
        return None


def patient_update(bundle: dict) -> tuple[int, str] | None:
    """(index, search query) of the Bundle's Patient conditional update, if it has one."""
    for i, e in enumerate(bundle.get("entry", [])):
        req = e.get("request", {})
        if e.get("resource", {}).get("resourceType") == "Patient":
            url = req.get("url", "")
            if req.get("method") == "PUT" and url.startswith("Patient?"):
                return i, url.split("?", 1)[1]
            return None
    return None


def last_event(patient: dict | None) -> str | None:
    """The stamp of the last message applied to a stored Patient."""
    for ext in (patient or {}).get("extension", []):
        if ext.get("url") == LAST_EVENT and isinstance(ext.get("valueDateTime"), str):
            return str(ext["valueDateTime"])
    return None


def stamp(patient: dict, when: str) -> None:
    """Set the Patient's ``LAST_EVENT`` stamp (the mapping's Patient resource)."""
    kept = [x for x in patient.get("extension", []) if x.get("url") != LAST_EVENT]
    patient["extension"] = [*kept, {"url": LAST_EVENT, "valueDateTime": when}]


def is_older(when: str, stored: str | None) -> bool:
    """Whether a message of time ``when`` is older than the record stamped ``stored``."""
    if stored is None:
        return False
    a, b = instant(when), instant(stored)
    return a is not None and b is not None and a < b


def guarded(bundle: dict, index: int, version: str | None) -> dict:
    """The Bundle with its Patient update guarded: ``If-Match`` the version read, or
    ``If-None-Match: *`` when no Patient matched (the update must then create it)."""
    out = copy.deepcopy(bundle)
    req = out["entry"][index]["request"]
    if version is None:
        req["ifNoneMatch"] = "*"
    else:
        req["ifMatch"] = f'W/"{version}"'
    return out


def stale(bundle: dict) -> dict:
    """The Bundle of a message older than the patient's record: each conditional update becomes
    a conditional create on the same criteria (added when missing, never replacing), and the
    message's MessageHeader and Provenance are tagged ``OUT_OF_ORDER``."""
    out = copy.deepcopy(bundle)
    for e in out["entry"]:
        req = e.get("request", {})
        res = e.get("resource", {})
        url = req.get("url", "")
        if res.get("resourceType") in RECORD:
            res.setdefault("meta", {}).setdefault("tag", []).append(dict(OUT_OF_ORDER))
            continue
        if req.get("method") == "PUT" and "?" in url:
            res_type, query = url.split("?", 1)
            if res_type == "Patient":
                res["extension"] = [
                    x for x in res.get("extension", []) if x.get("url") != LAST_EVENT
                ]
                if not res["extension"]:
                    del res["extension"]
            e["request"] = {"method": "POST", "url": res_type, "ifNoneExist": query}
    return out
