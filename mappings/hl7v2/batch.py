"""HL7 v2 batches and files (HL7 v2.5.1 Chapter 2, 2.10.3 "HL7 batch protocol"):

    [FHS]  { [BHS]  { MSH ... }  [BTS] }  [FTS]

``split`` cuts one into its messages (each an ER7 text for ``er7.parse``), keeping each batch's
header and trailer; the grammar is python-hl7's ``parse_batch`` / ``parse_file`` (one FHS, any
number of BHS … BTS, messages starting at MSH), but lenient inside a message: segments that come
before any MSH of a batch are a message of their own, without a header, which the caller rejects
alone (AR) instead of failing the batch. ``problems`` checks the counts: BTS-1 (batch message
count) against the messages of its batch and FTS-1 (file batch count) against the batches, and
a batch that does not add up was cut short or spliced, so none of it is applied. BTS and FTS
are optional in the grammar (and in python-hl7): without one there is no count to check, and
the answer's BTS-2 says so.

``acknowledge`` builds the answer 2.10.3.3 describes for a batch that asks for acknowledgments:
a batch (a file, when one was sent) of one original-mode ACK per message, in the order of the
messages, the BHS-12 / FHS-12 reference control ids echoing the sent BHS-11 / FHS-11, BTS-1 the
number of ACKs and BTS-2 a comment (counts of AA / AE / AR, or why nothing was applied). Pure
functions: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from mappings.hl7v2.ack import escape
from mappings.hl7v2.er7 import decode, normalise

_BREAK = re.compile(r"\r\n|\n|\r")
HEADERS = ("FHS", "BHS")
TRAILERS = ("BTS", "FTS")


@dataclass
class Part:
    """One batch: its BHS (None when the messages came without one), messages, BTS."""

    header: list[str] | None
    messages: list[str] = field(default_factory=list)
    trailer: list[str] | None = None


@dataclass
class Batch:
    file_header: list[str] | None
    parts: list[Part]
    file_trailer: list[str] | None
    field_sep: str = "|"
    component_sep: str = "^"

    @property
    def messages(self) -> list[str]:
        return [m for p in self.parts for m in p.messages]


def is_batch(raw: bytes | str) -> bool:
    """Whether the input is a batch or a file: it starts with FHS or BHS, or carries a BTS or FTS
    segment (a batch whose BHS was left out, as python-hl7 allows)."""
    text = normalise(decode(raw))
    if text.startswith(HEADERS):
        return True
    return any(s[:3] in TRAILERS for s in text.split("\r"))


def _fields(segment: str, sep: str) -> list[str]:
    """A header's or trailer's fields numbered as the standard does (FHS-1 is the separator)."""
    parts = segment.split(sep)
    if parts[0] in HEADERS:
        return [parts[0], sep, *parts[1:]]
    return parts


def split(raw: bytes | str) -> Batch:
    text = normalise(decode(raw))
    sep = text[3] if len(text) > 3 and text.startswith(HEADERS) else "|"
    component = "^"
    if text.startswith(HEADERS) and len(text) > 4:
        component = text[4]
    batch = Batch(None, [], None, sep, component)
    current: Part | None = None
    message: list[str] | None = None

    def close_message() -> None:
        nonlocal message
        if message and current is not None:
            current.messages.append("\r".join(message))
        message = None

    for segment in _BREAK.split(text):
        name = segment[:3]
        if name == "FHS" and batch.file_header is None and not batch.parts:
            batch.file_header = _fields(segment, sep)
        elif name == "BHS":
            close_message()
            current = Part(_fields(segment, sep))
            batch.parts.append(current)
        elif name == "BTS":
            close_message()
            if current is None:
                current = Part(None)
                batch.parts.append(current)
            current.trailer = _fields(segment, sep)
            current = None
        elif name == "FTS":
            close_message()
            batch.file_trailer = _fields(segment, sep)
            current = None
        else:
            if current is None:  # messages after a BTS, or without a BHS
                current = Part(None)
                batch.parts.append(current)
            if name == "MSH":
                close_message()
                message = [segment]
            elif message is None:
                message = [segment]  # segments before any MSH: a message without its header
            else:
                message.append(segment)
    close_message()
    return batch


def _count(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


def problems(batch: Batch) -> list[tuple[str, str]]:
    """(ERR-2 location, text) for each way the batch does not add up: a count in BTS-1 / FTS-1
    that is not the number of messages / batches sent."""
    out: list[tuple[str, str]] = []
    for n, part in enumerate(batch.parts, 1):
        if part.trailer is not None and len(part.trailer) > 1 and part.trailer[1].strip():
            said = _count(part.trailer[1])
            if said is None:
                out.append((f"BTS^{n}^1", f"BTS-1 {part.trailer[1][:20]!r} is not a number"))
            elif said != len(part.messages):
                out.append(
                    (
                        f"BTS^{n}^1",
                        f"BTS-1 says batch {n} holds {said} messages; it holds "
                        f"{len(part.messages)}",
                    )
                )
    if batch.file_trailer is not None and len(batch.file_trailer) > 1:
        value = batch.file_trailer[1]
        said = _count(value)
        if value.strip() and said != len(batch.parts):
            out.append(
                (
                    "FTS^1^1",
                    f"FTS-1 says the file holds {value.strip()[:20]} batches; it holds "
                    f"{len(batch.parts)}",
                )
            )
    return out


def _field(fields: list[str] | None, n: int) -> str:
    return fields[n] if fields is not None and n < len(fields) else ""


def _header(
    name: str, sent: list[str] | None, sep: str, control_id: str, now: datetime, app: str
) -> str:
    """FHS / BHS of the answer: sender and receiver swapped, a new control id (-11), the sent
    one as the reference (-12). Sent fields are re-joined with ``|``; their components keep the
    sender's component separator only when it is ``^`` (else they are escaped text)."""

    def back(n: int) -> str:
        value = _field(sent, n)
        return value if sep == "|" else escape(value)

    stamp = now.strftime("%Y%m%d%H%M%S") + now.strftime("%z")
    fields = [
        name,
        "^~\\&",
        back(5) or app,
        back(6),
        back(3),
        back(4),
        stamp,
        "",
        back(9),
        "",
        escape(control_id),
        back(11),
    ]
    return "|".join(fields).rstrip("|")


def acknowledge(
    batch: Batch,
    acks: list[list[str]],
    comments: list[str],
    *,
    control_id: str,
    now: datetime,
    application: str = "HEARTH",
) -> str:
    """The answer to ``batch``: for each of its parts, a BHS, the ACKs of its messages (``acks``:
    one list of ACK texts per part, each ending in \\r) and a BTS (its count and ``comments`` of
    that part); in an FHS / FTS when the input was a file."""
    segments: list[str] = []
    if batch.file_header is not None:
        segments.append(
            _header("FHS", batch.file_header, batch.field_sep, control_id, now, application)
        )
    for n, (part, answers) in enumerate(zip(batch.parts, acks, strict=True), 1):
        segments.append(
            _header("BHS", part.header, batch.field_sep, f"{control_id}-{n}", now, application)
        )
        segments.extend(a.rstrip("\r") for a in answers)
        segments.append(f"BTS|{len(answers)}|{escape(comments[n - 1])}")
    if batch.file_header is not None:
        segments.append(f"FTS|{len(batch.parts)}")
    return "\r".join(segments) + "\r"
