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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import psycopg
import sqlalchemy as sa

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
    row = reader.row(res_type, res_id)
    if row is None:
        raise NotFound(f"{res_type}/{res_id} is not known")
    version, last_updated, deleted, text = row
    if deleted:
        raise Gone(f"{res_type}/{res_id} was deleted (version {version})")
    return CurrentJSON(res_type, res_id, version, last_updated.astimezone(UTC), text)
