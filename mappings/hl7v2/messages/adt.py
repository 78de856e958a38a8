"""ADT (admit, discharge, transfer) events → Patient, Encounter and what the message carries
beside them, after the IG message maps ADT_A01 (used for A01, A04, A08, A13), ADT_A02, ADT_A03,
ADT_A05, ADT_A06, ADT_A09, ADT_A15, ADT_A16, ADT_A21, ADT_A38, ADT_A60: PID → Patient (a
conditional update: ADT carries the whole demographic record), PV1 → Encounter (its status by
the event, Event[EncounterStatus]: A11 cancel admit → cancelled, A13 cancel discharge →
in-progress again, A12 cancel transfer keeps the visit as it is), then NK1, AL1, DG1, PR1, IN1,
OBX, PID-18 (Account) and Z-segments (``mappings/hl7v2/segments.py``)."""

from __future__ import annotations

from mappings.hl7v2 import adt, moves
from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext
from mappings.hl7v2.segments import around
from mappings.hl7v2.spec import MessageType

# merges and identifier changes (adt_merge.py), account / visit moves (adt_move.py)
MERGES = {"A34", "A35", "A36", "A39", "A40", "A46", "A47", "A48"} | moves.EVENTS
EVENTS = frozenset(f"A{n:02d}" for n in range(1, 63)) - MERGES - {"A18", "A19", "A30", "A53"}


def bundle(message: Message, ctx: MapContext) -> dict:
    return around(adt.bundle(message, ctx), message, ctx, frozenset({"PV1"}))


MESSAGE = MessageType(
    code="ADT",
    events=EVENTS,
    structure="ADT_A01",
    writes=frozenset(
        {
            "Patient",
            "Encounter",
            "EpisodeOfCare",
            "RelatedPerson",
            "AllergyIntolerance",
            "Condition",
            "Procedure",
            "Coverage",
            "Observation",
            "Account",
            "Practitioner",
            "Organization",
            "Location",
        }
    ),
    map=bundle,
    description="admit, transfer, discharge, register, update, cancels, leave of absence",
)
