"""$status and $events (Backport IG) over HTTP: the status of a Subscription, and replay of its
events by number, each resource read with the caller's own access."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx

from tests.fhir_server.auth.smart import client_token
from tests.subscriptions.receiver import Receiver
from tests.subscriptions.test_resend import wait_delivered
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


PAYLOAD_CONTENT = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
)


def test_search_only_owner_gets_id_only_and_nothing_of_other_patients(hearth, fhir):
    """Payload trimming through the real edge: three patient-context owners of the same criteria
    -- one may read Observations (full resource), one may only search them (SMART ``s``
    without ``r``: id-only, the receiver reads with its own access) and one may do neither
    (nothing at all) -- and none hears about another patient; an operator's Subscriptions that
    ask for ``id-only`` and ``empty`` (Backport IG payload content) get just that."""
    rx = Receiver().start()
    try:
        mine = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
        other = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
        criteria = f"Observation?code={LOINC}|{code()}"
        wanted = criteria.rsplit("|", 1)[1]
        subs, apps = {}, {}
        for name, scope in (
            ("full", "patient/Observation.rs"),
            ("search-only", "patient/Observation.s"),
            ("blind", "patient/Patient.rs"),
        ):
            apps[name] = client_token(hearth, f"{scope} user/Subscription.cruds", patient=mine)
            with httpx.Client(base_url=hearth.fhir, headers=apps[name], timeout=60) as app:
                made = app.post("/Subscription", json=subscription(rx.url, criteria))
            assert made.status_code == 201, made.text
            subs[name] = made.json()["id"]
        for asked in ("id-only", "empty"):
            body = subscription(rx.url, criteria)
            body["channel"]["_payload"] = {
                "extension": [{"url": PAYLOAD_CONTENT, "valueCode": asked}]
            }
            made = fhir.post("/Subscription", json=body)
            assert made.status_code == 201, made.text
            subs[asked] = made.json()["id"]
        for sub_id in subs.values():
            wait_status(fhir, sub_id, "active")
        written = [
            fhir.post("/Observation", json=observation(wanted, p)).json()["id"]
            for p in (other, mine, other, mine)
        ]
        ours = [written[1], written[3]]

        def of(got: list, name: str) -> list:
            return [r for r in got if r.kind == "event-notification"
                    and r.headers["x-hearth-subscription"] == subs[name]]  # fmt: skip

        got = rx.wait(
            lambda got: (
                len(of(got, "full")) >= 2
                and len(of(got, "search-only")) >= 2
                and len(of(got, "id-only")) >= 4
                and len(of(got, "empty")) >= 4
            )
        )
        # asked for by an operator (who may read everything): what was asked, every patient's
        for r, obs_id in zip(of(got, "id-only"), written, strict=True):
            status, entry = r.bundle["entry"]
            assert "resource" not in entry and entry["fullUrl"].endswith(f"/Observation/{obs_id}")
        for r in of(got, "empty"):
            [status] = r.bundle["entry"]  # no entry for the resource
            [event] = params(status["resource"])["notification-event"]
            assert [p["name"] for p in event["part"]] == ["event-number", "timestamp"]
        full, trimmed = of(got, "full"), of(got, "search-only")
        assert [r.focus["id"] for r in full] == ours  # type: ignore[index]
        assert [r.event_number for r in trimmed] == [1, 2]
        for r, obs_id in zip(trimmed, ours, strict=True):
            status, entry = r.bundle["entry"]
            assert "resource" not in entry  # id-only: no content
            assert entry["fullUrl"].endswith(f"/Observation/{obs_id}")
            event = params(status["resource"])["notification-event"][0]
            focus = next(p for p in event["part"] if p["name"] == "focus")
            assert focus["valueReference"]["reference"].endswith(
                f"/Observation/{obs_id}/_history/1"
            )
        # the owner that may neither read nor search Observations got no event at all
        blind = fhir.get(f"/Subscription/{subs['blind']}/$status").json()
        found = params(blind["entry"][0]["resource"])
        assert found["events-since-subscription-start"][0]["valueString"] == "0"
        # $events for the search-only app: its own patient's events, id-only
        with httpx.Client(base_url=hearth.fhir, headers=apps["search-only"], timeout=60) as app:
            replay = app.get(f"/Subscription/{subs['search-only']}/$events")
        assert replay.status_code == 200, replay.text
        entries = replay.json()["entry"][1:]
        assert [e["fullUrl"].rsplit("/", 1)[1] for e in entries] == ours
        assert all("resource" not in e for e in entries)
        assert len(of(rx.got, "search-only")) == 2 and len(of(rx.got, "full")) == 2
    finally:
        rx.stop()


def test_pruned_events_answer_410_and_the_kept_ones_replay(hearth, fhir):
    """Retention: delivered events older than the window go (small transactions), undelivered
    ones stay whatever their age, a websocket Subscription's go by age; ``$events`` and
    ``$resend`` answer 410 for a pruned number and still serve the kept ones; numbering goes
    on."""
    from fhir_server.runtime.settings import Settings
    from fhir_server.runtime.subscriptions import Deliverer
    from resources.search import SearchEngine
    from resources.storage.db import create_engine
    from resources.storage.repository import Repository
    from resources.subscriptions import delivery

    rx = Receiver().start()
    dead = Receiver().start()
    dead.stop()  # its port refuses: that Subscription's events are never delivered
    repo = Repository(create_engine(hearth.database_url), SearchEngine(base_urls=(hearth.fhir,)))
    try:
        wanted = code()
        criteria = f"Observation?code={LOINC}|{wanted}"
        hook = fhir.post("/Subscription", json=subscription(rx.url, criteria)).json()["id"]
        down = fhir.post("/Subscription", json=subscription(dead.url, criteria)).json()["id"]
        socket = {**subscription("", criteria, payload=None), "channel": {"type": "websocket"}}
        ws = fhir.post("/Subscription", json=socket).json()["id"]
        wait_status(fhir, hook, "active")
        wait_status(fhir, ws, "active")
        written = [fhir.post("/Observation", json=observation(wanted)).json()["id"]]
        written.append(fhir.post("/Observation", json=observation(wanted)).json()["id"])
        rx.wait(lambda got: len([r for r in got if r.kind == "event-notification"]) >= 2)
        cutoff = datetime.now(UTC)
        time.sleep(0.05)
        written.append(fhir.post("/Observation", json=observation(wanted)).json()["id"])
        rx.wait(lambda got: len([r for r in got if r.kind == "event-notification"]) >= 3)

        settings = Settings(database_url=hearth.database_url, base_url=hearth.root)
        deliverer = Deliverer(repo, settings, "test-retention")
        try:  # within the window (7 days by default) nothing goes
            assert deliverer.prune(now=cutoff + timedelta(days=7) - timedelta(hours=1)) == 0
        finally:
            deliverer.close()
        # the window has passed for events 1 and 2 (one event per transaction here)
        # (the module's earlier Subscriptions have delivered events of their own)
        assert delivery.prune(repo, cutoff, batch=1) >= 4  # 2 of the rest-hook, 2 of the socket
        assert delivery.prune(repo, cutoff, batch=1) == 0
        assert [delivery.pruned_through(repo, s) for s in (hook, ws, down)] == [2, 2, 0]

        def numbers(answer: httpx.Response) -> list[str]:
            assert answer.status_code == 200, answer.text
            events = params(answer.json()["entry"][0]["resource"]).get("notification-event", [])
            return [next(p["valueString"] for p in e["part"] if p["name"] == "event-number")
                    for e in events]  # fmt: skip

        for sub_id in (hook, ws):
            gone = fhir.get(f"/Subscription/{sub_id}/$events", params={"eventsSinceNumber": 2})
            assert gone.status_code == 410, gone.text
            issue = gone.json()["issue"][0]
            assert issue["code"] == "deleted" and "oldest kept is 3" in issue["diagnostics"]
            assert numbers(fhir.get(f"/Subscription/{sub_id}/$events")) == ["3"]
        kept = fhir.get(f"/Subscription/{hook}/$events", params={"eventsSinceNumber": 3})
        assert numbers(kept) == ["3"]
        assert kept.json()["entry"][1]["resource"]["id"] == written[2]
        # never delivered: kept, however old
        assert numbers(fhir.get(f"/Subscription/{down}/$events")) == ["1", "2", "3"]

        refused = fhir.post(f"/Subscription/{hook}/$resend", params={"eventsSinceNumber": 1})
        assert refused.status_code == 410, refused.text
        assert refused.json()["resourceType"] == "OperationOutcome"
        wait_delivered(hearth, hook, 3)  # no acknowledgement in flight (see test_resend)
        again = fhir.post(f"/Subscription/{hook}/$resend", params={"eventsSinceNumber": 3})
        assert again.status_code == 200, again.text
        # numbering goes on after the pruning; the resent 3 comes before the new 4
        fhir.post("/Observation", json=observation(wanted))
        got = rx.wait(lambda got: len([r for r in got if r.kind == "event-notification"]) >= 5)
        assert [r.event_number for r in got if r.kind == "event-notification"] == [1, 2, 3, 3, 4]
    finally:
        rx.stop()
        sub = fhir.get(f"/Subscription/{down}").json() if "down" in locals() else None
        if sub is not None:
            fhir.put(f"/Subscription/{down}", json={**sub, "status": "off"})
        repo.engine.dispose()
