"""PostgreSQL session-level advisory locks held on a connection of their own, for electing one
node of several that share a database (the DICOM / MLLP listeners,
``fhir_server/runtime/listeners.py``).

A session-level lock (``pg_try_advisory_lock``) belongs to the server session that took it: it
outlives transactions and goes only when the session ends, which is when its holder closes the
connection or dies (the server sees the socket close; a vanished machine is noticed by TCP
keepalives). The lock's connection is therefore never pooled: one connection per lock, opened here
and kept by the holder for as long as it leads. Advisory locks are scoped to one database, so
nodes on different databases never compete.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from resources.storage.db import normalise_url

# libpq: notice a dead server within seconds rather than the kernel's two hours; a holder
# whose connection is gone stops leading (``held`` fails) before the server drops the lock.
_CONNECT_ARGS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms: unacknowledged data (a ping to a vanished server)
    "application_name": "hearth-election",
}


def lock_key(name: str) -> int:
    """The 64-bit advisory lock key of ``name``: non-negative, stable across nodes and
    releases (the first 63 bits of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


def is_postgres_url(url: str) -> bool:
    return make_url(normalise_url(url)).get_backend_name() == "postgresql"


class SessionLock:
    """One named session-level advisory lock. ``try_acquire`` takes it if no other session
    holds it; ``held`` asks the server whether this session still holds it (False when the
    connection is gone); ``release`` closes the connection, which gives the lock up.

    Not thread-safe: one thread (the election's) drives it."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.key = lock_key(name)
        self._engine = sa.create_engine(
            normalise_url(url),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args=_CONNECT_ARGS,
        )
        self._conn: sa.Connection | None = None
        self._holding = False

    def _connection(self) -> sa.Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn, self._holding = self._conn, None, False
        if conn is not None:
            try:
                conn.close()
            except sa.exc.DBAPIError:
                pass

    def try_acquire(self) -> bool:
        """Take the lock if it is free. Database errors propagate (after dropping the
        connection), so the caller can log them and try again later."""
        try:
            got = (
                self._connection()
                .execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key})
                .scalar_one()
            )
        except sa.exc.DBAPIError:
            self._drop()
            raise
        self._holding = bool(got)
        return self._holding

    def held(self) -> bool:
        """Whether this session still holds the lock, asked of the server (pg_locks)."""
        if not self._holding or self._conn is None:
            return False
        try:
            still = self._conn.execute(
                sa.text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND granted AND objsubid = 1"
                    " AND ((classid::bigint << 32) | objid::bigint) = :key)"
                ),
                {"key": self.key},
            ).scalar_one()
        except sa.exc.DBAPIError:
            self._drop()
            return False
        if not still:
            self._drop()
        return bool(still)

    def release(self) -> None:
        """Give the lock up (closing the session releases every lock it holds)."""
        self._drop()
        self._engine.dispose()
