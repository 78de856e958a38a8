"""``_containedType=contained`` (R4 search.html "Contained Resources"): the contained resources
that match a ``_contained=true`` search, returned as entries of their own rather than their
containers.

The database tells which containers hold a matching contained resource (their rows under
``keys.contained_identity``), not which of a container's contained resources matched. That is
decided here, for the containers of one page, with the same search engine: each contained
resource of the searched type is indexed, as a resource of its own, into a private in-memory
SQLite database (the engine's own index rows and SQL), the criteria are run there and the
transaction is rolled back. So a container holding two contained Patients returns only the
one that matches ``family=...``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from resources.search.tables import INDEX_TABLES
from resources.storage.schema import resource


@dataclass(frozen=True)
class ContainedMatch:
    """A matching contained resource and the container (type, id) holding it."""

    container_type: str
    container_id: str
    resource: dict

    def full_url(self, base: str) -> str:
        """The container's URL with the contained resource's id as fragment (``.../Observation/
        1#p1``), the form a reference to it from outside takes."""
        return f"{base}/{self.container_type}/{self.container_id}#{self.resource.get('id', '')}"


_LOCK = threading.Lock()
_ENGINE: sa.Engine | None = None
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _scratch() -> sa.Engine:
    """The in-memory SQLite database with the ``resource`` and index tables (made once)."""
    global _ENGINE
    if _ENGINE is None:
        engine = sa.create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        with engine.begin() as conn:
            for table in (resource, *INDEX_TABLES):
                table.create(conn, checkfirst=True)
        _ENGINE = engine
    return _ENGINE


def matching_contained(
    search,  # type: ignore[no-untyped-def]  # resources.search.SearchEngine
    res_type: str,
    criteria: Sequence[tuple[str, str]],
    containers: Sequence[tuple[str, str, dict]],
) -> list[ContainedMatch]:
    """The contained ``res_type`` resources of ``containers`` ((type, id, content) each, in
    page order) that match ``criteria`` (the search's criteria, result parameters left out),
    in container order, then contained order."""
    candidates: list[ContainedMatch] = []
    for ctype, cid, content in containers:
        for inner in content.get("contained") or ():
            if isinstance(inner, dict) and inner.get("resourceType") == res_type:
                candidates.append(ContainedMatch(ctype, cid, inner))
    if not candidates:
        return []
    compiled = search.compile(res_type, list(criteria))
    with _LOCK:  # one scratch database, one search at a time in it
        engine = _scratch()
        with engine.connect() as conn:
            trans = conn.begin()
            try:
                for pk, match in enumerate(candidates, start=1):
                    inner = match.resource
                    conn.execute(
                        sa.insert(resource).values(
                            pk=pk,
                            res_type=res_type,
                            res_id=str(inner.get("id") or f"contained-{pk}")[:64],
                            version=1,
                            last_updated=_EPOCH,
                            deleted=False,
                            content=inner,
                        )
                    )
                    by_table: dict[sa.Table, list[dict]] = {}
                    for table, row in search.rows_for(inner):
                        by_table.setdefault(table, []).append({**row, "res_pk": pk})
                    for table, rows in by_table.items():
                        conn.execute(sa.insert(table), rows)
                found = {row[0] for row in conn.execute(compiled.select)}
            finally:
                trans.rollback()
    return [m for pk, m in enumerate(candidates, start=1) if pk in found]
