"""What delivery reads and records (the edge sends: ``fhir_server/runtime/subscriptions.py``).

A subscription's delivery job (``resources.jobs.queue``, kind ``subscription``, key: its id) is held by
one worker at a time, so its events go out in order; ``delivered_seq`` moves forward only after
the receiver answered 2xx, so a worker killed mid-delivery loses nothing (the lease expires, the
next worker sends the unacknowledged events again: at-least-once, numbered for de-duplication).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from resources.errors import Gone, NotFound
from resources.jobs import queue
from resources.storage.db import among
from resources.storage.repository import Repository, Unit
from resources.storage.schema import resource_version
from resources.storage.store import utcnow
from resources.subscriptions.outbox import ACTIVE, ERROR, OFF, REQUESTED, server_write, wake
from resources.subscriptions.tables import (
    subscription_cursor,
    subscription_event,
    subscription_reg,
    subscription_write,
)


@dataclass(frozen=True)
class Reg:
    id: str
    status: str
    topic: str | None
    channel: str
    endpoint: str
    payload: str
    headers: list[str]
    last_seq: int
    delivered_seq: int
    failures: int
    owner: dict | None = None  # the owner's filter (``outbox.content_allowed``)
    content: str = "full-resource"  # the payload content asked for (``outbox.CONTENTS``)


@dataclass(frozen=True)
class Event:
    seq: int
    res_type: str
    res_id: str
    version: int
    created: object
    content: dict | None
    # what a notification shows of it: full-resource (the content as stored), id-only (asked
    # for, or the owner may know of it but not read it) or empty (asked for: not even the focus)
    shown: str = "full-resource"


SPREAD_BATCH = 500  # outbox rows spread per transaction


def spread(u: Unit, limit: int = SPREAD_BATCH) -> list[str]:
    """``_spread``: the ids of the subscriptions that got events."""
    return _spread(u, limit)[1]


def _spread(u: Unit, limit: int = SPREAD_BATCH) -> tuple[int, list[str], int]:
    """Number the committed ``subscription_write`` rows per subscription and store them as
    ``subscription_event`` rows; wake the delivery jobs that got events. Returns their ids.

    Gapless and in commit order, with any number of workers: the outbox rows are locked oldest
    first (a second spreader waits, then skips the rows the first deleted), and each
    subscription's counter (``last_seq``) is advanced under its row lock in the same
    transaction, so a number is given once, only to a committed write, after the numbers of
    every write committed before. A write committed later with a lower row id is numbered in a
    later pass, after the ones already numbered: numbers follow commit order. Writes of one
    resource keep their version order (the resource's row lock orders their commits). A
    registration that is gone (its Subscription deleted) numbers nothing."""
    w = subscription_write.c
    stmt = sa.select(w.id, w.res_type, w.res_id, w.version, w.created, w.subs).order_by(w.id)
    stmt = stmt.limit(limit)
    if u.conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    rows = u.conn.execute(stmt).all()
    if not rows:
        return 0, [], 0
    per_sub: dict[str, list] = {}
    for row in rows:
        for sub_id in row.subs:
            per_sub.setdefault(str(sub_id), []).append(row)
    by_count: dict[int, list[str]] = {}
    for sub_id, writes in per_sub.items():
        by_count.setdefault(len(writes), []).append(sub_id)
    c = subscription_cursor.c
    _lock(u, per_sub)
    events: list[dict] = []
    woken: list[str] = []
    for count, sub_ids in sorted(by_count.items()):
        numbered = u.conn.execute(
            sa.update(subscription_cursor)
            .where(among(u.conn, c.id, sorted(sub_ids)))
            .values(last_seq=c.last_seq + count)
            .returning(c.id, c.last_seq)
        ).all()
        for sub_id, last in numbered:
            woken.append(sub_id)
            first = last - count + 1
            events.extend(
                {
                    "sub_id": sub_id,
                    "seq": first + i,
                    "res_type": row.res_type,
                    "res_id": row.res_id,
                    "version": row.version,
                    "created": row.created,
                }
                for i, row in enumerate(per_sub[sub_id])
            )
    if events:
        u.conn.execute(sa.insert(subscription_event), events)
    u.conn.execute(sa.delete(subscription_write).where(w.id.in_([row.id for row in rows])))
    runnable = wake(u, sorted(woken)) if woken else 0
    return len(rows), woken, runnable


def _lock(u: Unit, sub_ids: object) -> None:
    """Lock subscriptions' counters in id order: every transaction that writes several (``spread``,
    ``delivered_many``) takes them in the same order, so none waits for another in a cycle."""
    if u.conn.dialect.name == "postgresql":
        c = subscription_cursor.c
        ids = sorted(str(i) for i in sub_ids)  # type: ignore[attr-defined]
        u.conn.execute(
            sa.select(c.id).where(among(u.conn, c.id, ids)).order_by(c.id).with_for_update()
        )


def unspread(repo: Repository) -> bool:
    """Whether matched writes wait to be spread (a read: cheap, no write lock)."""
    w = subscription_write.c
    return repo.read(lambda u: u.conn.execute(sa.select(w.id).limit(1)).first() is not None)


def spread_all(repo: Repository) -> int:
    """Spread every matched write committed so far (readers call it before reading numbers);
    how many delivery jobs it made runnable (a job running already is not counted)."""
    if not unspread(repo):
        return 0
    total = 0
    while True:
        rows, _, runnable = repo.run(_spread)
        total += runnable
        if rows < SPREAD_BATCH:  # every row committed before it began (or another took them)
            return total


def _regs() -> sa.Select:
    """Registrations with their counters."""
    k = subscription_cursor.c
    return sa.select(subscription_reg, k.last_seq, k.delivered_seq).select_from(
        subscription_reg.join(subscription_cursor, k.id == subscription_reg.c.id)
    )


def pending(repo: Repository, sub_id: str, limit: int = 50) -> tuple[Reg | None, list[Event]]:
    """The registration and its undelivered events (oldest first, at most ``limit``)."""
    spread_all(repo)

    def run(u: Unit) -> tuple[Reg | None, list[Event]]:
        row = u.conn.execute(_regs().where(subscription_reg.c.id == sub_id)).first()
        if row is None:
            return None, []
        reg = Reg(
            row.id, row.status, row.topic, row.channel, row.endpoint, row.payload, list(row.headers),
            row.last_seq, row.delivered_seq, row.failures, row.owner, row.content,
        )  # fmt: skip
        e, v = subscription_event.c, resource_version.c
        stmt = (
            sa.select(e.seq, e.res_type, e.res_id, e.version, e.created, v.content)
            .select_from(
                subscription_event.outerjoin(
                    resource_version,
                    sa.and_(v.res_type == e.res_type, v.res_id == e.res_id, v.version == e.version),
                )
            )
            .where(e.sub_id == sub_id, e.seq > row.delivered_seq)
            .order_by(e.seq)
            .limit(limit)
        )
        events = [Event(*r) for r in u.conn.execute(stmt)]
        return reg, events

    return repo.read(run)


def pending_many(
    repo: Repository, sub_ids: list[str], limit: int = 50, *, spread: bool = True
) -> dict[str, tuple[Reg, list[Event]]]:
    """``pending`` for several subscriptions in one read (those with a registration); without
    ``spread`` the caller has just spread."""
    if spread:
        spread_all(repo)

    def run(u: Unit) -> dict[str, tuple[Reg, list[Event]]]:
        c = subscription_reg.c
        found: dict[str, tuple[Reg, list[Event]]] = {}
        for row in u.conn.execute(_regs().where(among(u.conn, c.id, sub_ids))):
            reg = Reg(
                row.id, row.status, row.topic, row.channel, row.endpoint, row.payload,
                list(row.headers), row.last_seq, row.delivered_seq, row.failures, row.owner,
                row.content,
            )  # fmt: skip
            found[row.id] = (reg, [])
        if not found:
            return found
        e, v, k = subscription_event.c, resource_version.c, subscription_cursor.c
        rank = sa.func.row_number().over(partition_by=e.sub_id, order_by=e.seq).label("rank")
        inner = (
            sa.select(e.sub_id, e.seq, e.res_type, e.res_id, e.version, e.created, rank)
            .select_from(subscription_event.join(subscription_cursor, k.id == e.sub_id))
            .where(among(u.conn, e.sub_id, found), e.seq > k.delivered_seq)
            .subquery()
        )
        rows = u.conn.execute(
            sa.select(
                inner.c.sub_id,
                inner.c.seq,
                inner.c.res_type,
                inner.c.res_id,
                inner.c.version,
                inner.c.created,
            )  # fmt: skip
            .where(inner.c.rank <= limit)
            .order_by(inner.c.sub_id, inner.c.seq)
        ).all()
        # one write is usually an event of many subscriptions: its content is read (and
        # decoded) once, and the events share it
        versions = sorted({(r.res_type, r.res_id, r.version) for r in rows})
        contents: dict[tuple[str, str, int], dict | None] = {}
        for i in range(0, len(versions), 500):
            chunk = versions[i : i + 500]
            contents.update(
                ((r.res_type, r.res_id, r.version), r.content)
                for r in u.conn.execute(
                    sa.select(v.res_type, v.res_id, v.version, v.content).where(
                        sa.tuple_(v.res_type, v.res_id, v.version).in_(chunk)
                    )
                )
            )
        for r in rows:
            content = contents.get((r.res_type, r.res_id, r.version))
            found[r.sub_id][1].append(Event(*r[1:], content))  # type: ignore[call-arg]
        return found

    return repo.read(run)


def resend(repo: Repository, sub_id: str, since: int) -> int | None:
    """Deliver the events of ``sub_id`` from number ``since`` on again (``$resend``): the
    delivered mark goes back to ``since - 1`` and the delivery job is woken. Returns the newest
    event number (None: no registration); nothing changes when ``since`` is above it. ``Gone``
    when the retention pruning deleted event ``since``."""
    spread_all(repo)

    def run(u: Unit) -> int | None:
        k = subscription_cursor.c
        _lock(u, [sub_id])
        row = u.conn.execute(sa.select(k.last_seq, k.pruned_seq).where(k.id == sub_id)).first()
        if row is None or since > row.last_seq:
            return None if row is None else int(row.last_seq)
        if since <= row.pruned_seq:
            raise pruned_error(sub_id, since, int(row.pruned_seq))
        last = row.last_seq
        u.conn.execute(
            sa.update(subscription_cursor)
            .where(k.id == sub_id, k.delivered_seq >= since)
            .values(delivered_seq=since - 1)
        )
        wake(u, [sub_id])
        return int(last)

    return repo.run(run)


def events_since(
    repo: Repository, sub_id: str, since: int, limit: int, until: int | None = None
) -> list[Event]:
    """Stored events of ``sub_id`` numbered above ``since`` (and at most ``until``), oldest
    first (``$events`` replay)."""
    spread_all(repo)

    def run(u: Unit) -> list[Event]:
        e, v = subscription_event.c, resource_version.c
        stmt = (
            sa.select(e.seq, e.res_type, e.res_id, e.version, e.created, v.content)
            .select_from(
                subscription_event.outerjoin(
                    resource_version,
                    sa.and_(v.res_type == e.res_type, v.res_id == e.res_id, v.version == e.version),
                )
            )
            .where(e.sub_id == sub_id, e.seq > since)
            .order_by(e.seq)
            .limit(limit)
        )
        if until is not None:
            stmt = stmt.where(e.seq <= until)
        return [Event(*r) for r in u.conn.execute(stmt)]

    return repo.read(run)


def delivered(
    repo: Repository,
    job: queue.Job,
    worker: str,
    sub_id: str,
    seq: int,
    *,
    settle: bool,
    lease: timedelta,
    since: int | None = None,
) -> str:
    """The receiver took every event up to ``seq`` (or the handshake, ``seq`` unchanged): move
    ``delivered_seq`` on, clear the failures, make a requested or failing subscription
    ``active``. With ``settle``, also finish the job when no event is left. With ``since`` (the
    ``delivered_seq`` the events were read after), the mark moves only from there: a
    ``$resend`` that moved it back meanwhile wins.

    Returns "finished" (the job is done), "more" (events are waiting; the lease is renewed) or
    "lost" (the lease went to another worker, which delivers from here). The counters row is
    written first: ``spread`` numbering a new event holds it until it commits, so an event
    numbered before this answer is seen here, and one numbered after it finds the job done and
    wakes it (``outbox.wake``)."""

    return repo.run(lambda u: _delivered(u, job, worker, sub_id, seq, settle, lease, since))


def delivered_many(
    repo: Repository,
    worker: str,
    acks: list[tuple[queue.Job, int, int, bool]],
    lease: timedelta,
) -> dict[str, str]:
    """``delivered`` for several subscriptions in one transaction (``(job, since, seq, settle)``
    each, the job's key is the subscription, ``since`` the ``delivered_seq`` its events were
    read after); each one's outcome by subscription id.

    An acknowledgement moves ``delivered_seq`` from ``since`` to ``seq`` only where it is still
    ``since``: a ``$resend`` that moved it back meanwhile wins (the job stays claimed, "more",
    and the events are sent again from there)."""

    def run(u: Unit) -> dict[str, str]:
        ids = sorted({job.key for job, _, _, _ in acks})
        _lock(u, ids)
        k, c = subscription_cursor.c, subscription_reg.c
        moves: dict[tuple[int, int], list[str]] = {}
        for job, since, seq, _ in acks:
            moves.setdefault((since, seq), []).append(job.key)
        # set-based: a few statements whatever the number of subscriptions (one per distinct
        # (since, seq): one for subscriptions created together)
        now = utcnow()
        for (since, seq), keys in moves.items():
            u.conn.execute(
                sa.update(subscription_cursor)
                .where(among(u.conn, k.id, keys), k.delivered_seq == since)
                .values(delivered_seq=seq)
            )
        counters = {
            row.id: (row.last_seq, row.delivered_seq)
            for row in u.conn.execute(
                sa.update(subscription_cursor)
                .where(among(u.conn, k.id, ids))
                .values(sent_at=now)
                .returning(k.id, k.last_seq, k.delivered_seq)
            )
        }
        # the registrations are written only where there is a failure to clear
        u.conn.execute(
            sa.update(subscription_reg)
            .where(among(u.conn, c.id, ids), sa.or_(c.failures != 0, c.error.is_not(None)))
            .values(failures=0, error=None, updated=utcnow())
        )
        statuses = dict(
            u.conn.execute(sa.select(c.id, c.status).where(among(u.conn, c.id, ids))).all()
        )
        finish: list[queue.Job] = []
        renew: list[queue.Job] = []
        for job, _, _, settle in sorted(acks, key=lambda a: a[0].key):
            status, counter = statuses.get(job.key), counters.get(job.key)
            if status is None or counter is None or status == OFF:
                finish.append(job)
                continue
            if status in (REQUESTED, ERROR):
                _set_status(u, job.key, ACTIVE, None)
            last, done = counter
            (finish if settle and last <= done else renew).append(job)
        finished = queue.finish_many(u, finish, worker)
        renewed = queue.renew_many(u, renew, worker, lease)
        return {
            job.key: "finished" if job.id in finished else "more" if job.id in renewed else "lost"
            for job, _, _, _ in acks
        }

    return repo.run(run) if acks else {}


def _delivered(
    u: Unit,
    job: queue.Job,
    worker: str,
    sub_id: str,
    seq: int,
    settle: bool,
    lease: timedelta,
    since: int | None = None,
) -> str:
    k, c = subscription_cursor.c, subscription_reg.c
    greatest = sa.func.greatest if u.conn.dialect.name == "postgresql" else sa.func.max
    mark = (
        greatest(k.delivered_seq, seq)
        if since is None
        else sa.case((k.delivered_seq == since, seq), else_=k.delivered_seq)
    )
    counters = u.conn.execute(
        sa.update(subscription_cursor)
        .where(k.id == sub_id)
        .values(delivered_seq=mark, sent_at=utcnow())
        .returning(k.last_seq, k.delivered_seq)
    ).first()
    # the registration is written only when there is a failure to clear
    u.conn.execute(
        sa.update(subscription_reg)
        .where(c.id == sub_id, sa.or_(c.failures != 0, c.error.is_not(None)))
        .values(failures=0, error=None, updated=utcnow())
    )
    status = u.conn.execute(sa.select(c.status).where(c.id == sub_id)).scalar_one_or_none()
    row = None if counters is None or status is None else (status, *counters)
    if row is None or row[0] == OFF:
        return "finished" if queue.finish(u, job, worker) else "lost"
    if row[0] in (REQUESTED, ERROR):
        _set_status(u, sub_id, ACTIVE, None)
    if settle and row[1] <= row[2]:
        return "finished" if queue.finish(u, job, worker) else "lost"
    return "more" if queue.renew(u, job, worker, lease) else "lost"


def failed(
    repo: Repository,
    job: queue.Job,
    worker: str,
    sub_id: str,
    error: str,
    *,
    error_after: int,
    backoff: timedelta,
    max_backoff: timedelta,
) -> timedelta:
    """A delivery attempt failed: count it, record ``error``, turn the subscription to ``error``
    after ``error_after`` failures in a row, and put the job back after an exponential back-off
    (capped: events are never dropped, the endpoint is tried again until it answers or the
    Subscription is turned off). Returns the back-off."""

    def run(u: Unit) -> timedelta:
        c = subscription_reg.c
        row = u.conn.execute(
            sa.update(subscription_reg)
            .where(c.id == sub_id)
            .values(failures=c.failures + 1, error=error[:2000], updated=utcnow())
            .returning(c.failures, c.status)
        ).first()
        failures = 1 if row is None else row.failures
        delay = min(backoff * (2 ** min(failures - 1, 20)), max_backoff)
        if row is not None and failures >= error_after and row.status in (REQUESTED, ACTIVE):
            _set_status(u, sub_id, ERROR, error)
        queue.release(u, job, worker, delay)
        return delay

    return repo.run(run)


def drop(repo: Repository, job: queue.Job, worker: str) -> None:
    """Finish the job of a deleted or ``off`` subscription."""
    repo.run(lambda u: queue.finish(u, job, worker))


def _set_status(u: Unit, sub_id: str, status: str, error: str | None) -> None:
    """The registration's status and the Subscription resource's (a new version written by the
    server: ``status``, ``error``)."""
    c = subscription_reg.c
    u.conn.execute(sa.update(subscription_reg).where(c.id == sub_id).values(status=status))
    try:
        current = u.read("Subscription", sub_id)
    except (NotFound, Gone):
        return
    body = {k: v for k, v in (current.content or {}).items() if k != "error"}
    body["status"] = status
    if error:
        body["error"] = error[:1000]
    with server_write():
        u.update("Subscription", sub_id, body)


def heartbeats_due(repo: Repository) -> list[Reg]:
    """Active rest-hook and email subscriptions with a heartbeat period, nothing sent within it
    and no delivery running; each is taken (``sent_at`` set now, compare-and-set) so one worker
    among several sends its heartbeat."""
    from resources.subscriptions.outbox import JOB_KIND

    k, c, q = subscription_cursor.c, subscription_reg.c, queue.work_queue.c
    now = utcnow()

    def candidates(u: Unit) -> list:
        running = sa.select(q.key).where(q.kind == JOB_KIND, q.state == queue.RUNNING)
        stmt = (
            _regs()
            .add_columns(k.sent_at)
            .where(
                c.heartbeat.is_not(None),
                c.status == ACTIVE,
                c.channel.in_(("rest-hook", "email")),
                c.id.not_in(running),
            )
        )
        return list(u.conn.execute(stmt))

    due = []
    for row in repo.read(candidates):
        sent = row.sent_at
        if sent is not None and sent.tzinfo is None:
            sent = sent.replace(tzinfo=now.tzinfo)
        if sent is None or sent + timedelta(seconds=row.heartbeat) <= now:
            due.append(row)
    taken = []
    for row in due:

        def take(u: Unit, row=row) -> bool:  # type: ignore[no-untyped-def]
            same = k.sent_at.is_(None) if row.sent_at is None else k.sent_at == row.sent_at
            done = u.conn.execute(
                sa.update(subscription_cursor).where(k.id == row.id, same).values(sent_at=now)
            )
            return bool(done.rowcount)

        if repo.run(take):
            taken.append(
                Reg(
                    row.id,
                    row.status,
                    row.topic,
                    row.channel,
                    row.endpoint,
                    row.payload,
                    list(row.headers),
                    row.last_seq,
                    row.delivered_seq,
                    row.failures,
                )  # fmt: skip
            )
    return taken


def registration(repo: Repository, sub_id: str) -> Reg | None:
    """The registration of Subscription ``sub_id`` (None: none)."""
    reg, _ = pending(repo, sub_id, 0)
    return reg


def runnable(repo: Repository) -> bool:
    """Whether a delivery job may be claimable now: a read (no write lock, which on SQLite every
    claim takes), so an idle worker can look often without getting in the writers' way."""
    return any(waiting(repo))


def waiting(repo: Repository) -> tuple[bool, bool]:
    """(whether a delivery job is claimable now, whether matched writes wait to be spread): one
    read."""
    from resources.subscriptions.outbox import JOB_KIND

    q = queue.work_queue.c

    def run(u: Unit) -> tuple[bool, bool]:
        at = utcnow()
        ready = sa.or_(
            sa.and_(q.state == queue.READY, q.not_before <= at),
            sa.and_(q.state == queue.RUNNING, q.lease_until < at),
        )
        stmt = sa.select(q.id).where(q.kind == JOB_KIND, ready).limit(1)
        jobs = u.conn.execute(stmt).first() is not None
        w = subscription_write.c
        return jobs, u.conn.execute(sa.select(w.id).limit(1)).first() is not None

    return repo.read(run)


# -- retention ----------------------------------------------------------------------------------
PRUNE_BATCH = 500  # events deleted per transaction


def prune(repo: Repository, cutoff: datetime, batch: int = PRUNE_BATCH, rounds: int = 100) -> int:
    """Delete the events every receiver has and that are older than ``cutoff`` (the retention
    window), in transactions of at most ``batch`` events, at most ``rounds`` of them (the rest
    waits for the next call); how many were deleted.

    A rest-hook or e-mail subscription's events go once its receiver acknowledged them
    (``seq <= delivered_seq``); a websocket subscription has no acknowledgement (its clients
    read with ``$events``), so its events go by age alone. Never an event still to be sent, so
    delivery and its order are untouched. Each subscription's events go oldest first: the
    newest pruned number is ``subscription_cursor.pruned_seq`` (``$events`` and ``$resend``
    answer 410 below it), and ``last_seq`` keeps counting, so numbering stays monotonic."""
    k, c, e = subscription_cursor.c, subscription_reg.c, subscription_event.c
    ceiling = sa.case((c.channel == "websocket", k.last_seq), else_=k.delivered_seq)

    def candidates(u: Unit) -> list[str]:
        """A read: the subscriptions whose oldest kept event may go (one primary-key lookup
        each), so that only those take a write transaction (on SQLite, the write lock)."""
        oldest_is_old = sa.exists().where(
            e.sub_id == k.id, e.seq == k.pruned_seq + 1, e.created < cutoff
        )
        stmt = (
            sa.select(k.id)
            .select_from(subscription_cursor.join(subscription_reg, c.id == k.id))
            .where(k.pruned_seq < ceiling, oldest_is_old)
            .order_by(k.id)
        )
        return list(u.conn.execute(stmt).scalars())

    deleted = 0
    for sub_id in repo.read(candidates):

        def one(u: Unit, sub_id: str = sub_id) -> int:
            return _prune_one(u, sub_id, cutoff, batch)

        while rounds > 0:
            rounds -= 1
            n = repo.run(one)
            deleted += n
            if n < batch:
                break
        if rounds <= 0:
            break
    return deleted


def _prune_one(u: Unit, sub_id: str, cutoff: datetime, batch: int) -> int:
    """One transaction: the oldest events of ``sub_id`` (at most ``batch``) that its receiver
    has and that were recorded before ``cutoff``; the counters row is locked (as ``resend`` and
    the acknowledgements lock it), so ``delivered_seq`` cannot move back (``$resend``) meanwhile."""
    k, c, e = subscription_cursor.c, subscription_reg.c, subscription_event.c
    stmt = (
        sa.select(k.pruned_seq, k.delivered_seq, k.last_seq, c.channel)
        .select_from(subscription_cursor.join(subscription_reg, c.id == k.id))
        .where(k.id == sub_id)
    )
    if u.conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=subscription_cursor)
    row = u.conn.execute(stmt).first()
    if row is None:
        return 0
    pruned = int(row.pruned_seq)
    ceiling = int(row.last_seq if row.channel == "websocket" else row.delivered_seq)
    end = min(ceiling, pruned + batch)
    if end <= pruned:
        return 0
    # the first event in (pruned, end] still inside the window stops the pruning there
    newer = u.conn.execute(
        sa.select(sa.func.min(e.seq)).where(
            e.sub_id == sub_id, e.seq > pruned, e.seq <= end, e.created >= cutoff
        )
    ).scalar_one_or_none()
    bound = end if newer is None else int(newer) - 1
    if bound <= pruned:
        return 0
    done = u.conn.execute(
        sa.delete(subscription_event).where(e.sub_id == sub_id, e.seq > pruned, e.seq <= bound)
    )
    u.conn.execute(sa.update(subscription_cursor).where(k.id == sub_id).values(pruned_seq=bound))
    return int(done.rowcount or 0)


def pruned_through(repo: Repository, sub_id: str) -> int:
    """The newest event number of ``sub_id`` that the retention pruning deleted (0: none)."""
    k = subscription_cursor.c
    found = repo.read(
        lambda u: u.conn.execute(sa.select(k.pruned_seq).where(k.id == sub_id)).scalar_one_or_none()
    )
    return int(found or 0)


def pruned_error(sub_id: str, since: int, pruned: int) -> Gone:
    """The answer to a request for events the retention pruning deleted."""
    return Gone(
        f"events 1 to {pruned} of Subscription/{sub_id} were deleted after the retention "
        f"window (HEARTH_SUBSCRIPTION_RETENTION_DAYS): event {since} is no longer available, "
        f"the oldest kept is {pruned + 1}",
        expression=["eventsSinceNumber"],
    )
