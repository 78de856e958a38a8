"""Scopes and the patient compartment on every interaction: a patient-context token sees and
writes only its patient's compartment — through reads, searches, counts, includes, history,
batches and transactions — and a token's scopes bound what any interaction may do."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.fhir_server.auth.smart import client_token as _token


@pytest.fixture(scope="module")
def world(server):  # type: ignore[no-untyped-def]
    """Two patients, each with an Observation and an Encounter; B also has a Condition."""
    tag = uuid.uuid4().hex[:8]
    h = server.headers

    def post(body: dict) -> str:
        resp = httpx.post(f"{server.fhir}/{body['resourceType']}", json=body, headers=h)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    ids = {}
    for who in ("a", "b"):
        pid = post({"resourceType": "Patient", "name": [{"family": f"{who}-{tag}"}]})
        ids[who] = pid
        ids[f"obs_{who}"] = post(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "urn:t", "code": tag}]},
                "subject": {"reference": f"Patient/{pid}"},
            }
        )
        ids[f"enc_{who}"] = post(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": f"Patient/{pid}"},
            }
        )
    ids["tag"] = tag
    return ids


def _ids(bundle: dict) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] != "OperationOutcome"
    }


def test_patient_token_reads_only_its_compartment(server, world):
    h = _token(server, "patient/*.rs", patient=world["a"])
    f = server.fhir
    assert httpx.get(f"{f}/Patient/{world['a']}", headers=h).status_code == 200
    assert httpx.get(f"{f}/Observation/{world['obs_a']}", headers=h).status_code == 200
    other = httpx.get(f"{f}/Observation/{world['obs_b']}", headers=h)
    never = httpx.get(f"{f}/Observation/no-such-id", headers=h)
    assert other.status_code == never.status_code == 404
    assert other.json()["issue"][0]["diagnostics"].replace(world["obs_b"], "X") == never.json()[
        "issue"
    ][0]["diagnostics"].replace("no-such-id", "X")
    assert httpx.get(f"{f}/Patient/{world['b']}", headers=h).status_code == 404
    assert httpx.get(f"{f}/Observation/{world['obs_b']}/_history/1", headers=h).status_code == 404
    assert httpx.get(f"{f}/Observation/{world['obs_b']}/_history", headers=h).status_code == 404
    assert httpx.get(f"{f}/Observation/_history", headers=h).status_code == 403
    assert httpx.get(f"{f}/_history", headers=h).status_code == 403


def test_patient_token_searches_counts_and_includes(server, world):
    h = _token(server, "patient/*.rs", patient=world["a"])
    f = server.fhir
    code = f"urn:t|{world['tag']}"
    found = httpx.get(f"{f}/Observation", params={"code": code, "_total": "accurate"}, headers=h)
    assert found.status_code == 200
    assert _ids(found.json()) == {f"Observation/{world['obs_a']}"}
    assert found.json()["total"] == 1
    by_other = httpx.get(
        f"{f}/Observation",
        params={"subject": f"Patient/{world['b']}", "_total": "accurate"},
        headers=h,
    ).json()
    assert by_other["total"] == 0 and not _ids(by_other)
    count = httpx.get(f"{f}/Observation", params={"code": code, "_summary": "count"}, headers=h)
    assert count.json()["total"] == 1
    comp = httpx.get(f"{f}/Patient/{world['b']}/Observation", headers=h).json()
    assert not _ids(comp)
    inc = httpx.get(
        f"{f}/Observation", params={"code": code, "_include": "Observation:subject"}, headers=h
    ).json()
    assert _ids(inc) == {f"Observation/{world['obs_a']}", f"Patient/{world['a']}"}
    rev = httpx.get(
        f"{f}/Patient",
        params={"_id": f"{world['a']},{world['b']}", "_revinclude": "*"},
        headers=h,
    ).json()
    assert _ids(rev) == {
        f"Patient/{world['a']}",
        f"Observation/{world['obs_a']}",
        f"Encounter/{world['enc_a']}",
    }
    everything = httpx.get(
        f"{f}/", params={"_type": "Observation,Encounter,Patient", "_count": "1000"}, headers=h
    ).json()
    assert _ids(everything) == {
        f"Patient/{world['a']}",
        f"Observation/{world['obs_a']}",
        f"Encounter/{world['enc_a']}",
    }


def test_patient_token_writes_only_into_its_compartment(server, world):
    h = _token(server, "patient/Observation.cruds patient/Patient.rs", patient=world["a"])
    f = server.fhir

    def obs(pid: str) -> dict:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "self-reported"},
            "subject": {"reference": f"Patient/{pid}"},
        }

    mine = httpx.post(f"{f}/Observation", json=obs(world["a"]), headers=h)
    assert mine.status_code == 201
    theirs = httpx.post(f"{f}/Observation", json=obs(world["b"]), headers=h)
    assert theirs.status_code == 403
    before = httpx.get(
        f"{f}/Observation",
        params={"subject": f"Patient/{world['b']}", "_summary": "count"},
        headers=server.headers,
    ).json()["total"]
    assert before == 1  # nothing was written for B
    hijack = {**obs(world["a"]), "id": world["obs_b"]}
    assert httpx.put(f"{f}/Observation/{world['obs_b']}", json=hijack, headers=h).status_code == 404
    assert httpx.delete(f"{f}/Observation/{world['obs_b']}", headers=h).status_code == 404
    moved = {**mine.json(), "subject": {"reference": f"Patient/{world['b']}"}}
    assert (
        httpx.put(f"{f}/Observation/{mine.json()['id']}", json=moved, headers=h).status_code == 403
    )
    assert (
        httpx.get(f"{f}/Observation/{world['obs_b']}", headers=server.headers).json()["subject"][
            "reference"
        ]
        == f"Patient/{world['b']}"
    )
    tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Observation"}, "resource": obs(world["a"])},
            {"request": {"method": "GET", "url": f"Observation/{world['obs_b']}"}},
        ],
    }
    resp = httpx.post(f"{f}/", json=tx, headers=h)
    assert resp.status_code == 404  # the whole transaction fails, nothing is kept
    batch = {**tx, "type": "batch"}
    resp = httpx.post(f"{f}/", json=batch, headers=h).json()
    assert [e["response"]["status"][:3] for e in resp["entry"]] == ["201", "404"]


def test_scopes_bound_every_interaction(server, world):
    h = _token(server, "user/Observation.rs")
    f = server.fhir
    assert httpx.get(f"{f}/Observation/{world['obs_a']}", headers=h).status_code == 200
    for resp in (
        httpx.get(f"{f}/Patient/{world['a']}", headers=h),
        httpx.get(f"{f}/Patient", headers=h),
        httpx.post(f"{f}/Observation", json={"resourceType": "Observation"}, headers=h),
        httpx.delete(f"{f}/Observation/{world['obs_a']}", headers=h),
        httpx.get(f"{f}/AuditEvent", headers=h),
        httpx.post(f"{f}/$reindex", headers=h),
        httpx.get(f"{f}/", params={"_type": "Patient"}, headers=h),
        httpx.get(f"{f}/_history", headers=h),
    ):
        assert resp.status_code == 403, resp.request.url
        assert resp.json()["issue"][0]["code"] == "forbidden"
    inc = httpx.get(
        f"{f}/Observation",
        params={"_id": world["obs_a"], "_include": "Observation:subject"},
        headers=h,
    ).json()
    assert _ids(inc) == {f"Observation/{world['obs_a']}"}  # Patient is outside the scopes
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "request": {"method": "POST", "url": "Patient"},
                "resource": {"resourceType": "Patient"},
            }
        ],
    }
    denied = httpx.post(f"{f}/", json=batch, headers=h)
    assert denied.status_code == 403 and "entry[0]" in denied.json()["issue"][0]["diagnostics"]
    v1 = _token(server, "user/Observation.read")
    assert httpx.get(f"{f}/Observation/{world['obs_a']}", headers=v1).status_code == 200
    assert (
        httpx.post(f"{f}/Observation", json={"resourceType": "Observation"}, headers=v1).status_code
        == 403
    )


def test_mixed_token_keeps_patient_only_types_in_the_compartment(server, world):
    """user/Observation.rs opens every Observation; Patient is still patient-level only, so
    includes and system search show no other patient."""
    h = _token(server, "user/Observation.rs patient/*.rs", patient=world["a"])
    f = server.fhir
    inc = httpx.get(
        f"{f}/Observation",
        params={"_id": f"{world['obs_a']},{world['obs_b']}", "_include": "Observation:subject"},
        headers=h,
    ).json()
    assert _ids(inc) == {
        f"Observation/{world['obs_a']}",
        f"Observation/{world['obs_b']}",
        f"Patient/{world['a']}",
    }
    system = httpx.get(
        f"{f}/", params={"_type": "Patient", "_id": f"{world['a']},{world['b']}"}, headers=h
    ).json()
    assert _ids(system) == {f"Patient/{world['a']}"}
    assert httpx.get(f"{f}/Patient/{world['b']}", headers=h).status_code == 404
    assert httpx.get(f"{f}/Observation/{world['obs_b']}", headers=h).status_code == 200


def test_conditional_create_does_not_reveal_another_patients_resource(server, world):
    h = _token(server, "patient/Observation.cruds", patient=world["a"])
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient/{world['a']}"},
    }
    resp = httpx.post(
        f"{server.fhir}/Observation",
        json=body,
        headers={**h, "If-None-Exist": f"_id={world['obs_b']}"},
    )
    # Searched only over the rows the token may read: as for an unknown id, it creates.
    assert resp.status_code == 201
    assert world["b"] not in resp.text and resp.json()["id"] != world["obs_b"]


def test_chains_and_has_need_scope_on_the_types_they_reach(server, world):
    h = _token(server, "user/Observation.rs")
    f = server.fhir
    for params in (
        {"subject:Patient.name": "x"},
        {"subject.name": "x"},
        {"_has:Encounter:subject:status": "finished"},
    ):
        resp = httpx.get(f"{f}/Observation", params=params, headers=h)
        assert resp.status_code == 403, params
    wide = _token(server, "user/Observation.rs user/Patient.rs")
    ok = httpx.get(
        f"{f}/Observation",
        params={"subject:Patient._id": world["a"], "code": f"urn:t|{world['tag']}"},
        headers=wide,
    ).json()
    assert _ids(ok) == {f"Observation/{world['obs_a']}"}


def test_conditional_writes_need_search_scope(server, world):
    h = _token(server, "user/Observation.cu")
    f = server.fhir
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "c"}}
    assert httpx.post(f"{f}/Observation", json=body, headers=h).status_code == 201
    probe = httpx.post(
        f"{f}/Observation", json=body, headers={**h, "If-None-Exist": f"_id={world['obs_b']}"}
    )
    assert probe.status_code == 403
    assert httpx.put(f"{f}/Observation?_id=x", json=body, headers=h).status_code == 403
    tx = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "request": {"method": "POST", "url": "Observation", "ifNoneExist": "_id=x"},
                "resource": body,
            }
        ],
    }
    assert httpx.post(f"{f}/", json=tx, headers=h).status_code == 403


def test_patient_token_reads_a_binary_through_its_security_context(server, world):
    """R4 binary.html#security: a Binary is read with the access of its securityContext."""
    f, h = server.fhir, server.headers

    def binary(context: str | None) -> str:
        body = {"resourceType": "Binary", "contentType": "text/plain", "data": "aGk="}
        if context:
            body["securityContext"] = {"reference": context}
        resp = httpx.post(f"{f}/Binary", json=body, headers=h)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    mine = binary(f"Observation/{world['obs_a']}")
    theirs = binary(f"Observation/{world['obs_b']}")
    loose = binary(None)
    chained = binary(f"Binary/{mine}")  # a Binary is no context for another Binary
    gone_obs = httpx.post(
        f"{f}/Observation",
        json={"resourceType": "Observation", "status": "final", "code": {"text": "x"},
              "subject": {"reference": f"Patient/{world['a']}"}},
        headers=h,
    ).json()["id"]  # fmt: skip
    orphan = binary(f"Observation/{gone_obs}")
    assert httpx.delete(f"{f}/Observation/{gone_obs}", headers=h).status_code in (200, 204)
    patient_a = _token(server, "patient/*.rs", patient=world["a"])
    assert httpx.get(f"{f}/Binary/{mine}", headers=patient_a).json()["data"] == "aGk="
    for bid in (theirs, loose, chained, orphan):
        assert httpx.get(f"{f}/Binary/{bid}", headers=patient_a).status_code == 404, bid
    # Writing a Binary is still outside any patient's compartment.
    body = {"resourceType": "Binary", "contentType": "text/plain", "data": "aGk=",
            "securityContext": {"reference": f"Patient/{world['a']}"}}  # fmt: skip
    writer = _token(server, "patient/*.cruds", patient=world["a"])
    assert httpx.post(f"{f}/Binary", json=body, headers=writer).status_code == 403
