"""HL7 v2 messages → FHIR R4 transaction Bundles, after the HL7 V2-to-FHIR Implementation Guide
mapping tables (message, segment, data type and concept maps; see docs/hl7v2.md), and the HL7
acknowledgments that answer them.

``map_parsed(message)`` maps a parsed ER7 message (``er7.py``) by MSH-9 with the message type
the registry (``registry.py``) finds for it: one module per type in ``messages/``. Anything
else is rejected with an ``Hl7Error`` ("AR", table 0357 code 200/201) naming it.
Pure functions: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mappings.hl7v2 import ordering, registry
from mappings.hl7v2.ack import AckError, build
from mappings.hl7v2.er7 import Message, parse
from mappings.hl7v2.errors import Hl7Error
from mappings.hl7v2.mapping import MapContext, Target, Warning_
from mappings.hl7v2.provenance import add_record
from mappings.hl7v2.segments import message_source

__all__ = ["AckError", "Hl7Error", "Mapped", "Message", "build", "map_parsed", "parse", "supported"]


def supported() -> list[str]:
    return registry.supported()


@dataclass
class Mapped:
    message: Message
    bundle: dict
    warnings: list[Warning_]
    time: str | None = None  # EVN-2, else MSH-7: the message's place in the patient's record
    targets: list[Target] = field(default_factory=list)  # records that must exist (mapping.py)


def map_parsed(message: Message, *, server_tz: str | None = None) -> Mapped:
    """The transaction Bundle of a parsed message; ``Hl7Error`` when it cannot be mapped."""
    code, event, _ = message.message_type
    declared = registry.lookup(code, event)
    if declared is None:
        known = registry.codes()
        taken = ", ".join(sorted(known))
        if code not in known:
            raise Hl7Error(
                "AR",
                "200",
                f"message type {code or '(none)'}^{event} is not supported (Hearth takes {taken};"
                " the events of each: docs/hl7v2.md)",
                location="MSH^1^9",
            )
        raise Hl7Error(
            "AR",
            "201",
            f"event {code}^{event} is not supported (Hearth takes "
            + ", ".join(s for s in registry.supported() if s.startswith(code + "^"))
            + ")",
            location="MSH^1^9",
        )
    ctx = MapContext.of(message, server_tz)
    bundle = declared.map(message, ctx)
    when = ordering.message_time(message, ctx.tz)
    update = ordering.patient_update(bundle)
    if update is not None and when is not None:  # the record's order stamp (ordering.py)
        ordering.stamp(bundle["entry"][update[0]]["resource"], when)
    add_record(message, ctx, bundle)  # MessageHeader, Provenance (provenance.py)
    source = message_source(message)
    for e in bundle["entry"]:  # what a hospital sent in is not sent back out (outbound.py)
        if e["resource"].get("resourceType") != "Parameters":
            e["resource"].setdefault("meta", {})["source"] = source
    return Mapped(message, bundle, ctx.warnings, when, ctx.targets)
