"""PID → Patient, after the V2-to-FHIR IG segment map "PID[Patient]" (``mappings/segments/HL7
Segment - FHIR R4_ PID[Patient] - PID.csv``): PID-2, PID-3, PID-4 → identifier (CX[Identifier]),
PID-5 → name (XPN[HumanName]), PID-7 → birthDate (+ the patient-birthTime extension when the
time is given), PID-8 → gender (AdministrativeSex), PID-11 → address (XAD[Address]), PID-13 →
telecom use home and PID-14 → telecom use work (XTN[ContactPoint]), PID-15 →
communication.language, PID-16 → maritalStatus, PID-19 → an SSN identifier, PID-24/25 →
multipleBirth, PID-29/30 → deceased. Pure functions: no I/O.
"""

from __future__ import annotations

from mappings.hl7v2 import codes
from mappings.hl7v2 import datatypes as dt
from mappings.hl7v2.er7 import Segment
from mappings.hl7v2.errors import Hl7Error, missing
from mappings.hl7v2.mapping import MapContext, search_token

BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"


def identifiers(pid: Segment, ctx: MapContext) -> list[dict]:
    out: list[dict] = []
    for n in (3, 2, 4):  # PID-3 first: it carries the identifier the patient is matched by
        for rep in pid.reps(n):
            ident = dt.cx(rep, ctx.default_system, pid.where(n))
            if ident is not None and ident not in out:
                out.append(ident)
    ssn = pid.value(19)
    if ssn:
        out.append({"system": US_SSN, "value": ssn, "type": dt.identifier_type("SS")})
    return out


def match_key(pid: Segment, ctx: MapContext) -> str:
    """The search that finds this patient: ``identifier=system|value`` of the first PID-3
    repetition that has a system (AE 101 when PID-3 gives none)."""
    for rep in pid.reps(3):
        ident = dt.cx(rep, ctx.default_system, pid.where(3))
        if ident is not None and "system" in ident:
            return "identifier=" + search_token(ident["system"], ident["value"])
    if pid.reps(3):
        raise Hl7Error(
            "AE",
            "101",
            "PID-3 has no assigning authority (CX.4) and MSH-4 names no sending facility: "
            "the patient cannot be matched",
            location=pid.where(3),
        )
    raise missing(pid.where(3), "patient identifier list")


def patient(pid: Segment, ctx: MapContext) -> dict:
    res: dict = {"resourceType": "Patient"}
    idents = identifiers(pid, ctx)
    if idents:
        res["identifier"] = idents
    names = [n for n in (dt.xpn(r) for r in pid.reps(5)) if n]
    if names:
        res["name"] = names
    born = pid.value(7)
    if born:
        res["birthDate"] = dt.birth_date(born, pid.where(7))
        full = dt.date_time(born, ctx.tz, pid.where(7))
        if full and "T" in full:
            res["_birthDate"] = {"extension": [{"url": BIRTH_TIME, "valueDateTime": full}]}
    sex = pid.value(8).upper()
    if sex in codes.GENDER:
        res["gender"] = codes.GENDER[sex]
    addresses = [a for a in (dt.xad(r) for r in pid.reps(11)) if a]
    if addresses:
        res["address"] = addresses
    telecom = [t for t in (dt.xtn(r, "home") for r in pid.reps(13)) if t]
    telecom += [t for t in (dt.xtn(r, "work") for r in pid.reps(14)) if t]
    if telecom:
        res["telecom"] = telecom
    language = dt.cwe(pid.first(15))
    if language:
        res["communication"] = [{"language": language}]
    marital = dt.table_concept(pid.first(16), "0002")
    if marital:
        res["maritalStatus"] = marital
    multiple = pid.value(24).upper()
    order = dt.number(pid.value(25))
    if isinstance(order, int) and order > 0:
        res["multipleBirthInteger"] = order
    elif multiple in ("Y", "N"):
        res["multipleBirthBoolean"] = multiple == "Y"
    died = dt.date_time(pid.value(29), ctx.tz, pid.where(29))
    if died:
        res["deceasedDateTime"] = died
    elif pid.value(30).upper() in ("Y", "N"):
        res["deceasedBoolean"] = pid.value(30).upper() == "Y"
    return res
