"""Messages between patients and the care team are Communication resources (plain FHIR
create/search). Those addressed to a patient by e-mail (``medium`` EMAILWRIT, status
``in-progress`` — reminders, care-team messages) are sent by ``send_pending``: marked
``completed`` with ``sent`` only once the SMTP server accepted them; a failure keeps them
``in-progress`` with the reason in ``statusReason`` for the next pass."""

from __future__ import annotations

from resources.storage.repository import Repository, Unit
from resources.storage.store import Stored
from workflow import mail

EMAIL_MODE = "EMAILWRIT"


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
            subject = (
                "Medication reminder"
                if "medication-reminder" in str(body.get("category"))
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
