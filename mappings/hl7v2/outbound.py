"""FHIR → HL7 v2.5.1 outbound messages, built with hl7apy's message structures for v2.5.1 (its
groups and segments; ``validate()`` checks the result against them before it is sent):

- ``oru_r01``: a DiagnosticReport with its Patient and result Observations → ORU^R01 (HL7
  v2.5.1 ch. 7, after the V2-to-FHIR IG maps read backwards: Patient → PID, DiagnosticReport →
  OBR, each Observation → OBX, ``conclusion`` → an NTE after the OBR, a ``presentedForm`` → an ED
  OBX (the signed PDF, base64); an AI Observation's ``device`` → OBX-18 equipment).

Values are escaped for ER7 (HL7 v2.5.1 2.7) before hl7apy places them. Pure functions: no I/O.
"""

from __future__ import annotations

from datetime import datetime

from hl7apy.core import Message

from mappings.hl7v2.ack import escape

REPORT_STATUS = {  # diagnostic-report-status → table 0123
    "final": "F",
    "amended": "C",
    "corrected": "C",
    "appended": "C",
    "preliminary": "P",
    "partial": "A",
    "registered": "I",
    "cancelled": "X",
}
OBSERVATION_STATUS = {  # observation-status → table 0085
    "final": "F",
    "amended": "C",
    "corrected": "C",
    "preliminary": "P",
    "registered": "I",
    "cancelled": "X",
    "entered-in-error": "W",
}
SYSTEM_NAMES = {
    "http://loinc.org": "LN",
    "http://snomed.info/sct": "SCT",
    "http://unitsofmeasure.org": "UCUM",
    "http://hl7.org/fhir/sid/icd-10": "I10",
}
GENDER = {"female": "F", "male": "M", "other": "O", "unknown": "U"}


def dtm(value: str | None) -> str:
    """A FHIR date/dateTime/instant as an HL7 DTM (precision and offset kept)."""
    if not value:
        return ""
    day, _, rest = value.partition("T")
    out = day.replace("-", "")
    if not rest:
        return out
    zone = ""
    for i, ch in enumerate(rest):
        if ch in "+-Z":
            zone = rest[i:]
            rest = rest[:i]
            break
    clock = rest.split(".")[0].replace(":", "")
    if zone == "Z":
        zone = "+0000"
    return out + clock + zone.replace(":", "")


def _cwe(concept: dict | None) -> str:
    if not concept:
        return ""
    coding = next((c for c in concept.get("coding", []) if c.get("code")), None)
    if coding is None:
        return "^" + escape(concept.get("text", ""))
    system = coding.get("system", "")
    name = SYSTEM_NAMES.get(system, "")
    if not name and system.startswith("http://terminology.hl7.org/CodeSystem/v2-"):
        name = "HL7" + system.rsplit("-", 1)[1]
    parts = [coding["code"], coding.get("display") or concept.get("text", ""), name]
    return "^".join(escape(p) for p in parts).rstrip("^")


def _identifier(ident: dict) -> str:
    system = ident.get("system", "")
    authority = ""
    if system.startswith("urn:oid:"):
        authority = f"&{system[8:]}&ISO"
    elif system:
        authority = "&" + escape(system).replace("&", "") + "&URI"
    code = ident.get("type", {}).get("coding", [{}])[0].get("code", "")
    return "^".join([escape(ident.get("value", "")), "", "", authority, escape(code)]).rstrip("^")


def _value(obs: dict) -> tuple[str, str, str]:
    """(OBX-2, OBX-5, OBX-6) of an Observation's value."""
    if "valueQuantity" in obs:
        q = obs["valueQuantity"]
        value = str(q.get("value", ""))
        if q.get("comparator"):
            return "SN", f"{escape(q['comparator'])}^{value}", _unit(q)
        return "NM", value, _unit(q)
    if "valueCodeableConcept" in obs:
        return "CWE", _cwe(obs["valueCodeableConcept"]), ""
    if "valueString" in obs:
        return "ST", escape(obs["valueString"]), ""
    if "valueBoolean" in obs:
        return "ST", "true" if obs["valueBoolean"] else "false", ""
    if "valueDateTime" in obs:
        return "DTM", dtm(obs["valueDateTime"]), ""
    if "valueInteger" in obs:
        return "NM", str(obs["valueInteger"]), ""
    return "ST", "", ""


def _unit(q: dict) -> str:
    code = q.get("code") or q.get("unit") or ""
    if not code:
        return ""
    system = "UCUM" if q.get("system") == "http://unitsofmeasure.org" else ""
    return "^".join([escape(code), escape(q.get("unit", "")), system]).rstrip("^")


def oru_r01(
    report: dict,
    patient: dict,
    observations: list[dict],
    *,
    control_id: str,
    now: datetime,
    receiving: tuple[str, str] = ("", ""),
    processing_id: str = "P",
) -> str:
    """The ORU^R01 (segments joined by ``\\r``) of a DiagnosticReport."""
    m = Message("ORU_R01", version="2.5.1")
    m.msh.msh_3 = "HEARTH"
    m.msh.msh_4 = "HEARTH"
    m.msh.msh_5 = escape(receiving[0])
    m.msh.msh_6 = escape(receiving[1])
    m.msh.msh_7 = now.strftime("%Y%m%d%H%M%S%z")
    m.msh.msh_9 = "ORU^R01^ORU_R01"
    m.msh.msh_10 = escape(control_id)
    m.msh.msh_11 = processing_id
    m.msh.msh_12 = "2.5.1"
    result = m.add_group("ORU_R01_PATIENT_RESULT")
    pid = result.add_group("ORU_R01_PATIENT").pid
    pid.pid_1 = "1"
    idents = [_identifier(i) for i in patient.get("identifier", []) if i.get("value")]
    pid.pid_3 = "~".join(idents) or escape(patient.get("id", ""))
    names = []
    for n in patient.get("name", []):
        given = n.get("given", [])
        names.append(
            "^".join(escape(p) for p in (n.get("family", ""), *(given[:2] or [""]))).rstrip("^")
        )
    # PID-5 is required in v2.5.1: a patient without a name gets the explicit null ""
    pid.pid_5 = "~".join(names) if names else '""'
    if patient.get("birthDate"):
        pid.pid_7 = dtm(patient["birthDate"])
    if patient.get("gender") in GENDER:
        pid.pid_8 = GENDER[patient["gender"]]
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    obr = order.obr
    obr.obr_1 = "1"
    for ident in report.get("identifier", []):
        kind = ident.get("type", {}).get("coding", [{}])[0].get("code")
        if kind == "PLAC":
            obr.obr_2 = escape(ident["value"])
        else:
            obr.obr_3 = escape(ident["value"])
    if not report.get("identifier"):
        obr.obr_3 = escape(report.get("id", "")) + "^HEARTH"
    obr.obr_4 = _cwe(report.get("code"))
    effective = report.get("effectiveDateTime") or report.get("effectivePeriod", {}).get("start")
    if effective:
        obr.obr_7 = dtm(effective)
    if report.get("issued"):
        obr.obr_22 = dtm(report["issued"])
    obr.obr_25 = REPORT_STATUS.get(report.get("status", ""), "F")
    if report.get("conclusion"):
        nte = order.add_segment("NTE")
        nte.nte_1 = "1"
        nte.nte_3 = escape(report["conclusion"])
    n = 0
    for obs in observations:
        n += 1
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        kind, value, unit = _value(obs)
        obx.obx_1 = str(n)
        obx.obx_2 = kind
        obx.obx_3 = _cwe(obs.get("code"))
        if value:
            obx.obx_5 = value
        if unit:
            obx.obx_6 = unit
        interp = obs.get("interpretation", [])
        if interp:
            obx.obx_8 = _cwe(interp[0]).split("^")[0]
        obx.obx_11 = OBSERVATION_STATUS.get(obs.get("status", ""), "F")
        when = obs.get("effectiveDateTime")
        if when:
            obx.obx_14 = dtm(when)
        device = obs.get("device", {})
        if device.get("display") or device.get("reference"):
            obx.obx_18 = escape(device.get("display") or device["reference"])
    for form in report.get("presentedForm", []):
        if not form.get("data"):
            continue
        n += 1
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1 = str(n)
        obx.obx_2 = "ED"
        obx.obx_3 = "^" + escape(form.get("title") or "Report")
        mime = form.get("contentType", "application/pdf").split(";")[0]
        major, _, minor = mime.partition("/")
        obx.obx_5 = f"HEARTH^{escape(major.upper())}^{escape(minor.upper())}^Base64^{form['data']}"
        obx.obx_11 = REPORT_STATUS.get(report.get("status", ""), "F")
    m.validate()
    return str(m.to_er7()) + "\r"


# Appointment.status → table 0278 filler status (SCH-25)
FILLER_STATUS = {
    "proposed": "Pending",
    "pending": "Pending",
    "booked": "Booked",
    "arrived": "Started",
    "fulfilled": "Complete",
    "cancelled": "Cancelled",
    "noshow": "Noshow",
    "entered-in-error": "Deleted",
    "checked-in": "Started",
    "waitlist": "Waitlist",
}


def _header(
    m: Message, kind: str, control_id: str, now: datetime, receiving: tuple[str, str]
) -> None:
    m.msh.msh_3 = "HEARTH"
    m.msh.msh_4 = "HEARTH"
    m.msh.msh_5 = escape(receiving[0])
    m.msh.msh_6 = escape(receiving[1])
    m.msh.msh_7 = now.strftime("%Y%m%d%H%M%S%z")
    m.msh.msh_9 = kind
    m.msh.msh_10 = escape(control_id)
    m.msh.msh_11 = "P"
    m.msh.msh_12 = "2.5.1"


def _pid(pid, patient: dict) -> None:  # type: ignore[no-untyped-def]
    pid.pid_1 = "1"
    idents = [_identifier(i) for i in patient.get("identifier", []) if i.get("value")]
    pid.pid_3 = "~".join(idents) or escape(patient.get("id", ""))
    names = []
    for n in patient.get("name", []):
        given = n.get("given", [])
        parts = (n.get("family", ""), *(given[:2] or [""]))
        names.append("^".join(escape(p) for p in parts).rstrip("^"))
    pid.pid_5 = "~".join(names) if names else '""'
    if patient.get("birthDate"):
        pid.pid_7 = dtm(patient["birthDate"])
    if patient.get("gender") in GENDER:
        pid.pid_8 = GENDER[patient["gender"]]
    addresses = []
    for a in patient.get("address", []):
        lines = a.get("line", [])
        fields = [
            lines[0] if lines else "",
            lines[1] if len(lines) > 1 else "",
            a.get("city", ""),
            a.get("state", ""),
            a.get("postalCode", ""),
            a.get("country", ""),
        ]
        addresses.append("^".join(escape(f) for f in fields).rstrip("^"))
    if any(addresses):
        pid.pid_11 = "~".join(a for a in addresses if a)
    phones = [escape(t["value"]) for t in patient.get("telecom", []) if t.get("value")]
    if phones:
        pid.pid_13 = "~".join(phones)


def adt(
    event: str,
    patient: dict,
    *,
    control_id: str,
    now: datetime,
    receiving: tuple[str, str] = ("", ""),
) -> str:
    """ADT^A04 (a patient registered in Hearth) or ADT^A08 (changed), structure ADT_A01:
    EVN, PID, and a PV1 with class N (no visit: the patient record alone)."""
    m = Message("ADT_A01", version="2.5.1")
    _header(m, f"ADT^{event}^ADT_A01", control_id, now, receiving)
    m.evn.evn_1 = event
    m.evn.evn_2 = now.strftime("%Y%m%d%H%M%S%z")
    _pid(m.pid, patient)
    m.pv1.pv1_1 = "1"
    m.pv1.pv1_2 = "N"
    m.validate()
    return str(m.to_er7()) + "\r"


def siu(
    event: str,
    appointment: dict,
    patient: dict | None,
    *,
    control_id: str,
    now: datetime,
    receiving: tuple[str, str] = ("", ""),
) -> str:
    """SIU^S12 (booked), S14 (changed) or S15 (cancelled), structure SIU_S12: SCH (placer and
    filler ids, reason, start/end, duration, filler status), the patient's PID, and one RGS
    with an AIP/AIL per practitioner/location participant (by display)."""
    m = Message("SIU_S12", version="2.5.1")
    _header(m, f"SIU^{event}^SIU_S12", control_id, now, receiving)
    sch = m.sch
    own = next((i for i in appointment.get("identifier", []) if i.get("value")), None)
    sch.sch_1 = escape(own["value"]) if own else escape(appointment.get("id", ""))
    sch.sch_2 = escape(appointment.get("id", "")) + "^HEARTH"
    reason = (appointment.get("reasonCode") or [None])[0]
    sch.sch_6 = _cwe(reason) or "^" + escape(appointment.get("status", ""))
    kind = appointment.get("appointmentType")
    if kind:
        sch.sch_8 = _cwe(kind)
    if appointment.get("minutesDuration"):
        sch.sch_9 = str(appointment["minutesDuration"])
        sch.sch_10 = "min^minutes^UCUM"
    start, end = dtm(appointment.get("start")), dtm(appointment.get("end"))
    sch.sch_11 = f"^^^{start}^{end}".rstrip("^") if start else "^^^"
    sch.sch_16 = "HEARTH"
    sch.sch_20 = "HEARTH"
    sch.sch_25 = FILLER_STATUS.get(appointment.get("status", ""), "Pending")
    if patient is not None:
        _pid(m.add_group("SIU_S12_PATIENT").pid, patient)
    resources = m.add_group("SIU_S12_RESOURCES")
    resources.rgs.rgs_1 = "1"
    n = 0
    for p in appointment.get("participant", []):
        actor = p.get("actor", {})
        ref = actor.get("reference", "")
        name = escape(actor.get("display", "") or ref)
        if ref.startswith("Practitioner/"):
            n += 1
            aip = resources.add_group("SIU_S12_PERSONNEL_RESOURCE").aip
            aip.aip_1 = str(n)
            aip.aip_3 = f"{escape(ref.split('/')[1])}^{name}"
            if start:
                aip.aip_6 = start
        elif ref.startswith("Location/"):
            n += 1
            ail = resources.add_group("SIU_S12_LOCATION_RESOURCE").ail
            ail.ail_1 = str(n)
            ail.ail_3 = name
            if start:
                ail.ail_6 = start
    m.validate()
    return str(m.to_er7()) + "\r"
