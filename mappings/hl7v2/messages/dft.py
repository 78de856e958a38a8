"""DFT — financial transactions (FT1 → ChargeItem): PID → Patient (a conditional update),
then every segment walked in order (``mappings/hl7v2/segments.py``), after the IG message map
DFT_P03."""

from __future__ import annotations

from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext
from mappings.hl7v2.segments import CONTEXT, PATIENT_LEVEL, with_patient
from mappings.hl7v2.spec import MessageType


def bundle(message: Message, ctx: MapContext) -> dict:
    return with_patient(message, ctx, update=True)


MESSAGE = MessageType(
    code="DFT",
    events=frozenset({"P03", "P11"}),
    structure="DFT_P03",
    writes=CONTEXT | PATIENT_LEVEL | {"ChargeItem", "ServiceRequest", "MedicationDispense"},
    map=bundle,
    description="financial transactions (FT1 → ChargeItem)",
)
