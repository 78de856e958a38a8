"""The R4 websocket channel over a real socket: bind, bound, a ping per matching event; a token
that may not read the Subscription cannot bind it; a bad token, no connection; no token (a
browser), no plain bind."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.fhir_server.auth.smart import client_token
from tests.subscriptions.test_rest_hook import LOINC, code, observation, wait_status


def ws_url(hearth) -> str:  # type: ignore[no-untyped-def]
    return hearth.root.replace("http://", "ws://") + "/websocket"


def websocket_subscription(criteria: str) -> dict:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "websocket"},
    }


def test_bind_and_ping(hearth, fhir):
    wanted = code()
    made = fhir.post(
        "/Subscription", json=websocket_subscription(f"Observation?code={LOINC}|{wanted}")
    )
    assert made.status_code == 201, made.text
    sub_id = made.json()["id"]
    wait_status(fhir, sub_id, "active")
    with connect(ws_url(hearth), additional_headers=hearth.headers, open_timeout=30) as ws:
        ws.send(f"bind {sub_id}")
        assert ws.recv(timeout=30) == f"bound {sub_id}"
        fhir.post("/Observation", json=observation(code()))  # not matching
        fhir.post("/Observation", json=observation(wanted))
        assert ws.recv(timeout=60) == f"ping {sub_id}"
        fhir.post("/Observation", json=observation(wanted))
        assert ws.recv(timeout=60) == f"ping {sub_id}"
        ws.send("subscribe everything")
        assert ws.recv(timeout=30).startswith("error ")
    status = fhir.get(f"/Subscription/{sub_id}/$status").json()["entry"][0]["resource"]
    since = next(p for p in status["parameter"] if p["name"] == "events-since-subscription-start")
    assert since["valueString"] == "2"  # the non-matching write was no event


def test_bind_needs_read_access_and_a_websocket_channel(hearth, fhir):
    sub_id = fhir.post(
        "/Subscription", json=websocket_subscription(f"Observation?code={LOINC}|{code()}")
    ).json()["id"]
    patient = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
    app = client_token(hearth, "patient/Observation.rs", patient=patient)
    with connect(ws_url(hearth), additional_headers=app, open_timeout=30) as ws:
        ws.send(f"bind {sub_id}")
        assert ws.recv(timeout=30) == f"error {sub_id} not found"
    rest_hook = fhir.post(
        "/Subscription",
        json={
            **websocket_subscription("Observation"),
            "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
        },
    ).json()["id"]
    with connect(ws_url(hearth), additional_headers=hearth.headers, open_timeout=30) as ws:
        ws.send(f"bind {rest_hook}")
        assert ws.recv(timeout=30) == f"error {rest_hook} not found"
        ws.send("bind no-such-subscription")
        assert ws.recv(timeout=30) == "error no-such-subscription not found"


def test_a_bad_token_no_connection_and_no_token_no_bind(hearth, fhir):
    with pytest.raises(InvalidStatus):
        bad = {"Authorization": "Bearer not-a-token"}
        with connect(ws_url(hearth), additional_headers=bad, open_timeout=30):
            pass
    sub_id = fhir.post(
        "/Subscription", json=websocket_subscription(f"Observation?code={LOINC}|{code()}")
    ).json()["id"]
    # Without Authorization (a browser) only bind-with-token works (tests/subscriptions/test_live.py)
    with connect(ws_url(hearth), open_timeout=30) as ws:
        ws.send(f"bind {sub_id}")
        assert ws.recv(timeout=30) == f"error {sub_id} not found"
