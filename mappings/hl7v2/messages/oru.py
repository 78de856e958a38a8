"""ORU^R01/R30 and OUL^R22-R24 (results): PID → Patient (a conditional create: a result never
rewrites demographics), OBR → DiagnosticReport with its OBX → Observations
(``mappings/hl7v2/oru.py``), then OBR (with ORC) → ServiceRequest, PV1 → Encounter, SPM → Specimen, and the practitioners,
organisations and locations they name (``mappings/hl7v2/segments.py``)."""

from __future__ import annotations

from mappings.hl7v2 import oru
from mappings.hl7v2.er7 import Message
from mappings.hl7v2.mapping import MapContext
from mappings.hl7v2.segments import around
from mappings.hl7v2.spec import MessageType

# OBR is walked too: each order is also a ServiceRequest (the IG maps OBR to both)
CORE = frozenset({"ORC", "OBX", "NTE", "TXA"})


def bundle(message: Message, ctx: MapContext) -> dict:
    return around(oru.bundle(message, ctx), message, ctx, CORE)


MESSAGE = MessageType(
    code="ORU",
    events=frozenset({"R01", "R30", "R31", "R32"}),
    structure="ORU_R01",
    writes=frozenset(
        {
            "Patient",
            "DiagnosticReport",
            "Observation",
            "Encounter",
            "EpisodeOfCare",
            "Specimen",
            "Practitioner",
            "Organization",
            "Location",
            "Account",
            "RelatedPerson",
            "AllergyIntolerance",
            "Condition",
            "Procedure",
            "Coverage",
        }
    ),
    map=bundle,
    description="unsolicited results",
)
