"""Inbound HL7 v2 dead letters over the real edges (MLLP and ``POST /fhir/$hl7v2``), on SQLite
and PostgreSQL: a message of an unsupported type is answered AR naming it and kept as one failed
Task (sent again: the same Task), listed by ``$delivery-problems``; ``$retry-delivery`` replays it
through the inbound path — still failed while no mapping exists, applied (AA, the Task completed)
once a message type is registered for it. A message whose mapping fails inside Hearth (AE) is
kept the same way."""

from __future__ import annotations

import base64
import socket

import httpx
import pytest

from fhir_server.hl7v2 import dead_letter
from mappings.hl7v2 import registry
from mappings.hl7v2.messages import adt as adt_messages
from mappings.hl7v2.spec import MessageType
from tests.fhir_server.auth.smart import client_token
from tests.fhir_server.test_hl7v2 import AUTHORITY, _uid, count, frame, msa, post, read_acks
from tests.servers import database_url, free_port, start_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hearth(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(f"dl-{request.param}"))
    port = free_port()
    running = start_server(request.param, url, mllp_port=port)
    with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=60) as client:
        client.running = running  # type: ignore[attr-defined]  # for patient tokens
        yield client, port
    running.stop()
    cleanup()


def message(code: str, event: str, mrn: str, cid: str) -> str:
    return (
        f"MSH|^~\\&|ADT|HOSP|HEARTH|HEARTH|20240105081500+0100||{code}^{event}^ADT_A01|{cid}|P|2.5.1\r"
        f"EVN|{event}|20240105081500\r"
        f"PID|1||{mrn}^^^HOSP^MR||Letter^Dead||19700215|F\r"
        "PV1|1|O\r"
    )


def works(code: str, event: str) -> MessageType:
    """A message type mapped as ADT^A08 is (the mapping that "now exists")."""
    return MessageType(
        code=code,
        events=frozenset({event}),
        structure="ADT_A01",
        writes=adt_messages.MESSAGE.writes,
        map=adt_messages.bundle,
    )


def broken(code: str, event: str) -> MessageType:
    def fails(message, ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the mapping")

    return MessageType(code, frozenset({event}), "ADT_A01", frozenset({"Patient"}), fails)


def letters(client: httpx.Client, cid: str) -> list[dict]:
    found = client.get(f"/Task?identifier={dead_letter.TASK_SYSTEM}|ADT/{cid}").json()
    return [e["resource"] for e in found.get("entry", [])]


def problems(client: httpx.Client) -> dict[str, dict]:
    r = client.get("/$delivery-problems")
    assert r.status_code == 200, r.text
    out = {}
    for prob in r.json().get("parameter", []):
        parts = {
            p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in prob["part"]
        }
        out[parts["target"]["reference"]] = parts
    return out


def retry(client: httpx.Client, target: str) -> httpx.Response:
    return client.post(
        "/$retry-delivery",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "target", "valueReference": {"reference": target}}],
        },
    )


def answer(r: httpx.Response) -> dict[str, str]:
    assert r.status_code == 200, r.text
    return {p["name"]: p["valueString"] for p in r.json()["parameter"]}


def test_unsupported_over_mllp_is_kept_once_and_replayed_once_mapped(hearth) -> None:  # type: ignore[no-untyped-def]
    client, port = hearth
    mrn, cid = _uid(), _uid()
    sent = message("ZHX", "Z01", mrn, cid)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(frame(sent) + frame(sent))  # the sender sends it again: one dead letter
        acks = read_acks(s, 2)
    for ack in acks:
        assert msa(ack)[1:3] == ["AR", cid]
        assert "message type ZHX\\S\\Z01 is not supported" in ack  # ^ escaped
    [task] = letters(client, cid)
    assert task["status"] == "failed" and task["intent"] == "unknown"
    assert "for" not in task and "focus" not in task  # in no patient's compartment
    assert "not supported" in task["statusReason"]["text"]
    stored = task["input"][0]["valueAttachment"]
    assert stored["contentType"] == "x-application/hl7-v2+er7"
    assert base64.b64decode(stored["data"]).decode() == sent
    assert task["input"][1] == {"type": {"text": "receipts"}, "valueInteger": 2}
    target = f"Task/{task['id']}"
    listed = problems(client)[target]
    assert listed["kind"] == "hl7v2-in" and listed["retry"] is True
    assert "not supported" in listed["reason"]

    # no mapping yet: replayed, still a dead letter (the same one), with the new reason
    got = answer(retry(client, target))
    assert got["status"] == "failed" and got["ack-code"] == "AR"
    assert "not supported" in got["reason"]
    [task] = letters(client, cid)
    assert task["status"] == "failed" and target in problems(client)
    assert count(client, "Patient", f"identifier={AUTHORITY}|{mrn}") == 0

    with registry.registered(works("ZHX", "Z01")):
        got = answer(retry(client, target))
    assert got == {"status": "delivered", "ack-code": "AA"}
    assert count(client, "Patient", f"identifier={AUTHORITY}|{mrn}") == 1
    [task] = letters(client, cid)
    assert task["status"] == "completed" and "statusReason" not in task
    assert target not in problems(client)
    again = retry(client, target)  # nothing left to replay
    assert again.status_code == 409 and again.json()["resourceType"] == "OperationOutcome"


def test_http_server_fault_is_kept_and_replayed(hearth) -> None:  # type: ignore[no-untyped-def]
    client, _ = hearth
    mrn, cid = _uid(), _uid()
    sent = message("ZHY", "Z02", mrn, cid)
    with registry.registered(broken("ZHY", "Z02")):
        r = post(client, sent)
    assert r.headers["X-HL7-Ack-Code"] == "AE" and msa(r.text)[1:3] == ["AE", cid]
    assert "server fault" in r.text
    [task] = letters(client, cid)
    assert task["status"] == "failed" and "server fault" in task["statusReason"]["text"]
    assert count(client, "Patient", f"identifier={AUTHORITY}|{mrn}") == 0
    # sent again once the broken mapping is gone: AR, the same Task with the new reason
    r = post(client, sent)
    assert r.headers["X-HL7-Ack-Code"] == "AR"
    [again] = letters(client, cid)
    assert again["id"] == task["id"] and "not supported" in again["statusReason"]["text"]
    with registry.registered(works("ZHY", "Z02")):
        assert answer(retry(client, f"Task/{task['id']}"))["status"] == "delivered"
    assert count(client, "Patient", f"identifier={AUTHORITY}|{mrn}") == 1
    assert letters(client, cid)[0]["status"] == "completed"


def test_what_is_not_a_dead_letter(hearth) -> None:  # type: ignore[no-untyped-def]
    client, _ = hearth
    # unreadable (no MSH) and supported messages are not kept; a registration cannot shadow one
    assert post(client, "not HL7 at all").headers["X-HL7-Ack-Code"] == "AR"
    cid = _uid()
    assert post(client, message("ADT", "A08", _uid(), cid)).headers["X-HL7-Ack-Code"] == "AA"
    assert letters(client, cid) == []
    with pytest.raises(ValueError, match="ADT\\^A08"):
        with registry.registered(works("ADT", "A08")):
            pass
    assert registry.lookup("ZHX", "Z01") is None


def test_a_patient_token_never_reaches_a_dead_letter(hearth) -> None:  # type: ignore[no-untyped-def]
    """The raw message names a patient, but the dead letter is in no compartment: the patient
    it names gets nothing of it, by read, search or the administrators' operations."""
    client, _ = hearth
    mrn, cid = _uid(), _uid()
    assert post(client, message("ADT", "A04", mrn, _uid())).headers["X-HL7-Ack-Code"] == "AA"
    patient = client.get(f"/Patient?identifier={AUTHORITY}|{mrn}").json()["entry"][0]["resource"]
    assert post(client, message("ZHZ", "Z03", mrn, cid)).headers["X-HL7-Ack-Code"] == "AR"
    [task] = letters(client, cid)
    headers = client_token(client.running, "patient/*.cruds", patient=patient["id"])  # type: ignore[attr-defined]
    with httpx.Client(base_url=client.base_url, headers=headers, timeout=60) as mine:
        assert mine.get(f"/Task/{task['id']}").status_code in (403, 404)
        found = mine.get(f"/Task?code={dead_letter.CODE_SYSTEM}|{dead_letter.CODE}")
        assert found.status_code in (200, 403)
        assert task["id"] not in found.text and mrn not in found.text
        everything = mine.get(f"/Patient/{patient['id']}/$everything")
        assert task["id"] not in everything.text
        for r in (
            mine.get("/$delivery-problems"),
            retry(mine, f"Task/{task['id']}"),  # type: ignore[arg-type]
        ):
            assert r.status_code in (403, 404) and mrn not in r.text
