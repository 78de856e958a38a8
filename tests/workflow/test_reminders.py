"""Medication reminders: dose times from Timing (pure), and `hearth worker --once` creating
reminder Communications and e-mailing them — and care-team messages — through real SMTP."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

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
