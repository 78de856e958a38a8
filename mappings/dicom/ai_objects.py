"""An AI result as DICOM objects a PACS shows beside the study it came from: a Comprehensive SR
(the finding, each class probability, the model and its version, the uncertainty flag and the
decision-support disclaimer) and a Secondary Capture of the explanation heatmap — each in a new
series of the source study (same Study Instance UID, patient and study attributes copied from a
source instance). Pure functions: FHIR dicts and a source header in, pydicom Datasets out.

UIDs are derived from the Observation (``generate_uid`` with entropy sources, the ``2.25``
form), so building the objects again gives the same UIDs: a re-sent object replaces its earlier
copy in Hearth and in a PACS instead of adding another. The SR's SOP Instance UID also follows
the Observation's version — verified content is a new SR instance (DICOM: changed SR content is
a new instance), in the same series; the heatmap's follows the id only (it does not change).

The SR follows the Comprehensive SR IOD (PS3.3 A.35.3) and its content is TID 1500 Measurement
Report (PS3.16): Language (TID 1204), Observation Context with the model as Device observer
(TID 1001/1004), Procedure reported, Image Library (TID 1600) with the analysed image, and
Imaging Measurements holding one TID 1501 Measurement and Qualitative Evaluation Group (the
whole image: Tracking Identifier / UID, Finding (DCM 121071) as the coded classification,
Algorithm Name / Version (TID 4019), one NUM per class probability, UCUM "1"); the uncertainty
and the decision-support disclaimer are Comment TEXT items under Qualitative Evaluations (UMLS
C0034375). Completion PARTIAL, Verification UNVERIFIED (the Observation is preliminary;
VERIFIED once final, with its verifying observer). The evidence is the analysed instance
(Current Requested Procedure Evidence Sequence).
"""

from __future__ import annotations

import io
from datetime import datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SCHEMES = {
    "http://snomed.info/sct": "SCT",
    "http://loinc.org": "LN",
    "http://unitsofmeasure.org": "UCUM",
    "http://dicom.nema.org/resources/ontology/DCM": "DCM",
}
LOCAL_SCHEME = "99HEARTH"  # PS3.16 8.2: private coding schemes start with 99
PATIENT_STUDY = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
    "StudyID", "StudyDescription",
)  # fmt: skip
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "AccessionNumber", "ReferringPhysicianName", "StudyID")  # fmt: skip
SR_SERIES, SC_SERIES = 9901, 9902  # series numbers of the AI series (high: after the modality's)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value[:16]
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning[:64]
    return item


def _coded(concept: dict) -> Dataset:
    """A FHIR CodeableConcept as a DICOM code item: a known scheme's coding first."""
    codings = concept.get("coding", [])
    known = [c for c in codings if c.get("system") in SCHEMES and c.get("code")]
    c = (known or codings or [{}])[0]
    scheme = SCHEMES.get(c.get("system", ""), LOCAL_SCHEME)
    meaning = c.get("display") or concept.get("text") or c.get("code") or "unknown"
    return _code(str(c.get("code") or meaning), scheme, str(meaning))


def _uid(*parts: str) -> str:
    return str(generate_uid(prefix=None, entropy_srcs=list(parts)))


def _dicom_dt(when: datetime) -> tuple[str, str]:
    return when.strftime("%Y%m%d"), when.strftime("%H%M%S")


def _common(source: Dataset, sop_class: str, series_uid: str, sop_uid: str, modality: str,
            series_number: int, description: str, model: dict, when: datetime) -> Dataset:  # fmt: skip
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword in PATIENT_STUDY:
        if keyword in source:
            setattr(ds, keyword, source[keyword].value)
        elif keyword in TYPE2:
            setattr(ds, keyword, "")
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description[:64]
    ds.Manufacturer = "Hearth"
    ds.ManufacturerModelName = str(model.get("name", "AI model"))[:64]
    ds.SoftwareVersions = str(model.get("version", ""))[:64]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = 1
    ds.InstanceCreationDate, ds.InstanceCreationTime = _dicom_dt(when)
    ds.ContentDate, ds.ContentTime = _dicom_dt(when)
    return ds


def _evidence(source: Dataset) -> Sequence:
    instance = Dataset()
    instance.ReferencedSOPClassUID = source.SOPClassUID
    instance.ReferencedSOPInstanceUID = source.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = source.SeriesInstanceUID
    series.ReferencedSOPSequence = Sequence([instance])
    study = Dataset()
    study.StudyInstanceUID = source.StudyInstanceUID
    study.ReferencedSeriesSequence = Sequence([series])
    return Sequence([study])


def _item(relationship: str, value_type: str, name: Dataset) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = Sequence([name])
    return item


def _text(name: Dataset, text: str, relationship: str = "CONTAINS") -> Dataset:
    item = _item(relationship, "TEXT", name)
    item.TextValue = text[:10240]
    return item


def _uidref(name: Dataset, uid: str) -> Dataset:
    item = _item("HAS OBS CONTEXT", "UIDREF", name)
    item.UID = uid
    return item


def _coded_item(relationship: str, name: Dataset, value: Dataset) -> Dataset:
    item = _item(relationship, "CODE", name)
    item.ConceptCodeSequence = Sequence([value])
    return item


def _template(identifier: str) -> Dataset:
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = identifier
    return template


def _container(relationship: str, name: Dataset, content: list[Dataset]) -> Dataset:
    item = _item(relationship, "CONTAINER", name)
    item.ContinuityOfContent = "SEPARATE"
    item.ContentSequence = Sequence(content)
    return item


# UCUM units of the numeric components an AI result carries: probabilities and lesion areas.
_UNITS = {"1": "no units", "{pixels}": "pixels", "mm2": "square millimeter"}


def _probability(concept: dict, value: float, unit: str = "1") -> Dataset:
    item = _item("CONTAINS", "NUM", _coded(concept))
    measured = Dataset()
    measured.NumericValue = f"{value:.4f}" if unit == "1" else f"{value:.6g}"
    measured.MeasurementUnitsCodeSequence = Sequence([_code(unit, "UCUM", _UNITS[unit])])
    item.MeasuredValueSequence = Sequence([measured])
    return item


def structured_report(
    source: Dataset, observation: dict, model: dict, when: datetime, *, disclaimer: str
) -> Dataset:
    """The Comprehensive SR of ``observation`` (an AI classification) about the instance whose
    header is ``source``; ``model`` names the Device (``name``, ``version``)."""
    key = f"{observation.get('id')}|{observation.get('meta', {}).get('versionId', '1')}"
    ds = _common(
        source, COMPREHENSIVE_SR, _uid("hearth-ai-sr-series", str(observation.get("id"))),
        _uid("hearth-ai-sr", key), "SR", SR_SERIES, "AI result (decision support)", model, when,
    )  # fmt: skip
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("126000", "DCM", "Imaging Measurement Report")])
    ds.ContentTemplateSequence = Sequence([_template("1500")])
    ds.ContinuityOfContent = "SEPARATE"
    final = observation.get("status") in ("final", "amended", "corrected")
    ds.CompletionFlag = "COMPLETE" if final else "PARTIAL"
    ds.VerificationFlag = "VERIFIED" if final else "UNVERIFIED"
    if final:  # verified by the Observation's performer (the reviewing physician)
        performer = (observation.get("performer") or [{}])[0]
        observer = Dataset()
        observer.VerifyingObserverName = str(
            performer.get("display") or performer.get("reference") or "unknown"
        )[:64]
        observer.VerifyingOrganization = str(source.get("InstitutionName", "") or "unknown")
        observer.VerificationDateTime = when.strftime("%Y%m%d%H%M%S")
        observer.VerifyingObserverIdentificationCodeSequence = Sequence()
        ds.VerifyingObserverSequence = Sequence([observer])
    ds.CurrentRequestedProcedureEvidenceSequence = _evidence(source)
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    name, version = str(model.get("name", "")), str(model.get("version", ""))
    image = _item("CONTAINS", "IMAGE", _code("260753009", "SCT", "Source"))
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    image.ReferencedSOPSequence = Sequence([ref])
    library_group = _container("CONTAINS", _code("126200", "DCM", "Image Library Group"), [image])
    group = [  # TID 1501 Measurement and Qualitative Evaluation Group (the whole image)
        _text(_code("112039", "DCM", "Tracking Identifier"), "AI classification", "HAS OBS CONTEXT"),
        _uidref(_code("112040", "DCM", "Tracking Unique Identifier"),
                _uid("hearth-ai-tracking", str(observation.get("id")))),
        _coded_item("CONTAINS", _code("121071", "DCM", "Finding"),
                    _coded(observation.get("valueCodeableConcept") or {"text": "no finding"})),
        _text(_code("111001", "DCM", "Algorithm Name"), name, "HAS CONCEPT MOD"),
        _text(_code("111003", "DCM", "Algorithm Version"), version, "HAS CONCEPT MOD"),
    ]  # fmt: skip
    for component in observation.get("component", []):
        quantity = component.get("valueQuantity") or {}
        unit = str(quantity.get("code", "1"))
        if isinstance(quantity.get("value"), int | float) and unit in _UNITS:
            group.append(_probability(component.get("code", {}), float(quantity["value"]), unit))
    interpretations = [
        c.get("code") for i in observation.get("interpretation", []) for c in i.get("coding", [])
    ]
    evaluations = []
    if "IND" in interpretations:
        evaluations.append(
            _text(_code("121106", "DCM", "Comment"), "Uncertain: below the model's confidence "
                  "threshold; needs a physician's review.")
        )  # fmt: skip
    evaluations.append(_text(_code("121106", "DCM", "Comment"), disclaimer))
    measurement_group = _container("CONTAINS", _code("125007", "DCM", "Measurement Group"), group)
    measurement_group.ContentTemplateSequence = Sequence([_template("1501")])
    content = [
        # TID 1204 Language of Content Item and Descendants
        _coded_item("HAS CONCEPT MOD",
                    _code("121049", "DCM", "Language of Content Item and Descendants"),
                    _code("en-US", "RFC5646", "English (United States)")),
        # TID 1001 Observation Context: the observer is a device, the model (TID 1004)
        _coded_item("HAS OBS CONTEXT", _code("121005", "DCM", "Observer Type"),
                    _code("121007", "DCM", "Device")),
        _uidref(_code("121012", "DCM", "Device Observer UID"),
                _uid("hearth-ai-device", name, version)),
        _text(_code("121013", "DCM", "Device Observer Name"), name or "AI model",
              "HAS OBS CONTEXT"),
        _text(_code("121015", "DCM", "Device Observer Model Name"), name or "AI model",
              "HAS OBS CONTEXT"),
        _coded_item("HAS CONCEPT MOD", _code("121058", "DCM", "Procedure reported"),
                    _code("363679005", "SCT", "Imaging procedure")),
        # TID 1600 Image Library: the analysed image
        _container("CONTAINS", _code("111028", "DCM", "Image Library"), [library_group]),
        _container("CONTAINS", _code("126010", "DCM", "Imaging Measurements"),
                   [measurement_group]),
        _container("CONTAINS", _code("C0034375", "UMLS", "Qualitative Evaluations"),
                   evaluations),
    ]  # fmt: skip
    ds.ContentSequence = Sequence(content)
    return ds


def secondary_capture(
    source: Dataset, observation: dict, model: dict, png: bytes, when: datetime, *,
    disclaimer: str,
) -> Dataset:  # fmt: skip
    """The explanation heatmap (a PNG overlay) as a Secondary Capture image (RGB, 8 bits) in a
    series of its own in the source study."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    ds = _common(
        source, SECONDARY_CAPTURE, _uid("hearth-ai-sc-series", str(observation.get("id"))),
        _uid("hearth-ai-sc", str(observation.get("id"))), "OT", SC_SERIES, "AI explanation heatmap (decision support)",
        model, when,
    )  # fmt: skip
    ds.ConversionType = "WSD"  # workstation: made by software
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.DerivationDescription = "Grad-CAM heatmap of the AI classification, over the analysed image"
    ds.ImageComments = disclaimer[:10240]
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    ds.SourceImageSequence = Sequence([ref])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = image.height, image.width
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = image.tobytes()
    return ds


def part10(ds: Dataset) -> bytes:
    """``ds`` as a DICOM Part 10 file (preamble, file meta, Explicit VR Little Endian)."""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
