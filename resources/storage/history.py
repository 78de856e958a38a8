"""History queries (FHIR R4 http.html#history): instance, type and system level.

Newest first, with ``_since``, ``_at`` (the versions current at some time in a period) and
keyset paging: a cursor names the last version returned, so a
page never shifts when new versions are written while a client is paging.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa

from resources.errors import Invalid
from resources.storage.bounds import INT4_MAX, INT8_MAX
from resources.storage.schema import resource_version
from resources.storage.store import Stored


@dataclass(frozen=True)
class HistoryPage:
    entries: list[Stored]
    next_cursor: str | None
    total: int | None


def encode_cursor(entry: Stored, pk: int) -> str:
    raw = orjson.dumps([entry.last_updated.isoformat(), pk, entry.version])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, pk, version = orjson.loads(raw)
        when = datetime.fromisoformat(ts)
        when.astimezone(UTC)  # OverflowError at the ends of the calendar
        if not (isinstance(pk, int) and 0 <= pk <= INT8_MAX):
            raise ValueError("primary key out of range")
        if not (isinstance(version, int) and 0 <= version <= INT4_MAX):
            raise ValueError("version out of range")
        return when, pk, version
    except (ValueError, TypeError, OverflowError) as exc:
        raise Invalid(f"the paging cursor {cursor!r} is not one this server issued") from exc


def history(
    conn: sa.Connection,
    *,
    res_type: str | None = None,
    res_id: str | None = None,
    since: datetime | None = None,
    count: int = 50,
    cursor: str | None = None,
    at: Sequence[tuple[datetime, datetime]] = (),
) -> HistoryPage:
    """One page of versions, newest first, filtered by type / id / ``_since`` / ``_at``.

    ``at``: periods ``[low, high]`` (inclusive); a version is kept when it was the current one
    at some time in one of them -- written at or before ``high`` and not replaced by a newer
    version at or before ``low`` (versions of one resource are written in time order)."""
    v = resource_version
    where = []
    if at:
        newer = resource_version.alias("newer")
        periods = []
        for low, high in at:
            replaced = sa.exists().where(
                newer.c.res_pk == v.c.res_pk,
                newer.c.version > v.c.version,
                newer.c.last_updated <= low,
            )
            periods.append(sa.and_(v.c.last_updated <= high, sa.not_(replaced)))
        where.append(sa.or_(*periods))
    if res_type is not None:
        where.append(v.c.res_type == res_type)
    if res_id is not None:
        where.append(v.c.res_id == res_id)
    if since is not None:
        where.append(v.c.last_updated >= since)
    total = None
    if res_id is not None:
        total = conn.execute(sa.select(sa.func.count()).select_from(v).where(*where)).scalar_one()
    if cursor:
        ts, pk, version = _decode_cursor(cursor)
        where.append(
            sa.or_(
                v.c.last_updated < ts,
                sa.and_(v.c.last_updated == ts, v.c.res_pk < pk),
                sa.and_(v.c.last_updated == ts, v.c.res_pk == pk, v.c.version < version),
            )
        )
    stmt = (
        sa.select(v)
        .where(*where)
        .order_by(v.c.last_updated.desc(), v.c.res_pk.desc(), v.c.version.desc())
        .limit(count + 1)
    )
    rows = conn.execute(stmt).all()
    entries = [
        Stored(r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.content, r.method)
        for r in rows[:count]
    ]
    next_cursor = None
    if len(rows) > count and entries:
        next_cursor = encode_cursor(entries[-1], rows[count - 1].res_pk)
    return HistoryPage(entries, next_cursor, total)
