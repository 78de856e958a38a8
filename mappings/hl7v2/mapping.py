"""What every segment mapping shares: the message's context (time zone, the sending facility
as the default identifier namespace, ids for the Bundle's entries), the warnings an ACK reports,
and the search-token escaping of conditional URLs (FHIR R4 search.html#escaping)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2.er7 import Message

# Namespace for the urn:uuid fullUrls of a message's entries (uuid5 of control id + position).
ENTRY_NAMESPACE = uuid.UUID("8c5f3c52-8a43-4c1e-9a57-0c7d7b1f4a10")


@dataclass
class Warning_:
    code: str  # HL7 table 0357
    text: str
    location: str = ""


@dataclass
class Target:
    """A record the message acts on that must already exist (the account a merge folds away,
    the visit a move re-points): the service looks it up before applying the message and
    answers AE 204 (unknown key identifier) at ``location`` when nothing matches."""

    res_type: str
    query: str  # search criteria, e.g. "identifier=sys%7Cvalue"
    location: str  # ERR-2, e.g. "MRG^1^3"
    what: str  # for the ERR text, e.g. "the prior account"


@dataclass
class MapContext:
    message: Message
    tz: str | None  # offset for timestamps without one
    default_system: str | None  # MSH-4 (else MSH-3): namespace of identifiers without one
    warnings: list[Warning_] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    _count: int = 0

    @classmethod
    def of(cls, message: Message, server_tz: str | None) -> MapContext:
        msh = message.msh
        tz = dt.offset(msh.value(7)) or server_tz
        # MSH-4 (sending facility), else MSH-3 (sending application)
        sender = msh.first(4) or msh.first(3)
        default = dt.hd_system(sender.c(1), sender.c(2), sender.c(3)) if sender else None
        return cls(message, tz, default)

    def full_url(self) -> str:
        self._count += 1
        key = f"{self.message.msh.value(3)}|{self.message.control_id}|{self._count}"
        return f"urn:uuid:{uuid.uuid5(ENTRY_NAMESPACE, key)}"

    def message_identifier(self, segment: str, occurrence: int) -> dict:
        """An identifier for a resource whose segment carries none: the sending application,
        MSH-10 and the segment's place, so the same message sent again finds it again."""
        msh = self.message.msh
        sender = quote(msh.value(3) or msh.value(4) or "-", safe="")
        value = f"{self.message.control_id}/{segment}/{occurrence}"
        return {"system": f"urn:hearth:hl7v2:message:{sender}", "value": value}

    def require(self, res_type: str, query: str, location: str, what: str) -> None:
        self.targets.append(Target(res_type, query, location, what))

    def warn(self, code: str, text: str, location: str = "") -> None:
        self.warnings.append(Warning_(code, text, location))


def _escape(value: str) -> str:
    for ch in ("\\", ",", "$", "|"):
        value = value.replace(ch, "\\" + ch)
    return value


def search_token(system: str | None, value: str) -> str:
    """``system|value`` for a token search, escaped and URL-encoded."""
    token = f"{_escape(system)}|{_escape(value)}" if system else _escape(value)
    return quote(token, safe="")


def entry(full_url: str, resource: dict, method: str, url: str, if_none_exist: str = "") -> dict:
    request = {"method": method, "url": url}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": full_url, "resource": resource, "request": request}
