"""Cases Hearth starts by itself, for the modules that receive data: the DICOM listener calls
``imaging_study_available`` when a study is complete (once per study, however often it is
called)."""

from __future__ import annotations

from resources.errors import Invalid
from resources.repository import Repository
from workflow.actors import SYSTEM
from workflow.cases import Outcome, start_case


def imaging_study_available(repo: Repository, study_id: str) -> Outcome:
    """Start (or return) the imaging-review case of ``ImagingStudy/study_id``."""
    study = repo.read(lambda u: u.read("ImagingStudy", study_id)).content
    subject = (study.get("subject") or {}).get("reference", "")
    if not subject.startswith("Patient/"):
        raise Invalid(f"ImagingStudy/{study_id} has no Patient subject: no case can be started")
    ref = f"ImagingStudy/{study_id}"
    return start_case(
        repo, SYSTEM, "imaging-review", subject, focus=ref, key=f"imaging-review:{ref}"
    )
