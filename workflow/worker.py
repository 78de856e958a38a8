"""The workflow's background pass, run by ``hearth worker``: mark interrupted deliveries failed,
deliver reports waiting for delivery, create due medication reminders and the notifications of
new care-team messages, and e-mail waiting Communications."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from resources.storage.repository import Repository
from workflow import delivery, mail, messages, reminders, signing

log = logging.getLogger(__name__)


@dataclass
class Pass:
    reports: dict[str, str] = field(default_factory=dict)  # case id -> delivered | failed | ...
    reminders: int = 0
    notified: int = 0  # message notifications created
    sent: int = 0
    failed: int = 0
    interrupted: list[str] = field(default_factory=list)  # stale deliveries marked failed

    def summary(self) -> str:
        delivered = sum(1 for s in self.reports.values() if s == "delivered")
        return (
            f"reports delivered {delivered}/{len(self.reports)}, reminders created "
            f"{self.reminders}, message notifications created {self.notified}, messages sent {self.sent}, failed {self.failed}, "
            f"interrupted deliveries marked failed {len(self.interrupted)}"
        )


def run_once(
    repo: Repository,
    smtp: mail.SmtpConfig | None,
    *,
    signing_material: Callable[[], signing.SigningMaterial],
    now: datetime | None = None,
    facility_name: str = "Hearth",
    default_timezone: str = "UTC",
    portal_url: str | None = None,
) -> Pass:
    out = Pass()
    out.interrupted = delivery.reset_stale(repo)
    for case_id in delivery.pending(repo):
        try:
            out.reports[case_id] = delivery.deliver(
                repo,
                smtp,
                case_id,
                signing_material=signing_material,
                facility_name=facility_name,
            ).status
        except Exception as exc:  # noqa: BLE001 - another worker took it; the next pass sees it
            log.info(
                "report of case %s not delivered in this pass: %s", case_id, type(exc).__name__
            )
    out.reminders = len(
        reminders.create_due(repo, now or datetime.now(UTC), default_timezone=default_timezone)
    )
    if portal_url is not None:
        out.notified = len(
            messages.notify_new(repo, portal_url=portal_url, now=now or datetime.now(UTC))
        )
    counts = messages.send_pending(repo, smtp)
    out.sent, out.failed = counts["sent"], counts["failed"]
    return out
