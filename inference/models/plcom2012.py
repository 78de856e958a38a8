"""``plcom2012`` — the PLCOm2012 six-year lung-cancer risk model, a published formula.

Input: the Patient's record (:mod:`inference.plco_record`: age, BMI and smoking Observations, the
intake QuestionnaireResponse); the formula is :mod:`inference.plco`. The result is a
RiskAssessment; a risk at or above 1.51 % is high risk (screening recommended). Never requested
by itself: only by ``$ai-analyze`` on a Patient or a lung-risk case. Model card: docs/models.md.
"""

from __future__ import annotations

from datetime import date

from inference import plco, plco_record, results
from inference.images import BadInput
from inference.spec import Assessment, Formula
from resources.errors import Gone, NotFound
from resources.storage.repository import Repository, Unit
from resources.storage.store import Stored


def _record(u: Unit, patient_ref: str) -> tuple[Stored, list[Stored], list[Stored]]:
    """The Patient and the record entries PLCOm2012 reads: its QuestionnaireResponses and its
    BMI and smoking-status Observations (raises NotFound for a missing Patient)."""
    patient = u.read("Patient", patient_ref.split("/", 1)[1])
    responses = u.read_many(u.match("QuestionnaireResponse", [("subject", patient_ref)]))
    observations = u.read_many(
        u.match(
            "Observation",
            [
                ("subject", patient_ref),
                ("code", f"{plco_record.LOINC}|{plco_record.BMI_LOINC},"
                         f"{plco_record.LOINC}|{plco_record.SMOKING_STATUS_LOINC}"),
            ],
        )
    )  # fmt: skip
    return patient, responses, observations


def inputs(u: Unit, focus: str) -> list[str]:
    """The versions of the record entries an assessment of ``focus`` reads now: the Patient (its
    birth date), every QuestionnaireResponse and every BMI / smoking-status Observation of it —
    all candidates, not only those used, so adding any of them asks for a new assessment."""
    if not focus.startswith("Patient/"):
        return []
    try:
        patient, responses, observations = _record(u, focus)
    except (NotFound, Gone):
        return []
    return sorted(s.versioned_ref for s in [patient, *responses, *observations])


def assess(repo: Repository, task: dict, task_id: str) -> Assessment:
    """The PLCOm2012 risk of the Task's focus Patient, from the record as it is now."""
    patient_ref = str(task.get("focus", {}).get("reference", ""))
    if not patient_ref.startswith("Patient/"):
        raise BadInput(f"PLCOm2012 needs a Patient focus, not {patient_ref!r}")

    def gather(u: Unit) -> tuple[dict, list[dict], list[dict]]:
        patient, responses, observations = _record(u, patient_ref)
        return patient.resource, [r.resource for r in responses], [o.resource for o in observations]

    try:
        patient, responses, observations = repo.read(gather)
    except (NotFound, Gone) as exc:
        raise BadInput(f"{patient_ref} does not exist") from exc
    try:
        inputs, basis = plco_record.gather(patient, responses, observations, date.today())
        risk = plco.six_year_risk(inputs)
    except plco.MissingInputsError as exc:
        raise BadInput(f"PLCOm2012 inputs missing: {', '.join(exc.missing)}") from exc
    except plco.InvalidInputsError as exc:
        raise BadInput(f"PLCOm2012 inputs invalid: {exc}") from exc
    device = results.formula_device(MODEL)
    assessment = results.risk_assessment(
        MODEL,
        task_id=task_id,
        device_id=device["id"],
        subject=patient_ref,
        risk=risk,
        threshold=plco.THRESHOLD,
        basis=basis,
        based_on=results.service_requests(task),
    )
    high = plco.screening_recommended(risk)
    business = f"six-year risk {risk * 100:.2f} %" + (" (screening recommended)" if high else "")
    return Assessment([device, assessment], business, high)


MODEL = Formula(
    name="plcom2012",
    analysis="lung-cancer-risk-plcom2012",
    analysis_display="Six-year lung-cancer risk (PLCOm2012)",
    title="PLCOm2012 six-year lung-cancer risk model",
    order=3,
    operation_inputs=frozenset({"Patient"}),
    default_for=lambda res_type, focus: res_type == "Patient",
    formula_version="plcom2012-nejm2013",
    citation=(
        "Tammemägi MC et al. N Engl J Med 2013;368:728-736; threshold 1.51 % from "
        "Tammemägi MC et al. PLoS Med 2014;11(12):e1001764."
    ),
    summary="published formula (Tammemägi et al. 2013)",
    assess=assess,
    inputs=inputs,
)
