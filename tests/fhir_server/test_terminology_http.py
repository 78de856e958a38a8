"""Terminology over HTTP (FHIR R4 terminology-service.html): $expand, $validate-code, $lookup,
$subsumes, $translate at type and instance level, GET and POST, and token :in / :below search,
against a running server on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.fhir_server.test_rest import assert_outcome
from tests.servers import system_token
from tests.terminology.content import code_system, example, value_set

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"
ISSUE_TYPE = "http://hl7.org/fhir/issue-type"
FHIR_USE = "http://hl7.org/fhir/address-use"
V3_USE = "http://terminology.hl7.org/CodeSystem/v3-AddressUse"


def out(body: dict) -> dict:
    """Parameters -> {name: value or parts} (the last of repeated names)."""
    assert body["resourceType"] == "Parameters", body
    res = {}
    for p in body["parameter"]:
        res[p["name"]] = next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
    return res


def parameters(**values: object) -> dict:
    params = []
    for name, v in values.items():
        if isinstance(v, dict) and "resourceType" in v:
            params.append({"name": name, "resource": v})
        elif isinstance(v, dict):
            params.append({"name": name, "valueCoding": v})
        elif isinstance(v, bool):
            params.append({"name": name, "valueBoolean": v})
        elif isinstance(v, int):
            params.append({"name": name, "valueInteger": v})
        else:
            params.append({"name": name, "valueUri" if name == "url" else "valueString": v})
    return {"resourceType": "Parameters", "parameter": params}


@pytest.fixture
def findings(client: httpx.Client) -> dict:
    """A stored CodeSystem with a hierarchy (unique url per test) and a ValueSet over it with
    an is-a filter."""
    url = f"urn:test:findings:{uuid.uuid4().hex[:8]}"
    cs = client.post("/CodeSystem", json=code_system(url=url))
    assert cs.status_code == 201, cs.text
    vs = client.post(
        "/ValueSet",
        json=value_set(
            f"{url}:vs:skin",
            {"system": url, "filter": [{"property": "concept", "op": "is-a", "value": "skin"}]},
        ),
    )
    assert vs.status_code == 201, vs.text
    return {"url": url, "cs": cs.json(), "vs": vs.json()}


# -- $expand -------------------------------------------------------------------------------
def test_expand_builtin_value_set_get_and_post(client: httpx.Client) -> None:
    resp = client.get("/ValueSet/$expand", params={"url": GENDER_VS})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["resourceType"] == "ValueSet" and body["url"] == GENDER_VS
    assert body["expansion"]["total"] == 4
    assert [c["code"] for c in body["expansion"]["contains"]] == [
        "male",
        "female",
        "other",
        "unknown",
    ]
    post = client.post("/ValueSet/$expand", json=parameters(url=GENDER_VS, count=2, offset=1))
    assert post.status_code == 200, post.text
    page = post.json()["expansion"]
    assert page["total"] == 4 and page["offset"] == 1
    assert [c["code"] for c in page["contains"]] == ["female", "other"]
    text = client.get("/ValueSet/$expand", params={"url": GENDER_VS, "filter": "unk"}).json()
    assert [c["code"] for c in text["expansion"]["contains"]] == ["unknown"]


def test_expand_stored_value_set_with_is_a_filter(client: httpx.Client, findings: dict) -> None:
    expected = {"skin", "melanoma", "naevus", "metastasis", "old-skin"}
    by_id = client.get(f"/ValueSet/{findings['vs']['id']}/$expand")
    assert by_id.status_code == 200, by_id.text
    assert {c["code"] for c in by_id.json()["expansion"]["contains"]} == expected
    by_url = client.get(
        "/ValueSet/$expand", params={"url": findings["vs"]["url"], "activeOnly": "true"}
    )
    assert {c["code"] for c in by_url.json()["expansion"]["contains"]} == expected - {"old-skin"}


def test_expand_inline_value_set(client: httpx.Client, findings: dict) -> None:
    inline = value_set(
        "urn:inline",
        {
            "system": findings["url"],
            "filter": [{"property": "concept", "op": "descendent-of", "value": "lung"}],
        },
    )
    resp = client.post("/ValueSet/$expand", json=parameters(valueSet=inline))
    assert resp.status_code == 200, resp.text
    assert {c["code"] for c in resp.json()["expansion"]["contains"]} == {
        "nodule",
        "pneumonia",
        "metastasis",
    }


def test_expand_errors(client: httpx.Client) -> None:
    assert_outcome(
        client.get("/ValueSet/$expand", params={"url": "http://example.org/no-such-vs"}),
        404,
        "not-found",
    )
    assert_outcome(
        client.get(
            "/ValueSet/$expand", params={"url": "http://hl7.org/fhir/ValueSet/observation-codes"}
        ),
        422,
        "not-supported",
    )
    assert_outcome(client.get("/ValueSet/$expand"), 400, "invalid")
    assert_outcome(
        client.get("/ValueSet/$expand", params={"url": GENDER_VS, "count": "many"}), 400, "invalid"
    )
    assert_outcome(client.post("/ValueSet/$expand", json={"resourceType": "Patient"}), 400)
    assert_outcome(client.get("/ValueSet/no-such-id/$expand"), 404)
    # an inline resource is validated like a write: 400 with its issues, never a 500
    bad = {"resourceType": "ValueSet", "status": "active", "compose": {"include": "x"}}
    body = assert_outcome(client.post("/ValueSet/$expand", json=parameters(valueSet=bad)), 400)
    assert body["issue"][0]["expression"] == ["ValueSet.compose.include"]
    odd = parameters(coding={"system": 5, "code": "male"})
    assert_outcome(client.post("/CodeSystem/$lookup", json=odd), 400, "invalid")
    assert_outcome(client.get("/Patient/$expand", params={"url": GENDER_VS}), 404)


def test_expand_too_costly(client: httpx.Client, findings: dict) -> None:
    """Past HEARTH_MAX_EXPANSION_SIZE (default 10,000, kept by the test servers): $expand
    answers 422 too-costly, and a :in search 400 with the same issue code."""
    big = {
        "resourceType": "CodeSystem",
        "url": f"{findings['url']}:big",
        "status": "active",
        "content": "complete",
        "concept": [{"code": f"c{n}"} for n in range(10_001)],
    }
    assert client.post("/CodeSystem", json=big).status_code == 201
    vs = value_set(f"{findings['url']}:big-vs", {"system": big["url"]})
    body = assert_outcome(
        client.post("/ValueSet/$expand", json=parameters(valueSet=vs)), 422, "too-costly"
    )
    assert "10000" in body["issue"][0]["diagnostics"]
    resp = client.get("/Observation", params={"code:in": vs["url"]})
    assert_outcome(resp, 400, "not-found")  # not stored: an unknown value set
    assert client.post("/ValueSet", json=vs).status_code == 201
    assert_outcome(client.get("/Observation", params={"code:in": vs["url"]}), 400, "too-costly")


# -- $validate-code ------------------------------------------------------------------------
def test_validate_code_value_set(client: httpx.Client) -> None:
    yes = client.get(
        "/ValueSet/$validate-code", params={"url": GENDER_VS, "system": GENDER_CS, "code": "male"}
    )
    assert yes.status_code == 200, yes.text
    assert out(yes.json())["result"] is True and out(yes.json())["display"] == "Male"
    no = client.post(
        "/ValueSet/$validate-code",
        json=parameters(url=GENDER_VS, coding={"system": GENDER_CS, "code": "mail"}),
    )
    assert out(no.json())["result"] is False and "mail" in out(no.json())["message"]
    assert_outcome(client.get("/ValueSet/$validate-code", params={"url": GENDER_VS}), 400)


def test_validate_code_code_system(client: httpx.Client, findings: dict) -> None:
    cs_id = findings["cs"]["id"]
    good = client.get(f"/CodeSystem/{cs_id}/$validate-code", params={"code": "nodule"}).json()
    assert out(good)["result"] is True
    wrong = client.get(
        "/CodeSystem/$validate-code",
        params={"url": findings["url"], "code": "nodule", "display": "Lung nodule"},
    ).json()
    assert out(wrong)["result"] is False and out(wrong)["display"] == "Pulmonary nodule"
    by_coding = client.post(
        "/CodeSystem/$validate-code",
        json=parameters(coding={"system": findings["url"], "code": "lung"}),
    ).json()
    assert out(by_coding)["result"] is True and out(by_coding)["display"] == "Lung finding"
    assert_outcome(client.get("/CodeSystem/$validate-code", params={"code": "lung"}), 400)
    vs = client.get(
        f"/ValueSet/{findings['vs']['id']}/$validate-code",
        params={"system": findings["url"], "code": "pneumonia"},
    ).json()
    assert out(vs)["result"] is False


# -- $lookup, $subsumes ----------------------------------------------------------------------
def test_lookup_builtin_hierarchy(client: httpx.Client) -> None:
    resp = client.get("/CodeSystem/$lookup", params={"system": ISSUE_TYPE, "code": "invalid"})
    assert resp.status_code == 200, resp.text
    got = resp.json()["parameter"]
    assert {"name": "display", "valueString": "Invalid Content"} in got
    children = {
        p["part"][1]["valueCode"]
        for p in got
        if p["name"] == "property" and p["part"][0]["valueCode"] == "child"
    }
    assert {"structure", "required", "value", "invariant"} == children


def test_lookup_and_subsumes_on_stored_code_system(client: httpx.Client, findings: dict) -> None:
    cs_id, url = findings["cs"]["id"], findings["url"]
    by_id = client.post(f"/CodeSystem/{cs_id}/$lookup", json=parameters(code="melanoma")).json()
    assert out(by_id)["display"] == "Malignant melanoma"
    by_coding = client.post(
        "/CodeSystem/$lookup",
        json=parameters(coding={"system": url, "code": "metastasis"}, property="parent"),
    ).json()
    parents = {p["part"][1]["valueCode"] for p in by_coding["parameter"] if p["name"] == "property"}
    assert parents == {"melanoma", "nodule"}
    sub = client.get(
        "/CodeSystem/$subsumes", params={"system": url, "codeA": "finding", "codeB": "metastasis"}
    ).json()
    assert out(sub)["outcome"] == "subsumes"
    rev = client.get(
        f"/CodeSystem/{cs_id}/$subsumes", params={"codeA": "naevus", "codeB": "skin"}
    ).json()
    assert out(rev)["outcome"] == "subsumed-by"
    assert_outcome(
        client.get("/CodeSystem/$lookup", params={"system": url, "code": "nope"}), 400, "invalid"
    )
    assert_outcome(
        client.get("/CodeSystem/$lookup", params={"system": "urn:none", "code": "x"}),
        404,
        "not-found",
    )
    assert_outcome(client.get("/CodeSystem/$subsumes", params={"system": url, "codeA": "x"}), 400)


def test_stored_versions_resolve_with_url_pipe_version(
    client: httpx.Client, findings: dict
) -> None:
    url = findings["url"]
    v2 = code_system(url=url, version="2", concept=[{"code": "only-in-2", "display": "Two"}])
    assert client.post("/CodeSystem", json=v2).status_code == 201
    one = client.get("/CodeSystem/$lookup", params={"system": url, "version": "1", "code": "skin"})
    assert one.status_code == 200, one.text
    two = client.get("/CodeSystem/$lookup", params={"system": f"{url}|2", "code": "only-in-2"})
    assert out(two.json())["display"] == "Two"


# -- $translate ------------------------------------------------------------------------------
def test_translate_with_the_official_example_map(client: httpx.Client) -> None:
    cm = example("conceptmap-example.json")
    assert client.put(f"/ConceptMap/{cm['id']}", json=cm).status_code in (200, 201)
    found = client.get("/ConceptMap/$translate", params={"system": FHIR_USE, "code": "home"})
    assert found.status_code == 200, found.text
    result = found.json()["parameter"]
    assert result[0] == {"name": "result", "valueBoolean": True}
    match = {p["name"]: p for p in result[1]["part"]}
    assert match["equivalence"]["valueCode"] == "equivalent"
    assert match["concept"]["valueCoding"]["code"] == "H"
    assert match["source"]["valueUri"] == cm["url"]
    disjoint = client.get(
        f"/ConceptMap/{cm['id']}/$translate", params={"system": FHIR_USE, "code": "old"}
    ).json()
    assert out(disjoint)["result"] is False
    reverse = client.post(
        "/ConceptMap/$translate",
        json=parameters(url=cm["url"], coding={"system": V3_USE, "code": "TMP"}, reverse=True),
    ).json()
    assert out(reverse)["result"] is True
    assert reverse["parameter"][1]["part"][1]["valueCoding"]["code"] == "temp"
    none = client.get("/ConceptMap/$translate", params={"system": FHIR_USE, "code": "zzz"}).json()
    assert out(none)["result"] is False
    assert_outcome(client.get("/ConceptMap/$translate", params={"code": "home"}), 400)


# -- search --------------------------------------------------------------------------------
def test_search_code_in_and_below(client: httpx.Client, findings: dict) -> None:
    url = findings["url"]
    made = {}
    for code in ("melanoma", "nodule", "metastasis", "pneumonia"):
        resp = client.post(
            "/Observation",
            json={
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": url, "code": code}]},
            },
        )
        assert resp.status_code == 201, resp.text
        made[resp.json()["id"]] = code

    def codes(params: dict) -> set[str]:
        resp = client.get("/Observation", params={**params, "_count": 100})
        assert resp.status_code == 200, resp.text
        return {made[e["resource"]["id"]] for e in resp.json().get("entry", [])}

    assert codes({"code:in": findings["vs"]["url"]}) == {"melanoma", "metastasis"}
    assert codes({"code:below": f"{url}|lung"}) == {"nodule", "metastasis", "pneumonia"}
    assert codes({"code:above": f"{url}|metastasis"}) == {"melanoma", "nodule", "metastasis"}
    assert codes({"code:not-in": findings["vs"]["url"], "code:below": f"{url}|finding"}) == {
        "nodule",
        "pneumonia",
    }
    counted = client.get(
        "/Observation", params={"code:below": f"{url}|finding", "_total": "accurate"}
    ).json()
    assert counted["total"] == 4
    posted = client.post(
        "/Observation/_search", data={"code:in": findings["vs"]["url"]}
    )  # form-encoded POST search
    assert posted.status_code == 200 and len(posted.json()["entry"]) == 2
    assert_outcome(client.get("/Observation", params={"code:below": "lung"}), 400, "invalid")


def test_search_in_a_transaction_sees_its_own_value_set(client: httpx.Client) -> None:
    """GET entries run last, inside the transaction: :in resolves a ValueSet and CodeSystem
    created by the same Bundle."""
    url = f"urn:test:findings:{uuid.uuid4().hex[:8]}"
    vs = value_set(
        f"{url}:vs",
        {"system": url, "filter": [{"property": "concept", "op": "is-a", "value": "lung"}]},
    )
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": url, "code": "pneumonia"}]},
    }
    entries = [
        {"resource": code_system(url=url), "request": {"method": "POST", "url": "CodeSystem"}},
        {"resource": vs, "request": {"method": "POST", "url": "ValueSet"}},
        {"resource": obs, "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": f"Observation?code:in={vs['url']}"}},
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    resp = client.post("", json=bundle)
    assert resp.status_code == 200, resp.text
    got = resp.json()["entry"]
    created = got[2]["resource"]["id"]
    searchset = got[3]["resource"]
    assert [e["resource"]["id"] for e in searchset["entry"]] == [created]


def test_search_patient_gender_in_builtin_value_set(client: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    resp = client.post(
        "/Patient",
        json={
            "resourceType": "Patient",
            "gender": "other",
            "meta": {"tag": [{"system": "urn:test", "code": tag}]},
        },
    )
    assert resp.status_code == 201
    found = client.get(
        "/Patient", params={"_tag": f"urn:test|{tag}", "gender:in": GENDER_VS}
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [resp.json()["id"]]


# -- scopes and the CapabilityStatement -------------------------------------------------------
def test_read_scope_on_the_type_is_needed(server, client: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    narrow = system_token(server.database_url, server.root, "system/ValueSet.r")
    ok = httpx.get(
        f"{server.fhir}/ValueSet/$expand",
        params={"url": GENDER_VS},
        headers={"Authorization": f"Bearer {narrow}"},
    )
    assert ok.status_code == 200, ok.text
    denied = httpx.get(
        f"{server.fhir}/CodeSystem/$lookup",
        params={"system": GENDER_CS, "code": "male"},
        headers={"Authorization": f"Bearer {narrow}"},
    )
    assert_outcome(denied, 403, "forbidden")


def test_capability_statement_lists_the_operations(client: httpx.Client) -> None:
    rest = client.get("/metadata").json()["rest"][0]
    ops = {
        r["type"]: {o["name"]: o["definition"] for o in r.get("operation", [])}
        for r in rest["resource"]
    }
    assert ops["ValueSet"]["expand"].endswith("/ValueSet-expand")
    assert ops["ValueSet"]["validate-code"].endswith("/ValueSet-validate-code")
    assert ops["CodeSystem"]["validate-code"].endswith("/CodeSystem-validate-code")
    assert ops["CodeSystem"]["lookup"].endswith("/CodeSystem-lookup")
    assert ops["CodeSystem"]["subsumes"].endswith("/CodeSystem-subsumes")
    assert ops["ConceptMap"]["translate"].endswith("/ConceptMap-translate")
    assert "expand" not in ops["Patient"]
