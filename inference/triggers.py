"""When Hearth starts an analysis by itself: an uploaded skin photo, a completed chest study.

* A ``Media`` created with an image (``content.contentType`` image/* or application/dicom) from a
  photographic modality — DICOM ``XC`` (external-camera photography) or ``DMS`` (dermoscopy) in
  ``Media.modality`` — requests a skin-lesion analysis, in the same transaction as the upload.
* An ``ImagingStudy`` announced complete (by the DICOM receiver) with a CR/DX series of the chest
  requests a pneumonia analysis.

Anything else is analysed only when asked (``$ai-analyze``).
"""

from __future__ import annotations

from inference import tasks
from inference.images import PHOTO_MODALITIES, is_chest_series
from inference.tasks import version_for
from resources.repository import Repository, Unit, WriteResult

DICOM_MODALITY = "http://dicom.nema.org/resources/ontology/DCM"
SKIN = "skin-lesion-classification"
CHEST = "chest-xray-pneumonia"


def is_skin_photo(media: dict) -> bool:
    content_type = str(media.get("content", {}).get("contentType", ""))
    modality = {
        c.get("code") for c in media.get("modality", {}).get("coding", [])
        if c.get("system") in (DICOM_MODALITY, None)
    }  # fmt: skip
    return (content_type.startswith("image/") or content_type == "application/dicom") and bool(
        modality & PHOTO_MODALITIES
    )


def is_chest_radiograph_study(study: dict) -> bool:
    return any(is_chest_series(series) for series in study.get("series", []))


def on_write(u: Unit, result: WriteResult) -> None:
    """Repository write hook: a new skin photo gets its analysis Task."""
    stored = result.stored
    if result.status != "created" or stored.res_type != "Media" or stored.content is None:
        return
    if is_skin_photo(stored.content):
        subject = stored.content.get("subject", {}).get("reference")
        tasks.request(u, SKIN, stored.ref, subject, version_for(SKIN))


def on_study_complete(repo: Repository, study_id: str) -> str | None:
    """DICOM study-complete subscriber: a chest CR/DX study gets its analysis Task.
    Returns the Task reference, or None when the study is not one Hearth analyses."""

    def run(u: Unit) -> str | None:
        study = u.read("ImagingStudy", study_id).content
        if study is None or not is_chest_radiograph_study(study):
            return None
        subject = study.get("subject", {}).get("reference")
        based_on = [r["reference"] for r in study.get("basedOn", []) if "reference" in r]
        result = tasks.request(
            u, CHEST, f"ImagingStudy/{study_id}", subject, version_for(CHEST), based_on=based_on
        )
        return result.stored.ref

    return repo.run(run)
