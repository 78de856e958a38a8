"""$upload-xray — ``POST [base]/Patient/[id]/$upload-xray``: a chest X-ray image sent by the
patient themself (or by a community health worker for their patient), checked, stored in the
patient's own record, and its chest X-ray case (``imaging-review``, docs/workflow.md) started.

Input: ``image`` (valueAttachment: ``contentType`` image/jpeg, image/png or application/dicom,
``data`` base64, at most ``MAX_BYTES``). Checked before anything is written, each refusal a 4xx
OperationOutcome: an empty, undecodable or oversized file (400 / 413), another content type (415),
a DICOM file that is not a readable Part 10 chest radiograph (400), and an image the pneumonia
model's quality gate refuses (``inference/quality.py``: e.g. a colour photo — "this looks like a
colour photo, not an X-ray", 422), with the reason the person can act on.

Where it goes:

* a JPEG/PNG becomes a ``Media`` in the patient's compartment (``subject`` the patient, modality
  DX, body site chest, the file inline as sent), the skin photo's path;
* a DICOM file goes through the DICOM ingest (the STOW-RS path: instance store, ImagingStudy)
  *bound to this patient*: its Patient module is rewritten to the patient's record and its Study,
  Series and SOP Instance UIDs are replaced by new ones (the de-identification practice of PS3.15
  Annex E for re-homed instances), so an uploaded file can never join, overwrite or be attached
  to another patient's study, whatever its header says. The original Patient ID is not kept.

Then the case starts, requested by the caller (the idempotency key of a DICOM study is the one
the ingest's study-complete trigger uses, so the study gets one case). Returns the case Task
(201), whose ``focus`` is the Media or ImagingStudy.

Who: a patient only for themself (another patient's id answers 404 exactly as an unknown one,
the Patient being read through their compartment); care staff with create access to Media (the
upload permission cadres have). The case rules (who may start one) are the engine's."""

from __future__ import annotations

import base64
import binascii
import io
from datetime import UTC, datetime

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.workflow_http import actor_of, patient_step_scopes
from resources.errors import Invalid, TooLarge, Unavailable, Unprocessable, UnsupportedMediaType
from workflow import cases
from workflow.definitions import definition

CASE_TYPE = "imaging-review"
MAX_BYTES = 20 * 1024 * 1024  # a chest radiograph is a few MB; the model reads 28×28
IMAGE_TYPES = ("image/jpeg", "image/png")
DICOM = "application/dicom"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
CHEST = {
    "coding": [{"system": "http://snomed.info/sct", "code": "51185008", "display": "Chest"}],
    "text": "Chest",
}
SCOPES = (
    "fhir_server/rest/operations/patient_upload_xray.py: a patient user only for themself "
    "(Patient read through their compartment), other users Media c"
)


def _attachment(req: FhirRequest) -> tuple[str, bytes]:
    att = req.params.complex("image", "Attachment")
    if att is None:
        raise Invalid("image (valueAttachment) is required: the X-ray file")
    kind = str(att.get("contentType") or "").split(";")[0].strip().lower()
    if kind not in (*IMAGE_TYPES, DICOM):
        raise UnsupportedMediaType(
            f"an X-ray is sent as JPEG, PNG or DICOM (application/dicom), not {kind or 'no type'}"
        )
    raw = att.get("data")
    if not isinstance(raw, str) or not raw:
        raise Invalid("the file is empty")
    if len(raw) > (MAX_BYTES * 4) // 3 + 4:
        raise TooLarge(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid("the file's data is not valid base64") from exc
    if not data:
        raise Invalid("the file is empty")
    if len(data) > MAX_BYTES:
        raise TooLarge(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    return kind, data


def _gate(image) -> None:  # type: ignore[no-untyped-def]
    """The pneumonia model's own checks, as its worker will run them (refused: 422)."""
    from inference import quality, registry
    from inference.images import BadInput

    spec = registry.MODELS["pneumonia"]
    try:
        quality.check(spec, image)
    except BadInput as exc:
        raise Unprocessable(f"this image cannot be checked as a chest X-ray: {exc}") from exc


def _photo(data: bytes) -> None:
    from inference.images import BadInput, open_photo

    try:
        image = open_photo(data)
    except BadInput as exc:
        raise Invalid(str(exc)) from exc
    _gate(image)


def _bound_dicom(data: bytes, patient: dict) -> bytes:
    """The instance re-homed to ``patient``: its Patient module from the record, new UIDs."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    from fhir_server.dicom.parse import Rejected, check
    from fhir_server.dicom.sop_classes import STORAGE_UIDS
    from inference.images import BadInput, check_chest_radiograph, dicom_image

    try:
        check(data, STORAGE_UIDS)
        ds = dcmread(io.BytesIO(data))
        check_chest_radiograph(ds)
        image = dicom_image(ds)
    except Rejected as exc:
        raise Invalid(f"not a DICOM file Hearth can store: {exc.reason}") from exc
    except BadInput as exc:
        raise Invalid(str(exc)) from exc
    except Exception as exc:  # pixel data pydicom cannot decode
        raise Invalid(f"the DICOM image cannot be decoded: {exc}") from exc
    _gate(image)
    name = (patient.get("name") or [{}])[0]
    person = "^".join(
        [str(name.get("family", "")), " ".join(str(g) for g in name.get("given", []))]
    ).rstrip("^")
    if not person.isascii():
        ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8 (PS3.3 C.12.1.1.2)
    ds.PatientName = person
    ds.PatientID = str(patient["id"])
    ds.IssuerOfPatientID = "HEARTH"
    ds.PatientBirthDate = str(patient.get("birthDate", "")).replace("-", "")
    ds.PatientSex = {"female": "F", "male": "M", "other": "O"}.get(str(patient.get("gender")), "")
    for keyword in ("OtherPatientIDsSequence", "IssuerOfPatientIDQualifiersSequence"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def run(ctx: Context, req: FhirRequest) -> Reply:
    patient_ref = f"Patient/{req.res_id}"
    ctx = patient_step_scopes(ctx, "Media", "c", (patient_ref,))
    actor = actor_of(ctx, req)
    actor.require(definition(CASE_TYPE).started_by, "sending a chest X-ray")
    kind, data = _attachment(req)
    patient = ctx.repo.read(lambda u: u.read("Patient", req.res_id or "")).resource
    if kind == DICOM:
        from fhir_server.dicom.parse import check
        from fhir_server.dicom.sop_classes import STORAGE_UIDS

        ingest = ctx.services.get("dicom-ingest")
        if ingest is None:
            raise Invalid("this server does not take DICOM files")
        bound = _bound_dicom(data, patient)
        received = ingest.accept(
            check(bound, STORAGE_UIDS), bound, association=None, subject=patient_ref
        )
        ingest.flush(60)
        study_id = ingest.study_id(received.study_uid)
        if study_id is None:
            raise Unavailable("the X-ray was stored but is not filed yet: try again in a minute")
        focus = f"ImagingStudy/{study_id}"
        key = f"{CASE_TYPE}:{focus}"  # the study-complete trigger's key: one case per study
    else:
        _photo(data)
        media = {
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": patient_ref},
            "createdDateTime": datetime.now(UTC).isoformat(timespec="seconds"),
            "modality": {
                "coding": [{"system": DCM, "code": "DX", "display": "Digital Radiography"}]
            },
            "bodySite": CHEST,
            "content": {
                "contentType": kind,
                "data": base64.b64encode(data).decode(),
                "title": "Chest X-ray",
            },
        }
        if actor.role != "patient":
            media["operator"] = {"reference": actor.reference}
        focus = ctx.repo.run(lambda u: u.create(media).stored.ref)
        key = None
    out = cases.start_case(ctx.repo, actor, CASE_TYPE, patient_ref, focus=focus, key=key)
    case = out.case
    return Reply(
        201,
        case,
        {"Location": f"{ctx.base}/Task/{case['id']}/_history/{case['meta']['versionId']}"},
    )


OPERATION = Operation(
    name="upload-xray",
    definition="http://hearth.local/fhir/OperationDefinition/Patient-upload-xray",
    levels=frozenset({"instance"}),
    types=frozenset({"Patient"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission(self_checked=True, reason=SCOPES),
)
