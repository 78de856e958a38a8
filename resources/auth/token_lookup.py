"""Bearer-token lookups: the one primary-key SELECT every FHIR request makes, by the sha256 of its
token. ``SqlTokenLookup`` runs it through SQLAlchemy (SQLite, and any engine); on PostgreSQL the
server uses ``PgTokenLookup``: the same statement, compiled once, prepared on the server and run
with raw psycopg on a small pool of dedicated autocommit connections, which skips SQLAlchemy's
per-call statement compile, pool bookkeeping and result processing.

Nothing is cached: every check reads the token's row, so a revocation takes effect at the next
request in every worker process. A lookup that meets a connection the server dropped (restart,
idle timeout, ``pg_terminate_backend``) is retried once on a fresh connection.
"""

from __future__ import annotations

import os
import threading
import weakref
from datetime import UTC
from typing import Protocol

import orjson
import psycopg
import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads
from sqlalchemy.dialects import postgresql

Row = tuple  # the columns of ``auth_store.TOKEN_LOOKUP``, in order
WAIT = 30.0  # seconds a lookup waits for a free connection (SQLAlchemy's pool_timeout)


class TokenLookup(Protocol):
    def __call__(self, token_hash: str) -> Row | None: ...

    def close(self) -> None: ...


class SqlTokenLookup:
    """The lookup through SQLAlchemy Core on ``engine`` (autocommit on PostgreSQL). An engine
    without ``pool_pre_ping`` may hand out a connection the server dropped: SQLAlchemy then
    invalidates its pool and the lookup runs once more on a fresh connection."""

    def __init__(self, engine: sa.Engine, stmt: sa.Select, *, owned: bool = False) -> None:
        self.engine = engine
        self._stmt = stmt
        self._owned = owned  # dispose the engine on close (a pool of its own)

    def __call__(self, token_hash: str) -> Row | None:
        try:
            row = self._once(token_hash)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            row = self._once(token_hash)
        return tuple(row) if row else None

    def _once(self, token_hash: str) -> sa.Row | None:
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql" and conn.default_isolation_level != "AUTOCOMMIT":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            return conn.execute(self._stmt, {"token_hash": token_hash}).first()

    def close(self) -> None:
        if self._owned:
            self.engine.dispose()


# Every PgTokenLookup of this process, so that a forked child starts with empty pools (the
# parent's connections are the parent's: psycopg never closes them from another process).
_LIVE: weakref.WeakSet[PgTokenLookup] = weakref.WeakSet()


def _after_fork() -> None:
    for lookup in list(_LIVE):
        lookup._reset()


os.register_at_fork(after_in_child=_after_fork)


class PgTokenLookup:
    """The lookup on PostgreSQL with raw psycopg 3: a pool of at most ``size`` autocommit
    connections to the database of ``engine`` (opened on demand, kept open, LIFO), the statement
    prepared on each at its first use. ``close()`` closes them; a lookup after it fails."""

    def __init__(
        self, engine: sa.Engine, stmt: sa.Select, *, size: int = 4, wait: float = WAIT
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("PgTokenLookup needs a PostgreSQL engine")
        _, params = engine.dialect.create_connect_args(engine.url)
        params.pop("context", None)  # SQLAlchemy's adapters; this lookup brings its own
        self._params = params
        # the same statement SQLAlchemy would send, compiled once: %(token_hash)s placeholders
        self._sql = str(stmt.compile(dialect=postgresql.psycopg.dialect()))
        self._size = size
        self._wait = wait
        self._closed = False
        self._reset()
        _LIVE.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._size)
        self._idle: list[psycopg.Connection] = []

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(autocommit=True, options="-c jit=off", **self._params)
        set_json_loads(orjson.loads, conn)
        return conn

    def _take(self) -> psycopg.Connection:
        if not self._slots.acquire(timeout=self._wait):
            # the pool's own exhaustion, like SQLAlchemy's: the request answers 503
            raise sa.exc.TimeoutError(f"no raw lookup connection came free within {self._wait:g} s")
        try:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the token lookup is closed")
                if self._idle:
                    return self._idle.pop()
            return self._connect()
        except BaseException:
            self._slots.release()
            raise

    def _give(self, conn: psycopg.Connection) -> None:
        try:
            healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
            with self._lock:
                if healthy and not self._closed:
                    self._idle.append(conn)
                    return
            conn.close()
        finally:
            self._slots.release()

    def _discard_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _run(self, conn: psycopg.Connection, token_hash: str) -> Row | None:
        return conn.execute(self._sql, {"token_hash": token_hash}, prepare=True).fetchone()

    def __call__(self, token_hash: str) -> Row | None:
        conn = self._take()
        try:
            try:
                row = self._run(conn, token_hash)
            except psycopg.OperationalError:
                if not conn.broken:
                    raise
                # the server dropped this connection, and likely its idle siblings (a restart):
                # close them all and run once more on a new one
                conn.close()
                self._discard_idle()
                conn = self._connect()
                row = self._run(conn, token_hash)
        finally:
            self._give(conn)
        if row is None:
            return None
        *head, expires, revoked, grant_id = row
        return (*head, expires.astimezone(UTC), revoked, grant_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._discard_idle()
