"""SIU — schedule notifications (SCH, TQ1, AIS/AIG/AIL/AIP → Appointment): PID → Patient (a conditional create: demographics are left to ADT),
then every segment walked in order (``mappings/hl7v2/segments.py``), after the IG message map
SIU_S12."""

from __future__ import annotations

from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext
from mappings.hl7v2.segments import CONTEXT, PATIENT_LEVEL, with_patient
from mappings.hl7v2.spec import MessageType


def bundle(message: Message, ctx: MapContext) -> dict:
    return with_patient(message, ctx, update=False)


MESSAGE = MessageType(
    code="SIU",
    events=frozenset(
        {
            "S12",
            "S13",
            "S14",
            "S15",
            "S16",
            "S17",
            "S18",
            "S19",
            "S20",
            "S21",
            "S22",
            "S23",
            "S24",
            "S26",
        }
    ),
    structure="SIU_S12",
    writes=CONTEXT | PATIENT_LEVEL | {"Appointment", "ServiceRequest"},
    map=bundle,
    description="schedule notifications (SCH, TQ1, AIS/AIG/AIL/AIP → Appointment)",
)
