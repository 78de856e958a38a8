"""DICOM Patient module (PS3.3 C.7.1.1) → FHIR R4 Patient, matched by Patient ID (0010,0020)
with Issuer of Patient ID (0010,0021) as the identifier's namespace.

A stored Patient is never overwritten from a header: ``mismatches`` lists where they disagree so
the caller can report it. Pure functions: no I/O.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydicom.dataset import Dataset

from mappings.dicom.values import date, gender, human_name, text

# Namespaces used when the header gives no usable issuer (documented in docs/dicom.md).
LOCAL_PATIENT_ID = "urn:hearth:dicom:patient-id"
ANONYMOUS = "urn:hearth:dicom:no-patient-id"
ISSUER_PREFIX = "urn:hearth:dicom:issuer:"


def identifier(ds: Dataset) -> dict:
    """Patient.identifier from Patient ID (0010,0020) and its issuer: Issuer of Patient ID
    Qualifiers (0010,0024) Universal Entity ID when it is an ISO OID, else Issuer of Patient ID
    (0010,0021), else Hearth's local namespace. A header with no Patient ID gets an identifier
    in ``ANONYMOUS`` keyed by its Study Instance UID (0020,000D): one Patient per such study."""
    pid = text(ds.get("PatientID"))
    if pid is None:
        return {"system": ANONYMOUS, "value": str(ds.StudyInstanceUID)}
    system = None
    qualifiers = ds.get("IssuerOfPatientIDQualifiersSequence")
    if qualifiers:
        q = qualifiers[0]
        uei, kind = text(q.get("UniversalEntityID")), text(q.get("UniversalEntityIDType"))
        if uei and kind == "ISO":
            system = f"urn:oid:{uei}"
        elif uei and ":" in uei:
            system = uei
    issuer = text(ds.get("IssuerOfPatientID"))
    if system is None and issuer:
        system = ISSUER_PREFIX + quote(issuer, safe="")
    ident: dict[str, Any] = {"use": "usual", "system": system or LOCAL_PATIENT_ID, "value": pid}
    if issuer:
        ident["assigner"] = {"display": issuer}
    return ident


def search(ident: dict) -> list[tuple[str, str]]:
    """The search that finds the Patient with this identifier."""
    return [("identifier", f"{ident['system']}|{ident['value']}")]


def patient(ds: Dataset) -> dict:
    """A new Patient: identifier, name (0010,0010), birthDate (0010,0030), gender (0010,0040)."""
    out: dict = {"resourceType": "Patient", "identifier": [identifier(ds)]}
    name = human_name(ds.get("PatientName"))
    if name:
        out["name"] = [name]
    sex = gender(ds.get("PatientSex"))
    if sex:
        out["gender"] = sex
    born = date(ds.get("PatientBirthDate"))
    if born:
        out["birthDate"] = born
    return out


def mismatches(stored: dict, fresh: dict) -> list[str]:
    """Where the Patient a header describes (``patient(ds)``) disagrees with the stored one
    (absent values on either side are not a disagreement)."""
    out = []
    if fresh.get("birthDate") and stored.get("birthDate") not in (None, fresh["birthDate"]):
        out.append(
            f"birth date: stored {stored['birthDate']}, DICOM (0010,0030) {fresh['birthDate']}"
        )
    if fresh.get("gender") and stored.get("gender") not in (None, fresh["gender"]):
        out.append(f"sex: stored {stored['gender']}, DICOM (0010,0040) {fresh['gender']}")
    if fresh.get("name") and stored.get("name"):
        new = fresh["name"][0]
        if not any(
            (n.get("family") or "").upper() == (new.get("family") or "").upper()
            and [g.upper() for g in n.get("given", [])][:1]
            == [g.upper() for g in new.get("given", [])][:1]
            for n in stored["name"]
        ):
            out.append(
                f"name: stored {stored['name'][0].get('text') or stored['name'][0]}, "
                f"DICOM (0010,0010) {new.get('text')}"
            )
    return out
