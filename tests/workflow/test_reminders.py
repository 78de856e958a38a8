"""Medication reminders: dose times from Timing (pure), and `hearth worker --once` creating
reminder Communications and e-mailing them — and care-team messages — through real SMTP."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.shared import ROOT
from tests.workflow.conftest import ref
from tests.workflow.test_cases_http import wait_for_mail
from workflow.reminders import dose_times

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def mr(repeat: dict, **extra: object) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "authoredOn": "2026-03-01T09:00:00Z",
        "dosageInstruction": [{"text": "1 tablet", "timing": {"repeat": repeat}}],
        **extra,
    }


def test_time_of_day_and_when_codes():
    times = dose_times(
        mr({"timeOfDay": ["08:00:00", "20:00:00"], "when": ["NOON"]}), T0, T0 + timedelta(days=1)
    )
    assert [t.strftime("%d %H:%M") for t in times] == [
        "02 08:00",
        "02 12:00",
        "02 20:00",
        "03 06:00",
    ][:3]


def test_frequency_per_period_from_the_start():
    times = dose_times(
        mr({"frequency": 3, "period": 1, "periodUnit": "d"}), T0, T0 + timedelta(hours=24)
    )
    # every 8 h from authoredOn 2026-03-01 09:00 → 01 17:00, 02 01:00, 02 09:00, 02 17:00, 03 01:00
    assert [t.strftime("%d %H:%M") for t in times] == ["02 09:00", "02 17:00", "03 01:00"]


def test_bounds_inactive_and_unsupported_timings_give_nothing_wrong():
    bounded = mr({"timeOfDay": ["08:00:00"], "boundsPeriod": {"end": "2026-03-03T00:00:00Z"}})
    assert len(dose_times(bounded, T0, T0 + timedelta(days=5))) == 1
    assert dose_times({**bounded, "status": "stopped"}, T0, T0 + timedelta(days=5)) == []
    weekly = mr({"timeOfDay": ["08:00:00"], "dayOfWeek": ["mon"]})
    assert dose_times(weekly, T0, T0 + timedelta(days=7)) == []
    assert (
        dose_times(
            mr({"timeOfDay": ["08:00:00"]}), T0 + timedelta(hours=2), T0 + timedelta(hours=2)
        )
        == []
    )


def worker(server, smtp) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": server.database_url,
        "HEARTH_BASE_URL": server.root,
        "HEARTH_SMTP_HOST": "127.0.0.1",
        "HEARTH_SMTP_PORT": str(smtp.port),
        "HEARTH_SMTP_CA_FILE": str(smtp.ca_file),
        "HEARTH_DATA_DIR": tempfile.mkdtemp(prefix="hearth-worker-"),
    }
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "worker", "--once"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_worker_reminds_by_email_once_per_dose(wf_server, fhir, team, smtp):
    patient = team["patient"][1]
    authored = (datetime.now(UTC) - timedelta(minutes=50)).replace(microsecond=0)
    request = fhir.create(
        {
            **mr({"frequency": 1, "period": 30, "periodUnit": "min"}),
            "authoredOn": authored.isoformat().replace("+00:00", "Z"),
            "subject": {"reference": patient},
            "medicationCodeableConcept": {"text": "Amoxicillin 500 mg"},
        }
    )
    message = fhir.create(
        {
            "resourceType": "Communication",
            "status": "in-progress",
            "medium": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode",
                            "code": "EMAILWRIT",
                        }
                    ]
                }
            ],
            "subject": {"reference": patient},
            "recipient": [{"reference": patient}],
            "sender": {"reference": team["doctor"][1]},
            "payload": [{"contentString": "Your results are ready; please book a follow-up."}],
        }
    )
    first = worker(wf_server, smtp)
    assert first.returncode == 0, first.stderr
    reminders = fhir.search("Communication", **{"based-on": ref(request)})
    assert len(reminders) == 2  # authoredOn and +30 min are in the last hour; +60 min is not due
    assert {c["status"] for c in reminders} == {"completed"}
    mails = wait_for_mail(smtp, team["email"], 3)
    bodies = [m.get_payload() for m in mails]
    assert sum("Amoxicillin 500 mg" in b for b in bodies) == 2
    assert any("book a follow-up" in b for b in bodies)
    assert fhir.get(f"/Communication/{message['id']}")["status"] == "completed"
    again = worker(wf_server, smtp)
    assert again.returncode == 0, again.stderr
    assert len(fhir.search("Communication", **{"based-on": ref(request)})) == 2
    assert len(smtp.inbox.to(team["email"])) == 3


def test_message_to_a_patient_without_email_stays_pending_with_reason(wf_server, fhir, smtp):
    nobody = fhir.create({"resourceType": "Patient", "name": [{"family": "NoMail"}]})
    message = fhir.create(
        {
            "resourceType": "Communication",
            "status": "in-progress",
            "medium": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode",
                            "code": "EMAILWRIT",
                        }
                    ]
                }
            ],
            "recipient": [{"reference": ref(nobody)}],
            "payload": [{"contentString": "hello"}],
        }
    )
    assert worker(wf_server, smtp).returncode == 0
    stored = fhir.get(f"/Communication/{message['id']}")
    assert (
        stored["status"] == "in-progress" and "no e-mail address" in stored["statusReason"]["text"]
    )


# -- the patient's time zone, across daylight saving time changes -----------------------------
BERLIN = ZoneInfo("Europe/Berlin")  # CET → CEST 2026-03-29 02:00; CEST → CET 2026-10-25 03:00


def hours(times: list[datetime]) -> list[str]:
    return [t.strftime("%m-%d %H:%MZ") for t in times]


def test_time_of_day_is_local_wall_clock_across_spring_forward():
    window = (datetime(2026, 3, 27, 22, 0, tzinfo=UTC), datetime(2026, 3, 30, 22, 0, tzinfo=UTC))
    times = dose_times(mr({"timeOfDay": ["08:00:00"]}), *window, BERLIN)
    # 08:00 CET is 07:00Z; from Sunday 29 March 08:00 CEST is 06:00Z.
    assert hours(times) == ["03-28 07:00Z", "03-29 06:00Z", "03-30 06:00Z"]
    assert [t.astimezone(BERLIN).strftime("%H:%M") for t in times] == ["08:00"] * 3
    # The same timing in UTC (the default zone) stays at 08:00Z.
    assert hours(dose_times(mr({"timeOfDay": ["08:00:00"]}), *window)) == [
        "03-28 08:00Z",
        "03-29 08:00Z",
        "03-30 08:00Z",
    ]
    # 02:30 does not exist on 29 March in Berlin: it fires at 03:30 CEST (01:30Z), once.
    skipped = dose_times(mr({"timeOfDay": ["02:30:00"]}), *window, BERLIN)
    assert hours(skipped) == ["03-28 01:30Z", "03-29 01:30Z", "03-30 00:30Z"]


def test_a_time_that_occurs_twice_at_fall_back_fires_once():
    window = (datetime(2026, 10, 24, 12, 0, tzinfo=UTC), datetime(2026, 10, 25, 12, 0, tzinfo=UTC))
    times = dose_times(mr({"timeOfDay": ["02:30:00"]}), *window, BERLIN)
    assert hours(times) == ["10-25 00:30Z"]  # 02:30 CEST, the first of the two 02:30s


def test_daily_period_steps_in_wall_clock_time_and_hourly_in_elapsed_time():
    start = {"boundsPeriod": {"start": "2026-03-27T08:00:00+01:00"}}
    window = (datetime(2026, 3, 27, 0, 0, tzinfo=UTC), datetime(2026, 3, 30, 0, 0, tzinfo=UTC))
    daily = dose_times(
        mr({"frequency": 1, "period": 1, "periodUnit": "d", **start}), *window, BERLIN
    )
    assert [t.astimezone(BERLIN).strftime("%d %H:%M") for t in daily] == [
        "27 08:00",
        "28 08:00",
        "29 08:00",
    ]
    every_12h = dose_times(
        mr({"frequency": 1, "period": 12, "periodUnit": "h", **start}), *window, BERLIN
    )
    # Elapsed time: after the change the doses land at 09:00 / 21:00 local.
    assert [t.astimezone(BERLIN).strftime("%d %H:%M") for t in every_12h][-2:] == [
        "29 09:00",
        "29 21:00",
    ]


def test_zone_from_the_patient_then_its_organization_then_the_default(wf_server, fhir):
    from fhir_server.runtime.app import build_context
    from fhir_server.runtime.settings import Settings
    from workflow.reminders import TIMEZONE_EXTENSIONS, create_due

    tz_ext = lambda zone: [{"url": TIMEZONE_EXTENSIONS[0], "valueCode": zone}]  # noqa: E731
    org = fhir.create(
        {"resourceType": "Organization", "name": "Clinic", "extension": tz_ext("America/New_York")}
    )
    own = fhir.create(
        {
            "resourceType": "Patient",
            "extension": tz_ext("Europe/Berlin"),
            "managingOrganization": {"reference": ref(org)},
        }
    )
    via_org = fhir.create(
        {"resourceType": "Patient", "managingOrganization": {"reference": ref(org)}}
    )
    plain = fhir.create({"resourceType": "Patient"})
    medication = str(uuid.uuid4())
    requests = {}
    for name, patient in (("own", own), ("org", via_org), ("default", plain)):
        requests[name] = fhir.create(
            {
                **mr({"timeOfDay": ["08:00:00"]}),
                "authoredOn": "2026-03-01T00:00:00Z",
                "subject": {"reference": ref(patient)},
                "medicationCodeableConcept": {"text": f"Drug {medication}"},
            }
        )
    ctx = build_context(Settings(database_url=wf_server.database_url))
    try:
        # A fixed clock on 29 March 2026 (Berlin already on CEST; New York on EDT since 8 March),
        # with a 24-hour look-back so each request gets exactly the one dose of that day.
        now = datetime(2026, 3, 29, 23, 0, tzinfo=UTC)
        for _ in range(2):  # the second pass finds every reminder made already
            create_due(ctx.repo, now, timedelta(hours=24), default_timezone="Asia/Kolkata")
    finally:
        ctx.repo.engine.dispose()
    expected = {
        "own": "2026-03-29T06:00:00Z",  # 08:00 CEST
        "org": "2026-03-29T12:00:00Z",  # 08:00 EDT
        "default": "2026-03-29T02:30:00Z",  # 08:00 IST
    }
    for name, request in requests.items():
        [reminder] = fhir.search("Communication", **{"based-on": ref(request)})
        assert reminder["identifier"][0]["value"] == f"{request['id']}/{expected[name]}", name
        assert "08:00" in reminder["payload"][0]["contentString"], name


def test_next_dose_is_the_first_reminder_after_now():
    from workflow.reminders import daily_times, next_dose, reminded

    nairobi = ZoneInfo("Africa/Nairobi")
    request = mr({"timeOfDay": ["20:00:00"], "when": ["MORN"]})
    # 06:00 UTC = 09:00 in Nairobi: the next is 20:00 that day (17:00 UTC), then 08:00 next day
    assert next_dose(request, T0, nairobi) == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
    assert next_dose(request, datetime(2026, 3, 2, 17, 0, tzinfo=UTC), nairobi) == datetime(
        2026, 3, 3, 5, 0, tzinfo=UTC
    )
    # the same instants create_due reminds of, whatever the window
    assert (
        next_dose(request, T0, nairobi)
        == dose_times(request, T0, T0 + timedelta(days=2), nairobi)[0]
    )
    assert [
        t.isoformat() for t in daily_times(request["dosageInstruction"][0]["timing"]["repeat"])
    ] == [
        "08:00:00",
        "20:00:00",
    ]
    # every 8 h from authoredOn 2026-03-01 09:00 UTC: 02 09:00 UTC is next after 06:00
    assert next_dose(mr({"frequency": 3, "period": 1, "periodUnit": "d"}), T0) == datetime(
        2026, 3, 2, 9, 0, tzinfo=UTC
    )
    # weeks away, within the horizon
    weekly = mr({"frequency": 1, "period": 4, "periodUnit": "wk"})
    assert next_dose(weekly, T0) == datetime(2026, 3, 29, 9, 0, tzinfo=UTC)
    ended = mr({"timeOfDay": ["08:00:00"], "boundsPeriod": {"end": "2026-03-02T00:00:00Z"}})
    assert next_dose(ended, T0) is None
    unread = mr({"timeOfDay": ["08:00:00"], "dayOfWeek": ["mon"]})
    assert next_dose(unread, T0) is None
    assert not reminded(unread["dosageInstruction"][0]["timing"]["repeat"])
    assert next_dose({**request, "status": "stopped"}, T0) is None


def test_next_reminder_operation_over_http(wf_server, fhir):
    """$next-reminder: the patient's zone, the times of day, the next reminder as the worker
    would send it; a patient-context token reads only their own (404 for another's)."""
    import httpx

    from tests.fhir_server.auth.smart import (
        bearer,
        code_of,
        exchange,
        login,
        make_client,
        make_user,
        pkce,
    )
    from workflow.reminders import TIMEZONE_EXTENSIONS

    zone = ZoneInfo("Africa/Nairobi")
    me = fhir.create(
        {
            "resourceType": "Patient",
            "extension": [{"url": TIMEZONE_EXTENSIONS[0], "valueCode": "Africa/Nairobi"}],
        }
    )
    other = fhir.create({"resourceType": "Patient"})
    now = datetime.now(UTC)
    daily = fhir.create(
        {
            **mr({"timeOfDay": ["20:00:00"], "when": ["MORN"]}),
            "authoredOn": (now - timedelta(days=1)).isoformat(),
            "subject": {"reference": ref(me)},
            "medicationCodeableConcept": {"text": "Amoxicillin"},
        }
    )
    weekly = fhir.create(
        {
            **mr({"timeOfDay": ["08:00:00"], "dayOfWeek": ["mon"]}),
            "subject": {"reference": ref(me)},
            "medicationCodeableConcept": {"text": "Amoxicillin"},
        }
    )
    theirs = fhir.create(
        {
            **mr({"when": ["NOON"]}),
            "subject": {"reference": ref(other)},
            "medicationCodeableConcept": {"text": "Other"},
        }
    )
    client_id, _ = make_client(wf_server, "public", "openid fhirUser user/*.cruds")
    verifier, challenge = pkce()
    user = make_user(wf_server, "patient", ref(me))
    code = code_of(
        login(wf_server, client_id, user, "openid fhirUser patient/*.cruds", challenge=challenge)
    )
    h = bearer(exchange(wf_server, client_id, code, verifier).json()["access_token"])

    def ask(request: dict) -> httpx.Response:
        return httpx.get(
            f"{wf_server.fhir}/MedicationRequest/{request['id']}/$next-reminder", headers=h
        )

    resp = ask(daily)
    assert resp.status_code == 200, resp.text
    out = {}
    for p in resp.json()["parameter"]:
        out.setdefault(p["name"], []).append(next(v for k, v in p.items() if k.startswith("value")))
    assert out["reminded"] == [True] and out["timezone"] == ["Africa/Nairobi"]
    assert out["time"] == ["08:00:00", "20:00:00"]
    at = datetime.fromisoformat(out["next"][0])
    assert at.utcoffset() == timedelta(hours=3)  # written in the patient's zone
    local = now.astimezone(zone)
    candidates = [
        datetime.combine(local.date() + timedelta(days=d), datetime.min.time(), zone).replace(
            hour=h_
        )
        for d in (0, 1)
        for h_ in (8, 20)
    ]
    assert at == min(c for c in candidates if c > now)  # independently: the next 08:00 or 20:00

    unread = {p["name"]: p for p in ask(weekly).json()["parameter"]}
    assert unread["reminded"]["valueBoolean"] is False and "next" not in unread
    assert ask(theirs).status_code == 404
    assert ask({"id": "no-such-request"}).status_code == 404
