"""REF — referrals (RF1 → ServiceRequest, PRD → Practitioner): PID → Patient (a conditional create: demographics are left to ADT),
then every segment walked in order (``mappings/hl7v2/segments.py``), after the IG message map
REF_I12."""

from __future__ import annotations

from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext
from mappings.hl7v2.segments import CONTEXT, PATIENT_LEVEL, with_patient
from mappings.hl7v2.spec import MessageType


def bundle(message: Message, ctx: MapContext) -> dict:
    return with_patient(message, ctx, update=False)


MESSAGE = MessageType(
    code="REF",
    events=frozenset({"I12", "I13", "I14", "I15"}),
    structure="REF_I12",
    writes=CONTEXT | PATIENT_LEVEL | {"ServiceRequest", "DiagnosticReport"},
    map=bundle,
    description="referrals (RF1 → ServiceRequest, PRD → Practitioner)",
)
