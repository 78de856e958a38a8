"""Profile validation over HTTP (FHIR R4 profiling.html, resource-operation-validate): ``$validate``
with ``profile`` (query or Parameters) and a resource's own ``meta.profile``, against the R4 core
profiles shipped with Hearth and StructureDefinitions stored on the server, on SQLite and
PostgreSQL. The issues carry FHIRPath locations, as HAPI's do."""

from __future__ import annotations

import copy
import gzip
import io
import json
import tarfile
import uuid
from pathlib import Path

import httpx
import pytest

from resources.validation import core_profiles
from tests.conftest import BACKENDS
from tests.fhir_server.test_cli import hearth
from tests.servers import database_url, start_server
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

# The R4 examples that declare a core profile shipped with Hearth: the twelve vital signs, six
# ValueSets (shareablevalueset), two CodeSystems (shareablecodesystem), one cqf-questionnaire
CORE_URLS = {p["url"] for p in core_profiles()}
CORE_EXAMPLES = sorted(
    p.name
    for p in EXAMPLES.glob("*.json")
    if set(json.loads(p.read_text()).get("meta", {}).get("profile", ())) & CORE_URLS
)


def test_which_examples_declare_core_profiles() -> None:
    assert len(CORE_EXAMPLES) == 21, CORE_EXAMPLES
    assert len([n for n in CORE_EXAMPLES if VITALS in (EXAMPLES / n).read_text()]) == 12


@pytest.mark.parametrize("name", CORE_EXAMPLES)
def test_the_r4_examples_conform_to_the_core_profiles_they_declare(
    client: httpx.Client, name: str
) -> None:
    resource = example(name)
    issues = validate(client, resource)
    assert errors(issues) == [], issues
    if VITALS in resource["meta"]["profile"]:
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


# -- the core profiles as stored resources, a user-loaded IG package, enforcement on write ---
US_CORE_PATIENT = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"


def us_core_package(tmp: Path) -> Path:
    """A FHIR NPM package (package/package.json and one file per resource, as the IG publisher
    writes them) of the US Core 5.0.1 StructureDefinitions, with an example and a README that
    `hearth load` must skip."""
    with gzip.open(shared_path("fhir", "ig", "uscore-v5.0.1-structuredefinitions.json.gz")) as fh:
        definitions = json.load(fh)
    path = tmp / "hl7.fhir.us.core-5.0.1.tgz"
    manifest = {"name": "hl7.fhir.us.core", "version": "5.0.1", "fhirVersions": ["4.0.1"]}
    files = {"package/package.json": manifest}
    for sd in definitions:
        files[f"package/StructureDefinition-{sd['id']}.json"] = sd
    files["package/example/Patient-example.json"] = {"resourceType": "Patient", "id": "x"}
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        readme = tarfile.TarInfo("package/other/README.md")
        readme.size = 2
        tar.addfile(readme, io.BytesIO(b"hi"))
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def upgraded(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A Hearth with HEARTH_ENFORCE_PROFILES on a database made by `hearth db upgrade` (run
    twice) into which `hearth load` has loaded the US Core package."""
    tmp = tmp_path_factory.mktemp(f"profiles-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    env = {"HEARTH_DATABASE_URL": url}
    first = hearth("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    assert "R4 core profiles: 44 stored" in first.stdout, first.stdout
    again = hearth("db", "upgrade", env=env)
    assert "R4 core profiles: 0 stored" in again.stdout, again.stdout
    not_a_package = tmp / "broken.tgz"
    not_a_package.write_bytes(b"not gzip")
    refused = hearth("load", "--quiet", str(not_a_package), env=env)
    assert refused.returncode == 1 and "not a FHIR package" in refused.stdout, refused.stdout
    loaded = hearth("load", "--quiet", str(us_core_package(tmp)), env=env)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert loaded.stdout.startswith("loaded: created 8, skipped 1, failed 0"), loaded.stdout
    running = start_server(request.param, url, enforce_profiles=True)
    yield running
    running.stop()
    cleanup()


@pytest.fixture
def enforcing(upgraded):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=upgraded.fhir, headers=upgraded.headers, timeout=60) as c:
        yield c


def test_the_core_profiles_are_stored_resources(enforcing: httpx.Client) -> None:
    read = enforcing.get("/StructureDefinition/vitalsigns")
    assert read.status_code == 200, read.text
    assert read.json()["url"] == VITALS and read.json()["snapshot"]["element"]
    found = enforcing.get("/StructureDefinition", params={"url": VITALS}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["vitalsigns"]
    everything = enforcing.get(
        "/StructureDefinition", params={"_count": "0", "_total": "accurate"}
    ).json()
    assert everything["total"] == 44 + 8  # the core profiles and the US Core package


def test_a_profile_from_a_loaded_package_is_used(enforcing: httpx.Client) -> None:
    stored = enforcing.get("/StructureDefinition", params={"url": US_CORE_PATIENT}).json()
    assert [e["resource"]["id"] for e in stored["entry"]] == ["us-core-patient"]
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": "1"}],
        "name": [{"family": "Shaw", "given": ["Amy"]}],
        "gender": "female",
        "extension": [
            {
                "url": US_CORE_RACE,
                "extension": [
                    {
                        "url": "ombCategory",
                        "valueCoding": {
                            "system": "urn:oid:2.16.840.1.113883.6.238",
                            "code": "2106-3",
                        },
                    },
                    {"url": "text", "valueString": "White"},
                ],
            }
        ],
    }
    assert errors(validate(enforcing, patient, US_CORE_PATIENT)) == []
    broken = copy.deepcopy(patient)
    del broken["identifier"]  # 1..* in US Core
    del broken["extension"][0]["extension"][1]  # the race extension's text is 1..1
    broken["telecom"] = [{"value": "555"}]  # telecom.system is 1..1
    issues = errors(validate(enforcing, broken, US_CORE_PATIENT))
    assert where(issues) == {
        "Patient.identifier",
        "Patient.extension[0].extension",
        "Patient.telecom[0].system",
    }, issues


def test_a_stored_profile_is_found_by_url(enforcing: httpx.Client) -> None:
    url = f"http://example.org/StructureDefinition/{uuid.uuid4().hex[:10]}"
    profile = enforcing.get("/StructureDefinition/bodyweight").json()
    profile = {k: v for k, v in profile.items() if k not in ("id", "meta")}
    profile["url"] = url
    for element in profile["snapshot"]["element"]:
        if element["id"] == "Observation.note":
            element["min"] = 1  # this site requires a note on every body weight
    created = enforcing.post("/StructureDefinition", json=profile)
    assert created.status_code == 201, created.text
    obs = vital_sign()
    assert where(errors(validate(enforcing, obs, url))) == {"Observation.note"}
    obs["note"] = [{"text": "after breakfast"}]
    assert errors(validate(enforcing, obs, url)) == []


def test_a_differential_only_profile_gets_its_snapshot_generated(enforcing: httpx.Client) -> None:
    """A StructureDefinition stored with only a differential, on a stored base (US Core
    Patient, loaded from the package): $validate and enforcement use its generated snapshot."""
    url = f"http://example.org/StructureDefinition/{uuid.uuid4().hex[:10]}"
    profile = {
        "resourceType": "StructureDefinition",
        "url": url,
        "name": "BornPatient",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": US_CORE_PATIENT,
        "derivation": "constraint",
        "differential": {
            "element": [
                {"id": "Patient", "path": "Patient"},
                {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1},
                {"id": "Patient.name.given", "path": "Patient.name.given", "min": 1},
            ]
        },
    }
    created = enforcing.post("/StructureDefinition", json=profile)
    assert created.status_code == 201, created.text
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": "1"}],
        "name": [{"family": "Shaw", "given": ["Amy"]}],
        "gender": "female",
        "birthDate": "1990-02-03",
    }
    assert errors(validate(enforcing, patient, url)) == []
    broken = copy.deepcopy(patient)
    del broken["birthDate"]  # this profile's own rule
    del broken["name"][0]["given"]  # inside a datatype the base does not expand
    del broken["identifier"]  # US Core's rule, inherited from the base's snapshot
    assert where(errors(validate(enforcing, broken, url))) == {
        "Patient.birthDate",
        "Patient.name[0].given",
        "Patient.identifier",
    }
    broken["meta"] = {"profile": [url]}
    refused = enforcing.post("/Patient", json=broken)
    assert refused.status_code == 422, refused.text
    patient["meta"] = {"profile": [url]}
    assert enforcing.post("/Patient", json=patient).status_code == 201
    # a differential on a base this server does not know: said, not guessed
    orphan = copy.deepcopy(profile)
    orphan["url"] = url + "-orphan"
    orphan["baseDefinition"] = "http://example.org/StructureDefinition/nowhere"
    assert enforcing.post("/StructureDefinition", json=orphan).status_code == 201
    issues = errors(validate(enforcing, patient, orphan["url"]))
    assert [i["code"] for i in issues] == ["not-supported"], issues
    assert "http://example.org/StructureDefinition/nowhere" in issues[0]["diagnostics"]


def test_snapshot_operation(enforcing: httpx.Client) -> None:
    """StructureDefinition/$snapshot (R4 OperationDefinition StructureDefinition-snapshot):
    a posted definition, one found by url, a stored one; the generated snapshot of bodyweight
    agrees with the published one on the facets the validator uses."""
    published = enforcing.get("/StructureDefinition/bodyweight").json()
    bare = {k: v for k, v in published.items() if k not in ("snapshot", "id", "meta")}
    resp = enforcing.post("/StructureDefinition/$snapshot", json=bare)
    assert resp.status_code == 200, resp.text
    generated = resp.json()
    assert generated["resourceType"] == "StructureDefinition" and generated["url"] == BODYWEIGHT

    def facets(sd: dict) -> dict:
        return {
            e["id"]: (
                e.get("min"),
                e.get("max"),
                [t.get("code") for t in e.get("type") or ()],
                {k: v for k, v in e.items() if k.startswith(("fixed", "pattern"))},
                (e.get("binding") or {}).get("strength"),
            )
            for e in sd["snapshot"]["element"]
        }

    assert facets(generated) == facets(published)
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "definition", "resource": bare}],
    }
    assert enforcing.post("/StructureDefinition/$snapshot", json=parameters).json() == generated
    by_url = enforcing.get("/StructureDefinition/$snapshot", params={"url": BODYWEIGHT})
    assert by_url.status_code == 200 and facets(by_url.json()) == facets(published)
    stored = enforcing.get("/StructureDefinition/bodyweight/$snapshot")
    assert stored.status_code == 200 and facets(stored.json()) == facets(published)
    # what cannot be generated is said, never a 500
    orphan = {**bare, "baseDefinition": "http://example.org/StructureDefinition/nowhere"}
    refused = enforcing.post("/StructureDefinition/$snapshot", json=orphan)
    assert refused.status_code == 422, refused.text
    assert "nowhere" in refused.json()["issue"][0]["diagnostics"]
    no_diff = {k: v for k, v in bare.items() if k != "differential"}
    assert enforcing.post("/StructureDefinition/$snapshot", json=no_diff).status_code == 422
    unknown = enforcing.get("/StructureDefinition/$snapshot", params={"url": "http://x.org/no"})
    assert unknown.status_code == 404
    assert enforcing.get("/StructureDefinition/$snapshot").status_code == 400
    not_sd = enforcing.post("/StructureDefinition/$snapshot", json={"resourceType": "Patient"})
    assert not_sd.status_code == 400


def test_ordered_slicing_and_reslicing_over_http(enforcing: httpx.Client) -> None:
    """A stored differential-only profile with an ordered slicing whose first slice is
    re-sliced (``mrn/old``): order, re-slice cardinality and content are checked."""
    url = f"http://example.org/StructureDefinition/{uuid.uuid4().hex[:10]}"

    def element(el_id: str, **more: object) -> dict:
        path = ".".join(part.split(":")[0] for part in el_id.split("."))
        out: dict = {"id": el_id, "path": path, **more}
        last = el_id.rsplit(".", 1)[-1]
        if ":" in last:
            out["sliceName"] = last.split(":", 1)[1]
        return out

    by_system = {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"}
    by_use = {"discriminator": [{"type": "value", "path": "use"}], "rules": "open"}
    profile = {
        "resourceType": "StructureDefinition",
        "url": url,
        "name": "OrderedIds",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {
            "element": [
                element("Patient"),
                element("Patient.identifier", slicing={**by_system, "ordered": True}),
                element("Patient.identifier:mrn", min=1, slicing=by_use),
                element("Patient.identifier:mrn.system", min=1, fixedUri="urn:mrn"),
                element("Patient.identifier:mrn/old", min=0, max="1"),
                element("Patient.identifier:mrn/old.use", min=1, fixedCode="old"),
                element("Patient.identifier:mrn/old.period", min=1),
                element("Patient.identifier:ssn"),
                element("Patient.identifier:ssn.system", min=1, fixedUri="urn:ssn"),
            ]
        },
    }
    assert enforcing.post("/StructureDefinition", json=profile).status_code == 201
    mrn = {"system": "urn:mrn", "use": "usual", "value": "1"}
    old = {"system": "urn:mrn", "use": "old", "value": "0", "period": {"end": "2020"}}
    ssn = {"system": "urn:ssn", "value": "2"}
    ok = {"resourceType": "Patient", "identifier": [mrn, old, ssn]}
    assert errors(validate(enforcing, ok, url)) == []
    swapped = {"resourceType": "Patient", "identifier": [ssn, mrn]}
    issues = errors(validate(enforcing, swapped, url))
    assert where(issues) == {"Patient.identifier[1]"} and "out of order" in str(issues)
    two_old = {"resourceType": "Patient", "identifier": [old, {**old, "period": None}]}
    del two_old["identifier"][1]["period"]
    issues = errors(validate(enforcing, two_old, url))
    assert where(issues) == {"Patient.identifier", "Patient.identifier[1].period"}, issues
    assert "slice 'mrn/old'" in str(issues)


def test_enforcement_refuses_a_write_breaking_its_declared_profile(
    enforcing: httpx.Client,
) -> None:
    obs = vital_sign()
    obs["meta"] = {"profile": [BODYWEIGHT]}
    assert enforcing.post("/Observation", json=obs).status_code == 201
    broken = copy.deepcopy(obs)
    del broken["category"]
    refused = enforcing.post("/Observation", json=broken)
    assert refused.status_code == 422, refused.text
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Observation.category" in where(outcome["issue"]), outcome
    unknown = copy.deepcopy(obs)
    unknown["meta"] = {"profile": ["http://example.org/StructureDefinition/nowhere"]}
    refused = enforcing.post("/Observation", json=unknown)
    assert refused.status_code == 422, refused.text
    assert refused.json()["issue"][0]["code"] == "not-found"
    # an update is held to the same rule, and nothing was written by the refusals
    created = enforcing.post("/Observation", json=obs).json()
    broken["id"] = created["id"]
    assert enforcing.put(f"/Observation/{created['id']}", json=broken).status_code == 422
    assert enforcing.get(f"/Observation/{created['id']}").json()["meta"]["versionId"] == "1"


def test_without_enforcement_a_declared_profile_is_not_checked_on_write(
    client: httpx.Client,
) -> None:
    obs = vital_sign()
    del obs["category"]
    obs["meta"] = {"profile": [BODYWEIGHT, "http://example.org/StructureDefinition/nowhere"]}
    assert client.post("/Observation", json=obs).status_code == 201  # HEARTH_ENFORCE_PROFILES off


def test_invariants_of_a_profile_pass_and_fail(client: httpx.Client) -> None:
    obs = vital_sign()
    assert errors(validate(client, obs, VITALS)) == []
    del obs["valueQuantity"]  # vs-2: no component, no member: a value or a dataAbsentReason
    issues = errors(validate(client, obs, VITALS))
    assert [(i["code"], i["expression"]) for i in issues] == [("invariant", ["Observation"])]
    assert "vs-2" in issues[0]["diagnostics"]
    obs["dataAbsentReason"] = {"text": "patient refused"}
    assert errors(validate(client, obs, VITALS)) == []


def test_pattern_values_and_pattern_slicing_of_a_loaded_ig(enforcing: httpx.Client) -> None:
    us_core_bp = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure"
    bp = example("observation-example-bloodpressure.json")
    assert errors(validate(enforcing, bp, us_core_bp)) == []
    other = copy.deepcopy(bp)
    other["code"]["coding"].append({"system": "urn:local", "code": "BP"})  # more is fine
    assert errors(validate(enforcing, other, us_core_bp)) == []
    wrong = copy.deepcopy(bp)
    wrong["code"] = {"coding": [{"system": "http://loinc.org", "code": "55284-4"}]}
    wrong["component"][1]["code"]["coding"][0]["code"] = "8462-5"  # no longer diastolic
    issues = errors(validate(enforcing, wrong, us_core_bp))
    assert [i["code"] for i in issues if i["expression"] == ["Observation.code"]] == ["value"]
    slice_issue = [i for i in issues if "slice 'diastolic'" in i["diagnostics"]]
    assert slice_issue and slice_issue[0]["expression"] == ["Observation.component"], issues


def test_enforcement_holds_in_a_transaction(enforcing: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    good = vital_sign() | {"meta": {"profile": [BODYWEIGHT]}, "identifier": [{"value": tag}]}
    broken = copy.deepcopy(good)
    del broken["category"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": good, "request": {"method": "POST", "url": "Observation"}},
            {"resource": broken, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    refused = enforcing.post("/", json=bundle)
    assert refused.status_code == 422, refused.text
    assert "Observation.category" in where(refused.json()["issue"]), refused.text
    found = enforcing.get("/Observation", params={"identifier": tag}).json()
    assert not found.get("entry"), found  # all or nothing
    bundle["entry"].pop()
    assert enforcing.post("/", json=bundle).status_code == 200


def test_profiles_declared_inside_a_bundle_and_contained(client: httpx.Client) -> None:
    good = vital_sign() | {"meta": {"profile": [VITALS]}}
    broken = copy.deepcopy(good)
    del broken["category"]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:" + str(uuid.uuid4()), "resource": r} for r in (good, broken)
        ],
    }
    issues = errors(validate(client, bundle))
    assert where(issues) == {"Bundle.entry[1].resource.category"}, issues
    bundle["entry"].pop()
    assert errors(validate(client, bundle)) == []
    inner = copy.deepcopy(broken) | {"id": "w"}
    inner.pop("text")
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "weights"},
        "contained": [inner],
        "result": [{"reference": "#w"}],
    }
    issues = errors(validate(client, report))
    assert where(issues) == {"DiagnosticReport.contained[0].category"}, issues


def test_enforcement_covers_resources_inside_a_stored_bundle(enforcing: httpx.Client) -> None:
    broken = vital_sign() | {"meta": {"profile": [BODYWEIGHT]}}
    del broken["category"]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": broken}]}
    refused = enforcing.post("/Bundle", json=bundle)
    assert refused.status_code == 422, refused.text
    assert "Bundle.entry[0].resource.category" in where(refused.json()["issue"])
    broken["category"] = vital_sign()["category"]
    assert enforcing.post("/Bundle", json=bundle).status_code == 201
