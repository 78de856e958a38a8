"""The codes Hearth's AI results carry: what was assessed, each class, interpretations.

SNOMED CT codes are given only where the concept id was checked against a citable source (each
source is listed in docs/models.md, "Codes"); every class also carries Hearth's own model-label
code, so a result is always machine-readable by the label the model was trained on. Classes
whose SNOMED CT concept could not be verified (mel, df, vasc) carry the label code only.
"""

from __future__ import annotations

SNOMED = "http://snomed.info/sct"
HEARTH_AI = "http://hearth.local/fhir/CodeSystem/ai-analysis"
HEARTH_LABEL = "http://hearth.local/fhir/CodeSystem/ai-model-label"
HEARTH_REVIEW = "http://hearth.local/fhir/CodeSystem/ai-review"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
TASK_REASON = "http://hearth.local/fhir/CodeSystem/ai-task-failure"
DEVICE_MODEL = "http://hearth.local/fhir/sid/ai-model-sha256"

# What each analysis kind assesses: Observation.code / RiskAssessment.code / Task.code.
ANALYSES: dict[str, str] = {
    "skin-lesion-classification": "AI skin lesion classification (7 HAM10000 classes)",
    "chest-xray-pneumonia": "AI chest X-ray pneumonia classification",
    "lung-cancer-risk-plcom2012": "Six-year lung-cancer risk (PLCOm2012)",
}

# Checked SNOMED CT codes for model labels (sources: docs/models.md, "Codes").
SNOMED_FOR_LABEL: dict[str, tuple[str, str]] = {
    "akiec": ("201101007", "Actinic keratosis"),
    "bcc": ("254701007", "Basal cell carcinoma of skin"),
    # HAM10000 "bkl" also holds solar lentigines and lichen-planus-like keratoses: the concept is
    # the class's main member, not an exact equivalent (docs/models.md).
    "bkl": ("394726009", "Seborrheic keratosis"),
    "nv": ("400096001", "Melanocytic nevus"),
    "pneumonia": ("233604007", "Pneumonia"),
}

UNCERTAIN = "uncertain"
REVIEW_REQUIRED = "physician-review-required"


def analysis_concept(kind: str) -> dict:
    return {
        "coding": [{"system": HEARTH_AI, "code": kind, "display": ANALYSES[kind]}],
        "text": ANALYSES[kind],
    }


def label_concept(model: str, label: str, display: str) -> dict:
    """A class as a CodeableConcept: SNOMED CT where checked, plus the model's own label."""
    codings = []
    if label in SNOMED_FOR_LABEL:
        code, snomed_display = SNOMED_FOR_LABEL[label]
        codings.append({"system": SNOMED, "code": code, "display": snomed_display})
    codings.append({"system": f"{HEARTH_LABEL}/{model}", "code": label, "display": display})
    return {"coding": codings, "text": display}


def interpretation(code: str) -> dict:
    displays = {"N": "Normal", "A": "Abnormal", "AA": "Critical abnormal", "IND": "Indeterminate"}
    return {"coding": [{"system": INTERPRETATION, "code": code, "display": displays[code]}]}
