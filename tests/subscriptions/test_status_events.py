"""$status and $events (Backport IG) over HTTP: the status of a Subscription, and replay of its
events by number, each resource read with the caller's own access."""

from __future__ import annotations

import httpx

from tests.fhir_server.auth.smart import client_token
from tests.subscriptions.receiver import Receiver
from tests.subscriptions.test_rest_hook import LOINC, code, observation, subscription, wait_status


def params(resource: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for p in resource["parameter"]:
        found.setdefault(p["name"], []).append(p)
    return found


def test_status_and_events_replay(hearth, fhir):
    rx = Receiver().start()
    try:
        mine = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
        other = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
        wanted = code()
        sub_id = fhir.post(
            "/Subscription", json=subscription(rx.url, f"Observation?code={LOINC}|{wanted}")
        ).json()["id"]
        wait_status(fhir, sub_id, "active")
        written = [
            fhir.post("/Observation", json=observation(wanted, p)).json()["id"]
            for p in (mine, other, mine, other)
        ]
        rx.wait(lambda got: len([r for r in got if r.kind == "event-notification"]) >= 4)

        status = fhir.get(f"/Subscription/{sub_id}/$status")
        assert status.status_code == 200, status.text
        found = params(status.json()["entry"][0]["resource"])
        assert found["status"][0]["valueCode"] == "active"
        assert found["type"][0]["valueCode"] == "query-status"
        assert found["events-since-subscription-start"][0]["valueString"] == "4"

        replay = fhir.get(
            f"/Subscription/{sub_id}/$events",
            params={"eventsSinceNumber": 2, "eventsUntilNumber": 3},
        )
        assert replay.status_code == 200, replay.text
        bundle = replay.json()
        numbers = [
            next(p["valueString"] for p in e["part"] if p["name"] == "event-number")
            for e in params(bundle["entry"][0]["resource"])["notification-event"]
        ]
        assert numbers == ["2", "3"]
        assert [e["resource"]["id"] for e in bundle["entry"][1:]] == written[1:3]

        # a patient-context reader gets only its own patient's events and resources
        app = client_token(hearth, "patient/Observation.rs user/Subscription.rs", patient=mine)
        with httpx.Client(base_url=hearth.fhir, headers=app, timeout=60) as patient_app:
            theirs = patient_app.get(f"/Subscription/{sub_id}/$events").json()
        shown = [e["resource"]["id"] for e in theirs["entry"][1:]]
        assert shown == [written[0], written[2]]
        focus = [
            next(p["valueReference"]["reference"] for p in e["part"] if p["name"] == "focus")
            for e in params(theirs["entry"][0]["resource"])["notification-event"]
        ]
        assert all(other not in f for f in focus) and len(focus) == 2

        bad = fhir.get(f"/Subscription/{sub_id}/$events", params={"content": "everything"})
        assert bad.status_code == 400
        assert bad.json()["resourceType"] == "OperationOutcome"
        assert fhir.get("/Subscription/no-such-one/$status").status_code == 404
    finally:
        rx.stop()
