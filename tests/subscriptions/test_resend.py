"""$resend over HTTP: stored events pushed to the endpoint again, by number, in order."""

from __future__ import annotations

import httpx

from tests.fhir_server.auth.smart import client_token
from tests.subscriptions.receiver import Receiver
from tests.subscriptions.test_rest_hook import LOINC, code, observation, subscription, wait_status


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
