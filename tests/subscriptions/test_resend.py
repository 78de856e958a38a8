"""$resend over HTTP (stored events pushed to the endpoint again, by number, in order) and
rest-hook heartbeats (Backport IG heartbeatPeriod)."""

from __future__ import annotations

import time

import httpx

from tests.fhir_server.auth.smart import client_token
from tests.subscriptions.receiver import Receiver
from tests.subscriptions.test_rest_hook import LOINC, code, observation, subscription, wait_status

HEARTBEAT = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period"
)


def wait_delivered(hearth, sub_id: str, seq: int, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Until the worker has recorded that the receiver has event ``seq``."""
    from resources.search import SearchEngine
    from resources.storage.db import create_engine
    from resources.storage.repository import Repository
    from resources.subscriptions import delivery

    repo = Repository(create_engine(hearth.database_url), SearchEngine(base_urls=(hearth.fhir,)))
    try:
        deadline = time.monotonic() + timeout
        while (reg := delivery.registration(repo, sub_id)) is None or reg.delivered_seq < seq:
            assert time.monotonic() < deadline, f"event {seq} was never acknowledged"
            time.sleep(0.05)
    finally:
        repo.engine.dispose()


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
        # the worker writes its acknowledgement after the receiver answered: an acknowledgement
        # still in flight would move the mark past the resend point (docs/subscriptions.md
        # "$resend"), so the resend waits for it
        wait_delivered(hearth, sub_id, 3)

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
