"""``Schedule/[id]/$generate-slots`` (a week of free Slots from a template) and
``AuditEvent/$verify`` (the audit chain checked over HTTP) on SQLite and PostgreSQL; and the
AuditEvent searches an administrator's Audit screen makes (who saw which patient, when)."""

from __future__ import annotations

import time
import uuid
from datetime import date, timedelta

import httpx
import pytest
import sqlalchemy as sa

from resources.storage.db import create_engine
from tests.fhir_server.auth.smart import bearer, client_token, make_client, make_user
from tests.fhir_server.auth.test_user_admin import SCOPE, _token
from tests.servers import database_url, start_server

HTTP = httpx.Client(timeout=60)


def _schedule(server) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    prac = HTTP.post(
        f"{server.fhir}/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": uuid.uuid4().hex[:8]}]},
        headers=server.headers,
    ).json()
    sched = HTTP.post(
        f"{server.fhir}/Schedule",
        json={
            "resourceType": "Schedule",
            "active": True,
            "actor": [{"reference": f"Practitioner/{prac['id']}"}],
            "serviceType": [{"text": "Dermatology"}],
        },
        headers=server.headers,
    ).json()
    return sched["id"], prac["id"]


def _template(**over) -> dict:  # type: ignore[no-untyped-def]
    values = {
        "start": ("valueDate", "2030-03-04"),  # a Monday
        "weeks": ("valueInteger", 1),
        "startTime": ("valueTime", "09:00:00"),
        "endTime": ("valueTime", "11:00:00"),
        "slotMinutes": ("valueInteger", 30),
        "timeZone": ("valueString", "Africa/Nairobi"),
        **over,
    }
    params = []
    for name, value in values.items():
        if value is None:
            continue
        if name == "dayOfWeek":
            params += [{"name": name, "valueCode": d} for d in value]
        else:
            params.append({"name": name, value[0]: value[1]})
    return {"resourceType": "Parameters", "parameter": params}


def _generate(server, sched: str, headers=None, **over):  # type: ignore[no-untyped-def]
    return HTTP.post(
        f"{server.fhir}/Schedule/{sched}/$generate-slots",
        json=_template(**over),
        headers=headers or server.headers,
    )


def _value(params: dict, name: str):  # type: ignore[no-untyped-def]
    for p in params["parameter"]:
        if p["name"] == name:
            return next(v for k, v in p.items() if k.startswith("value"))
    return None


def _slots(server, sched: str) -> list[dict]:  # type: ignore[no-untyped-def]
    resp = HTTP.get(
        f"{server.fhir}/Slot",
        params={"schedule": f"Schedule/{sched}", "_sort": "start", "_count": "500"},
        headers=server.headers,
    )
    assert resp.status_code == 200, resp.text
    return [e["resource"] for e in resp.json().get("entry", [])]


def test_a_week_of_slots_from_a_template_is_idempotent(server):
    sched, _ = _schedule(server)
    made = _generate(server, sched, dayOfWeek=["mon", "wed", "fri"])
    assert made.status_code == 201, made.text
    assert _value(made.json(), "created") == 12 and _value(made.json(), "existing") == 0
    slots = _slots(server, sched)
    assert len(slots) == 12
    # 09:00 in Nairobi (UTC+3) is 06:00 UTC; three days, four half hours each
    assert slots[0]["start"] == "2030-03-04T06:00:00Z" and slots[0]["end"] == "2030-03-04T06:30:00Z"
    assert slots[-1]["start"] == "2030-03-08T07:30:00Z"
    assert {s["start"][:10] for s in slots} == {"2030-03-04", "2030-03-06", "2030-03-08"}
    assert all(s["status"] == "free" for s in slots)
    assert slots[0]["serviceType"] == [{"text": "Dermatology"}]

    # the same template again creates nothing; a booked (busy) Slot is kept as it is
    booked = HTTP.put(
        f"{server.fhir}/Slot/{slots[0]['id']}",
        json={**slots[0], "status": "busy"},
        headers=server.headers,
    )
    assert booked.status_code == 200, booked.text
    again = _generate(server, sched, dayOfWeek=["mon", "wed", "fri"])
    assert again.status_code == 200, again.text
    assert _value(again.json(), "created") == 0 and _value(again.json(), "existing") == 12
    after = _slots(server, sched)
    assert len(after) == 12 and after[0]["status"] == "busy"

    # two weeks, the default Monday to Friday: the first week's Monday, Wednesday, Friday exist
    more = _generate(server, sched, weeks=("valueInteger", 2))
    assert more.status_code == 201, more.text
    assert _value(more.json(), "created") == 4 * 10 - 12
    assert _value(more.json(), "existing") == 12


def test_overlapping_template_is_refused_whole(server):
    sched, _ = _schedule(server)
    assert _generate(server, sched, dayOfWeek=["tue"]).status_code == 201
    before = len(_slots(server, sched))
    clash = _generate(server, sched, dayOfWeek=["mon", "tue"], slotMinutes=("valueInteger", 45))
    assert clash.status_code == 409, clash.text
    assert "overlaps Slot/" in clash.json()["issue"][0]["diagnostics"]
    assert len(_slots(server, sched)) == before  # nothing of Monday either


def test_bad_templates_are_400_and_unknown_schedule_404(server):
    sched, _ = _schedule(server)
    for over in (
        {"slotMinutes": None},
        {"startTime": None},
        {"endTime": ("valueTime", "08:00:00")},
        {"timeZone": ("valueString", "Mars/Olympus")},
        {"dayOfWeek": ["someday"]},
        {"slotMinutes": ("valueInteger", 2)},
        {"weeks": ("valueInteger", 99)},
        {"start": ("valueDate", "2030-13-01")},
        {"start": ("valueDate", "9999-12-30")},
        {"start": ("valueDate", "0001-01-01"), "timeZone": ("valueString", "Asia/Tokyo")},
        {"startTime": ("valueTime", "nine")},
        {"slotMinutes": ("valueInteger", 180)},  # longer than the opening hours: no Slot
    ):
        resp = _generate(server, sched, **over)
        assert resp.status_code == 400, (over, resp.text)
        assert resp.json()["resourceType"] == "OperationOutcome"
    missing = _generate(server, sched, slotMinutes=None)
    assert missing.json()["issue"][0]["code"] == "required"
    assert _generate(server, "no-such-schedule").status_code == 404
    # the first day of the calendar works (no overflow), in UTC
    first = _generate(
        server,
        sched,
        start=("valueDate", "0001-01-01"),
        timeZone=("valueString", "UTC"),
        dayOfWeek=["mon"],
    )
    assert first.status_code == 201, first.text
    assert _slots(server, sched)[0]["start"] == "0001-01-01T09:00:00Z"
    # a cadre may not make Slots (no update on Schedule)
    cadre = client_token(server, "user/*.rs user/Patient.cu")
    assert _generate(server, sched, headers=cadre).status_code == 403
    assert len(_slots(server, sched)) == 4


def test_verify_the_audit_chain_over_http(server):
    resp = HTTP.get(f"{server.fhir}/AuditEvent/$verify", headers=server.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert _value(body, "intact") is True and _value(body, "events") > 0
    # not for a doctor (a user with user/*.cruds who is no administrator)
    client_id, _ = make_client(server, "public", SCOPE)
    prac = HTTP.post(
        f"{server.fhir}/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": "Audit"}]},
        headers=server.headers,
    ).json()
    doctor = make_user(server, "doctor", f"Practitioner/{prac['id']}")
    doc = bearer(_token(server, client_id, doctor)["access_token"])
    denied = HTTP.get(f"{server.fhir}/AuditEvent/$verify", headers=doc)
    assert denied.status_code == 403 and denied.json()["resourceType"] == "OperationOutcome"


@pytest.fixture(params=["sqlite", "postgresql"])
def own_server(request, tmp_path):  # type: ignore[no-untyped-def]
    """A server of its own (its audit log gets broken)."""
    url, cleanup = database_url(request.param, tmp_path)
    running = start_server(request.param, url)
    yield running, url
    running.stop()
    cleanup()  # type: ignore[operator]


def test_verify_reports_a_broken_chain(own_server):  # type: ignore[no-untyped-def]
    """A row edited behind the database's back (the trigger dropped, as an owner could) is
    reported with its number."""
    server, url = own_server
    assert HTTP.get(f"{server.fhir}/Patient", headers=server.headers).status_code == 200
    for _ in range(100):  # the read's event is appended by the background audit writer
        intact = HTTP.get(f"{server.fhir}/AuditEvent/$verify", headers=server.headers).json()
        assert _value(intact, "intact") is True
        if _value(intact, "events") > 0:
            break
        time.sleep(0.1)
    assert _value(intact, "events") > 0
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            seq = conn.execute(sa.text("SELECT MIN(seq) FROM audit_event")).scalar_one()
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            else:
                for (name,) in conn.execute(
                    sa.text(
                        "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                        "AND tbl_name = 'audit_event'"
                    )
                ).all():
                    conn.execute(sa.text(f'DROP TRIGGER "{name}"'))
            conn.execute(
                sa.text("UPDATE audit_event SET recorded = :t WHERE seq = :s"),
                {"t": "2001-01-01 00:00:00", "s": seq},
            )
    finally:
        engine.dispose()
    body = HTTP.get(f"{server.fhir}/AuditEvent/$verify", headers=server.headers).json()
    assert _value(body, "intact") is False and _value(body, "brokenAt") == seq
    assert _value(body, "reason")


def test_admin_searches_who_saw_a_patient_and_when(server):
    """The Audit screen's search: the reads of one patient's record by a user, by date."""
    patient = HTTP.post(
        f"{server.fhir}/Patient", json={"resourceType": "Patient"}, headers=server.headers
    ).json()
    client_id, _ = make_client(server, "public", SCOPE)
    prac = HTTP.post(
        f"{server.fhir}/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": "Reader"}]},
        headers=server.headers,
    ).json()
    doctor = make_user(server, "doctor", f"Practitioner/{prac['id']}")
    doc = bearer(_token(server, client_id, doctor)["access_token"])
    assert HTTP.get(f"{server.fhir}/Patient/{patient['id']}", headers=doc).status_code == 200
    today = date.today().isoformat()
    query = {
        "entity": f"Patient/{patient['id']}",
        "altid": doctor.username,
        "date": f"ge{(date.today() - timedelta(days=1)).isoformat()}",
        "_sort": "-date",
    }
    # events are written by the background audit writer: poll until it has drained
    found: list[dict] = []
    for _ in range(100):
        resp = HTTP.get(f"{server.fhir}/AuditEvent", params=query, headers=server.headers)
        assert resp.status_code == 200, resp.text
        found = [e["resource"] for e in resp.json().get("entry", [])]
        if found:
            break
        time.sleep(0.1)
    assert found and found[0]["action"] == "R" and found[0]["recorded"][:10] <= today
    assert found[0]["agent"][0]["who"]["reference"].endswith(f"Practitioner/{prac['id']}")
    # a doctor may not search the log
    denied = HTTP.get(f"{server.fhir}/AuditEvent", params=query, headers=doc)
    assert denied.status_code == 403
