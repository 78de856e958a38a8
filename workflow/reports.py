"""The case's final DiagnosticReport (R4 diagnosticreport.html), built on admin approval from
what the steps recorded: results, the study, the doctor's conclusion and the interpreter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from resources.storage.repository import Unit
from workflow.actors import roles_of
from workflow.tasks import io_values, now

if TYPE_CHECKING:
    from workflow.definitions import CaseDefinition


def _refs(values: list) -> list[str]:
    return [v["reference"] for v in values if isinstance(v, dict) and "reference" in v]


def create_final_report(u: Unit, case: dict, steps: list[dict], case_def: CaseDefinition) -> str:
    """Create the ``final`` DiagnosticReport of ``case`` (of type ``case_def``); returns its
    reference."""
    return u.create(final_report_body(case, steps, case_def)).stored.ref


def final_report_body(
    case: dict, steps: list[dict], case_def: CaseDefinition, status: str = "final"
) -> dict:
    """The DiagnosticReport that approving ``case`` now would create (not stored): what
    ``create_final_report`` writes, and what ``$preview-report`` renders with ``status``
    ``preliminary`` before the approval."""
    results = _refs(io_values(case, "input", "ai-result"))
    conclusion, codes, interpreters = [], [], []
    for step in steps:
        results += [r for r in _refs(io_values(step, "output", "Observation")) if r not in results]
        conclusion += io_values(step, "output", "conclusion")
        codes += io_values(step, "output", "conclusion-code")
        owner = (step.get("owner") or {}).get("reference")
        if "doctor" in roles_of(step) and step.get("status") == "completed" and owner:
            interpreters.append({"reference": owner})
    body: dict = {
        "resourceType": "DiagnosticReport",
        "status": status,
        "identifier": case.get("identifier", []),
        "basedOn": case["basedOn"],
        "code": {"coding": [case_def.report_code], "text": case_def.title},
        "subject": case["for"],
        "effectiveDateTime": case.get("authoredOn", now()),
        "issued": now(),
        "resultsInterpreter": interpreters,
        "performer": interpreters,
    }
    observations = [r for r in results if r.startswith("Observation/")]
    if observations:
        body["result"] = [{"reference": r} for r in observations]
    focus = case.get("focus", {}).get("reference", "")
    if focus.startswith("ImagingStudy/"):
        body["imagingStudy"] = [{"reference": focus}]
    elif focus.startswith("Media/"):
        body["media"] = [{"link": {"reference": focus}}]
    if conclusion:
        body["conclusion"] = "\n".join(conclusion)
    if codes:
        body["conclusionCode"] = codes
    return {k: v for k, v in body.items() if v not in ([], None)}
