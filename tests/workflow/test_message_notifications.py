"""Notification e-mail of a care-team message: `hearth worker --once` e-mails the patient (real
SMTP, STARTTLS) that a message is waiting in the portal — without its content — once per
message, however often the worker runs; a patient's own message and e-mailed messages get none."""

from __future__ import annotations

import time

from tests.workflow.conftest import ref
from tests.workflow.test_cases_http import wait_for_mail
from tests.workflow.test_reminders import worker
from workflow.messages import NOTIFICATION_SYSTEM

SECRET = "Your biopsy showed a benign naevus."


def test_care_team_message_is_notified_once_without_its_content(wf_server, fhir, team, smtp):
    patient = team["patient"][1]
    message = fhir.create(
        {
            "resourceType": "Communication",
            "status": "completed",
            "subject": {"reference": patient},
            "recipient": [{"reference": patient}],
            "sender": {"reference": team["doctor"][1]},
            "payload": [{"contentString": SECRET}],
        }
    )
    own = fhir.create(
        {
            "resourceType": "Communication",
            "status": "completed",
            "subject": {"reference": patient},
            "recipient": [{"reference": team["doctor"][1]}, {"reference": patient}],
            "sender": {"reference": patient},
            "payload": [{"contentString": "Thank you, doctor."}],
        }
    )
    first = worker(wf_server, smtp)
    assert first.returncode == 0, first.stderr
    assert "message notifications created" in first.stdout
    (mail,) = wait_for_mail(smtp, team["email"], 1)
    assert mail["Subject"] == "New message in your patient portal"
    text = mail.get_payload(decode=True).decode()
    assert f"{wf_server.root}/app/portal/" in text and SECRET not in text

    (note,) = fhir.search(
        "Communication", identifier=f"{NOTIFICATION_SYSTEM}|{message['id']}/{patient.split('/')[1]}"
    )
    assert note["status"] == "completed" and note["about"] == [{"reference": ref(message)}]
    assert "subject" not in note  # not among the patient's messages
    assert {c["id"] for c in fhir.search("Communication", subject=patient)} == {
        message["id"],
        own["id"],
    }
    assert fhir.get(f"/Communication/{message['id']}")["status"] == "completed"  # untouched

    again = worker(wf_server, smtp)
    assert again.returncode == 0, again.stderr
    time.sleep(0.5)
    assert len(smtp.inbox.to(team["email"])) == 1  # once per message, the patient's own: none
