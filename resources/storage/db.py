"""Database engines: one factory for SQLite (embedded default) and PostgreSQL (psycopg 3).

SQLite runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE`` so that a read-modify-write (an update, a conditional create) holds the
write lock from its first statement: two writers serialise instead of failing on upgrade.
PostgreSQL runs at READ COMMITTED; row locks (``SELECT ... FOR UPDATE``) and unique keys serialise
the writes that must not interleave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import orjson
import psycopg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url

# Execution option marking a connection whose transaction only reads.
READONLY = "hearth_readonly"

# Set while a read-only unit checks out its connection (``unpinged``): the PostgreSQL pre-ping is
# skipped, and the reader retries once on a connection the server dropped.
_NO_PING: ContextVar[bool] = ContextVar("hearth_no_ping", default=False)


@contextmanager
def unpinged() -> Iterator[None]:
    """Check out connections without the pre-ping round trip (PostgreSQL). Only for work that
    may run again: a statement on a connection the server dropped raises a ``DBAPIError``
    with ``connection_invalidated``, and the caller retries on a fresh one."""
    token = _NO_PING.set(True)
    try:
        yield
    finally:
        _NO_PING.reset(token)


# The exception classes a database that is not there raises: a refused or dropped connection,
# a pool with no connection to give within its timeout, SQLite's busy timeout. ``psycopg``'s own
# come from the token lookup, which runs on bare psycopg connections. The same classes also
# carry faults (a SQL error is an ``OperationalError`` on SQLite): ``unavailable`` tells them apart.
UNAVAILABLE: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)

# PostgreSQL SQLSTATEs of a server that is going away or will not take the connection:
# class 08 (connection exception), 53300 too_many_connections, 57P01-57P03 (shutdown, cannot
# connect now).
_PG_UNAVAILABLE = ("08", "53300", "57P01", "57P02", "57P03")
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database", "disk i/o error")


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is not answering (retry later: 503), as opposed to a
    fault in a statement."""
    if isinstance(exc, sa.exc.TimeoutError):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, psycopg.Error):
        if not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return False
        state = exc.sqlstate
        return state is None or state.startswith(_PG_UNAVAILABLE)
    if isinstance(exc, sqlite3.OperationalError):
        return str(exc).lower().startswith(_SQLITE_UNAVAILABLE)
    return False


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and route them to the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    pool_timeout: float = 30.0,
    echo: bool = False,
    pre_ping: bool = True,
    autocommit: bool = False,
) -> sa.Engine:
    """Build the engine for ``url`` (``sqlite:///path.db`` or ``postgresql://...``).
    PostgreSQL connections are pinged (a liveness round trip) at each pool checkout, except
    inside ``unpinged`` (single reads, which retry instead); ``pre_ping=False`` never pings, and
    its user must retry a statement that fails on a connection the server dropped.
    ``autocommit=True`` (PostgreSQL, for single-statement reads) runs every connection in
    autocommit and skips the ROLLBACK when one goes back to the pool. A PostgreSQL engine holds
    at most ``pool_size + max_overflow`` connections (``max_overflow`` defaults to
    ``pool_size``); a checkout that finds none free within ``pool_timeout`` seconds raises
    ``sqlalchemy.exc.TimeoutError`` (the server answers 503, ``unavailable``)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            echo=echo,
            hide_parameters=True,  # error messages never quote the values (PHI) bound
            json_serializer=_dumps,
            json_deserializer=orjson.loads,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        engine = sa.create_engine(
            url,
            echo=echo,
            hide_parameters=True,  # error messages never quote the values (PHI) bound
            json_serializer=_dumps,
            json_deserializer=orjson.loads,
            pool_size=pool_size,
            max_overflow=pool_size if max_overflow is None else max_overflow,
            pool_timeout=pool_timeout,
            pool_pre_ping=False,  # pinged by _ping_on_checkout, except for ``unpinged`` reads
            **(
                {"isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None}
                if autocommit
                else {}
            ),
            # JIT compilation adds 5-11 ms to Hearth's short index queries and saves nothing.
            connect_args={"options": "-c jit=off"},
        )
        if pre_ping:
            _ping_on_checkout(engine)
        return engine
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}")


def error_kind(exc: BaseException) -> str:
    """An exception for a log line or an outcome without its message, which may quote record
    content (PostgreSQL's DETAIL/CONTEXT quote the failing row): its type and SQLSTATE."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "sqlstate", None)
    return type(orig).__name__ + (f" (SQLSTATE {code})" if code else "")


def _ping_on_checkout(engine: sa.Engine) -> None:
    """SQLAlchemy's ``pool_pre_ping``, skipped inside ``unpinged``: a connection the server
    dropped while it sat in the pool is replaced (and the pool invalidated) before use."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn, _record, _proxy):  # type: ignore[no-untyped-def]
        if _NO_PING.get():
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_conn, None):
                raise sa.exc.InvalidatePoolError() from exc
            raise


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not pysqlite, issue BEGIN (see the SQLAlchemy SQLite dialect docs).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # Readers take no write lock (WAL keeps them consistent); writers take it up front.
        readonly = conn.get_execution_options().get(READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def is_postgres(engine_or_conn: sa.Engine | sa.Connection) -> bool:
    return engine_or_conn.dialect.name == "postgresql"


def among(conn: sa.Connection, column: sa.ColumnElement, values: Iterable[str]) -> sa.ColumnElement:
    """``column IN values`` for a text column: on PostgreSQL ``= ANY(array)``, one parameter
    whatever the number of values (an ``IN`` list of hundreds costs its expansion in Python on
    every execution), an ``IN`` list on SQLite."""
    values = list(values)
    if conn.dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, values, type_=ARRAY(sa.String())))
    return column.in_(values)
