"""FHIR → ORU^R01 (mappings/hl7v2/outbound.py, hl7apy v2.5.1 structures): what a hospital's
receiver reads back is what the report says, escapes included; an AI Observation names its
model (OBX-18); the signed PDF travels as an ED OBX."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.hl7v2 import parse
from mappings.hl7v2.outbound import adt, dtm, oru_r01, siu

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN1"}],
    "name": [{"family": "Doe", "given": ["Jane"]}],
    "birthDate": "1970-02-15",
    "gender": "female",
}
PDF = base64.b64encode(b"%PDF-1.7 signed").decode()


def _report(**extra: object) -> dict:
    return {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "36643-5", "display": "XR"}]},
        "effectiveDateTime": "2024-01-02T03:04:05+01:00",
        **extra,
    }


def test_report_observations_conclusion_and_pdf() -> None:
    ai = {
        "resourceType": "Observation",
        "status": "preliminary",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "233604007"}]},
        "valueQuantity": {"value": 0.93, "unit": "probability"},
        "device": {"display": "pneumonia-densenet 1.2"},
    }
    report = _report(
        conclusion="No focal consolidation | see AI",
        presentedForm=[{"contentType": "application/pdf", "data": PDF, "title": "Signed report"}],
    )
    text = oru_r01(report, PATIENT, [ai], control_id="C1", now=datetime(2024, 1, 3, tzinfo=UTC))
    msg = parse(text)
    assert msg.message_type == ("ORU", "R01", "ORU_R01") and msg.control_id == "C1"
    assert msg.one("PID").value(3) == "MRN1" and msg.one("PID").value(3, 4, 2) == "1.2.3"
    assert msg.one("PID").value(7) == "19700215" and msg.one("PID").value(8) == "F"
    obr = msg.one("OBR")
    assert obr.value(4) == "36643-5" and obr.value(7) == "20240102030405+0100"
    assert obr.value(25) == "F"
    assert msg.one("NTE").value(3) == "No focal consolidation | see AI"
    first, pdf = msg.all("OBX")
    assert first.value(2) == "NM" and first.value(5) == "0.93" and first.value(11) == "P"
    assert first.value(18) == "pneumonia-densenet 1.2"
    assert pdf.value(2) == "ED" and pdf.value(5, 2) == "APPLICATION" and pdf.value(5, 3) == "PDF"
    assert base64.b64decode(pdf.value(5, 5)) == b"%PDF-1.7 signed"


def test_dates_keep_precision() -> None:
    assert dtm("2024") == "2024"
    assert dtm("2024-01-02") == "20240102"
    assert dtm("2024-01-02T03:04:05.123Z") == "20240102030405+0000"
    assert dtm("2024-01-02T03:04:05-05:00") == "20240102030405-0500"


@settings(deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_any_conclusion_round_trips(text: str) -> None:
    """Every separator and escape character survives (the reader trims the message's last
    blanks: compared stripped)."""
    report = _report(conclusion=text)
    msg = parse(oru_r01(report, PATIENT, [], control_id="C", now=datetime(2024, 1, 1, tzinfo=UTC)))
    nte = msg.one("NTE")
    got = nte.first(3).text() if nte is not None and nte.first(3) is not None else ""
    assert got.strip() == text.replace("\r", " ").replace("\n", " ").strip()


def test_a_patient_without_a_name_gets_the_explicit_null() -> None:
    """PID-5 is required in v2.5.1 (hl7apy validates it): an unnamed patient is sent as ""."""
    report = _report()
    text = oru_r01(report, {"id": "p9"}, [], control_id="C", now=datetime(2024, 1, 1, tzinfo=UTC))
    pid = parse(text).one("PID")
    assert pid.raw(5) == '""' and pid.value(3) == "p9"


def test_adt_and_siu() -> None:
    now = datetime(2024, 1, 3, tzinfo=UTC)
    a04 = parse(adt("A04", PATIENT, control_id="C2", now=now))
    assert a04.message_type == ("ADT", "A04", "ADT_A01") and a04.one("EVN").value(1) == "A04"
    assert a04.one("PID").value(3) == "MRN1" and a04.one("PV1").value(2) == "N"
    appointment = {
        "resourceType": "Appointment",
        "id": "ap1",
        "status": "cancelled",
        "minutesDuration": 30,
        "start": "2024-02-01T09:00:00+01:00",
        "end": "2024-02-01T09:30:00+01:00",
        "participant": [
            {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/d1", "display": "Dr A^B"}, "status": "accepted"},
            {"actor": {"reference": "Location/l1", "display": "Room 2"}, "status": "accepted"},
        ],
    }
    s15 = parse(siu("S15", appointment, PATIENT, control_id="C3", now=now))
    assert s15.message_type == ("SIU", "S15", "SIU_S12")
    sch = s15.one("SCH")
    assert sch.value(2) == "ap1" and sch.value(25) == "Cancelled" and sch.value(9) == "30"
    assert sch.value(11, 4) == "20240201090000+0100"
    assert s15.one("AIP").value(3) == "d1" and s15.one("AIP").value(3, 2) == "Dr A^B"
    assert s15.one("AIL").value(3) == "Room 2"
