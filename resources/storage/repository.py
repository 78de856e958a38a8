"""The repository: every FHIR interaction on stored resources, as one database transaction.

``Repository.run(fn)`` opens a transaction, hands ``fn`` a ``Unit`` (the operations below) and
commits; if two writers collide on a unique key or a lock, the whole unit is retried, so
callers never see a lost write or a half-written record. Interactions follow FHIR R4
http.html: create, read, vread, update (and update-as-create), conditional create / update /
delete, patch, delete, and the version bookkeeping under them.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from resources import audit
from resources.errors import (
    Conflict,
    Gone,
    Invalid,
    MethodNotAllowed,
    MultipleMatches,
    NotFound,
    PreconditionFailed,
)
from resources.search.custom_params import CustomParams
from resources.search.visibility import Security, secured, visible_in
from resources.storage import replica as replica_routing
from resources.storage.bounds import INT4_MAX, whole
from resources.storage.db import READONLY, error_kind, is_postgres, unpinged
from resources.storage.schema import resource, resource_version, search_url
from resources.storage.store import ID_RE, Stored, StoredJSON, content_hash, stamp, utcnow
from resources.subscriptions import outbox
from resources.validation import ResourceBody, resource_body, validate

if TYPE_CHECKING:
    from resources.search import SearchEngine

log = logging.getLogger(__name__)
T = TypeVar("T")

Query = Sequence[tuple[str, str]]

# The connection of the unit running in this context, so that services called from inside a
# unit (the search engine's terminology lookups) read in the same transaction: they see what
# the unit wrote before, and take no second connection from the pool.
_unit_conn: ContextVar[sa.Connection | None] = ContextVar("hearth_unit_conn", default=None)


def current_connection() -> sa.Connection | None:
    """The connection of the unit this code runs inside, or None outside any unit."""
    return _unit_conn.get()


@dataclass(frozen=True)
class WriteResult:
    """What a write did: ``created`` (201), ``updated`` (200), ``unchanged`` (200, no new
    version), ``exists`` (conditional create matched one: 200), ``deleted``, ``gone`` (nothing to
    delete)."""

    stored: Stored
    status: str


class BatchItemError(Exception):
    """Item ``index`` of a ``create_many`` batch failed with ``error``."""

    def __init__(self, index: int, error: Invalid) -> None:
        super().__init__(error.diagnostics)
        self.index = index
        self.error = error


class _Retry(Exception):
    """A collision another transaction won; the unit is run again from the start."""


class Repository:
    """Owns the engine and the search engine; runs units of work."""

    def __init__(
        self,
        engine: sa.Engine,
        search: SearchEngine,
        *,
        clock: Callable[[], datetime] = utcnow,
        retries: int = 8,
        replica: sa.Engine | None = None,
    ) -> None:
        self.engine = engine
        # A PostgreSQL streaming replica that reads may use (resources/storage/replica.py).
        self.replica = replica
        self.search = search
        self.clock = clock
        self.retries = retries
        self.custom_params = CustomParams(search)
        audit.use_search(engine, search)  # the log's AuditEvents are indexed by this engine
        # Called inside the writing unit after each create or update (not for unchanged or
        # deleted resources): ``hook(unit, result)``. A hook's writes join the same transaction,
        # so what it adds (an inference Task for a new photo, say) commits or rolls back with
        # the write that caused it. The edge wires them at start-up.
        self.write_hooks: list[Callable[[Unit, WriteResult], None]] = []
        # Per-request hooks (see ``guarded``): ``guard(unit, res_type, pk, written)`` vets every
        # resource row a unit reads or overwrites (written=False) and every row it writes
        # (written=True, after indexing); ``on_commit(unit)`` runs last inside each write
        # transaction (the audit record of the change).
        self.guard: Callable[[Unit, str, int, bool], None] | None = None
        self.on_commit: Callable[[Unit], None] | None = None
        # What the request may see (``resources.search.visibility``): the "search first" of its
        # conditional writes and conditional references looks only at those rows.
        self.security: Security | None = None

    def guarded(
        self,
        guard: Callable[[Unit, str, int, bool], None] | None,
        on_commit: Callable[[Unit], None] | None,
        security: Security | None = None,
    ) -> Repository:
        """A view of this repository (same engine and search) with per-request hooks."""
        view = copy.copy(self)
        view.guard, view.on_commit, view.security = guard, on_commit, security
        return view

    def read(self, fn: Callable[[Unit], T]) -> T:
        """Run a read-only ``fn`` without a write lock: autocommit statements on PostgreSQL (one
        round trip for a read: the connection is not pre-pinged, and ``fn`` runs once more on a
        fresh one when the server had dropped it), a deferred transaction (a WAL snapshot) on
        SQLite."""
        if self.replica is not None:
            done, result = self._read_replica(fn)
            if done:
                return result  # type: ignore[return-value]
        if is_postgres(self.engine):
            try:
                return self._read_pg(fn)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                log.info("read met a dropped connection; running it again: %s", error_kind(exc))
                return self._read_pg(fn)
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{READONLY: True})
            with conn.begin():
                self.custom_params.sync(conn)
                return _in_unit(fn, Unit(self, conn))

    def _read_replica(self, fn: Callable[[Unit], T]) -> tuple[bool, T | None]:
        """(True, result) when the replica could answer: it is reachable and has replayed the
        request's ``at_least`` LSN (read-your-writes); (False, None) sends the read to the
        primary. The replica's database errors (down, a query cancelled by recovery) fall back
        to the primary too; ``fn``'s own errors (not found, invalid) are its answer."""
        assert self.replica is not None
        need = replica_routing.current()
        try:
            with self.replica.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                if need is not None and need.at_least is not None:
                    caught_up = conn.execute(
                        sa.text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"),
                        {"lsn": need.at_least},
                    ).scalar()
                    if not caught_up:
                        return False, None
                self.custom_params.sync(conn)
                return True, _in_unit(fn, Unit(self, conn))
        except DBAPIError as exc:
            log.info("read from the replica failed; the primary answers: %s", error_kind(exc))
            return False, None

    def _note_write(self) -> None:
        """After a commit: the primary's LSN, for the client's next reads (read-your-writes)."""
        c = replica_routing.current()
        if c is None:
            return
        with self.engine.connect() as conn:
            lsn = conn.execute(sa.text("SELECT CAST(pg_current_wal_lsn() AS text)")).scalar()
        c.wrote = replica_routing.later(c.wrote, replica_routing.parse_lsn(lsn))

    def _read_pg(self, fn: Callable[[Unit], T]) -> T:
        with unpinged():
            conn = self.engine.connect()
        with conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            self.custom_params.sync(conn)
            return _in_unit(fn, Unit(self, conn))

    def run(self, fn: Callable[[Unit], T]) -> T:
        """Run ``fn`` in one transaction, retrying when a concurrent writer won a race."""
        last: Exception | None = None
        for attempt in range(self.retries):
            try:
                with self.engine.begin() as conn:
                    self.custom_params.sync(conn)
                    unit = Unit(self, conn)
                    result = _in_unit(fn, unit)
                    if self.on_commit is not None:
                        self.on_commit(unit)
                if unit.wrote_search_parameter:
                    with self.engine.begin() as conn:
                        self.custom_params.sync(conn, force=True)
                if self.replica is not None and unit.written:
                    self._note_write()
                return result
            except (_Retry, IntegrityError) as exc:
                last = exc
            except DBAPIError as exc:
                if not _is_transient(exc):
                    raise
                last = exc
            log.debug(
                "retrying unit after collision (attempt %d): %s", attempt + 1, error_kind(last)
            )
        # the database's message is not passed on: it quotes the failing row's values
        raise Conflict(
            f"the request collided with concurrent writes {self.retries} times "
            f"({error_kind(last) if last is not None else 'retry'})"
        )


def _in_unit(fn: Callable[[Unit], T], unit: Unit) -> T:
    token = _unit_conn.set(unit.conn)
    try:
        return fn(unit)
    finally:
        _unit_conn.reset(token)


def _is_transient(exc: DBAPIError) -> bool:
    """Deadlock, serialisation failure, or SQLite's 'database is locked'."""
    code = getattr(exc.orig, "sqlstate", None)
    if code in ("40001", "40P01", "55P03"):
        return True
    return "database is locked" in str(exc.orig)


# meta elements the server sets (http.html#create: a client's values are ignored)
_SERVER_META = ("versionId", "lastUpdated")


class Unit:
    """The interactions, inside one open transaction ``conn``."""

    def __init__(self, repo: Repository, conn: sa.Connection) -> None:
        self.repo = repo
        self.conn = conn
        self._last_pk = 0  # primary key of the last row _write touched
        self.written: list[Stored] = []  # what this unit wrote, for the audit record
        self.wrote_search_parameter = False

    # -- reads ------------------------------------------------------------------------------
    def read(self, res_type: str, res_id: str) -> Stored:
        """FHIR read: the current version; 404 when unknown, 410 when deleted."""
        row = self._current(res_type, res_id)
        if row is None:
            raise NotFound(f"{res_type}/{res_id} is not known")
        if self.repo.guard is not None:
            self.repo.guard(self, res_type, row.pk, False)
        if row.deleted:
            raise Gone(f"{res_type}/{res_id} was deleted (version {row.version})")
        return _stored(row)

    def vread(self, res_type: str, res_id: str, version: str) -> Stored:
        """FHIR vread: one version; 404 when unknown, 410 when that version is a delete."""
        if self.repo.guard is not None:
            # A row the request may not see answers as an unknown id, whatever the version.
            current = self._current(res_type, res_id)
            if current is None:
                raise NotFound(f"{res_type}/{res_id} is not known")
            self.repo.guard(self, res_type, current.pk, False)
        number = whole(version, INT4_MAX)  # versions are integer columns
        if number is None:
            raise NotFound(f"{res_type}/{res_id} has no version {version!r}")
        row = self.conn.execute(
            sa.select(resource_version).where(
                resource_version.c.res_type == res_type,
                resource_version.c.res_id == res_id,
                resource_version.c.version == number,
            )
        ).first()
        if row is None:
            raise NotFound(f"{res_type}/{res_id} has no version {version}")
        if self.repo.guard is not None:
            self.repo.guard(self, res_type, row.res_pk, False)
        if row.deleted:
            raise Gone(f"{res_type}/{res_id} version {version} is a delete")
        return _stored(row)

    def res_id_of(self, pk: int) -> str:
        return self.conn.execute(
            sa.select(resource.c.res_id).where(resource.c.pk == pk)
        ).scalar_one()

    def require_known(self, res_type: str, res_id: str) -> None:
        """404 unless the resource exists or once existed (a deleted one keeps its history)."""
        row = self._current(res_type, res_id)
        if row is None:
            raise NotFound(f"{res_type}/{res_id} is not known")
        if self.repo.guard is not None:
            self.repo.guard(self, res_type, row.pk, False)

    def read_where(self, *conditions: sa.ColumnElement, limit: int | None = None) -> list[Stored]:
        """Current rows of ``resource`` meeting ``conditions`` (at most ``limit``), in one query:
        for reads that select by criteria rather than by known primary keys (includes)."""
        stmt = sa.select(resource).where(*conditions)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_stored(r, "PUT") for r in self.conn.execute(stmt).all()]

    def read_many(self, pks: Iterable[int]) -> list[Stored]:
        """Current versions for resource primary keys, in the order given."""
        pks = list(pks)
        if not pks:
            return []
        rows = self.conn.execute(sa.select(resource).where(resource.c.pk.in_(pks))).all()
        by_pk = {r.pk: r for r in rows}
        return [_stored(by_pk[pk], "PUT") for pk in pks if pk in by_pk]

    def read_json(
        self,
        *conditions: sa.ColumnElement,
        pks: Iterable[int] | None = None,
        limit: int | None = None,
    ) -> list[StoredJSON]:
        """Current versions of live resources as their stored JSON text, not decoded: those with
        primary keys ``pks`` in the order given, or those meeting ``conditions`` (at most
        ``limit``). For search results, which are served as they are stored."""
        c = resource.c
        text = sa.cast(c.content, sa.Text).label("text")
        stmt = sa.select(c.pk, c.res_type, c.res_id, text)
        stmt = stmt.where(c.deleted.is_(False))
        order = None
        if pks is not None:
            order = list(pks)
            if not order:
                return []
            stmt = stmt.where(c.pk.in_(order))
        stmt = stmt.where(*conditions)
        if limit is not None:
            stmt = stmt.limit(limit)
        rows = self.conn.execute(stmt).all()
        if order is not None:
            by_pk = {r.pk: r for r in rows}
            rows = [by_pk[pk] for pk in order if pk in by_pk]
        return [StoredJSON(r.res_type, r.res_id, r.text) for r in rows]

    def versions_of(self, pks: Iterable[int]) -> list[tuple[str, int, object]]:
        """``(res_id, version, last_updated)`` of the current versions of ``pks``, without their
        content: lets a cache of stored content check that it is still current."""
        pks = list(pks)
        if not pks:
            return []
        c = resource.c
        stmt = sa.select(c.res_id, c.version, c.last_updated).where(
            c.pk.in_(pks), c.deleted.is_(False)
        )
        return [(r.res_id, r.version, r.last_updated) for r in self.conn.execute(stmt)]

    def current_versions(self, pks: Iterable[int]) -> dict[int, tuple[str, int]]:
        """``{pk: (res_id, version)}`` of the live resources among ``pks``, without their
        content: lets a cache of decoded content keyed by primary key check that it is still
        current."""
        pks = list(pks)
        if not pks:
            return {}
        c = resource.c
        stmt = sa.select(c.pk, c.res_id, c.version).where(c.pk.in_(pks), c.deleted.is_(False))
        return {r.pk: (r.res_id, r.version) for r in self.conn.execute(stmt)}

    def match(self, res_type: str, query: Query, *, limit: int | None = None) -> list[int]:
        """Primary keys of current resources of ``res_type`` matching search ``query`` (all of
        them: for the server's own look-ups)."""
        stmt = self.repo.search.match(res_type, query)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [r[0] for r in self.conn.execute(stmt)]

    def match_visible(self, res_type: str, query: Query, *, limit: int | None = None) -> list[int]:
        """``match`` for criteria a client sent (conditional create, update, delete, patch and
        references): only over the rows the request may see (``Repository.security``), every
        chain and ``_has`` step included -- the answer is exactly the one it would be if the
        rows it may not see did not exist."""
        security = self.repo.security
        if security is None:
            return self.match(res_type, query, limit=limit)
        found = self.repo.search.match(res_type, query, visible=visible_in(security))
        stmt = sa.select(resource.c.pk).where(
            resource.c.pk.in_(found), *secured(security, res_type)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        return [r[0] for r in self.conn.execute(stmt)]

    # -- writes -----------------------------------------------------------------------------
    def create(
        self,
        body: dict | ResourceBody,
        *,
        if_none_exist: Query | None = None,
        res_id: str | None = None,
    ) -> WriteResult:
        """FHIR create (server-assigned id) and conditional create (``If-None-Exist``).

        A conditional create matching one resource returns it (200); several: 412. The criteria
        are recorded in ``search_url`` so two concurrent identical conditional creates collide on
        its primary key and the loser, retried, finds the winner's resource. ``body`` is a
        :class:`ResourceBody` (its type already settled by the caller) or a plain dict, whose
        type is checked here.
        """
        typed = body if isinstance(body, ResourceBody) else _typed(_resource_type(body), body)
        res_type = typed.type
        if if_none_exist:
            found = self.match_visible(res_type, if_none_exist, limit=2)
            if len(found) > 1:
                raise MultipleMatches(
                    f"If-None-Exist criteria match {len(found)} {res_type} resources"
                )
            if found:
                if self.repo.guard is not None:
                    self.repo.guard(self, res_type, found[0], False)
                return WriteResult(self.read_many(found)[0], "exists")
        result = self._write(typed, res_id or new_id(), "POST", None)
        if if_none_exist:
            self._claim_search_url(res_type, if_none_exist, self._last_pk, result.stored)
        return result

    def record_audit_event(self, body: dict) -> tuple[int, datetime, dict]:
        """A client's AuditEvent, validated as R4 and appended to the hash-chained audit log
        (not the resource table): ``(seq, recorded, event)``."""
        body = {k: v for k, v in body.items() if k != "id"}
        meta = {k: v for k, v in body.get("meta", {}).items() if k not in _SERVER_META}
        body = {**body, "meta": meta} if meta else {k: v for k, v in body.items() if k != "meta"}
        self._check(_typed("AuditEvent", body))
        return audit.submit(self.conn, body)

    def create_many(self, items: Sequence[tuple[str, dict | ResourceBody]]) -> list[WriteResult]:
        """Create many resources with server-chosen ids ``(res_id, body)`` in three statements
        per table instead of five per resource: the batch write path of transactions and bulk
        loads. A validation failure raises ``BatchItemError`` naming the item."""
        if not items:
            return []
        ts = self.repo.clock()
        rows, contents = [], []
        for n, (res_id, item) in enumerate(items):
            named = item.type if isinstance(item, ResourceBody) else _resource_type(item)
            _not_audit(named)
            try:
                typed = item if isinstance(item, ResourceBody) else _typed(named, item)
                self._check(typed)
            except Invalid as exc:
                raise BatchItemError(n, exc) from exc
            res_type, body = typed.type, typed.content
            content = stamp(body, res_id, 1, ts)
            contents.append(content)
            rows.append(
                _row(res_type, res_id, 1, ts, content, content_hash({**body, "id": res_id}))
            )
        pks = (
            self.conn.execute(
                sa.insert(resource).returning(resource.c.pk, sort_by_parameter_order=True), rows
            )
            .scalars()
            .all()
        )
        self.conn.execute(
            sa.insert(resource_version),
            [{**r, "res_pk": pk, "method": "POST"} for pk, r in zip(pks, rows, strict=True)],
        )
        self.repo.search.index(self.conn, list(zip(pks, contents, strict=True)))
        if self.repo.guard is not None:
            for pk, r in zip(pks, rows, strict=True):
                self.repo.guard(self, r["res_type"], pk, True)
        results = [
            WriteResult(Stored(r["res_type"], r["res_id"], 1, ts, False, c, "POST"), "created")
            for r, c in zip(rows, contents, strict=True)
        ]
        self.written += [r.stored for r in results]
        for pk, result in zip(pks, results, strict=True):
            outbox.on_write(self, pk, None, result.stored)  # subscriptions, in this transaction
        for result in results:
            self._after_write(result)
        return results

    def update(
        self,
        res_type: str,
        res_id: str,
        body: dict | ResourceBody,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
        client: bool = False,
    ) -> WriteResult:
        """FHIR update, and update-as-create for a new client-assigned id. ``body`` is a
        :class:`ResourceBody` (its type settled by the caller: the REST edge) or a plain dict,
        whose type is checked here. ``if_none_match`` (the ``If-None-Match`` header, or a Bundle
        entry's ``request.ifNoneMatch``): ``*`` makes it create-only, ``W/"n"`` refuses it while
        version n is current (RFC 9110 13.1.2, as HAPI FHIR does); 412 either way."""
        typed = body if isinstance(body, ResourceBody) else None
        content: dict = body.content if isinstance(body, ResourceBody) else body
        found_type = typed.type if typed is not None else content.get("resourceType")
        if found_type != res_type:
            raise Invalid(
                f"resourceType {found_type!r} does not match the URL type {res_type}",
                expression=[f"{res_type}.resourceType"],
            )
        if content.get("id") is None:
            raise Invalid(
                "an update needs the resource id in the body", expression=[f"{res_type}.id"]
            )
        if content.get("id") != res_id:
            raise Invalid(
                f"the body id {content.get('id')!r} does not match the URL id {res_id!r}",
                expression=[f"{res_type}.id"],
            )
        if not ID_RE.match(res_id):
            raise Invalid(f"{res_id!r} is not a valid FHIR id", expression=[f"{res_type}.id"])
        current = self._current(res_type, res_id, lock=True)
        if client:
            self._vet_named(res_type, res_id, current)
        _check_if_none_match(current, if_none_match, res_type, res_id)
        _check_if_match(current, if_match, res_type, res_id)
        return self._write(typed or _typed(res_type, content), res_id, "PUT", current)

    def conditional_update(
        self,
        res_type: str,
        query: Query,
        body: dict | ResourceBody,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> WriteResult:
        """FHIR conditional update: no match → create; one → update it (``If-None-Match: *``:
        412); several → 412."""
        typed = body if isinstance(body, ResourceBody) else None
        content: dict = body.content if isinstance(body, ResourceBody) else body
        found = self.match_visible(res_type, query, limit=2)
        if len(found) > 1:
            raise MultipleMatches(f"the criteria match {len(found)} {res_type} resources")
        if not found:
            if content.get("id"):
                # R4: an id in the body of a no-match conditional update becomes the new id.
                return self.update(
                    res_type,
                    content["id"],
                    body,
                    if_match=if_match,
                    if_none_match=if_none_match,
                    client=True,
                )
            if typed is None:
                typed = _typed(res_type, {**content, "resourceType": res_type})
            # Claimed like a conditional create: two concurrent conditional updates that both
            # match nothing must not both create (the loser retries and updates the winner's).
            result = self._write(typed, new_id(), "POST", None)
            self._claim_search_url(res_type, query, self._last_pk, result.stored)
            return result
        target = self.read_many(found)[0]
        if content.get("id") not in (None, target.res_id):
            raise Invalid(
                f"the body id {content['id']!r} differs from the matched resource {target.ref}",
                expression=[f"{res_type}.id"],
            )
        with_id = {**content, "id": target.res_id}
        return self.update(
            res_type,
            target.res_id,
            ResourceBody(typed.type, with_id) if typed is not None else with_id,
            if_match=if_match,
            if_none_match=if_none_match,
        )

    def patch(
        self,
        res_type: str,
        res_id: str,
        apply: Callable[[dict], dict],
        *,
        if_match: str | None = None,
        client: bool = False,
    ) -> WriteResult:
        """FHIR patch: apply a patch function to the current version and store the result."""
        current = self._current(res_type, res_id, lock=True)
        if client:
            self._vet_named(res_type, res_id, current)
        if current is None:
            raise NotFound(f"{res_type}/{res_id} is not known")
        if current.deleted:
            raise Gone(f"{res_type}/{res_id} was deleted")
        _check_if_match(current, if_match, res_type, res_id)
        patched = apply(current.content)
        if patched.get("resourceType") != res_type or patched.get("id") != res_id:
            raise Invalid("a patch may not change resourceType or id")
        return self._write(_typed(res_type, patched), res_id, "PATCH", current)

    def delete(
        self, res_type: str, res_id: str, *, if_match: str | None = None, client: bool = False
    ) -> WriteResult | None:
        """FHIR delete: a tombstone version; deleting nothing (or again) is not an error."""
        _not_audit(res_type)
        current = self._current(res_type, res_id, lock=True)
        if client:
            self._vet_named(res_type, res_id, current)
        _check_if_match(current, if_match, res_type, res_id)
        if current is None or current.deleted:
            return None
        if self.repo.guard is not None:
            self.repo.guard(self, res_type, current.pk, False)
        ts = self.repo.clock()
        version = current.version + 1
        row = _row(res_type, res_id, version, ts, None, None)
        self.conn.execute(sa.update(resource).where(resource.c.pk == current.pk).values(**row))
        self.conn.execute(
            sa.insert(resource_version).values(**row, res_pk=current.pk, method="DELETE")
        )
        self._unindex(current.pk)
        self.conn.execute(sa.delete(search_url).where(search_url.c.res_pk == current.pk))
        if res_type == "SearchParameter":
            self.wrote_search_parameter = True
        stored = Stored(res_type, res_id, version, ts, True, None, "DELETE")
        self.written.append(stored)
        outbox.on_delete(self, res_type, res_id)
        return WriteResult(stored, "deleted")

    def set_meta(self, res_type: str, res_id: str, change: Callable[[dict], dict]) -> Stored:
        """``$meta-add`` / ``$meta-delete`` (R4 resource-operations.html): the current version's
        ``meta`` becomes ``change(meta)`` in place. The operations "do not cause the version of
        the resource to change": ``versionId``, ``lastUpdated`` and the history rows stay, the
        current version's stored content and its search index follow. 404 / 410 as a read; the
        result is validated as any write."""
        current = self._current(res_type, res_id, lock=True)
        if current is None:
            raise NotFound(f"{res_type}/{res_id} is not known")
        if self.repo.guard is not None:
            self.repo.guard(self, res_type, current.pk, False)
        if current.deleted:
            raise Gone(f"{res_type}/{res_id} was deleted (version {current.version})")
        content = dict(current.content)
        content["meta"] = change(dict(content.get("meta") or {}))
        self._check(_typed(res_type, content))
        values = {"content": content, "content_hash": content_hash(content)}
        self.conn.execute(sa.update(resource).where(resource.c.pk == current.pk).values(**values))
        self.conn.execute(
            sa.update(resource_version)
            .where(
                resource_version.c.res_pk == current.pk,
                resource_version.c.version == current.version,
            )
            .values(**values)
        )
        self._unindex(current.pk)
        self._index(current.pk, content)
        if self.repo.guard is not None:
            self.repo.guard(self, res_type, current.pk, True)
        stored = Stored(
            res_type, res_id, current.version, current.last_updated, False, content, "PUT"
        )
        self.written.append(stored)
        return stored

    def conditional_delete(
        self, res_type: str, query: Query, *, multiple: bool = False
    ) -> list[WriteResult]:
        """FHIR conditional delete: one match (or all, when ``multiple``); several → 412."""
        found = self.match_visible(res_type, query, limit=None if multiple else 2)
        if len(found) > 1 and not multiple:
            raise MultipleMatches(f"the criteria match {len(found)} {res_type} resources")
        results = []
        for stored in self.read_many(found):
            done = self.delete(res_type, stored.res_id)
            if done is not None:
                results.append(done)
        return results

    # -- internals --------------------------------------------------------------------------
    def _vet_named(self, res_type: str, res_id: str, current: sa.Row | None) -> None:
        """A write to an id the client named (``client=True``) under a guard (a patient-context
        request): a row it may not see, and equally a missing or deleted one, is 404 with the
        message of an unknown id, before anything else (``If-Match``) is looked at -- so the
        answer never tells whether another patient's id exists, existed or at which version.
        Such a request creates by POST, not by update-as-create."""
        if self.repo.guard is None:
            return
        if current is None or current.deleted:
            raise NotFound(f"{res_type}/{res_id} is not known")
        self.repo.guard(self, res_type, current.pk, False)

    def _current(self, res_type: str, res_id: str, *, lock: bool = False) -> sa.Row | None:
        stmt = sa.select(resource).where(
            resource.c.res_type == res_type, resource.c.res_id == res_id
        )
        if lock:
            stmt = stmt.with_for_update()
        return self.conn.execute(stmt).first()

    def _check(self, body: ResourceBody) -> None:
        """Validate ``body`` as R4 (and a SearchParameter as usable); raise ``Invalid``."""
        res_type = body.type
        issues = [i for i in validate(body) if i.severity in ("error", "fatal")]
        if issues:
            raise Invalid(
                f"{res_type} is not valid FHIR R4: {issues[0].diagnostics}"
                + (f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""),
                issues,
            )
        if res_type == "SearchParameter":
            self.repo.custom_params.check(body.content)
            self.wrote_search_parameter = True

    def _write(
        self, typed: ResourceBody, res_id: str, method: str, current: sa.Row | None
    ) -> WriteResult:
        _not_audit(typed.type)
        self._check(typed)
        res_type, body = typed.type, typed.content
        digest = content_hash({**body, "id": res_id})
        if current is not None and not current.deleted and current.content_hash == digest:
            return WriteResult(_stored(current), "unchanged")
        ts = self.repo.clock()
        version = 1 if current is None else current.version + 1
        content = stamp(body, res_id, version, ts)
        row = _row(res_type, res_id, version, ts, content, digest)
        if current is None:
            pk = self.conn.execute(
                sa.insert(resource).values(**row).returning(resource.c.pk)
            ).scalar_one()
            status = "created"
        else:
            pk = current.pk
            if self.repo.guard is not None and not current.deleted:
                self.repo.guard(self, res_type, pk, False)
            self.conn.execute(sa.update(resource).where(resource.c.pk == pk).values(**row))
            self._unindex(pk)
            status = "created" if current.deleted else "updated"
        self.conn.execute(sa.insert(resource_version).values(**row, res_pk=pk, method=method))
        self._index(pk, content)
        if self.repo.guard is not None:
            self.repo.guard(self, res_type, pk, True)
        stored = Stored(res_type, res_id, version, ts, False, content, method)
        self.written.append(stored)
        previous = None if current is None or current.deleted else current.content
        outbox.on_write(self, pk, previous, stored)  # subscriptions, in this transaction
        result = WriteResult(stored, status)
        self._after_write(result)
        self._last_pk = pk  # a hook's own writes must not change what the caller sees
        return result

    def _after_write(self, result: WriteResult) -> None:
        for hook in self.repo.write_hooks:
            hook(self, result)

    def _index(self, pk: int, content: dict) -> None:
        self.repo.search.index(self.conn, [(pk, content)])

    def _unindex(self, pk: int) -> None:
        self.repo.search.unindex(self.conn, [pk])

    def claim(self, res_type: str, query: Query, stored: Stored) -> None:
        """Claim ``query`` for the resource just written: a transaction's conditional update
        that created (``resources/storage/transaction.py``), claimed as ``conditional_update``
        claims it."""
        self._claim_search_url(res_type, query, self._last_pk, stored)

    def _claim_search_url(self, res_type: str, query: Query, pk: int, stored: Stored) -> None:
        """Record the criteria of a conditional create (or of a conditional update that created);
        a concurrent identical one fails here and retries, and its retry finds this resource.

        A claim stays while its resource exists (an update may change what the criteria select,
        so a claim can outlive its match); it goes with a delete. A claim whose criteria select
        nothing now, in a statement that sees every committed write, is stale and replaced; one
        whose resource matches means a concurrent writer committed first: retry.
        """
        key = "&".join(f"{k}={v}" for k, v in sorted(query))
        # Callers who see different rows make different claims: a patient's conditional create
        # neither finds nor displaces another caller's claim on the same criteria.
        scope = self.repo.security.scope_key() if self.repo.security is not None else ""
        claim = f"{res_type}?{key}" + (f"#{scope}" if scope else "")
        digest = hashlib.sha256(claim.encode()).hexdigest()
        where = (search_url.c.res_type == res_type) & (search_url.c.url_hash == digest)
        if self.conn.execute(sa.select(search_url.c.res_pk).where(where)).first() is not None:
            if [f for f in self.match_visible(res_type, query, limit=2) if f != pk]:
                raise _Retry(f"concurrent conditional write on {res_type}?{key}")
            self.conn.execute(sa.delete(search_url).where(where))
        try:
            self.conn.execute(
                sa.insert(search_url).values(
                    res_type=res_type, url_hash=digest, res_pk=pk, created=stored.last_updated
                )
            )
        except IntegrityError as exc:
            raise _Retry(f"concurrent conditional create on {res_type}?{key}") from exc


def _not_audit(res_type: str) -> None:
    """AuditEvent rows show the hash-chained audit log (``resources.audit``): they are appended
    there (``Unit.record_audit_event``), never written, changed or deleted as resources."""
    if res_type == audit.TYPE:
        raise MethodNotAllowed(
            "AuditEvents live in the append-only audit log: they are appended by "
            "POST [base]/AuditEvent, never written, changed or deleted as resources"
        )


def _row(
    res_type: str, res_id: str, version: int, ts: object, content: dict | None, digest: str | None
) -> dict:
    """The columns ``resource`` and ``resource_version`` share, for one version."""
    return {
        "res_type": res_type,
        "res_id": res_id,
        "version": version,
        "last_updated": ts,
        "deleted": content is None,
        "content": content,
        "content_hash": digest,
    }


def new_id() -> str:
    """A server-assigned logical id."""
    return str(uuid.uuid4())


def _resource_type(body: dict) -> str:
    res_type = body.get("resourceType")
    if not isinstance(res_type, str):
        raise Invalid("the body has no resourceType", expression=["resourceType"])
    return res_type


def _typed(res_type: str, body: dict) -> ResourceBody:
    """``body`` as a :class:`ResourceBody`; ``Invalid`` (naming ``res_type``, the type the caller
    meant) when it names no R4 resource type."""
    found = resource_body(body)
    if isinstance(found, ResourceBody):
        return found
    raise Invalid(f"{res_type} is not valid FHIR R4: {found.diagnostics}", [found])


def _check_if_match(
    current: sa.Row | None, if_match: str | None, res_type: str, res_id: str
) -> None:
    if if_match is None:
        return
    wanted = if_match.strip()
    if wanted.startswith("W/"):
        wanted = wanted[2:]
    wanted = wanted.strip('"')
    have = None if current is None or current.deleted else str(current.version)
    if have != wanted:
        raise PreconditionFailed(
            f"If-Match {if_match} does not match {res_type}/{res_id}"
            + (f" (current version {have})" if have else " (no current version)")
        )


def _check_if_none_match(
    current: sa.Row | None, if_none_match: str | None, res_type: str, res_id: str
) -> None:
    """``If-None-Match`` on an update: nothing to match when there is no current version (a
    deleted resource does not exist); ``*`` matches any current version, ``W/"n"`` version n."""
    if if_none_match is None or current is None or current.deleted:
        return
    tags = [t.strip().removeprefix("W/").strip('"') for t in if_none_match.split(",")]
    if "*" in tags:
        raise PreconditionFailed(
            f"If-None-Match: * but {res_type}/{res_id} exists (version {current.version})"
        )
    if str(current.version) in tags:
        raise PreconditionFailed(
            f"If-None-Match {if_none_match} matches the current version of {res_type}/{res_id}"
        )


def _stored(row: sa.Row, method: str | None = None) -> Stored:
    """A ``resource`` row (``method`` "PUT": the table has no method column) or a
    ``resource_version`` row (``method`` None: the row's own) as ``Stored``."""
    if method is None:
        method = row.method if "method" in row._fields else "PUT"
    return Stored(
        res_type=row.res_type,
        res_id=row.res_id,
        version=row.version,
        last_updated=row.last_updated,
        deleted=row.deleted,
        content=row.content,
        method=method,
    )
