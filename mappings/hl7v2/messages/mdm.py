"""MDM — documents (TXA and the OBX content → DocumentReference): PID → Patient (a conditional create: demographics are left to ADT),
then every segment walked in order (``mappings/hl7v2/segments.py``), after the IG message map
MDM_T02."""

from __future__ import annotations

from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext
from mappings.hl7v2.segments import CONTEXT, PATIENT_LEVEL, with_patient
from mappings.hl7v2.spec import MessageType


def bundle(message: Message, ctx: MapContext) -> dict:
    return with_patient(message, ctx, update=False)


MESSAGE = MessageType(
    code="MDM",
    events=frozenset({"T01", "T02", "T03", "T04", "T05", "T06", "T07", "T08", "T09", "T10", "T11"}),
    structure="MDM_T02",
    writes=CONTEXT | PATIENT_LEVEL | {"DocumentReference", "ServiceRequest", "Specimen"},
    map=bundle,
    description="documents (TXA and the OBX content → DocumentReference)",
)
