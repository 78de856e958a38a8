"""Live views over real sockets, on both databases: ``Subscription/$watch`` reuses one
Subscription per criteria + owner filter (never one per call), a browser-style websocket (no
Authorization header) binds it with the token, and a patient's socket never hears about another
patient's records."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from fhir_server.rest.websocket import ENDED
from resources.errors import Unprocessable
from resources.search import SearchEngine
from resources.storage.db import create_engine
from resources.storage.repository import Repository
from resources.subscriptions import live
from tests.fhir_server.auth.smart import (
    bearer,
    code_of,
    exchange,
    login,
    make_client,
    make_user,
    pkce,
)
from tests.subscriptions.test_websocket import ws_url

PORTAL_SCOPE = "openid fhirUser patient/*.cruds"


def _post(hearth, path: str, headers: dict, body: dict) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(
        f"{hearth.fhir}/{path}",
        json=body,
        headers={**headers, "Content-Type": "application/fhir+json"},
        timeout=60,
    )


def watch(hearth, headers: dict, *criteria: str) -> dict:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "criteria", "valueString": c} for c in criteria],
    }
    resp = _post(hearth, "Subscription/$watch", headers, body)
    assert resp.status_code == 200, resp.text
    out: dict = {"subscription": []}
    for p in resp.json()["parameter"]:
        value = next(v for k, v in p.items() if k.startswith("value"))
        if p["name"] == "subscription":
            out["subscription"].append(value)
        else:
            out[p["name"]] = value
    return out


def patient_headers(hearth, client_id: str) -> tuple[str, dict]:  # type: ignore[no-untyped-def]
    """A new Patient and a portal token of its patient user (code + PKCE, as the portal signs in)."""
    made = httpx.post(
        f"{hearth.fhir}/Patient", json={"resourceType": "Patient"}, headers=hearth.headers
    )
    patient = made.json()["id"]
    user = make_user(hearth, "patient", f"Patient/{patient}")
    verifier, challenge = pkce()
    resp = login(hearth, client_id, user, PORTAL_SCOPE, challenge=challenge)
    token = exchange(hearth, client_id, code_of(resp), verifier)
    assert token.status_code == 200, token.text
    return patient, bearer(token.json()["access_token"])


@contextmanager
def bind(hearth, binding: dict) -> Iterator[ClientConnection]:  # type: ignore[no-untyped-def]
    """A websocket as a browser opens it (no Authorization header), bound with the token; the
    handshake Bundle of each Subscription has arrived."""
    assert binding["websocket-url"] == ws_url(hearth)
    with connect(binding["websocket-url"], open_timeout=30) as ws:
        ws.send(f"bind-with-token {binding['token']}")
        for sub_id in binding["subscription"]:
            assert status_of(ws.recv(timeout=30)) == ("handshake", sub_id, None)
        yield ws


def status_of(text: str) -> tuple[str, str, str | None]:
    """(notification type, subscription id, focus reference) of a notification Bundle."""
    bundle = json.loads(text)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    assert len(bundle["entry"]) == 1  # id-only: no resource content on the socket
    params = bundle["entry"][0]["resource"]["parameter"]
    kind = next(p["valueCode"] for p in params if p["name"] == "type")
    sub = next(p["valueReference"]["reference"] for p in params if p["name"] == "subscription")
    focus = None
    for p in params:
        if p["name"] == "notification-event":
            part = next(x for x in p["part"] if x["name"] == "focus")
            focus = part["valueReference"]["reference"]
    return kind, sub.rsplit("/", 1)[1], focus


def events(
    ws: ClientConnection, wait: float, last: str | None = None, grace: float = 1.5
) -> list[tuple[str, str, str | None]]:
    """Every notification that arrives within ``wait`` seconds (heartbeats left out). With
    ``last`` (a focus reference written after everything else), stop ``grace`` seconds after it
    arrived: anything wrongly fanned out from the earlier writes is in the outbox before it."""
    out: list[tuple[str, str, str | None]] = []
    deadline = datetime.now(UTC) + timedelta(seconds=wait)
    while (left := (deadline - datetime.now(UTC)).total_seconds()) > 0:
        try:
            got = status_of(ws.recv(timeout=left))
        except TimeoutError:
            break
        if got[0] != "heartbeat":
            out.append(got)
            if last is not None and got[2] is not None and last in got[2]:
                deadline = min(deadline, datetime.now(UTC) + timedelta(seconds=grace))
    return out


def task(patient: str, **extra: object) -> dict:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": f"Patient/{patient}"},
        **extra,
    }


@pytest.fixture(scope="module")
def portal_client(hearth):  # type: ignore[no-untyped-def]
    client_id, _ = make_client(hearth, "public", "openid fhirUser user/*.cruds")
    return client_id


def test_watch_reuses_one_subscription_per_criteria_and_owner(hearth, fhir, portal_client):
    first, headers = patient_headers(hearth, portal_client)
    criteria = f"Task?patient=Patient/{first}"
    a = watch(hearth, headers, criteria, f"DiagnosticReport?patient=Patient/{first}")
    b = watch(hearth, headers, criteria)
    assert b["subscription"] == a["subscription"][:1]  # reused, not a second one
    assert a["token"] != b["token"]
    subs = fhir.get("/Subscription", params={"_tag": f"{live.LIVE_SYSTEM}|live-view"}).json()
    mine = [
        e["resource"] for e in subs.get("entry", []) if e["resource"]["id"] in a["subscription"]
    ]
    assert len(mine) == 2
    for sub in mine:
        assert sub["channel"]["type"] == "websocket"
        end = datetime.fromisoformat(sub["end"].replace("Z", "+00:00"))
        assert timedelta(minutes=50) < end - datetime.now(UTC) <= live.TTL
    # the same criteria for another patient: another owner filter, another Subscription
    second, other = patient_headers(hearth, portal_client)
    c = watch(hearth, other, criteria)
    assert c["subscription"][0] not in a["subscription"]
    # a patient cannot read (nor bind through $get-ws-binding-token) a Subscription
    got = httpx.get(f"{hearth.fhir}/Subscription/{a['subscription'][0]}", headers=headers)
    assert got.status_code in (403, 404)
    token = _post(
        hearth,
        f"Subscription/{a['subscription'][0]}/$get-ws-binding-token",
        other,
        {"resourceType": "Parameters"},
    )
    assert token.status_code in (403, 404)


def test_watch_refuses_what_the_caller_may_not_search(hearth, portal_client):
    _, headers = patient_headers(hearth, portal_client)
    body = {"resourceType": "Parameters", "parameter": [{"name": "criteria", "valueString": ""}]}
    for c, status in [
        ("AuditEvent", 403),
        ("NotAType?x=1", 400),
        ("Task?no-such-param=1", 400),
        ("http://hearth.local/fhir/SubscriptionTopic/task-assigned", 400),
    ]:
        body["parameter"][0]["valueString"] = c
        resp = _post(hearth, "Subscription/$watch", headers, body)
        assert resp.status_code == status, (c, resp.text)
        assert resp.json()["resourceType"] == "OperationOutcome"
    resp = _post(hearth, "Subscription/$watch", {}, body)
    assert resp.status_code == 401


def test_a_patients_socket_hears_only_their_own_records(hearth, fhir, portal_client):
    mine, headers = patient_headers(hearth, portal_client)
    theirs, other_headers = patient_headers(hearth, portal_client)
    # Broad criteria on purpose: the owner filter (the patient's compartment) is what narrows.
    with (
        bind(hearth, watch(hearth, headers, "Task", "DiagnosticReport")) as ws,
        bind(hearth, watch(hearth, other_headers, "Task")) as other_ws,
    ):
        theirs_task = fhir.post("/Task", json=task(theirs)).json()["id"]
        report = {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{theirs}"},
        }
        fhir.post("/DiagnosticReport", json=report)
        fhir.put(
            f"/Task/{theirs_task}",
            json={**task(theirs), "id": theirs_task, "description": "changed"},
        )
        my_task = fhir.post("/Task", json=task(mine)).json()["id"]
        got = events(ws, 8, last=f"Task/{my_task}/")
        assert [(k, f.split("/fhir/")[1].rsplit("/_history", 1)[0]) for k, _, f in got] == [
            ("event-notification", f"Task/{my_task}")
        ]
        heard = events(other_ws, 2)
        assert {f.split("/fhir/")[1].split("/_history")[0] for _, _, f in heard} == {
            f"Task/{theirs_task}"
        }
        assert [f.rsplit("/", 1)[1] for _, _, f in heard] == ["1", "2"]  # both, in order


def test_a_browser_socket_needs_a_valid_binding_token(hearth, fhir, portal_client):
    _, headers = patient_headers(hearth, portal_client)
    binding = watch(hearth, headers, "Task")
    with connect(ws_url(hearth), open_timeout=30) as ws:
        ws.send("bind-with-token not-a-token")
        assert ws.recv(timeout=30).startswith("error bind-with-token")
        ws.send(f"bind {binding['subscription'][0]}")  # no Authorization: no plain bind
        assert ws.recv(timeout=30) == f"error {binding['subscription'][0]} not found"
        # the access token is not a binding token, nor the reverse
        ws.send(f"bind-with-token {headers['Authorization'].split()[1]}")
        assert ws.recv(timeout=30).startswith("error bind-with-token")
    bad = httpx.get(f"{hearth.fhir}/Task", headers={"Authorization": f"Bearer {binding['token']}"})
    assert bad.status_code == 401
    # nor is it an OAuth token to introspection (RFC 7662)
    seen = httpx.post(
        f"{hearth.root}/auth/introspect", data={"token": binding["token"]}, headers=headers
    )
    assert seen.status_code == 200 and seen.json() == {"active": False}


def test_a_socket_closes_when_its_live_view_ends(hearth, fhir, portal_client):
    _, headers = patient_headers(hearth, portal_client)
    binding = watch(hearth, headers, "Appointment")
    sub_id = binding["subscription"][0]
    repo = Repository(create_engine(hearth.database_url), SearchEngine(base_urls=(hearth.fhir,)))
    with bind(hearth, binding) as ws:
        assert live.sweep(repo, datetime.now(UTC)) == 0  # not ended yet
        assert live.sweep(repo, datetime.now(UTC) + live.TTL + timedelta(seconds=1)) >= 1
        assert fhir.get(f"/Subscription/{sub_id}").status_code == 410
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=60)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == ENDED
        again = watch(hearth, headers, "Appointment")  # the app asks again: a new one
        assert again["subscription"] != [sub_id]
    repo.engine.dispose()


def test_get_ws_binding_token_binds_a_subscription_the_caller_reads(hearth, fhir):
    tag = uuid.uuid4().hex
    sub_id = fhir.post(
        "/Subscription",
        json={
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "test",
            "criteria": f"Task?identifier=urn:test|{tag}",
            "channel": {"type": "websocket"},
        },
    ).json()["id"]
    resp = _post(
        hearth,
        f"Subscription/{sub_id}/$get-ws-binding-token",
        hearth.headers,
        {"resourceType": "Parameters"},
    )
    assert resp.status_code == 200, resp.text
    params = {
        p["name"]: next(v for k, v in p.items() if k != "name") for p in resp.json()["parameter"]
    }
    binding = {**params, "subscription": [params["subscription"]]}
    with bind(hearth, binding) as ws:
        patient = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
        fhir.post(
            "/Task", json=task(patient, identifier=[{"system": "urn:test", "value": "other"}])
        )
        made = fhir.post(
            "/Task", json=task(patient, identifier=[{"system": "urn:test", "value": tag}])
        ).json()["id"]
        got = events(ws, 8, last=f"Task/{made}/")
        assert [(k, s, f.split("/fhir/")[1]) for k, s, f in got] == [
            ("event-notification", sub_id, f"Task/{made}/_history/1")
        ]


def test_live_subscriptions_renew_end_and_are_capped(hearth):
    """``live.watch`` straight on the database (owner filter: none, as no token has): reuse
    keeps ``end`` until less than 45 minutes are left, an ended one is not reused, and one owner
    has at most ``MAX_PER_OWNER``."""
    repo = Repository(create_engine(hearth.database_url), SearchEngine(base_urls=(hearth.fhir,)))
    tag = uuid.uuid4().hex[:8]
    criteria = f"Task?identifier=urn:live|{tag}"

    def current(sub_id: str) -> tuple[str, str]:
        stored = repo.read(lambda u: u.read("Subscription", sub_id))
        return stored.content["end"], str(stored.version)

    try:
        now = datetime.now(UTC).replace(microsecond=0)
        [first] = live.watch(repo, [criteria], now)
        # the worker shakes hands with every new Subscription (requested -> active, a version
        # of its own): wait for it, so that the versions below are the watch's alone
        deadline = time.monotonic() + 60
        while repo.read(lambda u: u.read("Subscription", first)).content["status"] != "active":
            assert time.monotonic() < deadline, "the worker never activated the live view"
            time.sleep(0.2)
        end, version = current(first)
        assert datetime.fromisoformat(end.replace("Z", "+00:00")) == now + live.TTL
        assert live.watch(repo, [criteria], now + timedelta(minutes=10)) == [first]
        assert current(first) == (end, version)  # no new version for a reuse
        later = now + timedelta(minutes=20)
        assert live.watch(repo, [criteria], later) == [first]
        end2, version2 = current(first)
        assert datetime.fromisoformat(end2.replace("Z", "+00:00")) == later + live.TTL
        assert int(version2) == int(version) + 1
        # past its end: a new one (the sweep deletes the old)
        gone = later + live.TTL + timedelta(seconds=1)
        [second] = live.watch(repo, [criteria], gone)
        assert second != first
        # the cap: never more than MAX_PER_OWNER live Subscriptions for one owner filter
        made = {second}
        with pytest.raises(Unprocessable):
            for i in range(live.MAX_PER_OWNER + 1):
                made.update(live.watch(repo, [f"Task?identifier=urn:live|{tag}-{i}"], gone))
        assert len(made) == live.MAX_PER_OWNER
    finally:
        live.sweep(repo, datetime.now(UTC) + timedelta(days=1))
        repo.engine.dispose()
