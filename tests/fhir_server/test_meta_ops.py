"""$meta, $meta-add, $meta-delete over HTTP on both databases (R4 resource-operations.html):
sets of tags / security labels (system + code) and profiles, no new version, the search index
following, the in-use lists of a type and of the server, bad inputs, and scopes."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.fhir_server.auth.smart import client_token

SYS = "http://example.org/tags"
PROFILE = "http://example.org/StructureDefinition/my-patient"


def _meta(resp: httpx.Response) -> dict:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["resourceType"] == "Parameters"
    (param,) = body["parameter"]
    assert param["name"] == "return"
    return param["valueMeta"]


def _params(meta: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": meta}]}


@pytest.fixture
def patient(client: httpx.Client) -> dict:
    tag = uuid.uuid4().hex
    resp = client.post(
        "/Patient",
        json={
            "resourceType": "Patient",
            "meta": {"tag": [{"system": SYS, "code": f"first-{tag}"}]},
            "name": [{"family": "Meta"}],
        },
    )
    assert resp.status_code == 201, resp.text
    return {**resp.json(), "tag": tag}


def test_meta_add_and_delete_keep_the_version(client, patient):
    pid, tag = patient["id"], patient["tag"]
    assert _meta(client.get(f"/Patient/{pid}/$meta"))["tag"] == [
        {"system": SYS, "code": f"first-{tag}"}
    ]
    add = {
        # the first again with another display: tags are sets by system + code
        "tag": [
            {"system": SYS, "code": f"first-{tag}", "display": "again"},
            {"system": SYS, "code": f"lost-{tag}", "display": "Paper record lost"},
        ],
        "security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
        ],
        "profile": [PROFILE],
    }
    got = _meta(client.post(f"/Patient/{pid}/$meta-add", json=_params(add)))
    assert [t["code"] for t in got["tag"]] == [f"first-{tag}", f"lost-{tag}"]
    assert got["security"][0]["code"] == "R" and got["profile"] == [PROFILE]
    assert got["versionId"] == "1"  # "does not cause the version of the resource to change"
    read = client.get(f"/Patient/{pid}").json()
    assert read["meta"]["versionId"] == "1"
    assert read["meta"]["lastUpdated"] == patient["meta"]["lastUpdated"]
    assert read["meta"]["tag"] == got["tag"]
    history = client.get(f"/Patient/{pid}/_history").json()
    assert len(history["entry"]) == 1
    assert history["entry"][0]["resource"]["meta"]["profile"] == [PROFILE]
    # the search index follows
    found = client.get("/Patient", params={"_tag": f"{SYS}|lost-{tag}"}).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [pid]
    gone = {"tag": [{"system": SYS, "code": f"lost-{tag}"}], "profile": [PROFILE]}
    got = _meta(client.post(f"/Patient/{pid}/$meta-delete", json=_params(gone)))
    assert got["tag"] == [{"system": SYS, "code": f"first-{tag}"}]
    assert "profile" not in got and got["security"][0]["code"] == "R"
    found = client.get("/Patient", params={"_tag": f"{SYS}|lost-{tag}"}).json()
    assert not found.get("entry") or all(e["search"]["mode"] == "outcome" for e in found["entry"])
    assert client.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "1"


def test_type_and_system_meta_list_what_is_in_use(client, patient):
    tag = patient["tag"]
    obs = client.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "meta": {"tag": [{"system": SYS, "code": f"obs-{tag}"}], "profile": [PROFILE]},
            "status": "final",
            "code": {"text": "x"},
        },
    )
    assert obs.status_code == 201, obs.text
    of_patients = _meta(client.get("/Patient/$meta"))
    assert {"system": SYS, "code": f"first-{tag}"} in of_patients["tag"]
    assert {"system": SYS, "code": f"obs-{tag}"} not in of_patients["tag"]
    everywhere = _meta(client.post("/$meta", json={"resourceType": "Parameters"}))
    assert {"system": SYS, "code": f"first-{tag}"} in everywhere["tag"]
    assert {"system": SYS, "code": f"obs-{tag}"} in everywhere["tag"]
    assert PROFILE in everywhere["profile"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"resourceType": "Parameters"}, 400, "invalid"),  # no meta
        (_params({"tag": "not-a-list"}), 400, "invalid"),
        (_params({"tag": [{"system": SYS}]}), 400, "invalid"),  # no code
        (_params({"profile": [7]}), 400, "invalid"),
        (
            {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueString": "x"}]},
            400,
            "invalid",
        ),
        (
            _params(
                {
                    "security": [
                        {
                            "system": "http://hearth.local/fhir/CodeSystem/security",
                            "code": "unverified-ai",
                        }
                    ]
                }
            ),
            403,
            "forbidden",
        ),
    ],
)
def test_bad_meta_inputs(client, patient, body, status, code):
    before = client.get(f"/Patient/{patient['id']}").json()
    resp = client.post(f"/Patient/{patient['id']}/$meta-add", json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["issue"][0]["code"] == code
    assert client.get(f"/Patient/{patient['id']}").json() == before  # nothing half-written


def test_unknown_deleted_and_get(client, patient):
    meta = _params({"tag": [{"system": SYS, "code": "x"}]})
    assert client.post("/Patient/no-such-id/$meta-add", json=meta).status_code == 404
    assert client.get("/Patient/no-such-id/$meta").status_code == 404
    assert client.delete(f"/Patient/{patient['id']}").status_code in (200, 204)
    assert client.post(f"/Patient/{patient['id']}/$meta-delete", json=meta).status_code == 410
    resp = client.get(f"/Patient/{patient['id']}/$meta-add")
    assert resp.status_code == 405  # it changes state: POST only


def test_scopes(server, patient):
    pid, tag = patient["id"], patient["tag"]
    meta = _params({"tag": [{"system": SYS, "code": "y"}]})
    read_only = client_token(server, "system/Patient.rs")
    with httpx.Client(base_url=server.fhir, headers=read_only, timeout=60) as c:
        assert _meta(c.get(f"/Patient/{pid}/$meta"))["tag"][0]["code"] == f"first-{tag}"
        assert c.post(f"/Patient/{pid}/$meta-add", json=meta).status_code == 403
        # only the types it may read are counted
        listed = _meta(c.get("/$meta"))
        assert all(not t["code"].startswith("obs-") for t in listed.get("tag", []))
    other = client_token(server, "system/Observation.rs")
    with httpx.Client(base_url=server.fhir, headers=other, timeout=60) as c:
        assert c.get(f"/Patient/{pid}/$meta").status_code == 403
        assert c.get("/Patient/$meta").status_code == 403
    # a patient-context token learns nothing of another patient's labels
    mine = client_token(server, "patient/*.rs", patient="someone-else")
    with httpx.Client(base_url=server.fhir, headers=mine, timeout=60) as c:
        assert c.get(f"/Patient/{pid}/$meta").status_code == 404
        listed = _meta(c.get("/Patient/$meta"))
        assert {"system": SYS, "code": f"first-{tag}"} not in listed.get("tag", [])
