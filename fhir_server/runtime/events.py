"""Connects what one module announces to what another does, in a running Hearth:

* a DICOM study announced complete that a model takes (the model's ``study-complete`` trigger,
  e.g. a chest CR/DX study) → the case whose definition names that model's analysis and may be
  started by the system on an ImagingStudy (imaging-review; its AI step then asks for the
  analysis, below), or the analysis alone for a study without a Patient; other studies start
  nothing by themselves;
* a workflow case's AI step becoming ``requested`` → the analysis Task the case definition names
  (``analysis``: a model key) for the case's focus, in the same transaction;
* an analysis result committed → recorded on its case (``workflow.cases.record_ai_result``):
  the AI step completes, high-risk results make the case urgent, uncertain ones force review.

Inference and workflow know nothing of each other; this module is the only place they meet. It
holds no domain data: the models (``inference/models/``) and the case definitions
(``workflow/data/cases/``) say what connects to what.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fhir_server.rest.context import Context
from inference import registry, tasks, triggers
from inference.spec import AnalysisSpec
from resources.storage.repository import Repository, Unit, WriteResult
from workflow import cases
from workflow import triggers as case_triggers
from workflow.actors import roles_of
from workflow.definitions import CASE_SYSTEM, CaseDefinition, definitions

log = logging.getLogger(__name__)


def case_analysis(case_def: CaseDefinition) -> AnalysisSpec | None:
    """The model a case's AI step runs (its definition's ``analysis``), or None."""
    if case_def.analysis is None:
        return None
    try:
        return registry.SPECS[case_def.analysis]
    except KeyError:
        raise LookupError(
            f"case {case_def.id} names analysis {case_def.analysis!r}, which is not a model of "
            f"inference/models/ (known: {', '.join(registry.SPECS)})"
        ) from None


def check_case_analyses() -> None:
    """Every case definition's analysis is a registered model (raises LookupError)."""
    for case_def in definitions().values():
        case_analysis(case_def)


def study_case(spec: AnalysisSpec) -> str | None:
    """The case type Hearth starts for a completed study that ``spec`` takes: one that names
    ``spec`` as its analysis, has an ImagingStudy focus and may be started by the system."""
    for case_def in definitions().values():
        if (
            case_def.analysis == spec.name
            and "ImagingStudy" in case_def.focus
            and "system" in case_def.started_by
        ):
            return case_def.id
    return None


def install(ctx: Context) -> None:
    """Register the repository hook (when ``HEARTH_AI_TRIGGERS`` is on)."""
    if ctx.settings.ai_triggers:
        check_case_analyses()
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
    case_def = definitions().get(str(case_type))
    spec = case_analysis(case_def) if case_def is not None else None
    if spec is None:
        return
    tasks.request(
        u,
        spec.analysis,
        case["focus"]["reference"],
        case.get("for", {}).get("reference"),
        spec.version(),
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
            spec = triggers.study_analysis(study)
            if spec is None:
                return
            subject = str(study.get("subject", {}).get("reference", ""))
            case_type = study_case(spec)
            if subject.startswith("Patient/") and case_type is not None:
                case_triggers.study_available(repo, case_type, study_id)
            else:  # no patient (or no case) to run a case for: the analysis alone
                triggers.on_study_complete(repo, study_id)
        except Exception:
            log.exception("ImagingStudy/%s: could not start its case or analysis", study_id)

    return callback
