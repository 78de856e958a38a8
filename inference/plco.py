"""PLCOm2012: six-year lung-cancer risk for ever-smokers (a published logistic model).

Source: Tammemägi MC et al. Selection criteria for lung-cancer screening. N Engl J Med
2013;368:728-736 (model and coefficients, supplementary appendix); the 1.51 % six-year risk
threshold for screening eligibility from Tammemägi MC et al., PLoS Med 2014;11(12):e1001764.

    risk = exp(lp) / (1 + exp(lp))

with ``lp`` the sum of the centred terms below. The function is pure: no defaults are guessed.
A missing input raises :class:`MissingInputsError` naming every missing field; an impossible
value raises :class:`InvalidInputsError`. Years since quitting is 0 by definition for a current
smoker, so it need not be given for one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import IntEnum, StrEnum

INTERCEPT = -4.532506
AGE, AGE_CENTRE = 0.0778868, 62.0
EDUCATION, EDUCATION_CENTRE = -0.0812744, 4.0
BMI, BMI_CENTRE = -0.0274194, 27.0
COPD = 0.3553063
PERSONAL_CANCER_HISTORY = 0.4589971
FAMILY_HISTORY_LUNG_CANCER = 0.587185
CURRENT_SMOKER = 0.2597431
# Smoking intensity enters as beta * ((cigarettes per day / 10) ** -1 - centre).
INTENSITY, INTENSITY_CENTRE = -1.822606, 0.4021541613
DURATION, DURATION_CENTRE = 0.0317321, 27.0
YEARS_QUIT, YEARS_QUIT_CENTRE = -0.0308572, 10.0

#: Six-year risk at or above which screening is recommended (PLoS Med 2014).
THRESHOLD = 0.0151


class Race(StrEnum):
    """Self-reported race / ethnic group as coded in PLCO; White is the reference."""

    WHITE = "white"
    BLACK = "black"
    HISPANIC = "hispanic"
    ASIAN = "asian"
    AMERICAN_INDIAN_ALASKA_NATIVE = "american-indian-alaska-native"
    NATIVE_HAWAIIAN_PACIFIC_ISLANDER = "native-hawaiian-pacific-islander"


RACE_TERMS: dict[Race, float] = {
    Race.WHITE: 0.0,
    Race.BLACK: 0.3944778,
    Race.HISPANIC: -0.7434744,
    Race.ASIAN: -0.466585,
    Race.AMERICAN_INDIAN_ALASKA_NATIVE: 0.0,
    Race.NATIVE_HAWAIIAN_PACIFIC_ISLANDER: 1.027152,
}


class Education(IntEnum):
    """Highest education level, the model's six ordinal codes."""

    LESS_THAN_HIGH_SCHOOL = 1
    HIGH_SCHOOL_GRADUATE = 2
    POST_HIGH_SCHOOL_TRAINING = 3
    SOME_COLLEGE = 4
    COLLEGE_GRADUATE = 5
    POSTGRADUATE = 6


@dataclass(frozen=True)
class PLCOm2012Inputs:
    """The model's inputs; ``None`` means unknown (never silently replaced)."""

    age: float | None = None  # years
    education: Education | None = None
    bmi: float | None = None  # kg/m²
    copd: bool | None = None  # chronic obstructive pulmonary disease, emphysema or bronchitis
    personal_cancer_history: bool | None = None
    family_history_lung_cancer: bool | None = None
    current_smoker: bool | None = None  # False: former smoker (the model is for ever-smokers)
    cigarettes_per_day: float | None = None  # average smoking intensity, > 0
    smoking_duration_years: float | None = None
    years_since_quitting: float | None = None  # 0 (or None) for a current smoker
    race: Race | None = None


class MissingInputsError(ValueError):
    """Inputs the model needs are unknown; ``missing`` names them, in declaration order."""

    def __init__(self, missing: tuple[str, ...]) -> None:
        self.missing = missing
        super().__init__("PLCOm2012 needs: " + ", ".join(missing))


class InvalidInputsError(ValueError):
    """An input is outside what the model can take (e.g. a never-smoker's zero cigarettes)."""


def _missing(inputs: PLCOm2012Inputs) -> tuple[str, ...]:
    missing = []
    for field in fields(inputs):
        if getattr(inputs, field.name) is not None:
            continue
        if field.name == "years_since_quitting" and inputs.current_smoker is True:
            continue
        missing.append(field.name)
    return tuple(missing)


def _check(inputs: PLCOm2012Inputs) -> None:
    numbers = {
        "age": inputs.age,
        "bmi": inputs.bmi,
        "cigarettes_per_day": inputs.cigarettes_per_day,
        "smoking_duration_years": inputs.smoking_duration_years,
        "years_since_quitting": inputs.years_since_quitting,
    }
    problems = [
        f"{name} must be a finite number"
        for name, value in numbers.items()
        if value is not None and not math.isfinite(value)
    ]
    if problems:
        raise InvalidInputsError("; ".join(problems))
    assert inputs.age is not None and inputs.bmi is not None
    assert inputs.cigarettes_per_day is not None and inputs.smoking_duration_years is not None
    if inputs.age <= 0:
        problems.append("age must be positive")
    if inputs.bmi <= 0:
        problems.append("bmi must be positive")
    if inputs.cigarettes_per_day <= 0:
        problems.append("cigarettes_per_day must be positive: PLCOm2012 applies to ever-smokers")
    if not 0 <= inputs.smoking_duration_years <= inputs.age:
        problems.append("smoking_duration_years must be between 0 and age")
    if inputs.years_since_quitting is not None:
        if inputs.years_since_quitting < 0:
            problems.append("years_since_quitting must not be negative")
        if inputs.current_smoker and inputs.years_since_quitting != 0:
            problems.append("years_since_quitting must be 0 for a current smoker")
    if inputs.education not in set(Education):
        problems.append(f"education must be one of {[int(e) for e in Education]}")
    if inputs.race not in RACE_TERMS:
        problems.append(f"race must be one of {[str(r) for r in Race]}")
    if problems:
        raise InvalidInputsError("; ".join(problems))


def linear_predictor(inputs: PLCOm2012Inputs) -> float:
    """The model's log-odds ``lp``; raises on missing or invalid inputs."""
    missing = _missing(inputs)
    if missing:
        raise MissingInputsError(missing)
    _check(inputs)
    years_quit = 0.0 if inputs.current_smoker else inputs.years_since_quitting
    assert inputs.age is not None and inputs.education is not None and inputs.bmi is not None
    assert inputs.cigarettes_per_day is not None and inputs.smoking_duration_years is not None
    assert years_quit is not None and inputs.race is not None
    return (
        INTERCEPT
        + AGE * (inputs.age - AGE_CENTRE)
        + EDUCATION * (int(inputs.education) - EDUCATION_CENTRE)
        + BMI * (inputs.bmi - BMI_CENTRE)
        + COPD * bool(inputs.copd)
        + PERSONAL_CANCER_HISTORY * bool(inputs.personal_cancer_history)
        + FAMILY_HISTORY_LUNG_CANCER * bool(inputs.family_history_lung_cancer)
        + CURRENT_SMOKER * bool(inputs.current_smoker)
        + INTENSITY * ((inputs.cigarettes_per_day / 10.0) ** -1 - INTENSITY_CENTRE)
        + DURATION * (inputs.smoking_duration_years - DURATION_CENTRE)
        + YEARS_QUIT * (years_quit - YEARS_QUIT_CENTRE)
        + RACE_TERMS[Race(inputs.race)]
    )


def six_year_risk(inputs: PLCOm2012Inputs) -> float:
    """Six-year lung-cancer probability in ``[0, 1]`` (1.51 % = :data:`THRESHOLD`)."""
    lp = linear_predictor(inputs)
    return 1.0 / (1.0 + math.exp(-lp))


def screening_recommended(risk: float) -> bool:
    """Whether a six-year risk reaches the PLCOm2012 screening threshold (≥ 1.51 %)."""
    return risk >= THRESHOLD
