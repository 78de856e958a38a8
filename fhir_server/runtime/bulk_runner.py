"""Runs Bulk Data export jobs inside the API process: each kick-off's job at once (at most
``AT_ONCE`` at a time, the rest waiting their turn), and every ``SWEEP_SECONDS`` any export job
whose runner died (its queue lease expired), so a restarted API finishes what a killed one
started even with no ``hearth worker`` running. The work queue's claims keep the API processes
and workers from ever running one job twice (docs/bulk-export.md)."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from fhir_server.runtime.settings import Settings
from inference.worker_name import worker_name
from resources.jobs import bulk_export
from resources.storage.repository import Repository

log = logging.getLogger(__name__)
AT_ONCE = 2
SWEEP_SECONDS = 60.0


class ExportRunner:
    def __init__(self, repo: Repository, settings: Settings) -> None:
        self.repo, self.settings = repo, settings
        self._slots = threading.BoundedSemaphore(AT_ONCE)
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def _options(self) -> dict:
        return {
            "page_size": self.settings.export_page_size,
            "file_limit": self.settings.export_file_max_resources,
            "lease": timedelta(seconds=self.settings.worker_lease_seconds),
        }

    def submit(self, job_id: str) -> None:
        """Run ``job_id`` in a background thread as soon as a slot is free (a worker that
        claims it first runs it instead)."""

        def target() -> None:
            with self._slots:
                if self._stop.is_set():
                    return  # shutting down: the job stays queued for the next runner
                try:
                    bulk_export.run_now(
                        self.repo, self.settings.blobs(self.repo.engine), job_id, f"api:{worker_name()}",
                        **self._options(),
                    )  # fmt: skip
                except Exception:  # the entry stays queued; its lease expires, then retried
                    log.exception("bulk export %s stopped", job_id)

        threading.Thread(target=target, name=f"bulk-export-{job_id[:8]}", daemon=True).start()

    def start_sweeper(self, interval: float = SWEEP_SECONDS) -> None:
        def sweep() -> None:
            while not self._stop.wait(interval):
                with self._slots:
                    try:
                        bulk_export.run_pending(
                            self.repo, self.settings.blobs(self.repo.engine), f"api:{worker_name()}",
                            **self._options(),
                        )  # fmt: skip
                    except Exception:
                        log.exception("bulk export sweep failed")

        self._sweeper = threading.Thread(target=sweep, name="bulk-export-sweeper", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
