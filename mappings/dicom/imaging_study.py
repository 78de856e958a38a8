"""DICOM headers → FHIR R4 ImagingStudy, following the R4 ImagingStudy mapping table
(http://hl7.org/fhir/R4/imagingstudy-mappings.html, "DICOM" column).

``header(ds)`` reads the attributes one instance contributes (PS3.3 Patient, General Study,
General Series and SOP Common modules); ``merge(study, headers, ...)`` folds headers into an
ImagingStudy (new or stored), so a study grows instance by instance and re-sending an instance
changes nothing. Pure functions: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, tzinfo

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from mappings.dicom.values import date_time, integer, offset, text

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
STUDY_UID_SYSTEM = "urn:dicom:uid"

# Body Part Examined (0018,0015) defined terms → SNOMED CT (PS3.16 Annex L, CID 4031), the
# common ones; others keep the DICOM term as the display.
BODY_PART = {
    "ABDOMEN": ("818981001", "Abdomen"),
    "ANKLE": ("70258002", "Ankle joint"),
    "ARM": ("40983000", "Upper arm"),
    "BRAIN": ("12738006", "Brain"),
    "BREAST": ("76752008", "Breast"),
    "CHEST": ("51185008", "Thorax"),
    "CSPINE": ("122494005", "Cervical spine"),
    "ELBOW": ("16953009", "Elbow joint"),
    "EXTREMITY": ("66019005", "Limb"),
    "FOOT": ("56459004", "Foot"),
    "HAND": ("85562004", "Hand"),
    "HEAD": ("69536005", "Head"),
    "HEART": ("80891009", "Heart"),
    "HIP": ("24136001", "Hip joint"),
    "KNEE": ("72696002", "Knee"),
    "LEG": ("30021000", "Lower leg"),
    "LSPINE": ("122496007", "Lumbar spine"),
    "NECK": ("45048000", "Neck"),
    "PELVIS": ("12921003", "Pelvis"),
    "SHOULDER": ("16982005", "Shoulder"),
    "SKIN": ("39937001", "Skin"),
    "SKULL": ("89546000", "Skull"),
    "TSPINE": ("122495006", "Thoracic spine"),
    "WRIST": ("74670003", "Wrist joint"),
}
# Laterality (0020,0060) / Image Laterality (0020,0062) → SNOMED CT (R4 bodysite-laterality).
LATERALITY = {
    "L": ("7771000", "Left"),
    "R": ("24028007", "Right"),
    "B": ("51440002", "Right and left"),
}


# PS3.5 §9.1: digit components, no leading zero except "0" itself, 64 characters at most
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


def uid_warning(value: str, what: str) -> str | None:
    """Why ``value`` (which the ingest accepted) is not a valid UID; None when it is."""
    if len(value) <= 64 and _UID.match(value):
        return None
    return (
        f"{what} {value} is not a valid DICOM UID (PS3.5 §9.1: digits only, no leading zeros); "
        "kept as sent"
    )


@dataclass(frozen=True)
class Header:
    """What one instance says about its study, series and itself (tags cited per field)."""

    study_uid: str  # Study Instance UID (0020,000D)
    series_uid: str  # Series Instance UID (0020,000E)
    sop_uid: str  # SOP Instance UID (0008,0018)
    sop_class: str  # SOP Class UID (0008,0016)
    accession: str | None  # Accession Number (0008,0050)
    accession_issuer: str | None  # Issuer of Accession Number Sequence (0008,0051)
    study_started: str | None  # Study Date (0008,0020) + Study Time (0008,0030)
    study_description: str | None  # Study Description (0008,1030)
    referrer: str | None  # Referring Physician's Name (0008,0090)
    study_id: str | None  # Study ID (0020,0010)
    modality: str | None  # Modality (0008,0060)
    series_number: int | None  # Series Number (0020,0011)
    series_description: str | None  # Series Description (0008,103E)
    series_started: str | None  # Series Date (0008,0021) + Series Time (0008,0031)
    body_part: str | None  # Body Part Examined (0018,0015)
    laterality: str | None  # Laterality (0020,0060), else Image Laterality (0020,0062)
    performer: str | None  # Performing Physician's Name (0008,1050)
    instance_number: int | None  # Instance Number (0020,0013)
    title: str | None  # Content Label (0070,0080) | Document Title (0042,0010) | concept name
    # what the instance does not say as the standard asks but was accepted (UID grammar)
    warnings: tuple[str, ...] = ()


def header(ds: Dataset, local_tz: tzinfo = UTC) -> Header:
    """Read one instance's header. UIDs must be present (the caller checks their grammar)."""
    tz = offset(ds.get("TimezoneOffsetFromUTC")) or local_tz
    issuer = None
    seq = ds.get("IssuerOfAccessionNumberSequence")
    if seq:
        item = seq[0]
        issuer = text(item.get("UniversalEntityID")) or text(item.get("LocalNamespaceEntityID"))
    title = text(ds.get("ContentLabel")) or text(ds.get("DocumentTitle"))
    if title is None and ds.get("ConceptNameCodeSequence"):
        title = text(ds.ConceptNameCodeSequence[0].get("CodeMeaning"))
    performer = ds.get("PerformingPhysicianName")
    if isinstance(performer, MultiValue):
        performer = performer[0] if len(performer) else None
    return Header(
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        sop_class=str(ds.SOPClassUID),
        accession=text(ds.get("AccessionNumber")),
        accession_issuer=issuer,
        study_started=date_time(ds.get("StudyDate"), ds.get("StudyTime"), tz),
        study_description=text(ds.get("StudyDescription")),
        referrer=text(ds.get("ReferringPhysicianName")),
        study_id=text(ds.get("StudyID")),
        modality=text(ds.get("Modality")),
        series_number=integer(ds.get("SeriesNumber")),
        series_description=text(ds.get("SeriesDescription")),
        series_started=date_time(ds.get("SeriesDate"), ds.get("SeriesTime"), tz),
        body_part=text(ds.get("BodyPartExamined")),
        laterality=text(ds.get("Laterality")) or text(ds.get("ImageLaterality")),
        performer=text(performer),
        instance_number=integer(ds.get("InstanceNumber")),
        title=title,
        warnings=tuple(
            w
            for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
            if (w := uid_warning(str(ds[kw].value), kw)) is not None
        ),
    )


def study_identifier(study_uid: str) -> dict:
    """ImagingStudy.identifier for the Study Instance UID (R4: ``urn:dicom:uid`` / urn:oid)."""
    return {"system": STUDY_UID_SYSTEM, "value": f"urn:oid:{study_uid}"}


def study_search(study_uid: str) -> list[tuple[str, str]]:
    """The search that finds the ImagingStudy of ``study_uid``."""
    return [("identifier", f"{STUDY_UID_SYSTEM}|urn:oid:{study_uid}")]


def accession_identifier(h: Header) -> dict:
    ident: dict = {
        "use": "usual",
        "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
        "value": h.accession,
    }
    if h.accession_issuer:
        ident["assigner"] = {"display": h.accession_issuer}
    return ident


def _coding(system: str, code: str, display: str | None = None) -> dict:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def body_site(term: str) -> dict:
    found = BODY_PART.get(term.upper())
    return _coding(SNOMED, *found) if found else {"display": term}


def _series(h: Header, endpoint: str | None) -> dict:
    """ImagingStudy.series from the General Series module."""
    s: dict = {"uid": h.series_uid}
    if h.series_number is not None:
        s["number"] = h.series_number
    s["modality"] = _coding(DCM, h.modality or "OT")
    if h.series_description:
        s["description"] = h.series_description
    if endpoint:
        s["endpoint"] = [{"reference": endpoint}]
    if h.body_part:
        s["bodySite"] = body_site(h.body_part)
    if h.laterality and h.laterality.upper() in LATERALITY:
        s["laterality"] = _coding(SNOMED, *LATERALITY[h.laterality.upper()])
    if h.series_started:
        s["started"] = h.series_started
    if h.performer:
        s["performer"] = [{"actor": {"display": h.performer}}]
    s["instance"] = []
    return s


def _instance(h: Header) -> dict:
    """ImagingStudy.series.instance from the SOP Common / General Image modules."""
    i: dict = {
        "uid": h.sop_uid,
        "sopClass": _coding("urn:ietf:rfc:3986", f"urn:oid:{h.sop_class}"),
    }
    if h.instance_number is not None:
        i["number"] = h.instance_number
    if h.title:
        i["title"] = h.title
    return i


def merge(
    study: dict | None,
    headers: Iterable[Header],
    *,
    subject: dict,
    endpoint: str | None = None,
    based_on: list[dict] | None = None,
) -> dict:
    """Fold instance headers into ``study`` (a stored ImagingStudy, or None for a new one).

    Study-level elements are taken from the headers when the study lacks them; series and
    instances are keyed by UID, so an instance already present is replaced by its newest header;
    numberOfSeries / numberOfInstances and the modality list (0008,0061) are recomputed.
    """
    out = dict(study or {"resourceType": "ImagingStudy"})
    series = {s["uid"]: dict(s) for s in out.get("series", [])}
    headers = list(headers)
    for h in headers:
        if "identifier" not in out:
            out["identifier"] = [study_identifier(h.study_uid)]
        if h.accession and not any(
            i.get("type", {}).get("coding", [{}])[0].get("code") == "ACSN"
            for i in out["identifier"]
        ):
            out["identifier"] = [*out["identifier"], accession_identifier(h)]
        if h.study_started and "started" not in out:
            out["started"] = h.study_started
        if h.referrer and "referrer" not in out:
            out["referrer"] = {"display": h.referrer}
        if h.study_description and "description" not in out:
            out["description"] = h.study_description
        s = series.get(h.series_uid)
        if s is None:
            s = series[h.series_uid] = _series(h, endpoint)
        else:
            fresh = _series(h, endpoint)
            s = series[h.series_uid] = {**fresh, **s}
        instances = {i["uid"]: i for i in s.get("instance", [])}
        instances[h.sop_uid] = _instance(h)
        s["instance"] = sorted(
            instances.values(), key=lambda i: (i.get("number") is None, i.get("number", 0))
        )
        s["numberOfInstances"] = len(s["instance"])
    ordered = sorted(
        series.values(), key=lambda s: (s.get("number") is None, s.get("number", 0), s["uid"])
    )
    notes = [n.get("text") for n in out.get("note", [])]
    for h in headers:  # accepted but not standard (PS3.5 UIDs): said once, in the note
        for w in h.warnings:
            if w not in notes:
                notes.append(w)
                out["note"] = [*out.get("note", []), {"text": w}]
    out["status"] = "available"
    out["subject"] = subject
    if based_on:
        out["basedOn"] = based_on
    modalities: list[dict] = []
    for s in ordered:
        if s["modality"] not in modalities:
            modalities.append(s["modality"])
    out["modality"] = modalities
    if endpoint:
        out["endpoint"] = [{"reference": endpoint}]
    out["numberOfSeries"] = len(ordered)
    out["numberOfInstances"] = sum(s["numberOfInstances"] for s in ordered)
    out["series"] = ordered
    return _fhir_order(out)


_ORDER = (
    "resourceType id meta identifier status modality subject encounter started basedOn referrer "
    "interpreter endpoint numberOfSeries numberOfInstances procedureReference procedureCode "
    "location reasonCode reasonReference note description series"
).split()
_SERIES_ORDER = (
    "uid number modality description numberOfInstances endpoint bodySite laterality specimen "
    "started performer instance"
).split()


def _fhir_order(study: dict) -> dict:
    """Elements in the order of the R4 definition (what readers of the JSON expect)."""
    out = {k: study[k] for k in _ORDER if k in study}
    out.update({k: v for k, v in study.items() if k not in out})
    out["series"] = [
        {**{k: s[k] for k in _SERIES_ORDER if k in s}, **s} for s in out.get("series", [])
    ]
    return out
