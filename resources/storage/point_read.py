"""The FHIR read by id at its cheapest: the current row's version, timestamp and content as the
JSON text PostgreSQL holds, served as it is (no decode and re-encode).

On PostgreSQL an unguarded read (a caller without a patient context: no compartment, no
visibility rule applies to a single row) runs one prepared statement on a raw psycopg 3
autocommit connection of a small pool of its own (``PgPointRead``, the pattern of
``resources.auth.token_lookup.PgTokenLookup``): no SQLAlchemy statement compile, pool events,
isolation-level switch or row processing. Everything else — SQLite, and every read by a
patient-context caller, whose guard must look at the compartment and the ``unreleased`` rules
(``resources/search/visibility.py``) — goes through ``Repository.read`` and ``Unit.read`` as before, and
the same ``NotFound`` / ``Gone`` answers come from both paths.

Nothing is cached: each read is one round trip to the database, so a write is seen by the next
read in every process.

``AsyncPointRead`` is the same read for the server's event loop (``fhir_server/rest/fast_read.py``):
one prepared statement on an async psycopg autocommit connection that returns the bearer token's
row beside the resource's (``TOKEN_AND_READ``), so a read by id is one round trip and no thread
hop. The token row is the one ``AuthStore.token`` reads (nothing cached: a revocation is seen at
the next request); the caller decides access from it before anything of the resource is used.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import psycopg
import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads
from sqlalchemy.dialects import postgresql

from resources.auth.store import TOKEN_LOOKUP, TokenRow, auth_token
from resources.auth.token_lookup import PgTokenLookup
from resources.errors import Gone, NotFound
from resources.storage.repository import Repository
from resources.storage.schema import resource

POINT_READ = sa.select(
    resource.c.version,
    resource.c.last_updated,
    resource.c.deleted,
    sa.cast(resource.c.content, sa.Text),
).where(
    resource.c.res_type == sa.bindparam("res_type"),
    resource.c.res_id == sa.bindparam("res_id"),
)


_ONE = sa.select(sa.literal_column("1").label("one")).subquery("one")
# The bearer token's row (``TOKEN_LOOKUP``'s columns) and the resource's (``POINT_READ``'s), each
# NULLs when absent: two primary-key probes in one statement.
TOKEN_AND_READ = sa.select(
    *TOKEN_LOOKUP.selected_columns,
    *POINT_READ.selected_columns,
).select_from(
    _ONE.outerjoin(auth_token, auth_token.c.token_hash == sa.bindparam("token_hash")).outerjoin(
        resource,
        sa.and_(
            resource.c.res_type == sa.bindparam("res_type"),
            resource.c.res_id == sa.bindparam("res_id"),
        ),
    )
)
_TOKEN_COLUMNS = len(TOKEN_LOOKUP.selected_columns)


@dataclass(frozen=True)
class CurrentJSON:
    """The current version of a live resource, its content as JSON text."""

    res_type: str
    res_id: str
    version: int
    last_updated: datetime
    text: str

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


class PgPointRead(PgTokenLookup):
    """``POINT_READ`` prepared on raw psycopg autocommit connections: a pool of at most ``size``
    (opened on demand, kept, emptied in a forked child), a dropped connection retried once."""

    def __init__(self, engine: sa.Engine, *, size: int = 4, wait: float = 30.0) -> None:
        super().__init__(engine, POINT_READ, size=size, wait=wait)

    def _run(self, conn: psycopg.Connection, key: tuple[str, str]) -> tuple | None:  # type: ignore[override]
        res_type, res_id = key
        return conn.execute(
            self._sql, {"res_type": res_type, "res_id": res_id}, prepare=True
        ).fetchone()

    def row(self, res_type: str, res_id: str) -> tuple | None:
        """``(version, last_updated, deleted, content text)`` of the current row, or None."""
        conn = self._take()
        try:
            try:
                return self._run(conn, (res_type, res_id))
            except psycopg.OperationalError:
                if not conn.broken:
                    raise
                conn.close()
                self._discard_idle()
                conn = self._connect()
                return self._run(conn, (res_type, res_id))
        finally:
            self._give(conn)


def point_reader(engine: sa.Engine, size: int = 4, wait: float = 30.0) -> PgPointRead | None:
    """The serving process's point reader: a ``PgPointRead`` on PostgreSQL, None elsewhere."""
    if engine.dialect.name != "postgresql":
        return None
    return PgPointRead(engine, size=size, wait=wait)


def read_current(
    repo: Repository, reader: PgPointRead | None, res_type: str, res_id: str
) -> CurrentJSON:
    """FHIR read: the current version of ``res_type/res_id``; 404 when unknown (or not visible to
    the request's guard), 410 when deleted. The raw path only where ``repo`` has no guard."""
    if reader is None or repo.guard is not None:
        stored = repo.read(lambda u: u.read(res_type, res_id))
        return CurrentJSON(
            res_type,
            res_id,
            stored.version,
            stored.last_updated,
            orjson.dumps(stored.resource).decode(),
        )
    return current_of(res_type, res_id, reader.row(res_type, res_id))


def current_of(res_type: str, res_id: str, row: tuple | None) -> CurrentJSON:
    """A point read's row as the current version; 404 when there is none, 410 when deleted."""
    if row is None:
        raise NotFound(f"{res_type}/{res_id} is not known")
    version, last_updated, deleted, text = row
    if deleted:
        raise Gone(f"{res_type}/{res_id} was deleted (version {version})")
    return CurrentJSON(res_type, res_id, version, last_updated.astimezone(UTC), text)


class AsyncPointRead:
    """``TOKEN_AND_READ`` prepared on async psycopg autocommit connections, for one event loop: a
    LIFO pool of at most ``size`` (opened on demand, kept), a connection the server dropped
    closed with its idle siblings and the statement run once more on a new one. A request that
    waits ``wait`` seconds for a free connection gets ``sqlalchemy.exc.TimeoutError`` (503)."""

    def __init__(self, engine: sa.Engine, *, size: int = 4, wait: float = 30.0) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("AsyncPointRead needs a PostgreSQL engine")
        _, params = engine.dialect.create_connect_args(engine.url)
        params.pop("context", None)
        self._params = params
        self._sql = str(TOKEN_AND_READ.compile(dialect=postgresql.psycopg.dialect()))
        self._slots = asyncio.Semaphore(size)
        self._wait = wait
        self._idle: list[psycopg.AsyncConnection] = []
        self._closed = False

    async def _connect(self) -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(
            autocommit=True, options="-c jit=off", **self._params
        )
        set_json_loads(orjson.loads, conn)
        return conn

    async def _run(self, conn: psycopg.AsyncConnection, params: dict) -> tuple | None:
        cur = await conn.execute(self._sql, params, prepare=True)
        return await cur.fetchone()

    async def row(
        self, token_hash: str, res_type: str, res_id: str
    ) -> tuple[TokenRow | None, tuple | None]:
        """The token's row (None when unknown) and the resource's ``(version, last_updated,
        deleted, content text)`` (None when unknown)."""
        try:
            async with asyncio.timeout(self._wait):  # no task per read, as wait_for would start
                await self._slots.acquire()
        except TimeoutError:
            raise sa.exc.TimeoutError(
                f"no point-read connection came free within {self._wait:g} s"
            ) from None
        conn = None
        try:
            if self._closed:
                raise RuntimeError("the point reader is closed")
            conn = self._idle.pop() if self._idle else await self._connect()
            params = {"token_hash": token_hash, "res_type": res_type, "res_id": res_id}
            try:
                row = await self._run(conn, params)
            except psycopg.OperationalError:
                if not conn.broken:
                    raise
                await conn.close()
                await self._discard_idle()
                conn = await self._connect()
                row = await self._run(conn, params)
        except BaseException:
            if conn is not None and not conn.closed:
                await conn.close()
            conn = None
            raise
        finally:
            if conn is not None:
                if (
                    not self._closed
                    and not conn.closed
                    and conn.info.transaction_status == TransactionStatus.IDLE
                ):
                    self._idle.append(conn)
                else:
                    await conn.close()
            self._slots.release()
        assert row is not None  # the outer joins give one row, whatever matches
        token = row[:_TOKEN_COLUMNS]
        found = row[_TOKEN_COLUMNS:]
        token_row = None
        if token[0] is not None:
            kind, client_id, username, scope, context, audience, expires, revoked, grant_id = token
            token_row = TokenRow(
                kind,
                client_id,
                username,
                scope,
                context,
                audience,
                expires.astimezone(UTC),
                revoked,
                grant_id,
            )
        if found[0] is None:
            return token_row, None
        version, last_updated, deleted, text = found
        return token_row, (version, last_updated.astimezone(UTC), deleted, text)

    async def _discard_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def aclose(self) -> None:
        self._closed = True
        await self._discard_idle()


def async_point_reader(
    engine: sa.Engine, size: int = 4, wait: float = 30.0
) -> AsyncPointRead | None:
    """The event loop's point reader: an ``AsyncPointRead`` on PostgreSQL, None elsewhere."""
    if engine.dialect.name != "postgresql":
        return None
    return AsyncPointRead(engine, size=size, wait=wait)
