"""A patient-context token never learns anything about another patient, by any route
(issue 14): for a value of patient B's data, a true guess and a false guess made with patient A's
token give the same answer -- status and body, byte for byte once the guess itself (which a
searchset's links repeat) and the fresh ids/timestamps of a Bundle or a created resource are
blanked -- through chains (forward, multi-step, typed), ``_has`` (nested), includes, counts,
paging, system and compartment search, batches, transactions, conditional writes and reads by id.

Each case is first asked with an unrestricted token, for which the true and the false guess must
give different answers: the guess is a real yes/no question, so the check can fail."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.fhir_server.auth.smart import client_token
from tests.security.compartment_helpers import shape

HTTP = httpx.Client(timeout=120)  # a shared, busy test machine


@pytest.fixture(scope="module")
def world(server):  # type: ignore[no-untyped-def]
    """Patient A links to patient B (family ``kaqz…``, born 1955); A's Observation has B's
    (value 137) as a member; B's Observation has A's as a member and focuses on A."""
    tag = uuid.uuid4().hex[:8]
    h = server.headers

    def post(body: dict) -> str:
        resp = HTTP.post(f"{server.fhir}/{body['resourceType']}", json=body, headers=h)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    b = post(
        {"resourceType": "Patient", "name": [{"family": f"kaqz{tag}"}], "birthDate": "1955-03-04"}
    )
    a = post(
        {
            "resourceType": "Patient",
            "name": [{"family": f"self{tag}"}],
            "link": [{"other": {"reference": f"Patient/{b}"}, "type": "seealso"}],
        }
    )

    def obs(subject: str, code: str, **more: object) -> dict:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "urn:sec", "code": code}]},
            "subject": {"reference": f"Patient/{subject}"},
            **more,
        }

    value = {
        "valueQuantity": {
            "value": 137,
            "unit": "mmHg",
            "system": "http://unitsofmeasure.org",
            "code": "mm[Hg]",
        }
    }
    b1 = post(obs(b, f"b1{tag}", **value))
    a1 = post(obs(a, f"a1{tag}", hasMember=[{"reference": f"Observation/{b1}"}]))
    b2 = post(
        obs(
            b,
            f"b2{tag}",
            hasMember=[{"reference": f"Observation/{a1}"}],
            focus=[{"reference": f"Patient/{a}"}],
            **value,
        )
    )
    return {"a": a, "b": b, "a1": a1, "b1": b1, "b2": b2, "tag": tag}


CHAIN = "has-member.value-quantity"  # A1 -> B1 (137)
SEARCHES = [
    # (path, query with "{v}" for the guess, true guess, false guess)
    ("Patient", [("link:Patient.family", "{v}")], "kaqz", "kbqz"),
    ("Patient", [("link.birthdate", "{v}")], "eq1955", "eq1956"),
    ("Patient", [("link:Patient.birthdate", "{v}"), ("_summary", "count")], "eq1955", "eq1956"),
    ("Observation", [(CHAIN, "{v}")], "le137", "le136"),
    ("Observation", [("has-member:Observation.value-quantity", "{v}")], "ge137", "ge138"),
    ("Observation", [("has-member:Observation.subject:Patient.family", "{v}")], "kaqz", "kbqz"),
    ("Observation", [("has-member.subject.birthdate", "{v}")], "eq1955", "eq1956"),
    ("Observation", [(CHAIN, "{v}"), ("_total", "accurate")], "le137", "le136"),
    ("Observation", [(CHAIN, "{v}"), ("_summary", "count")], "le137", "le136"),
    ("Observation", [(CHAIN, "{v}"), ("_elements", "status")], "le137", "le136"),
    (
        "Observation",
        [(CHAIN, "{v}"), ("_sort", "-_lastUpdated"), ("_count", "1")],
        "le137",
        "le136",
    ),
    (
        "Observation",
        [(CHAIN, "{v}"), ("_include", "Observation:has-member"), ("_total", "accurate")],
        "le137",
        "le136",
    ),
    (
        "Observation",
        [(CHAIN, "{v}"), ("_include:iterate", "Observation:has-member")],
        "le137",
        "le136",
    ),
    ("Observation", [(CHAIN, "{v}"), ("_revinclude", "Observation:has-member")], "le137", "le136"),
    ("Observation", [(CHAIN, "{v}"), ("_revinclude", "*:*")], "le137", "le136"),
    ("Observation", [("_has:Observation:has-member:value-quantity", "{v}")], "eq137", "eq136"),
    (
        "Observation",
        [("_has:Observation:has-member:code", "{v}"), ("_total", "accurate")],
        "urn:sec|b2TAG",
        "urn:sec|b3TAG",
    ),
    ("Patient", [("_has:Observation:focus:value-quantity", "{v}")], "eq137", "eq136"),
    (
        "Patient",
        [("_has:Observation:subject:_has:Observation:has-member:value-quantity", "{v}")],
        "eq137",
        "eq136",
    ),
    (
        "Patient",
        [("_has:Observation:subject:has-member.value-quantity", "{v}"), ("_summary", "count")],
        "le137",
        "le136",
    ),
    ("", [("_type", "Observation"), (CHAIN, "{v}"), ("_total", "accurate")], "le137", "le136"),
    ("Patient/A/Observation", [(CHAIN, "{v}"), ("_total", "accurate")], "le137", "le136"),
]


def _query(world: dict, query: list, v: str) -> list[tuple[str, str]]:
    return [(k, x.replace("{v}", v).replace("TAG", world["tag"])) for k, x in query]


def _path(world: dict, path: str) -> str:
    return path.replace("A", world["a"]) if path.startswith("Patient/") else path


def _guesses(world: dict, true: str, false: str) -> tuple[str, str]:
    return true.replace("TAG", world["tag"]), false.replace("TAG", world["tag"])


@pytest.mark.parametrize(("path", "query", "true", "false"), SEARCHES)
def test_search_answers_alike_for_true_and_false_guesses(server, world, path, query, true, false):  # type: ignore[no-untyped-def]
    true, false = _guesses(world, true, false)
    url = f"{server.fhir}/{_path(world, path)}".rstrip("/")
    patient = client_token(server, "patient/*.rs", patient=world["a"])

    def ask(headers: dict, v: str, how: str) -> tuple[int, str]:
        params = _query(world, query, v)
        if how == "get":
            resp = HTTP.get(url, params=params, headers=headers)
        elif how == "post":
            resp = HTTP.post(f"{url}/_search", data=dict(params), headers=headers)
        else:
            entry = {
                "request": {
                    "method": "GET",
                    "url": f"{url[len(server.fhir) + 1 :] or ''}?{httpx.QueryParams(params)}",
                }
            }
            bundle = {"resourceType": "Bundle", "type": "batch", "entry": [entry]}
            resp = HTTP.post(server.fhir, json=bundle, headers=headers)
        return shape(resp, true, false, world["tag"])

    # The question is real: an unrestricted caller gets different answers.
    assert ask(server.headers, true, "get") != ask(server.headers, false, "get")
    for how in ("get", "post", "batch"):
        if how == "post" and (path == "" or path.startswith("Patient/")):
            continue  # POST _search is for type searches
        if how == "batch" and path == "":
            continue  # a batch entry names a type
        yes, no = ask(patient, true, how), ask(patient, false, how)
        assert yes == no, f"{how}: {yes} != {no}"
        assert yes[0] == 200, yes
        for other in ("b", "b1", "b2"):  # none of B's resources is in the answer
            assert f'"id": "{world[other]}"' not in yes[1]


def test_next_page_cursor_answers_alike(server, world):  # type: ignore[no-untyped-def]
    """Paging a chained search: every page, followed by its ``next`` link, is the same."""
    patient = client_token(server, "patient/*.rs", patient=world["a"])

    def pages(v: str) -> list[tuple[int, str]]:
        out = []
        url: str | None = f"{server.fhir}/Observation?{CHAIN}={v}&_count=1&_sort=_id"
        while url and len(out) < 5:
            resp = HTTP.get(url, headers=patient)
            out.append(shape(resp, v))
            url = next(
                (lk["url"] for lk in resp.json().get("link", []) if lk["relation"] == "next"), None
            )
        return out

    assert pages("le137") == pages("le136")


def test_reading_another_patients_ids_answers_as_for_unknown_ids(server, world):  # type: ignore[no-untyped-def]
    """Existence of an id of B's: read, vread, history, compartment search, writes by id,
    conditional writes on ``_id`` -- the same answer as for an id that never existed."""
    f = server.fhir
    patient = client_token(server, "patient/*.cruds", patient=world["a"])
    known, unknown = world["b1"], uuid.uuid4().hex
    body = lambda i: {  # noqa: E731
        "resourceType": "Observation",
        "id": i,
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient/{world['a']}"},
    }
    probes = [
        lambda i: HTTP.get(f"{f}/Observation/{i}", headers=patient),
        lambda i: HTTP.get(f"{f}/Observation/{i}/_history/1", headers=patient),
        lambda i: HTTP.get(f"{f}/Observation/{i}/_history", headers=patient),
        lambda i: HTTP.get(
            f"{f}/Observation", params={"_id": i, "_total": "accurate"}, headers=patient
        ),
        lambda i: HTTP.get(
            f"{f}/Patient/{world['b'] if i == known else i}/Observation", headers=patient
        ),
        lambda i: HTTP.get(f"{f}/Patient/{world['b'] if i == known else i}", headers=patient),
        lambda i: HTTP.put(f"{f}/Observation/{i}", json=body(i), headers=patient),
        lambda i: HTTP.put(
            f"{f}/Observation/{i}", json=body(i), headers={**patient, "If-Match": 'W/"1"'}
        ),
        lambda i: HTTP.patch(
            f"{f}/Observation/{i}",
            json=[{"op": "replace", "path": "/status", "value": "amended"}],
            headers={**patient, "Content-Type": "application/json-patch+json"},
        ),
        lambda i: HTTP.delete(f"{f}/Observation/{i}", headers=patient),
        lambda i: HTTP.delete(f"{f}/Observation/{i}", headers={**patient, "If-Match": 'W/"1"'}),
    ]
    for n, probe in enumerate(probes):
        yes = shape(probe(known), known, world["b"])
        no = shape(probe(unknown), unknown)
        assert yes == no, f"probe {n}: {yes} != {no}"
        assert yes[0] != 500
    # B's Observation is untouched.
    assert HTTP.get(f"{f}/Observation/{known}", headers=server.headers).json()["status"] == "final"


def test_conditional_writes_search_only_readable_rows(server, world):  # type: ignore[no-untyped-def]
    """The "search first" of a conditional create, update and delete, and a transaction's
    conditional reference, look only at rows the token may read: a criterion true only of B's
    data selects nothing, exactly as a false one does (a create then creates)."""
    f = server.fhir
    patient = client_token(server, "patient/*.cruds", patient=world["a"])
    tag = world["tag"]
    mine = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "urn:sec", "code": f"cw{tag}"}]},
        "subject": {"reference": f"Patient/{world['a']}"},
    }

    def member_of_b1() -> str:
        """A fresh Observation of A's with B1 as a member (what the criteria could select)."""
        resp = HTTP.post(
            f"{f}/Observation",
            json={**mine, "hasMember": [{"reference": f"Observation/{world['b1']}"}]},
            headers=server.headers,
        )
        assert resp.status_code == 201
        return resp.json()["id"]

    def writes(headers: dict, v: str) -> list[tuple[int, str]]:
        target = member_of_b1()
        crit = f"{CHAIN}={v}&code=urn:sec|cw{tag}&_id={target}"
        out = [
            HTTP.post(f"{f}/Observation", json=mine, headers={**headers, "If-None-Exist": crit}),
            HTTP.put(f"{f}/Observation?{crit}", json=mine, headers=headers),
            HTTP.delete(f"{f}/Observation?{crit}", headers=headers),
        ]
        tx = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {**mine, "derivedFrom": [{"reference": f"Observation?{crit}"}]},
                    "request": {"method": "POST", "url": "Observation"},
                },
                {
                    "resource": mine,
                    "request": {"method": "POST", "url": "Observation", "ifNoneExist": crit},
                },
            ],
        }
        out.append(HTTP.post(f, json=tx, headers=headers))
        put = {  # a conditional PUT entry: creates when nothing readable matches
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": mine, "request": {"method": "PUT", "url": f"Observation?{crit}"}}
            ],
        }
        out.append(HTTP.post(f, json=put, headers=headers))
        return [shape(r, v, target, new_ids=True) for r in out]

    assert writes(server.headers, "le137") != writes(server.headers, "le136")
    yes, no = writes(patient, "le137"), writes(patient, "le136")
    assert yes == no
    assert [s for s, _ in yes[:3]] == [201, 201, 200]
    assert yes[4][0] == 200 and '"status": "201 Created"' in yes[4][1]


def test_if_none_exist_on_another_patients_id_creates(server, world):  # type: ignore[no-untyped-def]
    """``If-None-Exist: _id=<B's id>`` answers as for an unknown id: it creates (201)."""
    f = server.fhir
    patient = client_token(server, "patient/*.cruds", patient=world["a"])
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient/{world['a']}"},
    }
    answers = []
    for i in (world["b1"], uuid.uuid4().hex):
        resp = HTTP.post(
            f"{f}/Observation", json=body, headers={**patient, "If-None-Exist": f"_id={i}"}
        )
        answers.append(shape(resp, i, new_ids=True))
    assert answers[0] == answers[1]
    assert answers[0][0] == 201
