"""HL7 acknowledgments (original mode): an ACK message answering one message, HL7 v2.5.1
Chapter 2, 2.9.2 "Original acknowledgment rules", 2.14.5 MSA and 2.15.5 ERR.

MSA-1 is AA (applied), AE (read but not applied: the ERR segments say why) or AR (rejected:
unsupported message type or event, or not a readable message); MSA-2 echoes MSH-10 of the
message. ERR segments carry ERR-2 (location), ERR-3 (table 0357 code), ERR-4 (severity E, or W
for a warning on an accepted message) and ERR-8 (the text for a person). Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mappings.hl7v2.er7 import Message
from mappings.hl7v2.errors import CODES


@dataclass
class AckError:
    code: str  # table 0357
    text: str
    location: str = ""  # e.g. "PID^1^3"
    severity: str = "E"  # E error, W warning


def escape(text: str) -> str:
    """Text for an ER7 field with the standard encoding characters (2.7 escape sequences)."""
    out = text.replace("\\", "\\E\\")
    for ch, esc in (("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        out = out.replace(ch, esc)
    return out.replace("\r", " ").replace("\n", " ")


def _raw(message: Message | None, n: int) -> str:
    """An MSH field of the message, re-escaped for the ACK (it may use other separators)."""
    if message is None:
        return ""
    first = message.msh.first(n)
    if first is None:
        return ""
    parts = [escape(first.c(i)) for i in range(1, 4)]
    return "^".join(parts).rstrip("^")


def build(
    message: Message | None,
    code: str,
    errors: list[AckError],
    *,
    control_id: str,
    now: datetime,
    application: str = "HEARTH",
) -> str:
    """The ACK (segments joined by \\r). ``message`` is None when the input could not be read:
    MSA-2 is then empty."""
    event = message.message_type[1] if message is not None else ""
    version = message.version if message is not None and message.version else "2.5.1"
    processing = message.processing_id if message is not None and message.processing_id else "P"
    stamp = now.strftime("%Y%m%d%H%M%S") + now.strftime("%z")
    msh = [
        "MSH",
        "^~\\&",
        _raw(message, 5) or application,
        _raw(message, 6),
        _raw(message, 3),
        _raw(message, 4),
        stamp,
        "",
        f"ACK^{escape(event)}^ACK" if event else "ACK",
        escape(control_id),
        escape(processing),
        escape(version),
    ]
    original = escape(message.control_id) if message is not None else ""
    main_error = next((e for e in errors if e.severity == "E"), None)
    msa = ["MSA", code, original]
    if main_error is not None:
        msa.append(escape(main_error.text)[:80])
    segments = ["|".join(msh), "|".join(msa)]
    for e in errors:
        meaning = CODES.get(e.code, "")
        segments.append(
            "|".join(
                [
                    "ERR",
                    "",
                    escape(e.location).replace("\\S\\", "^"),
                    f"{e.code}^{meaning}^HL70357",
                    e.severity,
                    "",
                    "",
                    "",
                    escape(e.text),
                ]
            )
        )
    return "\r".join(segments) + "\r"
