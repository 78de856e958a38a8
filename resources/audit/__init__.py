"""The append-only audit log: AuditEvent resources chained by hash, each row storing the hash of
the one before it, so an edited, removed or re-ordered row breaks the chain at that row.

The database refuses UPDATE and DELETE on ``audit_event`` (triggers from migration 0005);
``verify`` recomputes the chain for operators (``hearth audit verify``). Appends are serialised
(an advisory transaction lock on PostgreSQL; SQLite writers are serial already) so concurrent
requests never fork the chain.

Each appended event is also stored as an ordinary ``resource`` row, ``AuditEvent/audit-SEQ``
(version 1, ``lastUpdated`` = the append time), with its ordinary search index rows, in the same
transaction: the search engine (``resources.search.engine``) searches, sorts, pages and includes
AuditEvents like every other type. That row is a projection of the chained row (``as_resource``):
the database refuses UPDATE and DELETE of AuditEvent rows in ``resource`` (triggers from migration
0009), and ``verify`` checks that every chained event has its row, unchanged, and that no other
AuditEvent row exists. The index rows are derived data (``hearth reindex`` may rebuild them).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

import orjson
import sqlalchemy as sa

from resources.search.indexer import default_indexer
from resources.search.writer import insert_rows
from resources.storage.bounds import whole
from resources.storage.db import error_kind, unpinged
from resources.storage.schema import Document, PrimaryKey, UtcDateTime, metadata, resource
from resources.storage.store import content_hash, stamp, utcnow

if TYPE_CHECKING:
    from resources.search import SearchEngine

audit_event = sa.Table(
    "audit_event",
    metadata,
    sa.Column("seq", PrimaryKey, primary_key=True, autoincrement=True),
    sa.Column("recorded", UtcDateTime(), nullable=False),
    sa.Column("event", Document, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_event_recorded", "recorded", "seq"),
)

log = logging.getLogger("hearth.audit")
GENESIS = "0" * 64
_LOCK_KEY = 0x48454152  # "HEAR": the advisory lock that serialises appends on PostgreSQL
TYPE = "AuditEvent"
ID_PREFIX = "audit-"  # AuditEvent/audit-12 is row 12 of the chain

# The search engine whose indexer indexes the events appended through each database engine (the
# application's, which knows the server's base URL and custom SearchParameters); others (the CLI,
# migrations) index with the official R4 definitions.
_SEARCH: WeakKeyDictionary[sa.Engine, SearchEngine] = WeakKeyDictionary()


def use_search(engine: sa.Engine, search: SearchEngine) -> None:
    """Index the events appended on ``engine`` with ``search``'s indexer."""
    _SEARCH[engine] = search


def seq_of(res_id: str) -> int | None:
    """``audit-12`` → 12 (the id under which the log shows its row 12); None for other ids."""
    if res_id.startswith(ID_PREFIX):
        return whole(res_id[len(ID_PREFIX) :])  # None past the bigint column's range
    return None


def as_resource(seq: int, recorded: datetime, event: dict) -> dict:
    """The AuditEvent resource that shows chained row ``seq``: the event as chained, with the id
    ``audit-SEQ``, ``meta.versionId`` 1 and ``meta.lastUpdated`` the append time."""
    return stamp({**event, "resourceType": TYPE}, f"{ID_PREFIX}{seq}", 1, recorded)


def chain_hash(prev_hash: str, recorded: datetime, event: dict) -> str:
    body = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(
        prev_hash.encode() + b"|" + recorded.isoformat().encode() + b"|" + body
    ).hexdigest()


def append(conn: sa.Connection, event: dict, *, recorded: datetime | None = None) -> str:
    """Append ``event`` (an AuditEvent resource) inside the caller's transaction."""
    return append_many(conn, [(recorded or utcnow(), event)])


def append_many(
    conn: sa.Connection, items: list[tuple[datetime, dict]], *, keep_recorded: bool = False
) -> str:
    """Append ``(recorded, event)`` pairs in order, under one chain lock; ``keep_recorded``:
    an event's own ``recorded`` stays (else it is set to the time of the append)."""
    return _chain(conn, items, keep_recorded=keep_recorded)[0]


def submit(conn: sa.Connection, event: dict) -> tuple[int, datetime, dict]:
    """Append an AuditEvent that a client sent (IHE ITI-20 "Record Audit Event": Hearth as the
    audit record repository) inside the caller's transaction, keeping the event's own
    ``recorded``; returns its ``(seq, recorded, event)``."""
    recorded = utcnow()
    _, seqs = _chain(conn, [(recorded, event)], keep_recorded=True)
    return seqs[0], recorded, event


def _chain(
    conn: sa.Connection, items: list[tuple[datetime, dict]], *, keep_recorded: bool = False
) -> tuple[str, list[int]]:
    if conn.dialect.name == "postgresql":
        return _chain_pg(conn, items, keep_recorded=keep_recorded)
    prev = conn.execute(
        sa.select(audit_event.c.hash).order_by(audit_event.c.seq.desc()).limit(1)
    ).scalar()
    prev = prev or GENESIS
    rows = []
    chained: list[tuple[datetime, dict]] = []
    for recorded, event in items:
        if not (keep_recorded and "recorded" in event):
            event = {**event, "recorded": recorded.isoformat()}
        h = chain_hash(prev, recorded, event)
        rows.append({"recorded": recorded, "event": event, "prev_hash": prev, "hash": h})
        chained.append((recorded, event))
        prev = h
    seqs = list(
        conn.execute(
            sa.insert(audit_event).returning(audit_event.c.seq, sort_by_parameter_order=True),
            rows,
        ).scalars()
    )
    project(conn, [(seq, *c) for seq, c in zip(seqs, chained, strict=True)])
    return prev, seqs


# Under the chain lock: the head's hash and, for each new event, its ``seq`` and the ``pk`` of
# its resource row, in one round trip. The statement starts after the lock is held, so its
# snapshot sees every batch committed before (READ COMMITTED); ``seq`` values are taken under
# the lock, so the chain's order is the order of ``seq``.
_HEAD_AND_IDS = sa.text(
    "SELECT (SELECT hash FROM audit_event ORDER BY seq DESC LIMIT 1), "
    "nextval(pg_get_serial_sequence('audit_event', 'seq')), "
    "nextval(pg_get_serial_sequence('resource', 'pk')) "
    "FROM generate_series(1, :n) AS i ORDER BY i"
)
_COPY_EVENTS = "COPY audit_event (seq, recorded, event, prev_hash, hash) FROM STDIN"
_COPY_RESOURCES = (
    "COPY resource (pk, res_type, res_id, version, last_updated, deleted, content, content_hash) "
    "FROM STDIN"
)


def _chain_pg(
    conn: sa.Connection, items: list[tuple[datetime, dict]], *, keep_recorded: bool = False
) -> tuple[str, list[int]]:
    """``_chain`` on PostgreSQL: the ids taken with the head, the chained rows and their
    resource rows written by ``COPY`` (no statement to render and parse per batch size)."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
    ids = conn.execute(_HEAD_AND_IDS, {"n": len(items)}).all()
    prev = ids[0][0] or GENESIS
    seqs = sorted(seq for _, seq, _ in ids)
    pks = [pk for _, _, pk in ids]
    events = []
    resources = []
    for seq, pk, (recorded, event) in zip(seqs, pks, items, strict=True):
        if not (keep_recorded and "recorded" in event):
            event = {**event, "recorded": recorded.isoformat()}
        h = chain_hash(prev, recorded, event)
        events.append((seq, recorded, orjson.dumps(event).decode(), prev, h))
        content = as_resource(seq, recorded, event)
        resources.append(
            (pk, content, (pk, TYPE, content["id"], 1, recorded, False,
                           orjson.dumps(content).decode(), content_hash(content)))
        )  # fmt: skip
        prev = h
    driver = conn.connection.driver_connection
    assert driver is not None  # the connection is open: it runs this transaction
    with driver.cursor() as cur:
        with cur.copy(_COPY_EVENTS) as copy:
            for row in events:
                copy.write_row(row)
        with cur.copy(_COPY_RESOURCES) as copy:
            for _, _, resource_row in resources:
                copy.write_row(resource_row)
    _index(conn, [(pk, content) for pk, content, _ in resources])
    return prev, seqs


def _index(conn: sa.Connection, rows: list[tuple[int, dict]]) -> None:
    """The search index rows of AuditEvent resource rows ``(pk, content)``."""
    search = _SEARCH.get(conn.engine)
    raw_rows = (search.indexer if search is not None else default_indexer()).raw_rows
    insert_rows(
        conn,
        [(table, (pk, *values)) for pk, content in rows for table, values in raw_rows(content)],
    )


def project(conn: sa.Connection, items: list[tuple[int, datetime, dict]]) -> None:
    """Store chained rows ``(seq, recorded, event)`` as ``resource`` rows with their search index
    rows (also the backfill of migration 0009)."""
    if not items:
        return
    contents = [as_resource(seq, recorded, event) for seq, recorded, event in items]
    pks = (
        conn.execute(
            sa.insert(resource).returning(resource.c.pk, sort_by_parameter_order=True),
            [
                {
                    "res_type": TYPE,
                    "res_id": content["id"],
                    "version": 1,
                    "last_updated": recorded,
                    "deleted": False,
                    "content": content,
                    "content_hash": content_hash(content),
                }
                for (_, recorded, _), content in zip(items, contents, strict=True)
            ],
        )
        .scalars()
        .all()
    )
    _index(conn, list(zip(pks, contents, strict=True)))


def append_alone(engine: sa.Engine, event: dict) -> None:
    """Append in a transaction of its own (for reads, logins and token issues). On PostgreSQL
    the commit does not wait for the WAL flush (``synchronous_commit off``): a crash may lose
    the last few hundred milliseconds of such records, never corrupt the chain; records of
    writes are committed with the write itself."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        append(conn, event)


class AuditWriter:
    """Appends the records of reads, searches, failures, logins and token issues from one
    background thread, in batches (one transaction and one chain lock per batch), so a read does
    not wait for a write. ``flush`` waits until everything submitted is stored; ``close`` flushes
    and stops. Records of writes do not come here: they are appended inside the write's own
    transaction. A crash loses at most the records still queued (milliseconds' worth).

    After the first record of a batch the writer sleeps ``linger`` seconds, then takes every
    record that came meanwhile (asleep, it is not woken once per record): a
    batch costs about 1.4 ms of CPU whatever its size up to a few records (lock, chain head,
    inserts, index terms), so at one record per batch the log cost more CPU than the read it
    recorded; ten records share it at about 0.3 ms each (docs/performance.md)."""

    def __init__(self, engine: sa.Engine, *, max_batch: int = 500, linger: float = 0.02) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.linger = linger
        self._queue: queue.Queue[tuple[datetime, dict] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def submit(self, event: dict) -> None:
        self._queue.put((utcnow(), event))

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._queue.task_done()
                return
            batch = [first]
            stop = False
            # Linger asleep, then take what came: waiting on the queue instead would wake this
            # thread (and hand it the GIL) once per record submitted in the window.
            if self.linger > 0:
                time.sleep(self.linger)
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    self._queue.task_done()
                    break
                batch.append(item)
            self._write(batch)
            for _ in batch:
                self._queue.task_done()
            if stop:
                return

    def _write(self, batch: list[tuple[datetime, dict]]) -> None:
        for attempt in range(5):
            try:
                # no pre-ping round trip: a batch on a connection the server dropped fails
                # as a whole and runs again on a fresh one (the loop below)
                with unpinged(), self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                    append_many(conn, batch)
                return
            except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:  # also: no free connection
                log.warning(  # the error's text would quote the events: only its kind
                    "audit batch of %d not written (attempt %d): %s",
                    len(batch),
                    attempt + 1,
                    error_kind(exc),
                )
                time.sleep(0.05 * 2**attempt)
        log.error("LOST %d audit records: the database refused them five times", len(batch))


@dataclass(frozen=True)
class Broken:
    seq: int
    reason: str


@dataclass(frozen=True)
class Head:
    """The newest row of the chain when it was read: its ``seq`` and ``hash``, and ``count``,
    the rows with ``seq`` up to it. A signed copy kept outside the database is a checkpoint
    (``fhir_server/runtime/audit_anchor.py``)."""

    seq: int
    hash: str
    count: int


def head(engine: sa.Engine) -> Head | None:
    """The chain's newest row (None for an empty log). Appends are serialised and commit in
    ``seq`` order, so every row up to the head is committed when the head is."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(audit_event.c.seq, audit_event.c.hash)
            .order_by(audit_event.c.seq.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        count = conn.execute(
            sa.select(sa.func.count()).where(audit_event.c.seq <= row[0])
        ).scalar_one()
    return Head(int(row[0]), row[1], int(count))


def verify(engine: sa.Engine, checkpoints: Sequence[Head] = ()) -> tuple[int, Broken | None]:
    """(rows checked, the first broken link or None).

    Without ``checkpoints`` only the chain is recomputed: an edited, removed or re-ordered row
    breaks it, but removing the newest rows, or editing the last one and recomputing its hash,
    leaves a shorter chain that is still whole. Each checkpoint (a head recorded earlier, kept
    outside the database) must therefore still be in the chain: its row there with the same
    hash, the same number of rows up to it, and no fewer rows than it counted.

    The searchable copy is checked too: each chained row's ``AuditEvent/audit-SEQ`` resource row
    must be there and show exactly the chained event (``as_resource``), and there must be no
    AuditEvent resource row that is not one of them."""
    wanted = {c.seq for c in checkpoints}
    seen: dict[int, tuple[str, int]] = {}
    prev = GENESIS
    n = 0
    last = 0
    for seq, recorded, event, prev_hash, h, shown, updated, deleted in _rows(engine):
        n += 1
        if prev_hash != prev:
            return n, Broken(seq, "prev_hash does not match the previous row's hash")
        if chain_hash(prev_hash, recorded, event) != h:
            return n, Broken(seq, "the row's content does not match its hash")
        if shown is None:
            return n, Broken(seq, f"its resource AuditEvent/{ID_PREFIX}{seq} is missing")
        if deleted or updated != recorded or shown != as_resource(seq, recorded, event):
            return n, Broken(
                seq, f"its resource AuditEvent/{ID_PREFIX}{seq} differs from the chained event"
            )
        if seq in wanted:
            seen[seq] = (h, n)
        prev = h
        last = seq
    extra = _unchained(engine, n)
    if extra is not None:
        return n, Broken(last, f"AuditEvent/{extra} is a resource row of no chained event")
    for c in sorted(checkpoints, key=lambda c: c.seq):
        if c.seq not in seen:
            if c.seq > last:
                why = f"the log ends at event {last}: rows after it were removed (truncated)"
            else:
                why = "the row is missing (deleted)"
            return n, Broken(c.seq, f"checkpoint of {c.count} events: {why}")
        h, count = seen[c.seq]
        if h != c.hash:
            return n, Broken(
                c.seq, "the row's hash differs from its checkpoint (edited and re-hashed)"
            )
        if count != c.count:
            return n, Broken(
                c.seq, f"checkpoint counted {c.count} events up to this row, the log has {count}"
            )
    return n, None


def _shown_id(seq: sa.ColumnElement) -> sa.ColumnElement[str]:
    return sa.literal(ID_PREFIX, sa.String) + sa.cast(seq, sa.String)


def _rows(engine: sa.Engine) -> Iterator[tuple]:
    """Chained rows in order, each with its resource row's content, lastUpdated and deleted
    flag (None when it has none)."""
    shown = resource.alias("shown")
    joined = audit_event.outerjoin(
        shown, sa.and_(shown.c.res_type == TYPE, shown.c.res_id == _shown_id(audit_event.c.seq))
    )
    with engine.connect() as conn:
        yield from conn.execute(
            sa.select(
                audit_event.c.seq,
                audit_event.c.recorded,
                audit_event.c.event,
                audit_event.c.prev_hash,
                audit_event.c.hash,
                shown.c.content,
                shown.c.last_updated,
                shown.c.deleted,
            )
            .select_from(joined)
            .order_by(audit_event.c.seq)
        )


def _unchained(engine: sa.Engine, chained: int) -> str | None:
    """The id of an AuditEvent resource row that shows no chained row, when there are more such
    rows than the ``chained`` rows (each of which has its own)."""
    with engine.connect() as conn:
        count = conn.execute(
            sa.select(sa.func.count()).where(resource.c.res_type == TYPE)
        ).scalar_one()
        if count <= chained:
            return None
        chain_ids = sa.select(_shown_id(audit_event.c.seq))
        return conn.execute(
            sa.select(resource.c.res_id)
            .where(resource.c.res_type == TYPE, resource.c.res_id.not_in(chain_ids))
            .limit(1)
        ).scalar()


def events(conn: sa.Connection, *, limit: int = 100, after: int = 0) -> list[tuple[int, dict]]:
    rows = conn.execute(
        sa.select(audit_event.c.seq, audit_event.c.event)
        .where(audit_event.c.seq > after)
        .order_by(audit_event.c.seq)
        .limit(limit)
    ).all()
    return [(r[0], r[1]) for r in rows]


def page(
    engine: sa.Engine, *, after: int = 0, limit: int = 100
) -> list[tuple[int, datetime, dict]]:
    """Events after sequence number ``after``, in chain order: ``(seq, recorded, event)``."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_event.c.seq, audit_event.c.recorded, audit_event.c.event)
            .where(audit_event.c.seq > after)
            .order_by(audit_event.c.seq)
            .limit(limit)
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]
