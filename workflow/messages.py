"""Messages between patients and the care team are Communication resources (plain FHIR
create/search). Those addressed to a patient by e-mail (``medium`` EMAILWRIT, status
``in-progress`` — reminders, care-team messages) are sent by ``send_pending``: marked
``completed`` with ``sent`` only once the SMTP server accepted them; a failure keeps them
``in-progress`` with the reason in ``statusReason`` for the next pass.

A message the care team writes in the app (any other Communication to a patient, from a
Practitioner, PractitionerRole, Organization or CareTeam) is not sent by e-mail itself: health
details stay in Hearth. ``notify_new`` gives each one a notification instead, an EMAILWRIT
Communication that says a message is waiting in the patient portal (no content) and that
``send_pending`` then sends. It is created once per message (conditional create on the
identifier ``urn:hearth:message-notification|<message id>``, so several workers never notify
twice); it has no ``subject``, so it does not show among the patient's messages."""

from __future__ import annotations

from datetime import datetime, timedelta

from resources.storage.repository import Repository, Unit
from resources.storage.store import Stored
from workflow import mail

EMAIL_MODE = "EMAILWRIT"
NOTIFICATION_SYSTEM = "urn:hearth:message-notification"
CARE_TEAM = ("Practitioner/", "PractitionerRole/", "Organization/", "CareTeam/")
MODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"


def _is_email(body: dict) -> bool:
    return any(
        c.get("code") == EMAIL_MODE for m in body.get("medium") or [] for c in m.get("coding") or []
    )


def notify_new(
    repo: Repository,
    *,
    portal_url: str,
    now: datetime,
    lookback: timedelta = timedelta(days=1),
    limit: int = 500,
) -> list[str]:
    """Create the notification of each care-team message to a patient changed within
    ``lookback`` that has none yet; returns the notifications created. Older messages are not
    notified (no burst of stale notifications after an outage or on the first run)."""
    since = (now - lookback).isoformat().replace("+00:00", "Z")

    def recent(u: Unit) -> list[Stored]:
        pks = u.match(
            "Communication",
            [("status", "completed,in-progress"), ("_lastUpdated", f"ge{since}")],
            limit=limit,
        )
        return u.read_many(pks)

    created = []
    for comm in repo.read(recent):
        body = comm.resource
        sender = (body.get("sender") or {}).get("reference", "")
        if _is_email(body) or not sender.startswith(CARE_TEAM):
            continue
        for patient in (
            r for r in body.get("recipient") or [] if r.get("reference", "").startswith("Patient/")
        ):
            key = f"{comm.res_id}/{patient['reference'].removeprefix('Patient/')}"
            note = {
                "resourceType": "Communication",
                "identifier": [{"system": NOTIFICATION_SYSTEM, "value": key}],
                "status": "in-progress",
                "category": [{"text": "message-notification"}],
                "medium": [{"coding": [{"system": MODE_SYSTEM, "code": EMAIL_MODE}]}],
                "recipient": [{"reference": patient["reference"]}],
                "about": [{"reference": comm.ref}],
                "payload": [
                    {
                        "contentString": "Your care team sent you a message in Hearth. To read "
                        f"it, sign in to your patient portal: {portal_url}\n"
                    }
                ],
            }

            def fn(u: Unit, note: dict = note, key: str = key) -> tuple[str, str]:
                result = u.create(
                    note, if_none_exist=[("identifier", f"{NOTIFICATION_SYSTEM}|{key}")]
                )
                return result.status, result.stored.ref

            status, ref = repo.run(fn)
            if status == "created":
                created.append(ref)
    return created


def _email_of(patient: dict) -> str | None:
    for t in patient.get("telecom") or []:
        if t.get("system") == "email" and t.get("value"):
            return t["value"]
    return None


def send_pending(
    repo: Repository, smtp: mail.SmtpConfig | None, *, limit: int = 200
) -> dict[str, int]:
    """E-mail the waiting Communications to their patients; returns counts sent / failed."""

    def pending(u: Unit) -> list[Stored]:
        pks = u.match(
            "Communication", [("status", "in-progress"), ("medium", EMAIL_MODE)], limit=limit
        )
        return u.read_many(pks)

    counts = {"sent": 0, "failed": 0}
    for comm in repo.read(pending):
        body = comm.resource
        recipient = next(
            (
                r["reference"]
                for r in body.get("recipient") or []
                if r.get("reference", "").startswith("Patient/")
            ),
            None,
        )
        text = "\n".join(
            p["contentString"] for p in body.get("payload") or [] if "contentString" in p
        )
        try:
            if recipient is None:
                raise mail.MailError("no Patient recipient")

            def read_patient(u: Unit, ref: str = recipient) -> dict:
                return u.read("Patient", ref.removeprefix("Patient/")).resource

            patient = repo.read(read_patient)
            address = _email_of(patient)
            if address is None:
                raise mail.MailError(f"{recipient} has no e-mail address")
            category = str(body.get("category"))
            subject = (
                "Medication reminder"
                if "medication-reminder" in category
                else "New message in your patient portal"
                if "message-notification" in category
                else "Message from your care team"
            )
            mail.send(smtp, address, subject, text)
        except Exception as exc:  # noqa: BLE001 - recorded on the Communication, retried next pass
            reason = str(exc) or type(exc).__name__

            def failed(u: Unit, c: Stored = comm, reason: str = reason) -> None:
                current = u.read("Communication", c.res_id)
                if current.version == c.version:
                    u.update(
                        "Communication",
                        c.res_id,
                        {**current.resource, "statusReason": {"text": reason}},
                    )

            repo.run(failed)
            counts["failed"] += 1
            continue

        def sent(u: Unit, c: Stored = comm) -> None:
            from workflow.tasks import now

            current = u.read("Communication", c.res_id).resource
            done = {k: v for k, v in current.items() if k != "statusReason"}
            u.update("Communication", c.res_id, {**done, "status": "completed", "sent": now()})

        repo.run(sent)
        counts["sent"] += 1
    return counts
