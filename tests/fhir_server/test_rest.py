"""FHIR REST interactions over HTTP against a running Hearth (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

import orjson

FHIR = "application/fhir+json"


def patient(**extra) -> dict:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": tag}],
        "name": [{"family": "Okafor", "given": ["Ada"]}],
        "gender": "female",
        "birthDate": "1984-03-02",
    }
    body.update(extra)
    return body


def assert_outcome(resp, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(FHIR)
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"], body
    if code is not None:
        assert body["issue"][0]["code"] == code, body
    return body


# -- create / read / vread -----------------------------------------------------------------
def test_create_assigns_id_and_version(client):
    resp = client.post("/Patient", json=patient(id="ignored-client-id"))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["id"] != "ignored-client-id"
    assert body["meta"]["versionId"] == "1"
    assert resp.headers["etag"] == 'W/"1"'
    assert resp.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert "last-modified" in resp.headers


def test_read_and_conditional_read(client):
    created = client.post("/Patient", json=patient()).json()
    resp = client.get(f"/Patient/{created['id']}")
    assert resp.status_code == 200
    assert resp.json() == created
    assert resp.headers["etag"] == 'W/"1"'
    # no cache may keep or reuse a health record (the SMART app once showed a stale Task)
    assert resp.headers["cache-control"] == "no-store"
    again = client.get(f"/Patient/{created['id']}", headers={"If-None-Match": 'W/"1"'})
    assert again.status_code == 304
    assert again.content == b""
    modified = client.get(
        f"/Patient/{created['id']}", headers={"If-Modified-Since": resp.headers["last-modified"]}
    )
    assert modified.status_code == 304


def test_read_unknown_is_404_outcome(client):
    assert_outcome(client.get(f"/Patient/{uuid.uuid4()}"), 404, "not-found")


def test_unknown_type_is_404(client):
    assert_outcome(client.get("/Patientx/1"), 404)
    assert_outcome(client.post("/Patientx", json={"resourceType": "Patientx"}), 404)


def test_vread(client):
    created = client.post("/Patient", json=patient()).json()
    pid = created["id"]
    client.put(f"/Patient/{pid}", json={**created, "gender": "other"})
    v1 = client.get(f"/Patient/{pid}/_history/1")
    assert v1.status_code == 200 and v1.json()["gender"] == "female"
    v2 = client.get(f"/Patient/{pid}/_history/2")
    assert v2.json()["gender"] == "other" and v2.headers["etag"] == 'W/"2"'
    assert_outcome(client.get(f"/Patient/{pid}/_history/9"), 404)
    assert_outcome(client.get(f"/Patient/{pid}/_history/x"), 404)


# -- update ----------------------------------------------------------------------------------
def test_update_and_update_as_create(client):
    pid = f"p-{uuid.uuid4().hex[:10]}"
    first = client.put(f"/Patient/{pid}", json=patient(id=pid))
    assert first.status_code == 201, first.text
    assert first.headers["location"].endswith(f"/Patient/{pid}/_history/1")
    second = client.put(f"/Patient/{pid}", json={**first.json(), "gender": "male"})
    assert second.status_code == 200
    assert second.json()["meta"]["versionId"] == "2"


def test_noop_update_creates_no_version(client):
    created = client.post("/Patient", json=patient()).json()
    same = client.put(f"/Patient/{created['id']}", json=created)
    assert same.status_code == 200
    assert same.json()["meta"]["versionId"] == "1"
    history = client.get(f"/Patient/{created['id']}/_history").json()
    assert history["total"] == 1


def test_update_checks_id_and_type(client):
    created = client.post("/Patient", json=patient()).json()
    pid = created["id"]
    assert_outcome(client.put(f"/Patient/{pid}", json={**created, "id": "other"}), 400, "invalid")
    no_id = {k: v for k, v in created.items() if k != "id"}
    assert_outcome(client.put(f"/Patient/{pid}", json=no_id), 400)
    assert_outcome(client.put(f"/Patient/{pid}", json={**created, "resourceType": "Group"}), 400)


def test_if_match(client):
    created = client.post("/Patient", json=patient()).json()
    pid = created["id"]
    stale = client.put(
        f"/Patient/{pid}", json=created | {"gender": "male"}, headers={"If-Match": 'W/"7"'}
    )
    assert_outcome(stale, 412, "conflict")
    ok = client.put(
        f"/Patient/{pid}", json=created | {"gender": "male"}, headers={"If-Match": 'W/"1"'}
    )
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'


# -- delete ----------------------------------------------------------------------------------
def test_delete_then_gone_and_history_kept(client):
    created = client.post("/Patient", json=patient()).json()
    pid = created["id"]
    resp = client.delete(f"/Patient/{pid}")
    assert resp.status_code == 200
    assert resp.headers["etag"] == 'W/"2"'
    assert_outcome(client.get(f"/Patient/{pid}"), 410, "deleted")
    assert client.get(f"/Patient/{pid}/_history/1").status_code == 200
    assert_outcome(client.get(f"/Patient/{pid}/_history/2"), 410)
    history = client.get(f"/Patient/{pid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]
    again = client.delete(f"/Patient/{pid}")
    assert again.status_code == 200
    revived = client.put(f"/Patient/{pid}", json=created)
    assert revived.status_code == 201 and revived.json()["meta"]["versionId"] == "3"


def test_delete_unknown_is_not_an_error(client):
    assert client.delete(f"/Patient/{uuid.uuid4()}").status_code == 200


# -- history -------------------------------------------------------------------------------
def test_history_paging_and_since(client):
    created = client.post("/Patient", json=patient()).json()
    pid = created["id"]
    for gender in ["male", "other", "unknown", "female"]:
        created = client.put(f"/Patient/{pid}", json={**created, "gender": gender}).json()
    page = client.get(f"/Patient/{pid}/_history", params={"_count": 2}).json()
    assert page["type"] == "history" and page["total"] == 5
    versions = [e["resource"]["meta"]["versionId"] for e in page["entry"]]
    while nxt := next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None):
        page = httpx_get(client, nxt)
        versions += [e["resource"]["meta"]["versionId"] for e in page["entry"]]
    assert versions == ["5", "4", "3", "2", "1"]
    v3 = client.get(f"/Patient/{pid}/_history/3").json()
    since = client.get(
        f"/Patient/{pid}/_history", params={"_since": v3["meta"]["lastUpdated"]}
    ).json()
    assert [e["resource"]["meta"]["versionId"] for e in since["entry"]] == ["5", "4", "3"]
    assert_outcome(client.get(f"/Patient/{pid}/_history", params={"_since": "yesterday"}), 400)


def httpx_get(client, url: str) -> dict:  # type: ignore[no-untyped-def]
    resp = client.get(url)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_type_and_system_history(client):
    created = client.post(
        "/Practitioner", json={"resourceType": "Practitioner", "active": True}
    ).json()
    type_hist = client.get("/Practitioner/_history", params={"_count": 5}).json()
    assert type_hist["entry"][0]["resource"]["id"] == created["id"]
    assert all(
        e["resource"]["resourceType"] == "Practitioner"
        for e in type_hist["entry"]
        if "resource" in e
    )
    system = client.get("/_history", params={"_count": 1}).json()
    assert system["entry"][0]["resource"]["id"] == created["id"]
    assert any(lk["relation"] == "next" for lk in system["link"])
    assert_outcome(client.get("/_history", params={"_page": "garbage!"}), 400)


# -- bad input -----------------------------------------------------------------------------
def test_malformed_json_is_400(client):
    resp = client.post("/Patient", content=b"{not json", headers={"Content-Type": FHIR})
    assert_outcome(resp, 400, "invalid")
    assert_outcome(client.post("/Patient", content=b"[1,2]", headers={"Content-Type": FHIR}), 400)
    assert_outcome(client.post("/Patient", content=b"", headers={"Content-Type": FHIR}), 400)


def test_invalid_resource_points_at_element(client):
    resp = client.post("/Patient", json=patient(birthDate="1984-13-45"))
    body = assert_outcome(resp, 400)
    assert any("Patient.birthDate" in e for i in body["issue"] for e in i.get("expression", []))
    resp = client.post("/Patient", json=patient(colour="blue"))
    body = assert_outcome(resp, 400)
    assert any("colour" in str(i) for i in body["issue"])


def test_wrong_resource_type_for_url(client):
    assert_outcome(client.post("/Patient", json={"resourceType": "Observation"}), 400)


def test_bad_id_in_url(client):
    assert_outcome(client.get("/Patient/" + "x" * 65), 404)
    assert_outcome(client.put("/Patient/bad_id!", json=patient(id="bad_id!")), 404)


def test_oversized_body_is_413(client):
    big = patient(
        text={
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">'
            + "a" * (9 * 1024 * 1024)
            + "</div>",
        }
    )
    assert_outcome(
        client.post("/Patient", content=orjson.dumps(big), headers={"Content-Type": FHIR}), 413
    )


def test_unknown_formats_are_415_and_406(client):
    """XML is read and written (tests/fhir_server/test_xml_http.py); other formats are not."""
    assert_outcome(client.get("/metadata", params={"_format": "turtle"}), 406)
    assert client.get("/metadata", params={"_format": "json"}).status_code == 200
    assert_outcome(
        client.post("/Patient", content=b"x", headers={"Content-Type": "text/plain"}), 415
    )


def test_method_not_allowed(client):
    created = client.post("/Patient", json=patient()).json()
    assert_outcome(client.post(f"/Patient/{created['id']}", json=created), 405)


def test_unknown_endpoint_is_outcome(client):
    assert_outcome(client.get("/Patient/1/2/3/4"), 404)


# -- Prefer, _pretty -------------------------------------------------------------------------
def test_prefer_return(client):
    minimal = client.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"]
    oo = client.post("/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert oo.status_code == 201 and oo.json()["resourceType"] == "OperationOutcome"


def test_pretty(client):
    created = client.post("/Patient", json=patient()).json()
    pretty = client.get(f"/Patient/{created['id']}", params={"_pretty": "true"})
    assert b"\n  " in pretty.content
    assert b"\n" not in client.get(f"/Patient/{created['id']}").content


# -- patch ---------------------------------------------------------------------------------
def test_json_patch(client):
    created = client.post("/Patient", json=patient()).json()
    ops = [
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "add", "path": "/active", "value": True},
    ]
    resp = client.patch(
        f"/Patient/{created['id']}",
        content=orjson.dumps(ops),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["gender"] == "male" and resp.json()["active"] is True
    assert resp.json()["meta"]["versionId"] == "2"
    bad = [{"op": "replace", "path": "/gender", "value": "robot"}]
    assert_outcome(
        client.patch(
            f"/Patient/{created['id']}",
            content=orjson.dumps(bad),
            headers={"Content-Type": "application/json-patch+json"},
        ),
        400,
    )
    missing = [{"op": "remove", "path": "/nothing/here"}]
    assert_outcome(
        client.patch(
            f"/Patient/{created['id']}",
            content=orjson.dumps(missing),
            headers={"Content-Type": "application/json-patch+json"},
        ),
        422,
    )
    change_id = [{"op": "replace", "path": "/id", "value": "other"}]
    assert_outcome(
        client.patch(
            f"/Patient/{created['id']}",
            content=orjson.dumps(change_id),
            headers={"Content-Type": "application/json-patch+json"},
        ),
        400,
    )


def test_fhirpath_patch(client):
    created = client.post("/Patient", json=patient()).json()
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.birthDate"},
                    {"name": "value", "valueDate": "1990-01-01"},
                ],
            }
        ],
    }
    resp = client.patch(f"/Patient/{created['id']}", json=params, headers={"If-Match": 'W/"1"'})
    assert resp.status_code == 200, resp.text
    assert resp.json()["birthDate"] == "1990-01-01"
    stale = client.patch(f"/Patient/{created['id']}", json=params, headers={"If-Match": 'W/"1"'})
    assert_outcome(stale, 412)


# -- conditional interactions -------------------------------------------------------------
def test_conditional_create(client):
    body = patient()
    ident = body["identifier"][0]
    header = {"If-None-Exist": f"identifier={ident['system']}|{ident['value']}"}
    first = client.post("/Patient", json=body, headers=header)
    assert first.status_code == 201
    second = client.post("/Patient", json=body, headers=header)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    # two resources now share a family name, so a criterion matching both is a 412
    client.post("/Patient", json=patient(name=[{"family": body["identifier"][0]["value"]}]))
    client.post("/Patient", json=patient(name=[{"family": body["identifier"][0]["value"]}]))
    assert_outcome(
        client.post("/Patient", json=body, headers={"If-None-Exist": f"family={ident['value']}"}),
        412,
    )


def test_conditional_update_and_delete(client):
    body = patient()
    ident = body["identifier"][0]
    crit = {"identifier": f"{ident['system']}|{ident['value']}"}
    created = client.put("/Patient", params=crit, json=body)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    updated = client.put("/Patient", params=crit, json={**body, "gender": "male"})
    assert updated.status_code == 200 and updated.json()["id"] == pid
    assert updated.json()["meta"]["versionId"] == "2"
    deleted = client.delete("/Patient", params=crit)
    assert deleted.status_code == 200
    assert_outcome(client.get(f"/Patient/{pid}"), 410)


# -- $validate and metadata -----------------------------------------------------------------
def test_validate_operation(client):
    ok = client.post("/Patient/$validate", json=patient())
    assert ok.status_code == 200 and ok.json()["issue"][0]["severity"] == "information"
    bad = client.post("/Patient/$validate", json=patient(gender="robot")).json()
    assert bad["issue"][0]["severity"] == "error"
    created = client.post("/Patient", json=patient()).json()
    inst = client.get(f"/Patient/{created['id']}/$validate")
    assert inst.status_code == 200 and inst.json()["issue"][0]["severity"] == "information"
    assert_outcome(client.post("/Patient/$nosuch", json=patient()), 404)


def test_capability_statement(client):
    cs = client.get("/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    rest = cs["rest"][0]
    patient_cs = next(r for r in rest["resource"] if r["type"] == "Patient")
    codes = {i["code"] for i in patient_cs["interaction"]}
    assert {"read", "vread", "update", "patch", "delete", "create", "search-type"} <= codes
    assert any(p["name"] == "identifier" for p in patient_cs["searchParam"])
    assert any(o["name"] == "validate" for o in patient_cs["operation"])
    assert {"transaction", "batch"} <= {i["code"] for i in rest["interaction"]}
