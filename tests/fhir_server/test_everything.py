"""$everything over HTTP on both databases: Patient/[id], Patient (type level) and
Encounter/[id] (R4 patient-operation-everything.html, encounter-operation-everything.html):
the compartment's members, the resources they refer to, ``_type``, ``_since``, ``_count`` paging,
bad inputs, and a patient-context token that learns nothing about another patient."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.fhir_server.auth.smart import client_token


def _make(client: httpx.Client, body: dict) -> str:
    resp = client.post(f"/{body['resourceType']}", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


@pytest.fixture
def record(client: httpx.Client) -> dict:
    """Two patients, each with an encounter and observations; a practitioner they refer to."""
    tag = uuid.uuid4().hex[:8]
    doc = _make(client, {"resourceType": "Practitioner", "name": [{"family": f"Doc{tag}"}]})
    out: dict = {"doc": doc}
    for who in ("a", "b"):
        pid = _make(
            client,
            {
                "resourceType": "Patient",
                "name": [{"family": f"{who}{tag}"}],
                "generalPractitioner": [{"reference": f"Practitioner/{doc}"}],
            },
        )
        enc = _make(
            client,
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": f"Patient/{pid}"},
            },
        )
        obs = [
            _make(
                client,
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": f"obs {i}"},
                    "subject": {"reference": f"Patient/{pid}"},
                    **({"encounter": {"reference": f"Encounter/{enc}"}} if i < 2 else {}),
                },
            )
            for i in range(3)
        ]
        cond = _make(
            client,
            {
                "resourceType": "Condition",
                "subject": {"reference": f"Patient/{pid}"},
                "code": {"text": "c"},
            },
        )
        out[who] = {"patient": pid, "encounter": enc, "obs": obs, "condition": cond}
    return out


def _entries(bundle: dict, mode: str = "match") -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == mode
    }


def _all_pages(
    client: httpx.Client, url: str, headers: dict | None = None, **params
) -> tuple[set, set, int]:  # type: ignore[no-untyped-def]
    matches: set = set()
    includes: set = set()
    pages = 0
    resp = client.get(url, params=params, headers=headers)
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
        page = _entries(body)
        assert not page & matches, "a member came twice"
        matches |= page
        includes |= _entries(body, "include")
        pages += 1
        nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
        if not nxt:
            return matches, includes, pages
        resp = client.get(nxt[0], headers=headers)


def _record(rec: dict) -> set[str]:
    return {
        f"Patient/{rec['patient']}",
        f"Encounter/{rec['encounter']}",
        f"Condition/{rec['condition']}",
        *(f"Observation/{o}" for o in rec["obs"]),
    }


def test_patient_everything_is_the_compartment_and_what_it_refers_to(client, record):
    a = record["a"]
    resp = client.get(f"/Patient/{a['patient']}/$everything")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert _entries(body) == _record(a)
    assert body["total"] == len(_record(a))
    assert f"Practitioner/{record['doc']}" in _entries(body, "include")
    assert not _entries(body) & _record(record["b"])


def test_paging_with_count_returns_each_member_once(client, record):
    a = record["a"]
    matches, includes, pages = _all_pages(
        client, f"/Patient/{a['patient']}/$everything", _count="2"
    )
    assert matches == _record(a)
    assert pages == 3  # 6 members, 2 a page
    assert f"Practitioner/{record['doc']}" in includes


def test_type_filter_and_post_parameters(client, record):
    a = record["a"]
    resp = client.get(
        f"/Patient/{a['patient']}/$everything", params={"_type": "Observation,Condition"}
    )
    assert resp.status_code == 200, resp.text
    want = {f"Observation/{o}" for o in a["obs"]} | {f"Condition/{a['condition']}"}
    assert _entries(resp.json()) == want
    assert not _entries(resp.json(), "include")  # Practitioner is not among the types asked
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "_type", "valueString": "Encounter"}],
    }
    resp = client.post(f"/Patient/{a['patient']}/$everything", json=params)
    assert resp.status_code == 200, resp.text
    assert _entries(resp.json()) == {f"Encounter/{a['encounter']}"}


def test_since_keeps_only_later_changes(client, record):
    a = record["a"]
    first = client.get(f"/Observation/{a['obs'][0]}").json()
    first["status"] = "amended"
    assert client.put(f"/Observation/{a['obs'][0]}", json=first).status_code == 200
    # lastUpdated has microseconds: every other member was written before this update
    updated = client.get(f"/Observation/{a['obs'][0]}").json()["meta"]["lastUpdated"]
    resp = client.get(f"/Patient/{a['patient']}/$everything", params={"_since": updated})
    assert resp.status_code == 200, resp.text
    assert _entries(resp.json()) == {f"Observation/{a['obs'][0]}"}


def test_type_level_covers_every_patient(client, record):
    matches, _, _ = _all_pages(client, "/Patient/$everything", _count="1000")
    assert _record(record["a"]) | _record(record["b"]) <= matches
    assert f"Practitioner/{record['doc']}" not in matches  # not in any patient's compartment


def test_encounter_everything(client, record):
    a = record["a"]
    resp = client.get(f"/Encounter/{a['encounter']}/$everything")
    assert resp.status_code == 200, resp.text
    want = {f"Encounter/{a['encounter']}"} | {f"Observation/{o}" for o in a["obs"][:2]}
    assert _entries(resp.json()) == want
    assert f"Patient/{a['patient']}" in _entries(resp.json(), "include")
    # R4 defines it at instance level only
    assert client.get("/Encounter/$everything").status_code == 404


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"_type": "NoSuchType"}, "invalid"),
        ({"_since": "yesterday"}, "invalid"),
        ({"_since": "2024-01-01"}, "invalid"),  # a date, not an instant
        ({"_count": "-1"}, "invalid"),
        ({"_count": "many"}, "invalid"),
        ({"_page": "not-a-cursor"}, "invalid"),
    ],
)
def test_bad_inputs_are_400(client, record, params, code):
    resp = client.get(f"/Patient/{record['a']['patient']}/$everything", params=params)
    assert resp.status_code == 400, resp.text
    assert resp.json()["issue"][0]["code"] == code


def test_unknown_parameters_warn_or_fail_under_strict(client, record):
    url = f"/Patient/{record['a']['patient']}/$everything"
    resp = client.get(url, params={"start": "2020-01-01"})
    assert resp.status_code == 200
    outcome = [e for e in resp.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and outcome[0]["resource"]["issue"][0]["severity"] == "warning"
    resp = client.get(url, params={"start": "2020-01-01"}, headers={"Prefer": "handling=strict"})
    assert resp.status_code == 400
    assert resp.json()["issue"][0]["severity"] == "error"


def test_unknown_and_deleted_patients(client, record):
    assert client.get("/Patient/no-such-patient/$everything").status_code == 404
    gone = _make(client, {"resourceType": "Patient", "name": [{"family": "gone"}]})
    assert client.delete(f"/Patient/{gone}").status_code in (200, 204)
    assert client.get(f"/Patient/{gone}/$everything").status_code == 410


def test_patient_token_sees_only_its_own_record(server, client, record):
    a, b = record["a"], record["b"]
    headers = client_token(server, "patient/*.rs", patient=a["patient"])
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as mine:
        resp = mine.get(f"/Patient/{a['patient']}/$everything")
        assert resp.status_code == 200, resp.text
        assert _entries(resp.json()) == _record(a)
        # the other patient and a made-up id answer alike
        other = mine.get(f"/Patient/{b['patient']}/$everything")
        unknown = mine.get("/Patient/no-such-patient/$everything")
        assert other.status_code == unknown.status_code == 404
        assert other.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]
        assert mine.get(f"/Encounter/{b['encounter']}/$everything").status_code == 404
        # type level: only its own compartment
        matches, includes, _ = _all_pages(mine, "/Patient/$everything", _count="1000")
        assert matches == _record(a)
        assert not (matches | includes) & _record(b)


def test_read_scopes_limit_the_types(server, record):
    a = record["a"]
    headers = client_token(server, "system/Patient.r system/Observation.r")
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as scoped:
        resp = scoped.get(f"/Patient/{a['patient']}/$everything")
        assert resp.status_code == 200, resp.text
        assert {r.split("/")[0] for r in _entries(resp.json())} == {"Patient", "Observation"}
        assert not _entries(resp.json(), "include")  # no Practitioner scope
    headers = client_token(server, "system/Observation.rs")
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as no_patient:
        assert no_patient.get(f"/Patient/{a['patient']}/$everything").status_code == 403


def test_encounter_compartment_search(client, record):
    a = record["a"]
    resp = client.get(f"/Encounter/{a['encounter']}/Observation")
    assert resp.status_code == 200, resp.text
    assert _entries(resp.json()) == {f"Observation/{o}" for o in a["obs"][:2]}
    assert client.get(f"/Encounter/{a['encounter']}/NoSuchType").status_code == 404


@pytest.mark.parametrize(
    "since", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z", "2020-01-01T00:00:00"]
)
def test_since_at_the_ends_of_the_calendar_is_never_a_500(client, record, since):
    resp = client.get(f"/Patient/{record['a']['patient']}/$everything", params={"_since": since})
    assert resp.status_code in (200, 400), resp.text
    if since.startswith("0001"):
        assert _entries(resp.json()) == _record(record["a"])
