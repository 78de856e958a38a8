"""Search result shaping over HTTP (FHIR R4 search.html): paging, _sort, _total, _include /
_revinclude, _summary, _elements, system and compartment search, unknown parameters."""

from __future__ import annotations

import uuid

import pytest

from tests.fhir_server.test_rest import assert_outcome

TAG_SYSTEM = "urn:test:search"


def tagged(tag: str, resource: dict) -> dict:
    return {**resource, "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}}


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


def ids(bundle: dict, mode: str = "match") -> list[str]:
    return [
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == mode
    ]


def follow(client, bundle: dict) -> list[dict]:  # type: ignore[no-untyped-def]
    pages = [bundle]
    while nxt := next((lk["url"] for lk in pages[-1]["link"] if lk["relation"] == "next"), None):
        resp = client.get(nxt)
        assert resp.status_code == 200, resp.text
        pages.append(resp.json())
    return pages


def make_patients(client, tag: str, families: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for n, fam in enumerate(families):
        body = tagged(
            tag,
            {
                "resourceType": "Patient",
                "name": [{"family": fam}],
                "birthDate": f"19{50 + n}-01-01",
            },
        )
        resp = client.post("/Patient", json=body)
        assert resp.status_code == 201
        out.append(resp.json()["id"])
    return out


def test_paging_visits_every_match_once(client, tag):
    made = make_patients(client, tag, [f"F{n}" for n in range(7)])
    first = client.get("/Patient", params={"_tag": f"{TAG_SYSTEM}|{tag}", "_count": 3}).json()
    pages = follow(client, first)
    assert [len(ids(p)) for p in pages] == [3, 3, 1]
    assert sorted(i for p in pages for i in ids(p)) == sorted(made)
    self_link = next(lk["url"] for lk in first["link"] if lk["relation"] == "self")
    assert "_tag=" in self_link and "_count=3" in self_link


def test_paging_is_stable_when_data_changes(client, tag):
    made = make_patients(client, tag, [f"S{n}" for n in range(6)])
    first = client.get(
        "/Patient", params={"_tag": f"{TAG_SYSTEM}|{tag}", "_count": 2, "_sort": "family"}
    ).json()
    assert ids(first) == made[:2]
    client.delete(f"/Patient/{made[0]}")  # already seen
    client.delete(f"/Patient/{made[3]}")  # not seen yet
    make_patients(client, tag, ["A-new"])  # sorts before the cursor: must not appear later
    rest = follow(client, first)[1:]
    assert [i for p in rest for i in ids(p)] == [made[2], made[4], made[5]]


def test_sort_descending_and_by_date(client, tag):
    made = make_patients(client, tag, ["Banda", "Abebe", "Chanda"])
    crit = {"_tag": f"{TAG_SYSTEM}|{tag}"}
    assert ids(client.get("/Patient", params={**crit, "_sort": "family"}).json()) == [
        made[1],
        made[0],
        made[2],
    ]
    assert ids(client.get("/Patient", params={**crit, "_sort": "-family"}).json()) == [
        made[2],
        made[0],
        made[1],
    ]
    assert ids(client.get("/Patient", params={**crit, "_sort": "-birthdate"}).json()) == made[::-1]
    paged = follow(
        client, client.get("/Patient", params={**crit, "_sort": "-birthdate", "_count": 1}).json()
    )
    assert [ids(p)[0] for p in paged] == made[::-1]
    assert_outcome(client.get("/Patient", params={**crit, "_sort": "nonsense"}), 400)


def test_total_and_summary_count(client, tag):
    make_patients(client, tag, ["T1", "T2", "T3"])
    crit = {"_tag": f"{TAG_SYSTEM}|{tag}"}
    assert "total" not in client.get("/Patient", params=crit).json()
    assert client.get("/Patient", params={**crit, "_total": "accurate"}).json()["total"] == 3
    counted = client.get("/Patient", params={**crit, "_summary": "count"}).json()
    assert counted["total"] == 3 and "entry" not in counted  # no empty arrays in FHIR JSON
    assert_outcome(client.get("/Patient", params={**crit, "_total": "lots"}), 400)
    assert_outcome(client.get("/Patient", params={**crit, "_count": "x"}), 400)


def _patient_with_obs(client, tag: str) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    org = client.post(
        "/Organization", json=tagged(tag, {"resourceType": "Organization", "name": "Clinic"})
    ).json()["id"]
    pat = client.post(
        "/Patient",
        json=tagged(
            tag,
            {
                "resourceType": "Patient",
                "managingOrganization": {"reference": f"Organization/{org}"},
            },
        ),
    ).json()["id"]
    obs = client.post(
        "/Observation",
        json=tagged(
            tag,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "bp"},
                "subject": {"reference": f"Patient/{pat}"},
            },
        ),
    ).json()["id"]
    return org, pat, obs


def test_include_iterate_and_revinclude(client, tag):
    org, pat, obs = _patient_with_obs(client, tag)
    inc = client.get("/Observation", params={"_id": obs, "_include": "Observation:subject"}).json()
    assert ids(inc) == [obs] and ids(inc, "include") == [pat]
    deep = client.get(
        "/Observation",
        params=[
            ("_id", obs),
            ("_include", "Observation:subject"),
            ("_include:iterate", "Patient:organization"),
        ],
    ).json()
    assert sorted(ids(deep, "include")) == sorted([pat, org])
    rev = client.get("/Patient", params={"_id": pat, "_revinclude": "Observation:subject"}).json()
    assert ids(rev) == [pat] and ids(rev, "include") == [obs]
    star = client.get("/Observation", params={"_id": obs, "_include": "Observation:*"}).json()
    assert ids(star, "include") == [pat]


def test_stored_json_served_as_read(client, tag):
    """Matches and included resources go out as the stored JSON text (not decoded and
    re-encoded): the same resources a read returns, escapes and non-ASCII text intact, with and
    without _pretty; _elements shapes the matches only, the included resources stay whole."""
    org, pat, obs = _patient_with_obs(client, tag)
    odd = 'naïve "quoted" back\\slash\nnew line\ttab \u2028 </script> 😀'
    resp = client.put(
        f"/Observation/{obs}",
        json=tagged(
            tag,
            {
                "resourceType": "Observation",
                "id": obs,
                "status": "final",
                "code": {"text": odd},
                "subject": {"reference": f"Patient/{pat}"},
                "valueQuantity": {"value": 1e-7, "unit": "mg"},
            },
        ),
    )
    assert resp.status_code == 200, resp.text
    read_obs = client.get(f"/Observation/{obs}").json()
    read_pat = client.get(f"/Patient/{pat}").json()
    assert read_obs["code"]["text"] == odd
    for pretty in ("false", "true"):
        q = {"_id": pat, "_revinclude": "Observation:subject", "_pretty": pretty}
        resp = client.get("/Patient", params=q)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/fhir+json")
        assert ("\n" in resp.text) == (pretty == "true")  # the JSON has no raw newline
        entries = {e["search"]["mode"]: e["resource"] for e in resp.json()["entry"]}
        assert entries == {"match": read_pat, "include": read_obs}
    shaped = client.get(
        "/Patient",
        params={"_id": pat, "_revinclude": "Observation:subject", "_elements": "gender"},
    ).json()
    match = next(e["resource"] for e in shaped["entry"] if e["search"]["mode"] == "match")
    assert set(match) == {"resourceType", "id", "meta"}
    assert ids(shaped, "include") == [obs]
    included = next(e["resource"] for e in shaped["entry"] if e["search"]["mode"] == "include")
    assert included == read_obs
    summary = client.get(
        "/Observation",
        params={"_id": obs, "_include": "Observation:subject", "_summary": "true"},
    ).json()
    match = next(e["resource"] for e in summary["entry"] if e["search"]["mode"] == "match")
    assert "valueQuantity" in match and match != read_obs  # summarised: SUBSETTED tag
    assert ids(summary, "include") == [pat]


def test_summary_and_elements(client, tag):
    pid = client.post(
        "/Patient",
        json=tagged(
            tag,
            {
                "resourceType": "Patient",
                "gender": "female",
                "birthDate": "1970-01-01",
                "maritalStatus": {"text": "married"},
                "text": {
                    "status": "generated",
                    "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
                },
            },
        ),
    ).json()["id"]
    summ = client.get("/Patient", params={"_id": pid, "_summary": "true"}).json()["entry"][0][
        "resource"
    ]
    assert "gender" in summ and "maritalStatus" not in summ and "text" not in summ
    assert {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
    } in summ["meta"]["tag"]
    data = client.get("/Patient", params={"_id": pid, "_summary": "data"}).json()["entry"][0][
        "resource"
    ]
    assert "text" not in data and "maritalStatus" in data
    elems = client.get("/Patient", params={"_id": pid, "_elements": "gender"}).json()["entry"][0][
        "resource"
    ]
    assert set(elems) == {"resourceType", "id", "meta", "gender"}


def test_unknown_parameters_reported_or_rejected(client, tag):
    make_patients(client, tag, ["U1"])
    resp = client.get("/Patient", params={"_tag": f"{TAG_SYSTEM}|{tag}", "shoe-size": "42"})
    assert resp.status_code == 200
    body = resp.json()
    outcome = [e for e in body["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and "shoe-size" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    assert len(ids(body)) == 1
    self_link = next(lk["url"] for lk in body["link"] if lk["relation"] == "self")
    assert "shoe-size" not in self_link
    strict = client.get(
        "/Patient",
        params={"_tag": f"{TAG_SYSTEM}|{tag}", "shoe-size": "42"},
        headers={"Prefer": "handling=strict"},
    )
    assert_outcome(strict, 400)
    issues = strict.json()["issue"]
    assert any("shoe-size" in i["diagnostics"] for i in issues)
    assert all(i["severity"] == "error" for i in issues)  # an error, not a warning, when strict


def test_system_and_compartment_search(client, tag):
    org, pat, obs = _patient_with_obs(client, tag)
    both = client.get(
        "/", params={"_type": "Patient,Observation", "_tag": f"{TAG_SYSTEM}|{tag}"}
    ).json()
    assert sorted(ids(both)) == sorted([pat, obs])
    comp = client.get(f"/Patient/{pat}/Observation").json()
    assert ids(comp) == [obs]
    assert ids(client.get(f"/Patient/{uuid.uuid4()}/Observation").json()) == []
    assert_outcome(client.get(f"/Organization/{org}/Observation"), 404)


def test_post_search(client, tag):
    made = make_patients(client, tag, ["P1"])
    resp = client.post("/Patient/_search", data={"_tag": f"{TAG_SYSTEM}|{tag}"})
    assert resp.status_code == 200, resp.text
    assert ids(resp.json()) == made


def test_explain(client, tag):
    resp = client.get("/Patient", params={"family": "x", "_explain": "true"})
    assert resp.status_code == 200
    text = resp.json()["issue"][0]["diagnostics"]
    assert "SELECT" in text.upper()
