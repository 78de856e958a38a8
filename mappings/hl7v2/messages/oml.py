"""OML — laboratory orders: PID → Patient (a conditional create: demographics are left to ADT),
then every segment walked in order (``mappings/hl7v2/segments.py``), after the IG message map
OML_O21."""

from __future__ import annotations

from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext
from mappings.hl7v2.segments import CONTEXT, PATIENT_LEVEL, with_patient
from mappings.hl7v2.spec import MessageType


def bundle(message: Message, ctx: MapContext) -> dict:
    return with_patient(message, ctx, update=False)


MESSAGE = MessageType(
    code="OML",
    events=frozenset({"O21", "O33", "O35", "O39"}),
    structure="OML_O21",
    writes=CONTEXT | PATIENT_LEVEL | {"ServiceRequest", "Specimen", "ChargeItem"},
    map=bundle,
    description="laboratory orders",
)
