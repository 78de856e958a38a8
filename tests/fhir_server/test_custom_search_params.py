"""Custom SearchParameters become active when stored; `$reindex` brings existing data up to date."""

from __future__ import annotations

import uuid

from tests.fhir_server.test_rest import assert_outcome
from tests.fhir_server.test_search_http import ids


def _param(code: str, ext_url: str, status: str = "active", **extra) -> dict:  # type: ignore[no-untyped-def]
    return {
        "resourceType": "SearchParameter",
        "url": f"http://example.org/fhir/SearchParameter/{code}",
        "name": code,
        "status": status,
        "description": "eye colour from an extension",
        "code": code,
        "base": ["Patient"],
        "type": "string",
        "expression": f"Patient.extension.where(url='{ext_url}').value",
        **extra,
    }


def test_custom_parameter_and_reindex(client):
    code = f"eye-{uuid.uuid4().hex[:8]}"
    ext = f"http://example.org/{code}"
    colour = uuid.uuid4().hex[:10]
    before = client.post(
        "/Patient",
        json={"resourceType": "Patient", "extension": [{"url": ext, "valueString": colour}]},
    ).json()["id"]
    resp = client.post("/SearchParameter", json=_param(code, ext))
    assert resp.status_code == 201, resp.text
    found = client.get("/Patient", params={code: colour}).json()
    assert ids(found) == []  # stored before the parameter existed: not indexed yet
    assert not [e for e in found.get("entry", []) if e["search"]["mode"] == "outcome"]
    after = client.post(
        "/Patient",
        json={"resourceType": "Patient", "extension": [{"url": ext, "valueString": colour}]},
    ).json()["id"]
    assert ids(client.get("/Patient", params={code: colour}).json()) == [after]
    job = client.post("/Patient/$reindex")
    assert job.status_code == 200, job.text
    params = {p["name"]: list(p.values())[1] for p in job.json()["parameter"]}
    assert params["finished"] is True and params["processed"] >= 2
    assert sorted(ids(client.get("/Patient", params={code: colour}).json())) == sorted(
        [before, after]
    )
    # retiring the parameter makes it unknown again
    sp = client.get(
        "/SearchParameter", params={"url": f"http://example.org/fhir/SearchParameter/{code}"}
    ).json()
    sp_res = sp["entry"][0]["resource"]
    client.put(f"/SearchParameter/{sp_res['id']}", json={**sp_res, "status": "retired"})
    again = client.get("/Patient", params={code: colour}).json()
    assert any(e["search"]["mode"] == "outcome" for e in again["entry"])


def test_bad_custom_parameters_refused(client):
    shadow = _param(
        "birthdate", "http://example.org/x", type="date", expression="Patient.birthDate"
    )
    assert_outcome(client.post("/SearchParameter", json=shadow), 422)
    bad = _param(
        f"bad-{uuid.uuid4().hex[:6]}", "http://example.org/x", expression="Patient.name.where("
    )
    assert_outcome(client.post("/SearchParameter", json=bad), 400)
    draft = _param(
        f"draft-{uuid.uuid4().hex[:6]}",
        "http://example.org/x",
        status="draft",
        expression="Patient.(",
    )
    assert (
        client.post("/SearchParameter", json=draft).status_code == 201
    )  # drafts are stored, not used


def test_async_reindex_and_progress(client):
    resp = client.post("/Observation/$reindex", headers={"Prefer": "respond-async"})
    assert resp.status_code == 202
    job_id = resp.json()["parameter"][0]["valueString"]
    assert job_id in resp.headers["content-location"]
    import time

    for _ in range(100):
        status = client.get("/$reindex", params={"job": job_id}).json()
        if {p["name"]: list(p.values())[1] for p in status["parameter"]}["finished"]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("reindex job did not finish")
