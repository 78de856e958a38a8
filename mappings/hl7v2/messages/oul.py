"""OUL^R22-R24 (specimen-oriented laboratory results): mapped like ORU (``messages/oru.py``):
DiagnosticReport per OBR with its Observations, Specimen per SPM."""

from __future__ import annotations

from mappings.hl7v2.messages import oru as oru_message
from mappings.hl7v2.spec import MessageType

MESSAGE = MessageType(
    code="OUL",
    events=frozenset({"R21", "R22", "R23", "R24"}),
    structure="OUL_R22",
    writes=oru_message.MESSAGE.writes,
    map=oru_message.bundle,
    description="specimen-oriented laboratory results",
)
