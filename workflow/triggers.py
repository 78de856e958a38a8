"""Cases Hearth starts by itself, for the modules that receive data: the DICOM listener's
subscriber (``fhir_server/runtime/events.py``) calls ``study_available`` when a study is complete (once
per study and case type, however often it is called)."""

from __future__ import annotations

from resources.errors import Invalid
from resources.storage.repository import Repository
from workflow.actors import SYSTEM
from workflow.cases import Outcome, start_case


def study_available(repo: Repository, case_type: str, study_id: str) -> Outcome:
    """Start (or return) the ``case_type`` case of ``ImagingStudy/study_id``."""
    study = repo.read(lambda u: u.read("ImagingStudy", study_id)).resource
    subject = (study.get("subject") or {}).get("reference", "")
    if not subject.startswith("Patient/"):
        raise Invalid(f"ImagingStudy/{study_id} has no Patient subject: no case can be started")
    ref = f"ImagingStudy/{study_id}"
    return start_case(repo, SYSTEM, case_type, subject, focus=ref, key=f"{case_type}:{ref}")


def imaging_study_available(repo: Repository, study_id: str) -> Outcome:
    """Start (or return) the imaging-review case of ``ImagingStudy/study_id``."""
    return study_available(repo, "imaging-review", study_id)
