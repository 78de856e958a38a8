"""HL7 v2 out, on SQLite and PostgreSQL: a final DiagnosticReport written to a running Hearth
reaches a real MLLP receiver on loopback (a Python socket server here) as an ORU^R01 built with
hl7apy; an AE or a silent receiver is retried with back-off, an AR or the last attempt
dead-letters it as a failed Task; a preliminary report sends nothing. Patients registered and
changed go out as ADT^A04/A08, appointments booked and cancelled as SIU^S12/S15."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from mappings.hl7v2 import parse
from tests.servers import database_url, start_server

TASK_CODE = "http://hearth.local/fhir/CodeSystem/task-code|hl7v2-oru-r01"


class Receiver:
    """An MLLP receiver: answers each message by its OBR-4 text: REJECT → AR, BROKEN → AE
    always, FLAKY → AE the first time then AA, else AA."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received: list[str] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\x1c\x0d" in buf:
                    frame, buf = buf.split(b"\x1c\x0d", 1)
                    text = frame.lstrip(b"\x0b").decode()
                    conn.sendall(b"\x0b" + self._answer(text).encode() + b"\x1c\x0d")

    def _answer(self, text: str) -> str:
        with self.lock:
            self.received.append(text)
            pid = text.split("\r")[1]  # the patient: one per report here
            seen = sum(1 for t in self.received if t.split("\r")[1] == pid)
        msg = parse(text)
        what = msg.one("OBR").value(4, 2) if msg.one("OBR") is not None else ""
        code = "AA"
        if "REJECT" in what:
            code = "AR"
        elif "BROKEN" in what or ("FLAKY" in what and seen == 1):
            code = "AE"
        return (
            f"MSH|^~\\&|EHR|HOSP|HEARTH|HEARTH|20240101000000||ACK^R01^ACK|A{seen}|P|2.5.1\r"
            f"MSA|{code}|{msg.control_id}|test receiver\r"
        )

    def messages_about(self, marker: str, kind: str = "ORU^R01") -> list[str]:
        with self.lock:
            return [t for t in self.received if marker in t and f"|{kind}^" in t]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hearth_out(request, tmp_path_factory) -> Iterator[tuple]:  # type: ignore[no-untyped-def,type-arg]
    receiver = Receiver()
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(f"out-{request.param}"))
    running = start_server(
        request.param,
        url,
        hl7_out_host="127.0.0.1",
        hl7_out_port=receiver.port,
        hl7_out_backoff=0.2,
        hl7_out_poll=0.1,
        hl7_out_max_attempts=3,
        hl7_out_timeout=10,
    )
    with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=60) as client:
        yield client, receiver
    running.stop()
    receiver.close()
    cleanup()


def _report(client: httpx.Client, what: str, status: str = "final") -> tuple[str, str]:
    mrn = uuid.uuid4().hex[:10]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:oid:1.2.3.4", "value": mrn}],
                    "name": [{"family": "O|Brien", "given": ["Ann"]}],
                    "birthDate": "1970-02-15",
                    "gender": "female",
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                    "valueQuantity": {
                        "value": 5.4,
                        "unit": "mmol/L",
                        "system": "http://unitsofmeasure.org",
                        "code": "mmol/L",
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "status": status,
                    "code": {
                        "coding": [
                            {"system": "http://loinc.org", "code": "24323-8", "display": what}
                        ]
                    },
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                    "result": [{"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"}],
                    "conclusion": "Normal ^ fine",
                },
                "request": {"method": "POST", "url": "DiagnosticReport"},
            },
        ],
    }
    r = client.post("/", json=bundle)
    assert r.status_code == 200, r.text
    location = r.json()["entry"][2]["response"]["location"]
    return mrn, location.split("/_history")[0].split("/")[-1]


def _task(client: httpx.Client, report_id: str, done: tuple[str, ...]) -> dict:
    """The report's outbound Task once its status is one of ``done`` (waits for the sender)."""
    deadline = time.monotonic() + 90
    while True:
        found = client.get("/Task", params={"code": TASK_CODE, "_count": 200}).json()
        tasks = [
            e["resource"]
            for e in found.get("entry", [])
            if e["resource"]["focus"]["reference"].startswith(f"DiagnosticReport/{report_id}/")
        ]
        if tasks and tasks[0]["status"] in done:
            return tasks[0]
        assert time.monotonic() < deadline, tasks
        time.sleep(0.2)


def test_a_final_report_reaches_the_receiver(hearth_out) -> None:  # type: ignore[no-untyped-def]
    client, receiver = hearth_out
    mrn, report_id = _report(client, "Basic metabolic panel")
    task = _task(client, report_id, ("completed", "failed"))
    assert task["status"] == "completed", task
    (message,) = receiver.messages_about(mrn)
    msg = parse(message)
    assert msg.message_type == ("ORU", "R01", "ORU_R01") and msg.version == "2.5.1"
    assert msg.one("PID").value(3) == mrn and msg.one("PID").value(5) == "O|Brien"
    assert msg.one("OBR").value(4) == "24323-8" and msg.one("OBR").value(25) == "F"
    obx = msg.one("OBX")
    assert obx.value(3) == "2345-7" and obx.value(5) == "5.4" and obx.value(6) == "mmol/L"
    assert msg.one("NTE").value(3) == "Normal ^ fine"
    assert msg.control_id in task["businessStatus"]["text"]


def test_an_error_ack_is_retried(hearth_out) -> None:  # type: ignore[no-untyped-def]
    client, receiver = hearth_out
    mrn, report_id = _report(client, "FLAKY panel")
    task = _task(client, report_id, ("completed", "failed"))
    assert task["status"] == "completed", task
    sent = receiver.messages_about(mrn)
    assert len(sent) == 2  # AE, then AA
    assert parse(sent[0]).control_id != parse(sent[1]).control_id


def test_rejected_and_exhausted_messages_are_dead_letters(hearth_out) -> None:  # type: ignore[no-untyped-def]
    client, receiver = hearth_out
    mrn, report_id = _report(client, "REJECT panel")
    task = _task(client, report_id, ("failed",))
    assert "AR" in task["statusReason"]["text"]
    assert len(receiver.messages_about(mrn)) == 1  # AR: not retried

    mrn, report_id = _report(client, "BROKEN panel")
    task = _task(client, report_id, ("failed",))
    assert "AE" in task["statusReason"]["text"]
    assert len(receiver.messages_about(mrn)) == 3  # HEARTH_HL7_OUT_MAX_ATTEMPTS
    failed = client.get("/Task", params={"code": TASK_CODE, "status": "failed"}).json()
    assert failed["total"] >= 2 if "total" in failed else len(failed["entry"]) >= 2


def test_a_preliminary_report_sends_nothing(hearth_out) -> None:  # type: ignore[no-untyped-def]
    client, receiver = hearth_out
    mrn, report_id = _report(client, "Preliminary panel", status="preliminary")
    found = client.get("/Task", params={"code": TASK_CODE, "_count": 200}).json()
    assert not [
        e
        for e in found.get("entry", [])
        if e["resource"]["focus"]["reference"].startswith(f"DiagnosticReport/{report_id}/")
    ]
    # made final: now it is sent
    report = client.get(f"/DiagnosticReport/{report_id}").json()
    report["status"] = "final"
    assert client.put(f"/DiagnosticReport/{report_id}", json=report).status_code == 200
    assert _task(client, report_id, ("completed", "failed"))["status"] == "completed"
    assert len(receiver.messages_about(mrn)) == 1


def test_a_result_the_hospital_sent_in_is_not_echoed(hearth_out) -> None:  # type: ignore[no-untyped-def]
    client, receiver = hearth_out
    mrn, filler = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    oru = (
        f"MSH|^~\\&|LAB|HOSP|HEARTH|HEARTH|20240105100000+0100||ORU^R01^ORU_R01|{filler}|P|2.5.1\r"
        f"PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19700215|F\r"
        f"OBR|1||{filler}^LAB|24320-4^Basic metabolic panel^LN|||20240105090000"
        "|||||||||||||||20240105095500|||F\r"
        "OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L^^UCUM|3.9-5.5|N|||F\r"
    )
    r = client.post("/$hl7v2", content=oru, headers={"content-type": "x-application/hl7-v2+er7"})
    assert "MSA|AA|" in r.text, r.text
    found = client.get("/DiagnosticReport", params={"identifier": filler}).json()["entry"]
    report = found[0]["resource"]
    assert report["status"] == "final"
    assert report["meta"]["source"] == "urn:hearth:hl7v2:sender:LAB"
    # the hook runs in the transaction that wrote the report: no Task now means none ever
    tasks = client.get("/Task", params={"code": TASK_CODE, "_count": 200}).json()
    assert not [
        e
        for e in tasks.get("entry", [])
        if e["resource"]["focus"]["reference"].startswith(f"DiagnosticReport/{report['id']}/")
    ]
    assert not receiver.messages_about(mrn)


def _wait_for(receiver: Receiver, marker: str, kind: str, n: int = 1) -> list[str]:
    deadline = time.monotonic() + 90
    while len(found := receiver.messages_about(marker, kind)) < n:
        assert time.monotonic() < deadline, (marker, kind, found)
        time.sleep(0.2)
    return found


def test_patients_and_appointments_go_out(hearth_out) -> None:  # type: ignore[no-untyped-def]
    client, receiver = hearth_out
    mrn = uuid.uuid4().hex[:10]
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3.4", "value": mrn}],
        "name": [{"family": "Registered", "given": ["Rita"]}],
        "gender": "female",
    }
    r = client.post("/Patient", json=patient)
    assert r.status_code == 201
    pid = r.json()["id"]
    (a04,) = _wait_for(receiver, mrn, "ADT^A04")
    assert parse(a04).one("PID").value(5) == "Registered"
    changed = {**r.json(), "name": [{"family": "Renamed", "given": ["Rita"]}]}
    assert client.put(f"/Patient/{pid}", json=changed).status_code == 200
    (a08,) = _wait_for(receiver, mrn, "ADT^A08")
    assert parse(a08).one("PID").value(5) == "Renamed" and parse(a08).one("EVN").value(1) == "A08"

    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2030-01-02T10:00:00Z",
        "end": "2030-01-02T10:30:00Z",
        "participant": [{"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"}],
    }
    r = client.post("/Appointment", json=appointment)
    assert r.status_code == 201, r.text
    (s12,) = _wait_for(receiver, mrn, "SIU^S12")
    sch = parse(s12).one("SCH")
    assert sch.value(25) == "Booked" and sch.value(11, 4) == "20300102100000+0000"
    assert sch.value(2) == r.json()["id"]
    cancelled = {**r.json(), "status": "cancelled"}
    assert client.put(f"/Appointment/{r.json()['id']}", json=cancelled).status_code == 200
    (s15,) = _wait_for(receiver, mrn, "SIU^S15")
    assert parse(s15).one("SCH").value(25) == "Cancelled"


def _problems(client: httpx.Client) -> list[dict]:
    found = client.get("/$delivery-problems")
    assert found.status_code == 200, found.text
    return [
        {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in prob["part"]}
        for prob in found.json().get("parameter", [])
    ]


def test_dead_letters_are_listed_and_retried_by_an_admin(hearth_out) -> None:  # type: ignore[no-untyped-def]
    client, receiver = hearth_out
    mrn, report_id = _report(client, "REJECT again panel")
    task = _task(client, report_id, ("failed",))
    [listed] = [p for p in _problems(client) if p["target"] == {"reference": f"Task/{task['id']}"}]
    assert listed["kind"] == "hl7v2-out" and "AR" in listed["reason"] and listed["retry"] is True
    assert listed["subject"]["reference"].startswith(f"DiagnosticReport/{report_id}")
    retried = client.post("/$retry-delivery", json={"resourceType": "Parameters", "parameter": [{"name": "target", "valueReference": {"reference": f"Task/{task['id']}"}}]})  # fmt: skip
    assert retried.status_code == 200, retried.text
    assert retried.json()["parameter"][0] == {"name": "status", "valueString": "queued"}
    _wait_for(receiver, mrn, "ORU^R01", 2)  # sent once more (and rejected once more)
    task = _task(client, report_id, ("failed",))
    again = client.post("/$retry-delivery", json={"resourceType": "Parameters", "parameter": [{"name": "target", "valueReference": {"reference": "Patient/nope"}}]})  # fmt: skip
    assert again.status_code == 400 and again.json()["resourceType"] == "OperationOutcome"
    done_task = _task(client, _report(client, "Fine panel")[1], ("completed",))
    not_failed = client.post("/$retry-delivery", json={"resourceType": "Parameters", "parameter": [{"name": "target", "valueReference": {"reference": f"Task/{done_task['id']}"}}]})  # fmt: skip
    assert not_failed.status_code == 409, not_failed.text
