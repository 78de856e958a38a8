"""The analysis worker (``hearth worker``): claim waiting jobs in batches, run them, repeat.

Several workers, on one machine or many, share the queue safely (see :mod:`resources.jobs.queue`).
Each process loads every model once, on first use.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from inference.analysis import Analyzer
from inference.tasks import JOB_KIND
from resources.jobs import queue
from resources.storage.repository import Repository

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        repo: Repository,
        analyzer: Analyzer,
        *,
        batch_size: int = 16,
        lease: timedelta = timedelta(minutes=2),
    ) -> None:
        self.repo = repo
        self.analyzer = analyzer
        self.batch_size = batch_size
        self.lease = lease

    def run_once(self) -> int:
        """Claim and run one batch; returns how many jobs it took."""
        jobs = queue.claim(
            self.repo, [JOB_KIND], self.analyzer.worker, limit=self.batch_size, lease=self.lease
        )
        if jobs:
            log.info("claimed %d analysis job(s)", len(jobs))
            self.analyzer.run(jobs)
        return len(jobs)
