"""BAR — billing accounts (PID-18 → Account, DG1, PR1, IN1): PID → Patient (a conditional update),
then every segment walked in order (``mappings/hl7v2/segments.py``), after the IG message map
BAR_P01. Every repeating group is mapped: each PID a patient group (BAR_P02 purges the accounts
of several patients), each PV1 a visit group (BAR_P01 / P05 add or update several visits), the
segments after it about that patient and visit. BAR^P02 (purge patient accounts) closes each
PID-18 Account (status ``inactive``): the records stay, the account is no longer billed."""

from __future__ import annotations

from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext
from mappings.hl7v2.segments import CONTEXT, PATIENT_LEVEL, with_patient
from mappings.hl7v2.spec import MessageType

PURGE = "P02"


def bundle(message: Message, ctx: MapContext) -> dict:
    purge = message.message_type[1] == PURGE
    return with_patient(message, ctx, update=True, groups=True, account="inactive" if purge else "")


MESSAGE = MessageType(
    code="BAR",
    events=frozenset({"P01", "P02", "P05", "P06", "P10", "P12"}),
    structure="BAR_P01",
    writes=CONTEXT | PATIENT_LEVEL | {"ChargeItem", "ServiceRequest"},
    map=bundle,
    description="billing accounts (PID-18 → Account, DG1, PR1, IN1), every patient / visit group",
)
