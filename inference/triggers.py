"""When Hearth starts an analysis by itself: each model declares its triggers
(``inference/models/<name>.py``, :class:`inference.spec.Trigger`); this module applies them.

* A resource created (repository write hook): e.g. a ``Media`` photo from a photographic
  modality requests a skin-lesion analysis, in the same transaction as the upload.
* An ``ImagingStudy`` announced complete by the DICOM receiver: e.g. one with a chest CR/DX series
  requests a pneumonia analysis (``fhir_server/runtime/events.py`` starts its case when it has one).

Anything else is analysed only when asked (``$ai-analyze``) or by a workflow case.
"""

from __future__ import annotations

from inference import registry, tasks
from inference.spec import AnalysisSpec
from resources.storage.repository import Repository, Unit, WriteResult


def on_write(u: Unit, result: WriteResult) -> None:
    """Repository write hook: a created resource that triggers a model gets its analysis Task."""
    stored = result.stored
    if result.status != "created" or stored.content is None:
        return
    for spec in registry.triggered("created", stored.res_type, stored.content):
        subject = stored.content.get("subject", {}).get("reference")
        tasks.request(u, spec.analysis, stored.ref, subject, spec.version())


def study_analysis(study: dict) -> AnalysisSpec | None:
    """The model a completed ``study`` triggers (the first in listing order), or None."""
    found = registry.triggered("study-complete", "ImagingStudy", study)
    return found[0] if found else None


def on_study_complete(repo: Repository, study_id: str) -> str | None:
    """DICOM study-complete subscriber: a study a model takes gets its analysis Task.
    Returns the Task reference, or None when the study is not one Hearth analyses."""

    def run(u: Unit) -> str | None:
        study = u.read("ImagingStudy", study_id).content
        spec = study_analysis(study) if study is not None else None
        if study is None or spec is None:
            return None
        subject = study.get("subject", {}).get("reference")
        based_on = [r["reference"] for r in study.get("basedOn", []) if "reference" in r]
        result = tasks.request(
            u,
            spec.analysis,
            f"ImagingStudy/{study_id}",
            subject,
            spec.version(),
            based_on=based_on,
        )
        return result.stored.ref

    return repo.run(run)
