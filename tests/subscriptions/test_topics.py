"""Topic-based subscriptions (Backport IG style: ``criteria`` is the topic's URL, narrowed by a
filter criteria extension), over several write paths: REST, HL7 v2, ``hearth load`` and DICOM
STOW-RS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from resources.subscriptions.registry import topics
from resources.subscriptions.topic import TOPIC_BASE
from resources.validation import is_resource_type
from tests.fhir_server.test_hl7v2 import AUTHORITY, adt, oru, post
from tests.subscriptions.receiver import Receiver
from tests.subscriptions.test_rest_hook import subscription, wait_status

FILTER = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria"
)


def topic_subscription(endpoint: str, topic: str, filter_criteria: str | None) -> dict:
    body = subscription(endpoint, TOPIC_BASE + topic)
    if filter_criteria:
        body["_criteria"] = {"extension": [{"url": FILTER, "valueString": filter_criteria}]}
    return body


def test_registry_declares_the_issue_topics():
    found = topics()
    assert {t.code for t in found.values()} >= {
        "task-assigned", "diagnostic-report-final", "ai-result-recorded", "appointment-booked",
        "resource-changed",
    }  # fmt: skip
    for url, topic in found.items():
        assert url == TOPIC_BASE + topic.code
        assert topic.any_type or topic.triggers, url
        assert all(is_resource_type(t.res_type) for t in topic.triggers), url


def test_task_assigned(hearth, fhir):
    rx = Receiver().start()
    try:
        group = f"g-{uuid.uuid4().hex[:8]}"
        sub_id = fhir.post(
            "/Subscription",
            json=topic_subscription(rx.url, "task-assigned", f"Task?group-identifier={group}"),
        ).json()["id"]
        wait_status(fhir, sub_id, "active")
        task = {
            "resourceType": "Task", "status": "requested", "intent": "order",
            "groupIdentifier": {"value": group},
        }  # fmt: skip
        made = fhir.post("/Task", json=task).json()  # no owner: not assigned
        owned = fhir.put(
            f"/Task/{made['id']}", json={**made, "owner": {"reference": "Practitioner/a"}}
        ).json()
        same = fhir.put(f"/Task/{made['id']}", json={**owned, "priority": "urgent"}).json()
        fhir.put(f"/Task/{made['id']}", json={**same, "owner": {"reference": "Practitioner/b"}})
        # another group's assignment is filtered out
        fhir.post("/Task", json={**task, "groupIdentifier": {"value": "other"},
                                 "owner": {"reference": "Practitioner/a"}})  # fmt: skip
        last = fhir.post("/Task", json={**task, "owner": {"reference": "Practitioner/c"}}).json()
        rx.wait(lambda got: any(r.focus and r.focus["id"] == last["id"] for r in got
                                if r.kind == "event-notification"))  # fmt: skip
        events = rx.events()
        owners = [(e.focus["id"], e.focus["owner"]["reference"]) for e in events]  # type: ignore[index]
        assert owners == [
            (made["id"], "Practitioner/a"), (made["id"], "Practitioner/b"),
            (last["id"], "Practitioner/c"),
        ]  # fmt: skip
        status = events[0].bundle["entry"][0]["resource"]["parameter"]
        assert {"name": "topic", "valueCanonical": TOPIC_BASE + "task-assigned"} in status
    finally:
        rx.stop()


def test_diagnostic_report_final_from_hl7v2(hearth, fhir):
    rx = Receiver().start()
    try:
        mrn, filler = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
        post(fhir, adt("A04", mrn))
        patient = fhir.get("/Patient", params={"identifier": f"{AUTHORITY}|{mrn}"}).json()
        pid = patient["entry"][0]["resource"]["id"]
        sub_id = fhir.post(
            "/Subscription",
            json=topic_subscription(
                rx.url, "diagnostic-report-final", f"DiagnosticReport?subject=Patient/{pid}"
            ),
        ).json()["id"]
        wait_status(fhir, sub_id, "active")
        assert "|AA|" in post(fhir, oru(mrn, filler, status="P")).text  # preliminary: no event
        assert "|AA|" in post(fhir, oru(mrn, filler, status="F")).text  # now final: an event
        assert "|AA|" in post(fhir, oru(mrn, filler, status="F", glucose="5.6")).text  # still final
        other = uuid.uuid4().hex[:10]
        assert "|AA|" in post(fhir, oru(mrn, other, status="F")).text  # a second report, final
        got = rx.wait(lambda got: len([r for r in got if r.kind == "event-notification"]) >= 2)
        events = [r for r in got if r.kind == "event-notification"]
        reports = [
            ({i["value"] for i in e.focus["identifier"]}, e.focus["status"])  # type: ignore[index]
            for e in events
        ]
        assert [(filler in ids, status) for ids, status in reports] == [
            (True, "final"),
            (False, "final"),
        ]
        assert other in reports[1][0]
    finally:
        rx.stop()


def test_appointment_booked_from_hearth_load(hearth, fhir, tmp_path):
    rx = Receiver().start()
    try:
        tag = uuid.uuid4().hex[:8]
        sub_id = fhir.post(
            "/Subscription",
            json=topic_subscription(rx.url, "appointment-booked", f"Appointment?identifier={tag}"),
        ).json()["id"]
        wait_status(fhir, sub_id, "active")

        def appointment(n: int, status: str) -> dict:
            return {
                "resourceType": "Appointment", "id": f"appt-{tag}-{n}", "status": status,
                "identifier": [{"value": tag}],
                "participant": [{"actor": {"reference": "Patient/x"}, "status": "accepted"}],
            }  # fmt: skip

        path = tmp_path / "appointments.ndjson"
        path.write_text(
            "\n".join(json.dumps(a) for a in [appointment(1, "proposed"), appointment(2, "booked")])
        )
        env = {**os.environ, "HEARTH_DATABASE_URL": hearth.database_url}
        hearth_cli = Path(sys.executable).with_name("hearth")
        done = subprocess.run(
            [str(hearth_cli), "load", str(path), "--quiet"], env=env, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        rx.wait(lambda got: any(r.kind == "event-notification" for r in got))
        fhir.put(f"/Appointment/appt-{tag}-1", json=appointment(1, "booked"))
        got = rx.wait(lambda got: len([r for r in got if r.kind == "event-notification"]) >= 2)
        events = [r for r in got if r.kind == "event-notification"]
        assert [e.focus["id"] for e in events] == [f"appt-{tag}-2", f"appt-{tag}-1"]  # type: ignore[index]
    finally:
        rx.stop()


def test_ai_result_recorded(hearth, fhir):
    rx = Receiver().start()
    try:
        patient = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
        sub_id = fhir.post(
            "/Subscription",
            json=topic_subscription(
                rx.url, "ai-result-recorded", f"Observation?subject=Patient/{patient}"
            ),
        ).json()["id"]
        wait_status(fhir, sub_id, "active")
        device = fhir.post("/Device", json={"resourceType": "Device"}).json()["id"]

        def result(**extra: object) -> dict:
            return {
                "resourceType": "Observation", "status": "preliminary",
                "code": {"text": "AI finding"}, "subject": {"reference": f"Patient/{patient}"},
                **extra,
            }  # fmt: skip

        fhir.post("/Observation", json=result())  # no device: a person's result
        by_model = fhir.post("/Observation", json=result(device={"reference": f"Device/{device}"}))
        made = by_model.json()
        fhir.put(
            f"/Observation/{made['id']}", json={**made, "status": "final"}
        )  # not recorded again
        last = fhir.post("/Observation", json=result(device={"reference": f"Device/{device}"}))
        last_id = last.json()["id"]
        rx.wait(lambda got: any(r.focus and r.focus["id"] == last_id for r in got
                                if r.kind == "event-notification"))  # fmt: skip
        assert [e.focus["id"] for e in rx.events()] == [made["id"], last_id]  # type: ignore[index]
    finally:
        rx.stop()


def test_imaging_study_from_dicom_stow(hearth, fhir):
    """The DICOM ingest write path (STOW-RS here; C-STORE goes through the same ingest): the
    ImagingStudy it writes is matched in its transaction like any other write."""
    import io

    import httpx
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    rx = Receiver().start()
    try:
        study = generate_uid()
        criteria = f"ImagingStudy?identifier=urn:dicom:uid|urn:oid:{study}"
        sub_id = fhir.post("/Subscription", json=subscription(rx.url, criteria)).json()["id"]
        wait_status(fhir, sub_id, "active")
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
        ds.PatientID, ds.PatientName, ds.Modality = "SUBS-STOW", "Stow^Sub", "OT"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        boundary = uuid.uuid4().hex
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + out.getvalue()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        stored = httpx.post(
            f"{hearth.root}/dicomweb/studies",
            content=body,
            headers={
                **hearth.headers,
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            },
            timeout=60,
        )
        assert stored.status_code == 200, stored.text[:500]
        got = rx.wait(lambda got: any(r.kind == "event-notification" for r in got))
        [event] = [r for r in got if r.kind == "event-notification"]
        assert event.focus["resourceType"] == "ImagingStudy"  # type: ignore[index]
        assert {"system": "urn:dicom:uid", "value": f"urn:oid:{study}"} in event.focus["identifier"]  # type: ignore[index]
    finally:
        rx.stop()
