"""$resend over HTTP (stored events pushed to the endpoint again, by number, in order) and
rest-hook heartbeats (Backport IG heartbeatPeriod)."""

from __future__ import annotations

import httpx

from tests.fhir_server.auth.smart import client_token
from tests.subscriptions.receiver import Receiver
from tests.subscriptions.test_rest_hook import LOINC, code, observation, subscription, wait_status

HEARTBEAT = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period"
)


def test_resend_pushes_events_again_from_a_number(hearth, fhir):
    rx = Receiver().start()
    try:
        wanted = code()
        sub_id = fhir.post(
            "/Subscription", json=subscription(rx.url, f"Observation?code={LOINC}|{wanted}")
        ).json()["id"]
        wait_status(fhir, sub_id, "active")
        written = [
            fhir.post("/Observation", json=observation(wanted)).json()["id"] for _ in range(3)
        ]
        rx.wait(lambda got: len([r for r in got if r.kind == "event-notification"]) >= 3)
        assert [r.event_number for r in rx.events()] == [1, 2, 3]

        answer = fhir.post(
            f"/Subscription/{sub_id}/$resend",
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": "eventsSinceNumber", "valueInteger": 2}],
            },
        )
        assert answer.status_code == 200, answer.text
        found = {p["name"]: p["valueString"] for p in answer.json()["parameter"]}
        assert found == {"resend-from": "2", "events-since-subscription-start": "3"}
        rx.wait(lambda got: len([r for r in got if r.kind == "event-notification"]) >= 5)
        again = rx.events()[3:]
        assert [r.event_number for r in again] == [2, 3]
        assert [r.bundle["entry"][1]["resource"]["id"] for r in again] == written[1:]

        # above the newest number, no number, unknown Subscription, no update access: refused
        too_far = fhir.post(f"/Subscription/{sub_id}/$resend", params={"eventsSinceNumber": 9})
        assert too_far.status_code == 400
        assert too_far.json()["resourceType"] == "OperationOutcome"
        assert fhir.post(f"/Subscription/{sub_id}/$resend").status_code == 400
        assert (
            fhir.post("/Subscription/no-such-one/$resend", params={"eventsSinceNumber": 1})
        ).status_code == 404
        reader = client_token(hearth, "user/Subscription.rs")
        with httpx.Client(base_url=hearth.fhir, headers=reader, timeout=60) as app:
            denied = app.post(f"/Subscription/{sub_id}/$resend", params={"eventsSinceNumber": 1})
        assert denied.status_code == 403
        assert len(rx.events()) == 5
    finally:
        rx.stop()


def test_heartbeat_period_sends_heartbeats_while_nothing_happens(hearth, fhir):
    rx = Receiver().start()
    try:
        body = subscription(rx.url, f"Observation?code={LOINC}|{code()}")
        body["channel"]["extension"] = [{"url": HEARTBEAT, "valueUnsignedInt": 1}]
        sub_id = fhir.post("/Subscription", json=body).json()["id"]
        wait_status(fhir, sub_id, "active")
        beats = rx.wait(lambda got: len([r for r in got if r.kind == "heartbeat"]) >= 2, 30)
        beats = [r for r in beats if r.kind == "heartbeat"]
        status = beats[0].bundle["entry"][0]["resource"]
        found = {p["name"]: p for p in status["parameter"]}
        assert found["type"]["valueCode"] == "heartbeat"
        assert found["events-since-subscription-start"]["valueString"] == "0"
        assert beats[1].at - beats[0].at >= 0.9  # not more often than the period

        for bad in ({"valueUnsignedInt": 0}, {"valueString": "10"}):
            wrong = subscription(rx.url, f"Observation?code={LOINC}|{code()}")
            wrong["channel"]["extension"] = [{"url": HEARTBEAT, **bad}]
            refused = fhir.post("/Subscription", json=wrong)
            assert refused.status_code == 400, refused.text
            assert refused.json()["resourceType"] == "OperationOutcome"
    finally:
        rx.stop()
