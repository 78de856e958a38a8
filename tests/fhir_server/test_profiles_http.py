"""Profile validation over HTTP (FHIR R4 profiling.html, resource-operation-validate): ``$validate``
with ``profile`` (query or Parameters) and a resource's own ``meta.profile``, against the R4 core
profiles shipped with Hearth and StructureDefinitions stored on the server, on SQLite and
PostgreSQL. The issues carry FHIRPath locations, as HAPI's do."""

from __future__ import annotations

import copy
import json
import uuid

import httpx
import pytest

from tests.shared import shared_path

VITALS = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
BP = "http://hl7.org/fhir/StructureDefinition/bp"
BODYWEIGHT = "http://hl7.org/fhir/StructureDefinition/bodyweight"
EXAMPLES = shared_path("fhir", "r4-examples")


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def vital_sign() -> dict:
    """A body weight that conforms to vitalsigns and bodyweight."""
    return {
        "resourceType": "Observation",
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">72.5 kg</div>',
        },
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2024-05-01T10:00:00Z",
        "valueQuantity": {
            "value": 72.5,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }


def validate(client: httpx.Client, resource: dict, *profiles: str) -> list[dict]:
    params = [("profile", p) for p in profiles]
    resp = client.post(f"/{resource['resourceType']}/$validate", params=params, json=resource)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"]


def errors(issues: list[dict]) -> list[dict]:
    return [i for i in issues if i["severity"] in ("error", "fatal")]


def where(issues: list[dict]) -> set[str]:
    return {e for i in issues for e in i.get("expression", ())}


def test_a_conforming_vital_sign_has_no_errors(client: httpx.Client) -> None:
    issues = validate(client, vital_sign(), VITALS, BODYWEIGHT)
    assert errors(issues) == [], issues


def test_an_observation_breaking_vitalsigns_is_reported_with_locations(
    client: httpx.Client,
) -> None:
    obs = vital_sign()
    del obs["category"]  # the VSCat slice (1..1) is missing
    del obs["effectiveDateTime"]  # effective[x] is 1..1 in vitalsigns
    before = validate(client, obs)  # base R4 only: all of this is valid R4
    assert errors(before) == [], before
    issues = errors(validate(client, obs, VITALS))
    assert where(issues) == {"Observation.category", "Observation.effective"}, issues
    slice_issue = [i for i in issues if "VSCat" in i["diagnostics"]]
    assert slice_issue and slice_issue[0]["code"] == "required", issues
    assert all(VITALS in i["diagnostics"] for i in issues), issues


def test_a_wrong_code_or_unit_breaks_bodyweight(client: httpx.Client) -> None:
    obs = vital_sign()
    obs["code"]["coding"][0]["code"] = "2339-0"  # glucose, not body weight
    obs["valueQuantity"]["code"] = "cm"  # not in ucum-bodyweight (required binding)
    issues = errors(validate(client, obs, BODYWEIGHT))
    assert any(
        i["expression"] == ["Observation.code.coding"] and "BodyWeightCode" in i["diagnostics"]
        for i in issues
    ), issues
    unit = [i for i in issues if i["expression"] == ["Observation.valueQuantity.code"]]
    assert unit and unit[0]["code"] == "code-invalid", issues
    assert "ucum-bodyweight" in unit[0]["diagnostics"]
    # vitalsigns binds the code extensibly: a code outside its value set is only a warning
    vitals = validate(client, obs, VITALS)
    assert errors(vitals) == [], vitals
    assert [i["expression"] for i in vitals if i["severity"] == "warning"] == [
        ["Observation.code"]
    ], vitals


def test_the_profile_can_be_a_parameters_part(client: httpx.Client) -> None:
    obs = vital_sign()
    del obs["category"]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": obs},
            {"name": "profile", "valueUri": VITALS},
        ],
    }
    resp = client.post("/Observation/$validate", json=body)
    assert resp.status_code == 200, resp.text
    assert "Observation.category" in where(errors(resp.json()["issue"]))


def test_meta_profile_is_validated_too(client: httpx.Client) -> None:
    obs = vital_sign()
    obs["meta"] = {"profile": [VITALS]}
    assert errors(validate(client, obs)) == []
    del obs["category"]
    assert "Observation.category" in where(errors(validate(client, obs)))


def test_an_unknown_profile_is_an_error(client: httpx.Client) -> None:
    url = f"http://example.org/StructureDefinition/{uuid.uuid4().hex}"
    issues = errors(validate(client, vital_sign(), url))
    assert len(issues) == 1, issues
    assert issues[0]["code"] == "not-found"
    assert (
        f"Profile reference '{url}' has not been checked because it is unknown"
        in (issues[0]["diagnostics"])
    )


def test_a_base_definition_as_profile_is_the_base_validation(client: httpx.Client) -> None:
    assert errors(validate(client, vital_sign(), CORE_OBSERVATION)) == []
    issues = errors(
        validate(client, vital_sign(), "http://hl7.org/fhir/StructureDefinition/Patient")
    )
    assert issues and issues[0]["code"] == "invalid", issues


CORE_OBSERVATION = "http://hl7.org/fhir/StructureDefinition/Observation"

# The R4 examples that declare the vitalsigns profile (all twelve are vital signs)
VITAL_EXAMPLES = sorted(
    p.name for p in EXAMPLES.glob("observation-example-*.json") if VITALS in p.read_text()
)


def test_twelve_examples_declare_vitalsigns() -> None:
    assert len(VITAL_EXAMPLES) == 12, VITAL_EXAMPLES


@pytest.mark.parametrize("name", VITAL_EXAMPLES)
def test_the_r4_vital_sign_examples_conform(client: httpx.Client, name: str) -> None:
    resource = example(name)
    assert VITALS in resource["meta"]["profile"]
    issues = validate(client, resource)
    assert errors(issues) == [], issues
    assert not [i for i in issues if i["severity"] == "warning"], issues


def test_the_bp_example_conforms_to_bp_and_a_broken_one_does_not(client: httpx.Client) -> None:
    bp = example("observation-example-bloodpressure.json")
    assert errors(validate(client, bp, BP)) == []
    broken = copy.deepcopy(bp)
    broken["component"][0]["valueQuantity"]["code"] = "kPa"  # fixed to mm[Hg] in the slice
    broken["valueString"] = "high"  # bp slices value[x] by type, closed, valueQuantity 0..0
    issues = errors(validate(client, broken, BP))
    fixed = [
        i for i in issues if i["expression"] == ["Observation.component[0].valueQuantity.code"]
    ]
    assert fixed and fixed[0]["code"] == "value", issues
    assert any(
        i["expression"] == ["Observation.valueString"] and i["code"] == "structure" for i in issues
    ), issues
