"""PLCOm2012 against the published sanity value and the model's structure."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import date

import pytest

from inference import plco, plco_record
from inference.plco import (
    Education,
    InvalidInputsError,
    MissingInputsError,
    PLCOm2012Inputs,
    Race,
    linear_predictor,
    screening_recommended,
    six_year_risk,
)
from tests.shared import shared_path

# Every variable at its centring value: the inverse-intensity term is 0 at 24.8664 cig/day.
CENTRE = PLCOm2012Inputs(
    age=62,
    education=Education.SOME_COLLEGE,
    bmi=27,
    copd=False,
    personal_cancer_history=False,
    family_history_lung_cancer=False,
    current_smoker=False,
    cigarettes_per_day=24.8664,
    smoking_duration_years=27,
    years_since_quitting=10,
    race=Race.WHITE,
)


def test_sanity_value_from_the_reference_sheet():
    text = shared_path("data", "PLCOm2012.md").read_text()
    lp = float(re.search(r"lp = (-?\d+\.\d+) and the risk", text).group(1))
    percent = float(re.search(r"the risk is (\d+\.\d+) %", text).group(1))
    assert linear_predictor(CENTRE) == pytest.approx(lp, abs=1e-5)
    assert six_year_risk(CENTRE) * 100 == pytest.approx(percent, abs=5e-5)
    assert six_year_risk(CENTRE) == pytest.approx(0.010639, abs=5e-7)
    assert not screening_recommended(six_year_risk(CENTRE))


def test_threshold_is_one_point_five_one_percent():
    assert plco.THRESHOLD == 0.0151
    assert screening_recommended(0.0151)
    assert not screening_recommended(0.01509)


@pytest.mark.parametrize(
    ("race", "term"),
    [
        (Race.WHITE, 0.0),
        (Race.BLACK, 0.3944778),
        (Race.HISPANIC, -0.7434744),
        (Race.ASIAN, -0.466585),
        (Race.AMERICAN_INDIAN_ALASKA_NATIVE, 0.0),
        (Race.NATIVE_HAWAIIAN_PACIFIC_ISLANDER, 1.027152),
    ],
)
def test_race_terms(race, term):
    delta = linear_predictor(replace(CENTRE, race=race)) - linear_predictor(CENTRE)
    assert delta == pytest.approx(term, abs=1e-12)


@pytest.mark.parametrize(
    ("change", "delta"),
    [
        ({"age": 72}, 10 * 0.0778868),
        ({"education": Education.LESS_THAN_HIGH_SCHOOL}, 3 * 0.0812744),
        ({"bmi": 22}, 5 * 0.0274194),
        ({"copd": True}, 0.3553063),
        ({"personal_cancer_history": True}, 0.4589971),
        ({"family_history_lung_cancer": True}, 0.587185),
        ({"smoking_duration_years": 40}, 13 * 0.0317321),
        ({"years_since_quitting": 0}, 10 * 0.0308572),
        ({"current_smoker": True, "years_since_quitting": 0}, 0.2597431 + 10 * 0.0308572),
    ],
)
def test_each_term(change, delta):
    actual = linear_predictor(replace(CENTRE, **change)) - linear_predictor(CENTRE)
    assert actual == pytest.approx(delta, abs=1e-9)


def test_intensity_term_is_inverse_and_centred():
    ten = replace(CENTRE, cigarettes_per_day=10)
    expected = -1.822606 * (1.0 - 0.4021541613)
    assert linear_predictor(ten) - plco.INTERCEPT == pytest.approx(expected, abs=1e-9)
    # more cigarettes per day -> higher risk
    risks = [six_year_risk(replace(CENTRE, cigarettes_per_day=c)) for c in (5, 10, 20, 40)]
    assert risks == sorted(risks)


def test_worked_high_risk_example_crosses_threshold():
    heavy = PLCOm2012Inputs(
        age=68,
        education=Education.HIGH_SCHOOL_GRADUATE,
        bmi=24,
        copd=True,
        personal_cancer_history=False,
        family_history_lung_cancer=True,
        current_smoker=True,
        cigarettes_per_day=30,
        smoking_duration_years=45,
        years_since_quitting=None,  # current smoker: 0 by definition
        race=Race.BLACK,
    )
    lp = (
        -4.532506
        + 0.0778868 * 6
        - 0.0812744 * -2
        - 0.0274194 * -3
        + 0.3553063
        + 0.587185
        + 0.2597431
        - 1.822606 * (1 / 3 - 0.4021541613)
        + 0.0317321 * 18
        - 0.0308572 * -10
        + 0.3944778
    )
    risk = six_year_risk(heavy)
    assert risk == pytest.approx(math.exp(lp) / (1 + math.exp(lp)), rel=1e-12)
    assert screening_recommended(risk)


def test_missing_inputs_are_listed_exactly():
    with pytest.raises(MissingInputsError) as caught:
        six_year_risk(replace(CENTRE, bmi=None, race=None))
    assert caught.value.missing == ("bmi", "race")
    assert "bmi" in str(caught.value) and "race" in str(caught.value)


def test_everything_missing():
    with pytest.raises(MissingInputsError) as caught:
        six_year_risk(PLCOm2012Inputs())
    assert len(caught.value.missing) == 11


def test_years_since_quitting_needed_unless_current_smoker():
    with pytest.raises(MissingInputsError) as caught:
        six_year_risk(replace(CENTRE, years_since_quitting=None))
    assert caught.value.missing == ("years_since_quitting",)
    with pytest.raises(MissingInputsError) as caught:
        six_year_risk(replace(CENTRE, current_smoker=None, years_since_quitting=None))
    assert caught.value.missing == ("current_smoker", "years_since_quitting")
    current = replace(CENTRE, current_smoker=True, years_since_quitting=None)
    assert six_year_risk(current) == six_year_risk(replace(current, years_since_quitting=0))


@pytest.mark.parametrize(
    "change",
    [
        {"cigarettes_per_day": 0},
        {"age": -1},
        {"bmi": float("nan")},
        {"smoking_duration_years": 70},
        {"years_since_quitting": -2},
        {"current_smoker": True, "years_since_quitting": 5},
        {"education": 7},
        {"race": "martian"},
    ],
)
def test_invalid_inputs_raise(change):
    with pytest.raises(InvalidInputsError):
        six_year_risk(replace(CENTRE, **change))


@pytest.mark.parametrize(
    "answer",
    [{"valueInteger": 7}, {"valueString": "college"}, {"valueQuantity": {"value": 3}}],
)
def test_bad_education_answer_is_an_invalid_input(answer):
    """A questionnaire answer that is no education level is an invalid input (the analysis
    fails as bad input), not a fault the queue retries."""
    response = {
        "resourceType": "QuestionnaireResponse",
        "id": "q1",
        "status": "completed",
        "questionnaire": plco_record.QUESTIONNAIRE_URL,
        "authored": "2026-01-01",
        "item": [{"linkId": "education", "answer": [answer]}],
    }
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01"}
    with pytest.raises(InvalidInputsError, match="education answer"):
        plco_record.gather(patient, [response], [], date(2026, 6, 1))
