"""HL7 v2 messages → FHIR R4 transaction Bundles, after the HL7 V2-to-FHIR Implementation Guide
mapping tables (message, segment, data type and concept maps; see docs/hl7v2.md), and the HL7
acknowledgments that answer them.

``map_message(raw)`` parses one ER7 message (``er7.py``) and maps it by MSH-9: ADT^A01/A03/A04/
A08 (``adt.py``), ADT^A40 (``mrg.py``), ORU^R01 (``oru.py``). Anything else is rejected with an ``Hl7Error`` ("AR",
table 0357 code 200/201). Pure functions: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from mappings.hl7v2 import adt, mrg, oru
from mappings.hl7v2.ack import AckError, build
from mappings.hl7v2.er7 import Message, parse
from mappings.hl7v2.errors import Hl7Error
from mappings.hl7v2.mapping import MapContext, Warning_

__all__ = ["AckError", "Hl7Error", "Mapped", "Message", "build", "map_parsed", "parse", "supported"]

SUPPORTED = {"ADT": adt.EVENTS | {"A40"}, "ORU": frozenset({"R01"})}


def supported() -> list[str]:
    return sorted(f"{code}^{event}" for code, events in SUPPORTED.items() for event in events)


@dataclass
class Mapped:
    message: Message
    bundle: dict
    warnings: list[Warning_]


def map_parsed(message: Message, *, server_tz: str | None = None) -> Mapped:
    """The transaction Bundle of a parsed message; ``Hl7Error`` when it cannot be mapped."""
    code, event, _ = message.message_type
    if code not in SUPPORTED:
        raise Hl7Error(
            "AR",
            "200",
            f"message type {code} is not supported (Hearth takes {', '.join(supported())})",
            location="MSH^1^9",
        )
    if event not in SUPPORTED[code]:
        raise Hl7Error(
            "AR",
            "201",
            f"event {code}^{event} is not supported (Hearth takes {', '.join(supported())})",
            location="MSH^1^9",
        )
    ctx = MapContext.of(message, server_tz)
    if code == "ORU":
        bundle = oru.bundle(message, ctx)
    elif event == "A40":
        bundle = mrg.bundle(message, ctx)
    else:
        bundle = adt.bundle(message, ctx)
    return Mapped(message, bundle, ctx.warnings)
