"""BAR — billing accounts (PID-18 → Account, DG1, PR1, IN1): PID → Patient (a conditional update),
then every segment walked in order (``mappings/hl7v2/segments.py``), after the IG message map
BAR_P01."""

from __future__ import annotations

from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext
from mappings.hl7v2.segments import CONTEXT, PATIENT_LEVEL, with_patient
from mappings.hl7v2.spec import MessageType


def bundle(message: Message, ctx: MapContext) -> dict:
    return with_patient(message, ctx, update=True)


MESSAGE = MessageType(
    code="BAR",
    events=frozenset({"P01", "P02", "P05", "P06", "P10", "P12"}),
    structure="BAR_P01",
    writes=CONTEXT | PATIENT_LEVEL | {"ChargeItem", "ServiceRequest"},
    map=bundle,
    description="billing accounts (PID-18 → Account, DG1, PR1, IN1)",
)
