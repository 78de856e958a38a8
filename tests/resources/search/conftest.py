"""Fixtures for the search tests: the definitions, the 604 R4 examples, and databases (SQLite
in memory and a throwaway PostgreSQL database) with resources and their index rows.

PostgreSQL: ``HEARTH_TEST_POSTGRES`` is an admin URL (default
``postgresql://postgres@127.0.0.1:5432/postgres``); each session creates its own databases
(``hearth_search_<random>``) and drops them afterwards. It must be reachable: these tests fail
rather than skip without it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa

from resources.search import SearchEngine, SearchParameterRegistry
from resources.storage.db import create_engine, normalise_url
from resources.storage.schema import metadata, resource
from tests.shared import shared_path

BACKENDS = ("sqlite", "postgresql")
PG_ADMIN = os.environ.get("HEARTH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BASE = "http://hearth.test/fhir"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def registry() -> SearchParameterRegistry:
    return SearchParameterRegistry.load_default()


@pytest.fixture(scope="session")
def search(registry: SearchParameterRegistry) -> SearchEngine:
    return SearchEngine(registry, base_urls=(BASE,))


@pytest.fixture(scope="session")
def examples() -> list[dict]:
    """The 604 R4 examples, each with a unique (type, id): the one without an id gets one, and
    a repeated (type, id) gets a ``dupN-`` prefix."""
    files = sorted(shared_path("fhir", "r4-examples").glob("*.json"))
    assert len(files) == 604
    seen: set[tuple[str, str]] = set()
    out = []
    for n, path in enumerate(files):
        res = orjson.loads(path.read_bytes())
        rid = res.get("id") or f"noid{n}"
        if (res["resourceType"], rid) in seen:
            rid = f"dup{n}-{rid}"[:64]
        seen.add((res["resourceType"], rid))
        res["id"] = rid
        out.append(res)
    return out


def _new_engine(backend: str) -> Iterator[sa.Engine]:
    if backend == "sqlite":
        engine = create_engine("sqlite://")
        metadata.create_all(engine)
        yield engine
        engine.dispose()
        return
    admin = sa.create_engine(normalise_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    name = f"hearth_search_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(normalise_url(PG_ADMIN)).set(database=name)
    engine = create_engine(url.render_as_string(hide_password=False), pool_size=2)
    try:
        metadata.create_all(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def insert(
    conn: sa.Connection,
    search: SearchEngine,
    resources: Sequence[dict],
    *,
    last_updated: datetime | None = None,
) -> list[int]:
    """Store resources as the repository does: a ``resource`` row, then its index rows."""
    pks = []
    for i, res in enumerate(resources):
        ts = last_updated or (T0 + timedelta(seconds=i))
        pk = conn.execute(
            sa.insert(resource)
            .values(
                res_type=res["resourceType"],
                res_id=res["id"],
                version=1,
                last_updated=ts,
                deleted=False,
                content=res,
            )
            .returning(resource.c.pk)
        ).scalar_one()
        by_table: dict[sa.Table, list[dict]] = {}
        for table, row in search.rows_for(res):
            by_table.setdefault(table, []).append({**row, "res_pk": pk})
        for table, rows in by_table.items():
            conn.execute(sa.insert(table), rows)
        pks.append(pk)
    return pks


@dataclass
class Loaded:
    """A database holding all the examples."""

    backend: str
    engine: sa.Engine
    pks: dict[tuple[str, str], int]


@pytest.fixture(scope="session", params=BACKENDS)
def example_db(request: pytest.FixtureRequest, search: SearchEngine, examples: list[dict]):
    for engine in _new_engine(request.param):
        with engine.begin() as conn:
            pks = insert(conn, search, examples)
        yield Loaded(
            request.param,
            engine,
            {(r["resourceType"], r["id"]): pk for r, pk in zip(examples, pks, strict=True)},
        )


@pytest.fixture(scope="session", params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    yield from _new_engine(request.param)


@dataclass
class Store:
    """An empty database inside one transaction that is rolled back after the test."""

    conn: sa.Connection
    search: SearchEngine

    def add(self, *resources: dict, last_updated: datetime | None = None) -> list[int]:
        return insert(self.conn, self.search, resources, last_updated=last_updated)

    def pks(self, res_type: str | None, query: Sequence[tuple[str, str]]) -> list[int]:
        compiled = self.search.compile(res_type, query)
        assert not compiled.unsupported, compiled.unsupported
        return [r[0] for r in self.conn.execute(compiled.select)]

    def ids(self, res_type: str | None, query: Sequence[tuple[str, str]] | str) -> set[str]:
        """Ids (``Type/id`` for a system search) of the matches of ``query`` (pairs, or
        ``a=1&b=2`` text without URL encoding)."""
        if isinstance(query, str):
            query = [tuple(p.split("=", 1)) for p in query.split("&") if p]  # type: ignore[misc]
        compiled = self.search.compile(res_type, query)
        assert not compiled.unsupported, compiled.unsupported
        rows = self.conn.execute(
            sa.select(resource.c.res_type, resource.c.res_id).where(
                resource.c.pk.in_(compiled.select)
            )
        )
        return {(f"{t}/{i}" if res_type is None else i) for t, i in rows}

    def sorted_ids(self, res_type: str, query: str, sort: str) -> list[str]:
        """Ids in ``_sort`` order, through ``SearchEngine.ordered`` and, as a cross-check,
        through ``sort_by`` on a query FROM ``resource``."""
        pairs = [tuple(p.split("=", 1)) for p in query.split("&") if p]
        compiled = self.search.compile(res_type, pairs)  # type: ignore[arg-type]
        stmt = (
            sa.select(resource.c.res_id)
            .where(resource.c.pk.in_(compiled.select))
            .order_by(*self.search.sort_by(res_type, sort))
        )
        via_sort_by = [r[0] for r in self.conn.execute(stmt)]
        pks = [
            r[0] for r in self.conn.execute(self.search.ordered(res_type, compiled.select, sort))
        ]
        ids = dict(
            self.conn.execute(
                sa.select(resource.c.pk, resource.c.res_id).where(resource.c.pk.in_(pks))
            ).all()
        )
        assert [ids[p] for p in pks] == via_sort_by
        return via_sort_by


@pytest.fixture
def store(empty_engine: sa.Engine, search: SearchEngine) -> Iterator[Store]:
    with empty_engine.connect() as conn:
        trans = conn.begin()
        try:
            yield Store(conn, search)
        finally:
            trans.rollback()
