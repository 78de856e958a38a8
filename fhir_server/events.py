"""Connects what one module announces to what another does, in a running Hearth:

* a DICOM study announced complete → the imaging-review case of a chest CR/DX study (its AI step
  then asks for the analysis, below); other studies start nothing by themselves;
* a workflow case's AI step becoming ``requested`` → the analysis Task for the case's focus
  (skin photo, chest study, or the patient's PLCOm2012 inputs), in the same transaction;
* an analysis result committed → recorded on its case (``workflow.cases.record_ai_result``):
  the AI step completes, high-risk results make the case urgent, uncertain ones force review.

Inference and workflow know nothing of each other; this module is the only place they meet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fhir_server.context import Context
from inference import tasks, triggers
from resources.repository import Repository, Unit, WriteResult
from workflow import cases
from workflow import triggers as case_triggers
from workflow.actors import roles_of
from workflow.definitions import CASE_SYSTEM

log = logging.getLogger(__name__)

CASE_ANALYSIS = {
    "skin-screening": "skin-lesion-classification",
    "imaging-review": "chest-xray-pneumonia",
    "lung-risk": tasks.PLCO_KIND,
}


def install(ctx: Context) -> None:
    """Register the repository hook (when ``HEARTH_AI_TRIGGERS`` is on)."""
    if ctx.settings.ai_triggers:
        ctx.repo.write_hooks.append(request_case_analysis)


def request_case_analysis(u: Unit, result: WriteResult) -> None:
    """Write hook: a case's AI step that is now ``requested`` gets its analysis Task."""
    step = result.stored.content
    if result.stored.res_type != "Task" or step is None or step.get("status") != "requested":
        return
    if "ai" not in roles_of(step) or not step.get("partOf"):
        return
    case_ref = str(step["partOf"][0].get("reference", ""))
    case = u.read("Task", case_ref.split("/", 1)[1]).content or {}
    case_type = next(
        (
            c.get("code")
            for c in case.get("code", {}).get("coding", [])
            if c.get("system") == CASE_SYSTEM
        ),
        None,
    )
    kind = CASE_ANALYSIS.get(str(case_type))
    if kind is None:
        return
    tasks.request(
        u,
        kind,
        case["focus"]["reference"],
        case.get("for", {}).get("reference"),
        tasks.version_for(kind),
        based_on=[b["reference"] for b in case.get("basedOn", []) if "reference" in b],
        part_of=case_ref,
    )


def record_on_case(repo: Repository) -> Callable[[dict, list[str], bool, bool], None]:
    """Analyzer result hook: a case's analysis result completes the case's AI step."""

    def hook(task: dict, results: list[str], high_risk: bool, uncertain: bool) -> None:
        for part in task.get("partOf", []):
            case_id = str(part.get("reference", "")).split("/", 1)[-1]
            device = task.get("owner", {}).get("reference")
            cases.record_ai_result(repo, case_id, results, high_risk, uncertain, device=device)

    return hook


def on_study_complete(repo: Repository) -> Callable[[str], None]:
    """DICOM ingest subscriber (runs in the ingest thread: it never raises)."""

    def callback(study_id: str) -> None:
        try:
            study = repo.read(lambda u: u.read("ImagingStudy", study_id)).content or {}
            if not triggers.is_chest_radiograph_study(study):
                return
            subject = str(study.get("subject", {}).get("reference", ""))
            if subject.startswith("Patient/"):
                case_triggers.imaging_study_available(repo, study_id)
            else:  # no patient to run a case for: the analysis alone
                triggers.on_study_complete(repo, study_id)
        except Exception:
            log.exception("ImagingStudy/%s: could not start its case or analysis", study_id)

    return callback
