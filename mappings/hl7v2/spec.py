"""What one inbound HL7 v2 message type is to Hearth: a ``MessageType`` declaration (the message
code, the trigger events it takes, the abstract message structure of HL7 v2.5.1 Chapter 2
"Message structures", the FHIR resource types its mapping may write, and the mapping function).

Each module of ``mappings/hl7v2/messages/`` declares ``MESSAGE = MessageType(...)``; the registry
(``mappings/hl7v2/registry.py``) finds them. The MLLP listener's write scopes, the HTTP edge's
answer for an unsupported type (AR with an ERR naming it) and the ACK's structure all read the
registry, so none of them can drift from the mappings (docs/extending.md "Add an HL7 message
type").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext

Mapper = Callable[[Message, MapContext], dict]


@dataclass(frozen=True)
class MessageType:
    code: str  # MSH-9.1, e.g. "ADT"
    events: frozenset[str]  # MSH-9.2 trigger events taken, e.g. {"A01", "A04"}
    structure: str  # the abstract message structure, e.g. "ADT_A01" (MSH-9.3)
    writes: frozenset[str]  # FHIR resource types the mapping may create or update
    map: Mapper  # (message, context) -> transaction Bundle; raises Hl7Error
    description: str = ""

    def __post_init__(self) -> None:
        if not (len(self.code) == 3 and self.code.isalnum() and self.code.isupper()):
            raise ValueError(f"message code {self.code!r} is not an HL7 message code")
        if not self.events:
            raise ValueError(f"{self.code}: no trigger events declared")

    def names(self) -> list[str]:
        return [f"{self.code}^{e}" for e in sorted(self.events)]
