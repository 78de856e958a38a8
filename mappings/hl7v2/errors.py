"""Why a message was not applied, as an HL7 acknowledgment reports it: the MSA-1 code (AR: the
message is rejected, it is unsupported or cannot be read; AE: it was read but cannot be applied),
the HL7 table 0357 error code of ERR-3 and the ERR-2 location (HL7 v2.5.1 Chapter 2, 2.14.5 MSA,
2.15.5 ERR)."""

from __future__ import annotations

# HL7 table 0357 (message error condition codes) used by Hearth.
CODES = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "207": "Application internal error",
}


class Hl7Error(Exception):
    """A message Hearth does not apply. ``ack`` is "AR" or "AE"; ``code`` is from table 0357."""

    def __init__(self, ack: str, code: str, text: str, *, location: str = "") -> None:
        super().__init__(text)
        self.ack = ack
        self.code = code
        self.text = text
        self.location = location


def missing(location: str, what: str) -> Hl7Error:
    """A required field is empty: the message is read, but cannot be applied (AE 101)."""
    return Hl7Error(
        "AE", "101", f"{location.replace('^1^', '-')} ({what}) is required", location=location
    )
