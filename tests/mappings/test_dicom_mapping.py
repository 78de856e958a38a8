"""DICOM → FHIR mapping functions: value representations, ImagingStudy merge, Patient."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from mappings.dicom import imaging_study, patient
from mappings.dicom.values import date, date_time, human_name
from resources.validation import validate_resource


@given(st.dates())
def test_da_round_trip(d):
    assert date(f"{d.year:04d}{d.month:02d}{d.day:02d}") == d.isoformat()


def test_date_time_uses_the_offset_and_local_zone():
    assert date_time("20040826", "185059", UTC) == "2004-08-26T18:50:59+00:00"
    plus2 = timezone(timedelta(hours=2))
    assert date_time("20040826", "1850", plus2) == "2004-08-26T18:50:00+02:00"
    assert date_time("20040826", "185059.123", UTC) == "2004-08-26T18:50:59.123+00:00"
    assert date_time("20040826", "", UTC) == "2004-08-26"
    assert date_time("20041331", "120000", UTC) is None
    assert date_time(None, "120000", UTC) is None


def test_person_name():
    assert human_name("Doe^John^Q^Dr^Jr") == {
        "family": "Doe",
        "given": ["John", "Q"],
        "prefix": ["Dr"],
        "suffix": ["Jr"],
        "text": "John Q Doe",
    }
    assert human_name("") is None
    assert human_name("Yamada^Tarou=山田^太郎")["family"] == "Yamada"


def _ds(series="1.2.3.2", sop="1.2.3.3.1", number=1, modality="CT") -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3.1"
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = sop
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Modality = modality
    ds.InstanceNumber = str(number)
    ds.SeriesNumber = "3"
    ds.Laterality = "L"
    ds.BodyPartExamined = "KNEE"
    ds.PerformingPhysicianName = ["Smith^Ann", "Jones^Bo"]
    ds.PatientID = "P1"
    ds.IssuerOfPatientID = "HOSPITAL A"
    ds.PatientName = "Doe^Jane"
    ds.PatientSex = "F"
    ds.PatientBirthDate = "19700102"
    return ds


def test_merge_is_idempotent_and_valid():
    subject = {"reference": "Patient/p"}
    a = imaging_study.header(_ds())
    b = imaging_study.header(_ds(sop="1.2.3.3.2", number=2))
    c = imaging_study.header(_ds(series="1.2.3.9", sop="1.2.3.9.1", modality="SEG"))
    study = imaging_study.merge(None, [a, b], subject=subject, endpoint="Endpoint/e")
    assert study["numberOfSeries"] == 1 and study["numberOfInstances"] == 2
    assert imaging_study.merge(study, [a, b], subject=subject, endpoint="Endpoint/e") == study
    grown = imaging_study.merge(study, [c], subject=subject, endpoint="Endpoint/e")
    assert grown["numberOfSeries"] == 2 and grown["numberOfInstances"] == 3
    assert [m["code"] for m in grown["modality"]] == ["CT", "SEG"]
    s = grown["series"][0]
    assert s["laterality"]["code"] == "7771000"  # (0020,0060) L
    assert s["bodySite"]["code"] == "72696002"  # (0018,0015) KNEE
    assert s["performer"] == [{"actor": {"display": "Smith^Ann"}}]
    assert [i["number"] for i in s["instance"]] == [1, 2]
    assert validate_resource(grown) == []


def test_patient_identifier_and_mismatch():
    ds = _ds()
    p = patient.patient(ds)
    assert p["identifier"][0]["system"] == "urn:hearth:dicom:issuer:HOSPITAL%20A"
    assert p["identifier"][0]["assigner"] == {"display": "HOSPITAL A"}
    assert p["gender"] == "female" and p["birthDate"] == "1970-01-02"
    assert patient.mismatches(p, p) == []
    older = {**p, "birthDate": "1969-01-01", "gender": "male"}
    issues = patient.mismatches(older, p)
    assert len(issues) == 2 and "(0010,0030)" in issues[0]
    del ds.PatientID
    assert patient.identifier(ds) == {"system": patient.ANONYMOUS, "value": "1.2.3.1"}
