"""HL7 v2 ER7 ("pipe and hat") messages: decode the bytes, normalise the segment terminators,
parse with python-hl7 and give uniform access to fields, repetitions, components and
subcomponents, unescaped (HL7 v2.5.1 Chapter 2, 2.5 "Message construction rules", 2.7 "Use of
escape sequences in text fields").

Why python-hl7 and not hl7apy: hl7apy binds each message to its version's segment tables and
rejects real messages that carry a segment the version did not define (the shared sample
``fhir-converter/messages/ORU-R01-01.hl7``, a v2.5.1 ORU with PRT segments, fails with
``InvalidName``); python-hl7 parses every shared sample and leaves structure to the mapping.

Lenient where senders differ (``\\r``, ``\\n`` or ``\\r\\n`` between segments, a UTF-8 byte-order
mark, blank lines, MLLP framing bytes left in), strict where the meaning would be lost (a message
must start with MSH and name its type). Pure functions: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import hl7

from mappings.hl7v2.errors import Hl7Error

_BREAK = re.compile(r"\r\n|\n|\r")
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")


# MSH-18 character sets (HL7 table 0211) Hearth decodes, by Python codec.
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
}


def _declared_charset(raw: bytes) -> str | None:
    """The codec MSH-18 names (the MSH segment itself is ASCII), or None."""
    start = raw.find(b"MSH")
    if start < 0 or len(raw) < start + 4:
        return None
    head = raw[start:].split(b"\r", 1)[0].split(b"\n", 1)[0]
    fields = head.split(head[3:4])
    if len(fields) < 18:
        return None
    name = fields[17].split(b"~", 1)[0].decode("ascii", "replace").strip().upper()
    return CHARSETS.get(name)


def decode(raw: bytes | str) -> str:
    """Text of a message: in the character set MSH-18 names, else UTF-8 (with or without a
    BOM), else ISO 8859-1, which maps every byte."""
    if isinstance(raw, str):
        return raw.lstrip("\ufeff")
    for codec in (_declared_charset(raw), "utf-8"):
        if codec is None:
            continue
        try:
            return raw.decode(codec).lstrip("\ufeff")
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def normalise(text: str) -> str:
    """Segments joined by ``\\r`` (the ER7 terminator), without blank lines or framing bytes."""
    text = text.strip("\x0b\x1c\r\n \t\ufeff")
    segments = [s for s in _BREAK.split(text) if s.strip()]
    return "\r".join(segments)


@dataclass(frozen=True)
class Separators:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


class Composite:
    """One repetition of a field: components (1-based) of subcomponents (1-based)."""

    def __init__(self, raw: str, seps: Separators, message: hl7.Message) -> None:
        self.raw = raw
        self._seps = seps
        self._message = message
        self._parts = raw.split(seps.component)

    def __bool__(self) -> bool:
        return bool(self.raw.strip())

    def component_raw(self, i: int) -> str:
        return self._parts[i - 1] if 0 < i <= len(self._parts) else ""

    def c(self, i: int, sub: int = 1) -> str:
        """Component ``i`` (its subcomponent ``sub``), unescaped and stripped ("" when absent)."""
        subs = self.component_raw(i).split(self._seps.subcomponent)
        value = subs[sub - 1] if 0 < sub <= len(subs) else ""
        return unescape(self._message, value).strip()

    def subs(self, i: int) -> list[str]:
        raw = self.component_raw(i)
        return [unescape(self._message, s).strip() for s in raw.split(self._seps.subcomponent)]

    def text(self) -> str:
        """The whole repetition as text (components joined by a space): for ST/TX/FT values."""
        return unescape(self._message, self.raw)


class Segment:
    """A segment; ``field(n)`` is HL7 field n (MSH-1 is the field separator, as in the spec)."""

    def __init__(
        self,
        index: int,
        fields: list[str],
        seps: Separators,
        message: hl7.Message,
        occurrence: int = 1,
    ):
        self.index = index  # position in the message, 0-based
        self.occurrence = occurrence  # 1 for the first segment of its name, 2 for the next…
        self.name = fields[0]
        self._fields = fields
        self._seps = seps
        self._message = message
        self._reps: dict[int, list[Composite]] = {}

    def raw(self, n: int) -> str:
        return self._fields[n] if 0 <= n < len(self._fields) else ""

    def reps(self, n: int) -> list[Composite]:
        """The non-empty repetitions of field ``n``."""
        if n not in self._reps:
            self._reps[n] = self._split(n)
        return self._reps[n]

    def _split(self, n: int) -> list[Composite]:
        raw = self.raw(n)
        if self.name == "MSH" and n <= 2:
            return [Composite(raw, Separators(component="\x00"), self._message)] if raw else []
        out = [Composite(r, self._seps, self._message) for r in raw.split(self._seps.repetition)]
        return [c for c in out if c]

    def first(self, n: int) -> Composite | None:
        reps = self.reps(n)
        return reps[0] if reps else None

    def value(self, n: int, comp: int = 1, sub: int = 1) -> str:
        """Component ``comp`` of the first repetition of field ``n`` ("" when absent)."""
        first = self.first(n)
        return first.c(comp, sub) if first is not None else ""

    def where(self, n: int) -> str:
        """An error location as ERR-2 writes it: segment^sequence^field."""
        return f"{self.name}^{self.occurrence}^{n}"


def unescape(message: hl7.Message, value: str) -> str:
    if "\\" not in value and message.esc not in value:
        return value
    try:
        return message.unescape(value)
    except Exception:  # a malformed escape (e.g. \X4\): keep the text as sent
        return value


@dataclass
class Message:
    segments: list[Segment]
    separators: Separators
    text: str  # normalised (segments joined by \r)

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def one(self, name: str) -> Segment | None:
        found = self.all(name)
        return found[0] if found else None

    @property
    def control_id(self) -> str:
        return self.msh.value(10)

    @property
    def message_type(self) -> tuple[str, str, str]:
        """(MSH-9.1 message code, MSH-9.2 trigger event, MSH-9.3 structure), upper-cased."""
        t = self.msh.first(9)
        if t is None:
            return ("", "", "")
        return (t.c(1).upper(), t.c(2).upper(), t.c(3).upper())

    @property
    def version(self) -> str:
        return self.msh.value(12)

    @property
    def processing_id(self) -> str:
        return self.msh.value(11)


def parse(raw: bytes | str) -> Message:
    """Parse one ER7 message; ``Hl7Error`` (rejected, AR) when it is not one."""
    text = normalise(decode(raw))
    if not text.startswith("MSH") or len(text) < 8:
        what = "a batch (FHS/BHS)" if text.startswith(("FHS", "BHS")) else "not an HL7 message"
        raise Hl7Error("AR", "100", f"{what}: a message must start with an MSH segment")
    field_sep = text[3]
    if field_sep.isalnum() or field_sep.isspace():
        raise Hl7Error("AR", "100", "MSH-1 (the field separator) is not a valid separator")
    encoding = text[4:].split(field_sep, 1)[0]
    if len(encoding) < 3 or len(set(encoding)) != len(encoding) or field_sep in encoding:
        raise Hl7Error("AR", "102", f"MSH-2 (encoding characters) {encoding!r} is not valid")
    seps = Separators(
        field=field_sep,
        component=encoding[0],
        repetition=encoding[1],
        escape=encoding[2],
        subcomponent=encoding[3] if len(encoding) > 3 else "&",
    )
    lines = text.split("\r")
    if any(line.startswith("MSH") for line in lines[1:]):
        raise Hl7Error("AR", "100", "more than one MSH segment: send one message at a time")
    try:
        parsed = hl7.parse(text)
    except Exception as exc:  # python-hl7 raises plain exceptions on malformed text
        raise Hl7Error("AR", "100", f"the message cannot be parsed: {exc}") from exc
    segments: list[Segment] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(lines):
        fields = line.split(field_sep)
        name = fields[0].strip()
        if not _SEGMENT_ID.match(name):
            raise Hl7Error("AR", "100", f"segment {i + 1} has no valid segment id: {name[:10]!r}")
        if name == "MSH":  # MSH-1 is the separator itself, MSH-2 the encoding characters
            fields = ["MSH", field_sep, *fields[1:]]
        else:
            fields[0] = name
        seen[name] = seen.get(name, 0) + 1
        segments.append(Segment(i, fields, seps, parsed, seen[name]))
    message = Message(segments, seps, text)
    code, event, _ = message.message_type
    if not code:
        raise Hl7Error("AR", "101", "MSH-9 (message type) is required", location="MSH^1^9")
    if not message.control_id:
        raise Hl7Error("AR", "101", "MSH-10 (message control id) is required", location="MSH^1^10")
    return message
