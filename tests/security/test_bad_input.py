"""Bad input at the HTTP edge gets a 4xx OperationOutcome with an issue code, never a 500
(issue 14): NUL characters, integers past the columns' ranges, instants past the calendar's ends,
deep nesting, and one bad entry in a batch. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _outcome(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code, body
    return body


def _patient(client: httpx.Client) -> str:
    resp = client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Okoro"}]})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x1f"])
def test_control_character_in_a_body_is_400_value(client, char):
    body = {"resourceType": "Patient", "name": [{"family": f"Ok{char}oro"}]}
    out = _outcome(client.post("/Patient", json=body), 400, "value")
    assert out["issue"][0]["expression"] == ["Patient.name[0].family"]
    pid = _patient(client)
    out = _outcome(client.put(f"/Patient/{pid}", json={**body, "id": pid}), 400, "value")
    # $validate reports the same issue without storing anything
    check = client.post("/Patient/$validate", json=body)
    assert check.status_code in (200, 400)
    assert any(i["code"] == "value" for i in check.json()["issue"])


def test_tab_cr_lf_are_still_allowed(client):
    body = {"resourceType": "Patient", "name": [{"text": "a\tb\r\nc"}]}
    assert client.post("/Patient", json=body).status_code == 201


@pytest.mark.parametrize(
    "path,params",
    [
        ("/Patient", {"name": "a\x00b"}),
        ("/Patient", {"_id": "a\x00b"}),
        ("/Patient", {"identifier": "sys|a\x00b"}),
        ("/ValueSet", {"url": "http://a\x00b"}),
        ("/Patient", {"na\x00me": "x"}),
        ("/Patient/_history", {"_since": "2020\x00"}),
        ("/CodeSystem/$lookup", {"system": "http://loinc.org", "code": "a\x00"}),
    ],
)
def test_nul_in_a_query_is_400(client, path, params):
    _outcome(client.get(path, params=params), 400, "invalid")


def test_nul_in_conditional_write_criteria_is_400(client):
    patient = {"resourceType": "Patient"}
    _outcome(client.put("/Patient", params={"identifier": "a\x00b"}, json=patient), 400, "invalid")
    _outcome(client.delete("/Patient", params={"identifier": "a\x00b"}), 400, "invalid")
    form = client.post(
        "/Patient/_search",
        content="name=a%00b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _outcome(form, 400, "invalid")


def test_nul_without_a_token_is_still_401(server):
    resp = httpx.get(f"{server.fhir}/Patient", params={"name": "a\x00"})
    assert resp.status_code == 401


@pytest.mark.parametrize("vid", ["2147483648", "99999999999999999999999", "9" * 5000, "١"])
def test_version_past_the_integer_column_is_404(client, vid):
    pid = _patient(client)
    _outcome(client.get(f"/Patient/{pid}/_history/{vid}"), 404, "not-found")


@pytest.mark.parametrize("value", ["9223372036854775808", "99999999999999999999999", "9" * 5000])
def test_audit_numbers_past_bigint_are_400_or_404(client, value):
    _outcome(client.get("/$audit-log", params={"after": value}), 400, "invalid")
    _outcome(client.get("/AuditEvent", params={"_page": value}), 400, "invalid")
    _outcome(client.get(f"/AuditEvent/audit-{value}"), 404, "not-found")


@pytest.mark.parametrize("value", ["99999999999999999999999", "9" * 5000, "²"])
def test_count_and_page_past_any_range(client, value):
    for path in ("/Patient", "/Patient/_history", "/_history"):
        resp = client.get(path, params={"_count": value})
        if value.isascii():
            assert resp.status_code == 200, resp.text  # capped at the largest page
        else:
            _outcome(resp, 400, "invalid")
        _outcome(client.get(path, params={"_page": value}), 400, "invalid")


def test_since_at_the_ends_of_the_calendar(client):
    pid = _patient(client)
    late = client.get(f"/Patient/{pid}/_history", params={"_since": "9999-12-31T23:59:59-14:00"})
    assert late.status_code == 200, late.text
    assert late.json()["total"] == 0
    early = client.get(f"/Patient/{pid}/_history", params={"_since": "0001-01-01T00:00:00+14:00"})
    assert early.status_code == 200, early.text
    assert early.json()["total"] == 1
    for path in ("/_history", "/Patient/_history"):
        resp = client.get(path, params={"_since": "9999-12-31T23:59:59-14:00"})
        assert resp.status_code == 200, resp.text
        assert resp.json().get("entry", []) == []


def _nested_extensions(depth: int) -> bytes:
    open_ = '{"url":"http://example.org/x","extension":[' * depth
    leaf = '{"url":"http://example.org/x","valueString":"a"}'
    return ('{"resourceType":"Patient","extension":[' + open_ + leaf + "]}" * depth + "]}").encode()


@pytest.mark.parametrize("depth", [150, 300, 400, 2000])
def test_deeply_nested_extensions_are_400(client, depth):
    raw = _nested_extensions(depth)
    for path in ("/Patient", "/Patient/$validate"):
        resp = client.post(path, content=raw, headers=FHIR_JSON)
        assert resp.status_code == 400, resp.text
        assert resp.json()["issue"][0]["code"] in ("structure", "invalid")
    bundle = (
        b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST",'
        b'"url":"Patient"},"resource":' + raw + b"}]}"
    )
    resp = client.post("/", content=bundle, headers=FHIR_JSON)
    assert resp.status_code == 400, resp.text


def test_moderately_nested_extensions_are_stored(client):
    resp = client.post("/Patient", content=_nested_extensions(40), headers=FHIR_JSON)
    assert resp.status_code == 201, resp.text
    assert client.get(f"/Patient/{resp.json()['id']}").status_code == 200


def test_one_bad_entry_does_not_spoil_a_batch(client):
    pid = _patient(client)
    good_id = f"good-{uuid.uuid4().hex[:8]}"
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "request": {"method": "POST", "url": "Patient"},
                "resource": {"resourceType": "Patient", "name": [{"family": "a\x00"}]},
            },
            {"request": {"method": "GET", "url": f"Patient/{pid}/_history/2147483648"}},
            {"request": {"method": "GET", "url": "Patient?name=a%00"}},
            {"request": {"method": "GET", "url": "_history?_since=9999-12-31T23:59:59-14:00"}},
            {"request": {"method": "GET", "url": "http://[/Patient"}},  # urlsplit refuses it
            {
                "request": {"method": "PUT", "url": f"Patient/{good_id}"},
                "resource": {"resourceType": "Patient", "id": good_id},
            },
        ],
    }
    resp = client.post("/", json=bundle)
    assert resp.status_code == 200, resp.text
    statuses = [e["response"]["status"].split()[0] for e in resp.json()["entry"]]
    # entry 3 names no resource type: its own 400, not the whole batch's
    assert statuses == ["400", "404", "400", "400", "400", "201"]
    for entry in resp.json()["entry"][:5]:
        assert entry["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{good_id}").status_code == 200
