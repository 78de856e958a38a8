"""HL7 acknowledgments: an ACK message answering one message, HL7 v2.5.1 Chapter 2, 2.9.2
"Original acknowledgment rules", 2.9.3 "Enhanced acknowledgment rules", 2.14.5 MSA and 2.15.5
ERR.

Original mode (MSH-15 and MSH-16 both empty, the default): one ACK, AA / AE / AR. Enhanced
mode (either given; table 0155 AL always, NE never, ER only on error / reject, SU only on
success; an empty one of the two counts as AL): an accept acknowledgment, MSA-1 CA (committed:
read, and its type is one Hearth takes), CR (commit reject: unsupported message type or event,
or not a readable message) or CE (commit error: MSH-15 / MSH-16 not in table 0155), sent as
MSH-15 asks; then, only after CA, the application acknowledgment AA / AE / AR as MSH-16 asks.
Hearth applies a message before answering, so both follow at once, in that order. Every ACK of
an enhanced-mode message says MSH-15 / MSH-16 NE: an acknowledgment is not acknowledged.

MSA-1 is AA (applied), AE (read but not applied: the ERR segments say why) or AR (rejected:
unsupported message type or event, or not a readable message); MSA-2 echoes MSH-10 of the
message. ERR segments carry ERR-2 (location), ERR-3 (table 0357 code), ERR-4 (severity E, or W
for a warning on an accepted message) and ERR-8 (the text for a person). Pure functions.
"""

from __future__ import annotations

from collections.abc import Callable
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


# table 0155 accept / application acknowledgment conditions
ACK_CONDITIONS = frozenset({"AL", "NE", "ER", "SU"})


@dataclass(frozen=True)
class Mode:
    accept: str  # MSH-15
    application: str  # MSH-16


def enhanced(message: Message | None) -> Mode | None:
    """The enhanced-mode conditions of ``message``; None in original mode."""
    if message is None:
        return None
    accept = message.msh.value(15).strip().upper()
    application = message.msh.value(16).strip().upper()
    if not accept and not application:
        return None
    # an empty (or, answered CE, a wrong) condition: acknowledged, as AL
    return Mode(
        accept if accept in ACK_CONDITIONS else "AL",
        application if application in ACK_CONDITIONS else "AL",
    )


def mode_problem(message: Message) -> AckError | None:
    """An ERR for an MSH-15 / MSH-16 value outside table 0155 (the message is then not
    committed: CE)."""
    for n in (15, 16):
        value = message.msh.value(n).strip().upper()
        if value and value not in ACK_CONDITIONS:
            return AckError(
                "103",
                f"MSH-{n} {value!r} is not an acknowledgment condition of table 0155 "
                "(AL, NE, ER, SU)",
                f"MSH^1^{n}",
            )
    return None


def wanted(condition: str, success: bool) -> bool:
    return (
        condition == "AL" or (condition == "ER" and not success) or (condition == "SU" and success)
    )


def frames(
    message: Message | None,
    application_ack: str,
    code: str,
    errors: list[AckError],
    *,
    commit: str,
    accept: Callable[[str, list[AckError]], str],
) -> list[str]:
    """The acknowledgments answering ``message`` whose outcome is ``code`` (AA / AE / AR, with
    its ACK ``application_ack`` and ``errors``), in order: the one original-mode ACK, or the
    enhanced-mode accept ACK (``accept(CA|CE|CR, errors)`` builds it) and application ACK that
    MSH-15 / MSH-16 ask for (possibly none)."""
    mode = enhanced(message)
    if mode is None:
        return [application_ack]
    commit = commit or ("CR" if code == "AR" else "CA")
    out = []
    if wanted(mode.accept, commit == "CA"):
        out.append(accept(commit, [] if commit == "CA" else errors))
    if commit == "CA" and wanted(mode.application, code == "AA"):
        out.append(application_ack)
    return out


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
    if enhanced(message) is not None:  # MSH-13..16: an acknowledgment is not acknowledged
        msh += ["", "", "NE", "NE"]
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
