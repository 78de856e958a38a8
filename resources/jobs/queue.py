"""The work queue: durable jobs that worker processes claim, run and finish (``hearth worker``).

A job names the FHIR Task it carries out (``task_ref``) and its ``kind``; ``(kind, key)`` is
unique, so enqueueing the same work twice is a no-op. Enqueue happens inside the caller's
``Unit``, in the same transaction as the Task it serves: a Task never exists without its job,
nor a job without its Task.

Claiming is safe with several workers on several machines: on PostgreSQL the claim selects with
``FOR UPDATE SKIP LOCKED`` (a row locked by one claimer is skipped by the others); on SQLite every
write transaction holds the database's write lock (``BEGIN IMMEDIATE``), which serialises
claimers. A claim is a lease: a worker that dies mid-job stops renewing it, and once
``lease_until`` passes the job is claimable again (its attempt counted). Failures are retried with
exponential back-off until ``max_attempts``, then the job is ``failed``.

Waking up: on PostgreSQL an enqueue also sends ``NOTIFY hearth_work_queue`` (payload: the job's
kind) in the caller's transaction, so it is delivered when that transaction commits, and only
then. A worker waits with a :class:`Wakeup`, which listens (``LISTEN``) on that channel and returns as
soon as a notification for one of its kinds arrives, or after its poll interval (the fallback:
jobs whose back-off ends, expired leases, a lost listening connection). SQLite has no
notifications: the worker polls.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import sqlalchemy as sa

from resources.storage.db import among
from resources.storage.repository import Repository, Unit
from resources.storage.schema import UtcDateTime, metadata
from resources.storage.store import utcnow

READY, RUNNING, DONE, FAILED = "ready", "running", "done", "failed"
CHANNEL = "hearth_work_queue"  # PostgreSQL NOTIFY channel of new jobs (payload: the kind)

log = logging.getLogger(__name__)

work_queue = sa.Table(
    "work_queue",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("key", sa.String(256), nullable=False),
    sa.Column("task_ref", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("not_before", UtcDateTime(), nullable=False),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("updated", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("kind", "key", name="uq_work_queue_kind_key"),
    sa.Index("ix_work_queue_claim", "state", "not_before"),
)


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    key: str
    task_ref: str
    state: str
    attempts: int
    max_attempts: int
    last_error: str | None = None

    @property
    def task_id(self) -> str:
        return self.task_ref.split("/", 1)[1]


def _job(row: sa.Row) -> Job:
    return Job(
        row.id, row.kind, row.key, row.task_ref, row.state, row.attempts, row.max_attempts,
        row.last_error,
    )  # fmt: skip


def enqueue(u: Unit, kind: str, key: str, task_ref: str, *, max_attempts: int = 4) -> Job:
    """Add a job in the caller's transaction; the existing job when ``(kind, key)`` is known."""
    existing = u.conn.execute(
        sa.select(work_queue).where(work_queue.c.kind == kind, work_queue.c.key == key)
    ).first()
    if existing is not None:
        return _job(existing)
    now = utcnow()
    job_id = str(uuid.uuid4())
    row = {
        "id": job_id,
        "kind": kind,
        "key": key,
        "task_ref": task_ref,
        "state": READY,
        "attempts": 0,
        "max_attempts": max_attempts,
        "not_before": now,
        "lease_until": None,
        "worker": None,
        "last_error": None,
        "created": now,
        "updated": now,
    }
    # A concurrent enqueue of the same key fails on the unique constraint; the repository
    # retries the unit, which then finds this job.
    u.conn.execute(sa.insert(work_queue).values(**row))
    if u.conn.dialect.name == "postgresql":  # delivered to listeners when this unit commits
        u.conn.execute(sa.select(sa.func.pg_notify(CHANNEL, kind)))
    return Job(job_id, kind, key, task_ref, READY, 0, max_attempts)


def claim(
    repo: Repository,
    kinds: Sequence[str],
    worker: str,
    *,
    limit: int = 1,
    lease: timedelta = timedelta(minutes=5),
    now: datetime | None = None,
) -> list[Job]:
    """Lease up to ``limit`` runnable jobs of ``kinds`` to ``worker``: ready ones whose back-off
    has passed, and running ones whose lease expired (their worker died)."""

    def run(u: Unit) -> list[Job]:
        at = now or utcnow()
        runnable = sa.or_(
            sa.and_(work_queue.c.state == READY, work_queue.c.not_before <= at),
            sa.and_(work_queue.c.state == RUNNING, work_queue.c.lease_until < at),
        )
        claimed: list[Job] = []
        while len(claimed) < limit:
            dead = _claim_rows(u, kinds, worker, runnable, limit - len(claimed), lease, at, claimed)
            # A row whose attempts were used up was dead-lettered instead of claimed: look
            # again, so that it does not hide a runnable job behind it (a ``--once`` pass, or a
            # runner that claims one job at a time, would stop with work waiting).
            if not dead:
                break
        return claimed

    return repo.run(run)


def _claim_rows(
    u: Unit,
    kinds: Sequence[str],
    worker: str,
    runnable: sa.ColumnElement,
    limit: int,
    lease: timedelta,
    at: datetime,
    claimed: list[Job],
) -> int:
    """One round of ``claim``: lease up to ``limit`` rows into ``claimed``; how many rows it
    dead-lettered instead (their attempts used up)."""
    stmt = (
        sa.select(work_queue)
        .where(work_queue.c.kind.in_(list(kinds)), runnable)
        .order_by(work_queue.c.not_before, work_queue.c.created)
        .limit(limit)
    )
    if u.conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    dead = 0
    taken: list[Job] = []
    for row in u.conn.execute(stmt).all():
        attempts = row.attempts + 1
        if attempts > row.max_attempts:
            u.conn.execute(
                sa.update(work_queue)
                .where(work_queue.c.id == row.id)
                .values(state=FAILED, updated=at, last_error=row.last_error or "lease expired")
            )
            dead += 1
            continue
        taken.append(replace(_job(row), state=RUNNING, attempts=attempts))
    if taken:  # one statement for all of them (the rows are locked: nobody moved them)
        u.conn.execute(
            sa.update(work_queue)
            .where(among(u.conn, work_queue.c.id, [job.id for job in taken]))
            .values(
                state=RUNNING,
                attempts=work_queue.c.attempts + 1,
                lease_until=at + lease,
                worker=worker,
                updated=at,
            )  # fmt: skip
        )
        claimed.extend(taken)
    return dead


def finish(u: Unit, job: Job, worker: str) -> bool:
    """Mark ``job`` done in the caller's transaction (the one that wrote its results).

    Returns False — and the caller must roll back — when the lease was lost to another worker.
    """
    result = u.conn.execute(
        sa.update(work_queue)
        .where(work_queue.c.id == job.id, work_queue.c.worker == worker)
        .where(work_queue.c.state == RUNNING)
        .values(state=DONE, lease_until=None, updated=utcnow(), last_error=None)
    )
    return result.rowcount == 1


def fail(u: Unit, job: Job, worker: str, error: str, *, retry: bool, backoff: timedelta) -> str:
    """Record a failed attempt in the caller's transaction: back to ``ready`` after
    ``backoff * 2**(attempts-1)`` when ``retry`` and attempts remain, else ``failed``.
    Returns the new state."""
    at = utcnow()
    final = not retry or job.attempts >= job.max_attempts
    state = FAILED if final else READY
    delay = backoff * (2 ** max(0, job.attempts - 1))
    u.conn.execute(
        sa.update(work_queue)
        .where(work_queue.c.id == job.id, work_queue.c.worker == worker)
        .values(
            state=state,
            lease_until=None,
            not_before=at + delay,
            updated=at,
            last_error=error[:4000],
        )  # fmt: skip
    )
    return state


def release(u: Unit, job: Job, worker: str, delay: timedelta) -> bool:
    """Put a claimed ``job`` back, runnable again after ``delay``, without counting the attempt
    (it waits for other work; it did not fail). False when the lease was lost."""
    at = utcnow()
    result = u.conn.execute(
        sa.update(work_queue)
        .where(work_queue.c.id == job.id, work_queue.c.worker == worker)
        .where(work_queue.c.state == RUNNING)
        .values(
            state=READY,
            attempts=max(0, job.attempts - 1),
            lease_until=None,
            not_before=at + delay,
            updated=at,
        )  # fmt: skip
    )
    return result.rowcount == 1


def requeue(u: Unit, job_id: str) -> bool:
    """Give a dead-lettered job its attempts again, runnable now (an operator's retry, in the
    caller's transaction); False when it is not ``failed``."""
    at = utcnow()
    result = u.conn.execute(
        sa.update(work_queue)
        .where(work_queue.c.id == job_id, work_queue.c.state == FAILED)
        .values(state=READY, attempts=0, lease_until=None, worker=None, not_before=at, updated=at)
    )
    return result.rowcount == 1


def failed(repo: Repository, kinds: Sequence[str]) -> list[Job]:
    """The dead-lettered jobs of ``kinds`` (attempts used up), oldest first."""

    def run(u: Unit) -> list[Job]:
        rows = u.conn.execute(
            sa.select(work_queue)
            .where(work_queue.c.kind.in_(list(kinds)), work_queue.c.state == FAILED)
            .order_by(work_queue.c.updated)
        )
        return [_job(r) for r in rows]

    return repo.read(run)


def get(repo: Repository, job_id: str) -> Job | None:
    def run(u: Unit) -> Job | None:
        row = u.conn.execute(sa.select(work_queue).where(work_queue.c.id == job_id)).first()
        return _job(row) if row else None

    return repo.read(run)


def for_task(repo: Repository, task_ref: str) -> list[Job]:
    return repo.read(lambda u: jobs_for_task(u, task_ref))


def jobs_for_task(u: Unit, task_ref: str) -> list[Job]:
    """The jobs of the Task ``task_ref``, read in the caller's transaction."""
    rows = u.conn.execute(sa.select(work_queue).where(work_queue.c.task_ref == task_ref))
    return [_job(r) for r in rows]


def dead_letter(u: Unit, task_ref: str, *, now: datetime | None = None) -> str | None:
    """Why the work of the Task ``task_ref`` will never run again, read in the caller's
    transaction: the last error of its dead-lettered (``failed``) entry, or of one whose lease
    expired on its last attempt (the next claim dead-letters it; no claim runs it again). None
    while it may still run, or has finished.

    A runner killed on its last attempt never writes its job's own row, so a job's status must
    consult this (``$export`` and ``$import`` status URLs) rather than say "running" for ever."""
    at = now or utcnow()
    for row in u.conn.execute(sa.select(work_queue).where(work_queue.c.task_ref == task_ref)):
        expired = (
            row.state == RUNNING
            and row.lease_until is not None
            and row.lease_until < at
            and row.attempts >= row.max_attempts
        )
        if row.state == FAILED or expired:
            return row.last_error or "its runner stopped (its lease expired)"
    return None


def claim_job(
    repo: Repository, job_id: str, worker: str, *, lease: timedelta = timedelta(minutes=5)
) -> Job | None:
    """Lease one given job (for a synchronous run); None when it is not runnable now."""

    def run(u: Unit) -> Job | None:
        at = utcnow()
        stmt = sa.select(work_queue).where(work_queue.c.id == job_id)
        if u.conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        row = u.conn.execute(stmt).first()
        if row is None:
            return None
        expired = row.state == RUNNING and row.lease_until is not None and row.lease_until < at
        if not (row.state == READY or expired) or row.attempts >= row.max_attempts:
            return None
        u.conn.execute(
            sa.update(work_queue)
            .where(work_queue.c.id == job_id)
            .values(
                state=RUNNING,
                attempts=row.attempts + 1,
                lease_until=at + lease,
                worker=worker,
                updated=at,
            )  # fmt: skip
        )
        return replace(_job(row), state=RUNNING, attempts=row.attempts + 1)

    return repo.run(run)


class Wakeup:
    """Waits for new jobs of ``kinds``: a PostgreSQL notification (``LISTEN hearth_work_queue``
    on a connection of its own), or the timeout. With ``notify=False`` or on SQLite it only
    sleeps (polling). If the listening connection fails it falls back to sleeping and listens
    again on the next wait."""

    # A wait is cut in slices this long so that ``stop`` is noticed promptly.
    SLICE_SECONDS = 1.0

    def __init__(self, repo: Repository, kinds: Sequence[str], *, notify: bool = True) -> None:
        self.engine = repo.engine
        self.kinds = set(kinds)
        self.listening = notify and self.engine.dialect.name == "postgresql"
        self._conn: sa.Connection | None = None

    def _driver(self):  # type: ignore[no-untyped-def]
        """The psycopg connection that LISTENs (opened on first use)."""
        if self._conn is None:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(sa.text("LISTEN hearth_work_queue"))
            self._conn = conn
            log.info("listening for new jobs (PostgreSQL LISTEN %s)", CHANNEL)
        return self._conn.connection.driver_connection

    def start(self) -> None:
        """Start listening now (before the first claim, so no notification is missed)."""
        if self.listening:
            try:
                self._driver()
            except sa.exc.DBAPIError:
                log.warning("cannot LISTEN for new jobs; polling", exc_info=True)
                self.close()

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Block until a job of our kinds may be waiting: True when a notification came, False
        after ``timeout`` seconds (or when ``stop`` is set)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if stop is not None and stop.is_set():
                return False
            step = min(left, self.SLICE_SECONDS)
            if not self.listening:
                if stop is not None:
                    stop.wait(step)
                else:
                    time.sleep(step)
                continue
            try:
                for note in self._driver().notifies(timeout=step):
                    if note.payload in self.kinds:
                        return True
            except Exception:  # the connection broke: poll this time, listen again next time
                log.warning("lost the LISTEN connection; polling until it is back", exc_info=True)
                self.close()
                if stop is not None:
                    stop.wait(left)
                else:
                    time.sleep(left)
                return False
        return False

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.debug("closing the LISTEN connection failed", exc_info=True)
            self._conn = None


def finish_many(u: Unit, jobs: Sequence[Job], worker: str) -> set[str]:
    """``finish`` for several jobs in one statement: the ids of those still ``worker``'s (the
    others' leases were lost)."""
    if not jobs:
        return set()
    q = work_queue.c
    rows = u.conn.execute(
        sa.update(work_queue)
        .where(among(u.conn, q.id, [job.id for job in jobs]), q.worker == worker)
        .where(q.state == RUNNING)
        .values(state=DONE, lease_until=None, updated=utcnow(), last_error=None)
        .returning(q.id)
    )
    return {row.id for row in rows}


def renew_many(u: Unit, jobs: Sequence[Job], worker: str, lease: timedelta) -> set[str]:
    """``renew`` for several jobs in one statement: the ids of those still ``worker``'s."""
    if not jobs:
        return set()
    at = utcnow()
    q = work_queue.c
    rows = u.conn.execute(
        sa.update(work_queue)
        .where(among(u.conn, q.id, [job.id for job in jobs]), q.worker == worker)
        .where(q.state == RUNNING)
        .values(lease_until=at + lease, updated=at)
        .returning(q.id)
    )
    return {row.id for row in rows}


def renew(u: Unit, job: Job, worker: str, lease: timedelta) -> bool:
    """Extend ``worker``'s lease on a long-running ``job`` in the caller's transaction; False
    when it was lost."""
    at = utcnow()
    result = u.conn.execute(
        sa.update(work_queue)
        .where(work_queue.c.id == job.id, work_queue.c.worker == worker)
        .where(work_queue.c.state == RUNNING)
        .values(lease_until=at + lease, updated=at)
    )
    return result.rowcount == 1
