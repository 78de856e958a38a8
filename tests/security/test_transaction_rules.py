"""R4 http.html#trules: a transaction that touches the same resource twice fails with a 400
naming the entries, conditional entries included; HL7 v2 results whose OBX segments repeat an
OBX-3 are stored one Observation per OBX, so the order can be corrected later (issue 14)."""

from __future__ import annotations

import socket
import uuid

import httpx
import pytest

from tests.servers import database_url, free_port, start_server

ER7 = {"content-type": "x-application/hl7-v2+er7"}


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _tx(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _put(url: str, resource: dict) -> dict:
    return {"request": {"method": "PUT", "url": url}, "resource": resource}


def _refused(resp: httpx.Response, *indexes: int) -> None:
    assert resp.status_code == 400, resp.text
    issue = resp.json()["issue"][0]
    assert issue["code"] == "invalid"
    assert "touch" in issue["diagnostics"]
    assert issue["expression"] == [f"Bundle.entry[{i}]" for i in indexes]


def _count(client: httpx.Client, query: str) -> int:
    resp = client.get(f"/Patient?{query}&_summary=count")
    assert resp.status_code == 200, resp.text
    return resp.json()["total"]


def test_same_id_twice_is_400(client):
    pid = f"twice-{_uid()}"
    patient = {"resourceType": "Patient", "id": pid}
    _refused(
        client.post(
            "/", json=_tx(_put(f"Patient/{pid}", patient), _put(f"Patient/{pid}", patient))
        ),
        0,
        1,
    )
    assert client.get(f"/Patient/{pid}").status_code == 404  # nothing written


def test_delete_and_update_of_one_resource_is_400(client):
    pid = f"twice-{_uid()}"
    assert (
        client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid}).status_code
        == 201
    )
    bundle = _tx(
        _put(f"Patient/{pid}", {"resourceType": "Patient", "id": pid, "active": True}),
        {"request": {"method": "DELETE", "url": f"Patient/{pid}"}},
    )
    _refused(client.post("/", json=bundle), 0, 1)
    assert client.get(f"/Patient/{pid}").status_code == 200  # the delete was rolled back


def test_conditional_update_resolving_to_an_updated_id_is_400(client):
    pid, mrn = f"twice-{_uid()}", _uid()
    patient = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "urn:mrn", "value": mrn}],
    }
    assert client.put(f"/Patient/{pid}", json=patient).status_code == 201
    bundle = _tx(
        _put(f"Patient/{pid}", {**patient, "active": True}),
        _put(f"Patient?identifier=urn:mrn|{mrn}", {**patient, "active": False}),
    )
    _refused(client.post("/", json=bundle), 0, 1)


def test_two_conditional_writes_with_the_same_criteria_are_400(client):
    mrn = _uid()
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}]}
    query = f"identifier=urn:mrn|{mrn}"
    bundle = _tx(_put(f"Patient?{query}", patient), _put(f"Patient?{query}", patient))
    _refused(client.post("/", json=bundle), 0, 1)
    create = {
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": query},
        "resource": patient,
    }
    _refused(client.post("/", json=_tx(create, create)), 0, 1)
    _refused(client.post("/", json=_tx(create, _put(f"Patient?{query}", patient))), 0, 1)
    assert _count(client, query) == 0


def test_conditional_write_sees_a_create_of_the_same_transaction(client):
    # entry 0 creates a Patient with the identifier; entry 1's criteria (another spelling of the
    # same search) match nothing before the transaction, but select entry 0's Patient after it
    mrn = _uid()
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}]}
    bundle = _tx(
        {"request": {"method": "POST", "url": "Patient"}, "resource": patient},
        _put(f"Patient?identifier={mrn}", {**patient, "active": True}),
    )
    _refused(client.post("/", json=bundle), 0, 1)
    assert _count(client, f"identifier=urn:mrn|{mrn}") == 0
    # the same conditional update alone creates once, and a second time updates that one
    for _ in range(2):
        alone = client.post("/", json=_tx(_put(f"Patient?identifier={mrn}", patient)))
        assert alone.status_code == 200, alone.text
    assert _count(client, f"identifier=urn:mrn|{mrn}") == 1


def test_distinct_resources_still_commit(client):
    a, b = f"a-{_uid()}", f"b-{_uid()}"
    bundle = _tx(
        _put(f"Patient/{a}", {"resourceType": "Patient", "id": a}),
        _put(f"Patient/{b}", {"resourceType": "Patient", "id": b}),
        {"request": {"method": "GET", "url": f"Patient/{a}"}},
    )
    resp = client.post("/", json=bundle)
    assert resp.status_code == 200, resp.text


def _oru(mrn: str, filler: str, status: str, potassium: str) -> str:
    # Two OBX share OBX-3 (a repeated potassium) and leave OBX-4 empty.
    return (
        f"MSH|^~\\&|LAB|HOSP|HEARTH|HEARTH|20240105100000+0100||ORU^R01^ORU_R01|{_uid()}|P|2.5.1\r"
        f"PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19700215|F\r"
        f"OBR|1|P{filler}|{filler}^LAB|24320-4^Basic metabolic panel^LN|||20240105090000|||||||||||||||20240105095500|||{status}\r"
        f"OBX|1|NM|2823-3^Potassium^LN||6.1|mmol/L|3.5-5.1|H|||{status}\r"
        f"OBX|2|NM|2823-3^Potassium^LN||{potassium}|mmol/L|3.5-5.1|N|||{status}\r"
        f"OBX|3|NM|2345-7^Glucose^LN||5.4|mmol/L|3.9-5.5|N|||{status}\r"
    )


def test_repeated_obx_then_correction(client):
    mrn, filler = _uid(), _uid()
    first = client.post("/$hl7v2", content=_oru(mrn, filler, "F", "4.2"), headers=ER7)
    assert first.status_code == 200, first.text
    assert "|AA|" in first.text, first.text
    report = client.get(
        "/DiagnosticReport", params={"identifier": f"urn:hearth:hl7v2:assigner:LAB|{filler}"}
    ).json()
    assert len(report["entry"]) == 1
    results = report["entry"][0]["resource"]["result"]
    assert len(results) == 3
    observations = [client.get(r["reference"]).json() for r in results]
    identifiers = [o["identifier"][0]["value"] for o in observations]
    assert len(set(identifiers)) == 3, identifiers  # one Observation per OBX, each its own id
    # the correction (OBX-11 = C) of the same order is accepted and replaces each in place
    corrected = client.post("/$hl7v2", content=_oru(mrn, filler, "C", "4.4"), headers=ER7)
    assert "|AA|" in corrected.text, corrected.text
    again = [client.get(r["reference"]).json() for r in results]
    assert [o["status"] for o in again] == ["corrected"] * 3
    assert again[1]["valueQuantity"]["value"] == 4.4
    subject = observations[0]["subject"]["reference"]
    found = client.get("/Observation", params={"subject": subject, "_summary": "count"}).json()
    assert found["total"] == 3


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mllp_hearth(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(f"obx-{request.param}"))
    port = free_port()
    running = start_server(request.param, url, mllp_port=port)
    yield running, port
    running.stop()
    cleanup()


def _mllp(port: int, message: str) -> str:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"\x0b" + message.encode() + b"\x1c\x0d")
        s.settimeout(60)
        buf = b""
        while not buf.endswith(b"\x1c\x0d"):
            chunk = s.recv(65536)
            assert chunk, "the listener closed before its ACK"
            buf += chunk
    return buf[1:-2].decode()


def test_repeated_obx_then_correction_over_mllp(mllp_hearth):
    running, port = mllp_hearth
    mrn, filler = _uid(), _uid()
    assert "|AA|" in _mllp(port, _oru(mrn, filler, "F", "4.2"))
    assert "|AA|" in _mllp(port, _oru(mrn, filler, "C", "4.4"))
    with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=60) as client:
        ident = f"urn:hearth:hl7v2:assigner:LAB|{filler}"
        report = client.get("/DiagnosticReport", params={"identifier": ident}).json()
        results = report["entry"][0]["resource"]["result"]
        observations = [client.get(r["reference"]).json() for r in results]
        assert [o["status"] for o in observations] == ["corrected"] * 3
        assert len({o["identifier"][0]["value"] for o in observations}) == 3
