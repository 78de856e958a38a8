"""VXU — vaccinations (RXA, RXR → Immunization): PID → Patient (a conditional create: demographics are left to ADT),
then every segment walked in order (``mappings/hl7v2/segments.py``), after the IG message map
VXU_V04."""

from __future__ import annotations

from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext
from mappings.hl7v2.segments import CONTEXT, PATIENT_LEVEL, with_patient
from mappings.hl7v2.spec import MessageType


def bundle(message: Message, ctx: MapContext) -> dict:
    return with_patient(message, ctx, update=False)


MESSAGE = MessageType(
    code="VXU",
    events=frozenset({"V04"}),
    structure="VXU_V04",
    writes=CONTEXT | PATIENT_LEVEL | {"Immunization", "ServiceRequest"},
    map=bundle,
    description="vaccinations (RXA, RXR → Immunization)",
)
