"""PV1 → Encounter, after the V2-to-FHIR IG segment map "PV1[Encounter]" (``mappings/segments/HL7
Segment - FHIR R4_ PV1[Encounter] - PV1.csv``): PV1-2 → class (PatientClass[EncounterClass]) and
status (PatientClass[EncounterStatus], overridden by the trigger event, Event[EncounterStatus],
and by PV1-45: "finished"), PV1-3 → location[1] (active), PV1-4 → type (table 0007), PV1-5 →
hospitalization.preAdmissionIdentifier, PV1-6 → location[2] (completed), PV1-7/8/9/17 →
participant ATND/REF/CON/ADM, PV1-10 → serviceType (table 0069), PV1-14 →
hospitalization.admitSource (table 0023), PV1-19 → identifier (type VN), PV1-36 →
hospitalization.dischargeDisposition (table 0112), PV1-44/45 → period.

The cancels restore the state before the event they cancel (HL7 v2.5.1 3.3.11-3.3.13, the IG's
Event[EncounterStatus]); the Encounter is replaced by what the cancel's PV1 says, so: A11 cancel
admit → cancelled; A12 cancel transfer → PV1-3, which the standard says "must show the location
of the patient prior to the original transfer", is the one active location, and PV1-6 (where the
cancelled transfer put the patient) is not kept as a place the patient was; A13 cancel
discharge → in-progress with no period.end, no discharge disposition and the locations active
again, whatever PV1-36/45 of the message still carry (the discharge they describe is the one
cancelled).

Locations and practitioners become logical references (display, identifier): Hearth does not
create Location or Practitioner resources from messages. Pure functions: no I/O.
"""

from __future__ import annotations

from mappings.hl7v2 import codes
from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2.er7 import Composite, Segment
from mappings.hl7v2.mapping import MapContext, search_token

CANCEL_TRANSFER, CANCEL_DISCHARGE = "A12", "A13"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PARTICIPANTS = (
    (7, "ATND", "attender"),
    (8, "REF", "referrer"),
    (9, "CON", "consultant"),
    (17, "ADM", "admitter"),
)


def has_visit(pv1: Segment | None) -> bool:
    """Whether the PV1 describes a visit (a class other than N, or a visit number)."""
    if pv1 is None:
        return False
    return bool(pv1.value(19)) or pv1.value(2).upper() not in ("", "N")


def visit_identifier(pv1: Segment, ctx: MapContext) -> dict | None:
    first = pv1.first(19)
    ident = dt.cx(first, ctx.default_system, pv1.where(19)) if first else None
    if ident is not None:
        ident["type"] = {
            "coding": [{"system": codes.V2 + "0203", "code": "VN", "display": "Visit number"}],
            "text": "visit number",
        }
    return ident


def match_key(pv1: Segment, ctx: MapContext) -> str | None:
    ident = visit_identifier(pv1, ctx)
    if ident is None:
        return None
    return "identifier=" + search_token(ident.get("system"), ident["value"])


# The key naming the PV1 field an Encounter.location came from, for the Location resource
# (segments.Builder._materialise) that replaces its display; removed there.
FIELD_KEY = "_pv1_field"


def _location(c: Composite, status: str, n: int) -> dict | None:
    parts = [c.c(1), c.c(2), c.c(3), c.c(4, 1), c.c(7), c.c(8), c.c(9)]
    display = ", ".join(p for p in parts if p)
    if not display:
        return None
    return {"location": {"display": display}, "status": status, FIELD_KEY: n}


def encounter(pv1: Segment, event: str, patient_ref: str, ctx: MapContext) -> dict:
    res: dict = {"resourceType": "Encounter"}
    ident = visit_identifier(pv1, ctx)
    if ident:
        res["identifier"] = [ident]
    klass = pv1.value(2).upper()
    if klass in codes.ENCOUNTER_CLASS:
        system, code, display = codes.ENCOUNTER_CLASS[klass]
        res["class"] = {"system": system, "code": code, "display": display}
    else:  # Encounter.class is required in R4
        res["class"] = {"system": codes.V2 + "0004", "code": "U", "display": "Unknown"}
    end = None if event == CANCEL_DISCHARGE else dt.date_time(pv1.value(45), ctx.tz, pv1.where(45))
    status = codes.STATUS_BY_EVENT.get(event) or codes.STATUS_BY_CLASS.get(klass, "in-progress")
    if end:
        status = "finished"
    res["status"] = status
    kind = dt.table_concept(pv1.first(4), "0007")
    if kind:
        res["type"] = [kind]
    service = dt.table_concept(pv1.first(10), "0069")
    if service:
        res["serviceType"] = service
    res["subject"] = {"reference": patient_ref}
    participants = []
    for n, code, text in PARTICIPANTS:
        for rep in pv1.reps(n):
            who = dt.xcn_reference(rep, ctx.default_system)
            if who:
                participants.append(
                    {
                        "type": [
                            {"coding": [{"system": PARTICIPATION, "code": code}], "text": text}
                        ],
                        "individual": who,
                    }
                )
    if participants:
        res["participant"] = participants
    period = {}
    start = dt.date_time(pv1.value(44), ctx.tz, pv1.where(44))
    if start:
        period["start"] = start
    if end:
        period["end"] = end
    if period:
        res["period"] = period
    hosp: dict = {}
    pre = pv1.first(5)
    pre_id = dt.cx(pre, ctx.default_system, pv1.where(5)) if pre else None
    if pre_id:
        hosp["preAdmissionIdentifier"] = pre_id
    source = dt.table_concept(pv1.first(14), "0023")
    if source:
        hosp["admitSource"] = source
    disposition = dt.table_concept(pv1.first(36), "0112")
    if disposition and event != CANCEL_DISCHARGE:
        hosp["dischargeDisposition"] = disposition
    if hosp:
        res["hospitalization"] = hosp
    locations = []
    fields: tuple[tuple[int, str], ...] = (
        (3, "completed" if status == "finished" else "active"),
        (6, "completed"),
    )
    if event == CANCEL_TRANSFER:  # PV1-3: where the patient is again; PV1-6: cancelled
        fields = fields[:1]
    for n, loc_status in fields:
        first = pv1.first(n)
        loc = _location(first, loc_status, n) if first else None
        if loc:
            locations.append(loc)
    if locations:
        res["location"] = locations
    return res
