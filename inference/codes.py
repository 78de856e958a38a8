"""The codes Hearth's AI results carry: what was assessed, each class, interpretations.

The analysis kinds and each model's checked SNOMED CT codes are declared by the models
(``inference/models/``). SNOMED CT codes are given only where the concept id was checked against
a citable source (each source is listed in docs/models.md, "Codes"); every class also carries
Hearth's own model-label code, so a result is always machine-readable by the label the model was
trained on. Classes whose SNOMED CT concept could not be verified (mel, df, vasc) carry the label
code only.
"""

from __future__ import annotations

from inference.spec import AnalysisSpec, ImageClassifier

SNOMED = "http://snomed.info/sct"
HEARTH_AI = "http://hearth.local/fhir/CodeSystem/ai-analysis"
HEARTH_LABEL = "http://hearth.local/fhir/CodeSystem/ai-model-label"
HEARTH_REVIEW = "http://hearth.local/fhir/CodeSystem/ai-review"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
TASK_REASON = "http://hearth.local/fhir/CodeSystem/ai-task-failure"
DEVICE_MODEL = "http://hearth.local/fhir/sid/ai-model-sha256"

UNCERTAIN = "uncertain"
REVIEW_REQUIRED = "physician-review-required"


def analysis_concept(spec: AnalysisSpec) -> dict:
    """What ``spec``'s analysis assesses, as a CodeableConcept."""
    return {
        "coding": [{"system": HEARTH_AI, "code": spec.analysis, "display": spec.analysis_display}],
        "text": spec.analysis_display,
    }


def label_concept(spec: ImageClassifier, index: int) -> dict:
    """Class ``index`` of ``spec`` as a CodeableConcept: SNOMED CT where checked, plus the
    model's own label."""
    label, display = spec.labels[index], spec.display[index]
    codings = []
    if label in spec.snomed:
        code, snomed_display = spec.snomed[label]
        codings.append({"system": SNOMED, "code": code, "display": snomed_display})
    codings.append({"system": f"{HEARTH_LABEL}/{spec.name}", "code": label, "display": display})
    return {"coding": codings, "text": display}


def screening_concept(name: str, display: str) -> dict:
    """The code of a screening score component: ``<name>-probability`` in Hearth's analysis
    code system (e.g. ``malignancy-probability``)."""
    return {
        "coding": [{"system": HEARTH_AI, "code": f"{name}-probability", "display": display}],
        "text": display,
    }


LESION_AREA = "lesion-area"
LESION_OUTLINE = "lesion-outline"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"


def lesion_concept(code: str) -> dict:
    """The code of a lesion segmentation component (area or outline) in Hearth's analysis
    code system."""
    display = {
        LESION_AREA: "Lesion area (classical segmentation of the photo)",
        LESION_OUTLINE: "Lesion outline on the photo (SVG polygon points, fractions of the "
        "photo's width and height)",
    }[code]
    return {"coding": [{"system": HEARTH_AI, "code": code, "display": display}], "text": display}


def interpretation(code: str) -> dict:
    displays = {
        "N": "Normal",
        "A": "Abnormal",
        "AA": "Critical abnormal",
        "IND": "Indeterminate",
        "POS": "Positive",
        "NEG": "Negative",
    }
    return {"coding": [{"system": INTERPRETATION, "code": code, "display": displays[code]}]}
