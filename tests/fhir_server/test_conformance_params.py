"""R4 parameters and headers that were silently ignored (issue 16), over HTTP on both databases:
``PUT`` with ``If-None-Match``, ``_summary`` / ``_elements`` on read and vread, ``total`` with
``_count=0``, history ``_at`` and strict history parameters, ``_list``, and the ``first`` /
``self`` paging links, reference ``:above`` / ``:below`` on hierarchies."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.fhir_server.auth.smart import client_token

SUBSETTED = "SUBSETTED"


def _patient(client: httpx.Client, family: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    resp = client.post(
        "/Patient",
        json={"resourceType": "Patient", "name": [{"family": family}], **extra},
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def _ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


# -- If-None-Match on update ------------------------------------------------------------------
def test_put_if_none_match_star_refuses_an_existing_resource(client):
    pid = f"inm-{uuid.uuid4().hex[:12]}"
    body = {"resourceType": "Patient", "id": pid, "name": [{"family": "First"}]}
    created = client.put(f"/Patient/{pid}", json=body, headers={"If-None-Match": "*"})
    assert created.status_code == 201, created.text
    again = client.put(
        f"/Patient/{pid}",
        json={**body, "name": [{"family": "Overwritten"}]},
        headers={"If-None-Match": "*"},
    )
    assert again.status_code == 412, again.text
    assert again.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{pid}").json()["name"][0]["family"] == "First"
    # the current version named: 412; another version: the update goes ahead
    stale = client.put(f"/Patient/{pid}", json=body, headers={"If-None-Match": 'W/"1"'})
    assert stale.status_code == 412
    moved = client.put(
        f"/Patient/{pid}",
        json={**body, "gender": "other"},
        headers={"If-None-Match": 'W/"7"'},
    )
    assert moved.status_code == 200
    # a deleted resource does not exist: create-only succeeds
    assert client.delete(f"/Patient/{pid}").status_code in (200, 204)
    back = client.put(f"/Patient/{pid}", json=body, headers={"If-None-Match": "*"})
    assert back.status_code == 201, back.text


def test_conditional_put_if_none_match_star_refuses_a_match(client):
    family = f"Cond{uuid.uuid4().hex[:8]}"
    body = {"resourceType": "Patient", "name": [{"family": family}]}
    url = f"/Patient?family={family}"
    star = {"If-None-Match": "*"}
    assert client.put(url, json=body, headers=star).status_code == 201  # no match: created
    again = client.put(url, json={**body, "gender": "male"}, headers=star)
    assert again.status_code == 412, again.text
    found = client.get("/Patient", params={"family": family}).json()
    assert [e["resource"].get("gender") for e in found["entry"]] == [None]
    assert client.put(url, json={**body, "gender": "male"}).status_code == 200


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_bundle_entry_if_none_match_refuses_an_existing_resource(client, kind):
    """Bundle.entry.request.ifNoneMatch is the header's twin (http.html#transaction)."""
    pid = f"inm-{uuid.uuid4().hex[:12]}"

    def put(family: str, if_none_match: str) -> httpx.Response:
        entry = {
            "resource": {"resourceType": "Patient", "id": pid, "name": [{"family": family}]},
            "request": {"method": "PUT", "url": f"Patient/{pid}", "ifNoneMatch": if_none_match},
        }
        return client.post("/", json={"resourceType": "Bundle", "type": kind, "entry": [entry]})

    def status(resp: httpx.Response) -> int:
        """The entry's status: a failed transaction is the whole reply (an OperationOutcome)."""
        if kind == "transaction" and resp.status_code != 200:
            assert resp.json()["resourceType"] == "OperationOutcome"
            return resp.status_code
        assert resp.status_code == 200, resp.text
        return int(resp.json()["entry"][0]["response"]["status"].split()[0])

    assert status(put("First", "*")) == 201
    assert status(put("Overwritten", "*")) == 412
    assert status(put("Overwritten", 'W/"1"')) == 412
    assert client.get(f"/Patient/{pid}").json()["name"][0]["family"] == "First"
    assert status(put("Second", 'W/"9"')) == 200
    assert client.get(f"/Patient/{pid}").json()["name"][0]["family"] == "Second"


# -- _summary / _elements on read and vread ---------------------------------------------------
def test_summary_and_elements_on_read_and_vread(client):
    made = _patient(
        client,
        "Shape",
        gender="female",
        birthDate="1970-01-01",
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        contact=[{"name": {"family": "Kin"}}],
    )
    pid = made["id"]
    for url in (f"/Patient/{pid}", f"/Patient/{pid}/_history/1"):
        full = client.get(url).json()
        assert "contact" in full and SUBSETTED not in str(full["meta"])
        summary = client.get(url, params={"_summary": "true"}).json()
        assert "contact" not in summary and summary["name"][0]["family"] == "Shape"
        assert any(t["code"] == SUBSETTED for t in summary["meta"]["tag"])
        elements = client.get(url, params={"_elements": "gender"}).json()
        assert set(elements) == {"resourceType", "id", "meta", "gender"}
        data = client.get(url, params={"_summary": "data"}).json()
        assert "text" not in data and "contact" in data
        assert client.get(url, params={"_summary": "count"}).status_code == 400
        assert client.get(url, params={"_summary": "nonsense"}).status_code == 400


def test_elements_and_summary_keep_the_mandatory_elements_and_name_choices(client):
    """search.html#elements: the mandatory elements come too (Observation.status and .code,
    1..1); ``value`` names the choice ``value[x]``; ``_summary=text`` is text, id, meta and the
    mandatory top-level elements (search.html#summary). On read, vread and search alike."""
    made = client.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": "Patient/nobody"},
            "valueQuantity": {"value": 70, "unit": "kg"},
            "note": [{"text": "after lunch"}],
        },
    )
    assert made.status_code == 201, made.text
    oid = made.json()["id"]
    common = {"resourceType", "id", "meta", "status", "code"}
    for url, params in (
        (f"/Observation/{oid}", {}),
        (f"/Observation/{oid}/_history/1", {}),
        ("/Observation", {"_id": oid}),
    ):

        def shaped(url: str = url, params: dict = params, **extra: str) -> dict:
            resp = client.get(url, params={**params, **extra})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            found = body["entry"][0]["resource"] if body["resourceType"] == "Bundle" else body
            assert any(t["code"] == SUBSETTED for t in found["meta"]["tag"])
            return found

        assert set(shaped(_elements="subject")) == common | {"subject"}
        assert set(shaped(_elements="value")) == common | {"valueQuantity"}
        assert set(shaped(_elements="value[x]")) == common | {"valueQuantity"}
        assert set(shaped(_summary="text")) == common


def test_read_and_vread_refuse_unknown_parameters_under_strict(client):
    pid = _patient(client, "StrictRead")["id"]
    for url in (f"/Patient/{pid}", f"/Patient/{pid}/_history/1"):
        strict = client.get(url, params={"_shoe": "1"}, headers={"Prefer": "handling=strict"})
        assert strict.status_code == 400, strict.text
        assert all(i["severity"] == "error" for i in strict.json()["issue"])
        assert "_shoe" in strict.json()["issue"][0]["diagnostics"]
        ok = client.get(url, params={"_shoe": "1", "_elements": "name"})
        assert ok.status_code == 200 and set(ok.json()) == {"resourceType", "id", "meta", "name"}
        shaped = client.get(
            url, params={"_elements": "name"}, headers={"Prefer": "handling=strict"}
        )
        assert shaped.status_code == 200


# -- total with _count=0 ---------------------------------------------------------------------
def test_count_zero_gives_the_total_alone(client):
    family = f"Zero{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        _patient(client, family)
    body = client.get("/Patient", params={"family": family, "_count": "0"}).json()
    assert body["total"] == 3
    assert "entry" not in body  # no matches, and FHIR JSON has no empty arrays (json.html)
    for types in ("Patient", "Patient,Practitioner"):  # system search alike
        system = client.get("/", params={"family": family, "_count": "0", "_type": types})
        assert system.status_code == 200, system.text
        assert system.json()["total"] == 3 and "entry" not in system.json()
    counted = client.get("/Patient", params={"family": family, "_summary": "count"}).json()
    assert counted["total"] == 3 and "entry" not in counted
    nothing = client.get("/Patient", params={"family": f"None{family}", "_count": "0"}).json()
    assert nothing["total"] == 0 and "entry" not in nothing
    none = client.get("/Patient", params={"family": family, "_count": "0", "_total": "none"})
    assert "total" not in none.json()


# -- paging links ------------------------------------------------------------------------------
def test_first_and_self_links(client):
    family = f"Links{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        _patient(client, family)
    page1 = client.get("/Patient", params={"family": family, "_count": "2"}).json()
    links = {lk["relation"]: lk["url"] for lk in page1["link"]}
    assert links["first"] == links["self"] and "_page" not in links["first"]
    page2 = client.get(links["next"]).json()
    links2 = {lk["relation"]: lk["url"] for lk in page2["link"]}
    assert links2["first"] == links["first"]
    assert "_page=" in links2["self"]  # self is this page, not the first
    assert "next" not in links2
    again = client.get(links2["self"]).json()
    assert _ids(again) == _ids(page2)
    first_again = client.get(links2["first"]).json()
    assert _ids(first_again) == _ids(page1)


def _links(bundle: dict) -> dict[str, str]:
    return {lk["relation"]: lk["url"] for lk in bundle["link"]}


@pytest.mark.parametrize("sort", [None, "birthdate", "-birthdate", "family,-birthdate"])
def test_previous_and_last_links(client, sort):
    """search.html#paging: ``previous`` goes back a page, ``last`` is the last page, over any
    sort (resources without a sort value come last)."""
    family = f"Back{uuid.uuid4().hex[:8]}"
    for day in ("01", "02", None, "03", "04", None, "05"):
        _patient(client, family, **({"birthDate": f"1980-01-{day}"} if day else {}))
    params = {"family": family, "_count": "3", **({"_sort": sort} if sort else {})}
    everything = _ids(client.get("/Patient", params={**params, "_count": "50"}).json())
    assert len(everything) == 7
    pages, body = [], client.get("/Patient", params=params).json()
    assert "previous" not in _links(body)  # the first page has none
    while True:
        pages.append(_ids(body))
        if "next" not in _links(body):
            break
        assert "last" in _links(body)
        body = client.get(_links(body)["next"]).json()
        back = client.get(_links(body)["previous"]).json()
        assert _ids(back) == pages[-1]  # previous is the page before, exactly
        assert client.get(_links(back)["next"]).json() and _ids(
            client.get(_links(back)["next"]).json()
        ) == _ids(body)
    assert [i for p in pages for i in p] == everything
    first = client.get("/Patient", params=params).json()
    last = client.get(_links(first)["last"]).json()
    assert _ids(last) == everything[-3:]  # the last three, in the search's order
    assert "next" not in _links(last)
    before_last = client.get(_links(last)["previous"]).json()
    assert _ids(before_last) == everything[1:4]
    assert _ids(client.get(_links(before_last)["previous"]).json()) == everything[:1]


def test_a_forged_backward_cursor_is_a_400(client):
    import base64

    forged = base64.urlsafe_b64encode(b'{"k":["x"],"pk":-1,"b":1}').decode().rstrip("=")
    resp = client.get("/Patient", params={"_page": forged})
    assert resp.status_code == 400, resp.text
    assert resp.json()["issue"][0]["code"] == "invalid"


# -- history _at ---------------------------------------------------------------------------
def test_history_at(client):
    made = _patient(client, "V1")
    pid = made["id"]
    t1 = made["meta"]["lastUpdated"]
    v2 = client.put(
        f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "name": [{"family": "V2"}]}
    ).json()
    t2 = v2["meta"]["lastUpdated"]
    v3 = client.put(
        f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "name": [{"family": "V3"}]}
    ).json()
    t3 = v3["meta"]["lastUpdated"]

    def versions(**params):  # type: ignore[no-untyped-def]
        resp = client.get(f"/Patient/{pid}/_history", params=params)
        assert resp.status_code == 200, resp.text
        return sorted(e["resource"]["meta"]["versionId"] for e in resp.json().get("entry", []))

    assert versions(_at=t1) == ["1"]  # the instant version 1 was written
    assert versions(_at=t2) == ["2"]
    assert versions(_at=t3) == ["3"]
    assert versions(_at=t1[:4]) == ["1", "2", "3"]  # the whole year (all written now)
    assert versions(_at="1999") == []  # before it existed
    assert versions(_at=["1999", t2]) == ["2"]  # several: any of them
    bad = client.get(f"/Patient/{pid}/_history", params={"_at": "soon"})
    assert bad.status_code == 400 and bad.json()["issue"][0]["code"] == "invalid"
    # prefixes, as a date search reads them (http.html#history: "see search notes on dates")
    assert versions(_at=f"ge{t2}") == ["2", "3"]  # current at some time from t2 on
    assert versions(_at=f"gt{t2}") == ["2", "3"]  # version 2 stays current after t2
    assert versions(_at=f"gt{t3}") == ["3"]
    assert versions(_at=f"le{t2}") == ["1", "2"]
    assert versions(_at=f"lt{t2}") == ["1"]
    assert versions(_at="le1999") == []
    assert versions(_at="ge9999") == ["3"]  # the current version stays current
    assert versions(_at=f"eq{t1}") == ["1"]
    for odd in (f"sa{t1}", f"ap{t1}", f"ne{t1}", "xx2020"):
        refused = client.get(f"/Patient/{pid}/_history", params={"_at": odd})
        assert refused.status_code == 400, refused.text
    # honoured under Prefer: handling=strict too, and at type and system level
    strict = {"Prefer": "handling=strict"}
    for url in (f"/Patient/{pid}/_history", "/Patient/_history", "/_history"):
        resp = client.get(url, params={"_at": t2, "_count": "500"}, headers=strict)
        assert resp.status_code == 200, resp.text
        mine = [
            e["resource"]["meta"]["versionId"]
            for e in resp.json()["entry"]
            if e.get("resource", {}).get("id") == pid
        ]
        assert mine == ["2"]


def test_history_unknown_parameter_under_strict(client):
    pid = _patient(client, "Strict")["id"]
    lenient = client.get(f"/Patient/{pid}/_history", params={"_shoe": "1"})
    assert lenient.status_code == 200
    strict = client.get(
        f"/Patient/{pid}/_history", params={"_shoe": "1"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    assert all(i["severity"] == "error" for i in strict.json()["issue"])


# -- _list -----------------------------------------------------------------------------------
@pytest.fixture
def listed(client):  # type: ignore[no-untyped-def]
    family = f"Listed{uuid.uuid4().hex[:8]}"
    a, b, c = (_patient(client, family)["id"] for _ in range(3))
    resp = client.post(
        "/List",
        json={
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "subject": {"reference": f"Patient/{a}"},
            "entry": [
                {"item": {"reference": f"Patient/{a}"}},
                {"item": {"reference": f"Patient/{b}"}},
            ],
        },
    )
    assert resp.status_code == 201, resp.text
    return {"family": family, "a": a, "b": b, "c": c, "list": resp.json()["id"]}


def test_list_selects_the_members(client, listed):
    body = client.get("/Patient", params={"_list": listed["list"]}).json()
    assert sorted(_ids(body)) == sorted([listed["a"], listed["b"]])
    both = client.get("/Patient", params={"_list": listed["list"], "family": listed["family"]})
    assert sorted(_ids(both.json())) == sorted([listed["a"], listed["b"]])
    assert not _ids(client.get("/Patient", params={"_list": "no-such-list"}).json())
    assert not _ids(client.get("/Observation", params={"_list": listed["list"]}).json())
    unknown = client.get(
        "/Patient", params={"_list": "$no-such-list"}, headers={"Prefer": "handling=strict"}
    )
    assert unknown.status_code == 400
    # a functional list holds no Patients: nothing, not an error
    assert _ids(client.get("/Patient", params={"_list": "$current-problems"}).json()) == []


def _concept(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"


def test_functional_lists_are_the_current_records(client):
    """R4 list.html#functional-lists: ``$current-problems``, ``$current-medications``,
    ``$current-allergies`` and ``$current-drug-allergies`` select the patient's current
    records (the example Bundle bundle-request-medsallergies asks for them)."""
    pid = _patient(client, f"Functional{uuid.uuid4().hex[:8]}")["id"]
    subject = {"reference": f"Patient/{pid}"}

    def post(body: dict) -> str:
        resp = client.post(f"/{body['resourceType']}", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    def condition(status: str, category: str) -> str:
        return post(
            {
                "resourceType": "Condition",
                "subject": subject,
                "clinicalStatus": _concept(CLINICAL, status),
                "category": [_concept(CATEGORY, category)],
                "code": {"text": f"{status} {category}"},
            }
        )

    problem = condition("active", "problem-list-item")
    condition("resolved", "problem-list-item")
    condition("active", "encounter-diagnosis")
    med = {"medicationCodeableConcept": {"text": "x"}, "subject": subject}
    current = post({"resourceType": "MedicationStatement", "status": "active", **med})
    post({"resourceType": "MedicationStatement", "status": "completed", **med})

    def allergy(category: str) -> str:
        return post(
            {
                "resourceType": "AllergyIntolerance",
                "patient": subject,
                "clinicalStatus": _concept(ALLERGY, "active"),
                "category": [category],
            }
        )

    drug, food = allergy("medication"), allergy("food")

    def listed(res_type: str, name: str) -> list[str]:
        resp = client.get(f"/{res_type}", params={"patient": pid, "_list": name})
        assert resp.status_code == 200, resp.text
        return sorted(_ids(resp.json()))

    assert listed("Condition", "$current-problems") == [problem]
    assert listed("MedicationStatement", "$current-medications") == [current]
    assert listed("AllergyIntolerance", "$current-allergies") == sorted([drug, food])
    assert listed("AllergyIntolerance", "$current-drug-allergies") == [drug]
    assert listed("Condition", "$current-medications") == []


def test_list_of_another_patient_names_nothing(server, listed):
    # a token for patient b: the List is in a's compartment, so b's token cannot use it
    headers = client_token(server, "patient/*.rs", patient=listed["b"])
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as mine:
        body = mine.get("/Patient", params={"_list": listed["list"]}).json()
        assert _ids(body) == []
    headers = client_token(server, "patient/*.rs", patient=listed["a"])
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as owner:
        assert _ids(owner.get("/Patient", params={"_list": listed["list"]}).json()) == [listed["a"]]


def _contained_case(client: httpx.Client, family: str, subject: str | None = None) -> str:
    """An Observation holding a contained Patient of ``family`` (its subject)."""
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "contained"},
        "contained": [
            {
                "resourceType": "Patient",
                "id": "who",
                "name": [{"family": family}],
                "gender": "female",
                "birthDate": "1970-05-01",
                "identifier": [{"system": "http://example.org/mrn", "value": family}],
            }
        ],
        "subject": {"reference": subject or "#who"},
    }
    resp = client.post("/Observation", json=obs)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_contained_searches_the_contained_resources(client):
    """search.html#contained: ``_contained=true`` matches contained resources and returns
    their containers (``_containedType=container``, the default); ``both`` adds the
    resources of the type itself; ``false`` (the default) never looks inside."""
    family = f"Inside{uuid.uuid4().hex[:8]}"
    container = _contained_case(client, family)
    top = _patient(client, family)["id"]

    def found(**params: str) -> list[str]:
        resp = client.get("/Patient", params={"family": family, **params})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert not [e for e in body.get("entry", []) if e["search"]["mode"] == "outcome"]
        return sorted(
            f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in body.get("entry", [])
        )

    assert found() == [f"Patient/{top}"]
    assert found(_contained="false") == [f"Patient/{top}"]
    assert found(_contained="true") == [f"Observation/{container}"]
    assert found(_contained="true", _containedType="container") == [f"Observation/{container}"]
    assert found(_contained="both") == sorted([f"Observation/{container}", f"Patient/{top}"])
    assert found(_contained="true", gender="female", birthdate="1970") == [
        f"Observation/{container}"
    ]
    assert found(_contained="true", identifier=f"http://example.org/mrn|{family}") == [
        f"Observation/{container}"
    ]
    assert found(_contained="true", gender="male") == []
    counted = client.get("/Patient", params={"family": family, "_contained": "true", "_count": "0"})
    assert counted.json()["total"] == 1
    # the container's own values do not answer a _contained search of its type
    inner = client.get("/Observation", params={"code:text": "contained", "_contained": "true"})
    assert inner.status_code == 200 and container not in _ids(inner.json())
    outer = client.get("/Observation", params={"code:text": "contained", "_count": "1000"})
    assert container in _ids(outer.json())


@pytest.mark.parametrize(
    "params",
    [
        {"_contained": "true"},  # no criterion on the contained resources
        {"_contained": "true", "general-practitioner.name": "x"},  # a chain inside
        {"_contained": "true", "family": "x", "_id": "y"},
        {"_contained": "true", "family:missing": "true"},
    ],
)
def test_contained_searches_it_cannot_answer(client, params):
    strict = client.get("/Patient", params=params, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400, strict.text
    assert {i["severity"] for i in strict.json()["issue"]} == {"error"}
    assert "_contained" in strict.json()["issue"][0]["diagnostics"]


def test_contained_search_sees_only_what_the_token_may_read(server, client):
    """A patient-context token finds containers in its own compartment only."""
    family = f"Guarded{uuid.uuid4().hex[:8]}"
    mine, theirs = _patient(client, "Mine")["id"], _patient(client, "Theirs")["id"]
    in_mine = _contained_case(client, family, subject=f"Patient/{mine}")
    _contained_case(client, family, subject=f"Patient/{theirs}")
    headers = client_token(server, "patient/*.rs", patient=mine)
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as me:
        resp = me.get("/Patient", params={"family": family, "_contained": "true"})
        assert resp.status_code == 200, resp.text
        assert [e["resource"]["id"] for e in resp.json().get("entry", [])] == [in_mine]
        counted = me.get(
            "/Patient", params={"family": family, "_contained": "true", "_total": "accurate"}
        )
        assert counted.json()["total"] == 1
    headers = client_token(server, "patient/Patient.rs", patient=mine)
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as patients_only:
        resp = patients_only.get("/Patient", params={"family": family, "_contained": "true"})
        assert resp.status_code == 200 and "entry" not in resp.json()  # Observations: not its


def test_contained_type_contained_returns_the_contained_resources(server, client):
    """search.html#contained ``_containedType=contained``: the matching contained resources
    themselves are the entries, each under its container's URL with its id as fragment; a
    container's other contained resources of the type, which do not match, are left out."""
    family = f"Own{uuid.uuid4().hex[:8]}"
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "two contained patients"},
        "contained": [
            {"resourceType": "Patient", "id": "a", "name": [{"family": family}]},
            {"resourceType": "Patient", "id": "b", "name": [{"family": "Someone"}]},
            {"resourceType": "Practitioner", "id": "c", "name": [{"family": family}]},
        ],
        "subject": {"reference": "#a"},
        "performer": [{"reference": "#b"}, {"reference": "#c"}],
    }
    created = client.post("/Observation", json=obs)
    assert created.status_code == 201, created.text
    oid = created.json()["id"]
    single = _contained_case(client, family)  # one more container, its Patient "who"
    resp = client.get(
        "/Patient",
        params={"family": family, "_contained": "true", "_containedType": "contained"},
        headers={"Prefer": "handling=strict"},
    )
    assert resp.status_code == 200, resp.text
    entries = [e for e in resp.json()["entry"] if e["search"]["mode"] == "match"]
    got = {(e["fullUrl"], e["resource"]["resourceType"], e["resource"]["id"]) for e in entries}
    assert got == {
        (f"{server.fhir}/Observation/{oid}#a", "Patient", "a"),
        (f"{server.fhir}/Observation/{single}#who", "Patient", "who"),
    }
    # _elements shapes the contained resources as it would the resources themselves
    shaped = client.get(
        "/Patient",
        params={
            "family": family,
            "_contained": "true",
            "_containedType": "contained",
            "_elements": "gender",
        },
    ).json()
    assert {e["resource"]["id"] for e in shaped["entry"] if e["search"]["mode"] == "match"} == {
        "a",
        "who",
    }
    assert all("name" not in e["resource"] for e in shaped["entry"] if "fullUrl" in e)
    # the default, container: the containers
    containers = client.get("/Patient", params={"family": family, "_contained": "true"}).json()
    assert {e["resource"]["id"] for e in containers["entry"]} == {oid, single}
    # and a patient-context token sees the contained resources of its own records only
    mine = _patient(client, "Mine")["id"]
    in_mine = _contained_case(client, family, subject=f"Patient/{mine}")
    headers = client_token(server, "patient/*.rs", patient=mine)
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as me:
        resp = me.get(
            "/Patient",
            params={"family": family, "_contained": "true", "_containedType": "contained"},
        )
        assert resp.status_code == 200, resp.text
        assert [e["fullUrl"] for e in resp.json()["entry"]] == [
            f"{server.fhir}/Observation/{in_mine}#who"
        ]


@pytest.mark.parametrize(
    "params",
    [
        {"_containedType": "contained"},
        {"_contained": "both", "family": "x", "_containedType": "contained"},
    ],
)
def test_contained_type_contained_without_contained_true_is_reported(client, params):
    """``_containedType=contained`` means the contained resources a ``_contained=true``
    search matched: without one (or with ``both``) it is a warning, a 400 under strict."""
    pid = _patient(client, f"Contained{uuid.uuid4().hex[:8]}")["id"]
    lenient = client.get(
        "/Patient", params={"_id": pid, **params} if "_contained" not in params else params
    )
    assert lenient.status_code == 200
    body = lenient.json()
    outcome = [e for e in body["entry"] if e["search"]["mode"] == "outcome"]
    issues = outcome[0]["resource"]["issue"]
    assert {i["severity"] for i in issues} == {"warning"}
    assert any("_containedType" in i["diagnostics"] for i in issues)
    self_link = next(lk["url"] for lk in body["link"] if lk["relation"] == "self")
    assert "_containedType" not in self_link
    strict = client.get("/Patient", params=params, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert {i["severity"] for i in strict.json()["issue"]} == {"error"}


@pytest.mark.parametrize(
    "at", ["9999", "0001-01-01", "9999-12-31T23:59:59.999999-14:00", "2020-13"]
)
def test_history_at_at_the_ends_of_the_calendar_is_never_a_500(client, at):
    pid = _patient(client, "Ends")["id"]
    resp = client.get(f"/Patient/{pid}/_history", params={"_at": at})
    assert resp.status_code in (200, 400), resp.text
    assert resp.json()["resourceType"] in ("Bundle", "OperationOutcome")


@pytest.mark.parametrize("header", ["foo", '"1"', '*, W/"2"', ""])
def test_if_none_match_odd_values_are_never_a_500(client, header):
    pid = f"inm-{uuid.uuid4().hex[:12]}"
    body = {"resourceType": "Patient", "id": pid}
    assert client.put(f"/Patient/{pid}", json=body).status_code == 201
    resp = client.put(
        f"/Patient/{pid}", json={**body, "gender": "male"}, headers={"If-None-Match": header}
    )
    assert resp.status_code in (200, 412), resp.text


# -- unknown search parameters: strict refuses, lenient warns -------------------------------
STRICT = {"Prefer": "handling=strict"}
UNKNOWN = [
    ("Patient", {"shoe-size": "42"}),
    ("Patient", {"family:sounds-like": "x"}),
    ("Patient", {"general-practitioner.shoe-size": "1"}),
    ("Patient", {"_has:Observation:patient:shoe-size": "1"}),
    ("Patient", {"_include": "Patient:shoe-size"}),
    ("Patient", {"_include": "Patient:family"}),
    ("Patient", {"_include": "Patient:organization:NoSuchType"}),
    ("Patient", {"_revinclude": "NoSuchType:subject"}),
    ("Patient", {"_include:iterate": "Observation:shoe-size"}),
    ("", {"shoe-size": "1"}),
]


@pytest.mark.parametrize(("path", "params"), UNKNOWN)
def test_unknown_search_parameters_strict_and_lenient(client, path, params):
    family = f"Unknown{uuid.uuid4().hex[:8]}"
    made = _patient(client, family)
    strict = client.get(f"/{path}", params=params, headers=STRICT)
    assert strict.status_code == 400, strict.text
    issues = strict.json()["issue"]
    assert issues and all(i["severity"] == "error" for i in issues)
    assert any(name in i["diagnostics"] for i in issues for name in params)
    for prefer in ({}, {"Prefer": "handling=lenient"}):
        lenient = client.get(f"/{path}", params={**params, "_id": made["id"]}, headers=prefer)
        assert lenient.status_code == 200, lenient.text
        body = lenient.json()
        assert _ids(body) == [made["id"]]  # the unknown parameter is ignored, not applied
        outcomes = [e["resource"] for e in body["entry"] if e["search"]["mode"] == "outcome"]
        assert len(outcomes) == 1 and outcomes[0]["resourceType"] == "OperationOutcome"
        warned = outcomes[0]["issue"]
        assert all(i["severity"] == "warning" for i in warned)
        assert any(name in i["diagnostics"] for i in warned for name in params)
        links = {lk["relation"]: lk["url"] for lk in body["link"]}
        assert all(name.split(":")[0] not in links["self"] for name in params)


def test_unknown_parameter_in_a_post_search_under_strict(server):
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as form:
        resp = form.post("/Patient/_search", data={"shoe-size": "42"}, headers=STRICT)
        assert resp.status_code == 400, resp.text
        assert all(i["severity"] == "error" for i in resp.json()["issue"])


def test_a_good_include_beside_a_bad_one_is_applied(client):
    org = client.post("/Organization", json={"resourceType": "Organization", "name": "Inc"})
    made = _patient(
        client, "Inc", managingOrganization={"reference": f"Organization/{org.json()['id']}"}
    )
    body = client.get(
        "/Patient",
        params=[
            ("_id", made["id"]),
            ("_include", "Patient:organization"),
            ("_include", "Patient:nope"),
        ],
    ).json()
    included = [e["resource"]["id"] for e in body["entry"] if e["search"]["mode"] == "include"]
    assert included == [org.json()["id"]]
    self_link = next(lk["url"] for lk in body["link"] if lk["relation"] == "self")
    assert "Patient%3Aorganization" in self_link and "nope" not in self_link


def test_a_date_with_an_unencoded_plus_in_its_offset_is_read_as_one(client):
    """A ``+`` a client left unencoded in the query arrives as a space (form encoding): a date
    search value ``2013-04-02T09:30:10 01:00`` is read as the ``+01:00`` it was (HAPI FHIR
    does so), not refused; properly encoded, the same."""
    made = client.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "plus"},
            "effectiveDateTime": "2013-04-02T09:30:10+01:00",
        },
    )
    assert made.status_code == 201, made.text
    oid = made.json()["id"]
    for raw in ("2013-04-02T09:30:10+01:00", "ge2013-04-02T09:30+01:00", "eq2013-04-02T08:30:10Z"):
        resp = client.get(f"/Observation?_id={oid}&date={raw}")  # '+' sent as it is
        assert resp.status_code == 200, resp.text
        assert _ids(resp.json()) == [oid], raw
        encoded = client.get("/Observation", params={"_id": oid, "date": raw})
        assert _ids(encoded.json()) == [oid], raw
    other = client.get(f"/Observation?_id={oid}&date=2013-04-02T09:30:10+02:00")
    assert other.status_code == 200 and _ids(other.json()) == []  # a different instant
    bad = client.get("/Observation", params={"date": "2013-04-02 09:30"})
    assert bad.status_code == 400  # a space elsewhere is still not a date


# -- reference :above / :below ----------------------------------------------------------------
def _location(client: httpx.Client, name: str, parent: str | None = None) -> str:
    body: dict = {"resourceType": "Location", "name": name}
    if parent:
        body["partOf"] = {"reference": f"Location/{parent}"}
    resp = client.post("/Location", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_reference_below_and_above_walk_the_location_hierarchy(client):
    """search.html "reference": ``location:below=Location/x`` finds what is at x or anywhere
    inside it (Location.partOf), ``:above`` what is at x or anywhere containing it."""
    hospital = _location(client, "Hospital")
    wing = _location(client, "Wing", hospital)
    ward = _location(client, "Ward", wing)
    bed = _location(client, "Bed", ward)
    clinic = _location(client, "Clinic")
    at = {}
    for name, lid in (("hospital", hospital), ("ward", ward), ("bed", bed), ("clinic", clinic)):
        enc = {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "location": [{"location": {"reference": f"Location/{lid}"}}],
        }
        resp = client.post("/Encounter", json=enc)
        assert resp.status_code == 201, resp.text
        at[name] = resp.json()["id"]

    def found(**params: str) -> set[str]:
        resp = client.get("/Encounter", params=params, headers={"Prefer": "handling=strict"})
        assert resp.status_code == 200, resp.text
        return set(_ids(resp.json()))

    assert found(**{"location:below": f"Location/{wing}"}) == {at["ward"], at["bed"]}
    assert found(**{"location:below": f"Location/{hospital}"}) == {
        at["hospital"],
        at["ward"],
        at["bed"],
    }
    assert found(**{"location:above": f"Location/{ward}"}) == {at["hospital"], at["ward"]}
    assert found(**{"location:below": f"Location/{clinic}"}) == {at["clinic"]}
    assert found(**{"location": f"Location/{wing}"}) == set()  # without the modifier: exact
    below = client.get("/Location", params={"partof:below": hospital, "_count": "50"})
    assert set(_ids(below.json())) == {wing, ward, bed}


def test_reference_above_below_refusals(client):
    """No hierarchy for the target type, or a URL of another server: a 400 under strict, never
    a 500."""
    for params in (
        {"subject:below": "Patient/x"},  # Patient "link" is not a hierarchy of Patients alone
        {"location:below": "http://elsewhere.example/fhir/Location/1"},
        {"subject:above": "x"},  # a bare id where several target types are possible
    ):
        resp = client.get("/Encounter", params=params, headers={"Prefer": "handling=strict"})
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json()["resourceType"] == "OperationOutcome"


def test_a_hierarchy_walk_goes_only_through_what_the_token_may_read(server, client):
    """Specimens form a hierarchy (Specimen.parent). One of another patient's specimens between
    two of mine: a patient-context token's :below walk stops there, so it learns nothing of the
    link through it (the server's own client sees the whole chain)."""
    mine, theirs = _patient(client, "Mine")["id"], _patient(client, "Theirs")["id"]

    def specimen(subject: str, parent: str | None = None) -> str:
        body: dict = {"resourceType": "Specimen", "subject": {"reference": f"Patient/{subject}"}}
        if parent:
            body["parent"] = [{"reference": f"Specimen/{parent}"}]
        resp = client.post("/Specimen", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    root = specimen(mine)
    middle = specimen(theirs, root)
    leaf = specimen(mine, middle)
    whole = client.get("/Specimen", params={"parent:below": f"Specimen/{root}"})
    assert set(_ids(whole.json())) == {middle, leaf}
    headers = client_token(server, "patient/*.rs", patient=mine)
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as me:
        resp = me.get("/Specimen", params={"parent:below": f"Specimen/{root}"})
        assert resp.status_code == 200, resp.text
        assert _ids(resp.json()) == []
        above = me.get("/Specimen", params={"parent:above": f"Specimen/{leaf}"})
        assert above.status_code == 200, above.text
        assert _ids(above.json()) == [leaf]  # its own parent link, no further
