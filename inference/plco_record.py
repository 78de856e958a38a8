"""PLCOm2012 inputs read from a patient's record (pure: resources in, inputs and basis out).

Sources, latest first for each input:

* age — ``Patient.birthDate``, in whole years at the assessment date;
* BMI — an Observation LOINC 39156-5 (Body mass index) in kg/m2;
* smoking status — an Observation LOINC 72166-2 (Tobacco smoking status) with SNOMED CT values
  (current: 77176002, 449868002, 428041000124106, 428061000124105, 428071000124103;
  former: 8517006; never: 266919005);
* everything, and what Observations do not give — the latest completed QuestionnaireResponse to
  Hearth's PLCOm2012 intake Questionnaire (``inference/data/questionnaire-plcom2012.json``).

Nothing is guessed: what no source gives stays ``None`` and PLCOm2012 reports it missing. A
never-smoker is outside the model and is reported as such.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

from inference.plco import Education, InvalidInputsError, PLCOm2012Inputs, Race

QUESTIONNAIRE_PATH = Path(__file__).resolve().parent / "data" / "questionnaire-plcom2012.json"
QUESTIONNAIRE_URL = "http://hearth.local/fhir/Questionnaire/plcom2012"
LOINC = "http://loinc.org"
BMI_LOINC = "39156-5"
SMOKING_STATUS_LOINC = "72166-2"
CURRENT_SMOKER_SNOMED = {
    "77176002",
    "449868002",
    "428041000124106",
    "428061000124105",
    "428071000124103",
}
FORMER_SMOKER_SNOMED = {"8517006"}
NEVER_SMOKER_SNOMED = {"266919005"}


def questionnaire() -> dict:
    return json.loads(QUESTIONNAIRE_PATH.read_text())


def age_on(birth_date: str, on: date) -> float:
    parts = [int(p) for p in birth_date.split("-")]
    if len(parts) < 3:
        raise InvalidInputsError(f"birthDate {birth_date!r} is not a full date: age is unknown")
    born = date(*parts[:3])
    return float(on.year - born.year - ((on.month, on.day) < (born.month, born.day)))


def _answers(response: dict) -> dict[str, object]:
    values: dict[str, object] = {}
    for item in response.get("item", []):
        for answer in item.get("answer", [])[:1]:
            for key, value in answer.items():
                if key.startswith("value"):
                    values[item["linkId"]] = value["code"] if key == "valueCoding" else value
    return values


def _codes(concept: dict | None) -> set[tuple[str | None, str | None]]:
    return {(c.get("system"), c.get("code")) for c in (concept or {}).get("coding", [])}


def _when(resource: dict) -> str:
    return str(resource.get("effectiveDateTime") or resource.get("authored") or "")


def gather(
    patient: dict, responses: list[dict], observations: list[dict], on: date
) -> tuple[PLCOm2012Inputs, list[str]]:
    """The model's inputs for ``patient`` and the references of the resources they came from."""
    inputs = PLCOm2012Inputs()
    basis = [f"Patient/{patient['id']}"]
    if patient.get("birthDate"):
        inputs = replace(inputs, age=age_on(patient["birthDate"], on))

    completed = [
        r
        for r in responses
        if r.get("status") == "completed"
        and str(r.get("questionnaire", "")).split("|")[0] == QUESTIONNAIRE_URL
    ]
    if completed:
        latest = max(completed, key=_when)
        basis.append(f"QuestionnaireResponse/{latest['id']}")
        a = _answers(latest)
        status = a.get("smoking-status")
        if status == "never":
            raise InvalidInputsError("PLCOm2012 applies to ever-smokers; the patient never smoked")
        inputs = replace(
            inputs,
            education=_education(a["education"]) if "education" in a else None,
            bmi=_number(a.get("bmi")),
            copd=a.get("copd"),  # type: ignore[arg-type]
            personal_cancer_history=a.get("personal-cancer-history"),  # type: ignore[arg-type]
            family_history_lung_cancer=a.get("family-history-lung-cancer"),  # type: ignore[arg-type]
            current_smoker=None if status is None else status == "current",
            cigarettes_per_day=_number(a.get("cigarettes-per-day")),
            smoking_duration_years=_number(a.get("smoking-duration-years")),
            years_since_quitting=_number(a.get("years-since-quitting")),
            race=Race(str(a["race"])) if "race" in a else None,
        )

    final = [o for o in observations if o.get("status") in ("final", "amended", "corrected")]
    for obs in sorted(final, key=_when):  # later observations override earlier sources
        codes = _codes(obs.get("code"))
        if (LOINC, BMI_LOINC) in codes and "valueQuantity" in obs:
            inputs = replace(inputs, bmi=float(obs["valueQuantity"]["value"]))
            basis.append(f"Observation/{obs['id']}")
        elif (LOINC, SMOKING_STATUS_LOINC) in codes:
            values = {code for _, code in _codes(obs.get("valueCodeableConcept"))}
            if values & NEVER_SMOKER_SNOMED:
                raise InvalidInputsError(
                    "PLCOm2012 applies to ever-smokers; the patient never smoked"
                )
            if values & (CURRENT_SMOKER_SNOMED | FORMER_SMOKER_SNOMED):
                inputs = replace(inputs, current_smoker=bool(values & CURRENT_SMOKER_SNOMED))
                basis.append(f"Observation/{obs['id']}")
    return inputs, basis


def _education(value: object) -> Education:
    """The education level answer (an integer, or a coding whose code is one): anything else
    is an invalid input, not a fault."""
    if isinstance(value, int | float | str):
        try:
            return Education(int(value))
        except (ValueError, OverflowError):
            pass
    raise InvalidInputsError(f"the education answer {value!r} is not a level 1-6")


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
