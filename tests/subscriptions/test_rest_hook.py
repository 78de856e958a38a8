"""Rest-hook subscriptions end to end over real sockets, on SQLite and PostgreSQL: a Hearth, a
real ``hearth worker`` process and a local HTTP receiver."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.fhir_server.auth.smart import client_token
from tests.subscriptions.receiver import Receiver

LOINC = "http://loinc.org"


def subscription(endpoint: str, criteria: str, *, payload: str | None = "application/fhir+json",
                 headers: list[str] | None = None, **extra: object) -> dict:  # fmt: skip
    channel: dict = {"type": "rest-hook", "endpoint": endpoint}
    if payload:
        channel["payload"] = payload
    if headers:
        channel["header"] = headers
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": channel,
        **extra,
    }


def observation(code: str, patient: str | None = None, **extra: object) -> dict:
    body: dict = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        **extra,
    }
    if patient:
        body["subject"] = {"reference": f"Patient/{patient}"}
    return body


def wait_status(fhir: httpx.Client, sub_id: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        sub = fhir.get(f"/Subscription/{sub_id}").json()
        if sub.get("status") == status:
            return sub
        assert time.monotonic() < deadline, f"Subscription never became {status}: {sub}"
        time.sleep(0.1)


def code() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def test_handshake_then_matching_writes_only_in_order(hearth, fhir):
    rx = Receiver().start()
    try:
        wanted = code()
        sub = fhir.post(
            "/Subscription",
            json=subscription(rx.url, f"Observation?code={LOINC}|{wanted}",
                              headers=["Authorization: Bearer receiver-secret"]),
        )  # fmt: skip
        assert sub.status_code == 201, sub.text
        sub_id = sub.json()["id"]
        active = wait_status(fhir, sub_id, "active")
        assert "error" not in active
        handshake = rx.wait(lambda got: any(r.kind == "handshake" for r in got))[0]
        assert handshake.headers["authorization"] == "Bearer receiver-secret"
        status = handshake.bundle["entry"][0]["resource"]
        assert {"name": "type", "valueCode": "handshake"} in status["parameter"]

        ids = []
        for n in range(3):
            fhir.post("/Observation", json=observation(code()))  # not matching
            made = fhir.post("/Observation", json=observation(wanted, valueString=str(n)))
            ids.append(made.json()["id"])
        # an update of a matching one is an event too; one that stops matching is not
        first = fhir.get(f"/Observation/{ids[0]}").json()
        fhir.put(f"/Observation/{ids[0]}", json={**first, "valueString": "changed"})
        fhir.put(f"/Observation/{ids[1]}", json={**observation(code()), "id": ids[1]})

        got = rx.wait(lambda got: len([r for r in got if r.kind != "handshake"]) >= 4)
        events = [r for r in got if r.kind == "event-notification"]
        assert [e.event_number for e in events] == [1, 2, 3, 4]
        focus = [(e.focus["id"], e.focus.get("valueString")) for e in events]  # type: ignore[index]
        assert focus == [(ids[0], "0"), (ids[1], "1"), (ids[2], "2"), (ids[0], "changed")]
        params = {p["name"]: p for p in events[3].bundle["entry"][0]["resource"]["parameter"]}
        assert params["events-since-subscription-start"]["valueString"] == "4"
        parts = {p["name"]: p for p in params["notification-event"]["part"]}
        assert parts["event-number"]["valueString"] == "4"
        assert parts["focus"]["valueReference"]["reference"].endswith(
            f"/Observation/{ids[0]}/_history/2"
        )
        assert all(e.headers["content-type"] == "application/fhir+json" for e in events)
        # nothing else came: the next matching write is event 5, the one after these
        last = fhir.post("/Observation", json=observation(wanted)).json()["id"]
        got = rx.wait(lambda got: len([r for r in got if r.kind != "handshake"]) >= 5)
        events = [r for r in got if r.kind == "event-notification"]
        assert [e.event_number for e in events] == [1, 2, 3, 4, 5]
        assert events[4].focus["id"] == last  # type: ignore[index]
    finally:
        rx.stop()


def test_rolled_back_transaction_is_never_notified(hearth, fhir):
    rx = Receiver().start()
    try:
        wanted = code()
        sub_id = fhir.post(
            "/Subscription",
            json=subscription(rx.url, f"Observation?code={LOINC}|{wanted}", payload=None),
        ).json()["id"]
        wait_status(fhir, sub_id, "active")
        failing = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": observation(wanted), "request": {"method": "POST", "url": "Observation"}},
                {"resource": {"resourceType": "Observation", "status": "not-a-status"},
                 "request": {"method": "POST", "url": "Observation"}},
            ],
        }  # fmt: skip
        answer = fhir.post("", json=failing)
        assert answer.status_code in (400, 422), answer.text
        good = {**failing, "entry": failing["entry"][:1]}
        assert fhir.post("", json=good).status_code == 200
        got = rx.wait(lambda got: any(r.kind == "event-notification" for r in got))
        events = [r for r in got if r.kind == "event-notification"]
        # the rolled-back write took no number: the committed one is event 1, with no body
        assert [e.event_number for e in events] == [1]
        assert events[0].body == b""
        assert events[0].headers["x-hearth-subscription"] == sub_id
    finally:
        rx.stop()


def test_patient_context_subscription_hears_only_its_patient(hearth, fhir):
    rx = Receiver().start()
    try:
        mine = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
        other = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
        app = client_token(hearth, "patient/Observation.rs user/Subscription.cruds", patient=mine)
        wanted = code()
        with httpx.Client(base_url=hearth.fhir, headers=app, timeout=60) as patient_app:
            made = patient_app.post(
                "/Subscription", json=subscription(rx.url, f"Observation?code={LOINC}|{wanted}")
            )
            assert made.status_code == 201, made.text
        sub_id = made.json()["id"]
        wait_status(fhir, sub_id, "active")
        fhir.post("/Observation", json=observation(wanted, other))
        fhir.post("/Observation", json=observation(wanted))  # no subject: in no compartment
        ours = fhir.post("/Observation", json=observation(wanted, mine)).json()["id"]
        fhir.post("/Observation", json=observation(wanted, other))
        last = fhir.post("/Observation", json=observation(wanted, mine)).json()["id"]
        got = rx.wait(lambda got: any(r.focus and r.focus["id"] == last for r in got
                                      if r.kind == "event-notification"))  # fmt: skip
        events = [r for r in got if r.kind == "event-notification"]
        assert [e.focus["id"] for e in events] == [ours, last]  # type: ignore[index]
        assert [e.event_number for e in events] == [1, 2]
        assert all(e.focus["subject"]["reference"] == f"Patient/{mine}" for e in events)  # type: ignore[index]
    finally:
        rx.stop()


DOWN_SECONDS = 60


def test_down_endpoint_gets_every_event_afterwards_in_order(hearth, fhir):
    rx = Receiver().start()
    wanted = code()
    sub_id = fhir.post(
        "/Subscription", json=subscription(rx.url, f"Observation?code={LOINC}|{wanted}")
    ).json()["id"]
    wait_status(fhir, sub_id, "active")
    rx.stop()  # connections refused from now on
    down_since = time.monotonic()
    try:
        ids = [fhir.post("/Observation", json=observation(wanted)).json()["id"] for _ in range(5)]
        failing = wait_status(fhir, sub_id, "error")
        assert "failed" in failing["error"], failing
        # another subscription is not held back by the dead one
        rx2 = Receiver().start()
        try:
            other = fhir.post(
                "/Subscription", json=subscription(rx2.url, f"Observation?code={LOINC}|{wanted}")
            ).json()["id"]
            wait_status(fhir, other, "active")
            late = fhir.post("/Observation", json=observation(wanted)).json()["id"]
            rx2.wait(lambda got: any(r.kind == "event-notification" for r in got))
            assert [e.focus["id"] for e in rx2.events()] == [late]  # type: ignore[index]
        finally:
            rx2.stop()
        # down for a whole minute (the figure), retried all along, then back
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_since)))
        rx.start()  # back, on the same port
        got = rx.wait(lambda got: len([r for r in got if r.kind == "event-notification"]) >= 6)
        events = [r for r in got if r.kind == "event-notification"]
        assert [e.event_number for e in events] == [1, 2, 3, 4, 5, 6]
        assert [e.focus["id"] for e in events] == [*ids, late]  # type: ignore[index]
        recovered = wait_status(fhir, sub_id, "active")
        assert "error" not in recovered
    finally:
        rx.stop()


def test_off_stops_notifications(hearth, fhir):
    rx = Receiver().start()
    try:
        wanted = code()
        sub_id = fhir.post(
            "/Subscription", json=subscription(rx.url, f"Observation?code={LOINC}|{wanted}")
        ).json()["id"]
        sub = wait_status(fhir, sub_id, "active")
        fhir.put(f"/Subscription/{sub_id}", json={**sub, "status": "off"})
        fhir.post("/Observation", json=observation(wanted))
        # a second subscription on the same criteria hears it; the one turned off does not
        rx2 = Receiver().start()
        try:
            other = fhir.post(
                "/Subscription", json=subscription(rx2.url, f"Observation?code={LOINC}|{wanted}")
            ).json()["id"]
            wait_status(fhir, other, "active")
            marker = fhir.post("/Observation", json=observation(wanted)).json()["id"]
            rx2.wait(lambda got: any(r.kind == "event-notification" for r in got))
        finally:
            rx2.stop()
        assert rx.events() == []
        assert marker
    finally:
        rx.stop()


def test_xml_payload_is_the_notification_bundle_in_fhir_xml(hearth, fhir):
    from mappings.fhir_xml import from_xml

    rx = Receiver().start()
    try:
        wanted = code()
        sub = fhir.post(
            "/Subscription",
            json=subscription(rx.url, f"Observation?code={LOINC}|{wanted}",
                              payload="application/fhir+xml"),
        )  # fmt: skip
        assert sub.status_code == 201, sub.text
        wait_status(fhir, sub.json()["id"], "active")
        made = fhir.post("/Observation", json=observation(wanted)).json()
        got = rx.wait(lambda got: any(r.kind == "event-notification" for r in got))
        event = next(r for r in got if r.kind == "event-notification")
        assert event.headers["content-type"] == "application/fhir+xml"
        bundle = from_xml(event.body)
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
        assert bundle["entry"][0]["resource"]["resourceType"] == "Parameters"
        assert bundle["entry"][1]["resource"]["id"] == made["id"]
    finally:
        rx.stop()


class SilentEndpoint:
    """Takes the handshake, then holds every event notification unanswered on its connection
    (an endpoint that accepts and never answers); ``gave_up`` is set when the worker closes
    such a connection (its attempt timed out)."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.gave_up = threading.Event()
        self.held: list = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("X-Hearth-Notification") == "event-notification":
                    endpoint.held.append(self.connection)
                    endpoint.holding.set()
                    try:
                        closed = self.connection.recv(1) == b""  # blocks until the worker closes
                    except OSError:  # closed by ``stop``
                        closed = False
                    if closed:
                        endpoint.gave_up.set()
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for conn in self.held:  # the worker's attempt ends now, not at its timeout
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes the handler's recv; close alone would not
            except OSError:
                pass


def test_a_hung_endpoint_never_delays_another_subscription(hearth, fhir):
    # the shared worker's per-attempt timeout (5 s, WORKER_ENV) bounds the hung attempt; all
    # below happens within it
    hung, rx = SilentEndpoint(), Receiver().start()
    ids: list[str] = []
    try:
        wanted = code()
        criteria = f"Observation?code={LOINC}|{wanted}"
        ids = [
            fhir.post("/Subscription", json=subscription(url, criteria)).json()["id"]
            for url in (hung.url, rx.url)
        ]
        for sub_id in ids:
            wait_status(fhir, sub_id, "active")
        fhir.post("/Observation", json=observation(wanted))
        assert hung.holding.wait(30), "the hung endpoint never got its event"
        rx.wait(lambda got: [r.event_number for r in got if r.kind == "event-notification"])
        # the next event of the other subscription while the first endpoint still hangs
        fhir.post("/Observation", json=observation(wanted))
        numbers = [
            r.event_number
            for r in rx.wait(
                lambda got: len([r for r in got if r.kind == "event-notification"]) == 2
            )
            if r.kind == "event-notification"
        ]
        assert numbers == [1, 2]
        assert not hung.gave_up.is_set(), "the other subscription waited for the hung one"
    finally:
        hung.stop()
        rx.stop()
        for sub_id in ids:
            fhir.delete(f"/Subscription/{sub_id}")
