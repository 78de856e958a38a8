"""Writing and deleting index rows, as fast as each database allows.

PostgreSQL: one ``INSERT ... SELECT * FROM unnest(:col1, :col2, ...)`` per table with one array
parameter per column: a single statement (compiled and planned once, cached) whatever the number
of rows; a plain executemany would send one INSERT per row. SQLite: executemany, which its
driver runs in C.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from resources.search.tables import COLUMNS, INDEX_TABLES


def _plain(type_: sa.types.TypeEngine) -> sa.types.TypeEngine:
    if isinstance(type_, sa.Float | sa.Double):
        return sa.Double()
    if isinstance(type_, sa.String):
        return sa.Text()
    if isinstance(type_, sa.BigInteger):
        return sa.BigInteger()
    return type_


@cache
def _unnest_insert(table: sa.Table) -> sa.Insert:
    cols = COLUMNS[table]
    arrays = [sa.bindparam(name, type_=ARRAY(_plain(table.c[name].type))) for name in cols]
    rows = sa.func.unnest(*arrays).table_valued(*cols).render_derived(name="v")
    return sa.insert(table).from_select(list(cols), sa.select(*(rows.c[name] for name in cols)))


def insert_rows(conn: sa.Connection, rows: Iterable[tuple[sa.Table, dict]]) -> int:
    """Insert index rows (each dict with ``res_pk`` and every column); returns the count."""
    by_table: dict[sa.Table, list[dict]] = {}
    n = 0
    for table, row in rows:
        by_table.setdefault(table, []).append(row)
        n += 1
    postgres = conn.dialect.name == "postgresql"
    for table, batch in by_table.items():
        if postgres and len(batch) > 1:
            cols = COLUMNS[table]
            conn.execute(_unnest_insert(table), {c: [r[c] for r in batch] for c in cols})
        else:
            conn.execute(sa.insert(table), batch)
    return n


def delete_rows(conn: sa.Connection, pks: Sequence[int]) -> None:
    """Remove every index row of the resources ``pks`` (before re-indexing or on delete)."""
    if not pks:
        return
    for table in INDEX_TABLES:
        cond = table.c.res_pk == pks[0] if len(pks) == 1 else table.c.res_pk.in_(list(pks))
        conn.execute(sa.delete(table).where(cond))
